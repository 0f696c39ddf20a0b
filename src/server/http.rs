//! The HTTP listener. It is bound from the start so deployments can rely on the port; the
//! HTTP-FLV, WebSocket-FLV, `/metrics` and `/api` endpoints land with the HTTP milestone.
//! Until then every request gets a `404` that says so, and the connection closes.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use super::Core;
use crate::runtime::{self, Listener, Stream};

pub(crate) async fn accept(core: Rc<Core>, listener: Listener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                runtime::spawn(answer(stream));
            }
            Err(e) => {
                tracing::warn!(core = core.index, "HTTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(stream: Stream) {
    // Read the request head (bounded in time and size), then answer.
    let mut head = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let Ok((res, b)) = timeout(Duration::from_secs(5), stream.read(buf)).await else {
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
