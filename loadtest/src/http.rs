//! The HTTP-FLV and WebSocket-FLV player: `GET /PATH.flv` (with an upgrade for
//! WebSocket), then an FLV byte stream: plain, chunked, or in binary WebSocket messages.

use std::time::Instant;

use bytes::{Buf, BytesMut};
use ringcast::flv::{Item, Reader, TagType};
use ringcast::rtmp::session::MediaKind;

use crate::player::{Ctx, Sink, connect, io_end, read_some};
use crate::report::End;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Where a chunked body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes to go.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// The terminating zero-size chunk was seen.
    Done,
}

/// Moves the payloads of whole server WebSocket frames from `input` to `out`: binary
/// messages carry the FLV bytes, pings and pongs are skipped. `Ok(true)` once a close frame
/// came; `Err` on a masked or malformed frame.
fn unframe_ws(input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, ()> {
    loop {
        let (Some(&b0), Some(&b1)) = (input.first(), input.get(1)) else {
            return Ok(false);
        };
        if b1 & 0x80 != 0 {
            return Err(());
        }
        let (len, at) = match b1 & 0x7F {
            126 => match input.get(2..4) {
                Some(b) => (usize::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(false),
            },
            127 => match input.get(2..10) {
                Some(b) => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(b);
                    (usize::try_from(u64::from_be_bytes(n)).map_err(|_| ())?, 10)
                }
                None => return Ok(false),
            },
            n => (usize::from(n), 2),
        };
        if input.len() < at + len {
            return Ok(false);
        }
        input.advance(at);
        let payload = input.split_to(len);
        match b0 & 0x0F {
            0 | 2 => out.extend_from_slice(&payload),
            8 => return Ok(true),
            9 | 10 => {}
            _ => return Err(()),
        }
    }
}

/// Moves decoded body bytes from `input` to `out`. `Err` on a malformed chunk framing.
fn dechunk(state: &mut Chunked, input: &mut BytesMut, out: &mut BytesMut) -> Result<(), ()> {
    loop {
        match *state {
            Chunked::Size => {
                let Some(eol) = input.windows(2).position(|w| w == b"\r\n") else {
                    return if input.len() > 1024 { Err(()) } else { Ok(()) };
                };
                let line = std::str::from_utf8(&input[..eol]).map_err(|_| ())?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| ())?;
                input.advance(eol + 2);
                *state = if size == 0 {
                    Chunked::Done
                } else {
                    Chunked::Data(size)
                };
            }
            Chunked::Data(n) => {
                if input.is_empty() {
                    return Ok(());
                }
                let take = n.min(input.len());
                out.extend_from_slice(&input.split_to(take));
                *state = if take == n {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(n - take)
                };
            }
            Chunked::DataEnd => {
                if input.len() < 2 {
                    return Ok(());
                }
                if &input[..2] != b"\r\n" {
                    return Err(());
                }
                input.advance(2);
                *state = Chunked::Size;
            }
            Chunked::Done => return Ok(()),
        }
    }
}

/// Parses a response head; returns (status, chunked) or None when malformed.
fn parse_head(head: &[u8]) -> Option<(u16, bool)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    Some((status, chunked))
}

