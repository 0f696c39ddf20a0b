//! A hostile or broken peer costs only itself. Each test runs the real binary with a witness
//! (a publisher and a player of another stream, at about 1 Mbit/s) beside one attack, and
//! checks that the attacker is refused or closed with a logged reason, that the server's
//! memory stays within a bound, and that the witness player never waits more than a second.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{Peer, Ringcast, config_file, until};
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::chunk::{Message as ChunkMessage, Writer};
use ringcast::rtmp::handshake::{self, Progress};
use ringcast::rtmp::message::{Command, Message};
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::{Media, MediaKind, status};

/// The most the server's RSS may grow during an attack (before these fixes: 240-550 MiB).
const RSS_BOUND_KIB: u64 = 48 * 1024;
/// The longest the witness player may go without media.
const MAX_GAP: Duration = Duration::from_secs(1);

/// A server for one attack: two cores, short timeouts (unless `extra` sets them), and
/// `extra` config lines.
fn server(name: &str, extra: &str) -> Ringcast {
    let mut text = String::new();
    for (key, value) in [
        ("slow_player_timeout", "\"2s\""),
        ("handshake_timeout", "\"3s\""),
    ] {
        if !extra.contains(key) {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    text.push_str(extra);
    let cfg = config_file(name, &text);
    Ringcast::start(&[
        "--cores",
        "2",
        "--config",
        cfg.to_str().expect("utf-8 path"),
    ])
}

/// A publisher and a player of stream `witness`, each on its own thread, sending and
/// receiving ~1 Mbit/s of video (30 fps, a keyframe a second) and audio.
struct Witness {
    stop: Arc<AtomicBool>,
    publisher: JoinHandle<()>,
    player: JoinHandle<(Vec<Instant>, bool)>,
    since: Instant,
}

impl Witness {
    fn start(addr: SocketAddr) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let publisher = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut p = Peer::connect(addr, Intent::Publish("witness".into()));
                until("the witness publishing", &mut [&mut p], |p| {
                    p[0].has(|e| matches!(e, Event::Publishing { .. }))
                });
                p.client.send_media(&Media {
                    kind: MediaKind::Video,
                    timestamp: 0,
                    payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF]),
                });
                p.pump();
                let _ = tx.send(());
                let start = Instant::now();
                let mut frame = 0u32;
                while !stop.load(Ordering::Relaxed) && !p.closed {
                    let ts = frame * 33;
                    let key = frame % 30 == 0;
                    let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
                    v.resize(if key { 16_000 } else { 3_800 }, frame as u8);
                    p.client.send_media(&Media {
                        kind: MediaKind::Video,
                        timestamp: ts,
                        payload: Bytes::from(v),
                    });
                    p.client.send_media(&Media {
                        kind: MediaKind::Audio,
                        timestamp: ts,
                        payload: Bytes::from(vec![0xAF, 1, 9, 9, 9, 9]),
                    });
                    p.pump();
                    frame += 1;
                    let next = start + Duration::from_millis(u64::from(frame) * 33);
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        rx.recv_timeout(Duration::from_secs(15))
            .expect("the witness publishes");
        let (ptx, prx) = std::sync::mpsc::channel();
        let player = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut v = Peer::connect(addr, Intent::Play("witness".into()));
                let mut seen = 0;
                let mut arrivals = Vec::new();
                let mut told = false;
                while !stop.load(Ordering::Relaxed) && !v.closed {
                    v.pump();
                    for (at, e) in &v.events[seen..] {
                        if matches!(e, Event::Media(_)) {
                            arrivals.push(*at);
                            if !told {
                                told = true;
                                let _ = ptx.send(());
                            }
                        }
                    }
                    seen = v.events.len();
                }
                (arrivals, v.closed)
            })
        };
        prx.recv_timeout(Duration::from_secs(15))
            .expect("the witness player receives media");
        Witness {
            stop,
            publisher,
            player,
            since: Instant::now(),
        }
    }

    /// Stops both; panics unless the player stayed and never waited past [`MAX_GAP`].
    fn check(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.publisher.join().expect("publisher thread");
        let (arrivals, closed) = self.player.join().expect("player thread");
        assert!(!closed, "the witness player was disconnected");
        let mut last = self.since;
        let mut worst = Duration::ZERO;
        for t in arrivals.into_iter().filter(|t| *t >= self.since) {
            worst = worst.max(t.duration_since(last));
            last = t;
        }
        worst = worst.max(Instant::now().duration_since(last));
        eprintln!("witness: longest wait for media {worst:?}");
        assert!(
            worst < MAX_GAP + Duration::from_millis(200),
            "the witness player waited {worst:?} for media"
        );
    }
}

