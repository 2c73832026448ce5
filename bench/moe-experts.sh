#!/usr/bin/env bash
# Mixtures of experts on the tiny experts (examples/experts), end to end with Alloy alone, printed as Markdown for
# docs/moe.md:
#   1. five MLP-only experts (the base frozen outside the MLPs: `alloy train --only`), since a mergekit-moe MoE takes
#      attention, norms, embeddings and head from the base and only the experts' MLPs;
#   2. `alloy moe` with hidden, hidden_avg and cheap_embed gates from 16 training prompts per task; each one's routing
#      table per task and its accuracy;
#   3. the hidden and hidden_avg MoEs' routers alone trained on a small mixed set (`alloy train MOE --only router`), the same;
#   4. dense merges of the same experts (task arithmetic, TIES) and MC-SMoE compression to 3 experts, for comparison.
# Deterministic (managed linear algebra, seeded training). About 12 minutes on two cores. Needs jq.
# Usage: bench/moe-experts.sh [WORK_FOLDER]   (from the repository root; reuses experts already in WORK_FOLDER)
set -euo pipefail
work=${1:-/tmp/alloy-moe-experts}
export ALLOY_LINALG=managed
dotnet build src/Alloy.Cli -c Release -v q -nologo >/dev/null
alloy() { dotnet src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli.dll "$@"; }
experts=examples/experts
tasks=(increment cipher date length upper)
mkdir -p "$work"

# 1. MLP-only experts: the recipe of examples/experts, with only the MLP weights trained (at a larger learning rate).
for t in "${tasks[@]}"; do
  [[ -f "$work/mlp-$t/model.safetensors" ]] && continue
  cat "$experts/data/$t/train.jsonl" "$experts/data/$t/replay.jsonl" > "$work/$t.jsonl"
  alloy train "$experts/models/base" --data "$work/$t.jsonl" --out "$work/mlp-$t" --steps 800 --batch-size 32 \
    --lr 1e-3 --warmup 20 --weight-decay 0 --seed 0 --dtype bfloat16 --only 'model.layers.*.mlp.*' -q --overwrite \
    >/dev/null
done

# 2. The MoEs: gates from each task's first 16 training prompts by mergekit's hidden (last token), hidden_avg (mean
# over the prompt) and cheap_embed (summed embeddings); two experts per token (with one, Mixtral's renormalised
# top-1 weight is always 1 and the router gets no gradient).
gates=(hidden hidden_avg cheap_embed)
for gate in "${gates[@]}"; do
  {
    echo "base_model: $experts/models/base"
    echo "gate_mode: $gate"
    echo "dtype: bfloat16"
    echo "experts_per_token: 2"
    echo "experts:"
    for t in "${tasks[@]}"; do
      echo "  - source_model: $work/mlp-$t"
      echo "    positive_prompts:"
      head -16 "$experts/data/$t/train.jsonl" | jq -r '.prompt | "      - " + tojson'
    done
  } > "$work/moe-$gate.yml"
  alloy moe "$work/moe-$gate.yml" "$work/moe-$gate" --overwrite -q 2> "$work/moe-$gate-warnings.txt" >/dev/null
done

# 3. The router trained alone: 100 examples per task (training lines the gates' prompts did not use), 300 steps.
for t in "${tasks[@]}"; do sed -n '1001,1100p' "$experts/data/$t/train.jsonl"; done > "$work/router-mix.jsonl"
for gate in hidden hidden_avg; do
  alloy train "$work/moe-$gate" --data "$work/router-mix.jsonl" --out "$work/moe-$gate-routed" --only router \
    --steps 300 --batch-size 32 --lr 1e-2 --warmup 10 --weight-decay 0 --seed 0 -q --overwrite \
    > "$work/router-train-$gate.txt"
done

# 4. For comparison: dense merges of the same experts, and the trained MoE compressed to 3 experts.
for method in task_arithmetic ties; do
  {
    echo "merge_method: $method"
    echo "base_model: $experts/models/base"
    # λ as docs/quality.md chose on validation for the full experts: 1 for the sum, 1.8 for TIES's disjoint mean.
    [[ $method == ties ]] && echo "parameters: {lambda: 1.8}" || echo "parameters: {lambda: 1.0}"
    echo "models:"
    for t in "${tasks[@]}"; do
      echo "  - model: $work/mlp-$t"
      [[ $method == ties ]] && echo "    parameters: {weight: 1.0, density: 0.5}" \
        || echo "    parameters: {weight: 1.0}"
    done
    echo "dtype: bfloat16"
  } > "$work/$method.yml"
done
alloy moe-compress "$work/moe-hidden-routed" "$work/moe-hidden-routed-3" --experts 3 --data "$work/router-mix.jsonl" -q \
  --overwrite > "$work/compress.txt"

# The measurements: every model on every task's 200 test items, with each task's routing counts.
evaluate() { alloy eval "$1" --tasks "$experts/data/test.jsonl" -q; }
for t in "${tasks[@]}"; do evaluate "$work/mlp-$t" > "$work/eval-mlp-$t.json"; done
for m in moe-hidden moe-hidden_avg moe-cheap_embed moe-hidden-routed moe-hidden_avg-routed moe-hidden-routed-3 task_arithmetic.yml ties.yml; do
  src="$work/$m"
  evaluate "$src" > "$work/eval-${m%.yml}.json"
done

join() { local IFS='|'; echo "$*" | sed 's/|/ | /g'; }
accuracy() { jq -r '[.tasks[] | (100 * .exact_match * 10 | round / 10 | tostring)] | join(" | ")' "$1"; }
echo "| model | $(join "${tasks[@]}") | average |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for t in "${tasks[@]}"; do
  echo "| MLP-only expert \`$t\` | $(accuracy "$work/eval-mlp-$t.json") | $(jq '[.tasks[].exact_match] | add / length * 1000 | round / 10' "$work/eval-mlp-$t.json") |"
done
for m in task_arithmetic ties moe-hidden moe-hidden_avg moe-cheap_embed moe-hidden-routed moe-hidden_avg-routed moe-hidden-routed-3; do
  echo "| \`$m\` | $(accuracy "$work/eval-$m.json") | $(jq '[.tasks[].exact_match] | add / length * 1000 | round / 10' "$work/eval-$m.json") |"
done
for m in moe-hidden moe-hidden_avg moe-cheap_embed moe-hidden-routed moe-hidden_avg-routed; do
  echo
  echo "Routing of \`$m\`: each task's expert choices over all layers and tokens (%):"
  echo
  echo "| task | $(join "${tasks[@]}") |"
  echo "|---|---:|---:|---:|---:|---:|"
  jq -r '.tasks[] | "| `" + .name + "` | " + ([.routing | map(.counts) | transpose[] | add] as $c
    | ($c | add) as $n | $c | map(100 * . / $n * 10 | round / 10 | tostring) | join(" | ")) + " |"' \
    "$work/eval-$m.json"
done
echo
for gate in hidden hidden_avg; do echo "Router training from \`$gate\`: $(tail -1 "$work/router-train-$gate.txt")"; echo; done
echo
echo "MC-SMoE compression of the trained MoE to 3 experts:"
echo
sed 's/^/    /' "$work/compress.txt"
