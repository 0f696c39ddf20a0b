//! The server side of an RTMP connection: answers the publisher and player command flows.
//!
//! The session answers what needs no decision on its own (`connect`, `createStream`,
//! `releaseStream`, `FCPublish`, `getStreamLength`, pings, acknowledgements) and hands the
//! caller the decisions: [`Event::PublishRequested`] is answered with
//! [`Server::accept_publish`] or [`Server::reject_publish`], [`Event::PlayRequested`] with
//! [`Server::accept_play`] or [`Server::reject_play`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::conn::{self, Conn, Error};
use super::rate::{RATE_WINDOW_MS, RateLimit};
use super::{Media, MediaKind, split_query, status, status_object};
use crate::rtmp::amf0::Value;
use crate::rtmp::chunk::{ReaderConfig, csid};
use crate::rtmp::handshake::{self, Progress};
use crate::rtmp::message::{self, Command, Message, UserControl, type_id};

/// Message streams one connection may have at once (`createStream`, or commands on stream
/// ids it never created). A client needs one or two; past the cap `createStream` gets
/// `_error` and publish/play on a new id are refused, so a flood costs only its sender.
pub const MAX_STREAMS: usize = 16;

/// Server session settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The chunk size announced to the peer after `connect` and used for everything sent.
    /// Default 4096.
    pub chunk_size: u32,
    /// The Window Acknowledgement Size announced to the peer. Default 2,500,000.
    pub window_ack_size: u32,
    /// The Set Peer Bandwidth window announced to the peer. Default 2,500,000.
    pub peer_bandwidth: u32,
    /// Limits on what the peer may make the chunk reader hold.
    pub reader: ReaderConfig,
    /// Ping the peer every this many milliseconds; 0 disables pings. Default 0.
    pub ping_interval_ms: u64,
    /// Give up on a peer that sends nothing, not even a ping answer, for this many
    /// milliseconds after a ping ([`Server::handle_timeout`] fails); 0 never. Default 0.
    pub ping_timeout_ms: u64,
    /// Compress chunk headers against earlier messages (default). Turn it off when the
    /// caller may reorder separately taken outputs or interleave them with shared
    /// encodings: every message then starts with a full header and stands alone.
    pub compress_headers: bool,
    /// Close a peer that sends more than this many messages a second, averaged over
    /// [`RATE_WINDOW_MS`] (each tag of an aggregate counts); 0 disables the limit. Default 0.
    pub max_message_rate: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            reader: ReaderConfig::default(),
            ping_interval_ms: 0,
            ping_timeout_ms: 0,
            compress_headers: true,
            max_message_rate: 0,
        }
    }
}

