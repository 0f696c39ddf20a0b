//! What the harness measures, how per-thread figures merge, and the report it prints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// How a player's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It played until the end of the run.
    Clean,
    /// The server refused it: TCP refused, an RTMP `_error`/error `onStatus`, or an HTTP
    /// error status.
    Refused,
    /// The connection was reset or closed by the server before the end.
    Reset,
    /// Connecting, the handshake, or the start of playback took too long, or the stream went
    /// silent for good.
    TimedOut,
    /// A protocol error (malformed data from the server).
    Error,
}

impl End {
    /// The name used in reports (the `by_end` keys).
    pub fn name(self) -> &'static str {
        match self {
            End::Clean => "clean",
            End::Refused => "refused",
            End::Reset => "reset",
            End::TimedOut => "timed_out",
            End::Error => "error",
        }
    }
}

/// A new histogram of microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// One player's tallies.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlayerTally {
    /// Video frames received.
    pub frames: u64,
    /// Media bytes received (all bytes read off the socket).
    pub bytes: u64,
    /// Gaps of more than 1 s without media.
    pub stalls: u64,
    /// Frames missing from the sequence.
    pub gaps: u64,
    /// Frames whose checksum did not match.
    pub corrupt: u64,
    /// Frames that arrived with a sequence number at or below one already seen, or from a
    /// publisher session that had already given way to a newer one.
    pub out_of_order: u64,
    /// Times the player moved on to a new publisher session (a publisher left and another
    /// took the stream) while it played.
    pub switches: u64,
}

/// Figures one runtime thread gathers; the progress printer and the final report merge them.
pub struct ThreadStats {
    /// Latency, connect and time-to-first-frame histograms (µs).
    pub hist: Mutex<Hists>,
    /// Live counters (progress line).
    pub live: Live,
}

/// The histograms of one thread.
pub struct Hists {
    /// End-to-end latency of every stamped video frame, µs.
    pub latency: Histogram<u64>,
    /// TCP connect + RTMP handshake (or HTTP response headers), µs.
    pub connect: Histogram<u64>,
    /// Connect start to the first video keyframe, µs.
    pub ttff: Histogram<u64>,
    /// How late the thread's 100 ms ticker woke, µs: the harness's own lag.
    pub loop_lag: Histogram<u64>,
}

/// Counters read while the run goes on.
#[derive(Default)]
pub struct Live {
    /// Players that started playback.
    pub connected: AtomicU64,
    /// Players that ended before the end of the run, or never started.
    pub failed: AtomicU64,
    /// Bytes received by players.
    pub bytes: AtomicU64,
    /// Video frames received.
    pub frames: AtomicU64,
    /// Integrity errors (gaps + corrupt + out of order).
    pub errors: AtomicU64,
    /// Stalls.
    pub stalls: AtomicU64,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            hist: Mutex::new(Hists {
                latency: histogram(),
                connect: histogram(),
                ttff: histogram(),
                loop_lag: histogram(),
            }),
            live: Live::default(),
        }
    }
}

/// Per-end-reason player counts.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ByEnd {
    /// Played to the end.
    pub clean: u64,
    /// Refused by the server.
    pub refused: u64,
    /// Reset or closed early.
    pub reset: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Protocol error.
    pub error: u64,
}

impl ByEnd {
    /// Counts one player's end.
    pub fn add(&mut self, end: End) {
        match end {
            End::Clean => self.clean += 1,
            End::Refused => self.refused += 1,
            End::Reset => self.reset += 1,
            End::TimedOut => self.timed_out += 1,
            End::Error => self.error += 1,
        }
    }
}

/// Totals merged over all players (kept per thread, summed at the end).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Players that reached playback.
    pub connected: u64,
    /// Players that did not reach playback or ended early.
    pub failed: u64,
    /// End reasons.
    pub by_end: ByEnd,
    /// Summed tallies.
    pub tally: PlayerTally,
}

impl Totals {
    /// Adds one finished player.
    pub fn add(&mut self, started: bool, end: End, t: &PlayerTally) {
        if started {
            self.connected += 1;
        }
        if !started || end != End::Clean {
            self.failed += 1;
        }
        self.by_end.add(end);
        self.tally.frames += t.frames;
        self.tally.bytes += t.bytes;
        self.tally.stalls += t.stalls;
        self.tally.gaps += t.gaps;
        self.tally.corrupt += t.corrupt;
        self.tally.out_of_order += t.out_of_order;
        self.tally.switches += t.switches;
    }

