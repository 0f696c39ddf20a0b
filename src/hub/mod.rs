//! The stream hub of one core: which streams exist, their GOP caches, and the players they
//! fan out to.
//!
//! Each core has its own [`Hub`] and touches no other core's state. The core that accepts a
//! publisher owns its stream; it announces it to every core. A core whose player asks for a
//! stream owned elsewhere subscribes once, and the owner sends it every frame (batched per
//! read, one hop per core, never per player); that core keeps a mirror of the stream with its
//! own GOP cache and its own players. Frames are encoded once, at the owner, and shared by
//! refcount ([`Frame`]) across cores and players.

mod frame;
mod gop;
mod outbox;
mod player;
mod report;
mod signal;

pub use frame::{FRAME_OVERHEAD, Frame};
pub use gop::GopCache;
pub use outbox::{Item, Outbox, PlayerEvent, SCAN_HORIZON, Tag, WriterTimer};
pub use player::{Ending, Player, Waits};
pub use report::{PublisherReport, RelayReport, RelayStatus, StreamReport, merge};

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use crate::rtmp::session::MediaKind;

/// The hub key of stream `name` of application `app`. Both may contain `/`, so the app's
/// own slashes (and `%`) are escaped: `live` + `a/b` is `live/a/b`, `live/a` + `b` is
/// `live%2Fa/b`, two streams.
pub fn stream_key(app: &str, name: &str) -> String {
    let app = app.replace('%', "%25").replace('/', "%2F");
    format!("{app}/{name}")
}

/// The app and stream name of hub key `key` ([`stream_key`] undone).
pub fn split_key(key: &str) -> (String, String) {
    let (app, name) = key.split_once('/').unwrap_or((key, ""));
    let app = app.replace("%2F", "/").replace("%25", "%");
    (app, name.to_owned())
}

/// Frames messages one peer's backlog may hold while its inbox is full; past it frames to
/// that core are dropped (and it skips to the next keyframe). Control messages are never
/// dropped: they wait in the backlog, in order, however many there are.
const BACKLOG_FRAMES: usize = 256;

/// The way to one core's inbox, with what waits for room in it.
struct Link {
    tx: mpsc::Sender<CoreMsg>,
    /// Messages that found the inbox full, in order; everything to this core queues behind
    /// them so that order holds.
    backlog: VecDeque<CoreMsg>,
    /// How many of the backlog are frames messages.
    backlog_frames: usize,
}

/// A core subscribed to a locally owned stream.
struct Subscriber {
    core: usize,
    /// Frames to it were dropped: it gets nothing but metadata and sequence headers until
    /// the next place a player can start from.
    skipping: bool,
}

/// Messages between cores. Bounded channels carry them; frames travel in batches.
#[derive(Debug)]
pub enum CoreMsg {
    /// `owner` started publishing `key`.
    Announce {
        /// The stream key (`app/name`).
        key: String,
        /// The core that owns it.
        owner: usize,
    },
    /// The publisher of `key` on `owner` left.
    Withdraw {
        /// The stream key.
        key: String,
        /// The core that owned it.
        owner: usize,
    },
    /// Core `core` has players of `key` and wants its frames.
    Subscribe {
        /// The stream key.
        key: String,
        /// The subscribing core.
        core: usize,
        /// Which subscription of that core this is: the snapshot answering it carries the
        /// same number, so one that answers an earlier subscription is known and ignored.
        generation: u64,
    },
    /// Core `core` has no more players of `key`.
    Unsubscribe {
        /// The stream key.
        key: String,
        /// The core that leaves.
        core: usize,
    },
    /// The owner's cache at subscription time (metadata, sequence headers, GOP).
    Snapshot {
        /// The stream key.
        key: String,
        /// The generation of the [`CoreMsg::Subscribe`] it answers.
        generation: u64,
        /// The cached frames, in order.
        frames: Vec<Arc<Frame>>,
    },
    /// Live frames of `key`, in order.
    Frames {
        /// The stream key.
        key: String,
        /// The frames.
        frames: Vec<Arc<Frame>>,
    },
    /// Core `by` took `key` over (`publish_conflict = "takeover"`): close the local
    /// publisher of it and follow the new owner.
    Kick {
        /// The stream key.
        key: String,
        /// The core whose publisher replaces ours.
        by: usize,
    },
    /// Report the streams this core has (see [`Hub::report`]) on `reply`; with `detail`,
    /// the player addresses of that stream too.
    Report {
        /// The stream whose players are listed, if any.
        detail: Option<String>,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Vec<StreamReport>>,
    },
    /// Disconnect the local publisher of `key` (an operator's `DELETE`).
    Disconnect {
        /// The stream key.
        key: String,
    },
    /// A player of `key` on core `core` wants a stream nobody has here: pull it (sent to
    /// the core that pulls `key` for the node, [`Hub::puller`]).
    Pull {
        /// The stream key.
        key: String,
        /// The relay chain of the player that asked (empty if it is not relayed).
        via: String,
    },
    /// No origin has `key`: its waiting players give up.
    NotFound {
        /// The stream key.
        key: String,
    },
    /// The relay feeding `key` lost its origin and reconnects: players hear the publisher
    /// left and wait (subscriptions stay).
    Break {
        /// The stream key.
        key: String,
    },
    /// The relay feeding `key` is back: a new start (metadata, sequence headers and a
    /// keyframe follow).
    Resume {
        /// The stream key.
        key: String,
    },
    /// A reloaded configuration (SIGHUP), for the core's new connections.
    Reload(Arc<crate::config::Config>),
    /// Stop: tell players the stream ended and close.
    Shutdown,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Another publisher has the name (`publish_conflict = "reject"`).
    InUse,
}

