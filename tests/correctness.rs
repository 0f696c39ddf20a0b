//! RTMP sessions as users run them, through the real binary on loopback: a player that
//! plays again on its connection, a publisher that publishes again, pause, receiveAudio /
//! receiveVideo, play arguments, audio-only streams, quiet players kept alive by pings,
//! stream identity, and commands out of order. ffmpeg and rtmpdump where a real client can
//! do it; ringcast's own client session where none can be told to.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{
    Peer, Proc, Ringcast, config_file, ffmpeg_publish, ffmpeg_record, pump_for, run, tmp, until,
};
use ringcast::flv::{self, Item, TagType};
use ringcast::rtmp::amf0::Value;
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::{Media, MediaKind};

/// ffmpeg publishing `seconds` of H.264 (1 s GOP) + AAC in real time.
fn publish_av(url: &str, seconds: u32) -> Proc {
    ffmpeg_publish(
        url,
        seconds,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
        ],
    )
}

/// ffmpeg publishing `seconds` of 32 kbit/s audio-only AAC in real time.
fn publish_audio_only(url: &str, seconds: u32) -> Proc {
    ffmpeg_publish(
        url,
        seconds,
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-c:a",
            "aac",
            "-b:a",
            "32k",
        ],
    )
}

fn is_video_header(m: &Media) -> bool {
    m.kind == MediaKind::Video && flv::is_video_sequence_header(&m.payload)
}

fn is_keyframe(m: &Media) -> bool {
    m.kind == MediaKind::Video && flv::is_video_keyframe(&m.payload)
}

fn is_audio_header(m: &Media) -> bool {
    m.kind == MediaKind::Audio && flv::is_audio_sequence_header(&m.payload)
}

fn index_of(p: &Peer, f: impl Fn(&Event) -> bool) -> Option<usize> {
    p.events.iter().position(|(_, e)| f(e))
}

fn playing(e: &Event) -> bool {
    matches!(e, Event::Playing { .. })
}

/// What a fresh start looks like from event `from` on: StreamBegin, Play.Reset and
/// Play.Start once each, metadata, then the video sequence header before any video, a
/// keyframe first among pictures, the AAC sequence header before any audio.
fn assert_fresh_start(p: &Peer, from: usize, what: &str) {
    let codes = p.codes_since(from);
    let count = |c: &str| codes.iter().filter(|x| *x == c).count();
    assert_eq!(count("NetStream.Play.Reset"), 1, "{what}: {codes:?}");
    assert_eq!(count("NetStream.Play.Start"), 1, "{what}: {codes:?}");
    let start = index_of(
        p,
        |e| matches!(e, Event::Status { code, .. } if code == "NetStream.Play.Start"),
    )
    .filter(|&i| i >= from);
    let start = p.events[from..]
        .iter()
        .position(
            |(_, e)| matches!(e, Event::Status { code, .. } if code == "NetStream.Play.Start"),
        )
        .map(|i| i + from)
        .or(start)
        .expect("Play.Start");
    let media = p.media_since(start);
    let first_video = media
        .iter()
        .position(|m| m.kind == MediaKind::Video)
        .expect("video");
    assert!(
        is_video_header(&media[first_video]),
        "{what}: video starts with its header"
    );
    let first_picture = media
        .iter()
        .position(|m| m.kind == MediaKind::Video && !is_video_header(m))
        .expect("a picture");
    assert!(
        is_keyframe(&media[first_picture]),
        "{what}: pictures start at a keyframe"
    );
    let first_audio = media
        .iter()
        .position(|m| m.kind == MediaKind::Audio)
        .expect("audio");
    assert!(
        is_audio_header(&media[first_audio]),
        "{what}: audio starts with its header"
    );
    assert!(
        p.has_since(start, |e| matches!(e, Event::Metadata { .. })),
        "{what}: metadata"
    );
    // Nothing twice: video timestamps never go back.
    let ts: Vec<u32> = media
        .iter()
        .filter(|m| m.kind == MediaKind::Video && !is_video_header(m))
        .map(|m| m.timestamp)
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "{what}: video timestamps {ts:?}"
    );
}

