//! One player's life, the same for every player protocol (RTMP, HTTP-FLV, WebSocket-FLV):
//! joining a stream, waiting for its publisher (`play_wait`, then "not found"), the start,
//! the publisher leaving and coming back (`republish_wait`, then "gone"), and leaving.
//!
//! The frames, the slow-player policy and the events a driver must act on travel in the
//! player's [`Outbox`]; a driver takes its items, hands each [`PlayerEvent`] to
//! [`Player::on_event`], turns everything into its own protocol's bytes, and asks
//! [`Player::expired`] when [`Player::deadline`] passes. Nothing here knows a socket or a
//! protocol.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Hub, Outbox, PlayerEvent};

/// How long a player waits for a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// For a stream nobody publishes yet (`play_wait`).
    pub play: Duration,
    /// For the publisher of a stream that went away to come back (`republish_wait`).
    pub republish: Duration,
}

/// Why a play ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Nobody published the stream within `play_wait`.
    NotFound,
    /// The publisher left and none came back within `republish_wait`.
    PublisherGone,
}

/// A player of one stream on this core.
#[derive(Debug)]
pub struct Player {
    key: String,
    outbox: Rc<Outbox>,
    waits: Waits,
    /// Since when it waits for a first publisher.
    waiting_since: Option<Instant>,
    /// Since when its publisher is gone.
    unpublished_at: Option<Instant>,
    /// When it asked to play, until its first frame went out.
    joined: Option<Instant>,
    /// Nobody has the stream ([`PlayerEvent::NotFound`]): its wait is over.
    not_found: bool,
}

impl Player {
    /// Joins stream `key`: the hub queues its start (metadata, sequence headers, GOP) in
    /// `outbox` if it is live, or the player waits for a publisher. With `once` the play
    /// ends after its start (`PlayerEvent::Complete`; RTMP `play` with a duration of 0).
    pub fn join(
        hub: &mut Hub,
        key: String,
        outbox: Rc<Outbox>,
        once: bool,
        waits: Waits,
        now: Instant,
    ) -> Player {
        outbox.complete_after_start(once);
        let live = hub.play(&key, outbox.clone(), now);
        let waiting_since = (!live && !once).then_some(now);
        if waiting_since.is_some() {
            // The driver's writer arms its timer from the new deadline.
            outbox.wake();
        }
        Player {
            key,
            outbox,
            waits,
            waiting_since,
            unpublished_at: None,
            joined: Some(now),
            not_found: false,
        }
    }

    /// The driver wrote a batch with frames: the first time, how long after the play
    /// request (time to first frame).
    pub fn frames_sent(&mut self, now: Instant) -> Option<Duration> {
        self.joined.take().map(|t| now.saturating_duration_since(t))
    }

    /// The stream's hub key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The player's send queue.
    pub fn outbox(&self) -> &Rc<Outbox> {
        &self.outbox
    }

    /// Whether it still waits for a first publisher.
    pub fn is_waiting(&self) -> bool {
        self.waiting_since.is_some()
    }

    /// Follows an event the driver took from the outbox.
    pub fn on_event(&mut self, event: PlayerEvent, now: Instant) {
        match event {
            PlayerEvent::Start => {
                self.waiting_since = None;
                self.unpublished_at = None;
            }
            PlayerEvent::Unpublished => self.unpublished_at = Some(now),
            PlayerEvent::Republished => self.unpublished_at = None,
            PlayerEvent::NotFound => self.not_found = self.waiting_since.is_some(),
            PlayerEvent::Shutdown | PlayerEvent::Complete => {}
        }
    }

    /// When the player gives up waiting, if it waits.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.waiting_since, self.unpublished_at) {
            (Some(t), _) if self.not_found => Some(t),
            (Some(t), _) => Some(t + self.waits.play),
            (None, Some(t)) => Some(t + self.waits.republish),
            _ => None,
        }
    }

    /// Whether the play is over at `now` because its wait ran out.
    pub fn expired(&self, now: Instant) -> Option<Ending> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        Some(if self.waiting_since.is_some() {
            Ending::NotFound
        } else {
            Ending::PublisherGone
        })
    }

    /// Leaves the stream: what was queued for this play and its per-play choices go, so a
    /// later play on the same connection starts afresh.
    pub fn leave(self, hub: &mut Hub) {
        hub.leave(&self.key, &self.outbox);
        self.outbox.stop_play();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_end_in_not_found_or_gone() {
        let waits = Waits {
            play: Duration::from_secs(5),
            republish: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut p = Player {
            key: "live/x".into(),
            outbox: Outbox::new(1 << 20, Duration::from_secs(1), false),
            waits,
            waiting_since: Some(t0),
            unpublished_at: None,
            joined: None,
            not_found: false,
        };
        assert_eq!(p.deadline(), Some(t0 + waits.play));
        assert_eq!(p.expired(t0 + Duration::from_secs(4)), None);
        assert_eq!(p.expired(t0 + waits.play), Some(Ending::NotFound));
        p.on_event(PlayerEvent::Start, t0);
        assert_eq!(p.deadline(), None);
        p.on_event(PlayerEvent::Unpublished, t0);
        assert_eq!(p.expired(t0 + waits.republish), Some(Ending::PublisherGone));
        p.on_event(PlayerEvent::Republished, t0);
        assert_eq!(p.deadline(), None);
        // Once started, a late "not found" (a pull's verdict) does not end the play.
        p.on_event(PlayerEvent::NotFound, t0);
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn a_waiting_player_told_not_found_gives_up_at_once() {
        let t0 = Instant::now();
        let mut p = Player {
            key: "live/x".into(),
            outbox: Outbox::new(1 << 20, Duration::from_secs(1), false),
            waits: Waits {
                play: Duration::from_secs(5),
                republish: Duration::from_secs(10),
            },
            waiting_since: Some(t0),
            unpublished_at: None,
            joined: None,
            not_found: false,
        };
        p.on_event(PlayerEvent::NotFound, t0);
        assert_eq!(p.expired(t0), Some(Ending::NotFound));
    }
}
