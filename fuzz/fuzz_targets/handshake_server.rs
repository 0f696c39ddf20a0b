//! `cargo +nightly fuzz run handshake_server`: see fuzz/README.md and [`ringcast_fuzz::handshake_server`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::handshake_server(data));
