//! The server: one pinned thread per core, each with its own runtime, listeners (bound to
//! the same ports with SO_REUSEPORT), hub and connections. Cores share nothing mutable and
//! talk only through bounded [`CoreMsg`] channels.

mod admission;
mod hooks;
mod http;
mod http_flv;
mod log;
mod page;
mod rtmp;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{Config, IoMode, PublishConflict};
use crate::hub::{CoreMsg, Hub, HubConfig, Outbox};
use crate::runtime::{self, Io, Listener};

/// Inbox capacity of a core, in messages (frames travel batched, one message per read).
const INBOX: usize = 8192;

/// What every task on a core shares.
pub(crate) struct Core {
    pub(crate) index: usize,
    /// The configuration new connections take ([`Core::config`]); a reload replaces it.
    config: RefCell<Rc<Config>>,
    pub(crate) hub: RefCell<Hub>,
    pub(crate) connections: Cell<usize>,
    pub(crate) next_conn: Cell<u64>,
    pub(crate) started: Instant,
    pub(crate) shutting_down: Cell<bool>,
    /// Every connection's outbox, to close idle connections at shutdown.
    pub(crate) outboxes: RefCell<Vec<Weak<Outbox>>>,
    /// The budget of per-connection log lines.
    pub(crate) log_gate: log::LogGate,
    /// Connections open on this core, RTMP and HTTP (each holds an [`admission::Slot`]).
    pub(crate) open: Cell<usize>,
    /// Connections open per source address, when `max_connections_per_ip` is set.
    pub(crate) per_ip: RefCell<std::collections::HashMap<std::net::IpAddr, u32>>,
    /// A descriptor kept in reserve to shed connections when descriptors run out.
    pub(crate) reserve: RefCell<Option<std::fs::File>>,
    /// Connections shed for want of descriptors.
    pub(crate) shed: Cell<u64>,
    /// This core's metric handles.
    pub(crate) metrics: crate::metrics::CoreMetrics,
    /// The IO backend (relays open their own connections).
    pub(crate) io: Io,
    /// Streams this core pulls for the node (one pull task each).
    pub(crate) pulls: RefCell<std::collections::HashSet<String>>,
    /// Who may publish and play (`[auth]`); a reload replaces it.
    auth: RefCell<Rc<crate::auth::Policy>>,
    /// Auth callbacks this core has in flight.
    pub(crate) hooks_in_flight: Cell<usize>,
}

impl Core {
    /// The configuration as of now: a connection takes it once, at its start, so a reload
    /// (SIGHUP) applies to new connections.
    pub(crate) fn config(&self) -> Rc<Config> {
        self.config.borrow().clone()
    }

    /// The `[auth]` rules as of now.
    pub(crate) fn auth(&self) -> Rc<crate::auth::Policy> {
        self.auth.borrow().clone()
    }

    /// Takes a reloaded configuration for new connections (the caller kept the keys that
    /// cannot change live as they were).
    fn reload(&self, config: &Config) {
        match crate::auth::Policy::new(&config.auth) {
            Ok(p) => *self.auth.borrow_mut() = Rc::new(p),
            Err(e) => tracing::warn!(core = self.index, "reload: {e}; auth unchanged"),
        }
        *self.config.borrow_mut() = Rc::new(config.clone());
    }

    /// Records a connection's outbox (pruning those of closed connections now and then).
    pub(crate) fn register(&self, outbox: &Rc<Outbox>) {
        let mut v = self.outboxes.borrow_mut();
        if v.len() >= 2 * self.connections.get() + 64 {
            v.retain(|w| w.strong_count() > 0);
        }
        v.push(Rc::downgrade(outbox));
    }
}

/// A running server: its bound addresses and its core threads.
pub struct Running {
    /// The RTMP address actually bound (port 0 resolved).
    pub rtmp_addr: SocketAddr,
    /// The HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// The IO backend in use.
    pub io: Io,
    inboxes: Vec<mpsc::Sender<CoreMsg>>,
    threads: Vec<JoinHandle<()>>,
    config: Config,
}

