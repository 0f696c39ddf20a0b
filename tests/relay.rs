//! Relays between real ringcast processes (and nginx-rtmp) on loopback: an edge pulls a
//! stream once for all its players, fails over to another origin, pushes upstream through
//! an upstream restart, asks a locator, forms a two-level tree, refuses loops, and says
//! "not found" when no origin has a stream.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::flv_client::{FlvClient, Kind};
use common::nginx::Nginx;
use common::{Peer, Ringcast, config_file, http_request, until};
use ringcast::hub::stream_key;
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::{Media, MediaKind, status};

const FPS: u64 = 30;
/// A keyframe every this many frames (1 s).
const GOP: u32 = 30;
const AVC_HEADER: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1];
const AAC_HEADER: &[u8] = &[0xAF, 0, 0x12, 0x10];

/// Video frame `i`: its index in bytes 5..9, then bytes that depend on it.
fn video(i: u32) -> Media {
    let key = i % GOP == 0;
    let len = if key { 12_000 } else { 2_500 };
    let mut p = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    p.extend_from_slice(&i.to_be_bytes());
    p.extend((0..len).map(|j: u32| j.wrapping_mul(2_654_435_761).wrapping_add(i) as u8));
    Media {
        kind: MediaKind::Video,
        timestamp: i * 33,
        payload: Bytes::from(p),
    }
}

/// Audio frame `i`.
fn audio(i: u32) -> Media {
    let mut p = vec![0xAF, 1];
    p.extend_from_slice(&i.to_be_bytes());
    p.extend((0..200u32).map(|j| (j ^ i) as u8));
    Media {
        kind: MediaKind::Audio,
        timestamp: i * 33 + 5,
        payload: Bytes::from(p),
    }
}

/// The frame index a coded frame carries (not a sequence header).
fn index(kind: MediaKind, p: &[u8]) -> Option<u32> {
    let at = match kind {
        MediaKind::Video if p.len() >= 9 && p[1] == 1 => 5,
        MediaKind::Audio if p.len() >= 6 && p[1] == 1 => 2,
        _ => return None,
    };
    Some(u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]))
}

/// A publisher of the synthetic stream on its own thread, at 30 fps, until stopped.
struct Publisher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peer>,
}

impl Publisher {
    fn start(addr: SocketAddr, name: &str) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let name = name.to_owned();
            std::thread::spawn(move || {
                let mut p = Peer::connect(addr, Intent::Publish(name));
                // A write that cannot go on (a cut link) ends the publisher, not the test.
                p.sock
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .expect("write timeout");
                until("publishing", &mut [&mut p], |p| {
                    p[0].has(|e| matches!(e, Event::Publishing { .. }))
                });
                let meta = Value::EcmaArray(vec![
                    ("width".into(), Value::Number(640.0)),
                    ("height".into(), Value::Number(360.0)),
                ]);
                p.client.send_metadata(0, &meta);
                for (kind, h) in [
                    (MediaKind::Video, AVC_HEADER),
                    (MediaKind::Audio, AAC_HEADER),
                ] {
                    p.client.send_media(&Media {
                        kind,
                        timestamp: 0,
                        payload: Bytes::from_static(h),
                    });
                }
                p.pump();
                let _ = tx.send(());
                let start = Instant::now();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) && !p.closed {
                    p.client.send_media(&video(i));
                    p.client.send_media(&audio(i));
                    p.pump();
                    i += 1;
                    let next = start + Duration::from_millis(u64::from(i) * 1000 / FPS);
                    while Instant::now() < next {
                        p.pump();
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                p
            })
        };
        rx.recv_timeout(Duration::from_secs(15))
            .expect("the publisher started");
        Publisher { stop, thread }
    }

    /// Stops it; its peer, to look at what it heard.
    fn stop(self) -> Peer {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("publisher thread")
    }
}

/// Checks what a player received: metadata-free media in order as (kind, payload). Both
/// sequence headers come before the first picture, which is a keyframe; from there every
/// video and audio frame is the one published, byte for byte, with no index missing.
/// Returns the pictures checked.
fn check_intact(what: &str, media: &[(MediaKind, Bytes)]) -> usize {
    check_frames(what, media, true)
}

