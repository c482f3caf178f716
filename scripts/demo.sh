#!/usr/bin/env bash
# The main job on a built-in example: convert real programs (curl and python3) and their
# closures into a content-addressed store, run them, move the store, run them again, and
# say what happened and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --workspace --locked
elfpatch=$PWD/target/release/elfpatch

work=$(mktemp -d "${TMPDIR:-/tmp}/ld-cas-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
ms() { date +%s%N; }
step() {
  local title=$1; shift
  local start end
  start=$(ms)
  "$@"
  end=$(ms)
  printf '   [%s: %d ms]\n' "$title" $(( (end - start) / 1000000 ))
}
py_check='import ssl, sqlite3, json, zlib; print("python", ssl.OPENSSL_VERSION, "sqlite", sqlite3.sqlite_version)'
run_programs() {
  local bin=$1
  "$bin/curl" --version | sed -n 1p
  "$bin/python3" -c "$py_check"
}
# Fails the demo when the programs in $1 do not print what the originals print.
same_output() {
  if diff <(run_programs /usr/bin) <(run_programs "$1"); then
    echo "   same output"
  else
    echo "demo: the programs in $1 print something else than the originals" >&2
    exit 1
  fi
}

echo "== ld-cas is installed at a stable path, outside the store: $work/opt/ld-cas"
mkdir -p "$work/opt"
cp target/release/ld-cas "$work/opt/ld-cas"

echo "== 1. Create the store $work/store"
step init "$elfpatch" store init --store "$work/store" >/dev/null

echo "== 2. Convert /usr/bin/curl and /usr/bin/python3 with their closures"
step convert "$elfpatch" convert --store "$work/store" --interp "$work/opt/ld-cas" /usr/bin/curl /usr/bin/python3
echo "   what the converted curl needs now:"
readelf -dW "$work/store/bin/curl" | awk '/NEEDED/ && n++ < 3 {print "     " $NF}'
echo "     ..."

echo "== 3. Run the originals and the converted programs"
step originals run_programs /usr/bin
step converted run_programs "$work/store/bin"
same_output "$work/store/bin"

echo "== 4. Move the store to $work/elsewhere/store2"
mkdir -p "$work/elsewhere"
step move mv "$work/store" "$work/elsewhere/store2"

echo "== 5. Run them again from the new place (no file was rewritten)"
step converted-after-move run_programs "$work/elsewhere/store2/bin"
same_output "$work/elsewhere/store2/bin"

echo "== 6. Check every object against its address"
step verify "$elfpatch" store verify --store "$work/elsewhere/store2"
echo "== How ld-cas resolved curl's libraries (LD_CAS_DEBUG=1, first lines):"
# sed reads to the end (head would close the pipe early and stop curl with SIGPIPE).
LD_CAS_DEBUG=1 "$work/elsewhere/store2/bin/curl" --version 2>&1 >/dev/null | sed -n '1,4s/^/   /p'
