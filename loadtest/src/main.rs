//! `loadtest`: drives an RTMP or HTTP-FLV server with one synthetic publisher and thousands
//! of players, and reports what the players saw: connect time, time to first frame,
//! end-to-end latency percentiles, stalls and integrity errors.
//!
//! Players are spread over one runtime thread per core (io_uring, or epoll where io_uring is
//! refused); every player speaks RTMP through ringcast's own client session.
//!
//! `loadtest soak` runs for a long time with churn (publishers and players coming and
//! going, slow and garbage-sending peers) and checks that the server's memory and open
//! files stay flat.

mod html;
mod http;
use ringcast::runtime as net;
mod peers;
mod player;
mod procfs;
mod publisher;
mod report;
mod soak;
mod stamp;
mod target;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;

use crate::player::Ctx;
use crate::publisher::{Published, Synth};
use crate::report::{Harness, Percentiles, Players, Report, ThreadStats, Totals, histogram};
use crate::target::Target;
use ringcast::runtime::Io;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load harness for RTMP and HTTP-FLV servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish a synthetic stream (or an FLV file in a loop), paced in real time.
    Publish(PublishArgs),
    /// Play one stream with N players and report what they received.
    Play(PlayArgs),
    /// A publisher and N players in one process: the usual way to use it.
    Run(RunArgs),
    /// Hours of churn against one server: do its memory and open files stay flat?
    ///
    /// Publishers come and go on many streams (a new one republishes each name after a
    /// pause), well-behaved players join and leave at random, a few slow players stop
    /// reading and a few peers send garbage. Every few seconds the server's RSS and open
    /// file descriptors are sampled (--server-pid); at the end the report compares them at
    /// the end of the warm-up and at the end of the run. It exits 1 when they are not flat
    /// (grew by more than --tolerance), when a well-behaved player saw an integrity error,
    /// or when the server no longer accepts a fresh publisher and player.
    Soak(Box<soak::SoakArgs>),
    /// One HTML page of JSON reports (from --json) side by side.
    Report(ReportArgs),
}

#[derive(Args, Clone)]
struct ReportArgs {
    /// The page to write.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Its heading.
    #[arg(long, default_value = "loadtest")]
    title: String,
    /// JSON reports, each a column; `LABEL=FILE` names a column (default: the file name).
    #[arg(required = true)]
    inputs: Vec<String>,
}

/// The synthetic stream a publisher sends.
#[derive(Args, Clone)]
struct SynthArgs {
    /// Video bit rate of the synthetic stream (e.g. 500k, 1M, 2M).
    #[arg(long, default_value = "1M", value_parser = target::bitrate)]
    bitrate: u64,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Keyframe interval.
    #[arg(long, default_value = "2s", value_parser = target::duration)]
    gop: Duration,
    /// Send AAC audio (128 kbit/s) too.
    #[arg(long)]
    audio: bool,
}

impl SynthArgs {
    fn synth(&self) -> Synth {
        Synth {
            bitrate: self.bitrate,
            fps: self.fps,
            gop: self.gop,
            audio: self.audio,
        }
    }
}

/// What the publisher sends: the synthetic stream, or an FLV file.
#[derive(Args, Clone)]
struct StreamArgs {
    #[command(flatten)]
    synth: SynthArgs,
    /// Publish this FLV file in a loop instead of the synthetic stream.
    #[arg(long)]
    input: Option<std::path::PathBuf>,
}

#[derive(Args, Clone)]
struct PublishArgs {
    /// rtmp://HOST:PORT/APP/STREAM
    #[arg(long)]
    url: String,
    #[command(flatten)]
    stream: StreamArgs,
    /// How long to publish.
    #[arg(long, default_value = "60s", value_parser = target::duration)]
    duration: Duration,
    /// IO backend: auto, uring or epoll.
    #[arg(long, default_value = "auto")]
    io: String,
}

