#!/usr/bin/env bash
# alloy extract-lora on a generated 240M-parameter pair (16 layers, hidden 1024, MLP 4096, bfloat16), rank 128, under
# /usr/bin/time: --svd exact and auto (randomized where the rank is far below the module) on one thread and on all
# cores, auto with --rank-by energy (ranks known only after the SVDs: the spill-file path), and the same on a 4-layer
# pair to show that peak memory does not follow the model's size. Also each randomized module's error over the exact
# SVD's (the Eckart–Young optimum). Results go to docs/performance.md.
# Usage: bench/extract-lora.sh [WORK_FOLDER]   (from the repository root; about 2 GB of disk)
set -euo pipefail
work=${1:-/tmp/alloy-extract-lora}
dotnet build src/Alloy.Cli -c Release -v q -nologo >/dev/null
alloy=src/Alloy.Cli/bin/Release/net10.0/Alloy.Cli
rm -rf "$work" && mkdir -p "$work"
for layers in 16 4; do
  "$alloy" synth "$work/models-$layers" --fine-tunes 1 --layers "$layers" --hidden 1024 --intermediate 4096 \
    --heads 16 --kv-heads 4 --dtype bfloat16 -q >/dev/null
done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# run NAME LAYERS THREADS [OPTIONS…]: one extraction under /usr/bin/time, and a line of its figures.
run() {
  local name=$1 layers=$2 threads=$3
  shift 3
  /usr/bin/time -v "$alloy" extract-lora --model "$work/models-$layers/finetune-1" \
    --base-model "$work/models-$layers/base" --out-path "$work/$name" --threads "$threads" -q "$@" \
    > "$work/$name.txt" 2> "$work/$name.time"
  local rss wall cpu
  rss=$(awk '/Maximum resident/ {print $NF * 1024}' "$work/$name.time")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$work/$name.time")
  cpu=$(awk -F': ' '/Percent of CPU/ {print $2}' "$work/$name.time")
  echo "$name: $layers layers, $threads thread(s) $*: $(grep -c ' svd randomized ' "$work/$name.txt" || true)" \
    "randomized modules; wall clock $wall, CPU $cpu, peak RSS" \
    "$(awk -v b="$rss" 'BEGIN { printf "%.0f", b / 2^20 }') MiB, adapter" \
    "$(du -m "$work/$name/adapter_model.safetensors" | cut -f1) MB"
}

run exact-1 16 1 --svd exact
run exact-n 16 "$(nproc)" --svd exact
run auto-1 16 1
run auto-n 16 "$(nproc)"
run energy-n 16 "$(nproc)" --rank-by energy:0.15
run exact-small 4 "$(nproc)" --svd exact
run auto-small 4 "$(nproc)"

for pair in "exact-1 exact-n" "auto-1 auto-n"; do
  set -- $pair
  cmp -s "$work/$1/adapter_model.safetensors" "$work/$2/adapter_model.safetensors" \
    && echo "$1 and $2: the same adapter bytes" || echo "$1 and $2: DIFFERENT adapter bytes"
done
# Error of each randomized module over the exact SVD's error of the same module (the last field of a report line).
awk 'FNR == NR { if ($1 ~ /\./ || $1 == "lm_head") exact[$1] = $NF; next }
     $0 ~ / svd randomized / { r = $NF / exact[$1]; n++; sum += r; if (r > max) max = r; if (min == "" || r < min) min = r }
     END { printf "randomized/exact error over %d modules: mean %.4f, min %.4f, max %.4f\n", n, sum / n, min, max }' \
  "$work/exact-1.txt" "$work/auto-1.txt"
grep ' svd ' "$work/energy-n.txt" | awk '{ svd[$5]++ } END { for (s in svd) printf "energy:0.15: %d modules %s\n", svd[s], s }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
