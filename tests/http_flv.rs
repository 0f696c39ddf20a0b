//! HTTP-FLV and WebSocket-FLV playback against the real binary: what ffmpeg publishes
//! reaches HTTP and WebSocket players byte for byte as RTMP players get it, ffprobe and
//! ffmpeg read the URL, a player stays across a republish with time that never goes back,
//! and bad requests get their status.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::flv_client::{FlvClient, Kind};
use common::{Peer, Ringcast, config_file, ffmpeg_publish, run, until};
use ringcast::flv::{self, TagType};
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::{Media, MediaKind};

/// Pumps `clients` until `done` holds (15 s at most).
fn wait(what: &str, clients: &mut [&mut FlvClient], done: impl Fn(&[&mut FlvClient]) -> bool) {
    let give_up = Instant::now() + Duration::from_secs(15);
    while !done(clients) {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        for c in clients.iter_mut() {
            c.pump();
        }
    }
}

/// The start every FLV player must see: metadata first, both sequence headers, and a video
/// keyframe as the first coded picture.
fn check_start(c: &FlvClient, what: &str) {
    assert_eq!(c.flags, Some((true, true)), "{what}: FLV header flags");
    let first = &c.tags[0].1;
    assert_eq!(first.tag_type, TagType::Script, "{what}: metadata first");
    let media = c.media();
    let avc_header = media
        .iter()
        .position(|(k, _, d)| *k == MediaKind::Video && d.get(1) == Some(&0))
        .expect("AVC sequence header");
    let aac_header = media
        .iter()
        .position(|(k, _, d)| *k == MediaKind::Audio && d.get(1) == Some(&0))
        .expect("AAC sequence header");
    let first_picture = media
        .iter()
        .position(|(k, _, d)| *k == MediaKind::Video && d.get(1) == Some(&1))
        .expect("a picture");
    assert!(
        avc_header < first_picture && aac_header < first_picture,
        "{what}"
    );
    assert_eq!(
        media[first_picture].2[0] >> 4,
        1,
        "{what}: starts at a keyframe"
    );
}

#[test]
fn http_and_websocket_players_get_what_rtmp_players_get() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let url = rc.url("cam");
    let _ffmpeg = ffmpeg_publish(
        &url,
        10,
        &common::test_av("320x240", 30, &["-bf", "2", "-b:v", "500k"]),
    );
    rc.wait_log("publish", Duration::from_secs(10));
    // Join once the first GOP is cached, all three at once.
    std::thread::sleep(Duration::from_millis(1500));
    let mut rtmp = Peer::connect(rc.rtmp, Intent::Play("cam".into()));
    let mut http = FlvClient::open(rc.http, "/live/cam.flv", Kind::Http);
    let mut ws = FlvClient::open(rc.http, "/live/cam.flv", Kind::Ws);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        rtmp.pump();
        http.pump();
        ws.pump();
    }
    assert!(
        http.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        http.head
    );
    for h in [
        "Content-Type: video/x-flv",
        "Transfer-Encoding: chunked",
        "Access-Control-Allow-Origin: *",
        "Cache-Control: no-cache",
    ] {
        assert!(http.head.contains(h), "{h} in {}", http.head);
    }
    assert!(ws.head.starts_with("HTTP/1.1 101"), "{}", ws.head);
    assert!(
        ws.head
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    check_start(&http, "HTTP-FLV");
    check_start(&ws, "WebSocket-FLV");
    // Byte for byte what the RTMP player got, from the same start.
    let want: Vec<(MediaKind, u32, Bytes)> = rtmp
        .media()
        .into_iter()
        .filter(|m| m.kind != MediaKind::Data)
        .map(
            |Media {
                 kind,
                 timestamp,
                 payload,
             }| (kind, timestamp, payload),
        )
        .collect();
    for (c, what) in [(&http, "HTTP-FLV"), (&ws, "WebSocket-FLV")] {
        let got = c.media();
        let n = got.len().min(want.len());
        assert!(n > 60, "{what}: only {n} tags in 3 s");
        assert!(
            got[..n - 10] == want[..n - 10],
            "{what}: payloads differ from RTMP"
        );
    }
    drop((http, ws, rtmp));

    // curl reads a valid FLV stream that starts as it must.
    let http_url = format!("http://{}/live/cam.flv", rc.http);
    let saved = common::tmp("curl.flv");
    let (_, out) = run(
        Command::new("curl")
            .args(["-s", "-m", "3", "-o"])
            .arg(&saved)
            .arg(&http_url),
        Duration::from_secs(10),
    );
    let mut file = BytesMut::from(&std::fs::read(&saved).expect("curl's file")[..]);
    let mut curl = FlvClient::open(rc.http, "/nothing", Kind::Http);
    curl.flv = std::mem::take(&mut file);
    while let Some(item) = curl.reader.read(&mut curl.flv).expect("curl got valid FLV") {
        match item {
            flv::Item::Header {
                has_audio,
                has_video,
            } => curl.flags = Some((has_audio, has_video)),
            flv::Item::Tag(t) => curl.tags.push((Instant::now(), t)),
        }
    }
    assert!(
        curl.tags.len() > 50,
        "curl: {} tags; {out}",
        curl.tags.len()
    );
    check_start(&curl, "curl");
    let _ = std::fs::remove_file(&saved);

    // ffprobe and ffmpeg take the URL.
    let (ok, out) = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &http_url,
        ]),
        Duration::from_secs(15),
    );
    assert!(
        ok && out.contains("h264") && out.contains("aac"),
        "ffprobe: {out}"
    );
    let rec = common::tmp("http-rec.flv");
    let (ok, out) = common::ffmpeg_record(&http_url, 2, &rec);
    assert!(ok, "ffmpeg -i {http_url}: {out}");
    let data = std::fs::read(&rec).expect("recording");
    assert!(data.len() > 20_000, "{} bytes recorded", data.len());
    let _ = std::fs::remove_file(&rec);
}

