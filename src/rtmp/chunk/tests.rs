//! Chunk stream tests: byte literals for every header form and control message, the
//! reassembler's limits, and property tests of writer → (interleave, split) → reader.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Message {
    Message {
        csid,
        timestamp,
        type_id,
        stream_id,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn read_all(r: &mut Reader, buf: &mut BytesMut) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = r.read(buf).expect("valid input") {
        out.push(m);
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// fmt 0, then fmt 1, fmt 2 and a fmt 3 that starts a new message, on csid 3.
const COMPRESSED: &str = "03 000001 000004 09 01000000 AABBCCDD
                          43 00000A 000002 08 EEFF
                          83 000005 1122
                          C3 3344";

#[test]
fn reads_every_message_header_form() {
    let mut buf = BytesMut::from(&hex(COMPRESSED)[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(
        got,
        vec![
            msg(3, 1, 9, 1, &[0xAA, 0xBB, 0xCC, 0xDD]),
            msg(3, 11, 8, 1, &[0xEE, 0xFF]),
            msg(3, 16, 8, 1, &[0x11, 0x22]),
            msg(3, 21, 8, 1, &[0x33, 0x44]),
        ]
    );
    assert!(buf.is_empty());
}

#[test]
fn writer_compresses_headers_exactly() {
    let mut w = Writer::new(Mode::Compress);
    let mut out = BytesMut::new();
    w.write(&msg(3, 1, 9, 1, &[0xAA, 0xBB, 0xCC, 0xDD]), &mut out);
    w.write(&msg(3, 11, 8, 1, &[0xEE, 0xFF]), &mut out);
    w.write(&msg(3, 16, 8, 1, &[0x11, 0x22]), &mut out);
    w.write(&msg(3, 21, 8, 1, &[0x33, 0x44]), &mut out);
    assert_eq!(&out[..], &hex(COMPRESSED)[..]);
}

#[test]
fn writer_avoids_fmt3_new_message_right_after_fmt0() {
    // Readers disagree on the delta a fmt 3 adds after a fmt 0; the writer says fmt 2.
    let mut w = Writer::new(Mode::Compress);
    let mut out = BytesMut::new();
    w.write(&msg(3, 10, 8, 1, &[1]), &mut out);
    w.write(&msg(3, 20, 8, 1, &[2]), &mut out);
    assert_eq!(
        &out[..],
        &hex("03 00000A 000001 08 01000000 01  83 00000A 02")[..]
    );
}

#[test]
fn fmt3_after_fmt0_adds_the_fmt0_timestamp() {
    // RTMP 1.0 §5.3.1.2.4: the delta of a fmt 3 following a fmt 0 is the fmt 0 timestamp.
    let mut buf = BytesMut::from(&hex("03 00000A 000001 08 01000000 01  C3 02")[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got[1].timestamp, 20);
}

#[test]
fn multi_chunk_message_at_default_chunk_size() {
    let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    let mut wire = hex("04 000000 0000C8 09 01000000");
    wire.extend_from_slice(&payload[..128]);
    wire.push(0xC4);
    wire.extend_from_slice(&payload[128..]);
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got, vec![msg(4, 0, 9, 1, &payload)]);

    let mut out = BytesMut::new();
    Writer::default().write(&got[0], &mut out);
    assert_eq!(&out[..], &wire[..]);
}

#[test]
fn two_and_three_byte_chunk_stream_ids() {
    for (basic, csid) in [
        ("00 00", 64),
        ("00 FF", 319),
        ("01 00 01", 320),
        ("01 FF FF", 65_599),
    ] {
        let mut wire = hex(basic);
        // fmt 0 bits are zero in these basic headers already.
        wire.extend(hex("000007 000001 12 00000000 55"));
        let mut buf = BytesMut::from(&wire[..]);
        let got = read_all(&mut Reader::default(), &mut buf);
        assert_eq!(
            got,
            vec![msg(csid, 7, 18, 0, &[0x55])],
            "basic header {basic}"
        );
        let mut out = BytesMut::new();
        Writer::default().write(&got[0], &mut out);
        if csid != 320 {
            assert_eq!(&out[..], &wire[..], "basic header {basic}");
        }
    }
}

#[test]
fn extended_timestamp_repeated_on_continuation_chunks() {
    let payload = [7u8; 200];
    let mut wire = hex("04 FFFFFF 0000C8 09 01000000 01000000");
    wire.extend_from_slice(&payload[..128]);
    wire.extend(hex("C4 01000000"));
    wire.extend_from_slice(&payload[128..]);
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got, vec![msg(4, 0x0100_0000, 9, 1, &payload)]);

    let mut out = BytesMut::new();
    Writer::default().write(&got[0], &mut out);
    assert_eq!(&out[..], &wire[..]);
}

#[test]
fn extended_timestamp_omitted_on_continuation_chunks() {
    // Some encoders do not repeat the extended field on continuations.
    let payload = [7u8; 200];
    let mut wire = hex("04 FFFFFF 0000C8 09 01000000 01000000");
    wire.extend_from_slice(&payload[..128]);
    wire.push(0xC4);
    wire.extend_from_slice(&payload[128..]);
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got, vec![msg(4, 0x0100_0000, 9, 1, &payload)]);
}

#[test]
fn extended_delta_on_fmt3_new_message() {
    // fmt 1 with an extended delta, then a fmt 3 new message repeating it (with the field).
    let wire = hex("04 000010 000001 08 01000000 01
         44 FFFFFF 000001 08 01000000 02
         C4 01000000 03");
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
    assert_eq!(ts, vec![0x10, 0x0100_0010, 0x0200_0010]);
}

#[test]
fn timestamps_wrap_modulo_2_pow_32() {
    let wire = hex("04 FFFFFF 000001 08 01000000 FFFFFFF0 01  84 000020 02");
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got[0].timestamp, 0xFFFF_FFF0);
    assert_eq!(got[1].timestamp, 0x10);

    let mut out = BytesMut::new();
    let mut w = Writer::default();
    for m in &got {
        w.write(m, &mut out);
    }
    let mut r = Reader::default();
    assert_eq!(read_all(&mut r, &mut out), got);
}

#[test]
fn set_chunk_size_applies_to_the_next_chunk() {
    let mut wire = hex("02 000000 000004 01 00000000 000000C8");
    wire.extend(hex("04 000000 0000C8 09 01000000"));
    wire.extend_from_slice(&[9u8; 200]);
    let mut buf = BytesMut::from(&wire[..]);
    let mut r = Reader::default();
    let got = read_all(&mut r, &mut buf);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].type_id, &got[0].payload[..]),
        (1, &[0, 0, 0, 200][..])
    );
    assert_eq!(got[1].payload.len(), 200);
    assert_eq!(r.chunk_size(), 200);
}

