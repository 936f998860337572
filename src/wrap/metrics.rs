//! What `promdrop run` records about a run, as metric families: pure
//! functions from the previous state and an outcome to the families of the
//! group. Every metric starts with `promdrop_run_`; counters end in `_total`
//! and only ever go up, as they are read back from the group before each
//! write.

use crate::exposition::{Family, MetricType, Value};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The command exited with this code.
    Exited(i32),
    /// A signal ended the command.
    Signaled(i32),
    /// The command does not exist (exit 127).
    NotFound,
    /// The command could not be executed (exit 126).
    NotExecutable,
}

impl Ending {
    /// The exit status a shell would report: the code, 128 + the signal,
    /// 127 not found, 126 not executable.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
            Self::NotFound => 127,
            Self::NotExecutable => 126,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Unix time it started.
    pub start: f64,
    /// Unix time it ended.
    pub end: f64,
    /// How it ended.
    pub ending: Ending,
    /// Whether `--timeout` stopped it.
    pub timed_out: bool,
}

impl Outcome {
    /// Exited 0 within the timeout.
    pub fn success(&self) -> bool {
        self.ending == Ending::Exited(0) && !self.timed_out
    }
}

/// The last finished run, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LastRun {
    /// Its start; while a new run is in progress, that run's start is what
    /// the group shows, so this is only written when none is.
    start: f64,
    end: f64,
    duration: f64,
    exit_code: f64,
    success: f64,
    signal: f64,
    timed_out: f64,
}

/// Everything recorded for a group, read back before each write.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunState {
    /// 1 while a run is in progress (or was, when promdrop died).
    pub running: bool,
    /// Start of the run in progress.
    pub started: f64,
    /// The last finished run, if any.
    pub last: Option<LastRun>,
    /// End of the last successful run; 0 when none.
    pub last_success: f64,
    /// `promdrop_run_runs_total`
    pub runs: f64,
    /// `promdrop_run_failures_total`
    pub failures: f64,
    /// `promdrop_run_skipped_total`
    pub skipped: f64,
    /// `promdrop_run_abandoned_total`
    pub abandoned: f64,
    /// `promdrop_run_invalid_metrics_total`
    pub invalid_metrics: f64,
}

/// Name, type and HELP of every metric `run` writes.
pub const METRICS: &[(&str, MetricType, &str)] = &[
    (
        "promdrop_run_running",
        MetricType::Gauge,
        "1 while the command runs, else 0.",
    ),
    (
        "promdrop_run_start_timestamp_seconds",
        MetricType::Gauge,
        "Unix time the last run started.",
    ),
    (
        "promdrop_run_end_timestamp_seconds",
        MetricType::Gauge,
        "Unix time the last finished run ended.",
    ),
    (
        "promdrop_run_duration_seconds",
        MetricType::Gauge,
        "Wall time of the last finished run.",
    ),
    (
        "promdrop_run_exit_code",
        MetricType::Gauge,
        "Exit status of the last finished run: the command's code, 128+N for signal N, 126 not executable, 127 not found.",
    ),
    (
        "promdrop_run_success",
        MetricType::Gauge,
        "1 if the last finished run exited 0 within its timeout, else 0.",
    ),
    (
        "promdrop_run_signal",
        MetricType::Gauge,
        "Signal that ended the last finished run, or 0.",
    ),
    (
        "promdrop_run_timed_out",
        MetricType::Gauge,
        "1 if the last finished run was stopped by its timeout, else 0.",
    ),
    (
        "promdrop_run_last_success_timestamp_seconds",
        MetricType::Gauge,
        "Unix time the last successful run ended, or 0 if none has.",
    ),
    (
        "promdrop_run_runs_total",
        MetricType::Counter,
        "Runs that finished.",
    ),
    (
        "promdrop_run_failures_total",
        MetricType::Counter,
        "Runs that finished without success.",
    ),
    (
        "promdrop_run_skipped_total",
        MetricType::Counter,
        "Runs not started because another run of the group was in progress.",
    ),
    (
        "promdrop_run_abandoned_total",
        MetricType::Counter,
        "Runs whose promdrop died before it could record how they ended.",
    ),
    (
        "promdrop_run_invalid_metrics_total",
        MetricType::Counter,
        "Runs whose command wrote metrics that were refused.",
    ),
];

