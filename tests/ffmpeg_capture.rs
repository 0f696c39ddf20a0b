//! A real ffmpeg publish, captured once (tests/data/README.md says how), replayed through
//! the server session: it must parse to exactly the messages ffmpeg sent.

use bytes::BytesMut;
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::chunk::Reader;
use ringcast::rtmp::handshake::{self, HANDSHAKE_SIZE};
use ringcast::rtmp::session::server::{Event, Server, ServerConfig};
use ringcast::rtmp::session::{Media, MediaKind};

fn capture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ffmpeg_publish.bin"
    ))
    .expect("capture present")
}

/// Replays the capture in `step`-byte reads, accepting the publish, and returns the events.
fn replay(step: usize) -> Vec<Event> {
    let mut s = Server::new(ServerConfig::default(), 1, 0);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in capture().chunks(step) {
        buf.extend_from_slice(piece);
        s.handle_input(&mut buf, 0)
            .expect("ffmpeg's bytes are valid");
        while let Some(e) = s.poll_event() {
            if let Event::PublishRequested { stream_id, .. } = e {
                s.accept_publish(stream_id);
            }
            events.push(e);
        }
    }
    assert!(buf.is_empty(), "{} bytes left unparsed", buf.len());
    events
}

#[test]
fn ffmpeg_publish_parses_to_the_expected_messages() {
    let events = replay(1 << 20);
    assert_eq!(events[0], Event::HandshakeDone { digest: true });
    let Event::Connected {
        app,
        tc_url,
        object,
    } = &events[1]
    else {
        panic!("expected Connected, got {:?}", events[1]);
    };
    assert_eq!(app, "live");
    assert_eq!(tc_url.as_deref(), Some("rtmp://127.0.0.1:19350/live"));
    assert_eq!(
        object.get("flashVer").and_then(Value::as_str),
        Some("FMLE/3.0 (compatible; Lavf59.27.100)")
    );
    assert!(matches!(
        &events[2],
        Event::PublishRequested { stream_id: 1, app, stream: name, query: None, publish_type }
            if app == "live" && name == "capture" && publish_type == "live"
    ));
    let Event::Metadata { body, .. } = &events[3] else {
        panic!("expected Metadata, got {:?}", events[3]);
    };
    let mut b = body.clone();
    assert_eq!(Value::decode(&mut b), Ok(Value::from("onMetaData")));
    let meta = Value::decode(&mut b).expect("metadata object");
    assert_eq!(meta.get("width").and_then(Value::as_f64), Some(160.0));
    assert_eq!(meta.get("height").and_then(Value::as_f64), Some(120.0));
    assert_eq!(meta.get("videocodecid").and_then(Value::as_f64), Some(7.0));
    assert_eq!(meta.get("audiocodecid").and_then(Value::as_f64), Some(10.0));
    assert_eq!(events.last(), Some(&Event::Unpublished { stream_id: 1 }));

    let media: Vec<&Media> = events
        .iter()
        .filter_map(|e| match e {
            Event::Media {
                stream_id: 1,
                media,
            } => Some(media),
            _ => None,
        })
        .collect();
    let video: Vec<&&Media> = media
        .iter()
        .filter(|m| m.kind == MediaKind::Video)
        .collect();
    let audio: Vec<&&Media> = media
        .iter()
        .filter(|m| m.kind == MediaKind::Audio)
        .collect();
    // 2 s at 15 fps, between the AVC sequence header and the AVC end of sequence.
    let packet_types: Vec<u8> = video.iter().map(|v| v.payload[1]).collect();
    assert_eq!(packet_types.len(), 32, "{packet_types:?}");
    assert_eq!(packet_types[0], 0);
    assert!(
        packet_types[1..31].iter().all(|&t| t == 1),
        "{packet_types:?}"
    );
    assert_eq!(packet_types[31], 2);
    let video = &video[..31];
    // 2 s of 44.1 kHz AAC (1024 samples a frame), plus the AAC sequence header.
    assert_eq!(audio.len(), media.len() - 32);
    assert!((86..=90).contains(&audio.len()), "{} audio", audio.len());
    // AVC sequence header (keyframe, AVC, packet type 0), then a keyframe of NALUs.
    assert_eq!(&video[0].payload[..2], &[0x17, 0x00]);
    assert_eq!(&video[1].payload[..2], &[0x17, 0x01]);
    // AAC sequence header first.
    assert_eq!(&audio[0].payload[..2], &[0xAF, 0x00]);
    assert!(audio[1..].iter().all(|a| a.payload[..2] == [0xAF, 0x01]));
    // Keyframes every 15 frames (-g 15): frames 0 and 15.
    let keys: Vec<usize> = video[1..]
        .iter()
        .enumerate()
        .filter(|(_, v)| v.payload[0] >> 4 == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys, vec![0, 15]);
    // B-frames: some frames carry a non-zero composition time offset.
    assert!(
        video[1..].iter().any(|v| v.payload[2..5] != [0, 0, 0]),
        "expected B-frame composition offsets"
    );
    // Decode timestamps never go backwards within a kind.
    for track in [video, &audio[..]] {
        assert!(track.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }
    assert!(video.last().expect("video").timestamp >= 1900);
}

#[test]
fn ffmpeg_publish_parses_identically_in_small_reads() {
    let whole = replay(1 << 20);
    for step in [1, 7, 1448] {
        assert_eq!(replay(step), whole, "reads of {step} bytes");
    }
}

#[test]
fn ffmpeg_handshake_is_a_valid_digest_c1_and_chunks_parse() {
    let cap = capture();
    assert_eq!(cap[0], 3);
    let c1 = &cap[1..1 + HANDSHAKE_SIZE];
    assert!(
        handshake::validate_c1_digest(c1).is_some(),
        "ffmpeg sends a digest C1"
    );
    let mut buf = BytesMut::from(&cap[1 + 2 * HANDSHAKE_SIZE..]);
    let mut r = Reader::default();
    let mut types = Vec::new();
    while let Some(m) = r.read(&mut buf).expect("valid chunks") {
        types.push(m.type_id);
    }
    assert!(buf.is_empty());
    // ffmpeg connects, raises its chunk size, and ends with FCUnpublish and deleteStream.
    assert_eq!(&types[..2], &[20, 1]);
    assert_eq!(r.chunk_size(), 4096);
    assert_eq!(&types[types.len() - 2..], &[20, 20]);
}
