#!/usr/bin/env bash
# elfpatch vs patchelf, side by side: --replace-needed and --set-interpreter on a small
# and a large (> 50 MB) binary. `benches/editor/paired.c` runs the commands in interleaved
# rounds, each on a fresh copy of the binary (the copy is not timed), and reports medians
# and the paired difference from patchelf (the median over rounds of elfpatch − patchelf
# within one round). Prints a markdown table; ratios are (patchelf + Δ) / patchelf.
# Usage: [PATCHELF=...] benches/editor-bench.sh [results.md]   (needs patchelf, gcc, python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/dev/stdout}
cargo build --release -p elfpatch --manifest-path "$root/Cargo.toml" >&2
elfpatch="$root/target/release/elfpatch"
# PATCHELF=/path/to/patchelf compares against another build (say 0.19, built from the
# suite's tree); Debian's 0.14.3 by default.
patchelf=${PATCHELF:-$(command -v patchelf)}
work=$(mktemp -d "$root/target/editor-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

gcc -O2 -o "$work/paired" "$root/benches/editor/paired.c"
cp /usr/bin/ls "$work/small"
gcc -O1 -o "$work/large" "$root/benches/editor/big.c"
uri="uri:blake3:$(printf 'ab%.0s' $(seq 32))"
interp="/nix/store/$(printf 'z%.0s' $(seq 32))-glibc-2.40/lib/ld-linux-x86-64.so.2"

for bin in small large; do
  for op in replace-needed set-interpreter; do
    case $op in
      replace-needed) args=(--replace-needed libc.so.6 "$uri") ;;
      set-interpreter) args=(--set-interpreter "$interp") ;;
    esac
    rounds=500; [ "$bin" = large ] && rounds=40
    "$work/paired" "$rounds" "$work/$bin" "$work/target" \
      patchelf "$patchelf" "${args[@]}" -- \
      elfpatch "$elfpatch" "${args[@]}" -- \
      nosync ELFPATCH_FSYNC=0 "$elfpatch" "${args[@]}" >"$work/$bin-$op.tsv"
  done
done

python3 - "$work" >"$out" <<'PY'
import os, sys
work = sys.argv[1]
print("| binary | edit | patchelf [ms] | elfpatch [ms] | Δ [ms] | elfpatch / patchelf | elfpatch, ELFPATCH_FSYNC=0 [ms] | Δ [ms] | ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for b in ("small", "large"):
    size = os.path.getsize(os.path.join(work, b))
    for op in ("replace-needed", "set-interpreter"):
        r = {}
        for line in open(f"{work}/{b}-{op}.tsv"):
            name, med, p10, paired = line.split("\t")
            r[name] = (float(med) / 1000, float(paired) / 1000)
        p = r["patchelf"][0]
        cells = [f"{p:.2f}"]
        for k in ("elfpatch", "nosync"):
            med, d = r[k]
            cells += [f"{med:.2f}", f"{d:+.2f}", f"{(p + d) / p:.2f}"]
        print(f"| {b} ({size/1e6:.1f} MB) | --{op} | " + " | ".join(cells) + " |")
PY
