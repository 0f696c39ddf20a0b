//! The HTTP-FLV player: `GET /PATH.flv`, then an FLV byte stream (plain or chunked).

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
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast-loadtest\r\nAccept: */*\r\n\r\n",
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
                Some((200, is_chunked)) => {
                    chunked = is_chunked.then_some(Chunked::Size);
                    in_body = true;
                    sink.connected();
                    sink.playing();
                }
                Some((404 | 403 | 401 | 503, _)) => return End::Refused,
                _ => return End::Error,
            }
        }
        match chunked.as_mut() {
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
        if chunked == Some(Chunked::Done) {
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
