//! The owned-buffer IO seam: one TCP stream and listener type over io_uring (tokio-uring)
//! or epoll (tokio), the per-thread runtime that drives them, SO_REUSEPORT listeners and
//! core pinning. Everything above this module is the same for both backends: buffers go
//! into an operation and come back with its result (tokio-uring's `BufResult`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_uring::buf::BoundedBuf;

/// Which IO backend a runtime thread uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// io_uring through tokio-uring.
    Uring,
    /// epoll through tokio's current-thread runtime.
    Epoll,
}

impl Io {
    /// The name used in reports and flags.
    pub fn name(self) -> &'static str {
        match self {
            Io::Uring => "uring",
            Io::Epoll => "epoll",
        }
    }

    /// Resolves `auto`: io_uring when a ring can be set up here (it is refused by seccomp in
    /// many containers, or disabled by sysctl), epoll otherwise.
    pub fn detect(requested: &str) -> anyhow::Result<Io> {
        match requested {
            "uring" => Ok(Io::Uring),
            "epoll" => Ok(Io::Epoll),
            "auto" => Ok(if uring_available() {
                Io::Uring
            } else {
                Io::Epoll
            }),
            other => anyhow::bail!("--io must be auto, uring or epoll, not {other:?}"),
        }
    }
}

fn uring_available() -> bool {
    std::thread::spawn(|| tokio_uring::Runtime::new(&tokio_uring::builder()).is_ok())
        .join()
        .unwrap_or(false)
}

/// Runs `f` to completion on a fresh single-threaded runtime of the given backend, on the
/// calling thread. Tasks are spawned with [`spawn`].
pub fn block_on<F: Future>(io: Io, ring_entries: u32, f: F) -> anyhow::Result<F::Output> {
    match io {
        Io::Uring => {
            // COOP_TASKRUN: completions are run when this thread next enters the kernel,
            // not by interrupting it with an IPI per socket that became ready (at 10,000
            // sockets those interrupts cost a quarter of a core). Kernels before 5.19 do
            // not know the flag: fall back to a plain ring.
            let mut coop = tokio_uring::uring_builder();
            coop.setup_coop_taskrun();
            let rt = tokio_uring::Runtime::new(
                tokio_uring::builder()
                    .entries(ring_entries)
                    .uring_builder(&coop),
            )
            .or_else(|_| tokio_uring::Runtime::new(tokio_uring::builder().entries(ring_entries)))?;
            Ok(rt.block_on(f))
        }
        Io::Epoll => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            Ok(local.block_on(&rt, f))
        }
    }
}

/// Spawns a task on the current thread's runtime (either backend).
pub fn spawn<F: Future + 'static>(f: F) -> tokio::task::JoinHandle<F::Output> {
    tokio::task::spawn_local(f)
}

/// A connected TCP stream.
pub enum Stream {
    /// io_uring.
    Uring(tokio_uring::net::TcpStream),
    /// epoll.
    Epoll(tokio::net::TcpStream),
}

