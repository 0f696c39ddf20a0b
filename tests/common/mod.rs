//! What the end-to-end tests share: the real `ringcast` binary on loopback port 0 with its
//! log captured, child processes stopped on drop, and a blocking peer driven by ringcast's
//! own client session (for command flows no real client can be told to send).

#![allow(dead_code)] // each test binary uses its own subset

pub mod flv_client;
pub mod nginx;
pub mod redis;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcast::rtmp::session::Media;
use ringcast::rtmp::session::client::{Client, ClientConfig, Event, Intent};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server binary with its log captured.
pub struct Ringcast {
    proc: Proc,
    /// The RTMP address it bound.
    pub rtmp: SocketAddr,
    /// The HTTP address it bound.
    pub http: SocketAddr,
    log: Arc<(Mutex<String>, Condvar)>,
    /// How far [`Ringcast::wait_log`] has read: each wait sees only newer lines.
    seen: std::cell::Cell<usize>,
}

impl Ringcast {
    /// Starts the binary on loopback port 0 with `args` and waits for its listening line.
    pub fn start(args: &[&str]) -> Ringcast {
        Ringcast::start_at("127.0.0.1:0", args)
    }

    /// Like [`Ringcast::start`], with RTMP on `rtmp` (to restart a server on its port).
    pub fn start_at(rtmp: &str, args: &[&str]) -> Ringcast {
        Ringcast::start_cmd(
            Command::new(env!("CARGO_BIN_EXE_ringcast")),
            rtmp,
            "127.0.0.1:0",
            args,
        )
    }

    /// Starts the binary inside network namespace `ns` (`ip netns exec`), listening on
    /// `rtmp` and `http` there.
    pub fn start_in_netns(ns: &str, rtmp: &str, http: &str, args: &[&str]) -> Ringcast {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ringcast")]);
        Ringcast::start_cmd(cmd, rtmp, http, args)
    }

    /// Like [`Ringcast::start`], with at most `nofile` open file descriptors.
    pub fn start_with_fd_limit(nofile: u32, args: &[&str]) -> Ringcast {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_ringcast"));
        Ringcast::start_cmd(cmd, "127.0.0.1:0", "127.0.0.1:0", args)
    }

