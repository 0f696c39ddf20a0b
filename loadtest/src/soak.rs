//! `loadtest soak`: a long run with churn against one server, watching whether its memory
//! and open files stay flat once warm.
//!
//! What runs, all in this process:
//!
//! - **publishers**, one per stream (`APP/soak-0` …), on a thread of their own: each
//!   publishes for a random `--publisher-life`, leaves (half of the time with `FCUnpublish`
//!   and `deleteStream`, half by just closing the connection), and after a random
//!   `--publisher-pause` a new publisher session takes the same name;
//! - **well-behaved players**: `--players` at any time, spread over the player threads, each
//!   playing a random stream for a random `--player-life`, then leaving for another to take
//!   its place. They are the load harness's own players ([`crate::player`]), so every frame
//!   is checked the same way; integrity is checked per publisher session (the stamps carry
//!   it), so a player that plays across a publisher's leave and return counts neither the
//!   silence nor the new session's restart as an error. The kind of player is pluggable
//!   ([`PlayerKind`]);
//! - **slow players** and **garbage peers** ([`crate::peers`]);
//! - **the sampler**, on the main thread: every `--sample` it reads the server's RSS and
//!   open file descriptors ([`crate::procfs`]) and prints a progress line.
//!
//! At the end: the levels at the end of the warm-up and at the end of the run (each the
//! median of a `--window` of samples), whether they are within `--tolerance`, the players'
//! integrity errors, and whether a fresh publisher and player still get through.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ringcast::runtime::{self as net, Io};
use serde::Serialize;
use tokio::time::{sleep, sleep_until, timeout_at};

use crate::player::{self, Ctx};
use crate::procfs::{self, Proc};
use crate::publisher::{self, Synth};
use crate::report::{
    self, ByEnd, End, Harness, Percentiles, ThreadStats, Totals, bump, percentile_table,
};
use crate::target::{self, Span, Target};

/// A player that starts near the end of the run still plays at least this long (or its
/// whole life, if shorter), and publishers keep publishing until these players are done.
pub(crate) const TAIL: Duration = Duration::from_secs(3);
/// What a player waits between leaving and joining again.
const REJOIN: Span = Span {
    lo: Duration::ZERO,
    hi: Duration::from_millis(500),
};
/// How long the final check's player plays.
const FINAL_PLAY: Duration = Duration::from_secs(3);
/// How many sample rows the human report prints at most (the JSON has them all).
const TABLE_ROWS: usize = 40;

/// `loadtest soak`: see the command's help.
#[derive(Args, Clone)]
pub struct SoakArgs {
    /// rtmp://HOST:PORT/APP: the streams APP/soak-0, APP/soak-1, … (and APP/soak-final for
    /// the final check) are published and played there.
    #[arg(long, visible_alias = "target")]
    url: String,
    /// How long the soak runs (e.g. 30m, 2h); the final check and the report follow.
    #[arg(long, default_value = "30m", value_parser = target::duration)]
    duration: Duration,
    /// Streams, each with its own publisher.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    streams: u32,
    /// Well-behaved players at any time: each plays a random stream for --player-life,
    /// leaves, and another joins in its place.
    #[arg(long, default_value_t = 200)]
    players: u32,
    /// Kinds of well-behaved players, comma-separated, taken in turn: rtmp, http-flv,
    /// ws-flv.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rtmp")]
    player_kind: Vec<PlayerKind>,
    /// The server's HTTP address (HOST:PORT), for http-flv and ws-flv players.
    #[arg(long)]
    http: Option<String>,
    /// How long a well-behaved player stays: random in this range (e.g. 5s..60s).
    #[arg(long, default_value = "5s..60s", value_parser = target::span)]
    player_life: Span,
    /// How fast the first players join (players per second).
    #[arg(long, default_value = "100/s", value_parser = target::ramp)]
    ramp: f64,
    /// How long a publisher session lasts before it leaves: random in this range (half of
    /// them unpublish, half just close the connection).
    #[arg(long, default_value = "30s..120s", value_parser = target::span)]
    publisher_life: Span,
    /// How long a stream has no publisher before a new one takes its name: random in this
    /// range. Keep it under the server's republish wait (ringcast's `republish_wait`,
    /// 10 s) so that the stream's players stay for the new publisher.
    #[arg(long, default_value = "1s..3s", value_parser = target::span)]
    publisher_pause: Span,
    /// Slow players: each plays, then stops reading for --slow-hold (the server should skip
    /// it to keyframes and close it), then reconnects.
    #[arg(long, default_value_t = 4)]
    slow: u32,
    /// How long a slow player stops reading: random in this range.
    #[arg(long, default_value = "20s..90s", value_parser = target::span)]
    slow_hold: Span,
    /// Garbage peers: each connects and sends random bytes or malformed RTMP chunks every
    /// 1-3 s (from the first byte, after the handshake, or after connect), and reconnects
    /// when the server closes it.
    #[arg(long, default_value_t = 2)]
    garbage: u32,
    /// The server's process id: its RSS (VmRSS of /proc/PID/status) and open file
    /// descriptors (entries of /proc/PID/fd) are sampled. Without it the report has no
    /// verdict on flatness.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How often to sample the server and print a progress line.
    #[arg(long, default_value = "5s", value_parser = target::duration)]
    sample: Duration,
    /// The warm-up: the levels at its end are what the end of the run is compared with.
    #[arg(long, default_value = "5m", value_parser = target::duration)]
    warmup: Duration,
    /// Each level is the lowest sample in a window this long (ending at the end of the
    /// warm-up, and at the end of the run): RSS swings with what the server queues at the
    /// moment (a slow player's queue, until it is closed), while a leak raises the floor.
    #[arg(long, default_value = "60s", value_parser = target::duration)]
    window: Duration,
    /// Flat: neither RSS nor fds grew by more than this from the warm-up level to the end
    /// (e.g. 5%); a fall passes (the allocator returning memory is no leak).
    #[arg(long, default_value = "5%", value_parser = target::percent)]
    tolerance: f64,
    #[command(flatten)]
    stream: crate::SynthArgs,
    /// Runtime threads for players and peers (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// IO backend for players and peers: auto (epoll), uring or epoll; publishers use
    /// io_uring unless it is refused.
    #[arg(long, default_value = "auto")]
    io: String,
    /// Each player hashes one video frame in N (see `loadtest play --help`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    verify_every: u64,
    /// Seed of every random choice (streams, lives, pauses, garbage); default: the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// A kind of well-behaved player. Every kind plays the soak's streams through
/// [`player::play`] and is checked the same way; a new kind is a variant here and its URL
/// in [`PlayerKind::target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlayerKind {
    /// RTMP players on ringcast's client session.
    Rtmp,
    /// HTTP-FLV players (`http://HTTP/APP/STREAM.flv`, with `--http`).
    HttpFlv,
    /// WebSocket-FLV players (`ws://HTTP/APP/STREAM.flv`, with `--http`).
    WsFlv,
}

