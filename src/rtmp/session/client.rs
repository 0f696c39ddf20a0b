//! The client side of an RTMP connection: connects, then publishes or plays one stream.
//!
//! Used by the load tester and the relay. After [`Client::start`], the session walks the
//! command flow by itself (`connect`, then `releaseStream`/`FCPublish`/`createStream`/
//! `publish`, or `createStream`/`play`) and reports [`Event::Publishing`] or
//! [`Event::Playing`] when the server says the stream started; a publisher then sends with
//! [`Client::send_metadata`] and [`Client::send_media`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::conn::{self, Conn, Error};
use super::{Media, MediaKind};
use crate::rtmp::amf0::Value;
use crate::rtmp::chunk::{ReaderConfig, csid};
use crate::rtmp::handshake::{self, Progress};
use crate::rtmp::message::{self, Command, Message, UserControl, type_id};

/// What the client is there to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Publish a live stream of this name (may carry a `?query`).
    Publish(String),
    /// Play the stream of this name (may carry a `?query`).
    Play(String),
}

/// Client session settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The application to connect to (the first path segment of the URL).
    pub app: String,
    /// The `tcUrl` sent in `connect`, e.g. `rtmp://127.0.0.1:1935/live`.
    pub tc_url: String,
    /// The `flashVer` sent in `connect`.
    pub flash_ver: String,
    /// Publish or play, and which stream.
    pub intent: Intent,
    /// The chunk size announced to the server for what the client sends. Default 4096.
    pub chunk_size: u32,
    /// The buffer length a player announces (SetBufferLength), ms. Default 1000.
    pub buffer_ms: u32,
    /// Whether to send a digest ("complex") C1.
    pub digest_handshake: bool,
    /// The Window Acknowledgement Size announced to the server. Default 2,500,000.
    pub window_ack_size: u32,
    /// Limits on what the server may make the chunk reader hold.
    pub reader: ReaderConfig,
    /// What `play` sends after the stream name: start, duration, reset. Default `[-2]`
    /// (live or recorded, until the end).
    pub play_args: Vec<Value>,
    /// More properties of the `connect` command object (a relay names its chain of nodes
    /// here). Default none.
    pub connect_extra: Vec<(String, Value)>,
}

impl ClientConfig {
    /// Settings for `intent` on `app`, with the defaults above.
    pub fn new(app: &str, tc_url: &str, intent: Intent) -> ClientConfig {
        ClientConfig {
            app: app.to_owned(),
            tc_url: tc_url.to_owned(),
            flash_ver: "FMLE/3.0 (compatible; ringcast)".to_owned(),
            intent,
            chunk_size: 4096,
            buffer_ms: 1000,
            digest_handshake: false,
            window_ack_size: 2_500_000,
            reader: ReaderConfig::default(),
            play_args: vec![Value::Number(-2.0)],
            connect_extra: Vec::new(),
        }
    }
}

/// What happened on the connection, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed.
    HandshakeDone,
    /// `connect` succeeded.
    Connected,
    /// The server started our publish (`NetStream.Publish.Start`): send media now.
    Publishing {
        /// The message stream we publish on.
        stream_id: u32,
    },
    /// The server started playback (`NetStream.Play.Start`).
    Playing {
        /// The message stream we play on.
        stream_id: u32,
    },
    /// The server refused something: `_error` for `connect`/`createStream`, or an error
    /// `onStatus` (e.g. `NetStream.Publish.BadName`, `NetStream.Play.StreamNotFound`).
    Rejected {
        /// The status code, e.g. `NetConnection.Connect.Rejected`.
        code: String,
        /// The server's description.
        description: String,
    },
    /// Any `onStatus` the server sent (including those reported above).
    Status {
        /// `status`, `warning` or `error`.
        level: String,
        /// The status code.
        code: String,
        /// The description.
        description: String,
    },
    /// Stream metadata (`"onMetaData", {...}` AMF0 body).
    Metadata {
        /// The message timestamp.
        timestamp: u32,
        /// The AMF0 body.
        body: Bytes,
    },
    /// A media or data message from the server (aggregates arrive already split).
    Media(Media),
    /// The server signalled the end of the stream (StreamEOF).
    StreamEof,
    /// The server signalled the (re)start of the stream (StreamBegin).
    StreamBegin,
    /// The server answered our ping; round-trip time in ms.
    Pong {
        /// Round-trip time, milliseconds.
        rtt_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connecting,
    CreatingStream,
    Starting,
    Active,
}

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 4.0;

