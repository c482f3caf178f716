#!/usr/bin/env bash
# Start-up benchmark of ld-cas (results in BENCHMARKS.md).
#
# A trivial program (libc only), a program with 20 libraries (each needing only libc) and a
# program with a chain of 20 libraries (each needing the next, the last libc), each built
# five ways and timed side by side: `spawn.c` runs the variants in interleaved rounds (so
# the noise of a busy machine hits all alike), each timed run right after PRIME untimed
# runs of itself (3, or LD_CAS_BENCH_PRIME: so that no variant gains from sharing its
# loader and libc with more of the others; see spawn.c), and reports medians, and the
# median of each variant's per-round difference from the absolute variant (the paired
# difference, which cancels the noise a round shares; the ratios are computed from it):
#   original   linked the ordinary way (libraries through one RUNPATH directory)
#   runpath30  Nix-style: a RUNPATH of 30 directories, one library per directory, libc in
#              the 25th
#   absolute   absolute-path DT_NEEDED entries (Shrinkwrap-style)
#   ld-cas     converted: uri:blake3 names, the standalone ld-cas as PT_INTERP (which maps
#              the store's ld.so itself), libc and ld.so in the store
#   merged     the same conversion with the store's default interpreter: ld-cas merged into
#              a copy of the store's ld.so (one file for the kernel to map)
# then counted with `strace -f -c` (all system calls) and `strace -f -e trace=%file`
# (failed file look-ups).
#
# Before timing, the page cache is dropped and the fixtures' libraries and interpreters are
# kept mapped by another process, so that every variant's files are in the same state as
# the system's (see page-cache.sh; needs root, LD_CAS_BENCH_DROP=0 skips the drop).
#
# Usage: [LD_CAS_BENCH_PRIME=N] [LD_CAS_BENCH_DROP=0] benches/startup/run.sh [RUNS]   (needs
# `cargo build --release --workspace`; N untimed runs before each timed one, default 3, 0
# unprimed)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=page-cache.sh
. "$root/benches/startup/page-cache.sh"
runs=${1:-1000}
prime=${LD_CAS_BENCH_PRIME:-3}
ldcas=$root/target/release/ld-cas
elfpatch=$root/target/release/elfpatch
for tool in gcc patchelf strace python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
[ -x "$ldcas" ] && [ -x "$elfpatch" ] || { echo "run cargo build --release --workspace first" >&2; exit 1; }
if [ -n "${LD_CAS_BENCH_DIR:-}" ]; then   # keep the fixtures for inspection
  w=$LD_CAS_BENCH_DIR; rm -rf "$w"; mkdir -p "$w"
else
  w=$(mktemp -d /tmp/ld-cas-bench.XXXXXX)
  trap 'rm -rf "$w"' EXIT
fi
cd "$w"
mkdir -p src lib bin
libc=/lib/x86_64-linux-gnu/libc.so.6

# Sources.
echo 'int main(void) { return 0; }' >src/trivial.c
{
  for i in $(seq -w 1 20); do echo "int f$i(void);"; done
  echo 'int main(void) { int s = 0;'
  for i in $(seq -w 1 20); do echo "  s += f$i();"; done
  echo '  return s == 210 ? 0 : 1; }'
} >src/many.c
libs=()
for i in $(seq -w 1 20); do
  # Each library calls into libc, as real ones do: it needs libc.so.6, which conversion
  # turns into a URI (the library rewritten).
  printf '#include <unistd.h>\nint f%s(void) { return %d + (getpid() < 0); }\n' "$i" "$((10#$i))" >"src/l$i.c"
  gcc -O2 -shared -fPIC -Wl,-soname,libl$i.so -o "lib/libl$i.so" "src/l$i.c"
  libs+=("-l:libl$i.so")
done