/// Pumps `p` until, from event `from` on, it is playing again and has had two keyframes.
fn until_played_again(p: &mut Peer, from: usize, what: &str) {
    until(what, &mut [p], |p| {
        p[0].has_since(from, playing)
            && p[0]
                .media_since(from)
                .iter()
                .filter(|m| is_keyframe(m))
                .count()
                >= 2
    });
}

#[test]
fn play_again_on_one_connection_is_a_fresh_start_on_any_core() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let _publisher = publish_av(&rc.url("cam"), 40);
    rc.wait_log("publish peer", Duration::from_secs(15));
    // Several connections, so some land on the core that does not own the stream.
    for round in 0..6 {
        let mut p = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
        until("the first play", &mut [&mut p], |p| {
            p[0].media().iter().filter(|m| is_keyframe(m)).count() >= 1
        });
        assert_fresh_start(&p, 0, &format!("round {round}, first play"));
        // deleteStream, createStream, play: a new message stream.
        p.client.stop();
        p.client.restart(Intent::Play("cam".into()), true);
        let from = p.events.len();
        let foreign = p.client.foreign_messages();
        until_played_again(&mut p, from, "the second play");
        assert_fresh_start(&p, from, &format!("round {round}, after deleteStream"));
        assert_eq!(
            p.client.foreign_messages(),
            foreign,
            "round {round}: frames on the old stream id after the new play"
        );
        // closeStream, then play again on the same message stream.
        p.client.call("closeStream", vec![]);
        p.client.restart(Intent::Play("cam".into()), false);
        let from = p.events.len();
        until_played_again(&mut p, from, "the third play");
        assert_fresh_start(&p, from, &format!("round {round}, after closeStream"));
    }
    assert_eq!(rc.terminate().code(), Some(0));
}

/// Metadata, sequence headers and one GOP of a synthetic stream tagged `tag`.
fn synthetic(tag: u8, ts0: u32) -> (Value, Vec<Media>) {
    let meta = Value::EcmaArray(vec![("tag".into(), Value::Number(f64::from(tag)))]);
    let mut v = vec![
        Media {
            kind: MediaKind::Video,
            timestamp: ts0,
            payload: Bytes::from(vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, tag]),
        },
        Media {
            kind: MediaKind::Audio,
            timestamp: ts0,
            payload: Bytes::from(vec![0xAF, 0, 0x12, tag]),
        },
    ];
    for i in 0..10u32 {
        let ts = ts0 + i * 40;
        v.push(Media {
            kind: MediaKind::Video,
            timestamp: ts,
            payload: Bytes::from(vec![
                if i == 0 { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                tag,
                i as u8,
            ]),
        });
        v.push(Media {
            kind: MediaKind::Audio,
            timestamp: ts + 5,
            payload: Bytes::from(vec![0xAF, 1, tag, i as u8]),
        });
    }
    (meta, v)
}

fn send_all(p: &mut Peer, meta: &Value, media: &[Media]) {
    p.client.send_metadata(media[0].timestamp, meta);
    for m in media {
        p.client.send_media(m);
    }
    p.pump();
}

fn meta_tag(body: &Bytes) -> Option<f64> {
    let mut b = body.clone();
    let vals = ringcast::rtmp::amf0::decode_all(&mut b).ok()?;
    vals.get(1)?.get("tag")?.as_f64()
}

