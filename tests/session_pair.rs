//! An in-memory client ↔ server pair: a client session publishes, another plays, through
//! server sessions joined by a tiny hub. No sockets: bytes move between sessions in
//! deliberately awkward pieces.

use bytes::{Bytes, BytesMut};
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::chunk::{Reader, ReaderConfig};
use ringcast::rtmp::handshake::HANDSHAKE_SIZE;
use ringcast::rtmp::message::{Message, UserControl};
use ringcast::rtmp::session::client::{self, Client, ClientConfig, Intent};
use ringcast::rtmp::session::server::{self, Server, ServerConfig};
use ringcast::rtmp::session::{Media, MediaKind, status};

/// One connection: a client session, a server session and their receive buffers.
struct Link {
    client: Client,
    server: Server,
    to_server: BytesMut,
    to_client: BytesMut,
    /// Every byte the server sent, for black-box checks.
    server_wire: Vec<u8>,
    /// Bytes moved per step, to exercise partial input.
    step: usize,
    now: u64,
}

impl Link {
    fn new(intent: Intent, step: usize, digest: bool) -> Link {
        let mut cfg = ClientConfig::new("live", "rtmp://127.0.0.1:1935/live", intent);
        cfg.digest_handshake = digest;
        let mut client = Client::new(cfg, 7, 0);
        client.start();
        Link {
            client,
            server: Server::new(ServerConfig::default(), 11, 0),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            server_wire: Vec::new(),
            step,
            now: 0,
        }
    }

    /// Moves bytes both ways until both sides are quiet; returns the server events seen.
    fn pump(&mut self) -> Vec<server::Event> {
        let mut events = Vec::new();
        let mut c2s = BytesMut::new();
        let mut s2c = BytesMut::new();
        for _ in 0..1_000_000 {
            c2s.extend_from_slice(&self.client.take_output());
            let out = self.server.take_output();
            self.server_wire.extend_from_slice(&out);
            s2c.extend_from_slice(&out);
            if c2s.is_empty() && s2c.is_empty() {
                return events;
            }
            self.now += 1;
            let n = self.step.min(c2s.len());
            self.to_server.extend_from_slice(&c2s.split_to(n));
            self.server
                .handle_input(&mut self.to_server, self.now)
                .expect("server accepts client bytes");
            while let Some(e) = self.server.poll_event() {
                events.push(e);
            }
            let n = self.step.min(s2c.len());
            self.to_client.extend_from_slice(&s2c.split_to(n));
            self.client
                .handle_input(&mut self.to_client, self.now)
                .expect("client accepts server bytes");
        }
        panic!("pump did not settle");
    }

    fn client_events(&mut self) -> Vec<client::Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }
}

fn metadata() -> Value {
    Value::EcmaArray(vec![
        ("width".into(), Value::Number(1280.0)),
        ("height".into(), Value::Number(720.0)),
        ("videocodecid".into(), Value::Number(7.0)),
        ("audiocodecid".into(), Value::Number(10.0)),
        ("encoder".into(), Value::from("ringcast test")),
    ])
}

/// A publisher's stream: sequence headers, a keyframe larger than any chunk, inter frames,
/// audio, a cue point, and timestamps that cross into extended territory.
fn stream() -> Vec<Media> {
    let mut out = vec![
        Media {
            kind: MediaKind::Video,
            timestamp: 0,
            payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF]),
        },
        Media {
            kind: MediaKind::Audio,
            timestamp: 0,
            payload: Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
        },
    ];
    let mut cue = BytesMut::new();
    Value::from("onCuePoint").encode(&mut cue);
    Value::object([
        ("name", Value::from("ad-break")),
        ("time", Value::Number(1.5)),
    ])
    .encode(&mut cue);
    for i in 0..40u32 {
        let ts = if i < 20 { i * 33 } else { 0x00FF_FF00 + i * 33 };
        let key = i % 10 == 0;
        let len = if key { 20_000 } else { 900 + i as usize };
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        v.extend((0..len).map(|j| (j as u32 ^ i) as u8));
        out.push(Media {
            kind: MediaKind::Video,
            timestamp: ts,
            payload: Bytes::from(v),
        });
        out.push(Media {
            kind: MediaKind::Audio,
            timestamp: ts + 10,
            payload: Bytes::from(vec![0xAF, 1, i as u8, 7, 7, 7]),
        });
        if i == 25 {
            out.push(Media {
                kind: MediaKind::Data,
                timestamp: ts + 11,
                payload: cue.clone().freeze(),
            });
        }
    }
    out
}

