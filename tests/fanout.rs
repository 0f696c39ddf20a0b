//! What a publisher sends is what every player receives: the core's own client session
//! publishes known messages (video with B-frame offsets, audio, a cue point, frames larger
//! than a chunk) to the real server on loopback, and players compare what they get, message
//! by message. A late joiner starts at the cached keyframe at once.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{Peer, until};
use ringcast::config::Config;
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::{Media, MediaKind};

fn video(ts: u32, key: bool, cts: u8, len: usize) -> Media {
    let mut p = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, cts];
    p.extend((0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(ts) as u8));
    Media {
        kind: MediaKind::Video,
        timestamp: ts,
        payload: Bytes::from(p),
    }
}

/// Metadata, sequence headers, then two GOPs of 15 frames (keyframes of 20 KB, larger than
/// the 4096-byte chunks), AAC frames between them, and a cue point.
fn stream() -> (Value, Vec<Media>) {
    let meta = Value::EcmaArray(vec![
        ("width".into(), Value::Number(640.0)),
        ("height".into(), Value::Number(360.0)),
    ]);
    let mut out = vec![
        Media {
            kind: MediaKind::Video,
            timestamp: 0,
            payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1]),
        },
        Media {
            kind: MediaKind::Audio,
            timestamp: 0,
            payload: Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
        },
    ];
    let mut cue = BytesMut::new();
    Value::from("onCuePoint").encode(&mut cue);
    Value::object([("name", Value::from("break")), ("time", Value::Number(0.5))]).encode(&mut cue);
    for i in 0..30u32 {
        let ts = i * 40;
        out.push(video(
            ts,
            i % 15 == 0,
            (i % 3) as u8 * 40,
            if i % 15 == 0 {
                20_000
            } else {
                1_500 + i as usize
            },
        ));
        out.push(Media {
            kind: MediaKind::Audio,
            timestamp: ts + 5,
            payload: Bytes::from(vec![0xAF, 1, i as u8, 0x21, 0x10]),
        });
        if i == 20 {
            out.push(Media {
                kind: MediaKind::Data,
                timestamp: ts + 6,
                payload: cue.clone().freeze(),
            });
        }
    }
    (meta, out)
}

#[test]
fn players_receive_exactly_what_was_published_and_late_joiners_start_at_once() {
    let config = Config {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        cores: 2,
        log: "warn".into(),
        shutdown_grace: Duration::from_secs(2),
        // Smaller than the keyframes, so shared encodings span several chunks.
        chunk_size: 4096,
        ..Config::default()
    };
    let server = ringcast::server::start(&config).expect("server");
    let addr = server.rtmp_addr;

    // An early player waits for the stream; then the publisher arrives.
    let mut early = Peer::connect(addr, Intent::Play("cam".into()));
    for _ in 0..20 {
        early.pump();
    }
    let mut publisher = Peer::connect(addr, Intent::Publish("cam".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let (meta, sent) = stream();
    publisher.client.send_metadata(0, &meta);
    // The first GOP and a half, then a late joiner, then the rest.
    let split = sent
        .iter()
        .position(|m| m.timestamp >= 22 * 40)
        .expect("split");
    for m in &sent[..split] {
        publisher.client.send_media(m);
    }
    until(
        "the early player's first part",
        &mut [&mut publisher, &mut early],
        |p| p[1].media().len() >= split,
    );

    let joined = Instant::now();
    let mut late = Peer::connect(addr, Intent::Play("cam".into()));
    until("the late joiner to play", &mut [&mut late], |p| {
        p[0].has(|e| matches!(e, Event::Playing { .. }))
    });
    let want_late = sent[..split]
        .iter()
        .filter(|m| m.timestamp >= 15 * 40)
        .count();
    until("the late joiner's GOP", &mut [&mut late], |p| {
        p[0].media().len() >= 2 + want_late
    });
    for m in &sent[split..] {
        publisher.client.send_media(m);
    }
    until(
        "everything",
        &mut [&mut publisher, &mut early, &mut late],
        |p| {
            p[1].media().len() >= sent.len()
                && p[2].media().len() >= 2 + want_late + (sent.len() - split)
        },
    );

    // The early player got every message, intact and in order, metadata first.
    let mut meta_body = BytesMut::new();
    Value::from("onMetaData").encode(&mut meta_body);
    meta.encode(&mut meta_body);
    let first_meta = early.events.iter().find_map(|(_, e)| match e {
        Event::Metadata { body, .. } => Some(body.clone()),
        _ => None,
    });
    assert_eq!(first_meta.as_deref(), Some(&meta_body[..]));
    let got = early.media();
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "message {i}");
    }

    // The late joiner: metadata, both sequence headers, then the cached GOP from its
    // keyframe (frame 15), then live, with no gap and no duplicate.
    let late_media = late.media();
    let mut want: Vec<Media> = sent[..2].to_vec();
    want.extend(sent[2..].iter().filter(|m| m.timestamp >= 15 * 40).cloned());
    assert_eq!(late_media.len(), want.len());
    for (i, (g, w)) in late_media.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "late message {i}");
    }
    assert!(late.has(|e| matches!(e, Event::Metadata { .. })));
    let key_at = late
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::Media(m) if m.kind == MediaKind::Video && m.payload[..2] == [0x17, 1]))
        .map(|(t, _)| *t)
        .expect("a keyframe");
    let ttff = key_at.duration_since(joined);
    assert!(
        ttff < Duration::from_millis(100),
        "first keyframe {ttff:?} after connecting"
    );
    server.shutdown();
}
