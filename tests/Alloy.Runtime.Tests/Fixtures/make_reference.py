#!/usr/bin/python3
"""Makes the reference fixtures for Alloy.Runtime's forward-pass tests.

Run once with Debian's python3-torch 1.13 (`/usr/bin/python3 make_reference.py` from this folder); the output is
committed, so the tests need neither Python nor torch. transformers is not installed here, so the forward pass below
is this project's own plain-torch statement of the architecture as transformers defines it for LlamaForCausalLM,
MistralForCausalLM and Qwen2ForCausalLM:

- embeddings → N × [x += o_proj(attention(rms_norm(x))); x += down_proj(silu(gate_proj(h)) · up_proj(h)), h = rms_norm(x)]
  → rms_norm → lm_head (or the embedding matrix when tie_word_embeddings);
- RMSNorm: x / sqrt(mean(x²) + eps), then times the weight;
- RoPE in the "rotate half" layout: the first and second halves of each head are the two coordinates of each rotated
  pair; inverse frequencies θ^(−2i/d) and angles position × frequency computed in float32 exactly as transformers
  does, with rope_scaling "linear" (frequencies ÷ factor) and "llama3" (long wavelengths ÷ factor, short ones kept,
  a linear blend in between);
- grouped-query attention: query head h uses key/value head h ÷ (heads / key_value_heads); scores scaled by
  head_dim^−½; causal mask, and for Mistral a sliding window (key position > query position − window);
- Qwen2 has biases on q/k/v (not o); Llama's attention_bias puts them on q/k/v/o and mlp_bias on the MLP.
- Mixtral (MixtralForCausalLM) and Qwen2-MoE (Qwen2MoeForCausalLM) replace the MLP by a sparse mixture: router
  logits z = h·Gᵀ, p = softmax(z) over all experts, the top-k of p (torch.topk), the chosen p renormalised to sum 1
  (Mixtral always; Qwen2-MoE when norm_topk_prob), output Σ w_e·down_e(silu(gate_e(h))·up_e(h)); Qwen2-MoE adds
  sigmoid(h·g_sharedᵀ)·shared_expert(h). Experts are read from transformers' fused layout (mlp.experts.gate_up_proj
  [E, 2I, H], gate rows then up rows; mlp.experts.down_proj [E, H, I]) or the per-expert ones (Mixtral's
  block_sparse_moe.experts.N.w1/w3/w2, Qwen2-MoE's mlp.experts.N.gate_proj/up_proj/down_proj). mixtral-per-expert
  holds mixtral's weights in the older layout. Every token's gap between its k-th and (k+1)-th router logit is
  checked to be far above float32 rounding, so Alloy's float32 routing chooses the same experts.

Everything except the RoPE angles is computed in float64 from the stored (rounded) weights, so the expected logits
are the exact values of the model as stored; Alloy computes in float32 and must agree to 1e-4 relative.

For each model, models/<name>/ holds config.json and the weights (safetensors written by hand below — the
safetensors package is not installed — or a torch.save .bin); expected/<name>.safetensors holds:
  tokens   I32 [total]          three sequences back to back (lengths in `lengths`)
  lengths  I32 [3]
  logits   F32 [total, vocab]   logits of every real token, each sequence computed on its own
  inv_freq F32 [head_dim / 2]   RoPE inverse frequencies after scaling
  prompt   I32 [5], greedy I32 [8]   greedy continuation of `prompt` by repeated full forward passes
The script also checks that a right-padded and a left-padded batch (positions counted from each sequence's first
real token) give the same logits as the sequences alone, and that no greedy step is a near tie.
Reruns give the same bytes.
"""

import json
import math
import shutil
import struct
from collections import OrderedDict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
VOCAB = 61
LENGTHS = [11, 5, 16]