#[derive(Args, Clone)]
struct PlayArgs {
    /// rtmp://HOST:PORT/APP/STREAM or http://HOST:PORT/APP/STREAM.flv
    #[arg(long)]
    url: String,
    /// Number of players.
    #[arg(long, default_value_t = 1)]
    players: u64,
    /// How fast players connect (players per second).
    #[arg(long, default_value = "500/s", value_parser = target::ramp)]
    ramp: f64,
    /// How long the run lasts, ramp included.
    #[arg(long, default_value = "60s", value_parser = target::duration)]
    duration: Duration,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write a self-contained HTML page with plots here (latency per second, players,
    /// delivered Gbit/s, the TTFF distribution, the summary).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Runtime threads for players (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// IO backend for the players: auto (epoll), uring or epoll. epoll lets every player of
    /// a thread read into one shared, cache-hot buffer and parse it at once; io_uring needs
    /// a buffer per pending read, and by the time a batch of completions is parsed the
    /// kernel's copies have left the cache (at 10,000 players: 66 % of a core with epoll,
    /// 98 % with io_uring, for the same stream).
    #[arg(long, default_value = "auto")]
    io: String,
    /// Each player hashes one video frame in N (players take turns, so together they
    /// cover every frame); every frame's stamp (sequence, latency) is still checked. 1
    /// hashes every frame; a larger N keeps the harness off its CPU ceiling at 10,000
    /// players, where hashing costs as much as the kernel's copy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    verify_every: u64,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    play: PlayArgs,
    #[command(flatten)]
    stream: StreamArgs,
    /// Publish to this URL instead of the play URL (e.g. when players use HTTP-FLV).
    #[arg(long)]
    publish_url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Publish(a) => {
            let io = Io::detect(&a.io)?;
            let target = Target::parse(&a.url)?;
            let until = Instant::now() + a.duration;
            let p = publish(
                io,
                target,
                a.stream.synth.synth(),
                a.stream.input,
                until,
                || {
                    eprintln!("publishing");
                },
            )?;
            println!(
                "published {} video frames, {:.1} MB, worst send {:.1} ms late",
                p.frames,
                p.bytes as f64 / 1e6,
                p.max_late_ms
            );
            Ok(())
        }
        Command::Play(a) => {
            let report = play(&a, None)?;
            finish(&a, &report)
        }
        Command::Run(a) => {
            let io = Io::detect(&a.play.io)?;
            let pub_target = Target::parse(a.publish_url.as_deref().unwrap_or(&a.play.url))?;
            let synth = a.stream.synth.synth();
            // The publisher runs on its own thread until the players' run is over.
            let until = Instant::now() + a.play.duration + Duration::from_secs(12);
            let (tx, rx) = mpsc::channel();
            let input = a.stream.input.clone();
            let publisher =
                std::thread::Builder::new()
                    .name("publisher".into())
                    .spawn(move || {
                        let tx2 = tx.clone();
                        let r = publish(io, pub_target, synth, input, until, move || {
                            let _ = tx2.send(Ok(()));
                        });
                        if let Err(e) = &r {
                            let _ = tx.send(Err(format!("{e:#}")));
                        }
                        r
                    })?;
            match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("publisher: {e}"),
                Err(_) => bail!("publisher did not start within 15 s"),
            }
            let report = play(&a.play, Some(a.stream.synth.bitrate))?;
            finish(&a.play, &report)?;
            // The publisher stops at its own deadline; don't wait for it.
            drop(publisher);
            Ok(())
        }
        Command::Report(a) => {
            let mut runs = Vec::new();
            for input in &a.inputs {
                let (label, path) = match input.split_once('=') {
                    Some((l, p)) => (l.to_owned(), p.to_owned()),
                    None => (
                        std::path::Path::new(input)
                            .file_stem()
                            .map_or_else(|| input.clone(), |s| s.to_string_lossy().into_owned()),
                        input.clone(),
                    ),
                };
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
                let r: Report = serde_json::from_str(&text)
                    .with_context(|| format!("{path}: not a loadtest report"))?;
                runs.push((label, r));
            }
            std::fs::write(&a.out, html::page(&a.title, &runs))
                .with_context(|| format!("writing {}", a.out.display()))?;
            Ok(())
        }
        Command::Soak(a) => {
            if !soak::run(&a)? {
                // The report says why; the exit code is for scripts.
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn publish(
    io: Io,
    target: Target,
    synth: Synth,
    input: Option<std::path::PathBuf>,
    until: Instant,
    on_start: impl FnOnce() + 'static,
) -> anyhow::Result<Published> {
    net::block_on(io, 256, async move {
        match input {
            Some(path) => {
                let tags = read_flv(&path)?;
                publisher::from_file(io, target, tags, until, on_start).await
            }
            None => publisher::synthetic(io, target, synth, until, on_start).await,
        }
    })?
}

fn read_flv(path: &std::path::Path) -> anyhow::Result<Vec<ringcast::flv::Tag>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = bytes::BytesMut::from(&data[..]);
    let mut reader = ringcast::flv::Reader::default();
    let mut tags = Vec::new();
    while let Some(item) = reader
        .read(&mut buf)
        .with_context(|| format!("parsing {}", path.display()))?
    {
        if let ringcast::flv::Item::Tag(t) = item {
            tags.push(t);
        }
    }
    Ok(tags)
}

fn finish(a: &PlayArgs, report: &Report) -> anyhow::Result<()> {
    print!("{}", report.table());
    if let Some(path) = &a.json {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.report {
        let page = html::page(
            &format!("loadtest: {}", a.url),
            &[(format!("{} players", a.players), report.clone())],
        );
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs the players and gathers the report.
fn play(a: &PlayArgs, bitrate: Option<u64>) -> anyhow::Result<Report> {
    let io = match a.io.as_str() {
        "auto" => Io::Epoll,
        other => Io::detect(other)?,
    };
    let target = Target::parse(&a.url)?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256);
    let start = Instant::now();
    let deadline = start + a.duration;
    let cpu0 = report::process_cpu_seconds();
    let stats: Vec<Arc<ThreadStats>> = (0..threads).map(|_| Arc::default()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let stats = stats.clone();
        let done = done.clone();
        let players = a.players;
        std::thread::spawn(move || progress(&stats, &done, players, start))
    };

    let mut handles = Vec::new();
    for t in 0..threads {
        let stats = stats[t].clone();
        let target = target.clone();
        let players = a.players;
        let ramp = a.ramp;
        let verify_every = a.verify_every;
        handles.push(
            std::thread::Builder::new()
                .name(format!("players-{t}"))
                .spawn(move || -> anyhow::Result<Totals> {
                    let mine = (t as u64..players).step_by(threads).collect::<Vec<u64>>();
                    let entries = (mine.len() as u32 * 2)
                        .clamp(256, 16_384)
                        .next_power_of_two();
                    net::block_on(io, entries, async move {
                        let ctx = Rc::new(Ctx {
                            io,
                            target,
                            deadline,
                            stats: stats.clone(),
                            verify_every,
                        });
                        net::spawn(ticker(stats.clone(), deadline));
                        let mut tasks = Vec::with_capacity(mine.len());
                        for id in mine {
                            let at = start + Duration::from_secs_f64(id as f64 / ramp);
                            if at >= deadline {
                                break;
                            }
                            tokio::time::sleep_until(at.into()).await;
                            tasks.push(net::spawn(player::play(ctx.clone(), id)));
                        }
                        let mut totals = Totals::default();
                        for t in tasks {
                            if let Ok((started, end, tally)) = t.await {
                                totals.add(started, end, &tally);
                            }
                        }
                        totals
                    })
                })?,
        );
    }
    let mut totals = Totals::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| anyhow::anyhow!("a player thread panicked"))??;
        totals.merge(&t);
    }
    // Players that were never started (the ramp outlasted the run) count as failed.
    let started_total = totals.by_end.clean
        + totals.by_end.refused
        + totals.by_end.reset
        + totals.by_end.timed_out
        + totals.by_end.error;
    totals.failed += a.players.saturating_sub(started_total);
    done.store(true, Ordering::Relaxed);
    let timeline = progress.join().unwrap_or_default();
    let elapsed = start.elapsed().as_secs_f64();

    let Merged {
        latency,
        connect,
        ttff,
        lag,
    } = merged(&stats);
    let t = &totals.tally;
    let p99_lag = lag.value_at_quantile(0.99) as f64 / 1000.0;
    Ok(Report {
        url: a.url.clone(),
        players_requested: a.players,
        duration_s: elapsed,
        bitrate_bps: bitrate,
        players: Players {
            connected: totals.connected,
            failed: totals.failed,
            by_end: totals.by_end.clone(),
        },
        connect_ms: Percentiles::of(&connect),
        ttff_ms: Percentiles::of(&ttff),
        latency_ms: Percentiles::of(&latency),
        stalls: t.stalls,
        integrity_errors: t.gaps + t.corrupt + t.out_of_order,
        gaps: t.gaps,
        corrupt: t.corrupt,
        out_of_order: t.out_of_order,
        frames: t.frames,
        bytes: t.bytes,
        mbit_per_s: t.bytes as f64 * 8.0 / elapsed / 1e6,
        harness: Harness {
            cpu_s: report::process_cpu_seconds() - cpu0,
            threads,
            io: io.name().to_owned(),
            lagging: p99_lag > 50.0,
            max_loop_lag_ms: lag.max() as f64 / 1000.0,
            p99_loop_lag_ms: p99_lag,
            verify_every: a.verify_every,
        },
        timeline,
        ttff_cdf_ms: report::cdf_ms(&ttff),
    })
}

/// Every thread's histograms, merged.
struct Merged {
    latency: hdrhistogram::Histogram<u64>,
    connect: hdrhistogram::Histogram<u64>,
    ttff: hdrhistogram::Histogram<u64>,
    lag: hdrhistogram::Histogram<u64>,
}

fn merged(stats: &[Arc<ThreadStats>]) -> Merged {
    let mut m = Merged {
        latency: histogram(),
        connect: histogram(),
        ttff: histogram(),
        lag: histogram(),
    };
    for s in stats {
        if let Ok(h) = s.hist.lock() {
            let _ = m.latency.add(&h.latency);
            let _ = m.connect.add(&h.connect);
            let _ = m.ttff.add(&h.ttff);
            let _ = m.lag.add(&h.loop_lag);
        }
    }
    m
}

/// Measures how late this runtime thread wakes: if its own loop lags, the latency it
/// reports includes that lag, and the report says so.
async fn ticker(stats: Arc<ThreadStats>, deadline: Instant) {
    let period = Duration::from_millis(100);
    let mut next = Instant::now() + period;
    while next < deadline {
        tokio::time::sleep_until(next.into()).await;
        let lag = Instant::now().saturating_duration_since(next).as_micros() as u64;
        if let Ok(mut h) = stats.hist.lock() {
            h.loop_lag.saturating_record(lag.max(1));
        }
        next += period;
    }
}

/// One progress line a second on stderr until `done`.
fn progress(
    stats: &[Arc<ThreadStats>],
    done: &AtomicBool,
    players: u64,
    start: Instant,
) -> Vec<report::Second> {
    let mut timeline = Vec::new();
    let mut last_bytes = 0u64;
    let mut last = Instant::now();
    // The progress line shows the last second's latency; the report has the whole run's.
    let mut before = histogram();
    let mut lag_before = histogram();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let sum = |f: fn(&ThreadStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
        let connected = sum(|s| s.live.connected.load(Ordering::Relaxed));
        let failed = sum(|s| s.live.failed.load(Ordering::Relaxed));
        let bytes = sum(|s| s.live.bytes.load(Ordering::Relaxed));
        let errors = sum(|s| s.live.errors.load(Ordering::Relaxed));
        let stalls = sum(|s| s.live.stalls.load(Ordering::Relaxed));
        let (mut lat, mut lag) = (histogram(), histogram());
        for s in stats {
            if let Ok(h) = s.hist.lock() {
                let _ = lat.add(&h.latency);
                let _ = lag.add(&h.loop_lag);
            }
        }
        let mut window = lat.clone();
        let _ = window.subtract(&before);
        before = lat;
        let mut lag_window = lag.clone();
        let _ = lag_window.subtract(&lag_before);
        lag_before = lag;
        let at = |x: f64| (!window.is_empty()).then(|| window.value_at_quantile(x) as f64 / 1000.0);
        let q = |x: f64| at(x).map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        timeline.push(report::Second {
            t_s: start.elapsed().as_secs_f64(),
            connected,
            failed,
            gbit_per_s: (bytes - last_bytes) as f64 * 8.0 / dt / 1e9,
            latency_p50_ms: at(0.5),
            latency_p99_ms: at(0.99),
            latency_max_ms: (!window.is_empty()).then(|| window.max() as f64 / 1000.0),
        });
        eprintln!(
            "[{:>5.1}s] players {connected}/{players} connected, {failed} failed | {:.1} Mbit/s in | last 1 s latency p50 {} p99 {} ms | {errors} errors, {stalls} stalls | loop lag max {:.1} ms",
            start.elapsed().as_secs_f64(),
            (bytes - last_bytes) as f64 * 8.0 / dt / 1e6,
            q(0.5),
            q(0.99),
            lag_window.max() as f64 / 1000.0,
        );
        last_bytes = bytes;
    }
    timeline
}
