//! Asking an HTTP service which origin holds a stream.
//!
//! The service is configured as `locator = "http://HOST:PORT/PATH"`. For a stream
//! `APP/STREAM` the edge sends `GET PATH?app=APP&stream=STREAM` (both percent-encoded) and
//! reads the answer:
//!
//! - `200` with an `rtmp://` URL as its body (surrounding whitespace is trimmed): the
//!   origin to pull from;
//! - `404`: nobody holds the stream;
//! - anything else (another status, a `200` whose body is not an `rtmp://` URL, a malformed
//!   or oversized response, no answer in time): an error.
//!
//! The request and response codec ([`Locator::request`], [`parse_response`]) is sans-IO;
//! [`Locator::locate`] drives it over one short connection (`Connection: close`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::resolve::{HostPortError, join_host_port, resolve, split_host_port};
use crate::runtime::{Io, Stream};

/// The most bytes of a response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most bytes of a response body.
pub const MAX_BODY: usize = 16 * 1024;
/// The most headers a response may have.
const MAX_HEADERS: usize = 64;
/// The most bytes of chunked framing around a body of at most [`MAX_BODY`] bytes.
const MAX_CHUNKED: usize = 2 * MAX_BODY + 4096;
/// The most bytes of one chunk-size line or trailer line.
const MAX_CHUNK_LINE: usize = 1024;

/// A `locator` URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocatorUrlError {
    /// The URL does not start with `http://`.
    #[error("locator URL {0:?} must start with http://")]
    Scheme(String),
    /// An `https://` URL: TLS is not supported.
    #[error("locator URL {0:?}: https is not supported, use http://")]
    Https(String),
    /// The host or port is malformed.
    #[error("locator URL {url:?}: {source}")]
    Authority {
        /// The URL.
        url: String,
        /// What is wrong with its authority.
        source: HostPortError,
    },
    /// User information (`user@`) in the URL.
    #[error("locator URL {0:?}: user information is not supported")]
    Userinfo(String),
    /// The path has a fragment, whitespace or a control character.
    #[error("locator URL {0:?}: bad path")]
    Path(String),
}

/// A locator exchange that failed.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The locator's host name did not resolve.
    #[error("locator: {0}")]
    Resolve(#[source] io::Error),
    /// The connection to the locator failed.
    #[error("locator: connecting to {addr}: {source}")]
    Connect {
        /// The locator's address.
        addr: SocketAddr,
        /// The reason.
        source: io::Error,
    },
    /// Sending the request or reading the response failed.
    #[error("locator: {0}")]
    Io(#[source] io::Error),
    /// The whole exchange took longer than its timeout.
    #[error("locator: no answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed before the response was complete.
    #[error("locator: the connection closed before the response was complete")]
    Truncated,
    /// The response is not valid HTTP/1.x.
    #[error("locator: malformed response: {0}")]
    Malformed(String),
    /// The response head is larger than [`MAX_HEAD`].
    #[error("locator: response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The response body is larger than [`MAX_BODY`].
    #[error("locator: response body over {MAX_BODY} bytes")]
    BodyTooLarge,
    /// A status other than 200 or 404.
    #[error("locator: HTTP {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A 200 whose body is not an `rtmp://` URL.
    #[error("locator: the answer {0:?} is not an rtmp:// URL")]
    NotRtmpUrl(String),
}

/// An HTTP locator service: where it is and what path to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    /// `host:port` (IPv6 in brackets), for [`resolve`].
    host_port: String,
    /// The `Host` header value: `host_port` without a default port 80.
    host_header: String,
    /// The path (with any query of the configured URL), starting with `/`.
    path: String,
}

/// A parsed HTTP response, as far as the locator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The body of a `200`; empty for other statuses, whose bodies are not read.
    pub body: Bytes,
}

