//! One simulated player: connects, plays, and measures what it receives.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcast::flv;
use ringcast::rtmp::session::MediaKind;
use ringcast::rtmp::session::client::{Client, ClientConfig, Event, Intent};
use tokio::time::{Sleep, timeout_at};

use crate::report::{End, PlayerTally, ThreadStats, bump};
use crate::stamp::{self, Check};
use crate::target::{Scheme, Target};
use ringcast::runtime::{Io, Stream};

/// How long connecting, the handshake and the start of playback may take, and how long the
/// stream may stay silent, before a player gives up.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// A gap without media longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(1);
/// Socket read size with io_uring (a buffer per player, so kept small).
const READ_SIZE: usize = 16 * 1024;
/// Socket read size with epoll: one shared buffer, so a whole keyframe burst is one read.
const SHARED_READ_SIZE: usize = 128 * 1024;

/// What every player on a thread shares.
pub struct Ctx {
    /// The IO backend.
    pub io: Io,
    /// What to play.
    pub target: Target,
    /// When the run ends.
    pub deadline: Instant,
    /// The thread's figures.
    pub stats: Arc<ThreadStats>,
    /// Each player hashes one frame in this many (see `--verify-every`).
    pub verify_every: u64,
}

/// The measurements of one player, fed by either protocol.
pub(crate) struct Sink {
    pub(crate) t0: Instant,
    /// `t0` on CLOCK_REALTIME, ns: frames sent before it were replayed from a cache.
    t0_ns: u64,
    pub(crate) started: bool,
    tally: PlayerTally,
    pub(crate) last_media: Option<Instant>,
    /// A silence over [`STALL`] ended, and whether it was a stall is not known yet: it was
    /// not when the next stamped frame comes from a new publisher session (an HTTP-FLV or
    /// WebSocket-FLV player hears of no StreamEOF between two publishers).
    pending_stall: bool,
    first_key: bool,
    /// The publisher sessions of the frames received: sequence numbers are checked within
    /// one, so a player that plays across a publisher's leave and return does not count the
    /// new session's restart as a gap.
    sessions: Sessions,
    last_seq: Option<u64>,
    stamped: bool,
    /// For unstamped streams (a real FLV published in a loop): the first frame's arrival
    /// and timestamp, against which later frames' lateness is measured.
    clock_base: Option<(Instant, u32)>,
    stats: Arc<ThreadStats>,
    /// When the last read returned, on the monotonic clock and on CLOCK_REALTIME (ns):
    /// every message of one read arrived then, so one clock reading serves them all.
    pub(crate) at: Instant,
    at_ns: u64,
    /// The player's patience: one timer for its whole life (see [`Patience`]).
    patience: Patience,
    /// Hash the frames whose `(seq + id) % verify_every == 0`: players take turns, so
    /// together they cover every frame.
    id: u64,
    verify_every: u64,
}

/// Counts a pending silence (see `Sink::pending_stall`) as a stall, or not.
fn settle_stall(pending: &mut bool, tally: &mut PlayerTally, stats: &ThreadStats, stalled: bool) {
    if std::mem::take(pending) && stalled {
        tally.stalls += 1;
        bump(&stats.live.stalls, 1);
    }
}

/// How many ended publisher sessions a player remembers.
const ENDED_SESSIONS: usize = 8;

/// The publisher sessions a player has seen (the session ids in the stamps).
#[derive(Debug, Default)]
struct Sessions {
    /// The one frames come from now.
    current: Option<u64>,
    /// The last few that gave way to a newer one: a frame of one of them is out of order.
    ended: Vec<u64>,
}

/// Where a frame's publisher session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entered {
    /// The current session (or the first one seen).
    Same,
    /// A new session replaced the current one: its sequence starts afresh.
    Switched,
    /// A session that had already given way to a newer one.
    Stale,
}

impl Sessions {
    fn enter(&mut self, session: u64) -> Entered {
        match self.current {
            Some(c) if c == session => Entered::Same,
            None => {
                self.current = Some(session);
                Entered::Same
            }
            Some(_) if self.ended.contains(&session) => Entered::Stale,
            Some(old) => {
                if self.ended.len() == ENDED_SESSIONS {
                    self.ended.remove(0);
                }
                self.ended.push(old);
                self.current = Some(session);
                Entered::Switched
            }
        }
    }
}

/// A wait bounded by a deadline that only moves later (the player's patience runs from its
/// last frame): one timer for the player's whole life, moved only when it fires before the
/// deadline it stands for now, instead of a timer registered and removed for every read
/// (at 10,000 players, 200,000 reads a second).
pub(crate) struct Patience {
    /// When it first runs out; the timer is made at the first wait (on the runtime).
    first: Instant,
    sleep: Option<std::pin::Pin<Box<Sleep>>>,
}

