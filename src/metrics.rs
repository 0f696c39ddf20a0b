//! Metric names and the Prometheus exporter.
//!
//! Figures are recorded with the `metrics` crate into one process-wide
//! `metrics-exporter-prometheus` recorder (no HTTP listener of its own: `GET /metrics` on
//! ringcast's HTTP port renders it). Each core registers its own handles once, labelled with
//! its `core`, and keeps them in [`CoreMetrics`]: recording is an atomic add on a handle no
//! other core writes, with no lookup and no lock on the per-frame path. Connection figures
//! are added as they happen (bytes per read or write batch), not at close.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of the latency histograms, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The player protocols, as the `proto` label spells them.
pub const PROTOS: [&str; 3] = ["rtmp", "http_flv", "ws_flv"];

/// The process-wide exporter handle, installing the recorder on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test harness embedding the server): the
        // handle still renders what ours records, which is nothing then.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "ringcast_connections",
        "Open connections by protocol and role."
    );
    describe_counter!("ringcast_connections_total", "Connections accepted.");
    describe_counter!(
        "ringcast_connections_closed_total",
        "Connections closed, by reason."
    );
    describe_gauge!("ringcast_streams", "Streams published on this core.");
    describe_counter!("ringcast_bytes_received_total", "Bytes read from peers.");
    describe_counter!("ringcast_bytes_sent_total", "Bytes written to peers.");
    describe_counter!(
        "ringcast_writes_total",
        "Writes to peers (one vectored write each): bytes sent / writes is the batch size."
    );
    describe_counter!(
        "ringcast_frames_total",
        "Messages received from publishers, by kind."
    );
    describe_histogram!(
        "ringcast_delivery_latency_seconds",
        "From a message fully received from its publisher to its bytes handed to a player's socket (one sample per write batch, its oldest frame)."
    );
    describe_histogram!(
        "ringcast_time_to_first_frame_seconds",
        "From a play request to its first frame handed to the socket."
    );
    describe_counter!(
        "ringcast_frames_dropped_total",
        "Frames players skipped for being behind (slow-player policy)."
    );
    describe_counter!(
        "ringcast_slow_players_closed_total",
        "Players closed for staying behind."
    );
    describe_gauge!(
        "ringcast_gop_cache_bytes",
        "Bytes the GOP caches of this core hold."
    );
    describe_counter!(
        "ringcast_publish_refused_total",
        "Publishes refused, by reason."
    );
    describe_counter!("ringcast_play_refused_total", "Plays refused, by reason.");
    describe_gauge!(
        "ringcast_core_busy_seconds",
        "CPU time the core's thread has used (user + system), cumulative."
    );
    describe_counter!(
        "ringcast_cross_core_frames_dropped_total",
        "Frames not sent to another core whose inbox stayed full."
    );
    describe_counter!(
        "ringcast_accept_errors_total",
        "Failed accepts (descriptors out included)."
    );
    describe_gauge!(
        "ringcast_relays",
        "Relay connections up, by direction (pull, push)."
    );
    describe_counter!(
        "ringcast_relay_reconnects_total",
        "Relay connections re-established after they broke, by direction."
    );
    describe_counter!(
        "ringcast_relay_bytes_total",
        "Bytes relays moved: read from origins (pull), written upstream (push)."
    );
    describe_gauge!("ringcast_process_resident_memory_bytes", "Resident memory.");
    describe_gauge!("ringcast_process_open_fds", "Open file descriptors.");
    describe_gauge!("ringcast_process_max_fds", "The file descriptor limit.");
    describe_gauge!("ringcast_process_uptime_seconds", "Seconds since start.");
    describe_gauge!("ringcast_build_info", "Always 1; the version is a label.");
}