#[test]
fn single_chunk_payload_is_a_slice_of_the_receive_buffer() {
    let mut wire = hex("04 000000 0000C8 09 01000000");
    wire.extend_from_slice(&[9u8; 200]);
    let mut buf = BytesMut::from(&wire[..]);
    let base = buf.as_ptr() as usize;
    let mut r = Reader::default();
    r.set_chunk_size(4096).expect("valid");
    let m = r.read(&mut buf).expect("valid").expect("a message");
    let p = m.payload.as_ptr() as usize;
    assert_eq!(p, base + 12, "payload must point into the receive buffer");
}

#[test]
fn abort_drops_the_partial_message() {
    let mut wire = hex("04 000000 0000C8 09 01000000");
    wire.extend_from_slice(&[1u8; 128]);
    wire.extend(hex("02 000000 000004 02 00000000 00000004"));
    wire.extend(hex("04 000005 000002 08 01000000 ABCD"));
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].type_id, 2);
    assert_eq!(got[1], msg(4, 5, 8, 1, &[0xAB, 0xCD]));
}

#[test]
fn interleaved_chunk_streams_keep_separate_messages() {
    let video: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    let mut wire = hex("06 000000 0000C8 09 01000000");
    wire.extend_from_slice(&video[..128]);
    wire.extend(hex("04 000000 000003 08 01000000 AF0102"));
    wire.extend(hex("C6"));
    wire.extend_from_slice(&video[128..]);
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(
        got,
        vec![msg(4, 0, 8, 1, &[0xAF, 1, 2]), msg(6, 0, 9, 1, &video)]
    );
}

#[test]
fn partial_input_consumes_nothing() {
    let wire = hex(COMPRESSED);
    let mut r = Reader::default();
    for cut in 0..16 {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(r.read(&mut buf), Ok(None));
        assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
    }
    assert_eq!(r.wanted(), 16, "header and payload of the first chunk");
}

