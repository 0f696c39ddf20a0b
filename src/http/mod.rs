//! The HTTP side of the protocol core, sans-IO like [`crate::rtmp`]: request heads and
//! routes ([`request`]) and WebSocket framing ([`websocket`]). The server's HTTP-FLV,
//! WebSocket-FLV and page drivers (in `server`) do the IO.

pub mod request;
pub mod websocket;
