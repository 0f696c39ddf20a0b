//! What a core can tell about its streams, for `/api/streams`: the publisher (who, since
//! when, codecs from the sequence headers, resolution and frame rate from the metadata,
//! ingest bitrate), players by protocol, the GOP cache, frames dropped. A request on one
//! core gathers every core's reports through the cross-core messages and [`merge`]s them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use super::{Frame, Hub, Source, Stream};
use crate::flv;
use crate::rtmp::amf0::Value;
use crate::rtmp::session::MediaKind;

/// The window the ingest bitrate is averaged over.
pub(crate) const INGEST_WINDOW: Duration = Duration::from_secs(5);

/// A stream's publisher.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublisherReport {
    /// The publisher's protocol and address.
    pub peer: String,
    /// When it started publishing, Unix milliseconds.
    pub since_unix_ms: u64,
    /// Seconds it has been publishing.
    pub seconds: f64,
    /// The video codec of its sequence header (`AVC`, `HEVC`, `AV1` …).
    pub video_codec: Option<String>,
    /// The audio codec of its sequence header (`AAC`, `Opus` …).
    pub audio_codec: Option<String>,
    /// Width from the metadata.
    pub width: Option<f64>,
    /// Height from the metadata.
    pub height: Option<f64>,
    /// Frame rate from the metadata.
    pub frame_rate: Option<f64>,
    /// Ingest bitrate over the last 5 s, kbit/s.
    pub ingest_kbps: f64,
}

/// One stream, as one core (or, merged, the node) sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    /// `APP/STREAM`.
    pub key: String,
    /// Its publisher (from the core that owns it).
    pub publisher: Option<PublisherReport>,
    /// Players by protocol.
    pub players: BTreeMap<String, usize>,
    /// Player addresses (`proto peer`), when asked for this stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub player_addresses: Option<Vec<String>>,
    /// Bytes in the owner's GOP cache.
    pub gop_cache_bytes: usize,
    /// Frames in the owner's GOP cache.
    pub gop_cache_frames: usize,
    /// Frames its players skipped for being behind.
    pub frames_dropped: u64,
    /// The relays of the stream on this node: its pull, its pushes.
    pub relays: Vec<RelayReport>,
}

/// One relay of a stream, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    /// `pull` (from an origin) or `push` (to an upstream).
    pub direction: &'static str,
    /// The origin or upstream, `rtmp://HOST:PORT`.
    pub peer: String,
    /// `connecting`, `up` or `reconnecting`.
    pub state: &'static str,
    /// Times it reconnected after its connection broke.
    pub reconnects: u64,
    /// Bytes it moved: read from the origin, or written upstream.
    pub bytes: u64,
}

/// A relay's figures: its task keeps them, reports read them (see [`Hub::add_relay`]).
#[derive(Debug)]
pub struct RelayStatus {
    direction: &'static str,
    peer: RefCell<String>,
    state: Cell<&'static str>,
    reconnects: Cell<u64>,
    bytes: Cell<u64>,
}

impl RelayStatus {
    /// A relay in `direction` (`pull` or `push`), connecting.
    pub fn new(direction: &'static str) -> Rc<RelayStatus> {
        Rc::new(RelayStatus {
            direction,
            peer: RefCell::new(String::new()),
            state: Cell::new("connecting"),
            reconnects: Cell::new(0),
            bytes: Cell::new(0),
        })
    }

    /// Connected to `peer`.
    pub fn up(&self, peer: &str) {
        *self.peer.borrow_mut() = peer.to_owned();
        self.state.set("up");
    }

    /// Its connection broke; it reconnects.
    pub fn broke(&self) {
        self.state.set("reconnecting");
        self.reconnects.set(self.reconnects.get() + 1);
    }

    /// It moved `n` more bytes.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.set(self.bytes.get() + n);
    }

    fn report(&self) -> RelayReport {
        RelayReport {
            direction: self.direction,
            peer: self.peer.borrow().clone(),
            state: self.state.get(),
            reconnects: self.reconnects.get(),
            bytes: self.bytes.get(),
        }
    }
}

fn codec(f: &Frame) -> Option<String> {
    match f.kind {
        MediaKind::Video => flv::video_info(&f.payload).map(|v| format!("{:?}", v.codec)),
        MediaKind::Audio => flv::audio_info(&f.payload).map(|a| format!("{:?}", a.format)),
        MediaKind::Data => None,
    }
}

/// `onMetaData`'s properties.
fn metadata(body: &Bytes) -> Option<Value> {
    let mut b = body.clone();
    let values = crate::rtmp::amf0::decode_all(&mut b).ok()?;
    values
        .into_iter()
        .find(|v| matches!(v, Value::Object(_) | Value::EcmaArray(_)))
}