BASE = {
    "vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}

MODELS = [
    # Llama with grouped-query attention (2 query heads per key/value head), untied head, float32, two shards.
    ("llama-gqa", "F32", "sharded", dict(BASE, model_type="llama", architectures=["LlamaForCausalLM"])),
    # Qwen2: q/k/v biases, tied embeddings, one key/value head, bfloat16.
    ("qwen2-tied", "BF16", "single", dict(BASE, model_type="qwen2", architectures=["Qwen2ForCausalLM"], num_key_value_heads=1,
                                          tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                          use_sliding_window=False, sliding_window=4096, max_window_layers=2)),
    # Llama 3 RoPE scaling, with head_dim given (4 × 16 = 64 ≠ hidden 32): one frequency in each band.
    ("llama3-rope", "BF16", "single", dict(BASE, model_type="llama", architectures=["LlamaForCausalLM"], head_dim=16,
                                           max_position_embeddings=1024,
                                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 128})),
    # Linear RoPE scaling (old-style "type" key) and Llama's attention_bias / mlp_bias.
    ("llama-linear-bias", "F32", "single", dict(BASE, model_type="llama", architectures=["LlamaForCausalLM"],
                                                rope_scaling={"type": "linear", "factor": 2.0},
                                                attention_bias=True, mlp_bias=True)),
    # Mistral with a sliding window shorter than the longest sequence, float16, stored as pytorch_model.bin.
    ("mistral-window", "F16", "bin", dict(BASE, model_type="mistral", architectures=["MistralForCausalLM"], head_dim=8,
                                          sliding_window=6, num_key_value_heads=4)),
    # Mixtral: 4 experts, top-2, transformers' fused expert layout, a sliding window, bfloat16.
    ("mixtral", "BF16", "single", dict(BASE, model_type="mixtral", architectures=["MixtralForCausalLM"],
                                       intermediate_size=24, num_local_experts=4, num_experts_per_tok=2,
                                       router_jitter_noise=0.0, sliding_window=8, rope_theta=1000000.0)),
    # The same weights in Mixtral's older per-expert layout (block_sparse_moe.experts.N.w1/w2/w3).
    ("mixtral-per-expert", "BF16", "single", dict(BASE, model_type="mixtral", architectures=["MixtralForCausalLM"],
                                                  intermediate_size=24, num_local_experts=4, num_experts_per_tok=2,
                                                  router_jitter_noise=0.0, sliding_window=8, rope_theta=1000000.0)),
    # Qwen2-MoE: 4 experts, top-2 without renormalisation, a shared expert with its sigmoid gate, per-expert layout.
    ("qwen2-moe", "BF16", "single", dict(BASE, model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"],
                                        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                        shared_expert_intermediate_size=40, norm_topk_prob=False,
                                        decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False)),
]

# Models stored with another model's weights in the per-expert layout.
SAME_WEIGHTS_AS = {"mixtral-per-expert": "mixtral"}

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def biases(cfg):
    """(q/k/v bias, o bias, mlp bias) for the three families."""
    if cfg["model_type"] in ("qwen2", "qwen2_moe"):
        return True, False, False
    attention = cfg.get("attention_bias", False)
    return attention, attention, cfg.get("mlp_bias", False)


def tensor_shapes(cfg):
    h, i, hd = cfg["hidden_size"], cfg["intermediate_size"], head_dim(cfg)
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    qkv_bias, o_bias, mlp_bias = biases(cfg)
    shapes = OrderedDict([("model.embed_tokens.weight", [cfg["vocab_size"], h])])
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes[p + "input_layernorm.weight"] = [h]
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            shapes[p + f"self_attn.{name}.weight"] = [rows, h]
            if qkv_bias:
                shapes[p + f"self_attn.{name}.bias"] = [rows]
        shapes[p + "self_attn.o_proj.weight"] = [h, q]
        if o_bias:
            shapes[p + "self_attn.o_proj.bias"] = [h]
        shapes[p + "post_attention_layernorm.weight"] = [h]
        if cfg["model_type"] == "mixtral":
            e, i = cfg["num_local_experts"], cfg["intermediate_size"]
            shapes[p + "mlp.gate.weight"] = [e, h]
            shapes[p + "mlp.experts.gate_up_proj"] = [e, 2 * i, h]
            shapes[p + "mlp.experts.down_proj"] = [e, h, i]
            continue
        if cfg["model_type"] == "qwen2_moe":
            e, i, s = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]
            shapes[p + "mlp.gate.weight"] = [e, h]
            for n in range(e):
                for name, shape in (("gate_proj", [i, h]), ("up_proj", [i, h]), ("down_proj", [h, i])):
                    shapes[p + f"mlp.experts.{n}.{name}.weight"] = shape
            for name, shape in (("gate_proj", [s, h]), ("up_proj", [s, h]), ("down_proj", [h, s])):
                shapes[p + f"mlp.shared_expert.{name}.weight"] = shape
            shapes[p + "mlp.shared_expert_gate.weight"] = [1, h]
            continue
        for name, shape in (("gate_proj", [i, h]), ("up_proj", [i, h]), ("down_proj", [h, i])):
            shapes[p + f"mlp.{name}.weight"] = shape
            if mlp_bias:
                shapes[p + f"mlp.{name}.bias"] = [shape[0]]
    shapes["model.norm.weight"] = [h]
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [cfg["vocab_size"], h]
    return shapes


