//! Hub tests: GOP cache, joining players, slow players, publish conflicts, stream life and
//! cross-core subscriptions, driven without sockets.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::rtmp::session::MediaKind;

fn cfg() -> HubConfig {
    HubConfig {
        gop_cache: true,
        gop_cache_max_bytes: 1 << 20,
        gop_cache_max_ms: 10_000,
        takeover: false,
        coalesce_slots: 1,
    }
}

fn hub(core: usize, peers: Vec<mpsc::Sender<CoreMsg>>) -> Hub {
    Hub::new(core, cfg(), peers)
}

fn video(ts: u32, key: bool, len: usize) -> Arc<Frame> {
    let mut p = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    p.resize(len.max(5), ts as u8);
    Frame::media(MediaKind::Video, ts, Bytes::from(p), 4096)
}

fn audio(ts: u32) -> Arc<Frame> {
    Frame::media(MediaKind::Audio, ts, Bytes::from(vec![0xAF, 1, 9, 9]), 4096)
}

fn headers() -> Vec<Arc<Frame>> {
    vec![
        Frame::metadata(0, Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"), 4096),
        Frame::media(
            MediaKind::Video,
            0,
            Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
            4096,
        ),
        Frame::media(
            MediaKind::Audio,
            0,
            Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
            4096,
        ),
    ]
}

fn outbox() -> Rc<Outbox> {
    Outbox::new(64 * 1024, Duration::from_secs(10), false)
}

/// Timestamps of the frames queued, with E for events.
fn drain(o: &Outbox) -> Vec<String> {
    o.take()
        .into_iter()
        .map(|i| match i {
            Item::Frame(f) if f.metadata => "meta".to_owned(),
            Item::Frame(f) if f.sequence_header => format!("{:?}hdr", f.kind),
            Item::Frame(f) => format!("{}{}", if f.keyframe { "K" } else { "" }, f.timestamp),
            Item::Event(e) => format!("{e:?}"),
            Item::Control(_) => "ctl".to_owned(),
        })
        .collect()
}

fn publish_with_gop(h: &mut Hub, key: &str, now: Instant) -> u64 {
    let id = h.publish(key, outbox(), now).expect("publish");
    for f in headers() {
        h.push(key, id, f, now);
    }
    h.push(key, id, video(0, true, 100), now);
    h.push(key, id, audio(10), now);
    h.push(key, id, video(33, false, 100), now);
    h.push(key, id, video(66, true, 100), now);
    h.push(key, id, audio(70), now);
    id
}

#[test]
fn joining_player_starts_at_the_last_keyframe_then_goes_live() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let p = outbox();
    assert!(h.play("live/a", p.clone(), now));
    h.push("live/a", id, video(100, false, 100), now);
    assert_eq!(
        drain(&p),
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K66", "70", "100"]
    );
}

#[test]
fn players_share_one_encoding() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let (a, b) = (outbox(), outbox());
    h.play("live/a", a.clone(), now);
    h.play("live/a", b.clone(), now);
    let f = video(100, false, 1000);
    h.push("live/a", id, f.clone(), now);
    let last = |o: &Outbox| match o.take().pop() {
        Some(Item::Frame(f)) => f,
        other => panic!("{other:?}"),
    };
    let (fa, fb) = (last(&a), last(&b));
    assert!(Arc::ptr_eq(&fa, &fb) && Arc::ptr_eq(&fa, &f));
    assert_eq!(fa.rtmp.as_ptr(), f.rtmp.as_ptr());
}

