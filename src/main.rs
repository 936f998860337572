//! The `promdrop` binary: parse arguments, run, exit. Everything else lives
//! in the library.

use std::process::ExitCode;

use promdrop::exit::Exit;

fn main() -> ExitCode {
    let command = promdrop::cli::parse();
    match promdrop::run(command) {
        Ok(exit) => exit.into(),
        Err(err) if promdrop::is_broken_pipe(&err) => Exit::Success.into(),
        Err(err) => {
            eprintln!("promdrop: {err:#}");
            promdrop::exit_for(&err).into()
        }
    }
}

/// The static musl build's allocator: see src/allocator.rs. Its tests run on
/// every target.
#[cfg(any(target_env = "musl", test))]
mod allocator;

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator::new();
