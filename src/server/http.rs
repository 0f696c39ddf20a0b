//! The HTTP listener: HTTP-FLV and WebSocket-FLV playback (`GET /APP/STREAM.flv`, see
//! [`super::http_flv`]), CORS preflight, and plain answers for everything else.
//!
//! A request head is parsed with `httparse`; it must be whole within
//! `http_header_timeout` of the accept, at most 16 KiB and 64 headers. A malformed request
//! gets `400`, an oversized one `431`, an unknown path `404`, a method a path does not take
//! `405`; each is then closed.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::time::{timeout, timeout_at};

use super::http_flv::{self, Framing};
use super::log::Escaped;
use super::{Core, admission};
use crate::http::request::{HeadError, MAX_HEAD, Request, Route, parse_head, route};
use crate::hub::{StreamReport, merge};
use crate::runtime::{self, Listener, Stream};

/// How long a refused request's connection is read (and discarded) after the answer, so
/// that the close does not reset the connection and lose the answer.
const ANSWER_LINGER: Duration = Duration::from_secs(1);

pub(crate) async fn accept(core: Rc<Core>, listener: Listener) {
    super::accept_concurrently(core, listener, accept_loop).await;
}

async fn accept_loop(core: Rc<Core>, listener: Rc<Listener>) {
    loop {
        admission::accept_batch(&core, &listener, "http", |stream, peer, slot| {
            let deadline = Instant::now() + core.config().http_header_timeout;
            let core = core.clone();
            runtime::spawn(async move {
                serve(core, stream, peer, deadline).await;
                drop(slot);
            });
        })
        .await;
    }
}

/// Reads a request head within `deadline`; what followed it stays in the returned buffer.
async fn read_head(
    stream: &Stream,
    deadline: Instant,
) -> Result<(Request, BytesMut), Option<HeadError>> {
    let mut buf = BytesMut::new();
    loop {
        let read = stream.read_buf(buf, 4096);
        let Ok((res, b)) = timeout_at(deadline.into(), read).await else {
            return Err(None);
        };
        buf = b;
        match res {
            Ok(n) if n > 0 => {}
            _ => return Err(None),
        }
        if let Some((req, len)) = parse_head(&buf).map_err(Some)? {
            let _ = buf.split_to(len);
            return Ok((req, buf));
        }
    }
}

