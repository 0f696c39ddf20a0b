//! HTTP-FLV and WebSocket-FLV players: the same [`Player`] life and [`Outbox`] as an RTMP
//! player, turned into an FLV byte stream.
//!
//! Each frame goes out as three buffers: its shared FLV tag header, its shared payload and
//! its shared PreviousTagSize ([`Frame::flv`]); nothing is muxed or copied per player.
//! Chunked transfer (HTTP/1.1) or one binary WebSocket frame goes around each whole write
//! batch, not around each tag. FLV has no StreamBegin: after a republish, or a publisher
//! whose clock jumps back, a player's timestamps are rebased so that they continue where
//! they were (players then go on without a restart).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::time::timeout;

use super::Core;
use super::log::Escaped;
use super::rtmp::{batch_written, waits};
use crate::flv;
use crate::http::websocket::{self, ClientFrame};
use crate::hub::{Ending, Frame, Item, Outbox, Player, PlayerEvent, WriterTimer};
use crate::metrics::{Proto, Role as MetricRole};
use crate::rtmp::session::MediaKind;
use crate::runtime::{self, Stream};

/// How the FLV bytes are framed on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framing {
    /// HTTP/1.1: `Transfer-Encoding: chunked`, one chunk per write batch.
    Chunked,
    /// HTTP/1.0: the body ends when the connection closes.
    Close,
    /// WebSocket: one binary message per write batch, after the `101` answer with this
    /// `Sec-WebSocket-Accept`.
    WebSocket {
        /// The accept key.
        accept: String,
    },
}

/// A timestamp step back larger than this (ms) is a new timeline, not interleaving.
const JUMP_BACK_MS: i32 = 1000;
/// The most a player may send us that is not WebSocket frames we read (HTTP players send
/// nothing after the request).
const MAX_CLIENT_BYTES: usize = 64 * 1024;
/// How long the peer gets to close its side after our last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// WebSocket close code for a stream nobody published (an application code).
const WS_NOT_FOUND: u16 = 4404;

/// The `200` response head of an FLV stream.
pub(crate) fn response_head(http10: bool) -> String {
    let framing = if http10 {
        "Connection: close\r\n"
    } else {
        "Transfer-Encoding: chunked\r\nConnection: close\r\n"
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n{framing}\
         Access-Control-Allow-Origin: *\r\nCache-Control: no-cache\r\n\r\n"
    )
}

/// What the reader and the writer share.
struct Conn {
    core: Rc<Core>,
    outbox: Rc<Outbox>,
    player: RefCell<Option<Player>>,
    framing: Framing,
    reason: RefCell<Option<String>>,
    /// The WebSocket client closed or misbehaved: end after the next write.
    closing: Cell<bool>,
    written: Cell<u64>,
    /// The protocol, as the metrics count it.
    metric: Proto,
    /// Frames dropped that the metrics already counted.
    counted_drops: Cell<u64>,
}

impl Conn {
    fn set_reason(&self, r: impl Into<String>) {
        let mut slot = self.reason.borrow_mut();
        if slot.is_none() {
            *slot = Some(r.into());
        }
    }

    fn is_ws(&self) -> bool {
        matches!(self.framing, Framing::WebSocket { .. })
    }
}

