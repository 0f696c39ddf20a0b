//! What the soak watches in another process: its resident memory and its open file
//! descriptors, read from Linux's /proc.

use std::path::PathBuf;

use anyhow::Context;

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size (`VmRSS` in /proc/PID/status), KiB.
    pub rss_kib: u64,
    /// Open file descriptors (entries of /proc/PID/fd): sockets, the io_uring or epoll
    /// instances, eventfds, files.
    pub fds: u64,
}

/// A process to sample.
#[derive(Debug, Clone)]
pub struct Proc {
    dir: PathBuf,
}

impl Proc {
    /// The process `pid` (it need not exist yet; [`Proc::sample`] says).
    pub fn new(pid: u32) -> Proc {
        Proc {
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// Whether the process still exists (a zombie that has not been reaped still does).
    pub fn alive(&self) -> bool {
        self.dir.join("status").exists()
    }

    /// Reads its RSS and counts its open file descriptors. Counting /proc/PID/fd needs the
    /// same user as the process (or root).
    pub fn sample(&self) -> anyhow::Result<Usage> {
        let status_path = self.dir.join("status");
        let status = std::fs::read_to_string(&status_path)
            .with_context(|| format!("reading {}", status_path.display()))?;
        let rss_kib = vm_rss_kib(&status)
            .with_context(|| format!("no VmRSS in {}", status_path.display()))?;
        let fd_dir = self.dir.join("fd");
        let fds = std::fs::read_dir(&fd_dir)
            .with_context(|| format!("listing {}", fd_dir.display()))?
            .count() as u64;
        Ok(Usage { rss_kib, fds })
    }
}

impl Proc {
    /// The inodes of the sockets among its open files.
    pub fn socket_inodes(&self) -> anyhow::Result<Vec<u64>> {
        let fd_dir = self.dir.join("fd");
        let mut inodes = Vec::new();
        for entry in std::fs::read_dir(&fd_dir)
            .with_context(|| format!("listing {}", fd_dir.display()))?
            .flatten()
        {
            if let Ok(link) = std::fs::read_link(entry.path()) {
                let link = link.to_string_lossy();
                if let Some(n) = link
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    inodes.push(n);
                }
            }
        }
        Ok(inodes)
    }
}

/// The inodes of the TCP sockets of this network namespace listening on `port` (IPv4 and
/// IPv6), from /proc/net/tcp and /proc/net/tcp6. With SO_REUSEPORT several processes may
/// listen on one port, and the kernel spreads connections over them.
pub fn listeners_on(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening(&text, port));
        }
    }
    inodes
}

/// The inodes of a /proc/net/tcp text's sockets in state LISTEN (0A) on `port`.
fn listening(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listen = *f.get(3)? == "0A";
            (listen && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// The `VmRSS:   12345 kB` line of a /proc/PID/status text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tringcast\nVmPeak:\t  99999 kB\nVmRSS:\t   23456 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(23_456));
        assert_eq!(vm_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn finds_listening_sockets_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4B96 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4B96 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 81299 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81300 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening(table, 19350), vec![81234]);
        assert_eq!(listening(table, 8080), vec![81300]);
        assert!(listening(table, 1935).is_empty());
    }

    #[test]
    fn finds_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let mine = Proc::new(std::process::id()).socket_inodes().expect("fds");
        let listeners = listeners_on(port);
        assert_eq!(listeners.len(), 1, "{listeners:?}");
        assert!(mine.contains(&listeners[0]));
    }

    #[test]
    fn samples_this_process() {
        let me = Proc::new(std::process::id());
        assert!(me.alive());
        let u = me.sample().expect("own /proc entry");
        assert!(u.rss_kib > 0, "{u:?}");
        // The directory being listed at least.
        assert!(u.fds >= 1, "{u:?}");
        assert!(!Proc::new(u32::MAX).alive());
        assert!(Proc::new(u32::MAX).sample().is_err());
    }
}