#[test]
fn malformed_input_gives_typed_errors() {
    let cfg = ReaderConfig {
        max_message_len: 1000,
        max_chunk_streams: 2,
        max_pending_bytes: 1500,
        ..ReaderConfig::default()
    };
    let cases: Vec<(&str, Error)> = vec![
        (
            "43 000000 000001 08 00",
            Error::NoPreviousHeader { fmt: 1, csid: 3 },
        ),
        ("C5 00", Error::NoPreviousHeader { fmt: 3, csid: 5 }),
        (
            "03 000000 0003E9 08 00000000",
            Error::MessageTooLarge {
                csid: 3,
                length: 1001,
                max: 1000,
            },
        ),
        (
            "03 000000 000001 08 00000000 00  04 000000 000001 08 00000000 00
             05 000000 000001 08 00000000 00",
            Error::TooManyChunkStreams { csid: 5, max: 2 },
        ),
        (
            "02 000000 000004 01 00000000 00000000",
            Error::InvalidChunkSize(0),
        ),
        (
            "02 000000 000004 01 00000000 80000000",
            Error::InvalidChunkSize(0x8000_0000),
        ),
        (
            "02 000000 000002 01 00000000 0000",
            Error::ShortControlMessage { type_id: 1, len: 2 },
        ),
        (
            "03 000000 0000C8 09 00000000",
            Error::HeaderInsideMessage {
                csid: 3,
                missing: 72,
            },
        ),
        (
            "03 000000 0003E8 09 00000000",
            Error::TooMuchPending {
                pending: 2000,
                max: 1500,
            },
        ),
    ];
    for (i, (wire, want)) in cases.into_iter().enumerate() {
        let mut wire = hex(wire);
        if i == 7 {
            // First chunk of a 200-byte message, then a new fmt 0 header on the same csid.
            let mut w = hex("03 000000 0000C8 09 00000000");
            w.extend_from_slice(&[0u8; 128]);
            w.extend(wire);
            wire = w;
        }
        if i == 8 {
            // One 1000-byte message in progress on csid 4, then another on csid 3.
            let mut w = hex("04 000000 0003E8 09 00000000");
            w.extend_from_slice(&[0u8; 128]);
            w.extend(wire);
            w.extend_from_slice(&[0u8; 128]);
            wire = w;
        }
        let mut r = Reader::new(cfg);
        let mut buf = BytesMut::from(&wire[..]);
        let err = loop {
            match r.read(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("case {i}: no error"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, want, "case {i}");
    }
}

#[test]
fn shared_encoding_always_starts_with_fmt0() {
    let m = msg(7, 40, 9, 1, &[1u8; 300]);
    let mut a = BytesMut::new();
    encode_shared(&m, 128, &mut a);
    let mut b = BytesMut::new();
    encode_shared(&m, 128, &mut b);
    assert_eq!(a, b);
    assert_eq!(a[0] >> 6, 0);
    assert_eq!(a[0] & 0x3F, 7);
    assert_eq!(a.len(), 12 + 300 + 2);
    // A reader that has seen other headers on csid 7 still decodes it.
    let mut wire = hex("07 000010 000001 09 01000000 00");
    wire.extend_from_slice(&a);
    let mut buf = BytesMut::from(&wire[..]);
    let got = read_all(&mut Reader::default(), &mut buf);
    assert_eq!(got[1], m);
}

#[test]
fn writer_mode_fmt0_never_compresses() {
    let mut w = Writer::new(Mode::Fmt0);
    let mut out = BytesMut::new();
    w.write(&msg(7, 0, 9, 1, &[1]), &mut out);
    let first = out.len();
    w.write(&msg(7, 33, 9, 1, &[1]), &mut out);
    assert_eq!(out.len(), 2 * first);
    assert_eq!(out[first] >> 6, 0);
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        let mut bytes = Vec::new();
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        let mut r = Reader::default();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = r.read(&mut buf) {}
    }
}

// Property tests ---------------------------------------------------------------------------

fn arb_delta() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..100,
        1 => Just(33u32),
        1 => 0x00FF_FFF0u32..0x0100_0010,
        1 => any::<u32>(),
    ]
}

fn arb_csid() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 3u32..9,
        1 => 64u32..320,
        1 => 320u32..=65_599,
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    csid: u32,
    delta: u32,
    type_id: u8,
    stream_id: u32,
    len: usize,
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        arb_csid(),
        arb_delta(),
        prop::sample::select(vec![8u8, 9, 18, 20]),
        0u32..3,
        prop_oneof![3 => 0usize..300, 1 => 300usize..5000],
    )
        .prop_map(|(csid, delta, type_id, stream_id, len)| Spec {
            csid,
            delta,
            type_id,
            stream_id,
            len,
        })
}

/// Messages whose timestamps advance per chunk stream by the generated deltas.
fn build(specs: &[Spec]) -> Vec<Message> {
    let mut clock: Vec<(u32, u32)> = Vec::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ts = match clock.iter_mut().find(|(c, _)| *c == s.csid) {
                Some((_, t)) => {
                    *t = t.wrapping_add(s.delta);
                    *t
                }
                None => {
                    clock.push((s.csid, s.delta));
                    s.delta
                }
            };
            let payload: Vec<u8> = (0..s.len).map(|j| (i * 31 + j) as u8).collect();
            msg(s.csid, ts, s.type_id, s.stream_id, &payload)
        })
        .collect()
}

