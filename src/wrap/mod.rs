//! `promdrop run`: run a command and record how it ended as a group in the
//! store, so that a job that fails, hangs, runs slowly, overlaps itself or
//! never runs is visible and alertable.
//!
//! - A per-group run lock, held while the command runs, keeps two runs of one
//!   group from interleaving; `--overlap` says what a second run does.
//! - The group is written twice: `running` = 1 when the command starts, the
//!   outcome when it ends. Each write reads the group back first, so counters
//!   and the last success survive.
//! - The command may write its own metrics to the file named by
//!   `PROMDROP_METRICS_FILE`; they are validated and merged into the group
//!   (same-named families replaced, the others of earlier runs kept).
//! - Failing to record never changes the command's exit status unless
//!   `--strict` is given.

mod child;
pub mod metrics;

use std::ffi::OsString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exit::Exit;
use crate::exposition::Family;
use crate::exposition::parse::parse;
use crate::exposition::validate::{Source, validate};
use crate::grouping_key::GroupingKey;
use crate::store::{ScratchFile, Store, StoreError, StoreOptions, Wait};

pub use self::child::Spec;
use self::metrics::{Ending, Outcome, RunState, is_run_metric};

/// The environment variable naming the file the command may write metrics to.
pub const METRICS_FILE_ENV: &str = "PROMDROP_METRICS_FILE";

/// What a run does when another run of its group is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Wait for it to end, then run.
    Wait,
    /// Count the run as skipped and exit 0.
    Skip,
    /// Count the run as skipped and exit 4.
    Fail,
}

/// Options of `promdrop run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The store to record in.
    pub store: StoreOptions,
    /// The group.
    pub key: GroupingKey,
    /// The command and its limits.
    pub spec: Spec,
    /// What to do about a run in progress.
    pub overlap: Overlap,
    /// Fail (exit 3) when the outcome cannot be recorded.
    pub strict: bool,
    /// Time to live of the group after each write.
    pub ttl: Option<Duration>,
}

