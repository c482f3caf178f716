#!/usr/bin/env bash
# The resolver's benchmarks (results in BENCHMARKS.md): table lookups on 1k, 100k and 1M
# entries side by side with a HashMap in memory and a binary search over the same keys;
# table build; hashing throughput side by side with b3sum; the system calls of opening a
# table of 1k and of 1M entries. Prints markdown tables with ratios.
#
# Usage: benches/resolver/run.sh   (criterion needs a few minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
for tool in b3sum strace python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
cargo build -q --release --workspace
cargo bench -q -p benches --bench table -- --warm-up-time 2 --measurement-time 5 >/dev/null
cargo bench -q -p benches --bench hashing -- --warm-up-time 2 --measurement-time 10 >/dev/null

python3 - "$root/target/criterion" <<'PY'
import json, os, sys
base = sys.argv[1]
def median(group, fn, param):
    with open(os.path.join(base, group, fn, str(param), "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]
print("| entries | table lookup (ns) | lookup + entry check (ns) | HashMap (ns) | binary search (ns) | table / HashMap |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
for n in (1000, 100000, 1000000):
    t, c, h, b = (median("lookup", f, n) for f in ("table", "table_checked", "hashmap", "binary_search"))
    print(f"| {n} | {t:.1f} | {c:.1f} | {h:.1f} | {b:.1f} | {t / h:.2f} |")
print()
print("| entries | table build (ms) |")
print("| ---: | ---: |")
for n in (1000, 100000, 1000000):
    print(f"| {n} | {median('build', 'table', n) / 1e6:.1f} |")
print()
print("| file | resolver (MiB/s) | b3sum (MiB/s) | resolver / b3sum |")
print("| ---: | ---: | ---: | ---: |")
for size in (4 << 20, 512 << 20):
    r = size / median("hash", "resolver", size) * 1e9 / 2**20
    b = size / median("hash", "b3sum", size) * 1e9 / 2**20
    print(f"| {size >> 20} MiB | {r:.0f} | {b:.0f} | {r / b:.2f} |")
PY

echo
echo "System calls on the table file while resolving one URI (strace -P TABLE):"
w=$(mktemp -d /tmp/ld-cas-table-bench.XXXXXX)
trap 'rm -rf "$w"' EXIT
for n in 1000 1000000; do
  uri=$(cargo run -q --release -p benches --example synthetic_store -- "$w/$n" "$n")
  strace -P "$w/$n/table" -o "$w/trace.$n" target/release/elfpatch store resolve --store "$w/$n" "$uri" >/dev/null
  size=$(stat -c %s "$w/$n/table")
  calls=$(grep -v '^+++' "$w/trace.$n" | sed 's/(.*//' | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
  echo "  $n entries ($size bytes): ${calls%, }"
done
