//! `cargo +nightly fuzz run chunk_reader`: see fuzz/README.md and [`ringcast_fuzz::chunk_reader`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::chunk_reader(data));
