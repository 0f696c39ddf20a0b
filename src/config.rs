//! The server configuration: TOML with embedded defaults, every key documented.
//!
//! Every key is also a command-line flag where the issue names one (`--rtmp`, `--http`,
//! `--cores`, `--io`, `--log`); flags override the file. Unknown keys and bad values are
//! errors that name the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which IO backend the core threads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// io_uring when the kernel allows it, epoll otherwise (with a warning).
    Auto,
    /// io_uring (tokio-uring); fails to start where io_uring is refused.
    Uring,
    /// epoll (tokio).
    Epoll,
}

/// What happens when a second publisher asks for a stream name in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishConflict {
    /// Refuse the newcomer with `NetStream.Publish.BadName`.
    Reject,
    /// Disconnect the current publisher and let the newcomer take the stream over.
    Takeover,
}

/// The whole configuration. `ringcast --print-config` prints the effective one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// RTMP listen address (publishers and players). Default `0.0.0.0:1935`.
    pub rtmp: SocketAddr,
    /// HTTP listen address (HTTP-FLV, `/metrics`). Default `0.0.0.0:8080`.
    pub http: SocketAddr,
    /// Core threads; 0 means one per CPU this process may run on. Default 0.
    pub cores: usize,
    /// IO backend: `auto`, `uring` or `epoll`. Default `auto`.
    pub io: IoMode,
    /// Log level or tracing filter (`error`, `warn`, `info`, `debug`, `trace`). Default `info`.
    pub log: String,
    /// How long a SIGINT/SIGTERM shutdown may take to tell players and flush. Default `5s`.
    #[serde(with = "humantime")]
    pub shutdown_grace: Duration,
    /// Keep each stream's last GOP so a new player starts at a keyframe at once. Default true.
    pub gop_cache: bool,
    /// Largest GOP cache per stream, in bytes; past it the cache empties and waits for the
    /// next keyframe. Default 16 MiB.
    pub gop_cache_max_bytes: usize,
    /// Longest GOP cache per stream; past it the cache empties and waits for the next
    /// keyframe. Default `10s`.
    #[serde(with = "humantime")]
    pub gop_cache_max_duration: Duration,
    /// How long a player of a stream that is not published waits before
    /// `NetStream.Play.StreamNotFound`. Default `5s`.
    #[serde(with = "humantime")]
    pub play_wait: Duration,
    /// How long players stay after their publisher left, waiting for it to come back.
    /// Default `10s`.
    #[serde(with = "humantime")]
    pub republish_wait: Duration,
    /// A second publisher of a name in use: `reject` or `takeover`. Default `reject`.
    pub publish_conflict: PublishConflict,
    /// Bytes a player's send queue may hold before it skips to the next keyframe.
    /// Default 8 MiB.
    pub player_queue_bytes: usize,
    /// How long a player may stay behind before it is disconnected. Default `10s`.
    #[serde(with = "humantime")]
    pub slow_player_timeout: Duration,
    /// Gather each player's frames for up to this long and send them in one write (a send
    /// costs about the same up to 4 KiB, so batching is what makes fan-out cheap); `0s`
    /// writes every frame as soon as it arrives. Metadata, sequence headers and control
    /// messages never wait. Default `50ms`.
    #[serde(with = "humantime")]
    pub write_coalesce: Duration,
    /// A player's write goes before its `write_coalesce` turn once this many bytes are
    /// queued (batched by bytes as well as by time: past ~32 KiB a write costs no less per
    /// byte, so a high-bitrate stream need not wait the whole budget). 0: by time only.
    /// Default 65536.
    pub write_batch_bytes: usize,
    /// Player writes one core issues per second at most: when its players would need more
    /// (players / `write_coalesce` above this), the coalescing period stretches so each
    /// write carries more, instead of the core running out of CPU. 0: no cap. Default
    /// 100000 (10,000 players on a core: 100 ms).
    pub max_write_rate: u32,
    /// Connections one core accepts at most, RTMP and HTTP together; more are closed at
    /// once. Default 20000.
    pub max_connections_per_core: usize,
    /// Connections one source address may hold on one core; more are closed at once. 0: no
    /// cap (the default: many players may share one NAT address).
    pub max_connections_per_ip: usize,
    /// An HTTP request head must arrive whole within this time of the connection being
    /// accepted, or the connection is closed (a client sending a byte every few seconds
    /// cannot hold it). Default `10s`.
    #[serde(with = "humantime")]
    pub http_header_timeout: Duration,
    /// Record metrics for `GET /metrics` (Prometheus). Off, `/metrics` answers with the
    /// process figures only. Default true.
    pub metrics: bool,
    /// Per-stream figures in `/metrics` (players by protocol, ingest bitrate, GOP cache
    /// bytes, with `app` and `stream` labels) for at most this many streams, the ones with
    /// the most players; 0: none (the default, as stream names are unbounded labels).
    pub metrics_streams: usize,
    /// The mpegts.js script the player page (`GET /APP/STREAM`) loads. Default: mpegts.js
    /// 1.8.2 on jsDelivr; point it at a copy of your own to serve players without a CDN.
    pub player_script: String,
    /// The Subresource Integrity hash of `player_script` (the browser refuses a script
    /// that does not match); empty: none. Default: the hash of mpegts.js 1.8.2.
    pub player_script_integrity: String,
    /// Largest RTMP message accepted, in bytes. Default 16 MiB. Commands are held to
    /// 64 KiB and data messages (metadata) to 512 KiB whatever this says.
    pub max_message_size: u32,
    /// Close a connection that sends more than this many RTMP messages a second, averaged
    /// over 5 s (each tag of an aggregate message counts). Live media is tens to a few
    /// hundred a second, and the burst after a network stall passes; a flood of tiny
    /// messages does not. 0: no limit. Default 2000.
    pub max_message_rate: u32,
    /// The RTMP chunk size ringcast sends with. Default 60000 (as SRS): nearly every
    /// message is one chunk, which players reassemble without a copy.
    pub chunk_size: u32,
    /// How long the RTMP handshake and `connect` may take. Default `10s`.
    #[serde(with = "humantime")]
    pub handshake_timeout: Duration,
    /// A publisher that sends no media, or a connection that neither publishes nor plays
    /// and sends nothing, for this long is closed. Players are not held to it: a player
    /// sends next to nothing (an acknowledgement per window), so its liveness is that its
    /// socket takes our bytes, and the pings below. Default `30s`.
    #[serde(with = "humantime")]
    pub idle_timeout: Duration,
    /// Send every connection a Ping Request (User Control 6) this often; `0s` sends none
    /// (nginx-rtmp's `ping`). Default `30s`.
    #[serde(with = "humantime")]
    pub ping_interval: Duration,
    /// Close a connection that sent nothing, not even a ping answer, for this long after a
    /// ping (nginx-rtmp's `ping_timeout`); `0s` never. Default `30s`.
    #[serde(with = "humantime")]
    pub ping_timeout: Duration,
    /// Relaying between nodes: pulling from origins (an edge) and pushing upstream.
    pub relay: RelayConfig,
    /// Who may publish and play: signed URLs, address rules, HTTP callbacks.
    pub auth: AuthConfig,
}

