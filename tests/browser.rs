//! A real browser plays the player page: headless Chromium (Debian's) opens
//! `http://HOST/live/NAME` while ffmpeg publishes 640x360 H.264/AAC, and the video must
//! advance by more than 2 s with more than 50 frames decoded at 640x360 and no player
//! error, over HTTP-FLV and then, after the page's toggle, over WebSocket-FLV.
//!
//! `scripts/test` installs Chromium and, into `tests/browser/node_modules`, playwright-core
//! and mpegts.js; the page's request for the CDN copy of mpegts.js is answered with the
//! local one, which must match the page's SRI hash. Screenshots go to
//! `target/browser-test/`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Ringcast, ffmpeg_publish, run};
use ringcast::config::Config;

#[test]
fn chromium_plays_the_player_page_over_http_flv_and_websocket_flv() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mpegts = dir.join("node_modules/mpegts.js/dist/mpegts.js");
    assert!(
        mpegts.exists() && Path::new("/usr/bin/chromium").exists(),
        "run scripts/test: it installs chromium and tests/browser/node_modules"
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-test");
    std::fs::create_dir_all(&out).expect("screenshot folder");

    let rc = Ringcast::start(&["--cores", "2"]);
    let _ffmpeg = ffmpeg_publish(
        &rc.url("browser"),
        40,
        &common::test_av("640x360", 30, &["-tune", "zerolatency", "-b:v", "800k"]),
    );
    rc.wait_log("publish", Duration::from_secs(10));
    let page = format!("http://{}/live/browser", rc.http);
    let script = Config::default().player_script;
    let (ok, output) = run(
        Command::new("node")
            .arg(dir.join("play.mjs"))
            .arg(&page)
            .arg(&script)
            .arg(&mpegts)
            .arg(&out),
        Duration::from_secs(45),
    );
    println!("{output}");
    assert!(ok, "the browser did not play the stream:\n{output}");
    for transport in ["http-flv", "ws-flv"] {
        let line = output
            .lines()
            .find(|l| l.contains(&format!("\"transport\":\"{transport}\"")))
            .unwrap_or_else(|| panic!("no result for {transport}:\n{output}"));
        assert!(line.contains("\"ok\":true"), "{line}");
        assert!(out.join(format!("{transport}.png")).exists());
    }
}
