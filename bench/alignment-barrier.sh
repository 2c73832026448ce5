#!/usr/bin/env bash
# Linear mode connectivity before and after permutation alignment (docs/alignment.md): for each width, two tiny Llamas
# made by `alloy synth` with different seeds and trained by `alloy train` on the same data (the experts' base mix) with
# different data orders; the second aligned to the first by `alloy align` (weight matching, and activation matching on
# 1000 training examples); then the held-out loss at 11 points of the straight line between them, naive and aligned,
# printed as Markdown and drawn to docs/alignment/barrier.png. Deterministic (managed linear algebra). About 25 minutes
# on two cores, most of it training the width-512 pair.
# Usage: bench/alignment-barrier.sh [WORK_FOLDER] [WIDTHS…]   (from the repository root; default 64 128 256 512)
set -euo pipefail
work=${1:-/tmp/alloy-alignment-barrier}
shift || true
widths=("${@:-64 128 256 512}")
read -r -a widths <<< "${widths[*]}"
export ALLOY_LINALG=managed
dotnet build src/Alloy.Cli -c Release -v q -nologo >/dev/null
alloy() { dotnet src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli.dll "$@"; }
mkdir -p "$work"
data=examples/experts/data/base.jsonl
head -27000 "$data" > "$work/train.jsonl"
sed -n 27001,27500p "$data" > "$work/heldout.jsonl"
head -1000 "$data" > "$work/activations.jsonl" # training examples, for activation matching
for w in "${widths[@]}"; do
  for s in 1 2; do
    [[ -f "$work/w$w-s$s/model.safetensors" ]] && continue
    alloy synth "$work/init-w$w-s$s" --fine-tunes 0 --layers 4 --hidden "$w" --intermediate $((3 * w)) --heads 4 \
      --kv-heads 4 --dtype float32 --seed "$s" -q >/dev/null
    alloy train "$work/init-w$w-s$s/base" --data "$work/train.jsonl" --out "$work/w$w-s$s" --steps 1500 \
      --batch-size 32 --lr 2e-3 --warmup 100 --weight-decay 0.1 --seed "$s" --dtype float32 -q --overwrite >/dev/null
  done
  alloy align "$work/w$w-s2" --to "$work/w$w-s1" --out "$work/w$w-s2-weights" --overwrite -q \
    > "$work/align-w$w-weights.txt"
  alloy align "$work/w$w-s2" --to "$work/w$w-s1" --out "$work/w$w-s2-activations" --data "$work/activations.jsonl" \
    --overwrite -q > "$work/align-w$w-activations.txt"
done
dotnet run -c Release --project bench/Alloy.Bench.Quality -- barrier "$work" "$work/heldout.jsonl" \
  docs/alignment/barrier.png
