//! Parsing of the URLs the harness plays and publishes, and of its flag values.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

/// Where a player or publisher connects, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resolved address.
    pub addr: SocketAddr,
    /// `rtmp` or `http`.
    pub scheme: Scheme,
    /// `host[:port]` as written (the HTTP Host header).
    pub authority: String,
    /// RTMP: the application (first path segment).
    pub app: String,
    /// RTMP: the stream name with any query; HTTP: the whole path with query.
    pub stream: String,
    /// RTMP: `rtmp://authority/app`.
    pub tc_url: String,
}

/// The protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RTMP (`rtmp://HOST[:1935]/APP/STREAM`).
    Rtmp,
    /// HTTP-FLV (`http://HOST[:80]/PATH.flv`).
    Http,
    /// WebSocket-FLV (`ws://HOST[:80]/PATH.flv`).
    Ws,
}

impl Target {
    /// Parses `rtmp://HOST[:PORT]/APP/STREAM[?query]` or `http://HOST[:PORT]/PATH`.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let (scheme, rest, port) = if let Some(r) = url.strip_prefix("rtmp://") {
            (Scheme::Rtmp, r, 1935)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r, 80)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (Scheme::Ws, r, 80)
        } else {
            bail!(
                "unsupported URL {url:?}: use rtmp://HOST:PORT/APP/STREAM, http://HOST:PORT/PATH.flv or ws://HOST:PORT/PATH.flv"
            );
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            bail!("no host in {url:?}");
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_owned()
        } else {
            format!("{authority}:{port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("no address for {authority}"))?;
        let (app, stream) = match scheme {
            Scheme::Rtmp => {
                let (app, stream) = path.split_once('/').with_context(|| {
                    format!("{url:?} has no stream name: rtmp://HOST/APP/STREAM")
                })?;
                if app.is_empty() || stream.is_empty() {
                    bail!("{url:?} needs an app and a stream name");
                }
                (app.to_owned(), stream.to_owned())
            }
            Scheme::Http | Scheme::Ws => (String::new(), format!("/{path}")),
        };
        Ok(Target {
            addr,
            scheme,
            tc_url: format!("rtmp://{authority}/{app}"),
            authority: authority.to_owned(),
            app,
            stream,
        })
    }
}

/// Parses a bit rate: `1M`, `500k`, `2.5M`, `800000`.
pub fn bitrate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'm' | 'M')) => (&s[..i], 1e6),
        Some((i, 'g' | 'G')) => (&s[..i], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad bit rate {s:?} (e.g. 500k, 1M)"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("bit rate must be positive: {s:?}"));
    }
    Ok((v * mul) as u64)
}

/// Parses a duration: `60s`, `2s`, `500ms`, `1m`, `1.5s`, or plain seconds (the same
/// syntax as the server's config).
pub fn duration(s: &str) -> Result<Duration, String> {
    ringcast::config::parse_duration(s)
}

/// Parses a ramp rate: `500/s` or `500` (players started per second).
pub fn ramp(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s");
    let v: f64 = n
        .parse()
        .map_err(|_| format!("bad ramp {s:?} (e.g. 500/s)"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("ramp must be positive: {s:?}"));
    }
    Ok(v)
}

/// A range of durations a random choice is drawn from (`5s..60s`), or one duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The shortest.
    pub lo: Duration,
    /// The longest.
    pub hi: Duration,
}

impl Span {
    /// The point `frac` (0 to 1) of the way from `lo` to `hi`.
    pub fn at(self, frac: f64) -> Duration {
        self.lo + (self.hi - self.lo).mul_f64(frac.clamp(0.0, 1.0))
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{:?}", self.lo)
        } else {
            write!(f, "{:?}..{:?}", self.lo, self.hi)
        }
    }
}

/// Parses a span: `5s..60s`, `500ms..2s`, or one duration (`30s`: always that).
pub fn span(s: &str) -> Result<Span, String> {
    let (lo, hi) = match s.split_once("..") {
        Some((lo, hi)) => (duration(lo.trim())?, duration(hi.trim())?),
        None => {
            let d = duration(s.trim())?;
            (d, d)
        }
    };
    if hi < lo {
        return Err(format!("{s:?}: the end of the range is before its start"));
    }
    Ok(Span { lo, hi })
}

/// Parses a percentage: `5%` or `5`.
pub fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("bad percentage {s:?} (e.g. 5%)"))?;
    if v.is_nan() || v < 0.0 {
        return Err(format!("percentage must be zero or more: {s:?}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtmp_and_http_urls() {
        let t = Target::parse("rtmp://127.0.0.1:19350/live/cam?token=1").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:19350".parse().expect("addr"));
        assert_eq!((t.app.as_str(), t.stream.as_str()), ("live", "cam?token=1"));
        assert_eq!(t.tc_url, "rtmp://127.0.0.1:19350/live");
        let t = Target::parse("rtmp://127.0.0.1/live/a/b").expect("valid");
        assert_eq!(t.addr.port(), 1935);
        assert_eq!(t.stream, "a/b");
        let t = Target::parse("http://127.0.0.1:8080/live/cam.flv").expect("valid");
        assert_eq!(
            (t.scheme, t.stream.as_str()),
            (Scheme::Http, "/live/cam.flv")
        );
        assert!(Target::parse("rtmp://127.0.0.1/live").is_err());
        assert!(Target::parse("ftp://x/y").is_err());
    }

    #[test]
    fn parses_flag_values() {
        assert_eq!(bitrate("1M"), Ok(1_000_000));
        assert_eq!(bitrate("500k"), Ok(500_000));
        assert_eq!(bitrate("2.5M"), Ok(2_500_000));
        assert!(bitrate("0").is_err());
        assert!(bitrate("fast").is_err());
        assert_eq!(duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert!(duration("-1s").is_err());
        assert_eq!(ramp("500/s"), Ok(500.0));
        assert!(ramp("0/s").is_err());
        let secs = Duration::from_secs;
        assert_eq!(
            span("5s..60s"),
            Ok(Span {
                lo: secs(5),
                hi: secs(60)
            })
        );
        assert_eq!(
            span("30s"),
            Ok(Span {
                lo: secs(30),
                hi: secs(30)
            })
        );
        assert!(span("60s..5s").is_err());
        assert!(span("5s..").is_err());
        assert_eq!(span("1s..3s").map(|s| s.at(0.5)), Ok(secs(2)));
        assert_eq!(percent("5%"), Ok(5.0));
        assert_eq!(percent("2.5"), Ok(2.5));
        assert!(percent("-1%").is_err());
        assert!(percent("lots").is_err());
    }
}
