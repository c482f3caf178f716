#!/usr/bin/env bash
# Where the start-up cost of a converted program goes (results in BENCHMARKS.md): the
# fixtures of run.sh, and variants that each add one part of ld-cas's work, timed side by
# side by spawn.c (paired differences against the first variant):
#   stock           absolute-path DT_NEEDED entries (to the store's own copies of the
#                   libraries, converted ones included, so they are the same files the
#                   converted program loads) and as PT_INTERP a path as long as the merged
#                   interpreter's, a symbolic link to the system's ld.so: the same file
#                   layout as the next variant, only the interpreter differs; the store's
#                   index as DT_RPATH (the converted libraries need libc by URI)
#   merged-only     the same, with the store's merged interpreter as PT_INTERP (ld-cas runs
#                   and finds nothing to do: no store, no names)
#   merged          converted (uri: names, the store's table and index, merged interpreter)
#   short-paths     stock with its DT_NEEDED paths to hard links of the same objects in one
#                   directory with a short path: the same files (inodes) as stock, so that
#                   its difference from stock is what the store's long paths
#                   (STORE/objects/<64 hex>/NAME) cost ld.so
#   short-dirs      the same with hard links in the store's layout but with object
#                   directories named by 8 hex digits (STORE/o/<8 hex>/NAME): how much of
#                   that a store with shorter directory names would save
# each timed run right after 3 untimed runs of itself (as in run.sh), then counts system
# calls (strace -f -c) and page faults (perf stat, address-space randomization off so that
# the counts repeat) of each.
# Last, what priming leaves out: a start whose interpreter was not used since. Two copies
# of the trivial program, each with files of its own that no other variant loads, are
# timed unprimed among programs that use the system's ld.so and libc:
#   lone-stock      a private copy of the system's ld.so and of libc
#   lone-merged     a private copy of the merged interpreter (ld-cas finds nothing to do)
#                   and of libc
# so that their difference is ld-cas's own cost in a start whose pages are not in the
# CPU's caches.
# The page cache is dropped and the fixtures' libraries kept mapped, as in run.sh
# (page-cache.sh); the unprimed copies at the end are not kept mapped.
# Usage: [LD_CAS_BENCH_DROP=0] benches/startup/decompose.sh [RUNS]   (needs `cargo build
# --release --workspace`)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=page-cache.sh
. "$root/benches/startup/page-cache.sh"
runs=${1:-2000}
for tool in patchelf strace perf setarch; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
w=$(mktemp -d /tmp/ld-cas-decompose.XXXXXX)
trap 'rm -rf "$w"' EXIT
# Only the fixtures are wanted: no drop of the page cache there, this script drops it.
LD_CAS_BENCH_DROP=0 LD_CAS_BENCH_DIR=$w/run "$root/benches/startup/run.sh" 3 >/dev/null
cd "$w/run"
merged=$(patchelf --print-interpreter store/bin/trivial-merged)
# A path to the system's ld.so exactly as long as the merged interpreter's.
stock=$(dirname "$(dirname "$merged")")/$(basename "$(dirname "$merged")" | tr '0-9a-f' 'x')/$(basename "$merged")
mkdir -p "$(dirname "$stock")"
ln -sf "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$stock"
# The store's copy of each library the converted programs load, by file name.
object() { find "$PWD/store/objects" -name "$1" | head -n 1; }
mkdir -p h
even_page_cache
hold_fixtures "$PWD"
for p in trivial many; do
  args=()
  short=()
  dirs=()
  names=(libc.so.6)
  [ "$p" = many ] && for i in $(seq -w 1 20); do names+=("libl$i.so"); done
  for name in "${names[@]}"; do
    o=$(object "$name")
    d=store/o/$(basename "$(dirname "$o")" | cut -c1-8)
    mkdir -p "$d"
    ln -f "$o" "h/$name"
    ln -f "$o" "$d/$name"
    args+=(--replace-needed "$name" "$o")
    short+=(--replace-needed "$name" "$PWD/h/$name")
    dirs+=(--replace-needed "$name" "$PWD/$d/$name")
  done
  for v in stock merged-only short-paths short-dirs; do
    cp "bin/$p-original" "bin/$p-$v"
    interp=$stock
    [ "$v" = merged-only ] && interp=$merged
    [ "$v" = short-paths ] && args=("${short[@]}")
    [ "$v" = short-dirs ] && args=("${dirs[@]}")
    # The converted libraries need libc by URI: the index finds it, as for the program.
    patchelf "${args[@]}" "bin/$p-$v"
    patchelf --set-interpreter "$interp" "bin/$p-$v"
    patchelf --force-rpath --set-rpath "$PWD/store/index" "bin/$p-$v"
  done
  variants=("bin/$p-stock" "bin/$p-merged-only" "store/bin/$p-merged" "bin/$p-short-paths" "bin/$p-short-dirs")
  for v in "${variants[@]}"; do "$v" || { echo "$v failed" >&2; exit 1; }; done
  echo "## $p"
  ./spawn "$runs" 100 3 0 "${variants[@]}" |
    awk -F'\t' '{ printf "%-32s median %6.0f µs  paired Δ %+5.0f µs\n", $1, $2, $5 }'
  for v in "${variants[@]}"; do
    printf '%-32s %s system calls, %s page faults\n' "$v" \
      "$(strace -f -c -o /dev/stdout "$v" | awk '$NF == "total" { print $4 }')" \
      "$(setarch -R perf stat -x, -e minor-faults "$v" 2>&1 >/dev/null | awk -F, '/minor-faults/ { print $1 }')"
  done
done

echo "## trivial, unprimed, its interpreter not used since"
libc=$(readlink -f /lib/x86_64-linux-gnu/libc.so.6)
for v in stock merged; do
  mkdir -p "lone-$v"
  cp "$libc" "lone-$v/libc.so.6"
  if [ "$v" = stock ]; then cp "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "lone-$v/ld.so"; else cp "$merged" "lone-$v/ld.so"; fi
  chmod 755 "lone-$v/ld.so"
  cp bin/trivial-original "bin/trivial-lone-$v"
  patchelf --set-interpreter "$PWD/lone-$v/ld.so" --replace-needed libc.so.6 "$PWD/lone-$v/libc.so.6" "bin/trivial-lone-$v"
  "bin/trivial-lone-$v"
done
for k in 2 3; do cp bin/trivial-absolute "bin/trivial-absolute$k"; done
even_page_cache
./spawn "$runs" 100 0 0 bin/trivial-lone-stock bin/trivial-lone-merged bin/trivial-absolute \
  bin/trivial-absolute2 bin/trivial-absolute3 bin/trivial-original |
  awk -F'\t' 'NR <= 2 { printf "%-32s median %6.0f µs  paired Δ %+5.0f µs\n", $1, $2, $5 }'
