//! `cargo +nightly fuzz run http_request`: see fuzz/README.md and [`ringcast_fuzz::http_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::http_request(data));
