//! The HTTP-FLV and WebSocket-FLV player: `GET /PATH.flv` (with an upgrade for
//! WebSocket), then an FLV byte stream: plain, chunked, or in binary WebSocket messages.

use std::time::Instant;

use bytes::{Buf, BytesMut};
use ringcast::flv::{Item, Reader, TagType};
use ringcast::rtmp::session::MediaKind;

use crate::player::{Ctx, Sink, connect, io_end, read_shared, read_some, readable};
use crate::report::End;
use ringcast::runtime::Io;

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
    let mut state = Body {
        ws,
        in_body: false,
        chunked: None,
        body: BytesMut::new(),
        flv: Reader::default(),
    };
    // io_uring reads into the player's own buffer; epoll into the thread's shared one
    // (cache-hot), and only what a read leaves unparsed waits in the player's.
    let mut raw = BytesMut::new();
    loop {
        let step = match ctx.io {
            Io::Uring => match read_some(ctx, sink, &stream, raw, 16 * 1024).await {
                Ok(b) => {
                    raw = b;
                    state.consume(ctx, sink, &mut raw)
                }
                Err(end) => return end,
            },
            Io::Epoll => match readable(ctx, sink, &stream).await {
                Ok(()) => read_shared(ctx, sink, &stream, &mut raw, |sink, input| {
                    state.consume(ctx, sink, input)
                }),
                Err(end) => return end,
            },
        };
        match step {
            Ok(None) => {}
            Ok(Some(end)) | Err(end) => return end,
        }
        if sink.at >= ctx.deadline {
            return End::Clean;
        }
    }
}

/// Where an HTTP-FLV or WebSocket-FLV player is in its response.
struct Body {
    ws: bool,
    /// The response head was read.
    in_body: bool,
    /// The chunked decoder, for a chunked body.
    chunked: Option<Chunked>,
    /// FLV bytes not yet demuxed (at most a partial tag after each read).
    body: BytesMut,
    flv: Reader,
}

impl Body {
    /// Takes what it can from `input` (what is left is a partial head, chunk line or
    /// frame): `Ok(Some(end))` when the stream ended.
    fn consume(
        &mut self,
        ctx: &Ctx,
        sink: &mut Sink,
        input: &mut BytesMut,
    ) -> Result<Option<End>, End> {
        if !self.in_body {
            let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if input.len() > MAX_HEAD {
                    Err(End::Error)
                } else {
                    Ok(None)
                };
            };
            let head = input.split_to(end + 4);
            match parse_head(&head) {
                Some((200, is_chunked)) if !self.ws => {
                    self.chunked = is_chunked.then_some(Chunked::Size);
                }
                Some((101, _)) if self.ws => {}
                Some((404 | 403 | 401 | 503, _)) => return Err(End::Refused),
                _ => return Err(End::Error),
            }
            self.in_body = true;
            sink.connected();
            sink.playing();
        }
        let mut closed = false;
        match self.chunked.as_mut() {
            _ if self.ws => match unframe_ws(input, &mut self.body) {
                Ok(c) => closed = c,
                Err(()) => return Err(End::Error),
            },
            Some(state) => {
                if dechunk(state, input, &mut self.body).is_err() {
                    return Err(End::Error);
                }
                closed = *state == Chunked::Done;
            }
            None => self.body.extend_from_slice(&input.split()),
        }
        loop {
            match self.flv.read(&mut self.body) {
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
                Err(_) => return Err(End::Error),
            }
        }
        if closed {
            return Ok(Some(if Instant::now() >= ctx.deadline {
                End::Clean
            } else {
                End::Reset
            }));
        }
        Ok(None)
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
