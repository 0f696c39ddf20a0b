//! What the loadtest integration tests share: running `loadtest` with a JSON report, the
//! in-process ringcast server's test config, and a blocking player on ringcast's client
//! session.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcast::config::Config;
use ringcast::rtmp::session::client::{Client, ClientConfig, Event, Intent};

/// A ringcast config on loopback port 0 with `cores` core threads and quiet logs.
pub fn server_config(cores: usize) -> Config {
    Config {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        cores,
        log: "warn".into(),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A `loadtest` process writing a JSON report.
pub struct Run {
    child: Child,
    json: PathBuf,
}

/// What a finished run printed and reported.
pub struct Finished {
    /// The summary it printed (for assertion messages).
    pub stdout: String,
    /// The JSON report.
    pub report: serde_json::Value,
}

impl Finished {
    /// The integer at `path` in the report.
    pub fn n(&self, path: &[&str]) -> u64 {
        path.iter()
            .fold(&self.report, |v, k| &v[*k])
            .as_u64()
            .unwrap_or_else(|| panic!("{path:?} in {}", self.report))
    }
}

/// Starts `loadtest ARGS --json FILE`; `tag` keeps concurrent runs' reports apart.
pub fn spawn(tag: &str, args: &[&str]) -> Run {
    let json = std::env::temp_dir().join(format!("loadtest-{tag}-{}.json", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadtest");
    Run { child, json }
}

impl Run {
    /// Waits for the run; it must succeed and leave its report.
    pub fn finish(self) -> Finished {
        let out = self.child.wait_with_output().expect("loadtest finishes");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "loadtest failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = serde_json::from_slice(&std::fs::read(&self.json).expect("report written"))
            .expect("JSON");
        let _ = std::fs::remove_file(&self.json);
        Finished { stdout, report }
    }
}

impl Run {
    /// Waits at most `limit` for the run (killing it past that, and failing), whatever its
    /// exit status; it must leave its report.
    pub fn finish_within(mut self, limit: Duration) -> (ExitStatus, Finished) {
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_string(&mut text);
                }
                text
            })
        };
        let stdout = drain(self.child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(self.child.stderr.take().map(|p| Box::new(p) as _));
        let give_up = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for loadtest") {
                break status;
            }
            if Instant::now() >= give_up {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "loadtest ran past {limit:?}: {}",
                    stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let report = std::fs::read(&self.json)
            .unwrap_or_else(|e| panic!("no report ({e}): {stdout}\n{stderr}"));
        let _ = std::fs::remove_file(&self.json);
        let report = serde_json::from_slice(&report).expect("JSON");
        (status, Finished { stdout, report })
    }
}

/// `loadtest ARGS --json FILE`, to the end.
pub fn run(tag: &str, args: &[&str]) -> Finished {
    spawn(tag, args).finish()
}

/// A player on ringcast's client session over a blocking socket, driven by hand.
pub struct Player {
    pub sock: TcpStream,
    client: Client,
    inbuf: BytesMut,
    buf: Vec<u8>,
}

impl Player {
    /// Connects and asks to play `live/NAME`.
    pub fn connect(addr: SocketAddr, name: &str) -> Player {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let tc = format!("rtmp://{addr}/live");
        let mut client = Client::new(
            ClientConfig::new("live", &tc, Intent::Play(name.into())),
            3,
            0,
        );
        client.start();
        Player {
            sock,
            client,
            inbuf: BytesMut::new(),
            buf: vec![0u8; 65536],
        }
    }

    /// Sends what the session wants sent, reads once, and returns the events it produced.
    pub fn step(&mut self) -> Vec<Event> {
        self.sock
            .write_all(&self.client.take_output())
            .expect("write");
        let n = self.sock.read(&mut self.buf).expect("read");
        assert!(n > 0, "the server closed the player");
        self.inbuf.extend_from_slice(&self.buf[..n]);
        self.client
            .handle_input(&mut self.inbuf, 0)
            .expect("valid input");
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// Reads and discards until the server closes the connection (true), or `limit` passes
    /// (false). A read that merely times out is not a close.
    pub fn drained_to_close(&mut self, limit: Duration) -> bool {
        let give_up = Instant::now() + limit;
        while Instant::now() < give_up {
            match self.sock.read(&mut self.buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Steps until playback starts (bounded).
    pub fn until_playing(&mut self) {
        let give_up = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(Instant::now() < give_up, "the player never started");
            if self
                .step()
                .iter()
                .any(|e| matches!(e, Event::Playing { .. }))
            {
                self.sock
                    .write_all(&self.client.take_output())
                    .expect("write");
                return;
            }
        }
    }
}
