//! ringcast: a live-video relay server.
//!
//! Encoders publish live streams over RTMP; players watch them over RTMP, HTTP-FLV and
//! WebSocket-FLV; nodes relay streams to each other (origin/edge). The server runs one
//! shared-nothing runtime per core; everything that speaks RTMP drives the same sans-IO
//! protocol core in [`rtmp`].
//!
//! # Layout
//!
//! - [`rtmp`]: the sans-IO RTMP protocol core. Bytes go in (with a `now` where timing
//!   matters), bytes to send and typed events come out. It never touches sockets, clocks or
//!   tasks, so the server, the relay client, the load tester, the tests and the fuzzers all
//!   drive the same code.
//!   - [`rtmp::handshake`]: C0/C1/C2 and S0/S1/S2, simple and digest ("complex") forms.
//!   - [`rtmp::chunk`]: the chunk stream: [`rtmp::chunk::Reader`] reassembles messages
//!     zero-copy out of the receive buffer; [`rtmp::chunk::Writer`] splits messages into
//!     chunks with header compression.
//!   - [`rtmp::amf0`]: AMF0 values, as carried by commands and data messages.
//!   - [`rtmp::message`]: typed RTMP messages (protocol control, user control, commands,
//!     data, audio, video, aggregate) over chunk-level messages.
//!   - [`rtmp::session`]: the server and client state machines built on the above.
//! - [`http`]: HTTP request heads and WebSocket framing, sans-IO, for the HTTP port.
//! - [`auth`]: who may publish and play: signed URLs and address rules.
//! - [`metrics`]: metric names and the Prometheus exporter, per-core handles.
//! - [`relay`]: edge pull from origins, push upstream, failover, the relay drive loop over
//!   the client session, and the locator and Redis registry clients.
//! - [`flv`]: the FLV container and codec sniffing. [`flv::tag_header`] and
//!   [`flv::previous_tag_size`] frame a shared payload for vectored writes to HTTP-FLV
//!   players; [`flv::Reader`] demuxes an FLV stream zero-copy; [`flv::codec`] tells keyframes
//!   and sequence headers apart for legacy FLV (AVC, HEVC, AAC) and Enhanced RTMP (FourCC).
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod config;
pub mod flv;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod relay;
pub mod rtmp;
pub mod runtime;
pub mod server;
