use clap::Parser;

/// mimalloc: the request path allocates small, short-lived buffers and maps, where it is
/// markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let requested = std::env::var("RUST_LOG").unwrap_or_default();
    let default = || EnvFilter::new("info,pingora=warn,pingora_core=warn,pingora_proxy=warn");
    let mut filter = match requested.trim() {
        "" => default(),
        given => EnvFilter::try_new(given).unwrap_or_else(|_| default()),
    };
    // pingora's own lines that tollgate reports better, unless asked for by name: the
    // upgrade's wait for the old process's sockets (an ERROR a second while it waits,
    // though waiting is its job) and unhealthy targets (tollgate logs target and cause).
    for (target, level) in [
        ("pingora_core::server::transfer_fd", "off"),
        ("pingora_load_balancing", "error"),
    ] {
        if !requested.contains(target) {
            if let Ok(directive) = format!("{target}={level}").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    tollgate::cli::run(tollgate::cli::Cli::parse())
}
