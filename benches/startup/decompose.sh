#!/usr/bin/env bash
# Where the start-up cost of a converted program goes (results in BENCHMARKS.md): the
# fixtures of run.sh, and variants that add one part of ld-cas's work at a time, timed
# side by side by spawn.c against absolute-path DT_NEEDED entries:
#   absolute        absolute-path DT_NEEDED, the system's ld.so as PT_INTERP
#   merged-only     the same program, the store's merged interpreter as PT_INTERP (ld-cas
#                   runs and finds nothing to do: no store, no names)
#   standalone-only the same program, the standalone ld-cas as PT_INTERP (it maps ld.so)
#   merged          converted (uri: names, the store's table and index, merged interpreter)
# Usage: benches/startup/decompose.sh [RUNS]   (needs `cargo build --release --workspace`)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-2000}
w=$(mktemp -d /tmp/ld-cas-decompose.XXXXXX)
trap 'rm -rf "$w"' EXIT
LD_CAS_BENCH_DIR=$w/run "$root/benches/startup/run.sh" 3 >/dev/null
cd "$w/run"
merged=$(patchelf --print-interpreter store/bin/trivial-merged)
for p in trivial many; do
  cp "bin/$p-absolute" "bin/$p-merged-only"
  patchelf --set-interpreter "$merged" "bin/$p-merged-only"
  cp "bin/$p-absolute" "bin/$p-standalone-only"
  patchelf --set-interpreter "$root/target/release/ld-cas" "bin/$p-standalone-only"
  echo "## $p"
  ./spawn "$runs" 100 0 "bin/$p-absolute" "bin/$p-merged-only" "bin/$p-standalone-only" \
    "store/bin/$p-merged" | awk -F'\t' '{ printf "%-40s median %6.0f µs  paired Δ %+5.0f µs\n", $1, $2, $5 }'
  for v in "bin/$p-absolute" "bin/$p-merged-only" "store/bin/$p-merged"; do
    printf '%-40s %s syscalls, %s page faults\n' "$v" \
      "$(strace -f -c -o /dev/stdout "$v" | awk '$NF == "total" { print $4 }')" \
      "$( { /usr/bin/time -f %R "$v" >/dev/null; } 2>&1)"
  done
done
