//! A stream registry in Redis: which origin holds which stream.
//!
//! The registry is configured as `registry = "redis://HOST[:PORT][/DB]"` (port 6379 and
//! database 0 by default). An origin writes `ringcast:stream:APP/STREAM` →
//! `rtmp://its-advertised-address` with a TTL while a stream is published on it, refreshes
//! it before the TTL runs out, and deletes it on unpublish; an edge reads it to find the
//! origin to pull from.
//!
//! Each operation is one short connection: `SELECT db` (when the database is not 0) and the
//! command are pipelined in one write, and the replies read back in order. The RESP2 codec
//! ([`encode_command`], [`decode_reply`]) is sans-IO.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::resolve::{HostPortError, join_host_port, resolve, split_host_port};
use crate::runtime::{Io, Stream};

/// The most bytes of one bulk string in a reply.
pub const MAX_BULK: usize = 1024 * 1024;
/// The most elements of one array in a reply.
pub const MAX_ARRAY: usize = 1024;
/// The deepest nesting of arrays in a reply.
pub const MAX_DEPTH: usize = 8;
/// The most bytes of one reply (all its elements together).
pub const MAX_REPLY: usize = 2 * 1024 * 1024;
/// The most bytes of a simple string, error or length line.
const MAX_LINE: usize = 64 * 1024;

/// A `registry` URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryUrlError {
    /// The URL does not start with `redis://`.
    #[error("registry URL {0:?} must start with redis://")]
    Scheme(String),
    /// A `rediss://` URL: TLS is not supported.
    #[error("registry URL {0:?}: rediss (TLS) is not supported, use redis://")]
    Tls(String),
    /// The host or port is malformed.
    #[error("registry URL {url:?}: {source}")]
    Authority {
        /// The URL.
        url: String,
        /// What is wrong with its authority.
        source: HostPortError,
    },
    /// User information (a password) in the URL.
    #[error("registry URL {0:?}: user names and passwords are not supported")]
    Userinfo(String),
    /// The path is not a database number, or there is a query or fragment.
    #[error("registry URL {0:?}: the path must be a database number (redis://host:6379/0)")]
    Db(String),
}

/// A malformed or oversized RESP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A type byte this client does not know (RESP3 types included: it never asks for them).
    #[error("unknown reply type {0:#04x}")]
    UnknownType(u8),
    /// A line is not followed by CRLF, or a length or integer is not a number.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// A bulk string over [`MAX_BULK`] bytes.
    #[error("bulk string of {0} bytes, over {MAX_BULK}")]
    BulkTooLarge(i64),
    /// An array over [`MAX_ARRAY`] elements.
    #[error("array of {0} elements, over {MAX_ARRAY}")]
    ArrayTooLarge(i64),
    /// Arrays nested deeper than [`MAX_DEPTH`].
    #[error("arrays nested over {MAX_DEPTH} deep")]
    TooDeep,
    /// A line over 64 KiB, or a reply over [`MAX_REPLY`] bytes.
    #[error("reply too large")]
    TooLarge,
}

