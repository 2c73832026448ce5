#!/usr/bin/env bash
# Re-creates examples/experts/models (a pretrained tiny base and five experts fine-tuned from it) and the training logs
# in examples/experts/logs from the committed data, with `alloy synth` and `alloy train` only. Run from anywhere:
#     examples/experts/make-experts.sh            # uses `dotnet run --project src/Alloy.Cli -c Release`
#     ALLOY="alloy" examples/experts/make-experts.sh
# The same bytes at any thread count and on any machine: the managed linear algebra is forced (OpenBLAS's results
# depend on its kernels), and `alloy train` is deterministic. About 14 minutes on two cores. README.md explains the recipe.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export ALLOY_LINALG=managed
if [[ -z "${ALLOY:-}" ]]; then
    dotnet build "$root/src/Alloy.Cli" -c Release --nologo -v quiet >/dev/null
    ALLOY="dotnet $root/src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli.dll"
fi
alloy() { $ALLOY "$@"; }

data="$here/data"
models="$here/models"
logs="$here/logs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$models" "$logs"
mkdir -p "$models" "$logs"

# The model: Llama, 4 layers, hidden 128, MLP 384, 4 heads, untied head, 0.92M parameters, byte-level tokenizer.
alloy synth "$work/init" --fine-tunes 0 --layers 4 --hidden 128 --intermediate 384 --heads 4 --kv-heads 4 --dtype float32 --seed 1 >/dev/null

# The base: 4000 steps of 32 on the generic mix (about 4.3 passes), AdamW with weight decay 0.1.
alloy train "$work/init/base" --data "$data/base.jsonl" --out "$models/base" --steps 4000 --batch-size 32 --lr 2e-3 --warmup 100 \
    --weight-decay 0.1 --seed 0 --dtype bfloat16 --log-every 10 2>"$logs/base.log" >/dev/null

# The experts: the same recipe for each, 800 steps of 32 on the task's examples and as many replayed lines of the mix.
for task in increment cipher date length upper; do
    cat "$data/$task/train.jsonl" "$data/$task/replay.jsonl" >"$work/$task.jsonl"
    alloy train "$models/base" --data "$work/$task.jsonl" --out "$models/$task" --steps 800 --batch-size 32 --lr 3e-4 --warmup 20 \
        --weight-decay 0 --seed 0 --dtype bfloat16 --log-every 10 2>"$logs/$task.log" >/dev/null
done

# The LoRA experts: a rank-16 adapter (α 32) on every linear layer of the blocks, trained on the same data for as many
# steps, the base frozen; they are PEFT adapter folders, used as models/base+models/lora-TASK.
# Run from the repository's root, so the adapters name their base as examples/experts/models/base.
for task in increment cipher date length upper; do
    cat "$data/$task/train.jsonl" "$data/$task/replay.jsonl" >"$work/$task.jsonl"
    (cd "$root" && alloy train examples/experts/models/base --data "$work/$task.jsonl" --out "$models/lora-$task" \
        --steps 800 --batch-size 32 --lr 2e-3 --warmup 20 --weight-decay 0 --seed 0 --dtype bfloat16 --log-every 10 \
        --lora-rank 16 --lora-alpha 32 --lora-targets all-linear 2>"$logs/lora-$task.log" >/dev/null)
    rm "$models/lora-$task/metrics.jsonl" "$models/lora-$task/loss.png" # logs/ has the run
done

(cd "$here" && sha256sum models/*/model.safetensors models/*/adapter_model.safetensors >"$here/SHA256SUMS")
echo "wrote $models"
