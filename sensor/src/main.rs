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
mod enforce;
mod event;
mod host;
mod metrics;
mod process;
mod run;
mod sink;

use std::{io::Write as _, path::PathBuf, process::ExitCode};

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
    /// Internal: the guard `run` starts when a policy holds processes; it
    /// continues them if the sensor dies or stalls.
    #[command(hide = true)]
    HoldGuard {
        /// Milliseconds without a heartbeat after which held processes are continued.
        stall_ms: u64,
    },
    /// List the TLS libraries and executables `run` would attach to, and why.
    Targets {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the configuration in effect (the embedded defaults merged with
    /// --config); `config check` loads everything `run` would (rules, catalogue,
    /// sinks) and reports the first problem.
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// The LLM API provider catalogue.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Detection rules: check files, run their examples, list them.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// What each AI client has been seen sending, per destination: fact kinds
    /// and identifier fields, with counts and first/last seen (from the state
    /// directory's inventory, which `telltale run` keeps).
    Inventory {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the host facts detection looks for (kind, source, strength, value).
    Facts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also the facts of this process (environment, working directory and
        /// its names, user, executable), as detection learns them.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Convert native events (JSON lines on stdin) to OCSF or ECS, as a sink
    /// with that format would send them; events without a mapping are skipped.
    Convert {
        /// Target format.
        #[arg(long = "to", value_enum)]
        to: ConvertTo,
    },
    /// Run detection offline over recorded traffic (no root needed).
    ///
    /// FILEs are request bodies (JSON), JSON lines of the sensor's tls.data or
    /// http events, or JSON lines of request records ({"body", "api",
    /// "authority", "path", "headers"}). Prints one JSON line per request with
    /// findings (all requests with --all) and a summary on stderr.
    Scan {
        /// Files to scan.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Match the fixed example host's facts instead of this host's.
        #[arg(long)]
        example_host: bool,
        /// Print every request, also those without findings.
        #[arg(long)]
        all: bool,
    },
}

/// Output formats `telltale convert` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ConvertTo {
    /// OCSF (Detection Finding for alerts, HTTP Activity for http events).
    Ocsf,
    /// Elastic Common Schema.
    Ecs,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the configuration (file, rules, catalogue, sinks) without running.
    Check,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Validate rule files (without the embedded pack); errors name file and line.
    Check {
        /// Rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the examples of the rules in effect (embedded, configured, and FILEs).
    Test {
        /// More rule files.
        files: Vec<PathBuf>,
    },
    /// List the rules in effect and where each comes from.
    List,
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

#[derive(Debug, Clone, clap::Args)]
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
    /// Enforcement decides and reports what it would block or kill
    /// (`would_block`, `would_kill` events) but holds and stops nothing.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::HoldGuard { stall_ms } = cli.command {
        return enforce::guard::main(stall_ms);
    }
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
        Command::Config { action: None } => {
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Command::Config {
            action: Some(ConfigAction::Check),
        } => {
            let origin = cli.config.as_deref().map_or_else(
                || "embedded default".to_owned(),
                |p| p.display().to_string(),
            );
            config_check(&cfg, &origin)
        }
        Command::Targets { json } => run::print_targets(&cfg, json),
        Command::Rules(cmd) => rules_command(&cfg, cmd),
        Command::Convert { to } => {
            use std::io::BufRead as _;
            let format = match to {
                ConvertTo::Ocsf => telltale::deliver::format::Format::Ocsf,
                ConvertTo::Ecs => telltale::deliver::format::Format::Ecs,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for (i, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.context("reading stdin")?;
                if line.trim().is_empty() {
                    continue;
                }
                let native: serde_json::Value = serde_json::from_str(&line)
                    .with_context(|| format!("line {}: not JSON", i + 1))?;
                if let Some(v) = telltale::deliver::format::render(format, &native) {
                    writeln!(out, "{}", serde_json::to_string(&v)?)?;
                }
            }
            out.flush()?;
            Ok(())
        }
        Command::Inventory { json } => {
            let path = cfg.state.dir.join("inventory.json");
            let (inventory, warning) = telltale::inventory::Inventory::load(&path);
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&inventory.snapshot())?);
            } else {
                print!("{}", inventory.render_table());
            }
            Ok(())
        }
        Command::Facts { json, pid } => {
            let mut facts = telltale::facts::collect(&telltale::facts::Sources::host());
            if let Some(pid) = pid {
                let own = telltale::facts::process_facts(std::path::Path::new("/"), pid);
                if own.is_empty() {
                    anyhow::bail!(
                        "no facts for pid {pid}: no such process, or its /proc is unreadable"
                    );
                }
                facts.extend(own);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&facts)?);
            } else {
                for f in &facts {
                    println!(
                        "{:<18} {:<7} {:<40} {}",
                        f.kind.as_str(),
                        format!("{:?}", f.strength).to_lowercase(),
                        f.name,
                        f.value
                    );
                }
            }
            Ok(())
        }
        Command::Scan {
            files,
            example_host,
            all,
        } => scan_command(&cfg, &files, example_host, all),
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
        Command::HoldGuard { .. } => Ok(()),
        Command::Run(args) => {
            args.apply(&mut cfg)?;
            // SIGHUP reads the file again and applies the same flags over it.
            let path = cli.config.clone();
            let reload: run::Reload = Box::new(move || {
                let mut cfg = Config::load(path.as_deref())?;
                args.apply(&mut cfg)?;
                Ok(cfg)
            });
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(run::run(cfg, reload))
        }
    }
}

