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
        pull: false,
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
fn without_gop_cache_video_starts_at_the_next_keyframe_and_audio_at_once() {
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
        vec!["Start", "meta", "Videohdr", "Audiohdr", "90", "K133", "140"]
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
            pull: false,
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

/// Hands every message waiting in `rxs` to its hub until all are quiet.
fn settle(hubs: &mut [&mut Hub], rxs: &mut [mpsc::Receiver<CoreMsg>], now: Instant) {
    let mut moved = true;
    while moved {
        moved = false;
        for (h, rx) in hubs.iter_mut().zip(rxs.iter_mut()) {
            h.drain_backlog();
            while let Ok(m) = rx.try_recv() {
                h.handle(m, now);
                moved = true;
            }
        }
    }
}

/// The hubs of two cores, their inboxes (core 1's holds `cap1` messages) and core 1's
/// sender, for a test to fill its inbox.
fn two_cores(
    cap1: usize,
) -> (
    Hub,
    Hub,
    Vec<mpsc::Receiver<CoreMsg>>,
    mpsc::Sender<CoreMsg>,
) {
    let (tx0, rx0) = mpsc::channel(64);
    let (tx1, rx1) = mpsc::channel(cap1);
    let peers = vec![tx0, tx1.clone()];
    (hub(0, peers.clone()), hub(1, peers), vec![rx0, rx1], tx1)
}

/// Fills an inbox with frames of a stream nobody has, which its core will ignore.
fn fill_with_junk(tx: &mpsc::Sender<CoreMsg>) {
    while tx
        .try_send(CoreMsg::Frames {
            key: "none".into(),
            frames: vec![],
        })
        .is_ok()
    {}
}

#[test]
fn control_messages_between_cores_survive_a_full_inbox() {
    let now = Instant::now();
    // Core 1's inbox holds two messages.
    let (mut a, mut b, mut rxs, tx1) = two_cores(2);
    // A player on core 1 of a stream core 0 will publish.
    let player = outbox();
    assert!(!b.play("live/x", player.clone(), now));
    fill_with_junk(&tx1);
    // Announce, then Withdraw (the publisher left at once): both wait for room.
    let id = publish_with_gop(&mut a, "live/x", now);
    a.unpublish("live/x", id);
    assert!(a.backlogged().is_some(), "the messages wait in the backlog");
    assert_eq!(a.dropped_cross_core, 0);
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    assert!(a.backlogged().is_none());
    // The Withdraw took effect: a publisher of the name on core 1 is not refused.
    assert!(!b.is_live("live/x"));
    let id1 = b
        .publish("live/x", outbox(), now)
        .expect("the name is free");
    b.unpublish("live/x", id1);
    settle(&mut [&mut a, &mut b], &mut rxs, now);

    // Subscribe / Unsubscribe / Snapshot through full inboxes in both directions.
    let id = publish_with_gop(&mut a, "live/y", now);
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    let p = outbox();
    fill_with_junk(&tx1);
    assert!(!b.play("live/y", p.clone(), now));
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    assert_eq!(
        drain(&p),
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K66", "70"]
    );
    b.leave("live/y", &p);
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    // The Unsubscribe arrived: core 0 sends core 1 nothing more.
    a.push("live/y", id, video(100, true, 100), now);
    a.flush();
    assert!(
        rxs[1].try_recv().is_err(),
        "frames to a core with no players"
    );

    // Shutdown reaches a core whose inbox is full.
    while tx1.try_send(CoreMsg::Shutdown).is_ok() {}
    let mut got_shutdown = false;
    while let Ok(m) = rxs[1].try_recv() {
        got_shutdown |= matches!(m, CoreMsg::Shutdown);
    }
    assert!(got_shutdown);
}

#[test]
fn frames_to_a_stuck_core_are_dropped_to_the_next_keyframe_and_counted() {
    let now = Instant::now();
    let (mut a, mut b, mut rxs, _) = two_cores(4);
    let id = publish_with_gop(&mut a, "live/x", now);
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    let p = outbox();
    assert!(!b.play("live/x", p.clone(), now));
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    drain(&p);
    // Core 1 stops reading: frames pile up past the backlog's frame cap.
    let mut ts = 100;
    for _ in 0..(BACKLOG_FRAMES + 10) {
        a.push("live/x", id, video(ts, false, 100), now);
        a.flush();
        ts += 33;
    }
    assert!(a.dropped_cross_core > 0, "frames past the cap are dropped");
    // Then it reads again: what it shows its player resumes at a keyframe, no broken GOP.
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    drain(&p);
    a.push("live/x", id, video(ts, false, 100), now);
    a.flush();
    a.push("live/x", id, video(ts + 33, true, 100), now);
    a.flush();
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    assert_eq!(drain(&p), vec![format!("K{}", ts + 33)]);
}

#[test]
fn a_snapshot_for_an_earlier_subscription_is_ignored() {
    let now = Instant::now();
    let (mut a, mut b, mut rxs, _) = two_cores(64);
    let id = publish_with_gop(&mut a, "live/x", now);
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    // Play, leave, play again before core 0 answers anything.
    let p = outbox();
    assert!(!b.play("live/x", p.clone(), now));
    b.leave("live/x", &p);
    p.stop_play();
    assert!(!b.play("live/x", p.clone(), now));
    // Core 0 answers the first Subscribe, sends frames, then answers the second.
    let mut rx0 = std::mem::replace(&mut rxs[0], mpsc::channel(1).1);
    let first = rx0.try_recv().expect("subscribe 1");
    a.handle(first, now);
    a.push("live/x", id, video(100, false, 100), now);
    a.flush();
    while let Ok(m) = rx0.try_recv() {
        a.handle(m, now);
    }
    rxs[0] = rx0;
    settle(&mut [&mut a, &mut b], &mut rxs, now);
    // One start, from the second snapshot (which holds frame 100), and nothing twice.
    let got = drain(&p);
    assert_eq!(
        got,
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K66", "70", "100"]
    );
}

#[test]
fn a_stopped_play_forgets_its_queue_and_a_new_one_starts_afresh() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let p = outbox();
    p.push_control(Bytes::from_static(b"c"));
    assert!(h.play("live/a", p.clone(), now));
    h.leave("live/a", &p);
    p.stop_play();
    assert!(!p.is_started());
    assert_eq!(
        drain(&p),
        vec!["ctl"],
        "control bytes stay, the play's frames go"
    );
    assert!(h.play("live/a", p.clone(), now));
    h.push("live/a", id, video(100, false, 100), now);
    assert_eq!(
        drain(&p),
        vec!["Start", "meta", "Videohdr", "Audiohdr", "K66", "70", "100"]
    );
}

