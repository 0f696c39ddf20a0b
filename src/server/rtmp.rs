//! One RTMP connection: a reader task that drives the server session and the hub, and a
//! writer task that drains the connection's [`Outbox`] with one vectored write per batch.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::time::timeout_at;

use super::log::Escaped;
use super::{Core, hooks};
use crate::hub::{
    Ending, Frame, Item, Outbox, Player, PlayerEvent, PublishError, Waits, WriterTimer, stream_key,
};
use crate::metrics::{Proto, Role as MetricRole};
use crate::relay::{VIA_PROPERTY, Via};
use crate::rtmp::chunk::ReaderConfig;
use crate::rtmp::session::server::{Event, Server, ServerConfig};
use crate::rtmp::session::status;
use crate::runtime::{self, Stream};

/// Socket read size for publishers, which send the media.
const PUBLISHER_READ: usize = 64 * 1024;
/// Socket read size for everyone else: players send only commands, acknowledgements and
/// pings, and thousands of them must stay small (the goal is < 16 KiB per player).
const PLAYER_READ: usize = 512;
/// Unsent control output (command answers, acknowledgements, pings) past which the reader
/// stops reading the peer until its writer catches up: a peer that does not read cannot
/// make the server queue answers without end (back-pressure, as hyper applies it).
const MAX_UNSENT_CONTROL: usize = 64 * 1024;
/// How long a connection the server closes gets to take its last bytes and close its side:
/// the server sends them, then a FIN, and reads (discarding) until the peer closes, so that
/// closing with unread input does not reset the connection and lose what was sent.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// The most a closing connection's peer may send while it lingers.
const LINGER_DISCARD: usize = 1 << 20;

/// What the connection is doing.
#[derive(Debug)]
enum Role {
    Idle,
    Publisher { key: String, id: u64 },
    Player { player: Player, stream_id: u32 },
}

impl Role {
    /// The role as the metrics count it.
    fn metric(&self) -> Option<MetricRole> {
        match self {
            Role::Idle => None,
            Role::Publisher { .. } => Some(MetricRole::Publisher),
            Role::Player { .. } => Some(MetricRole::Player),
        }
    }
}

/// State the reader and the writer share (single-threaded; never borrowed across an await).
struct Conn {
    core: Rc<Core>,
    /// The configuration as the connection began (a reload applies to later connections).
    config: Rc<crate::config::Config>,
    peer: SocketAddr,
    session: RefCell<Server>,
    outbox: Rc<Outbox>,
    role: RefCell<Role>,
    /// Why the connection ended, for the close log line.
    reason: RefCell<Option<String>>,
    /// Bytes written to the peer.
    written: Cell<u64>,
    /// The session's clock starts here (its `now_ms` is milliseconds since).
    epoch: Instant,
    /// When the publisher last sent media (its idle timeout counts from here).
    last_media: Cell<Instant>,
    /// The peer closed its side or the socket failed: nothing more to read.
    peer_gone: Cell<bool>,
    /// Frames dropped that the metrics already counted.
    counted_drops: Cell<u64>,
    /// The relay chain the peer named in `connect` (empty: not a relay).
    via: RefCell<Via>,
}

impl Conn {
    fn set_reason(&self, r: impl Into<String>) {
        let mut slot = self.reason.borrow_mut();
        if slot.is_none() {
            *slot = Some(r.into());
        }
    }

    /// The session clock.
    fn now_ms(&self, now: Instant) -> u64 {
        now.duration_since(self.epoch).as_millis() as u64
    }