impl PlayerKind {
    /// Where a player of this kind plays stream `name`; `base` is `rtmp://HOST:PORT/APP`,
    /// `http` the server's HTTP address (`HOST:PORT`).
    fn target(self, base: &str, http: Option<&str>, name: &str) -> anyhow::Result<Target> {
        let app = base.rsplit('/').next().unwrap_or("live");
        let http = || http.context("HTTP-FLV and WebSocket-FLV players need --http HOST:PORT");
        match self {
            PlayerKind::Rtmp => Target::parse(&format!("{base}/{name}")),
            PlayerKind::HttpFlv => Target::parse(&format!("http://{}/{app}/{name}.flv", http()?)),
            PlayerKind::WsFlv => Target::parse(&format!("ws://{}/{app}/{name}.flv", http()?)),
        }
    }

    /// The kind's name in reports.
    fn name(self) -> &'static str {
        match self {
            PlayerKind::Rtmp => "rtmp",
            PlayerKind::HttpFlv => "http-flv",
            PlayerKind::WsFlv => "ws-flv",
        }
    }
}

/// A small deterministic random source (splitmix64): every choice of a soak follows from
/// its seed, one independent sequence per player slot, publisher and peer.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The sequence `lane` of `seed`.
    pub(crate) fn new(seed: u64, lane: u64) -> Rng {
        let mut r = Rng(seed ^ lane.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random duration within `span`.
    pub(crate) fn within(&mut self, span: Span) -> Duration {
        span.at(self.unit())
    }

    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// What the sampler reads while the soak runs, and what the peers tally.
#[derive(Default)]
pub(crate) struct Counters {
    /// Well-behaved player sessions under way (connecting or playing).
    pub(crate) players: AtomicU64,
    /// Well-behaved player sessions started.
    pub(crate) player_sessions: AtomicU64,
    /// Publishers publishing now.
    pub(crate) publishers: AtomicU64,
    /// Streams that have been published at least once.
    pub(crate) streams_up: AtomicU64,
    /// Publisher sessions that started publishing.
    pub(crate) publisher_sessions: AtomicU64,
    /// Publisher sessions that never started (connect failed, publish refused).
    pub(crate) publisher_refused: AtomicU64,
    /// Publisher sessions that failed after they started (the server closed them).
    pub(crate) publisher_broken: AtomicU64,
    /// Slow players connected now.
    pub(crate) slow: AtomicU64,
    /// Slow player sessions.
    pub(crate) slow_sessions: AtomicU64,
    /// Slow player sessions the server had closed by the end of the hold.
    pub(crate) slow_closed: AtomicU64,
    /// Slow player sessions that never got to their first frame.
    pub(crate) slow_unplayed: AtomicU64,
    /// Garbage peers connected now.
    pub(crate) garbage: AtomicU64,
    /// Garbage peer sessions.
    pub(crate) garbage_sessions: AtomicU64,
    /// Garbage peer sessions the server closed.
    pub(crate) garbage_closed: AtomicU64,
    /// Garbage bytes sent.
    pub(crate) garbage_bytes: AtomicU64,
    /// The last publisher error, for the report.
    pub(crate) publisher_error: Mutex<Option<String>>,
}

/// One more in a gauge.
pub(crate) fn up(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One less in a gauge.
pub(crate) fn down(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// What every player thread knows about the soak.
#[derive(Clone)]
pub(crate) struct Plan {
    /// The players' and peers' IO backend.
    pub(crate) io: Io,
    /// Per player kind, per stream: where to play.
    targets: Vec<Vec<Target>>,
    /// Per stream, the RTMP target (slow and garbage peers speak RTMP).
    pub(crate) rtmp: Vec<Target>,
    /// Well-behaved players at any time.
    players: u64,
    player_life: Span,
    /// How long a slow player stops reading.
    pub(crate) slow_hold: Span,
    verify_every: u64,
    /// When the first players join.
    pub(crate) start: Instant,
    /// When no new session starts any more.
    pub(crate) end: Instant,
    ramp: f64,
    /// The soak's seed.
    pub(crate) seed: u64,
    /// Live figures and tallies.
    pub(crate) counters: Arc<Counters>,
}

/// One row of the samples.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: f64,
    /// The server's RSS, KiB (none when it could not be read).
    pub rss_kib: Option<u64>,
    /// The server's open file descriptors.
    pub fds: Option<u64>,
    /// Well-behaved player sessions under way.
    pub players: u64,
    /// Publishers publishing.
    pub publishers: u64,
    /// Slow players connected.
    pub slow: u64,
    /// Garbage peers connected.
    pub garbage: u64,
    /// Integrity errors so far.
    pub integrity_errors: u64,
}

/// The server's level at one point: the lowest of a window of samples (what it holds with
/// the transient queues of the moment drained; a leak raises it), and their median.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Level {
    /// Where the window ends, seconds since the start.
    pub t_s: f64,
    /// Samples in the window.
    pub samples: usize,
    /// The lowest RSS in the window, KiB: the level compared.
    pub rss_kib: u64,
    /// The fewest open file descriptors in the window: the level compared.
    pub fds: u64,
    /// The median RSS in the window, KiB.
    pub rss_kib_median: f64,
    /// The median of the open file descriptors in the window.
    pub fds_median: f64,
}

/// The verdict on the server's memory and open files.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// The process sampled.
    pub pid: Option<u32>,
    /// The level at the end of the warm-up.
    pub warm: Option<Level>,
    /// The level at the end of the run.
    pub end: Option<Level>,
    /// RSS at the end against the warm level, %.
    pub rss_change_pct: Option<f64>,
    /// Open fds at the end against the warm level, %.
    pub fds_change_pct: Option<f64>,
    /// Neither grew by more than the tolerance; none when not measured.
    pub flat: Option<bool>,
    /// `flat`, `flat (it fell)`, `not flat`, or why it was not measured.
    pub verdict: String,
    /// The process still existed after the run (none without a pid).
    pub alive: Option<bool>,
}

/// The well-behaved players' outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SoakPlayers {
    /// Players at any time (`--players`).
    pub concurrent: u64,
    /// Player sessions run.
    pub sessions: u64,
    /// Sessions that reached playback.
    pub connected: u64,
    /// Sessions that never reached playback or ended before their time.
    pub failed: u64,
    /// How the sessions ended.
    pub by_end: ByEnd,
    /// Times a player moved on to a new publisher session while it played.
    pub publisher_switches: u64,
}