#[test]
fn a_publisher_unpublishes_and_publishes_again_on_one_connection() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("cam".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let (meta, first) = synthetic(1, 0);
    send_all(&mut publisher, &meta, &first);
    let mut players: Vec<Peer> = (0..4)
        .map(|_| Peer::connect(rc.rtmp, Intent::Play("cam".into())))
        .collect();
    for p in &mut players {
        until("a player's GOP", &mut [p], |p| {
            p[0].media().len() >= first.len()
        });
    }
    // FCUnpublish + deleteStream, then a new createStream and publish on the same socket.
    publisher.client.stop();
    publisher
        .client
        .restart(Intent::Publish("cam".into()), true);
    let from = publisher.events.len();
    until("publishing again", &mut [&mut publisher], |p| {
        p[0].has_since(from, |e| matches!(e, Event::Publishing { .. }))
    });
    let (meta2, second) = synthetic(2, 10_000);
    send_all(&mut publisher, &meta2, &second);
    for (i, p) in players.iter_mut().enumerate() {
        until("the new stream", &mut [p], |p| {
            p[0].media().len() >= first.len() + second.len()
        });
        let codes = p.codes_since(0);
        assert!(
            codes.iter().any(|c| c == "NetStream.Play.UnpublishNotify")
                && codes.iter().any(|c| c == "NetStream.Play.PublishNotify"),
            "player {i}: {codes:?}"
        );
        let got = p.media();
        assert_eq!(
            &got[..first.len()],
            &first[..],
            "player {i}: the first stream"
        );
        assert_eq!(
            &got[first.len()..],
            &second[..],
            "player {i}: the second stream"
        );
    }
    // A late joiner gets the new metadata and the new GOP only.
    let mut late = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    until("the late joiner", &mut [&mut late], |p| {
        p[0].media().len() >= second.len()
    });
    assert_eq!(late.media(), second);
    let m = late.events.iter().find_map(|(_, e)| match e {
        Event::Metadata { body, .. } => Some(body.clone()),
        _ => None,
    });
    assert_eq!(m.as_ref().and_then(meta_tag), Some(2.0));
    assert_eq!(rc.terminate().code(), Some(0));
}

/// Audio tag timestamps of a recorded FLV, the first one checked to be the AAC header.
fn audio_timestamps(path: &std::path::Path) -> Vec<u32> {
    let data = std::fs::read(path).expect("output file");
    let mut buf = BytesMut::from(&data[..]);
    let mut r = flv::Reader::default();
    let mut ts = Vec::new();
    let mut first = true;
    while let Ok(Some(item)) = r.read(&mut buf) {
        if let Item::Tag(t) = item {
            if t.tag_type != TagType::Audio {
                continue;
            }
            if first {
                assert!(
                    flv::is_audio_sequence_header(&t.data),
                    "{}: audio starts with the AAC header",
                    path.display()
                );
                first = false;
                continue;
            }
            ts.push(t.timestamp);
        }
    }
    ts
}

/// Asserts an audio track has no gap (AAC at 44.1 kHz: a frame each 23 ms) and spans `min`.
fn assert_continuous(ts: &[u32], min: Duration, what: &str) {
    assert!(ts.len() > 10, "{what}: {} audio frames", ts.len());
    let span = ts[ts.len() - 1].saturating_sub(ts[0]);
    assert!(
        u128::from(span) >= min.as_millis(),
        "{what}: {span} ms of audio, wanted {min:?}"
    );
    let gap = ts
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .max()
        .unwrap_or(0);
    assert!(gap <= 100, "{what}: a {gap} ms gap in the audio");
}

#[test]
fn quiet_players_of_an_audio_only_stream_stay_past_every_timeout() {
    // Timeouts of 1-2 s; the players play for 3x that.
    let conf = config_file(
        "quiet.toml",
        "idle_timeout = \"2s\"\nping_interval = \"1s\"\nping_timeout = \"2s\"\n",
    );
    let rc = Ringcast::start(&["--cores", "2", "--config", conf.to_str().expect("path")]);
    let url = rc.url("radio");
    let _publisher = publish_audio_only(&url, 20);
    rc.wait_log("publish peer", Duration::from_secs(15));

    let f1 = tmp("quiet-rtmpdump.flv");
    let rtmpdump = std::thread::spawn({
        let (url, f1) = (url.clone(), f1.clone());
        move || {
            run(
                Command::new("timeout")
                    .args(["-s", "INT", "7", "rtmpdump", "-q", "-v", "-r", &url, "-o"])
                    .arg(&f1),
                Duration::from_secs(20),
            )
        }
    });
    let f2 = tmp("quiet-ffmpeg.flv");
    let (ok, out) = ffmpeg_record(&url, 6, &f2);
    assert!(ok, "ffmpeg play: {out}");
    let _ = rtmpdump.join();
    assert_continuous(
        &audio_timestamps(&f2),
        Duration::from_millis(5800),
        "ffmpeg",
    );
    assert_continuous(
        &audio_timestamps(&f1),
        Duration::from_millis(5500),
        "rtmpdump",
    );
    let log = rc.log();
    assert!(!log.contains("idle timeout"), "{log}");
    assert!(!log.contains("ping timeout"), "{log}");
    assert_eq!(rc.terminate().code(), Some(0));
    for f in [f1, f2, conf] {
        let _ = std::fs::remove_file(f);
    }
}

