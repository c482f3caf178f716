//! Benchmarks of ld-cas: criterion benches under `benches/`, the start-up harness in `src/`.