/// A synthetic publisher's stream of `frames` frames from `ts0`, its sequence headers
/// marked with `tag` so two publishers can be told apart.
fn synthetic(tag: u8, frames: u32) -> Vec<Media> {
    let mut out = vec![
        Media {
            kind: MediaKind::Video,
            timestamp: 0,
            payload: Bytes::from(vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, tag]),
        },
        Media {
            kind: MediaKind::Audio,
            timestamp: 0,
            payload: Bytes::from(vec![0xAF, 0, 0x12, tag]),
        },
    ];
    for i in 0..frames {
        let key = i % 15 == 0;
        out.push(Media {
            kind: MediaKind::Video,
            timestamp: i * 33,
            payload: Bytes::from(vec![
                if key { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                tag,
                i as u8,
            ]),
        });
        out.push(Media {
            kind: MediaKind::Audio,
            timestamp: i * 33,
            payload: Bytes::from(vec![0xAF, 1, tag, i as u8]),
        });
    }
    out
}

/// Publishes `media` paced at ~10x real time, then closes.
fn publish(addr: SocketAddr, name: &str, media: &[Media], clients: &mut [&mut FlvClient]) {
    let mut p = Peer::connect(addr, Intent::Publish(name.into()));
    until("publishing", &mut [&mut p], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    for m in media.chunks(4) {
        for x in m {
            p.client.send_media(x);
        }
        p.pump();
        for c in clients.iter_mut() {
            c.pump();
        }
        std::thread::sleep(Duration::from_millis(13));
    }
}

#[test]
fn a_player_stays_across_a_republish_and_its_time_never_goes_back() {
    let cfg = config_file("republish-http", "write_coalesce = \"0s\"\n");
    let rc = Ringcast::start(&["--cores", "2", "--config", cfg.to_str().expect("path")]);
    let mut http = FlvClient::open(rc.http, "/live/re.flv", Kind::Http);
    let mut ws = FlvClient::open(rc.http, "/live/re.flv", Kind::Ws);
    publish(rc.rtmp, "re", &synthetic(1, 60), &mut [&mut http, &mut ws]);
    wait(
        "the first publisher's last frame",
        &mut [&mut http, &mut ws],
        |c| {
            c.iter()
                .all(|c| c.media().iter().any(|(_, _, d)| d.ends_with(&[1, 59])))
        },
    );
    // The publisher went away; a new one starts its clock at 0 again.
    rc.wait_log("unpublished", Duration::from_secs(5));
    publish(rc.rtmp, "re", &synthetic(2, 40), &mut [&mut http, &mut ws]);
    wait(
        "the second publisher's last frame",
        &mut [&mut http, &mut ws],
        |c| {
            c.iter()
                .all(|c| c.media().iter().any(|(_, _, d)| d.ends_with(&[2, 39])))
        },
    );
    for (c, what) in [(&http, "HTTP-FLV"), (&ws, "WebSocket-FLV")] {
        assert!(!c.ended, "{what}: the body ended at the republish");
        let ts: Vec<u32> = c.tags.iter().map(|(_, t)| t.timestamp).collect();
        assert!(
            ts.windows(2).all(|w| w[1] >= w[0]),
            "{what}: time went back: {ts:?}"
        );
        let media = c.media();
        let header2 = media
            .iter()
            .position(|(k, _, d)| *k == MediaKind::Video && d.len() == 9 && d[8] == 2)
            .expect("the new sequence header");
        let key2 = media
            .iter()
            .position(|(k, _, d)| {
                *k == MediaKind::Video && d[0] == 0x17 && d.len() == 7 && d[5] == 2
            })
            .expect("the new keyframe");
        assert!(header2 < key2, "{what}: the new header after its keyframe");
        // The new timeline continues where the old one ended (59 * 33 ms).
        assert!(media[key2].1 >= 59 * 33, "{what}: {} ms", media[key2].1);
    }
}

#[test]
fn websocket_pings_are_answered_and_garbage_closes_the_connection() {
    let rc = Ringcast::start(&["--cores", "1"]);
    let mut ws = FlvClient::open(rc.http, "/live/w.flv", Kind::Ws);
    publish(rc.rtmp, "w", &synthetic(1, 10), &mut [&mut ws]);
    ws.send_frame(0x9, b"are you there");
    wait("a pong", &mut [&mut ws], |c| !c[0].pongs.is_empty());
    assert_eq!(&ws.pongs[0][..], b"are you there");
    // An unmasked frame is not from a client: closed with 1002.
    ws.sock.write_all(&[0x89, 0]).expect("garbage");
    wait("the close", &mut [&mut ws], |c| c[0].ended);
    assert_eq!(ws.close_code, Some(1002));
    // A clean close is answered with a close.
    let mut ws = FlvClient::open(rc.http, "/live/w.flv", Kind::Ws);
    wait("the answer", &mut [&mut ws], |c| !c[0].head.is_empty());
    ws.send_frame(0x8, &1000u16.to_be_bytes());
    wait("the close", &mut [&mut ws], |c| c[0].ended);
    assert_eq!(ws.close_code, Some(1000));
}

#[test]
fn a_stream_nobody_publishes_is_not_found_after_play_wait() {
    let cfg = config_file("notfound-http", "play_wait = \"1s\"\n");
    let rc = Ringcast::start(&["--cores", "1", "--config", cfg.to_str().expect("path")]);
    let started = Instant::now();
    let mut http = FlvClient::open(rc.http, "/live/none.flv", Kind::Http);
    let mut ws = FlvClient::open(rc.http, "/live/none.flv", Kind::Ws);
    wait("the ends", &mut [&mut http, &mut ws], |c| {
        c.iter().all(|c| c.ended)
    });
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(http.head.starts_with("HTTP/1.1 404"), "{}", http.head);
    assert_eq!(ws.close_code, Some(4404));
}

/// Sends `req` and returns the status line of the answer (or "closed").
fn status_of(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or("closed").to_owned()
}

#[test]
fn bad_requests_get_their_status_and_disturb_nobody() {
    let cfg = config_file("bad-http", "http_header_timeout = \"2s\"\n");
    let rc = Ringcast::start(&["--cores", "2", "--config", cfg.to_str().expect("path")]);
    // A witness HTTP-FLV player of a live stream.
    let mut witness = FlvClient::open(rc.http, "/live/ok.flv", Kind::Http);
    let mut p = Peer::connect(rc.rtmp, Intent::Publish("ok".into()));
    until("publishing", &mut [&mut p], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    let stream = synthetic(1, 600);
    let mut next = 0;
    let mut feed = |p: &mut Peer, witness: &mut FlvClient| {
        for m in &stream[next.min(stream.len())..(next + 4).min(stream.len())] {
            p.client.send_media(m);
        }
        next += 4;
        p.pump();
        witness.pump();
    };
    for _ in 0..10 {
        feed(&mut p, &mut witness);
    }
    let h = rc.http;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            {
                let mut r = b"GET /live/ok.flv HTTP/1.1\r\n".to_vec();
                for i in 0..70 {
                    r.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            },
            "HTTP/1.1 431",
        ),
        (
            {
                let mut r = b"GET /live/ok.flv HTTP/1.1\r\nX: ".to_vec();
                r.resize(17 * 1024, b'a');
                r
            },
            "HTTP/1.1 431",
        ),
        (
            b"POST /live/ok.flv HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 405",
        ),
        (b"GET /nothing HTTP/1.1\r\n\r\n".to_vec(), "HTTP/1.1 404"),
        (
            b"OPTIONS /live/ok.flv HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 204",
        ),
        (
            b"HEAD /live/ok.flv HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 200",
        ),
        (
            b"HEAD /live/none.flv HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 404",
        ),
    ];
    for (req, want) in cases {
        let got = status_of(h, &req);
        assert!(got.starts_with(want), "{want}: got {got:?}");
        feed(&mut p, &mut witness);
    }
    // One byte a second: closed at the header timeout.
    let mut slow = TcpStream::connect(h).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let started = Instant::now();
    let closed = loop {
        if slow.write_all(b"G").is_err() {
            break started.elapsed();
        }
        match slow.read(&mut [0u8; 64]) {
            Ok(0) | Err(_) if !matches!(slow.read(&mut [0u8; 1]), Err(ref e) if e.kind() == ErrorKind::WouldBlock) =>
            {
                break started.elapsed();
            }
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a slow head held"
        );
        for _ in 0..8 {
            feed(&mut p, &mut witness);
            std::thread::sleep(Duration::from_millis(13));
        }
    };
    assert!(
        closed >= Duration::from_millis(1900),
        "closed after {closed:?}"
    );
    // The witness never waited more than a second.
    for _ in 0..20 {
        feed(&mut p, &mut witness);
        std::thread::sleep(Duration::from_millis(13));
    }
    let arrivals: Vec<Instant> = witness.tags.iter().map(|(t, _)| *t).collect();
    let worst = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .expect("tags");
    assert!(
        worst < Duration::from_secs(1),
        "the witness waited {worst:?}"
    );
    assert!(!witness.ended);
}

/// The status line and body of `GET path`, as one text.
fn get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = common::http_request(addr, "GET", path);
    format!("{status}\r\n\r\n{body}")
}

#[test]
fn the_index_lists_live_streams_and_each_has_a_player_page() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let mut p = Peer::connect(rc.rtmp, Intent::Publish("listed".into()));
    until("publishing", &mut [&mut p], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    // Whichever core answers knows the stream (the owner announced it).
    for _ in 0..4 {
        let index = get(rc.http, "/");
        assert!(index.starts_with("HTTP/1.1 200"), "{index}");
        assert!(
            index.contains("<a href=\"/live/listed\">live/listed</a>"),
            "{index}"
        );
    }
    let page = get(rc.http, "/live/listed");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<!doctype html>"), "{page}");
    let cfg = ringcast::config::Config::default();
    assert!(page.contains(&format!("src=\"{}\"", cfg.player_script)));
    assert!(page.contains(&format!("integrity=\"{}\"", cfg.player_script_integrity)));
    assert!(page.contains("data-stream=\"live/listed\""));
}