/// Process figures, read at scrape time, then everything rendered in the Prometheus text
/// format.
pub fn render(started: Instant) -> String {
    let h = handle();
    h.run_upkeep();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    gauge!("ringcast_process_resident_memory_bytes").set(rss_kib * 1024.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    gauge!("ringcast_process_open_fds").set(fds as f64);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    gauge!("ringcast_process_max_fds").set(max_fds);
    gauge!("ringcast_process_uptime_seconds").set(started.elapsed().as_secs_f64());
    gauge!("ringcast_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    h.render()
}

/// The `reason` labels of `ringcast_connections_closed_total`.
pub const CLOSE_REASONS: [&str; 7] = [
    "peer_closed",
    "slow_player",
    "timeout",
    "protocol_error",
    "refused",
    "server",
    "closed",
];
/// The `reason` labels of `ringcast_publish_refused_total`.
pub const PUBLISH_REFUSALS: [&str; 6] = [
    "name_in_use",
    "busy",
    "relay_loop",
    "auth_address",
    "auth_signature",
    "auth_hook",
];
/// The `reason` labels of `ringcast_play_refused_total`.
pub const PLAY_REFUSALS: [&str; 7] = [
    "not_found",
    "busy",
    "not_live",
    "relay_loop",
    "auth_address",
    "auth_signature",
    "auth_hook",
];

/// The per-stream part of the exposition (`metrics_streams`): for at most `n` of
/// `streams`, those with the most players, their players by protocol, ingest bitrate and
/// GOP cache bytes, labelled `app` and `stream`. Computed at scrape time from the cores'
/// reports, so a stream that ended leaves no series behind.
pub fn render_streams(streams: &[crate::hub::StreamReport], n: usize) -> String {
    let mut top: Vec<&crate::hub::StreamReport> = streams.iter().collect();
    top.sort_by_key(|s| std::cmp::Reverse(s.players.values().sum::<usize>()));
    top.truncate(n);
    if top.is_empty() {
        return String::new();
    }
    let label = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let names = |key: &str| {
        let (app, stream) = key.split_once('/').unwrap_or((key, ""));
        format!("app=\"{}\",stream=\"{}\"", label(app), label(stream))
    };
    let mut out = String::new();
    out.push_str("# HELP ringcast_stream_players Players of a stream by protocol (the metrics_streams streams with the most players).\n");
    out.push_str("# TYPE ringcast_stream_players gauge\n");
    for s in &top {
        for proto in PROTOS {
            let n = s.players.get(proto).copied().unwrap_or(0);
            out.push_str(&format!(
                "ringcast_stream_players{{{},proto=\"{proto}\"}} {n}\n",
                names(&s.key)
            ));
        }
    }
    out.push_str("# HELP ringcast_stream_ingest_bytes_per_second What a stream's publisher sent over the last 5 s.\n");
    out.push_str("# TYPE ringcast_stream_ingest_bytes_per_second gauge\n");
    for s in &top {
        let bps = s
            .publisher
            .as_ref()
            .map_or(0.0, |p| p.ingest_kbps * 1000.0 / 8.0);
        out.push_str(&format!(
            "ringcast_stream_ingest_bytes_per_second{{{}}} {bps}\n",
            names(&s.key)
        ));
    }
    out.push_str("# HELP ringcast_stream_gop_cache_bytes Bytes in a stream's GOP cache.\n");
    out.push_str("# TYPE ringcast_stream_gop_cache_bytes gauge\n");
    for s in &top {
        out.push_str(&format!(
            "ringcast_stream_gop_cache_bytes{{{}}} {}\n",
            names(&s.key),
            s.gop_cache_bytes
        ));
    }
    out
}

/// Why a connection closed, as the `reason` label spells it (one of [`CLOSE_REASONS`]).
pub fn close_reason(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.starts_with("peer closed") || r.starts_with("read:") || r.starts_with("write:") {
        "peer_closed"
    } else if r.contains("slow player") || r.contains("does not read") {
        "slow_player"
    } else if r.contains("idle") || r.contains("timeout") {
        "timeout"
    } else if r.starts_with("protocol error")
        || r.contains("websocket")
        || r.contains("client sent")
    {
        "protocol_error"
    } else if r.contains("refused") || r.contains("not found") || r.contains("did not come back") {
        "refused"
    } else if r.contains("shutdown") || r.contains("closed by server") {
        "server"
    } else {
        "closed"
    }
}

/// One core's handles.
#[derive(Debug, Clone)]
pub struct CoreMetrics {
    core: String,
    /// Off (`metrics = false`): every handle is a no-op and nothing is registered.
    enabled: bool,
    /// Open connections by `PROTOS` index, (publishers, players).
    connections: [(Gauge, Gauge); 3],
    /// Open connections that neither publish nor play yet (RTMP).
    idle: Gauge,
    accepted: [Counter; 3],
    received: [Counter; 3],
    sent: [Counter; 3],
    /// Writes (one writev each) to peers: bytes sent over this is the batch size.
    writes: [Counter; 3],
    /// Frames received from publishers: audio, video, data.
    frames: [Counter; 3],
    latency: Histogram,
    ttff: Histogram,
    dropped: Counter,
    slow_closed: Counter,
    /// GOP cache bytes of this core.
    pub gop_cache_bytes: Gauge,
    /// Streams published on this core.
    pub streams: Gauge,
    /// CPU time of the core's thread.
    pub busy: Gauge,
    /// Frames not sent to a full core.
    pub cross_core_dropped: Counter,
    accept_errors: Counter,
    /// Relay connections up, by direction (pull, push).
    relays: [Gauge; 2],
    /// Relay reconnects, by direction.
    relay_reconnects: [Counter; 2],
    /// Relay bytes by direction: read from origins (pull), written upstream (push).
    relay_bytes: [Counter; 2],
}

/// The relay directions, as the `direction` label spells them.
pub const RELAY_DIRECTIONS: [&str; 2] = ["pull", "push"];

impl CoreMetrics {
    /// Registers core `index`'s handles (installing the recorder if needed); with
    /// `enabled` false, no-op handles that record nothing.
    pub fn new(index: usize, enabled: bool) -> CoreMetrics {
        if !enabled {
            return CoreMetrics::noop(index);
        }
        handle();
        let core = index.to_string();
        let by_proto = |name: &'static str| {
            PROTOS.map(|p| counter!(name, "core" => core.clone(), "proto" => p))
        };
        let conn = |p: &'static str, role: &'static str| gauge!("ringcast_connections", "core" => core.clone(), "proto" => p, "role" => role);
        let m = CoreMetrics {
            connections: PROTOS.map(|p| (conn(p, "publisher"), conn(p, "player"))),
            idle: conn("rtmp", "none"),
            accepted: by_proto("ringcast_connections_total"),
            received: by_proto("ringcast_bytes_received_total"),
            sent: by_proto("ringcast_bytes_sent_total"),
            writes: by_proto("ringcast_writes_total"),
            frames: ["audio", "video", "data"]
                .map(|k| counter!("ringcast_frames_total", "core" => core.clone(), "kind" => k)),
            latency: histogram!("ringcast_delivery_latency_seconds", "core" => core.clone()),
            ttff: histogram!("ringcast_time_to_first_frame_seconds", "core" => core.clone()),
            dropped: counter!("ringcast_frames_dropped_total", "core" => core.clone()),
            slow_closed: counter!("ringcast_slow_players_closed_total", "core" => core.clone()),
            gop_cache_bytes: gauge!("ringcast_gop_cache_bytes", "core" => core.clone()),
            streams: gauge!("ringcast_streams", "core" => core.clone()),
            busy: gauge!("ringcast_core_busy_seconds", "core" => core.clone()),
            cross_core_dropped: counter!("ringcast_cross_core_frames_dropped_total", "core" => core.clone()),
            accept_errors: counter!("ringcast_accept_errors_total", "core" => core.clone()),
            relays: RELAY_DIRECTIONS
                .map(|d| gauge!("ringcast_relays", "core" => core.clone(), "direction" => d)),
            relay_reconnects: RELAY_DIRECTIONS.map(
                |d| counter!("ringcast_relay_reconnects_total", "core" => core.clone(), "direction" => d),
            ),
            relay_bytes: RELAY_DIRECTIONS.map(
                |d| counter!("ringcast_relay_bytes_total", "core" => core.clone(), "direction" => d),
            ),
            core,
            enabled: true,
        };
        m.preregister();
        m
    }

    /// Registers the labelled counters whose series appear only when something happens
    /// (refusals, closes by reason), so every series exists from the start at 0.
    fn preregister(&self) {
        for reason in PUBLISH_REFUSALS {
            counter!("ringcast_publish_refused_total", "core" => self.core.clone(), "reason" => reason)
                .absolute(0);
        }
        for proto in PROTOS {
            for reason in PLAY_REFUSALS {
                counter!(
                    "ringcast_play_refused_total",
                    "core" => self.core.clone(),
                    "proto" => proto,
                    "reason" => reason
                )
                .absolute(0);
            }
            for reason in CLOSE_REASONS {
                counter!(
                    "ringcast_connections_closed_total",
                    "core" => self.core.clone(),
                    "proto" => proto,
                    "reason" => reason
                )
                .absolute(0);
            }
        }
    }

    fn noop(index: usize) -> CoreMetrics {
        let pair = || (Gauge::noop(), Gauge::noop());
        CoreMetrics {
            core: index.to_string(),
            enabled: false,
            connections: [pair(), pair(), pair()],
            idle: Gauge::noop(),
            accepted: [Counter::noop(), Counter::noop(), Counter::noop()],
            received: [Counter::noop(), Counter::noop(), Counter::noop()],
            sent: [Counter::noop(), Counter::noop(), Counter::noop()],
            writes: [Counter::noop(), Counter::noop(), Counter::noop()],
            frames: [Counter::noop(), Counter::noop(), Counter::noop()],
            latency: Histogram::noop(),
            ttff: Histogram::noop(),
            dropped: Counter::noop(),
            slow_closed: Counter::noop(),
            gop_cache_bytes: Gauge::noop(),
            streams: Gauge::noop(),
            busy: Gauge::noop(),
            cross_core_dropped: Counter::noop(),
            accept_errors: Counter::noop(),
            relays: [Gauge::noop(), Gauge::noop()],
            relay_reconnects: [Counter::noop(), Counter::noop()],
            relay_bytes: [Counter::noop(), Counter::noop()],
        }
    }

    fn proto(p: Proto) -> usize {
        p as usize
    }

    /// A connection of `proto` was opened (an RTMP one neither publishes nor plays yet).
    pub fn opened(&self, proto: Proto) {
        self.accepted[Self::proto(proto)].increment(1);
        if proto == Proto::Rtmp {
            self.idle.increment(1.0);
        }
    }

    /// A connection changed role (`None`: neither publishes nor plays).
    pub fn role(&self, proto: Proto, from: Option<Role>, to: Option<Role>) {
        let gauge = |r: Option<Role>| match r {
            None => &self.idle,
            Some(Role::Publisher) => &self.connections[Self::proto(proto)].0,
            Some(Role::Player) => &self.connections[Self::proto(proto)].1,
        };
        if from == to {
            return;
        }
        if from.is_some() || proto == Proto::Rtmp {
            gauge(from).decrement(1.0);
        }
        if to.is_some() || proto == Proto::Rtmp {
            gauge(to).increment(1.0);
        }
    }

    /// A connection closed for `reason` (see [`close_reason`]); its role was given up
    /// before ([`CoreMetrics::role`] to `None`).
    pub fn closed(&self, proto: Proto, reason: &str) {
        if proto == Proto::Rtmp {
            self.idle.decrement(1.0);
        }
        if !self.enabled {
            return;
        }
        let reason = close_reason(reason);
        if reason == "slow_player" {
            self.slow_closed.increment(1);
        }
        counter!(
            "ringcast_connections_closed_total",
            "core" => self.core.clone(),
            "proto" => PROTOS[Self::proto(proto)],
            "reason" => reason
        )
        .increment(1);
    }

    /// Bytes read from a peer.
    pub fn received(&self, proto: Proto, n: usize) {
        self.received[Self::proto(proto)].increment(n as u64);
    }

    /// One write of `n` bytes to a peer.
    pub fn sent(&self, proto: Proto, n: usize) {
        let p = Self::proto(proto);
        self.sent[p].increment(n as u64);
        self.writes[p].increment(1);
    }

    /// A message received from a publisher: 0 audio, 1 video, 2 data.
    pub fn frame(&self, kind: usize) {
        if let Some(c) = self.frames.get(kind) {
            c.increment(1);
        }
    }

    /// A write batch whose oldest frame was received `age` ago.
    pub fn delivered(&self, age: Duration) {
        self.latency.record(age.as_secs_f64());
    }

    /// A player's first frame went out `after` its play request.
    pub fn first_frame(&self, after: Duration) {
        self.ttff.record(after.as_secs_f64());
    }

    /// Frames a player skipped.
    pub fn dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.increment(n);
        }
    }

    /// A publish refused for `reason` (`name_in_use`, `busy`, `shutdown` …).
    pub fn publish_refused(&self, reason: &'static str) {
        if !self.enabled {
            return;
        }
        counter!("ringcast_publish_refused_total", "core" => self.core.clone(), "reason" => reason)
            .increment(1);
    }

    /// A play refused for `reason` (`not_found`, `busy` …).
    pub fn play_refused(&self, proto: Proto, reason: &'static str) {
        if !self.enabled {
            return;
        }
        counter!(
            "ringcast_play_refused_total",
            "core" => self.core.clone(),
            "proto" => PROTOS[Self::proto(proto)],
            "reason" => reason
        )
        .increment(1);
    }

    /// An accept failed.
    pub fn accept_error(&self) {
        self.accept_errors.increment(1);
    }

    /// A relay connection came up (`delta` 1) or went down (-1); `pull` or push.
    pub fn relay_state(&self, pull: bool, delta: f64) {
        self.relays[usize::from(!pull)].increment(delta);
    }

    /// A relay reconnected after its connection broke.
    pub fn relay_reconnect(&self, pull: bool) {
        self.relay_reconnects[usize::from(!pull)].increment(1);
    }

    /// Bytes a relay moved: read from an origin (pull) or written upstream (push).
    pub fn relay_bytes(&self, pull: bool, n: usize) {
        self.relay_bytes[usize::from(!pull)].increment(n as u64);
    }
}

