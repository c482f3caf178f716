#!/usr/bin/env bash
# elfpatch vs patchelf, side by side: --replace-needed and --set-interpreter on a small
# and a large (> 50 MB) binary. Every run edits a fresh copy (hyperfine --prepare).
# Usage: benches/editor-bench.sh [results.md]   (needs hyperfine, patchelf, gcc)
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

: >"$work/results.md"
for bin in small large; do
  size=$(stat -c %s "$work/$bin")
  for op in replace-needed set-interpreter; do
    case $op in
      replace-needed) args=(--replace-needed libc.so.6 "$uri") ;;
      set-interpreter) args=(--set-interpreter "$interp") ;;
    esac
    hyperfine -N --warmup 3 --min-runs 40 \
      --prepare "cp $work/$bin $work/target" \
      --export-markdown "$work/one.md" \
      -n patchelf "patchelf ${args[*]} $work/target" \
      -n elfpatch "$elfpatch ${args[*]} $work/target" \
      -n "elfpatch, ELFPATCH_FSYNC=0" "env ELFPATCH_FSYNC=0 $elfpatch ${args[*]} $work/target" >&2
    echo "### --$op on $bin ($size bytes)" >>"$work/results.md"
    cat "$work/one.md" >>"$work/results.md"
    echo >>"$work/results.md"
  done
done
cat "$work/results.md" >"$out"