impl Locator {
    /// Parses `http://HOST[:PORT][/PATH]` (port 80 and path `/` by default). Only plain
    /// HTTP is supported.
    pub fn parse(url: &str) -> Result<Locator, LocatorUrlError> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(LocatorUrlError::Https(url.to_owned()));
            }
            _ => return Err(LocatorUrlError::Scheme(url.to_owned())),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(LocatorUrlError::Userinfo(url.to_owned()));
        }
        let (host, port) =
            split_host_port(authority, 80).map_err(|source| LocatorUrlError::Authority {
                url: url.to_owned(),
                source,
            })?;
        if path
            .bytes()
            .any(|b| b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control() || b >= 0x80)
        {
            return Err(LocatorUrlError::Path(url.to_owned()));
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let host_port = join_host_port(&host, port);
        let host_header = if port == 80 {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            }
        } else {
            host_port.clone()
        };
        Ok(Locator {
            host_port,
            host_header,
            path,
        })
    }

    /// The URL, for logs.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.host_port, self.path)
    }

    /// The request asking where `app`/`stream` is.
    pub fn request(&self, app: &str, stream: &str) -> Vec<u8> {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        format!(
            "GET {}{sep}app={}&stream={} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast/{}\r\n\
             Accept: text/plain\r\nConnection: close\r\n\r\n",
            self.path,
            percent_encode(app),
            percent_encode(stream),
            self.host_header,
            env!("CARGO_PKG_VERSION"),
        )
        .into_bytes()
    }

    /// Asks the locator where `app`/`stream` is: `Ok(Some(rtmp_url))`, or `Ok(None)` when
    /// nobody holds it. The whole exchange (resolve, connect, request, response) is bounded
    /// by `timeout`.
    pub async fn locate(
        &self,
        io: Io,
        app: &str,
        stream: &str,
        timeout: Duration,
    ) -> Result<Option<String>, LocateError> {
        let response = tokio::time::timeout(timeout, self.exchange(io, app, stream))
            .await
            .map_err(|_| LocateError::Timeout(timeout))??;
        answer(response)
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) to this URL (an auth callback):
    /// the response's status, all bounded by `timeout`.
    pub async fn post_form(
        &self,
        io: Io,
        form: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u16, LocateError> {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let body = body.join("&");
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast/{}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.path,
            self.host_header,
            env!("CARGO_PKG_VERSION"),
            body.len(),
        );
        let response = tokio::time::timeout(timeout, self.send(io, request.into_bytes()))
            .await
            .map_err(|_| LocateError::Timeout(timeout))??;
        Ok(response.status)
    }

    /// One request and its response, unbounded in time.
    async fn exchange(&self, io: Io, app: &str, stream: &str) -> Result<Response, LocateError> {
        self.send(io, self.request(app, stream)).await
    }

    /// Sends `request` and reads the response, unbounded in time.
    async fn send(&self, io: Io, request: Vec<u8>) -> Result<Response, LocateError> {
        let addr = resolve(&self.host_port)
            .await
            .map_err(LocateError::Resolve)?;
        let conn = Stream::connect(io, addr)
            .await
            .map_err(|source| LocateError::Connect { addr, source })?;
        let result = async {
            conn.write_all(Bytes::from(request))
                .await
                .map_err(LocateError::Io)?;
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                if let Some(r) = parse_response(&mut buf, false)? {
                    return Ok(r);
                }
                let (res, b) = conn.read_buf(buf, 4096).await;
                buf = b;
                if res.map_err(LocateError::Io)? == 0 {
                    return parse_response(&mut buf, true)?.ok_or(LocateError::Truncated);
                }
            }
        }
        .await;
        conn.shutdown_both();
        result
    }
}

