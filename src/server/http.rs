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
use tokio::time::timeout_at;

use super::http_flv::{self, Framing};
use super::log::Escaped;
use super::{Core, admission};
use crate::hub::stream_key;
use crate::runtime::{self, Listener, Stream};

/// The most a request head may hold.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have.
const MAX_HEADERS: usize = 64;
/// How long a refused request's connection is read (and discarded) after the answer, so
/// that the close does not reset the connection and lose the answer.
const ANSWER_LINGER: Duration = Duration::from_secs(1);

pub(crate) async fn accept(core: Rc<Core>, listener: Listener) {
    loop {
        let (stream, peer) = admission::accept(&core, &listener).await;
        let Some(slot) = admission::admit(&core, peer, "http") else {
            drop(stream);
            continue;
        };
        let deadline = Instant::now() + core.config.http_header_timeout;
        let core = core.clone();
        runtime::spawn(async move {
            serve(core, stream, peer, deadline).await;
            drop(slot);
        });
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The method, as sent.
    pub(crate) method: String,
    /// The path, without the query string, percent-decoded.
    pub(crate) path: String,
    /// The query string, if any.
    pub(crate) query: Option<String>,
    /// HTTP/1.0 (0) or HTTP/1.1 (1).
    pub(crate) version: u8,
    /// Header names (lowercase) and values.
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header holds `token` (case-insensitive).
    fn header_has(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// A WebSocket upgrade: its `Sec-WebSocket-Key`.
    pub(crate) fn websocket_key(&self) -> Option<&str> {
        (self.header_has("upgrade", "websocket") && self.header_has("connection", "upgrade"))
            .then(|| self.header("sec-websocket-key"))
            .flatten()
    }
}

/// Why a request head could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP: answer 400.
    Malformed(String),
    /// Over the size or header-count limit: answer 431.
    TooLarge,
}

/// Parses a request head from the front of `buf`: `Ok(None)` until it is whole.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let Some(path) = percent_decode(path) else {
        return Err(HeadError::Malformed(
            "bad percent-encoding in the path".into(),
        ));
    };
    Ok(Some((
        Request {
            method: req.method.unwrap_or("").to_owned(),
            path,
            query,
            version: req.version.unwrap_or(1),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        },
        len,
    )))
}

/// `%XX` escapes decoded; None if one is broken or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/APP/STREAM.flv`: the stream's hub key.
    Flv(String),
    /// `/`: the list of live streams.
    Index,
    /// `/APP/STREAM`: the player page of that stream.
    Page(String),
    /// Nothing here.
    NotFound,
}

/// Routes a decoded path.
pub(crate) fn route(path: &str) -> Route {
    if path == "/" {
        return Route::Index;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let Some((app, name)) = rest.split_once('/') else {
        return Route::NotFound;
    };
    if app.is_empty() || name.is_empty() || name.ends_with('/') {
        return Route::NotFound;
    }
    match name.strip_suffix(".flv") {
        Some("") => Route::NotFound,
        Some(stream) => Route::Flv(stream_key(app, stream)),
        None => Route::Page(stream_key(app, name)),
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
        ("GET", Route::Flv(key)) => {
            let framing = match req.websocket_key() {
                Some(k) => Framing::WebSocket {
                    accept: super::websocket::accept_key(k.trim().as_bytes()),
                },
                None if req.version == 0 => Framing::Close,
                None => Framing::Chunked,
            };
            http_flv::play(core, stream, peer, key, framing, leftover).await;
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
        ("GET" | "HEAD", Route::Page(key)) => {
            let body = super::page::player(&core.config, &key);
            html(&stream, &body, req.method == "HEAD").await;
        }
        (_, Route::Flv(_) | Route::Index | Route::Page(_)) => {
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

/// Sends an HTML page, then closes.
async fn html(stream: &Stream, body: &str, head_only: bool) {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_whole_or_wait() {
        let raw = b"GET /live/a%20b.flv?sign=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc\r\n\r\nrest";
        assert_eq!(parse_head(&raw[..20]), Ok(None));
        let (req, len) = parse_head(raw).expect("valid").expect("whole");
        assert_eq!(&raw[len..], b"rest");
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/live/a b.flv");
        assert_eq!(req.query.as_deref(), Some("sign=1"));
        assert_eq!(req.version, 1);
        assert_eq!(req.websocket_key(), Some("abc"));
    }

    #[test]
    fn bad_and_big_heads_are_refused() {
        assert!(matches!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse_head(&long), Err(HeadError::TooLarge));
        assert!(matches!(
            parse_head(b"GET /%zz HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn flv_paths_name_streams_as_rtmp_urls_do() {
        assert_eq!(route("/live/cam.flv"), Route::Flv("live/cam".into()));
        assert_eq!(route("/live/a/b.flv"), Route::Flv("live/a/b".into()));
        assert_eq!(route("/live/.flv"), Route::NotFound);
        assert_eq!(route("/cam.flv"), Route::NotFound);
        assert_eq!(route("/live/cam"), Route::Page("live/cam".into()));
        assert_eq!(route("/"), Route::Index);
        assert_eq!(route("/live/"), Route::NotFound);
        assert_eq!(route("/favicon.ico"), Route::NotFound);
    }
}
