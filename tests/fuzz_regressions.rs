//! The fuzz targets' committed inputs, replayed on stable Rust: every seed under
//! `fuzz/seeds/TARGET/` and every crash input under `fuzz/regressions/TARGET/` goes through
//! the same target body that `cargo +nightly fuzz run TARGET` runs (fuzz/src/lib.rs,
//! included here), so a bug the fuzzer found stays fixed. fuzz/README.md says how to add one.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seeds` regenerates the seeds.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod harness;

/// The committed inputs of `target`: seeds first, then regressions, sorted by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// Runs every committed input of `target` through `body`; fails naming each input that
/// panicked. `min_seeds` guards against the seeds going missing unnoticed.
fn replay(target: &str, body: fn(&[u8]), min_seeds: usize) {
    let files = inputs(target);
    assert!(
        files.len() >= min_seeds,
        "{target}: {} committed inputs, expected at least {min_seeds}",
        files.len()
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read a fuzz input");
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs panic: {failed:#?}"
    );
}

#[test]
fn chunk_reader() {
    replay("chunk_reader", harness::chunk_reader, 4);
}

#[test]
fn handshake_server() {
    replay("handshake_server", harness::handshake_server, 3);
}

#[test]
fn handshake_client() {
    replay("handshake_client", harness::handshake_client, 3);
}

#[test]
fn amf0() {
    replay("amf0", harness::amf0, 5);
}

#[test]
fn server_session() {
    replay("server_session", harness::server_session, 3);
}

#[test]
fn flv_reader() {
    replay("flv_reader", harness::flv_reader, 2);
}

#[test]
fn codec() {
    replay("codec", harness::codec, 5);
}

#[test]
fn http_request() {
    replay("http_request", harness::http_request, 3);
}

#[test]
fn websocket() {
    replay("websocket", harness::websocket, 2);
}

/// Writes the seed corpora under `fuzz/seeds/` (see fuzz/README.md); run by hand.
#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing the generator"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, name, bytes) in seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create a seed folder");
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
}

/// The seed generator: inputs cut from the real ffmpeg capture and messages built with the
/// library, each behind the control byte its target expects.
mod seeds {
    use bytes::{Bytes, BytesMut};
    use ringcast::flv::{self, Tag, TagType};
    use ringcast::rtmp::amf0::Value;
    use ringcast::rtmp::chunk::{Message, Reader, Writer};
    use ringcast::rtmp::handshake::{self, HANDSHAKE_SIZE};
    use ringcast::rtmp::message::{Command, type_id};
    use ringcast::rtmp::session::client::{Client, ClientConfig, Intent};
    use ringcast::rtmp::session::server::{Event, Server, ServerConfig};
    use ringcast::rtmp::session::{Media, MediaKind};

    /// C0 + C1 + C2.
    const HANDSHAKE: usize = 1 + 2 * HANDSHAKE_SIZE;

    type Seed = (&'static str, &'static str, Vec<u8>);

    fn with_ctl(ctl: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![ctl];
        v.extend_from_slice(bytes);
        v
    }