/// Plays stream `key` to an HTTP client until either side ends it. `leftover` is what the
/// client sent after its request head (WebSocket frames).
pub(crate) async fn play(
    core: Rc<Core>,
    stream: Stream,
    peer: SocketAddr,
    key: String,
    framing: Framing,
    leftover: BytesMut,
) {
    let (proto, metric) = if matches!(framing, Framing::WebSocket { .. }) {
        ("ws-flv", Proto::WsFlv)
    } else {
        ("http-flv", Proto::HttpFlv)
    };
    let stream = Rc::new(stream);
    if let Framing::WebSocket { accept } = &framing {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        if stream.write_all(Bytes::from(head)).await.is_err() {
            return;
        }
    }
    core.connections.set(core.connections.get() + 1);
    core.metrics.opened(metric);
    core.metrics.role(metric, None, Some(MetricRole::Player));
    let cfg = core.config();
    let outbox = Outbox::with_coalescing(
        cfg.player_queue_bytes,
        cfg.slow_player_timeout,
        !cfg.gop_cache,
        !cfg.write_coalesce.is_zero(),
    );
    core.register(&outbox);
    if cfg.write_batch_bytes > 0 {
        outbox.set_batch_bytes(cfg.write_batch_bytes);
    }
    outbox.set_tag(
        if metric == Proto::WsFlv {
            "ws_flv"
        } else {
            "http_flv"
        },
        peer.to_string(),
    );
    let now = Instant::now();
    let player = Player::join(
        &mut core.hub.borrow_mut(),
        key.clone(),
        outbox.clone(),
        false,
        waits(&core),
        now,
    );
    if core.log_gate.allow() {
        tracing::info!(%peer, proto, stream = %Escaped(&key), live = !player.is_waiting(), "play");
    }
    let conn = Rc::new(Conn {
        core: core.clone(),
        outbox,
        player: RefCell::new(Some(player)),
        framing,
        reason: RefCell::new(None),
        closing: Cell::new(false),
        written: Cell::new(0),
        metric,
        counted_drops: Cell::new(0),
    });
    let mut reader = runtime::spawn(read_loop(conn.clone(), stream.clone(), leftover));
    write_loop(&conn, &stream).await;

    if let Some(p) = conn.player.borrow_mut().take() {
        p.leave(&mut core.hub.borrow_mut());
    }
    conn.outbox.close();
    // A FIN after the last bytes; the reader sees the client close its side.
    stream.shutdown_write();
    if timeout(CLOSE_LINGER, &mut reader).await.is_err() {
        stream.shutdown_both();
        let _ = reader.await;
    }
    stream.shutdown_both();
    core.connections
        .set(core.connections.get().saturating_sub(1));
    core.metrics.role(metric, Some(MetricRole::Player), None);
    core.metrics
        .closed(metric, conn.reason.borrow().as_deref().unwrap_or("closed"));
    if core.log_gate.allow() {
        tracing::info!(
            %peer,
            proto,
            reason = conn.reason.borrow().as_deref().unwrap_or("closed"),
            bytes_out = conn.written.get(),
            dropped = conn.outbox.dropped(),
            "closed"
        );
    }
}

/// Reads what the client sends: nothing for HTTP (its close ends the play), control frames
/// for WebSocket (pings are answered, a close or garbage ends it).
async fn read_loop(conn: Rc<Conn>, stream: Rc<Stream>, mut buf: BytesMut) {
    let mut junk = 0;
    loop {
        if conn.is_ws() {
            loop {
                match websocket::read_client_frame(&mut buf) {
                    Ok(Some(ClientFrame::Ping(p))) => {
                        conn.outbox.push_control(websocket::pong_frame(&p));
                    }
                    Ok(Some(ClientFrame::Close)) => {
                        conn.set_reason("peer closed");
                        conn.closing.set(true);
                        conn.outbox.push_control(websocket::close_frame(1000));
                        return;
                    }
                    Ok(Some(ClientFrame::Ignored)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        conn.set_reason(format!("websocket: {e}"));
                        conn.closing.set(true);
                        conn.outbox.push_control(websocket::close_frame(1002));
                        return;
                    }
                }
            }
        } else {
            junk += buf.len();
            buf.clear();
            if junk > MAX_CLIENT_BYTES {
                conn.set_reason("client sent data after its request");
                conn.outbox.close();
                return;
            }
        }
        if buf.capacity() > 64 * 1024 && buf.is_empty() {
            buf = BytesMut::new();
        }
        let (res, b) = stream.read_buf(buf, 4096).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => conn.core.metrics.received(conn.metric, n),
            Ok(_) => {
                conn.set_reason("peer closed");
                conn.outbox.close();
                return;
            }
            Err(e) => {
                conn.set_reason(format!("read: {e}"));
                conn.outbox.close();
                return;
            }
        }
    }
}

