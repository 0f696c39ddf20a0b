//! `[auth]` against the real binary: signed publish and play URLs (RTMP with ffmpeg and
//! ringcast's client, HTTP-FLV with plain HTTP), expired and forged signatures refused,
//! address rules, and the refusals counted in `/metrics`.

mod common;

use std::time::{Duration, Instant};

use common::{Peer, Ringcast, config_file, ffmpeg_publish, http_request, until};
use ringcast::auth::sign::sign;
use ringcast::auth::unix_now;
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::status;

fn server(name: &str, auth: &str) -> Ringcast {
    let cfg = config_file(
        &format!("auth-{name}"),
        &format!("cores = 2\n[auth]\n{auth}\n"),
    );
    Ringcast::start(&["--config", cfg.to_str().expect("utf-8")])
}

/// A client that publishes or plays (`name?query`); its status codes once the server
/// answered.
fn attempt(rc: &Ringcast, intent: Intent) -> Vec<String> {
    let mut p = Peer::connect(rc.rtmp, intent);
    until("an answer", &mut [&mut p], |p| {
        p[0].closed
            || p[0].codes_since(0).iter().any(|c| {
                c == status::PUBLISH_START
                    || c == status::PUBLISH_BAD_NAME
                    || c == status::PLAY_START
                    || c == status::PLAY_FAILED
            })
    });
    p.codes_since(0)
}

