//! `cargo +nightly fuzz run amf0`: see fuzz/README.md and [`ringcast_fuzz::amf0`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::amf0(data));