def make_weights(cfg, seed, storage):
    """Seeded weights rounded to the storage dtype: {name: stored tensor}."""
    generator = torch.Generator().manual_seed(seed)
    weights = OrderedDict()
    for name, shape in tensor_shapes(cfg).items():
        values = torch.randn(shape, generator=generator, dtype=torch.float64)
        if name.endswith("norm.weight"):
            values = 1.0 + 0.1 * values
        elif name.endswith(".bias"):
            values = 0.1 * values
        else:
            values = values / math.sqrt(shape[-1]) * 1.5
        weights[name] = values.to(DTYPES[storage])
    return weights


def per_expert_layout(weights, cfg):
    """Mixtral's fused experts as the older block_sparse_moe.experts.N.w1 (gate), w2 (down), w3 (up)."""
    i = cfg["intermediate_size"]
    out = OrderedDict()
    for name, t in weights.items():
        if ".mlp." not in name:
            out[name] = t
        elif name.endswith("mlp.gate.weight"):
            out[name.replace(".mlp.", ".block_sparse_moe.")] = t
        elif name.endswith("gate_up_proj"):
            p = name[: -len("mlp.experts.gate_up_proj")]
            down = weights[p + "mlp.experts.down_proj"]
            for n in range(t.shape[0]):
                e = f"{p}block_sparse_moe.experts.{n}."
                out[e + "w1.weight"], out[e + "w2.weight"], out[e + "w3.weight"] = t[n, :i], down[n], t[n, i:]
    return out


def experts_of(w, p):
    """(router, [(gate, up, down)] per expert) of layer prefix p, from whichever layout w holds."""
    if p + "mlp.experts.gate_up_proj" in w:
        gate_up, down = w[p + "mlp.experts.gate_up_proj"], w[p + "mlp.experts.down_proj"]
        i = down.shape[2]
        return w[p + "mlp.gate.weight"], [(gate_up[n, :i], gate_up[n, i:], down[n]) for n in range(down.shape[0])]
    if p + "block_sparse_moe.gate.weight" in w:
        router = w[p + "block_sparse_moe.gate.weight"]
        e = [f"{p}block_sparse_moe.experts.{n}." for n in range(router.shape[0])]
        return router, [(w[x + "w1.weight"], w[x + "w3.weight"], w[x + "w2.weight"]) for x in e]
    router = w[p + "mlp.gate.weight"]
    e = [f"{p}mlp.experts.{n}." for n in range(router.shape[0])]
    return router, [(w[x + "gate_proj.weight"], w[x + "up_proj.weight"], w[x + "down_proj.weight"]) for x in e]


# The smallest gap between a token's k-th and (k+1)-th router logits seen by any forward pass.
ROUTING_GAP = [float("inf")]


