//! Metrics against a real Prometheus: it scrapes ringcast (two cores) every second while
//! ffmpeg publishes and RTMP and HTTP-FLV players play; every expression of the Grafana
//! dashboard returns data, `promtool check metrics` accepts the exposition, and the delivery
//! latency histogram grows with a p99 between 0 and 1 s. Then the figures are checked
//! against what the test's own clients counted.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Peer, Proc, Ringcast, ffmpeg_publish, until};
use ringcast::rtmp::session::client::{Event, Intent};
use ringcast::rtmp::session::{Media, MediaKind};
use serde_json::Value;

/// The body of `GET path`.
fn get(addr: SocketAddr, path: &str) -> String {
    common::http_request(addr, "GET", path).1
}

/// `%`-encodes a query value.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query; None while Prometheus cannot answer yet.
fn try_query(prom: SocketAddr, q: &str) -> Option<Vec<Value>> {
    TcpStream::connect(prom).ok()?;
    let body = get(prom, &format!("/api/v1/query?query={}", encode(q)));
    let v: Value = serde_json::from_str(&body).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The result vector of an instant query.
fn query(prom: SocketAddr, q: &str) -> Vec<Value> {
    try_query(prom, q).unwrap_or_else(|| panic!("prometheus did not answer {q:?}"))
}

/// The first value of an instant query, as a number.
fn scalar(prom: SocketAddr, q: &str) -> Option<f64> {
    let r = query(prom, q);
    r.first()?["value"][1].as_str()?.parse().ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An HTTP-FLV player reading (and discarding) for `d`.
fn http_player(addr: SocketAddr, path: &str, d: Duration) -> std::thread::JoinHandle<usize> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("request");
        let end = Instant::now() + d;
        let mut total = 0;
        let mut buf = [0u8; 65536];
        while Instant::now() < end {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        total
    })
}

