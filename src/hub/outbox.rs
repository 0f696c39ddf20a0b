//! A connection's send queue: control bytes, shared frames and player events, bounded in
//! bytes, with the slow-player policy.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Frame;
use super::signal::Signal;
use crate::rtmp::session::MediaKind;

/// Something the connection's writer must act on in order with the bytes around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerEvent {
    /// The stream is live: accept the play (`NetStream.Play.Start` ...) before the frames
    /// that follow.
    Start,
    /// The publisher left: StreamEOF, `NetStream.Play.UnpublishNotify`; wait for a new one.
    Unpublished,
    /// A publisher came back: StreamBegin, `NetStream.Play.PublishNotify`.
    Republished,
    /// The server is shutting down: tell the player the stream ended, flush, close.
    Shutdown,
    /// The play asked for no more than it has been sent (`play` with a duration of 0):
    /// `NetStream.Play.Stop`, and the play ends (the connection stays).
    Complete,
    /// Nobody has the stream: no publisher here and no origin has it (an edge's pull
    /// found none). A waiting player gives up now instead of at `play_wait`.
    NotFound,
}

/// One queued item.
#[derive(Debug, Clone)]
pub enum Item {
    /// Bytes from the connection's own session (commands, control messages).
    Control(Bytes),
    /// A shared frame.
    Frame(Arc<Frame>),
    /// An event for the writer.
    Event(PlayerEvent),
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Item>,
    /// What the queued frames cost ([`Frame::cost`]).
    bytes: usize,
    /// Control bytes queued.
    control_bytes: usize,
    /// Control bytes the writer took and has not finished writing.
    control_in_flight: usize,
    /// Dropping frames until the next keyframe because the queue overflowed.
    skipping: bool,
    /// Video waits for a keyframe (a start without GOP cache, a republish, receiveVideo
    /// or unpause); audio and data go on meanwhile.
    video_await_key: bool,
    /// The player paused (`pause`/`pauseRaw`): nothing is queued until it resumes.
    paused: bool,
    /// The player asked for no audio (`receiveAudio false`).
    audio_off: bool,
    /// The player asked for no video (`receiveVideo false`).
    video_off: bool,
    /// A video frame (or sequence header) has been queued since the start: the stream has
    /// video, so only a video keyframe is a point to resume from after a skip.
    has_video: bool,
    /// The timestamp of the last media frame queued, so a resume sends nothing twice.
    last_ts: Option<u32>,
    /// The play ends once it has its start (`play` with a duration of 0).
    once: bool,
    /// Since when the player has been behind (queue overflowed and not yet drained).
    behind_since: Option<Instant>,
    dropped: u64,
    closed: bool,
    started: bool,
    /// Something asks the writer to run now (control bytes, an event, a config frame, a
    /// coalescing tick, a close).
    wake: bool,
    /// The outbox is on the hub's list for the next coalescing tick.
    scheduled: bool,
}

impl Inner {
    /// Removes the queued frames that `drop` selects; returns how many.
    fn drop_frames(&mut self, drop: impl Fn(&Frame) -> bool) -> u64 {
        let before = self.items.len();
        self.items
            .retain(|it| !matches!(it, Item::Frame(g) if drop(g)));
        self.bytes = self
            .items
            .iter()
            .map(|it| match it {
                Item::Frame(g) => g.cost(),
                _ => 0,
            })
            .sum();
        (before - self.items.len()) as u64
    }
}

/// Who an outbox is for, as reports show it: a label the driver sets, not a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The protocol (`rtmp`, `http_flv`, `ws_flv`).
    pub proto: &'static str,
    /// The peer's address, as text.
    pub peer: String,
}

/// A writer's wait for its outbox or its own deadline (a ping, a player's wait), with one
/// timer kept across waits and reset only when the deadline moves, instead of a timer made
/// and dropped for every batch.
#[derive(Debug)]
pub struct WriterTimer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    at: Option<Instant>,
}

impl Default for WriterTimer {
    fn default() -> Self {
        WriterTimer::new()
    }
}

impl WriterTimer {
    /// A timer set for nothing yet.
    pub fn new() -> WriterTimer {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        WriterTimer {
            sleep: Box::pin(tokio::time::sleep_until(far.into())),
            at: None,
        }
    }

