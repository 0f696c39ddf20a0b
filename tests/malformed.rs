//! Hostile input: truncated, oversized and random bytes give a typed error or a request for
//! more input, never a panic, at every layer a peer can reach.

use bytes::BytesMut;
use proptest::prelude::*;
use ringcast::rtmp::chunk::{self, ReaderConfig};
use ringcast::rtmp::handshake::{self, HANDSHAKE_SIZE};
use ringcast::rtmp::session::server::{Event, Server, ServerConfig};
use ringcast::rtmp::session::{Error, client};

/// C0 + C1 + C2 of a simple handshake, so the bytes after it reach the chunk layer.
fn handshake_prefix() -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut c = handshake::Client::new(3, 0, false);
    c.start(&mut out);
    let mut v = out.to_vec();
    v.extend(std::iter::repeat_n(0u8, HANDSHAKE_SIZE));
    v
}

fn feed(server: &mut Server, bytes: &[u8], step: usize) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    for piece in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        server.handle_input(&mut buf, 0)?;
        while server.poll_event().is_some() {}
        server.take_output();
    }
    Ok(())
}

#[test]
fn huge_message_length_is_refused_before_buffering() {
    let mut bytes = handshake_prefix();
    // fmt 0 on csid 3, a video message of length 0xFFFFFF (16 MiB - 1 > the 1 MiB limit
    // below; commands have a cap of their own).
    bytes.extend_from_slice(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 0, 0, 0, 0]);
    let cfg = ServerConfig {
        reader: ReaderConfig {
            max_message_len: 1 << 20,
            ..ReaderConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut s = Server::new(cfg, 1, 0);
    let err = feed(&mut s, &bytes, usize::MAX).expect_err("refused");
    assert_eq!(
        err,
        Error::Chunk(chunk::Error::MessageTooLarge {
            csid: 3,
            length: 0xFF_FFFF,
            max: 1 << 20
        })
    );
}

#[test]
fn a_non_rtmp_peer_is_refused_at_its_first_byte() {
    let mut s = Server::new(ServerConfig::default(), 1, 0);
    let err = feed(&mut s, b"GET / HTTP/1.1\r\n\r\n", usize::MAX).expect_err("refused");
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
}

#[test]
fn a_malformed_command_is_dropped_and_a_malformed_control_message_is_an_error() {
    // An AMF0 command whose first value is an unknown marker 0xEE: it concerns that call
    // only; the framing is intact, so the session reports it dropped and goes on.
    let mut bytes = handshake_prefix();
    bytes.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 2, 20, 0, 0, 0, 0, 0xEE, 0x00]);
    let mut s = Server::new(ServerConfig::default(), 1, 0);
    let mut buf = BytesMut::from(&bytes[..]);
    s.handle_input(&mut buf, 0).expect("the connection goes on");
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Dropped { type_id: 20, .. })),
        "{events:?}"
    );
    // A Set Chunk Size of two bytes: the connection's state is unknown, so it is an error.
    let mut bytes = handshake_prefix();
    bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0x00, 0x10]);
    let mut s = Server::new(ServerConfig::default(), 1, 0);
    let err = feed(&mut s, &bytes, usize::MAX).expect_err("refused");
    assert!(matches!(err, Error::Chunk(_)), "{err:?}");
}

#[test]
fn truncated_valid_stream_only_waits_for_more() {
    let capture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ffmpeg_publish.bin"
    ))
    .expect("capture present");
    for cut in (0..capture.len()).step_by(capture.len() / 97 + 1) {
        let mut s = Server::new(ServerConfig::default(), 1, 0);
        feed(&mut s, &capture[..cut], 4096).expect("a prefix of a valid stream is valid");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_after_handshake_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..4000),
        step in 1usize..700,
    ) {
        let mut bytes = handshake_prefix();
        bytes.extend(tail);
        let mut s = Server::new(ServerConfig::default(), 1, 0);
        let _ = feed(&mut s, &bytes, step);
    }

    #[test]
    fn bit_flips_in_a_real_capture_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut capture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ffmpeg_publish.bin"
        ))
        .expect("capture present");
        // Flip bytes after the handshake, where the chunk and AMF layers parse.
        let start = 1 + 2 * HANDSHAKE_SIZE;
        let span = capture.len() - start;
        for (ix, x) in flips {
            let i = start + ix.index(span.min(20_000));
            capture[i] ^= x | 1;
        }
        let mut s = Server::new(ServerConfig::default(), 1, 0);
        let _ = feed(&mut s, &capture, 1500);
    }

    #[test]
    fn random_server_bytes_never_panic_the_client(
        tail in prop::collection::vec(any::<u8>(), 0..4000),
    ) {
        let cfg = client::ClientConfig::new("live", "rtmp://127.0.0.1/live", client::Intent::Play("x".into()));
        let mut c = client::Client::new(cfg, 1, 0);
        c.start();
        let mut bytes = vec![3u8];
        bytes.extend(std::iter::repeat_n(0u8, 2 * HANDSHAKE_SIZE));
        bytes.extend(tail);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = c.handle_input(&mut buf, 0);
        while c.poll_event().is_some() {}
    }
}

