//! Who may connect: the per-core and per-address connection caps, and accepting when the
//! process runs out of file descriptors.
//!
//! Every accepted connection, RTMP or HTTP, holds a [`Slot`] for its life. When `accept`
//! fails for want of a descriptor, the core frees a descriptor it keeps in reserve, accepts
//! the waiting connection with it and closes it at once, then takes the reserve back: the
//! client is told no at once instead of waiting in the backlog, and the accept loop neither
//! spins on the error nor stops serving (as nginx and many tokio servers do).

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::Core;
use crate::runtime::{Listener, Stream};

/// A connection's place in its core's caps; freed when dropped.
pub(crate) struct Slot {
    core: Rc<Core>,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let core = &self.core;
        core.open.set(core.open.get().saturating_sub(1));
        if let Some(ip) = self.ip {
            let mut per_ip = core.per_ip.borrow_mut();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Takes a slot for a connection from `peer`, or says why not (logged, rate-limited).
pub(crate) fn admit(core: &Rc<Core>, peer: SocketAddr, proto: &str) -> Option<Slot> {
    let cfg = core.config();
    if core.open.get() >= cfg.max_connections_per_core {
        if core.log_gate.allow() {
            tracing::warn!(%peer, proto, "refused: {} connections on this core", core.open.get());
        }
        return None;
    }
    let ip = (cfg.max_connections_per_ip > 0).then(|| peer.ip());
    if let Some(ip) = ip {
        let mut per_ip = core.per_ip.borrow_mut();
        let n = per_ip.entry(ip).or_insert(0);
        if *n as usize >= cfg.max_connections_per_ip {
            if core.log_gate.allow() {
                tracing::warn!(%peer, proto, "refused: {n} connections from this address on this core");
            }
            return None;
        }
        *n += 1;
    }
    core.open.set(core.open.get() + 1);
    Some(Slot {
        core: core.clone(),
        ip,
    })
}

/// Whether an accept error means the process or system is out of file descriptors.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE)
    )
}

/// The errno values this module tells apart (stable on Linux).
mod libc_errno {
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
}

/// The descriptor a core keeps in reserve for shedding.
pub(crate) fn reserve_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Accepts the next connection. Out of descriptors, it sheds waiting connections (see the
/// module docs) until one can be served; other errors back off briefly.
pub(crate) async fn accept(core: &Rc<Core>, listener: &Listener) -> (Stream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if out_of_fds(&e) => {
                core.metrics.accept_error();
                if let Some(accepted) = shed(core, listener).await {
                    return accepted;
                }
            }
            Err(e) => {
                core.metrics.accept_error();
                if core.log_gate.allow() {
                    tracing::warn!(core = core.index, "accept: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How many waiting connections one accept loop takes in a row before it lets the core's
/// other tasks run.
const ACCEPT_BATCH: usize = 64;

/// Accepts the next connection, and what else already waits in the backlog (up to
/// [`ACCEPT_BATCH`], in this turn: see `Listener::try_accept`), admits each, and hands
/// those admitted to `start`.
pub(crate) async fn accept_batch(
    core: &Rc<Core>,
    listener: &Listener,
    proto: &str,
    mut start: impl FnMut(Stream, SocketAddr, Slot),
) {
    let mut next = Some(accept(core, listener).await);
    let mut taken = 0;
    while let Some((stream, peer)) = next.take() {
        taken += 1;
        // Not while a shed holds the freed reserve descriptor (it is for the connection
        // that shed closes); an error here (out of descriptors) is met again by the next
        // `accept`.
        if taken < ACCEPT_BATCH && core.reserve.borrow().is_some() {
            next = listener.try_accept().ok().flatten();
        }
        match admit(core, peer, proto) {
            Some(slot) => start(stream, peer, slot),
            None => drop(stream),
        }
    }
}

/// Closes one waiting connection with the reserve descriptor, or hands it back (`Some`) if
/// descriptors are free again by the time it comes: a connection that arrives once the
/// flood is over is served, not closed.
async fn shed(core: &Rc<Core>, listener: &Listener) -> Option<(Stream, SocketAddr)> {
    core.shed.set(core.shed.get() + 1);
    if core.log_gate.allow() {
        tracing::warn!(
            core = core.index,
            shed = core.shed.get(),
            "out of file descriptors: closing new connections at once"
        );
    }
    let Some(reserve) = core.reserve.borrow_mut().take() else {
        // Another accept on this core holds the reserve: wait instead of spinning.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return None;
    };
    drop(reserve);
    // An accept that waits: out of descriptors, io_uring fails an accept at once whether or
    // not a connection waits, so taking only one that waits now would spin. (Meanwhile
    // `accept_batch` takes nothing from the backlog: the freed descriptor is this one's.)
    let accepted = listener.accept().await.ok();
    // A descriptor for the reserve while the connection is held: there are enough again.
    if let Some(again) = reserve_fd() {
        *core.reserve.borrow_mut() = Some(again);
        return accepted;
    }
    // Still out: close the connection, and its descriptor becomes the reserve.
    drop(accepted);
    *core.reserve.borrow_mut() = reserve_fd();
    None
}