/// A one-core server with `config`, and a player of a stream nobody publishes that has
/// completed its play (it is pumped no more than its caller does).
fn silent_player(name: &str, config: &str) -> (Ringcast, Peer, std::path::PathBuf) {
    let conf = config_file(name, config);
    let rc = Ringcast::start(&["--cores", "1", "--config", conf.to_str().expect("path")]);
    let mut p = Peer::connect(rc.rtmp, Intent::Play("nothing".into()));
    until("the play", &mut [&mut p], |p| p[0].client.stream_id() > 0);
    (rc, p, conf)
}

#[test]
fn a_silent_peer_is_closed_by_the_ping_timeout() {
    // A player that completes the play, then never reads or answers again.
    let (rc, mut p, conf) = silent_player(
        "silent.toml",
        "ping_interval = \"500ms\"\nping_timeout = \"1s\"\nplay_wait = \"30s\"\n",
    );
    pump_for(Duration::from_millis(100), &mut [&mut p]);
    let started = Instant::now();
    rc.wait_log("ping timeout", Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(rc.terminate().code(), Some(0));
    let _ = std::fs::remove_file(conf);
}

/// A ping due further ahead than the core's once-a-second scan looks (3 s > 2 s) arms no
/// timer in the writer: the scan wakes it once the ping comes within reach. A silent peer
/// is then pinged at ~3 s and closed when the ping goes unanswered for 1 s: not before
/// 4 s, and not much after (were the scan's wake-up lost, it would never be pinged).
#[test]
fn a_ping_due_beyond_the_scan_horizon_is_sent_in_time() {
    let (rc, mut p, conf) = silent_player(
        "far-ping.toml",
        "ping_interval = \"3s\"\nping_timeout = \"1s\"\nplay_wait = \"30s\"\n",
    );
    let started = Instant::now();
    pump_for(Duration::from_millis(100), &mut [&mut p]);
    rc.wait_log("ping timeout", Duration::from_secs(10));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(3900),
        "closed after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(6500),
        "closed after {waited:?}"
    );
    assert_eq!(rc.terminate().code(), Some(0));
    let _ = std::fs::remove_file(conf);
}

/// Pumps `publisher` and `player` until the player has received a message with the body of
/// `m`.
fn until_received(publisher: &mut Peer, player: &mut Peer, what: &str, m: &Media) {
    until(what, &mut [publisher, player], |p| {
        p[1].media().iter().any(|g| g.payload == m.payload)
    });
}

