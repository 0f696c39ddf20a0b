//! `loadtest run` against a real RTMP server: nginx-rtmp (Debian's nginx with
//! libnginx-mod-rtmp, installed by scripts/test), started by this test on a loopback port
//! and stopped by it. Every player must get frames with no integrity error.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// nginx-rtmp in a temporary prefix; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn module() -> PathBuf {
    let candidates = [
        "/usr/lib/nginx/modules/ngx_rtmp_module.so",
        "/usr/share/nginx/modules/ngx_rtmp_module.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx-rtmp module installed (scripts/test installs libnginx-mod-rtmp)")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

fn start_nginx() -> Nginx {
    let dir = std::env::temp_dir().join(format!("loadtest-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let conf = format!(
        "load_module {module};
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{ live on; wait_key on; wait_video on; }}
    }}
}}
",
        module = module().display(),
        dir = dir.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write config");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx installed (scripts/test installs it)");
    let nginx = Nginx {
        child,
        port,
        _dir: TempDir(dir),
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < give_up, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

#[test]
fn every_player_gets_intact_frames_from_nginx_rtmp() {
    let nginx = start_nginx();
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
