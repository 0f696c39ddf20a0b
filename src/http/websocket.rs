//! The server side of WebSocket (RFC 6455) as WebSocket-FLV needs it, sans-IO: the
//! handshake answer, unmasked binary frames around a whole write batch, and a reader for
//! what a client may send (close, ping, pong; anything else ends the connection). Frame
//! headers are parsed and written by `tungstenite`; the IO stays the server's (owned
//! buffers, vectored writes).

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The largest frame a client may send us: clients send only control frames (at most 125
/// bytes of payload by the RFC) and perhaps a small text or binary message.
const MAX_CLIENT_FRAME: u64 = 4096;

/// The `Sec-WebSocket-Accept` value for a request's `Sec-WebSocket-Key`.
pub fn accept_key(request_key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(request_key)
}

/// The header of one unmasked frame of `opcode` carrying `len` bytes.
fn header(opcode: OpCode, len: usize) -> Bytes {
    let h = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(10);
    // Writing into a Vec cannot fail.
    let _ = h.format(len as u64, &mut out);
    Bytes::from(out)
}

/// The header of a binary frame carrying `len` bytes (the batch follows it).
pub fn binary_header(len: usize) -> Bytes {
    header(OpCode::Data(Data::Binary), len)
}

/// A whole close frame with `code` (1000 normal, 1001 going away, 1002 protocol error,
/// 1008 policy, 1011 server error).
pub fn close_frame(code: u16) -> Bytes {
    let mut out = BytesMut::from(&header(OpCode::Control(Control::Close), 2)[..]);
    out.extend_from_slice(&code.to_be_bytes());
    out.freeze()
}

/// A whole pong frame answering a ping's `payload`.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::from(&header(OpCode::Control(Control::Pong), payload.len())[..]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A ping: answer with a pong carrying the payload.
    Ping(Bytes),
    /// A close: answer with a close and end.
    Close,
    /// A pong, or a data message a player has no use for: ignored.
    Ignored,
}

/// Why a client's bytes end the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a frame header (reserved bits or opcodes).
    #[error("malformed WebSocket frame: {0}")]
    Malformed(String),
    /// Client frames must be masked (RFC 6455 §5.1).
    #[error("unmasked client frame")]
    Unmasked,
    /// Bigger than a player has any reason to send.
    #[error("client frame of {0} bytes")]
    TooLarge(u64),
}

/// Reads the next whole client frame from the front of `buf`; `Ok(None)` until one is there
/// (nothing is consumed then).
pub fn read_client_frame(buf: &mut BytesMut) -> Result<Option<ClientFrame>, FrameError> {
    let mut cursor = Cursor::new(&buf[..]);
    let (h, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(e) => return Err(FrameError::Malformed(e.to_string())),
    };
    if h.rsv1 || h.rsv2 || h.rsv3 {
        return Err(FrameError::Malformed("reserved bits set".into()));
    }
    let Some(mask) = h.mask else {
        return Err(FrameError::Unmasked);
    };
    if len > MAX_CLIENT_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let head = cursor.position() as usize;
    let total = head + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(head);
    let mut payload = buf.split_to(len as usize);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(match h.opcode {
        OpCode::Control(Control::Ping) => ClientFrame::Ping(payload.freeze()),
        OpCode::Control(Control::Close) => ClientFrame::Close,
        OpCode::Control(Control::Pong) => ClientFrame::Ignored,
        OpCode::Data(Data::Text | Data::Binary | Data::Continue) => ClientFrame::Ignored,
        OpCode::Control(Control::Reserved(c)) | OpCode::Data(Data::Reserved(c)) => {
            return Err(FrameError::Malformed(format!("reserved opcode {c}")));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn server_frames_are_unmasked_with_the_right_length() {
        assert_eq!(&binary_header(5)[..], &[0x82, 5]);
        assert_eq!(&binary_header(300)[..], &[0x82, 126, 1, 44]);
        assert_eq!(&binary_header(70_000)[..2], &[0x82, 127]);
        assert_eq!(&close_frame(1000)[..], &[0x88, 2, 0x03, 0xE8]);
        assert_eq!(&pong_frame(b"hi")[..], &[0x8A, 2, b'h', b'i']);
    }

    #[test]
    fn client_frames_are_read_whole_and_unmasked() {
        let mut buf = BytesMut::new();
        let ping = client(0x9, b"abc");
        buf.extend_from_slice(&ping[..4]);
        assert_eq!(read_client_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&ping[4..]);
        buf.extend_from_slice(&client(0x8, &[3, 232]));
        assert_eq!(
            read_client_frame(&mut buf),
            Ok(Some(ClientFrame::Ping(Bytes::from_static(b"abc"))))
        );
        assert_eq!(read_client_frame(&mut buf), Ok(Some(ClientFrame::Close)));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_from_a_client_is_an_error() {
        let mut unmasked = BytesMut::from(&[0x89u8, 0][..]);
        assert_eq!(read_client_frame(&mut unmasked), Err(FrameError::Unmasked));
        let mut reserved = BytesMut::from(&client(0x3, b"")[..]);
        assert!(matches!(
            read_client_frame(&mut reserved),
            Err(FrameError::Malformed(_))
        ));
        let mut rsv = BytesMut::from(&client(0x9, b"")[..]);
        rsv[0] |= 0x40;
        assert!(matches!(
            read_client_frame(&mut rsv),
            Err(FrameError::Malformed(_))
        ));
        let mut big = BytesMut::from(&[0x82u8, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4][..]);
        assert!(matches!(
            read_client_frame(&mut big),
            Err(FrameError::TooLarge(_))
        ));
    }
}