#[test]
fn an_audio_only_stream_starts_at_once_everywhere() {
    for gop_cache in [true, false] {
        let conf = config_file(
            "audio-only.toml",
            &format!("gop_cache = {gop_cache}\nwrite_coalesce = \"0s\"\n"),
        );
        let rc = Ringcast::start(&["--cores", "2", "--config", conf.to_str().expect("path")]);
        let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("radio".into()));
        until("publishing", &mut [&mut publisher], |p| {
            p[0].has(|e| matches!(e, Event::Publishing { .. }))
        });
        let audio = |tag: u8, i: u32| Media {
            kind: MediaKind::Audio,
            timestamp: 1000 * u32::from(tag) + i * 23,
            payload: Bytes::from(vec![0xAF, 1, tag, i as u8]),
        };
        let header = |tag: u8| Media {
            kind: MediaKind::Audio,
            timestamp: 1000 * u32::from(tag),
            payload: Bytes::from(vec![0xAF, 0, 0x12, tag]),
        };
        publisher.client.send_media(&header(1));
        for i in 0..20 {
            publisher.client.send_media(&audio(1, i));
        }
        publisher.pump();
        // Players on both cores; each must get the header and then audio at once.
        let mut players: Vec<Peer> = (0..4)
            .map(|_| Peer::connect(rc.rtmp, Intent::Play("radio".into())))
            .collect();
        for p in &mut players {
            until("playing", &mut [p], |p| p[0].has(playing));
        }
        for i in 20..30 {
            publisher.client.send_media(&audio(1, i));
        }
        for (n, p) in players.iter_mut().enumerate() {
            let what = format!("player {n}'s audio (gop_cache {gop_cache})");
            until_received(&mut publisher, p, &what, &audio(1, 29));
            let media = p.media();
            assert!(
                is_audio_header(&media[0]),
                "player {n}: the AAC header first"
            );
        }
        // A republish: the new header, then the new audio, at once.
        publisher.client.stop();
        publisher
            .client
            .restart(Intent::Publish("radio".into()), true);
        let from = publisher.events.len();
        until("publishing again", &mut [&mut publisher], |p| {
            p[0].has_since(from, |e| matches!(e, Event::Publishing { .. }))
        });
        publisher.client.send_media(&header(2));
        for i in 0..10 {
            publisher.client.send_media(&audio(2, i));
        }
        for (n, p) in players.iter_mut().enumerate() {
            let what = format!("player {n}'s new audio (gop_cache {gop_cache})");
            until_received(&mut publisher, p, &what, &audio(2, 9));
            let media = p.media();
            let at = media
                .iter()
                .position(|m| m.payload[..] == header(2).payload[..])
                .expect("the new header");
            let first_new = media
                .iter()
                .position(|m| m.payload[..] == audio(2, 0).payload[..])
                .expect("the new audio");
            assert!(at < first_new, "player {n}: the new header comes first");
            assert!(
                media[at..].iter().all(|m| m.payload[2] != 1),
                "player {n}: nothing of the old stream after the new header"
            );
        }
        assert_eq!(rc.terminate().code(), Some(0));
        let _ = std::fs::remove_file(conf);
    }
}

/// Everything after the first event whose status code is `code`.
fn after_status(p: &Peer, code: &str) -> Option<usize> {
    p.events
        .iter()
        .rposition(|(_, e)| matches!(e, Event::Status { code: c, .. } if c == code))
}

/// Sends `cmd false`: after the answer to a ping sent behind it (the server handles the two
/// in order), nothing of `off` arrives for 1.2 s while `on` goes on. Then `cmd true`; returns
/// the first message of `off` (not a sequence header) that arrives again.
fn toggle_track(p: &mut Peer, cmd: &str, off: MediaKind, on: MediaKind) -> Media {
    p.client.call(cmd, vec![Value::Boolean(false)]);
    p.client.ping(1);
    let pongs = |p: &Peer| {
        p.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Pong { .. }))
            .count()
    };
    let before = pongs(p);
    until("the ping's answer", &mut [p], |p| pongs(p[0]) > before);
    let from = p.events.len();
    pump_for(Duration::from_millis(1200), &mut [p]);
    let quiet = p.media_since(from);
    assert!(
        quiet.iter().all(|m| m.kind != off),
        "{off:?} after {cmd} false"
    );
    assert!(quiet.iter().any(|m| m.kind == on), "{on:?} goes on");
    p.client.call(cmd, vec![Value::Boolean(true)]);
    let from = p.events.len();
    let again = |m: &Media| m.kind == off && !is_video_header(m);
    until(&format!("{off:?} again"), &mut [p], |p| {
        p[0].media_since(from).iter().any(again)
    });
    p.media_since(from).into_iter().find(again).expect("found")
}

