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