/// Whether a family is one that `run` writes itself.
pub fn is_run_metric(name: &str) -> bool {
    METRICS.iter().any(|(n, _, _)| *n == name)
}

fn value(families: &[Family], name: &str) -> Option<f64> {
    families.iter().find(|f| f.name() == name)?.first_value()
}

impl RunState {
    /// Reads the state back from a group's families.
    pub fn read(families: &[Family]) -> Self {
        let get = |name: &str| value(families, &format!("promdrop_run_{name}"));
        let last = get("end_timestamp_seconds").map(|end| LastRun {
            start: get("start_timestamp_seconds").unwrap_or(0.0),
            end,
            duration: get("duration_seconds").unwrap_or(0.0),
            exit_code: get("exit_code").unwrap_or(0.0),
            success: get("success").unwrap_or(0.0),
            signal: get("signal").unwrap_or(0.0),
            timed_out: get("timed_out").unwrap_or(0.0),
        });
        let running = get("running") == Some(1.0);
        Self {
            running,
            started: if running {
                get("start_timestamp_seconds").unwrap_or(0.0)
            } else {
                0.0
            },
            last,
            last_success: get("last_success_timestamp_seconds").unwrap_or(0.0),
            runs: get("runs_total").unwrap_or(0.0),
            failures: get("failures_total").unwrap_or(0.0),
            skipped: get("skipped_total").unwrap_or(0.0),
            abandoned: get("abandoned_total").unwrap_or(0.0),
            invalid_metrics: get("invalid_metrics_total").unwrap_or(0.0),
        }
    }

    /// A run starts at `now`. A `running` marker left by an earlier run
    /// means its promdrop died: that run is counted as abandoned.
    #[must_use]
    pub fn started(self, now: f64) -> Self {
        let abandoned = self.abandoned + f64::from(u8::from(self.running));
        Self {
            running: true,
            started: now,
            abandoned,
            ..self
        }
    }

    /// The run ended with `outcome`; `invalid_metrics` when the command's
    /// own metrics were refused.
    #[must_use]
    pub fn finished(self, outcome: &Outcome, invalid_metrics: bool) -> Self {
        let success = outcome.success();
        let signal = match outcome.ending {
            Ending::Signaled(n) => f64::from(n),
            _ => 0.0,
        };
        Self {
            running: false,
            started: 0.0,
            last: Some(LastRun {
                start: outcome.start,
                end: outcome.end,
                duration: (outcome.end - outcome.start).max(0.0),
                exit_code: f64::from(outcome.ending.exit_code()),
                success: f64::from(u8::from(success)),
                signal,
                timed_out: f64::from(u8::from(outcome.timed_out)),
            }),
            last_success: if success {
                outcome.end
            } else {
                self.last_success
            },
            runs: self.runs + 1.0,
            failures: self.failures + f64::from(u8::from(!success)),
            invalid_metrics: self.invalid_metrics + f64::from(u8::from(invalid_metrics)),
            ..self
        }
    }

    /// Another run was in progress, so this one did not start.
    #[must_use]
    pub fn skipped(self) -> Self {
        Self {
            skipped: self.skipped + 1.0,
            ..self
        }
    }