/// What happened on the connection, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed; `digest` tells whether the client used the digest form.
    HandshakeDone {
        /// Whether the client sent a digest ("complex") C1.
        digest: bool,
    },
    /// The client connected to `app` (already answered with `NetConnection.Connect.Success`).
    Connected {
        /// The application name, without any query string.
        app: String,
        /// The `tcUrl` the client sent, if any.
        tc_url: Option<String>,
        /// The whole command object, for logging and authorization.
        object: Value,
    },
    /// The client asks to publish `app/name`. Answer with [`Server::accept_publish`] or
    /// [`Server::reject_publish`].
    PublishRequested {
        /// The message stream it publishes on.
        stream_id: u32,
        /// The application name.
        app: String,
        /// The stream name, without the query string.
        stream: String,
        /// The query string of the stream name (or of the app), for authorization.
        query: Option<String>,
        /// The publishing type: `live`, `record` or `append`.
        publish_type: String,
    },
    /// The client asks to play `app/name`. Answer with [`Server::accept_play`] or
    /// [`Server::reject_play`].
    PlayRequested {
        /// The message stream it plays on.
        stream_id: u32,
        /// The application name.
        app: String,
        /// The stream name, without the query string.
        stream: String,
        /// The query string of the stream name (or of the app), for authorization.
        query: Option<String>,
        /// Requested start (-2 live or recorded, -1 live only, >= 0 a position in ms).
        start: f64,
        /// Requested duration (-1 until the end).
        duration: f64,
        /// Whether to flush any previous playlist.
        reset: bool,
    },
    /// The publisher's stream metadata (`onMetaData`, from `@setDataFrame` or sent directly).
    /// `body` is what players should receive: `"onMetaData", {...}` as AMF0.
    Metadata {
        /// The publishing stream.
        stream_id: u32,
        /// The message timestamp.
        timestamp: u32,
        /// The AMF0 body without `@setDataFrame`.
        body: Bytes,
    },
    /// The publisher cleared its stream's metadata (`@clearDataFrame`). `body` is the
    /// AMF0 body players get in its place.
    MetadataCleared {
        /// The publishing stream.
        stream_id: u32,
        /// The message timestamp.
        timestamp: u32,
        /// The AMF0 body.
        body: Bytes,
    },
    /// A media or data message from the publisher (aggregates arrive already split).
    Media {
        /// The publishing stream.
        stream_id: u32,
        /// The message.
        media: Media,
    },
    /// The publisher stopped (`FCUnpublish`, `deleteStream` or `closeStream`).
    Unpublished {
        /// The stream that was publishing.
        stream_id: u32,
    },
    /// The player stopped (`deleteStream` or `closeStream`).
    PlayStopped {
        /// The stream that was playing.
        stream_id: u32,
    },
    /// The player paused or resumed (already answered with Pause/Unpause.Notify).
    Paused {
        /// The playing stream.
        stream_id: u32,
        /// True for pause, false for resume.
        paused: bool,
        /// The position the client gave, in ms.
        position: f64,
    },
    /// The player asks to receive (or not) audio or video (`receiveAudio`/`receiveVideo`).
    Receive {
        /// The playing stream.
        stream_id: u32,
        /// Audio or video.
        kind: MediaKind,
        /// Whether it wants it.
        enabled: bool,
    },
    /// The client's playback buffer length (SetBufferLength).
    BufferLength {
        /// The stream.
        stream_id: u32,
        /// Milliseconds.
        millis: u32,
    },
    /// The client answered our ping; round-trip time in ms.
    Pong {
        /// Round-trip time, milliseconds.
        rtt_ms: u64,
    },
    /// The connection is over ([`Server::handle_close`]); streams that were publishing or
    /// playing were reported as [`Event::Unpublished`] or [`Event::PlayStopped`] just before.
    Closed,
    /// A message that concerns one stream could not be used (a malformed aggregate, a
    /// command or data message the AMF decoder does not take, a command out of order): it
    /// was dropped and the connection goes on. For logging.
    Dropped {
        /// The message type.
        type_id: u8,
        /// Why.
        reason: String,
    },
    /// A command the session does not handle (answered with `_error` if it had a
    /// transaction id); for logging.
    UnknownCommand {
        /// The command.
        command: Command,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum StreamState {
    Idle,
    PublishPending(String),
    Publishing(String),
    /// Play requested; `reset` is the play's reset flag (`NetStream.Play.Reset` on start).
    PlayPending {
        reset: bool,
    },
    Playing,
}

#[derive(Debug, Clone)]
struct NetStream {
    id: u32,
    state: StreamState,
}

/// The server side of one RTMP connection.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    handshake: Option<handshake::Server>,
    conn: Conn,
    events: VecDeque<Event>,
    app: String,
    app_query: Option<String>,
    connected: bool,
    next_stream_id: u32,
    streams: Vec<NetStream>,
    rate: RateLimit,
}