fn refused_count(rc: &Ringcast, metric: &str, reason: &str) -> f64 {
    let (_, body) = http_request(rc.http, "GET", "/metrics");
    body.lines()
        .filter(|l| l.starts_with(metric) && l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn signed_urls_are_accepted_and_expired_or_forged_ones_refused() {
    let rc = server(
        "signed",
        "publish_secret = \"pub-secret\"\nplay_secret = \"play-secret\"",
    );
    let later = unix_now() + 3600;
    let good = sign("pub-secret", "live", "cam", later);

    // ffmpeg publishes with the URL `ringcast sign` would print.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "sign",
            "--secret",
            "pub-secret",
            "--app",
            "live",
            "--stream",
            "cam",
        ])
        .args(["--expires", "1h", "--base", &format!("rtmp://{}", rc.rtmp)])
        .output()
        .expect("ringcast sign");
    let url = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(url.contains("/live/cam?sign="), "{url}");
    let _ffmpeg = ffmpeg_publish(&url, 30, &common::test_av("320x240", 25, &[]));
    let line = rc.wait_log("stream=live/cam", Duration::from_secs(15));
    assert!(line.contains(" publish "), "{line}");

    // Plays: signed with the play secret, yes; unsigned, expired, forged or signed with the
    // publish secret, no.
    let play = |query: String| Intent::Play(format!("cam?{query}"));
    let watch = sign("play-secret", "live", "cam", later);
    let codes = attempt(&rc, play(format!("sign={watch}")));
    assert!(codes.iter().any(|c| c == status::PLAY_START), "{codes:?}");
    let expired = sign("play-secret", "live", "cam", unix_now() - 1);
    let forged = format!("{later}-{}", "0".repeat(64));
    for (what, query) in [
        ("unsigned", String::new()),
        ("expired", format!("sign={expired}")),
        ("forged", format!("sign={forged}")),
        ("signed for publishing", format!("sign={good}")),
        (
            "signed for another stream",
            format!("sign={}", sign("play-secret", "live", "other", later)),
        ),
    ] {
        let codes = attempt(&rc, play(query));
        assert!(
            codes.iter().any(|c| c == status::PLAY_FAILED)
                && !codes.iter().any(|c| c == status::PLAY_START),
            "{what} play: {codes:?}"
        );
    }
    // A second publisher of another name without a signature is refused with BadName.
    let codes = attempt(&rc, Intent::Publish("intruder".into()));
    assert!(
        codes.iter().any(|c| c == status::PUBLISH_BAD_NAME),
        "{codes:?}"
    );
    let codes = attempt(&rc, Intent::Publish(format!("intruder?sign={expired}")));
    assert!(
        codes.iter().any(|c| c == status::PUBLISH_BAD_NAME),
        "{codes:?}"
    );

    // HTTP-FLV: 200 and the stream for a signed URL, 403 otherwise.
    let (head, _) = http_request(rc.http, "GET", &format!("/live/cam.flv?sign={expired}"));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = http_request(rc.http, "GET", "/live/cam.flv");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut s = std::net::TcpStream::connect(rc.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    std::io::Write::write_all(
        &mut s,
        format!("GET /live/cam.flv?sign={watch} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let give_up = Instant::now() + Duration::from_secs(10);
    while !got.windows(3).any(|w| w == b"FLV") && Instant::now() < give_up {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(got.windows(3).any(|w| w == b"FLV"), "no FLV body");

    assert!(refused_count(&rc, "ringcast_play_refused_total", "auth_signature") >= 7.0);
    assert!(refused_count(&rc, "ringcast_publish_refused_total", "auth_signature") >= 2.0);
    rc.wait_logged("play refused: signature expired", Duration::from_secs(5));
    rc.wait_logged("play refused: wrong signature", Duration::from_secs(5));
}

#[test]
fn address_rules_refuse_before_anything_else() {
    // Publishing only from 10.0.0.0/8: loopback may not publish; playing denied to 127/8.
    let rc = server(
        "cidr",
        "allow_publish = [\"10.0.0.0/8\"]\ndeny_play = [\"127.0.0.0/8\"]",
    );
    let codes = attempt(&rc, Intent::Publish("x".into()));
    assert!(
        codes.iter().any(|c| c == status::PUBLISH_BAD_NAME),
        "{codes:?}"
    );
    let codes = attempt(&rc, Intent::Play("x".into()));
    assert!(codes.iter().any(|c| c == status::PLAY_FAILED), "{codes:?}");
    let (head, _) = http_request(rc.http, "GET", "/live/x.flv");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(refused_count(&rc, "ringcast_publish_refused_total", "auth_address") >= 1.0);
    assert!(refused_count(&rc, "ringcast_play_refused_total", "auth_address") >= 2.0);

    // The same rules that include loopback allow it.
    let open = server(
        "cidr-open",
        "allow_publish = [\"127.0.0.1\", \"10.0.0.0/8\"]",
    );
    let mut p = Peer::connect(open.rtmp, Intent::Publish("y".into()));
    until("publishing", &mut [&mut p], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
}

#[test]
fn a_bad_rule_is_a_config_error_that_names_its_key() {
    let cfg = config_file("auth-bad", "[auth]\ndeny_play = [\"10.0.0.0/99\"]\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--config", cfg.to_str().expect("utf-8"), "--print-config"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.deny_play"), "{err}");
}

/// A callback service on a thread: allows names starting with `ok`, refuses the rest; the
/// bodies it received.
fn hook_service() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then Content-Length bytes of body.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let body = text
                .split_once("\r\n\r\n")
                .map(|x| x.1.to_owned())
                .unwrap_or_default();
            let ok = body.split('&').any(|kv| kv.starts_with("name=ok"));
            log.lock().expect("lock").push(body);
            let status = if ok { "200 OK" } else { "403 Forbidden" };
            let _ = s.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (addr, seen)
}

#[test]
fn callbacks_allow_one_name_refuse_another_and_hear_when_it_ends() {
    let (hook, seen) = hook_service();
    let rc = server(
        "hooks",
        &format!(
            "on_publish = \"http://{hook}/publish\"\non_play = \"http://{hook}/play\"\n\
             on_done = \"http://{hook}/done\"\nhook_timeout = \"1s\""
        ),
    );
    let codes = attempt(&rc, Intent::Publish("ok-cam?token=abc".into()));
    assert!(
        codes.iter().any(|c| c == status::PUBLISH_START),
        "{codes:?}"
    );
    let codes = attempt(&rc, Intent::Publish("denied".into()));
    assert!(
        codes.iter().any(|c| c == status::PUBLISH_BAD_NAME),
        "{codes:?}"
    );
    let codes = attempt(&rc, Intent::Play("denied".into()));
    assert!(codes.iter().any(|c| c == status::PLAY_FAILED), "{codes:?}");
    let (head, _) = http_request(rc.http, "GET", "/live/denied.flv");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // The allowed publisher went away when `attempt` dropped it: on_done hears it.
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let bodies = seen.lock().expect("lock").clone();
        if bodies
            .iter()
            .any(|b| b.contains("call=publish_done") && b.contains("name=ok-cam"))
        {
            let first = bodies
                .iter()
                .find(|b| b.contains("call=publish&"))
                .expect("on_publish");
            for field in [
                "addr=127.0.0.1",
                "app=live",
                "name=ok-cam",
                "query=token%3Dabc",
                "proto=rtmp",
                "token=abc",
            ] {
                assert!(first.contains(field), "{field} in {first}");
            }
            assert!(
                bodies
                    .iter()
                    .any(|b| b.contains("call=play&") && b.contains("proto=http_flv")),
                "{bodies:?}"
            );
            break;
        }
        assert!(Instant::now() < give_up, "no on_done: {bodies:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused_count(&rc, "ringcast_publish_refused_total", "auth_hook") >= 1.0);
    assert!(refused_count(&rc, "ringcast_play_refused_total", "auth_hook") >= 2.0);

    // The hook service is down: refused at once, with a reason that says so.
    let dead = common::nginx::free_port();
    let rc = server(
        "hooks-down",
        &format!("on_publish = \"http://127.0.0.1:{dead}/x\""),
    );
    let t0 = Instant::now();
    let codes = attempt(&rc, Intent::Publish("ok-anything".into()));
    assert!(
        codes.iter().any(|c| c == status::PUBLISH_BAD_NAME),
        "{codes:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let line = rc.wait_log("publish refused", Duration::from_secs(2));
    assert!(line.contains(&format!("127.0.0.1:{dead}")), "{line}");
}