/// A connection's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// RTMP.
    Rtmp = 0,
    /// HTTP-FLV.
    HttpFlv = 1,
    /// WebSocket-FLV.
    WsFlv = 2,
}

/// A connection's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It publishes a stream.
    Publisher,
    /// It plays a stream.
    Player,
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_stream_figures_go_to_the_busiest_streams_with_escaped_labels() {
        let report = |key: &str, players: usize| crate::hub::StreamReport {
            key: key.into(),
            publisher: None,
            players: [("rtmp".to_owned(), players)].into_iter().collect(),
            player_addresses: None,
            gop_cache_bytes: 7,
            gop_cache_frames: 1,
            frames_dropped: 0,
            relays: Vec::new(),
        };
        let text = render_streams(&[report("live/quiet", 1), report("live/a\"b", 9)], 1);
        assert!(
            text.contains(
                "ringcast_stream_players{app=\"live\",stream=\"a\\\"b\",proto=\"rtmp\"} 9"
            ),
            "{text}"
        );
        assert!(!text.contains("quiet"), "{text}");
        assert_eq!(render_streams(&[], 5), "");
    }

    #[test]
    fn reasons_map_to_a_small_set() {
        assert_eq!(close_reason("peer closed"), "peer_closed");
        assert_eq!(close_reason("slow player: write stalled"), "slow_player");
        assert_eq!(
            close_reason("peer does not read what it is sent"),
            "slow_player"
        );
        assert_eq!(close_reason("idle timeout"), "timeout");
        assert_eq!(
            close_reason("protocol error: chunk stream: x"),
            "protocol_error"
        );
        assert_eq!(close_reason("publish refused: name in use"), "refused");
        assert_eq!(close_reason("play: stream not found"), "refused");
        assert_eq!(close_reason("closed by server"), "server");
    }

    #[test]
    fn the_exposition_has_core_labels_and_latency_buckets() {
        let m = CoreMetrics::new(7, true);
        m.sent(Proto::HttpFlv, 1234);
        m.delivered(Duration::from_millis(3));
        let text = render(Instant::now());
        assert!(
            text.contains("ringcast_bytes_sent_total{core=\"7\",proto=\"http_flv\"} 1234"),
            "{text}"
        );
        assert!(
            text.contains("ringcast_delivery_latency_seconds_bucket{core=\"7\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("ringcast_build_info{version="), "{text}");
        assert!(text.contains("ringcast_process_open_fds "), "{text}");
    }
}