    fn capture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ffmpeg_publish.bin"
        ))
        .expect("capture present")
    }

    /// The messages of the capture's chunk stream.
    fn capture_messages() -> Vec<Message> {
        let mut buf = BytesMut::from(&capture()[HANDSHAKE..]);
        let mut reader = Reader::default();
        let mut out = Vec::new();
        while let Some(msg) = reader.read(&mut buf).expect("the capture reads") {
            out.push(msg);
        }
        out
    }

    /// The capture's messages without most of its media, encoded again as one valid chunk
    /// stream (a few KB rather than 21).
    fn capture_short() -> Vec<u8> {
        let mut writer = Writer::default();
        let mut out = BytesMut::new();
        let mut media = 0;
        for msg in capture_messages() {
            if msg.type_id == type_id::AUDIO || msg.type_id == type_id::VIDEO {
                media += 1;
                if media > 12 && msg.payload.len() > 2 {
                    continue;
                }
            }
            writer.write(&msg, &mut out);
            if msg.type_id == type_id::SET_CHUNK_SIZE {
                let size = u32::from_be_bytes(msg.payload[..4].try_into().expect("4 bytes"));
                writer.set_chunk_size(size);
            }
        }
        out.to_vec()
    }

    /// What a client session sends after the handshake, talking to a server session that
    /// accepts it, with `script` run once it is publishing or playing.
    fn client_bytes(intent: Intent, script: impl FnOnce(&mut Client)) -> Vec<u8> {
        let cfg = ClientConfig::new("live", "rtmp://127.0.0.1:1935/live", intent);
        let mut client = Client::new(cfg, 5, 0);
        let mut server = Server::new(ServerConfig::default(), 6, 0);
        client.start();
        let mut sent = Vec::new();
        let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
        let mut script = Some(script);
        for now in 0..200 {
            let out = client.take_output();
            sent.extend_from_slice(&out);
            to_server.extend_from_slice(&out);
            server.handle_input(&mut to_server, now).expect("server");
            while let Some(e) = server.poll_event() {
                match e {
                    Event::PublishRequested { stream_id, .. } => server.accept_publish(stream_id),
                    Event::PlayRequested { stream_id, .. } => server.accept_play(stream_id),
                    _ => {}
                }
            }
            to_client.extend_from_slice(&server.take_output());
            client.handle_input(&mut to_client, now).expect("client");
            while client.poll_event().is_some() {}
            if client.is_active() {
                if let Some(s) = script.take() {
                    s(&mut client);
                }
            }
        }
        assert!(script.is_none(), "the client never got going");
        sent.split_off(HANDSHAKE)
    }

    fn publisher_bytes() -> Vec<u8> {
        client_bytes(Intent::Publish("cam?key=1".into()), |c| {
            c.send_metadata(
                0,
                &Value::EcmaArray(vec![
                    ("width".into(), Value::Number(640.0)),
                    ("videocodecid".into(), Value::Number(7.0)),
                ]),
            );
            for (i, (kind, payload)) in [
                (MediaKind::Video, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F][..]),
                (MediaKind::Audio, &[0xAF, 0, 0x12, 0x10]),
                (
                    MediaKind::Video,
                    &[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88],
                ),
                (MediaKind::Audio, &[0xAF, 1, 0x21, 0x10]),
                (MediaKind::Video, &[0x27, 1, 0, 0, 0x21, 0, 0, 0, 1, 0x41]),
            ]
            .into_iter()
            .enumerate()
            {
                c.send_media(&Media {
                    kind,
                    timestamp: i as u32 * 40 + 0x00FF_FFF0,
                    payload: Bytes::copy_from_slice(payload),
                });
            }
            let mut aggregate = BytesMut::new();
            for ts in [1000, 1040] {
                let tag = Tag {
                    tag_type: TagType::Audio,
                    timestamp: ts,
                    data: Bytes::from_static(&[0xAF, 1, 0x21]),
                };
                flv::encode_tag(&tag, &mut aggregate).expect("a small tag");
            }
            c.send_message(type_id::AGGREGATE, 1000, aggregate.freeze());
            c.ping(5);
            c.stop();
        })
    }

    fn player_bytes() -> Vec<u8> {
        client_bytes(Intent::Play("cam".into()), |c| {
            c.call("pause", vec![Value::Boolean(true), 0.0.into()]);
            c.call("pause", vec![Value::Boolean(false), 0.0.into()]);
            c.call("receiveVideo", vec![Value::Boolean(false)]);
            c.call("closeStream", vec![]);
            c.restart(Intent::Play("other".into()), false);
            c.stop();
        })
    }

    fn amf0_seeds() -> Vec<Seed> {
        let mut out = Vec::new();
        for (name, msg) in [
            ("connect", 0),
            ("release_stream", 1),
            ("fc_publish", 2),
            ("publish", 4),
        ] {
            let m = capture_messages()
                .into_iter()
                .filter(|m| m.type_id == type_id::COMMAND)
                .nth(msg)
                .expect("a command");
            out.push(("amf0", name, m.payload.to_vec()));
        }
        let meta = capture_messages()
            .into_iter()
            .find(|m| m.type_id == type_id::DATA)
            .expect("metadata");
        out.push(("amf0", "set_data_frame", meta.payload.to_vec()));
        let mut every = BytesMut::new();
        for v in [
            Value::Number(f64::NAN),
            Value::Boolean(true),
            Value::from("é"),
            Value::Null,
            Value::Undefined,
            Value::Reference(3),
            Value::StrictArray(vec![Value::Number(1.0), Value::LongString("long".into())]),
            Value::Date {
                millis: 1.5e12,
                timezone: 0,
            },
            Value::Xml("<a/>".into()),
            Value::TypedObject {
                class: "C".into(),
                properties: vec![("k".into(), Value::EcmaArray(vec![]))],
            },
        ] {
            v.encode(&mut every);
        }
        out.push(("amf0", "every_type", every.to_vec()));
        // AMF3 behind the switch marker: an AMF3 command body (format byte 0), integer,
        // string, a string reference, a dense array, an anonymous dynamic object, a double,
        // a date, a byte array.
        let amf3: &[u8] = &[
            0x00, 0x02, 0x00, 0x04, b'c', b'a', b'l', b'l', 0x11, 0x04, 0x81, 0x00, 0x11, 0x06,
            0x07, b'a', b'b', b'c', 0x11, 0x09, 0x05, 0x01, 0x06, 0x03, b'x', 0x06, 0x00, 0x11,
            0x0A, 0x0B, 0x01, 0x03, b'k', 0x04, 0x05, 0x01, 0x11, 0x05, 0x3F, 0xF0, 0, 0, 0, 0, 0,
            0, 0x11, 0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x0C, 0x05, 1, 2,
        ];
        out.push(("amf0", "amf3_command", amf3.to_vec()));
        out
    }

    fn flv_file() -> Vec<u8> {
        let mut out = BytesMut::new();
        flv::encode_header(true, true, &mut out);
        let mut media = 0;
        for msg in capture_messages() {
            let tag_type = match msg.type_id {
                type_id::AUDIO => TagType::Audio,
                type_id::VIDEO => TagType::Video,
                type_id::DATA => TagType::Script,
                _ => continue,
            };
            media += 1;
            if media > 8 {
                break;
            }
            let data = if tag_type == TagType::Video && msg.payload.len() > 64 {
                msg.payload.slice(..64)
            } else {
                msg.payload
            };
            let tag = Tag {
                tag_type,
                timestamp: msg.timestamp,
                data,
            };
            flv::encode_tag(&tag, &mut out).expect("a capture tag");
        }
        out.to_vec()
    }

    fn codec_seeds() -> Vec<Seed> {
        let tags: [(&str, &[u8]); 12] = [
            ("avc_sequence_header", &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F]),
            ("avc_keyframe", &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
            ("hevc_sequence_header", &[0x1C, 0, 0, 0, 0, 1]),
            ("ex_hevc_sequence_start", b"\x90hvc1\x01\x02"),
            ("ex_av1_coded_keyframe", b"\x91av01\x00"),
            (
                "ex_multitrack_sequence_start",
                b"\x96\x00hvc1\x02\x00\x00\x05abcde",
            ),
            ("ex_mod_ex_coded_frames", b"\x97\x02abc\x01avc1\x00\x00\x00"),
            ("ex_command_frame", &[0xD0, 0x00]),
            ("aac_sequence_header", &[0xAF, 0x00, 0x12, 0x10]),
            ("ex_audio_opus_sequence_start", b"\x90Opus\x01"),
            ("ex_audio_multitrack", b"\x95\x00fLaC\x03\x00\x00\x02xy"),
            ("legacy_mp3", &[0x2F, 0xFF, 0xFB]),
        ];
        tags.iter()
            .enumerate()
            .map(|(i, (name, data))| {
                let mut v = vec![i as u8, 0x00, 0xFF, 0xFF, 0xF0 + i as u8];
                v.extend_from_slice(data);
                ("codec", *name, v)
            })
            .collect()
    }

    /// Every seed as (target, file name, bytes).
    pub fn all() -> Vec<Seed> {
        let cap = capture();
        let chunks = &cap[HANDSHAKE..];
        let short = capture_short();
        let mut seeds: Vec<Seed> = vec![
            // chunk_reader: ctl bit 0 clear reads raw bytes (top bits: how they are cut).
            (
                "chunk_reader",
                "ffmpeg_raw",
                with_ctl(0x00, &chunks[..4096]),
            ),
            (
                "chunk_reader",
                "ffmpeg_raw_pieces",
                with_ctl(0x80, &chunks[..1024]),
            ),
            ("chunk_reader", "ffmpeg_reencoded", with_ctl(0xC0, &short)),
            // Bit 0 set: the rest describes a valid stream to write and read back.
            (
                "chunk_reader",
                "structured",
                with_ctl(0x01, &(0..=255u8).rev().collect::<Vec<_>>()),
            ),
            (
                "chunk_reader",
                "structured_fmt0",
                with_ctl(
                    0x43,
                    &(0..=255u8).map(|b| b.wrapping_mul(37)).collect::<Vec<_>>(),
                ),
            ),
            // handshake_server: ffmpeg's digest C0+C1+C2 and its first chunks.
            (
                "handshake_server",
                "ffmpeg_digest",
                with_ctl(0x00, &cap[..HANDSHAKE + 64]),
            ),
            (
                "handshake_server",
                "simple_pieces",
                with_ctl(0xC0, &simple_c0c1c2()),
            ),
            (
                "handshake_server",
                "rtmpe_version",
                with_ctl(0x00, &[6, 0, 0]),
            ),
        ];
        // handshake_client: a real server's S0+S1+S2 for the C1 the target's client sends.
        for (name, ctl) in [("simple", 0x00), ("digest", 0x02), ("digest_pieces", 0x82)] {
            seeds.push(("handshake_client", name, with_ctl(ctl, &server_answer(ctl))));
        }
        seeds.push((
            "handshake_client",
            "pair",
            with_ctl(
                0x03,
                b"\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03tail",
            ),
        ));
        seeds.extend(amf0_seeds());
        seeds.extend([
            ("server_session", "ffmpeg_publish", with_ctl(0x00, &short)),
            (
                "server_session",
                "ffmpeg_publish_pieces",
                with_ctl(0xC2, &short),
            ),
            (
                "server_session",
                "publisher",
                with_ctl(0x04, &publisher_bytes()),
            ),
            ("server_session", "player", with_ctl(0x43, &player_bytes())),
        ]);
        let file = flv_file();
        seeds.push(("flv_reader", "ffmpeg_flv", with_ctl(0x00, &file)));
        seeds.push((
            "flv_reader",
            "bare_tags_pieces",
            with_ctl(0x81, &file[13..]),
        ));
        seeds.extend(codec_seeds());
        seeds.extend(http_seeds());
        seeds
    }

    /// Request heads (HTTP-FLV, WebSocket-FLV, API, a pipelined tail, broken ones) and
    /// masked client frames (ping, close, a text message, an unmasked one).
    fn http_seeds() -> Vec<Seed> {
        let mask = |opcode: u8, payload: &[u8]| {
            let key = [1u8, 2, 3, 4];
            let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            f
        };
        let mut frames = mask(0x9, b"ping");
        frames.extend(mask(0x1, b"hello"));
        frames.extend(mask(0x8, &[3, 232]));
        vec![
            (
                "http_request",
                "flv",
                b"GET /live/cam.flv?sign=1-abc HTTP/1.1\r\nHost: x:8080\r\nUser-Agent: ffmpeg\r\nAccept: */*\r\n\r\n".to_vec(),
            ),
            (
                "http_request",
                "websocket",
                b"GET /live/a%20b.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x89\x80\x01\x02\x03\x04".to_vec(),
            ),
            (
                "http_request",
                "api",
                b"DELETE /api/streams/live/cam HTTP/1.0\r\n\r\n".to_vec(),
            ),
            ("http_request", "broken", b"GET /%zz HTTP/1.1\r\nX\r\n\r\n".to_vec()),
            ("websocket", "ping_text_close", [&[0x40u8][..], &frames].concat()),
            ("websocket", "unmasked", vec![0x00, 0x89, 0x00]),
        ]
    }

    fn simple_c0c1c2() -> Vec<u8> {
        let mut out = BytesMut::new();
        handshake::Client::new(1, 2, false).start(&mut out);
        let mut v = out.to_vec();
        v.extend_from_slice(&out[1..]);
        v.extend_from_slice(b"connect");
        v
    }

    /// S0+S1+S2 answering the C1 that the `handshake_client` target's client sends for
    /// `ctl`, then a few chunk-stream bytes.
    fn server_answer(ctl: u8) -> Vec<u8> {
        let mut c0c1 = BytesMut::new();
        handshake::Client::new(u64::from(ctl), 9, ctl & 2 != 0).start(&mut c0c1);
        let mut out = BytesMut::new();
        handshake::Server::new(4, 0)
            .handle(&mut c0c1, &mut out)
            .expect("a valid C0+C1");
        let mut v = out.to_vec();
        let mut cmd = BytesMut::new();
        Command::new("_result", 1.0, Value::Null, vec![]).encode(&mut cmd);
        v.extend_from_slice(&cmd);
        v
    }
}
