//! Edge pull: the first player of a stream nobody publishes here makes the stream's puller
//! core ([`crate::hub::Hub::puller`]) pull it from an origin, once for the whole node. The
//! pull publishes it into that core's hub like any publisher; players on every core share
//! it through the hub and its GOP cache.
//!
//! Origins are tried in order: the registry's answer, the locator's, then `origins` in
//! `balance` order. One that refuses, fails to connect or sends no media within
//! `connect_timeout` is skipped; when none has the stream at the first try, its waiting
//! players hear "not found" at once. A pull that breaks mid-stream reconnects (to the same
//! origin or the next) while its players wait, with backoff; it ends `idle_linger` after
//! its last player left.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::session::RelayConn;
use super::{RtmpUrl, VIA_PROPERTY, Via};
use crate::config::{Balance, RelayConfig};
use crate::hub::{Frame, Outbox, PublishError, RelayStatus, split_key, stream_key};
use crate::rtmp::amf0::Value;
use crate::rtmp::session::client::{ClientConfig, Event, Intent};
use crate::server::Core;

/// How often a pull checks for its audience and the origin's silence.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Why a pull's connection ended.
enum Stop {
    /// Nobody watched for `idle_linger`.
    Idle,
    /// The hub closed it (an operator's `DELETE`, or a publisher took the name over).
    Kicked,
    /// The origin went away or broke.
    Broken(String),
}

/// The stream's pull request: pulls `key` until nobody watches it. `via` is the relay chain
/// of the player that asked.
pub(crate) async fn run(core: Rc<Core>, key: String, via: String) {
    let status = RelayStatus::new("pull");
    core.hub.borrow_mut().add_relay(&key, status.clone());
    pull(&core, &key, &via, &status).await;
    core.hub.borrow_mut().remove_relay(&key, &status);
    core.pulls.borrow_mut().remove(&key);
}

