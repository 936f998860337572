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
use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::SigId;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

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

/// Runs the command to its end. `spawned` runs right after the spawn, while
/// the command starts (or after it failed to), before the wait.
pub fn execute(spec: &Spec, spawned: impl FnOnce()) -> Finished {
    // Registered before the spawn, so no signal falls between the two.
    let signals = Signals::register().ok();
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
    let child = command.spawn();
    let spawn_ended = SystemTime::now();
    spawned();
    match child {
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
                ended: spawn_ended,
                spawn_error,
            }
        }
        Ok(mut child) => {
            let id = i32::try_from(child.id()).unwrap_or(0);
            let target = if group { -id } else { id };
            let (status, timed_out) = supervise(&mut child, target, spec, signals.as_ref());
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
    }
}

/// Waits for the child in this thread, forwarding signals to `target` (the
/// pid, or the negated process group) and enforcing the timeout: SIGTERM
/// (and SIGCONT) when it runs out, SIGKILL once the grace period after it
/// has too.
/// Returns the status, and whether the timeout stopped the child.
fn supervise(
    child: &mut Child,
    target: i32,
    spec: &Spec,
    signals: Option<&Signals>,
) -> (Option<ExitStatus>, bool) {
    let Some(signals) = signals else {
        // No way to be woken: wait plainly (and no timeout can be enforced).
        return (child.wait().ok(), false);
    };
    let mut deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Some(status), timed_out),
            Ok(None) => {}
            Err(_) => return (None, timed_out),
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            let signal = if timed_out {
                deadline = None;
                Signal::SIGKILL
            } else {
                timed_out = true;
                deadline = Some(Instant::now() + spec.kill_after);
                Signal::SIGTERM
            };
            let _ = kill(Pid::from_raw(target), signal);
            if signal == Signal::SIGTERM {
                // A stopped process would not act on SIGTERM until it is
                // continued; coreutils' `timeout` sends SIGCONT too.
                let _ = kill(Pid::from_raw(target), Signal::SIGCONT);
            }
            continue;
        }
        signals.sleep(left);
        for signal in signals.forwarded() {
            let _ = kill(Pid::from_raw(target), signal);
        }
    }
}

/// The signals promdrop forwards to the command, and SIGCHLD to learn that
/// it ended, without a thread: each wakes [`Signals::sleep`] through a
/// socket, and each forwarded one also raises its flag. Unregistered on drop.
struct Signals {
    wake: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        let (wake, writer) = UnixStream::pair()?;
        let mut signals = Self {
            wake,
            flags: Vec::new(),
            ids: Vec::new(),
        };
        for (number, signal) in [
            (SIGTERM, Signal::SIGTERM),
            (SIGINT, Signal::SIGINT),
            (SIGHUP, Signal::SIGHUP),
        ] {
            let flag = Arc::new(AtomicBool::new(false));
            signals
                .ids
                .push(signal_hook::flag::register(number, Arc::clone(&flag))?);
            signals.flags.push((signal, flag));
        }
        for number in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] {
            let writer = writer.try_clone()?;
            signals
                .ids
                .push(signal_hook::low_level::pipe::register(number, writer)?);
        }
        Ok(signals)
    }

    /// Returns when a signal arrived (possibly before this call) or after
    /// `limit`.
    fn sleep(&self, limit: Option<Duration>) {
        let _ = self.wake.set_read_timeout(limit);
        let _ = (&self.wake).read(&mut [0; 64]);
    }

    /// The forwarded signals that arrived since the last call.
    fn forwarded(&self) -> impl Iterator<Item = Signal> + '_ {
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(signal, _)| *signal)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

fn classify(status: ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signaled(signal),
        (None, None) => Ending::NotExecutable,
    }
}
