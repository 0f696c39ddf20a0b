//! `loadtest run` against a real RTMP server: nginx-rtmp (Debian's nginx with
//! libnginx-mod-rtmp, installed by scripts/test), started by this test on a loopback port
//! and stopped by it. Every player must get frames with no integrity error.

mod common;

// The nginx-rtmp helper the server's own tests use.
#[path = "../../tests/common/nginx.rs"]
#[allow(dead_code)] // the server's tests use all of it, this one a part
mod nginx;

use nginx::Nginx;

#[test]
fn every_player_gets_intact_frames_from_nginx_rtmp() {
    let nginx = Nginx::start(
        "loadtest",
        "application live { live on; wait_key on; wait_video on; }",
    );
    let url = format!("rtmp://127.0.0.1:{}/live/itest", nginx.port);
    let r = common::run(
        "nginx",
        &[
            "run",
            "--url",
            &url,
            "--players",
            "8",
            "--ramp",
            "100/s",
            "--duration",
            "5s",
            "--bitrate",
            "500k",
            "--gop",
            "1s",
            "--audio",
        ],
    );
    drop(nginx);
    let (report, stdout) = (&r.report, &r.stdout);
    let n = |path: &[&str]| r.n(path);
    assert_eq!(n(&["players", "connected"]), 8, "{stdout}");
    assert_eq!(n(&["players", "failed"]), 0, "{stdout}");
    assert_eq!(n(&["players", "by_end", "clean"]), 8, "{stdout}");
    assert_eq!(n(&["integrity_errors"]), 0, "{stdout}");
    // 8 players × (5 s minus the wait for a keyframe) at 30 fps.
    assert!(n(&["frames"]) > 8 * 3 * 30, "{stdout}");
    assert_eq!(n(&["ttff_ms", "count"]), 8);
    assert!(
        n(&["latency_ms", "count"]) >= n(&["frames"]) - 8,
        "{stdout}"
    );
    let p99 = report["latency_ms"]["p99"].as_f64().expect("p99");
    assert!(p99 < 1000.0, "loopback latency p99 {p99} ms: {stdout}");
}
