#!/usr/bin/env bash
# Coverage-guided fuzzing of the table reader, the URI parser, ld-cas's ELF reading
# (`ld-cas/src/elf.rs`, compiled in as a module) and elfpatch's parse → edit → verify path
# (`elfpatch/fuzz`, built by cargo with every crate it uses instrumented) with AFL++ (Debian's `afl++` package) on
# the stable Rust toolchain: the content-address core (`resolver/core`, `no_std`, as ld-cas
# links it) is compiled with SanitizerCoverage's trace-pc-guard instrumentation (stable
# `-C passes=sancov-module`), the target (a libFuzzer-style `LLVMFuzzerTestOneInput`) is
# linked with AFL++'s libFuzzer driver and runtime, and afl-fuzz runs it for SECONDS in
# persistent mode. Panics abort, so AFL++ counts them as crashes; debug assertions and
# overflow checks are on.
#
# Usage: resolver/fuzz/run.sh TARGET SECONDS [OUT]
#   TARGET: table | uri | elf (ld-cas's ELF reading) | edit (elfpatch's parse, edit, verify)
# Exits 1 when a crash or a hang was found (inputs in OUT/default/crashes, .../hangs), and
# prints AFL++'s figures (executions, paths, coverage).
set -euo pipefail
target=${1:?usage: run.sh table|uri|elf|edit SECONDS [OUT]}
seconds=${2:?usage: run.sh table|uri|elf|edit SECONDS [OUT]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${3:-$(mktemp -d /tmp/ld-cas-fuzz.XXXXXX)}
afl=/usr/lib/afl
for f in /usr/bin/afl-fuzz "$afl/libAFLDriver.a" "$afl/afl-compiler-rt.o"; do
  [ -e "$f" ] || { echo "$f is missing: apt-get install afl++" >&2; exit 2; }
done
build=$out/build
mkdir -p "$build"
flags=(--edition 2021 -C opt-level=2 -C panic=abort -C debug-assertions -C overflow-checks
  -C codegen-units=1 -C passes=sancov-module
  -C llvm-args=-sanitizer-coverage-level=3
  -C llvm-args=-sanitizer-coverage-trace-pc-guard
  -C llvm-args=-sanitizer-coverage-prune-blocks=0
  -C llvm-args=-sanitizer-coverage-trace-compares)
driver=(-C link-arg=-Wl,--whole-archive -C link-arg="$afl/libAFLDriver.a"
  -C link-arg=-Wl,--no-whole-archive -C link-arg="$afl/afl-compiler-rt.o" -C link-arg=-lstdc++)
if [ "$target" = edit ]; then
  # elfpatch and every crate it uses, instrumented (an explicit --target keeps the flags
  # off build scripts and proc-macros, which run inside the compiler).
  RUSTFLAGS="${flags[*]:2}" CARGO_TARGET_DIR="$build/target" \
    cargo rustc --locked --release -q -p elfpatch-fuzz --features afl --bin fuzz_edit \
    --target x86_64-unknown-linux-gnu --manifest-path "$root/Cargo.toml" -- "${driver[@]}"
  cp "$build/target/x86_64-unknown-linux-gnu/release/fuzz_edit" "$build/fuzz_edit"
else
  rustc "${flags[@]}" --crate-type rlib --crate-name resolver_core --out-dir "$build" \
    "$root/resolver/core/src/lib.rs"
  rustc "${flags[@]}" --crate-type bin --crate-name "fuzz_$target" -L "$build" \
    --extern resolver_core="$build/libresolver_core.rlib" -o "$build/fuzz_$target" \
    "${driver[@]}" "$here/targets/$target.rs"
fi
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_BENCH_UNTIL_CRASH=${AFL_BENCH_UNTIL_CRASH:-}
afl-fuzz -V "$seconds" -i "$here/seeds/$target" -o "$out" -- "$build/fuzz_$target" \
  >"$out/afl.log" 2>&1 || { tail -20 "$out/afl.log" >&2; exit 2; }
stats=$out/default/fuzzer_stats
grep -E '^(execs_done|execs_per_sec|corpus_count|bitmap_cvg|saved_crashes|saved_hangs|run_time) ' "$stats"
crashes=$(awk '$1 == "saved_crashes" {print $3}' "$stats")
hangs=$(awk '$1 == "saved_hangs" {print $3}' "$stats")
if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
  echo "fuzz $target: $crashes crashes, $hangs hangs: see $out/default/crashes and hangs" >&2
  exit 1
fi
echo "fuzz $target: no crash, no hang in $seconds s"