# A chain of 20 libraries (program -> libk01 -> libk02 -> ... -> libk20 -> libc), as in real
# closures, where libraries need each other: every library's name then is needed by a
# library too, not only by the program.
for i in $(seq -w 20 -1 1); do
  next=$(printf %02d $((10#$i + 1)))
  if [ "$i" = 20 ]; then
    printf '#include <unistd.h>\nint k20(void) { return 20 + (getpid() < 0); }\n' >src/k20.c
    needs=()
  else
    printf 'int k%s(void);\nint k%s(void) { return k%s(); }\n' "$next" "$i" "$next" >"src/k$i.c"
    needs=(-Lclib "-l:libk$next.so")
  fi
  mkdir -p clib
  gcc -O2 -shared -fPIC -Wl,-soname,libk$i.so -o "clib/libk$i.so" "src/k$i.c" "${needs[@]}" \
    -Wl,-rpath,"$w/clib"
done
echo 'int k01(void); int main(void) { return k01() == 20 ? 0 : 1; }' >src/chain.c

# original
gcc -O2 -o bin/chain-original src/chain.c -Lclib -l:libk01.so -Wl,-rpath,"$w/clib"
gcc -O2 -o bin/trivial-original src/trivial.c
gcc -O2 -o bin/many-original src/many.c -Llib "${libs[@]}" -Wl,-rpath,"$w/lib"

# runpath30
rp=""
for d in $(seq -w 1 30); do mkdir -p "rp/d$d"; rp="$rp${rp:+:}$w/rp/d$d"; done
for i in $(seq -w 1 20); do cp "lib/libl$i.so" "rp/d$i/"; done
cp "$libc" rp/d25/
gcc -O2 -o bin/trivial-runpath30 src/trivial.c -Wl,--enable-new-dtags,-rpath,"$rp"
gcc -O2 -o bin/many-runpath30 src/many.c -Llib "${libs[@]}" -Wl,--enable-new-dtags,-rpath,"$rp"
# The chain's libraries, one per directory, each with the 30 directories as its RUNPATH.
for i in $(seq -w 1 20); do
  cp "clib/libk$i.so" "rp/d$i/"
  patchelf --set-rpath "$rp" "rp/d$i/libk$i.so"
done
gcc -O2 -o bin/chain-runpath30 src/chain.c -Lclib -l:libk01.so -Wl,--enable-new-dtags,-rpath,"$rp"

# absolute
for p in trivial many; do
  cp "bin/$p-original" "bin/$p-absolute"
  args=(--replace-needed libc.so.6 "$libc")
  for i in $(seq -w 1 20); do args+=(--replace-needed "libl$i.so" "$w/lib/libl$i.so"); done
  patchelf "${args[@]}" "bin/$p-absolute"
  patchelf --remove-rpath "bin/$p-absolute"
done
# The chain: the program lists the whole closure by path, in load order (as Shrinkwrap
# does); the libraries are unchanged, so their names match the loaded libraries' sonames.
# (One edit per patchelf call: this patchelf mixes up --replace-needed and --add-needed
# given together.)
cp bin/chain-original bin/chain-absolute
patchelf --remove-needed libk01.so bin/chain-absolute
args=()
for i in $(seq -w 1 20); do args+=(--add-needed "$w/clib/libk$i.so"); done
patchelf "${args[@]}" bin/chain-absolute
patchelf --replace-needed libc.so.6 "$libc" bin/chain-absolute
patchelf --remove-rpath bin/chain-absolute

# ld-cas: converted by `elfpatch convert` into the store, as a user would (the 20
# libraries are rewritten too: their libc.so.6 becomes a URI), programs in store/bin.
"$elfpatch" store init --store store >/dev/null
mkdir -p in
for p in trivial many chain; do
  cp "bin/$p-original" "in/$p-ld-cas"
  cp "bin/$p-original" "in/$p-merged"
done
"$elfpatch" convert --store store --interp "$ldcas" in/trivial-ld-cas in/many-ld-cas >/dev/null
"$elfpatch" convert --store store in/trivial-merged in/many-merged >/dev/null
# The chain in a store of its own, so that the first store's table stays as it was (one
# page: a larger one is mapped instead of read, which costs the other programs more).
"$elfpatch" store init --store chain-store >/dev/null
"$elfpatch" convert --store chain-store --interp "$ldcas" in/chain-ld-cas >/dev/null
"$elfpatch" convert --store chain-store in/chain-merged >/dev/null
path() {
  case $1-$2 in
    chain-ld-cas | chain-merged) echo "chain-store/bin/$1-$2" ;;
    *-ld-cas | *-merged) echo "store/bin/$1-$2" ;;
    *) echo "bin/$1-$2" ;;
  esac
}

gcc -O2 -o spawn "$root/benches/startup/spawn.c"
variants=(original runpath30 absolute ld-cas merged)
even_page_cache
# Every library and interpreter of the fixtures stays mapped by another process, as the
# system's are by the processes already running (page-cache.sh).
hold_fixtures "$w"
for p in trivial many chain; do
  for v in "${variants[@]}"; do "$(path $p $v)" || { echo "$(path $p $v) failed" >&2; exit 1; }; done
  cmds=()
  for v in "${variants[@]}"; do cmds+=("$(path $p $v)"); done
  # Baseline of the paired differences: the absolute variant (index 2).
  "$w/spawn" "$runs" 100 "$prime" 2 "${cmds[@]}" >"$p.times"
  for v in "${variants[@]}"; do
    strace -f -c -o "$p-$v.count" "$(path $p $v)"
    strace -f -e trace=%file -o "$p-$v.files" "$(path $p $v)"
  done
done

python3 - "${variants[@]}" <<'PY'
import re, sys
variants = sys.argv[1:]
print("| program | variant | median (µs) | p10 (µs) | paired Δ vs absolute (µs) | vs absolute | vs original | syscalls | failed file look-ups | look-ups of `uri:` names |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
names = {"trivial": "trivial", "many": "20 libraries", "chain": "chain of 20"}
for p in names:
    res = {}
    for line in open(f"{p}.times"):
        cmd, med, p10, mean, paired = line.split("\t")
        res[cmd.split("/")[-1].split("-", 1)[1]] = (float(med), float(p10), float(paired))
    for v in variants:
        med, p10, paired = res[v]
        total = 0
        for line in open(f"{p}-{v}.count"):
            parts = line.split()
            if parts and parts[-1] == "total":
                total = int(parts[3])
        files = open(f"{p}-{v}.files").read().splitlines()
        failed = sum(1 for l in files if re.search(r"= -1 E", l))
        uri = sum(1 for l in files if "uri:blake3" in l)
        ab, orig = res["absolute"][0], res["original"][0]
        name = names[p]
        # Ratios from the paired differences: (absolute + Δ) / absolute.
        orig_paired = res["original"][2]
        print(f"| {name} | {v} | {med:.0f} | {p10:.0f} | {paired:+.0f} | {(ab + paired) / ab:.3f} | {(ab + paired) / (ab + orig_paired):.3f} | {total} | {failed} | {uri} |")
PY

# How the page cache held the copies of libc and the interpreters the variants load (see
# folios.py): after the drop, each in 4 KiB pages.
echo
echo "Page cache after timing (pages of each copy of libc and of the interpreters in large folios):"
python3 "$root/benches/startup/folios.py" "$(readlink -f "$libc")" "$w/rp/d25/libc.so.6" \
  "$(find "$w/store/objects" -name libc.so.6 | head -n 1)" \
  "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$(find "$w/store/interp" -name 'ld-linux*' | head -n 1)" |
  sed "s|$w/||; s/^/- /"