async fn pull(core: &Rc<Core>, key: &str, via: &str, status: &Rc<RelayStatus>) {
    let (app, stream) = split_key(key);
    let relay = core.config().relay.clone();
    let node = relay.node_id.clone().unwrap_or_default();
    let chain = Via::parse(via).through(&node);
    // The pull's kick handle: the hub closes it to end the publish (DELETE, takeover).
    let kick = Outbox::new(64 * 1024, Duration::from_secs(3600), false);
    kick.set_tag("relay_pull", String::new());
    let mut published: Option<u64> = None;
    let (min, max) = relay.reconnect_backoff;
    let mut backoff = min;
    let mut idle_since: Option<Instant> = None;
    let mut attempt = 0u64;
    // The origin whose connection broke last is tried last: it is probably gone.
    let mut broken: Option<String> = None;
    loop {
        if kick.is_closed() {
            return finish(core, key, published, "closed by the hub");
        }
        let mut connected = false;
        let mut order = candidates(core, &relay, &app, &stream).await;
        if let Some(b) = &broken {
            if let Some(i) = order.iter().position(|u| &u.authority == b) {
                let u = order.remove(i);
                order.push(u);
            }
        }
        for url in order {
            attempt += 1;
            let (app_there, stream_there) = (
                url.app.clone().unwrap_or_else(|| app.clone()),
                url.stream.clone().unwrap_or_else(|| stream.clone()),
            );
            let mut cfg = ClientConfig::new(
                &app_there,
                &url.tc_url(&app_there),
                Intent::Play(stream_there),
            );
            cfg.flash_ver = "LNX 9,0,124,2 (ringcast relay)".into();
            cfg.buffer_ms = 100;
            cfg.connect_extra = vec![(VIA_PROPERTY.into(), Value::from(chain.as_str()))];
            let seed = crate::relay::stable_hash(&[key, &attempt.to_string()]);
            let opened = RelayConn::open(core.io, &url, cfg, relay.connect_timeout, seed).await;
            let (conn, first) = match opened {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(stream = %key, "pull: {e}");
                    continue;
                }
            };
            connected = true;
            backoff = min;
            idle_since = None;
            let now = Instant::now();
            let id = match published {
                Some(id) => {
                    core.hub.borrow_mut().relay_resume(key, id);
                    id
                }
                None => match core.hub.borrow_mut().publish(key, kick.clone(), now) {
                    Ok(id) => id,
                    Err(PublishError::InUse) => {
                        tracing::info!(stream = %key, "pull not needed: the stream is published here");
                        conn.stop();
                        return;
                    }
                },
            };
            published = Some(id);
            core.hub
                .borrow_mut()
                .set_upstream(key, id, Some(url.to_string()));
            core.metrics.relay_state(true, 1.0);
            kick.set_tag("relay_pull", url.to_string());
            status.up(&url.to_string());
            tracing::info!(stream = %key, origin = %url, "pulling");
            let stop = stream_from(core, key, id, conn, first, &kick, status).await;
            core.metrics.relay_state(true, -1.0);
            match stop {
                Stop::Idle => return finish(core, key, published, "no players"),
                Stop::Kicked => return finish(core, key, published, "closed by the hub"),
                Stop::Broken(why) => {
                    tracing::warn!(stream = %key, origin = %url, "pull broke: {why}; reconnecting");
                    broken = Some(url.authority.clone());
                    core.metrics.relay_reconnect(true);
                    status.broke();
                    core.hub.borrow_mut().relay_break(key, id);
                }
            }
            break;
        }
        let Some(id) = published else {
            if !connected {
                tracing::info!(stream = %key, "pull: no origin has it");
                core.hub.borrow_mut().not_found(key);
                return;
            }
            continue;
        };
        // Players wait for the stream to come back (`republish_wait`); the pull keeps
        // trying while any does, and lingers after the last one left.
        let now = Instant::now();
        if core.hub.borrow().audience(key) == 0 {
            let since = *idle_since.get_or_insert(now);
            if now.duration_since(since) >= relay.idle_linger {
                return finish(core, key, Some(id), "no players");
            }
        } else {
            idle_since = None;
        }
        let wait = if connected { min } else { backoff };
        if !connected {
            backoff = (backoff * 2).min(max);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Ends the pull's publish, if it published.
fn finish(core: &Core, key: &str, published: Option<u64>, why: &str) {
    if let Some(id) = published {
        tracing::info!(stream = %key, "pull ended: {why}");
        core.hub.borrow_mut().unpublish(key, id);
    }
}

/// Where to look for `app/stream`, in order, without repeats.
async fn candidates(core: &Core, relay: &RelayConfig, app: &str, stream: &str) -> Vec<RtmpUrl> {
    let mut out: Vec<RtmpUrl> = Vec::new();
    let add = |u: RtmpUrl, out: &mut Vec<RtmpUrl>| {
        if !out.iter().any(|o| o.authority == u.authority) {
            out.push(u);
        }
    };
    if let Some(text) = &relay.registry {
        if let Ok(registry) = super::registry::Registry::parse(text) {
            let k = super::registry::Registry::key(app, stream);
            match registry.get(core.io, &k, relay.connect_timeout).await {
                Ok(Some(url)) => match RtmpUrl::parse(&url) {
                    Ok(u) => add(u, &mut out),
                    Err(e) => tracing::warn!(key = %k, "registry: {url:?}: {e}"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!("registry {}: {e}; trying the others", registry.url()),
            }
        }
    }
    if let Some(text) = &relay.locator {
        if let Ok(locator) = super::locator::Locator::parse(text) {
            match locator
                .locate(core.io, app, stream, relay.connect_timeout)
                .await
            {
                Ok(Some(url)) => match RtmpUrl::parse(&url) {
                    Ok(u) => add(u, &mut out),
                    Err(e) => tracing::warn!("locator: {url:?}: {e}"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!("locator {}: {e}; trying the origins", locator.url()),
            }
        }
    }
    let key = stream_key(app, stream);
    let ordered: Vec<&String> = match relay.balance {
        Balance::Hash => super::rendezvous(&relay.origins, &key),
        Balance::Ordered => relay.origins.iter().collect(),
    };
    for o in ordered {
        if let Ok(u) = RtmpUrl::parse(o) {
            add(u, &mut out);
        }
    }
    out
}

/// Publishes what the origin sends into the hub until the connection ends; says why.
async fn stream_from(
    core: &Rc<Core>,
    key: &str,
    id: u64,
    mut conn: RelayConn,
    first: Vec<Event>,
    kick: &Rc<Outbox>,
    status: &RelayStatus,
) -> Stop {
    let chunk = core.config().chunk_size;
    let last_media = Rc::new(Cell::new(Instant::now()));
    publish_events(core, key, id, first, chunk);
    // The watchdog: it ends the connection (shutting the socket ends the read) when the
    // pull has no audience for `idle_linger`, the hub kicked it, or the origin fell silent.
    let verdict: Rc<Cell<Option<Stop>>> = Rc::new(Cell::new(None));
    let watchdog = {
        let (core, key, kick) = (core.clone(), key.to_owned(), kick.clone());
        let (verdict, last_media) = (verdict.clone(), last_media.clone());
        let stream = conn.stream.clone();
        let linger = core.config().relay.idle_linger;
        let silence = core.config().relay.media_timeout;
        crate::runtime::spawn(async move {
            let mut idle_since: Option<Instant> = None;
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let now = Instant::now();
                let stop = if kick.is_closed() {
                    Some(Stop::Kicked)
                } else if now.duration_since(last_media.get()) >= silence {
                    Some(Stop::Broken(format!("no media for {silence:?}")))
                } else if core.hub.borrow().audience(&key) == 0 {
                    let since = *idle_since.get_or_insert(now);
                    (now.duration_since(since) >= linger).then_some(Stop::Idle)
                } else {
                    idle_since = None;
                    None
                };
                if let Some(stop) = stop {
                    verdict.set(Some(stop));
                    stream.shutdown_both();
                    return;
                }
            }
        })
    };
    let mut counted = conn.client.borrow().byte_counts().0;
    let stop = loop {
        match conn.read_events().await {
            Ok(events) => {
                let read = conn.client.borrow().byte_counts().0;
                let n = read.saturating_sub(counted);
                counted = read;
                status.add_bytes(n);
                core.metrics.relay_bytes(true, n as usize);
                if events
                    .iter()
                    .any(|e| matches!(e, Event::Media(_) | Event::Metadata { .. }))
                {
                    last_media.set(Instant::now());
                }
                publish_events(core, key, id, events, chunk);
                if let Err(e) = conn.flush().await {
                    break Stop::Broken(e.to_string());
                }
            }
            Err(e) => break verdict.take().unwrap_or(Stop::Broken(e.to_string())),
        }
    };
    watchdog.abort();
    conn.stop();
    stop
}

/// Hands the origin's media and metadata to the hub as the stream's publisher.
fn publish_events(core: &Core, key: &str, id: u64, events: Vec<Event>, chunk: u32) {
    if events.is_empty() {
        return;
    }
    let now = Instant::now();
    let mut hub = core.hub.borrow_mut();
    for ev in events {
        let frame = match ev {
            Event::Metadata { timestamp, body } => Frame::metadata(timestamp, body, chunk),
            Event::Media(m) => {
                core.metrics.frame(match m.kind {
                    crate::rtmp::session::MediaKind::Audio => 0,
                    crate::rtmp::session::MediaKind::Video => 1,
                    crate::rtmp::session::MediaKind::Data => 2,
                });
                Frame::media(m.kind, m.timestamp, m.payload, chunk)
            }
            _ => continue,
        };
        hub.push(key, id, frame, now);
    }
    hub.flush();
}