    /// Waits until `outbox` is ready or `deadline` passes. A deadline further away than
    /// [`SCAN_HORIZON`] (a ping due in 30 s) arms no timer: the core's once-a-second scan
    /// ([`Outbox::wake_if_due`]) wakes the writer once it comes within the horizon, and the
    /// writer then waits on this timer for the rest. A writer waits tens of times a second;
    /// polling a timer on each wait was a measurable share of a core.
    /// `now` is a recent reading of the clock (the writer's last), not one taken here.
    pub async fn ready_until(&mut self, outbox: &Outbox, deadline: Option<Instant>, now: Instant) {
        let near = deadline.filter(|d| d.saturating_duration_since(now) <= SCAN_HORIZON);
        outbox
            .wake_at
            .set(if near.is_none() { deadline } else { None });
        let Some(d) = near else {
            return outbox.ready().await;
        };
        if self.at != Some(d) {
            self.sleep.as_mut().reset(d.into());
            self.at = Some(d);
        }
        tokio::select! {
            () = outbox.ready() => {}
            () = self.sleep.as_mut() => {}
        }
    }
}

/// How far ahead the core's scan of its outboxes looks for writers' deadlines: it runs once a
/// second, so a deadline first seen within this horizon is still ahead of it, and the woken
/// writer waits for it on its own timer.
pub const SCAN_HORIZON: Duration = Duration::from_secs(2);

/// The send queue of one connection. The hub pushes into it; the connection's writer task
/// drains it with one vectored write per batch.
#[derive(Debug)]
pub struct Outbox {
    /// Who it is for (reports only).
    tag: RefCell<Option<Tag>>,
    /// The chain of relay nodes the connection came through (empty: not relayed).
    via: RefCell<String>,
    inner: RefCell<Inner>,
    ready: Signal,
    closed: Signal,
    /// Signalled when the writer finished a write (control bytes left the queue).
    written: Signal,
    /// Since when the writer's current write has been in flight (see [`Outbox::guard`]).
    write_since: Cell<Option<Instant>>,
    /// The core's watchdog found the current write stalled.
    stalled: Cell<bool>,
    /// Woken when [`Outbox::stall`] gives up on the write in flight.
    stall: Signal,
    max_bytes: usize,
    slow_timeout: Duration,
    start_at_key: bool,
    coalesce: Cell<bool>,
    /// Queued frame bytes that wake a coalescing writer before its tick.
    batch_bytes: Cell<usize>,
    /// Which slot of the hub's coalescing wheel wakes this writer.
    phase: Cell<usize>,
    /// A deadline of the writer's beyond [`SCAN_HORIZON`]: the core's scan wakes it.
    wake_at: Cell<Option<Instant>>,
}

impl Outbox {
    /// A queue holding at most `max_bytes` of frames; a player behind for longer than
    /// `slow_timeout` is closed. With `start_at_key`, playback starts at the next keyframe
    /// after the start (no GOP cache).
    pub fn new(max_bytes: usize, slow_timeout: Duration, start_at_key: bool) -> Rc<Outbox> {
        Outbox::with_coalescing(max_bytes, slow_timeout, start_at_key, false)
    }

    /// Like [`Outbox::new`]; with `coalesce`, live frames do not wake the writer: the hub's
    /// coalescing tick does ([`Outbox::schedule`]), so one write carries every frame of the
    /// tick. Control bytes, events and metadata/sequence headers still wake it at once.
    pub fn with_coalescing(
        max_bytes: usize,
        slow_timeout: Duration,
        start_at_key: bool,
        coalesce: bool,
    ) -> Rc<Outbox> {
        Rc::new(Outbox {
            tag: RefCell::new(None),
            via: RefCell::new(String::new()),
            inner: RefCell::new(Inner::default()),
            ready: Signal::new(),
            closed: Signal::new(),
            written: Signal::new(),
            write_since: Cell::new(None),
            stalled: Cell::new(false),
            stall: Signal::new(),
            max_bytes,
            slow_timeout,
            start_at_key,
            coalesce: Cell::new(coalesce),
            batch_bytes: Cell::new(usize::MAX),
            phase: Cell::new(0),
            wake_at: Cell::new(None),
        })
    }

    /// With coalescing, wakes the writer before the tick once this many bytes of frames are
    /// queued (a write that size is already as cheap per byte as writes get), so a
    /// high-bitrate stream is not held for the whole budget. `usize::MAX`: never.
    pub fn set_batch_bytes(&self, n: usize) {
        self.batch_bytes.set(n.max(1));
    }

