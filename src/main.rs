//! The `hookgate` command line: `run` serves a config, `check` validates one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

use hookgate::clock::SystemClock;

// Every request allocates and frees many small buffers across threads; under load
// mimalloc cut the gateway's CPU per request by ~10% against glibc malloc
// (benches/load.sh, measured with CPU time per request).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use hookgate::{config, server};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config::resolve_path(config)),
        Command::Run { config } => run(config::resolve_path(config)),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for warning in loaded.warnings.lines() {
                println!("{warning}");
            }
            let c = &loaded.config;
            let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
            let listen: Vec<String> = c.server.listen.iter().map(ToString::to_string).collect();
            println!(
                "{}: ok: {} route(s) [{}], listening on {}",
                path.display(),
                names.len(),
                names.join(", "),
                listen.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(report) => {
            println!("{report}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: PathBuf) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Installed before anything else: SIGHUP's default action would kill the process.
    let sighup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&sighup)) {
        log::error!("cannot install the SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    let loaded = match config::load(&path) {
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
    log::info!(
        "serving {} route(s) from {} on {:?}",
        loaded.config.routes.len(),
        path.display(),
        loaded.config.server.listen
    );
    let options = server::Options {
        config_path: path,
        clock: Arc::new(SystemClock),
        sighup,
        watch_file: loaded.config.server.watch_config,
    };
    server::build(loaded.config, options).run_forever()
}
