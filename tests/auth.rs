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
    let log = rc.log();
    assert!(log.contains("play refused: signature expired"), "{log}");
    assert!(log.contains("play refused: wrong signature"), "{log}");
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