    /// Sets the coalescing phase (the hub gives each player the next one in turn).
    pub fn set_phase(&self, phase: usize) {
        self.phase.set(phase);
    }

    /// Stops (or starts) holding live frames for the coalescing tick: a relay connection
    /// carries a stream to a whole node, and waiting there only adds latency to every
    /// player behind it.
    pub fn set_coalescing(&self, coalesce: bool) {
        self.coalesce.set(coalesce);
    }

    /// The coalescing phase.
    pub fn phase(&self) -> usize {
        self.phase.get()
    }

    fn notify(&self, mut i: std::cell::RefMut<'_, Inner>) {
        i.wake = true;
        drop(i);
        self.ready.notify();
    }

    /// Puts the outbox on a coalescing tick list once: true if the caller should keep it
    /// (it was not scheduled yet and holds frames waiting for a tick).
    pub fn schedule(&self) -> bool {
        let mut i = self.inner.borrow_mut();
        if i.scheduled || i.wake || i.items.is_empty() {
            return false;
        }
        i.scheduled = true;
        true
    }

    /// Queues bytes from the connection's session; never dropped.
    pub fn push_control(&self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        let mut i = self.inner.borrow_mut();
        if i.closed {
            return;
        }
        i.control_bytes += b.len();
        i.items.push_back(Item::Control(b));
        self.notify(i);
    }

    /// Control bytes queued or being written: what the connection's own session produced
    /// that the peer has not taken yet. A reader stops reading while this is over a bound
    /// (back-pressure: a peer that does not read cannot make the server queue without end).
    pub fn unsent_control(&self) -> usize {
        let i = self.inner.borrow();
        i.control_bytes + i.control_in_flight
    }

    /// Waits until [`Outbox::unsent_control`] is at most `limit`, or the outbox is closed.
    pub async fn control_below(&self, limit: usize) {
        loop {
            if self.is_closed() || self.unsent_control() <= limit {
                return;
            }
            self.written.notified().await;
        }
    }

    /// Queues an event for the writer.
    pub fn push_event(&self, e: PlayerEvent) {
        let mut i = self.inner.borrow_mut();
        if i.closed {
            return;
        }
        if e == PlayerEvent::Start {
            i.started = true;
            i.video_await_key = self.start_at_key;
        }
        if e == PlayerEvent::Republished {
            // The new publisher's stream starts at its first keyframe, and may have no video.
            i.video_await_key = true;
            i.has_video = false;
        }
        i.items.push_back(Item::Event(e));
        self.notify(i);
    }

    /// Queues the frames a joining player starts from (the cache snapshot); a play that
    /// wanted no more ([`Outbox::complete_after_start`]) then ends with
    /// [`PlayerEvent::Complete`].
    pub fn start_from(&self, frames: &[Arc<Frame>], now: Instant) {
        for f in frames {
            self.push_frame(f, now);
        }
        let once = std::mem::take(&mut self.inner.borrow_mut().once);
        if once {
            self.push_event(PlayerEvent::Complete);
            // Nothing live after the end marker.
            self.inner.borrow_mut().started = false;
        }
    }

    /// Whether the next play ends right after its start: the stream's current state, then
    /// `NetStream.Play.Stop` (`play` with a duration of 0).
    pub fn complete_after_start(&self, once: bool) {
        self.inner.borrow_mut().once = once;
    }