fn publish_and_play(step: usize, digest: bool) {
    let mut player = Link::new(Intent::Play("cam".into()), step, digest);
    let mut publisher = Link::new(Intent::Publish("cam?token=abc".into()), step, digest);

    // The player arrives first; the hub accepts its play and holds it until media flows.
    let ev = player.pump();
    let play_sid = ev
        .iter()
        .find_map(|e| match e {
            server::Event::PlayRequested {
                stream_id,
                app,
                stream: name,
                query,
                ..
            } => {
                assert_eq!((app.as_str(), name.as_str(), query), ("live", "cam", &None));
                Some(*stream_id)
            }
            _ => None,
        })
        .expect("play requested");
    assert!(matches!(
        ev.first(),
        Some(server::Event::HandshakeDone { digest: d }) if *d == digest
    ));
    player.server.accept_play(play_sid);
    player.pump();
    let pe = player.client_events();
    assert!(
        pe.contains(&client::Event::Playing { stream_id: 1 }),
        "{pe:?}"
    );

    let ev = publisher.pump();
    let (pub_sid, query) = ev
        .iter()
        .find_map(|e| match e {
            server::Event::PublishRequested {
                stream_id,
                stream: name,
                query,
                publish_type,
                ..
            } => {
                assert_eq!((name.as_str(), publish_type.as_str()), ("cam", "live"));
                Some((*stream_id, query.clone()))
            }
            _ => None,
        })
        .expect("publish requested");
    assert_eq!(query.as_deref(), Some("token=abc"));
    publisher.server.accept_publish(pub_sid);
    publisher.pump();
    let ce = publisher.client_events();
    assert!(
        ce.contains(&client::Event::Publishing { stream_id: 1 }),
        "{ce:?}"
    );

    // Publish metadata and the stream; the hub forwards every event to the player.
    publisher.client.send_metadata(0, &metadata());
    let sent = stream();
    for m in &sent {
        publisher.client.send_media(m);
    }
    let ev = publisher.pump();
    let mut forwarded_meta = None;
    for e in ev {
        match e {
            server::Event::Metadata {
                stream_id,
                timestamp,
                body,
            } => {
                assert_eq!(stream_id, pub_sid);
                forwarded_meta = Some(body.clone());
                player.server.send_metadata(play_sid, timestamp, body);
            }
            server::Event::Media { stream_id, media } => {
                assert_eq!(stream_id, pub_sid);
                player.server.send_media(play_sid, &media);
            }
            other => panic!("unexpected publisher event {other:?}"),
        }
    }
    player.pump();

    let mut want_meta = BytesMut::new();
    Value::from("onMetaData").encode(&mut want_meta);
    metadata().encode(&mut want_meta);
    assert_eq!(forwarded_meta.as_deref(), Some(&want_meta[..]));

    let got = player.client_events();
    let meta: Vec<&client::Event> = got
        .iter()
        .filter(|e| matches!(e, client::Event::Metadata { .. }))
        .collect();
    assert_eq!(
        meta,
        vec![&client::Event::Metadata {
            timestamp: 0,
            body: want_meta.freeze()
        }]
    );
    let media: Vec<Media> = got
        .into_iter()
        .filter_map(|e| match e {
            client::Event::Media(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(media.len(), sent.len());
    for (i, (g, s)) in media.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "message {i}");
    }

    // Unpublish: the server reports it once; the player is told.
    publisher.client.stop();
    let ev = publisher.pump();
    let unpublished = ev
        .iter()
        .filter(|e| matches!(e, server::Event::Unpublished { .. }))
        .count();
    assert_eq!(unpublished, 1, "{ev:?}");
    player.server.notify_unpublished(play_sid);
    player.pump();
    let pe = player.client_events();
    assert!(pe.contains(&client::Event::StreamEof), "{pe:?}");
    assert!(
        pe.iter()
            .any(|e| matches!(e, client::Event::Status { code, .. }
            if code == status::PLAY_UNPUBLISH_NOTIFY)),
        "{pe:?}"
    );
}

#[test]
fn publish_and_play_through_server_sessions() {
    publish_and_play(usize::MAX, false);
}

#[test]
fn publish_and_play_one_byte_at_a_time_with_digest_handshake() {
    publish_and_play(1, true);
}

#[test]
fn publish_and_play_in_odd_pieces() {
    publish_and_play(1447, false);
}

#[test]
fn rejected_publish_and_play_reach_the_client() {
    let mut p = Link::new(Intent::Publish("taken".into()), usize::MAX, false);
    let ev = p.pump();
    let sid = ev
        .iter()
        .find_map(|e| match e {
            server::Event::PublishRequested { stream_id, .. } => Some(*stream_id),
            _ => None,
        })
        .expect("publish requested");
    p.server
        .reject_publish(sid, status::PUBLISH_BAD_NAME, "taken is already published");
    p.pump();
    let ce = p.client_events();
    assert!(ce.contains(&client::Event::Rejected {
        code: status::PUBLISH_BAD_NAME.into(),
        description: "taken is already published".into()
    }));
    assert!(
        !ce.iter()
            .any(|e| matches!(e, client::Event::Publishing { .. }))
    );

    let mut v = Link::new(Intent::Play("nothing".into()), usize::MAX, false);
    let ev = v.pump();
    let sid = ev
        .iter()
        .find_map(|e| match e {
            server::Event::PlayRequested { stream_id, .. } => Some(*stream_id),
            _ => None,
        })
        .expect("play requested");
    v.server.reject_play(sid, "no such stream");
    v.pump();
    assert!(v.client_events().contains(&client::Event::Rejected {
        code: status::PLAY_STREAM_NOT_FOUND.into(),
        description: "no such stream".into()
    }));
}

/// Decodes everything the server sent after S0+S1+S2.
fn server_messages(wire: &[u8]) -> Vec<Message> {
    let mut buf = BytesMut::from(&wire[1 + 2 * HANDSHAKE_SIZE..]);
    let mut r = Reader::new(ReaderConfig::default());
    let mut out = Vec::new();
    while let Some(m) = r.read(&mut buf).expect("server output is valid") {
        out.push(Message::decode(m.type_id, m.payload).expect("decodes"));
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn server_follows_the_connect_flow_and_acknowledges() {
    let mut p = Link::new(Intent::Publish("s".into()), usize::MAX, false);
    p.pump();
    let msgs = server_messages(&p.server_wire);
    // connect → Window Ack Size, Set Peer Bandwidth, Set Chunk Size, then _result.
    assert_eq!(msgs[0], Message::WindowAckSize(2_500_000));
    assert_eq!(
        msgs[1],
        Message::SetPeerBandwidth {
            window: 2_500_000,
            limit: 2
        }
    );
    assert_eq!(msgs[2], Message::SetChunkSize(4096));
    let Message::Command(result) = &msgs[3] else {
        panic!("expected _result, got {:?}", msgs[3]);
    };
    assert_eq!(
        (result.name.as_str(), result.transaction_id),
        ("_result", 1.0)
    );
    assert_eq!(
        result
            .arg(0)
            .and_then(|v| v.get("code"))
            .and_then(Value::as_str),
        Some(status::CONNECT_SUCCESS)
    );

    // The client announced a window of 2,500,000 bytes: after 3 MB the server acknowledges.
    let ev = p.pump();
    assert!(ev.is_empty());
    let sid = p.client.stream_id();
    p.server.accept_publish(sid);
    p.pump();
    let before = server_messages(&p.server_wire).len();
    for i in 0..300u32 {
        p.client.send_media(&Media {
            kind: MediaKind::Video,
            timestamp: i,
            payload: Bytes::from(vec![0x27; 10_000]),
        });
    }
    p.pump();
    let acks: Vec<Message> = server_messages(&p.server_wire)
        .into_iter()
        .skip(before)
        .filter(|m| matches!(m, Message::Acknowledgement(_)))
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    let Message::Acknowledgement(n) = acks[0] else {
        unreachable!()
    };
    assert!((2_500_000..2_600_000).contains(&n), "ack of {n}");
}

#[test]
fn pings_are_answered_on_both_sides() {
    let cfg = ServerConfig {
        ping_interval_ms: 1000,
        ..ServerConfig::default()
    };
    let mut p = Link::new(Intent::Play("s".into()), usize::MAX, false);
    p.server = Server::new(cfg, 1, 0);
    p.pump();
    let due = p.server.poll_timeout().expect("a ping is scheduled");
    p.server.handle_timeout(due).expect("no timeout yet");
    let ev = p.pump();
    assert!(
        ev.iter().any(|e| matches!(e, server::Event::Pong { .. })),
        "{ev:?}"
    );
    let msgs = server_messages(&p.server_wire);
    assert!(msgs.iter().any(|m| matches!(
        m,
        Message::UserControl(UserControl::PingRequest(v)) if u64::from(*v) == due
    )));

    // The client's ping is answered by the server.
    p.client.ping(p.now);
    p.pump();
    assert!(
        p.client_events()
            .iter()
            .any(|e| matches!(e, client::Event::Pong { .. }))
    );
}

#[test]
fn a_peer_silent_past_the_ping_timeout_fails_the_session() {
    let cfg = ServerConfig {
        ping_interval_ms: 1000,
        ping_timeout_ms: 3000,
        ..ServerConfig::default()
    };
    let mut p = Link::new(Intent::Play("s".into()), usize::MAX, false);
    p.server = Server::new(cfg, 1, 0);
    p.pump();
    // Pings at 1 s and 2 s; nothing comes back (the client's answers are never delivered).
    let first = p.server.poll_timeout().expect("a ping is scheduled");
    p.server.handle_timeout(first).expect("first ping");
    let second = p.server.poll_timeout().expect("the next ping");
    assert_eq!(second, first + 1000);
    p.server.handle_timeout(second).expect("second ping");
    let _ = p.server.take_output();
    // The deadline counts from the first unanswered ping.
    assert_eq!(
        p.server.poll_timeout(),
        Some(first + 3000).min(Some(second + 1000))
    );
    p.server.handle_timeout(first + 2999).expect("not yet");
    let _ = p.server.take_output();
    let e = p
        .server
        .handle_timeout(first + 3000)
        .expect_err("silent past the timeout");
    assert!(
        matches!(e, ringcast::rtmp::session::Error::PingTimeout(3000)),
        "{e}"
    );

    // Anything from the peer resets it.
    let mut p = Link::new(Intent::Play("s".into()), usize::MAX, false);
    p.server = Server::new(
        ServerConfig {
            ping_interval_ms: 1000,
            ping_timeout_ms: 3000,
            ..ServerConfig::default()
        },
        1,
        0,
    );
    p.pump();
    let first = p.server.poll_timeout().expect("a ping is scheduled");
    p.server.handle_timeout(first).expect("first ping");
    p.pump(); // the client answers
    for t in [first + 1000, first + 2000, first + 3000, first + 4000] {
        p.server
            .handle_timeout(t)
            .expect("answered pings never time out");
        p.pump();
    }
}

#[test]
fn unknown_command_gets_an_error_and_the_session_goes_on() {
    use ringcast::rtmp::chunk::{Writer, csid};
    use ringcast::rtmp::message::Command;
    let mut p = Link::new(Intent::Play("s".into()), usize::MAX, false);
    p.pump();
    // Write a raw command the server does not know, with a transaction id.
    let mut w = Writer::default();
    let mut out = BytesMut::new();
    let cmd = Command::new("doSomethingOdd", 42.0, Value::Null, vec![Value::from("x")]);
    w.write(
        &Message::Command(cmd).into_chunk(csid::CONTROL + 60, 0, 0),
        &mut out,
    );
    p.to_server.extend_from_slice(&out);
    p.server
        .handle_input(&mut p.to_server, 1)
        .expect("still fine");
    let ev: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert!(
        matches!(&ev[..], [server::Event::UnknownCommand { command }] if command.name == "doSomethingOdd")
    );
    p.server_wire.extend_from_slice(&p.server.take_output());
    let msgs = server_messages(&p.server_wire);
    let Some(Message::Command(err)) = msgs.last() else {
        panic!("no answer");
    };
    assert_eq!((err.name.as_str(), err.transaction_id), ("_error", 42.0));
}

#[test]
fn closing_reports_the_streams_that_were_active() {
    let mut p = Link::new(Intent::Publish("gone".into()), usize::MAX, false);
    p.pump();
    p.server.accept_publish(1);
    p.pump();
    p.server.handle_close();
    let ev: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert_eq!(
        ev,
        vec![
            server::Event::Unpublished { stream_id: 1 },
            server::Event::Closed
        ]
    );
}

/// Pumps a publishing link until its publish is requested, accepts it, and returns the
/// message stream id.
fn accept_the_publish(p: &mut Link) -> u32 {
    let sid = p
        .pump()
        .iter()
        .find_map(|e| match e {
            server::Event::PublishRequested { stream_id, .. } => Some(*stream_id),
            _ => None,
        })
        .expect("publish requested");
    p.server.accept_publish(sid);
    p.pump();
    sid
}

/// Raw chunk bytes of `msgs` (type id, stream id, timestamp, payload) on chunk stream 4,
/// after a Set Chunk Size of 128 (whatever the client set before).
fn raw_messages(msgs: &[(u8, u32, u32, Bytes)]) -> BytesMut {
    use ringcast::rtmp::chunk::{Message as ChunkMessage, Writer};
    let mut w = Writer::default();
    let mut out = BytesMut::new();
    let set = Message::SetChunkSize(128).into_chunk(2, 0, 0);
    w.write(&set, &mut out);
    for (type_id, stream_id, timestamp, payload) in msgs {
        w.write(
            &ChunkMessage {
                csid: 4,
                timestamp: *timestamp,
                type_id: *type_id,
                stream_id: *stream_id,
                payload: payload.clone(),
            },
            &mut out,
        );
    }
    out
}

/// Acknowledgements among what the server sent.
fn acks(wire: &[u8]) -> usize {
    server_messages(wire)
        .iter()
        .filter(|m| matches!(m, Message::Acknowledgement(_)))
        .count()
}

#[test]
fn a_tiny_window_ack_size_is_raised_to_the_minimum() {
    use ringcast::rtmp::session::MIN_ACK_WINDOW;
    let mut p = Link::new(Intent::Play("s".into()), usize::MAX, false);
    p.pump();
    let before = acks(&p.server_wire);
    // Window 1, then 2,000 four-byte messages (~16 bytes each on the wire, 32 KB in all),
    // fed 100 bytes at a time: one acknowledgement per message if the window were honoured.
    let window = (5u8, 0, 0, Bytes::copy_from_slice(&1u32.to_be_bytes()));
    let tiny = (3u8, 0, 0, Bytes::from_static(&[0, 0, 0, 1]));
    let mut msgs = vec![window];
    msgs.extend(std::iter::repeat_n(tiny, 2000));
    let mut wire = raw_messages(&msgs);
    let total = wire.len();
    while !wire.is_empty() {
        let n = wire.len().min(100);
        p.to_server.extend_from_slice(&wire.split_to(n));
        p.server
            .handle_input(&mut p.to_server, 1)
            .expect("accepted");
    }
    p.server_wire.extend_from_slice(&p.server.take_output());
    let sent = acks(&p.server_wire) - before;
    let most = total / MIN_ACK_WINDOW as usize + 1;
    assert!(
        (1..=most).contains(&sent),
        "{sent} acknowledgements for {total} bytes (at most {most})"
    );
}

#[test]
fn a_message_flood_fails_the_session() {
    let cfg = ServerConfig {
        max_message_rate: 100,
        ..ServerConfig::default()
    };
    let tiny = (3u8, 0, 0, Bytes::from_static(&[0, 0, 0, 1]));
    // 100/s over a 5 s window: 500 messages at once pass, every window afresh.
    let mut p = Link::new(Intent::Play("s".into()), usize::MAX, false);
    p.server = Server::new(cfg.clone(), 1, 0);
    p.pump();
    let now = p.now;
    for window in 1..=3u64 {
        let mut b = raw_messages(&vec![tiny.clone(); 400]);
        p.server
            .handle_input(&mut b, now + window * 5_000)
            .expect("400 messages in a window pass");
    }
    let mut b = raw_messages(&vec![tiny.clone(); 200]);
    let e = p
        .server
        .handle_input(&mut b, now + 15_001)
        .expect_err("600 in one window");
    assert!(
        matches!(
            e,
            ringcast::rtmp::session::Error::MessageRate { limit: 100, .. }
        ),
        "{e}"
    );

    // The tags of an aggregate count one by one.
    let mut p = Link::new(Intent::Publish("s".into()), usize::MAX, false);
    p.server = Server::new(cfg, 1, 0);
    let sid = accept_the_publish(&mut p);
    let agg: Vec<u8> = (0..600u32)
        .flat_map(|i| flv_tag(8, i, &[0xAF, 1, 0]))
        .collect();
    let mut b = raw_messages(&[(22, sid, 0, Bytes::from(agg))]);
    let r = p.server.handle_input(&mut b, p.now + 1);
    assert!(
        matches!(r, Err(ringcast::rtmp::session::Error::MessageRate { .. })),
        "{r:?}"
    );
}

/// One FLV tag with its previous-tag-size field, as aggregates carry them.
fn flv_tag(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
    let mut t = vec![type_id];
    t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    t.extend_from_slice(&ts.to_be_bytes()[1..]);
    t.push((ts >> 24) as u8);
    t.extend_from_slice(&[0, 0, 0]);
    t.extend_from_slice(body);
    t.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    t
}

#[test]
fn empty_media_and_oversized_aggregates_are_not_passed_on() {
    use ringcast::rtmp::message::MAX_AGGREGATE_TAGS;
    let mut p = Link::new(Intent::Publish("s".into()), usize::MAX, false);
    let sid = accept_the_publish(&mut p);
    let events = |p: &mut Link, msgs: &[(u8, u32, u32, Bytes)]| {
        let mut b = raw_messages(msgs);
        p.server.handle_input(&mut b, p.now).expect("accepted");
        std::iter::from_fn(|| p.server.poll_event()).collect::<Vec<_>>()
    };
    // Empty audio and video: nothing. A real frame after them: one media event.
    let ev = events(
        &mut p,
        &[
            (8, sid, 0, Bytes::new()),
            (9, sid, 0, Bytes::new()),
            (9, sid, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0, 9])),
        ],
    );
    assert!(
        matches!(&ev[..], [server::Event::Media { media, .. }] if media.payload.len() == 6),
        "{ev:?}"
    );
    // An aggregate at the cap passes (its empty tags are dropped, its real one passes); one
    // tag more is dropped whole, with a reason.
    let mut agg: Vec<u8> = (1..MAX_AGGREGATE_TAGS as u32)
        .flat_map(|i| flv_tag(9, i, &[]))
        .collect();
    agg.extend(flv_tag(8, 5000, &[0xAF, 1, 2]));
    let ev = events(&mut p, &[(22, sid, 0, Bytes::from(agg.clone()))]);
    assert_eq!(ev.len(), 1, "{:?}", &ev[..ev.len().min(3)]);
    agg.extend(flv_tag(8, 5001, &[0xAF, 1, 3]));
    let ev = events(&mut p, &[(22, sid, 0, Bytes::from(agg))]);
    assert!(
        matches!(&ev[..], [server::Event::Dropped { type_id: 22, .. }]),
        "{ev:?}"
    );
}
