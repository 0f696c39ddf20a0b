//! The relay's network clients against real peers on loopback: the Redis stream registry
//! against a real `redis-server`, and the HTTP locator against a tiny server on a thread.
//! Every wait has a deadline, and every process started is killed at the end.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::nginx::free_port;
use common::redis::Redis;
use ringcast::relay::locator::{LocateError, Locator};
use ringcast::relay::registry::{Registry, RegistryError};
use ringcast::runtime::{Io, block_on};

/// How long one registry or locator operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// The backends this machine has: epoll, and io_uring where it can be set up.
fn backends() -> Vec<Io> {
    let mut v = vec![Io::Epoll];
    if Io::detect("auto").ok() == Some(Io::Uring) {
        v.push(Io::Uring);
    }
    v
}

#[test]
fn registry_sets_gets_expires_and_deletes_in_a_real_redis() {
    let redis = Redis::start();
    for io in backends() {
        let reg = Registry::parse(&redis.url(2)).expect("registry url");
        let db0 = Registry::parse(&redis.url(0)).expect("registry url");
        block_on(io, 256, async {
            let key = Registry::key("live", &format!("cam 1 {}", io.name()));
            let value = "rtmp://10.0.0.7:1935";

            // Set and get on db 2; db 0 does not see it.
            reg.set(io, &key, value, Duration::from_secs(60), OP_TIMEOUT)
                .await
                .expect("set");
            assert_eq!(
                reg.get(io, &key, OP_TIMEOUT).await.expect("get").as_deref(),
                Some(value),
                "{io:?}"
            );
            assert_eq!(db0.get(io, &key, OP_TIMEOUT).await.expect("get db 0"), None);

            // Delete; deleting again is no error.
            reg.del(io, &key, OP_TIMEOUT).await.expect("del");
            assert_eq!(reg.get(io, &key, OP_TIMEOUT).await.expect("get"), None);
            reg.del(io, &key, OP_TIMEOUT).await.expect("del again");

            // A 300 ms TTL: there at once, gone once it passes.
            let set_at = Instant::now();
            reg.set(io, &key, value, Duration::from_millis(300), OP_TIMEOUT)
                .await
                .expect("set with ttl");
            let first = reg.get(io, &key, OP_TIMEOUT).await.expect("get");
            assert!(
                first.is_some() || set_at.elapsed() >= Duration::from_millis(300),
                "{io:?}: gone before its TTL"
            );
            let deadline = set_at + Duration::from_secs(5);
            loop {
                match reg.get(io, &key, OP_TIMEOUT).await.expect("get") {
                    None => break,
                    Some(_) => {
                        assert!(Instant::now() < deadline, "{io:?}: the TTL did not expire");
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            }
            assert!(
                set_at.elapsed() >= Duration::from_millis(250),
                "{io:?}: expired after {:?}, before its TTL",
                set_at.elapsed()
            );
        })
        .expect("runtime");
    }
}

#[test]
fn registry_error_replies_are_server_errors() {
    let redis = Redis::start();
    // redis-server has 16 databases by default: SELECT 99 is refused.
    let reg = Registry::parse(&redis.url(99)).expect("registry url");
    block_on(Io::Epoll, 256, async {
        match reg.get(Io::Epoll, "k", OP_TIMEOUT).await {
            Err(RegistryError::Server(msg)) => assert!(msg.contains("DB"), "{msg}"),
            other => panic!("{other:?}"),
        }
    })
    .expect("runtime");
}

#[test]
fn registry_that_is_down_fails_fast() {
    let reg = Registry::parse(&format!("redis://127.0.0.1:{}", free_port())).expect("url");
    let started = Instant::now();
    block_on(Io::Epoll, 256, async {
        let e = reg
            .get(Io::Epoll, "k", Duration::from_secs(3))
            .await
            .expect_err("nobody listens");
        assert!(matches!(e, RegistryError::Connect { .. }), "{e}");
        let e = reg
            .set(
                Io::Epoll,
                "k",
                "v",
                Duration::from_secs(1),
                Duration::from_secs(3),
            )
            .await
            .expect_err("nobody listens");
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
    })
    .expect("runtime");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn registry_that_never_answers_times_out() {
    // A listener whose backlog accepts the connection but which never reads or replies.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let reg = Registry::parse(&format!("redis://127.0.0.1:{port}/1")).expect("url");
    let started = Instant::now();
    block_on(Io::Epoll, 256, async {
        let e = reg
            .get(Io::Epoll, "k", Duration::from_millis(300))
            .await
            .expect_err("no reply");
        assert!(matches!(e, RegistryError::Timeout(_)), "{e}");
    })
    .expect("runtime");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(silent);
}

/// A tiny HTTP locator on a thread: answers each request by its `stream` parameter and
/// sends the head of every request it got to `heads`. It stops after `conns` connections
/// or when its deadline passes.
fn locator_server(conns: usize) -> (SocketAddr, mpsc::Receiver<String>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < conns && Instant::now() < deadline {
            let mut conn = match listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            served += 1;
            conn.set_nonblocking(false).expect("blocking");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut head = Vec::new();
            let mut byte = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&byte[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split(' ').nth(1).unwrap_or("").to_owned();
            let _ = tx.send(head);
            let stream = target.rsplit("stream=").next().unwrap_or("");
            let response: &[u8] = match stream {
                "a" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\nrtmp://127.0.0.1:1935\n",
                "b" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
                "c" => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nrtmp:\r\n10\r\n//origin-2:1935 \r\n0\r\n\r\n",
                "text" => b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
                "my%20cam%26x%3D1" => b"HTTP/1.0 200 OK\r\n\r\nrtmp://origin-3/live\r\n",
                // "slow" and anything else: no answer until the client gives up.
                _ => {
                    let _ = conn.read(&mut byte);
                    continue;
                }
            };
            let _ = conn.write_all(response);
        }
    });
    (addr, rx, server)
}

#[test]
fn locator_answers_found_not_found_and_errors() {
    let (addr, heads, server) = locator_server(7);
    let locator = Locator::parse(&format!("http://{addr}/where")).expect("locator url");
    assert_eq!(locator.url(), format!("http://{addr}/where"));
    let io = Io::Epoll;
    block_on(io, 256, async {
        let ask = |stream: &'static str| locator.locate(io, "live", stream, OP_TIMEOUT);
        assert_eq!(
            ask("a").await.expect("a").as_deref(),
            Some("rtmp://127.0.0.1:1935")
        );
        assert_eq!(ask("b").await.expect("b"), None);
        match ask("c").await {
            Err(LocateError::Status { status: 500, .. }) => {}
            other => panic!("c: {other:?}"),
        }
        assert_eq!(
            ask("chunked").await.expect("chunked").as_deref(),
            Some("rtmp://origin-2:1935")
        );
        match ask("text").await {
            Err(LocateError::NotRtmpUrl(body)) => assert_eq!(body, "hello world"),
            other => panic!("text: {other:?}"),
        }
        assert_eq!(
            ask("my cam&x=1").await.expect("encoded").as_deref(),
            Some("rtmp://origin-3/live")
        );
        let started = Instant::now();
        match locator
            .locate(io, "live", "slow", Duration::from_millis(300))
            .await
        {
            Err(LocateError::Timeout(_)) => {}
            other => panic!("slow: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .expect("runtime");
    server.join().expect("server thread");

    let heads: Vec<String> = heads.try_iter().collect();
    assert_eq!(heads.len(), 7, "{heads:#?}");
    let first = &heads[0];
    assert!(
        first.starts_with("GET /where?app=live&stream=a HTTP/1.1\r\n"),
        "{first}"
    );
    assert!(first.contains(&format!("\r\nHost: {addr}\r\n")), "{first}");
    assert!(first.contains("\r\nConnection: close\r\n"), "{first}");
    assert!(
        heads[5].starts_with("GET /where?app=live&stream=my%20cam%26x%3D1 HTTP/1.1\r\n"),
        "{}",
        heads[5]
    );
}

#[test]
fn locator_that_is_down_fails_fast() {
    let locator = Locator::parse(&format!("http://127.0.0.1:{}/where", free_port())).expect("url");
    let started = Instant::now();
    block_on(Io::Epoll, 256, async {
        match locator
            .locate(Io::Epoll, "live", "a", Duration::from_secs(3))
            .await
        {
            Err(LocateError::Connect { .. }) => {}
            other => panic!("{other:?}"),
        }
    })
    .expect("runtime");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
