//! Shared helpers of the end-to-end tests: locating the built binaries, building C fixtures.
