//! The `ringcast` binary: flags and config, logging, the core threads, and shutdown on
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mimalloc::MiMalloc;
use ringcast::config::{Config, IoMode};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// A live-video relay: RTMP in, RTMP out, one runtime per core.
#[derive(Parser, Debug)]
#[command(name = "ringcast", version, about)]
struct Cli {
    /// TOML configuration file (see examples/ringcast.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// RTMP listen address.
    #[arg(long)]
    rtmp: Option<SocketAddr>,
    /// HTTP listen address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Core threads (0: one per CPU).
    #[arg(long)]
    cores: Option<usize>,
    /// IO backend: auto, uring or epoll.
    #[arg(long, value_parser = parse_io)]
    io: Option<IoMode>,
    /// Log level or filter (error, warn, info, debug, trace).
    #[arg(long)]
    log: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print a signed URL (`?sign=EXPIRES-HASH`, see `auth.publish_secret`/`play_secret`).
    Sign {
        /// The secret (`auth.publish_secret`, `auth.play_secret` or an app's).
        #[arg(long)]
        secret: String,
        /// The application.
        #[arg(long)]
        app: String,
        /// The stream name.
        #[arg(long)]
        stream: String,
        /// How long the URL stays valid (e.g. 30s, 1h, 7d is 168h).
        #[arg(long, default_value = "1h", value_parser = ringcast::config::parse_duration)]
        expires: std::time::Duration,
        /// The URL up to the app: `rtmp://HOST:PORT` or `http://HOST:PORT` (HTTP-FLV gets
        /// `.flv` after the stream).
        #[arg(long, default_value = "rtmp://127.0.0.1:1935")]
        base: String,
    },
}

fn parse_io(s: &str) -> Result<IoMode, String> {
    match s {
        "auto" => Ok(IoMode::Auto),
        "uring" => Ok(IoMode::Uring),
        "epoll" => Ok(IoMode::Epoll),
        _ => Err(format!("{s:?}: use auto, uring or epoll")),
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(v) = cli.rtmp {
        config.rtmp = v;
    }
    if let Some(v) = cli.http {
        config.http = v;
    }
    if let Some(v) = cli.cores {
        config.cores = v;
    }
    if let Some(v) = cli.io {
        config.io = v;
    }
    if let Some(v) = &cli.log {
        config.log = v.clone();
    }
    config.validate()?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Sign {
        secret,
        app,
        stream,
        expires,
        base,
    }) = &cli.command
    {
        let until = ringcast::auth::unix_now() + expires.as_secs().max(1);
        let sign = ringcast::auth::sign::sign(secret, app, stream, until);
        let base = base.trim_end_matches('/');
        let ext = if base.starts_with("http") { ".flv" } else { "" };
        println!("{base}/{app}/{stream}{ext}?sign={sign}");
        return Ok(());
    }
    let config = load(&cli)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("`log`: invalid level or filter {:?}", config.log))?;
    // The filter sits behind a reload handle: SIGHUP may change `log`.
    let (filter, log_level) = tracing_subscriber::reload::Layer::new(filter);
    // Cores never wait on stderr: lines go to a queue a logging thread writes out, and a
    // full queue drops lines rather than stalling a core. The guard flushes it at exit.
    // The queue's slots are allocated up front: 16 Ki lines (~0.5 MB) rather than the
    // default 128 Ki (~4 MB).
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(16 * 1024)
        .lossy(true)
        .thread_name("log")
        .finish(std::io::stderr());
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init();
    }

    let mut running = ringcast::server::start(&config)?;
    while wait_for_signal()? == Signal::Reload {
        // Re-read the file (flags still win); a broken file changes nothing.
        let new = match load(&cli) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, configuration unchanged: {e:#}");
                continue;
            }
        };
        let filter = match tracing_subscriber::EnvFilter::try_new(&new.log) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("reload refused: `log`: {e}; configuration unchanged");
                continue;
            }
        };
        if running.config().log != new.log {
            let _ = log_level.reload(filter);
        }
        let fixed = running.reload(new);
        if fixed.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                keys = %fixed.join(", "),
                "configuration reloaded; these keys change only with a restart and keep their running values"
            );
        }
    }
    tracing::info!("shutting down");
    running.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// What a signal asks for.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGINT or SIGTERM: drain and exit.
    Stop,
    /// SIGHUP: re-read the configuration file.
    Reload,
}

/// Blocks until SIGINT, SIGTERM or SIGHUP.
fn wait_for_signal() -> anyhow::Result<Signal> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        Ok(tokio::select! {
            _ = term.recv() => Signal::Stop,
            _ = int.recv() => Signal::Stop,
            _ = hup.recv() => Signal::Reload,
        })
    })
}