/// An attacker past the handshake and `connect`, writing raw chunks on its own socket.
struct Raw {
    sock: TcpStream,
    writer: Writer,
}

impl Raw {
    /// Connects, completes the handshake and `connect` (and `createStream` + `publish NAME`
    /// when given), then takes the socket over with a chunk size of 65536.
    fn connect(addr: SocketAddr, publish: Option<&str>) -> Raw {
        let sock = match publish {
            Some(name) => {
                let mut p = Peer::connect(addr, Intent::Publish(name.into()));
                until("publishing", &mut [&mut p], |p| {
                    p[0].has(|e| matches!(e, Event::Publishing { .. }))
                });
                p.sock
            }
            None => handshake_and_connect(addr),
        };
        sock.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("write timeout");
        let mut raw = Raw {
            sock,
            writer: Writer::default(),
        };
        let mut out = BytesMut::new();
        raw.writer
            .write(&Message::SetChunkSize(65536).into_chunk(2, 0, 0), &mut out);
        raw.writer.set_chunk_size(65536);
        raw.sock.write_all(&out).expect("set chunk size");
        raw
    }

    /// The chunk bytes of one message on chunk stream 20.
    fn encode(&mut self, type_id: u8, stream_id: u32, timestamp: u32, payload: Bytes) -> BytesMut {
        let mut out = BytesMut::new();
        self.writer.write(
            &ChunkMessage {
                csid: 20,
                timestamp,
                type_id,
                stream_id,
                payload,
            },
            &mut out,
        );
        out
    }

    /// Writes `bytes`; false once the server stops taking them (for 200 ms) or closed.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.sock.write_all(bytes).is_ok()
    }

    /// Reads (discarding) until the server closes the connection; how many bytes it sent,
    /// or None if it is still open after `within`.
    fn closed_within(&mut self, within: Duration) -> Option<usize> {
        let give_up = Instant::now() + within;
        self.sock
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        while Instant::now() < give_up {
            match self.sock.read(&mut buf) {
                Ok(0) => return Some(total),
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Some(total),
            }
        }
        None
    }
}

/// The AMF0 body of a command.
fn command(name: &str, txn: f64, object: Value, args: Vec<Value>) -> Bytes {
    Message::Command(Command::new(name, txn, object, args)).encode()
}

/// A socket past the handshake and an answered `connect` to app `live`, that neither
/// publishes nor plays.
fn handshake_and_connect(addr: SocketAddr) -> TcpStream {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut hs = handshake::Client::new(1, 0, false);
    let mut out = BytesMut::new();
    hs.start(&mut out);
    sock.write_all(&out).expect("C0 C1");
    out.clear();
    let mut inbuf = BytesMut::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = sock.read(&mut buf).expect("S0 S1 S2");
        assert!(n > 0, "closed during the handshake");
        inbuf.extend_from_slice(&buf[..n]);
        if hs.handle(&mut inbuf, &mut out).expect("handshake") == Progress::Done {
            break;
        }
    }
    sock.write_all(&out).expect("C2");
    let tc = Value::object([
        ("app", Value::from("live")),
        ("tcUrl", Value::from(format!("rtmp://{addr}/live"))),
    ]);
    let connect = Message::Command(Command::new("connect", 1.0, tc, vec![]));
    let mut w = Writer::default();
    out.clear();
    w.write(&connect.into_chunk(3, 0, 0), &mut out);
    sock.write_all(&out).expect("connect");
    // The answer (window size, bandwidth, chunk size, _result) comes in one go.
    let n = sock.read(&mut buf).expect("connect answered");
    assert!(n > 0, "closed instead of answering connect");
    sock
}

/// Tracks the server's peak RSS while an attack runs.
struct RssWatch {
    base: u64,
    peak: u64,
}

impl RssWatch {
    fn new(rc: &Ringcast) -> RssWatch {
        let base = rc.rss_kib();
        RssWatch { base, peak: base }
    }

