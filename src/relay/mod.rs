//! Relaying between nodes: an edge pulls the streams its players ask for from an origin,
//! and a node pushes the streams published on it upstream.
//!
//! A relay connection is an ordinary publisher (a pull) or player (a push) of the hub; it
//! drives the sans-IO client session ([`crate::rtmp::session::client`]) over a socket
//! ([`session`]). [`pull`] and [`push`] are the two directions; [`locator`] and
//! [`registry`] say where a stream is; [`resolve`] looks host names up off the core
//! threads.
//!
//! Relayed connections carry the chain of nodes they came through ([`Via`], the
//! `ringcastVia` property of `connect`): a node refuses a relayed play or publish whose
//! chain names it, so a push/pull pair never feeds a stream back to its source.

pub mod advertise;
pub mod locator;
pub mod pull;
pub mod push;
pub mod registry;
pub mod resolve;
pub mod session;

use std::fmt;

/// The `connect` property a relay connection names its chain of nodes in.
pub const VIA_PROPERTY: &str = "ringcastVia";

/// The most nodes a chain may hold: past it a relay is refused (a tree is never this deep).
pub const MAX_HOPS: usize = 16;

/// An `rtmp://HOST[:PORT][/APP[/STREAM]]` address, as `origins` and `push` list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `HOST:PORT` (port 1935 when the URL has none).
    pub authority: String,
    /// The application, when the URL names one.
    pub app: Option<String>,
    /// The stream, when the URL names one.
    pub stream: Option<String>,
}

/// An address that is not an `rtmp://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `rtmp://`.
    #[error("not an rtmp:// URL")]
    Scheme,
    /// No host.
    #[error("no host")]
    NoHost,
    /// A port that is not a number.
    #[error("bad port {0:?}")]
    Port(String),
}

impl RtmpUrl {
    /// Parses `rtmp://HOST[:PORT][/APP[/STREAM]]`.
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let rest = url.trim().strip_prefix("rtmp://").ok_or(UrlError::Scheme)?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(UrlError::NoHost);
        }
        let has_port = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                let port = &authority[i + 1..];
                if port.parse::<u16>().is_err() {
                    return Err(UrlError::Port(port.to_owned()));
                }
                true
            }
            _ => false,
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:1935")
        };
        let (app, stream) = match path.split_once('/') {
            Some((a, s)) => (a, s),
            None => (path, ""),
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(RtmpUrl {
            authority,
            app: some(app),
            stream: some(stream),
        })
    }

    /// The `tcUrl` to connect to `app` here.
    pub fn tc_url(&self, app: &str) -> String {
        format!("rtmp://{}/{app}", self.authority)
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtmp://{}", self.authority)?;
        if let Some(a) = &self.app {
            write!(f, "/{a}")?;
            if let Some(s) = &self.stream {
                write!(f, "/{s}")?;
            }
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits: a hash every node computes the same, whatever its build.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xFF;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // A final mix, so that near keys spread.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// `candidates` in rendezvous (highest random weight) order for `key`: every node orders
/// them the same, each key prefers its own first, and removing one moves only its keys.
pub fn rendezvous<'a>(candidates: &'a [String], key: &str) -> Vec<&'a String> {
    let mut v: Vec<(u64, &String)> = candidates
        .iter()
        .map(|c| (stable_hash(&[c, key]), c))
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    v.into_iter().map(|(_, c)| c).collect()
}

/// The chain of nodes a relayed connection came through, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via(Vec<String>);

impl Via {
    /// Parses the `ringcastVia` property: node ids separated by commas.
    pub fn parse(text: &str) -> Via {
        Via(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Whether the chain passed through `node`, or is too long to be a tree.
    pub fn is_loop(&self, node: &str) -> bool {
        self.0.len() >= MAX_HOPS || self.0.iter().any(|n| n == node)
    }

    /// The chain with `node` appended, as the property value.
    pub fn through(&self, node: &str) -> String {
        let mut v = self.0.clone();
        v.push(node.to_owned());
        v.join(",")
    }

    /// Whether it is empty (the connection is not relayed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_urls_parse_with_a_default_port() {
        let u = RtmpUrl::parse("rtmp://origin.example").expect("parses");
        assert_eq!(u.authority, "origin.example:1935");
        assert_eq!((u.app, u.stream), (None, None));
        let u = RtmpUrl::parse("rtmp://127.0.0.1:19350/live/cam 1").expect("parses");
        assert_eq!(u.authority, "127.0.0.1:19350");
        assert_eq!(u.app.as_deref(), Some("live"));
        assert_eq!(u.stream.as_deref(), Some("cam 1"));
        assert_eq!(u.to_string(), "rtmp://127.0.0.1:19350/live/cam 1");
        assert_eq!(u.tc_url("x"), "rtmp://127.0.0.1:19350/x");
        let u = RtmpUrl::parse("rtmp://[::1]:2000/").expect("parses");
        assert_eq!(u.authority, "[::1]:2000");
        assert_eq!(RtmpUrl::parse("[::1]").map(|_| ()), Err(UrlError::Scheme));
        assert_eq!(
            RtmpUrl::parse("http://a").map(|_| ()),
            Err(UrlError::Scheme)
        );
        assert_eq!(
            RtmpUrl::parse("rtmp:///live").map(|_| ()),
            Err(UrlError::NoHost)
        );
        assert!(matches!(
            RtmpUrl::parse("rtmp://a:x"),
            Err(UrlError::Port(_))
        ));
    }

    #[test]
    fn rendezvous_order_is_stable_and_shares_the_keys() {
        let origins: Vec<String> = (0..3).map(|i| format!("rtmp://o{i}:1935")).collect();
        let mut first = [0usize; 3];
        for k in 0..300 {
            let key = format!("live/s{k}");
            let order = rendezvous(&origins, &key);
            assert_eq!(order.len(), 3);
            assert_eq!(order, rendezvous(&origins, &key), "deterministic");
            let i = origins
                .iter()
                .position(|o| o == order[0])
                .expect("one of them");
            first[i] += 1;
            // Without the preferred origin, the rest keep their relative order.
            let rest: Vec<String> = origins.iter().filter(|o| *o != order[0]).cloned().collect();
            assert_eq!(rendezvous(&rest, &key), order[1..].to_vec());
        }
        assert!(
            first.iter().all(|&n| n > 60),
            "each origin leads some keys: {first:?}"
        );
    }

    #[test]
    fn a_chain_that_names_the_node_is_a_loop() {
        let v = Via::parse("edge-a, origin-b");
        assert!(v.is_loop("edge-a"));
        assert!(!v.is_loop("edge-c"));
        assert_eq!(v.through("edge-c"), "edge-a,origin-b,edge-c");
        assert!(Via::parse("").is_empty());
        let long = Via::parse(&vec!["n"; MAX_HOPS].join(","));
        assert!(long.is_loop("other"));
    }
}
