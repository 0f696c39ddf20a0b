//! The soak's peers that do not behave: slow players that stop reading, and garbage peers
//! that send random bytes and malformed RTMP chunks. Neither is in the players' figures;
//! the soak counts their sessions and how they ended.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcast::rtmp::session::client::{Client, ClientConfig, Event, Intent};
use ringcast::runtime::Stream;
use tokio::time::{sleep, sleep_until, timeout_at};

use crate::player::{self, Ctx, PATIENCE, Sink};
use crate::report::{ThreadStats, bump};
use crate::soak::{Plan, Rng, down, up};
use crate::target::{Span, Target};

/// What a peer waits before it connects again.
const RECONNECT: Span = Span {
    lo: Duration::from_millis(500),
    hi: Duration::from_secs(2),
};
/// How often a garbage peer sends a burst.
const BURST_EVERY: Span = Span {
    lo: Duration::from_secs(1),
    hi: Duration::from_secs(3),
};
/// How long a garbage peer keeps a connection the server does not close.
const GARBAGE_LIFE: Duration = Duration::from_secs(30);
/// How long a slow player reads again, after its hold, to see whether the server closed it.
const DRAIN: Duration = Duration::from_secs(5);
/// Read size.
const READ_SIZE: usize = 16 * 1024;

/// How a slow player's session went.
enum SlowEnd {
    /// The server had closed it by the time it read again.
    Closed,
    /// The server still sent it the stream.
    Open,
    /// It never got its first frame.
    Unplayed,
}

/// Slow player `index`: plays a random stream until its first video frame, stops reading
/// for `--slow-hold`, reads again to see whether the server closed it, closes, and starts
/// over until the end of the soak.
pub(crate) async fn slow(plan: Rc<Plan>, stats: Arc<ThreadStats>, index: u64) {
    let mut rng = Rng::new(plan.seed, 0x3000_0000 + index);
    let c = plan.counters.clone();
    sleep_until((plan.start + Duration::from_millis(1000 + 250 * index)).into()).await;
    let mut n = 0u64;
    while Instant::now() < plan.end {
        let target = plan.rtmp[rng.below(plan.rtmp.len() as u64) as usize].clone();
        let hold = rng.within(plan.slow_hold);
        // Ids apart from the well-behaved players' (which count up from 0).
        let id = u64::MAX / 4 + (index << 32) + n;
        n += 1;
        bump(&c.slow_sessions, 1);
        up(&c.slow);
        let end = slow_session(&plan, target, stats.clone(), hold, id).await;
        down(&c.slow);
        match end {
            SlowEnd::Closed => bump(&c.slow_closed, 1),
            SlowEnd::Open => {}
            SlowEnd::Unplayed => bump(&c.slow_unplayed, 1),
        }
        sleep(rng.within(RECONNECT)).await;
    }
}

async fn slow_session(
    plan: &Plan,
    target: Target,
    stats: Arc<ThreadStats>,
    hold: Duration,
    id: u64,
) -> SlowEnd {
    let ctx = Ctx {
        io: plan.io,
        target,
        deadline: Instant::now() + PATIENCE,
        stats,
        verify_every: 1,
    };
    let mut sink = Sink::new(&ctx, id);
    let Ok(stream) = player::connect(&ctx, &sink).await else {
        return SlowEnd::Unplayed;
    };
    let cfg = ClientConfig::new(
        &ctx.target.app,
        &ctx.target.tc_url,
        Intent::Play(ctx.target.stream.clone()),
    );
    let mut client = Client::new(cfg, id.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0);
    client.start();
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    while sink.frames() == 0 {
        if client.has_output()
            && stream
                .write_all(client.take_output().freeze())
                .await
                .is_err()
        {
            return SlowEnd::Unplayed;
        }
        buf = match player::read_some(&ctx, &mut sink, &stream, buf, READ_SIZE).await {
            Ok(b) => b,
            Err(_) => return SlowEnd::Unplayed,
        };
        if player::parse(&mut client, &mut buf, &mut sink).is_err() {
            return SlowEnd::Unplayed;
        }
    }
    if client.has_output() {
        let _ = stream.write_all(client.take_output().freeze()).await;
    }
    // Stop reading: the socket buffers fill, then the server's queue for this player.
    sleep_until((Instant::now() + hold).min(plan.end).into()).await;
    let closed = drained_to_close(&stream, DRAIN).await;
    stream.shutdown_both();
    if closed {
        SlowEnd::Closed
    } else {
        SlowEnd::Open
    }
}

/// Reads and discards until the server closes the connection (true), or `limit` passes
/// (false): a player the server closed drains to the end of the stream; one it kept goes
/// on receiving.
async fn drained_to_close(stream: &Stream, limit: Duration) -> bool {
    let give_up = Instant::now() + limit;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match timeout_at(give_up.into(), stream.read_buf(buf, 64 * 1024)).await {
            Err(_) => return false,
            Ok((Ok(0) | Err(_), _)) => return true,
            Ok((Ok(_), b)) => buf = b,
        }
    }
}

/// Garbage peer `index`: connects, goes by the rules for a while (not at all, through the
/// handshake, or through `connect`), then sends a burst of garbage every 1-3 s until the
/// server closes it (or 30 s pass), and starts over until the end of the soak.
pub(crate) async fn garbage(plan: Rc<Plan>, index: u64) {
    let mut rng = Rng::new(plan.seed, 0x4000_0000 + index);
    let c = plan.counters.clone();
    sleep_until((plan.start + Duration::from_millis(1500 + 300 * index)).into()).await;
    while Instant::now() < plan.end {
        bump(&c.garbage_sessions, 1);
        up(&c.garbage);
        let closed = garbage_session(&plan, &mut rng).await;
        down(&c.garbage);
        if closed {
            bump(&c.garbage_closed, 1);
        }
        sleep(rng.within(RECONNECT)).await;
    }
}

