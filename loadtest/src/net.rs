//! The owned-buffer IO seam: one TCP stream type over io_uring (tokio-uring) or epoll
//! (tokio), and the per-thread runtime that drives it. Everything above this file is the
//! same for both backends.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

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
            let rt = tokio_uring::Runtime::new(tokio_uring::builder().entries(ring_entries))?;
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
}
