//! Push: every stream published here (by an encoder or another node's push) is forwarded
//! to its upstream(s) (`push`, `push_mode`). A push is a player of the hub on the
//! publisher's core with a bounded queue of its own: when it falls behind it drops to the
//! next keyframe, and when it stays behind (or the upstream goes) it reconnects with
//! backoff. It never slows or disconnects the local publisher or the local players.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::session::RelayConn;
use super::{RtmpUrl, VIA_PROPERTY};
use crate::config::PushMode;
use crate::hub::{Item, Outbox, Player, PlayerEvent, RelayStatus, Waits, split_key};
use crate::rtmp::amf0::Value;
use crate::rtmp::session::client::{ClientConfig, Event, Intent};
use crate::server::Core;

/// The upstreams stream `key` is pushed to.
pub fn targets(push: &[String], mode: PushMode, key: &str) -> Vec<RtmpUrl> {
    let ordered: Vec<&String> = match mode {
        PushMode::Hash => super::rendezvous(push, key).into_iter().take(1).collect(),
        PushMode::All => push.iter().collect(),
    };
    ordered
        .into_iter()
        .filter_map(|u| RtmpUrl::parse(u).ok())
        .collect()
}

/// How often a push pings its upstream.
const PING_EVERY: Duration = Duration::from_millis(500);

/// A push's pings to its upstream. An upstream that never answers one (not every server
/// does) is judged by its writes alone; one that answered and then stops answering for
/// `media_timeout` is gone.
#[derive(Debug, Default)]
struct Pings {
    /// When the last ping went.
    sent: std::cell::Cell<Option<Instant>>,
    /// Since when a ping has waited for its answer.
    waiting_since: std::cell::Cell<Option<Instant>>,
    /// The upstream has answered a ping.
    answers: std::cell::Cell<bool>,
}

impl Pings {
    /// Whether a ping is due at `now` (it is then counted as sent).
    fn due(&self, now: Instant) -> bool {
        if self
            .sent
            .get()
            .is_some_and(|t| now.duration_since(t) < PING_EVERY)
        {
            return false;
        }
        self.sent.set(Some(now));
        if self.waiting_since.get().is_none() {
            self.waiting_since.set(Some(now));
        }
        true
    }

    /// A ping was answered.
    fn answered(&self) {
        self.answers.set(true);
        self.waiting_since.set(None);
    }

    /// Whether an upstream that answers pings has left one unanswered for `limit`.
    fn dead(&self, now: Instant, limit: Duration) -> bool {
        self.answers.get()
            && self
                .waiting_since
                .get()
                .is_some_and(|t| now.duration_since(t) >= limit)
    }
}

/// How a push connection ended.
enum End {
    /// The local publisher left (or the server shuts down): the push is over.
    Over,
    /// The upstream went away or the push fell behind: reconnect.
    Broken(String),
}

/// Pushes `key`, published here by publisher `publisher`, to `target` until the publisher
/// leaves. `chain` is the relay chain to send (the publisher's, with this node).
pub(crate) async fn run(
    core: Rc<Core>,
    key: String,
    publisher: u64,
    target: RtmpUrl,
    chain: String,
) {
    let status = RelayStatus::new("push");
    core.hub.borrow_mut().add_relay(&key, status.clone());
    push(&core, &key, publisher, &target, &chain, &status).await;
    core.hub.borrow_mut().remove_relay(&key, &status);
}

