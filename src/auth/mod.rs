//! Who may publish and play: signed URLs ([`sign`]), address rules ([`cidr`]) and, in the
//! server, HTTP callbacks. [`Policy`] is the sans-IO part: given the peer's address, the app,
//! the stream, its query string and the time, it allows or says why not.

pub mod cidr;
pub mod sign;

use std::collections::BTreeMap;
use std::net::IpAddr;

use cidr::Cidr;
use sign::SignError;

use crate::config::AuthConfig;

/// Why a publish or play was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer's address is not allowed (`allow_publish`, `deny_play`).
    #[error("address not allowed")]
    Address,
    /// A secret is set and the URL's signature is missing, malformed, expired or wrong.
    #[error("{0}")]
    Signature(SignError),
    /// The callback (`on_publish`, `on_play`) refused, failed or timed out.
    #[error("refused by {0}")]
    Hook(String),
}

impl Refusal {
    /// The `reason` label of the refusal counters.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Address => "auth_address",
            Refusal::Signature(_) => "auth_signature",
            Refusal::Hook(_) => "auth_hook",
        }
    }
}

/// A config value that is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct PolicyError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Secrets of one app (or the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Secrets {
    publish: Option<String>,
    play: Option<String>,
}

/// The `[auth]` rules, ready to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    default: Secrets,
    apps: BTreeMap<String, Secrets>,
    allow_publish: Vec<Cidr>,
    deny_play: Vec<Cidr>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

impl Policy {
    /// The rules of `config`.
    pub fn new(config: &AuthConfig) -> Result<Policy, PolicyError> {
        let cidrs = |key: &'static str, list: &[String]| {
            list.iter()
                .map(|c| {
                    Cidr::parse(c).map_err(|e| PolicyError {
                        key,
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Policy {
            default: Secrets {
                publish: nonempty(&config.publish_secret),
                play: nonempty(&config.play_secret),
            },
            apps: config
                .app
                .iter()
                .map(|(name, a)| {
                    let s = Secrets {
                        publish: nonempty(&a.publish_secret),
                        play: nonempty(&a.play_secret),
                    };
                    (name.clone(), s)
                })
                .collect(),
            allow_publish: cidrs("auth.allow_publish", &config.allow_publish)?,
            deny_play: cidrs("auth.deny_play", &config.deny_play)?,
        })
    }

    fn secrets(&self, app: &str) -> Secrets {
        let own = self.apps.get(app).cloned().unwrap_or_default();
        Secrets {
            publish: own.publish.or_else(|| self.default.publish.clone()),
            play: own.play.or_else(|| self.default.play.clone()),
        }
    }

    /// May `addr` publish `app/stream` with `query` at `now` (Unix seconds)?
    pub fn check_publish(
        &self,
        addr: IpAddr,
        app: &str,
        stream: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<(), Refusal> {
        if !self.allow_publish.is_empty() && !self.allow_publish.iter().any(|c| c.contains(addr)) {
            return Err(Refusal::Address);
        }
        signed(self.secrets(app).publish, app, stream, query, now)
    }

    /// May `addr` play `app/stream` with `query` at `now` (Unix seconds)?
    pub fn check_play(
        &self,
        addr: IpAddr,
        app: &str,
        stream: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<(), Refusal> {
        if self.deny_play.iter().any(|c| c.contains(addr)) {
            return Err(Refusal::Address);
        }
        signed(self.secrets(app).play, app, stream, query, now)
    }
}

/// With a secret, the URL's signature must hold; without one, anything goes.
fn signed(
    secret: Option<String>,
    app: &str,
    stream: &str,
    query: Option<&str>,
    now: u64,
) -> Result<(), Refusal> {
    match secret {
        Some(secret) => sign::verify(&secret, app, stream, query, now).map_err(Refusal::Signature),
        None => Ok(()),
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppAuth, AuthConfig};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn secrets_per_app_override_the_defaults_and_rules_come_first() {
        let mut c = AuthConfig {
            publish_secret: Some("pub".into()),
            allow_publish: vec!["10.0.0.0/8".into()],
            deny_play: vec!["192.0.2.0/24".into()],
            ..AuthConfig::default()
        };
        c.app.insert(
            "vip".into(),
            AppAuth {
                publish_secret: None,
                play_secret: Some("watch".into()),
            },
        );
        let p = Policy::new(&c).expect("policy");
        let signed = format!("sign={}", sign::sign("pub", "live", "a", 100));
        assert_eq!(
            p.check_publish(ip("10.1.1.1"), "live", "a", Some(&signed), 50),
            Ok(())
        );
        assert_eq!(
            p.check_publish(ip("127.0.0.1"), "live", "a", Some(&signed), 50),
            Err(Refusal::Address)
        );
        assert_eq!(
            p.check_publish(ip("10.1.1.1"), "live", "a", None, 50),
            Err(Refusal::Signature(SignError::Missing))
        );
        // vip inherits the publish secret and has its own play secret.
        assert!(p.check_play(ip("10.1.1.1"), "vip", "a", None, 50).is_err());
        let watch = format!("sign={}", sign::sign("watch", "vip", "a", 100));
        assert_eq!(
            p.check_play(ip("10.1.1.1"), "vip", "a", Some(&watch), 50),
            Ok(())
        );
        // Plays elsewhere need nothing, but the denied network is denied.
        assert_eq!(p.check_play(ip("10.1.1.1"), "live", "a", None, 50), Ok(()));
        assert_eq!(
            p.check_play(ip("192.0.2.7"), "live", "a", None, 50),
            Err(Refusal::Address)
        );
        let bad = AuthConfig {
            deny_play: vec!["nope".into()],
            ..AuthConfig::default()
        };
        assert_eq!(Policy::new(&bad).map_err(|e| e.key), Err("auth.deny_play"));
    }
}
