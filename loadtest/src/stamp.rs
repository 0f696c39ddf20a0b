//! The stamp every synthetic video frame carries, so a player can check integrity and
//! measure end-to-end latency.
//!
//! A frame is an AVC video tag body: the 5-byte AVC header (frame type + codec, packet type
//! 1, composition time 0), then two length-prefixed NAL units: an SEI
//! `user_data_unregistered` message holding the stamp, and a slice NAL unit (IDR for
//! keyframes) filled to the frame's size. The stamp sits at a fixed offset:
//!
//! ```text
//! offset 28: magic "RCLT" · session u64 · sequence u64 · send time u64 (CLOCK_REALTIME ns)
//!            · checksum u64
//! ```
//!
//! The session is the publisher session the frame belongs to (a new one each time a
//! publisher starts), so a player that plays across a publisher's leave and return checks
//! each session's sequence on its own. The checksum covers every byte after the stamp, so
//! any corruption of the filler shows.

use bytes::{BufMut, Bytes, BytesMut};

/// Marks a stamped frame.
pub const MAGIC: [u8; 4] = *b"RCLT";
/// The SEI `user_data_unregistered` UUID the stamp travels under.
const UUID: [u8; 16] = *b"ringcast-loadtst";
/// Where the magic starts in the tag body.
pub const STAMP_OFFSET: usize = 5 + 4 + 3 + 16;
/// Magic + session + sequence + send time + checksum.
pub const STAMP_LEN: usize = 4 + 8 + 8 + 8 + 8;
/// The smallest frame: AVC header, SEI NAL unit, and a one-byte slice NAL unit.
pub const MIN_FRAME: usize = STAMP_OFFSET + STAMP_LEN + 1 + 4 + 1;

/// What a stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher session (see [`new_session`]): sequence numbers count within it.
    pub session: u64,
    /// The frame's sequence number in its publisher session (0 for the first frame).
    pub seq: u64,
    /// When the publisher sent it: CLOCK_REALTIME, nanoseconds.
    pub send_ns: u64,
}

/// The result of checking a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No stamp: not a synthetic frame (e.g. a sequence header or a real encode).
    Unstamped,
    /// The stamp and checksum are intact.
    Intact(Stamp),
    /// The stamp is there but the checksum does not match the bytes after it.
    Corrupt(Stamp),
}

/// Now on CLOCK_REALTIME, in nanoseconds: the clock stamps are compared on.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A fresh publisher session id: distinct for every call in this process, and (with the
/// clock and the process id mixed in) unlikely to match another process's.
pub fn new_session() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = realtime_ns() ^ (u64::from(std::process::id()) << 32);
    // splitmix64 of (seed, n): a bijection in n, so ids within one process never repeat.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fast 64-bit hash of `bytes`; collisions only need to be unlikely. Four independent
/// lanes of 8-byte words keep the multiplier busy (a single chain is latency-bound, and the
/// harness hashes every byte it receives).
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(29);
    let word = |w: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        u64::from_le_bytes(a)
    };
    let seed = 0xCBF2_9CE4_8422_2325u64 ^ bytes.len() as u64;
    let mut lanes = [seed, seed ^ 1, seed ^ 2, seed ^ 3];
    let mut blocks = bytes.chunks_exact(32);
    for blk in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(blk.chunks_exact(8)) {
            *lane = mix(*lane, word(w));
        }
    }
    let mut h = lanes.iter().fold(seed, |h, &l| mix(h, l));
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        h = mix(h, word(w));
    }
    for &b in words.remainder() {
        h = mix(h, u64::from(b));
    }
    h ^ (h >> 32)
}

/// Builds a stamped AVC frame of `size` bytes (at least [`MIN_FRAME`]).
pub fn frame(key: bool, stamp: Stamp, size: usize) -> Bytes {
    let size = size.max(MIN_FRAME);
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
    // SEI NAL unit: header, payload type 5, payload size, UUID, stamp, rbsp trailing bits.
    let sei_len = 3 + UUID.len() + STAMP_LEN + 1;
    b.put_u32(sei_len as u32);
    b.put_slice(&[0x06, 0x05, (UUID.len() + STAMP_LEN) as u8]);
    b.put_slice(&UUID);
    b.put_slice(&MAGIC);
    b.put_u64(stamp.session);
    b.put_u64(stamp.seq);
    b.put_u64(stamp.send_ns);
    let checksum_at = b.len();
    b.put_u64(0);
    b.put_u8(0x80);
    // Slice NAL unit filling the rest: IDR (5) for keyframes, non-IDR (1) otherwise.
    let slice_len = size - b.len() - 4;
    b.put_u32(slice_len as u32);
    b.put_u8(if key { 0x65 } else { 0x41 });
    let mut x = stamp.seq.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    while b.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (size - b.len()).min(8);
        b.put_slice(&x.to_le_bytes()[..n]);
    }
    let sum = checksum(&b[STAMP_OFFSET + STAMP_LEN..]);
    b[checksum_at..checksum_at + 8].copy_from_slice(&sum.to_be_bytes());
    b.freeze()
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Checks a received video tag body.
#[cfg(test)]
pub fn check(payload: &[u8]) -> Check {
    check_sampled(payload, |_| true)
}

