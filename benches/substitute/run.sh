#!/usr/bin/env bash
# Substituting one library under 100 dependents, against converting the same closure from
# scratch (results in BENCHMARKS.md).
#
# libbase.so.1 (1.0 and a compatible 1.1), 100 libraries that need it, a program that
# needs all 100. Timed with hyperfine, each run on a fresh copy of the converted store:
# `elfpatch substitute STORE <libbase 1.0> <libbase 1.1 file>` (check, convert and add
# 1.1, rewrite the 100 libraries and the program), and `elfpatch convert` of the program
# into an empty store. Bytes written from the JSON reports.
#
# Usage: benches/substitute/run.sh [RUNS]   (needs `cargo build --release --workspace`)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-20}
elfpatch=$root/target/release/elfpatch
ld_cas=$root/target/release/ld-cas
command -v hyperfine >/dev/null || { echo "hyperfine is missing: run scripts/install-deps.sh" >&2; exit 1; }
[ -x "$elfpatch" ] || { echo "run cargo build --release --workspace first" >&2; exit 1; }
w=$(mktemp -d /tmp/ld-cas-substitute-bench.XXXXXX)
trap 'rm -rf "$w"' EXIT

mkdir -p "$w/base-1.0" "$w/base-1.1" "$w/deps"
echo 'int base(void) { return 1; }' >"$w/base.c"
echo 'int base(void) { return 2; } int base_more(void) { return 3; }' >"$w/base11.c"
gcc -shared -fPIC -Wl,-soname,libbase.so.1 "$w/base.c" -o "$w/base-1.0/libbase.so.1"
gcc -shared -fPIC -Wl,-soname,libbase.so.1 "$w/base11.c" -o "$w/base-1.1/libbase.so.1"
links=()
calls=""
for i in $(seq 1 100); do
  echo "int base(void); int dep$i(void) { return base() + $i; }" >"$w/dep$i.c"
  gcc -shared -fPIC -Wl,-soname,libdep$i.so "$w/dep$i.c" -o "$w/deps/libdep$i.so" \
    -L"$w/base-1.0" -Wl,-rpath,"$w/base-1.0" -l:libbase.so.1
  links+=("-l:libdep$i.so")
  calls="$calls int dep$i(void);"
done
echo "#include <stdio.h>
$calls
int main(void) { printf(\"%d\\n\", dep1() + dep100()); return 0; }" >"$w/main.c"
gcc "$w/main.c" -o "$w/app" -L"$w/deps" -Wl,-rpath,"$w/deps" -Wl,--no-as-needed "${links[@]}"

"$elfpatch" store init --store "$w/store0" --ld-cas "$ld_cas" >/dev/null
convert_json=$("$elfpatch" convert --json --store "$w/store0" "$w/app" 2>/dev/null)
base_uri=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print([o["uri"] for o in r["objects"] if o["soname"]=="libbase.so.1"][0])' "$convert_json")
echo "converted app before: $("$w/store0/bin/app")"
rm -rf "$w/s" && cp -a "$w/store0" "$w/s"
sub_json=$("$elfpatch" substitute --json --store "$w/s" "$base_uri" "$w/base-1.1/libbase.so.1")
echo "converted app after substitution: $("$w/s/bin/app")"
python3 - "$convert_json" "$sub_json" <<'PY'
import json, sys
c, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"convert: {c['libraries']} libraries, {c['bytes_written']} bytes written")
print(f"substitute: {len(s['rewritten'])} dependents rewritten, {s['bytes_written']} bytes written")
PY
hyperfine -N -w 2 -r "$runs" \
  --prepare "sh -c 'rm -rf $w/s $w/fresh && cp -a $w/store0 $w/s && $elfpatch store init --store $w/fresh --ld-cas $ld_cas >/dev/null && sync'" \
  -n substitute "$elfpatch substitute --store $w/s $base_uri $w/base-1.1/libbase.so.1" \
  -n "convert from scratch" "$elfpatch convert --store $w/fresh $w/app"
