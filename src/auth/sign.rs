//! Signed URLs: `?sign=EXPIRES-HASH`, where EXPIRES is a Unix time in seconds and HASH the
//! hex HMAC-SHA256 of `/APP/STREAM-EXPIRES` under the app's secret. Sans-IO: the caller
//! passes the time.

use crate::rtmp::handshake::hmac_sha256;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No `sign=` parameter.
    #[error("no signature")]
    Missing,
    /// Not `EXPIRES-HASH` with a number and 64 hex digits.
    #[error("malformed signature")]
    Malformed,
    /// The time it names has passed.
    #[error("signature expired")]
    Expired,
    /// The hash is not the one the secret gives.
    #[error("wrong signature")]
    Wrong,
}

fn digest(secret: &str, app: &str, stream: &str, expires: u64) -> [u8; 32] {
    let path = format!("/{app}/{stream}-{expires}");
    hmac_sha256(secret.as_bytes(), &[path.as_bytes()])
}

/// The `sign` value for `app/stream` valid until `expires` (Unix seconds).
pub fn sign(secret: &str, app: &str, stream: &str, expires: u64) -> String {
    let hex: String = digest(secret, app, stream, expires)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{expires}-{hex}")
}

/// The value of parameter `name` in a query string (`a=1&sign=…`), if present.
pub fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Checks the `sign` parameter of `query` for `app/stream` at `now` (Unix seconds).
pub fn verify(
    secret: &str,
    app: &str,
    stream: &str,
    query: Option<&str>,
    now: u64,
) -> Result<(), SignError> {
    let value = query
        .and_then(|q| param(q, "sign"))
        .ok_or(SignError::Missing)?;
    let (expires, hash) = value.split_once('-').ok_or(SignError::Malformed)?;
    let expires: u64 = expires.parse().map_err(|_| SignError::Malformed)?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignError::Malformed);
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    // Compared in constant time, before the expiry check tells anything.
    let want = digest(secret, app, stream, expires);
    let diff = want
        .iter()
        .zip(&bytes)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(SignError::Wrong);
    }
    if now >= expires {
        return Err(SignError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_until_it_expires_and_only_for_its_stream() {
        let s = sign("k", "live", "cam", 1_000);
        let q = format!("a=b&sign={s}");
        assert_eq!(verify("k", "live", "cam", Some(&q), 999), Ok(()));
        assert_eq!(
            verify("k", "live", "cam", Some(&q), 1_000),
            Err(SignError::Expired)
        );
        assert_eq!(
            verify("k", "live", "cam2", Some(&q), 10),
            Err(SignError::Wrong)
        );
        assert_eq!(
            verify("k", "other", "cam", Some(&q), 10),
            Err(SignError::Wrong)
        );
        assert_eq!(
            verify("k2", "live", "cam", Some(&q), 10),
            Err(SignError::Wrong)
        );
        assert_eq!(
            verify("k", "live", "cam", None, 10),
            Err(SignError::Missing)
        );
        assert_eq!(
            verify("k", "live", "cam", Some("sign=x"), 10),
            Err(SignError::Malformed)
        );
        assert_eq!(
            verify("k", "live", "cam", Some("sign=12-zz"), 10),
            Err(SignError::Malformed)
        );
        // A later expiry with the old hash is forged.
        let forged = format!("sign=2000-{}", s.split_once('-').map(|x| x.1).unwrap_or(""));
        assert_eq!(
            verify("k", "live", "cam", Some(&forged), 10),
            Err(SignError::Wrong)
        );
    }

    #[test]
    fn the_hash_is_hmac_sha256_of_the_path_and_expiry() {
        // Computed independently: printf '/live/cam-1000' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", "live", "cam", 1000),
            "1000-0f5c16d0f4be0a8c84f219de111c5b34ad47a37186d4f19b5c841d35d3b0d08c"
        );
    }

    #[test]
    fn query_parameters_are_found_by_name() {
        assert_eq!(param("?sign=1-ab&x=2", "sign"), Some("1-ab"));
        assert_eq!(param("x=2&sign=", "sign"), Some(""));
        assert_eq!(param("x=2", "sign"), None);
        assert_eq!(param("xsign=1", "sign"), None);
    }
}
