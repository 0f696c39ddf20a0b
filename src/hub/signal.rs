//! A wake-up between tasks of one thread: what `tokio::sync::Notify` does for a writer and
//! its outbox, without the lock, the atomics and the intrusive waiter list that make
//! Notify safe across threads (an outbox never leaves its core). A writer waits on its
//! outbox tens of times a second, so those costs were a measurable share of a core.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes the tasks waiting on it when [`Signal::notify`] is called. A notification reaches
/// the waits made before it, not later ones: a waiter checks its condition, then waits, with
/// no await in between (one thread, so nothing can notify in that gap).
#[derive(Debug, Default)]
pub struct Signal {
    /// How many notifications there have been: a wait made at `n` is over once this moves.
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    /// A signal nobody waits on yet.
    pub fn new() -> Signal {
        Signal::default()
    }

    /// Wakes every task waiting now.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        // One at a time, the list not borrowed across `wake`, and its allocation kept for
        // the next wait (taking the list would free it and the next wait allocate anew).
        loop {
            let Some(w) = self.waiters.borrow_mut().pop() else {
                break;
            };
            w.wake();
        }
    }

    /// Waits for the next [`Signal::notify`].
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            signal: self,
            generation: self.generation.get(),
        }
    }
}

/// The future of [`Signal::notified`].
#[derive(Debug)]
pub struct Notified<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        // Polled again by the same task (a select around it): one entry is enough. A wait
        // that is dropped leaves its waker behind, which costs at most one spurious wake.
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn on_runtime<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    /// Every waiter made before a notification wakes; a wait made after it does not.
    #[test]
    fn a_notification_wakes_the_waits_made_before_it() {
        on_runtime(async {
            let s = Rc::new(Signal::new());
            let woken = Rc::new(Cell::new(0));
            let mut tasks = Vec::new();
            for _ in 0..3 {
                let (s, woken) = (s.clone(), woken.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    s.notified().await;
                    woken.set(woken.get() + 1);
                }));
            }
            tokio::task::yield_now().await;
            assert_eq!(woken.get(), 0, "woke before any notification");
            s.notify();
            for t in tasks {
                t.await.expect("waiter");
            }
            assert_eq!(woken.get(), 3);
            // A wait made after the notification is still pending.
            let late = s.notified();
            let mut late = std::pin::pin!(late);
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(late.as_mut().poll(&mut cx).is_pending());
            s.notify();
            assert!(late.as_mut().poll(&mut cx).is_ready());
        });
    }

    /// Counts its wakes (`Wake` asks for Send + Sync, hence the atomic).
    struct Wakes(std::sync::atomic::AtomicU32);
    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A task polling the same wait many times is listed once, and woken once.
    #[test]
    fn a_repolled_wait_is_listed_once() {
        let wakes = std::sync::Arc::new(Wakes(std::sync::atomic::AtomicU32::new(0)));
        let s = Signal::new();
        let mut wait = std::pin::pin!(s.notified());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(s.waiters.borrow().len(), 1);
        s.notify();
        assert!(s.waiters.borrow().is_empty());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }
}