/// Per-player FLV output state: whether the stream has started, and the timestamp rebase.
#[derive(Debug, Default)]
struct Timeline {
    started: bool,
    /// Rebase at the next frame (a new publisher).
    rebase: bool,
    /// Added to every timestamp (wrapping).
    offset: u32,
    /// The latest timestamp written.
    last: Option<u32>,
}

impl Timeline {
    /// The timestamp `frame` goes out with.
    fn place(&mut self, ts: u32) -> u32 {
        let back = self
            .last
            .is_some_and(|l| (ts.wrapping_add(self.offset).wrapping_sub(l) as i32) < -JUMP_BACK_MS);
        if self.rebase || back {
            if let Some(l) = self.last {
                self.offset = l.wrapping_sub(ts);
            }
            self.rebase = false;
        }
        let out = ts.wrapping_add(self.offset);
        if self.last.is_none_or(|l| (out.wrapping_sub(l) as i32) > 0) {
            self.last = Some(out);
        }
        out
    }
}

/// How a write batch ends the play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The stream is over: end the body (chunked terminator, WebSocket close).
    Finish,
    /// Nothing more to send (an answer was sent instead of the stream).
    Close,
}

/// Drains the outbox into FLV bytes, one vectored write per batch.
async fn write_loop(conn: &Conn, stream: &Stream) {
    let mut timeline = Timeline::default();
    let mut timer = WriterTimer::new();
    // Kept across batches: once grown, a batch allocates no lists.
    let (mut items, mut bufs, mut run) = (Vec::new(), Vec::new(), Vec::new());
    // The writer's latest reading of the clock: two a batch (woken, written) serve all.
    let mut last = Instant::now();
    loop {
        let deadline = conn.player.borrow().as_ref().and_then(Player::deadline);
        timer.ready_until(&conn.outbox, deadline, last).await;
        let now = Instant::now();
        last = now;
        items.clear();
        bufs.clear();
        conn.outbox.take_into(&mut items);
        let mut end = None;
        let mut oldest = None;
        for (i, item) in items.iter().enumerate() {
            match item {
                Item::Control(b) => {
                    frame_run(&conn.framing, &mut bufs, &mut run);
                    bufs.push(b.clone());
                }
                Item::Frame(f) if timeline.started => {
                    oldest.get_or_insert(f.received);
                    let ts = timeline.place(f.timestamp);
                    run.push(if ts == f.timestamp {
                        f.flv_header()
                    } else {
                        f.flv_header_at(ts)
                    });
                    run.push(f.payload.clone());
                    run.push(f.flv_trailer());
                }
                Item::Frame(_) => {}
                Item::Event(e) => {
                    if let Some(p) = conn.player.borrow_mut().as_mut() {
                        p.on_event(*e, now);
                    }
                    match e {
                        PlayerEvent::Start if !timeline.started => {
                            timeline.started = true;
                            if !conn.is_ws() {
                                let head = response_head(conn.framing == Framing::Close);
                                bufs.push(Bytes::from(head));
                            }
                            run.push(file_header(&items[i + 1..]));
                        }
                        PlayerEvent::Republished => timeline.rebase = true,
                        PlayerEvent::Shutdown => end = Some(End::Finish),
                        _ => {}
                    }
                }
            }
        }
        frame_run(&conn.framing, &mut bufs, &mut run);
        if end.is_none() {
            let ending = conn.player.borrow().as_ref().and_then(|p| p.expired(now));
            match ending {
                Some(Ending::NotFound) if !timeline.started => {
                    conn.core.metrics.play_refused(conn.metric, "not_found");
                    conn.set_reason("play: stream not found");
                    bufs.push(not_found(&conn.framing));
                    end = Some(End::Close);
                }
                Some(_) => {
                    conn.set_reason("play: publisher did not come back");
                    end = Some(End::Finish);
                }
                None => {}
            }
        }
        if end == Some(End::Finish) && timeline.started {
            match conn.framing {
                Framing::Chunked => bufs.push(Bytes::from_static(b"0\r\n\r\n")),
                Framing::WebSocket { .. } => bufs.push(websocket::close_frame(1000)),
                Framing::Close => {}
            }
        } else if end == Some(End::Finish) && conn.is_ws() {
            bufs.push(websocket::close_frame(1001));
        }
        let closed = conn.outbox.is_closed();
        if !bufs.is_empty() {
            let n: usize = bufs.iter().map(Bytes::len).sum();
            conn.written.set(conn.written.get() + n as u64);
            conn.core.metrics.sent(conn.metric, n);
            // A stalled write is given up by the core's watchdog (`slow_player_timeout`).
            match conn.outbox.guard(now, stream.writev_from(&mut bufs)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    conn.set_reason(format!("write: {e}"));
                    return;
                }
                None => {
                    conn.set_reason("slow player: write stalled");
                    return;
                }
            }
            conn.outbox.drained();
            runtime::keep_small(&mut bufs);
            runtime::keep_small(&mut items);
            last = batch_written(
                &conn.core,
                conn.player.borrow_mut().as_mut(),
                oldest,
                conn.outbox.dropped(),
                &conn.counted_drops,
            );
        }
        if end.is_some() || conn.closing.get() {
            return;
        }
        if closed {
            if conn.outbox.dropped() > 0 {
                conn.set_reason("slow player");
            }
            return;
        }
    }
}

