//! What the server and client sessions share: the chunk reader and writer, the output
//! buffer, acknowledgements and pings.

use bytes::{Bytes, BytesMut};

use crate::rtmp::amf0::Value;
use crate::rtmp::chunk::{self, Reader, ReaderConfig, Writer, csid};
use crate::rtmp::handshake;
use crate::rtmp::message::{self, Command, Message, UserControl};

/// Why a session gave up on its connection. Each variant means: close the connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::Error),
    /// The chunk stream was malformed or over a limit.
    #[error("chunk stream: {0}")]
    Chunk(#[from] chunk::Error),
    /// The peer sent nothing, not even an answer to our ping, for the ping timeout.
    #[error("ping timeout: nothing from the peer for {0} ms")]
    PingTimeout(u64),
    /// The peer sent messages faster than the configured rate, averaged over a window.
    #[error("message rate: {count} messages in {window_ms} ms, over the limit of {limit}/s")]
    MessageRate {
        /// Messages counted in the window (aggregate parts each count).
        count: u64,
        /// The window, in milliseconds.
        window_ms: u64,
        /// The limit, in messages per second.
        limit: u32,
    },
    /// A message body could not be decoded.
    #[error("message type {type_id}: {source}")]
    Message {
        /// The message type.
        type_id: u8,
        /// What was wrong with it.
        source: message::Error,
    },
}

/// The smallest Window Acknowledgement Size honoured, in bytes. A peer may ask for an
/// acknowledgement every byte, which would make the server send 16 bytes for each one it
/// reads; below this the window is raised to it (real clients ask for 2.5 MB or more).
pub const MIN_ACK_WINDOW: u32 = 4096;

/// The connection-level machinery under a session.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
    pub(crate) out: BytesMut,
    /// Bytes consumed from the peer since the connection opened.
    pub(crate) bytes_in: u64,
    /// Bytes handed out by `take_output` since the connection opened.
    pub(crate) bytes_out: u64,
    /// `bytes_in` when the last Acknowledgement was sent.
    last_ack: u64,
    /// The peer's Window Acknowledgement Size: acknowledge every this many bytes; 0 = never.
    ack_window: u32,
    /// Ping the peer every this many milliseconds; 0 = never.
    ping_interval: u64,
    /// When the next ping is due.
    next_ping: Option<u64>,
    /// The last ping sent, as (value, time sent).
    ping_sent: Option<(u32, u64)>,
    /// Close when nothing arrives for this many ms after a ping; 0 = never.
    ping_timeout: u64,
    /// When the first ping with nothing from the peer since was sent.
    unanswered_since: Option<u64>,
}

impl Conn {
    pub(crate) fn new(config: ReaderConfig, ping_interval: u64, ping_timeout: u64) -> Conn {
        Conn {
            reader: Reader::new(config),
            writer: Writer::default(),
            out: BytesMut::new(),
            bytes_in: 0,
            bytes_out: 0,
            last_ack: 0,
            ack_window: 0,
            ping_interval,
            next_ping: None,
            ping_sent: None,
            ping_timeout,
            unanswered_since: None,
        }
    }

    /// Reads the next message, counting consumed bytes for acknowledgements.
    pub(crate) fn read(&mut self, buf: &mut BytesMut) -> Result<Option<chunk::Message>, Error> {
        let before = buf.len();
        let msg = self.reader.read(buf);
        self.bytes_in += (before - buf.len()) as u64;
        // Acknowledge as each window fills, not once per read (RTMP 1.0 §5.4.3).
        self.maybe_ack();
        Ok(msg?)
    }

    pub(crate) fn count_in(&mut self, n: usize) {
        self.bytes_in += n as u64;
    }

    /// Sends an Acknowledgement if a window's worth of bytes arrived since the last one.
    pub(crate) fn maybe_ack(&mut self) {
        let window = u64::from(self.ack_window);
        if window > 0 && self.bytes_in - self.last_ack >= window {
            self.last_ack = self.bytes_in;
            // The sequence number is the byte count modulo 2^32 (RTMP 1.0 §5.4.3).
            self.send_control(&Message::Acknowledgement(self.bytes_in as u32));
        }
    }

    /// Starts pinging from `now` (after the handshake).
    pub(crate) fn start_pings(&mut self, now: u64) {
        if self.ping_interval > 0 {
            self.next_ping = Some(now + self.ping_interval);
        }
    }