/// Plays an HTTP-FLV URL until the end of the run.
pub async fn play_http(ctx: &Ctx, sink: &mut Sink) -> End {
    let stream = match connect(ctx, sink).await {
        Ok(s) => s,
        Err(end) => return end,
    };
    let ws = ctx.target.scheme == crate::target::Scheme::Ws;
    let upgrade = if ws {
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: cmluZ2Nhc3QtbG9hZHRlc3Q=\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast-loadtest\r\nAccept: */*\r\n{upgrade}\r\n",
        ctx.target.stream, ctx.target.authority
    );
    if let Err(e) = stream.write_all(req.into_bytes().into()).await {
        return io_end(&e);
    }
    let mut raw = BytesMut::with_capacity(64 * 1024);
    let mut body = BytesMut::with_capacity(64 * 1024);
    let mut chunked: Option<Chunked> = None;
    let mut in_body = false;
    let mut flv = Reader::default();
    let mut ws_closed = false;
    loop {
        raw = match read_some(ctx, sink, &stream, raw, 64 * 1024).await {
            Ok(b) => b,
            Err(end) => return end,
        };
        if !in_body {
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                if raw.len() > MAX_HEAD {
                    return End::Error;
                }
                continue;
            };
            let head = raw.split_to(end + 4);
            match parse_head(&head) {
                Some((200, is_chunked)) if !ws => {
                    chunked = is_chunked.then_some(Chunked::Size);
                    in_body = true;
                    sink.connected();
                    sink.playing();
                }
                Some((101, _)) if ws => {
                    in_body = true;
                    sink.connected();
                    sink.playing();
                }
                Some((404 | 403 | 401 | 503, _)) => return End::Refused,
                _ => return End::Error,
            }
        }
        match chunked.as_mut() {
            _ if ws => match unframe_ws(&mut raw, &mut body) {
                Ok(closed) => ws_closed = closed,
                Err(()) => return End::Error,
            },
            Some(state) => {
                if dechunk(state, &mut raw, &mut body).is_err() {
                    return End::Error;
                }
            }
            None => body.extend_from_slice(&raw.split()),
        }
        loop {
            match flv.read(&mut body) {
                Ok(Some(Item::Tag(tag))) => {
                    let kind = match tag.tag_type {
                        TagType::Audio => MediaKind::Audio,
                        TagType::Video => MediaKind::Video,
                        _ => MediaKind::Data,
                    };
                    sink.media(kind, tag.timestamp, &tag.data);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return End::Error,
            }
        }
        if chunked == Some(Chunked::Done) || ws_closed {
            return if Instant::now() >= ctx.deadline {
                End::Clean
            } else {
                End::Reset
            };
        }
        if Instant::now() >= ctx.deadline {
            return End::Clean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_arbitrary_splits() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 1..wire.len() {
            let mut state = Chunked::Size;
            let mut input = BytesMut::new();
            let mut out = BytesMut::new();
            for piece in wire.chunks(split) {
                input.extend_from_slice(piece);
                dechunk(&mut state, &mut input, &mut out).expect("valid");
            }
            assert_eq!(&out[..], b"hello, world", "split {split}");
            assert_eq!(state, Chunked::Done);
        }
        let mut state = Chunked::Size;
        let mut out = BytesMut::new();
        assert!(dechunk(&mut state, &mut BytesMut::from(&b"zz\r\n"[..]), &mut out).is_err());
    }

    #[test]
    fn unframes_websocket_messages_across_splits() {
        let mut wire = vec![0x82, 5];
        wire.extend_from_slice(b"hello");
        wire.extend_from_slice(&[0x89, 0]); // a ping: skipped
        wire.extend_from_slice(&[0x82, 126, 0, 7]);
        wire.extend_from_slice(b", world");
        wire.extend_from_slice(&[0x88, 2, 3, 232]);
        for split in 1..wire.len() {
            let mut input = BytesMut::new();
            let mut out = BytesMut::new();
            let mut closed = false;
            for piece in wire.chunks(split) {
                input.extend_from_slice(piece);
                closed = unframe_ws(&mut input, &mut out).expect("valid");
            }
            assert_eq!(&out[..], b"hello, world", "split {split}");
            assert!(closed);
        }
        assert!(
            unframe_ws(
                &mut BytesMut::from(&[0x82u8, 0x81, 1, 2, 3, 4, 0][..]),
                &mut BytesMut::new()
            )
            .is_err()
        );
    }

    #[test]
    fn parses_response_heads() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some((200, true))
        );
        assert_eq!(
            parse_head(b"HTTP/1.0 404 Not Found\r\n\r\n"),
            Some((404, false))
        );
        assert_eq!(parse_head(b"SSH-2.0\r\n\r\n"), None);
    }
}
