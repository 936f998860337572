//! promdrop: get metrics out of cron jobs and other short-lived runs safely.
//!
//! A guided tour:
//! - [`exposition`] owns the text format: [`exposition::parse`] reads it with
//!   node_exporter's exact acceptance, [`exposition::validate`] applies the
//!   checks node_exporter and its registry apply across files, and
//!   [`exposition::render`] writes canonical text. It is pure.
//! - [`protobuf`] reads delimited protobuf `MetricFamily` bodies into the
//!   same model.
//! - [`grouping_key`] owns the group identity and its file name.
//! - [`store`] is the only module that touches the textfile directory:
//!   validated, locked, atomic group files.
//! - [`wrap`] runs a cron job's command and records how it ended.
//! - [`server`] serves the store as a Pushgateway-compatible endpoint; the
//!   only module that knows HTTP.
//! - [`commands`] runs `push`, `delete`, `show`, `list` and `expire`.
//! - [`check`] answers "would node_exporter serve these files cleanly?".
//! - [`cli`] is the only module that knows clap; it yields a [`cli::Command`].
//! - [`exit`] holds the process exit codes.
//!
//! [`run`] executes a command; `main.rs` only parses, runs and exits.

pub mod check;
pub mod cli;
pub mod commands;
pub mod duration;
pub mod exit;
pub mod exposition;
pub mod grouping_key;
pub mod protobuf;
pub mod server;
pub mod store;
pub mod wrap;

use std::io;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::Command;
use crate::exit::Exit;
use crate::exposition::parse::{ParseError, parse_injected, parse_injected_while_reading};
use crate::exposition::{Family, Injection};
use crate::store::StoreError;

/// Runs one command to completion and says how the process should end.
pub fn run(command: Command) -> Result<Exit> {
    // A file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) must fail the
    // write that passes it, which then publishes nothing, instead of killing
    // promdrop: with a handler installed, the write fails with EFBIG.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let stdout = io::stdout().lock();
    match command {
        Command::Check(options) => Ok(check::run(&options, whole_stdin(), stdout)?),
        Command::Push(options) => commands::push(&options, whole_stdin()),
        Command::Delete(options, key) => commands::delete(options, &key),
        Command::Show(options, key) => commands::show(options, &key, stdout),
        Command::List(options, format) => commands::list(options, format, stdout),
        Command::Expire(options, mode) => commands::expire(options, mode, stdout),
        Command::Run(options) => Ok(wrap::run(&options)?),
        Command::Serve(options) => {
            server::serve(&options)?;
            Ok(Exit::Success)
        }
        Command::Completions(text) | Command::Man(text) => {
            let mut stdout = stdout;
            io::Write::write_all(&mut stdout, &text)?;
            Ok(Exit::Success)
        }
    }
}

/// Standard input, for a command that reads all of it before it starts work.
///
/// When it is a pipe, its buffer is widened from the kernel's 64 kB to 1 MB
/// (the most an unprivileged process may ask for) first: the writer then
/// blocks, and wakes this process, a sixteenth as often. Measured
/// 2026-11-22 on 7.5 MB from `cat`: 3-4 ms off a `push` of 70-75 ms, and
/// 6 ms off a `check` of 40. Not a pipe, or over the user's quota of pipe
/// memory: the buffer stays as it was.
fn whole_stdin() -> io::StdinLock<'static> {
    use std::os::fd::AsRawFd as _;
    let stdin = io::stdin();
    let _ = nix::fcntl::fcntl(
        stdin.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
    stdin.lock()
}

/// The most `push` and `check` read from standard input or `--file`: the
/// size of the largest group file the store reads. Past it, reading stops
/// with an error, so that `< /dev/zero` cannot take all memory.
pub const MAX_INPUT: u64 = store::DEFAULT_MAX_FILE_SIZE;

/// The room [`read_input`] reserves before it reads. Grown as it fills, the
/// buffer of a large input would be copied at every doubling, and each copy
/// faulted in afresh: 3-4 ms of a 7.5 MB push (measured 2026-12-06). An
/// allocation this large is mapped, not touched, so the pages a small input
/// does not fill cost nothing.
const INPUT_RESERVE: usize = 64 << 20;

const _: () = assert!(INPUT_RESERVE as u64 <= MAX_INPUT);

/// All of `input`, if it is at most [`MAX_INPUT`] bytes.
pub(crate) fn read_input(input: impl io::Read) -> io::Result<Vec<u8>> {
    read_rest(Vec::with_capacity(INPUT_RESERVE), input)
}