/// [`check_intact`]; with `strict` false, the AAC sequence header need only come before
/// the first coded audio frame (nginx-rtmp sends each header before its kind's first frame).
fn check_frames(what: &str, media: &[(MediaKind, Bytes)], strict: bool) -> usize {
    let is_picture = |(k, p): &(MediaKind, Bytes)| *k == MediaKind::Video && p.get(1) == Some(&1);
    let first = media
        .iter()
        .position(is_picture)
        .unwrap_or_else(|| panic!("{what}: no picture"));
    let before = &media[..first];
    assert!(
        before
            .iter()
            .any(|(k, p)| *k == MediaKind::Video && &p[..] == AVC_HEADER),
        "{what}: no AVC sequence header before the first picture"
    );
    let first_audio = media
        .iter()
        .position(|(k, p)| *k == MediaKind::Audio && p.get(1) == Some(&1))
        .unwrap_or(media.len());
    let audio_before = if strict {
        before
    } else {
        &media[..first_audio]
    };
    assert!(
        audio_before
            .iter()
            .any(|(k, p)| *k == MediaKind::Audio && &p[..] == AAC_HEADER),
        "{what}: no AAC sequence header before the first picture (or audio frame)"
    );
    assert_eq!(
        media[first].1[0], 0x17,
        "{what}: the first picture is a keyframe"
    );
    let mut next: [Option<u32>; 2] = [None, None];
    let mut pictures = 0;
    for (kind, p) in &media[first..] {
        let Some(i) = index(*kind, p) else {
            continue;
        };
        let (slot, expected) = match kind {
            MediaKind::Video => (0, video(i).payload),
            _ => (1, audio(i).payload),
        };
        if let Some(n) = next[slot] {
            assert_eq!(i, n, "{what}: {kind:?} frame {n} missing or out of order");
        }
        assert_eq!(p, &expected, "{what}: {kind:?} frame {i} differs");
        next[slot] = Some(i + 1);
        pictures += usize::from(slot == 0);
    }
    pictures
}

fn rtmp_media(p: &Peer) -> Vec<(MediaKind, Bytes)> {
    p.media().into_iter().map(|m| (m.kind, m.payload)).collect()
}

fn flv_media(c: &FlvClient) -> Vec<(MediaKind, Bytes)> {
    c.media().into_iter().map(|(k, _, d)| (k, d)).collect()
}