/// Hub settings (from the server config).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Keep a GOP cache.
    pub gop_cache: bool,
    /// GOP cache byte cap.
    pub gop_cache_max_bytes: usize,
    /// GOP cache duration cap, ms.
    pub gop_cache_max_ms: u32,
    /// Replace a publisher instead of refusing the newcomer.
    pub takeover: bool,
    /// Phases of the coalescing wheel: players are spread over this many slots, one slot
    /// woken per [`Hub::tick`], so a core's writes (and its players' reads) are spread over
    /// the coalescing period instead of all landing at once. 1 wakes everyone every tick.
    pub coalesce_slots: usize,
    /// This node is an edge: a player of a stream nobody publishes here starts a pull.
    pub pull: bool,
}

/// Who feeds a stream on this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// No one: the publisher left (or never came); players wait.
    None,
    /// A publisher connection on this core, by id.
    Local(u64),
    /// The owning core, which sends us frames.
    Remote(usize),
}

/// One stream on this core.
struct Stream {
    source: Source,
    cache: GopCache,
    players: Vec<Rc<Outbox>>,
    /// Cores subscribed to this (locally owned) stream.
    subscribers: Vec<Subscriber>,
    /// Frames pushed since the last [`Hub::flush`], for subscribed cores.
    pending: Vec<Arc<Frame>>,
    /// The kick handle of the local publisher (closed on takeover).
    publisher: Option<Rc<Outbox>>,
    /// A mirror has asked the owner and waits for the snapshot of this generation; frames
    /// before it are not ours to show.
    awaiting: Option<u64>,
    /// Whether anything was ever published on it (for PublishNotify vs. a first start).
    ever_live: bool,
    /// Since when the local publisher publishes.
    since: Option<std::time::SystemTime>,
    /// The local publisher is a relay pulling from this origin (reports).
    upstream: Option<String>,
    /// Bytes the local publisher sent over the last seconds, by arrival (ingest bitrate).
    ingest: VecDeque<(Instant, usize)>,
}

impl Stream {
    fn new(cfg: &HubConfig) -> Stream {
        Stream {
            source: Source::None,
            cache: GopCache::new(cfg.gop_cache, cfg.gop_cache_max_bytes, cfg.gop_cache_max_ms),
            players: Vec::new(),
            subscribers: Vec::new(),
            pending: Vec::new(),
            publisher: None,
            since: None,
            upstream: None,
            ingest: VecDeque::new(),
            awaiting: None,
            ever_live: false,
        }
    }

    fn live(&self) -> bool {
        match self.source {
            Source::None => false,
            Source::Local(_) => true,
            // A mirror is live once its snapshot arrived.
            Source::Remote(_) => self.awaiting.is_none(),
        }
    }