    /// Moves what the session wants sent into the outbox.
    fn flush_session(&self) {
        let out = self.session.borrow_mut().take_output();
        if !out.is_empty() {
            self.outbox.push_control(out.freeze());
        }
    }
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve(core: Rc<Core>, stream: Stream, peer: SocketAddr, id: u64) {
    core.connections.set(core.connections.get() + 1);
    core.metrics.opened(Proto::Rtmp);
    if core.log_gate.allow() {
        tracing::info!(%peer, core = core.index, conn = id, "accepted");
    }
    let cfg = core.config();
    let session_cfg = ServerConfig {
        chunk_size: cfg.chunk_size,
        reader: ReaderConfig {
            max_message_len: cfg.max_message_size,
            ..ReaderConfig::default()
        },
        // Outputs are queued between shared frames and sometimes out of call order (the
        // writer accepts a waiting play): every message must stand alone.
        compress_headers: false,
        ping_interval_ms: cfg.ping_interval.as_millis() as u64,
        ping_timeout_ms: cfg.ping_timeout.as_millis() as u64,
        max_message_rate: cfg.max_message_rate,
        ..ServerConfig::default()
    };
    let seed = id ^ ((core.index as u64) << 48) ^ 0x5DEE_CE66_D1CE_4E5B;
    let epoch = core.started.elapsed().as_millis() as u32;
    let conn = Rc::new(Conn {
        peer,
        session: RefCell::new(Server::new(session_cfg, seed, epoch)),
        outbox: Outbox::with_coalescing(
            cfg.player_queue_bytes,
            cfg.slow_player_timeout,
            !cfg.gop_cache,
            !cfg.write_coalesce.is_zero(),
        ),
        role: RefCell::new(Role::Idle),
        reason: RefCell::new(None),
        written: Cell::new(0),
        epoch: Instant::now(),
        last_media: Cell::new(Instant::now()),
        peer_gone: Cell::new(false),
        counted_drops: Cell::new(0),
        via: RefCell::new(Via::default()),
        config: cfg.clone(),
        core: core.clone(),
    });
    core.register(&conn.outbox);
    if cfg.write_batch_bytes > 0 {
        conn.outbox.set_batch_bytes(cfg.write_batch_bytes);
    }
    conn.outbox.set_tag("rtmp", peer.to_string());
    let stream = Rc::new(stream);
    let writer = {
        let (conn, stream) = (conn.clone(), stream.clone());
        runtime::spawn(async move {
            write_loop(conn, stream.clone()).await;
            // A FIN after the last bytes.
            stream.shutdown_write();
        })
    };
    // Closing the outbox (slow player, takeover, shutdown, the end of this connection)
    // leaves the writer a moment to send what is queued and the peer a moment to close its
    // side; then the socket is shut down both ways, which ends a read or write in flight.
    let watchdog = {
        let (conn, stream) = (conn.clone(), stream.clone());
        runtime::spawn(async move {
            conn.outbox.closed().await;
            // At shutdown the players were told and nothing waits on a last answer.
            let linger = if conn.core.shutting_down.get() {
                CLOSE_LINGER.min(std::time::Duration::from_millis(250))
            } else {
                CLOSE_LINGER
            };
            tokio::time::sleep(linger).await;
            stream.shutdown_both();
        })
    };

    read_loop(&conn, &stream).await;

    // Clean up whatever the connection was doing.
    {
        let mut s = conn.session.borrow_mut();
        s.handle_close();
        while s.poll_event().is_some() {}
    }
    leave(&conn);
    conn.outbox.close();
    // The server ends this connection while the peer is still there (a refused publish, a
    // protocol error, a timeout): read and discard until it closes, so its unread bytes do
    // not turn our close into a reset that loses the last answer.
    if !conn.peer_gone.get() {
        linger(&stream).await;
    }
    let _ = writer.await;
    watchdog.abort();
    core.connections
        .set(core.connections.get().saturating_sub(1));
    core.metrics.closed(
        Proto::Rtmp,
        conn.reason.borrow().as_deref().unwrap_or("closed"),
    );
    let (bytes_in, _) = conn.session.borrow().byte_counts();
    let bytes_out = conn.written.get();
    if !core.log_gate.allow() {
        return;
    }
    tracing::info!(
        peer = %conn.peer,
        conn = id,
        reason = conn.reason.borrow().as_deref().unwrap_or("closed"),
        bytes_in,
        bytes_out,
        dropped = conn.outbox.dropped(),
        "closed"
    );
}

/// Reads and discards what the peer still sends until it closes, the watchdog shuts the
/// socket down, or it sent [`LINGER_DISCARD`] bytes.
async fn linger(stream: &Stream) {
    let mut buf = Vec::with_capacity(4096);
    let mut discarded = 0;
    while discarded < LINGER_DISCARD {
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => discarded += n,
            _ => return,
        }
    }
    stream.shutdown_both();
}