#[test]
fn without_gop_cache_players_start_at_the_next_keyframe() {
    let now = Instant::now();
    let mut c = cfg();
    c.gop_cache = false;
    let mut h = Hub::new(0, c, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let p = Outbox::new(64 * 1024, Duration::from_secs(10), true);
    h.play("live/a", p.clone(), now);
    h.push("live/a", id, audio(90), now);
    h.push("live/a", id, video(100, false, 100), now);
    h.push("live/a", id, video(133, true, 100), now);
    h.push("live/a", id, audio(140), now);
    assert_eq!(
        drain(&p),
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K133", "140"]
    );
}

#[test]
fn gop_cache_caps_empty_it_until_the_next_keyframe() {
    let now = Instant::now();
    let mut c = cfg();
    c.gop_cache_max_ms = 1000;
    let mut h = Hub::new(0, c, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    h.push("live/a", id, video(1200, false, 100), now);
    let p = outbox();
    h.play("live/a", p.clone(), now);
    assert_eq!(drain(&p), vec!["Start", "meta", "Videohdr", "Audiohdr"]);
    h.push("live/a", id, video(1233, true, 100), now);
    let q = outbox();
    h.play("live/a", q.clone(), now);
    assert_eq!(
        drain(&q),
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K1233"]
    );
}

#[test]
fn slow_player_skips_to_the_next_keyframe_and_is_closed_if_it_stays_behind() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let slow = outbox();
    let fast = outbox();
    h.play("live/a", slow.clone(), now);
    h.play("live/a", fast.clone(), now);
    drain(&slow);
    // 20 KB frames: the 64 KiB queue overflows on the 4th; the slow player never drains.
    for i in 0..6u32 {
        h.push("live/a", id, video(100 + i, false, 20_000), now);
        drain(&fast);
    }
    let queued = drain(&slow);
    assert!(
        queued.is_empty(),
        "frames before the overflow dropped: {queued:?}"
    );
    assert!(slow.dropped() >= 4);
    // A keyframe ends the skip: whole GOPs only.
    h.push("live/a", id, video(200, true, 1000), now);
    h.push("live/a", id, video(233, false, 1000), now);
    assert_eq!(drain(&slow), vec!["K200", "233"]);
    assert!(!slow.is_closed());
    // Behind again, and for longer than the timeout: closed.
    drain(&fast);
    for i in 0..4u32 {
        h.push("live/a", id, video(300 + i, false, 20_000), now);
        drain(&fast);
    }
    let later = now + Duration::from_secs(11);
    h.push("live/a", id, video(400, false, 20_000), later);
    assert!(slow.is_closed());
    assert!(!fast.is_closed());
}

#[test]
fn second_publisher_is_refused_or_takes_over() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let first = outbox();
    let id = h.publish("live/a", first.clone(), now).expect("first");
    assert_eq!(h.publish("live/a", outbox(), now), Err(PublishError::InUse));
    let mut c = cfg();
    c.takeover = true;
    let mut h = Hub::new(0, c, vec![]);
    let id1 = h.publish("live/a", first.clone(), now).expect("first");
    let id2 = h.publish("live/a", outbox(), now).expect("takeover");
    assert!(first.is_closed());
    assert_ne!(id1, id2);
    // The old publisher's late cleanup does not end the new one.
    h.unpublish("live/a", id1);
    assert!(h.is_live("live/a"));
    let _ = id;
}

#[test]
fn players_wait_for_a_publisher_and_survive_a_republish() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let p = outbox();
    assert!(!h.play("live/a", p.clone(), now));
    assert!(drain(&p).is_empty());
    let id = publish_with_gop(&mut h, "live/a", now);
    assert_eq!(drain(&p)[0], "Start");
    h.unpublish("live/a", id);
    assert_eq!(drain(&p), vec!["Unpublished"]);
    let id2 = h.publish("live/a", outbox(), now).expect("republish");
    h.push("live/a", id2, headers()[1].clone(), now);
    h.push("live/a", id2, video(5, false, 100), now);
    h.push("live/a", id2, video(10, true, 100), now);
    assert_eq!(drain(&p), vec!["Republished", "Videohdr", "K10"]);
}

