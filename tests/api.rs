//! `/api/streams`, `/api/streams/APP/STREAM` and `DELETE` against the real binary on two
//! cores: the stream shows its codecs, resolution and players per protocol summed over the
//! cores, and a `DELETE` ends the publish (players hear UnpublishNotify).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Peer, Ringcast, ffmpeg_publish, http_request};
use ringcast::rtmp::session::client::Intent;
use ringcast::rtmp::session::status;
use serde_json::Value;

/// HTTP-FLV players that keep reading until dropped.
fn http_players(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /live/api.flv HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("request");
            s.set_read_timeout(Some(Duration::from_millis(1)))
                .expect("timeout");
            s
        })
        .collect()
}

#[test]
fn the_api_reports_streams_over_all_cores_and_delete_ends_a_publish() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let _ffmpeg = ffmpeg_publish(
        &rc.url("api"),
        30,
        &common::test_av("320x240", 25, &["-b:v", "300k"]),
    );
    rc.wait_log("publish", Duration::from_secs(10));
    let mut rtmp: Vec<Peer> = (0..3)
        .map(|_| Peer::connect(rc.rtmp, Intent::Play("api".into())))
        .collect();
    let mut http = http_players(rc.http, 2);
    let drain = |rtmp: &mut Vec<Peer>, http: &mut Vec<TcpStream>| {
        for p in rtmp.iter_mut() {
            p.pump();
        }
        for s in http.iter_mut() {
            let _ = s.read(&mut [0u8; 65536]);
        }
    };
    // Until every player is counted and the ingest bitrate has a few seconds.
    let give_up = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        drain(&mut rtmp, &mut http);
        let (status, body) = http_request(rc.http, "GET", "/api/streams");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let s = v["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["key"] == "live/api").cloned());
        if let Some(s) = s {
            let players = &s["players"];
            if players["rtmp"] == 3
                && players["http_flv"] == 2
                && s["publisher"]["ingest_kbps"].as_f64().unwrap_or(0.0) > 50.0
            {
                break s;
            }
        }
        assert!(
            Instant::now() < give_up,
            "the API never showed all players: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let p = &stream["publisher"];
    assert_eq!(p["video_codec"], "Avc", "{stream}");
    assert_eq!(p["audio_codec"], "Aac", "{stream}");
    assert_eq!(p["width"], 320.0, "{stream}");
    assert_eq!(p["height"], 240.0, "{stream}");
    assert_eq!(p["frame_rate"], 25.0, "{stream}");
    assert!(
        p["peer"]
            .as_str()
            .is_some_and(|s| s.starts_with("rtmp 127.0.0.1:"))
    );
    assert!(
        stream["gop_cache_frames"].as_u64().unwrap_or(0) > 0,
        "{stream}"
    );

    // One stream: its player addresses.
    let (status, body) = http_request(rc.http, "GET", "/api/streams/live/api");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let one: Value = serde_json::from_str(&body).expect("JSON");
    let addrs = one["player_addresses"].as_array().expect("addresses");
    assert_eq!(addrs.len(), 5, "{one}");
    assert_eq!(
        addrs
            .iter()
            .filter(|a| a.as_str().is_some_and(|a| a.starts_with("http_flv ")))
            .count(),
        2
    );
    let (status, _) = http_request(rc.http, "GET", "/api/streams/live/nothing");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    // DELETE ends the publish; RTMP players hear it.
    let (status, body) = http_request(rc.http, "DELETE", "/api/streams/live/api");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}: {body}");
    let give_up = Instant::now() + Duration::from_secs(10);
    while !rtmp.iter().all(|p| {
        p.codes_since(0)
            .iter()
            .any(|c| c == status::PLAY_UNPUBLISH_NOTIFY)
    }) {
        assert!(Instant::now() < give_up, "no UnpublishNotify after DELETE");
        drain(&mut rtmp, &mut http);
    }
    let (status, _) = http_request(rc.http, "DELETE", "/api/streams/live/api");
    assert!(
        status.starts_with("HTTP/1.1 404"),
        "a second DELETE: {status}"
    );
}
