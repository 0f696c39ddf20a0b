//! `cargo +nightly fuzz run server_session`: see fuzz/README.md and [`ringcast_fuzz::server_session`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::server_session(data));