    /// The families that record this state, without labels (the store adds
    /// the grouping labels). While a run is in progress the last finished
    /// run stays visible, except its start time, which is the new run's.
    pub fn families(&self) -> Vec<Family> {
        let last = self.last;
        let start = if self.running {
            Some(self.started)
        } else {
            last.map(|l| l.start)
        };
        METRICS
            .iter()
            .filter_map(|&(name, kind, help)| {
                let short = name.strip_prefix("promdrop_run_").unwrap_or(name);
                let value = match short {
                    "running" => Some(f64::from(u8::from(self.running))),
                    "start_timestamp_seconds" => start,
                    "end_timestamp_seconds" => last.map(|l| l.end),
                    "duration_seconds" => last.map(|l| l.duration),
                    "exit_code" => last.map(|l| l.exit_code),
                    "success" => last.map(|l| l.success),
                    "signal" => last.map(|l| l.signal),
                    "timed_out" => last.map(|l| l.timed_out),
                    "last_success_timestamp_seconds" => Some(self.last_success),
                    "runs_total" => Some(self.runs),
                    "failures_total" => Some(self.failures),
                    "skipped_total" => Some(self.skipped),
                    "abandoned_total" => Some(self.abandoned),
                    "invalid_metrics_total" => Some(self.invalid_metrics),
                    _ => None,
                }?;
                let mut family = Family::new(name, kind).with_help(help);
                family.push::<&str, &str>(&[], Value::Single(value));
                Some(family)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Ending, METRICS, Outcome, RunState};
    use crate::exposition::render::to_string;

    fn outcome(start: f64, end: f64, ending: Ending, timed_out: bool) -> Outcome {
        Outcome {
            start,
            end,
            ending,
            timed_out,
        }
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Ending::Exited(42).exit_code(), 42);
        assert_eq!(Ending::Signaled(15).exit_code(), 143);
        assert_eq!(Ending::NotFound.exit_code(), 127);
        assert_eq!(Ending::NotExecutable.exit_code(), 126);
        assert!(outcome(0.0, 1.0, Ending::Exited(0), false).success());
        assert!(!outcome(0.0, 1.0, Ending::Exited(0), true).success());
        assert!(!outcome(0.0, 1.0, Ending::Exited(1), false).success());
    }

    #[test]
    fn a_run_then_a_failure_keeps_the_last_success() {
        let first = RunState::default().started(100.0);
        assert!(first.running);
        let ok = first.finished(&outcome(100.0, 130.0, Ending::Exited(0), false), false);
        let failed = ok
            .started(200.0)
            .finished(&outcome(200.0, 205.0, Ending::Signaled(9), false), true);
        assert_eq!(failed.last_success, 130.0);
        assert_eq!(
            (failed.runs, failed.failures, failed.invalid_metrics),
            (2.0, 1.0, 1.0)
        );
        let text = to_string(&failed.families());
        for line in [
            "promdrop_run_exit_code 137",
            "promdrop_run_signal 9",
            "promdrop_run_success 0",
            "promdrop_run_duration_seconds 5",
            "promdrop_run_last_success_timestamp_seconds 130",
            "promdrop_run_running 0",
            "promdrop_run_runs_total 2",
            "promdrop_run_failures_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn state_reads_back_from_what_it_writes() {
        let state = RunState::default()
            .started(10.0)
            .finished(&outcome(10.0, 12.5, Ending::Exited(3), true), false)
            .skipped()
            .started(20.0);
        let written = to_string(&state.families());
        let families = crate::exposition::parse::parse(written.as_bytes()).unwrap();
        assert_eq!(to_string(&RunState::read(&families).families()), written);
        assert!(
            written.contains("promdrop_run_duration_seconds 2.5\n"),
            "{written}"
        );
        // A skip counted during the run keeps the last run's duration.
        let during = to_string(&RunState::read(&families).skipped().families());
        assert!(
            during.contains("promdrop_run_duration_seconds 2.5\n")
                && during.contains("promdrop_run_skipped_total 2\n"),
            "{during}"
        );
        // The running marker of a run whose promdrop died is an abandoned run.
        assert_eq!(RunState::read(&families).started(30.0).abandoned, 1.0);
    }

    #[test]
    fn while_the_first_run_runs_no_outcome_is_claimed() {
        let text = to_string(&RunState::default().started(5.0).families());
        assert!(
            text.contains("promdrop_run_running 1\n")
                && text.contains("promdrop_run_start_timestamp_seconds 5\n")
        );
        assert!(
            !text.contains("promdrop_run_success") && !text.contains("promdrop_run_exit_code"),
            "{text}"
        );
        assert_eq!(METRICS.len(), 14);
    }
}