    /// Merges another thread's totals.
    pub fn merge(&mut self, o: &Totals) {
        self.connected += o.connected;
        self.failed += o.failed;
        self.by_end.clean += o.by_end.clean;
        self.by_end.refused += o.by_end.refused;
        self.by_end.reset += o.by_end.reset;
        self.by_end.timed_out += o.by_end.timed_out;
        self.by_end.error += o.by_end.error;
        self.tally.frames += o.tally.frames;
        self.tally.bytes += o.tally.bytes;
        self.tally.stalls += o.tally.stalls;
        self.tally.gaps += o.tally.gaps;
        self.tally.corrupt += o.tally.corrupt;
        self.tally.out_of_order += o.tally.out_of_order;
        self.tally.switches += o.tally.switches;
    }
}

/// Percentiles of a histogram of µs, reported in ms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, ms.
    pub p50: Option<f64>,
    /// 90th percentile, ms.
    pub p90: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// 99.9th percentile, ms.
    pub p999: Option<f64>,
    /// Maximum, ms.
    pub max: Option<f64>,
}

impl Percentiles {
    /// The percentiles of `h` (µs) in ms; all `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let count = h.len();
        let q = |q: f64| (count > 0).then(|| h.value_at_quantile(q) as f64 / 1000.0);
        Percentiles {
            count,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: (count > 0).then(|| h.max() as f64 / 1000.0),
        }
    }
}

/// Player counts in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Players {
    /// Players that reached playback.
    pub connected: u64,
    /// Players that never reached playback or ended early.
    pub failed: u64,
    /// How each player ended.
    pub by_end: ByEnd,
}

/// The harness's account of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Harness {
    /// CPU seconds (user + system) the loadtest process used.
    pub cpu_s: f64,
    /// Runtime threads.
    pub threads: usize,
    /// The IO backend: `uring` or `epoll`.
    pub io: String,
    /// True when the harness's own loops ran late (p99 ticker lag over 50 ms): its
    /// latency figures then include its own delay, not only the server's.
    pub lagging: bool,
    /// Worst ticker lag seen, ms.
    pub max_loop_lag_ms: f64,
    /// 99th percentile ticker lag, ms.
    pub p99_loop_lag_ms: f64,
    /// Each player hashed one video frame in this many (`--verify-every`); every frame's
    /// stamp was checked.
    pub verify_every: u64,
}

/// The JSON report (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The URL played.
    pub url: String,
    /// Players asked for.
    pub players_requested: u64,
    /// Wall-clock seconds from the first connect to the end.
    pub duration_s: f64,
    /// The publisher's video bitrate (bit/s), when this process published.
    pub bitrate_bps: Option<u64>,
    /// Player outcomes.
    pub players: Players,
    /// TCP connect + handshake, ms.
    pub connect_ms: Percentiles,
    /// Connect start to first video keyframe, ms.
    pub ttff_ms: Percentiles,
    /// End-to-end latency of stamped video frames (receive time minus send time), ms.
    pub latency_ms: Percentiles,
    /// Gaps of over 1 s without media.
    pub stalls: u64,
    /// Gaps + corrupt + out-of-order frames.
    pub integrity_errors: u64,
    /// Frames missing from the sequence.
    pub gaps: u64,
    /// Frames whose checksum failed.
    pub corrupt: u64,
    /// Frames out of order.
    pub out_of_order: u64,
    /// Video frames received by all players.
    pub frames: u64,
    /// Bytes received by all players.
    pub bytes: u64,
    /// Delivered throughput, Mbit/s.
    pub mbit_per_s: f64,
    /// The harness itself.
    pub harness: Harness,
    /// One entry per second of the run (what `--report` plots).
    #[serde(default)]
    pub timeline: Vec<Second>,
    /// The time-to-first-frame distribution: (ms, fraction of players at or under it).
    #[serde(default)]
    pub ttff_cdf_ms: Vec<(f64, f64)>,
}

/// One second of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Second {
    /// Seconds since the first connect.
    pub t_s: f64,
    /// Players that started playback so far.
    pub connected: u64,
    /// Players that failed so far.
    pub failed: u64,
    /// What the players received in that second, Gbit/s.
    pub gbit_per_s: f64,
    /// Latency of the frames received in that second, ms (none when no frame arrived).
    pub latency_p50_ms: Option<f64>,
    /// The same, p99.
    pub latency_p99_ms: Option<f64>,
    /// The same, the worst.
    pub latency_max_ms: Option<f64>,
}

