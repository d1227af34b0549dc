//! `shmlane`: the command-line tool.
//!
//! ```text
//! shmlane bench [--transports LIST] [--sizes LIST] [--duration S] [--json] [--plot FILE]
//! shmlane bench --only in-process|cross-process|codec [--runs N] [--messages N] [--scale F]
//! shmlane send ADDR [options] < lines
//! shmlane recv ADDR [options] > lines
//! shmlane ls | stat NAME | rm NAME... | rm --stale
//! ```
//!
//! One file per command under `command/`; what two commands share lives
//! beside them (`endpoint` for send and recv, `signals`, `output`). The
//! binary uses only the facade crate `shmlane` (segments through
//! `shmlane::segments`) and, for `bench`, the measurement harness.
//!
//! Exit status: 0 done, 1 run-time error, 2 usage error (clap's), 128+N
//! stopped by signal N. A closed stdout (`| head`) is a quiet success.

mod command;
mod endpoint;
mod output;
mod signals;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::output::StdoutClosed;
use crate::signals::Interrupted;

/// Lock-free channels between processes, from the shell: measure them
/// against every kernel IPC mechanism, move lines through them, and
/// inspect or remove the shared-memory segments they live in.
#[derive(Parser)]
#[command(name = "shmlane", version, propagate_version = true)]
#[command(after_help = "Exit status: 0 done, 1 run-time error, 2 usage error, \
                        128+N stopped by signal N.\n\
                        `shmlane help COMMAND` or `shmlane COMMAND --help` tells more.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Bench(command::bench::Args),
    Send(command::send::Args),
    Recv(command::recv::Args),
    Ls(command::ls::Args),
    Stat(command::stat::Args),
    Rm(command::rm::Args),
    Bridge(command::bridge::Args),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Bench(_) => "bench",
            Self::Send(_) => "send",
            Self::Recv(_) => "recv",
            Self::Ls(_) => "ls",
            Self::Stat(_) => "stat",
            Self::Rm(_) => "rm",
            Self::Bridge(_) => "bridge",
        }
    }
}

/// A usage error found after parsing (options that do not go together):
/// printed as clap prints its own, with the command's usage, status 2.
pub(crate) fn usage_error(subcommand: &str, message: impl std::fmt::Display) -> ! {
    let mut cmd = Cli::command();
    // Builds the full `shmlane SUBCOMMAND` names the usage line shows.
    cmd.build();
    let sub = cmd
        .find_subcommand_mut(subcommand)
        .expect("usage_error names a subcommand");
    sub.error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

fn main() -> ExitCode {
    // A bench peer process is this binary re-run: it does its part and exits.
    shmlane_benches::ipc::maybe_run_peer();
    // Usage errors exit 2 here; `--help` and `--version` exit 0.
    let cli = Cli::parse();
    let name = cli.command.name();
    let result = match cli.command {
        Command::Bench(args) => command::bench::run(args),
        Command::Send(args) => command::send::run(args),
        Command::Recv(args) => command::recv::run(args),
        Command::Ls(args) => command::ls::run(args),
        Command::Stat(args) => command::stat::run(args),
        Command::Rm(args) => command::rm::run(args),
        Command::Bridge(args) => command::bridge::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(Interrupted(sig)) => ExitCode::from(128u8.saturating_add(*sig as u8)),
            None => {
                eprintln!("shmlane {name}: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
