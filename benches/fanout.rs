//! The fan-out floor: one core writing the same shared bytes to N loopback sockets, at the
//! batch sizes a server's writes carry, while another thread drains the far ends. What a
//! server spends per GB above this is its own (queues, wake-ups, timers); `scripts/compare`
//! prints its rows beside these figures.
//!
//! Throughput is per write batch size; CPU-seconds per GB of the writing core is its
//! inverse (the writer is busy the whole time): 1 / (GB/s).
//!
//! Two floors: `fanout_N_sockets` drains with a thread that polls every socket without
//! sleeping (the writer never wakes anyone: the kernel's send and loopback receive path
//! alone); `fanout_N_sleeping_readers` drains as players do, each socket read when epoll
//! says it is readable by a thread that sleeps when nothing is (the writer's send then also
//! wakes that thread, as a server's sends wake real players).
//!
//! `cargo bench --bench fanout` (`FANOUT_SOCKETS=N` to change the 200 sockets).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// `n` connected loopback pairs: the writing ends (TCP_NODELAY) and the reading ends
/// (non-blocking).
fn connected(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
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
    (writers, readers)
}

/// `n` connected pairs: the writing ends, and a thread that reads everything that arrives
/// on the other ends until `stop`.
fn pairs(n: usize, stop: Arc<AtomicBool>) -> (Vec<TcpStream>, std::thread::JoinHandle<()>) {
    let (writers, mut readers) = connected(n);
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

/// `n` connected pairs whose far ends are read by a thread that sleeps in epoll (a tokio
/// current-thread runtime, a task per socket) until they close.
fn sleeping_pairs(n: usize) -> (Vec<TcpStream>, std::thread::JoinHandle<()>) {
    let (writers, readers) = connected(n);
    let drain = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let buf = std::rc::Rc::new(std::cell::RefCell::new(vec![0u8; 256 * 1024]));
            let mut tasks = Vec::new();
            for r in readers {
                let r = tokio::net::TcpStream::from_std(r).expect("register");
                let buf = buf.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    loop {
                        if r.readable().await.is_err() {
                            return;
                        }
                        loop {
                            match r.try_read(&mut buf.borrow_mut()[..]) {
                                Ok(0) => return,
                                Ok(_) => {}
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(_) => return,
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    (writers, drain)
}

/// The sizes measured: from a 1 KiB write to the 64 KiB a large batch carries.
const SIZES: [usize; 6] = [1024, 4096, 8192, 16_384, 32_768, 65_536];

fn write_each(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
    writers: &mut [TcpStream],
) {
    for size in SIZES {
        // One shared buffer, as every player's write shares the frames' bytes.
        let shared = Bytes::from(vec![0x5Au8; size]);
        group.throughput(Throughput::Bytes((size * n) as u64));
        group.bench_with_input(BenchmarkId::new("write_bytes", size), &shared, |b, buf| {
            b.iter(|| {
                for w in writers.iter_mut() {
                    w.write_all(buf).expect("write");
                }
            });
        });
    }
}

/// Writes `total` bytes to every socket as frames of `frame` bytes in one vectored write (a
/// batch of many frames, as a player's write carries them when each frame is its own buffer).
fn write_frames(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
    writers: &mut [TcpStream],
    total: usize,
) {
    for frame in [total, 8192, 2048, 512] {
        let parts: Vec<Bytes> = (0..total / frame)
            .map(|_| Bytes::from(vec![0x5Au8; frame]))
            .collect();
        group.throughput(Throughput::Bytes((frame * parts.len() * n) as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{total}_bytes_in_frames_of"), frame),
            &parts,
            |b, parts| {
                b.iter(|| {
                    for w in writers.iter_mut() {
                        let mut slices: Vec<std::io::IoSlice<'_>> =
                            parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
                        let mut rest = &mut slices[..];
                        while !rest.is_empty() {
                            let k = w.write_vectored(rest).expect("write");
                            std::io::IoSlice::advance_slices(&mut rest, k);
                        }
                    }
                });
            },
        );
    }
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
    write_each(&mut group, n, &mut writers);
    group.finish();
    stop.store(true, Ordering::Relaxed);
    drop(writers);
    let _ = drain.join();

    let (mut writers, drain) = sleeping_pairs(n);
    let mut group = c.benchmark_group(format!("fanout_{n}_sleeping_readers"));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    write_each(&mut group, n, &mut writers);
    group.finish();
    // The same bytes per write, as one buffer or as many frames (one iovec each).
    let mut group = c.benchmark_group(format!("fanout_{n}_sleeping_readers_iovecs"));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    write_frames(&mut group, n, &mut writers, 32_768);
    group.finish();
    drop(writers);
    let _ = drain.join();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