impl Stream {
    /// Connects to `addr` with TCP_NODELAY set.
    pub async fn connect(io: Io, addr: SocketAddr) -> io::Result<Stream> {
        match io {
            Io::Uring => {
                let s = tokio_uring::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Stream::Uring(s))
            }
            Io::Epoll => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Stream::Epoll(s))
            }
        }
    }

    /// Reads into `buf` (replacing its contents, up to its capacity) and gives it back.
    /// `Ok(0)` is the end of the stream.
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        match self {
            Stream::Uring(s) => s.read(buf).await,
            Stream::Epoll(s) => {
                let cap = buf.capacity().max(1);
                buf.resize(cap, 0);
                let res = loop {
                    if let Err(e) = s.readable().await {
                        break Err(e);
                    }
                    match s.try_read(&mut buf[..]) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        other => break other,
                    }
                };
                buf.truncate(*res.as_ref().unwrap_or(&0));
                (res, buf)
            }
        }
    }

    /// Reads at most `want` bytes (at least one) and appends them to `buf`, after the bytes
    /// it holds, so a receive buffer is filled in place with no copy. Gives `buf` back with
    /// the count; `Ok(0)` is the end of the stream.
    pub async fn read_buf(&self, mut buf: BytesMut, want: usize) -> (io::Result<usize>, BytesMut) {
        let want = want.max(1);
        buf.reserve(want);
        match self {
            Stream::Uring(s) => {
                let start = buf.len();
                let (res, slice) = s.read(buf.slice(start..start + want)).await;
                (res, slice.into_inner())
            }
            Stream::Epoll(s) => {
                let res = loop {
                    if let Err(e) = s.readable().await {
                        break Err(e);
                    }
                    let mut limited = (&mut buf).limit(want);
                    match s.try_read_buf(&mut limited) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        other => break other,
                    }
                };
                (res, buf)
            }
        }
    }

    /// Waits until a read would not block (epoll). With io_uring there is no readiness to
    /// wait for: it returns at once and [`Stream::try_read_buf`] says `Unsupported`.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Uring(_) => Ok(()),
            Stream::Epoll(s) => s.readable().await,
        }
    }

    /// Reads what has arrived (at most `want` bytes) into `buf`'s spare capacity without
    /// waiting: `WouldBlock` when nothing has. Epoll only: it lets a caller read into a
    /// buffer it reuses for every connection (hot in cache), which io_uring's owned
    /// buffers cannot.
    pub fn try_read_buf(&self, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        match self {
            Stream::Uring(_) => Err(io::ErrorKind::Unsupported.into()),
            Stream::Epoll(s) => {
                buf.reserve(want.max(1));
                s.try_read_buf(&mut buf.limit(want.max(1)))
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match self {
            Stream::Uring(s) => s.write_all(data).await.0,
            Stream::Epoll(s) => {
                let mut rest = &data[..];
                while !rest.is_empty() {
                    s.writable().await?;
                    match s.try_write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// Writes all of `bufs` with vectored writes: one syscall (or ring entry) for
    /// everything queued, more only when the kernel takes part of it.
    pub async fn writev_all(&self, mut bufs: Vec<Bytes>) -> io::Result<()> {
        self.writev_from(&mut bufs).await
    }

    /// [`Stream::writev_all`] from a list the caller keeps: it is left empty (on an error,
    /// with what was not written), its capacity kept for the next batch, so a writer
    /// allocates no list per write.
    pub async fn writev_from(&self, bufs: &mut Vec<Bytes>) -> io::Result<()> {
        bufs.retain(|b| !b.is_empty());
        while !bufs.is_empty() {
            let n = match self {
                Stream::Uring(s) => {
                    // The kernel refuses more than IOV_MAX buffers in one writev (EINVAL).
                    let rest = if bufs.len() > IOV_MAX {
                        bufs.split_off(IOV_MAX)
                    } else {
                        Vec::new()
                    };
                    let (res, mut back) = s.writev(std::mem::take(bufs)).await;
                    back.extend(rest);
                    *bufs = back;
                    res?
                }
                // The write is tried first: a socket with room (nearly always) costs no
                // readiness wait; only a full one waits to become writable.
                Stream::Epoll(s) => loop {
                    let slices: Vec<io::IoSlice<'_>> = bufs
                        .iter()
                        .take(IOV_MAX)
                        .map(|b| io::IoSlice::new(b))
                        .collect();
                    match s.try_write_vectored(&slices) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            drop(slices);
                            s.writable().await?;
                        }
                        Err(e) => return Err(e),
                    }
                },
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            advance(bufs, n);
        }
        Ok(())
    }

    /// Shuts down both directions: a read or write in flight ends with an error or EOF.
    pub fn shutdown_both(&self) {
        let _ = match self {
            Stream::Uring(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Epoll(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Both),
        };
    }

    /// Shuts down the write side (the peer reads end of stream after what was sent).
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Uring(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Epoll(s) => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write),
        };
    }
}

/// The most buffers one vectored write may carry (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// The most entries a writer's reused batch list keeps between batches: a live batch has a
/// handful; the one that carried a GOP burst (hundreds) is let go rather than held for the
/// connection's life by every player.
const KEPT_ENTRIES: usize = 16;

/// Empties `v`, keeping its allocation only if it is small ([`KEPT_ENTRIES`]).
pub fn keep_small<T>(v: &mut Vec<T>) {
    if v.capacity() > KEPT_ENTRIES {
        *v = Vec::new();
    } else {
        v.clear();
    }
}

/// Drops the first `n` bytes of `bufs`.
fn advance(bufs: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for b in bufs.iter_mut() {
        if n >= b.len() {
            n -= b.len();
            done += 1;
        } else {
            b.advance(n);
            break;
        }
    }
    bufs.drain(..done);
}

/// A listening socket.
pub struct Listener {
    io: ListenerIo,
    /// The same socket (a duplicate descriptor, non-blocking like the original), for
    /// [`Listener::try_accept`].
    raw: std::net::TcpListener,
}

enum ListenerIo {
    Uring(tokio_uring::net::TcpListener),
    Epoll(tokio::net::TcpListener),
}

impl Listener {
    /// Wraps a bound, listening std socket (non-blocking, as [`reuseport_listeners`] makes
    /// them). Call on the runtime thread that will accept on it.
    pub fn from_std(io: Io, l: std::net::TcpListener) -> io::Result<Listener> {
        let raw = l.try_clone()?;
        let io = match io {
            Io::Uring => ListenerIo::Uring(tokio_uring::net::TcpListener::from_std(l)),
            Io::Epoll => ListenerIo::Epoll(tokio::net::TcpListener::from_std(l)?),
        };
        Ok(Listener { io, raw })
    }

    /// Accepts a connection, with TCP_NODELAY set.
    pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        match &self.io {
            ListenerIo::Uring(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Uring(s), peer))
            }
            ListenerIo::Epoll(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Epoll(s), peer))
            }
        }
    }

    /// Takes a connection that is already waiting, without waiting: `Ok(None)` when none
    /// is. After an accept that waited, a loaded core drains its backlog with these in the
    /// same turn instead of one ring round trip (or readiness wait) per connection; at
    /// 5,000 connections a second the backlog would otherwise overflow and the kernel drop
    /// SYNs, which clients see as connects of 1 s and 3 s.
    pub fn try_accept(&self) -> io::Result<Option<(Stream, SocketAddr)>> {
        let (s, peer) = match self.raw.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        s.set_nodelay(true)?;
        let stream = match &self.io {
            ListenerIo::Uring(_) => Stream::Uring(tokio_uring::net::TcpStream::from_std(s)),
            ListenerIo::Epoll(_) => {
                s.set_nonblocking(true)?;
                Stream::Epoll(tokio::net::TcpStream::from_std(s)?)
            }
        };
        Ok(Some((stream, peer)))
    }
}