/// A registry operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry's host name did not resolve.
    #[error("registry: {0}")]
    Resolve(#[source] io::Error),
    /// The connection to the registry failed.
    #[error("registry: connecting to {addr}: {source}")]
    Connect {
        /// The registry's address.
        addr: SocketAddr,
        /// The reason.
        source: io::Error,
    },
    /// Sending the command or reading the reply failed.
    #[error("registry: {0}")]
    Io(#[source] io::Error),
    /// The whole operation took longer than its timeout.
    #[error("registry: no answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed before all replies came.
    #[error("registry: the connection closed before the reply")]
    Closed,
    /// A reply that is not RESP.
    #[error("registry: {0}")]
    Protocol(#[from] RespError),
    /// Redis answered with an error reply.
    #[error("registry: redis: {0}")]
    Server(String),
    /// A well-formed reply of a kind the command does not return.
    #[error("registry: unexpected reply to {command}: {reply}")]
    Unexpected {
        /// The command.
        command: &'static str,
        /// The reply, abridged.
        reply: String,
    },
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the message.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`; `None` is the null bulk string `$-1`.
    Bulk(Option<Bytes>),
    /// `*2\r\n...`; `None` is the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A short description for error messages.
    fn abridged(&self) -> String {
        let mut s = format!("{self:?}");
        if s.len() > 120 {
            let mut end = 120;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
        s
    }
}

/// Appends `args` to `out` as a RESP command: an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    out.put_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.put_slice(format!("${}\r\n", a.len()).as_bytes());
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

/// Decodes one reply from the front of `buf`: `Ok(None)` while it is incomplete. Bytes are
/// consumed only when a whole reply parsed; bulk strings are split out of the buffer, not
/// copied.
pub fn decode_reply(buf: &mut BytesMut) -> Result<Option<Reply>, RespError> {
    let Some(end) = scan(buf, 0, 0)? else {
        if buf.len() > MAX_REPLY {
            return Err(RespError::TooLarge);
        }
        return Ok(None);
    };
    if end > MAX_REPLY {
        return Err(RespError::TooLarge);
    }
    let frame = buf.split_to(end).freeze();
    let (reply, _) = build(&frame, 0)?;
    Ok(Some(reply))
}

/// The line starting at `pos` (without its CRLF) and where the next item starts; `None`
/// while incomplete.
fn line(src: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = src.get(pos..).unwrap_or(&[]);
    let scan_to = rest.len().min(MAX_LINE + 2);
    match rest[..scan_to].iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok(Some((&rest[..i - 1], pos + i + 1))),
        Some(_) => Err(RespError::Malformed("line not ended by CRLF")),
        None if rest.len() > MAX_LINE => Err(RespError::TooLarge),
        None => Ok(None),
    }
}

/// A decimal integer line.
fn int(text: &[u8]) -> Result<i64, RespError> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::Malformed("not an integer"));
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Malformed("integer out of range"))
}

/// A bulk string's or array's length: `None` for -1 (null), an error past `max`.
fn length(
    text: &[u8],
    max: usize,
    too_large: fn(i64) -> RespError,
) -> Result<Option<usize>, RespError> {
    match int(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(RespError::Malformed("negative length")),
        n => match usize::try_from(n) {
            Ok(len) if len <= max => Ok(Some(len)),
            _ => Err(too_large(n)),
        },
    }
}

/// Checks the reply starting at `pos` without building it: where it ends, or `None` while
/// incomplete.
fn scan(src: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, RespError> {
    let Some(&kind) = src.get(pos) else {
        return Ok(None);
    };
    let Some((text, next)) = line(src, pos + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => Ok(Some(next)),
        b':' => int(text).map(|_| Some(next)),
        b'$' => match length(text, MAX_BULK, RespError::BulkTooLarge)? {
            None => Ok(Some(next)),
            Some(len) => {
                let end = next + len;
                match src.get(end..end + 2) {
                    None => Ok(None),
                    Some(b"\r\n") => Ok(Some(end + 2)),
                    Some(_) => Err(RespError::Malformed("bulk string not ended by CRLF")),
                }
            }
        },
        b'*' => {
            let Some(count) = length(text, MAX_ARRAY, RespError::ArrayTooLarge)? else {
                return Ok(Some(next));
            };
            if count > 0 && depth >= MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            let mut at = next;
            for _ in 0..count {
                match scan(src, at, depth + 1)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
                if at > MAX_REPLY {
                    return Err(RespError::TooLarge);
                }
            }
            Ok(Some(at))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

/// Builds the reply starting at `pos` of a frame [`scan`] found complete.
fn build(frame: &Bytes, pos: usize) -> Result<(Reply, usize), RespError> {
    let incomplete = RespError::Malformed("reply changed while decoding");
    let kind = *frame.get(pos).ok_or(incomplete.clone())?;
    let (text, next) = line(frame, pos + 1)?.ok_or(incomplete.clone())?;
    let text_string = || String::from_utf8_lossy(text).into_owned();
    Ok(match kind {
        b'+' => (Reply::Simple(text_string()), next),
        b'-' => (Reply::Error(text_string()), next),
        b':' => (Reply::Integer(int(text)?), next),
        b'$' => match length(text, MAX_BULK, RespError::BulkTooLarge)? {
            None => (Reply::Bulk(None), next),
            Some(len) => {
                let end = next + len;
                if frame.len() < end + 2 {
                    return Err(incomplete);
                }
                (Reply::Bulk(Some(frame.slice(next..end))), end + 2)
            }
        },
        b'*' => match length(text, MAX_ARRAY, RespError::ArrayTooLarge)? {
            None => (Reply::Array(None), next),
            Some(count) => {
                let mut items = Vec::with_capacity(count);
                let mut at = next;
                for _ in 0..count {
                    let (item, end) = build(frame, at)?;
                    items.push(item);
                    at = end;
                }
                (Reply::Array(Some(items)), at)
            }
        },
        other => return Err(RespError::UnknownType(other)),
    })
}

/// A Redis server holding the stream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host:port` (IPv6 in brackets), for [`resolve`].
    host_port: String,
    /// The database number.
    db: u32,
}

impl Registry {
    /// Parses `redis://HOST[:PORT][/DB]` (port 6379 and database 0 by default).
    pub fn parse(url: &str) -> Result<Registry, RegistryUrlError> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("rediss") => {
                return Err(RegistryUrlError::Tls(url.to_owned()));
            }
            _ => return Err(RegistryUrlError::Scheme(url.to_owned())),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(RegistryUrlError::Userinfo(url.to_owned()));
        }
        let (host, port) =
            split_host_port(authority, 6379).map_err(|source| RegistryUrlError::Authority {
                url: url.to_owned(),
                source,
            })?;
        let db = match path {
            "" | "/" => 0,
            p => p
                .strip_prefix('/')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u32>().ok())
                .ok_or_else(|| RegistryUrlError::Db(url.to_owned()))?,
        };
        Ok(Registry {
            host_port: join_host_port(&host, port),
            db,
        })
    }

    /// The URL, for logs.
    pub fn url(&self) -> String {
        format!("redis://{}/{}", self.host_port, self.db)
    }

    /// The registry key of APP/STREAM: `ringcast:stream:APP/STREAM`.
    pub fn key(app: &str, stream: &str) -> String {
        format!("ringcast:stream:{app}/{stream}")
    }

    /// Sets `key` to `value`, expiring after `ttl` (`SET key value PX ms`; a TTL under a
    /// millisecond counts as one). The whole operation is bounded by `timeout`.
    pub async fn set(
        &self,
        io: Io,
        key: &str,
        value: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<(), RegistryError> {
        let ms = ttl.as_millis().clamp(1, i64::MAX as u128).to_string();
        let args: [&[u8]; 5] = [
            b"SET",
            key.as_bytes(),
            value.as_bytes(),
            b"PX",
            ms.as_bytes(),
        ];
        match self.run(io, &args, timeout).await? {
            Reply::Simple(s) if s == "OK" => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// The value of `key`, or `None` when it is not set (or has expired). The whole
    /// operation is bounded by `timeout`.
    pub async fn get(
        &self,
        io: Io,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<String>, RegistryError> {
        match self.run(io, &[b"GET", key.as_bytes()], timeout).await? {
            Reply::Bulk(None) => Ok(None),
            Reply::Bulk(Some(b)) => match String::from_utf8(b.to_vec()) {
                Ok(s) => Ok(Some(s)),
                Err(_) => Err(unexpected("GET", &Reply::Bulk(Some(b)))),
            },
            other => Err(unexpected("GET", &other)),
        }
    }

    /// Deletes `key` (nothing happens when it is not set). The whole operation is bounded by
    /// `timeout`.
    pub async fn del(&self, io: Io, key: &str, timeout: Duration) -> Result<(), RegistryError> {
        match self.run(io, &[b"DEL", key.as_bytes()], timeout).await? {
            Reply::Integer(_) => Ok(()),
            other => Err(unexpected("DEL", &other)),
        }
    }

    /// The bytes of one operation: `SELECT db` when the database is not 0, then `args`.
    /// Returns them with the number of replies to expect.
    fn commands(&self, args: &[&[u8]]) -> (BytesMut, usize) {
        let mut out = BytesMut::with_capacity(128);
        let mut replies = 1;
        if self.db != 0 {
            let db = self.db.to_string();
            encode_command(&[b"SELECT", db.as_bytes()], &mut out);
            replies += 1;
        }
        encode_command(args, &mut out);
        (out, replies)
    }

    /// Runs `args` (after a `SELECT`), bounded by `timeout`, and gives back its reply. An
    /// error reply to either command is [`RegistryError::Server`].
    async fn run(&self, io: Io, args: &[&[u8]], timeout: Duration) -> Result<Reply, RegistryError> {
        tokio::time::timeout(timeout, self.exchange(io, args))
            .await
            .map_err(|_| RegistryError::Timeout(timeout))?
    }

    /// [`Registry::run`], unbounded in time.
    async fn exchange(&self, io: Io, args: &[&[u8]]) -> Result<Reply, RegistryError> {
        let (out, mut expected) = self.commands(args);
        let addr = resolve(&self.host_port)
            .await
            .map_err(RegistryError::Resolve)?;
        let conn = Stream::connect(io, addr)
            .await
            .map_err(|source| RegistryError::Connect { addr, source })?;
        let result = async {
            conn.write_all(out.freeze())
                .await
                .map_err(RegistryError::Io)?;
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                while let Some(reply) = decode_reply(&mut buf)? {
                    expected -= 1;
                    match reply {
                        Reply::Error(msg) => return Err(RegistryError::Server(msg)),
                        reply if expected == 0 => return Ok(reply),
                        Reply::Simple(s) if s == "OK" => {}
                        other => return Err(unexpected("SELECT", &other)),
                    }
                }
                let want = (buf.len() + 4096).clamp(4096, 64 * 1024);
                let (res, b) = conn.read_buf(buf, want).await;
                buf = b;
                if res.map_err(RegistryError::Io)? == 0 {
                    return Err(RegistryError::Closed);
                }
            }
        }
        .await;
        conn.shutdown_both();
        result
    }
}

/// The error for a reply `command` does not give.
fn unexpected(command: &'static str, reply: &Reply) -> RegistryError {
    RegistryError::Unexpected {
        command,
        reply: reply.abridged(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Option<Reply>, RespError> {
        decode_reply(&mut BytesMut::from(bytes))
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn parses_urls() {
        let r = Registry::parse("redis://127.0.0.1:6380/2").expect("parse");
        assert_eq!((r.host_port.as_str(), r.db), ("127.0.0.1:6380", 2));
        assert_eq!(r.url(), "redis://127.0.0.1:6380/2");
        let r = Registry::parse("redis://registry.internal").expect("parse");
        assert_eq!(r.url(), "redis://registry.internal:6379/0");
        let r = Registry::parse("REDIS://[::1]/").expect("parse");
        assert_eq!(r.url(), "redis://[::1]:6379/0");
    }

    #[test]
    fn refuses_bad_urls() {
        use RegistryUrlError as E;
        assert!(matches!(Registry::parse("rediss://h"), Err(E::Tls(_))));
        assert!(matches!(Registry::parse("http://h"), Err(E::Scheme(_))));
        assert!(matches!(Registry::parse("h:6379"), Err(E::Scheme(_))));
        assert!(matches!(
            Registry::parse("redis://:pw@h"),
            Err(E::Userinfo(_))
        ));
        assert!(matches!(
            Registry::parse("redis://"),
            Err(E::Authority { .. })
        ));
        assert!(matches!(
            Registry::parse("redis://h:x"),
            Err(E::Authority { .. })
        ));
        for bad in [
            "redis://h/x",
            "redis://h/-1",
            "redis://h/1/2",
            "redis://h/1?a",
            "redis://h#f",
        ] {
            assert!(matches!(Registry::parse(bad), Err(E::Db(_))), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(Registry::key("live", "cam 1"), "ringcast:stream:live/cam 1");
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = BytesMut::new();
        encode_command(&[b"SET", b"k", b"a b\r\n", b"PX", b"300"], &mut out);
        assert_eq!(
            &out[..],
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na b\r\n\r\n$2\r\nPX\r\n$3\r\n300\r\n"
        );
        // The encoding is itself a valid reply: an array of bulk strings.
        let back = decode_reply(&mut out).expect("ok").expect("done");
        assert_eq!(
            back,
            Reply::Array(Some(vec![
                bulk("SET"),
                bulk("k"),
                bulk("a b\r\n"),
                bulk("PX"),
                bulk("300")
            ]))
        );
    }

    #[test]
    fn commands_select_only_a_non_zero_db() {
        let r0 = Registry::parse("redis://h").expect("parse");
        let (out, n) = r0.commands(&[b"GET", b"k"]);
        assert_eq!((&out[..], n), (&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..], 1));
        let r2 = Registry::parse("redis://h/2").expect("parse");
        let (out, n) = r2.commands(&[b"GET", b"k"]);
        assert_eq!(
            (&out[..], n),
            (
                &b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..],
                2
            )
        );
    }

    #[test]
    fn decodes_every_kind() {
        assert_eq!(decode_all(b"+OK\r\n"), Ok(Some(Reply::Simple("OK".into()))));
        assert_eq!(
            decode_all(b"-ERR unknown command\r\n"),
            Ok(Some(Reply::Error("ERR unknown command".into())))
        );
        assert_eq!(decode_all(b":-42\r\n"), Ok(Some(Reply::Integer(-42))));
        assert_eq!(decode_all(b"$0\r\n\r\n"), Ok(Some(bulk(""))));
        assert_eq!(decode_all(b"$-1\r\n"), Ok(Some(Reply::Bulk(None))));
        assert_eq!(decode_all(b"*-1\r\n"), Ok(Some(Reply::Array(None))));
        assert_eq!(decode_all(b"*0\r\n"), Ok(Some(Reply::Array(Some(vec![])))));
        assert_eq!(
            decode_all(b"*3\r\n:1\r\n*1\r\n$-1\r\n$2\r\nhi\r\n"),
            Ok(Some(Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Array(Some(vec![Reply::Bulk(None)])),
                bulk("hi"),
            ]))))
        );
    }

    /// Every reply of a pipelined stream, fed one byte at a time: need-more until each is
    /// complete, and each consumed exactly.
    #[test]
    fn decodes_split_at_every_byte() {
        let stream: &[u8] =
            b"+OK\r\n$20\r\nrtmp://10.0.0.1:1935\r\n:1\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n+x\r\n-ERR no\r\n";
        let want = vec![
            Reply::Simple("OK".into()),
            bulk("rtmp://10.0.0.1:1935"),
            Reply::Integer(1),
            Reply::Bulk(None),
            Reply::Array(Some(vec![
                bulk("a"),
                Reply::Array(Some(vec![Reply::Simple("x".into())])),
            ])),
            Reply::Error("ERR no".into()),
        ];
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in stream {
            buf.extend_from_slice(&[b]);
            let before = buf.len();
            match decode_reply(&mut buf).expect("ok") {
                Some(r) => {
                    got.push(r);
                    assert!(buf.is_empty(), "a reply ends on this byte");
                }
                None => assert_eq!(buf.len(), before, "nothing consumed"),
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_malformed_and_oversized_replies() {
        use RespError as E;
        let cases: &[(&[u8], E)] = &[
            (b"?x\r\n", E::UnknownType(b'?')),
            (b"%1\r\n", E::UnknownType(b'%')),
            (b"+OK\n", E::Malformed("line not ended by CRLF")),
            (b":12a\r\n", E::Malformed("not an integer")),
            (b":\r\n", E::Malformed("not an integer")),
            (
                b":99999999999999999999\r\n",
                E::Malformed("integer out of range"),
            ),
            (b"$-2\r\n", E::Malformed("negative length")),
            (b"$2\r\nabcd", E::Malformed("bulk string not ended by CRLF")),
            (b"$1048577\r\n", E::BulkTooLarge(1_048_577)),
            (b"*1025\r\n", E::ArrayTooLarge(1025)),
            (b"*1\r\n+a\n", E::Malformed("line not ended by CRLF")),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                decode_all(bytes).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Nesting past the bound.
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(decode_all(deep.as_bytes()), Err(E::TooDeep));
        let ok = "*1\r\n".repeat(MAX_DEPTH) + ":1\r\n";
        assert!(matches!(
            decode_all(ok.as_bytes()),
            Ok(Some(Reply::Array(_)))
        ));
        // A line that never ends.
        assert_eq!(decode_all(&vec![b'+'; MAX_LINE + 10]), Err(E::TooLarge));
        // Nothing yet, or a partial length line.
        assert_eq!(decode_all(b""), Ok(None));
        assert_eq!(decode_all(b"$5"), Ok(None));
        assert_eq!(decode_all(b"$5\r\nab"), Ok(None));
    }

    #[test]
    fn bounds_the_whole_reply() {
        // Three 1 MiB bulk strings in one array: each allowed, together too large.
        let mut buf = BytesMut::from(&b"*3\r\n"[..]);
        for _ in 0..3 {
            buf.extend_from_slice(format!("${MAX_BULK}\r\n").as_bytes());
            buf.extend_from_slice(&vec![b'x'; MAX_BULK]);
            buf.extend_from_slice(b"\r\n");
        }
        assert_eq!(decode_reply(&mut buf), Err(RespError::TooLarge));
        // One of them alone is fine, and is not copied out of the buffer.
        let mut buf = BytesMut::from(format!("${MAX_BULK}\r\n").as_bytes());
        buf.extend_from_slice(&vec![b'x'; MAX_BULK]);
        buf.extend_from_slice(b"\r\n");
        match decode_reply(&mut buf) {
            Ok(Some(Reply::Bulk(Some(b)))) => assert_eq!(b.len(), MAX_BULK),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn abridges_long_replies() {
        let r = bulk(&"é".repeat(200));
        let s = r.abridged();
        assert!(s.chars().count() <= 121 && s.ends_with('…'), "{s}");
    }
}
