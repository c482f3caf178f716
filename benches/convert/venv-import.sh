#!/usr/bin/env bash
# Import time of a converted Python prefix against the original (results in BENCHMARKS.md).
#
# A default venv (`/usr/bin/python3 -m venv`, pillow from PyPI), run once to compile its
# `.pyc` files, converted as a tree (`elfpatch convert`, which keeps every file's times, so
# the `.pyc` files stay valid); then `import PIL.Image, json, decimal, sqlite3, ssl` by the
# original venv's python and by the converted one (hyperfine,
# runs of each, one command after the other), and the ratio of the means and of the medians.
#
# Usage: benches/convert/venv-import.sh [RUNS]   (needs `cargo build --release --workspace`)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-200}
elfpatch=$root/target/release/elfpatch
command -v hyperfine >/dev/null || { echo "hyperfine is missing: run scripts/install-deps.sh" >&2; exit 1; }
[ -x "$elfpatch" ] || { echo "run cargo build --release --workspace first" >&2; exit 1; }
w=$(mktemp -d /tmp/ld-cas-venv-bench.XXXXXX)
trap 'rm -rf "$w"' EXIT

/usr/bin/python3 -m venv "$w/venv"
"$w/venv/bin/pip" install -q --disable-pip-version-check pillow==13.0.0
imports='import PIL.Image, json, decimal, sqlite3, ssl'
"$w/venv/bin/python3" -c "$imports"
"$elfpatch" store init --store "$w/store" --ld-cas "$root/target/release/ld-cas" >/dev/null
"$elfpatch" convert --store "$w/store" "$w/venv" >/dev/null 2>&1
"$w/store/bin/venv/bin/python3" -c "$imports"
hyperfine -N -w 10 -r "$runs" --export-json "$w/times.json" \
  -n original "$w/venv/bin/python3 -c '$imports'" \
  -n converted "$w/store/bin/venv/bin/python3 -c '$imports'"
python3 - "$w/times.json" <<'PY'
import json, statistics, sys
r = {x["command"]: x["times"] for x in json.load(open(sys.argv[1]))["results"]}
o, c = r["original"], r["converted"]
print(f"mean   original {statistics.mean(o)*1e3:.2f} ms  converted {statistics.mean(c)*1e3:.2f} ms  ratio {statistics.mean(c)/statistics.mean(o):.3f}")
print(f"median original {statistics.median(o)*1e3:.2f} ms  converted {statistics.median(c)*1e3:.2f} ms  ratio {statistics.median(c)/statistics.median(o):.3f}")
PY
