//! `loadtest soak` against the ringcast server, started in this process on loopback port 0
//! (so the process it samples is this one): a short soak with every kind of peer and
//! publisher churn ends with a parseable report, samples that make sense, no integrity
//! error across the publishers' leaves and returns, and a server that still accepts.

mod common;

use std::time::Duration;

use common::{server_config, spawn};

#[test]
fn a_short_soak_with_churn_reports_samples_and_no_integrity_error() {
    let server = ringcast::server::start(&server_config(2)).expect("server starts");
    let url = format!("rtmp://{}/live", server.rtmp_addr);
    let pid = std::process::id().to_string();
    let http = server.http_addr.to_string();
    let run = spawn(
        "soak",
        &[
            "soak",
            "--url",
            &url,
            "--duration",
            "15s",
            "--warmup",
            "5s",
            "--sample",
            "1s",
            "--window",
            "2s",
            "--streams",
            "3",
            "--players",
            "20",
            // Every player protocol, in turn.
            "--player-kind",
            "rtmp,http-flv,ws-flv",
            "--http",
            &http,
            "--player-life",
            "2s..6s",
            "--ramp",
            "40/s",
            // Short lives and pauses, well under the server's republish_wait (10 s), so
            // that players play across publishers' leaves and returns.
            "--publisher-life",
            "3s..6s",
            "--publisher-pause",
            "500ms..1500ms",
            "--slow",
            "1",
            "--slow-hold",
            "3s..5s",
            "--garbage",
            "1",
            "--bitrate",
            "300k",
            "--seed",
            "13",
            "--server-pid",
            &pid,
        ],
    );
    // 15 s of soak, a few seconds for the last players and the final check.
    let (status, r) = run.finish_within(Duration::from_secs(90));
    server.shutdown();
    let out = &r.stdout;

    // Flatness is not judged over 15 s (too noisy); everything else must hold.
    let failures: Vec<&str> = r.report["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        failures.iter().all(|f| f.starts_with("not flat")),
        "{failures:?}: {out}"
    );
    assert_eq!(
        status.success(),
        failures.is_empty(),
        "the exit status follows the report: {out}"
    );
    assert_eq!(r.report["pass"].as_bool(), Some(failures.is_empty()));
    assert_eq!(r.n(&["integrity_errors"]), 0, "{out}");
    assert_eq!(
        r.report["final_accept"]["ok"].as_bool(),
        Some(true),
        "{out}"
    );
    assert!(r.n(&["final_accept", "frames"]) > 0, "{out}");
    assert_eq!(r.report["server"]["alive"].as_bool(), Some(true), "{out}");

    // A sample a second, each plausible.
    let samples = r.report["samples"].as_array().expect("samples");
    assert!(samples.len() >= 14, "{} samples: {out}", samples.len());
    for s in samples {
        assert!(s["rss_kib"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(s["fds"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(s["players"].as_u64().is_some_and(|p| p <= 20), "{s}");
        assert!(s["publishers"].as_u64().is_some_and(|p| p <= 3), "{s}");
    }
    assert!(
        r.report["server"]["warm"]["rss_kib"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(r.report["server"]["end"]["fds"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(r.report["server"]["flat"].is_boolean(), "{out}");

    // The churn happened: players came and went, publishers left and came back while
    // players played on, and the misbehaving peers ran.
    assert!(r.n(&["players", "sessions"]) > 20, "{out}");
    assert!(r.n(&["players", "connected"]) > 20, "{out}");
    assert!(r.n(&["publishers", "sessions"]) > 3, "{out}");
    assert!(r.n(&["players", "publisher_switches"]) > 0, "{out}");
    assert!(r.n(&["frames"]) > 0, "{out}");
    assert!(r.n(&["slow", "sessions"]) >= 1, "{out}");
    assert!(r.n(&["garbage", "sessions"]) >= 1, "{out}");
    assert!(r.n(&["garbage", "bytes"]) > 0, "{out}");
}