    fn start_cmd(mut cmd: Command, rtmp: &str, http: &str, args: &[&str]) -> Ringcast {
        let mut child = cmd
            .args(["--rtmp", rtmp, "--http", http, "--log", "info"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringcast");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (m, c) = &*sink;
                let mut s = m.lock().expect("log lock");
                s.push_str(&line);
                s.push('\n');
                c.notify_all();
            }
        });
        let mut rc = Ringcast {
            proc: Proc(child),
            rtmp: "127.0.0.1:1".parse().expect("addr"),
            http: "127.0.0.1:1".parse().expect("addr"),
            log,
            seen: std::cell::Cell::new(0),
        };
        let line = rc.wait_log("listening", Duration::from_secs(10));
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("rtmp="))
            .expect("rtmp address in the listening line");
        rc.rtmp = addr.parse().expect("rtmp address");
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .expect("http address in the listening line");
        rc.http = http.parse().expect("http address");
        rc
    }

    /// Waits for a log line containing `needle` written after the line the previous wait
    /// matched; returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let (m, c) = &*self.log;
        let give_up = Instant::now() + timeout;
        let mut s = m.lock().expect("log lock");
        loop {
            let from = self.seen.get();
            let mut at = from;
            for line in s[from..].split_inclusive('\n') {
                at += line.len();
                if line.contains(needle) {
                    self.seen.set(at);
                    return line.trim_end().to_owned();
                }
            }
            let left = give_up.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no new log line with {needle:?} in:\n{s}");
            s = c.wait_timeout(s, left).expect("log lock").0;
        }
    }

    /// Makes the next [`Ringcast::wait_log`] look only at lines written from now on.
    pub fn skip_log(&self) {
        self.seen.set(self.log.0.lock().expect("log lock").len());
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// The server's CPU time (user + system) so far.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// Waits until the log holds a line containing `needle`, wherever it is (the server
    /// writes its log from a thread of its own, so a line can arrive after effects the test
    /// saw sooner, such as a metric).
    pub fn wait_logged(&self, needle: &str, timeout: Duration) {
        let (m, c) = &*self.log;
        let give_up = Instant::now() + timeout;
        let mut s = m.lock().expect("log lock");
        while !s.contains(needle) {
            let left = give_up.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no log line with {needle:?} in:\n{s}");
            s = c.wait_timeout(s, left).expect("log lock").0;
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.log.0.lock().expect("log lock").clone()
    }

    /// `rtmp://ADDR/live/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    /// Sends `signal` (`TERM`, `HUP` …) without waiting.
    pub fn signal(&self, signal: &str) {
        let pid = self.proc.0.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Waits (at most `limit`) for the process to exit; its status, or None if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + limit;
        loop {
            if let Some(st) = self.proc.0.try_wait().expect("wait") {
                return Some(st);
            }
            if Instant::now() >= give_up {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.proc.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.proc.0.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < give_up,
                "ringcast did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `kB` field of `/proc/PID/status`; 0 if unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `cmd` to its end or `timeout` (then kills it); (succeeded, stdout + stderr).
pub fn run(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut o = child.stdout.take().expect("stdout");
    let mut e = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = o.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = e.read_to_string(&mut s);
        s
    });
    let give_up = Instant::now() + timeout;
    let ok = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.success();
        }
        if Instant::now() >= give_up {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = out_t.join().unwrap_or_default();
    out.push_str(&err_t.join().unwrap_or_default());
    if !ok && Instant::now() >= give_up {
        out.push_str("\n(timed out)");
    }
    (ok, out)
}

/// A path in the temp dir unique to this test process.
pub fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ringcast-test-{}-{name}", std::process::id()))
}

/// Writes a config file for the binary; returns its path.
pub fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = tmp(name);
    std::fs::write(&path, text).expect("config");
    path
}

/// A client session on a blocking socket, pumped by hand.
pub struct Peer {
    /// The socket.
    pub sock: TcpStream,
    /// The session.
    pub client: Client,
    inbuf: BytesMut,
    /// Every event so far, with when it was read.
    pub events: Vec<(Instant, Event)>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

impl Peer {
    /// Connects to `addr` as a client of app `app` that will do `intent`.
    pub fn connect_app(addr: SocketAddr, app: &str, intent: Intent) -> Peer {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        sock.set_nodelay(true).expect("nodelay");
        let tc = format!("rtmp://{addr}/{app}");
        let mut client = Client::new(ClientConfig::new(app, &tc, intent), 5, 0);
        client.start();
        Peer {
            sock,
            client,
            inbuf: BytesMut::new(),
            events: Vec::new(),
            closed: false,
        }
    }

    /// Connects to `addr` as a client of app `live`.
    pub fn connect(addr: SocketAddr, intent: Intent) -> Peer {
        Peer::connect_app(addr, "live", intent)
    }

    /// Writes pending output and reads what is there (up to the 5 ms read timeout).
    pub fn pump(&mut self) {
        let out = self.client.take_output();
        if !out.is_empty() && !self.closed && self.sock.write_all(&out).is_err() {
            self.closed = true;
        }
        let mut buf = [0u8; 65536];
        while !self.closed {
            match self.sock.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.client
                        .handle_input(&mut self.inbuf, 0)
                        .expect("valid input");
                    let now = Instant::now();
                    while let Some(e) = self.client.poll_event() {
                        self.events.push((now, e));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => self.closed = true,
            }
        }
    }

    /// Media and data messages received, in order.
    pub fn media(&self) -> Vec<Media> {
        self.media_since(0)
    }

    /// Media and data messages received from event `from` on.
    pub fn media_since(&self, from: usize) -> Vec<Media> {
        self.events[from.min(self.events.len())..]
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Media(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether any event so far matches.
    pub fn has(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(|(_, e)| f(e))
    }

    /// Whether any event from index `from` on matches.
    pub fn has_since(&self, from: usize, f: impl Fn(&Event) -> bool) -> bool {
        self.events[from.min(self.events.len())..]
            .iter()
            .any(|(_, e)| f(e))
    }

    /// The status codes received from event `from` on, in order.
    pub fn codes_since(&self, from: usize) -> Vec<String> {
        self.events[from.min(self.events.len())..]
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Status { code, .. } => Some(code.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Pumps `peers` until `done` holds; panics after 15 s naming `what`.
pub fn until(what: &str, peers: &mut [&mut Peer], done: impl Fn(&[&mut Peer]) -> bool) {
    let give_up = Instant::now() + Duration::from_secs(15);
    while !done(peers) {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        for p in peers.iter_mut() {
            p.pump();
        }
    }
}

/// Pumps `peers` for `d` (to let what the server would send arrive).
pub fn pump_for(d: Duration, peers: &mut [&mut Peer]) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for p in peers.iter_mut() {
            p.pump();
        }
    }
}

/// ffmpeg publishing `seconds` to `url` in real time (`-re`), as FLV, from the lavfi inputs
/// and codec options in `args` (e.g. `-f lavfi -i sine=… -c:a aac`).
pub fn ffmpeg_publish<S: AsRef<std::ffi::OsStr>>(url: &str, seconds: u32, args: &[S]) -> Proc {
    Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(args)
            .args(["-t", &seconds.to_string(), "-f", "flv", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg installed (scripts/test installs it)"),
    )
}

/// ffmpeg's arguments for a test picture of `size` (`WxH`) at `fps` with a sine tone,
/// encoded to H.264 (ultrafast, a keyframe a second, plus `video`) and AAC.
pub fn test_av(size: &str, fps: u32, video: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-f".to_owned(),
        "lavfi".to_owned(),
        "-i".to_owned(),
        format!("testsrc2=size={size}:rate={fps}"),
        "-f".to_owned(),
        "lavfi".to_owned(),
        "-i".to_owned(),
        "sine=f=440".to_owned(),
        "-c:v".to_owned(),
        "libx264".to_owned(),
        "-preset".to_owned(),
        "ultrafast".to_owned(),
        "-g".to_owned(),
        fps.to_string(),
    ]
    .into();
    args.extend(video.iter().map(|v| (*v).to_owned()));
    args.extend(["-c:a".to_owned(), "aac".to_owned()]);
    args
}

/// The body of `METHOD path` over HTTP/1.1 (the connection closes after it): (status
/// line, body).
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// `ffmpeg -i URL -t SECONDS -c copy -f flv OUT`: records `seconds` of a play (bounded at
/// 20 s); (succeeded, output).
pub fn ffmpeg_record(url: &str, seconds: u32, out: &std::path::Path) -> (bool, String) {
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i", url])
            .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv"])
            .arg(out),
        Duration::from_secs(20),
    )
}
