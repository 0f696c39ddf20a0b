//! `cargo +nightly fuzz run codec`: see fuzz/README.md and [`ringcast_fuzz::codec`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::codec(data));