/// What a response means: the origin's URL, none, or an error.
fn answer(r: Response) -> Result<Option<String>, LocateError> {
    match r.status {
        200 => {
            let text = String::from_utf8_lossy(&r.body);
            let url = text.trim();
            let well_formed = url
                .strip_prefix("rtmp://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
                && !url
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
            if well_formed {
                Ok(Some(url.to_owned()))
            } else {
                Err(LocateError::NotRtmpUrl(url.chars().take(100).collect()))
            }
        }
        404 => Ok(None),
        status => Err(LocateError::Status {
            status,
            reason: r.reason,
        }),
    }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986 2.3).
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// How the body of a response is delimited.
enum Framing {
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// By the end of the connection.
    Close,
}

/// Decodes one HTTP/1.x response from `buf`: `Ok(None)` until it is complete. `eof` says
/// the peer has closed the connection (which completes a body delimited by the close, and
/// makes anything else incomplete an error). Interim `1xx` responses are skipped. Only the
/// body of a `200` is read; other statuses come back as soon as their head has. Bytes are
/// consumed when a whole response (or interim response) parsed.
pub fn parse_response(buf: &mut BytesMut, eof: bool) -> Result<Option<Response>, LocateError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let head_len = match head.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > MAX_HEAD {
                    Err(LocateError::HeadTooLarge)
                } else if eof {
                    Err(LocateError::Truncated)
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(LocateError::Malformed(e.to_string())),
        };
        if head_len > MAX_HEAD {
            return Err(LocateError::HeadTooLarge);
        }
        let status = head
            .code
            .ok_or_else(|| LocateError::Malformed("no status".into()))?;
        let reason = head.reason.unwrap_or("").to_owned();
        if (100..200).contains(&status) && status != 101 {
            buf.advance(head_len);
            continue;
        }
        if status != 200 {
            buf.advance(head_len);
            return Ok(Some(Response {
                status,
                reason,
                body: Bytes::new(),
            }));
        }
        let framing = framing(head.headers)?;
        let rest = &buf[head_len..];
        let (body, used) = match framing {
            Framing::Length(n) if n > MAX_BODY => return Err(LocateError::BodyTooLarge),
            Framing::Length(n) if rest.len() >= n => (Bytes::copy_from_slice(&rest[..n]), n),
            Framing::Length(_) if eof => return Err(LocateError::Truncated),
            Framing::Length(_) => return Ok(None),
            Framing::Close if rest.len() > MAX_BODY => return Err(LocateError::BodyTooLarge),
            Framing::Close if eof => (Bytes::copy_from_slice(rest), rest.len()),
            Framing::Close => return Ok(None),
            Framing::Chunked => match dechunk(rest)? {
                Some((body, used)) => (Bytes::from(body), used),
                None if eof => return Err(LocateError::Truncated),
                None => return Ok(None),
            },
        };
        buf.advance(head_len + used);
        return Ok(Some(Response {
            status,
            reason,
            body,
        }));
    }
}

/// The body framing the headers of a response declare.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, LocateError> {
    let mut length = None;
    let mut chunked = false;
    for h in headers {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| LocateError::Malformed(format!("non-text {} header", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(LocateError::Malformed(format!(
                    "unsupported Transfer-Encoding {value:?}"
                )));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| LocateError::Malformed(format!("Content-Length {value:?}")))?;
            if length.is_some_and(|m| m != n) {
                return Err(LocateError::Malformed("conflicting Content-Length".into()));
            }
            length = Some(n);
        }
    }
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length.
    Ok(match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    })
}

/// Decodes a chunked body (RFC 9112 7.1) from the start of `data`: the body and the bytes
/// it took, or `None` while incomplete. Chunk extensions and trailers are skipped.
fn dechunk(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, LocateError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some((line, next)) = chunk_line(data, pos)? else {
            return Ok(None);
        };
        let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size_text = std::str::from_utf8(size_text)
            .map_err(|_| LocateError::Malformed("bad chunk size".into()))?
            .trim();
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LocateError::Malformed(format!(
                "bad chunk size {size_text:?}"
            )));
        }
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|&n| n <= MAX_BODY)
            .ok_or(LocateError::BodyTooLarge)?;
        pos = next;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some((line, next)) = chunk_line(data, pos)? else {
                    return Ok(None);
                };
                pos = next;
                if line.is_empty() {
                    return Ok(Some((body, pos)));
                }
                if pos > MAX_CHUNKED {
                    return Err(LocateError::BodyTooLarge);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(LocateError::BodyTooLarge);
        }
        let end = pos + size;
        if data.len() < end + 2 {
            return Ok(None);
        }
        if &data[end..end + 2] != b"\r\n" {
            return Err(LocateError::Malformed("chunk not followed by CRLF".into()));
        }
        body.extend_from_slice(&data[pos..end]);
        pos = end + 2;
        if pos > MAX_CHUNKED {
            return Err(LocateError::BodyTooLarge);
        }
    }
}