impl Patience {
    /// A patience that first runs out at `at`.
    pub(crate) fn new(at: Instant) -> Patience {
        Patience {
            first: at,
            sleep: None,
        }
    }

    /// Runs `f` until it completes (`Some`), or until `deadline()`, asked each time the
    /// timer fires, has passed (`None`). `deadline()` must never move earlier than where the
    /// timer stands.
    pub(crate) async fn within<F: Future>(
        &mut self,
        f: F,
        deadline: impl Fn() -> Instant,
    ) -> Option<F::Output> {
        let first = self.first;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first.into())));
        tokio::pin!(f);
        loop {
            tokio::select! {
                biased;
                out = &mut f => return Some(out),
                () = sleep.as_mut() => {
                    let d = deadline();
                    if Instant::now() >= d {
                        return None;
                    }
                    sleep.as_mut().reset(d.into());
                }
            }
        }
    }
}

impl Sink {
    /// A new player's measurements, counted in `ctx.stats`.
    pub(crate) fn new(ctx: &Ctx, id: u64) -> Sink {
        let t0 = Instant::now();
        let t0_ns = stamp::realtime_ns();
        Sink {
            t0,
            t0_ns,
            at: t0,
            at_ns: t0_ns,
            patience: Patience::new(read_deadline(ctx, false, t0, None, t0)),
            started: false,
            tally: PlayerTally::default(),
            last_media: None,
            pending_stall: false,
            first_key: false,
            sessions: Sessions::default(),
            last_seq: None,
            stamped: false,
            clock_base: None,
            stats: ctx.stats.clone(),
            id,
            verify_every: ctx.verify_every.max(1),
        }
    }

    pub(crate) fn connected(&mut self) {
        let us = self.t0.elapsed().as_micros() as u64;
        if let Ok(mut h) = self.stats.hist.lock() {
            h.connect.saturating_record(us.max(1));
        }
    }

    pub(crate) fn playing(&mut self) {
        if !self.started {
            self.started = true;
            bump(&self.stats.live.connected, 1);
        }
    }

    /// Video frames received so far.
    pub(crate) fn frames(&self) -> u64 {
        self.tally.frames
    }

    /// The server said the stream ended (its publisher left): the silence until a new
    /// publisher's first frame is no stall.
    pub(crate) fn stream_ended(&mut self) {
        self.last_media = None;
    }

    /// A read brought `n` bytes, now.
    pub(crate) fn bytes(&mut self, n: usize) {
        self.at = Instant::now();
        self.at_ns = stamp::realtime_ns();
        self.tally.bytes += n as u64;
        bump(&self.stats.live.bytes, n as u64);
    }

    pub(crate) fn media(&mut self, kind: MediaKind, timestamp: u32, payload: &Bytes) {
        let now = self.at;
        if let Some(last) = self.last_media {
            if now.duration_since(last) > STALL {
                self.pending_stall = true;
            }
        }
        self.last_media = Some(now);
        if kind != MediaKind::Video {
            return;
        }
        if payload.is_empty() || flv::is_video_sequence_header(payload) {
            return;
        }
        let key = flv::is_video_keyframe(payload);
        self.tally.frames += 1;
        bump(&self.stats.live.frames, 1);
        let Ok(mut h) = self.stats.hist.lock() else {
            return;
        };
        if key && !self.first_key {
            self.first_key = true;
            h.ttff
                .saturating_record((now.duration_since(self.t0).as_micros() as u64).max(1));
        }
        let mut errors = 0;
        let (id, every) = (self.id, self.verify_every);
        let check = stamp::check_sampled(payload, |seq| seq.wrapping_add(id) % every == 0);
        match check {
            Check::Intact(s) | Check::Corrupt(s) => {
                self.stamped = true;
                if matches!(check, Check::Corrupt(_)) {
                    self.tally.corrupt += 1;
                    errors += 1;
                } else if s.send_ns >= self.t0_ns {
                    // Live frames only: a GOP cache replays frames sent before the player
                    // connected, and their age is the cache's, not the delivery latency.
                    let lat = self.at_ns.saturating_sub(s.send_ns) / 1000;
                    h.latency.saturating_record(lat.max(1));
                }
                match self.sessions.enter(s.session) {
                    Entered::Same => {
                        settle_stall(&mut self.pending_stall, &mut self.tally, &self.stats, true)
                    }
                    Entered::Switched => {
                        // The silence was the wait for a new publisher, not a stall.
                        settle_stall(&mut self.pending_stall, &mut self.tally, &self.stats, false);
                        self.tally.switches += 1;
                        self.last_seq = None;
                    }
                    Entered::Stale => {
                        // A frame of an earlier publisher session after a newer one began.
                        self.tally.out_of_order += 1;
                        bump(&self.stats.live.errors, errors + 1);
                        return;
                    }
                }
                match self.last_seq {
                    Some(last) if s.seq == last.wrapping_add(1) => {}
                    Some(last) if s.seq > last => {
                        self.tally.gaps += s.seq - last - 1;
                        errors += s.seq - last - 1;
                    }
                    Some(_) => {
                        self.tally.out_of_order += 1;
                        errors += 1;
                    }
                    None => {}
                }
                self.last_seq = Some(self.last_seq.map_or(s.seq, |l| l.max(s.seq)));
            }
            Check::Unstamped if self.stamped => {
                // A synthetic stream's frame without its stamp: mangled.
                self.tally.corrupt += 1;
                errors += 1;
            }
            Check::Unstamped => {
                settle_stall(&mut self.pending_stall, &mut self.tally, &self.stats, true);
                // A real encode: lateness against the stream's own clock.
                let (t, ts) = *self.clock_base.get_or_insert((now, timestamp));
                let media_ms = u64::from(timestamp.wrapping_sub(ts));
                let wall_ms = now.duration_since(t).as_millis() as u64;
                h.latency
                    .saturating_record(wall_ms.saturating_sub(media_ms).max(1) * 1000);
            }
        }
        if errors > 0 {
            bump(&self.stats.live.errors, errors);
        }
    }

