//! Running the wrapped command: the only place promdrop spawns a process.
//!
//! The child inherits standard input, output and error. SIGTERM, SIGINT and
//! SIGHUP sent to promdrop are forwarded to it, and promdrop keeps waiting, so
//! the outcome is still recorded. A timeout sends SIGTERM, then SIGKILL after
//! the grace period.
//!
//! With a timeout, the child runs in a process group of its own and signals
//! go to the whole group, as coreutils' `timeout` does, so that a shell
//! script's own children are stopped too and cannot hold its output open.
//! Without one, the child stays in promdrop's group, where it can read from
//! a terminal.

use std::ffi::OsString;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::metrics::Ending;

/// How to run the command.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Program and arguments.
    pub command: Vec<OsString>,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
    /// Stop the command after this long.
    pub timeout: Option<Duration>,
    /// After the timeout's SIGTERM, SIGKILL after this long.
    pub kill_after: Duration,
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// Whether the timeout stopped it.
    pub timed_out: bool,
    /// When it started and ended.
    pub started: SystemTime,
    /// See `started`.
    pub ended: SystemTime,
    /// For a command that never started: why, for the user.
    pub spawn_error: Option<String>,
}

/// Runs the command to its end.
pub fn execute(spec: &Spec) -> Finished {
    let pid = Arc::new(AtomicI32::new(0));
    // Registered before the spawn, so no signal falls between the two.
    let forwarder = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .ok()
        .map(|mut signals| {
            let handle = signals.handle();
            let pid = Arc::clone(&pid);
            let thread = std::thread::spawn(move || {
                for signal in signals.forever() {
                    let target = pid.load(Ordering::SeqCst);
                    if let (true, Ok(signal)) = (target != 0, Signal::try_from(signal)) {
                        let _ = kill(Pid::from_raw(target), signal);
                    }
                }
            });
            (handle, thread)
        });
    let started = SystemTime::now();
    let (program, args) = spec
        .command
        .split_first()
        .expect("the CLI requires a command");
    let mut command = Command::new(program);
    command.args(args).envs(spec.env.iter().cloned());
    // A negative pid signals the process group of that id.
    let group = spec.timeout.is_some();
    if group {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    let spawned = command.spawn();
    let finished = match spawned {
        Err(err) => {
            let (ending, why) = match err.kind() {
                std::io::ErrorKind::NotFound => (Ending::NotFound, "command not found".to_owned()),
                std::io::ErrorKind::PermissionDenied => {
                    (Ending::NotExecutable, "permission denied".to_owned())
                }
                _ => (Ending::NotExecutable, err.to_string()),
            };
            let spawn_error = Some(format!("cannot run {:?}: {why}", program.to_string_lossy()));
            Finished {
                ending,
                timed_out: false,
                started,
                ended: SystemTime::now(),
                spawn_error,
            }
        }
        Ok(mut child) => {
            let id = i32::try_from(child.id()).unwrap_or(0);
            let target = if group { -id } else { id };
            pid.store(target, Ordering::SeqCst);
            let (status, timed_out) = if spec.timeout.is_some() {
                let (sender, receiver) = mpsc::channel();
                std::thread::spawn(move || {
                    let _ = sender.send(child.wait());
                });
                wait(&receiver, target, spec)
            } else {
                (child.wait().ok(), false)
            };
            pid.store(0, Ordering::SeqCst);
            let ending = match status {
                Some(status) => classify(status),
                // Waiting failed: nothing is known but that it is over.
                None => Ending::NotExecutable,
            };
            Finished {
                ending,
                timed_out,
                started,
                ended: SystemTime::now(),
                spawn_error: None,
            }
        }
    };
    if let Some((handle, thread)) = forwarder {
        handle.close();
        let _ = thread.join();
    }
    finished
}

/// Waits for the child, enforcing the timeout; `target` is the pid (or the
/// negated process group) that signals go to.
fn wait(
    receiver: &mpsc::Receiver<std::io::Result<ExitStatus>>,
    target: i32,
    spec: &Spec,
) -> (Option<ExitStatus>, bool) {
    let Some(timeout) = spec.timeout else {
        return (receiver.recv().ok().and_then(Result::ok), false);
    };
    if let Ok(status) = receiver.recv_timeout(timeout) {
        return (status.ok(), false);
    }
    let _ = kill(Pid::from_raw(target), Signal::SIGTERM);
    if let Ok(status) = receiver.recv_timeout(spec.kill_after) {
        return (status.ok(), true);
    }
    let _ = kill(Pid::from_raw(target), Signal::SIGKILL);
    (receiver.recv().ok().and_then(Result::ok), true)
}

fn classify(status: ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signaled(signal),
        (None, None) => Ending::NotExecutable,
    }
}
