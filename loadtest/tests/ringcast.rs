//! `loadtest run` against the ringcast server itself, started in-process on loopback port 0:
//! every player must connect, get intact frames in order, and (thanks to the GOP cache)
//! start within a fraction of a GOP.

use std::process::Command;
use std::time::Duration;

use ringcast::config::Config;

#[test]
fn every_player_gets_intact_frames_from_ringcast_at_once() {
    let config = Config {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        cores: 2,
        log: "warn".into(),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    };
    let server = ringcast::server::start(&config).expect("server starts");
    let json = std::env::temp_dir().join(format!("loadtest-ringcast-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "run",
            "--url",
            &format!("rtmp://{}/live/itest", server.rtmp_addr),
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
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run loadtest");
    server.shutdown();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadtest failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    let n = |a: &str, b: &str| {
        let v = if b.is_empty() {
            &report[a]
        } else {
            &report[a][b]
        };
        v.as_u64().unwrap_or_else(|| panic!("{a}.{b} in {report}"))
    };
    assert_eq!(n("players", "connected"), 20, "{stdout}");
    assert_eq!(n("players", "failed"), 0, "{stdout}");
    assert_eq!(n("integrity_errors", ""), 0, "{stdout}");
    assert_eq!(n("stalls", ""), 0, "{stdout}");
    // Players join mid-GOP (ramp 40/s over a 2 s GOP) and still start at once: the GOP
    // cache hands them the last keyframe. Without it TTFF would be up to 2 s.
    let ttff_p99 = report["ttff_ms"]["p99"].as_f64().expect("ttff");
    assert!(ttff_p99 < 500.0, "TTFF p99 {ttff_p99} ms: {stdout}");
}

/// A player that stops reading is dropped to keyframes, then closed after
/// `slow_player_timeout`; the publisher and the other players keep full rate.
#[test]
fn a_player_that_stops_reading_is_closed_and_the_others_keep_full_rate() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use bytes::BytesMut;
    use ringcast::rtmp::session::client::{Client, ClientConfig, Event, Intent};

    let config = Config {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        cores: 1,
        log: "warn".into(),
        player_queue_bytes: 512 * 1024,
        slow_player_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    };
    let server = ringcast::server::start(&config).expect("server starts");
    let url = format!("rtmp://{}/live/slow", server.rtmp_addr);
    let json = std::env::temp_dir().join(format!("loadtest-slow-{}.json", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "--url", &url, "--players", "3", "--duration", "10s"])
        .args(["--bitrate", "8M", "--gop", "1s", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run loadtest");

    // The slow player: plays, then never reads again.
    let mut sock = TcpStream::connect(server.rtmp_addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let cfg = ClientConfig::new(
        "live",
        &format!("rtmp://{}/live", server.rtmp_addr),
        Intent::Play("slow".into()),
    );
    let mut client = Client::new(cfg, 9, 0);
    client.start();
    let mut inbuf = BytesMut::new();
    let mut buf = vec![0u8; 65536];
    let give_up = Instant::now() + Duration::from_secs(15);
    let mut playing = false;
    while !playing {
        assert!(Instant::now() < give_up, "the slow player never started");
        sock.write_all(&client.take_output()).expect("write");
        let n = sock.read(&mut buf).expect("read");
        assert!(n > 0, "closed before playing");
        inbuf.extend_from_slice(&buf[..n]);
        client.handle_input(&mut inbuf, 0).expect("valid");
        while let Some(e) = client.poll_event() {
            playing |= matches!(e, Event::Playing { .. });
        }
    }
    sock.write_all(&client.take_output()).expect("write");

    // Stop reading while the others play on.
    let out = run.wait_with_output().expect("loadtest finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The server must have closed the slow player: draining its socket ends in EOF/reset.
    let mut closed = false;
    let drain_until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < drain_until {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    server.shutdown();
    assert!(closed, "the slow player was not disconnected");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report["players"]["connected"], 3, "{stdout}");
    assert_eq!(report["players"]["failed"], 0, "{stdout}");
    assert_eq!(report["integrity_errors"], 0, "{stdout}");
    assert_eq!(report["stalls"], 0, "{stdout}");
}

/// Two streams at once on two cores: the kernel spreads publishers and players over both
/// cores, and every player receives its stream intact, wherever its publisher landed.
#[test]
fn two_streams_on_two_cores_reach_every_player() {
    let config = Config {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        cores: 2,
        log: "warn".into(),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    };
    let server = ringcast::server::start(&config).expect("server starts");
    let runs: Vec<(std::path::PathBuf, std::process::Child)> = ["one", "two"]
        .iter()
        .map(|name| {
            let json = std::env::temp_dir()
                .join(format!("loadtest-two-{name}-{}.json", std::process::id()));
            let child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
                .args([
                    "run",
                    "--url",
                    &format!("rtmp://{}/live/{name}", server.rtmp_addr),
                ])
                .args(["--players", "12", "--ramp", "50/s", "--duration", "4s"])
                .args(["--bitrate", "500k", "--audio", "--json"])
                .arg(&json)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("run loadtest");
            (json, child)
        })
        .collect();
    let mut outputs = Vec::new();
    for (json, child) in runs {
        let out = child.wait_with_output().expect("loadtest finishes");
        outputs.push((json, out));
    }
    server.shutdown();
    for (json, out) in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
        let _ = std::fs::remove_file(&json);
        assert_eq!(report["players"]["connected"], 12, "{stdout}");
        assert_eq!(report["players"]["failed"], 0, "{stdout}");
        assert_eq!(report["integrity_errors"], 0, "{stdout}");
        assert!(report["frames"].as_u64().unwrap_or(0) > 12 * 60, "{stdout}");
    }
}

/// A publisher leaves and another takes the name within `republish_wait`: the player is told
/// (StreamEOF + UnpublishNotify, then PublishNotify) and goes on receiving the new stream,
/// new sequence headers first.
#[test]
fn a_republish_resumes_the_waiting_player() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use bytes::BytesMut;
    use ringcast::rtmp::session::MediaKind;
    use ringcast::rtmp::session::client::{Client, ClientConfig, Event, Intent};

    let config = Config {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        cores: 1,
        log: "warn".into(),
        republish_wait: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
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
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("publisher")
    };
    let mut first = publish();

    let mut sock = TcpStream::connect(server.rtmp_addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let tc = format!("rtmp://{}/live", server.rtmp_addr);
    let mut client = Client::new(
        ClientConfig::new("live", &tc, Intent::Play("again".into())),
        3,
        0,
    );
    client.start();
    let mut inbuf = BytesMut::new();
    let mut buf = vec![0u8; 65536];
    let mut seen: Vec<String> = Vec::new();
    let mut second: Option<std::process::Child> = None;
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < give_up, "events so far: {seen:?}");
        sock.write_all(&client.take_output()).expect("write");
        let n = sock.read(&mut buf).expect("read");
        assert!(n > 0, "server closed the player; events: {seen:?}");
        inbuf.extend_from_slice(&buf[..n]);
        client.handle_input(&mut inbuf, 0).expect("valid");
        while let Some(e) = client.poll_event() {
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
