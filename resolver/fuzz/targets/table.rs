//! Fuzz target: the table reader (`resolver/src/table/read.rs`) on arbitrary bytes. It
//! must never panic or read out of bounds, and what a checked read returns must hold:
//! every entry a checked read yields has a path that stays inside the store.
#![no_main]

use resolver::table::{path_problem, Table};
use resolver::uri::Hash;

#[no_mangle]
pub extern "C" fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> i32 {
    // SAFETY: the driver passes `size` readable bytes at `data` (or a null pointer and 0).
    let bytes = if data.is_null() {
        &[][..]
    } else {
        unsafe { core::slice::from_raw_parts(data, size) }
    };
    let table = match Table::parse(bytes) {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return 0;
        }
    };
    let verified = table.verify().is_ok();
    let mut ok_entries = 0u32;
    for e in table.entries() {
        match e {
            Ok(e) => {
                ok_entries += 1;
                assert!(path_problem(e.path).is_none(), "checked entry {:?}", e.path);
                let found = table.lookup_checked(&e.hash);
                if let Ok(Some(f)) = found {
                    assert!(path_problem(f.path).is_none());
                }
                let _ = table.lookup(&e.hash);
            }
            Err(e) => {
                assert!(!verified, "verify() passed but an entry is damaged: {e}");
                let _ = e.to_string();
            }
        }
    }
    if verified {
        assert_eq!(ok_entries, table.len());
    }
    // Look-ups of hashes the table does not necessarily hold.
    for window in bytes.chunks(32).take(8) {
        let mut h = [0u8; 32];
        h[..window.len()].copy_from_slice(window);
        if let Ok(Some(e)) = table.lookup_checked(&Hash(h)) {
            assert!(path_problem(e.path).is_none());
        }
        let _ = table.lookup(&Hash(h));
    }
    for i in 0..table.len().min(64) {
        let _ = table.entry(i);
        let _ = table.entry_checked(i);
    }
    let _ = table.entry(table.len());
    0
}