/// A fmt 0 chunk on csid 3 carrying the AMF0 command `cmd` on message stream `sid`.
fn command_chunk(cmd: &ringcast::rtmp::message::Command, sid: u32) -> Vec<u8> {
    let mut body = BytesMut::new();
    cmd.encode(&mut body);
    let mut v = vec![0x03, 0, 0, 0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    v.push(20);
    v.extend_from_slice(&sid.to_le_bytes());
    v.extend_from_slice(&body);
    v
}

#[test]
fn create_stream_publish_and_play_before_connect_are_refused() {
    use ringcast::rtmp::amf0::Value;
    use ringcast::rtmp::message::Command;
    let mut bytes = handshake_prefix();
    let cmds = [
        (Command::new("createStream", 2.0, Value::Null, vec![]), 0),
        (
            Command::new("publish", 0.0, Value::Null, vec![Value::from("cam")]),
            1,
        ),
        (
            Command::new("play", 0.0, Value::Null, vec![Value::from("cam")]),
            1,
        ),
    ];
    for (c, sid) in &cmds {
        bytes.extend_from_slice(&command_chunk(c, *sid));
    }
    let mut s = Server::new(ServerConfig::default(), 1, 0);
    let mut buf = BytesMut::from(&bytes[..]);
    s.handle_input(&mut buf, 0).expect("the connection goes on");
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::PublishRequested { .. } | Event::PlayRequested { .. }
        )),
        "{events:?}"
    );
    let dropped = events
        .iter()
        .filter(|e| matches!(e, Event::Dropped { .. }))
        .count();
    assert_eq!(dropped, 3, "{events:?}");
    // Each is answered with an error: _error for createStream, onStatus for the others.
    let out = s.take_output();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("_error"), "{text}");
    assert!(text.contains("NetStream.Publish.Rejected"), "{text}");
    assert!(text.contains("NetStream.Play.Failed"), "{text}");
}

#[test]
fn a_connection_gets_at_most_max_streams_message_streams() {
    use ringcast::rtmp::amf0::Value;
    use ringcast::rtmp::message::Command;
    use ringcast::rtmp::session::server::MAX_STREAMS;
    let mut bytes = handshake_prefix();
    let connect = Command::new(
        "connect",
        1.0,
        Value::object([("app", Value::from("live"))]),
        vec![],
    );
    bytes.extend_from_slice(&command_chunk(&connect, 0));
    // 1,000 createStream calls, then a publish on a made-up stream id.
    for i in 0..1000 {
        let c = Command::new("createStream", 2.0 + f64::from(i), Value::Null, vec![]);
        bytes.extend_from_slice(&command_chunk(&c, 0));
    }
    let publish = Command::new("publish", 0.0, Value::Null, vec![Value::from("cam")]);
    bytes.extend_from_slice(&command_chunk(&publish, 5000));
    let mut s = Server::new(ServerConfig::default(), 1, 0);
    let mut buf = BytesMut::from(&bytes[..]);
    s.handle_input(&mut buf, 0).expect("the connection goes on");
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let refused = events
        .iter()
        .filter(|e| matches!(e, Event::Dropped { .. }))
        .count();
    assert_eq!(refused, 1000 - MAX_STREAMS, "createStream past the cap");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::PublishRequested { .. })),
        "a publish on a new stream id past the cap"
    );
    let out = s.take_output();
    assert!(String::from_utf8_lossy(&out).contains("Too many streams."));
}