    fn sample(&mut self, rc: &Ringcast) {
        self.peak = self.peak.max(rc.rss_kib());
    }

    fn check(&self, what: &str) {
        let grew = self.peak.saturating_sub(self.base);
        eprintln!(
            "{what}: RSS {} KiB -> peak {} KiB (+{grew} KiB)",
            self.base, self.peak
        );
        assert!(
            grew < RSS_BOUND_KIB,
            "{what}: RSS grew by {grew} KiB (from {} KiB)",
            self.base
        );
    }
}

#[test]
fn a_peer_that_never_reads_its_answers_is_stopped_and_closed() {
    // No message-rate limit here: back-pressure alone must stop it. The default slow-player
    // timeout: for 10 s the peer may leave its answers unread.
    let rc = server(
        "never-reads",
        "max_message_rate = 0\nslow_player_timeout = \"10s\"",
    );
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    let mut raw = Raw::connect(rc.rtmp, None);
    // `FCPublish` over and over: ~30 bytes in, ~150 out (an onFCPublish status), never read.
    let one = command("FCPublish", 2.0, Value::Null, vec![Value::from("x")]);
    let mut batch = BytesMut::new();
    for _ in 0..200 {
        batch.extend_from_slice(&raw.encode(20, 0, 0, one.clone()));
    }
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut stalled = false;
    while Instant::now() < give_up {
        rss.sample(&rc);
        if !raw.send(&batch) {
            stalled = true;
            break;
        }
    }
    assert!(
        stalled,
        "the server kept reading a peer that reads nothing: {} KiB RSS\n{}",
        rc.rss_kib(),
        rc.log()
    );
    // Stalled: the server stopped reading. It closes the peer after slow_player_timeout.
    let me = raw.sock.local_addr().expect("addr");
    let line = rc.wait_log(&format!("closed peer={me}"), Duration::from_secs(15));
    assert!(
        line.contains("peer does not read") || line.contains("write stalled"),
        "{line}"
    );
    rss.sample(&rc);
    rss.check("a peer that never reads");
    witness.check();
}

#[test]
fn a_window_of_one_byte_is_not_one_acknowledgement_per_message() {
    let rc = server("tiny-window", "max_message_rate = 0");
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    let mut raw = Raw::connect(rc.rtmp, None);
    let w = raw.encode(5, 0, 0, Bytes::copy_from_slice(&1u32.to_be_bytes()));
    assert!(raw.send(&w));
    // 1 MB of 4-byte acknowledgement messages (16 bytes each on the wire), never reading.
    let mut batch = BytesMut::new();
    for i in 0..4096u32 {
        batch.extend_from_slice(&raw.encode(3, 0, 0, Bytes::copy_from_slice(&i.to_be_bytes())));
    }
    let mut sent = 0;
    while sent < (1 << 20) {
        assert!(raw.send(&batch), "the server stopped reading");
        sent += batch.len();
        rss.sample(&rc);
    }
    // What came back: an acknowledgement per 4 KiB at most, not per message.
    raw.sock
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let back = raw
        .closed_within(Duration::from_secs(10))
        .expect("the server closes after our end");
    eprintln!("a one-byte window: {back} bytes came back for {sent} sent");
    assert!(back < 64 * 1024, "{back} bytes came back for {sent} sent");
    rss.check("a one-byte window");
    witness.check();
}

#[test]
fn a_message_flood_closes_the_publisher_and_spares_its_players() {
    let rc = server("flood", "");
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    let mut raw = Raw::connect(rc.rtmp, Some("flood"));
    let mut players: Vec<Peer> = (0..10)
        .map(|_| Peer::connect(rc.rtmp, Intent::Play("flood".into())))
        .collect();
    {
        let mut refs: Vec<&mut Peer> = players.iter_mut().collect();
        until("the flood's players playing", &mut refs, |p| {
            p.iter()
                .all(|p| p.codes_since(0).iter().any(|c| c == status::PLAY_START))
        });
    }
    // Tiny video messages as fast as the socket takes them (the limit is 2,000/s over 5 s).
    let mut batch = BytesMut::new();
    for i in 0..2000u32 {
        batch.extend_from_slice(&raw.encode(9, 1, i, Bytes::from_static(&[0x27, 1])));
    }
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up && raw.send(&batch) {
        rss.sample(&rc);
        for p in players.iter_mut() {
            p.pump();
        }
    }
    rc.wait_log("message rate", Duration::from_secs(5));
    assert!(raw.closed_within(Duration::from_secs(5)).is_some());
    // Its players heard that the publisher left, and stay for it to come back.
    let mut refs: Vec<&mut Peer> = players.iter_mut().collect();
    until("UnpublishNotify", &mut refs, |p| {
        p.iter().all(|p| {
            p.codes_since(0)
                .iter()
                .any(|c| c == status::PLAY_UNPUBLISH_NOTIFY)
        })
    });
    assert!(
        players.iter().all(|p| !p.closed),
        "a player was disconnected"
    );
    rss.sample(&rc);
    rss.check("a message flood");
    witness.check();
}