def sparse_moe(w, cfg, p, h):
    """The mixture of experts of layer prefix p on h [batch, time, hidden] (float64)."""
    swiglu = lambda x, g, u, d: (torch.nn.functional.silu(x @ g.T) * (x @ u.T)) @ d.T
    router, experts = experts_of(w, p)
    k = cfg["num_experts_per_tok"]
    logits = h @ router.T
    probs = torch.softmax(logits, dim=-1)
    top, chosen = torch.topk(probs, k, dim=-1)
    ordered = torch.sort(logits, dim=-1, descending=True).values
    ROUTING_GAP[0] = min(ROUTING_GAP[0], float((ordered[..., k - 1] - ordered[..., k]).min()))
    if cfg["model_type"] == "mixtral" or cfg.get("norm_topk_prob"):
        top = top / top.sum(-1, keepdim=True)
    out = torch.zeros_like(h)
    for n, (g, u, d) in enumerate(experts):
        weight = (top * (chosen == n)).sum(-1, keepdim=True)
        out = out + weight * swiglu(h, g, u, d)
    if cfg["model_type"] == "qwen2_moe":
        s = p + "mlp.shared_expert."
        shared = swiglu(h, w[s + "gate_proj.weight"], w[s + "up_proj.weight"], w[s + "down_proj.weight"])
        out = out + torch.sigmoid(h @ w[p + "mlp.shared_expert_gate.weight"].T) * shared
    return out


def inv_freq(cfg):
    """RoPE inverse frequencies in float32, as transformers computes them."""
    dim = head_dim(cfg)
    base = cfg.get("rope_theta", 10000.0)
    freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = cfg.get("rope_scaling")
    if not scaling:
        return freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return freq / scaling["factor"]
    assert kind == "llama3", kind
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / freq
    long_waves = wavelength > context / low
    short_waves = wavelength < context / high
    blend = (context / wavelength - low) / (high - low)
    blended = (1 - blend) * freq / factor + blend * freq
    result = torch.where(long_waves, freq / factor, torch.where(short_waves, freq, blended))
    # The test below needs one frequency in each band, or the blend would go unchecked.
    assert long_waves.any() and short_waves.any() and (~long_waves & ~short_waves).any()
    return result