/// The keys a reload cannot change (they are set at start: listeners, threads, the hub's
/// caches, the coalescing wheel, the metrics recorder, edge pulls).
pub const FIXED_KEYS: &[&str] = &[
    "rtmp",
    "http",
    "cores",
    "io",
    "gop_cache",
    "gop_cache_max_bytes",
    "gop_cache_max_duration",
    "publish_conflict",
    "write_coalesce",
    "metrics",
    "relay.pull",
    "relay.node_id",
];

/// `new` with the keys of [`FIXED_KEYS`] put back as they are in `old`; the names of those
/// that differed.
pub fn keep_fixed(old: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($name:literal, $($f:ident).+) => {
            if new.$($f).+ != old.$($f).+ {
                changed.push($name);
                new.$($f).+ = old.$($f).+.clone();
            }
        };
    }
    keep!("rtmp", rtmp);
    keep!("http", http);
    keep!("cores", cores);
    keep!("io", io);
    keep!("gop_cache", gop_cache);
    keep!("gop_cache_max_bytes", gop_cache_max_bytes);
    keep!("gop_cache_max_duration", gop_cache_max_duration);
    keep!("publish_conflict", publish_conflict);
    keep!("write_coalesce", write_coalesce);
    keep!("metrics", metrics);
    keep!("relay.pull", relay.pull);
    if new.relay.node_id.is_some() && new.relay.node_id != old.relay.node_id {
        changed.push("relay.node_id");
    }
    new.relay.node_id = old.relay.node_id.clone();
    if new.relay.advertise.is_none() {
        new.relay.advertise = old.relay.advertise.clone();
    }
    (new, changed)
}