/// The client side of one RTMP connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    handshake: handshake::Client,
    conn: Conn,
    events: VecDeque<Event>,
    phase: Phase,
    stream_id: u32,
    /// Media and data messages that arrived on a message stream other than ours.
    foreign: u64,
}

impl Client {
    /// A new session; call [`Client::start`] next. `seed` feeds the handshake's random
    /// bytes, `epoch` is the client's uptime in ms for C1.
    pub fn new(config: ClientConfig, seed: u64, epoch: u32) -> Client {
        let conn = Conn::new(config.reader, 0, 0);
        Client {
            handshake: handshake::Client::new(seed, epoch, config.digest_handshake),
            config,
            conn,
            events: VecDeque::new(),
            phase: Phase::Handshake,
            stream_id: 0,
            foreign: 0,
        }
    }

    /// Queues C0+C1: the first bytes to send.
    pub fn start(&mut self) {
        self.handshake.start(&mut self.conn.out);
    }

    /// Consumes bytes read from the connection (see the [module docs](super)).
    pub fn handle_input(&mut self, buf: &mut BytesMut, now_ms: u64) -> Result<(), Error> {
        if self.phase == Phase::Handshake {
            let before = buf.len();
            let progress = self.handshake.handle(buf, &mut self.conn.out)?;
            self.conn.count_in(before - buf.len());
            if progress == Progress::NeedMore {
                return Ok(());
            }
            self.events.push_back(Event::HandshakeDone);
            self.send_connect();
        }
        while let Some(msg) = self.conn.read(buf)? {
            self.handle_message(msg, now_ms)?;
        }
        self.conn.maybe_ack();
        Ok(())
    }

    /// The next event, in arrival order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Everything the session wants sent, in order; empty when there is nothing.
    pub fn take_output(&mut self) -> BytesMut {
        self.conn.take_output()
    }

    /// Whether [`Client::take_output`] would return bytes.
    pub fn has_output(&self) -> bool {
        !self.conn.out.is_empty()
    }