/// Binds `n` listeners on `addr` with SO_REUSEPORT, so every core accepts on the same port
/// and the kernel spreads connections over them. All are bound and listening before any
/// core starts, so there is no start-up race. Port 0 binds the first to a free port and the
/// others to the same one.
pub fn reuseport_listeners(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Pins the calling thread to CPU `index` (modulo the CPUs this process may use).
/// Returns false where pinning is not possible.
pub fn pin_to_core(index: usize) -> bool {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => core_affinity::set_for_current(ids[index % ids.len()]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_whole_and_partial_buffers() {
        let mut v = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"fgh"),
        ];
        advance(&mut v, 4);
        assert_eq!(
            v,
            vec![Bytes::from_static(b"e"), Bytes::from_static(b"fgh")]
        );
        advance(&mut v, 4);
        assert!(v.is_empty());
    }

    #[test]
    fn reuseport_listeners_share_one_port() {
        let ls = reuseport_listeners("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        let ports: Vec<u16> = ls
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert!(
            ports[0] != 0 && ports.iter().all(|&p| p == ports[0]),
            "{ports:?}"
        );
    }

    /// Runs `test` with a connected (accepted, connecting) pair of streams on every backend
    /// this machine has.
    fn on_each_backend<F, Fut>(test: F)
    where
        F: Fn(Io, Stream, Stream) -> Fut,
        Fut: Future<Output = ()>,
    {
        on_each_listener(|io, l, addr| {
            let test = &test;
            async move {
                let (accepted, connected) = tokio::join!(l.accept(), Stream::connect(io, addr));
                test(io, accepted.expect("accept").0, connected.expect("connect")).await;
            }
        });
    }

    /// Runs `test` with a listener on a loopback port (and its address) on every backend
    /// this machine has.
    fn on_each_listener<F, Fut>(test: F)
    where
        F: Fn(Io, Listener, SocketAddr) -> Fut,
        Fut: Future<Output = ()>,
    {
        for io in [Io::Epoll, Io::Uring] {
            if io == Io::Uring && Io::detect("auto").ok() != Some(Io::Uring) {
                continue;
            }
            let std_l = reuseport_listeners("127.0.0.1:0".parse().expect("addr"), 1)
                .expect("bind")
                .remove(0);
            let addr = std_l.local_addr().expect("addr");
            block_on(io, 64, async {
                let l = Listener::from_std(io, std_l).expect("listener");
                test(io, l, addr).await;
            })
            .expect("runtime");
        }
    }

    /// Everything `c` reads until the end of the stream.
    async fn read_to_end(c: &Stream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = Vec::with_capacity(8192);
        loop {
            let (res, b) = c.read(buf).await;
            let n = res.expect("read");
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&b[..n]);
            buf = b;
        }
    }

    /// Connections waiting in the backlog are taken without waiting, each a working
    /// stream; an empty backlog is `None`, not an error or a wait.
    #[test]
    fn try_accept_drains_the_backlog_without_waiting() {
        on_each_listener(|io, l, addr| async move {
            assert!(l.try_accept().expect("empty backlog").is_none(), "{io:?}");
            // The kernel completes these handshakes itself: all five wait in the backlog
            // once the first is accepted.
            let mut clients = Vec::new();
            for _ in 0..5 {
                clients.push(Stream::connect(io, addr).await.expect("connect"));
            }
            let mut accepted = vec![l.accept().await.expect("accept").0];
            while let Some((s, peer)) = l.try_accept().expect("try_accept") {
                assert!(peer.ip().is_loopback());
                accepted.push(s);
            }
            assert_eq!(accepted.len(), 5, "{io:?}");
            // Each taken stream is its client's: it carries bytes to it.
            for (s, c) in accepted.iter().zip(&clients) {
                s.write_all(Bytes::from_static(b"hi")).await.expect("write");
                let (res, buf) = c.read(Vec::with_capacity(16)).await;
                assert_eq!(res.expect("read"), 2, "{io:?}");
                assert_eq!(&buf[..2], b"hi");
            }
        });
    }

    /// tokio-uring and tokio move the same bytes through the same seam.
    #[test]
    fn both_backends_accept_read_and_writev() {
        on_each_backend(|io, s, c| async move {
            let server = spawn(async move {
                let parts = vec![
                    Bytes::from_static(b"hello "),
                    Bytes::from(vec![b'x'; 100_000]),
                ];
                s.writev_all(parts).await.expect("writev");
                s.shutdown_write();
            });
            let got = read_to_end(&c).await;
            server.await.expect("server task");
            assert_eq!(got.len(), 6 + 100_000, "{io:?}");
            assert_eq!(&got[..6], b"hello ");
        });
    }

    /// More buffers than one writev may carry go out in order, in several writes.
    #[test]
    fn writev_takes_more_buffers_than_iov_max() {
        on_each_backend(|io, s, c| async move {
            let server = spawn(async move {
                let parts: Vec<Bytes> = (0..3 * IOV_MAX + 7)
                    .map(|i| Bytes::from(vec![(i % 251) as u8; 3]))
                    .collect();
                s.writev_all(parts).await.expect("writev");
                s.shutdown_write();
            });
            let got = read_to_end(&c).await;
            server.await.expect("server task");
            let want: Vec<u8> = (0..3 * IOV_MAX + 7)
                .flat_map(|i| [(i % 251) as u8; 3])
                .collect();
            assert!(got == want, "{io:?}: {} bytes, not in order", got.len());
        });
    }

    /// `read_buf` appends after what the buffer holds, never past `want` bytes a read.
    #[test]
    fn read_buf_appends_in_place() {
        let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        on_each_backend(|io, s, c| {
            let body = body.clone();
            async move {
                let sent = Bytes::from(body.clone());
                let server = spawn(async move {
                    s.write_all(sent).await.expect("write");
                    s.shutdown_write();
                });
                let mut buf = BytesMut::from(&b"kept"[..]);
                loop {
                    let before = buf.len();
                    let (res, b) = c.read_buf(buf, 777).await;
                    let n = res.expect("read");
                    assert!(n <= 777, "{io:?}: read {n} bytes");
                    assert_eq!(b.len(), before + n, "{io:?}");
                    buf = b;
                    if n == 0 {
                        break;
                    }
                }
                server.await.expect("server task");
                assert_eq!(&buf[..4], b"kept");
                assert!(buf[4..] == body[..], "{io:?}: bytes differ");
            }
        });
    }
}