/// The metrics of a write batch a player's socket took: the delivery latency of its oldest
/// frame (one clock read), the player's time to first frame, and the frames it dropped
/// since the last count.
pub(crate) fn batch_written(
    core: &Core,
    player: Option<&mut Player>,
    oldest: Option<Instant>,
    dropped: u64,
    counted_drops: &Cell<u64>,
) -> Instant {
    let m = &core.metrics;
    let done = Instant::now();
    if let Some(received) = oldest {
        m.delivered(done.saturating_duration_since(received));
        if let Some(ttff) = player.and_then(|p| p.frames_sent(done)) {
            m.first_frame(ttff);
        }
    }
    m.dropped(dropped.saturating_sub(counted_drops.get()));
    counted_drops.set(dropped);
    done
}

/// How long this core's players wait for publishers.
pub(crate) fn waits(core: &Core) -> Waits {
    let cfg = core.config();
    Waits {
        play: cfg.play_wait,
        republish: cfg.republish_wait,
    }
}

/// Leaves the hub: unpublishes a publisher, removes a player. A player's play is over:
/// what was queued for it and its timers (`play_wait`, `republish_wait`) go with it, so a
/// later play on the connection starts afresh.
fn leave(conn: &Conn) {
    let role = std::mem::replace(&mut *conn.role.borrow_mut(), Role::Idle);
    conn.core.metrics.role(Proto::Rtmp, role.metric(), None);
    let mut hub = conn.core.hub.borrow_mut();
    let ended = match role {
        Role::Publisher { key, id } => {
            hub.unpublish(&key, id);
            if conn.core.log_gate.allow() {
                tracing::info!(peer = %conn.peer, stream = %Escaped(&key), "unpublished");
            }
            Some(("publish_done", key))
        }
        Role::Player { player, .. } => {
            let key = player.key().to_owned();
            player.leave(&mut hub);
            Some(("play_done", key))
        }
        Role::Idle => None,
    };
    drop(hub);
    if let Some((call, key)) = ended {
        let (app, name) = crate::hub::split_key(&key);
        let call = hooks::Call {
            call,
            addr: conn.peer.ip(),
            app: &app,
            name: &name,
            query: None,
            proto: "rtmp",
        };
        hooks::done(&conn.core, call);
    }
}

async fn read_loop(conn: &Rc<Conn>, stream: &Stream) {
    let cfg = conn.config.clone();
    let handshake_deadline = conn.epoch + cfg.handshake_timeout;
    let mut inbuf = BytesMut::new();
    loop {
        // Back-pressure: no more input while the peer leaves our answers unread.
        if conn.outbox.unsent_control() > MAX_UNSENT_CONTROL {
            let drained = conn.outbox.control_below(MAX_UNSENT_CONTROL);
            if timeout_at((Instant::now() + cfg.slow_player_timeout).into(), drained)
                .await
                .is_err()
            {
                conn.set_reason("peer does not read what it is sent");
                if conn.core.log_gate.allow() {
                    tracing::warn!(peer = %conn.peer, "closing: {} bytes unread", conn.outbox.unsent_control());
                }
                return;
            }
            if conn.outbox.is_closed() {
                conn.set_reason("closed by server");
                return;
            }
        }
        let want = if matches!(*conn.role.borrow(), Role::Publisher { .. }) {
            PUBLISHER_READ
        } else {
            PLAYER_READ
        };
        // Before connect: the handshake timeout. A publisher: media within idle_timeout. A
        // player sends next to nothing, so no read deadline: pings and its writes tell
        // whether it is there. Anyone else: some bytes within idle_timeout.
        let connected = conn.session.borrow().is_connected();
        let deadline = match &*conn.role.borrow() {
            _ if !connected => Some(handshake_deadline),
            Role::Publisher { .. } => Some(conn.last_media.get() + cfg.idle_timeout),
            Role::Player { .. } => None,
            Role::Idle => Some(Instant::now() + cfg.idle_timeout),
        };
        // Read straight into the receive buffer: the chunk reader slices messages out of
        // it, so a publisher's bytes are never copied before they are shared.
        let read = stream.read_buf(inbuf, want);
        let result = match deadline {
            Some(d) => timeout_at(d.into(), read).await,
            None => Ok(read.await),
        };
        let (res, buf) = match result {
            Ok(r) => r,
            Err(_) => {
                conn.set_reason(if connected {
                    "idle timeout"
                } else {
                    "handshake timeout"
                });
                return;
            }
        };
        inbuf = buf;
        match res {
            Ok(0) => {
                conn.peer_gone.set(true);
                conn.set_reason("peer closed");
                return;
            }
            Ok(n) => conn.core.metrics.received(Proto::Rtmp, n),
            Err(e) => {
                conn.peer_gone.set(true);
                conn.set_reason(format!("read: {e}"));
                return;
            }
        }
        let now = Instant::now();
        let result = conn
            .session
            .borrow_mut()
            .handle_input(&mut inbuf, conn.now_ms(now));
        if let Err(e) = result {
            conn.set_reason(format!("protocol error: {e}"));
            if conn.core.log_gate.allow() {
                tracing::warn!(peer = %conn.peer, "closing: {e}");
            }
            return;
        }
        loop {
            let ev = conn.session.borrow_mut().poll_event();
            let Some(ev) = ev else { break };
            // Who may publish or play: address rules, signatures, then the callback (the
            // one wait here: this connection's reading pauses for its answer).
            if !admit(conn, &ev).await {
                conn.flush_session();
                return;
            }
            if !handle_event(conn, ev, now) {
                conn.flush_session();
                conn.core.hub.borrow_mut().flush();
                return;
            }
        }
        conn.flush_session();
        conn.core.hub.borrow_mut().flush();
        // An idle player's receive buffer need not outlive the bytes it held.
        if inbuf.is_empty() && want == PLAYER_READ {
            inbuf = BytesMut::new();
        }
        if conn.outbox.is_closed() {
            conn.set_reason("closed by server");
            return;
        }
    }
}