    /// Runs `f` within the player's patience and the run ([`read_deadline`]).
    pub(crate) async fn wait<F: Future>(&mut self, ctx: &Ctx, f: F) -> Option<F::Output> {
        let (started, t0, last) = (self.started, self.t0, self.last_media);
        // `started` without media yet: patience runs from this wait's start.
        let from = Instant::now();
        self.patience
            .within(f, || read_deadline(ctx, started, t0, last, from))
            .await
    }

    fn finish(mut self, end: End) -> (bool, End, PlayerTally) {
        settle_stall(&mut self.pending_stall, &mut self.tally, &self.stats, true);
        if let Some(last) = self.last_media {
            if self.started && last.elapsed() > STALL {
                self.tally.stalls += 1;
                bump(&self.stats.live.stalls, 1);
            }
        }
        if !self.started || end != End::Clean {
            bump(&self.stats.live.failed, 1);
        }
        (self.started, end, self.tally)
    }
}

pub(crate) fn io_end(e: &std::io::Error) -> End {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => End::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => End::Reset,
        K::TimedOut => End::TimedOut,
        _ => End::Error,
    }
}

/// Runs player `id` until the end of the run; returns (reached playback, end, tally).
pub async fn play(ctx: Rc<Ctx>, id: u64) -> (bool, End, PlayerTally) {
    let mut sink = Sink::new(&ctx, id);
    let end = match ctx.target.scheme {
        Scheme::Rtmp => play_rtmp(&ctx, id, &mut sink).await,
        Scheme::Http | Scheme::Ws => crate::http::play_http(&ctx, &mut sink).await,
    };
    sink.finish(end)
}

/// The deadline for the next read: the end of the run, or the end of the player's patience
/// (from its last frame; from `now` once playing with no frame yet).
pub fn read_deadline(
    ctx: &Ctx,
    started: bool,
    t0: Instant,
    last: Option<Instant>,
    now: Instant,
) -> Instant {
    let patience = match (started, last) {
        (_, Some(l)) => l + PATIENCE,
        (false, None) => t0 + PATIENCE,
        (true, None) => now + PATIENCE,
    };
    patience.min(ctx.deadline)
}

/// Connects to the target within the player's patience.
pub(crate) async fn connect(ctx: &Ctx, sink: &Sink) -> Result<Stream, End> {
    let connect = Stream::connect(ctx.io, ctx.target.addr);
    match timeout_at((sink.t0 + PATIENCE).min(ctx.deadline).into(), connect).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(io_end(&e)),
        Err(_) => Err(End::TimedOut),
    }
}

/// Reads once (at most `want` bytes, appended to `buf` in place), within the run and the
/// player's patience; counts the bytes. `Err` is how the player ends: the run is over, the
/// server closed, or it went silent too long.
pub(crate) async fn read_some(
    ctx: &Ctx,
    sink: &mut Sink,
    stream: &Stream,
    buf: BytesMut,
    want: usize,
) -> Result<BytesMut, End> {
    let Some((res, buf)) = sink.wait(ctx, stream.read_buf(buf, want)).await else {
        return Err(if Instant::now() >= ctx.deadline && sink.started {
            End::Clean
        } else {
            End::TimedOut
        });
    };
    read_result(ctx, sink, res).map(|_| buf)
}

