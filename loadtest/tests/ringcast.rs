//! `loadtest` against the ringcast server itself, started in-process on loopback port 0:
//! players connect, get intact frames in order and start at once (GOP cache); a player that
//! stops reading is closed while the others keep full rate; two streams on two cores; a
//! republish resumes a waiting player.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringcast::config::Config;
use ringcast::rtmp::session::MediaKind;
use ringcast::rtmp::session::client::Event;

use common::{Player, run, server_config, spawn};

#[test]
fn every_player_gets_intact_frames_from_ringcast_at_once() {
    // Both of the harness's read paths: epoll's shared buffer and io_uring's own buffers.
    let mut backends = vec!["epoll"];
    if ringcast::runtime::Io::detect("auto").ok() == Some(ringcast::runtime::Io::Uring) {
        backends.push("uring");
    }
    for io in backends {
        let server = ringcast::server::start(&server_config(2)).expect("server starts");
        let url = format!("rtmp://{}/live/itest", server.rtmp_addr);
        let r = run(
            "ringcast",
            &[
                "run",
                "--url",
                &url,
                "--players",
                "20",
                "--ramp",
                "40/s",
                "--duration",
                "4s",
                "--bitrate",
                "1M",
                "--gop",
                "2s",
                "--audio",
                "--io",
                io,
            ],
        );
        server.shutdown();
        let stdout = &r.stdout;
        assert_eq!(r.n(&["players", "connected"]), 20, "{io}: {stdout}");
        assert_eq!(r.n(&["players", "failed"]), 0, "{io}: {stdout}");
        assert_eq!(r.n(&["integrity_errors"]), 0, "{io}: {stdout}");
        assert_eq!(r.n(&["stalls"]), 0, "{io}: {stdout}");
        assert!(r.n(&["frames"]) > 20 * 60, "{io}: too few frames: {stdout}");
        // Players join mid-GOP (ramp 40/s over a 2 s GOP) and still start at once: the GOP
        // cache hands them the last keyframe. Without it TTFF would be up to 2 s.
        let ttff_p99 = r.report["ttff_ms"]["p99"].as_f64().expect("ttff");
        assert!(ttff_p99 < 500.0, "{io}: TTFF p99 {ttff_p99} ms: {stdout}");
    }
}

/// A player that stops reading is dropped to keyframes, then closed after
/// `slow_player_timeout`, while its stream is still live; the publisher and the other
/// players keep full rate. Every other way a player can be closed (republish_wait,
/// idle_timeout, pings) is set far past the test, so only the slow-player policy can do it.
#[test]
fn a_player_that_stops_reading_is_closed_and_the_others_keep_full_rate() {
    let config = Config {
        cores: 1,
        player_queue_bytes: 512 * 1024,
        slow_player_timeout: Duration::from_secs(1),
        republish_wait: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(120),
        ping_interval: Duration::ZERO,
        ..server_config(1)
    };
    let server = ringcast::server::start(&config).expect("server starts");
    let url = format!("rtmp://{}/live/slow", server.rtmp_addr);
    let others = spawn(
        "slow",
        &[
            "run",
            "--url",
            &url,
            "--players",
            "3",
            "--duration",
            "15s",
            "--bitrate",
            "8M",
            "--gop",
            "1s",
        ],
    );

    // The slow player: plays, then reads nothing for 9 s while the others play on (the
    // stream is 1 MB/s: loopback socket buffers take a few MB, then its 512 KiB queue
    // fills, then the policy has slow_player_timeout to close it).
    let mut slow = Player::connect(server.rtmp_addr, "slow");
    slow.until_playing();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(9));
    // Reading again: a player the server closed drains to EOF; one it kept catches up and
    // reads on.
    let closed = slow.drained_to_close(Duration::from_secs(3));
    let within = stopped.elapsed();
    let r = others.finish();
    server.shutdown();
    assert!(
        closed,
        "the slow player was not disconnected while its stream was live"
    );
    assert!(within < Duration::from_secs(13), "closed after {within:?}");

    let stdout = &r.stdout;
    assert_eq!(r.n(&["players", "connected"]), 3, "{stdout}");
    assert_eq!(r.n(&["players", "failed"]), 0, "{stdout}");
    assert_eq!(r.n(&["integrity_errors"]), 0, "{stdout}");
    assert_eq!(r.n(&["stalls"]), 0, "{stdout}");
}