impl Running {
    /// Hands every core a reloaded configuration: new connections follow it. Keys of
    /// [`FIXED_KEYS`] keep their running values (see [`keep_fixed`]); their names are
    /// returned when the new file changed them.
    pub fn reload(&mut self, config: Config) -> Vec<&'static str> {
        let (config, fixed) = keep_fixed(&self.config, config);
        let shared = std::sync::Arc::new(config.clone());
        for tx in &self.inboxes {
            let _ = tx.blocking_send(CoreMsg::Reload(shared.clone()));
        }
        self.config = config;
        fixed
    }

    /// The configuration running now (node id and advertised address filled in).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops accepting, tells players their stream ended, flushes, and waits for every core
    /// to finish (at most the configured `shutdown_grace` plus a second).
    pub fn shutdown(self) {
        for tx in &self.inboxes {
            // Waits for room: a full inbox must not lose the Shutdown (the process would
            // never exit). Cores drain their inboxes all the time.
            let _ = tx.blocking_send(CoreMsg::Shutdown);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Resolves the IO mode: `auto` falls back to epoll, with a warning, where io_uring is
/// refused (disabled by sysctl, or blocked by seccomp as in many container platforms).
pub fn resolve_io(mode: IoMode) -> anyhow::Result<Io> {
    match mode {
        IoMode::Uring => Ok(Io::Uring),
        IoMode::Epoll => Ok(Io::Epoll),
        IoMode::Auto => {
            let io = Io::detect("auto")?;
            if io == Io::Epoll {
                tracing::warn!("io_uring is not available here; running on epoll");
            }
            Ok(io)
        }
    }
}

/// How long one turn of a core's coalescing wheel takes (each player writes once a turn):
/// `write_coalesce`, stretched when the core's players would otherwise need more than
/// `max_write_rate` writes a second.
fn coalesce_turn(write_coalesce: Duration, max_write_rate: u32, players: usize) -> Duration {
    if max_write_rate == 0 {
        return write_coalesce;
    }
    let needed = Duration::from_secs_f64(players as f64 / f64::from(max_write_rate));
    write_coalesce.max(needed).min(Duration::from_secs(1))
}

/// How many phases the coalescing period is cut into: about one slot per 4 ms (at most 64),
/// so each tick wakes a small share of a core's players instead of all of them at once.
fn coalesce_slots(period: Duration) -> usize {
    (period.as_millis() / 4).clamp(1, 64) as usize
}

/// A node id for relay chains when the config names none: random enough that two nodes of
/// one deployment never share it.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("rc-{:012x}", h.finish() & 0xFFFF_FFFF_FFFF)
}

/// Binds the listeners and starts the core threads.
pub fn start(config: &Config) -> anyhow::Result<Running> {
    config.validate()?;
    let mut config = config.clone();
    let node = config
        .relay
        .node_id
        .get_or_insert_with(random_node_id)
        .clone();
    let io = resolve_io(config.io)?;
    let cores = config.effective_cores();
    let rtmp = runtime::reuseport_listeners(config.rtmp, cores)
        .with_context(|| format!("binding RTMP on {}", config.rtmp))?;
    let http = runtime::reuseport_listeners(config.http, cores)
        .with_context(|| format!("binding HTTP on {}", config.http))?;
    let rtmp_addr = rtmp[0].local_addr()?;
    let http_addr = http[0].local_addr()?;
    // The registry names this node by the address it really listens on (port 0 resolved).
    if config.relay.advertise.is_none() {
        if config.relay.registry.is_some() && rtmp_addr.ip().is_unspecified() {
            tracing::warn!(
                rtmp = %rtmp_addr,
                "relay.registry is set but relay.advertise is not: other nodes are told rtmp://{rtmp_addr}, which they cannot reach; set relay.advertise"
            );
        }
        config.relay.advertise = Some(format!("rtmp://{rtmp_addr}"));
    }
    let config = &config;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..cores).map(|_| mpsc::channel(INBOX)).unzip();
    let hub_config = HubConfig {
        gop_cache: config.gop_cache,
        gop_cache_max_bytes: config.gop_cache_max_bytes,
        gop_cache_max_ms: config
            .gop_cache_max_duration
            .as_millis()
            .min(u128::from(u32::MAX)) as u32,
        takeover: config.publish_conflict == PublishConflict::Takeover,
        coalesce_slots: coalesce_slots(config.write_coalesce),
        pull: config.relay.pull,
    };
    let mut threads = Vec::with_capacity(cores);
    // Cores still draining at shutdown (see `core_main`).
    let all_draining = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(cores));
    for (index, ((rx, rtmp), http)) in rxs.into_iter().zip(rtmp).zip(http).enumerate() {
        let config = config.clone();
        let hub_config = hub_config.clone();
        let peers = txs.clone();
        let policy = crate::auth::Policy::new(&config.auth)?;
        let draining = all_draining.clone();
        let entries = (config.max_connections_per_core.min(8192) as u32 * 2)
            .next_power_of_two()
            .clamp(256, 16_384);
        threads.push(
            std::thread::Builder::new()
                .name(format!("core-{index}"))
                .spawn(move || {
                    if cores > 1 {
                        runtime::pin_to_core(index);
                    }
                    let metrics = crate::metrics::CoreMetrics::new(index, config.metrics);
                    let core = Rc::new(Core {
                        index,
                        hub: RefCell::new(Hub::new(index, hub_config, peers)),
                        config: RefCell::new(Rc::new(config)),
                        connections: Cell::new(0),
                        next_conn: Cell::new(0),
                        started: Instant::now(),
                        shutting_down: Cell::new(false),
                        outboxes: RefCell::new(Vec::new()),
                        log_gate: log::LogGate::new(log::CONN_LINES_PER_SEC),
                        open: Cell::new(0),
                        per_ip: RefCell::new(std::collections::HashMap::new()),
                        reserve: RefCell::new(admission::reserve_fd()),
                        shed: Cell::new(0),
                        metrics,
                        io,
                        pulls: RefCell::new(std::collections::HashSet::new()),
                        auth: RefCell::new(Rc::new(policy)),
                        hooks_in_flight: Cell::new(0),
                    });
                    let r = runtime::block_on(
                        io,
                        entries,
                        core_main(core, io, (rtmp, http), rx, draining),
                    );
                    if let Err(e) = r {
                        tracing::error!(core = index, "core stopped: {e:#}");
                    }
                })?,
        );
    }
    tracing::info!(
        rtmp = %rtmp_addr,
        http = %http_addr,
        cores,
        io = io.name(),
        node = %node,
        "listening"
    );
    Ok(Running {
        rtmp_addr,
        http_addr,
        io,
        inboxes: txs,
        threads,
        config: config.clone(),
    })
}

