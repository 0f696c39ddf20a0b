//! What the server logs about its peers: per-connection lines under a per-core rate limit,
//! and peer-chosen strings escaped so they cannot forge or garble log lines.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// Per-connection log lines (accepted, closed, publish, play, refusals) one core writes per
/// second at most; the rest are counted and summarised once the second is over. A connect
/// storm then costs a line a second instead of two per connection.
pub(crate) const CONN_LINES_PER_SEC: u32 = 100;

/// A per-core budget of per-connection log lines.
#[derive(Debug)]
pub(crate) struct LogGate {
    per_sec: u32,
    /// When the current second started.
    second: Cell<Option<Instant>>,
    /// Lines written in the current second.
    used: Cell<u32>,
    /// Lines suppressed since the last summary.
    suppressed: Cell<u64>,
}

impl LogGate {
    /// A gate letting `per_sec` lines through each second.
    pub(crate) fn new(per_sec: u32) -> LogGate {
        LogGate {
            per_sec,
            second: Cell::new(None),
            used: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    /// Whether a per-connection line may be written now. A new second first reports how
    /// many lines the last ones suppressed.
    pub(crate) fn allow(&self) -> bool {
        let now = Instant::now();
        let fresh = self
            .second
            .get()
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if fresh {
            let n = self.suppressed.replace(0);
            if n > 0 {
                tracing::warn!(
                    suppressed = n,
                    "connection log lines over {}/s on this core were suppressed",
                    self.per_sec
                );
            }
            self.second.set(Some(now));
            self.used.set(0);
        }
        if self.used.get() < self.per_sec {
            self.used.set(self.used.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }
}

/// A peer-chosen string (stream name, app, tcUrl, command name) for a log line: control
/// characters (newlines, ANSI escapes) and backslashes are escaped, so a name cannot start
/// a fake log line or recolour the terminal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            if c == '\\' || c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let s = Escaped("live/a\nFAKE line\x1b[31m\\ é").to_string();
        assert_eq!(s, "live/a\\nFAKE line\\u{1b}[31m\\\\ é");
        assert!(!s.chars().any(char::is_control));
    }

    #[test]
    fn the_gate_passes_its_budget_then_counts() {
        let g = LogGate::new(3);
        let passed = (0..10).filter(|_| g.allow()).count();
        assert_eq!(passed, 3);
        assert_eq!(g.suppressed.get(), 7);
    }
}
