//! The `hookgate` command line: `run` serves a config, `check` validates one,
//! `sign` signs a delivery as a provider would, `schemes` lists built-in schemes,
//! `demo-app` stands in for the app behind the gateway.

use std::net::SocketAddr;
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

// jemalloc: as fast as mimalloc here (+1.6% instructions per request, against
// +8% for glibc malloc), and it can give freed memory back to the system from
// background threads (see `tune_allocator`), which neither of the others does
// while the gateway is idle.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// Print the markdown table of docs/schemes.md instead
        #[arg(long)]
        markdown: bool,
    },
    /// Serve a demo app that answers 200 to every request and prints it.
    DemoApp {
        /// Address to listen on
        #[arg(long, default_value = hookgate::demo::DEFAULT_LISTEN)]
        listen: SocketAddr,
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
    /// Event id, for schemes that carry it outside the body (e.g. a `webhook-id` header) [default: derived from the body, so the same body signed again is the same event]
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
    // No transparent huge pages: where the kernel backs the heap with 2 MiB
    // pages, resident memory counts whole 2 MiB pages however little of them
    // is used, and freed memory goes back only in whole pages.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => print(commands::check(&config::resolve_path(config))),
        Command::Run { config } => run(&config::resolve_path(config)),
        // Errors and notices on stderr: stdout may be piped into `sh` (`--curl`).
        Command::Sign(args) => match sign(*args) {
            Ok(signed) => {
                if let Some(notice) = signed.notice {
                    eprintln!("hookgate sign: {notice}");
                }
                print!("{}", signed.text);
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("hookgate sign: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Schemes { markdown: false } => print(Ok(commands::schemes())),
        Command::Schemes { markdown: true } => print(Ok(commands::schemes_markdown())),
        Command::DemoApp { listen } => match hookgate::demo::run(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("hookgate: {message}");
                ExitCode::FAILURE
            }
        },
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

fn sign(args: SignArgs) -> Result<commands::Signed, String> {
    let body = match (&args.body_file, args.body) {
        (Some(file), _) => {
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
        }
        (None, Some(text)) => text.into_bytes(),
        (None, None) => {
            return Err(
                "no body to sign: pass --body TEXT or --body-file FILE (--body '' for an empty one)"
                    .to_owned(),
            );
        }
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
            id: args.id,
            time,
            headers,
        },
        curl: args.curl,
        body_file: args.body_file,
    })
}

/// Has jemalloc return memory freed by a burst (say, thousands of connections
/// that closed) to the system about a second later, from background threads,
/// even while no request comes. Its defaults wait ten seconds, and only purge
/// when the allocator is used.
fn tune_allocator() {
    use tikv_jemalloc_ctl::{Access, AsName};
    const PURGE_AFTER_MS: isize = 1000;
    let write = |key: &str, value: isize| format!("{key}\0").as_bytes().name().write(value);
    // The default for arenas made from now on (one per worker thread, mostly)…
    for (key, value) in [
        ("arenas.dirty_decay_ms", PURGE_AFTER_MS),
        ("arenas.muzzy_decay_ms", 0),
    ] {
        if let Err(e) = write(key, value) {
            log::warn!("cannot tune the allocator ({key}): {e}");
        }
    }
    // …and the arenas that exist already (those not made yet refuse it).
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read().unwrap_or(0);
    for arena in 0..arenas {
        let _ = write(&format!("arena.{arena}.dirty_decay_ms"), PURGE_AFTER_MS);
        let _ = write(&format!("arena.{arena}.muzzy_decay_ms"), 0);
    }
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        log::warn!("cannot start the allocator's background purging: {e}");
    }
}

fn run(path: &Path) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    tune_allocator();
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