/// Pumps every player until `done` holds; panics after `limit` naming `what`.
fn pump_until(
    what: &str,
    limit: Duration,
    rtmp: &mut [Peer],
    flv: &mut [FlvClient],
    done: impl Fn(&[Peer], &[FlvClient]) -> bool,
) {
    let give_up = Instant::now() + limit;
    while !done(rtmp, flv) {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        for p in rtmp.iter_mut() {
            p.pump();
        }
        for c in flv.iter_mut() {
            c.pump();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn is_picture(kind: MediaKind, payload: &[u8]) -> bool {
    kind == MediaKind::Video && payload.get(1) == Some(&1)
}

fn pictures_rtmp(p: &Peer) -> usize {
    pictures_rtmp_since(p, 0)
}

fn pictures_flv(c: &FlvClient) -> usize {
    pictures_flv_since(c, 0)
}

/// Pictures an RTMP player received from event `from` on.
fn pictures_rtmp_since(p: &Peer, from: usize) -> usize {
    p.media_since(from)
        .iter()
        .filter(|m| is_picture(m.kind, &m.payload))
        .count()
}

/// An HTTP-FLV player's audio and video tags from tag `from` on, as (kind, data).
fn flv_media_since(c: &FlvClient, from: usize) -> Vec<(MediaKind, Bytes)> {
    c.tags[from.min(c.tags.len())..]
        .iter()
        .filter_map(|(_, t)| match t.tag_type {
            ringcast::flv::TagType::Audio => Some((MediaKind::Audio, t.data.clone())),
            ringcast::flv::TagType::Video => Some((MediaKind::Video, t.data.clone())),
            _ => None,
        })
        .collect()
}

/// Pictures an HTTP-FLV player received from tag `from` on.
fn pictures_flv_since(c: &FlvClient, from: usize) -> usize {
    flv_media_since(c, from)
        .iter()
        .filter(|(k, d)| is_picture(*k, d))
        .count()
}

/// After the origin a pull used went away at `t0` (the players had `seen` events and
/// tags then): waits until each player has 15 pictures more, and checks that it stayed,
/// that the new start (PublishNotify for RTMP players, a new sequence header for HTTP-FLV
/// ones) is whole from its keyframe on, and that its first picture came within `bound`.
fn check_failover(
    rtmp: &mut [Peer],
    flv: &mut [FlvClient],
    seen: &(Vec<usize>, Vec<usize>),
    t0: Instant,
    bound: Duration,
) {
    let (seen_rtmp, seen_flv) = seen;
    pump_until(
        "pictures from the other origin",
        Duration::from_secs(20),
        rtmp,
        flv,
        |r, f| {
            r.iter()
                .zip(seen_rtmp)
                .all(|(p, &n)| pictures_rtmp_since(p, n) >= 15)
                && f.iter()
                    .zip(seen_flv)
                    .all(|(c, &n)| pictures_flv_since(c, n) >= 15)
        },
    );
    for (i, (p, &n)) in rtmp.iter().zip(seen_rtmp).enumerate() {
        assert!(!p.closed, "RTMP player {i} was disconnected");
        // Frames the old origin sent may still arrive first; from the new start on the
        // other origin's stream is whole from its keyframe.
        let switch = p.events[n..]
            .iter()
            .position(|(_, e)| {
                matches!(e, Event::Status { code, .. } if code == status::PLAY_PUBLISH_NOTIFY)
            })
            .map(|k| n + k)
            .unwrap_or_else(|| panic!("RTMP player {i} heard no PublishNotify"));
        let after: Vec<(MediaKind, Bytes)> = p
            .media_since(switch)
            .into_iter()
            .map(|m| (m.kind, m.payload))
            .collect();
        check_intact(&format!("RTMP player {i} after the failover"), &after);
        let back = p.events[switch..]
            .iter()
            .find(|(_, e)| matches!(e, Event::Media(m) if is_picture(m.kind, &m.payload)))
            .map(|(t, _)| t.duration_since(t0))
            .expect("a picture");
        eprintln!("RTMP player {i}: pictures again {back:?} after the origin went");
        assert!(
            back < bound,
            "RTMP player {i}: pictures again only after {back:?}"
        );
    }
    for (i, (c, &n)) in flv.iter().zip(seen_flv).enumerate() {
        assert!(!c.ended, "HTTP-FLV player {i} was disconnected");
        let media = flv_media_since(c, n);
        let start = media
            .iter()
            .position(|(k, d)| *k == MediaKind::Video && &d[..] == AVC_HEADER)
            .unwrap_or_else(|| panic!("HTTP-FLV player {i}: no new start"));
        check_intact(
            &format!("HTTP-FLV player {i} after the failover"),
            &media[start..],
        );
    }
}

/// Where each player is now: (RTMP events, HTTP-FLV tags), for [`check_failover`].
fn positions(rtmp: &[Peer], flv: &[FlvClient]) -> (Vec<usize>, Vec<usize>) {
    (
        rtmp.iter().map(|p| p.events.len()).collect(),
        flv.iter().map(|c| c.tags.len()).collect(),
    )
}

/// A player of `name` on `addr` whose socket never blocks (many are pumped in turn).
fn rtmp_player(addr: SocketAddr, name: &str) -> Peer {
    let p = Peer::connect(addr, Intent::Play(name.into()));
    p.sock.set_nonblocking(true).expect("nonblocking");
    p
}

fn flv_player(http: SocketAddr, name: &str) -> FlvClient {
    let c = FlvClient::open(http, &format!("/live/{name}.flv"), Kind::Http);
    c.sock.set_nonblocking(true).expect("nonblocking");
    c
}

/// An origin: a plain ringcast on two cores.
fn origin(name: &str) -> Ringcast {
    let cfg = config_file(&format!("relay-{name}"), "cores = 2\n");
    Ringcast::start(&["--config", cfg.to_str().expect("utf-8")])
}

/// A ringcast whose `[relay]` table is `relay` (and `extra` top-level keys).
fn node(name: &str, extra: &str, relay: &str) -> Ringcast {
    let text = format!("cores = 2\n{extra}\n[relay]\n{relay}\n");
    let cfg = config_file(&format!("relay-{name}"), &text);
    Ringcast::start(&["--config", cfg.to_str().expect("utf-8")])
}

fn toml_list(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn base(rc: &Ringcast) -> String {
    format!("rtmp://{}", rc.rtmp)
}

/// Players of `key` on `rc` by protocol, from `/api/streams`.
fn api_players(rc: &Ringcast, key: &str) -> Option<serde_json::Value> {
    let (status, body) = http_request(rc.http, "GET", "/api/streams");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["key"] == key)
        .cloned()
}

#[test]
fn an_edge_pulls_once_for_two_hundred_players_on_every_core() {
    let o1 = origin("o1");
    let o2 = origin("o2");
    let origins = vec![base(&o1), base(&o2)];
    let e = node(
        "edge",
        "",
        &format!(
            "pull = true\norigins = {}\nbalance = \"hash\"",
            toml_list(&origins)
        ),
    );
    let name = "tree";
    // Publish to the origin the stream hashes to: every edge would pull it from there.
    let preferred = ringcast::relay::rendezvous(&origins, &stream_key("live", name))[0].clone();
    let (home, other) = if preferred == origins[0] {
        (&o1, &o2)
    } else {
        (&o2, &o1)
    };
    let publisher = Publisher::start(home.rtmp, name);
    let mut rtmp: Vec<Peer> = (0..100).map(|_| rtmp_player(e.rtmp, name)).collect();
    let mut flv: Vec<FlvClient> = (0..100).map(|_| flv_player(e.http, name)).collect();
    pump_until(
        "200 players on the edge receiving 2 s of pictures",
        Duration::from_secs(30),
        &mut rtmp,
        &mut flv,
        |r, f| r.iter().all(|p| pictures_rtmp(p) >= 60) && f.iter().all(|c| pictures_flv(c) >= 60),
    );
    for (i, p) in rtmp.iter().enumerate() {
        assert!(!p.closed, "RTMP player {i} was closed");
        check_intact(&format!("RTMP player {i}"), &rtmp_media(p));
    }
    for (i, c) in flv.iter().enumerate() {
        check_intact(&format!("HTTP-FLV player {i}"), &flv_media(c));
    }
    // The origin sees one player of the stream, the edge's pull; the other origin none.
    let s = api_players(home, &format!("live/{name}")).expect("the stream on its origin");
    assert_eq!(s["players"], serde_json::json!({"rtmp": 1}), "{s}");
    assert!(api_players(other, &format!("live/{name}")).is_none());
    // The edge shows the relay and all its players.
    let s = api_players(&e, &format!("live/{name}")).expect("the stream on the edge");
    assert_eq!(s["players"]["rtmp"], 100, "{s}");
    assert_eq!(s["players"]["http_flv"], 100, "{s}");
    let relays = s["relays"].as_array().expect("relays");
    assert_eq!(relays.len(), 1, "{s}");
    assert_eq!(relays[0]["direction"], "pull", "{s}");
    assert_eq!(relays[0]["peer"], preferred, "{s}");
    assert_eq!(relays[0]["state"], "up", "{s}");
    assert!(relays[0]["bytes"].as_u64().unwrap_or(0) > 100_000, "{s}");
    let (_, metrics) = http_request(e.http, "GET", "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("ringcast_relays{")
            && l.contains("direction=\"pull\"")
            && l.ends_with(" 1")),
        "no pull in the edge's metrics"
    );
    drop(rtmp);
    drop(flv);
    // With no players left, the pull goes after idle_linger (5 s) and the origin sees
    // nobody.
    let give_up = Instant::now() + Duration::from_secs(15);
    loop {
        let players = api_players(home, &format!("live/{name}")).map(|s| s["players"].clone());
        if players == Some(serde_json::json!({})) {
            break;
        }
        assert!(Instant::now() < give_up, "the pull stayed: {players:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    e.wait_log("pull ended: no players", Duration::from_secs(5));
    publisher.stop();
}

#[test]
fn an_edge_fails_over_to_the_other_origin_and_its_players_stay() {
    let o1 = origin("fo1");
    let o2 = origin("fo2");
    let origins = vec![base(&o1), base(&o2)];
    let e = node(
        "fo-edge",
        "",
        &format!("pull = true\norigins = {}", toml_list(&origins)),
    );
    let name = "redundant";
    // Redundant encoders: the same stream on both origins.
    let p1 = Publisher::start(o1.rtmp, name);
    let p2 = Publisher::start(o2.rtmp, name);
    let mut rtmp: Vec<Peer> = (0..5).map(|_| rtmp_player(e.rtmp, name)).collect();
    let mut flv: Vec<FlvClient> = (0..5).map(|_| flv_player(e.http, name)).collect();
    pump_until(
        "the edge's players receiving",
        Duration::from_secs(20),
        &mut rtmp,
        &mut flv,
        |r, f| r.iter().all(|p| pictures_rtmp(p) >= 30) && f.iter().all(|c| pictures_flv(c) >= 30),
    );
    let preferred = ringcast::relay::rendezvous(&origins, &stream_key("live", name))[0].clone();
    let (dying, _survivor) = if preferred == origins[0] {
        (o1, o2)
    } else {
        (o2, o1)
    };
    let seen = positions(&rtmp, &flv);
    let killed = Instant::now();
    drop(dying);
    check_failover(&mut rtmp, &mut flv, &seen, killed, Duration::from_secs(3));
    e.wait_log("pull broke", Duration::from_secs(1));
    p1.stop();
    p2.stop();
}

#[test]
fn a_push_survives_an_upstream_restart_and_the_publisher_never_notices() {
    let o = origin("push-o");
    let upstream = base(&o);
    let e = node("push-e", "", &format!("push = [{upstream:?}]"));
    let name = "pushed";
    let publisher = Publisher::start(e.rtmp, name);
    let mut players = vec![rtmp_player(o.rtmp, name)];
    pump_until(
        "the upstream's player receiving",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    check_intact("the upstream's player", &rtmp_media(&players[0]));
    let (_, metrics) = http_request(e.http, "GET", "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("ringcast_relays{")
            && l.contains("direction=\"push\"")
            && l.ends_with(" 1")),
        "no push in the metrics"
    );
    // The upstream dies and comes back on the same port.
    let addr = o.rtmp.to_string();
    drop(players);
    drop(o);
    e.wait_log("push broke", Duration::from_secs(5));
    let o = {
        // Its player waits for the push however long the push's backoff makes it take
        // (up to 5 s between tries, as long as the default play_wait).
        let cfg = config_file("relay-push-o2", "cores = 2\nplay_wait = \"30s\"\n");
        Ringcast::start_at(&addr, &["--config", cfg.to_str().expect("utf-8")])
    };
    let mut players = vec![rtmp_player(o.rtmp, name)];
    pump_until(
        "the restarted upstream's player receiving",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    check_intact("the restarted upstream's player", &rtmp_media(&players[0]));
    let peer = publisher.stop();
    assert!(!peer.closed, "the publisher was disconnected");
    let codes = peer.codes_since(0);
    assert_eq!(
        codes,
        vec![status::PUBLISH_START.to_owned()],
        "the publisher heard more: {codes:?}"
    );
}

/// A locator answering every request with `answer`; the request lines it got.
fn locator(answer: String) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            log.lock()
                .expect("lock")
                .push(text.lines().next().unwrap_or_default().to_owned());
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            );
        }
    });
    (addr, seen)
}

#[test]
fn an_edge_pulls_from_the_origin_the_locator_names_and_a_tree_has_two_levels() {
    let o = origin("loc-o");
    let decoy = origin("loc-decoy");
    let (loc, seen) = locator(format!("{}\n", base(&o)));
    // The locator is asked first; the decoy listed in origins is never needed.
    let e1 = node(
        "loc-e1",
        "",
        &format!(
            "pull = true\nlocator = \"http://{loc}/where\"\norigins = [{:?}]",
            base(&decoy)
        ),
    );
    let e2 = node(
        "loc-e2",
        "",
        &format!("pull = true\norigins = [{:?}]", base(&e1)),
    );
    let name = "located";
    let publisher = Publisher::start(o.rtmp, name);
    let mut rtmp = vec![rtmp_player(e2.rtmp, name), rtmp_player(e1.rtmp, name)];
    let mut flv = vec![flv_player(e2.http, name)];
    pump_until(
        "players two levels down receiving",
        Duration::from_secs(20),
        &mut rtmp,
        &mut flv,
        |r, f| r.iter().all(|p| pictures_rtmp(p) >= 30) && pictures_flv(&f[0]) >= 30,
    );
    check_intact("RTMP player on E2", &rtmp_media(&rtmp[0]));
    check_intact("RTMP player on E1", &rtmp_media(&rtmp[1]));
    check_intact("HTTP-FLV player on E2", &flv_media(&flv[0]));
    assert!(
        seen.lock()
            .expect("lock")
            .iter()
            .any(|l| l.starts_with("GET /where?app=live&stream=located ")),
        "the locator was not asked: {:?}",
        seen.lock().expect("lock")
    );
    assert!(api_players(&decoy, &format!("live/{name}")).is_none());
    let s = api_players(&o, &format!("live/{name}")).expect("on the origin");
    assert_eq!(s["players"], serde_json::json!({"rtmp": 1}), "{s}");
    publisher.stop();
}

#[test]
fn no_origin_means_not_found_at_once_and_loops_are_refused() {
    let o = origin("nf-o");
    let e = node(
        "nf-e",
        "play_wait = \"30s\"",
        &format!("pull = true\norigins = [{:?}]", base(&o)),
    );
    let t0 = Instant::now();
    let mut p = Peer::connect(e.rtmp, Intent::Play("nobody".into()));
    until("StreamNotFound", &mut [&mut p], |p| {
        p[0].codes_since(0)
            .iter()
            .any(|c| c == status::PLAY_STREAM_NOT_FOUND)
    });
    // Far sooner than play_wait: the origin said no (after its own play_wait of 5 s at most).
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let (head, _) = http_request(e.http, "GET", "/live/nobody.flv");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Two edges that pull from each other: a play on either is not found, not a loop.
    let a_port = common::nginx::free_port();
    let b = node(
        "loop-b",
        "play_wait = \"2s\"",
        &format!("pull = true\norigins = [\"rtmp://127.0.0.1:{a_port}\"]\nnode_id = \"b\""),
    );
    let a_cfg = config_file(
        "relay-loop-a",
        &format!(
            "cores = 2\nplay_wait = \"2s\"\n[relay]\npull = true\norigins = [{:?}]\nnode_id = \"a\"\n",
            base(&b)
        ),
    );
    let a = Ringcast::start_at(
        &format!("127.0.0.1:{a_port}"),
        &["--config", a_cfg.to_str().expect("utf-8")],
    );
    let mut p = Peer::connect(a.rtmp, Intent::Play("circle".into()));
    until("StreamNotFound on a loop", &mut [&mut p], |p| {
        p[0].codes_since(0)
            .iter()
            .any(|c| c == status::PLAY_STREAM_NOT_FOUND)
    });
    a.wait_log("pull: no origin has it", Duration::from_secs(5));
    // B's pull from A (chain a,b) is the one A refuses; B's line may reach its log after
    // A's, which it caused: wait for it rather than read B's log at once.
    b.wait_logged("relay loop", Duration::from_secs(5));
}

#[test]
fn nginx_rtmp_and_ringcast_relay_to_each_other() {
    // ringcast origin → nginx-rtmp edge (its `pull`) → players.
    let o = origin("ngx-o");
    let ngx_edge = Nginx::start(
        "edge",
        &format!(
            "application live {{ live on; wait_key on; wait_video on; pull {}/live; }}",
            base(&o)
        ),
    );
    let name = "interop";
    let publisher = Publisher::start(o.rtmp, name);
    let ngx_addr: SocketAddr = format!("127.0.0.1:{}", ngx_edge.port)
        .parse()
        .expect("addr");
    let mut players = vec![rtmp_player(ngx_addr, name)];
    pump_until(
        "a player of nginx-rtmp's pull",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    check_frames(
        "player of the nginx-rtmp edge",
        &rtmp_media(&players[0]),
        false,
    );
    drop(players);

    // nginx-rtmp origin → ringcast edge → players.
    let ngx_origin = Nginx::start("origin", "application live { live on; }");
    let e = node(
        "ngx-e",
        "",
        &format!("pull = true\norigins = [{:?}]", ngx_origin.base()),
    );
    let p2 = Publisher::start(ngx_addr_of(&ngx_origin), name);
    let mut rtmp = vec![rtmp_player(e.rtmp, name)];
    let mut flv = vec![flv_player(e.http, name)];
    pump_until(
        "players of a ringcast edge of nginx-rtmp",
        Duration::from_secs(20),
        &mut rtmp,
        &mut flv,
        |r, f| pictures_rtmp(&r[0]) >= 30 && pictures_flv(&f[0]) >= 30,
    );
    check_intact("RTMP player of the ringcast edge", &rtmp_media(&rtmp[0]));
    check_intact("HTTP-FLV player of the ringcast edge", &flv_media(&flv[0]));
    p2.stop();

    // ringcast pushes to nginx-rtmp.
    let ngx_up = Nginx::start(
        "upstream",
        "application live { live on; wait_key on; wait_video on; }",
    );
    let pe = node("ngx-push", "", &format!("push = [{:?}]", ngx_up.base()));
    let p3 = Publisher::start(pe.rtmp, "pushed");
    let mut players = vec![rtmp_player(ngx_addr_of(&ngx_up), "pushed")];
    pump_until(
        "a player of what ringcast pushed to nginx-rtmp",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    // nginx-rtmp starts players at a keyframe without a GOP cache: the start is checked
    // like any other.
    check_frames(
        "player of the nginx-rtmp upstream",
        &rtmp_media(&players[0]),
        false,
    );
    p3.stop();
    publisher.stop();
}

fn ngx_addr_of(n: &Nginx) -> SocketAddr {
    format!("127.0.0.1:{}", n.port).parse().expect("addr")
}

#[test]
fn an_edge_finds_the_origin_an_encoder_landed_on_in_the_registry() {
    let redis = common::redis::Redis::start();
    let registry = redis.url(3);
    let reg = format!("registry = {registry:?}\nregistry_ttl = \"3s\"");
    // Two origins behind a TCP balancer: the encoder lands on the second, which the edge
    // does not list.
    let o1 = node("reg-o1", "", &reg);
    let o2 = node("reg-o2", "", &reg);
    let e = node(
        "reg-e",
        "",
        &format!("pull = true\n{reg}\norigins = [{:?}]", base(&o1)),
    );
    let name = "landed";
    let publisher = Publisher::start(o2.rtmp, name);
    o2.wait_log("publish", Duration::from_secs(5));
    let mut players = vec![rtmp_player(e.rtmp, name)];
    pump_until(
        "the edge's player of a registered stream",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    check_intact("player of the registered stream", &rtmp_media(&players[0]));
    assert!(api_players(&o1, &format!("live/{name}")).is_none());
    let s = api_players(&e, &format!("live/{name}")).expect("on the edge");
    assert_eq!(s["relays"][0]["peer"], base(&o2), "{s}");
    drop(players);
    // Redis goes down: what flows keeps flowing, and the edge falls back to its origins.
    drop(redis);
    let p1 = Publisher::start(o1.rtmp, "fallback");
    let mut players = vec![rtmp_player(e.rtmp, "fallback")];
    pump_until(
        "the edge's player without the registry",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    check_intact("player while Redis is down", &rtmp_media(&players[0]));
    e.wait_log("registry", Duration::from_secs(1));
    p1.stop();
    let peer = publisher.stop();
    assert!(!peer.closed, "the publisher on the origin was disconnected");
}

/// Runs `cmd` (a shell line), panicking with its output if it fails.
fn sh(cmd: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hosts of their own: network namespaces joined to this one by veth pairs. Deleted (with
/// their links) on drop.
struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// Namespace `rcN-<name>` for each name, linked to this namespace: host i is
    /// 10.91.i.2, and this side of its link 10.91.i.1.
    fn new(names: &[&str]) -> Hosts {
        let pid = std::process::id() % 10_000;
        let hosts = Hosts {
            names: names.iter().map(|n| format!("rc{pid}-{n}")).collect(),
        };
        for (i, ns) in hosts.names.iter().enumerate() {
            let (outer, inner) = (format!("rc{pid}o{i}"), format!("rc{pid}i{i}"));
            sh(&format!(
                "ip netns add {ns} && ip link add {outer} type veth peer name {inner} && \
                 ip link set {inner} netns {ns} && \
                 ip addr add 10.91.{i}.1/24 dev {outer} && ip link set {outer} up && \
                 ip -n {ns} addr add 10.91.{i}.2/24 dev {inner} && ip -n {ns} link set {inner} up && \
                 ip -n {ns} link set lo up && ip -n {ns} route add default via 10.91.{i}.1"
            ));
        }
        hosts
    }

    fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The link of host i, inside its namespace.
    fn inner(&self, i: usize) -> String {
        format!("rc{}i{i}", std::process::id() % 10_000)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (i, ns) in self.names.iter().enumerate() {
            let outer = format!("rc{}o{i}", std::process::id() % 10_000);
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &outer])
                .status();
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// A TCP proxy on `listen` to `upstream` that holds every byte for `delay` each way (this
/// kernel has no netem), and whose connections can be cut without a FIN or RST (what a
/// failed link or a lost NAT mapping does): after `cuts` is bumped, the connections open
/// then carry nothing more either way and stay open; new ones work. Runs until the process
/// ends.
fn proxy(
    listen: &str,
    upstream: SocketAddr,
    delay: Duration,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let l = TcpListener::bind(listen).expect("proxy bind");
    let addr = l.local_addr().expect("addr");
    let cuts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let generation = cuts.clone();
    std::thread::spawn(move || {
        for down in l.incoming() {
            let Ok(down) = down else { continue };
            let Ok(up) = std::net::TcpStream::connect_timeout(&upstream, Duration::from_secs(2))
            else {
                continue;
            };
            let born = generation.load(Ordering::SeqCst);
            for (mut from, mut to) in [
                (
                    down.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                ),
                (up, down),
            ] {
                let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
                let generation = generation.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if generation.load(Ordering::SeqCst) > born {
                            // Cut: swallow everything, close nothing.
                            continue;
                        }
                        if tx
                            .send((Instant::now() + delay, buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    for (due, bytes) in rx {
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        if to.write_all(&bytes).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, cuts)
}

#[test]
fn across_a_real_network_an_edge_fails_over_when_its_origins_link_is_cut() {
    // Origins O1 (10.91.0.2) and O2 (10.91.1.2) and the edge E (10.91.2.2), each a host of
    // its own; publishers, players and the 50 ms delaying proxies on this side. The edge's
    // link is limited to 40 Mbit/s and drops 1 % of what it receives.
    let hosts = Hosts::new(&["o1", "o2", "edge"]);
    let edge = 2;
    sh(&format!(
        "ip netns exec {ns} tc qdisc add dev {dev} root tbf rate 40mbit burst 64kb latency 200ms",
        ns = hosts.ns(edge),
        dev = hosts.inner(edge)
    ));
    sh(&format!(
        "ip netns exec {ns} nft -f - <<'NFT'
table inet faults {{
    chain input {{
        type filter hook input priority 0;
        iifname \"{dev}\" numgen random mod 100 == 0 drop
    }}
}}
NFT",
        ns = hosts.ns(edge),
        dev = hosts.inner(edge)
    ));
    let cfg = config_file("relay-netns-origin", "cores = 1\n");
    let cfg = cfg.to_str().expect("utf-8");
    let o1 = Ringcast::start_in_netns(
        hosts.ns(0),
        "10.91.0.2:1935",
        "10.91.0.2:8080",
        &["--config", cfg],
    );
    let o2 = Ringcast::start_in_netns(
        hosts.ns(1),
        "10.91.1.2:1935",
        "10.91.1.2:8080",
        &["--config", cfg],
    );
    let delay = Duration::from_millis(50);
    let (via1, _) = proxy("10.91.2.1:0", o1.rtmp, delay);
    let (via2, _) = proxy("10.91.2.1:0", o2.rtmp, delay);
    let edge_cfg = config_file(
        "relay-netns-edge",
        &format!(
            "cores = 2\n[relay]\npull = true\nbalance = \"ordered\"\n\
             origins = [\"rtmp://{via1}\", \"rtmp://{via2}\"]\nmedia_timeout = \"1s\"\nconnect_timeout = \"2s\"\n"
        ),
    );
    let e = Ringcast::start_in_netns(
        hosts.ns(edge),
        "10.91.2.2:1935",
        "10.91.2.2:8080",
        &["--config", edge_cfg.to_str().expect("utf-8")],
    );
    let name = "far";
    let p1 = Publisher::start(o1.rtmp, name);
    let p2 = Publisher::start(o2.rtmp, name);
    let mut rtmp: Vec<Peer> = (0..4).map(|_| rtmp_player(e.rtmp, name)).collect();
    let mut flv: Vec<FlvClient> = (0..2).map(|_| flv_player(e.http, name)).collect();
    pump_until(
        "the edge's players receiving through the faulty link",
        Duration::from_secs(30),
        &mut rtmp,
        &mut flv,
        |r, f| r.iter().all(|p| pictures_rtmp(p) >= 60) && f.iter().all(|c| pictures_flv(c) >= 60),
    );
    for (i, p) in rtmp.iter().enumerate() {
        check_intact(&format!("RTMP player {i} before the cut"), &rtmp_media(p));
    }
    // O1's link goes down: no FIN, no RST, just silence.
    let seen = positions(&rtmp, &flv);
    let cut = Instant::now();
    sh(&format!(
        "ip -n {} link set {} down",
        hosts.ns(0),
        hosts.inner(0)
    ));
    // The failover bound: media_timeout (1 s), a connect and play through the 50 ms proxy,
    // and O2's GOP cache.
    check_failover(&mut rtmp, &mut flv, &seen, cut, Duration::from_secs(3));
    e.wait_log("pull broke", Duration::from_secs(1));
    p1.stop();
    p2.stop();
    drop(e);
    drop(o1);
    drop(o2);
}

#[test]
fn a_push_whose_link_is_cut_silently_reconnects_on_unanswered_pings() {
    // The origin drops a publisher that sends nothing for 2 s (the cut push's old session).
    let cfg = config_file("relay-cut-o", "cores = 2\nidle_timeout = \"2s\"\n");
    let o = Ringcast::start(&["--config", cfg.to_str().expect("utf-8")]);
    let (via, cut) = proxy("127.0.0.1:0", o.rtmp, Duration::ZERO);
    let e = node(
        "relay-cut-e",
        "",
        &format!("push = [\"rtmp://{via}\"]\nmedia_timeout = \"1s\""),
    );
    let name = "cut";
    let publisher = Publisher::start(e.rtmp, name);
    let mut players = vec![rtmp_player(o.rtmp, name)];
    pump_until(
        "the origin's player receiving",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp(&r[0]) >= 30,
    );
    let seen = players[0].events.len();
    let t0 = Instant::now();
    cut.fetch_add(1, Ordering::SeqCst);
    let line = e.wait_log("push broke", Duration::from_secs(5));
    assert!(line.contains("stopped answering pings"), "{line}");
    eprintln!("push broke {:?} after the cut", t0.elapsed());
    pump_until(
        "pictures again after the cut",
        Duration::from_secs(20),
        &mut players,
        &mut [],
        |r, _| pictures_rtmp_since(&r[0], seen) >= 30,
    );
    eprintln!(
        "the origin's player has pictures again {:?} after the cut",
        t0.elapsed()
    );
    assert!(!players[0].closed, "the origin's player was disconnected");
    let peer = publisher.stop();
    assert!(!peer.closed, "the publisher was disconnected");
    assert_eq!(peer.codes_since(0), vec![status::PUBLISH_START.to_owned()]);
}