/// One empty FLV tag with its previous-tag-size, as an aggregate carries it.
fn empty_tag(ts: u32) -> [u8; 15] {
    let t = ts.to_be_bytes();
    [9, 0, 0, 0, t[1], t[2], t[3], t[0], 0, 0, 0, 0, 0, 0, 11]
}

#[test]
fn an_aggregate_of_empty_tags_is_dropped() {
    let rc = server("aggregate", "");
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    let mut raw = Raw::connect(rc.rtmp, Some("agg"));
    let mut player = Peer::connect(rc.rtmp, Intent::Play("agg".into()));
    until("the aggregate's player playing", &mut [&mut player], |p| {
        p[0].codes_since(0).iter().any(|c| c == status::PLAY_START)
    });
    // 8 MiB: ~560,000 empty tags.
    let body: Vec<u8> = (0..(8 << 20) / 15).flat_map(empty_tag).collect();
    let msg = raw.encode(22, 1, 0, Bytes::from(body));
    for _ in 0..3 {
        for piece in msg.chunks(64 * 1024) {
            assert!(raw.send(piece), "the server stopped reading");
            rss.sample(&rc);
            player.pump();
        }
    }
    let line = rc.wait_log("message dropped", Duration::from_secs(10));
    assert!(line.contains("more than 1024 tags"), "{line}");
    rss.sample(&rc);
    rss.check("aggregates of empty tags");
    assert!(!player.closed);
    witness.check();
}