/// One garbage connection; true when the server closed it.
async fn garbage_session(plan: &Plan, rng: &mut Rng) -> bool {
    let target = &plan.rtmp[rng.below(plan.rtmp.len() as u64) as usize];
    let connect = Stream::connect(plan.io, target.addr);
    let Ok(Ok(stream)) = timeout_at((Instant::now() + PATIENCE).into(), connect).await else {
        return false;
    };
    let until = (Instant::now() + GARBAGE_LIFE).min(plan.end);
    let mut inbuf = BytesMut::with_capacity(READ_SIZE);
    let rules = rng.below(3);
    if rules > 0 {
        match by_the_rules(&stream, target, rng.next_u64(), rules == 2, inbuf, until).await {
            Ok(b) => inbuf = b,
            Err(closed) => {
                stream.shutdown_both();
                return closed;
            }
        }
    }
    loop {
        let burst = burst(rng);
        bump(&plan.counters.garbage_bytes, burst.len() as u64);
        if stream.write_all(Bytes::from(burst)).await.is_err() {
            return true;
        }
        // Read (and drop) whatever the server sends until the next burst; its close ends
        // the session.
        let next = Instant::now() + rng.within(BURST_EVERY);
        loop {
            inbuf.clear();
            match timeout_at(next.into(), stream.read_buf(inbuf, READ_SIZE)).await {
                Err(_) => {
                    inbuf = BytesMut::with_capacity(READ_SIZE);
                    break;
                }
                Ok((Ok(0) | Err(_), _)) => return true,
                Ok((Ok(_), b)) => inbuf = b,
            }
        }
        if Instant::now() >= until {
            stream.shutdown_both();
            return false;
        }
    }
}

/// Plays by the rules on ringcast's client session until the handshake is done (and with
/// `connect`, until `connect` is answered). `Err(closed)`: it could not (the server closed
/// the connection, or did not answer in time).
async fn by_the_rules(
    stream: &Stream,
    target: &Target,
    seed: u64,
    connect: bool,
    mut inbuf: BytesMut,
    until: Instant,
) -> Result<BytesMut, bool> {
    let cfg = ClientConfig::new(
        &target.app,
        &target.tc_url,
        Intent::Play(target.stream.clone()),
    );
    let mut client = Client::new(cfg, seed, 0);
    client.start();
    let give_up = (Instant::now() + PATIENCE).min(until);
    let mut done = false;
    loop {
        if client.has_output()
            && stream
                .write_all(client.take_output().freeze())
                .await
                .is_err()
        {
            return Err(true);
        }
        if done {
            inbuf.clear();
            return Ok(inbuf);
        }
        match timeout_at(give_up.into(), stream.read_buf(inbuf, READ_SIZE)).await {
            Err(_) => return Err(false),
            Ok((Ok(0) | Err(_), _)) => return Err(true),
            Ok((Ok(_), b)) => inbuf = b,
        }
        if client.handle_input(&mut inbuf, 0).is_err() {
            return Err(false);
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                Event::HandshakeDone if !connect => done = true,
                Event::Connected => done = true,
                _ => {}
            }
        }
    }
}

/// One RTMP chunk, type 0 header, on chunk stream `csid` (2-63), of at most 128 bytes of
/// body (the default chunk size, so one chunk carries it).
fn chunk(csid: u8, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    let body = &body[..body.len().min(128)];
    let mut v = Vec::with_capacity(12 + body.len());
    v.push(csid.clamp(2, 63));
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&stream_id.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// A burst of garbage: random bytes, or one of several malformed RTMP messages.
fn burst(rng: &mut Rng) -> Vec<u8> {
    let body = |rng: &mut Rng, most: u64| {
        let n = 1 + rng.below(most) as usize;
        rng.bytes(n)
    };
    match rng.below(7) {
        // Random bytes.
        0 => body(rng, 4096),
        // A command (AMF0) whose body is random.
        1 => {
            let b = body(rng, 128);
            chunk(3, 20, 0, &b)
        }
        // A data message (AMF0) whose body is random.
        2 => {
            let b = body(rng, 128);
            chunk(5, 18, 1, &b)
        }
        // A type-3 continuation of a chunk stream that never started.
        3 => {
            let mut v = vec![0xC0 | (10 + rng.below(50)) as u8];
            v.extend(body(rng, 200));
            v
        }
        // Set Chunk Size of 0, or with the reserved top bit set.
        4 => {
            let size: u32 = if rng.below(2) == 0 { 0 } else { 0x8000_0000 };
            chunk(2, 1, 0, &size.to_be_bytes())
        }
        // A message of an unknown type on a random chunk and message stream.
        5 => {
            let b = body(rng, 128);
            let csid = 3 + rng.below(60) as u8;
            let type_id = 23 + rng.below(200) as u8;
            chunk(csid, type_id, rng.next_u64() as u32, &b)
        }
        // A video message that announces 16 MiB and brings 128 bytes of it.
        _ => {
            let mut v = chunk(6, 9, 1, &rng.bytes(128));
            v[4..7].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_have_a_type_0_header() {
        let c = chunk(3, 20, 1, &[1, 2, 3]);
        assert_eq!(c, vec![3, 0, 0, 0, 0, 0, 3, 20, 1, 0, 0, 0, 1, 2, 3]);
        assert_eq!(chunk(3, 20, 0, &[0; 500]).len(), 12 + 128);
    }

    #[test]
    fn bursts_are_never_empty() {
        let mut rng = Rng::new(1, 2);
        for _ in 0..500 {
            let b = burst(&mut rng);
            assert!(!b.is_empty() && b.len() <= 4096);
        }
    }
}
