#!/usr/bin/env bash
# The main job on a built-in example: put a real program's closure into a store, check it,
# move the store, check it again, and time each step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --workspace --locked
elfpatch=$PWD/target/release/elfpatch

work=$(mktemp -d "${TMPDIR:-/tmp}/ld-cas-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() {
  local title=$1; shift
  local start end
  start=$(date +%s%N)
  "$@"
  end=$(date +%s%N)
  printf '   (%s: %d ms)\n' "$title" $(( (end - start) / 1000000 ))
}

program=/usr/bin/curl
[ -x "$program" ] || program=/bin/ls
closure=$(ldd "$program" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u)

echo "== 1. Create a store in $work/store"
step init "$elfpatch" store init --store "$work/store" >/dev/null
echo "== 2. Add $program and its closure ($(echo "$closure" | wc -l) libraries)"
step add "$elfpatch" store add --store "$work/store" "$program" $closure
echo "== 3. Verify every object against its address"
step verify "$elfpatch" store verify --store "$work/store"
echo "== 4. Move the store to $work/moved"
step move mv "$work/store" "$work/moved"
echo "== 5. Verify and resolve from the new place, with no other step"
step verify "$elfpatch" store verify --store "$work/moved"
uri=$("$elfpatch" store list --store "$work/moved" | awk -F'\t' '$2 == "program" {print $1; exit}')
step resolve "$elfpatch" store resolve --store "$work/moved" "$uri"