impl Stream {
    fn report(
        &self,
        key: &str,
        detail: bool,
        now: Instant,
        relays: Option<&Vec<Rc<RelayStatus>>>,
    ) -> StreamReport {
        let mut players: BTreeMap<String, usize> = BTreeMap::new();
        let mut addresses = Vec::new();
        let mut dropped = 0;
        for p in &self.players {
            let tag = p.tag();
            let proto = tag.as_ref().map_or("unknown", |t| t.proto);
            // A push is a relay, listed with the relays, not a player.
            if proto.starts_with("relay_") {
                continue;
            }
            *players.entry(proto.to_owned()).or_default() += 1;
            if detail {
                if let Some(t) = tag {
                    addresses.push(format!("{} {}", t.proto, t.peer));
                }
            }
            dropped += p.dropped();
        }
        let publisher = match (self.source, &self.publisher) {
            (Source::Local(_), Some(kick)) => {
                let headers = self.cache.headers();
                let video = headers.iter().find(|f| f.kind == MediaKind::Video);
                let audio = headers.iter().find(|f| f.kind == MediaKind::Audio);
                let meta = self.cache.metadata().and_then(|m| metadata(&m.payload));
                let num = |k: &str| meta.as_ref().and_then(|m| m.get(k)).and_then(Value::as_f64);
                let since = self.since.unwrap_or(UNIX_EPOCH);
                let bytes: usize = self
                    .ingest
                    .iter()
                    .filter(|(t, _)| now.duration_since(*t) <= INGEST_WINDOW)
                    .map(|(_, n)| n)
                    .sum();
                Some(PublisherReport {
                    peer: kick
                        .tag()
                        .map_or_else(String::new, |t| format!("{} {}", t.proto, t.peer)),
                    since_unix_ms: since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    seconds: SystemTime::now()
                        .duration_since(since)
                        .map_or(0.0, |d| d.as_secs_f64()),
                    video_codec: video.and_then(|f| codec(f)),
                    audio_codec: audio.and_then(|f| codec(f)),
                    width: num("width"),
                    height: num("height"),
                    frame_rate: num("framerate").or_else(|| num("fps")),
                    ingest_kbps: bytes as f64 * 8.0 / INGEST_WINDOW.as_secs_f64() / 1000.0,
                })
            }
            _ => None,
        };
        let own = matches!(self.source, Source::Local(_));
        StreamReport {
            key: key.to_owned(),
            publisher,
            players,
            player_addresses: detail.then_some(addresses),
            gop_cache_bytes: if own { self.cache.bytes() } else { 0 },
            gop_cache_frames: if own { self.cache.frames() } else { 0 },
            frames_dropped: dropped,
            relays: relays.into_iter().flatten().map(|r| r.report()).collect(),
        }
    }
}

impl Hub {
    /// This core's view of its streams: those published here and those it has players of.
    /// With `detail`, that stream's player addresses are listed.
    pub fn report(&self, detail: Option<&str>, now: Instant) -> Vec<StreamReport> {
        self.streams
            .iter()
            .filter(|(_, s)| matches!(s.source, Source::Local(_)) || !s.players.is_empty())
            .filter(|(k, _)| detail.is_none_or(|d| d == k.as_str()))
            .map(|(k, s)| s.report(k, detail.is_some(), now, self.relays.get(k)))
            .collect()
    }

    /// Lists `status` among the relays of `key` in reports, until [`Hub::remove_relay`].
    pub fn add_relay(&mut self, key: &str, status: Rc<RelayStatus>) {
        self.relays.entry(key.to_owned()).or_default().push(status);
    }

    /// Takes `status` off the relays of `key`.
    pub fn remove_relay(&mut self, key: &str, status: &Rc<RelayStatus>) {
        if let Some(v) = self.relays.get_mut(key) {
            v.retain(|r| !Rc::ptr_eq(r, status));
            if v.is_empty() {
                self.relays.remove(key);
            }
        }
    }
}

/// Merges every core's reports into the node's: one entry per stream, the publisher from
/// its owner, players, drops and addresses summed; sorted by key.
pub fn merge(reports: impl IntoIterator<Item = StreamReport>) -> Vec<StreamReport> {
    let mut by_key: BTreeMap<String, StreamReport> = BTreeMap::new();
    for r in reports {
        match by_key.get_mut(&r.key) {
            None => {
                by_key.insert(r.key.clone(), r);
            }
            Some(m) => {
                if m.publisher.is_none() {
                    m.publisher = r.publisher;
                }
                for (proto, n) in r.players {
                    *m.players.entry(proto).or_default() += n;
                }
                if let (Some(a), Some(b)) = (m.player_addresses.as_mut(), r.player_addresses) {
                    a.extend(b);
                }
                m.gop_cache_bytes += r.gop_cache_bytes;
                m.gop_cache_frames += r.gop_cache_frames;
                m.frames_dropped += r.frames_dropped;
                m.relays.extend(r.relays);
            }
        }
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, publisher: bool, rtmp: usize, http: usize) -> StreamReport {
        StreamReport {
            key: key.into(),
            publisher: publisher.then(|| PublisherReport {
                peer: "rtmp 1.2.3.4:5".into(),
                since_unix_ms: 1,
                seconds: 1.0,
                video_codec: Some("Avc".into()),
                audio_codec: None,
                width: Some(640.0),
                height: Some(360.0),
                frame_rate: None,
                ingest_kbps: 1.0,
            }),
            players: [("rtmp".to_owned(), rtmp), ("http_flv".to_owned(), http)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            player_addresses: None,
            gop_cache_bytes: usize::from(publisher) * 100,
            gop_cache_frames: usize::from(publisher) * 3,
            frames_dropped: 1,
            relays: Vec::new(),
        }
    }

    #[test]
    fn cores_reports_merge_into_one_per_stream() {
        let merged = merge([
            r("live/b", false, 2, 1),
            r("live/a", true, 1, 0),
            r("live/b", true, 0, 4),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].key, "live/a");
        let b = &merged[1];
        assert!(b.publisher.is_some());
        assert_eq!(b.players.get("rtmp"), Some(&2));
        assert_eq!(b.players.get("http_flv"), Some(&5));
        assert_eq!((b.gop_cache_bytes, b.frames_dropped), (100, 2));
    }
}