impl RunArgs {
    /// Puts the flags over a configuration.
    fn apply(&self, cfg: &mut Config) -> anyhow::Result<()> {
        if let Some(emit) = &self.emit {
            cfg.output.emit = emit.clone();
        }
        if let Some(n) = self.ring_buffer_bytes {
            cfg.capture.ring_buffer_bytes = n;
        }
        if let Some(s) = self.status_interval {
            cfg.status.interval_secs = s;
        }
        cfg.capture
            .extra_targets
            .extend(self.targets.iter().cloned());
        if self.dry_run {
            cfg.enforce.dry_run = true;
        }
        cfg.validate("command line")?;
        Ok(())
    }
}

/// `telltale config check`: everything `run` would load, without running.
fn config_check(cfg: &Config, origin: &str) -> anyhow::Result<()> {
    let rules = detection::load_rules(&cfg.detect)?;
    let _ = run::load_catalog(cfg)?;
    let facts = telltale::facts::collect(&telltale::facts::Sources::host());
    telltale::detect::Detector::new(&rules, &facts, [0u8; 32])
        .map_err(|e| anyhow::anyhow!("compiling the rules: {e}"))?;
    for s in &cfg.sinks {
        s.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    println!(
        "{origin}: ok ({} rules, {} sinks: {})",
        rules.enabled().count(),
        cfg.sinks.len(),
        cfg.sinks
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn rules_command(cfg: &Config, cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Check { files } => {
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let rules = telltale::detect::check_text(&text, &f.display().to_string())?;
                println!("{}: {} rules ok", f.display(), rules.len());
            }
            Ok(())
        }
        RulesCommand::Test { files } => {
            let mut set = detection::load_rules(&cfg.detect)?;
            for f in &files {
                set.add_file(f)?;
            }
            let results = telltale::detect::test_examples(&set);
            let failed = results.iter().filter(|r| !r.passed).count();
            for r in &results {
                match &r.problem {
                    None => println!("ok    {} example {} {}", r.rule, r.index, r.description),
                    Some(p) => println!(
                        "FAIL  {} example {} {}: {p}",
                        r.rule, r.index, r.description
                    ),
                }
            }
            println!("{} examples, {failed} failed", results.len());
            anyhow::ensure!(failed == 0, "{failed} rule examples failed");
            Ok(())
        }
        RulesCommand::List => {
            let set = detection::load_rules(&cfg.detect)?;
            for (r, origin) in set.rules() {
                println!(
                    "{:<10} v{:<3} {:<8} {:<9} {}  [{}] ({origin})",
                    r.id,
                    r.version,
                    format!("{:?}", r.severity).to_lowercase(),
                    if r.enabled { "enabled" } else { "disabled" },
                    r.title,
                    r.attack.join(",")
                );
            }
            Ok(())
        }
    }
}

fn scan_command(
    cfg: &Config,
    files: &[PathBuf],
    example_host: bool,
    all: bool,
) -> anyhow::Result<()> {
    let rules = detection::load_rules(&cfg.detect)?;
    let facts = if example_host {
        telltale::detect::example_facts()
    } else {
        telltale::facts::collect(&telltale::facts::Sources::host())
    };
    // Offline hashes need no stable key: they are compared within one report.
    let key = [0u8; 32];
    let detector = telltale::detect::Detector::new(&rules, &facts, key)
        .map_err(|e| anyhow::anyhow!("compiling the rules: {e}"))?;
    let catalog = run::load_catalog(cfg)?;
    let scanner = telltale::scan::Scanner::new(&detector, &catalog);
    let mut total = telltale::scan::ScanStats::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let mut write_err = None;
        let st = scanner.scan_text(&text, &f.display().to_string(), &mut |s| {
            if (all || !s.findings.is_empty()) && write_err.is_none() {
                let line = serde_json::to_string(&s).unwrap_or_default();
                if let Err(e) = writeln!(out, "{line}") {
                    write_err = Some(e);
                }
            }
        });
        if let Some(e) = write_err {
            return Err(e).context("writing results");
        }
        if st.requests == 0 {
            eprintln!(
                "telltale scan: {}: no requests found ({} lines skipped, {} not JSON)",
                f.display(),
                st.skipped,
                st.bad_lines
            );
        }
        total.requests += st.requests;
        total.alerted += st.alerted;
        total.skipped += st.skipped;
        total.bad_lines += st.bad_lines;
    }
    out.flush()?;
    eprintln!(
        "telltale scan: {} requests, {} with findings, {} records skipped, {} lines not JSON",
        total.requests, total.alerted, total.skipped, total.bad_lines
    );
    Ok(())
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
