//! Host names to socket addresses, without blocking the runtime thread.
//!
//! The runtimes are single-threaded, one per core: a blocking `getaddrinfo` on one of them
//! would stall every connection that core serves. An IP literal is parsed in place; a host
//! name is looked up on a short-lived thread of its own, which hands the answer back over a
//! oneshot channel. If the caller gives up (a timeout drops the future), the thread finishes
//! its lookup and its answer is dropped.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

use tokio::sync::oneshot;

/// An authority (`host`, `host:port`, `[v6]:port`) that could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    /// There is no host.
    #[error("no host in {0:?}")]
    Empty(String),
    /// The port is not a number from 1 to 65535.
    #[error("bad port {port:?} in {authority:?}")]
    Port {
        /// The whole authority.
        authority: String,
        /// The port as written.
        port: String,
    },
    /// An IPv6 address without brackets, an unclosed bracket, or brackets around something
    /// that is not an IPv6 address.
    #[error("bad IPv6 address in {0:?} (write it in brackets: [::1]:1935)")]
    Ipv6(String),
    /// The host has a character no host name has.
    #[error("bad host name in {0:?}")]
    Host(String),
}

/// Splits `authority` into a host and a port: `host` (the port is `default_port`),
/// `host:port`, `[v6]` or `[v6]:port`. An IPv6 host comes back without its brackets; see
/// [`join_host_port`] for the way back.
pub fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), HostPortError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| HostPortError::Ipv6(authority.to_owned()))?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(HostPortError::Ipv6(authority.to_owned()));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| HostPortError::Ipv6(authority.to_owned()))?,
            ),
        };
        (v6, port)
    } else {
        match authority.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err(HostPortError::Ipv6(authority.to_owned()));
            }
            Some((host, port)) => {
                check_name(authority, host)?;
                (host, Some(port))
            }
            None => {
                check_name(authority, authority)?;
                (authority, None)
            }
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(HostPortError::Port {
                    authority: authority.to_owned(),
                    port: p.to_owned(),
                });
            }
        },
    };
    Ok((host.to_owned(), port))
}

/// A host name or IPv4 address: letters, digits, `-`, `.` and `_`.
fn check_name(authority: &str, host: &str) -> Result<(), HostPortError> {
    if host.is_empty() {
        return Err(HostPortError::Empty(authority.to_owned()));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(HostPortError::Host(authority.to_owned()));
    }
    Ok(())
}

/// `host:port`, with brackets around an IPv6 host: the inverse of [`split_host_port`].
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `host_port` (`127.0.0.1:1935`, `[::1]:1935`, `origin.example:1935`) to the
/// first address it names. An IP literal is parsed here; a host name is looked up on a
/// short-lived thread, so the calling runtime thread never blocks. Errors name the host.
pub async fn resolve(host_port: &str) -> io::Result<SocketAddr> {
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (tx, rx) = oneshot::channel();
    let name = host_port.to_owned();
    std::thread::Builder::new()
        .name("ringcast-resolve".into())
        .spawn(move || {
            let answer = name.to_socket_addrs().map(|mut addrs| addrs.next());
            // The caller may have given up; then nobody wants the answer.
            let _ = tx.send(answer);
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("resolving {host_port}: cannot start a resolver thread: {e}"),
            )
        })?;
    match rx.await {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(Ok(None)) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("resolving {host_port}: the name has no addresses"),
        )),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("resolving {host_port}: {e}"),
        )),
        Err(_) => Err(io::Error::other(format!(
            "resolving {host_port}: the resolver thread ended without an answer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Io, block_on};

    fn split(a: &str) -> Result<(String, u16), HostPortError> {
        split_host_port(a, 1935)
    }

    #[test]
    fn splits_names_ipv4_and_ipv6() {
        assert_eq!(split("origin"), Ok(("origin".into(), 1935)));
        assert_eq!(
            split("origin.example:80"),
            Ok(("origin.example".into(), 80))
        );
        assert_eq!(split("10.0.0.1:6379"), Ok(("10.0.0.1".into(), 6379)));
        assert_eq!(split("[::1]"), Ok(("::1".into(), 1935)));
        assert_eq!(split("[fe80::2]:8080"), Ok(("fe80::2".into(), 8080)));
        assert_eq!(split("my_host-1:1"), Ok(("my_host-1".into(), 1)));
    }

    #[test]
    fn refuses_bad_authorities() {
        assert!(matches!(split(""), Err(HostPortError::Empty(_))));
        assert!(matches!(split(":80"), Err(HostPortError::Empty(_))));
        assert!(matches!(split("h:"), Err(HostPortError::Port { .. })));
        assert!(matches!(split("h:0"), Err(HostPortError::Port { .. })));
        assert!(matches!(split("h:65536"), Err(HostPortError::Port { .. })));
        assert!(matches!(split("h:+80"), Err(HostPortError::Port { .. })));
        assert!(matches!(split("h:8x"), Err(HostPortError::Port { .. })));
        assert!(matches!(split("::1"), Err(HostPortError::Ipv6(_))));
        assert!(matches!(split("[::1"), Err(HostPortError::Ipv6(_))));
        assert!(matches!(split("[::1]80"), Err(HostPortError::Ipv6(_))));
        assert!(matches!(split("[host]:80"), Err(HostPortError::Ipv6(_))));
        assert!(matches!(split("a b:80"), Err(HostPortError::Host(_))));
        assert!(matches!(split("u@h:80"), Err(HostPortError::Host(_))));
        assert!(matches!(split("h/x"), Err(HostPortError::Host(_))));
    }

    #[test]
    fn join_is_the_inverse_of_split() {
        for a in ["origin:1935", "10.0.0.1:1", "[::1]:6379"] {
            let (h, p) = split(a).expect("split");
            assert_eq!(join_host_port(&h, p), a);
        }
    }

    #[test]
    fn resolves_literals_and_names() {
        block_on(Io::Epoll, 8, async {
            assert_eq!(
                resolve("127.0.0.1:1935").await.expect("v4"),
                "127.0.0.1:1935".parse::<SocketAddr>().expect("addr")
            );
            assert_eq!(
                resolve("[::1]:1935").await.expect("v6"),
                "[::1]:1935".parse::<SocketAddr>().expect("addr")
            );
            let local = resolve("localhost:1935").await.expect("localhost");
            assert!(local.ip().is_loopback(), "{local}");
            assert_eq!(local.port(), 1935);
        })
        .expect("runtime");
    }

    #[test]
    fn errors_name_the_host() {
        block_on(Io::Epoll, 8, async {
            // No port: refused before any lookup.
            let e = resolve("localhost").await.expect_err("no port");
            assert!(e.to_string().contains("localhost"), "{e}");
        })
        .expect("runtime");
    }
}
