//! The deployment files: the systemd unit passes `systemd-analyze verify` with no warning,
//! the Kubernetes manifests validate against the Kubernetes schemas (`kubernetes-validate
//! --strict`, offline), the TOML their ConfigMap carries is a configuration ringcast
//! accepts, and the Dockerfile builds a non-root image from two stages (this machine cannot
//! pull base images, so it is not built here).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::run;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_systemd_unit_verifies_without_a_warning() {
    let unit =
        std::fs::read_to_string(root().join("deploy/systemd/ringcast.service")).expect("the unit");
    for key in [
        "Restart=on-failure",
        "LimitNOFILE=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
    // Verify it as installed, with the binary this build made in ExecStart's place.
    let dir = common::tmp("deploy-systemd");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ringcast.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ringcast", env!("CARGO_BIN_EXE_ringcast")),
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/test installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // It reports parse problems on stderr but still exits 0: none may appear.
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ringcast.service"))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_kubernetes_manifests_validate_and_their_config_is_ringcasts() {
    let dir = root().join("deploy/kubernetes");
    let files: Vec<String> = ["configmap.yaml", "origin.yaml", "edge.yaml"]
        .iter()
        .map(|f| dir.join(f).to_string_lossy().into_owned())
        .collect();
    let mut cmd = Command::new("kubernetes-validate");
    cmd.arg("--strict").args(&files);
    let (ok, out) = run(&mut cmd, Duration::from_secs(60));
    assert!(ok, "kubernetes-validate (scripts/test installs it):\n{out}");
    assert_eq!(out.matches(" passed ").count(), 6, "{out}");
    for (file, needles) in [
        (
            "origin.yaml",
            &[
                "readinessProbe",
                "livenessProbe",
                "preStop",
                "/healthz",
                "prometheus.io/scrape",
                "requests",
                "kind: Service",
            ][..],
        ),
        (
            "edge.yaml",
            &[
                "readinessProbe",
                "preStop",
                "prometheus.io/scrape",
                "kind: Service",
            ][..],
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("manifest");
        for n in needles {
            assert!(text.contains(n), "{file} lacks {n}");
        }
    }
    // Each TOML of the ConfigMap is a configuration ringcast takes.
    let cm = std::fs::read_to_string(dir.join("configmap.yaml")).expect("configmap");
    for name in ["ringcast.toml", "edge.toml"] {
        let start = cm.find(&format!("  {name}: |")).expect("the key");
        let body: String = cm[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let path = common::config_file(&format!("deploy-{name}"), &body);
        let out = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["--config", path.to_str().expect("utf-8"), "--print-config"])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dockerfile_builds_a_non_root_image_with_the_example_config() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "two stages"
    );
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("COPY examples/ringcast.toml /etc/ringcast/ringcast.toml"));
    let user = text
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    // What the image runs is a configuration ringcast takes.
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "--config",
            root()
                .join("examples/ringcast.toml")
                .to_str()
                .expect("utf-8"),
            "--print-config",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
}
