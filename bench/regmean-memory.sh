#!/usr/bin/env bash
# RegMean's memory bound, measured: two fine-tunes of a generated model (LAYERS layers, hidden 1024, MLP 4096), their Gram
# matrices from `alloy regmean`, then `alloy merge` with regmean under /usr/bin/time. The merge holds one tensor's
# Gram matrices at a time, so its peak RSS stays far below the Gram files' total. Results go to docs/performance.md.
# Usage: bench/regmean-memory.sh [LAYERS [WORK_FOLDER]]   (from the repository root; LAYERS 16: about 5 GB of disk)
set -euo pipefail
layers=${1:-16}
work=${2:-/tmp/alloy-regmean-memory}
dotnet build src/Alloy.Cli -c Release -v q -nologo >/dev/null
alloy=src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli
rm -rf "$work" && mkdir -p "$work"
"$alloy" synth "$work/models" --fine-tunes 2 --layers "$layers" --hidden 1024 --intermediate 4096 --heads 16 --kv-heads 4 \
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
rss=$(awk '/Maximum resident/ {print $NF * 1024}' "$work/time.txt")
wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$work/time.txt")
gib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 2^30 }'; }
echo "$layers layers: Gram files $(gib "$grams") GiB; input models $(gib "$models") GiB; merge peak RSS $(gib "$rss") GiB;" \
  "wall clock $wall"