/// What a read's result means for the player: bytes (counted), or how it ends.
fn read_result(ctx: &Ctx, sink: &mut Sink, res: std::io::Result<usize>) -> Result<usize, End> {
    match res {
        Ok(0) if Instant::now() >= ctx.deadline => Err(End::Clean),
        Ok(0) => Err(End::Reset),
        Ok(n) => {
            sink.bytes(n);
            Ok(n)
        }
        Err(e) => Err(io_end(&e)),
    }
}

/// Waits until the stream is readable (epoll), within the run and the player's patience.
pub(crate) async fn readable(ctx: &Ctx, sink: &mut Sink, stream: &Stream) -> Result<(), End> {
    match sink.wait(ctx, stream.readable()).await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(io_end(&e)),
        None if Instant::now() >= ctx.deadline && sink.started => Err(End::Clean),
        None => Err(End::TimedOut),
    }
}

thread_local! {
    /// The epoll players' shared receive buffer: every read lands in the same few cache-hot
    /// kilobytes and is parsed at once; only a partial message is copied out, to the
    /// player's own buffer. (io_uring needs a buffer per pending read instead, and by the
    /// time a batch of completions is parsed the kernel's copies have left the cache.)
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// One read of an epoll player: into the shared buffer when nothing is pending, else
/// after the pending bytes; then handed to `parse`, which consumes what it can. Nothing to
/// read (a spurious wake-up) is no error.
pub(crate) fn read_shared<T: Default>(
    ctx: &Ctx,
    sink: &mut Sink,
    stream: &Stream,
    pending: &mut BytesMut,
    mut parse: impl FnMut(&mut Sink, &mut BytesMut) -> Result<T, End>,
) -> Result<T, End> {
    let mut read_into = |buf: &mut BytesMut, sink: &mut Sink| -> Result<T, End> {
        match stream.try_read_buf(buf, SHARED_READ_SIZE) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(T::default()),
            res => read_result(ctx, sink, res)?,
        };
        parse(sink, buf)
    };
    if !pending.is_empty() {
        return read_into(pending, sink);
    }
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        scratch.clear();
        let got = read_into(&mut scratch, sink);
        // A message cut by the read waits in the player's own buffer.
        pending.extend_from_slice(&scratch);
        scratch.clear();
        got
    })
}

/// Hands received bytes to the player's RTMP client and what it decodes to the sink.
pub(crate) fn parse(client: &mut Client, buf: &mut BytesMut, sink: &mut Sink) -> Result<(), End> {
    let now_ms = sink.at.duration_since(sink.t0).as_millis() as u64;
    if client.handle_input(buf, now_ms).is_err() {
        return Err(End::Error);
    }
    while let Some(ev) = client.poll_event() {
        match ev {
            Event::HandshakeDone => sink.connected(),
            Event::Playing { .. } => sink.playing(),
            Event::Rejected { .. } => return Err(End::Refused),
            Event::Media(m) => sink.media(m.kind, m.timestamp, &m.payload),
            Event::StreamEof => sink.stream_ended(),
            _ => {}
        }
    }
    Ok(())
}