def rope(x, positions, freq):
    """x: [batch, heads, time, head_dim] float64; positions: [batch, time] int."""
    angles = positions.float()[:, :, None] * freq[None, None, :]   # float32, one product per element
    angles = torch.cat([angles, angles], dim=-1)
    cos, sin = angles.cos().double()[:, None], angles.sin().double()[:, None]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def rms_norm(x, weight, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def forward(w, cfg, ids, positions, real):
    """ids, positions: [batch, time] int64; real: [batch, time] bool (False at padding). Returns float64 logits."""
    eps, hd = cfg["rms_norm_eps"], head_dim(cfg)
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    batch, time = ids.shape
    freq = inv_freq(cfg)
    window = cfg.get("sliding_window") if cfg["model_type"] in ("mistral", "mixtral") else None

    q_pos, k_pos = positions[:, :, None], positions[:, None, :]
    allowed = (k_pos <= q_pos) & real[:, None, :] & real[:, :, None]
    if window is not None:
        allowed &= k_pos > q_pos - window
    allowed = allowed[:, None]   # one mask for every head

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    x = w["model.embed_tokens.weight"][ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").view(batch, time, heads, hd).transpose(1, 2)
        k = linear(h, p + "self_attn.k_proj").view(batch, time, kv_heads, hd).transpose(1, 2)
        v = linear(h, p + "self_attn.v_proj").view(batch, time, kv_heads, hd).transpose(1, 2)
        q, k = rope(q, positions, freq), rope(k, positions, freq)
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)   # padding queries see nothing
        context = (probs @ v).transpose(1, 2).reshape(batch, time, heads * hd)
        x = x + linear(context, p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if cfg["model_type"] in ("mixtral", "qwen2_moe"):
            x = x + sparse_moe(w, cfg, p, h)
            continue
        x = x + linear(torch.nn.functional.silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def alone(w, cfg, tokens):
    ids = torch.tensor([tokens])
    return forward(w, cfg, ids, torch.arange(len(tokens))[None], torch.ones_like(ids, dtype=torch.bool))[0]


def padded(w, cfg, sequences, left):
    """The batch padded with token 0 on the right or left; positions count from each sequence's first real token."""
    width = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.int64)
    real = torch.zeros(len(sequences), width, dtype=torch.bool)
    for b, s in enumerate(sequences):
        start = width - len(s) if left else 0
        ids[b, start:start + len(s)] = torch.tensor(s)
        real[b, start:start + len(s)] = True
    positions = (real.long().cumsum(-1) - 1).clamp(min=0)
    logits = forward(w, cfg, ids, positions, real)
    return [logits[b][real[b]] for b in range(len(sequences))]


def greedy(w, cfg, prompt, steps):
    tokens, margin = list(prompt), float("inf")
    for _ in range(steps):
        last = alone(w, cfg, tokens)[-1]
        top = torch.topk(last, 2).values
        margin = min(margin, float(top[0] - top[1]))
        tokens.append(int(last.argmax()))
    return tokens[len(prompt):], margin


def safetensors_bytes(tensors):
    """The safetensors format by hand: u64 header length, JSON header (8-byte aligned), raw little-endian data."""
    header, chunks, offset = OrderedDict(), [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        kind = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int32: "I32"}[t.dtype]
        header[name] = {"dtype": kind, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write_model(folder, cfg, weights, layout, storage):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = dict(cfg, torch_dtype={"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[storage],
                  transformers_version="4.46.0")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if layout == "single":
        (folder / "model.safetensors").write_bytes(safetensors_bytes(weights))
    elif layout == "sharded":
        names = list(weights)
        halves = [names[: len(names) // 2], names[len(names) // 2:]]
        weight_map, total = OrderedDict(), 0
        for k, part in enumerate(halves, start=1):
            shard = f"model-{k:05d}-of-00002.safetensors"
            (folder / shard).write_bytes(safetensors_bytes(OrderedDict((n, weights[n]) for n in part)))
            for n in part:
                weight_map[n] = shard
                total += weights[n].numel() * weights[n].element_size()
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    else:
        torch.save(OrderedDict((n, t.clone()) for n, t in weights.items()), folder / "pytorch_model.bin")


def main():
    torch.manual_seed(0)
    (HERE / "expected").mkdir(exist_ok=True)
    seeds = {name: seed for seed, (name, *_) in enumerate(MODELS, start=1)}
    for seed, (name, storage, layout, cfg) in enumerate(MODELS, start=1):
        source = SAME_WEIGHTS_AS.get(name)
        weights = make_weights(cfg, seeds[source] if source else seed, storage)
        if source:
            weights = per_expert_layout(weights, cfg)
        write_model(HERE / "models" / name, cfg, weights, layout, storage)
        w = {n: t.double() for n, t in weights.items()}

        ROUTING_GAP[0] = float("inf")
        generator = torch.Generator().manual_seed(100 + (seeds[source] if source else seed))
        sequences = [torch.randint(0, VOCAB, (n,), generator=generator).tolist() for n in LENGTHS]
        expected = [alone(w, cfg, s) for s in sequences]
        for left in (False, True):
            for got, want in zip(padded(w, cfg, sequences, left), expected):
                assert torch.allclose(got, want, rtol=0, atol=1e-12), f"{name}: padding changed the logits"
        prompt = sequences[2][:5]
        continuation, margin = greedy(w, cfg, prompt, 8)
        assert margin > 1e-3, f"{name}: greedy step with a near tie ({margin})"
        assert ROUTING_GAP[0] > 1e-3, f"{name}: a token's k-th and (k+1)-th experts nearly tie ({ROUTING_GAP[0]})"

        out = OrderedDict()
        out["tokens"] = torch.tensor(sum(sequences, []), dtype=torch.int32)
        out["lengths"] = torch.tensor(LENGTHS, dtype=torch.int32)
        out["logits"] = torch.cat(expected).float()
        out["inv_freq"] = inv_freq(cfg)
        out["prompt"] = torch.tensor(prompt, dtype=torch.int32)
        out["greedy"] = torch.tensor(continuation, dtype=torch.int32)
        (HERE / "expected" / f"{name}.safetensors").write_bytes(safetensors_bytes(out))
        spread = float(out["logits"].std())
        print(f"{name}: {sum(t.numel() for t in weights.values())} parameters, logits std {spread:.3f}, "
              f"greedy {continuation} (smallest top-2 gap {margin:.4f}"
              + (f", smallest routing gap {ROUTING_GAP[0]:.4f})" if ROUTING_GAP[0] < float("inf") else ")"))


if __name__ == "__main__":
    main()