/// Checks a publish or play against `[auth]` (address rules and signatures, then the
/// callback); a refused one is answered (`BadName`, `Play.Failed`), logged and counted, and
/// the connection closes (false). Other events pass.
async fn admit(conn: &Rc<Conn>, ev: &Event) -> bool {
    let (publish, stream_id, app, stream, query) = match ev {
        Event::PublishRequested {
            stream_id,
            app,
            stream,
            query,
            ..
        } => (true, *stream_id, app, stream, query.as_deref()),
        Event::PlayRequested {
            stream_id,
            app,
            stream,
            query,
            ..
        } => (false, *stream_id, app, stream, query.as_deref()),
        _ => return true,
    };
    let core = &conn.core;
    let (addr, now) = (conn.peer.ip(), crate::auth::unix_now());
    let policy = core.auth();
    let mut verdict = if publish {
        policy.check_publish(addr, app, stream, query, now)
    } else {
        policy.check_play(addr, app, stream, query, now)
    };
    if verdict.is_ok() {
        let call = hooks::Call {
            call: if publish { "publish" } else { "play" },
            addr,
            app,
            name: stream,
            query,
            proto: "rtmp",
        };
        verdict = hooks::allow(core, call).await;
    }
    let Err(why) = verdict else {
        return true;
    };
    let key = stream_key(app, stream);
    let what = if publish { "publish" } else { "play" };
    tracing::info!(peer = %conn.peer, stream = %Escaped(&key), "{what} refused: {}", Escaped(&why.to_string()));
    let mut s = conn.session.borrow_mut();
    if publish {
        core.metrics.publish_refused(why.label());
        s.reject_publish(
            stream_id,
            status::PUBLISH_BAD_NAME,
            &format!("not allowed to publish {key}: {why}"),
        );
    } else {
        core.metrics.play_refused(Proto::Rtmp, why.label());
        s.reject_play_with(
            stream_id,
            status::PLAY_FAILED,
            &format!("not allowed to play {key}: {why}"),
        );
    }
    drop(s);
    conn.set_reason(format!("{what} refused: {why}"));
    false
}

/// This node's id in relay chains.
fn node_id(conn: &Conn) -> &str {
    conn.config.relay.node_id.as_deref().unwrap_or_default()
}

/// A publish started here: push it upstream and advertise it in the registry, as the
/// `[relay]` config says.
fn start_relays(conn: &Conn, key: &str, id: u64) {
    let core = &conn.core;
    let relay = &conn.config.relay;
    if !relay.push.is_empty() {
        let chain = conn.via.borrow().through(node_id(conn));
        for target in crate::relay::push::targets(&relay.push, relay.push_mode, key) {
            runtime::spawn(crate::relay::push::run(
                core.clone(),
                key.to_owned(),
                id,
                target,
                chain.clone(),
            ));
        }
    }
    if relay.registry.is_some() {
        runtime::spawn(crate::relay::advertise::run(
            core.clone(),
            key.to_owned(),
            id,
        ));
    }
}

