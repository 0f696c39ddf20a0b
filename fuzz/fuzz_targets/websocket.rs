//! `cargo +nightly fuzz run websocket`: see fuzz/README.md and [`ringcast_fuzz::websocket`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::websocket(data));