#[test]
fn declared_lengths_cost_only_what_arrives() {
    let rc = server("declared", "");
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    // 40 peers, each starting two video messages that declare 16 MiB (the most a connection
    // may have pending: 32 MiB) and bringing 128 bytes of each.
    let mut raws: Vec<Raw> = (0..40).map(|_| Raw::connect(rc.rtmp, None)).collect();
    for raw in &mut raws {
        // Back to chunks of 128 bytes, so that the first chunk of each message is whole.
        assert!(raw.send(&[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 128]));
        for csid in [6u8, 7] {
            let mut chunk = vec![csid, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
            chunk.extend_from_slice(&[0x17; 128]);
            assert!(raw.send(&chunk), "the server stopped reading");
        }
    }
    // Each connection is still open, holding its two incomplete messages.
    for raw in &mut raws {
        assert!(raw.closed_within(Duration::from_millis(20)).is_none());
    }
    rss.sample(&rc);
    let grew = rss.peak.saturating_sub(rss.base);
    eprintln!("80 declared 16 MiB messages: RSS +{grew} KiB");
    assert!(grew < 16 * 1024, "RSS grew by {grew} KiB for 10 KiB sent");
    drop(raws);
    witness.check();
}

#[test]
fn oversized_and_value_heavy_commands_are_refused() {
    let rc = server("commands", "");
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    // A command of 8 MiB is refused at its header: the connection closes at once.
    let mut raw = Raw::connect(rc.rtmp, None);
    let header = [0x14, 0, 0, 0, 0x80, 0, 0, 20, 0, 0, 0, 0];
    assert!(raw.send(&header));
    let line = rc.wait_log("closing", Duration::from_secs(5));
    assert!(line.contains("exceeds the limit of 65536"), "{line}");
    assert!(raw.closed_within(Duration::from_secs(5)).is_some());
    // Commands just under 64 KiB holding a strict array of 65,000 nulls: each is dropped
    // after 16,384 values; the connection goes on.
    let mut raw = Raw::connect(rc.rtmp, None);
    let mut body = BytesMut::new();
    Value::from("connect").encode(&mut body);
    Value::Number(1.0).encode(&mut body);
    body.extend_from_slice(&[0x0A, 0, 0, 0xFD, 0xE8]);
    body.resize(body.len() + 65_000, 0x05);
    let msg = raw.encode(20, 0, 0, body.freeze());
    for _ in 0..200 {
        assert!(raw.send(&msg), "the server stopped reading");
        rss.sample(&rc);
    }
    let line = rc.wait_log("message dropped", Duration::from_secs(5));
    assert!(line.contains("16384 values"), "{line}");
    assert!(raw.closed_within(Duration::from_millis(300)).is_none());
    rss.check("value-heavy commands");
    witness.check();
}

#[test]
fn a_create_stream_flood_costs_only_its_sender() {
    let rc = server("create-stream", "");
    let witness = Witness::start(rc.rtmp);
    let mut rss = RssWatch::new(&rc);
    let mut raw = Raw::connect(rc.rtmp, None);
    let mut batch = BytesMut::new();
    for i in 0..2000 {
        batch.extend_from_slice(&raw.encode(
            20,
            0,
            0,
            command("createStream", f64::from(i), Value::Null, vec![]),
        ));
    }
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while Instant::now() < give_up && sent < 200_000 && raw.send(&batch) {
        sent += 2000;
        rss.sample(&rc);
    }
    assert!(
        raw.closed_within(Duration::from_secs(10)).is_some(),
        "still open"
    );
    // A new player of the witness stream starts at once.
    let mut v = Peer::connect(rc.rtmp, Intent::Play("witness".into()));
    until("a new player's media", &mut [&mut v], |p| {
        !p[0].media().is_empty()
    });
    rss.check("a createStream flood");
    witness.check();
}

#[test]
fn slow_http_clients_are_cut_at_the_header_timeout() {
    let rc = server("slowloris", "http_header_timeout = \"1s\"");
    let http = rc.http;
    let witness = Witness::start(rc.rtmp);
    let started = Instant::now();
    let mut socks: Vec<TcpStream> = (0..300)
        .map(|_| {
            let s = TcpStream::connect(http).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(1)))
                .expect("timeout");
            s
        })
        .collect();
    // One byte every 200 ms each: a head that never ends.
    let mut open = socks.len();
    while open > 0 && started.elapsed() < Duration::from_secs(4) {
        open = 0;
        for s in socks.iter_mut() {
            let closed = s.write_all(b"G").is_err()
                || !matches!(s.read(&mut [0u8; 512]), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
            if !closed {
                open += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        open,
        0,
        "slow connections held after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    witness.check();
}

#[test]
fn connections_per_address_can_be_capped() {
    let cfg = config_file("per-ip", "max_connections_per_ip = 5\n");
    let rc = Ringcast::start(&["--cores", "1", "--config", cfg.to_str().expect("path")]);
    let held: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(rc.rtmp).expect("connect"))
        .collect();
    // Each of the five is taken before the next is made.
    for s in &held {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
    }
    let mut sixth = TcpStream::connect(rc.rtmp).expect("connect");
    sixth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert!(
        matches!(sixth.read(&mut [0u8; 16]), Ok(0) | Err(_)),
        "the sixth connection was served"
    );
    rc.wait_log("connections from this address", Duration::from_secs(5));
    drop(held);
    // Once the server has seen them go, the address may connect again.
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < give_up, "not served after the others left");
        let mut p = Peer::connect(rc.rtmp, Intent::Play("x".into()));
        let try_until = Instant::now() + Duration::from_secs(1);
        while !p.closed && Instant::now() < try_until && !p.has(|e| matches!(e, Event::Connected)) {
            p.pump();
        }
        if p.has(|e| matches!(e, Event::Connected)) {
            break;
        }
    }
}