/// Acts on one session event. Returns false when the connection must close.
fn handle_event(conn: &Rc<Conn>, ev: Event, now: Instant) -> bool {
    match ev {
        Event::Connected {
            app,
            tc_url,
            object,
        } => {
            if let Some(v) = object.get(VIA_PROPERTY).and_then(|v| v.as_str()) {
                let via = Via::parse(v);
                conn.outbox.set_via(v);
                // Another node's pull: every frame goes at once (its players coalesce).
                conn.outbox.set_coalescing(false);
                *conn.via.borrow_mut() = via;
            }
            tracing::debug!(
                peer = %conn.peer,
                app = %Escaped(&app),
                tc_url = %Escaped(tc_url.as_deref().unwrap_or("")),
                "connect"
            );
        }
        Event::PublishRequested {
            stream_id,
            app,
            stream,
            ..
        } => {
            let key = stream_key(&app, &stream);
            if conn.via.borrow().is_loop(node_id(conn)) {
                conn.core.metrics.publish_refused("relay_loop");
                conn.session.borrow_mut().reject_publish(
                    stream_id,
                    status::PUBLISH_BAD_NAME,
                    "relay loop: this stream already passed through this node",
                );
                conn.set_reason("publish refused: relay loop");
                return false;
            }
            if !matches!(*conn.role.borrow(), Role::Idle) || conn.core.shutting_down.get() {
                conn.session.borrow_mut().reject_publish(
                    stream_id,
                    status::PUBLISH_REJECTED,
                    "this connection is already publishing or playing",
                );
                conn.core.metrics.publish_refused("busy");
                return true;
            }
            let result = conn
                .core
                .hub
                .borrow_mut()
                .publish(&key, conn.outbox.clone(), now);
            match result {
                Ok(id) => {
                    conn.last_media.set(now);
                    conn.session.borrow_mut().accept_publish(stream_id);
                    conn.core
                        .metrics
                        .role(Proto::Rtmp, None, Some(MetricRole::Publisher));
                    *conn.role.borrow_mut() = Role::Publisher {
                        key: key.clone(),
                        id,
                    };
                    if conn.core.log_gate.allow() {
                        tracing::info!(peer = %conn.peer, stream = %Escaped(&key), "publish");
                    }
                    start_relays(conn, &key, id);
                }
                Err(PublishError::InUse) => {
                    conn.core.metrics.publish_refused("name_in_use");
                    conn.session.borrow_mut().reject_publish(
                        stream_id,
                        status::PUBLISH_BAD_NAME,
                        &format!("{key} is already being published"),
                    );
                    if conn.core.log_gate.allow() {
                        tracing::info!(peer = %conn.peer, stream = %Escaped(&key), "publish refused: name in use");
                    }
                    conn.set_reason("publish refused: name in use");
                    return false;
                }
            }
        }
        Event::Metadata {
            timestamp, body, ..
        } => {
            conn.core.metrics.frame(2);
            if let Role::Publisher { key, id } = &*conn.role.borrow() {
                let f = Frame::metadata(timestamp, body, conn.config.chunk_size);
                conn.core.hub.borrow_mut().push(key, *id, f, now);
            }
        }
        Event::MetadataCleared {
            timestamp, body, ..
        } => {
            if let Role::Publisher { key, id } = &*conn.role.borrow() {
                let f = Frame::clear_metadata(timestamp, body, conn.config.chunk_size);
                conn.core.hub.borrow_mut().push(key, *id, f, now);
            }
        }
        Event::Media { media, .. } => {
            conn.core.metrics.frame(match media.kind {
                crate::rtmp::session::MediaKind::Audio => 0,
                crate::rtmp::session::MediaKind::Video => 1,
                crate::rtmp::session::MediaKind::Data => 2,
            });
            if let Role::Publisher { key, id } = &*conn.role.borrow() {
                conn.last_media.set(now);
                let f = Frame::media(
                    media.kind,
                    media.timestamp,
                    media.payload,
                    conn.config.chunk_size,
                );
                conn.core.hub.borrow_mut().push(key, *id, f, now);
            }
        }
        Event::Unpublished { .. } | Event::PlayStopped { .. } => leave(conn),
        Event::PlayRequested {
            stream_id,
            app,
            stream,
            duration,
            ..
        } => {
            if !matches!(*conn.role.borrow(), Role::Idle) || conn.core.shutting_down.get() {
                conn.session.borrow_mut().reject_play_with(
                    stream_id,
                    status::PLAY_FAILED,
                    "already busy",
                );
                conn.core.metrics.play_refused(Proto::Rtmp, "busy");
                return true;
            }
            let key = stream_key(&app, &stream);
            if conn.via.borrow().is_loop(node_id(conn)) {
                conn.core.metrics.play_refused(Proto::Rtmp, "relay_loop");
                conn.session.borrow_mut().reject_play(
                    stream_id,
                    "relay loop: this node is already on the stream's path",
                );
                return true;
            }
            // A live server has no recording to seek in: any start plays live, as
            // nginx-rtmp and SRS do. A duration of 0 asks for one picture: the stream's
            // current state (metadata, sequence headers, the GOP), then Play.Stop.
            let once = duration == 0.0;
            if once && !conn.core.hub.borrow().is_live(&key) {
                conn.session.borrow_mut().reject_play(
                    stream_id,
                    "A play of duration 0 needs a stream that is being published.",
                );
                conn.core.metrics.play_refused(Proto::Rtmp, "not_live");
                return true;
            }
            // Session output so far (createStream's answer) goes before the start marker.
            conn.flush_session();
            let player = Player::join(
                &mut conn.core.hub.borrow_mut(),
                key.clone(),
                conn.outbox.clone(),
                once,
                waits(&conn.core),
                now,
            );
            let live = !player.is_waiting();
            conn.core
                .metrics
                .role(Proto::Rtmp, None, Some(MetricRole::Player));
            *conn.role.borrow_mut() = Role::Player { player, stream_id };
            if conn.core.log_gate.allow() {
                tracing::info!(peer = %conn.peer, stream = %Escaped(&key), live, "play");
            }
        }
        Event::Paused {
            stream_id, paused, ..
        } => {
            if let Role::Player {
                player,
                stream_id: s,
            } = &*conn.role.borrow()
            {
                if *s == stream_id {
                    // Pause.Notify / Unpause.Notify go before what resumes.
                    conn.flush_session();
                    if paused {
                        conn.outbox.pause();
                    } else {
                        conn.core
                            .hub
                            .borrow_mut()
                            .resume(player.key(), &conn.outbox, now);
                    }
                }
            }
        }
        Event::Receive {
            stream_id,
            kind,
            enabled,
        } => {
            if let Role::Player { stream_id: s, .. } = &*conn.role.borrow() {
                if *s == stream_id {
                    conn.outbox.set_receive(kind, enabled);
                }
            }
        }
        Event::Dropped { type_id, reason } if conn.core.log_gate.allow() => {
            tracing::warn!(peer = %conn.peer, type_id, "message dropped: {}", Escaped(&reason));
        }
        Event::UnknownCommand { command } => {
            tracing::debug!(peer = %conn.peer, command = %Escaped(&command.name), "unknown command");
        }
        _ => {}
    }
    true
}

