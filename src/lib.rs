//! promdrop: get metrics out of cron jobs and other short-lived runs safely.
//!
//! A guided tour:
//! - [`exposition`] owns the text format: [`exposition::parse`] reads it with
//!   node_exporter's exact acceptance, [`exposition::validate`] applies the
//!   checks node_exporter and its registry apply across files, and
//!   [`exposition::render`] writes canonical text. It is pure.
//! - [`check`] answers "would node_exporter serve these files cleanly?".
//! - [`cli`] is the only module that knows clap; it yields a [`cli::Command`].
//! - [`exit`] holds the process exit codes.
//!
//! [`run`] executes a command; `main.rs` only parses, runs and exits.

pub mod check;
pub mod cli;
pub mod exit;
pub mod exposition;

use std::io;

use anyhow::Result;

use crate::cli::Command;
use crate::exit::Exit;

/// Runs one command to completion and says how the process should end.
pub fn run(command: Command) -> Result<Exit> {
    match command {
        Command::Check(options) => Ok(check::run(
            &options,
            io::stdin().lock(),
            io::stdout().lock(),
        )?),
    }
}

/// The exit code for an error that ended a command.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(err) = cause.downcast_ref::<check::CheckError>() {
            return match err {
                check::CheckError::Read { .. } | check::CheckError::Output(_) => Exit::Io,
            };
        }
        if cause.downcast_ref::<io::Error>().is_some() {
            return Exit::Io;
        }
    }
    Exit::Io
}

/// Whether an error is only a closed stdout (`promdrop list | head`), which
/// counts as success.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || matches!(cause.downcast_ref::<check::CheckError>(), Some(check::CheckError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe)
    })
}
