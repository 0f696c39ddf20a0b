//! Operating a node: a SIGTERM drain (`/healthz` answers 503 at once, new RTMP connections
//! are refused, players are told the stream ended, the process exits 0 within
//! `shutdown_grace`) and a SIGHUP reload of the config file.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Peer, Ringcast, config_file, http_request, until};
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::status;

fn health(rc: &Ringcast) -> String {
    http_request(rc.http, "GET", "/healthz").0
}

#[test]
fn sigterm_drains_with_healthz_503_first_and_exits_0_within_the_grace() {
    let cfg = config_file("ops-drain", "cores = 2\nshutdown_grace = \"3s\"\n");
    let mut rc = Ringcast::start(&["--config", cfg.to_str().expect("utf-8")]);
    assert!(health(&rc).starts_with("HTTP/1.1 200"));
    let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("drain".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let mut player = Peer::connect(rc.rtmp, Intent::Play("drain".into()));
    until("playing", &mut [&mut player], |p| {
        p[0].codes_since(0).iter().any(|c| c == status::PLAY_START)
    });
    let t0 = Instant::now();
    rc.signal("TERM");
    // The health check turns at once, while HTTP still answers.
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        let head = health(&rc);
        if head.starts_with("HTTP/1.1 503") {
            break;
        }
        assert!(Instant::now() < give_up, "healthz still says {head}");
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("healthz 503 after {:?}", t0.elapsed());
    let (head, _) = http_request(rc.http, "GET", "/live/drain.flv");
    assert!(
        head.starts_with("HTTP/1.1 503"),
        "new plays during the drain: {head}"
    );
    // New RTMP connections are refused: the listener is closed.
    let give_up = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(rc.rtmp).is_ok() {
        assert!(
            Instant::now() < give_up,
            "RTMP still accepts during the drain"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The player is told the stream is over.
    until("the player told", &mut [&mut player, &mut publisher], |p| {
        p[0].closed || p[0].has(|e| matches!(e, Event::StreamEof))
    });
    let status = rc
        .wait_exit(Duration::from_secs(4))
        .expect("exited within the grace");
    eprintln!("exited {status} after {:?}", t0.elapsed());
    assert!(status.success(), "{status}");
}

#[test]
fn sighup_changes_a_secret_for_new_connections_and_keeps_the_live_player() {
    use ringcast::auth::sign::sign;
    use ringcast::auth::unix_now;
    let later = unix_now() + 3600;
    let text =
        |secret: &str, cores: u32| format!("cores = {cores}\n[auth]\nplay_secret = \"{secret}\"\n");
    let cfg = config_file("ops-hup", &text("first", 2));
    let mut rc = Ringcast::start(&["--config", cfg.to_str().expect("utf-8")]);
    let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("hup".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let play =
        |secret: &str| Intent::Play(format!("hup?sign={}", sign(secret, "live", "hup", later)));
    let mut live = Peer::connect(rc.rtmp, play("first"));
    until("the first player playing", &mut [&mut live], |p| {
        p[0].codes_since(0).iter().any(|c| c == status::PLAY_START)
    });
    // The new file changes the secret, and a key that cannot change live.
    std::fs::write(&cfg, text("second", 1)).expect("rewrite config");
    rc.signal("HUP");
    let line = rc.wait_log("configuration reloaded", Duration::from_secs(5));
    assert!(
        line.contains("keys=cores"),
        "the fixed key is named: {line}"
    );
    let answer = |rc: &Ringcast, intent: Intent| {
        let mut p = Peer::connect(rc.rtmp, intent);
        until("an answer", &mut [&mut p], |p| {
            p[0].closed
                || p[0]
                    .codes_since(0)
                    .iter()
                    .any(|c| c == status::PLAY_START || c == status::PLAY_FAILED)
        });
        p.codes_since(0)
    };
    let old = answer(&rc, play("first"));
    assert!(
        old.iter().any(|c| c == status::PLAY_FAILED),
        "the old secret still works: {old:?}"
    );
    let new = answer(&rc, play("second"));
    assert!(
        new.iter().any(|c| c == status::PLAY_START),
        "the new secret: {new:?}"
    );
    // The player from before the reload is still there and still gets what is published.
    let seen = live.events.len();
    publisher
        .client
        .send_media(&ringcast::rtmp::session::Media {
            kind: ringcast::rtmp::session::MediaKind::Audio,
            timestamp: 10,
            payload: bytes::Bytes::from_static(&[0xAF, 1, 7, 7]),
        });
    until(
        "media to the live player",
        &mut [&mut live, &mut publisher],
        |p| !p[0].media_since(seen).is_empty(),
    );
    assert!(!live.closed);
    // A broken file changes nothing.
    std::fs::write(&cfg, "cores = \"many\"\n").expect("rewrite config");
    rc.signal("HUP");
    rc.wait_log("reload refused", Duration::from_secs(5));
    let again = answer(&rc, play("second"));
    assert!(again.iter().any(|c| c == status::PLAY_START), "{again:?}");
    rc.signal("TERM");
    assert!(
        rc.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn a_config_error_is_said_once_with_the_key_and_the_line() {
    let cfg = config_file("ops-bad", "cores = 2\nplay_wait = \"soon\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--config", cfg.to_str().expect("utf-8")])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("invalid duration \"soon\"").count(), 1, "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("play_wait"), "{err}");
}