    /// Queues a live frame, applying the player's own choices (paused, no audio, no video)
    /// and the slow-player policy: when the queue would exceed its cap, the frames queued
    /// (but not metadata or sequence headers) are dropped and so is every frame until the
    /// next point a player can resume from (a video keyframe; any audio frame of a stream
    /// without video); a player still behind after the timeout is closed.
    pub fn push_frame(&self, f: &Arc<Frame>, now: Instant) {
        let mut i = self.inner.borrow_mut();
        if i.closed || !i.started || i.paused {
            return;
        }
        let len = f.cost();
        if f.kind == MediaKind::Video {
            i.has_video = true;
        }
        if !f.is_config() {
            match f.kind {
                MediaKind::Audio if i.audio_off => return,
                MediaKind::Video if i.video_off => return,
                _ => {}
            }
            if f.kind == MediaKind::Video && i.video_await_key {
                if !f.keyframe {
                    return;
                }
                i.video_await_key = false;
            }
            let sync = f.keyframe || (f.kind == MediaKind::Audio && !i.has_video);
            if i.skipping {
                if !sync {
                    i.dropped += 1;
                    drop(i);
                    self.check_slow(now);
                    return;
                }
                i.skipping = false;
            }
            if i.bytes + len > self.max_bytes {
                let removed = i.drop_frames(|g| !g.is_config());
                i.dropped += removed + 1;
                i.behind_since.get_or_insert(now);
                if !sync {
                    i.skipping = true;
                    drop(i);
                    self.check_slow(now);
                    return;
                }
                // A point to resume from: start over from it.
                i.dropped -= 1;
            }
            i.last_ts = Some(f.timestamp);
        }
        i.bytes += len;
        i.items.push_back(Item::Frame(f.clone()));
        if self.coalesce.get() && !f.is_config() && i.bytes < self.batch_bytes.get() {
            return;
        }
        self.notify(i);
    }

    /// The play ended (deleteStream, closeStream, a new play on the connection): forgets
    /// the frames and events queued for it and every per-play choice, so a later play
    /// starts afresh. Control bytes stay queued.
    pub fn stop_play(&self) {
        let mut i = self.inner.borrow_mut();
        i.items.retain(|it| matches!(it, Item::Control(_)));
        // What stays is control bytes only: `control_bytes` is unchanged.
        i.bytes = 0;
        i.started = false;
        i.skipping = false;
        i.video_await_key = false;
        i.paused = false;
        i.audio_off = false;
        i.video_off = false;
        i.has_video = false;
        i.last_ts = None;
        i.once = false;
        i.behind_since = None;
    }

    /// Pauses the player: the frames queued are dropped and nothing is queued until
    /// [`Outbox::resume`].
    pub fn pause(&self) {
        let mut i = self.inner.borrow_mut();
        i.paused = true;
        i.skipping = false;
        i.behind_since = None;
        i.drop_frames(|_| true);
    }

    /// Resumes a paused player from `frames` (the stream's cache): metadata and sequence
    /// headers, then what is newer than what the player already had, video from a keyframe.
    pub fn resume(&self, frames: &[Arc<Frame>], now: Instant) {
        let last = {
            let mut i = self.inner.borrow_mut();
            if !i.paused {
                return;
            }
            i.paused = false;
            i.video_await_key = true;
            i.last_ts
        };
        let newer = |ts: u32| last.is_none_or(|l| (ts.wrapping_sub(l) as i32) > 0);
        for f in frames {
            if f.is_config() || newer(f.timestamp) {
                self.push_frame(f, now);
            }
        }
    }

    /// `receiveAudio` / `receiveVideo`: stops or resumes one kind of media for this player;
    /// video resumes at a keyframe. Metadata and sequence headers always pass.
    pub fn set_receive(&self, kind: MediaKind, enabled: bool) {
        let mut i = self.inner.borrow_mut();
        match kind {
            MediaKind::Audio => i.audio_off = !enabled,
            MediaKind::Video => {
                if enabled && i.video_off {
                    i.video_await_key = true;
                }
                i.video_off = !enabled;
            }
            MediaKind::Data => {}
        }
    }

    fn check_slow(&self, now: Instant) {
        let behind = self.inner.borrow().behind_since;
        if behind.is_some_and(|t| now.duration_since(t) > self.slow_timeout) {
            self.close();
        }
    }

    /// Wakes the writer without queueing anything (it re-reads its timers).
    pub fn wake(&self) {
        let mut i = self.inner.borrow_mut();
        i.scheduled = false;
        self.notify(i);
    }

    /// Takes everything queued, in order.
    pub fn take(&self) -> Vec<Item> {
        let mut v = Vec::new();
        self.take_into(&mut v);
        v
    }

    /// Takes everything queued, in order, appending it to `out` (a writer keeps one `out`
    /// for all its batches, so taking allocates nothing once it has grown).
    pub fn take_into(&self, out: &mut Vec<Item>) {
        let mut i = self.inner.borrow_mut();
        i.bytes = 0;
        i.control_in_flight += std::mem::take(&mut i.control_bytes);
        out.extend(i.items.drain(..));
    }