/// Publisher sessions.
#[derive(Debug, Clone, Serialize)]
pub struct Publishers {
    /// Sessions that published.
    pub sessions: u64,
    /// Sessions that never got to publish.
    pub refused: u64,
    /// Sessions that failed while publishing.
    pub broken: u64,
    /// The last publisher error, if any.
    pub last_error: Option<String>,
}

/// Slow players.
#[derive(Debug, Clone, Serialize)]
pub struct Slow {
    /// Sessions.
    pub sessions: u64,
    /// Sessions the server had closed when the player read again.
    pub closed_by_server: u64,
    /// Sessions that never got their first frame.
    pub unplayed: u64,
}

/// Garbage peers.
#[derive(Debug, Clone, Serialize)]
pub struct Garbage {
    /// Sessions.
    pub sessions: u64,
    /// Sessions the server closed.
    pub closed_by_server: u64,
    /// Bytes of garbage sent.
    pub bytes: u64,
}

/// The check after the run: a fresh publisher and a fresh player of a new stream.
#[derive(Debug, Clone, Serialize)]
pub struct FinalAccept {
    /// The publisher started and the player played intact frames to its end.
    pub ok: bool,
    /// The stream used.
    pub url: String,
    /// The publisher got `NetStream.Publish.Start`.
    pub published: bool,
    /// The player reached playback.
    pub played: bool,
    /// How the player ended.
    pub end: Option<String>,
    /// Video frames it received.
    pub frames: u64,
    /// Its integrity errors.
    pub integrity_errors: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// The soak report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// `--url`.
    pub url: String,
    /// Wall-clock seconds of the soak (without the final check).
    pub duration_s: f64,
    /// Streams.
    pub streams: u32,
    /// Kinds of well-behaved players.
    pub player_kinds: Vec<PlayerKind>,
    /// The synthetic stream's video bit rate, bit/s.
    pub bitrate_bps: u64,
    /// The seed of every random choice.
    pub seed: u64,
    /// `--warmup`, s.
    pub warmup_s: f64,
    /// `--sample`, s.
    pub sample_s: f64,
    /// `--window`, s.
    pub window_s: f64,
    /// `--tolerance`, %.
    pub tolerance_pct: f64,
    /// The server's memory and open files.
    pub server: Server,
    /// Samples over time.
    pub samples: Vec<Sample>,
    /// The well-behaved players.
    pub players: SoakPlayers,
    /// Integrity errors of well-behaved players: must be 0.
    pub integrity_errors: u64,
    /// Frames missing from a publisher session's sequence.
    pub gaps: u64,
    /// Frames whose checksum failed.
    pub corrupt: u64,
    /// Frames out of order (within a session, or of a session already replaced).
    pub out_of_order: u64,
    /// Gaps of over 1 s without media (a publisher's leave is not one).
    pub stalls: u64,
    /// Video frames received by well-behaved players.
    pub frames: u64,
    /// Bytes received by well-behaved players.
    pub bytes: u64,
    /// TCP connect + handshake, ms.
    pub connect_ms: Percentiles,
    /// Connect start to first video keyframe, ms.
    pub ttff_ms: Percentiles,
    /// End-to-end latency of live stamped video frames, ms.
    pub latency_ms: Percentiles,
    /// Publisher sessions.
    pub publishers: Publishers,
    /// Slow players.
    pub slow: Slow,
    /// Garbage peers.
    pub garbage: Garbage,
    /// The server still accepted a fresh publisher and player at the end.
    pub final_accept: FinalAccept,
    /// The harness itself.
    pub harness: Harness,
    /// Everything passed: flat (or not measured), no integrity error, final check ok,
    /// the server alive.
    pub pass: bool,
    /// Why not, one line each.
    pub failures: Vec<String>,
}

