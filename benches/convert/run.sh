#!/usr/bin/env bash
# Conversion and start-up of python3 (results in BENCHMARKS.md).
#
# 1. Converting python3's whole closure, laid out as a Nix-style store (python3 with its
#    standard library and the 46 extension modules of lib-dynload, and every library they
#    need, one package per library): `elfpatch convert` (search, rewrite, hash, store)
#    side by side with a loop of `patchelf --replace-needed` calls that only renames every
#    DT_NEEDED of the same files to a 75-byte name (no search, no hashing, no store).
# 2. Start-up of `python3 -c pass` and of `python3 -c 'import ssl, sqlite3, ...'`: the
#    Debian original, the Nix-style layout (RUNPATH per package), the converted program;
#    wall time (hyperfine) and system calls (strace -f -c).
#
# Usage: benches/convert/run.sh   (needs `cargo build --release --workspace`)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
elfpatch=$root/target/release/elfpatch
for tool in hyperfine patchelf strace; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
[ -x "$elfpatch" ] || { echo "run cargo build --release --workspace first" >&2; exit 1; }
w=$(mktemp -d /tmp/ld-cas-convert-bench.XXXXXX)
trap 'rm -rf "$w"' EXIT

cargo run -q --release -p benches --example nixstyle -- "$w/nixroot" >"$w/packages"
mapfile -t packages < <(cut -f2 "$w/packages")
python_pkg=$(awk -F'\t' '$1 == "python3" {print $2}' "$w/packages")
mkdir -p "$w/opt" && cp "$root/target/release/ld-cas" "$w/opt/ld-cas"
elf_files=$(find "${packages[@]}" -type f -exec sh -c 'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \;)
echo "ELF files in the closure: $(echo "$elf_files" | wc -l); bytes: $(echo "$elf_files" | xargs du -cb | tail -1 | cut -f1)"

# The rename-only patchelf loop, on a fresh copy of the same packages.
cat >"$w/patchelf-loop.sh" <<'LOOP'
#!/usr/bin/env bash
set -e
fake=uri:blake3:0000000000000000000000000000000000000000000000000000000000000000
find "$1" -type f | while read -r f; do
  head -c4 "$f" | grep -q ELF || continue
  args=()
  for n in $(patchelf --print-needed "$f" 2>/dev/null); do
    case $n in ld-linux*) continue ;; esac
    args+=(--replace-needed "$n" "$fake")
  done
  [ ${#args[@]} -eq 0 ] || patchelf "${args[@]}" "$f"
done
LOOP
chmod +x "$w/patchelf-loop.sh"

echo "== Converting the closure"
hyperfine --warmup 1 --runs 10 --export-markdown "$w/convert.md" \
  --prepare "rm -rf $w/store && $elfpatch store init --store $w/store >/dev/null" \
  -n "elfpatch convert" "$elfpatch convert --store $w/store --interp $w/opt/ld-cas ${packages[*]}" \
  --prepare "rm -rf $w/copy && cp -a $w/nixroot $w/copy" \
  -n "patchelf --replace-needed loop" "$w/patchelf-loop.sh $w/copy"
cat "$w/convert.md"

rm -rf "$w/store" && "$elfpatch" store init --store "$w/store" >/dev/null
"$elfpatch" convert --store "$w/store" --interp "$w/opt/ld-cas" "${packages[@]}" >/dev/null
converted=$w/store/bin/$(basename "$python_pkg")/bin/python3
nix=$python_pkg/bin/python3
imports='import ssl, sqlite3, ctypes, json, decimal, zlib'

echo "== Start-up"
for code in pass "$imports"; do
  hyperfine --warmup 20 --runs 300 -N --export-markdown "$w/start.md" \
    -n original "/usr/bin/python3 -I -c '$code'" \
    -n nix-style "$nix -I -c '$code'" \
    -n ld-cas "$converted -I -c '$code'"
  cat "$w/start.md"
done

echo "== System calls (strace -f -c), python3 -c '$imports'"
for variant in "original /usr/bin/python3" "nix-style $nix" "ld-cas $converted"; do
  set -- $variant
  strace -f -c -o "$w/strace.$1" "$2" -I -c "$imports"
  total=$(awk '$NF == "total" {print $4 " calls, " $5 " failed"}' "$w/strace.$1")
  failed_open=$(strace -f -e trace=openat,open,stat,newfstatat,access -o "$w/files.$1" "$2" -I -c "$imports"; grep -c ' = -1 ' "$w/files.$1" || true)
  echo "$1: $total; failed file look-ups: $failed_open"
done