/// The `[auth]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A publish must carry `?sign=EXPIRES-HASH` (hex HMAC-SHA256 of `/APP/STREAM-EXPIRES`
    /// under this secret; `ringcast sign` makes one). Default none: anyone may publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_secret: Option<String>,
    /// The same for plays (RTMP, HTTP-FLV, WebSocket-FLV). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_secret: Option<String>,
    /// Networks that may publish (`10.0.0.0/8`, `2001:db8::/32`, an address); empty: any.
    pub allow_publish: Vec<String>,
    /// Networks that may not play; empty: none.
    pub deny_play: Vec<String>,
    /// Asked before each publish (as nginx-rtmp's `on_publish`): an HTTP POST, form-encoded
    /// (`call`, `addr`, `app`, `name`, `query`, `proto` and the URL's own query parameters);
    /// a 2xx answer allows, anything else or no answer within `hook_timeout` refuses.
    /// Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_publish: Option<String>,
    /// The same before each play (RTMP, HTTP-FLV, WebSocket-FLV). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_play: Option<String>,
    /// Told when a publish or play ends (`call` = `publish_done` / `play_done`); its answer
    /// is not waited for. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_done: Option<String>,
    /// How long a callback may take. Default `2s`.
    #[serde(with = "humantime")]
    pub hook_timeout: Duration,
    /// Callbacks one core has in flight at most; past it a publish or play is refused
    /// ("hook service busy") rather than queued without end. Default 64.
    pub max_hooks_in_flight: usize,
    /// Secrets of one app, over the defaults above: `[auth.app.NAME]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub app: BTreeMap<String, AppAuth>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            publish_secret: None,
            play_secret: None,
            allow_publish: Vec::new(),
            deny_play: Vec::new(),
            on_publish: None,
            on_play: None,
            on_done: None,
            hook_timeout: Duration::from_secs(2),
            max_hooks_in_flight: 64,
            app: BTreeMap::new(),
        }
    }
}