/// Like [`check`], but hashes the bytes only when `verify(seq)` says so; a frame it skips
/// is reported [`Check::Intact`] on the strength of its stamp alone.
pub fn check_sampled(payload: &[u8], verify: impl FnOnce(u64) -> bool) -> Check {
    let Some(s) = payload.get(STAMP_OFFSET..STAMP_OFFSET + STAMP_LEN) else {
        return Check::Unstamped;
    };
    if s[..4] != MAGIC {
        return Check::Unstamped;
    }
    let stamp = Stamp {
        session: be64(&s[4..]),
        seq: be64(&s[12..]),
        send_ns: be64(&s[20..]),
    };
    if !verify(stamp.seq) || be64(&s[28..]) == checksum(&payload[STAMP_OFFSET + STAMP_LEN..]) {
        Check::Intact(stamp)
    } else {
        Check::Corrupt(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_their_stamp() {
        for (key, size) in [
            (true, 40_000),
            (false, 4_000),
            (false, 10),
            (true, MIN_FRAME),
        ] {
            let stamp = Stamp {
                session: 0xDEAD_BEEF_0000_0001,
                seq: 12_345,
                send_ns: 1_700_000_000_123_456_789,
            };
            let f = frame(key, stamp, size);
            assert_eq!(f.len(), size.max(MIN_FRAME));
            assert_eq!(f[0], if key { 0x17 } else { 0x27 });
            assert_eq!(check(&f), Check::Intact(stamp));
            // The two NAL unit lengths add up to the frame.
            let l1 = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) as usize;
            let at = 9 + l1;
            let l2 = u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]) as usize;
            assert_eq!(at + 4 + l2, f.len());
        }
    }

    #[test]
    fn any_corrupted_byte_after_the_stamp_is_caught() {
        let stamp = Stamp {
            session: 9,
            seq: 1,
            send_ns: 2,
        };
        let f = frame(false, stamp, 3000);
        for i in (STAMP_OFFSET + STAMP_LEN..f.len()).step_by(97) {
            let mut g = f.to_vec();
            g[i] ^= 0x40;
            assert_eq!(check(&g), Check::Corrupt(stamp), "byte {i}");
        }
        // Truncation is corruption too.
        assert_eq!(check(&f[..f.len() - 1]), Check::Corrupt(stamp));
    }

    #[test]
    fn unstamped_payloads_are_recognised() {
        assert_eq!(check(&[0x17, 0, 0, 0, 0, 1, 0x64]), Check::Unstamped);
        assert_eq!(check(&[0u8; 100]), Check::Unstamped);
    }

    #[test]
    fn sampled_check_hashes_only_the_frames_asked_for() {
        let stamp = Stamp {
            session: 3,
            seq: 7,
            send_ns: 1,
        };
        let mut f = frame(false, stamp, 500).to_vec();
        let last = f.len() - 1;
        f[last] ^= 0xFF;
        assert_eq!(check_sampled(&f, |seq| seq == 7), Check::Corrupt(stamp));
        assert_eq!(check_sampled(&f, |_| false), Check::Intact(stamp));
        assert_eq!(check_sampled(&[0u8; 100], |_| true), Check::Unstamped);
    }

    #[test]
    fn session_ids_do_not_repeat() {
        let ids: std::collections::HashSet<u64> = (0..1000).map(|_| new_session()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn checksum_depends_on_every_byte_and_the_length() {
        let a = vec![7u8; 33];
        let mut b = a.clone();
        b[32] = 8;
        assert_ne!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&a[..32]), checksum(&a));
        assert_ne!(checksum(&[]), checksum(&[0]));
    }
}
