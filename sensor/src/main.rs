//! `telltale`: an eBPF sensor that captures TLS plaintext at the SSL libraries and
//! reports what processes send inside encrypted connections.
//!
//! Data flows through one module per stage: [`capture`] → [`conn`] (with
//! [`process`] context) → [`event`] → [`sink`]; [`run`] wires them together.

mod capture;
mod clock;
mod config;
mod conn;
mod detection;
mod event;
mod host;
mod process;
mod run;
mod sink;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, Emit};

/// Telltale watches TLS plaintext on this host (through uprobes on the SSL
/// libraries, with no proxy and no certificates) and reports what processes send
/// to AI services.
///
/// Events are JSON lines on stdout; logs go to stderr (RUST_LOG or --log-level).
/// Capturing needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN, and a Linux
/// kernel >= 5.8 with BTF.
#[derive(Debug, Parser)]
#[command(name = "telltale", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML) overriding the embedded defaults; see `telltale config`.
    #[arg(long, short = 'c', global = true, env = "TELLTALE_CONFIG")]
    config: Option<PathBuf>,

    /// Log level for stderr when RUST_LOG is not set: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to every TLS library on the host and stream events until Ctrl-C or SIGTERM.
    ///
    /// By default only alerts (and sensor.status events) are printed. `--emit data`
    /// adds a tls.data event, with the plaintext, for every captured TLS message.
    Run(RunArgs),
    /// List the TLS libraries and executables `run` would attach to, and why.
    Targets {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the configuration in effect (the embedded defaults merged with --config).
    Config,
    /// The LLM API provider catalogue.
    #[command(subcommand)]
    Llm(LlmCommand),
}

#[derive(Debug, Subcommand)]
enum LlmCommand {
    /// Print the embedded provider catalogue (TOML): a starting point for files
    /// named in `llm.catalogs`.
    Catalog,
    /// Show which provider and API a request would be recognised as, with the
    /// catalogues of the configuration in effect.
    Recognise {
        /// Request method, e.g. POST.
        method: String,
        /// URL, e.g. https://api.anthropic.com/v1/messages.
        url: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Event kinds to print, comma-separated; replaces `output.emit` from the configuration.
    #[arg(long, value_delimiter = ',', value_enum)]
    emit: Option<Vec<Emit>>,
    /// Ring buffer size in bytes (a power of two, at least 65536).
    #[arg(long)]
    ring_buffer_bytes: Option<u32>,
    /// Seconds between sensor.status events (0 = only at start and stop).
    #[arg(long)]
    status_interval: Option<u64>,
    /// Extra library or executable to attach to (repeatable).
    #[arg(long = "target", value_name = "PATH")]
    targets: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("telltale: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config => {
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Command::Targets { json } => run::print_targets(&cfg, json),
        Command::Llm(LlmCommand::Catalog) => {
            print!("{}", telltale::llm::EMBEDDED_CATALOG);
            Ok(())
        }
        Command::Llm(LlmCommand::Recognise { method, url }) => {
            let catalog = run::load_catalog(&cfg)?;
            let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let (authority, target) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            match catalog.recognise(&method, Some(authority), target) {
                Some(e) => println!(
                    "provider {} ({}), api {}, model from path {}, {}",
                    e.provider,
                    e.provider_name,
                    serde_json::to_value(e.api)?.as_str().unwrap_or("?"),
                    e.model_from_path.as_deref().unwrap_or("-"),
                    if e.self_hosted {
                        "recognised by path shape only (self-hosted compatible)"
                    } else {
                        "recognised by host"
                    }
                ),
                None => println!("not an LLM API request known to the catalogue"),
            }
            Ok(())
        }
        Command::Run(args) => {
            if let Some(emit) = args.emit {
                cfg.output.emit = emit;
            }
            if let Some(n) = args.ring_buffer_bytes {
                cfg.capture.ring_buffer_bytes = n;
            }
            if let Some(s) = args.status_interval {
                cfg.status.interval_secs = s;
            }
            cfg.capture.extra_targets.extend(args.targets);
            cfg.validate("command line")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(run::run(cfg))
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