/// Runs the soak and prints the report; true when it passed. `Err` when it could not run.
pub fn run(a: &SoakArgs) -> anyhow::Result<bool> {
    let base = a.url.trim_end_matches('/').to_owned();
    check_base(&base)?;
    if a.warmup + a.sample > a.duration {
        bail!(
            "--duration {} must outlast --warmup {} by a sample ({})",
            human(a.duration),
            human(a.warmup),
            human(a.sample)
        );
    }
    if a.sample.is_zero() {
        bail!("--sample must be more than 0");
    }
    if a.player_kind.is_empty() {
        bail!("--player-kind needs at least one kind");
    }
    let seed = a.seed.unwrap_or_else(crate::stamp::realtime_ns);
    let names: Vec<String> = (0..a.streams).map(|i| format!("soak-{i}")).collect();
    let targets = a
        .player_kind
        .iter()
        .map(|k| {
            names
                .iter()
                .map(|n| k.target(&base, a.http.as_deref(), n))
                .collect()
        })
        .collect::<anyhow::Result<Vec<Vec<Target>>>>()?;
    let rtmp = names
        .iter()
        .map(|n| PlayerKind::Rtmp.target(&base, None, n))
        .collect::<anyhow::Result<Vec<Target>>>()?;
    let player_io = match a.io.as_str() {
        "auto" => Io::Epoll,
        other => Io::detect(other)?,
    };
    let pub_io = Io::detect("auto")?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256);
    let proc = a.server_pid.map(Proc::new);
    if let Some(p) = &proc {
        let pid = a.server_pid.unwrap_or(0);
        p.sample()
            .with_context(|| format!("sampling --server-pid {pid}"))?;
        check_listeners(p, pid, rtmp[0].addr.port())?;
    }
    let counters = Arc::new(Counters::default());
    let cpu0 = report::process_cpu_seconds();
    let t0 = Instant::now();
    let end = t0 + a.duration;
    eprintln!(
        "soak of {base} for {}: {} streams, {} players, {} slow, {} garbage; seed {seed}",
        human(a.duration),
        a.streams,
        a.players,
        a.slow,
        a.garbage
    );

    // Publishers first, on their own thread; players join once every stream is published.
    let publishers = {
        let (synth, counters) = (a.stream.synth(), counters.clone());
        let (life, pause) = (a.publisher_life, a.publisher_pause);
        let rtmp = rtmp.clone();
        std::thread::Builder::new()
            .name("publishers".into())
            .spawn(move || {
                net::block_on(pub_io, 256, async move {
                    let tasks: Vec<_> = rtmp
                        .into_iter()
                        .enumerate()
                        .map(|(i, target)| {
                            let p = PublisherLoop {
                                io: pub_io,
                                target,
                                synth: synth.clone(),
                                life,
                                pause,
                                end,
                                counters: counters.clone(),
                                rng: Rng::new(seed, 0x2000_0000 + i as u64),
                                published: false,
                            };
                            net::spawn(p.run(i))
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })?
    };
    let give_up = Instant::now() + Duration::from_secs(15);
    while get(&counters.streams_up) < u64::from(a.streams) {
        if Instant::now() >= give_up {
            let err = counters.publisher_error.lock().ok().and_then(|e| e.clone());
            bail!(
                "only {} of {} streams were published within 15 s{}",
                get(&counters.streams_up),
                a.streams,
                err.map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let plan = Plan {
        io: player_io,
        targets,
        rtmp,
        players: u64::from(a.players),
        player_life: a.player_life,
        slow_hold: a.slow_hold,
        verify_every: a.verify_every,
        start: Instant::now(),
        end,
        ramp: a.ramp,
        seed,
        counters: counters.clone(),
    };
    let stats: Vec<Arc<ThreadStats>> = (0..threads).map(|_| Arc::default()).collect();
    let mut handles = Vec::new();
    for (t, stats) in stats.iter().enumerate() {
        let (plan, stats) = (plan.clone(), stats.clone());
        let (slow, garbage) = (u64::from(a.slow), u64::from(a.garbage));
        handles.push(
            std::thread::Builder::new()
                .name(format!("players-{t}"))
                .spawn(move || player_thread(plan, t, threads, slow, garbage, stats))?,
        );
    }

    // The sampler.
    let mut samples = Vec::new();
    let mut next = t0 + a.sample;
    let mut sample_error = None;
    while next <= end + Duration::from_millis(1) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let usage = match proc.as_ref().map(Proc::sample) {
            Some(Ok(u)) => Some(u),
            Some(Err(e)) => {
                sample_error.get_or_insert(format!("{e:#}"));
                None
            }
            None => None,
        };
        let errors = stats.iter().map(|s| get(&s.live.errors)).sum();
        let s = Sample {
            t_s: next.duration_since(t0).as_secs_f64(),
            rss_kib: usage.map(|u| u.rss_kib),
            fds: usage.map(|u| u.fds),
            players: get(&counters.players),
            publishers: get(&counters.publishers),
            slow: get(&counters.slow),
            garbage: get(&counters.garbage),
            integrity_errors: errors,
        };
        eprintln!(
            "[{:>6}] server RSS {} MiB, {} fds | players {} ({} sessions, {} integrity errors) | publishers {}/{} ({} sessions) | slow {}, garbage {}",
            human(next.duration_since(t0)),
            s.rss_kib
                .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            s.fds.map_or_else(|| "-".to_owned(), |f| f.to_string()),
            s.players,
            get(&counters.player_sessions),
            s.integrity_errors,
            s.publishers,
            a.streams,
            get(&counters.publisher_sessions),
            s.slow,
            s.garbage,
        );
        samples.push(s);
        next += a.sample;
    }
    let duration_s = t0.elapsed().as_secs_f64();

    let mut totals = Totals::default();
    let mut failures = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => totals.merge(&t),
            Ok(Err(e)) => failures.push(format!("a player thread failed: {e:#}")),
            Err(_) => failures.push("a player thread panicked".to_owned()),
        }
    }
    match publishers.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(format!("the publisher thread failed: {e:#}")),
        Err(_) => failures.push("the publisher thread panicked".to_owned()),
    }

    eprintln!("soak over; the final check: a fresh publisher and player");
    let final_accept = final_check(player_io, &base, a.stream.synth());
    let alive = proc.as_ref().map(Proc::alive);

    let server = judge(a, &samples, proc.is_some(), sample_error, alive);
    let merged = crate::merged(&stats);
    let t = &totals.tally;
    let integrity_errors = t.gaps + t.corrupt + t.out_of_order;
    if server.flat == Some(false) {
        failures.push(format!(
            "not flat: RSS {}, fds {} (growth tolerance {} %)",
            pct(server.rss_change_pct),
            pct(server.fds_change_pct),
            a.tolerance
        ));
    }
    if proc.is_some() && server.flat.is_none() {
        failures.push(format!("not measured: {}", server.verdict));
    }
    if integrity_errors > 0 {
        failures.push(format!(
            "{integrity_errors} integrity errors of well-behaved players"
        ));
    }
    if !final_accept.ok {
        failures.push(format!(
            "the final check failed: {}",
            final_accept.error.as_deref().unwrap_or("?")
        ));
    }
    if alive == Some(false) {
        failures.push("the server process is gone".to_owned());
    }
    let p99_lag = merged.lag.value_at_quantile(0.99) as f64 / 1000.0;
    let sessions = totals.by_end.clean
        + totals.by_end.refused
        + totals.by_end.reset
        + totals.by_end.timed_out
        + totals.by_end.error;
    let c = &counters;
    let report = SoakReport {
        url: base.clone(),
        duration_s,
        streams: a.streams,
        player_kinds: a.player_kind.clone(),
        bitrate_bps: a.stream.bitrate,
        seed,
        warmup_s: a.warmup.as_secs_f64(),
        sample_s: a.sample.as_secs_f64(),
        window_s: a.window.as_secs_f64(),
        tolerance_pct: a.tolerance,
        server,
        samples,
        players: SoakPlayers {
            concurrent: u64::from(a.players),
            sessions,
            connected: totals.connected,
            failed: totals.failed,
            by_end: totals.by_end.clone(),
            publisher_switches: t.switches,
        },
        integrity_errors,
        gaps: t.gaps,
        corrupt: t.corrupt,
        out_of_order: t.out_of_order,
        stalls: t.stalls,
        frames: t.frames,
        bytes: t.bytes,
        connect_ms: Percentiles::of(&merged.connect),
        ttff_ms: Percentiles::of(&merged.ttff),
        latency_ms: Percentiles::of(&merged.latency),
        publishers: Publishers {
            sessions: get(&c.publisher_sessions),
            refused: get(&c.publisher_refused),
            broken: get(&c.publisher_broken),
            last_error: c.publisher_error.lock().ok().and_then(|e| e.clone()),
        },
        slow: Slow {
            sessions: get(&c.slow_sessions),
            closed_by_server: get(&c.slow_closed),
            unplayed: get(&c.slow_unplayed),
        },
        garbage: Garbage {
            sessions: get(&c.garbage_sessions),
            closed_by_server: get(&c.garbage_closed),
            bytes: get(&c.garbage_bytes),
        },
        final_accept,
        harness: Harness {
            cpu_s: report::process_cpu_seconds() - cpu0,
            threads,
            io: player_io.name().to_owned(),
            lagging: p99_lag > 50.0,
            max_loop_lag_ms: merged.lag.max() as f64 / 1000.0,
            p99_loop_lag_ms: p99_lag,
            verify_every: a.verify_every,
        },
        pass: failures.is_empty(),
        failures,
    };
    print!("{}", report.text(a));
    if let Some(path) = &a.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.pass {
        eprintln!("the soak failed: {}", report.failures.join("; "));
    }
    Ok(report.pass)
}

/// The server process must be the only one listening on the port: with SO_REUSEPORT the
/// kernel would spread the soak's connections over several servers, and the one sampled
/// would see a part of them (and its players miss publishers that landed on another).
fn check_listeners(p: &Proc, pid: u32, port: u16) -> anyhow::Result<()> {
    let listeners = procfs::listeners_on(port);
    if listeners.is_empty() {
        // Not in this network namespace (or /proc/net is hidden): nothing to check.
        return Ok(());
    }
    let mine = p.socket_inodes().unwrap_or_default();
    let others = listeners.iter().filter(|i| !mine.contains(i)).count();
    if others > 0 {
        bail!(
            "port {port} has {others} listening socket(s) that process {pid} does not hold: \
             another server listens there too (SO_REUSEPORT would share the soak's \
             connections between them); stop it first"
        );
    }
    Ok(())
}

/// `rtmp://HOST[:PORT]/APP`, with an app and without a stream name.
fn check_base(base: &str) -> anyhow::Result<()> {
    let Some(rest) = base.strip_prefix("rtmp://") else {
        bail!("--url must be rtmp://HOST:PORT/APP, not {base:?}");
    };
    match rest.split_once('/') {
        Some((host, app)) if !host.is_empty() && !app.is_empty() => Ok(()),
        _ => bail!("--url {base:?} has no app: rtmp://HOST:PORT/APP"),
    }
}

/// One stream's publishers, one session after another until the end of the soak.
struct PublisherLoop {
    io: Io,
    target: Target,
    synth: Synth,
    life: Span,
    pause: Span,
    end: Instant,
    counters: Arc<Counters>,
    rng: Rng,
    /// A session of this stream has published.
    published: bool,
}

impl PublisherLoop {
    async fn run(mut self, index: usize) {
        // Staggered, so that the streams' keyframes do not line up.
        sleep(Duration::from_millis(37 * index as u64)).await;
        let c = self.counters.clone();
        let mut first = true;
        while first || Instant::now() < self.end {
            let now = Instant::now();
            let mut life = self.rng.within(self.life);
            if first {
                // The first sessions end at random points of a life, so that the streams'
                // leaves are spread out from the start.
                life = life.mul_f64(0.2 + 0.8 * self.rng.unit());
                first = false;
            }
            // Publishing goes on past the end until the last players are done.
            let until = (now + life).min(self.end + TAIL + Duration::from_secs(1));
            // Half of the publishers that leave before the end vanish without unpublishing.
            let vanish = self.rng.below(2) == 0 && until < self.end;
            let started = Rc::new(Cell::new(false));
            let on_start = {
                let (started, c) = (started.clone(), c.clone());
                let first_of_stream = !self.published;
                move || {
                    started.set(true);
                    up(&c.publishers);
                    bump(&c.publisher_sessions, 1);
                    if first_of_stream {
                        up(&c.streams_up);
                    }
                }
            };
            let (io, target, synth) = (self.io, self.target.clone(), self.synth.clone());
            let res = if vanish {
                let far = until + Duration::from_secs(3600);
                let publish = publisher::synthetic(io, target, synth, far, on_start);
                timeout_at(until.into(), publish)
                    .await
                    .map_or(Ok(()), |r| r.map(drop))
            } else {
                publisher::synthetic(io, target, synth, until, on_start)
                    .await
                    .map(drop)
            };
            if started.get() {
                self.published = true;
                down(&c.publishers);
            }
            if let Err(e) = res {
                bump(
                    if started.get() {
                        &c.publisher_broken
                    } else {
                        &c.publisher_refused
                    },
                    1,
                );
                let msg = format!("{}: {e:#}", self.target.stream);
                if let Ok(mut last) = c.publisher_error.lock() {
                    *last = Some(msg);
                }
            }
            if Instant::now() >= self.end {
                break;
            }
            sleep(self.rng.within(self.pause)).await;
        }
    }
}

/// One player thread: its share of the well-behaved player slots, slow players and
/// garbage peers, and the ticker that measures its own lag.
fn player_thread(
    plan: Plan,
    t: usize,
    threads: usize,
    slow: u64,
    garbage: u64,
    stats: Arc<ThreadStats>,
) -> anyhow::Result<Totals> {
    let step = threads as u64;
    let slots: Vec<u64> = (t as u64..plan.players).step_by(threads).collect();
    let slow: Vec<u64> = (t as u64..slow).step_by(threads).collect();
    let garbage: Vec<u64> = (t as u64..garbage).step_by(threads).collect();
    let entries = ((slots.len() + slow.len() + garbage.len()) as u32 * 2 + 64)
        .clamp(256, 16_384)
        .next_power_of_two();
    net::block_on(plan.io, entries, async move {
        let end = plan.end;
        let plan = Rc::new(plan);
        net::spawn(crate::ticker(stats.clone(), end + TAIL));
        let ids = Rc::new(Cell::new(t as u64));
        let tasks: Vec<_> = slots
            .into_iter()
            .map(|slot| {
                let s = PlayerSlot {
                    plan: plan.clone(),
                    stats: stats.clone(),
                    ids: ids.clone(),
                    step,
                    rng: Rng::new(plan.seed, 0x1000_0000 + slot),
                };
                net::spawn(s.run(slot))
            })
            .collect();
        // The slow players' own figures stay out of the report.
        let peer_stats = Arc::new(ThreadStats::default());
        let mut peers = Vec::new();
        for i in slow {
            peers.push(net::spawn(crate::peers::slow(
                plan.clone(),
                peer_stats.clone(),
                i,
            )));
        }
        for i in garbage {
            peers.push(net::spawn(crate::peers::garbage(plan.clone(), i)));
        }
        let mut totals = Totals::default();
        for task in tasks {
            if let Ok(t) = task.await {
                totals.merge(&t);
            }
        }
        for p in peers {
            let _ = p.await;
        }
        totals
    })
}

/// One well-behaved player slot: a player session after another until the end.
struct PlayerSlot {
    plan: Rc<Plan>,
    stats: Arc<ThreadStats>,
    /// The next player id of this thread (ids are unique across threads: `t + k*step`).
    ids: Rc<Cell<u64>>,
    step: u64,
    rng: Rng,
}

impl PlayerSlot {
    async fn run(mut self, slot: u64) -> Totals {
        let plan = self.plan.clone();
        let mut totals = Totals::default();
        let at = plan.start + Duration::from_secs_f64(slot as f64 / plan.ramp);
        sleep_until(at.into()).await;
        let mut turn = slot as usize;
        while Instant::now() < plan.end {
            let stream = self.rng.below(plan.targets[0].len() as u64) as usize;
            let kind = turn % plan.targets.len();
            turn += 1;
            let now = Instant::now();
            let left = plan.end.saturating_duration_since(now);
            let life = self.rng.within(plan.player_life).min(left.max(TAIL));
            let ctx = Rc::new(Ctx {
                io: plan.io,
                target: plan.targets[kind][stream].clone(),
                deadline: now + life,
                stats: self.stats.clone(),
                verify_every: plan.verify_every,
            });
            let id = self.ids.get();
            self.ids.set(id.wrapping_add(self.step));
            up(&plan.counters.players);
            bump(&plan.counters.player_sessions, 1);
            let (started, end, tally) = player::play(ctx, id).await;
            down(&plan.counters.players);
            totals.add(started, end, &tally);
            sleep(self.rng.within(REJOIN)).await;
        }
        totals
    }
}

/// After the soak: can a fresh publisher still publish a new stream, and a fresh player
/// play it intact?
fn final_check(io: Io, base: &str, synth: Synth) -> FinalAccept {
    let url = format!("{base}/soak-final");
    let mut out = FinalAccept {
        ok: false,
        url: url.clone(),
        published: false,
        played: false,
        end: None,
        frames: 0,
        integrity_errors: 0,
        error: None,
    };
    let target = match Target::parse(&url) {
        Ok(t) => t,
        Err(e) => {
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    let res = std::thread::spawn(move || {
        net::block_on(io, 256, async move {
            let started = Rc::new(Cell::new(false));
            let until = Instant::now() + Duration::from_secs(20);
            let on_start = {
                let started = started.clone();
                move || started.set(true)
            };
            let publisher = net::spawn(publisher::synthetic(
                io,
                target.clone(),
                synth,
                until,
                on_start,
            ));
            let give_up = Instant::now() + Duration::from_secs(10);
            while !started.get() {
                if publisher.is_finished() {
                    let why = match publisher.await {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "it ended".to_owned(),
                    };
                    return Err(format!("the publisher did not start: {why}"));
                }
                if Instant::now() >= give_up {
                    publisher.abort();
                    return Err("the publisher did not start within 10 s".to_owned());
                }
                sleep(Duration::from_millis(20)).await;
            }
            let ctx = Rc::new(Ctx {
                io,
                target,
                deadline: Instant::now() + FINAL_PLAY,
                stats: Arc::new(ThreadStats::default()),
                verify_every: 1,
            });
            let played = player::play(ctx, u64::MAX / 2).await;
            publisher.abort();
            Ok(played)
        })
    })
    .join();
    match res {
        Ok(Ok(Ok((played, end, tally)))) => {
            out.published = true;
            out.played = played;
            out.end = Some(end.name().to_owned());
            out.frames = tally.frames;
            out.integrity_errors = tally.gaps + tally.corrupt + tally.out_of_order;
            out.ok = played && end == End::Clean && tally.frames > 0 && out.integrity_errors == 0;
            if !out.ok {
                out.error = Some(format!(
                    "the player {} and ended {}, {} frames, {} integrity errors",
                    if played {
                        "played"
                    } else {
                        "never reached playback"
                    },
                    end.name(),
                    tally.frames,
                    out.integrity_errors
                ));
            }
        }
        Ok(Ok(Err(e))) => out.error = Some(e),
        Ok(Err(e)) => out.error = Some(format!("{e:#}")),
        Err(_) => out.error = Some("the final check panicked".to_owned()),
    }
    out
}

/// The lowest and the median RSS and fds of the samples in the window of `window` ending
/// at `t` (the sample nearest `t` when the window holds none). The lowest is the level: a
/// server's RSS swings with what it queues at the moment (a slow player's queue holds up to
/// `player_queue_bytes` until the player is closed), while a leak raises the floor.
fn level(samples: &[Sample], t: Duration, window: Duration) -> Option<Level> {
    let (t, w) = (t.as_secs_f64(), window.as_secs_f64());
    let measured: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.rss_kib.is_some() && s.fds.is_some())
        .collect();
    let mut inside: Vec<&Sample> = measured
        .iter()
        .copied()
        .filter(|s| s.t_s <= t + 1e-3 && s.t_s >= t - w - 1e-3)
        .collect();
    if inside.is_empty() {
        let nearest = measured
            .iter()
            .copied()
            .min_by(|a, b| (a.t_s - t).abs().total_cmp(&(b.t_s - t).abs()))?;
        inside.push(nearest);
    }
    let sorted = |f: fn(&Sample) -> u64| {
        let mut v: Vec<u64> = inside.iter().map(|s| f(s)).collect();
        v.sort_unstable();
        v
    };
    let median = |v: &[u64]| {
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
        }
    };
    let rss = sorted(|s| s.rss_kib.unwrap_or(0));
    let fds = sorted(|s| s.fds.unwrap_or(0));
    Some(Level {
        t_s: t,
        samples: inside.len(),
        rss_kib: rss[0],
        fds: fds[0],
        rss_kib_median: median(&rss),
        fds_median: median(&fds),
    })
}

/// Change from `from` to `to`, %.
fn change(from: f64, to: f64) -> f64 {
    if from > 0.0 {
        (to - from) / from * 100.0
    } else {
        0.0
    }
}

/// The verdict on the samples.
fn judge(
    a: &SoakArgs,
    samples: &[Sample],
    measured: bool,
    sample_error: Option<String>,
    alive: Option<bool>,
) -> Server {
    let mut s = Server {
        pid: a.server_pid,
        warm: None,
        end: None,
        rss_change_pct: None,
        fds_change_pct: None,
        flat: None,
        verdict: String::new(),
        alive,
    };
    if !measured {
        s.verdict = "not measured (no --server-pid)".to_owned();
        return s;
    }
    s.warm = level(samples, a.warmup, a.window);
    s.end = level(samples, a.duration, a.window);
    let (Some(w), Some(e)) = (s.warm, s.end) else {
        s.verdict = format!(
            "not measured: {}",
            sample_error.unwrap_or_else(|| "no samples".to_owned())
        );
        return s;
    };
    if sample_error.is_some() && alive == Some(false) {
        s.verdict = format!(
            "not measured: the server went away ({})",
            sample_error.unwrap_or_default()
        );
        return s;
    }
    let rss = change(w.rss_kib as f64, e.rss_kib as f64);
    let fds = change(w.fds as f64, e.fds as f64);
    s.rss_change_pct = Some(rss);
    s.fds_change_pct = Some(fds);
    let flat = rss <= a.tolerance && fds <= a.tolerance;
    s.flat = Some(flat);
    s.verdict = if flat { "flat" } else { "not flat" }.to_owned();
    if flat && (rss < -a.tolerance || fds < -a.tolerance) {
        s.verdict.push_str(" (it fell)");
    }
    s
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:+.1} %"))
}

/// `90s` → `1m30s`; whole seconds (milliseconds below a second).
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = (ms + 500) / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

impl SoakReport {
    /// The human report printed at the end.
    pub fn text(&self, a: &SoakArgs) -> String {
        let mut s = String::new();
        let kinds: Vec<&str> = self.player_kinds.iter().map(|k| k.name()).collect();
        s.push_str(&format!(
            "soak             {} for {}: {} streams at {:.0} kbit/s, {} players ({}) living {}, publishers living {} with {} pauses, {} slow, {} garbage; seed {}\n",
            self.url,
            human(Duration::from_secs_f64(self.duration_s)),
            self.streams,
            self.bitrate_bps as f64 / 1000.0,
            self.players.concurrent,
            kinds.join(","),
            a.player_life,
            a.publisher_life,
            a.publisher_pause,
            a.slow,
            a.garbage,
            self.seed
        ));
        s.push_str("samples               t    RSS MiB      fds  players  publishers  slow  garbage  errors\n");
        let n = self.samples.len();
        let every = n.div_ceil(TABLE_ROWS).max(1);
        let warm_at = self.warmup_s;
        let warm_row = self
            .samples
            .iter()
            .position(|x| x.t_s >= warm_at - 1e-3)
            .unwrap_or(0);
        for (i, x) in self.samples.iter().enumerate() {
            if i % every != 0 && i + 1 != n && i != warm_row {
                continue;
            }
            s.push_str(&format!(
                "                 {:>7} {:>10} {:>8} {:>8} {:>11} {:>5} {:>8} {:>7}{}\n",
                human(Duration::from_secs_f64(x.t_s)),
                x.rss_kib
                    .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
                x.fds.map_or_else(|| "-".to_owned(), |f| f.to_string()),
                x.players,
                x.publishers,
                x.slow,
                x.garbage,
                x.integrity_errors,
                if i == warm_row {
                    "  <- end of warm-up"
                } else {
                    ""
                }
            ));
        }
        let sv = &self.server;
        match (sv.warm, sv.end) {
            (Some(w), Some(e)) => {
                s.push_str(&format!(
                    "server           pid {}: {} (growth tolerance {} %){}; the lowest sample of the {} windows ending at {} and at {}:\n",
                    sv.pid.unwrap_or(0),
                    sv.verdict,
                    self.tolerance_pct,
                    match sv.alive {
                        Some(false) => ", the process is gone",
                        _ => "",
                    },
                    human(Duration::from_secs_f64(self.window_s)),
                    human(Duration::from_secs_f64(w.t_s)),
                    human(Duration::from_secs_f64(e.t_s)),
                ));
                s.push_str(&format!(
                    "                 RSS {} -> {} ({}), fds {} -> {} ({}); medians: RSS {} -> {}, fds {:.1} -> {:.1}\n",
                    mib(w.rss_kib as f64),
                    mib(e.rss_kib as f64),
                    pct(sv.rss_change_pct),
                    w.fds,
                    e.fds,
                    pct(sv.fds_change_pct),
                    mib(w.rss_kib_median),
                    mib(e.rss_kib_median),
                    w.fds_median,
                    e.fds_median,
                ));
            }
            _ => s.push_str(&format!("server           {}\n", sv.verdict)),
        }
        let p = &self.players;
        s.push_str(&format!(
            "players          {} sessions, {} at a time: {} connected, {} failed (clean {}, refused {}, reset {}, timed out {}, error {}); {} publisher switches played across\n",
            p.sessions,
            p.concurrent,
            p.connected,
            p.failed,
            p.by_end.clean,
            p.by_end.refused,
            p.by_end.reset,
            p.by_end.timed_out,
            p.by_end.error,
            p.publisher_switches
        ));
        s.push_str(&format!(
            "delivered        {:.1} MB, {} frames\n",
            self.bytes as f64 / 1e6,
            self.frames
        ));
        s.push_str(&percentile_table(&[
            ("connect", &self.connect_ms),
            ("ttff", &self.ttff_ms),
            ("latency", &self.latency_ms),
        ]));
        s.push_str(&format!(
            "integrity        {} errors ({} gaps, {} corrupt, {} out of order), {} stalls\n",
            self.integrity_errors, self.gaps, self.corrupt, self.out_of_order, self.stalls
        ));
        let pb = &self.publishers;
        s.push_str(&format!(
            "publishers       {} sessions, {} refused, {} broken{}\n",
            pb.sessions,
            pb.refused,
            pb.broken,
            pb.last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        ));
        s.push_str(&format!(
            "slow players     {} sessions, {} closed by the server, {} never played\n",
            self.slow.sessions, self.slow.closed_by_server, self.slow.unplayed
        ));
        s.push_str(&format!(
            "garbage peers    {} sessions, {} closed by the server, {:.1} kB sent\n",
            self.garbage.sessions,
            self.garbage.closed_by_server,
            self.garbage.bytes as f64 / 1e3
        ));
        let f = &self.final_accept;
        s.push_str(&format!(
            "final accept     {}: a fresh publisher and player of {}, {} frames{}\n",
            if f.ok { "ok" } else { "FAILED" },
            f.url,
            f.frames,
            f.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        let h = &self.harness;
        s.push_str(&format!(
            "harness          {:.2} CPU s, {} {} threads, loop lag p99 {:.1} ms max {:.1} ms{}\n",
            h.cpu_s,
            h.threads,
            h.io,
            h.p99_loop_lag_ms,
            h.max_loop_lag_ms,
            if h.lagging {
                "  ** the harness fell behind **"
            } else {
                ""
            }
        ));
        if self.pass {
            s.push_str("result           PASS\n");
        } else {
            s.push_str(&format!(
                "result           FAIL: {}\n",
                self.failures.join("; ")
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, rss: u64, fds: u64) -> Sample {
        Sample {
            t_s,
            rss_kib: Some(rss),
            fds: Some(fds),
            players: 0,
            publishers: 0,
            slow: 0,
            garbage: 0,
            integrity_errors: 0,
        }
    }

    #[test]
    fn levels_are_the_floor_of_their_window() {
        let samples: Vec<Sample> = (1..=12u32)
            .map(|i| {
                sample(
                    f64::from(i) * 5.0,
                    1000 + u64::from(i),
                    100 + u64::from(i % 2),
                )
            })
            .collect();
        let secs = Duration::from_secs;
        // The window [15 s, 30 s]: samples at 15, 20, 25, 30 s.
        let l = level(&samples, secs(30), secs(15)).expect("level");
        assert_eq!(l.samples, 4);
        assert_eq!((l.rss_kib, l.rss_kib_median), (1003, 1004.5));
        assert_eq!((l.fds, l.fds_median), (100, 100.5));
        // A window too short for a sample takes the nearest one.
        let l = level(&samples, secs(31), Duration::ZERO).expect("level");
        assert_eq!((l.samples, l.rss_kib), (1, 1006));
        assert!(level(&[], secs(30), secs(15)).is_none());
    }

    #[test]
    fn changes_and_durations_read_well() {
        assert_eq!(change(100.0, 105.0), 5.0);
        assert_eq!(change(200.0, 190.0), -5.0);
        assert_eq!(change(0.0, 10.0), 0.0);
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(1800)), "30m");
        assert_eq!(human(Duration::from_secs(15)), "15s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn the_random_source_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7, 1), Rng::new(7, 1));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::new(7, 1).next_u64(), Rng::new(7, 2).next_u64());
        let span = Span {
            lo: Duration::from_secs(5),
            hi: Duration::from_secs(60),
        };
        for _ in 0..1000 {
            assert!(a.below(3) < 3);
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            let d = a.within(span);
            assert!(d >= span.lo && d <= span.hi);
        }
        assert_eq!(a.bytes(13).len(), 13);
    }

    #[test]
    fn the_base_url_needs_an_app() {
        assert!(check_base("rtmp://127.0.0.1:1935/live").is_ok());
        assert!(check_base("rtmp://127.0.0.1:1935").is_err());
        assert!(check_base("http://127.0.0.1/live").is_err());
    }
}