    /// Something arrived from the peer: it is alive.
    pub(crate) fn heard(&mut self) {
        self.unanswered_since = None;
    }

    /// When the connection gives up on a silent peer, if it is waiting on one.
    fn ping_deadline(&self) -> Option<u64> {
        match (self.unanswered_since, self.ping_timeout) {
            (Some(t), timeout) if timeout > 0 => Some(t.saturating_add(timeout)),
            _ => None,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        match (self.next_ping, self.ping_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends the ping that is due; fails when the peer sent nothing for the ping timeout
    /// since a ping.
    pub(crate) fn handle_timeout(&mut self, now: u64) -> Result<(), Error> {
        if self.ping_deadline().is_some_and(|d| now >= d) {
            return Err(Error::PingTimeout(self.ping_timeout));
        }
        if let Some(due) = self.next_ping {
            if now >= due {
                self.ping_now(now);
                self.unanswered_since.get_or_insert(now);
                self.next_ping = Some(now + self.ping_interval);
            }
        }
        Ok(())
    }

    /// Sends a PingRequest carrying `now` (wrapped to 32 bits) and remembers it.
    pub(crate) fn ping_now(&mut self, now: u64) {
        let value = now as u32;
        self.send_user_control(UserControl::PingRequest(value));
        self.ping_sent = Some((value, now));
    }

    pub(crate) fn take_output(&mut self) -> BytesMut {
        self.bytes_out += self.out.len() as u64;
        // Hand over the whole buffer rather than `split()`: a split keeps the allocation
        // alive through the left-over capacity for as long as the session lives, which
        // thousands of mostly idle player sessions cannot afford.
        std::mem::take(&mut self.out)
    }

    pub(crate) fn send(&mut self, csid: u32, stream_id: u32, timestamp: u32, msg: &Message) {
        let chunk = msg.into_chunk(csid, timestamp, stream_id);
        self.writer.write(&chunk, &mut self.out);
    }

    pub(crate) fn send_raw(
        &mut self,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        type_id: u8,
        payload: Bytes,
    ) {
        let chunk = chunk::Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        };
        self.writer.write(&chunk, &mut self.out);
    }

    pub(crate) fn send_control(&mut self, msg: &Message) {
        self.send(csid::CONTROL, 0, 0, msg);
    }

    pub(crate) fn send_user_control(&mut self, uc: UserControl) {
        self.send_control(&Message::UserControl(uc));
    }

    /// Sends Set Chunk Size and applies it to the writer.
    pub(crate) fn set_chunk_size(&mut self, size: u32) {
        self.send_control(&Message::SetChunkSize(size));
        self.writer.set_chunk_size(size);
    }

    pub(crate) fn send_command(&mut self, csid: u32, stream_id: u32, cmd: Command) {
        self.send(csid, stream_id, 0, &Message::Command(cmd));
    }

    /// Sends an AMF0 data message made of `values`.
    pub(crate) fn send_data(&mut self, csid: u32, stream_id: u32, values: &[Value]) {
        let mut body = BytesMut::new();
        for v in values {
            v.encode(&mut body);
        }
        self.send(
            csid,
            stream_id,
            0,
            &Message::Data {
                body: body.freeze(),
                amf3: false,
            },
        );
    }

    /// Handles the protocol control and user control messages both sides treat alike.
    /// Returns the round-trip time when the message answered our ping.
    pub(crate) fn handle_control(&mut self, msg: &Message, now: u64) -> Option<u64> {
        match msg {
            Message::WindowAckSize(w) => self.ack_window = (*w).max(MIN_ACK_WINDOW),
            Message::UserControl(UserControl::PingRequest(v)) => {
                self.send_user_control(UserControl::PingResponse(*v));
            }
            Message::UserControl(UserControl::PingResponse(v)) => {
                if let Some((sent, at)) = self.ping_sent {
                    if sent == *v {
                        self.ping_sent = None;
                        return Some(now.saturating_sub(at));
                    }
                }
            }
            _ => {}
        }
        None
    }
}

/// Decodes a chunk-level message into a typed one, with the type in the error.
pub(crate) fn decode(msg: &chunk::Message) -> Result<Message, Error> {
    Message::decode(msg.type_id, msg.payload.clone()).map_err(|source| Error::Message {
        type_id: msg.type_id,
        source,
    })
}
