//! The `hookgate` command line: `run` serves a config, `check` validates one,
//! `sign` signs a delivery as a provider would, `schemes` lists built-in schemes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use hookgate::clock::{Clock, SystemClock};
use hookgate::commands::{self, SignRequest};
use hookgate::verify::sign::Delivery;
use hookgate::{config, server};
use pingora::server::RunArgs;

// Every request allocates and frees many small buffers across threads; under load
// mimalloc cut the gateway's CPU per request by ~10% against glibc malloc
// (benches/load.sh, measured with CPU time per request).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A webhook verification gateway: verifies provider signatures, then forwards.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve webhooks with the config file.
    Run {
        /// Config file [default: $HOOKGATE_CONFIG, then conf/hookgate.toml]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the config file and print every problem as PATH:LINE:COL: message.
    Check {
        /// Config file [default: $HOOKGATE_CONFIG, then conf/hookgate.toml]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the headers a provider would send for a body (or a curl command).
    Sign(Box<SignArgs>),
    /// List the built-in schemes.
    Schemes {
        /// Print the README's markdown table instead
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Debug, Args)]
struct SignArgs {
    /// A built-in scheme, or one defined in the config
    #[arg(long, required_unless_present = "route")]
    scheme: Option<String>,
    /// Use the scheme of this route of the config (e.g. for the generic `hmac` scheme)
    #[arg(long, conflicts_with = "scheme")]
    route: Option<String>,
    /// Config file for --route and config-defined schemes
    #[arg(long)]
    config: Option<PathBuf>,
    /// The secret: env:NAME, file:PATH or literal; the private key for ed25519 and ECDSA schemes
    #[arg(long)]
    secret: String,
    /// File holding the body
    #[arg(long, conflicts_with = "body")]
    body_file: Option<PathBuf>,
    /// The body itself
    #[arg(long)]
    body: Option<String>,
    /// The URL the provider calls (for schemes that sign it) [default: the --curl URL, else http://127.0.0.1:8080/]
    #[arg(long)]
    url: Option<String>,
    /// Request method
    #[arg(long, default_value = "POST")]
    method: String,
    /// Content-Type of the body
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Event id, for schemes that send one [default: generated]
    #[arg(long)]
    id: Option<String>,
    /// Another header the provider sends, `Name: value` (repeatable)
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Event time in unix seconds [default: now]
    #[arg(long)]
    time: Option<i64>,
    /// Print a ready curl command that sends the delivery to this URL
    #[arg(long, value_name = "URL")]
    curl: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => print(commands::check(&config::resolve_path(config))),
        Command::Run { config } => run(&config::resolve_path(config)),
        Command::Sign(args) => print(sign(*args)),
        Command::Schemes { markdown: false } => print(Ok(commands::schemes())),
        Command::Schemes { markdown: true } => print(Ok(commands::schemes_markdown())),
    }
}

fn print(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::FAILURE
        }
    }
}

fn sign(args: SignArgs) -> Result<String, String> {
    let body = match (&args.body_file, args.body) {
        (Some(file), _) => {
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
        }
        (None, Some(text)) => text.into_bytes(),
        (None, None) => Vec::new(),
    };
    let time = args.time.unwrap_or_else(|| SystemClock.now_unix());
    let headers = args
        .headers
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("--header `{h}` is not `Name: value`"))?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("invalid header name in `{h}`"))?;
            Ok((name, value.trim().to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let url = args
        .url
        .or_else(|| args.curl.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080/".to_owned());
    let id = args.id.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("evt_{time:x}{nanos:08x}")
    });
    commands::sign_command(&SignRequest {
        scheme: args.scheme,
        route: args.route,
        config: args.config,
        secret: args.secret,
        delivery: Delivery {
            method: args.method,
            url,
            content_type: args.content_type,
            body,
            id,
            time,
            headers,
        },
        curl: args.curl,
        body_file: args.body_file,
    })
}

fn run(path: &Path) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Installed before anything else: SIGHUP's default action would kill the process.
    let sighup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&sighup)) {
        log::error!("cannot install the SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(report) => {
            eprintln!("{report}");
            eprintln!(
                "hookgate: {} is invalid; not starting",
                report.path().display()
            );
            return ExitCode::FAILURE;
        }
    };
    for warning in loaded.warnings.lines() {
        log::warn!("{warning}");
    }
    let settings = loaded.config.server.clone();
    let routes = loaded.config.routes.len();
    let options = server::Options {
        config_path: path.to_owned(),
        clock: Arc::new(SystemClock),
        sighup,
    };
    let assembled = match server::build(loaded.config, options) {
        Ok(assembled) => assembled,
        Err(message) => {
            eprintln!("hookgate: {message}; not starting");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "serving {routes} route(s) from {} on {:?}{}",
        path.display(),
        settings.listen,
        settings
            .admin_listen
            .map(|a| format!(", admin on {a}"))
            .unwrap_or_default()
    );
    let server::Assembled {
        server,
        signals,
        access_log,
    } = assembled;
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    access_log.flush(Duration::from_secs(2));
    ExitCode::SUCCESS
}