async fn serve(core: Rc<Core>, stream: Stream, peer: SocketAddr, deadline: Instant) {
    let req = match read_head(&stream, deadline).await {
        Ok(r) => r,
        Err(None) => return,
        Err(Some(HeadError::TooLarge)) => {
            return answer(&stream, 431, "Request Header Fields Too Large", &[]).await;
        }
        Err(Some(HeadError::Malformed(why))) => {
            if core.log_gate.allow() {
                tracing::info!(%peer, "bad HTTP request: {}", Escaped(&why));
            }
            return answer(&stream, 400, "Bad Request", &[]).await;
        }
    };
    let (req, leftover) = req;
    let route = route(&req.path);
    match (req.method.as_str(), route) {
        ("OPTIONS", _) => {
            answer(
                &stream,
                204,
                "No Content",
                &[
                    "Access-Control-Allow-Methods: GET, HEAD, OPTIONS",
                    "Access-Control-Allow-Headers: *",
                    "Access-Control-Max-Age: 86400",
                ],
            )
            .await
        }
        ("GET", Route::Flv(_)) if core.shutting_down.get() => {
            answer(&stream, 503, "Service Unavailable", &["Retry-After: 5"]).await
        }
        ("GET", Route::Flv(key)) => {
            let (app, name) = crate::hub::split_key(&key);
            let (proto, label) = if req.websocket_key().is_some() {
                (crate::metrics::Proto::WsFlv, "ws_flv")
            } else {
                (crate::metrics::Proto::HttpFlv, "http_flv")
            };
            let query = req.query.as_deref();
            let call = |call| super::hooks::Call {
                call,
                addr: peer.ip(),
                app: &app,
                name: &name,
                query,
                proto: label,
            };
            let mut allowed =
                core.auth()
                    .check_play(peer.ip(), &app, &name, query, crate::auth::unix_now());
            if allowed.is_ok() {
                allowed = super::hooks::allow(&core, call("play")).await;
            }
            if let Err(why) = allowed {
                core.metrics.play_refused(proto, why.label());
                tracing::info!(%peer, stream = %Escaped(&key), "play refused: {}", Escaped(&why.to_string()));
                return answer(&stream, 403, "Forbidden", &[]).await;
            }
            let framing = match req.websocket_key() {
                Some(k) => Framing::WebSocket {
                    accept: crate::http::websocket::accept_key(k.trim().as_bytes()),
                },
                None if req.version == 0 => Framing::Close,
                None => Framing::Chunked,
            };
            http_flv::play(core.clone(), stream, peer, key, framing, leftover).await;
            super::hooks::done(&core, call("play_done"));
        }
        ("HEAD", Route::Flv(key)) => {
            if core.hub.borrow().is_live(&key) {
                let head = http_flv::response_head(req.version == 0);
                let _ = stream.write_all(Bytes::from(head)).await;
                finish(&stream).await;
            } else {
                answer(&stream, 404, "Not Found", &[]).await;
            }
        }
        ("GET" | "HEAD", Route::Index) => {
            let streams = core.hub.borrow().live_streams();
            let body = super::page::index(&streams);
            html(&stream, &body, req.method == "HEAD").await;
        }
        ("GET" | "HEAD", Route::Metrics) => {
            let mut body = crate::metrics::render(core.started);
            let n = core.config().metrics_streams;
            if n > 0 {
                let streams = gather(&core, None).await;
                body.push_str(&crate::metrics::render_streams(&streams, n));
            }
            respond(
                &stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                req.method == "HEAD",
            )
            .await;
        }
        ("GET" | "HEAD", Route::Health) => {
            let (status, body) = if core.shutting_down.get() {
                ("503 Service Unavailable", "draining\n")
            } else {
                ("200 OK", "ok\n")
            };
            respond(&stream, status, "text/plain", body, req.method == "HEAD").await;
        }
        ("GET", Route::Api(detail)) => {
            let streams = gather(&core, detail.as_deref()).await;
            match detail {
                Some(_) if streams.is_empty() => answer(&stream, 404, "Not Found", &[]).await,
                Some(_) => json(&stream, &streams[0]).await,
                None => json(&stream, &serde_json::json!({ "streams": streams })).await,
            }
        }
        ("DELETE", Route::Api(Some(key))) => {
            if core.hub.borrow_mut().disconnect(&key) {
                if core.log_gate.allow() {
                    tracing::info!(%peer, stream = %Escaped(&key), "publisher disconnected by the API");
                }
                json(&stream, &serde_json::json!({ "disconnected": key })).await;
            } else {
                answer(&stream, 404, "Not Found", &[]).await;
            }
        }
        ("GET" | "HEAD", Route::Page(key)) => {
            let body = super::page::player(&core.config(), &key);
            html(&stream, &body, req.method == "HEAD").await;
        }
        (
            _,
            Route::Flv(_)
            | Route::Index
            | Route::Page(_)
            | Route::Metrics
            | Route::Health
            | Route::Api(_),
        ) => {
            answer(
                &stream,
                405,
                "Method Not Allowed",
                &["Allow: GET, HEAD, OPTIONS"],
            )
            .await
        }
        (_, Route::NotFound) => answer(&stream, 404, "Not Found", &[]).await,
    }
}

/// How long a request waits for the other cores' reports.
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Every core's reports of its streams (of `detail` only, if given), merged.
async fn gather(core: &Core, detail: Option<&str>) -> Vec<StreamReport> {
    let answers = core.hub.borrow_mut().ask_reports(detail);
    let mut all = core.hub.borrow().report(detail, Instant::now());
    for rx in answers {
        if let Ok(Ok(r)) = timeout(REPORT_TIMEOUT, rx).await {
            all.extend(r);
        }
    }
    merge(all)
}

/// Sends `value` as JSON, then closes.
async fn json(stream: &Stream, value: &impl serde::Serialize) {
    let body = serde_json::to_string_pretty(value).unwrap_or_default();
    respond(stream, "200 OK", "application/json", &body, false).await;
}

/// Sends an HTML page, then closes.
async fn html(stream: &Stream, body: &str, head_only: bool) {
    respond(
        stream,
        "200 OK",
        "text/html; charset=utf-8",
        body,
        head_only,
    )
    .await;
}

/// Sends `body` with `status` and `content_type`, then closes.
async fn respond(stream: &Stream, status: &str, content_type: &str, body: &str, head_only: bool) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    let _ = stream.write_all(Bytes::from(out)).await;
    finish(stream).await;
}

/// Sends a short answer with `status`, then closes.
async fn answer(stream: &Stream, status: u16, reason: &str, extra: &[&str]) {
    let body = if status == 204 {
        String::new()
    } else {
        format!("{status} {reason}\n")
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    if status != 204 {
        head.push_str(&format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("Access-Control-Allow-Origin: *\r\nConnection: close\r\n");
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    let _ = stream.write_all(Bytes::from(head)).await;
    finish(stream).await;
}

/// A FIN after the answer, then what the client still sends is read and discarded until it
/// closes (at most [`ANSWER_LINGER`]).
async fn finish(stream: &Stream) {
    stream.shutdown_write();
    let give_up = Instant::now() + ANSWER_LINGER;
    let mut buf = Vec::with_capacity(4096);
    let mut discarded = 0;
    while discarded < MAX_HEAD * 4 {
        let Ok((res, b)) = timeout_at(give_up.into(), stream.read(buf)).await else {
            break;
        };
        buf = b;
        match res {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
    stream.shutdown_both();
}
