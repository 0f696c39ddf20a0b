//! `cargo +nightly fuzz run flv_reader`: see fuzz/README.md and [`ringcast_fuzz::flv_reader`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::flv_reader(data));
