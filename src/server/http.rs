//! The HTTP listener. It is bound from the start so deployments can rely on the port; the
//! HTTP-FLV, WebSocket-FLV, `/metrics` and `/api` endpoints land with the HTTP milestone.
//! Until then every request gets a `404` that says so, and the connection closes.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use tokio::time::timeout_at;

use super::{Core, admission};
use crate::runtime::{self, Listener, Stream};

pub(crate) async fn accept(core: Rc<Core>, listener: Listener) {
    loop {
        let (stream, peer) = admission::accept(&core, &listener).await;
        let Some(slot) = admission::admit(&core, peer, "http") else {
            drop(stream);
            continue;
        };
        let deadline = Instant::now() + core.config.http_header_timeout;
        runtime::spawn(async move {
            answer(stream, deadline).await;
            drop(slot);
        });
    }
}

/// The most a request head may hold.
const MAX_HEAD: usize = 16 * 1024;

async fn answer(stream: Stream, deadline: Instant) {
    // Read the request head, whole within the header timeout (one byte every few seconds
    // does not keep a connection) and bounded in size, then answer.
    let mut head = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let Ok((res, b)) = timeout_at(deadline.into(), stream.read(buf)).await else {
            return;
        };
        match res {
            Ok(n) if n > 0 => head.extend_from_slice(&b[..n]),
            _ => return,
        }
        buf = b;
    }
    let body = "not found: HTTP-FLV and /metrics are not served yet\n";
    let resp = format!(
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(Bytes::from(resp)).await;
    stream.shutdown_write();
}