#[test]
fn pause_and_receive_commands_are_carried_out() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let _publisher = publish_av(&rc.url("cam"), 40);
    rc.wait_log("publish peer", Duration::from_secs(15));
    let mut p = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    until("playing", &mut [&mut p], |p| {
        p[0].media().iter().filter(|m| is_keyframe(m)).count() >= 1
    });

    // pause true: Pause.Notify, then nothing until unpause.
    let last_before = p
        .media()
        .iter()
        .filter(|m| m.kind == MediaKind::Video)
        .map(|m| m.timestamp)
        .max()
        .unwrap_or(0);
    p.client
        .call("pause", vec![Value::Boolean(true), Value::Number(0.0)]);
    until("Pause.Notify", &mut [&mut p], |p| {
        after_status(p[0], "NetStream.Pause.Notify").is_some()
    });
    let paused_at = after_status(&p, "NetStream.Pause.Notify").expect("notify");
    pump_for(Duration::from_millis(1500), &mut [&mut p]);
    assert!(p.media_since(paused_at).is_empty(), "media while paused");

    // pause false: Unpause.Notify, then video again from a keyframe, newer than before.
    p.client
        .call("pause", vec![Value::Boolean(false), Value::Number(0.0)]);
    until("media after unpause", &mut [&mut p], |p| {
        after_status(p[0], "NetStream.Unpause.Notify").is_some_and(|i| {
            p[0].media_since(i)
                .iter()
                .filter(|m| is_keyframe(m))
                .count()
                >= 1
        })
    });
    let at = after_status(&p, "NetStream.Unpause.Notify").expect("unpause");
    let resumed = p.media_since(at);
    let first_picture = resumed
        .iter()
        .find(|m| m.kind == MediaKind::Video && !is_video_header(m))
        .expect("a picture");
    assert!(is_keyframe(first_picture), "unpause resumes at a keyframe");
    assert!(first_picture.timestamp > last_before, "no frame sent twice");

    // pauseRaw works the same.
    p.client
        .call("pauseRaw", vec![Value::Boolean(true), Value::Number(0.0)]);
    until("Pause.Notify (pauseRaw)", &mut [&mut p], |p| {
        after_status(p[0], "NetStream.Pause.Notify").is_some_and(|i| i > at)
    });
    let paused_at = after_status(&p, "NetStream.Pause.Notify").expect("notify");
    pump_for(Duration::from_millis(600), &mut [&mut p]);
    assert!(
        p.media_since(paused_at).is_empty(),
        "media while paused (pauseRaw)"
    );
    p.client
        .call("pauseRaw", vec![Value::Boolean(false), Value::Number(0.0)]);
    until("Unpause.Notify (pauseRaw)", &mut [&mut p], |p| {
        after_status(p[0], "NetStream.Unpause.Notify").is_some_and(|i| i > paused_at)
    });

    // receiveVideo false: audio only; true: video again from a keyframe.
    let first = toggle_track(&mut p, "receiveVideo", MediaKind::Video, MediaKind::Audio);
    assert!(is_keyframe(&first), "video resumes at a keyframe");
    // receiveAudio false: video only; true: audio again.
    toggle_track(&mut p, "receiveAudio", MediaKind::Audio, MediaKind::Video);
    assert_eq!(rc.terminate().code(), Some(0));
}

#[test]
fn play_with_duration_zero_sends_the_latest_state_and_ends() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let _publisher = publish_av(&rc.url("cam"), 40);
    rc.wait_log("publish peer", Duration::from_secs(15));
    // Let a GOP build up.
    let mut warm = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    until("a GOP", &mut [&mut warm], |p| {
        p[0].media().iter().filter(|m| is_keyframe(m)).count() >= 2
    });
    let mut p = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    p.client = {
        let tc = format!("rtmp://{}/live", rc.rtmp);
        let mut cfg = ringcast::rtmp::session::client::ClientConfig::new(
            "live",
            &tc,
            Intent::Play("cam".into()),
        );
        cfg.play_args = vec![Value::Number(-1.0), Value::Number(0.0)];
        let mut c = ringcast::rtmp::session::client::Client::new(cfg, 9, 0);
        c.start();
        c
    };
    until("Play.Stop", &mut [&mut p], |p| {
        p[0].codes_since(0)
            .iter()
            .any(|c| c == "NetStream.Play.Stop")
    });
    let stop = after_status(&p, "NetStream.Play.Stop").expect("stop");
    let media = p.media_since(0);
    assert!(media.iter().any(is_keyframe), "the latest keyframe");
    assert!(media.iter().any(is_video_header) && media.iter().any(is_audio_header));
    pump_for(Duration::from_millis(500), &mut [&mut p]);
    assert!(p.media_since(stop).is_empty(), "nothing after Play.Stop");
    assert_eq!(rc.terminate().code(), Some(0));
}

