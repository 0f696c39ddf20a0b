//! An HTTP-FLV or WebSocket-FLV player for the tests: reads the response head, unframes
//! HTTP chunks or WebSocket messages, and demuxes FLV tags as they come.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use ringcast::flv::{self, Reader, ReaderConfig, TagType};
use ringcast::rtmp::session::MediaKind;

/// How the client reads the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP/1.1, chunked.
    Http,
    /// WebSocket binary messages.
    Ws,
}

/// An HTTP-FLV or WebSocket-FLV client reading FLV tags as they come.
pub struct FlvClient {
    pub sock: TcpStream,
    pub kind: Kind,
    /// The response head.
    pub head: String,
    /// Bytes read, not yet unframed.
    pub raw: BytesMut,
    /// FLV bytes, not yet demuxed.
    pub flv: BytesMut,
    pub reader: Reader,
    /// The file header's (audio, video) flags.
    pub flags: Option<(bool, bool)>,
    /// Tags so far, with when they arrived.
    pub tags: Vec<(Instant, flv::Tag)>,
    /// The body ended (chunked terminator, WebSocket close, or EOF).
    pub ended: bool,
    /// WebSocket close code, if one came.
    pub close_code: Option<u16>,
    /// WebSocket pongs received.
    pub pongs: Vec<Bytes>,
}

impl FlvClient {
    pub fn open(addr: SocketAddr, path: &str, kind: Kind) -> FlvClient {
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        let req = match kind {
            Kind::Http => format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
            Kind::Ws => format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        };
        sock.write_all(req.as_bytes()).expect("request");
        FlvClient {
            sock,
            kind,
            head: String::new(),
            raw: BytesMut::new(),
            flv: BytesMut::new(),
            reader: Reader::new(ReaderConfig::default()),
            flags: None,
            tags: Vec::new(),
            ended: false,
            close_code: None,
            pongs: Vec::new(),
        }
    }

    /// Reads what is there and demuxes it.
    pub fn pump(&mut self) {
        let mut buf = [0u8; 65536];
        while !self.ended {
            match self.sock.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => self.ended = true,
            }
        }
        if self.head.is_empty() {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.head = String::from_utf8_lossy(&self.raw.split_to(end + 4)).into_owned();
        }
        if !(self.head.starts_with("HTTP/1.1 200") || self.head.starts_with("HTTP/1.1 101")) {
            // An answer, not a stream: its body stays in `raw`.
            return;
        }
        self.unframe();
        let now = Instant::now();
        while let Some(item) = self.reader.read(&mut self.flv).expect("valid FLV") {
            match item {
                flv::Item::Header {
                    has_audio,
                    has_video,
                } => self.flags = Some((has_audio, has_video)),
                flv::Item::Tag(t) => self.tags.push((now, t)),
            }
        }
    }

    fn unframe(&mut self) {
        let chunked = self.head.contains("chunked");
        loop {
            match self.kind {
                Kind::Http if chunked => {
                    let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                        return;
                    };
                    let size = usize::from_str_radix(
                        std::str::from_utf8(&self.raw[..eol]).expect("chunk size"),
                        16,
                    )
                    .expect("hex chunk size");
                    if self.raw.len() < eol + 2 + size + 2 {
                        return;
                    }
                    self.raw.advance(eol + 2);
                    let data = self.raw.split_to(size);
                    assert_eq!(&self.raw[..2], b"\r\n", "chunk trailer");
                    self.raw.advance(2);
                    if size == 0 {
                        self.ended = true;
                        return;
                    }
                    self.flv.extend_from_slice(&data);
                }
                Kind::Http => {
                    let all = self.raw.split();
                    self.flv.extend_from_slice(&all);
                    return;
                }
                Kind::Ws => {
                    if self.raw.len() < 2 {
                        return;
                    }
                    assert_eq!(self.raw[1] & 0x80, 0, "server frames are unmasked");
                    let (len, at) = match self.raw[1] & 0x7F {
                        126 if self.raw.len() >= 4 => (
                            usize::from(u16::from_be_bytes([self.raw[2], self.raw[3]])),
                            4,
                        ),
                        127 if self.raw.len() >= 10 => {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&self.raw[2..10]);
                            (u64::from_be_bytes(b) as usize, 10)
                        }
                        126 | 127 => return,
                        n => (usize::from(n), 2),
                    };
                    if self.raw.len() < at + len {
                        return;
                    }
                    let op = self.raw[0] & 0x0F;
                    self.raw.advance(at);
                    let payload = self.raw.split_to(len).freeze();
                    match op {
                        2 => self.flv.extend_from_slice(&payload),
                        8 => {
                            self.close_code = (payload.len() >= 2)
                                .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                            self.ended = true;
                            return;
                        }
                        10 => self.pongs.push(payload),
                        other => panic!("unexpected server opcode {other}"),
                    }
                }
            }
        }
    }

    /// Sends one masked client frame.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [9u8, 8, 7, 6];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.sock.write_all(&f).expect("frame");
    }

    /// Audio and video tags, as (kind, timestamp, data).
    pub fn media(&self) -> Vec<(MediaKind, u32, Bytes)> {
        self.tags
            .iter()
            .filter_map(|(_, t)| {
                let kind = match t.tag_type {
                    TagType::Audio => MediaKind::Audio,
                    TagType::Video => MediaKind::Video,
                    _ => return None,
                };
                Some((kind, t.timestamp, t.data.clone()))
            })
            .collect()
    }
}