#[test]
fn prometheus_scrapes_and_every_dashboard_expression_has_data() {
    assert!(
        Path::new("/usr/bin/prometheus").exists(),
        "run scripts/test: it installs Debian's prometheus"
    );
    let cfg = common::config_file("prom", "metrics_streams = 5\n");
    let rc = Ringcast::start(&["--cores", "2", "--config", cfg.to_str().expect("path")]);
    let _ffmpeg = ffmpeg_publish(
        &rc.url("prom"),
        30,
        &common::test_av("320x240", 30, &["-b:v", "400k"]),
    );
    rc.wait_log("publish", Duration::from_secs(10));

    let dir = common::tmp("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ringcast\n    static_configs:\n      - targets: ['{}']\n",
            rc.http
        ),
    )
    .expect("config");
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    // Players of both protocols for the whole measurement.
    // Reads until the test is over (the thread ends with the process if not before).
    let _http = http_player(rc.http, "/live/prom.flv", Duration::from_secs(60));
    let mut rtmp = Peer::connect(rc.rtmp, Intent::Play("prom".into()));
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        rtmp.pump();
        let up = try_query(prom, "up").is_some_and(|r| {
            r.first()
                .and_then(|v| v["value"][1].as_str().map(|x| x == "1"))
                .unwrap_or(false)
        });
        if up {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "prometheus never scraped ringcast"
        );
    }
    let count = "sum(ringcast_delivery_latency_seconds_count)";
    // A few scrapes with traffic.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        rtmp.pump();
    }
    let first = scalar(prom, count).expect("latency count");
    let more = Instant::now() + Duration::from_secs(3);
    while Instant::now() < more {
        rtmp.pump();
    }
    let second = scalar(prom, count).expect("latency count");
    assert!(
        second > first,
        "the latency histogram did not grow: {first} -> {second}"
    );
    let p99 = scalar(
        prom,
        "histogram_quantile(0.99, sum by (le) (rate(ringcast_delivery_latency_seconds_bucket[1m])))",
    )
    .expect("p99");
    assert!(p99 > 0.0 && p99 < 1.0, "delivery latency p99 {p99} s");

    // Every expression of the dashboard returns data.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/ringcast.json"),
        )
        .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut exprs = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let e = target["expr"].as_str().expect("expr");
            assert!(
                !query(prom, e).is_empty(),
                "no data for {e:?} ({})",
                panel["title"]
            );
            exprs += 1;
        }
    }
    assert!(exprs >= 15, "{exprs} expressions");
    // Both protocols were counted, summed over the cores.
    for proto in ["rtmp", "http_flv"] {
        let sent = scalar(
            prom,
            &format!("sum(ringcast_bytes_sent_total{{proto=\"{proto}\"}})"),
        )
        .unwrap_or(0.0);
        assert!(sent > 100_000.0, "{proto}: {sent} bytes sent");
    }

    // Per-stream figures (metrics_streams), summed over the cores.
    let players = scalar(
        prom,
        "sum by (stream) (ringcast_stream_players{app=\"live\",stream=\"prom\"})",
    );
    assert_eq!(players, Some(2.0), "per-stream players of live/prom");

    // promtool accepts the exposition.
    let exposition = get(rc.http, "/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A value of the exposition: the sum over every series of `name` whose labels hold all
/// of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric_name = series.split('{').next()?;
            (metric_name == name && labels.iter().all(|lab| series.contains(lab)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn the_figures_agree_with_what_the_clients_counted() {
    let rc = Ringcast::start(&["--cores", "2"]);
    let before = get(rc.http, "/metrics");
    let base_conns = metric(&before, "ringcast_connections_total", &["proto=\"rtmp\""]);
    let base_sent = metric(&before, "ringcast_bytes_sent_total", &["proto=\"rtmp\""]);
    let mut publisher = Peer::connect(rc.rtmp, Intent::Publish("truth".into()));
    until("publishing", &mut [&mut publisher], |p| {
        p[0].has(|e| matches!(e, Event::Publishing { .. }))
    });
    // Players count what they read on their own sockets (a proxy in the Peer: the bytes
    // its client session consumed).
    let mut players: Vec<Peer> = (0..6)
        .map(|_| Peer::connect(rc.rtmp, Intent::Play("truth".into())))
        .collect();
    for i in 0..90u32 {
        let key = i % 30 == 0;
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        v.resize(2_000, i as u8);
        publisher.client.send_media(&Media {
            kind: MediaKind::Video,
            timestamp: i * 33,
            payload: Bytes::from(v),
        });
        publisher.pump();
        for p in players.iter_mut() {
            p.pump();
        }
    }
    let mut refs: Vec<&mut Peer> = players.iter_mut().collect();
    until("the last frame everywhere", &mut refs, |p| {
        p.iter()
            .all(|p| p.media().last().is_some_and(|m| m.timestamp == 89 * 33))
    });
    // Whatever is still on its way arrives.
    common::pump_for(Duration::from_millis(500), &mut refs);
    drop(refs);
    publisher.pump();
    // The players close first, and the server must have seen them go before the publisher
    // leaves (or it would tell them, into closed sockets); then the publisher closes.
    let mut read: u64 = players.iter().map(|p| p.client.byte_counts().0).sum();
    drop(players);
    let closed = |after: &str| {
        metric(
            after,
            "ringcast_connections_closed_total",
            &["proto=\"rtmp\""],
        )
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    while closed(&get(rc.http, "/metrics")) < 6.0 {
        assert!(
            Instant::now() < give_up,
            "the server did not see the players go"
        );
        publisher.pump();
        std::thread::sleep(Duration::from_millis(20));
    }
    publisher.pump();
    read += publisher.client.byte_counts().0;
    drop(publisher);
    loop {
        let after = get(rc.http, "/metrics");
        let conns = metric(&after, "ringcast_connections_total", &["proto=\"rtmp\""]) - base_conns;
        let sent = metric(&after, "ringcast_bytes_sent_total", &["proto=\"rtmp\""]) - base_sent;
        let closed = closed(&after);
        if closed >= 7.0 {
            assert_eq!(conns, 7.0, "connections_total");
            assert_eq!(
                sent, read as f64,
                "bytes_sent_total against the bytes the clients read"
            );
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the server did not see the closes: {after}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
