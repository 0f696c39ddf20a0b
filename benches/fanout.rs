//! The fan-out floor: one core writing the same shared bytes to N loopback sockets, at the
//! batch sizes a server's writes carry, while another thread drains the far ends. What a
//! server spends per GB above this is its own (queues, wake-ups, timers); `scripts/compare`
//! prints its rows beside these figures.
//!
//! Throughput is per write batch size; CPU-seconds per GB of the writing core is its
//! inverse (the writer is busy the whole time): 1 / (GB/s).
//!
//! `cargo bench --bench fanout` (`FANOUT_SOCKETS=N` to change the 200 sockets).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// `n` connected pairs: the writing ends, and a thread that reads everything that arrives
/// on the other ends until `stop`.
fn pairs(n: usize, stop: Arc<AtomicBool>) -> (Vec<TcpStream>, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let mut writers = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let w = TcpStream::connect(addr).expect("connect");
        w.set_nodelay(true).expect("nodelay");
        let (r, _) = l.accept().expect("accept");
        r.set_nonblocking(true).expect("nonblocking");
        writers.push(w);
        readers.push(r);
    }
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            for r in &mut readers {
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => idle = false,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
            if idle {
                std::thread::yield_now();
            }
        }
    });
    (writers, drain)
}

fn fanout(c: &mut Criterion) {
    let n: usize = std::env::var("FANOUT_SOCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let stop = Arc::new(AtomicBool::new(false));
    let (mut writers, drain) = pairs(n, stop.clone());
    let mut group = c.benchmark_group(format!("fanout_{n}_sockets"));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for size in [1024usize, 4096, 8192, 16_384, 32_768, 65_536] {
        // One shared buffer, as every player's write shares the frames' bytes.
        let shared = Bytes::from(vec![0x5Au8; size]);
        group.throughput(Throughput::Bytes((size * n) as u64));
        group.bench_with_input(BenchmarkId::new("write_bytes", size), &shared, |b, buf| {
            b.iter(|| {
                for w in &mut writers {
                    w.write_all(buf).expect("write");
                }
            });
        });
    }
    group.finish();
    stop.store(true, Ordering::Relaxed);
    drop(writers);
    let _ = drain.join();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