#[test]
fn pause_drops_everything_and_resume_starts_from_what_is_newer() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let p = outbox();
    assert!(h.play("live/a", p.clone(), now));
    drain(&p);
    h.push("live/a", id, video(100, false, 100), now);
    p.pause();
    assert!(drain(&p).is_empty(), "queued frames dropped at pause");
    h.push("live/a", id, video(133, false, 100), now);
    h.push("live/a", id, audio(140), now);
    assert!(drain(&p).is_empty(), "nothing while paused");
    // The cache's GOP (from K66) is older than what the player had: wait for a keyframe,
    // audio newer than the last frame goes at once.
    h.resume("live/a", &p, now);
    h.push("live/a", id, video(166, false, 100), now);
    h.push("live/a", id, video(200, true, 100), now);
    assert_eq!(
        drain(&p),
        vec!["meta", "Videohdr", "Audiohdr", "140", "K200"]
    );
    // Paused past a keyframe: resume replays the new GOP from the cache.
    p.pause();
    h.push("live/a", id, audio(210), now);
    h.push("live/a", id, video(233, true, 100), now);
    h.push("live/a", id, audio(240), now);
    h.resume("live/a", &p, now);
    assert_eq!(
        drain(&p),
        vec!["meta", "Videohdr", "Audiohdr", "K233", "240"]
    );
}