#[test]
fn out_of_descriptors_the_server_sheds_without_spinning_and_recovers() {
    let cfg = config_file("fds", "handshake_timeout = \"2s\"\n");
    let rc = Ringcast::start_with_fd_limit(
        96,
        &["--cores", "1", "--config", cfg.to_str().expect("path")],
    );
    let witness = Witness::start(rc.rtmp);
    // Far more connections than descriptors; they send nothing.
    let socks: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(rc.rtmp).ok())
        .collect();
    rc.wait_log("out of file descriptors", Duration::from_secs(5));
    let cpu = rc.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let spent = rc.cpu_time().saturating_sub(cpu);
    assert!(
        spent < Duration::from_millis(500),
        "{spent:?} of CPU in a second"
    );
    drop(socks);
    // Once the server has closed the flood's connections (its descriptors are back), a
    // new player is served: not closed by a shed still waiting from the flood.
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", rc.pid())).map_or(0, Iterator::count);
    let give_up = Instant::now() + Duration::from_secs(10);
    while fds() > 48 {
        assert!(Instant::now() < give_up, "{} descriptors still open", fds());
        std::thread::sleep(Duration::from_millis(20));
    }
    witness.check();
    let mut v = Peer::connect(rc.rtmp, Intent::Play("witness".into()));
    let give_up = Instant::now() + Duration::from_secs(10);
    while v.codes_since(0).is_empty()
        || !v
            .codes_since(0)
            .iter()
            .any(|c| c == status::PLAY_START || c == status::PLAY_STREAM_NOT_FOUND)
    {
        assert!(Instant::now() < give_up, "not served after the flood");
        assert!(!v.closed, "closed after the flood");
        v.pump();
    }
}

#[test]
fn peer_chosen_names_are_escaped_in_the_log() {
    let rc = server("escape", "");
    let name = "evil\nFORGED LINE\u{1b}[31m";
    let mut p = Peer::connect(rc.rtmp, Intent::Publish(name.into()));
    until("publishing", &mut [&mut p], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let line = rc.wait_log("publish", Duration::from_secs(5));
    assert!(
        line.contains("live/evil\\nFORGED LINE\\u{1b}[31m"),
        "{line}"
    );
    assert!(
        !rc.log().lines().any(|l| l.starts_with("FORGED")),
        "a stream name forged a log line"
    );
    assert!(!rc.log().contains('\u{1b}'), "an escape reached the log");
}

#[test]
fn a_connect_storm_is_summarised_in_the_log() {
    let rc = server("storm", "");
    let witness = Witness::start(rc.rtmp);
    let before = rc.log().lines().count();
    let started = Instant::now();
    for _ in 0..3000 {
        if let Ok(s) = TcpStream::connect(rc.rtmp) {
            drop(s);
        }
    }
    let took = started.elapsed();
    // The summary comes with the first line of a later second.
    std::thread::sleep(Duration::from_millis(1100));
    drop(TcpStream::connect(rc.rtmp));
    rc.wait_log("suppressed", Duration::from_secs(5));
    let lines = rc.log().lines().count() - before;
    // Two cores, 100 lines a second each, plus the summaries.
    let most = (took.as_secs() as usize + 3) * 2 * 110;
    assert!(
        lines <= most,
        "{lines} log lines for 3000 connections in {took:?}"
    );
    witness.check();
}

#[test]
fn a_refused_publish_hears_why_before_the_close() {
    let rc = server("refused", "");
    let mut first = Peer::connect(rc.rtmp, Intent::Publish("taken".into()));
    until("the first publisher", &mut [&mut first], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    for _ in 0..5 {
        // The second publisher sends media at once, without waiting for an answer, and
        // keeps sending after the server decided: its unread bytes must not turn the
        // close into a reset that loses the answer.
        let mut p = Peer::connect(rc.rtmp, Intent::Publish("taken".into()));
        until("connected", &mut [&mut p], |p| {
            p[0].has(|e| matches!(e, Event::Connected))
        });
        let mut payload = vec![0x27u8, 1, 0, 0, 0];
        payload.resize(30_000, 7);
        for i in 0..60 {
            p.client.send_media(&Media {
                kind: MediaKind::Video,
                timestamp: i * 33,
                payload: Bytes::from(payload.clone()),
            });
        }
        let out = p.client.take_output();
        let _ = p.sock.write_all(&out);
        let give_up = Instant::now() + Duration::from_secs(10);
        while !p.closed {
            assert!(Instant::now() < give_up, "not closed");
            p.pump();
        }
        assert!(
            p.codes_since(0)
                .iter()
                .any(|c| c == status::PUBLISH_BAD_NAME),
            "the refusal was lost: {:?}",
            p.codes_since(0)
        );
        first.pump();
    }
}
