//! The real `ringcast` binary on loopback ports, driven by real clients: ffmpeg publishes
//! (H.264 with B-frames + AAC); ffprobe, ffmpeg and rtmpdump play. scripts/test installs
//! ffmpeg and rtmpdump. Every process a test starts is stopped by the test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Proc, Ringcast, ffmpeg_publish, ffmpeg_record, run, tmp};
use ringcast::flv::{self, Item, TagType};

/// ffmpeg publishing `seconds` of a generated H.264 (B-frames) + AAC stream in real time.
fn publish(url: &str, seconds: u32) -> Proc {
    ffmpeg_publish(
        url,
        seconds,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "2",
            "-g",
            "25",
            "-c:a",
            "aac",
        ],
    )
}

/// Checks a recorded FLV: metadata, both sequence headers, and video starting on a keyframe.
fn check_flv(path: &std::path::Path) {
    let data = std::fs::read(path).expect("output file");
    let mut buf = BytesMut::from(&data[..]);
    let mut r = flv::Reader::default();
    let mut tags = Vec::new();
    while let Some(item) = r.read(&mut buf).expect("valid FLV") {
        if let Item::Tag(t) = item {
            tags.push(t);
        }
    }
    let video: Vec<_> = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Video)
        .collect();
    let audio: Vec<_> = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Audio)
        .collect();
    assert!(
        video.len() > 10,
        "{} video tags in {}",
        video.len(),
        path.display()
    );
    assert!(
        flv::is_video_sequence_header(&video[0].data),
        "video starts with its sequence header"
    );
    assert!(flv::is_video_keyframe(&video[1].data), "then a keyframe");
    assert!(
        audio.iter().any(|a| flv::is_audio_sequence_header(&a.data)),
        "AAC sequence header"
    );
    assert!(
        tags.iter().any(|t| t.tag_type == TagType::Script),
        "metadata"
    );
}

/// ffprobe's codec names for `url`, one a line; (succeeded, output).
fn ffprobe_codecs(url: &str) -> (bool, String) {
    run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(15),
    )
}

fn interop(args: &[&str], tag: &str) {
    let rc = Ringcast::start(args);
    let url = rc.url(tag);
    let _publisher = publish(&url, 30);
    rc.wait_log("publish", Duration::from_secs(15));

    let (ok, out) = ffprobe_codecs(&url);
    assert!(
        ok && out.contains("h264") && out.contains("aac"),
        "ffprobe: {out}"
    );

    let f1 = tmp(&format!("{tag}-ffmpeg.flv"));
    let (ok, out) = ffmpeg_record(&url, 2, &f1);
    assert!(ok, "ffmpeg play: {out}");
    check_flv(&f1);

    // rtmpdump does not end a live play by itself: bound it with SIGINT.
    let f2 = tmp(&format!("{tag}-rtmpdump.flv"));
    let _ = run(
        Command::new("timeout")
            .args(["-s", "INT", "3", "rtmpdump", "-q", "-v", "-r", &url, "-o"])
            .arg(&f2),
        Duration::from_secs(15),
    );
    check_flv(&f2);

    // SIGTERM with a player connected: a clean exit. Only a play logged from here on is
    // this player's.
    rc.skip_log();
    let mut player = Proc(
        Command::new("rtmpdump")
            .args(["-q", "-v", "-r", &url, "-o", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rtmpdump"),
    );
    rc.wait_log("play", Duration::from_secs(10));
    let status = rc.terminate();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let give_up = Instant::now() + Duration::from_secs(10);
    while player.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < give_up, "the player was not disconnected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(f1);
    let _ = std::fs::remove_file(f2);
}

#[test]
fn real_clients_publish_and_play_on_two_cores() {
    interop(&["--cores", "2"], "two-cores");
}

#[test]
fn real_clients_publish_and_play_on_epoll() {
    interop(&["--cores", "2", "--io", "epoll"], "epoll");
}

#[test]
fn unknown_stream_duplicate_publish_and_garbage() {
    let conf = tmp("stream-life.toml");
    std::fs::write(&conf, "play_wait = \"1s\"\nrepublish_wait = \"2s\"\n").expect("config");
    let rc = Ringcast::start(&["--cores", "1", "--config", conf.to_str().expect("path")]);

    // A player of a stream nobody publishes gets StreamNotFound after play_wait.
    let started = Instant::now();
    let (ok, out) = run(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                &rc.url("nobody"),
                "-t",
                "1",
            ])
            .args(["-f", "null", "-"]),
        Duration::from_secs(20),
    );
    assert!(!ok, "playing an unknown stream must fail: {out}");
    rc.wait_log("stream not found", Duration::from_secs(5));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A second publisher of a name in use is refused; the first goes on.
    let url = rc.url("taken");
    let _first = publish(&url, 30);
    rc.wait_log("publish peer", Duration::from_secs(15));
    let (ok, _) = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi"])
            .args([
                "-i",
                "testsrc=size=64x64:rate=10",
                "-t",
                "5",
                "-c:v",
                "libx264",
            ])
            .args(["-f", "flv", &url]),
        Duration::from_secs(20),
    );
    assert!(!ok, "the second publisher must be refused");
    rc.wait_log("name in use", Duration::from_secs(5));

    // Garbage on a connection closes that connection only.
    let mut junk = TcpStream::connect(rc.rtmp).expect("connect");
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    junk.write_all(&[0x03; 1]).expect("c0");
    junk.write_all(&vec![0xA5; 1536 * 2]).expect("c1 c2");
    junk.write_all(&[0xFF; 4096]).expect("garbage");
    let mut b = [0u8; 65536];
    let mut closed = false;
    for _ in 0..100 {
        match junk.read(&mut b) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(
        closed,
        "the server must close a connection that sends garbage"
    );
    rc.wait_log("protocol error", Duration::from_secs(5));
    let (ok, out) = ffprobe_codecs(&url);
    assert!(ok && out.contains("h264"), "the stream goes on: {out}");
    assert_eq!(rc.terminate().code(), Some(0));
    let _ = std::fs::remove_file(conf);
}