#[test]
fn receive_audio_and_video_stop_and_resume_one_track() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = publish_with_gop(&mut h, "live/a", now);
    let p = outbox();
    assert!(h.play("live/a", p.clone(), now));
    drain(&p);
    p.set_receive(MediaKind::Video, false);
    h.push("live/a", id, video(100, false, 100), now);
    h.push("live/a", id, audio(101), now);
    h.push("live/a", id, video(133, true, 100), now);
    assert_eq!(drain(&p), vec!["101"]);
    p.set_receive(MediaKind::Video, true);
    h.push("live/a", id, video(166, false, 100), now);
    h.push("live/a", id, video(200, true, 100), now);
    assert_eq!(drain(&p), vec!["K200"], "video resumes at a keyframe");
    p.set_receive(MediaKind::Audio, false);
    h.push("live/a", id, audio(201), now);
    h.push("live/a", id, video(233, false, 100), now);
    p.set_receive(MediaKind::Audio, true);
    h.push("live/a", id, audio(240), now);
    assert_eq!(drain(&p), vec!["233", "240"]);
}

#[test]
fn a_slow_player_of_an_audio_only_stream_resumes_at_the_next_audio_frame() {
    let now = Instant::now();
    let mut h = hub(0, vec![]);
    let id = h.publish("live/r", outbox(), now).expect("publish");
    h.push("live/r", id, headers()[2].clone(), now);
    // A queue that holds about two audio frames.
    let p = Outbox::new(2 * audio(0).rtmp.len(), Duration::from_secs(10), false);
    assert!(h.play("live/r", p.clone(), now));
    for ts in [0, 23, 46, 69] {
        h.push("live/r", id, audio(ts), now);
    }
    let got = drain(&p);
    assert!(got.contains(&"69".to_owned()), "{got:?}");
    assert!(p.dropped() > 0);
}

#[test]
fn stream_keys_keep_app_and_name_apart() {
    assert_eq!(stream_key("live", "a/b"), "live/a/b");
    assert_ne!(stream_key("live", "a/b"), stream_key("live/a", "b"));
    assert_ne!(stream_key("a%2Fb", "c"), stream_key("a/b", "c"));
}

#[test]
fn split_key_undoes_stream_key() {
    for (app, name) in [("live", "a/b"), ("live/a", "b"), ("a%2Fb", "c"), ("x", "")] {
        assert_eq!(
            split_key(&stream_key(app, name)),
            (app.to_owned(), name.to_owned())
        );
    }
}

#[test]
fn a_write_the_watchdog_finds_stalled_is_given_up_and_others_finish() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let o = Outbox::new(1 << 20, Duration::from_secs(1), false);
        // A write that finishes is not disturbed.
        assert_eq!(o.guard(Instant::now(), async { 7 }).await, Some(7));
        assert!(!o.stall_if_older(Instant::now() + Duration::from_secs(60), Duration::ZERO));
        // A write that never finishes: the watchdog gives up on it once it is old enough.
        let stuck = o.guard(Instant::now(), std::future::pending::<()>());
        tokio::pin!(stuck);
        assert!(futures_poll_once(stuck.as_mut()).await.is_none());
        let now = Instant::now();
        assert!(
            !o.stall_if_older(now, Duration::from_secs(10)),
            "not old yet"
        );
        assert!(o.stall_if_older(now + Duration::from_secs(10), Duration::from_secs(10)));
        assert_eq!(stuck.await, None);
    });
}

/// Polls `f` once: its output if it was ready.
async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[test]
fn a_coalescing_writer_is_woken_early_once_a_batch_is_queued() {
    let now = Instant::now();
    let o = Outbox::with_coalescing(1 << 20, Duration::from_secs(1), false, true);
    o.set_batch_bytes(10_000);
    o.push_event(PlayerEvent::Start);
    o.take();
    let _ = futures_now(o.ready());
    let frame = |ts: u32| {
        Frame::media(
            MediaKind::Video,
            ts,
            Bytes::from(
                vec![0x27, 1, 0, 0, 0]
                    .into_iter()
                    .chain([0u8; 4000])
                    .collect::<Vec<u8>>(),
            ),
            60_000,
        )
    };
    o.push_frame(&frame(0), now);
    o.push_frame(&frame(33), now);
    assert!(!o.is_woken(), "two frames wait for the tick");
    o.push_frame(&frame(66), now);
    assert!(o.is_woken(), "past 10,000 bytes the writer goes at once");
}

/// Runs `f` to its first pending point (to consume a wake-up).
fn futures_now<F: Future>(f: F) -> Option<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::pin!(f);
        futures_poll_once(f.as_mut()).await
    })
}