impl Server {
    /// A new session for an accepted connection. `seed` feeds the handshake's random bytes,
    /// `epoch` is the server's uptime in ms for S1.
    pub fn new(config: ServerConfig, seed: u64, epoch: u32) -> Server {
        let mut conn = Conn::new(
            config.reader,
            config.ping_interval_ms,
            config.ping_timeout_ms,
        );
        if !config.compress_headers {
            conn.writer = crate::rtmp::chunk::Writer::new(crate::rtmp::chunk::Mode::Fmt0);
        }
        Server {
            handshake: Some(handshake::Server::new(seed, epoch)),
            conn,
            events: VecDeque::new(),
            app: String::new(),
            app_query: None,
            connected: false,
            next_stream_id: 1,
            streams: Vec::new(),
            rate: RateLimit::new(config.max_message_rate),
            config,
        }
    }

    /// Consumes bytes read from the connection (see the [module docs](super)).
    pub fn handle_input(&mut self, buf: &mut BytesMut, now_ms: u64) -> Result<(), Error> {
        if !buf.is_empty() {
            self.conn.heard();
        }
        if let Some(hs) = self.handshake.as_mut() {
            let before = buf.len();
            let progress = hs.handle(buf, &mut self.conn.out)?;
            let digest = matches!(hs.kind(), Some(handshake::Kind::Digest { .. }));
            self.conn.count_in(before - buf.len());
            if progress == Progress::NeedMore {
                return Ok(());
            }
            self.handshake = None;
            self.conn.start_pings(now_ms);
            self.events.push_back(Event::HandshakeDone { digest });
        }
        while let Some(msg) = self.conn.read(buf)? {
            self.handle_message(msg, now_ms)?;
        }
        self.conn.maybe_ack();
        Ok(())
    }

    /// Tells the session the connection is gone (the peer closed it, or the caller is
    /// closing it): emits [`Event::Unpublished`] / [`Event::PlayStopped`] for every stream
    /// still publishing or playing, then [`Event::Closed`].
    pub fn handle_close(&mut self) {
        let ids: Vec<u32> = self.streams.iter().map(|s| s.id).collect();
        for id in ids {
            self.end_stream(id, true);
        }
        self.events.push_back(Event::Closed);
    }

    /// The next event, in arrival order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Everything the session wants sent, in order; empty when there is nothing.
    pub fn take_output(&mut self) -> BytesMut {
        self.conn.take_output()
    }

    /// Whether [`Server::take_output`] would return bytes.
    pub fn has_output(&self) -> bool {
        !self.conn.out.is_empty()
    }

