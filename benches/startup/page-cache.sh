# Sourced by run.sh and decompose.sh: puts every variant's files in the same page-cache
# state before they are timed (even_page_cache), and keeps the fixtures' files mapped as
# the system's are (hold_fixtures).
#
# On this kernel a file written recently sits in the page cache in large folios, and one
# read back from disk in 4 KiB pages; a program whose ld.so and libc are in large folios
# starts tens of µs sooner (the trivial program here: about 40 µs with fresh copies of the
# system's two files, BENCHMARKS.md). The fixtures' store is written by the benchmark a
# minute before it is timed, while the system's files were read from disk long ago, so
# without this the converted variants would be timed on fresh files against the others
# on old ones. A reclaim daemon (DAMON, kdamond) also moves files from one state to the
# other within the hour. Dropping the clean page cache before timing leaves every file
# read back in 4 KiB pages, the state files reach after a while anyway. Needs root;
# LD_CAS_BENCH_DROP=0 times the files as they are (and says so).
even_page_cache() {
  if [ "${LD_CAS_BENCH_DROP:-1}" = 0 ]; then
    echo "page cache not dropped (LD_CAS_BENCH_DROP=0): each variant's files are timed in whatever state they are" >&2
    return
  fi
  sync
  if ! { echo 1 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    echo "cannot drop the page cache (/proc/sys/vm/drop_caches needs root): run as root, or set LD_CAS_BENCH_DROP=0 to time the files in whatever state they are" >&2
    exit 1
  fi
}

# Keeps FILE... mapped (every page touched once) by a background process until the
# benchmark exits, as the system's ld.so and libc are mapped by the processes already
# running. A start that maps pages no other process maps makes the kernel account them as
# newly mapped, and unmapped again at its exit, page by page in 4 KiB pages: a private copy
# of libc timed that way started about 40 µs later than the system's libc, same bytes,
# same page-cache state, and 3 µs later when another process kept it mapped (BENCHMARKS.md).
hold_mapped() {
  python3 "$root/benches/startup/hold.py" "$@" &
  local held=$!
  # Wait until every file is mapped (it renames itself then).
  until [ "$(cat "/proc/$held/comm" 2>/dev/null)" = held ]; do
    kill -0 "$held" 2>/dev/null || { echo "hold.py could not map the fixtures' files" >&2; exit 1; }
    sleep 0.1
  done
}

# Keeps every library and interpreter under DIR (the fixtures) mapped: hold_mapped.
hold_fixtures() {
  local files
  mapfile -t files < <(find "$1" -type f \( -name '*.so*' -o -name ld-cas \))
  hold_mapped "${files[@]}"
}
