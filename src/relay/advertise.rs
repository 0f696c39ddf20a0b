//! An origin's entries in the stream registry: while a stream is published here,
//! `ringcast:stream:APP/STREAM` names this node (`advertise`), refreshed every third of
//! `registry_ttl`; the entry goes when the publisher does. Redis being down is logged and
//! costs nothing else: the stream flows on, and edges fall back to `origins`.

use std::rc::Rc;

use super::registry::Registry;
use crate::hub::split_key;
use crate::server::Core;

/// The `rtmp://HOST:PORT` this node advertises: `advertise`, or (set at start) the
/// address its RTMP listener bound.
pub(crate) fn advertised(core: &Core) -> String {
    match &core.config().relay.advertise {
        Some(a) => a.clone(),
        None => format!("rtmp://{}", core.config().rtmp),
    }
}

/// Keeps `key` (published here by publisher `id`) in the registry until it is unpublished.
pub(crate) async fn run(core: Rc<Core>, key: String, id: u64) {
    let relay = &core.config().relay;
    let Some(registry) = relay
        .registry
        .as_deref()
        .and_then(|r| Registry::parse(r).ok())
    else {
        return;
    };
    let (app, stream) = split_key(&key);
    let entry = Registry::key(&app, &stream);
    let value = advertised(&core);
    let ttl = relay.registry_ttl;
    let refresh = ttl / 3;
    let timeout = relay.connect_timeout;
    let mut failing = false;
    // The publisher's presence is checked often, so the entry goes soon after it does.
    let check = refresh.min(std::time::Duration::from_millis(500));
    let mut next = std::time::Instant::now();
    loop {
        if !core.hub.borrow().publishes(&key, id) {
            break;
        }
        if std::time::Instant::now() >= next {
            match registry.set(core.io, &entry, &value, ttl, timeout).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(registry = %registry.url(), stream = %key, "registry reachable again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(registry = %registry.url(), stream = %key, "registry: {e}");
                    }
                    failing = true;
                }
            }
            next = std::time::Instant::now() + refresh;
        }
        tokio::time::sleep(check).await;
    }
    // A new publisher of the name (on any core) keeps the entry: its own task refreshes it.
    if core.hub.borrow().is_live(&key) {
        return;
    }
    if let Err(e) = registry.del(core.io, &entry, timeout).await {
        tracing::warn!(registry = %registry.url(), stream = %key, "registry: {e}");
    }
}
