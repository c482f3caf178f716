#!/usr/bin/env bash
# Where ld-cas's own start-up time goes, phase by phase (results in BENCHMARKS.md).
#
# ld-cas is built with the `phase-exits` feature (ld-cas/src/phase.rs): a build that ends
# the process at one chosen point of its start-up, a byte in the file. The fixtures of
# run.sh get that build as their merged interpreter, in one copy per point, each with its
# byte set (the same code at the same addresses; only where it stops differs), and each
# converted program one copy per interpreter:
#   at-entry        ld-cas's first instruction: the kernel's execve of the program and of
#                   the interpreter file (6 segments), and the exit
#   at-relocated    ld-cas relocated itself
#   at-started      the program's headers read, the environment scanned, the hand-over's
#                   frame set up
#   at-table        the store found, its table read and checked
#   at-loader       the loader mapped (nothing: the merged ld.so serves)
#   at-names        the uri: names pointed at the store: all of ld-cas, before the jump
#   converted       the same build, not stopped: the whole start
# against two variants of the absolute-path program (run.sh's `absolute`):
#   exec-floor      its interpreter a private copy of the system's ld.so whose entry point
#                   ends the process (x86_64 code written in the padding after ld.so's
#                   code): the kernel's execve of it and of ld.so (4 segments), and the exit
#   absolute        as in run.sh: the whole start
# timed side by side by spawn.c, each timed run right after 3 untimed runs of itself, the
# paired differences against exec-floor; then the page faults of each (perf stat). So a
# phase's cost is its row's difference minus the row above; ld.so's work after the
# hand-over is `converted` minus `at-names`, to be read against `absolute` minus 0. A
# point's difference counts the page faults ld-cas takes on pages that ld.so would fault
# in anyway (the program's headers and dynamic section, ld.so's first page): in the whole
# start those are moved, not added, so the phases add up to more than `converted` costs
# over `absolute`.
# The page cache is dropped and the fixtures' files kept mapped, as in run.sh
# (page-cache.sh).
# Usage: [LD_CAS_BENCH_DROP=0] benches/startup/phases.sh [RUNS]   (needs `cargo build
# --release --workspace`; builds the phase-exits ld-cas into target/phases)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=page-cache.sh
. "$root/benches/startup/page-cache.sh"
runs=${1:-2000}
for tool in patchelf python3 cargo perf setarch; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
[ "$(uname -m)" = x86_64 ] || { echo "phases.sh writes x86_64 code into ld.so: run it on x86_64" >&2; exit 1; }
cargo build --quiet --release --locked -p ld-cas --features phase-exits \
  --manifest-path "$root/Cargo.toml" --target-dir "$root/target/phases"
phased=$root/target/phases/release/ld-cas
w=$(mktemp -d /tmp/ld-cas-phases.XXXXXX)
trap 'rm -rf "$w"' EXIT
# Only the fixtures are wanted: no drop of the page cache there, this script drops it.
LD_CAS_BENCH_DROP=0 LD_CAS_BENCH_DIR=$w/run "$root/benches/startup/run.sh" 3 >/dev/null
cd "$w/run"
"$root/target/release/elfpatch" store init --store store --ld-cas "$phased" >/dev/null
"$root/target/release/elfpatch" store init --store chain-store --ld-cas "$phased" >/dev/null

# One copy of each store's merged interpreter per point, and of each converted program
# per copy, with the same path lengths (the interpreter's last character is the point's
# letter); an absolute program whose interpreter exits at its entry.
python3 - "$(readlink -f /lib64/ld-linux-x86-64.so.2)" <<'PY'
import os, struct, subprocess, sys

POINTS = ['converted', 'at-entry', 'at-relocated', 'at-started', 'at-table', 'at-loader', 'at-names']
MARK = b'ldcas-phase-at:'

def interp(prog):
    return subprocess.run(['patchelf', '--print-interpreter', prog], check=True,
                          capture_output=True, text=True).stdout.strip()

def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, 0o755)

for store, progs in (('store', ['trivial', 'many']), ('chain-store', ['chain'])):
    merged = interp(f'{store}/bin/{progs[0]}-merged')
    image = open(merged, 'rb').read()
    at = image.find(MARK)
    if at < 0 or image.find(MARK, at + 1) >= 0:
        sys.exit(f'{merged}: not one phase marker: not a phase-exits build')
    for point, name in enumerate(POINTS):
        copy = bytearray(image)
        copy[at + len(MARK)] = point
        write(merged[:-1] + chr(ord('a') + point), copy)
    for p in progs:
        prog = open(f'{store}/bin/{p}-merged', 'rb').read()
        where = prog.find(merged.encode() + b'\0')
        for point, name in enumerate(POINTS):
            copy = bytearray(prog)
            copy[where + len(merged) - 1] = ord('a') + point
            write(f'{store}/bin/{p}-{name}', copy)

# ld.so with `exit_group(0)` as its entry point, in the zero padding after its code.
ldso = bytearray(open(sys.argv[1], 'rb').read())
phoff, = struct.unpack_from('<Q', ldso, 0x20)
phnum, = struct.unpack_from('<H', ldso, 0x38)
stub = bytes.fromhex('b8e7000000' '31ff' '0f05')  # mov $231, %eax; xor %edi, %edi; syscall
for i in range(phnum):
    p_type, flags, off, vaddr, _, filesz = struct.unpack_from('<IIQQQQ', ldso, phoff + 56 * i)
    if p_type == 1 and flags & 1:
        end = off + filesz
        if (end + len(stub) - 1) // 4096 != end // 4096 or any(ldso[end:end + len(stub)]):
            sys.exit('no room for the exit stub after ld.so\'s code')
        ldso[end:end + len(stub)] = stub
        struct.pack_into('<Q', ldso, 0x18, vaddr + end - off)
        break
else:
    sys.exit('ld.so has no executable segment')
write('exec-floor-ld.so', ldso)
PY
for p in trivial many chain; do
  cp "bin/$p-absolute" "bin/$p-exec-floor"
  patchelf --set-interpreter "$PWD/exec-floor-ld.so" "bin/$p-exec-floor"
done

even_page_cache
hold_fixtures "$PWD"
for p in trivial many chain; do
  s=store
  [ "$p" = chain ] && s=chain-store
  variants=("bin/$p-exec-floor")
  for point in at-entry at-relocated at-started at-table at-loader at-names converted; do
    variants+=("$s/bin/$p-$point")
  done
  variants+=("bin/$p-absolute")
  for v in "${variants[@]}"; do "$v" || { echo "$v failed" >&2; exit 1; }; done
  echo "## $p"
  ./spawn "$runs" 100 3 0 "${variants[@]}" |
    awk -F'\t' '{ printf "%-36s median %6.0f µs  paired Δ %+6.1f µs", $1, $2, $5 }
      NR > 1 && $1 !~ /absolute$/ { printf "  step %+6.1f µs", $5 - prev }
      { prev = $5; print "" }'
  # Page faults of each (address-space randomisation off, so that the counts repeat).
  for v in "${variants[@]}"; do
    printf '%-36s %s page faults\n' "$v" \
      "$(setarch -R perf stat -x, -e minor-faults "$v" 2>&1 >/dev/null | awk -F, '/minor-faults/ { print $1 }')"
  done
done
