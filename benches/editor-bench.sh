#!/usr/bin/env bash
# elfpatch vs patchelf, side by side: --replace-needed and --set-interpreter on a small
# and a large (> 50 MB) binary. Every run edits a fresh copy (hyperfine --prepare).
# Prints a markdown table of medians and the elfpatch/patchelf ratio.
# Usage: benches/editor-bench.sh [results.md]   (needs hyperfine, patchelf, gcc, python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/dev/stdout}
cargo build --release -p elfpatch --manifest-path "$root/Cargo.toml" >&2
elfpatch="$root/target/release/elfpatch"
work=$(mktemp -d "$root/target/editor-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

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
    for mode in fsync nofsync; do
      [ "$mode" = nofsync ] && export ELFPATCH_FSYNC=0 || unset ELFPATCH_FSYNC
      runs=40; [ "$bin" = small ] && runs=300
      hyperfine -N --warmup 5 --min-runs "$runs" \
        --prepare "cp $work/$bin $work/target" \
        --export-json "$work/$bin-$op-$mode.json" \
        -n patchelf "patchelf ${args[*]} $work/target" \
        -n elfpatch "$elfpatch ${args[*]} $work/target" >&2
    done
    unset ELFPATCH_FSYNC
  done
done

python3 - "$work" >"$out" <<'PY'
import json, os, sys
work = sys.argv[1]
print("| binary | edit | patchelf [ms] | elfpatch [ms] | elfpatch / patchelf | patchelf [ms] | elfpatch, ELFPATCH_FSYNC=0 [ms] | elfpatch / patchelf |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for b in ("small", "large"):
    size = os.path.getsize(os.path.join(work, b))
    for op in ("replace-needed", "set-interpreter"):
        cells = []
        for mode in ("fsync", "nofsync"):
            r = {x["command"]: x for x in json.load(open(f"{work}/{b}-{op}-{mode}.json"))["results"]}
            p, e = (r[k]["median"] * 1000 for k in ("patchelf", "elfpatch"))
            cells += [f"{p:.1f}", f"{e:.1f}", f"{e/p:.2f}"]
        print(f"| {b} ({size/1e6:.1f} MB) | --{op} | " + " | ".join(cells) + " |")
PY
