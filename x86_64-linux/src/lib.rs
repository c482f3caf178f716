//! The x86_64 Linux platform layer of ld-cas.
#![no_std]
