//! Reassembly throughput of `chunk::Reader` on a 2 Mbit/s-like stream, beside a memcpy of
//! the same bytes (the machine's limit for a reader that must touch every byte once).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::rtmp::chunk::{Mode, Reader, Writer};

mod common;

fn encode(chunk_size: u32) -> BytesMut {
    let mut w = Writer::new(Mode::Compress);
    w.set_chunk_size(chunk_size);
    let mut out = BytesMut::new();
    for m in common::stream_2mbit(10) {
        w.write(&m, &mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk_reader");
    for chunk_size in [128u32, 4096, 65536] {
        let wire = encode(chunk_size);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("reassemble/{chunk_size}"), |b| {
            b.iter_batched(
                || wire.clone(),
                |mut buf| {
                    let mut r = Reader::default();
                    r.set_chunk_size(chunk_size).expect("valid chunk size");
                    let mut n = 0usize;
                    while let Some(m) = r.read(&mut buf).expect("valid stream") {
                        n += m.payload.len();
                    }
                    black_box(n)
                },
                BatchSize::LargeInput,
            )
        });
        let mut dst = vec![0u8; wire.len()];
        g.bench_function(format!("memcpy_baseline/{chunk_size}"), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&wire[..]));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