/// `[auth.app.NAME]`: the secrets of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppAuth {
    /// As `auth.publish_secret`, for this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_secret: Option<String>,
    /// As `auth.play_secret`, for this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_secret: Option<String>,
}

/// How an edge orders the origins it may pull a stream from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Rendezvous hashing of `APP/STREAM`: every edge pulls a given stream from the same
    /// origin, and the origins share the streams.
    Hash,
    /// The order `origins` lists them in.
    Ordered,
}

/// Where a stream published here is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// To one of `push`, chosen by rendezvous hashing of `APP/STREAM`.
    Hash,
    /// To every one of `push`.
    All,
}

/// The `[relay]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Origins this node pulls the streams it does not have from: `rtmp://HOST:PORT`
    /// (the player's app and stream name are appended). Default none.
    pub origins: Vec<String>,
    /// Pull on demand: the first player of a stream that is not here starts one pull for the
    /// whole node (an edge). Default false.
    pub pull: bool,
    /// Upstreams every stream published here is forwarded to: `rtmp://HOST:PORT`.
    /// Default none.
    pub push: Vec<String>,
    /// `hash` (one upstream per stream, by rendezvous hashing) or `all`. Default `hash`.
    pub push_mode: PushMode,
    /// Origin order for a pull: `hash` (rendezvous hashing of `APP/STREAM`) or `ordered`.
    /// Default `hash`.
    pub balance: Balance,
    /// An HTTP service that says which origin holds a stream: `http://HOST:PORT/PATH`,
    /// asked `GET PATH?app=APP&stream=STREAM` (`200` with an `rtmp://` URL, `404` if none)
    /// before `origins`. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
    /// A Redis stream registry, `redis://HOST:PORT/DB`: an origin writes
    /// `ringcast:stream:APP/STREAM` → `advertise` while a stream is published here, and an
    /// edge looks streams up there before `locator` and `origins`. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The `rtmp://HOST:PORT` other nodes reach this one at, written to the registry.
    /// Default: `rtmp://` and the RTMP listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// How long a registry entry lives unless refreshed (it is refreshed every third of
    /// it while the stream is published). Default `15s`.
    #[serde(with = "humantime")]
    pub registry_ttl: Duration,
    /// How long a pull stays after its last player left. Default `5s`.
    #[serde(with = "humantime")]
    pub idle_linger: Duration,
    /// The wait before a relay reconnects after every origin or upstream failed: from the
    /// first value, doubling up to the second. Default `["200ms", "5s"]`.
    #[serde(with = "backoff")]
    pub reconnect_backoff: (Duration, Duration),
    /// How long connecting to an origin or upstream may take, up to the first media of a
    /// pull or the start of a push. Default `3s`.
    #[serde(with = "humantime")]
    pub connect_timeout: Duration,
    /// A pull whose origin sends no media for this long is broken (an origin whose link was
    /// cut sends no FIN): the edge reconnects, to the next origin if that one is gone. A push
    /// whose upstream answered its pings and then leaves one unanswered this long reconnects
    /// too. Default `5s`.
    #[serde(with = "humantime")]
    pub media_timeout: Duration,
    /// This node's name in the chain relayed connections carry (so that a stream is never
    /// relayed back through a node it passed). Default: random at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            origins: Vec::new(),
            pull: false,
            push: Vec::new(),
            push_mode: PushMode::Hash,
            balance: Balance::Hash,
            locator: None,
            registry: None,
            advertise: None,
            registry_ttl: Duration::from_secs(15),
            idle_linger: Duration::from_secs(5),
            reconnect_backoff: (Duration::from_millis(200), Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(3),
            media_timeout: Duration::from_secs(5),
            node_id: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rtmp: SocketAddr::from(([0, 0, 0, 0], 1935)),
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cores: 0,
            io: IoMode::Auto,
            log: "info".to_owned(),
            shutdown_grace: Duration::from_secs(5),
            gop_cache: true,
            gop_cache_max_bytes: 16 << 20,
            gop_cache_max_duration: Duration::from_secs(10),
            play_wait: Duration::from_secs(5),
            republish_wait: Duration::from_secs(10),
            publish_conflict: PublishConflict::Reject,
            player_queue_bytes: 8 << 20,
            slow_player_timeout: Duration::from_secs(10),
            write_coalesce: Duration::from_millis(50),
            write_batch_bytes: 64 * 1024,
            max_write_rate: 100_000,
            max_connections_per_core: 20_000,
            max_connections_per_ip: 0,
            http_header_timeout: Duration::from_secs(10),
            metrics: true,
            metrics_streams: 0,
            player_script: "https://cdn.jsdelivr.net/npm/mpegts.js@1.8.2/dist/mpegts.js".to_owned(),
            player_script_integrity:
                "sha384-sQp+4cJv0jChNCYvgy6W0RSfQZB/w6d3ZTDoIBlY4Uorfw4PLS56T2yM2z47bSkl".to_owned(),
            max_message_size: 16 << 20,
            max_message_rate: 2000,
            chunk_size: 60_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(30),
            relay: RelayConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TOML is malformed, has an unknown key, or a value of the wrong kind; the message
    /// names the key and shows the line. Transparent: the message is said once, not again
    /// as its own cause.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("`{key}`: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Parses a TOML document; missing keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<Config, Error> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks values a type alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |key: &'static str, reason: &str| {
            Err(Error::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.chunk_size < 128 || self.chunk_size > 0x7FFF_FFFF {
            return bad("chunk_size", "must be between 128 and 2147483647");
        }
        if self.max_message_size < 1024 {
            return bad("max_message_size", "must be at least 1024");
        }
        if self.player_queue_bytes < 64 * 1024 {
            return bad("player_queue_bytes", "must be at least 65536");
        }
        if self.max_connections_per_core == 0 {
            return bad("max_connections_per_core", "must be at least 1");
        }
        if self.write_coalesce > Duration::from_secs(1) {
            return bad("write_coalesce", "must be at most 1s");
        }
        if self.gop_cache_max_bytes == 0 {
            return bad("gop_cache_max_bytes", "must be at least 1");
        }
        if let Err(e) = crate::auth::Policy::new(&self.auth) {
            return Err(Error::Invalid {
                key: e.key,
                reason: e.reason,
            });
        }
        for (key, url) in [
            ("auth.on_publish", &self.auth.on_publish),
            ("auth.on_play", &self.auth.on_play),
            ("auth.on_done", &self.auth.on_done),
        ] {
            if let Some(u) = url {
                if let Err(e) = crate::relay::locator::Locator::parse(u) {
                    return Err(Error::Invalid {
                        key,
                        reason: format!("{u:?}: {e}"),
                    });
                }
            }
        }
        if self.auth.max_hooks_in_flight == 0 {
            return bad("auth.max_hooks_in_flight", "must be at least 1");
        }
        let r = &self.relay;
        for (key, urls) in [("relay.origins", &r.origins), ("relay.push", &r.push)] {
            for u in urls {
                if let Err(e) = crate::relay::RtmpUrl::parse(u) {
                    return Err(Error::Invalid {
                        key,
                        reason: format!("{u:?}: {e}"),
                    });
                }
            }
        }
        if let Some(u) = &r.advertise {
            if let Err(e) = crate::relay::RtmpUrl::parse(u) {
                return Err(Error::Invalid {
                    key: "relay.advertise",
                    reason: format!("{u:?}: {e}"),
                });
            }
        }
        if let Some(u) = &r.locator {
            if let Err(e) = crate::relay::locator::Locator::parse(u) {
                return Err(Error::Invalid {
                    key: "relay.locator",
                    reason: format!("{u:?}: {e}"),
                });
            }
        }
        if let Some(u) = &r.registry {
            if let Err(e) = crate::relay::registry::Registry::parse(u) {
                return Err(Error::Invalid {
                    key: "relay.registry",
                    reason: format!("{u:?}: {e}"),
                });
            }
        }
        if r.pull && r.origins.is_empty() && r.locator.is_none() && r.registry.is_none() {
            return bad(
                "relay.pull",
                "needs somewhere to pull from: origins, locator or registry",
            );
        }
        if r.reconnect_backoff.0 > r.reconnect_backoff.1 || r.reconnect_backoff.0.is_zero() {
            return bad(
                "relay.reconnect_backoff",
                "must be [min, max] with 0 < min <= max",
            );
        }
        if r.connect_timeout.is_zero() {
            return bad("relay.connect_timeout", "must be above 0");
        }
        if r.media_timeout < Duration::from_millis(100) {
            return bad("relay.media_timeout", "must be at least 100ms");
        }
        if r.registry_ttl < Duration::from_secs(1) {
            return bad("relay.registry_ttl", "must be at least 1s");
        }
        Ok(())
    }

    /// The number of core threads to run: `cores`, or the CPUs available when 0.
    pub fn effective_cores(&self) -> usize {
        if self.cores > 0 {
            self.cores
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Durations in the config are written like `5s`, `500ms`, `2m`.
mod humantime {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = d.as_millis();
        if ms % 1000 == 0 {
            s.serialize_str(&format!("{}s", ms / 1000))
        } else {
            s.serialize_str(&format!("{ms}ms"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(D::Error::custom)
    }
}

/// `reconnect_backoff = ["200ms", "5s"]`: a minimum and a maximum.
mod backoff {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(d: &(Duration, Duration), s: S) -> Result<S::Ok, S::Error> {
        let text = |d: &Duration| {
            let ms = d.as_millis();
            if ms % 1000 == 0 {
                format!("{}s", ms / 1000)
            } else {
                format!("{ms}ms")
            }
        };
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&text(&d.0))?;
        seq.serialize_element(&text(&d.1))?;
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(Duration, Duration), D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        let [min, max] = v.as_slice() else {
            return Err(D::Error::custom(
                "write [min, max], e.g. [\"200ms\", \"5s\"]",
            ));
        };
        let min = super::parse_duration(min).map_err(D::Error::custom)?;
        let max = super::parse_duration(max).map_err(D::Error::custom)?;
        Ok((min, max))
    }
}

/// Parses `5s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Duration::from_secs_f64(v * unit)),
        _ => Err(format!(
            "invalid duration {text:?} (write e.g. 5s, 500ms, 2m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::default();
        let text = c.to_toml();
        assert_eq!(Config::from_toml(&text).expect("parses"), c);
        assert!(text.contains("rtmp = \"0.0.0.0:1935\""), "{text}");
        assert!(text.contains("shutdown_grace = \"5s\""), "{text}");
    }

    #[test]
    fn partial_files_keep_defaults() {
        let c = Config::from_toml("cores = 2\nplay_wait = \"1500ms\"\n").expect("parses");
        assert_eq!(c.cores, 2);
        assert_eq!(c.play_wait, Duration::from_millis(1500));
        assert_eq!(c.republish_wait, Duration::from_secs(10));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_toml("gop_cach = true\n").expect_err("unknown key");
        assert!(e.to_string().contains("gop_cach"), "{e}");
        let e = Config::from_toml("play_wait = \"soon\"\n").expect_err("bad duration");
        assert!(e.to_string().contains("play_wait"), "{e}");
        let e = Config::from_toml("io = \"kqueue\"\n").expect_err("bad enum");
        assert!(e.to_string().contains("io"), "{e}");
        let e = Config::from_toml("chunk_size = 1\n").expect_err("out of range");
        assert!(e.to_string().contains("chunk_size"), "{e}");
        let e = Config::from_toml("rtmp = \"nowhere\"\n").expect_err("bad address");
        assert!(e.to_string().contains("rtmp"), "{e}");
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;

    #[test]
    fn the_relay_table_parses_and_bad_values_name_their_key() {
        let c = Config::from_toml(
            "[relay]\npull = true\norigins = [\"rtmp://o1:1935\", \"rtmp://o2\"]\n\
             balance = \"ordered\"\nreconnect_backoff = [\"100ms\", \"2s\"]\n",
        )
        .expect("parses");
        assert!(c.relay.pull);
        assert_eq!(c.relay.balance, Balance::Ordered);
        assert_eq!(
            c.relay.reconnect_backoff,
            (Duration::from_millis(100), Duration::from_secs(2))
        );
        for (text, key) in [
            ("[relay]\norigins = [\"http://o1\"]\n", "relay.origins"),
            ("[relay]\npush = [\"rtmp://\"]\n", "relay.push"),
            ("[relay]\npull = true\n", "relay.pull"),
            (
                "[relay]\nreconnect_backoff = [\"5s\", \"1s\"]\n",
                "relay.reconnect_backoff",
            ),
            (
                "[relay]\nreconnect_backoff = [\"5s\"]\n",
                "reconnect_backoff",
            ),
            ("[relay]\nlocator = \"ftp://x\"\n", "relay.locator"),
            ("[relay]\nregistry = \"http://x\"\n", "relay.registry"),
            ("[relay]\nbalance = \"random\"\n", "balance"),
        ] {
            let e = Config::from_toml(text).expect_err(text);
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// examples/ringcast.toml documents every key with its default.
    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../examples/ringcast.toml");
        assert_eq!(
            Config::from_toml(text).expect("example parses"),
            Config::default()
        );
        let defaults = Config::default().to_toml();
        for line in defaults.lines().filter(|l| !l.trim().is_empty()) {
            if line.starts_with('[') {
                assert!(text.contains(line), "examples/ringcast.toml lacks `{line}`");
                continue;
            }
            let key = line.split('=').next().unwrap_or("").trim();
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))),
                "examples/ringcast.toml lacks `{key}`"
            );
        }
    }
}
