//! AMF0 encode and decode throughput on the two bodies every publisher sends: the `connect`
//! command and the `@setDataFrame("onMetaData", {...})` data message.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::rtmp::amf0::{Value, decode_all};

/// `connect` as OBS or ffmpeg sends it: name, transaction id, command object.
fn connect() -> Vec<Value> {
    vec![
        "connect".into(),
        1.0.into(),
        Value::object([
            ("app", "live".into()),
            ("type", "nonprivate".into()),
            ("flashVer", "FMLE/3.0 (compatible; Lavf59.27.100)".into()),
            ("swfUrl", "rtmp://127.0.0.1:1935/live".into()),
            ("tcUrl", "rtmp://127.0.0.1:1935/live".into()),
            ("fpad", false.into()),
            ("capabilities", 15.0.into()),
            ("audioCodecs", 4071.0.into()),
            ("videoCodecs", 252.0.into()),
            ("videoFunction", 1.0.into()),
        ]),
    ]
}

/// `@setDataFrame("onMetaData", ecma_array)` with the properties ffmpeg and OBS write.
fn on_metadata() -> Vec<Value> {
    let props: Vec<(String, Value)> = [
        ("duration", Value::from(0.0)),
        ("fileSize", 0.0.into()),
        ("width", 1920.0.into()),
        ("height", 1080.0.into()),
        ("videocodecid", 7.0.into()),
        ("videodatarate", 6000.0.into()),
        ("framerate", 30.0.into()),
        ("audiocodecid", 10.0.into()),
        ("audiodatarate", 160.0.into()),
        ("audiosamplerate", 48000.0.into()),
        ("audiosamplesize", 16.0.into()),
        ("audiochannels", 2.0.into()),
        ("stereo", true.into()),
        ("2.1", false.into()),
        ("3.1", false.into()),
        ("4.0", false.into()),
        ("4.1", false.into()),
        ("5.1", false.into()),
        ("7.1", false.into()),
        (
            "encoder",
            "obs-output module (libobs version 30.1.2)".into(),
        ),
        ("title", "ringcast benchmark stream".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    vec![
        "@setDataFrame".into(),
        "onMetaData".into(),
        Value::EcmaArray(props),
    ]
}

fn encode_all(values: &[Value], out: &mut BytesMut) {
    for v in values {
        v.encode(out);
    }
}

fn bench_amf0(c: &mut Criterion) {
    for (name, values) in [("connect", connect()), ("on_metadata", on_metadata())] {
        let mut wire = BytesMut::new();
        encode_all(&values, &mut wire);
        let wire: Bytes = wire.freeze();

        let mut group = c.benchmark_group(format!("amf0/{name}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function("encode", |b| {
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                encode_all(black_box(&values), &mut out);
                black_box(out.len())
            })
        });
        group.bench_function("decode", |b| {
            b.iter(|| {
                let mut buf = black_box(wire.clone());
                black_box(decode_all(&mut buf))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_amf0);
criterion_main!(benches);
