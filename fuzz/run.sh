#!/usr/bin/env bash
# Coverage-guided fuzzing of Alloy's parsers with afl++ and SharpFuzz (docs/design.md, "Fuzzing").
#   fuzz/run.sh TARGET|all [MINUTES] [JOBS]   one campaign per target (default 5 minutes each), JOBS targets at a
#                                             time (default 1; each afl-fuzz takes one core)
# afl's work (queue, crashes, hangs, fuzzer_stats) goes to fuzz/out/TARGET/ (not committed). New crashes and hangs are
# copied to fuzz/crashes/TARGET/, where the replay test runs them until they are fixed or listed in
# fuzz/crashes/KNOWN-OPEN.md.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(safetensors index config torch pickle recipe tokenizer lora)
usage() {
  echo "usage: fuzz/run.sh TARGET|all [MINUTES] [JOBS]   (targets: ${targets[*]})" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 3 ] || usage
if [ "$1" = all ]; then
  selected=("${targets[@]}")
elif [[ " ${targets[*]} " == *" $1 "* ]]; then
  selected=("$1")
else
  usage
fi
minutes=${2:-5}
jobs=${3:-1}
[[ "$minutes" =~ ^[1-9][0-9]*$ && "$jobs" =~ ^[1-9][0-9]*$ ]] || usage

if ! command -v afl-fuzz >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing afl++ with apt-get"
    (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq afl++) >/dev/null
  else
    echo "afl-fuzz is missing: install afl++ (Debian: apt-get install afl++)" >&2
    exit 1
  fi
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
out=$PWD/fuzz/out
bin=$out/bin
# A fresh build every time: sharpfuzz instruments Alloy.dll in place and refuses a copy it has instrumented before.
rm -rf "$bin"
dotnet tool restore >/dev/null
dotnet publish fuzz/Alloy.Fuzz -c Release -o "$bin" -v quiet >/dev/null
dotnet tool run sharpfuzz "$bin/Alloy.dll" >/dev/null

# One campaign; its summary line goes to $out/$target.summary (campaigns may run side by side).
campaign() {
  local target=$1 work=$out/$1 status=0 dict=() stats new known line kind file hash
  rm -rf "$work"
  mkdir -p "$work/tmp"
  echo "== $target: fuzzing for $minutes min (log: $work/afl.log)"
  [ -f "fuzz/dict/$target.dict" ] && dict=(-x "fuzz/dict/$target.dict")
  # dotnet is not a binary afl instrumented (SharpFuzz answers afl's fork-server protocol itself), hence the skipped
  # check; the rest keep afl from refusing to start on a shared machine or a container. The target's temporary files
  # go under the work folder, so a run killed at a timeout leaves nothing in /tmp.
  TMPDIR=$work/tmp AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
    AFL_NO_AFFINITY=1 AFL_FORKSRV_INIT_TMOUT=60000 \
    afl-fuzz -i "fuzz/corpus/$target" -o "$work" "${dict[@]}" -t 5000 -m none -V $((minutes * 60)) \
    -- dotnet "$bin/Alloy.Fuzz.dll" "$target" >"$work/afl.log" 2>&1 || status=$?
  stats=$work/default/fuzzer_stats
  if [ ! -f "$stats" ]; then
    echo "afl-fuzz did not run (exit $status):" >&2
    tail -n 20 "$work/afl.log" >&2
    echo "$target: afl-fuzz failed, see $work/afl.log" >"$out/$target.summary"
    return
  fi
  stat() { sed -n "s/^$1 *: //p" "$stats"; }
  # Findings are named by content, so a finding seen before (under any name) is not copied again.
  mkdir -p "fuzz/crashes/$target"
  known=$(find fuzz/crashes/"$target" -type f -exec sha1sum {} + | cut -c1-40)
  new=0
  for kind in crash hang; do
    for file in "$work/default/${kind}es"/id:* "$work/default/${kind}s"/id:*; do
      [ -f "$file" ] || continue
      hash=$(sha1sum "$file" | cut -c1-40)
      grep -q "$hash" <<<"$known" && continue
      cp "$file" "fuzz/crashes/$target/new-$kind-${hash:0:12}"
      known+=$'\n'$hash
      new=$((new + 1))
    done
  done
  line="$target: $(stat execs_done) execs, $(stat corpus_count) paths, $(stat bitmap_cvg) map coverage"
  line+=" ($(stat edges_found) edges), $(stat saved_crashes) crashes, $(stat saved_hangs) hangs"
  line+=", $new new files in fuzz/crashes/$target"
  echo "$line"
  echo "$line" >"$out/$target.summary"
}

running=0
for target in "${selected[@]}"; do
  campaign "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

echo
echo "== summary ($minutes min per target)"
for target in "${selected[@]}"; do cat "$out/$target.summary"; done
# Not with the program in $bin: its instrumented Alloy.dll runs only under afl.
echo "replay a finding: dotnet run --project fuzz/Alloy.Fuzz -- replay TARGET FILE"
