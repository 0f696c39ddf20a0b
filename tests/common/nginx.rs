//! nginx-rtmp (Debian's nginx with libnginx-mod-rtmp, installed by scripts/test) in a
//! temporary prefix on a loopback port, with the `application` blocks a test gives; killed
//! (and its prefix removed) on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx-rtmp.
pub struct Nginx {
    child: Child,
    /// Its RTMP port.
    pub port: u16,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn module() -> PathBuf {
    [
        "/usr/lib/nginx/modules/ngx_rtmp_module.so",
        "/usr/share/nginx/modules/ngx_rtmp_module.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("nginx-rtmp module installed (scripts/test installs libnginx-mod-rtmp)")
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

impl Nginx {
    /// Starts nginx-rtmp whose `server` block holds `applications`; waits until it listens.
    pub fn start(name: &str, applications: &str) -> Nginx {
        let dir =
            std::env::temp_dir().join(format!("ringcast-nginx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let conf = format!(
            "load_module {module};
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        {applications}
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
        let nginx = Nginx { child, port, dir };
        let give_up = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < give_up, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// `rtmp://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("rtmp://127.0.0.1:{}", self.port)
    }

    /// Its error log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}