#[test]
fn play_with_reset_false_skips_play_reset() {
    let rc = Ringcast::start(&["--cores", "1"]);
    let _publisher = publish_av(&rc.url("cam"), 30);
    rc.wait_log("publish peer", Duration::from_secs(15));
    let tc = format!("rtmp://{}/live", rc.rtmp);
    let mut cfg =
        ringcast::rtmp::session::client::ClientConfig::new("live", &tc, Intent::Play("cam".into()));
    // start -1 (live), duration -1, reset false.
    cfg.play_args = vec![
        Value::Number(-1.0),
        Value::Number(-1.0),
        Value::Boolean(false),
    ];
    let mut p = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    p.client = ringcast::rtmp::session::client::Client::new(cfg, 9, 0);
    p.client.start();
    until("playing", &mut [&mut p], |p| {
        p[0].media().iter().any(is_keyframe)
    });
    let codes = p.codes_since(0);
    assert!(
        codes.iter().any(|c| c == "NetStream.Play.Start"),
        "{codes:?}"
    );
    assert!(
        !codes.iter().any(|c| c == "NetStream.Play.Reset"),
        "{codes:?}"
    );
    assert_eq!(rc.terminate().code(), Some(0));
}

#[test]
fn app_and_stream_name_together_identify_a_stream() {
    let rc = Ringcast::start(&["--cores", "2"]);
    // `live` + `a/b` and `live/a` + `b` both read rtmp://host/live/a/b, but are two streams.
    let mut pubs = Vec::new();
    for (tag, app, name) in [(1u8, "live", "a/b"), (2, "live/a", "b")] {
        let mut p = Peer::connect_app(rc.rtmp, app, Intent::Publish(name.into()));
        until("publishing", &mut [&mut p], |p| {
            p[0].has(|e| {
                matches!(e, Event::Publishing { .. }) || matches!(e, Event::Rejected { .. })
            })
        });
        assert!(
            p.has(|e| matches!(e, Event::Publishing { .. })),
            "{app} + {name}: {:?}",
            p.codes_since(0)
        );
        let (meta, media) = synthetic(tag, 0);
        send_all(&mut p, &meta, &media);
        pubs.push(p);
    }
    for (tag, app, name) in [(1u8, "live", "a/b"), (2, "live/a", "b")] {
        let mut p = Peer::connect_app(rc.rtmp, app, Intent::Play(name.into()));
        let want = synthetic(tag, 0).1;
        until("the GOP", &mut [&mut p], |p| {
            p[0].media().len() >= want.len()
        });
        assert_eq!(p.media(), want, "{app} + {name}");
    }
    assert_eq!(rc.terminate().code(), Some(0));
}

#[test]
fn a_closed_play_cancels_its_wait() {
    let conf = config_file("cancel.toml", "play_wait = \"1s\"\n");
    let rc = Ringcast::start(&["--cores", "1", "--config", conf.to_str().expect("path")]);
    let mut p = Peer::connect(rc.rtmp, Intent::Play("nobody".into()));
    until("the play", &mut [&mut p], |p| p[0].client.stream_id() > 0);
    pump_for(Duration::from_millis(100), &mut [&mut p]);
    p.client.stop();
    // Past play_wait: no StreamNotFound for a play that is gone, and the connection stays.
    pump_for(Duration::from_millis(2000), &mut [&mut p]);
    assert!(
        !p.codes_since(0)
            .iter()
            .any(|c| c == "NetStream.Play.StreamNotFound"),
        "{:?}",
        p.codes_since(0)
    );
    assert!(!p.closed, "the connection was closed");
    assert_eq!(rc.terminate().code(), Some(0));
    let _ = std::fs::remove_file(conf);
}

