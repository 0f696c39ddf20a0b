//! The sans-IO RTMP protocol core.
//!
//! Nothing in this module reads a socket, spawns a task or looks at a clock: callers feed it
//! the bytes they read (and a `now` in milliseconds where timing matters) and take from it
//! the bytes to write and the events that happened. See the crate docs for the layout.

pub mod amf0;
pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;
