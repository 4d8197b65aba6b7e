#!/usr/bin/env bash
# Side-by-side asv comparison of two checkouts of fastsuper, run interleaved.
#
#   scripts/compare_versions.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS] [BENCH_REGEX]
#
# Runs the asv suite of this repository (benchmarks/, public API only) against
# the package in each checkout (FASTSUPER_BENCH_CHECKOUT), alternating OLD, NEW, OLD, NEW, ...
# for ROUNDS rounds (default 3) with --append-samples, so each side's result is
# the median over all its rounds; then prints `asv compare` (ratios NEW/OLD,
# flagged past 5%).  ASV_QUICK=1 runs each benchmark once per round (the median is
# then over the rounds).  Both checkouts must be commits of this repository.  Check
# the load average first: the numbers are only fair on a quiet machine.
set -euo pipefail
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd)
rounds=${3:-3}; bench=${4:-.}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
asv=${ASV:-asv}
h_old=$(git -C "$old" rev-parse HEAD); h_new=$(git -C "$new" rev-parse HEAD)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$asv" machine --yes >/dev/null
for r in $(seq 1 "$rounds"); do
  for side in old new; do
    if [ $side = old ]; then dir=$old; hash=$h_old; else dir=$new; hash=$h_new; fi
    echo "round $r: $side ($hash)"
    FASTSUPER_BENCH_CHECKOUT="$dir" "$asv" run --python=same --set-commit-hash="$hash" \
      --append-samples ${ASV_QUICK:+--quick} -b "$bench" --show-stderr >/dev/null || true
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$asv" compare --factor 1.05 --split "$h_old" "$h_new"
