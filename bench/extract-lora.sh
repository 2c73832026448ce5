#!/usr/bin/env bash
# alloy extract-lora on a generated 240M-parameter pair (16 layers, hidden 1024, MLP 4096, bfloat16), rank 128, on one
# thread and on all cores, under /usr/bin/time. Results go to docs/performance.md.
# Usage: bench/extract-lora.sh [WORK_FOLDER]   (from the repository root; about 1.5 GB of disk)
set -euo pipefail
work=${1:-/tmp/alloy-extract-lora}
dotnet build src/Alloy.Cli -c Release -v q -nologo >/dev/null
alloy=src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli
rm -rf "$work" && mkdir -p "$work"
"$alloy" synth "$work/models" --fine-tunes 1 --layers 16 --hidden 1024 --intermediate 4096 --heads 16 --kv-heads 4 \
  --dtype bfloat16 -q >/dev/null
for threads in 1 "$(nproc)"; do
  /usr/bin/time -v "$alloy" extract-lora --model "$work/models/finetune-1" --base-model "$work/models/base" \
    --out-path "$work/adapter-$threads" --threads "$threads" -q > "$work/report-$threads.txt" 2> "$work/time-$threads.txt"
  rss=$(awk '/Maximum resident/ {print $NF * 1024}' "$work/time-$threads.txt")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$work/time-$threads.txt")
  cpu=$(awk -F': ' '/Percent of CPU/ {print $2}' "$work/time-$threads.txt")
  echo "$threads thread(s): $(tail -1 "$work/report-$threads.txt"); wall clock $wall, CPU $cpu," \
    "peak RSS $(awk -v b="$rss" 'BEGIN { printf "%.2f", b / 2^30 }') GiB"
done
cmp -s "$work/adapter-1/adapter_model.safetensors" "$work/adapter-$(nproc)/adapter_model.safetensors" \
  && echo "the same adapter bytes at both thread counts"