async fn core_main(
    core: Rc<Core>,
    io: Io,
    (rtmp, http): (std::net::TcpListener, std::net::TcpListener),
    mut inbox: mpsc::Receiver<CoreMsg>,
    draining: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let rtmp_accept = match Listener::from_std(io, rtmp) {
        Ok(l) => runtime::spawn(accept_rtmp(core.clone(), l)),
        Err(e) => {
            tracing::error!(core = core.index, "RTMP listener: {e}");
            return;
        }
    };
    let http_accept = match Listener::from_std(io, http) {
        Ok(l) => Some(runtime::spawn(http::accept(core.clone(), l))),
        Err(e) => {
            tracing::error!(core = core.index, "HTTP listener: {e}");
            None
        }
    };
    let ticker = (!core.config().write_coalesce.is_zero()).then(|| {
        let core = core.clone();
        runtime::spawn(async move {
            let slots = coalesce_slots(core.config().write_coalesce) as u32;
            let mut next = Instant::now();
            loop {
                let turn = coalesce_turn(
                    core.config().write_coalesce,
                    core.config().max_write_rate,
                    core.connections.get(),
                );
                next = (next + turn / slots).max(Instant::now());
                tokio::time::sleep_until(next.into()).await;
                core.hub.borrow_mut().tick();
            }
        })
    });
    // Figures that are states rather than events, once a second: streams, GOP cache
    // bytes, cross-core drops, the core thread's CPU time. Core 0 also runs the exporter's
    // upkeep, which folds recorded histogram samples into their buckets (they would pile up
    // between scrapes otherwise).
    let stats = {
        let core = core.clone();
        runtime::spawn(async move {
            let mut tick = 0u64;
            loop {
                tick += 1;
                if core.index == 0 && core.config().metrics && tick % 5 == 0 {
                    crate::metrics::handle().run_upkeep();
                }
                let (streams, bytes) = core.hub.borrow().stats();
                let m = &core.metrics;
                m.streams.set(streams as f64);
                m.gop_cache_bytes.set(bytes as f64);
                m.cross_core_dropped
                    .absolute(core.hub.borrow().dropped_cross_core);
                m.busy.set(crate::metrics::thread_cpu_time().as_secs_f64());
                // The write watchdog: a write in flight for longer than the slow-player
                // timeout means the peer stopped reading; its writer gives up on it.
                let now = Instant::now();
                let limit = core.config().slow_player_timeout;
                // And the writers' far deadlines (pings, players' waits): woken once within
                // the horizon, they wait out the rest on their own timers.
                let horizon = now + crate::hub::SCAN_HORIZON;
                for o in core.outboxes.borrow().iter().filter_map(Weak::upgrade) {
                    o.stall_if_older(now, limit);
                    o.wake_if_due(horizon);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Messages to other cores that found their inbox full wait in the hub's backlog; this
    // task moves them on as room appears, so no control message is ever lost.
    let backlog = {
        let core = core.clone();
        let ready = core.hub.borrow().backlog_ready();
        runtime::spawn(async move {
            loop {
                ready.notified().await;
                loop {
                    let Some(tx) = core.hub.borrow().backlogged() else {
                        break;
                    };
                    // Wait for room without holding the hub; give the slot straight back
                    // and let the hub fill it (and any other) in order.
                    match tx.reserve().await {
                        Ok(permit) => drop(permit),
                        Err(_) => {
                            // That core has stopped: what waits for it is moot.
                            core.hub.borrow_mut().drain_backlog();
                            break;
                        }
                    }
                    core.hub.borrow_mut().drain_backlog();
                }
            }
        })
    };
    // Pull requests (an edge): one pull task per stream this core pulls for the node.
    let pulls = core.config().relay.pull.then(|| {
        let core = core.clone();
        let ready = core.hub.borrow().pull_ready();
        runtime::spawn(async move {
            loop {
                ready.notified().await;
                let requests = core.hub.borrow_mut().take_pull_requests();
                for (key, via) in requests {
                    if core.shutting_down.get() || !core.pulls.borrow_mut().insert(key.clone()) {
                        continue;
                    }
                    runtime::spawn(crate::relay::pull::run(core.clone(), key, via));
                }
            }
        })
    });
    while let Some(msg) = inbox.recv().await {
        if matches!(msg, CoreMsg::Shutdown) {
            break;
        }
        if let CoreMsg::Reload(config) = msg {
            core.reload(&config);
            continue;
        }
        let now = Instant::now();
        core.hub.borrow_mut().handle(msg, now);
    }
    // Shutdown: stop accepting, tell players, let connections flush and close.
    core.shutting_down.set(true);
    // RTMP stops accepting at once (its listener closes: new connects are refused); HTTP
    // goes on answering through the drain, `/healthz` with 503, so a load balancer sees
    // the node leave before its port closes.
    rtmp_accept.abort();
    core.hub.borrow_mut().shutdown();
    core.hub.borrow_mut().wake_all();
    // Connections that neither publish nor play have nothing to be told: close them.
    for o in core.outboxes.borrow().iter().filter_map(Weak::upgrade) {
        if !o.is_started() {
            o.close();
        }
    }
    let give_up = Instant::now() + core.config().shutdown_grace;
    while core.connections.get() > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // HTTP stays up until every core has drained: a core with nothing to drain must not
    // close its share of the port (SO_REUSEPORT hands it new connections) while another
    // is still draining and `/healthz` should say 503.
    use std::sync::atomic::Ordering;
    draining.fetch_sub(1, Ordering::AcqRel);
    while draining.load(Ordering::Acquire) > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(h) = http_accept {
        h.abort();
    }
    if let Some(t) = ticker {
        t.abort();
    }
    backlog.abort();
    stats.abort();
    if let Some(p) = pulls {
        p.abort();
    }
    if core.connections.get() > 0 {
        tracing::warn!(
            core = core.index,
            connections = core.connections.get(),
            "shutdown grace over; closing the rest"
        );
    }
}

/// Accepts waiting on one listener at once: io_uring completes one accept per operation
/// and a busy core turns its loop only every few milliseconds, so a single accept loop
/// would cap a loaded core at a few hundred new connections a second (then the backlog
/// fills and the kernel drops SYNs, which clients see as multi-second connects).
const CONCURRENT_ACCEPTS: usize = 16;

async fn accept_rtmp(core: Rc<Core>, listener: Listener) {
    accept_concurrently(core, listener, accept_rtmp_loop).await;
}

/// Runs [`CONCURRENT_ACCEPTS`] accept loops on one listener, so a burst of connections
/// never waits behind one accept at a time (an io_uring accept is a round trip through
/// the ring).
pub(crate) async fn accept_concurrently<F, Fut>(core: Rc<Core>, listener: Listener, accept_loop: F)
where
    F: Fn(Rc<Core>, Rc<Listener>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let listener = Rc::new(listener);
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT_ACCEPTS {
        loops.spawn_local(accept_loop(core.clone(), listener.clone()));
    }
    // Aborting this task drops the set, which aborts the loops.
    while loops.join_next().await.is_some() {}
}

async fn accept_rtmp_loop(core: Rc<Core>, listener: Rc<Listener>) {
    loop {
        admission::accept_batch(&core, &listener, "rtmp", |stream, peer, slot| {
            let id = core.next_conn.get();
            core.next_conn.set(id + 1);
            let core = core.clone();
            runtime::spawn(async move {
                rtmp::serve(core, stream, peer, id).await;
                drop(slot);
            });
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coalescing_turn_stretches_past_the_write_rate_cap() {
        let ms = Duration::from_millis;
        // 1,000 players at 100,000 writes/s fit in 50 ms turns.
        assert_eq!(coalesce_turn(ms(50), 100_000, 1_000), ms(50));
        // 10,000 do not: each writes every 100 ms instead.
        assert_eq!(coalesce_turn(ms(50), 100_000, 10_000), ms(100));
        // No cap, and never past a second.
        assert_eq!(coalesce_turn(ms(50), 0, 1_000_000), ms(50));
        assert_eq!(coalesce_turn(ms(50), 1, 1_000_000), ms(1000));
        // About one slot per 4 ms.
        assert_eq!(coalesce_slots(ms(50)), 12);
        assert_eq!(coalesce_slots(ms(1)), 1);
        assert_eq!(coalesce_slots(ms(1000)), 64);
    }
}