/// Drains the outbox: one vectored write per batch; acts on player events in order; sends
/// the session's pings and times a player's wait for a publisher.
async fn write_loop(conn: Rc<Conn>, stream: Rc<Stream>) {
    let cfg = conn.config.clone();
    let mut timer = WriterTimer::new();
    // Kept across batches: once grown, a batch allocates no lists.
    let mut items: Vec<Item> = Vec::new();
    let mut bufs: Vec<Bytes> = Vec::new();
    // The writer's latest reading of the clock: two a batch (woken, written) serve all.
    let mut last = Instant::now();
    loop {
        // A player waiting for a publisher, or for one to come back, has a deadline.
        let wait_deadline = match &*conn.role.borrow() {
            Role::Player { player, .. } => player.deadline(),
            _ => None,
        };
        let ping_deadline = conn
            .session
            .borrow()
            .poll_timeout()
            .map(|ms| conn.epoch + std::time::Duration::from_millis(ms));
        let deadline = match (wait_deadline, ping_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        timer.ready_until(&conn.outbox, deadline, last).await;
        let now = Instant::now();
        last = now;
        bufs.clear();
        if ping_deadline.is_some_and(|d| now >= d) {
            let mut s = conn.session.borrow_mut();
            if let Err(e) = s.handle_timeout(conn.now_ms(now)) {
                drop(s);
                if conn.core.log_gate.allow() {
                    tracing::info!(peer = %conn.peer, "closing: {e}");
                }
                conn.set_reason(e.to_string());
                conn.outbox.close();
                return;
            }
            let out = s.take_output();
            if !out.is_empty() {
                bufs.push(out.freeze());
            }
        }
        conn.outbox.take_into(&mut items);
        bufs.reserve(items.len() + 1);
        let mut close_after = false;
        // The play ended in this batch (duration 0): its frames after that are not sent.
        let mut play_over = false;
        // The oldest frame of the batch: delivery latency is sampled once per batch.
        let oldest = items.iter().find_map(|it| match it {
            Item::Frame(f) => Some(f.received),
            _ => None,
        });
        let stream_id = match &*conn.role.borrow() {
            Role::Player { stream_id, .. } => *stream_id,
            _ => 1,
        };
        for item in items.drain(..) {
            match item {
                Item::Control(b) => bufs.push(b),
                Item::Frame(_) if play_over => {}
                Item::Frame(f) => bufs.push(f.rtmp_for(stream_id, cfg.chunk_size)),
                Item::Event(e) => {
                    if let Role::Player { player, .. } = &mut *conn.role.borrow_mut() {
                        player.on_event(e, Instant::now());
                    }
                    let mut s = conn.session.borrow_mut();
                    match e {
                        PlayerEvent::Start => s.accept_play(stream_id),
                        PlayerEvent::Unpublished => s.notify_unpublished(stream_id),
                        PlayerEvent::Republished => s.notify_published(stream_id),
                        PlayerEvent::Shutdown => {
                            s.stop_play(stream_id);
                            close_after = true;
                        }
                        PlayerEvent::Complete => {
                            s.stop_play(stream_id);
                            play_over = true;
                        }
                        // The player's wait ends below (its deadline is now).
                        PlayerEvent::NotFound => {}
                    }
                    let out = s.take_output();
                    if !out.is_empty() {
                        bufs.push(out.freeze());
                    }
                }
            }
        }
        if play_over {
            leave(&conn);
        }
        let ending = match &*conn.role.borrow() {
            Role::Player { player, .. } => player.expired(now),
            _ => None,
        };
        if let Some(ending) = ending {
            let mut s = conn.session.borrow_mut();
            match ending {
                Ending::NotFound => {
                    conn.core.metrics.play_refused(Proto::Rtmp, "not_found");
                    s.reject_play(stream_id, "No such stream is being published.");
                    conn.set_reason("play: stream not found");
                }
                Ending::PublisherGone => {
                    s.stop_play(stream_id);
                    conn.set_reason("play: publisher did not come back");
                }
            }
            let out = s.take_output();
            bufs.push(out.freeze());
            close_after = true;
        }
        let closed = conn.outbox.is_closed();
        if !bufs.is_empty() {
            let n: usize = bufs.iter().map(Bytes::len).sum();
            conn.written.set(conn.written.get() + n as u64);
            conn.core.metrics.sent(Proto::Rtmp, n);
            // A write that cannot finish within the slow-player timeout means the peer stopped
            // reading (its socket buffers are full): the core's watchdog gives up on it even
            // if no new frame arrives to trip the queue's own check.
            match conn.outbox.guard(now, stream.writev_from(&mut bufs)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    conn.set_reason(format!("write: {e}"));
                    conn.outbox.close();
                    return;
                }
                None => {
                    conn.set_reason("slow player: write stalled");
                    conn.outbox.close();
                    return;
                }
            }
            conn.outbox.drained();
            runtime::keep_small(&mut bufs);
            runtime::keep_small(&mut items);
            let mut role = conn.role.borrow_mut();
            let player = match &mut *role {
                Role::Player { player, .. } => Some(player),
                _ => None,
            };
            let dropped = conn.outbox.dropped();
            last = batch_written(&conn.core, player, oldest, dropped, &conn.counted_drops);
        }
        if close_after {
            conn.set_reason("closed by server");
            conn.outbox.close();
            return;
        }
        if closed {
            if conn.outbox.dropped() > 0 && conn.reason.borrow().is_none() {
                conn.set_reason("slow player");
            }
            return;
        }
    }
}