/// The line of `data` starting at `pos` (without its CRLF) and where the next one starts;
/// `None` while it is incomplete.
fn chunk_line(data: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, LocateError> {
    let rest = data.get(pos..).unwrap_or(&[]);
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > MAX_CHUNK_LINE => Err(LocateError::Malformed("chunk line too long".into())),
        Some(i) => Ok(Some((&rest[..i], pos + i + 2))),
        None if rest.len() > MAX_CHUNK_LINE => {
            Err(LocateError::Malformed("chunk line too long".into()))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locator() -> Locator {
        Locator::parse("http://127.0.0.1:8080/where").expect("parse")
    }

    /// Feeds `bytes` one at a time: `Ok(None)` until the last one, then the response.
    fn byte_by_byte(bytes: &[u8], eof_at_end: bool) -> Result<Response, LocateError> {
        let mut buf = BytesMut::new();
        for (i, &b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            match parse_response(&mut buf, false)? {
                Some(r) if i + 1 == bytes.len() => return Ok(r),
                Some(r) => panic!("complete after {} of {} bytes: {r:?}", i + 1, bytes.len()),
                None => {}
            }
        }
        if eof_at_end {
            parse_response(&mut buf, true)?.ok_or(LocateError::Truncated)
        } else {
            Err(LocateError::Truncated)
        }
    }

    #[test]
    fn parses_urls() {
        let l = locator();
        assert_eq!(l.url(), "http://127.0.0.1:8080/where");
        let l = Locator::parse("http://locator.internal").expect("parse");
        assert_eq!(l.url(), "http://locator.internal:80/");
        assert_eq!(l.host_header, "locator.internal");
        let l = Locator::parse("HTTP://[::1]:81/a/b?key=1").expect("parse");
        assert_eq!(l.url(), "http://[::1]:81/a/b?key=1");
        assert_eq!(l.host_header, "[::1]:81");
        let l = Locator::parse("http://h?x=1").expect("parse");
        assert_eq!(l.path, "/?x=1");
    }

    #[test]
    fn refuses_bad_urls() {
        use LocatorUrlError as E;
        assert!(matches!(Locator::parse("https://h/x"), Err(E::Https(_))));
        assert!(matches!(Locator::parse("rtmp://h/x"), Err(E::Scheme(_))));
        assert!(matches!(Locator::parse("h:80/x"), Err(E::Scheme(_))));
        assert!(matches!(
            Locator::parse("http://u:p@h/x"),
            Err(E::Userinfo(_))
        ));
        assert!(matches!(
            Locator::parse("http:///x"),
            Err(E::Authority { .. })
        ));
        assert!(matches!(
            Locator::parse("http://h:99999/"),
            Err(E::Authority { .. })
        ));
        assert!(matches!(Locator::parse("http://h/a b"), Err(E::Path(_))));
        assert!(matches!(Locator::parse("http://h/a#f"), Err(E::Path(_))));
    }

    #[test]
    fn request_encodes_the_query() {
        let req = String::from_utf8(locator().request("live", "my stream&x=1/é")).expect("utf8");
        assert_eq!(
            req,
            format!(
                "GET /where?app=live&stream=my%20stream%26x%3D1%2F%C3%A9 HTTP/1.1\r\n\
                 Host: 127.0.0.1:8080\r\nUser-Agent: ringcast/{}\r\nAccept: text/plain\r\n\
                 Connection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let with_query = Locator::parse("http://h/w?k=v").expect("parse");
        let req = String::from_utf8(with_query.request("a-b_c.d~", "s")).expect("utf8");
        assert!(
            req.starts_with("GET /w?k=v&app=a-b_c.d~&stream=s HTTP/1.1\r\nHost: h\r\n"),
            "{req}"
        );
    }

    #[test]
    fn content_length_body_at_every_split() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\n\r\nrtmp://10.0.0.1:1935\r\n\n";
        let r = byte_by_byte(resp, false).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"rtmp://10.0.0.1:1935\r\n\n");
        assert_eq!(
            answer(r).expect("answer").as_deref(),
            Some("rtmp://10.0.0.1:1935")
        );
    }

    #[test]
    fn chunked_body_at_every_split() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     7;ext=1\r\nrtmp://\r\n0d\r\norigin-1:1935\r\n0\r\nX-Trailer: y\r\n\r\n";
        let r = byte_by_byte(resp, false).expect("response");
        assert_eq!(&r.body[..], b"rtmp://origin-1:1935");
    }

    #[test]
    fn close_delimited_body_needs_eof() {
        let resp = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nrtmp://o/live\n";
        let r = byte_by_byte(resp, true).expect("response");
        assert_eq!(&r.body[..], b"rtmp://o/live\n");
    }

    #[test]
    fn leaves_what_follows_and_skips_interim_responses() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nrtmp://hextra"[..],
        );
        let r = parse_response(&mut buf, false).expect("ok").expect("done");
        assert_eq!(&r.body[..], b"rtmp://h");
        assert_eq!(&buf[..], b"extra");
    }

    #[test]
    fn other_statuses_come_back_after_the_head() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 404 Not Found\r\nContent-Length: 99999\r\n\r\n"[..]);
        let r = parse_response(&mut buf, false).expect("ok").expect("done");
        assert_eq!(r.status, 404);
        assert_eq!(answer(r).expect("answer"), None);
        let mut buf = BytesMut::from(&b"HTTP/1.1 503 Busy\r\n\r\n"[..]);
        let r = parse_response(&mut buf, false).expect("ok").expect("done");
        let e = answer(r).expect_err("503");
        assert_eq!(e.to_string(), "locator: HTTP 503 Busy");
    }

    #[test]
    fn refuses_answers_that_are_not_rtmp_urls() {
        for body in [
            "",
            "http://o/",
            "rtmp://",
            "rtmp:///x",
            "rtmp://a b",
            "origin:1935",
        ] {
            let r = Response {
                status: 200,
                reason: "OK".into(),
                body: Bytes::copy_from_slice(body.as_bytes()),
            };
            assert!(
                matches!(answer(r), Err(LocateError::NotRtmpUrl(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn refuses_malformed_and_oversized_responses() {
        let cases: &[(&[u8], bool)] = &[
            (b"SIP/2.0 200 OK\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true),
            (b"HTTP/1.1 200 OK\r\nContent-Le", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 16385\r\n\r\n", false),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4001\r\n",
                false,
            ),
        ];
        for (bytes, eof) in cases {
            let mut buf = BytesMut::from(*bytes);
            let r = parse_response(&mut buf, *eof);
            assert!(r.is_err(), "{:?}: {r:?}", String::from_utf8_lossy(bytes));
        }
        // A close-delimited body past the limit.
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        buf.extend_from_slice(&[b'a'; MAX_BODY + 1]);
        assert!(matches!(
            parse_response(&mut buf, false),
            Err(LocateError::BodyTooLarge)
        ));
        // Many small chunks past the limit.
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
        for _ in 0..=MAX_BODY {
            buf.extend_from_slice(b"1\r\na\r\n");
        }
        assert!(matches!(
            parse_response(&mut buf, false),
            Err(LocateError::BodyTooLarge)
        ));
        // A head that never ends.
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        for _ in 0..MAX_HEAD / 10 {
            buf.extend_from_slice(b"X-A: 1234\r\n");
        }
        assert!(parse_response(&mut buf, false).is_err());
    }
}