    /// When [`Server::handle_timeout`] wants to be called next (ms, same clock as `now`).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.conn.poll_timeout()
    }

    /// Sends a ping if one is due. Fails with [`Error::PingTimeout`] when the peer has sent
    /// nothing for the ping timeout since a ping: close the connection.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), Error> {
        if self.handshake.is_none() {
            self.conn.handle_timeout(now_ms)?;
        }
        Ok(())
    }

    /// Whether `connect` succeeded.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The chunk size used for everything sent to this peer (shared encodings must match).
    pub fn chunk_size(&self) -> u32 {
        self.conn.writer.chunk_size()
    }

    /// The application the client connected to (empty before `connect`).
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Bytes consumed from the peer and bytes handed out to send, since the start.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.conn.bytes_in, self.conn.bytes_out)
    }

    /// Accepts the publish requested on `stream_id`: StreamBegin and
    /// `NetStream.Publish.Start`. Media events for it follow.
    pub fn accept_publish(&mut self, stream_id: u32) {
        let Some(s) = self.stream_mut(stream_id) else {
            return;
        };
        let StreamState::PublishPending(name) = &s.state else {
            return;
        };
        let name = name.clone();
        s.state = StreamState::Publishing(name.clone());
        self.conn
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            "status",
            status::PUBLISH_START,
            &format!("{name} is now published."),
        );
    }

    /// Refuses the publish requested on `stream_id` with an error `onStatus` (`code` is
    /// usually [`status::PUBLISH_BAD_NAME`] or [`status::PUBLISH_REJECTED`]).
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        if let Some(s) = self.stream_mut(stream_id) {
            s.state = StreamState::Idle;
        }
        self.send_status(stream_id, "error", code, description);
    }

    /// Accepts the play requested on `stream_id`: StreamBegin, `NetStream.Play.Reset` (when
    /// the play asked for a reset, as it does by default), `NetStream.Play.Start`,
    /// `|RtmpSampleAccess` and `NetStream.Data.Start`. Send the
    /// metadata, sequence headers and media after this.
    pub fn accept_play(&mut self, stream_id: u32) {
        let Some(s) = self.stream_mut(stream_id) else {
            return;
        };
        let StreamState::PlayPending { reset } = s.state else {
            return;
        };
        s.state = StreamState::Playing;
        self.conn
            .send_user_control(UserControl::StreamBegin(stream_id));
        if reset {
            self.send_status(
                stream_id,
                "status",
                status::PLAY_RESET,
                "Playing and resetting.",
            );
        }
        self.send_status(stream_id, "status", status::PLAY_START, "Started playing.");
        self.conn.send_data(
            csid::STREAM,
            stream_id,
            &[
                Value::from("|RtmpSampleAccess"),
                Value::Boolean(true),
                Value::Boolean(true),
            ],
        );
        self.conn.send_data(
            csid::STREAM,
            stream_id,
            &[
                Value::from("onStatus"),
                Value::object([("code", Value::from(status::DATA_START))]),
            ],
        );
    }

    /// Refuses the play requested on `stream_id` with `NetStream.Play.StreamNotFound`.
    pub fn reject_play(&mut self, stream_id: u32, description: &str) {
        self.reject_play_with(stream_id, status::PLAY_STREAM_NOT_FOUND, description);
    }

    /// Refuses the play requested on `stream_id` with an error `onStatus` of `code`.
    pub fn reject_play_with(&mut self, stream_id: u32, code: &str, description: &str) {
        if let Some(s) = self.stream_mut(stream_id) {
            s.state = StreamState::Idle;
        }
        self.send_status(stream_id, "error", code, description);
    }

    /// Tells a player its stream's publisher left: StreamEOF and
    /// `NetStream.Play.UnpublishNotify`. The player stays.
    pub fn notify_unpublished(&mut self, stream_id: u32) {
        self.conn
            .send_user_control(UserControl::StreamEof(stream_id));
        self.send_status(
            stream_id,
            "status",
            status::PLAY_UNPUBLISH_NOTIFY,
            "The stream was unpublished.",
        );
    }

    /// Tells a waiting player a publisher (re)started its stream: StreamBegin and
    /// `NetStream.Play.PublishNotify`.
    pub fn notify_published(&mut self, stream_id: u32) {
        self.conn
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            "status",
            status::PLAY_PUBLISH_NOTIFY,
            "The stream was published.",
        );
    }

    /// Ends playback on `stream_id`: StreamEOF and `NetStream.Play.Stop`. The stream may
    /// play again.
    pub fn stop_play(&mut self, stream_id: u32) {
        if let Some(s) = self.stream_mut(stream_id) {
            if matches!(
                s.state,
                StreamState::Playing | StreamState::PlayPending { .. }
            ) {
                s.state = StreamState::Idle;
            }
        }
        self.conn
            .send_user_control(UserControl::StreamEof(stream_id));
        self.send_status(stream_id, "status", status::PLAY_STOP, "Stopped playing.");
    }

    /// Sends an `onStatus` command on `stream_id`.
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let cmd = Command::new(
            "onStatus",
            0.0,
            Value::Null,
            vec![status_object(level, code, description)],
        );
        self.conn.send_command(csid::STREAM, stream_id, cmd);
    }

    /// Sends a media or data message to a player through this connection's own
    /// (header-compressing) writer. The server's fan-out path instead writes shared
    /// encodings ([`crate::rtmp::chunk::encode_shared`]) on the same chunk stream ids; do not
    /// mix the two on one connection.
    pub fn send_media(&mut self, stream_id: u32, media: &Media) {
        self.conn.send_raw(
            media.kind.csid(),
            stream_id,
            media.timestamp,
            media.kind.type_id(),
            media.payload.clone(),
        );
    }

    /// Sends stream metadata (an `"onMetaData", {...}` AMF0 body) to a player.
    pub fn send_metadata(&mut self, stream_id: u32, timestamp: u32, body: Bytes) {
        self.conn
            .send_raw(csid::DATA, stream_id, timestamp, type_id::DATA, body);
    }

    fn stream_mut(&mut self, id: u32) -> Option<&mut NetStream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    /// The stream a command or media message refers to, created on first use: some clients
    /// publish or play on stream ids they never created. `None` when the connection already
    /// has [`MAX_STREAMS`] streams.
    fn stream_entry(&mut self, id: u32) -> Option<&mut NetStream> {
        let idx = match self.streams.iter().position(|s| s.id == id) {
            Some(i) => i,
            None if self.streams.len() >= MAX_STREAMS => return None,
            None => {
                self.streams.push(NetStream {
                    id,
                    state: StreamState::Idle,
                });
                self.next_stream_id = self.next_stream_id.max(id.saturating_add(1));
                self.streams.len() - 1
            }
        };
        Some(&mut self.streams[idx])
    }

    /// Counts `n` messages against the rate limit.
    fn count_messages(&mut self, n: u64, now: u64) -> Result<(), Error> {
        self.rate.count(n, now).map_err(|count| Error::MessageRate {
            count,
            window_ms: RATE_WINDOW_MS,
            limit: self.rate.limit(),
        })
    }

    fn handle_message(&mut self, msg: crate::rtmp::chunk::Message, now: u64) -> Result<(), Error> {
        self.count_messages(1, now)?;
        let decoded = match conn::decode(&msg) {
            Ok(m) => m,
            // Commands, data, shared objects and aggregates concern one stream or call: the
            // framing is intact, so the connection goes on without the message. Protocol
            // control messages that cannot be read leave the connection's state unknown.
            Err(e) if msg.type_id >= type_id::DATA_AMF3 => {
                self.drop_message(msg.type_id, e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if let Some(rtt_ms) = self.conn.handle_control(&decoded, now) {
            self.events.push_back(Event::Pong { rtt_ms });
        }
        let sid = msg.stream_id;
        match decoded {
            Message::Command(cmd) => self.handle_command(sid, cmd),
            Message::Audio(payload) => self.media(sid, MediaKind::Audio, msg.timestamp, payload),
            Message::Video(payload) => self.media(sid, MediaKind::Video, msg.timestamp, payload),
            Message::Data { body, amf3 } => {
                // Type 15 carries a format byte before AMF0 values: players get AMF0 (18).
                let body = if amf3 && body.first() == Some(&0) {
                    body.slice(1..)
                } else {
                    body
                };
                self.data(sid, msg.timestamp, body);
            }
            Message::Aggregate(body) => {
                let subs = match message::split_aggregate(msg.timestamp, &body) {
                    Ok(subs) => subs,
                    Err(e) => {
                        self.drop_message(type_id::AGGREGATE, e.to_string());
                        return Ok(());
                    }
                };
                self.count_messages(subs.len().saturating_sub(1) as u64, now)?;
                for sub in subs {
                    match sub.type_id {
                        type_id::AUDIO => {
                            self.media(sid, MediaKind::Audio, sub.timestamp, sub.payload)
                        }
                        type_id::VIDEO => {
                            self.media(sid, MediaKind::Video, sub.timestamp, sub.payload)
                        }
                        type_id::DATA => self.data(sid, sub.timestamp, sub.payload),
                        _ => {}
                    }
                }
            }
            Message::UserControl(UserControl::SetBufferLength { stream_id, millis }) => {
                self.events
                    .push_back(Event::BufferLength { stream_id, millis });
            }
            _ => {}
        }
        Ok(())
    }

    fn drop_message(&mut self, type_id: u8, reason: String) {
        self.events.push_back(Event::Dropped { type_id, reason });
    }

    fn is_playing(&self, sid: u32) -> bool {
        self.streams
            .iter()
            .any(|s| s.id == sid && s.state == StreamState::Playing)
    }

    fn is_publishing(&self, sid: u32) -> bool {
        self.streams.iter().any(|s| {
            s.id == sid
                && matches!(
                    s.state,
                    StreamState::Publishing(_) | StreamState::PublishPending(_)
                )
        })
    }

    fn media(&mut self, sid: u32, kind: MediaKind, timestamp: u32, payload: Bytes) {
        // An empty audio or video message carries nothing a player could use (some servers
        // send them as keep-alives); passing it on would only cost every player a queue item.
        if payload.is_empty() {
            return;
        }
        if self.is_publishing(sid) {
            self.events.push_back(Event::Media {
                stream_id: sid,
                media: Media {
                    kind,
                    timestamp,
                    payload,
                },
            });
        }
    }

    fn data(&mut self, sid: u32, timestamp: u32, body: Bytes) {
        if !self.is_publishing(sid) {
            return;
        }
        let body = message::strip_set_data_frame(&body);
        match message::data_name(&body).as_deref() {
            Some("onMetaData") => self.events.push_back(Event::Metadata {
                stream_id: sid,
                timestamp,
                body,
            }),
            Some("@clearDataFrame") => self.events.push_back(Event::MetadataCleared {
                stream_id: sid,
                timestamp,
                body,
            }),
            _ => self.media(sid, MediaKind::Data, timestamp, body),
        }
    }

    fn reply(&mut self, txn: f64, name: &str, object: Value, args: Vec<Value>) {
        self.conn
            .send_command(csid::COMMAND, 0, Command::new(name, txn, object, args));
    }

    fn handle_command(&mut self, sid: u32, cmd: Command) {
        let txn = cmd.transaction_id;
        let needs_connect = matches!(
            cmd.name.as_str(),
            "createStream" | "publish" | "play" | "play2" | "releaseStream" | "FCPublish"
        );
        if needs_connect && !self.connected {
            // Nothing is published or played on a connection that has not connected.
            match cmd.name.as_str() {
                "publish" => {
                    self.send_status(sid, "error", status::PUBLISH_REJECTED, "connect first")
                }
                "play" | "play2" => {
                    self.send_status(sid, "error", status::PLAY_FAILED, "connect first")
                }
                _ => {}
            }
            if txn > 0.0 {
                let info = status_object("error", status::CALL_FAILED, "connect first");
                self.reply(txn, "_error", Value::Null, vec![info]);
            }
            self.drop_message(type_id::COMMAND, format!("{} before connect", cmd.name));
            return;
        }
        match cmd.name.as_str() {
            "connect" if self.connected => {
                self.drop_message(type_id::COMMAND, "a second connect".to_owned());
            }
            "connect" => self.on_connect(cmd),
            "createStream" if self.streams.len() >= MAX_STREAMS => {
                let info = status_object("error", status::CALL_FAILED, "Too many streams.");
                self.reply(txn, "_error", Value::Null, vec![info]);
                self.drop_message(type_id::COMMAND, "createStream past the stream cap".into());
            }
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.stream_entry(id);
                self.reply(
                    txn,
                    "_result",
                    Value::Null,
                    vec![Value::Number(f64::from(id))],
                );
            }
            "releaseStream" => self.reply(txn, "_result", Value::Null, vec![Value::Undefined]),
            "FCPublish" => {
                let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
                let info = status_object("status", status::PUBLISH_START, name);
                self.conn.send_command(
                    csid::COMMAND,
                    0,
                    Command::new("onFCPublish", 0.0, Value::Null, vec![info]),
                );
                self.reply(txn, "_result", Value::Null, vec![Value::Undefined]);
            }
            "FCUnpublish" => {
                let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
                let (name, _) = split_query(name);
                let found = self.streams.iter().find_map(|s| match &s.state {
                    StreamState::Publishing(n) | StreamState::PublishPending(n) if *n == name => {
                        Some(s.id)
                    }
                    _ => None,
                });
                let info = status_object("status", status::UNPUBLISH_SUCCESS, &name);
                self.conn.send_command(
                    csid::COMMAND,
                    0,
                    Command::new("onFCUnpublish", 0.0, Value::Null, vec![info]),
                );
                self.reply(txn, "_result", Value::Null, vec![Value::Undefined]);
                if let Some(id) = found {
                    self.end_stream(id, true);
                }
            }
            "FCSubscribe" => self.reply(txn, "_result", Value::Null, vec![Value::Undefined]),
            "getStreamLength" => self.reply(txn, "_result", Value::Null, vec![Value::Number(0.0)]),
            "publish" => self.on_publish(sid, &cmd),
            "play" => self.on_play(sid, &cmd, None),
            "play2" => {
                let params = cmd.arg(0).cloned().unwrap_or(Value::Null);
                let name = params
                    .get("streamName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.on_play(sid, &cmd, Some((name, params)));
            }
            "deleteStream" => {
                let id = cmd.arg(0).and_then(Value::as_f64).map_or(sid, |v| v as u32);
                self.end_stream(id, false);
                self.streams.retain(|s| s.id != id);
            }
            "closeStream" => self.end_stream(sid, false),
            "pause" | "pauseRaw" if !self.is_playing(sid) => {
                self.send_status(sid, "error", status::PLAY_FAILED, "Not playing.");
            }
            "receiveAudio" | "receiveVideo" if !self.is_playing(sid) => {
                self.drop_message(
                    type_id::COMMAND,
                    format!("{} on a stream that is not playing", cmd.name),
                );
            }
            "pause" | "pauseRaw" => {
                let paused = cmd.arg(0).and_then(Value::as_bool).unwrap_or(true);
                let position = cmd.arg(1).and_then(Value::as_f64).unwrap_or(0.0);
                let (code, desc) = if paused {
                    (status::PAUSE_NOTIFY, "Paused.")
                } else {
                    (status::UNPAUSE_NOTIFY, "Unpaused.")
                };
                if !paused {
                    self.conn.send_user_control(UserControl::StreamBegin(sid));
                }
                self.send_status(sid, "status", code, desc);
                self.events.push_back(Event::Paused {
                    stream_id: sid,
                    paused,
                    position,
                });
            }
            "receiveAudio" | "receiveVideo" => {
                let kind = if cmd.name == "receiveAudio" {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                let enabled = cmd.arg(0).and_then(Value::as_bool).unwrap_or(true);
                self.events.push_back(Event::Receive {
                    stream_id: sid,
                    kind,
                    enabled,
                });
            }
            // Answers to our own calls (onBWDone's) and bandwidth checks need no reply.
            "_result" | "_error" | "onStatus" | "_checkbw" | "onBWCheck" | "onBWDone" => {}
            _ => {
                if txn > 0.0 {
                    let info = status_object(
                        "error",
                        status::CALL_FAILED,
                        &format!("Method not found ({}).", cmd.name),
                    );
                    self.reply(txn, "_error", Value::Null, vec![info]);
                }
                self.events
                    .push_back(Event::UnknownCommand { command: cmd });
            }
        }
    }

    fn on_connect(&mut self, cmd: Command) {
        let app = cmd
            .object
            .get("app")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (app, query) = split_query(app.trim_end_matches('/'));
        self.app = app.clone();
        self.app_query = query;
        self.connected = true;
        let tc_url = cmd
            .object
            .get("tcUrl")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let encoding = cmd
            .object
            .get("objectEncoding")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);

        self.conn
            .send_control(&Message::WindowAckSize(self.config.window_ack_size));
        self.conn.send_control(&Message::SetPeerBandwidth {
            window: self.config.peer_bandwidth,
            limit: 2,
        });
        self.conn.set_chunk_size(self.config.chunk_size);
        let props = Value::object([
            ("fmsVer", Value::from("FMS/3,5,7,7009")),
            ("capabilities", Value::Number(31.0)),
            ("mode", Value::Number(1.0)),
        ]);
        let Value::Object(mut info) =
            status_object("status", status::CONNECT_SUCCESS, "Connection succeeded.")
        else {
            return;
        };
        info.push(("objectEncoding".to_owned(), Value::Number(encoding)));
        self.reply(
            cmd.transaction_id,
            "_result",
            props,
            vec![Value::Object(info)],
        );
        self.conn.send_command(
            csid::COMMAND,
            0,
            Command::new("onBWDone", 0.0, Value::Null, vec![Value::Number(8192.0)]),
        );
        self.events.push_back(Event::Connected {
            app,
            tc_url,
            object: cmd.object,
        });
    }

    fn on_publish(&mut self, sid: u32, cmd: &Command) {
        let raw = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
        let publish_type = cmd
            .arg(1)
            .and_then(Value::as_str)
            .unwrap_or("live")
            .to_owned();
        let (name, query) = split_query(raw);
        let query = query.or_else(|| self.app_query.clone());
        let app = self.app.clone();
        let Some(s) = self.stream_entry(sid) else {
            self.send_status(sid, "error", status::PUBLISH_REJECTED, "Too many streams.");
            return;
        };
        s.state = StreamState::PublishPending(name.clone());
        self.events.push_back(Event::PublishRequested {
            stream_id: sid,
            app,
            stream: name,
            query,
            publish_type,
        });
    }

    fn on_play(&mut self, sid: u32, cmd: &Command, play2: Option<(String, Value)>) {
        let (raw, start, duration, reset) = match play2 {
            Some((name, params)) => {
                let start = params.get("start").and_then(Value::as_f64).unwrap_or(-2.0);
                let len = params.get("len").and_then(Value::as_f64).unwrap_or(-1.0);
                (name, start, len, true)
            }
            None => (
                cmd.arg(0)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                cmd.arg(1).and_then(Value::as_f64).unwrap_or(-2.0),
                cmd.arg(2).and_then(Value::as_f64).unwrap_or(-1.0),
                cmd.arg(3)
                    .map(|v| v.as_bool().unwrap_or(v.as_f64().is_some_and(|n| n != 0.0)))
                    .unwrap_or(true),
            ),
        };
        let (name, query) = split_query(&raw);
        let query = query.or_else(|| self.app_query.clone());
        let app = self.app.clone();
        let Some(s) = self.stream_entry(sid) else {
            self.send_status(sid, "error", status::PLAY_FAILED, "Too many streams.");
            return;
        };
        s.state = StreamState::PlayPending { reset };
        self.events.push_back(Event::PlayRequested {
            stream_id: sid,
            app,
            stream: name,
            query,
            start,
            duration,
            reset,
        });
    }

    /// Ends whatever `id` was doing, emitting Unpublished or PlayStopped once.
    fn end_stream(&mut self, id: u32, from_fc_unpublish: bool) {
        let Some(s) = self.stream_mut(id) else {
            return;
        };
        let was = std::mem::replace(&mut s.state, StreamState::Idle);
        match was {
            StreamState::Publishing(_) | StreamState::PublishPending(_) => {
                if !from_fc_unpublish {
                    self.send_status(
                        id,
                        "status",
                        status::UNPUBLISH_SUCCESS,
                        "Stopped publishing.",
                    );
                }
                self.events.push_back(Event::Unpublished { stream_id: id });
            }
            StreamState::Playing | StreamState::PlayPending { .. } => {
                self.events.push_back(Event::PlayStopped { stream_id: id });
            }
            StreamState::Idle => {}
        }
    }
}