    /// The writer finished writing everything it took: the player has caught up, and the
    /// control bytes it took are gone.
    pub fn drained(&self) {
        let mut i = self.inner.borrow_mut();
        i.control_in_flight = 0;
        if i.items.is_empty() && !i.skipping {
            i.behind_since = None;
        }
        drop(i);
        self.written.notify();
    }

    /// Waits until the writer has something to do now: bytes or events queued, frames (at
    /// once, or at the coalescing tick), a close, or [`Outbox::wake`].
    pub async fn ready(&self) {
        loop {
            {
                let mut i = self.inner.borrow_mut();
                if i.closed || i.wake {
                    i.wake = false;
                    return;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Runs the writer's `write`, unless the core's watchdog ([`Outbox::stall`]) gives up on
    /// it first: `None` then. One check a second per core replaces a timer per write (a
    /// timer armed and dropped for each of thousands of writes a second is a measurable
    /// share of a core).
    /// `since` is when the write starts (the writer's reading of the clock).
    pub async fn guard<T>(&self, since: Instant, write: impl Future<Output = T>) -> Option<T> {
        self.write_since.set(Some(since));
        let stalled = async {
            loop {
                if self.stalled.get() {
                    return;
                }
                self.stall.notified().await;
            }
        };
        let r = tokio::select! {
            r = write => Some(r),
            () = stalled => None,
        };
        self.write_since.set(None);
        r
    }

    /// The watchdog's check: when the write in flight started more than `limit` before
    /// `now`, gives up on it ([`Outbox::guard`] returns `None`) and says so.
    pub fn stall_if_older(&self, now: Instant, limit: Duration) -> bool {
        match self.write_since.get() {
            Some(t) if now.saturating_duration_since(t) >= limit && !self.stalled.get() => {
                self.stalled.set(true);
                self.stall.notify();
                true
            }
            _ => false,
        }
    }

    /// [`Outbox::ready`], or `deadline` (a writer's timer), whichever comes first.
    pub async fn ready_until(&self, deadline: Option<Instant>) {
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = self.ready() => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                }
            }
            None => self.ready().await,
        }
    }

    /// The core's scan: wakes the writer when its far deadline ([`WriterTimer::ready_until`])
    /// is within `horizon`; says whether it did. Frames waiting for a coalescing tick may go
    /// with that write; the tick still comes.
    pub fn wake_if_due(&self, horizon: Instant) -> bool {
        match self.wake_at.get() {
            Some(at) if at <= horizon => {
                self.wake_at.set(None);
                let i = self.inner.borrow_mut();
                self.notify(i);
                true
            }
            _ => false,
        }
    }

    /// Whether [`Outbox::ready`] would return at once (the writer has been woken).
    pub fn is_woken(&self) -> bool {
        let i = self.inner.borrow();
        i.closed || i.wake
    }

    /// Waits until the outbox is closed.
    pub async fn closed(&self) {
        loop {
            if self.is_closed() {
                return;
            }
            self.closed.notified().await;
        }
    }

    /// Closes the outbox: nothing more is queued; the connection is to be closed.
    pub fn close(&self) {
        let mut i = self.inner.borrow_mut();
        i.closed = true;
        self.notify(i);
        self.closed.notify();
        self.written.notify();
    }

    /// Whether the outbox was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.borrow().closed
    }

    /// Whether the player was started.
    pub fn is_started(&self) -> bool {
        self.inner.borrow().started
    }

    /// Labels the outbox with its connection's protocol and peer (for reports).
    pub fn set_tag(&self, proto: &'static str, peer: String) {
        *self.tag.borrow_mut() = Some(Tag { proto, peer });
    }

    /// The label [`Outbox::set_tag`] set.
    pub fn tag(&self) -> Option<Tag> {
        self.tag.borrow().clone()
    }

    /// Records the chain of relay nodes the connection came through (`ringcastVia`); a
    /// pull this player starts carries it on.
    pub fn set_via(&self, via: &str) {
        *self.via.borrow_mut() = via.to_owned();
    }

    /// The chain [`Outbox::set_via`] recorded; empty when the connection is not relayed.
    pub fn via(&self) -> String {
        self.via.borrow().clone()
    }

    /// Frames dropped by the slow-player policy so far.
    pub fn dropped(&self) -> u64 {
        self.inner.borrow().dropped
    }
}