async fn push(
    core: &Rc<Core>,
    key: &str,
    publisher: u64,
    target: &RtmpUrl,
    chain: &str,
    status: &RelayStatus,
) {
    let (app, stream) = split_key(key);
    let relay = core.config().relay.clone();
    let (min, max) = relay.reconnect_backoff;
    let mut backoff = min;
    let mut failures = 0u32;
    let mut attempt = 0u64;
    loop {
        if !core.hub.borrow().publishes(key, publisher) || core.shutting_down.get() {
            return;
        }
        attempt += 1;
        let app_there = target.app.clone().unwrap_or_else(|| app.clone());
        let stream_there = target.stream.clone().unwrap_or_else(|| stream.clone());
        let mut cfg = ClientConfig::new(
            &app_there,
            &target.tc_url(&app_there),
            Intent::Publish(stream_there),
        );
        cfg.chunk_size = core.config().chunk_size;
        cfg.connect_extra = vec![(VIA_PROPERTY.into(), Value::from(chain))];
        let seed = super::stable_hash(&[key, "push", &attempt.to_string()]);
        match RelayConn::open(core.io, target, cfg, relay.connect_timeout, seed).await {
            Ok((conn, _)) => {
                if failures > 0 {
                    core.metrics.relay_reconnect(false);
                }
                backoff = min;
                tracing::info!(stream = %key, upstream = %target, "pushing");
                core.metrics.relay_state(false, 1.0);
                status.up(&target.to_string());
                let end = forward(core, key, conn, target, status).await;
                core.metrics.relay_state(false, -1.0);
                match end {
                    End::Over => return,
                    End::Broken(why) => {
                        tracing::warn!(stream = %key, upstream = %target, "push broke: {why}; reconnecting");
                        status.broke();
                        failures = 1;
                        tokio::time::sleep(min).await;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                // Say it once, then only now and then while the upstream stays away.
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(stream = %key, upstream = %target, failures, "push: {e}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

/// Forwards the stream over `conn` until the publisher leaves or the connection breaks.
async fn forward(
    core: &Rc<Core>,
    key: &str,
    mut conn: RelayConn,
    target: &RtmpUrl,
    status: &RelayStatus,
) -> End {
    let cfg = core.config();
    let outbox = Outbox::new(cfg.player_queue_bytes, cfg.slow_player_timeout, false);
    outbox.set_tag("relay_push", target.to_string());
    let waits = Waits {
        play: Duration::from_secs(1),
        republish: Duration::ZERO,
    };
    let mut player = Player::join(
        &mut core.hub.borrow_mut(),
        key.to_owned(),
        outbox.clone(),
        false,
        waits,
        Instant::now(),
    );
    // The upstream's input (acknowledgements, pings, status) is read beside the writes;
    // its end closes the queue, which ends the writer. A cut link sends no FIN and the
    // socket takes our bytes for a while: pings tell sooner.
    let pinged = Rc::new(Pings::default());
    let reader = {
        let outbox = outbox.clone();
        let stream = conn.stream.clone();
        let client = conn.client.clone();
        let inbuf = std::mem::take(&mut conn.inbuf);
        let url = conn.url.clone();
        let pinged = pinged.clone();
        crate::runtime::spawn(async move {
            let mut reading = RelayConn::reading(url, stream, client, inbuf);
            while let Ok(events) = reading.read_events().await {
                if events.iter().any(|e| matches!(e, Event::Pong { .. })) {
                    pinged.answered();
                }
            }
            outbox.close();
        })
    };
    let stream_id = conn.client.borrow().stream_id();
    let chunk = cfg.chunk_size;
    let silence = core.config().relay.media_timeout;
    let end = loop {
        outbox.ready_until(None).await;
        let now = Instant::now();
        if pinged.dead(now, silence) {
            break End::Broken(format!(
                "the upstream stopped answering pings (none for {silence:?})"
            ));
        }
        let items = outbox.take();
        let mut bufs: Vec<Bytes> = Vec::with_capacity(items.len() + 1);
        {
            let mut c = conn.client.borrow_mut();
            if pinged.due(now) {
                c.ping(conn.now_ms());
            }
            if c.has_output() {
                bufs.push(c.take_output().freeze());
            }
        }
        let mut over = false;
        for item in items {
            match item {
                Item::Frame(f) => bufs.push(f.rtmp_for(stream_id, chunk)),
                Item::Control(b) => bufs.push(b),
                Item::Event(e) => {
                    player.on_event(e, Instant::now());
                    if matches!(e, PlayerEvent::Unpublished | PlayerEvent::Shutdown) {
                        over = true;
                    }
                }
            }
        }
        if over {
            // Tell the upstream the publish is over (FCUnpublish, deleteStream).
            let mut c = conn.client.borrow_mut();
            c.stop();
            bufs.push(c.take_output().freeze());
        }
        let n: usize = bufs.iter().map(Bytes::len).sum();
        if n > 0 {
            match tokio::time::timeout(cfg.slow_player_timeout, conn.stream.writev_all(bufs)).await
            {
                Ok(Ok(())) => {
                    core.metrics.relay_bytes(false, n);
                    status.add_bytes(n as u64);
                }
                Ok(Err(e)) => break End::Broken(format!("write: {e}")),
                Err(_) => break End::Broken("write stalled".into()),
            }
        }
        outbox.drained();
        if over {
            break End::Over;
        }
        if outbox.is_closed() {
            break End::Broken(if outbox.dropped() > 0 {
                "fell behind".into()
            } else {
                "the upstream closed the connection".into()
            });
        }
    };
    player.leave(&mut core.hub.borrow_mut());
    outbox.close();
    conn.stop();
    reader.abort();
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_is_gone_only_once_it_answered_and_then_stopped() {
        let p = Pings::default();
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        assert!(p.due(t0));
        assert!(!p.due(s(100)), "not twice within PING_EVERY");
        // Never answered: judged by its writes alone.
        assert!(!p.dead(s(60_000), Duration::from_secs(1)));
        p.answered();
        assert!(p.due(s(600)));
        assert!(!p.dead(s(1_500), Duration::from_secs(1)));
        assert!(p.due(s(1_200)));
        // The ping of 600 ms is still unanswered a second later.
        assert!(p.dead(s(1_600), Duration::from_secs(1)));
        p.answered();
        assert!(!p.dead(s(5_000), Duration::from_secs(1)));
    }

    #[test]
    fn hash_pushes_to_one_upstream_and_all_to_every_one() {
        let push: Vec<String> = ["rtmp://a:1935", "rtmp://b:1935", "rtmp://c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let one = targets(&push, PushMode::Hash, "live/x");
        assert_eq!(one.len(), 1);
        assert_eq!(one, targets(&push, PushMode::Hash, "live/x"), "stable");
        let all = targets(&push, PushMode::All, "live/x");
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].authority, "c:1935");
    }
}
