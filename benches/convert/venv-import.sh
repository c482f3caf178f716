#!/usr/bin/env bash
# Import time of a converted Python prefix against the original (results in BENCHMARKS.md).
#
# A default venv (`/usr/bin/python3 -m venv`, pillow from PyPI), run once to compile its
# `.pyc` files, converted as a tree (`elfpatch convert`, which keeps every file's times, so
# the `.pyc` files stay valid); then `import PIL.Image, json, decimal, sqlite3, ssl` by the
# original venv's python and by the converted one, paired and interleaved (each round runs
# both, in alternating order): the medians, their ratio, and the median paired difference.
#
# Usage: benches/convert/venv-import.sh [RUNS]   (needs `cargo build --release --workspace`)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-200}
elfpatch=$root/target/release/elfpatch
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
python3 - "$runs" "$w/venv/bin/python3" "$w/store/bin/venv/bin/python3" "$imports" <<'PY'
import statistics, subprocess, sys, time
runs, original, converted, imports = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def once(python):
    t = time.perf_counter()
    subprocess.run([python, "-c", imports], check=True)
    return time.perf_counter() - t
times = {original: [], converted: []}
for i in range(runs):
    # Paired and interleaved, the order alternating: noise a round shares cancels.
    order = (original, converted) if i % 2 == 0 else (converted, original)
    for python in order:
        times[python].append(once(python))
o, c = times[original], times[converted]
diff = statistics.median(b - a for a, b in zip(o, c))
print(f"rounds {runs}")
print(f"median original {statistics.median(o)*1e3:.2f} ms  converted {statistics.median(c)*1e3:.2f} ms  ratio {statistics.median(c)/statistics.median(o):.3f}")
print(f"mean   original {statistics.mean(o)*1e3:.2f} ms  converted {statistics.mean(c)*1e3:.2f} ms  ratio {statistics.mean(c)/statistics.mean(o):.3f}")
print(f"paired difference (median of converted - original) {diff*1e3:+.2f} ms")
PY
