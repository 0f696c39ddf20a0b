//! HTTP/1.x request heads, sans-IO: parsing (with `httparse`, bounded: 16 KiB, 64
//! headers) and what a path names on ringcast's HTTP port.

use crate::hub::stream_key;

/// The most a request head may hold.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The path, without the query string, percent-decoded.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// HTTP/1.0 (0) or HTTP/1.1 (1).
    pub version: u8,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
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
    pub fn websocket_key(&self) -> Option<&str> {
        (self.header_has("upgrade", "websocket") && self.header_has("connection", "upgrade"))
            .then(|| self.header("sec-websocket-key"))
            .flatten()
    }
}

/// Why a request head could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP: answer 400.
    Malformed(String),
    /// Over the size or header-count limit: answer 431.
    TooLarge,
}

/// Parses a request head from the front of `buf`: `Ok(None)` until it is whole.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
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
pub enum Route {
    /// `/APP/STREAM.flv`: the stream's hub key.
    Flv(String),
    /// `/`: the list of live streams.
    Index,
    /// `/metrics`: the Prometheus exposition.
    Metrics,
    /// `/healthz`: whether the node takes new connections.
    Health,
    /// `/api/streams` (None) or `/api/streams/APP/STREAM` (that stream's hub key).
    Api(Option<String>),
    /// `/APP/STREAM`: the player page of that stream.
    Page(String),
    /// Nothing here.
    NotFound,
}

/// Routes a decoded path.
pub fn route(path: &str) -> Route {
    match path {
        "/" => return Route::Index,
        "/metrics" => return Route::Metrics,
        "/healthz" => return Route::Health,
        "/api/streams" | "/api/streams/" => return Route::Api(None),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/api/streams/") {
        return match rest.split_once('/') {
            Some((app, name)) if !app.is_empty() && !name.is_empty() => {
                Route::Api(Some(stream_key(app, name)))
            }
            _ => Route::NotFound,
        };
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
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/healthz"), Route::Health);
        assert_eq!(route("/api/streams"), Route::Api(None));
        assert_eq!(
            route("/api/streams/live/a/b"),
            Route::Api(Some("live/a/b".into()))
        );
        assert_eq!(route("/api/streams/live"), Route::NotFound);
        assert_eq!(route("/live/"), Route::NotFound);
        assert_eq!(route("/favicon.ico"), Route::NotFound);
    }
}