    /// The message stream id the server gave us (0 before `createStream` answered).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Whether the stream is publishing or playing.
    pub fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    /// Bytes consumed from the server and bytes handed out to send, since the start.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.conn.bytes_in, self.conn.bytes_out)
    }

    /// Sends stream metadata as `@setDataFrame("onMetaData", metadata)`.
    pub fn send_metadata(&mut self, timestamp: u32, metadata: &Value) {
        let mut body = BytesMut::new();
        Value::from("@setDataFrame").encode(&mut body);
        Value::from("onMetaData").encode(&mut body);
        metadata.encode(&mut body);
        self.conn.send_raw(
            csid::DATA,
            self.stream_id,
            timestamp,
            type_id::DATA,
            body.freeze(),
        );
    }

    /// Sends one media or data message on the published stream.
    pub fn send_media(&mut self, media: &Media) {
        self.conn.send_raw(
            media.kind.csid(),
            self.stream_id,
            media.timestamp,
            media.kind.type_id(),
            media.payload.clone(),
        );
    }

    /// Sends a ping; the answer arrives as [`Event::Pong`].
    pub fn ping(&mut self, now_ms: u64) {
        self.conn.ping_now(now_ms);
    }

    /// Ends publishing or playing: `FCUnpublish` (publishers) and `deleteStream`.
    pub fn stop(&mut self) {
        if let Intent::Publish(name) = &self.config.intent {
            let name = Value::from(name.as_str());
            self.command(csid::COMMAND, 0, "FCUnpublish", 6.0, vec![name]);
        }
        let id = Value::Number(f64::from(self.stream_id));
        self.command(csid::COMMAND, 0, "deleteStream", 7.0, vec![id]);
        self.phase = Phase::Starting;
    }

    /// Starts again on the same connection after [`Client::stop`] (or a `closeStream` sent
    /// with [`Client::call`]): `publish` or `play` of `intent`, after a new `createStream`
    /// when `new_stream`, else on the same message stream; reported by [`Event::Publishing`]
    /// or [`Event::Playing`] as the first time.
    pub fn restart(&mut self, intent: Intent, new_stream: bool) {
        self.config.intent = intent;
        if new_stream {
            self.create_stream();
        } else {
            self.start_stream();
        }
    }

    /// Sends one message of any type on our message stream, as it is (tools and tests that
    /// need what [`Client::send_media`] cannot express: aggregates, odd commands).
    pub fn send_message(&mut self, type_id: u8, timestamp: u32, payload: Bytes) {
        self.conn
            .send_raw(csid::STREAM, self.stream_id, timestamp, type_id, payload);
    }

    /// Sends a command on our message stream (`pause`, `receiveAudio`, `closeStream`, ...)
    /// with transaction id 0, as players do; answers arrive as [`Event::Status`].
    pub fn call(&mut self, name: &str, args: Vec<Value>) {
        let sid = self.stream_id;
        self.command(csid::STREAM, sid, name, 0.0, args);
    }

    /// Media and data messages received on a message stream other than ours (a server
    /// that sends an earlier play's frames on the wrong stream id).
    pub fn foreign_messages(&self) -> u64 {
        self.foreign
    }

    fn command(&mut self, csid: u32, sid: u32, name: &str, txn: f64, args: Vec<Value>) {
        self.conn
            .send_command(csid, sid, Command::new(name, txn, Value::Null, args));
    }

    /// `releaseStream` and `FCPublish` (publishers), then `createStream`.
    fn create_stream(&mut self) {
        self.phase = Phase::CreatingStream;
        if let Intent::Publish(name) = &self.config.intent {
            let name = Value::from(name.as_str());
            self.command(csid::COMMAND, 0, "releaseStream", 2.0, vec![name.clone()]);
            self.command(csid::COMMAND, 0, "FCPublish", 3.0, vec![name]);
        }
        self.command(csid::COMMAND, 0, "createStream", TXN_CREATE_STREAM, vec![]);
    }

    /// `publish` or `play` on our message stream.
    fn start_stream(&mut self) {
        self.phase = Phase::Starting;
        let sid = self.stream_id;
        match self.config.intent.clone() {
            Intent::Publish(name) => {
                let args = vec![Value::from(name.as_str()), Value::from("live")];
                self.command(csid::STREAM, sid, "publish", 5.0, args);
            }
            Intent::Play(name) => {
                self.conn.send_user_control(UserControl::SetBufferLength {
                    stream_id: sid,
                    millis: self.config.buffer_ms,
                });
                let mut args = vec![Value::from(name.as_str())];
                args.extend(self.config.play_args.iter().cloned());
                self.command(csid::STREAM, sid, "play", 5.0, args);
            }
        }
    }

    fn send_connect(&mut self) {
        self.phase = Phase::Connecting;
        if self.config.chunk_size != self.conn.writer.chunk_size() {
            self.conn.set_chunk_size(self.config.chunk_size);
        }
        let mut props: Vec<(String, Value)> = vec![
            ("app".into(), Value::from(self.config.app.as_str())),
            ("type".into(), Value::from("nonprivate")),
            (
                "flashVer".into(),
                Value::from(self.config.flash_ver.as_str()),
            ),
            ("tcUrl".into(), Value::from(self.config.tc_url.as_str())),
        ];
        if matches!(self.config.intent, Intent::Play(_)) {
            props.extend([
                ("fpad".into(), Value::Boolean(false)),
                ("capabilities".into(), Value::Number(15.0)),
                ("audioCodecs".into(), Value::Number(4071.0)),
                ("videoCodecs".into(), Value::Number(252.0)),
                ("videoFunction".into(), Value::Number(1.0)),
            ]);
        }
        props.extend(self.config.connect_extra.iter().cloned());
        let cmd = Command::new("connect", TXN_CONNECT, Value::object(props), vec![]);
        self.conn.send_command(csid::COMMAND, 0, cmd);
    }

    fn handle_message(&mut self, msg: crate::rtmp::chunk::Message, now: u64) -> Result<(), Error> {
        let decoded = conn::decode(&msg)?;
        if let Some(rtt_ms) = self.conn.handle_control(&decoded, now) {
            self.events.push_back(Event::Pong { rtt_ms });
        }
        if matches!(
            decoded,
            Message::Audio(_) | Message::Video(_) | Message::Aggregate(_)
        ) && msg.stream_id != self.stream_id
        {
            self.foreign += 1;
        }
        match decoded {
            Message::SetPeerBandwidth { .. } => {
                let w = self.config.window_ack_size;
                self.conn.send_control(&Message::WindowAckSize(w));
            }
            Message::UserControl(UserControl::StreamEof(_)) => {
                self.events.push_back(Event::StreamEof);
            }
            Message::UserControl(UserControl::StreamBegin(_)) if self.phase == Phase::Active => {
                self.events.push_back(Event::StreamBegin);
            }
            Message::Command(cmd) => self.handle_command(cmd),
            Message::Audio(payload) => self.media(MediaKind::Audio, msg.timestamp, payload),
            Message::Video(payload) => self.media(MediaKind::Video, msg.timestamp, payload),
            Message::Data { body, amf3 } => {
                let body = if amf3 && body.first() == Some(&0) {
                    body.slice(1..)
                } else {
                    body
                };
                self.data(msg.timestamp, body);
            }
            Message::Aggregate(body) => {
                let subs = message::split_aggregate(msg.timestamp, &body).map_err(|source| {
                    Error::Message {
                        type_id: type_id::AGGREGATE,
                        source,
                    }
                })?;
                for sub in subs {
                    match sub.type_id {
                        type_id::AUDIO => self.media(MediaKind::Audio, sub.timestamp, sub.payload),
                        type_id::VIDEO => self.media(MediaKind::Video, sub.timestamp, sub.payload),
                        type_id::DATA => self.data(sub.timestamp, sub.payload),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn media(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        self.events.push_back(Event::Media(Media {
            kind,
            timestamp,
            payload,
        }));
    }

    fn data(&mut self, timestamp: u32, body: Bytes) {
        let body = message::strip_set_data_frame(&body);
        match message::data_name(&body).as_deref() {
            Some("onMetaData") => self.events.push_back(Event::Metadata { timestamp, body }),
            // Player-side notifications, not stream content.
            Some("|RtmpSampleAccess" | "onStatus") => {}
            _ => self.media(MediaKind::Data, timestamp, body),
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let info = cmd.arg(0).cloned().unwrap_or(Value::Null);
        let text = |key: &str| {
            info.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match (cmd.name.as_str(), self.phase) {
            ("_result", Phase::Connecting) if cmd.transaction_id == TXN_CONNECT => {
                self.events.push_back(Event::Connected);
                self.create_stream();
            }
            ("_result", Phase::CreatingStream) if cmd.transaction_id == TXN_CREATE_STREAM => {
                self.stream_id = cmd.arg(0).and_then(Value::as_f64).unwrap_or(1.0) as u32;
                self.start_stream();
            }
            ("_error", _) => {
                let code = text("code");
                let description = text("description");
                self.events.push_back(Event::Rejected { code, description });
            }
            ("onStatus", _) => {
                let (level, code, description) = (text("level"), text("code"), text("description"));
                self.events.push_back(Event::Status {
                    level: level.clone(),
                    code: code.clone(),
                    description: description.clone(),
                });
                if level == "error" {
                    self.events.push_back(Event::Rejected { code, description });
                } else if self.phase == Phase::Starting {
                    match (code.as_str(), &self.config.intent) {
                        ("NetStream.Publish.Start", Intent::Publish(_)) => {
                            self.phase = Phase::Active;
                            self.events.push_back(Event::Publishing {
                                stream_id: self.stream_id,
                            });
                        }
                        ("NetStream.Play.Start", Intent::Play(_)) => {
                            self.phase = Phase::Active;
                            self.events.push_back(Event::Playing {
                                stream_id: self.stream_id,
                            });
                        }
                        _ => {}
                    }
                }
            }
            // onBWDone and friends: answered by nothing.
            _ => {}
        }
    }
}