/// Frames the FLV bytes gathered so far and moves them to `bufs`.
fn frame_run(framing: &Framing, bufs: &mut Vec<Bytes>, run: &mut Vec<Bytes>) {
    if run.is_empty() {
        return;
    }
    let len: usize = run.iter().map(Bytes::len).sum();
    match framing {
        Framing::Chunked => {
            bufs.push(Bytes::from(format!("{len:x}\r\n")));
            bufs.append(run);
            bufs.push(Bytes::from_static(b"\r\n"));
        }
        Framing::WebSocket { .. } => {
            bufs.push(websocket::binary_header(len));
            bufs.append(run);
        }
        Framing::Close => bufs.append(run),
    }
}

/// The FLV file header, with the audio and video flags of what the start holds (both when
/// it holds neither yet: the publisher has sent nothing).
fn file_header(start: &[Item]) -> Bytes {
    let frames = || {
        start.iter().filter_map(|it| match it {
            Item::Frame(f) => Some(f),
            _ => None,
        })
    };
    let audio = frames().any(|f: &std::sync::Arc<Frame>| f.kind == MediaKind::Audio);
    let video = frames().any(|f| f.kind == MediaKind::Video);
    let (audio, video) = if audio || video {
        (audio, video)
    } else {
        (true, true)
    };
    let mut out = BytesMut::with_capacity(flv::HEADER_LEN);
    flv::encode_header(audio, video, &mut out);
    out.freeze()
}

/// The answer to a play of a stream nobody published within `play_wait`.
fn not_found(framing: &Framing) -> Bytes {
    match framing {
        Framing::WebSocket { .. } => websocket::close_frame(WS_NOT_FOUND),
        _ => {
            let body = "404 stream not found\n";
            Bytes::from(format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_timeline_continues_where_the_last_ended() {
        let mut t = Timeline::default();
        assert_eq!(t.place(1000), 1000);
        assert_eq!(t.place(1033), 1033);
        // Interleaving a little back is kept as it is.
        assert_eq!(t.place(1010), 1010);
        // A republish: the new publisher starts at 0.
        t.rebase = true;
        assert_eq!(t.place(0), 1033);
        assert_eq!(t.place(33), 1066);
        // A clock that jumps back by more than a second is rebased too.
        assert_eq!(t.place(3033), 4066);
        assert_eq!(t.place(40), 4066);
        assert_eq!(t.place(73), 4099);
    }

    #[test]
    fn chunked_and_websocket_framing_go_around_a_whole_batch() {
        let run = || vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")];
        let mut bufs = Vec::new();
        frame_run(&Framing::Chunked, &mut bufs, &mut run());
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(all, b"5\r\nabcde\r\n");
        let mut bufs = Vec::new();
        let ws = Framing::WebSocket { accept: "x".into() };
        frame_run(&ws, &mut bufs, &mut run());
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(all, [0x82, 5, b'a', b'b', b'c', b'd', b'e']);
    }
}