    /// Hands a live frame to every local player and the mirror's cache; players whose
    /// writers wait for the coalescing tick go on their slot of the `wheel`.
    fn fan_out(&mut self, frame: &Arc<Frame>, now: Instant, wheel: &mut [Vec<Rc<Outbox>>]) {
        self.cache.push(frame);
        self.players.retain(|p| {
            if p.is_closed() {
                return false;
            }
            p.push_frame(frame, now);
            if p.schedule() {
                wheel[p.phase() % wheel.len()].push(p.clone());
            }
            true
        });
    }

    /// Starts a player that was waiting (or a new one on a live stream): the start marker,
    /// then the cache.
    fn start_player(&self, p: &Rc<Outbox>, now: Instant) {
        p.push_event(PlayerEvent::Start);
        p.start_from(&self.cache.snapshot(), now);
    }
}

/// The stream registry of one core.
pub struct Hub {
    core: usize,
    config: HubConfig,
    peers: Vec<Link>,
    /// Woken when a backlog gets its first message (see [`Hub::backlogged`]).
    backlog_ready: Rc<Notify>,
    /// The generation of this core's next subscription.
    next_generation: u64,
    streams: HashMap<String, Stream>,
    /// Streams owned by other cores, as announced.
    directory: HashMap<String, usize>,
    next_publisher: u64,
    /// Players with frames waiting for a coalescing tick, by phase slot.
    wheel: Vec<Vec<Rc<Outbox>>>,
    /// The slot the last tick woke.
    cursor: usize,
    /// The phase the next player gets.
    next_phase: usize,
    /// Frames that could not be sent to a core because its inbox was full.
    pub dropped_cross_core: u64,
    /// Streams to pull (this core pulls them for the node), with the chain of the player
    /// that asked; taken by [`Hub::take_pull_requests`].
    pull_requests: Vec<(String, String)>,
    /// Woken when a pull request arrives.
    pull_ready: Rc<Notify>,
    /// The relays of each stream here (reports).
    relays: HashMap<String, Vec<Rc<RelayStatus>>>,
}

/// Whether a player can start (or resume) at `f`: a video keyframe, or any audio frame of
/// a stream without video.
fn is_sync(f: &Frame, has_video: bool) -> bool {
    f.keyframe || (!has_video && f.kind == MediaKind::Audio)
}

impl Hub {
    /// The hub of core `core`; `peers[i]` is core i's inbox (this core's own included).
    pub fn new(core: usize, config: HubConfig, peers: Vec<mpsc::Sender<CoreMsg>>) -> Hub {
        let wheel = (0..config.coalesce_slots.max(1))
            .map(|_| Vec::new())
            .collect();
        let peers = peers
            .into_iter()
            .map(|tx| Link {
                tx,
                backlog: VecDeque::new(),
                backlog_frames: 0,
            })
            .collect();
        Hub {
            core,
            config,
            peers,
            backlog_ready: Rc::new(Notify::new()),
            next_generation: 1,
            streams: HashMap::new(),
            directory: HashMap::new(),
            next_publisher: 1,
            wheel,
            cursor: 0,
            next_phase: 0,
            dropped_cross_core: 0,
            pull_requests: Vec::new(),
            pull_ready: Rc::new(Notify::new()),
            relays: HashMap::new(),
        }
    }

    /// The core that pulls `key` for the whole node: one per stream, the same on every core.
    pub fn puller(&self, key: &str) -> usize {
        (crate::relay::stable_hash(&[key]) % self.peers.len().max(1) as u64) as usize
    }

    /// Asks the puller of `key` to pull it (an edge with a player of a stream nobody has).
    fn request_pull(&mut self, key: &str, via: String) {
        let puller = self.puller(key);
        if puller == self.core {
            self.pull_requests.push((key.to_owned(), via));
            self.pull_ready.notify_one();
        } else {
            let key = key.to_owned();
            self.send(puller, CoreMsg::Pull { key, via });
        }
    }