#[test]
fn players_on_another_core_get_the_stream_through_one_subscription() {
    let now = Instant::now();
    let (tx0, mut rx0) = mpsc::channel(64);
    let (tx1, mut rx1) = mpsc::channel(64);
    let peers = vec![tx0, tx1];
    let mut a = hub(0, peers.clone());
    let mut b = hub(1, peers);
    let pump = |a: &mut Hub,
                b: &mut Hub,
                rx0: &mut mpsc::Receiver<CoreMsg>,
                rx1: &mut mpsc::Receiver<CoreMsg>| {
        let mut moved = true;
        while moved {
            moved = false;
            while let Ok(m) = rx0.try_recv() {
                a.handle(m, now);
                moved = true;
            }
            while let Ok(m) = rx1.try_recv() {
                b.handle(m, now);
                moved = true;
            }
        }
    };
    // A player on core 1 waits; the publisher arrives on core 0.
    let early = outbox();
    assert!(!b.play("live/x", early.clone(), now));
    let id = publish_with_gop(&mut a, "live/x", now);
    a.flush();
    pump(&mut a, &mut b, &mut rx0, &mut rx1);
    assert_eq!(
        drain(&early),
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K66", "70"]
    );
    // Live frames cross once per batch; a second player on core 1 joins from the mirror.
    a.push("live/x", id, video(100, false, 100), now);
    a.push("live/x", id, audio(101), now);
    a.flush();
    pump(&mut a, &mut b, &mut rx0, &mut rx1);
    assert_eq!(drain(&early), vec!["100", "101"]);
    let late = outbox();
    assert!(b.play("live/x", late.clone(), now));
    assert_eq!(
        drain(&late),
        vec![
            "Start", "meta", "Videohdr", "Audiohdr", "K66", "70", "100", "101"
        ]
    );
    // A publisher for the same name on core 1 is refused: core 0 owns it.
    assert_eq!(b.publish("live/x", outbox(), now), Err(PublishError::InUse));
    // Unpublish reaches the remote players.
    a.unpublish("live/x", id);
    pump(&mut a, &mut b, &mut rx0, &mut rx1);
    assert_eq!(drain(&early), vec!["Unpublished"]);
    assert_eq!(drain(&late), vec!["Unpublished"]);
}

#[test]
fn coalesced_frames_wait_for_the_tick_and_go_out_together() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use tokio::time::timeout;
        let now = Instant::now();
        let mut h = hub(0, vec![]);
        let id = publish_with_gop(&mut h, "live/a", now);
        let p = Outbox::with_coalescing(64 * 1024, Duration::from_secs(10), false, true);
        h.play("live/a", p.clone(), now);
        // The start (an event) wakes the writer at once.
        assert!(timeout(Duration::from_millis(50), p.ready()).await.is_ok());
        drain(&p);
        h.push("live/a", id, video(100, false, 100), now);
        h.push("live/a", id, audio(101), now);
        assert!(
            timeout(Duration::from_millis(30), p.ready()).await.is_err(),
            "live frames wait for the tick"
        );
        h.tick();
        assert!(timeout(Duration::from_millis(50), p.ready()).await.is_ok());
        assert_eq!(drain(&p), vec!["100", "101"]);
        // A sequence header never waits.
        h.push("live/a", id, headers()[1].clone(), now);
        assert!(timeout(Duration::from_millis(50), p.ready()).await.is_ok());
    });
}