/// `push`'s input, read and parsed with `injection` merged in, if it is at
/// most [`MAX_INPUT`] bytes. A large input is parsed in parts while it is
/// still being read (see [`parse_injected_while_reading`]).
pub(crate) fn read_parsed(
    mut input: impl io::Read,
    injection: &Arc<Injection>,
) -> io::Result<Result<Vec<Family>, ParseError>> {
    // Mapped, not touched, like the room `read_input` reserves.
    let mut buf = vec![0; INPUT_RESERVE];
    let fill = |room: &mut [u8]| {
        // A regular file would fill all the room in one read; a part's
        // worth at a time, its first part is parsed while the rest is read.
        let step = room.len().min(READ_STEP);
        let room = &mut room[..step];
        loop {
            match input.read(room) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                read => return read,
            }
        }
    };
    if let Some(parsed) = parse_injected_while_reading(&mut buf, fill, injection)? {
        return Ok(parsed);
    }
    let bytes = read_rest(buf, input)?;
    Ok(parse_injected(&bytes, injection))
}

/// The most [`read_parsed`] asks for in one read.
const READ_STEP: usize = 1 << 20;

/// `bytes`, then the rest of `input`, if that is at most [`MAX_INPUT`]
/// bytes.
///
/// The buffer grows by doubling, but never past the limit: the byte that
/// would go over it is read on its own. (Left to `read_to_end`, a buffer
/// that fills up exactly at the limit would be doubled once more first.)
fn read_rest(mut bytes: Vec<u8>, mut input: impl io::Read) -> io::Result<Vec<u8>> {
    loop {
        let room = (bytes.capacity() - bytes.len()) as u64;
        let left = MAX_INPUT - bytes.len() as u64;
        // With the buffer's exact room to fill, read_to_end does not grow it.
        let mut limited = <&mut _ as io::Read>::take(&mut input, room.min(left));
        let read = io::Read::read_to_end(&mut limited, &mut bytes)?;
        if bytes.len() as u64 == MAX_INPUT {
            if io::Read::bytes(input).next().transpose()?.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("over the limit of {MAX_INPUT} bytes"),
                ));
            }
            return Ok(bytes);
        }
        if (read as u64) < room {
            return Ok(bytes);
        }
        let grow = bytes
            .capacity()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        bytes.reserve_exact(grow);
    }
}

/// The exit code for an error that ended a command.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.is::<wrap::NotRecorded>() {
            return Exit::Io;
        }
        if let Some(err) = cause.downcast_ref::<StoreError>() {
            return match err {
                StoreError::Invalid(_) | StoreError::NotOurs(_) | StoreError::Corrupt { .. } => {
                    Exit::InvalidInput
                }
                StoreError::LockTimeout { .. } => Exit::LockTimeout,
                _ => Exit::Io,
            };
        }
    }
    Exit::Io
}

/// An error and its causes on one line, as `{:#}` prints them with anyhow.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether an error is only a closed stdout (`promdrop list | head`), which
/// counts as success.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<io::Error>().or_else(|| {
            match cause.downcast_ref::<check::CheckError>() {
                Some(check::CheckError::Output(e)) => Some(e),
                _ => None,
            }
        });
        io.is_some_and(commands::is_broken_pipe)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn input_is_read_whole_around_and_past_the_reserve() {
        for len in [
            0,
            5,
            INPUT_RESERVE,
            INPUT_RESERVE + 1,
            3 * INPUT_RESERVE + 7,
        ] {
            let bytes = read_input(io::repeat(7).take(len as u64)).unwrap();
            assert_eq!(bytes.len(), len);
            assert!(bytes.iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn input_is_parsed_whole_around_and_past_the_reserve() {
        let injection = Arc::new(Injection::new(&[("job", "j")], &[]));
        for len in [INPUT_RESERVE - 1, INPUT_RESERVE, INPUT_RESERVE + 1] {
            // One long comment line, then a sample: `a 1\n` is 4 bytes.
            let input = io::repeat(b'#')
                .take((len - 5) as u64)
                .chain(&b"\na 1\n"[..]);
            let families = read_parsed(input, &injection).unwrap().unwrap();
            assert_eq!(families.len(), 1, "{len}");
            assert_eq!(families[0].name(), "a");
            let series: Vec<_> = families[0].series().map(|s| s.labels.as_text()).collect();
            assert_eq!(series, ["job=\"j\""]);
        }
    }
}
