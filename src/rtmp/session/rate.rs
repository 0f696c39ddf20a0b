//! The message-rate limit: messages per second, averaged over a fixed window.

/// The window message rates are averaged over, in milliseconds. Long enough that the burst
/// an encoder sends after a network stall passes; short enough that a flood ends quickly.
pub const RATE_WINDOW_MS: u64 = 5_000;

/// Counts messages in consecutive windows of [`RATE_WINDOW_MS`] and tells when a window
/// holds more than `limit` per second on average. Live media is tens to a few hundred
/// messages a second; a flood of tiny messages is tens of thousands.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    /// Messages per second; 0 disables the limit.
    limit: u32,
    /// When the current window started.
    start: Option<u64>,
    /// Messages counted in the current window.
    count: u64,
}

impl RateLimit {
    /// A limit of `limit` messages per second (0: none).
    pub(crate) fn new(limit: u32) -> RateLimit {
        RateLimit {
            limit,
            start: None,
            count: 0,
        }
    }

    /// Counts `n` messages at `now` (ms). Returns the window's count when it passed the
    /// limit: the window's whole budget is spent, however early in the window.
    pub(crate) fn count(&mut self, n: u64, now: u64) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        let start = *self.start.get_or_insert(now);
        if now.saturating_sub(start) >= RATE_WINDOW_MS {
            self.start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(n);
        let budget = u64::from(self.limit) * RATE_WINDOW_MS / 1000;
        if self.count > budget {
            Err(self.count)
        } else {
            Ok(())
        }
    }

    /// The limit, in messages per second.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_may_hold_its_budget_and_no_more() {
        let mut r = RateLimit::new(100);
        // 500 messages in a 5 s window is the average of 100/s: allowed, even all at once.
        assert_eq!(r.count(500, 0), Ok(()));
        assert_eq!(r.count(1, 4_999), Err(501));
    }

    #[test]
    fn a_new_window_starts_afresh() {
        let mut r = RateLimit::new(100);
        assert_eq!(r.count(400, 1_000), Ok(()));
        assert_eq!(r.count(400, 6_000), Ok(()));
        assert_eq!(r.count(100, 10_999), Ok(()));
        assert_eq!(r.count(1, 10_999), Err(501));
    }

    #[test]
    fn zero_is_no_limit() {
        let mut r = RateLimit::new(0);
        assert_eq!(r.count(u64::MAX, 0), Ok(()));
        assert_eq!(r.count(u64::MAX, 1), Ok(()));
    }
}
