#!/usr/bin/env bash
# Prints the sha256 of every file a merge writes (model card aside) for every config in examples/ and in
# bench/output-hashes/ (every method, with non-default parameters). Run it before and after a refactor and diff the
# two listings: a change that should not change results must print the same hashes.
#   bench/output-hashes.sh > before.txt; …change…; bench/output-hashes.sh > after.txt; diff before.txt after.txt
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet build src/Alloy.Cli -c Release -o "$out/bin" >/dev/null
for cfg in examples/*.yml bench/output-hashes/*.yml; do
  name=$(basename "$(dirname "$cfg")")-$(basename "$cfg" .yml)
  dotnet "$out/bin/Alloy.Cli.dll" merge "$cfg" "$out/$name" --quiet >/dev/null 2>&1 || { echo "$name FAILED"; continue; }
  (cd "$out/$name" && find . -type f ! -name README.md | sort | xargs sha256sum | sed "s|  ./|  $name/|")
done
