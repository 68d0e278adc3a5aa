//! `courier bench`: load against a running server, closed loop (maximum throughput) or open loop at a fixed rate
//! (latency from the intended send time, so queueing is not hidden), reported as a markdown row or JSON, with a
//! live progress bar on a terminal and an optional SVG plot of the latency distribution.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use courier_bench::{Auth, Live, LoadConfig, Mode, Report, Scenario, Transport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `courier bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The courier server to load (it must serve users and payments, as `courier up` does).
    #[arg(long, env = "COURIER_SERVER_URL", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// What each call is.
    #[arg(long, value_enum, default_value_t = ScenarioArg::Authorize)]
    scenario: ScenarioArg,
    /// Accounts the authorize, authorize-stream and mixed scenarios spread over.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// AuthorizeStream calls for the authorize-stream scenario (--concurrency messages in flight, shared).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Calls per second (open loop); without it, a closed loop sends as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// HTTP/2 connections (for idle-connections: the connections opened and held).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent callers (for authorize-stream: messages in flight).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured time, e.g. 10s (for idle-connections: how long the connections are held).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time run before measuring, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Sent as `authorization: Bearer TOKEN` on every call. Without it, the token `courier up` wrote to
    /// DATA_DIR/token is used when that file exists.
    #[arg(long, env = "COURIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The data dir of the `courier up` being loaded, where its development token is (used without --token).
    #[arg(long, env = "COURIER_DATA_DIR", value_name = "DIR", default_value = "courier-data")]
    data_dir: std::path::PathBuf,
    /// How the measured calls travel: gRPC, or REST/JSON over HTTP/1.1 (one keep-alive connection per caller; the
    /// authorize scenarios and get-user). Set-up calls use gRPC either way.
    #[arg(long, value_enum, default_value_t = TransportArg::Grpc)]
    transport: TransportArg,
    /// A server process (repeat for several) whose CPU time over the measured window is reported, in total and
    /// per call answered (read from /proc/PID/stat: user + system, every thread).
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Print the report as JSON instead of a markdown table.
    #[arg(long)]
    json: bool,
    /// Also write the latency distribution (percentile curve, HdrHistogram style) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Also measure the Authorize SLIs (availability 99.9%, 99% within 250 ms; docs/slo.md) and fail when one is
    /// missed. Authorize scenarios only; with --json, as the report's `slo` field.
    #[arg(long)]
    slo: bool,
}

/// The scenarios as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScenarioArg {
    /// Authorize spread over --accounts accounts.
    Authorize,
    /// Authorize on one account.
    AuthorizeHot,
    /// Authorizations as messages on --streams long-lived AuthorizeStream calls, --concurrency in flight.
    AuthorizeStream,
    /// GetUser of one user.
    GetUser,
    /// 50% Authorize, 20% GetAuthorization, 10% Capture, 20% GetUser (in a fixed order, by call number).
    Mixed,
    /// Open --connections connections, call GetUser once on each, hold them for --duration.
    IdleConnections,
}

/// The transports as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    /// gRPC over --connections HTTP/2 connections.
    Grpc,
    /// REST/JSON (docs/rest.md) over HTTP/1.1, one connection per caller.
    Rest,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scenario = match args.scenario {
        ScenarioArg::Authorize => Scenario::Authorize { accounts: args.accounts },
        ScenarioArg::AuthorizeHot => Scenario::AuthorizeHot,
        ScenarioArg::AuthorizeStream => Scenario::AuthorizeStream { accounts: args.accounts, streams: args.streams },
        ScenarioArg::GetUser => Scenario::GetUser,
        ScenarioArg::Mixed => Scenario::Mixed { accounts: args.accounts },
        ScenarioArg::IdleConnections => Scenario::IdleConnections,
    };
    let mode = match args.rate {
        Some(rate) if rate > 0.0 => Mode::Open { rate },
        Some(rate) => anyhow::bail!("--rate must be more than 0, got {rate}"),
        None => Mode::Closed,
    };
    if args.slo
        && !matches!(args.scenario, ScenarioArg::Authorize | ScenarioArg::AuthorizeHot | ScenarioArg::AuthorizeStream)
    {
        anyhow::bail!("--slo measures Authorize: use it with an authorize scenario");
    }
    if args.streams == 0 {
        anyhow::bail!("--streams must be at least 1");
    }
    let auth = match crate::client::resolve_token(args.token.as_deref(), &args.data_dir) {
        Some(token) => Auth::bearer(&token)?,
        None => Auth::none(),
    };
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let live = show_progress.then(|| Arc::new(Live::default()));
    let config = LoadConfig {
        connections: args.connections,
        concurrency: args.concurrency,
        duration: args.duration,
        warmup: args.warmup,
        mode,
        auth,
        live: live.clone(),
        transport: match args.transport {
            TransportArg::Grpc => Transport::Grpc,
            TransportArg::Rest => Transport::Rest,
        },
        server_pids: args.server_pids.clone(),
    };
    let progress = live.map(|live| spawn_progress(live, args.warmup + args.duration));
    let report = if let Scenario::IdleConnections = scenario {
        // Printed when every connection is open and has answered: a script reads the server's memory then.
        let on_open = |n: usize| eprintln!("courier bench: holding {n} connections open for {:?}", args.duration);
        courier_bench::idle::hold(&args.server, &config, on_open).await
    } else {
        courier_bench::run(&args.server, &scenario, &config).await
    };
    if let Some(progress) = progress {
        progress.finish();
    }
    let report = report?;
    if let Some(path) = &args.plot {
        std::fs::write(path, courier_bench::plot::svg(&[&report]))
            .map_err(|e| anyhow::anyhow!("cannot write the plot to {}: {e}", path.display()))?;
    }
    let slis = args.slo.then(|| super::slo::measure(&report));
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(slis) = &slis {
            json["slo"] = serde_json::to_value(slis)?;
        }
        println!("{json}");
    } else {
        println!("{}\n{}", Report::markdown_header(), report.markdown_row());
        if let Some(slis) = &slis {
            println!("\n{}", super::slo::markdown(slis));
        }
    }
    if let Some(missed) = slis.iter().flatten().find(|sli| !sli.met) {
        anyhow::bail!("SLO {} missed: {:?} against {}", missed.slo, missed.measured, missed.objective);
    }
    Ok(())
}

/// A progress bar on stderr, redrawn every half second: elapsed, calls/s over the last tick, errors, current p99.
struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Stops redrawing and clears the line, so the report starts clean.
    fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

fn spawn_progress(live: Arc<Live>, total: Duration) -> Progress {
    let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
        .expect("a valid progress template")
        .progress_chars("=> ");
    bar.set_style(style);
    let drawn = bar.clone();
    let task = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut interval = tokio::time::interval(Duration::from_millis(500));
        let mut last = (started, 0u64);
        loop {
            interval.tick().await;
            let now = tokio::time::Instant::now();
            let seen = live.take();
            let rate = (seen.ok - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
            last = (now, seen.ok);
            drawn.set_position(now.duration_since(started).as_millis() as u64);
            drawn.set_message(format!(
                "{rate:.0} calls/s, {} errors, p99 {:.2} ms",
                seen.errors,
                seen.window_p99_us as f64 / 1000.0
            ));
        }
    });
    Progress { bar, task }
}