async fn play_rtmp(ctx: &Ctx, id: u64, sink: &mut Sink) -> End {
    let stream = match connect(ctx, sink).await {
        Ok(s) => s,
        Err(end) => return end,
    };
    let cfg = ClientConfig::new(
        &ctx.target.app,
        &ctx.target.tc_url,
        Intent::Play(ctx.target.stream.clone()),
    );
    let mut client = Client::new(cfg, id.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0);
    client.start();
    // io_uring: the player's own buffer, read in place. epoll: the shared one.
    let mut inbuf = BytesMut::with_capacity(if ctx.io == Io::Uring { READ_SIZE } else { 0 });
    loop {
        if client.has_output() {
            if let Err(e) = stream.write_all(client.take_output().freeze()).await {
                return io_end(&e);
            }
        }
        let step = match ctx.io {
            Io::Uring => match read_some(ctx, sink, &stream, inbuf, READ_SIZE).await {
                Ok(b) => {
                    inbuf = b;
                    parse(&mut client, &mut inbuf, sink)
                }
                Err(end) => return end,
            },
            Io::Epoll => match readable(ctx, sink, &stream).await {
                Ok(()) => read_shared(ctx, sink, &stream, &mut inbuf, |sink, buf| {
                    parse(&mut client, buf, sink)
                }),
                Err(end) => Err(end),
            },
        };
        if let Err(end) = step {
            return end;
        }
        if sink.at >= ctx.deadline {
            return if sink.started {
                End::Clean
            } else {
                End::TimedOut
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Stamp;

    fn sink() -> Sink {
        let ctx = Ctx {
            io: Io::Epoll,
            target: Target::parse("rtmp://127.0.0.1:1/live/x").expect("target"),
            deadline: Instant::now(),
            stats: Arc::default(),
            verify_every: 1,
        };
        Sink::new(&ctx, 0)
    }

    fn frame(session: u64, seq: u64) -> Bytes {
        let stamp = Stamp {
            session,
            seq,
            send_ns: stamp::realtime_ns(),
        };
        stamp::frame(seq % 30 == 0, stamp, 200)
    }

    fn errors(s: &Sink) -> u64 {
        s.tally.gaps + s.tally.corrupt + s.tally.out_of_order
    }

    #[test]
    fn a_new_publisher_session_restarts_the_sequence_without_an_error() {
        let mut s = sink();
        // Joined mid-stream (a GOP cache replay), then the publisher left and another
        // started from 0.
        for seq in 60..70 {
            s.media(MediaKind::Video, 0, &frame(1, seq));
        }
        s.stream_ended();
        for seq in 0..10 {
            s.media(MediaKind::Video, 0, &frame(2, seq));
        }
        assert_eq!(errors(&s), 0, "{:?}", s.tally);
        assert_eq!(
            (s.tally.switches, s.tally.frames, s.tally.stalls),
            (1, 20, 0)
        );
        // Within a session, gaps and reordering still count.
        s.media(MediaKind::Video, 0, &frame(2, 11));
        assert_eq!(s.tally.gaps, 1);
        s.media(MediaKind::Video, 0, &frame(2, 5));
        assert_eq!(s.tally.out_of_order, 1);
        // A frame of the session that gave way is out of order, and does not switch back.
        s.media(MediaKind::Video, 0, &frame(1, 70));
        assert_eq!((s.tally.out_of_order, s.tally.switches), (2, 1));
        s.media(MediaKind::Video, 0, &frame(2, 12));
        assert_eq!(errors(&s), 3, "{:?}", s.tally);
    }

    #[test]
    fn a_silence_before_a_new_publisher_is_no_stall_and_one_within_a_session_is() {
        let mut s = sink();
        let past = || Instant::now() - 2 * STALL;
        s.media(MediaKind::Video, 0, &frame(1, 0));
        // No StreamEOF (HTTP-FLV): a silence, then a new publisher's sequence header and
        // first frame.
        s.last_media = Some(past());
        s.media(
            MediaKind::Video,
            0,
            &Bytes::from_static(&[0x17, 0, 0, 0, 0]),
        );
        s.media(MediaKind::Video, 0, &frame(2, 0));
        assert_eq!((s.tally.stalls, s.tally.switches), (0, 1));
        // A silence within one publisher's session is a stall.
        s.last_media = Some(past());
        s.media(MediaKind::Video, 0, &frame(2, 1));
        assert_eq!(s.tally.stalls, 1);
    }

    fn on_runtime<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// The timer fires at the first deadline; a deadline that moved later keeps the wait
    /// going, and what is awaited still completes.
    #[test]
    fn patience_follows_a_deadline_that_moved_later() {
        on_runtime(async {
            let t0 = Instant::now();
            let mut p = Patience::new(t0 + Duration::from_millis(10));
            let work = tokio::time::sleep(Duration::from_millis(40));
            let got = p.within(work, || t0 + Duration::from_secs(5)).await;
            assert!(got.is_some(), "gave up at the first deadline");
            assert!(t0.elapsed() >= Duration::from_millis(40));
        });
    }

    /// Once the deadline it stands for has passed, the wait ends without the result, and a
    /// later wait on the same patience ends at once.
    #[test]
    fn patience_runs_out_at_its_deadline() {
        on_runtime(async {
            let t0 = Instant::now();
            let end = t0 + Duration::from_millis(30);
            let mut p = Patience::new(t0 + Duration::from_millis(10));
            let never = std::future::pending::<()>();
            assert!(p.within(never, || end).await.is_none());
            let waited = t0.elapsed();
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
            assert!(waited < Duration::from_secs(2), "{waited:?}");
            let again = Instant::now();
            assert!(
                p.within(std::future::pending::<()>(), || end)
                    .await
                    .is_none()
            );
            assert!(again.elapsed() < Duration::from_millis(500));
        });
    }
}