/// A recording failure under `--strict`, which ends promdrop with exit 3
/// whatever the store's reason.
#[derive(Debug, thiserror::Error)]
#[error("the run cannot be recorded, and --strict makes that fatal")]
pub struct NotRecorded(#[source] pub StoreError);

/// Runs the command and records it; returns how promdrop should exit.
pub fn run(options: &RunOptions) -> Result<Exit, NotRecorded> {
    let recorder = match Store::open(options.store.clone()) {
        Ok(store) => Some(Recorder {
            store,
            key: options.key.clone(),
            ttl: options.ttl,
        }),
        Err(err) => {
            not_recorded(options.strict, Some(err))?;
            None
        }
    };
    let wait = match options.overlap {
        Overlap::Wait => Wait::Up(Duration::MAX),
        Overlap::Skip | Overlap::Fail => Wait::No,
    };
    let mut _run_lock = None;
    if let Some(recorder) = &recorder {
        match recorder.store.run_lock(&options.key, wait) {
            Ok(Some(lock)) => _run_lock = Some(lock),
            Ok(None) => {
                let recorded = recorder.record(RunState::skipped, Vec::new());
                not_recorded(options.strict, recorded.err())?;
                let (verb, exit) = match options.overlap {
                    Overlap::Fail => ("not started", Exit::LockTimeout),
                    _ => ("skipped", Exit::Success),
                };
                eprintln!(
                    "promdrop: another run of {} is in progress; this one is {verb}",
                    options.key
                );
                return Ok(exit);
            }
            Err(err) => not_recorded(options.strict, Some(err))?,
        }
    }
    let started = seconds(SystemTime::now());
    // The start marker is not fsynced: after a crash the group shows the
    // previous run instead, and only this run's abandonment is lost.
    let mark = || {
        recorder.as_ref().map_or(Ok(()), |recorder| {
            recorder.record_with(|state| state.started(started), Vec::new(), false)
        })
    };
    // The marker is written right after the spawn, while the command starts,
    // so that the command does not wait for it; with --strict, before the
    // spawn, so that the command does not start when it cannot be recorded.
    let mut marked = Ok(());
    if options.strict {
        not_recorded(true, mark().err())?;
    }
    let scratch = recorder
        .as_ref()
        .and_then(|r| r.store.scratch_file(&options.key).ok());
    // Always set: when nothing can be recorded, writes to it go to
    // /dev/null rather than failing the command.
    let mut spec = options.spec.clone();
    let path = scratch.as_ref().map_or_else(
        || OsString::from("/dev/null"),
        |scratch| scratch.path().as_os_str().into(),
    );
    spec.env.push((METRICS_FILE_ENV.into(), path));
    let finished = child::execute(&spec, || {
        if !options.strict {
            marked = mark();
        }
    });
    not_recorded(false, marked.err())?;
    if let Some(why) = &finished.spawn_error {
        eprintln!("promdrop: {why}");
    }
    let outcome = Outcome {
        start: seconds(finished.started),
        end: seconds(finished.ended),
        ending: finished.ending,
        timed_out: finished.timed_out,
    };
    if finished.timed_out {
        eprintln!("promdrop: {} timed out and was stopped", options.key);
    }
    if let Some(recorder) = &recorder {
        let own = match scratch.as_ref().map(ScratchFile::read) {
            None => Ok(Vec::new()),
            Some(Ok(bytes)) => child_metrics(&bytes),
            Some(Err(err)) => Err(vec![format!("${METRICS_FILE_ENV}: cannot read it: {err}")]),
        };
        let recorded = match own {
            Ok(families) => {
                let had_own = !families.is_empty();
                recorder
                    .record(|s| s.finished(&outcome, false), families)
                    .or_else(|err| {
                        // Refused with the command's metrics: they are the
                        // suspects, and the outcome is recorded without them.
                        let (StoreError::Invalid(problems), true) = (&err, had_own) else {
                            return Err(err);
                        };
                        report_invalid(problems);
                        recorder.record(|s| s.finished(&outcome, true), Vec::new())
                    })
            }
            Err(problems) => {
                report_invalid(&problems);
                recorder.record(|s| s.finished(&outcome, true), Vec::new())
            }
        };
        not_recorded(options.strict, recorded.err())?;
    }
    Ok(outcome.ending.into())
}

/// The store and group a run records into.
struct Recorder {
    store: Store,
    key: GroupingKey,
    ttl: Option<Duration>,
}

impl Recorder {
    /// Under the group lock: reads the state back, applies `change`, and
    /// rewrites the group, merging `own` (the command's metrics) over those
    /// already there: same-named families are replaced, others kept.
    fn record(
        &self,
        change: impl FnOnce(RunState) -> RunState,
        own: Vec<Family>,
    ) -> Result<(), StoreError> {
        self.record_with(change, own, true)
    }

    /// [`Recorder::record`], choosing whether the write is fsynced.
    fn record_with(
        &self,
        change: impl FnOnce(RunState) -> RunState,
        own: Vec<Family>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let lock = self.store.lock(&self.key)?;
        let lock = if durable { lock } else { lock.without_fsync() };
        let old = lock.read()?;
        let old_families = old.as_ref().map_or(&[][..], |g| &g.families[..]);
        let mut families = change(RunState::read(old_families)).families();
        let replaced =
            |f: &Family| is_run_metric(f.name()) || own.iter().any(|o| o.name() == f.name());
        families.extend(old_families.iter().filter(|f| !replaced(f)).cloned());
        families.extend(own);
        lock.replace_over(old.as_ref(), families, self.ttl, SystemTime::now())
            .map(drop)
    }
}

/// Reads the metrics the command wrote; the problems if they are refused.
fn child_metrics(bytes: &[u8]) -> Result<Vec<Family>, Vec<String>> {
    let name = format!("${METRICS_FILE_ENV}");
    let families =
        parse(bytes).map_err(|e| vec![format!("{name}:{}:{}: {e}", e.line, e.column)])?;
    let mut problems: Vec<String> = families
        .iter()
        .filter(|f| is_run_metric(f.name()) || crate::store::is_push_metric(f.name()))
        .map(|f| format!("{name}: {:?} is written by promdrop itself", f.name()))
        .collect();
    let sources = [Source {
        name: &name,
        families: &families,
    }];
    problems.extend(
        validate(&sources)
            .into_iter()
            .map(|p| format!("{name}:{}: {}", p.line, p.violation)),
    );
    if problems.is_empty() {
        Ok(families)
    } else {
        Err(problems)
    }
}

fn report_invalid(problems: &[String]) {
    for problem in problems {
        eprintln!("promdrop: {problem}");
    }
    eprintln!(
        "promdrop: the command's own metrics were refused; its outcome is recorded without them"
    );
}

/// A recording failure: fatal with `--strict`, a warning otherwise.
fn not_recorded(strict: bool, err: Option<StoreError>) -> Result<(), NotRecorded> {
    match err {
        None => Ok(()),
        Some(err) if strict => Err(NotRecorded(err)),
        Some(err) => {
            eprintln!(
                "promdrop: warning: the run is not recorded: {}",
                crate::error_chain(&err)
            );
            Ok(())
        }
    }
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl From<Ending> for Exit {
    fn from(ending: Ending) -> Self {
        Exit::Code(u8::try_from(ending.exit_code().clamp(0, 255)).unwrap_or(u8::MAX))
    }
}