/// Two streams at once on two cores: the kernel spreads publishers and players over both
/// cores, and every player receives its stream intact, wherever its publisher landed.
#[test]
fn two_streams_on_two_cores_reach_every_player() {
    let server = ringcast::server::start(&server_config(2)).expect("server starts");
    let runs: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| {
            let url = format!("rtmp://{}/live/{name}", server.rtmp_addr);
            spawn(
                &format!("two-{name}"),
                &[
                    "run",
                    "--url",
                    &url,
                    "--players",
                    "12",
                    "--ramp",
                    "50/s",
                    "--duration",
                    "4s",
                    "--bitrate",
                    "500k",
                    "--audio",
                ],
            )
        })
        .collect();
    let finished: Vec<_> = runs.into_iter().map(common::Run::finish).collect();
    server.shutdown();
    for r in finished {
        let stdout = &r.stdout;
        assert_eq!(r.n(&["players", "connected"]), 12, "{stdout}");
        assert_eq!(r.n(&["players", "failed"]), 0, "{stdout}");
        assert_eq!(r.n(&["integrity_errors"]), 0, "{stdout}");
        assert!(r.n(&["frames"]) > 12 * 60, "{stdout}");
    }
}

/// A publisher leaves and another takes the name within `republish_wait`: the player is told
/// (StreamEOF + UnpublishNotify, then PublishNotify) and goes on receiving the new stream,
/// new sequence headers first.
#[test]
fn a_republish_resumes_the_waiting_player() {
    let config = Config {
        republish_wait: Duration::from_secs(10),
        ..server_config(1)
    };
    let server = ringcast::server::start(&config).expect("server starts");
    let url = format!("rtmp://{}/live/again", server.rtmp_addr);
    let publish = || {
        Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args([
                "publish",
                "--url",
                &url,
                "--duration",
                "2s",
                "--bitrate",
                "300k",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("publisher")
    };
    let mut first = publish();
    let mut player = Player::connect(server.rtmp_addr, "again");
    let mut seen: Vec<String> = Vec::new();
    let mut second: Option<std::process::Child> = None;
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < give_up, "events so far: {seen:?}");
        for e in player.step() {
            let label = match e {
                Event::Playing { .. } => "playing".to_owned(),
                Event::StreamEof => "eof".to_owned(),
                Event::Status { code, .. } if code.contains("Notify") => code,
                Event::Media(m) if m.kind == MediaKind::Video => {
                    if ringcast::flv::is_video_sequence_header(&m.payload) {
                        "header".to_owned()
                    } else {
                        "video".to_owned()
                    }
                }
                _ => continue,
            };
            if seen.last() != Some(&label) {
                seen.push(label);
            }
        }
        if second.is_none() && seen.iter().any(|s| s.ends_with("UnpublishNotify")) {
            let _ = first.wait();
            second = Some(publish());
        }
        if seen
            .iter()
            .any(|s| s.ends_with("PublishNotify") && !s.ends_with("UnpublishNotify"))
            && seen.last().map(String::as_str) == Some("video")
        {
            break;
        }
    }
    let _ = first.wait();
    if let Some(mut p) = second {
        let _ = p.wait();
    }
    server.shutdown();
    assert_eq!(
        seen,
        vec![
            "playing",
            "header",
            "video",
            "eof",
            "NetStream.Play.UnpublishNotify",
            "NetStream.Play.PublishNotify",
            "header",
            "video"
        ]
    );
}

/// A player whose socket stops draining is closed after `slow_player_timeout` even when its
/// queue never overflows (here it is far larger than what is sent) and no frame arrives after
/// the write stalled: the writer bounds each write.
#[test]
fn a_stalled_write_closes_the_player_without_a_queue_overflow() {
    let config = Config {
        player_queue_bytes: 64 << 20,
        slow_player_timeout: Duration::from_secs(1),
        // Long enough that the end of the publish cannot be what closes the player.
        republish_wait: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(120),
        ..server_config(1)
    };
    let server = ringcast::server::start(&config).expect("server starts");
    let url = format!("rtmp://{}/live/stall", server.rtmp_addr);
    // 10 MB in 4 s: more than the socket buffers hold, far less than the queue.
    let mut publisher = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "publish",
            "--url",
            &url,
            "--duration",
            "4s",
            "--bitrate",
            "20M",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("publisher");
    let mut stalled = Player::connect(server.rtmp_addr, "stall");
    stalled.until_playing();
    let _ = publisher.wait();
    let closed = stalled.drained_to_close(Duration::from_secs(20));
    server.shutdown();
    assert!(closed, "the stalled player was not disconnected");
}