#[test]
fn metadata_is_replaced_and_cleared_for_later_joiners() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("cam".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let (meta, media) = synthetic(1, 0);
    send_all(&mut publisher, &meta, &media);
    let joiner_meta = |rc: &Ringcast, publisher: &mut Peer| {
        let mut p = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
        until("a joiner's GOP", &mut [publisher, &mut p], |p| {
            p[1].media()
                .iter()
                .filter(|m| m.kind == MediaKind::Video)
                .count()
                >= 2
        });
        p.events.iter().find_map(|(_, e)| match e {
            Event::Metadata { body, .. } => meta_tag(body),
            _ => None,
        })
    };
    let mut live = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    until("the live player", &mut [&mut live], |p| {
        p[0].media().len() >= media.len()
    });
    assert_eq!(joiner_meta(&rc, &mut publisher), Some(1.0));

    // @setDataFrame replaces it: live players get it in place, joiners get the new one.
    let meta2 = Value::EcmaArray(vec![("tag".into(), Value::Number(7.0))]);
    publisher.client.send_metadata(500, &meta2);
    until("the new metadata", &mut [&mut publisher, &mut live], |p| {
        p[1].events
            .iter()
            .any(|(_, e)| matches!(e, Event::Metadata { body, .. } if meta_tag(body) == Some(7.0)))
    });
    assert_eq!(joiner_meta(&rc, &mut publisher), Some(7.0));

    // @clearDataFrame clears it.
    let mut body = BytesMut::new();
    Value::from("@clearDataFrame").encode(&mut body);
    Value::from("onMetaData").encode(&mut body);
    publisher.client.send_message(18, 600, body.freeze());
    let tail = MediaKind::Video;
    publisher.client.send_media(&Media {
        kind: tail,
        timestamp: 640,
        payload: Bytes::from_static(&[0x27, 1, 0, 0, 0, 9]),
    });
    until("the clear", &mut [&mut publisher, &mut live], |p| {
        p[1].media().iter().any(|m| m.timestamp == 640)
    });
    assert!(
        live.media()
            .iter()
            .any(|m| m.kind == MediaKind::Data
                && m.payload.windows(15).any(|w| w == b"@clearDataFrame")),
        "the clear reaches live players"
    );
    assert_eq!(joiner_meta(&rc, &mut publisher), None);
    assert_eq!(rc.terminate().code(), Some(0));
}

/// An aggregate of the given sub-messages (type, timestamp, body).
fn aggregate(parts: &[(u8, u32, &[u8])]) -> Bytes {
    let mut b = BytesMut::new();
    for (ty, ts, body) in parts {
        b.put_u8(*ty);
        b.put_uint(body.len() as u64, 3);
        b.put_uint(u64::from(*ts & 0xFF_FFFF), 3);
        b.put_u8((*ts >> 24) as u8);
        b.put_uint(0, 3);
        b.put_slice(body);
        b.put_u32(11 + body.len() as u32);
    }
    b.freeze()
}

#[test]
fn a_bad_message_is_dropped_and_the_connection_goes_on() {
    let rc = Ringcast::start(&["--cores", "1"]);
    let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("cam".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let (meta, media) = synthetic(1, 0);
    send_all(&mut publisher, &meta, &media[..4]);
    let mut player = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    until("the player", &mut [&mut player], |p| {
        p[0].media().len() >= 4
    });

    // A malformed aggregate (a sub-message longer than the aggregate).
    let mut bad = aggregate(&[(9, 100, &[0x27, 1, 0, 0, 0])]).to_vec();
    bad[3] = 0x7F;
    publisher.client.send_message(22, 100, Bytes::from(bad));
    // A type-17 command carrying an AMF3 value the decoder does not take (an AMF3
    // ByteArray).
    let mut cmd = vec![0u8];
    let mut b = BytesMut::new();
    Value::from("myCall").encode(&mut b);
    Value::Number(0.0).encode(&mut b);
    cmd.extend_from_slice(&b);
    cmd.extend_from_slice(&[0x11, 0x0C, 0x03, 0xAB]);
    publisher.client.send_message(17, 0, Bytes::from(cmd));
    // Then the rest of the stream, which must reach the player.
    for m in &media[4..] {
        publisher.client.send_media(m);
    }
    until("the rest", &mut [&mut publisher, &mut player], |p| {
        p[1].media().len() >= media.len()
    });
    assert_eq!(player.media(), media);
    assert!(!publisher.closed);
    rc.wait_log("dropped", Duration::from_secs(5));
    assert_eq!(rc.terminate().code(), Some(0));
}
