//! `--verify`: rehashing an object against its content address.

/// Checks that `bytes` hash to `uri`.
pub fn check(_bytes: &[u8], _uri: &[u8]) -> Result<(), &'static str> {
    Err("hashing is not available in this build")
}