    /// The pull requests that arrived since the last call: (stream key, relay chain).
    pub fn take_pull_requests(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.pull_requests)
    }

    /// Notified when a pull request arrives.
    pub fn pull_ready(&self) -> Rc<Notify> {
        self.pull_ready.clone()
    }

    /// Who watches locally owned `key`: its players on this core plus the cores subscribed
    /// to it (a pull lingers while this is above 0).
    pub fn audience(&self, key: &str) -> usize {
        self.streams.get(key).map_or(0, |s| {
            s.players.iter().filter(|p| !p.is_closed()).count() + s.subscribers.len()
        })
    }

    /// No origin has `key`: players waiting for it here and on every core give up now.
    pub fn not_found(&mut self, key: &str) {
        self.not_found_local(key);
        let key = key.to_owned();
        self.broadcast(|| CoreMsg::NotFound { key: key.clone() });
    }

    fn not_found_local(&mut self, key: &str) {
        if let Some(s) = self.streams.get(key) {
            if s.source == Source::None {
                for p in &s.players {
                    p.push_event(PlayerEvent::NotFound);
                }
            }
        }
    }

    /// Labels local publisher `id` of `key` as a relay from `origin` (reports).
    pub fn set_upstream(&mut self, key: &str, id: u64, origin: Option<String>) {
        if let Some(s) = self.streams.get_mut(key) {
            if s.source == Source::Local(id) {
                s.upstream = origin;
            }
        }
    }

    /// The relay that publishes `key` (local publisher `id`) lost its origin: its players,
    /// here and on subscribed cores, hear the publisher left (and wait `republish_wait`);
    /// the publication and the subscriptions stay for [`Hub::relay_resume`].
    pub fn relay_break(&mut self, key: &str, id: u64) {
        self.flush();
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.source != Source::Local(id) {
            return;
        }
        s.cache.reset();
        for p in &s.players {
            p.push_event(PlayerEvent::Unpublished);
        }
        let cores: Vec<usize> = s.subscribers.iter().map(|x| x.core).collect();
        for core in cores {
            self.send(
                core,
                CoreMsg::Break {
                    key: key.to_owned(),
                },
            );
        }
    }

    /// The relay that publishes `key` is back (from the same origin or another): a new
    /// start for every player, here and on subscribed cores.
    pub fn relay_resume(&mut self, key: &str, id: u64) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.source != Source::Local(id) {
            return;
        }
        s.cache.reset();
        s.ingest.clear();
        for p in &s.players {
            p.push_event(PlayerEvent::Republished);
        }
        let cores: Vec<usize> = s.subscribers.iter().map(|x| x.core).collect();
        for core in cores {
            self.send(
                core,
                CoreMsg::Resume {
                    key: key.to_owned(),
                },
            );
        }
    }

    /// Sends `msg` to core `core`. Control messages always arrive, in order: when the
    /// inbox is full they wait in a backlog that [`Hub::drain_backlog`] (driven by the core's
    /// backlog task) empties as room appears. Frames may be dropped: false when they were.
    fn send(&mut self, core: usize, msg: CoreMsg) -> bool {
        let Some(link) = self.peers.get_mut(core) else {
            return false;
        };
        let frames = matches!(msg, CoreMsg::Frames { .. });
        let msg = if link.backlog.is_empty() {
            match link.tx.try_send(msg) {
                Ok(()) => return true,
                // That core is gone (shutting down): nothing to deliver to.
                Err(mpsc::error::TrySendError::Closed(_)) => return true,
                Err(mpsc::error::TrySendError::Full(m)) => m,
            }
        } else {
            msg
        };
        if frames && link.backlog_frames >= BACKLOG_FRAMES {
            self.dropped_cross_core += 1;
            // A core whose inbox stays full is stuck; say so, without a line per frame.
            if self.dropped_cross_core.is_power_of_two() {
                tracing::warn!(
                    from = self.core,
                    to = core,
                    dropped = self.dropped_cross_core,
                    "cross-core inbox full: frames dropped"
                );
            }
            return false;
        }
        if link.backlog.is_empty() {
            self.backlog_ready.notify_one();
        }
        link.backlog_frames += usize::from(frames);
        link.backlog.push_back(msg);
        true
    }

    /// Moves what waits in the backlogs into the inboxes that have room now.
    pub fn drain_backlog(&mut self) {
        for link in &mut self.peers {
            while let Some(msg) = link.backlog.pop_front() {
                let frames = matches!(msg, CoreMsg::Frames { .. });
                match link.tx.try_send(msg) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {
                        link.backlog_frames -= usize::from(frames);
                    }
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        link.backlog.push_front(m);
                        break;
                    }
                }
            }
        }
    }

    /// The inbox of the first core with a backlog, to wait on for room (then call
    /// [`Hub::drain_backlog`]); `None` when nothing waits.
    pub fn backlogged(&self) -> Option<mpsc::Sender<CoreMsg>> {
        self.peers
            .iter()
            .find(|l| !l.backlog.is_empty())
            .map(|l| l.tx.clone())
    }

    /// Notified when a backlog gets its first message.
    pub fn backlog_ready(&self) -> Rc<Notify> {
        self.backlog_ready.clone()
    }

    fn next_generation(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    fn broadcast(&mut self, make: impl Fn() -> CoreMsg) {
        for c in 0..self.peers.len() {
            if c != self.core {
                self.send(c, make());
            }
        }
    }

    /// Starts publishing `key` from a local connection whose outbox is `kick` (closed on
    /// takeover). Returns the publisher id to pass to [`Hub::push`] and [`Hub::unpublish`].
    pub fn publish(
        &mut self,
        key: &str,
        kick: Rc<Outbox>,
        now: Instant,
    ) -> Result<u64, PublishError> {
        let takeover = self.config.takeover;
        // Another core's publisher has it: refused, or that core is told to let go.
        let remote_owner = self.directory.get(key).copied();
        if remote_owner.is_some() && !takeover {
            return Err(PublishError::InUse);
        }
        let id = self.next_publisher;
        let cfg = self.config.clone();
        let s = self
            .streams
            .entry(key.to_owned())
            .or_insert_with(|| Stream::new(&cfg));
        match s.source {
            Source::Local(_) if !takeover => return Err(PublishError::InUse),
            Source::Local(_) => {
                if let Some(old) = s.publisher.take() {
                    old.close();
                }
            }
            // Our mirror of another core's stream: this core owns it from now on.
            Source::Remote(_) if !takeover => return Err(PublishError::InUse),
            Source::Remote(_) | Source::None => {}
        }
        self.next_publisher += 1;
        let republish = s.ever_live;
        s.source = Source::Local(id);
        s.publisher = Some(kick);
        s.ever_live = true;
        s.since = Some(std::time::SystemTime::now());
        s.ingest.clear();
        s.awaiting = None;
        // A new publisher brings new metadata and sequence headers.
        s.cache.reset();
        for p in &s.players {
            if p.is_started() {
                if republish {
                    p.push_event(PlayerEvent::Republished);
                }
            } else {
                s.start_player(p, now);
            }
        }
        let key = key.to_owned();
        let owner = self.core;
        if remote_owner.is_some() {
            self.directory.remove(&key);
        }
        self.broadcast(|| CoreMsg::Announce {
            key: key.clone(),
            owner,
        });
        // After the announce, on the same channel: the old owner learns who has the stream
        // before it lets its publisher go, so its players follow at once.
        if let Some(old) = remote_owner {
            self.send(old, CoreMsg::Kick { key, by: owner });
        }
        Ok(id)
    }

    /// Players of `key` here that have no source follow the core the directory names, if
    /// any: they subscribe to it (and hear a republish once its snapshot arrives).
    fn follow_owner(&mut self, key: &str) {
        let Some(&owner) = self.directory.get(key) else {
            return;
        };
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.source != Source::None || s.players.is_empty() {
            return;
        }
        if s.ever_live {
            s.cache.reset();
        }
        self.subscribe(key, owner);
    }

    /// Makes this core's `key` a mirror of `owner`'s and asks for its snapshot.
    fn subscribe(&mut self, key: &str, owner: usize) {
        let generation = self.next_generation();
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        s.source = Source::Remote(owner);
        s.awaiting = Some(generation);
        s.ever_live = true;
        let key = key.to_owned();
        let core = self.core;
        self.send(
            owner,
            CoreMsg::Subscribe {
                key,
                core,
                generation,
            },
        );
    }

    /// A media frame from local publisher `id` of `key`.
    pub fn push(&mut self, key: &str, id: u64, frame: Arc<Frame>, now: Instant) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.source != Source::Local(id) {
            return;
        }
        s.ingest.push_back((now, frame.payload.len()));
        while s
            .ingest
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > report::INGEST_WINDOW)
        {
            s.ingest.pop_front();
        }
        s.fan_out(&frame, now, &mut self.wheel);
        if !s.subscribers.is_empty() {
            s.pending.push(frame);
        }
    }

    /// Sends the frames pushed since the last call to the subscribed cores: one message per
    /// core per stream per call. Call after each batch of input. A core whose frames had to
    /// be dropped gets only metadata and sequence headers until the next keyframe (the
    /// slow-core policy), so what it shows its players is never a broken GOP.
    pub fn flush(&mut self) {
        self.drain_backlog();
        let mut out = Vec::new();
        for (key, s) in &mut self.streams {
            if s.pending.is_empty() {
                continue;
            }
            let frames = std::mem::take(&mut s.pending);
            let has_video = s.cache.has_video();
            for (i, sub) in s.subscribers.iter_mut().enumerate() {
                let batch = if sub.skipping {
                    let start = frames.iter().position(|f| is_sync(f, has_video));
                    let mut b: Vec<_> = frames[..start.unwrap_or(frames.len())]
                        .iter()
                        .filter(|f| f.is_config() || f.clears_metadata)
                        .cloned()
                        .collect();
                    if let Some(start) = start {
                        sub.skipping = false;
                        b.extend(frames[start..].iter().cloned());
                    }
                    if b.is_empty() {
                        continue;
                    }
                    b
                } else {
                    frames.clone()
                };
                out.push((key.clone(), i, sub.core, batch));
            }
        }
        for (key, i, core, frames) in out {
            let sent = self.send(
                core,
                CoreMsg::Frames {
                    key: key.clone(),
                    frames,
                },
            );
            if !sent {
                if let Some(sub) = self
                    .streams
                    .get_mut(&key)
                    .and_then(|s| s.subscribers.get_mut(i))
                {
                    sub.skipping = true;
                }
            }
        }
    }

    /// Local publisher `id` of `key` left.
    pub fn unpublish(&mut self, key: &str, id: u64) {
        self.flush();
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.source != Source::Local(id) {
            return;
        }
        s.source = Source::None;
        s.publisher = None;
        s.upstream = None;
        for p in &s.players {
            p.push_event(PlayerEvent::Unpublished);
        }
        s.subscribers.clear();
        let key = key.to_owned();
        let owner = self.core;
        self.broadcast(|| CoreMsg::Withdraw {
            key: key.clone(),
            owner,
        });
        self.gc(&key);
    }

    /// A player of `key` arrives. Returns true when the stream is live (the player's outbox
    /// got the start marker and the cache); otherwise the player waits for a publisher.
    pub fn play(&mut self, key: &str, player: Rc<Outbox>, now: Instant) -> bool {
        player.set_phase(self.next_phase);
        self.next_phase = self.next_phase.wrapping_add(1);
        let cfg = self.config.clone();
        let remote = self.directory.get(key).copied();
        let s = self
            .streams
            .entry(key.to_owned())
            .or_insert_with(|| Stream::new(&cfg));
        if let (Source::None, Some(owner)) = (s.source, remote) {
            s.players.push(player);
            // Live once the owner's snapshot arrives.
            self.subscribe(key, owner);
            return false;
        }
        if s.source == Source::None && self.config.pull {
            let via = player.via();
            s.players.push(player);
            // Live once the pull publishes it (on whichever core pulls it).
            self.request_pull(key, via);
            return false;
        }
        let live = s.live();
        if live {
            s.start_player(&player, now);
        }
        s.players.push(player);
        live
    }

    /// A paused player of `key` resumes (`pause false`): from the cache, or at the next
    /// keyframe when the cache holds nothing newer than what it had.
    pub fn resume(&mut self, key: &str, player: &Rc<Outbox>, now: Instant) {
        let snapshot = self
            .streams
            .get(key)
            .filter(|s| s.live())
            .map(|s| s.cache.snapshot())
            .unwrap_or_default();
        player.resume(&snapshot, now);
    }

    /// A player of `key` left (or was closed).
    pub fn leave(&mut self, key: &str, player: &Rc<Outbox>) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        s.players
            .retain(|p| !Rc::ptr_eq(p, player) && !p.is_closed());
        if s.players.is_empty() {
            if let Source::Remote(owner) = s.source {
                s.source = Source::None;
                s.awaiting = None;
                let key = key.to_owned();
                let core = self.core;
                self.send(owner, CoreMsg::Unsubscribe { key, core });
            }
        }
        self.gc(key);
    }

    fn gc(&mut self, key: &str) {
        if let Some(s) = self.streams.get(key) {
            if s.source == Source::None && s.players.is_empty() {
                self.streams.remove(key);
            }
        }
    }

    /// Whether local publisher `id` still publishes `key`.
    pub fn publishes(&self, key: &str, id: u64) -> bool {
        self.streams
            .get(key)
            .is_some_and(|s| s.source == Source::Local(id))
    }

    /// Whether `key` is live here or on another core.
    pub fn is_live(&self, key: &str) -> bool {
        self.directory.contains_key(key) || self.streams.get(key).is_some_and(|s| s.live())
    }

    /// Streams published on this core, and the bytes all GOP caches here hold (mirrors of
    /// other cores' streams included).
    pub fn stats(&self) -> (usize, usize) {
        let local = self
            .streams
            .values()
            .filter(|s| matches!(s.source, Source::Local(_)))
            .count();
        let bytes = self.streams.values().map(|s| s.cache.bytes()).sum();
        (local, bytes)
    }

    /// Asks every other core for its [`Hub::report`]; the answers come on the receivers.
    pub fn ask_reports(
        &mut self,
        detail: Option<&str>,
    ) -> Vec<tokio::sync::oneshot::Receiver<Vec<StreamReport>>> {
        let mut answers = Vec::new();
        for core in 0..self.peers.len() {
            if core == self.core {
                continue;
            }
            let (reply, rx) = tokio::sync::oneshot::channel();
            let msg = CoreMsg::Report {
                detail: detail.map(str::to_owned),
                reply,
            };
            if self.send(core, msg) {
                answers.push(rx);
            }
        }
        answers
    }

    /// Disconnects the publisher of `key`, on whichever core it publishes; false if nobody
    /// publishes it.
    pub fn disconnect(&mut self, key: &str) -> bool {
        if self.disconnect_local(key) {
            return true;
        }
        match self.directory.get(key).copied() {
            Some(owner) => self.send(
                owner,
                CoreMsg::Disconnect {
                    key: key.to_owned(),
                },
            ),
            None => false,
        }
    }

    /// Closes the local publisher of `key`, if there is one.
    fn disconnect_local(&mut self, key: &str) -> bool {
        let Some(s) = self.streams.get(key) else {
            return false;
        };
        match (s.source, &s.publisher) {
            (Source::Local(_), Some(kick)) => {
                kick.close();
                true
            }
            _ => false,
        }
    }

    /// The keys of every stream published on any core, sorted.
    pub fn live_streams(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .directory
            .keys()
            .cloned()
            .chain(
                self.streams
                    .iter()
                    .filter(|(_, s)| s.live())
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Handles a message from another core.
    pub fn handle(&mut self, msg: CoreMsg, now: Instant) {
        match msg {
            CoreMsg::Announce { key, owner } => {
                self.directory.insert(key.clone(), owner);
                // Waiting players subscribe now.
                self.follow_owner(&key);
            }
            CoreMsg::Kick { key, by } => {
                let Some(s) = self.streams.get_mut(&key) else {
                    return;
                };
                let Source::Local(id) = s.source else {
                    return;
                };
                if let Some(old) = s.publisher.take() {
                    old.close();
                }
                tracing::info!(stream = %key, core = by, "taken over by a publisher on another core");
                self.unpublish(&key, id);
                self.follow_owner(&key);
            }
            CoreMsg::Withdraw { key, owner } => {
                if self.directory.get(&key) == Some(&owner) {
                    self.directory.remove(&key);
                }
                if let Some(s) = self.streams.get_mut(&key) {
                    if s.source == Source::Remote(owner) {
                        s.source = Source::None;
                        s.awaiting = None;
                        for p in &s.players {
                            p.push_event(PlayerEvent::Unpublished);
                        }
                    }
                }
                // A takeover's announce may have overtaken the old owner's withdraw.
                self.follow_owner(&key);
                self.gc(&key);
            }
            CoreMsg::Subscribe {
                key,
                core,
                generation,
            } => {
                let snapshot = match self.streams.get_mut(&key) {
                    Some(s) if matches!(s.source, Source::Local(_)) => {
                        match s.subscribers.iter_mut().find(|x| x.core == core) {
                            // The snapshot starts it afresh.
                            Some(sub) => sub.skipping = false,
                            None => s.subscribers.push(Subscriber {
                                core,
                                skipping: false,
                            }),
                        }
                        // Frames pushed but not yet flushed are part of the snapshot.
                        let mut frames = s.cache.snapshot();
                        for f in &s.pending {
                            if !frames.iter().any(|g| Arc::ptr_eq(g, f)) {
                                frames.push(f.clone());
                            }
                        }
                        Some(frames)
                    }
                    _ => None,
                };
                if let Some(frames) = snapshot {
                    self.send(
                        core,
                        CoreMsg::Snapshot {
                            key,
                            generation,
                            frames,
                        },
                    );
                } else {
                    // Not ours (any more): tell the core so its players go on waiting.
                    let owner = self.core;
                    self.send(core, CoreMsg::Withdraw { key, owner });
                }
            }
            CoreMsg::Unsubscribe { key, core } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    s.subscribers.retain(|x| x.core != core);
                }
            }
            CoreMsg::Snapshot {
                key,
                generation,
                frames,
            } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    if matches!(s.source, Source::Remote(_)) && s.awaiting == Some(generation) {
                        s.awaiting = None;
                        s.cache.reset();
                        for f in &frames {
                            s.cache.push(f);
                        }
                        let snapshot = s.cache.snapshot();
                        for p in &s.players {
                            if p.is_started() {
                                p.push_event(PlayerEvent::Republished);
                                p.start_from(&snapshot, now);
                            } else {
                                p.push_event(PlayerEvent::Start);
                                p.start_from(&snapshot, now);
                            }
                        }
                    }
                }
            }
            CoreMsg::Frames { key, frames } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    if matches!(s.source, Source::Remote(_)) && s.awaiting.is_none() {
                        for f in &frames {
                            s.fan_out(f, now, &mut self.wheel);
                        }
                    }
                }
            }
            CoreMsg::Report { detail, reply } => {
                let _ = reply.send(self.report(detail.as_deref(), now));
            }
            CoreMsg::Disconnect { key } => {
                self.disconnect_local(&key);
            }
            CoreMsg::Pull { key, via } => {
                self.pull_requests.push((key, via));
                self.pull_ready.notify_one();
            }
            CoreMsg::NotFound { key } => self.not_found_local(&key),
            CoreMsg::Break { key } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    if matches!(s.source, Source::Remote(_)) {
                        s.cache.reset();
                        for p in &s.players {
                            p.push_event(PlayerEvent::Unpublished);
                        }
                    }
                }
            }
            CoreMsg::Resume { key } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    if matches!(s.source, Source::Remote(_)) && s.awaiting.is_none() {
                        s.cache.reset();
                        for p in &s.players {
                            p.push_event(PlayerEvent::Republished);
                        }
                    }
                }
            }
            // The core takes it (see `server`); nothing for the hub.
            CoreMsg::Reload(_) => {}
            CoreMsg::Shutdown => self.shutdown(),
        }
    }

    /// The coalescing tick, called every coalescing period / `coalesce_slots`: wakes the
    /// writers of the next slot's players with frames queued, so each sends all it has
    /// queued since its previous turn in one write.
    pub fn tick(&mut self) {
        self.cursor = (self.cursor + 1) % self.wheel.len();
        for p in self.wheel[self.cursor].drain(..) {
            p.wake();
        }
    }

    /// Wakes every player with frames queued, whatever its slot (at shutdown).
    pub fn wake_all(&mut self) {
        for slot in &mut self.wheel {
            for p in slot.drain(..) {
                p.wake();
            }
        }
    }

    /// Tells every player the stream ended and closes every connection's outbox.
    pub fn shutdown(&mut self) {
        for s in self.streams.values_mut() {
            for p in &s.players {
                p.push_event(PlayerEvent::Shutdown);
            }
            if let Some(p) = s.publisher.take() {
                p.close();
            }
        }
    }
}

#[cfg(test)]
mod tests;
