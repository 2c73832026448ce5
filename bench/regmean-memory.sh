#!/usr/bin/env bash
# RegMean's memory bound, measured: two fine-tunes of a generated 8-layer model (hidden 1024, MLP 4096), their Gram
# matrices from `alloy regmean`, then `alloy merge` with regmean under /usr/bin/time. The merge holds one tensor's
# Gram matrices at a time, so its peak RSS stays far below the Gram files' total. Results go to docs/performance.md.
# Usage: bench/regmean-memory.sh [WORK_FOLDER]   (from the repository root; about 4 GB of disk)
set -euo pipefail
work=${1:-/tmp/alloy-regmean-memory}
dotnet build src/Alloy.Cli -c Release -v q -nologo >/dev/null
alloy=src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli
rm -rf "$work" && mkdir -p "$work"
"$alloy" synth "$work/models" --fine-tunes 2 --layers 8 --hidden 1024 --intermediate 4096 --heads 16 --kv-heads 4 \
  --dtype bfloat16 -q >/dev/null
for i in $(seq 1 64); do echo "example $i: the quick brown fox jumps over the lazy dog $((i * 7919 % 1000))"; done \
  > "$work/data.txt"
for m in 1 2; do
  "$alloy" regmean "$work/models/finetune-$m" --data "$work/data.txt" -o "$work/gram-$m.safetensors" -q >/dev/null
done
cat > "$work/regmean.yml" <<YAML
merge_method: regmean
models:
  - model: $work/models/finetune-1
    parameters: {gram: $work/gram-1.safetensors}
  - model: $work/models/finetune-2
    parameters: {gram: $work/gram-2.safetensors}
dtype: bfloat16
YAML
/usr/bin/time -v "$alloy" merge "$work/regmean.yml" "$work/merged" -q --memory-limit 1G 2> "$work/time.txt"
grams=$(( $(stat -c %s "$work/gram-1.safetensors") + $(stat -c %s "$work/gram-2.safetensors") ))
models=$(( $(du -sb "$work/models/finetune-1" | cut -f1) + $(du -sb "$work/models/finetune-2" | cut -f1) ))
rss=$(awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2 * 1024}' "$work/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
printf 'Gram files: %.2f GiB; input models: %.2f GiB; merge peak RSS: %.2f GiB; wall clock %s\n' \
  "$(echo "$grams / 2^30" | bc -l)" "$(echo "$models / 2^30" | bc -l)" "$(echo "$rss / 2^30" | bc -l)" "$wall"
