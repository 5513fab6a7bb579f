//! The `wsx` command-line tool: `wsx serve` (echo server, chat room and a test page),
//! `wsx connect URL` (stdin to a WebSocket and back, like websocat) and `wsx bench URL`
//! (a load generator with a latency/throughput report).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bench;
mod connect;
mod fanout;
mod rooms;
mod serve;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: glibc's gives the 64 KiB buffers of large
/// messages back to the kernel (and faults them in again) every few messages, and costs more
/// per small allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `wsx` command line.
#[derive(Debug, Parser)]
#[command(
    name = "wsx",
    version,
    about = "WebSocket server, client and load generator"
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a WebSocket server: rooms on /chat and /room/NAME, a test page on /, echo elsewhere.
    Serve(serve::ServeArgs),
    /// Connect to a WebSocket URL: stdin lines go out, received messages go to stdout.
    Connect(connect::ConnectArgs),
    /// Load-test an echo endpoint and report latency and throughput.
    Bench(bench::BenchArgs),
    /// Load-test a broadcast room over one or more nodes: delivered messages/s and latency.
    Fanout(fanout::FanoutArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // `wsx serve --threads N` runs a single-threaded runtime on each of its N threads.
    let mut builder = match &cli.command {
        Command::Serve(args) if args.threads.is_some() => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsx: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Fanout(args) => fanout::run(args).await,
        }
    });
    // Tasks still running (a stuck peer, stdin reader) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