/// The points of a cumulative distribution of `h` (µs) in ms, 100 quantiles and the max.
pub fn cdf_ms(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|i| {
            let q = f64::from(i) / 100.0;
            (h.value_at_quantile(q) as f64 / 1000.0, q)
        })
        .collect()
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The reports' table of percentiles, one row per named distribution (in ms).
pub(crate) fn percentile_table(rows: &[(&str, &Percentiles)]) -> String {
    let mut s =
        String::from("                 count      p50      p90      p99    p99.9      max  (ms)\n");
    for (name, q) in rows {
        s.push_str(&format!(
            "{name:<12} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            q.count,
            ms(q.p50),
            ms(q.p90),
            ms(q.p99),
            ms(q.p999),
            ms(q.max)
        ));
    }
    s
}

impl Report {
    /// The human summary printed at the end.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let p = &self.players;
        s.push_str(&format!("url              {}\n", self.url));
        s.push_str(&format!(
            "players          {} requested, {} connected, {} failed (clean {}, refused {}, reset {}, timed out {}, error {})\n",
            self.players_requested,
            p.connected,
            p.failed,
            p.by_end.clean,
            p.by_end.refused,
            p.by_end.reset,
            p.by_end.timed_out,
            p.by_end.error
        ));
        s.push_str(&format!(
            "delivered        {:.1} MB in {:.1} s = {:.1} Mbit/s, {} frames\n",
            self.bytes as f64 / 1e6,
            self.duration_s,
            self.mbit_per_s,
            self.frames
        ));
        s.push_str(&percentile_table(&[
            ("connect", &self.connect_ms),
            ("ttff", &self.ttff_ms),
            ("latency", &self.latency_ms),
        ]));
        s.push_str(&format!(
            "integrity        {} errors ({} gaps, {} corrupt, {} out of order), {} stalls{}\n",
            self.integrity_errors,
            self.gaps,
            self.corrupt,
            self.out_of_order,
            self.stalls,
            match self.harness.verify_every {
                1 => String::new(),
                n => format!("; each player hashed 1 frame in {n}"),
            }
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
                "  ** the harness fell behind: latency figures include its own delay **"
            } else {
                ""
            }
        ));
        s
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // CLK_TCK is 100 on Linux for every architecture the kernel builds userspace ABI for.
    (ticks(11) + ticks(12)) / 100.0
}

/// Adds `v` to an atomic counter.
pub fn bump(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_ms_and_empty_is_none() {
        let mut h = histogram();
        assert_eq!(
            Percentiles::of(&h),
            Percentiles {
                count: 0,
                p50: None,
                p90: None,
                p99: None,
                p999: None,
                max: None
            }
        );
        for v in 1..=1000u64 {
            h.saturating_record(v * 1000); // 1..=1000 ms
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        let near = |a: Option<f64>, b: f64| (a.unwrap_or(-1.0) - b).abs() <= b * 0.002 + 0.01;
        assert!(near(p.p50, 500.0), "{p:?}");
        assert!(near(p.p90, 900.0), "{p:?}");
        assert!(near(p.p99, 990.0), "{p:?}");
        assert!(near(p.p999, 999.0), "{p:?}");
        assert!(near(p.max, 1000.0), "{p:?}");
    }

    #[test]
    fn totals_count_failures_and_merge() {
        let t = PlayerTally {
            frames: 10,
            bytes: 1000,
            stalls: 1,
            gaps: 2,
            corrupt: 3,
            out_of_order: 4,
            switches: 1,
        };
        let mut a = Totals::default();
        a.add(true, End::Clean, &t);
        a.add(true, End::Reset, &t);
        a.add(false, End::Refused, &PlayerTally::default());
        assert_eq!((a.connected, a.failed), (2, 2));
        let mut b = Totals::default();
        b.add(false, End::TimedOut, &PlayerTally::default());
        a.merge(&b);
        assert_eq!((a.connected, a.failed), (2, 3));
        assert_eq!(
            a.by_end,
            ByEnd {
                clean: 1,
                refused: 1,
                reset: 1,
                timed_out: 1,
                error: 0
            }
        );
        assert_eq!(a.tally.frames, 20);
        assert_eq!(a.tally.gaps + a.tally.corrupt + a.tally.out_of_order, 18);
        assert_eq!(a.tally.switches, 2);
    }

    #[test]
    fn cpu_seconds_is_readable() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(process_cpu_seconds() >= 0.0);
    }
}
