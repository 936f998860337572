//! The command line: the only module that knows clap. It turns raw
//! arguments into a validated [`Command`] that the rest of the crate runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::check::CheckOptions;

/// What to do, validated.
#[derive(Debug, Clone)]
pub enum Command {
    /// `promdrop check`
    Check(CheckOptions),
}

#[derive(Debug, Parser)]
#[command(
    name = "promdrop",
    version,
    about = "Get metrics out of cron jobs safely: validated, atomic node_exporter textfiles",
    propagate_version = true
)]
struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Check that node_exporter would serve metric files cleanly.
    ///
    /// Exits 0 when node_exporter 1.5.0's textfile collector would serve the
    /// inputs with no scrape error, no dropped series and no crash; otherwise
    /// prints one `path:line:column: message` line per problem and exits 1.
    /// A directory is checked as node_exporter reads it: its `*.prom` files,
    /// together.
    ///
    /// Example: promdrop check /var/lib/prometheus/node-exporter
    Check {
        /// Files or directories to check together; standard input if none.
        paths: Vec<PathBuf>,
        /// Print a JSON report instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the process arguments; exits with usage help on error.
pub fn parse() -> Command {
    from_args(Args::parse())
}

fn from_args(args: Args) -> Command {
    match args.command {
        Sub::Check { paths, json } => Command::Check(CheckOptions { paths, json }),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Args;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