fn feed(r: &mut Reader, wire: &[u8], splits: &[usize]) -> Vec<Message> {
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < wire.len() {
        let step = splits.get(k).copied().unwrap_or(wire.len()).max(1);
        k += 1;
        let end = (pos + step).min(wire.len());
        buf.extend_from_slice(&wire[pos..end]);
        pos = end;
        while let Some(m) = r.read(&mut buf).expect("valid stream") {
            got.push(m);
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    got
}

fn per_csid(msgs: &[Message]) -> Vec<(u32, Vec<Message>)> {
    let mut out: Vec<(u32, Vec<Message>)> = Vec::new();
    for m in msgs {
        match out.iter_mut().find(|(c, _)| *c == m.csid) {
            Some((_, v)) => v.push(m.clone()),
            None => out.push((m.csid, vec![m.clone()])),
        }
    }
    out.sort_by_key(|(c, _)| *c);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Writer → split at random points → reader yields exactly the messages written.
    #[test]
    fn roundtrip_any_split(
        specs in prop::collection::vec(arb_spec(), 1..40),
        chunk_size in prop_oneof![Just(1u32), Just(128), Just(4096), Just(65_536), 1u32..700],
        splits in prop::collection::vec(1usize..2000, 0..64),
    ) {
        let msgs = build(&specs);
        let mut w = Writer::new(Mode::Compress);
        w.set_chunk_size(chunk_size);
        let mut wire = BytesMut::new();
        for m in &msgs {
            w.write(m, &mut wire);
        }
        let mut r = Reader::default();
        r.set_chunk_size(chunk_size).expect("valid");
        let got = feed(&mut r, &wire, &splits);
        prop_assert_eq!(got, msgs);
    }

    /// Chunks of different chunk streams interleaved at random: every chunk stream's
    /// messages come out intact and in order.
    #[test]
    fn roundtrip_interleaved(
        specs in prop::collection::vec(arb_spec(), 1..40),
        chunk_size in prop_oneof![Just(1u32), Just(128), 1u32..600],
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..4000),
        splits in prop::collection::vec(1usize..600, 0..64),
    ) {
        let msgs = build(&specs);
        let mut w = Writer::new(Mode::Compress);
        w.set_chunk_size(chunk_size);
        // Per chunk stream, the queue of its chunks in order.
        let mut queues: Vec<(u32, std::collections::VecDeque<BytesMut>)> = Vec::new();
        for m in &msgs {
            let chunks = w.write_chunks(m);
            match queues.iter_mut().find(|(c, _)| *c == m.csid) {
                Some((_, q)) => q.extend(chunks),
                None => queues.push((m.csid, chunks.into_iter().collect())),
            }
        }
        let mut wire = Vec::new();
        let mut picks = order.iter();
        loop {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].1.is_empty()).collect();
            if live.is_empty() {
                break;
            }
            let i = match picks.next() {
                Some(ix) => live[ix.index(live.len())],
                None => live[0],
            };
            if let Some(c) = queues[i].1.pop_front() {
                wire.extend_from_slice(&c);
            }
        }
        let mut r = Reader::default();
        r.set_chunk_size(chunk_size).expect("valid");
        let got = feed(&mut r, &wire, &splits);
        prop_assert_eq!(per_csid(&got), per_csid(&msgs));
    }

    /// Arbitrary bytes after a valid prefix: an error or more input needed, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut r = Reader::default();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = r.read(&mut buf) {}
    }
}

#[test]
fn commands_and_data_have_their_own_length_caps() {
    let cfg = ReaderConfig::default();
    let header = |len: u32, type_id: u8| {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0x03, 0, 0, 0]);
        b.extend_from_slice(&len.to_be_bytes()[1..]);
        b.extend_from_slice(&[type_id, 0, 0, 0, 0]);
        b
    };
    for (type_id, max) in [
        (20u8, 64u32 << 10),
        (17, 64 << 10),
        (19, 64 << 10),
        (16, 64 << 10),
        (18, 512 << 10),
        (15, 512 << 10),
    ] {
        let mut r = Reader::new(cfg);
        let mut buf = header(max + 1, type_id);
        assert_eq!(
            r.read(&mut buf),
            Err(Error::MessageTooLarge {
                csid: 3,
                length: max + 1,
                max
            }),
            "type {type_id}"
        );
        // At the cap the header is taken and the reader waits for the body.
        let mut r = Reader::new(cfg);
        let mut buf = header(max, type_id);
        assert_eq!(r.read(&mut buf), Ok(None), "type {type_id} at its cap");
    }
    // Media may be as long as max_message_len.
    let mut r = Reader::new(cfg);
    let mut buf = header(1 << 20, 9);
    assert_eq!(r.read(&mut buf), Ok(None));
}