#[test]
fn the_coalescing_wheel_wakes_one_slot_of_players_per_tick() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Takes the writer's wake-up, as the writer does when it runs.
    let consume = |p: &Outbox| {
        assert!(p.is_woken());
        rt.block_on(p.ready());
    };
    let now = Instant::now();
    let mut h = Hub::new(
        0,
        HubConfig {
            coalesce_slots: 4,
            ..cfg()
        },
        vec![],
    );
    let id = publish_with_gop(&mut h, "live/a", now);
    let players: Vec<_> = (0..8)
        .map(|_| {
            let p = Outbox::with_coalescing(64 * 1024, Duration::from_secs(10), false, true);
            h.play("live/a", p.clone(), now);
            consume(&p);
            drain(&p);
            p
        })
        .collect();
    h.push("live/a", id, video(100, false, 100), now);
    assert!(
        players.iter().all(|p| !p.is_woken()),
        "frames wait for a tick"
    );
    let mut woken_per_tick = Vec::new();
    for _ in 0..4 {
        let before: Vec<bool> = players.iter().map(|p| p.is_woken()).collect();
        h.tick();
        let newly = players
            .iter()
            .zip(&before)
            .filter(|(p, was)| p.is_woken() && !**was)
            .count();
        woken_per_tick.push(newly);
    }
    // Eight players over four slots: two a tick, and after a full turn, all of them.
    assert_eq!(woken_per_tick, vec![2, 2, 2, 2]);
    for p in &players {
        consume(p);
        assert_eq!(drain(p), vec!["100"]);
    }
    // A frame queued for a slot that just ticked waits a whole turn, never longer.
    h.push("live/a", id, video(101, false, 101), now);
    let ticks_until_all: usize = (1..=4)
        .find(|_| {
            h.tick();
            players.iter().all(|p| p.is_woken())
        })
        .expect("every player woken within one turn of the wheel");
    assert_eq!(ticks_until_all, 4);
}

#[test]
fn a_takeover_from_another_core_replaces_the_owner_and_its_players_follow() {
    let now = Instant::now();
    let (tx0, mut rx0) = mpsc::channel(64);
    let (tx1, mut rx1) = mpsc::channel(64);
    let (tx2, mut rx2) = mpsc::channel(64);
    let peers = vec![tx0, tx1, tx2];
    let takeover = HubConfig {
        takeover: true,
        ..cfg()
    };
    let mut hubs: Vec<Hub> = (0..3)
        .map(|c| Hub::new(c, takeover.clone(), peers.clone()))
        .collect();
    let mut pump = |hubs: &mut Vec<Hub>| {
        let mut moved = true;
        while moved {
            moved = false;
            for (c, rx) in [&mut rx0, &mut rx1, &mut rx2].into_iter().enumerate() {
                while let Ok(m) = rx.try_recv() {
                    hubs[c].handle(m, now);
                    moved = true;
                }
            }
        }
    };
    // Core 0 publishes; players on cores 0 and 2 watch.
    let first = outbox();
    let old_id = hubs[0]
        .publish("live/t", first.clone(), now)
        .expect("first");
    for f in headers() {
        hubs[0].push("live/t", old_id, f, now);
    }
    hubs[0].flush();
    pump(&mut hubs);
    let on0 = outbox();
    let on2 = outbox();
    hubs[0].play("live/t", on0.clone(), now);
    hubs[2].play("live/t", on2.clone(), now);
    pump(&mut hubs);
    drain(&on0);
    drain(&on2);
    // A publisher of the same name on core 1 takes it over.
    let id = hubs[1].publish("live/t", outbox(), now).expect("takeover");
    pump(&mut hubs);
    assert!(first.is_closed(), "the old publisher is kicked");
    // Its late cleanup changes nothing.
    hubs[0].unpublish("live/t", old_id);
    pump(&mut hubs);
    for f in headers() {
        hubs[1].push("live/t", id, f, now);
    }
    hubs[1].push("live/t", id, video(200, true, 100), now);
    hubs[1].flush();
    pump(&mut hubs);
    // Every player, on the old owner's core and on a third one, now plays the new stream.
    assert_eq!(
        drain(&on0),
        vec![
            "Unpublished",
            "Republished",
            "meta",
            "Videohdr",
            "Audiohdr",
            "K200"
        ]
    );
    let got2 = drain(&on2);
    assert_eq!(
        got2.iter().rev().take(4).rev().collect::<Vec<_>>(),
        vec!["meta", "Videohdr", "Audiohdr", "K200"],
        "{got2:?}"
    );
    assert!(got2.contains(&"Republished".to_owned()), "{got2:?}");
    for h in &hubs {
        assert!(h.is_live("live/t"));
    }
}
