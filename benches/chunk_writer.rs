//! Chunking throughput of `chunk::Writer` (per-connection, compressed headers) and of the
//! shared fmt-0 encoding that fan-out writes to every player.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::rtmp::chunk::{Mode, Writer, encode_shared};

mod common;

fn bench(c: &mut Criterion) {
    let msgs = common::stream_2mbit(10);
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let mut g = c.benchmark_group("chunk_writer");
    g.throughput(Throughput::Bytes(bytes as u64));
    for chunk_size in [128u32, 4096] {
        g.bench_function(format!("compress/{chunk_size}"), |b| {
            let mut out = BytesMut::with_capacity(bytes * 2);
            b.iter(|| {
                out.clear();
                let mut w = Writer::new(Mode::Compress);
                w.set_chunk_size(chunk_size);
                for m in &msgs {
                    w.write(m, &mut out);
                }
                black_box(out.len())
            })
        });
        g.bench_function(format!("shared_fmt0/{chunk_size}"), |b| {
            b.iter(|| {
                // One fresh buffer per message, as fan-out freezes each encoding to share it.
                let mut total = 0;
                for m in &msgs {
                    let mut out = BytesMut::new();
                    encode_shared(m, chunk_size, &mut out);
                    total += out.freeze().len();
                }
                black_box(total)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
