//! The libFuzzer entry point every fuzz target shares (AFL++'s driver calls it with each
//! input), included by each target with `#[path]`.

/// Defines `LLVMFuzzerTestOneInput`, which hands the driver's input to `$body` as the
/// byte slice `$bytes`.
macro_rules! fuzz_target {
    (|$bytes:ident| $body:block) => {
        #[no_mangle]
        pub extern "C" fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> i32 {
            let $bytes: &[u8] = if data.is_null() {
                &[]
            } else {
                // SAFETY: the driver passes `size` readable bytes at `data` (or a null
                // pointer and 0), alive for the call.
                unsafe { core::slice::from_raw_parts(data, size) }
            };
            $body
            0
        }
    };
}
