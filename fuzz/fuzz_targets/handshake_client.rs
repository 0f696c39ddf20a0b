//! `cargo +nightly fuzz run handshake_client`: see fuzz/README.md and [`ringcast_fuzz::handshake_client`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::handshake_client(data));
