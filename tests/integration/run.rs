//! `promdrop run`: exit status, what is recorded, the command's own metrics,
//! overlap, signals, abandoned runs, and the shipped alert rules.

use std::fs;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use promdrop::exposition::Value;
use promdrop::exposition::parse::parse;

use crate::node_exporter::NodeExporter;
use crate::util::{Test, binary, in_dir, lock_files, peer, promdrop, push};

fn run(dir: &Path, args: &[&str]) -> crate::util::Outcome {
    Test::new()
        .arg("--dir")
        .arg(dir)
        .arg("run")
        .args(args)
        .run()
}

/// The value of an unlabelled-by-the-user metric in the group's file.
fn value(dir: &Path, job: &str, name: &str) -> Option<f64> {
    let families =
        parse(&fs::read(dir.join(format!("{job}.prom"))).ok()?).expect("group file parses");
    let family = families.into_iter().find(|f| f.name() == name)?;
    let series = family.series().next()?;
    match series.value {
        Value::Single(v) => Some(*v),
        Value::Distribution(_) => None,
    }
}

#[track_caller]
fn expect(dir: &Path, job: &str, pairs: &[(&str, f64)]) {
    for (name, want) in pairs {
        assert_eq!(value(dir, job, name), Some(*want), "{name} of {job}");
    }
}

#[test]
fn exit_status_passes_through_and_is_recorded() {
    let d = tempfile::tempdir().unwrap();
    for code in [0, 1, 42] {
        let script = format!("echo out; echo err >&2; exit {code}");
        let outcome = run(d.path(), &["job", "--", "sh", "-c", &script]).status(code);
        assert_eq!(
            (outcome.stdout.as_str(), outcome.stderr.as_str()),
            ("out\n", "err\n")
        );
        expect(
            d.path(),
            "job",
            &[
                ("promdrop_run_exit_code", f64::from(code)),
                ("promdrop_run_success", f64::from(u8::from(code == 0))),
                ("promdrop_run_signal", 0.0),
                ("promdrop_run_timed_out", 0.0),
                ("promdrop_run_running", 0.0),
            ],
        );
    }
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_runs_total", 3.0),
            ("promdrop_run_failures_total", 2.0),
        ],
    );
    // A run's lock file goes with it; the group's stays with the group.
    assert_eq!(lock_files(d.path()), ["job.lock"]);
    let start = value(d.path(), "job", "promdrop_run_start_timestamp_seconds").unwrap();
    let end = value(d.path(), "job", "promdrop_run_end_timestamp_seconds").unwrap();
    let duration = value(d.path(), "job", "promdrop_run_duration_seconds").unwrap();
    assert!(
        start <= end && (end - start - duration).abs() < 1e-6,
        "{start} {end} {duration}"
    );
    Test::new().arg("check").arg(d.path()).run().status(0);
}

#[test]
fn a_ttl_is_recorded_with_the_run_and_expires_its_group() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), &["nightly", "--ttl", "26h", "--", "true"]).status(0);
    run(d.path(), &["brief", "--ttl", "1s", "--", "true"]).status(0);
    let header = fs::read_to_string(d.path().join("nightly.prom")).unwrap();
    assert!(
        header.starts_with(
            "# promdrop group {\"job\":\"nightly\",\"labels\":{},\"ttl_seconds\":93600}\n"
        ),
        "{header}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let expired = Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("expire")
        .run()
        .status(0);
    assert_eq!(
        expired.stdout,
        "removed group {job=\"brief\"} (brief.prom): past its TTL\n"
    );
    assert!(d.path().join("nightly.prom").exists());
}

#[test]
fn death_by_signal_timeout_not_found_and_not_executable() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), &["sig", "--", "sh", "-c", "kill -KILL $$"]).status(137);
    expect(
        d.path(),
        "sig",
        &[
            ("promdrop_run_signal", 9.0),
            ("promdrop_run_exit_code", 137.0),
            ("promdrop_run_success", 0.0),
        ],
    );

    let started = Instant::now();
    let slow = run(
        d.path(),
        &["slow", "--timeout", "300ms", "--", "sleep", "30"],
    )
    .status(143);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not stop the command"
    );
    assert!(
        slow.stderr.contains("timed out and was stopped"),
        "{}",
        slow.stderr
    );
    expect(
        d.path(),
        "slow",
        &[
            ("promdrop_run_timed_out", 1.0),
            ("promdrop_run_signal", 15.0),
            ("promdrop_run_success", 0.0),
        ],
    );

    // A command that ignores SIGTERM gets SIGKILL after --kill-after.
    run(
        d.path(),
        &[
            "stubborn",
            "--timeout",
            "200ms",
            "--kill-after",
            "200ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; sleep 30",
        ],
    )
    .status(137);
    expect(
        d.path(),
        "stubborn",
        &[
            ("promdrop_run_timed_out", 1.0),
            ("promdrop_run_signal", 9.0),
        ],
    );

    let missing = run(d.path(), &["missing", "--", "/nonexistent/command"]).status(127);
    assert_eq!(
        missing.stderr,
        "promdrop: cannot run \"/nonexistent/command\": command not found\n"
    );
    expect(
        d.path(),
        "missing",
        &[
            ("promdrop_run_exit_code", 127.0),
            ("promdrop_run_failures_total", 1.0),
        ],
    );

    let script = d.path().join("not-executable.sh");
    fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let denied = run(d.path(), &["denied", "--", script.to_str().unwrap()]);
    assert_eq!(denied.code, Some(126), "{}", denied.stderr);
    assert!(
        denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );
    expect(
        d.path(),
        "denied",
        &[
            ("promdrop_run_exit_code", 126.0),
            ("promdrop_run_success", 0.0),
        ],
    );
}

#[test]
fn a_stopped_command_is_continued_when_it_times_out() {
    let d = tempfile::tempdir().unwrap();
    // A stopped command is continued, so that the SIGTERM ends it (143)
    // instead of the SIGKILL, 60 s later (137).
    run(
        d.path(),
        &[
            "stopped",
            "--timeout",
            "200ms",
            "--kill-after",
            "60s",
            "--",
            "sh",
            "-c",
            "kill -STOP $$",
        ],
    )
    .status(143);
    expect(d.path(), "stopped", &[("promdrop_run_timed_out", 1.0)]);
}

#[test]
fn last_success_survives_failures_and_counters_only_go_up() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), &["job", "--", "true"]).status(0);
    let success = value(
        d.path(),
        "job",
        "promdrop_run_last_success_timestamp_seconds",
    )
    .unwrap();
    assert!(success > 1.7e9);
    for _ in 0..3 {
        run(d.path(), &["job", "--", "false"]).status(1);
    }
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_last_success_timestamp_seconds", success),
            ("promdrop_run_runs_total", 4.0),
            ("promdrop_run_failures_total", 3.0),
        ],
    );
    // Another push to the group's key by hand does not reset the counters:
    // the next run reads them back.
    run(d.path(), &["job", "--", "true"]).status(0);
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_runs_total", 5.0),
            ("promdrop_run_failures_total", 3.0),
        ],
    );
    assert!(
        value(
            d.path(),
            "job",
            "promdrop_run_last_success_timestamp_seconds"
        )
        .unwrap()
            > success
    );
}

#[test]
fn the_commands_own_metrics_are_merged_and_bad_ones_refused() {
    let d = tempfile::tempdir().unwrap();
    let write = "printf '# HELP backup_size_bytes Size.\\n# TYPE backup_size_bytes gauge\\nbackup_size_bytes{volume=\"data\"} 1234\\n' > \"$PROMDROP_METRICS_FILE\"";
    run(
        d.path(),
        &["backup", "instance=db1", "--", "sh", "-c", write],
    )
    .status(0);
    let text = fs::read_to_string(d.path().join("backup@instance=db1.prom")).unwrap();
    assert!(
        text.contains("backup_size_bytes{instance=\"db1\",job=\"backup\",volume=\"data\"} 1234\n"),
        "{text}"
    );
    // A run that writes nothing keeps the last values.
    run(d.path(), &["backup", "instance=db1", "--", "true"]).status(0);
    assert!(
        fs::read_to_string(d.path().join("backup@instance=db1.prom"))
            .unwrap()
            .contains("backup_size_bytes{")
    );
}

#[test]
fn bad_metrics_of_the_command_are_refused_and_the_outcome_still_recorded() {
    let d = tempfile::tempdir().unwrap();
    // Invalid metrics: reported, counted, and the outcome still recorded.
    let bad = run(
        d.path(),
        &[
            "backup",
            "instance=db1",
            "--",
            "sh",
            "-c",
            "echo 'broken{ 1' > \"$PROMDROP_METRICS_FILE\"; exit 3",
        ],
    )
    .status(3);
    assert!(
        bad.stderr
            .starts_with("promdrop: $PROMDROP_METRICS_FILE:1:9: invalid label name"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains(
            "the command's own metrics were refused; its outcome is recorded without them"
        ),
        "{}",
        bad.stderr
    );
    let job = "backup@instance=db1";
    expect(
        d.path(),
        job,
        &[
            ("promdrop_run_invalid_metrics_total", 1.0),
            ("promdrop_run_exit_code", 3.0),
        ],
    );
    // Metrics that conflict with another group are refused the same way.
    push(d.path(), &["other"], "# TYPE shared gauge\nshared 1\n").status(0);
    let clash = run(
        d.path(),
        &[
            "backup",
            "instance=db1",
            "--",
            "sh",
            "-c",
            "printf '# TYPE shared counter\\nshared 2\\n' > \"$PROMDROP_METRICS_FILE\"",
        ],
    )
    .status(0);
    assert!(
        clash.stderr.starts_with("promdrop: backup@instance=db1.prom: \"shared\" has type counter here but gauge in other.prom:"),
        "{}",
        clash.stderr
    );
    expect(
        d.path(),
        job,
        &[
            ("promdrop_run_invalid_metrics_total", 2.0),
            ("promdrop_run_success", 1.0),
        ],
    );
    // Names promdrop writes itself cannot be overridden by the command.
    let own = run(
        d.path(),
        &[
            "backup",
            "instance=db1",
            "--",
            "sh",
            "-c",
            "echo 'promdrop_run_success 1' > \"$PROMDROP_METRICS_FILE\"; exit 1",
        ],
    )
    .status(1);
    assert!(
        own.stderr
            .contains("\"promdrop_run_success\" is written by promdrop itself"),
        "{}",
        own.stderr
    );
    expect(d.path(), job, &[("promdrop_run_success", 0.0)]);
    // Only promdrop's own push_* names are: others are the command's.
    run(
        d.path(),
        &[
            "backup",
            "instance=db1",
            "--",
            "sh",
            "-c",
            "echo 'push_notifications_sent_total 3' > \"$PROMDROP_METRICS_FILE\"",
        ],
    )
    .status(0);
    expect(d.path(), job, &[("push_notifications_sent_total", 3.0)]);
    Test::new().arg("check").arg(d.path()).run().status(0);
}

#[test]
fn a_metrics_file_that_is_no_regular_file_is_refused_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("secret.txt");
    fs::write(&secret, "secret_value 42\n").unwrap();
    let scripts = [
        // A symlink is not followed, to a device or to another file.
        "ln -sf /dev/zero \"$PROMDROP_METRICS_FILE\"".to_owned(),
        format!("ln -sf {} \"$PROMDROP_METRICS_FILE\"", secret.display()),
        // A FIFO would block a plain read forever.
        "rm \"$PROMDROP_METRICS_FILE\"; mkfifo \"$PROMDROP_METRICS_FILE\"".to_owned(),
    ];
    for (script, refused) in scripts.iter().zip(1u8..) {
        // Bounded, so that a regression fails instead of hanging the suite.
        let outcome = std::process::Command::new("timeout")
            .arg("60")
            .arg(binary())
            .arg("--dir")
            .arg(d.path())
            .args(["run", "job", "--", "sh", "-c", script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        assert_eq!(outcome.status.code(), Some(0), "{script}: {stderr}");
        assert!(
            stderr.starts_with("promdrop: $PROMDROP_METRICS_FILE: cannot read it: "),
            "{script}: {stderr}"
        );
        expect(
            d.path(),
            "job",
            &[("promdrop_run_invalid_metrics_total", f64::from(refused))],
        );
    }
    assert!(
        !fs::read_to_string(d.path().join("job.prom"))
            .unwrap()
            .contains("secret_value")
    );
}

fn spawn_run(dir: &Path, args: &[&str]) -> Background {
    let child = promdrop()
        .arg("--dir")
        .arg(dir)
        .arg("run")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Background(Some(child))
}

/// A `promdrop run` in the background. Dropped while it still runs (a test
/// failed before waiting for it), it gets SIGTERM, which promdrop forwards
/// to its command, and is waited for, so that it does not outlive the test.
struct Background(Option<Child>);

impl Background {
    fn pid(&self) -> Pid {
        let child = self
            .0
            .as_ref()
            .expect("a background run is held until waited for");
        Pid::from_raw(i32::try_from(child.id()).unwrap())
    }

    /// Waits for the run to end.
    fn finish(mut self) -> Output {
        let child = self.0.take().expect("a background run is waited for once");
        child.wait_with_output().unwrap()
    }

    /// SIGKILLs promdrop (not its command) and reaps it.
    fn kill(mut self) {
        let mut child = self.0.take().expect("a background run is killed once");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let _ = child.wait();
        }
    }
}

fn wait_for(path: &Path) {
    wait_until(&path.display().to_string(), || path.exists());
}

/// Polls `done` until it holds; fails after 20 s, naming `what`.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn overlapping_runs_wait_skip_or_fail() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log.txt");
    let ready = d.path().join("ready");
    let body = format!(
        "echo start >> {0}; touch {1}; sleep 0.4; echo end >> {0}",
        log.display(),
        ready.display()
    );
    // wait: the second run starts only after the first has ended.
    let first = spawn_run(d.path(), &["job", "--", "sh", "-c", &body]);
    wait_for(&ready);
    let second = spawn_run(
        d.path(),
        &["job", "--overlap", "wait", "--", "sh", "-c", &body],
    );
    for child in [first, second] {
        assert!(child.finish().status.success());
    }
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "start\nend\nstart\nend\n"
    );
    // skip: counted, exit 0; fail: counted, exit 4. The first run is unaffected.
    fs::remove_file(&ready).unwrap();
    let holder = spawn_run(
        d.path(),
        &[
            "job",
            "--",
            "sh",
            "-c",
            &format!("touch {}; sleep 1", ready.display()),
        ],
    );
    wait_for(&ready);
    let skipped = run(
        d.path(),
        &["job", "--overlap", "skip", "--", "touch", "never-run"],
    )
    .status(0);
    assert!(
        skipped
            .stderr
            .contains("another run of {job=\"job\"} is in progress; this one is skipped"),
        "{}",
        skipped.stderr
    );
    run(
        d.path(),
        &["job", "--overlap", "fail", "--", "touch", "never-run"],
    )
    .status(4);
    assert!(!Path::new("never-run").exists() && !d.path().join("never-run").exists());
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_skipped_total", 2.0),
            ("promdrop_run_running", 1.0),
        ],
    );
    assert!(holder.finish().status.success());
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_skipped_total", 2.0),
            ("promdrop_run_running", 0.0),
            ("promdrop_run_runs_total", 3.0),
        ],
    );
}

#[test]
fn sigterm_to_promdrop_reaches_the_command_and_the_outcome_is_recorded() {
    let d = tempfile::tempdir().unwrap();
    let ready = d.path().join("ready");
    let marker = d.path().join("got-term");
    let script = format!(
        "trap 'echo term > {}; exit 7' TERM; touch {}; while :; do sleep 0.05; done",
        marker.display(),
        ready.display()
    );
    let child = spawn_run(d.path(), &["job", "--", "sh", "-c", &script]);
    wait_for(&ready);
    // The marker is written while the command starts: it may land just after.
    wait_until("the running marker", || {
        value(d.path(), "job", "promdrop_run_running") == Some(1.0)
    });
    kill(child.pid(), Signal::SIGTERM).unwrap();
    let output = child.finish();
    assert_eq!(
        output.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(fs::read_to_string(&marker).unwrap(), "term\n");
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_exit_code", 7.0),
            ("promdrop_run_running", 0.0),
            ("promdrop_run_runs_total", 1.0),
        ],
    );
}

#[test]
fn a_run_whose_promdrop_was_killed_is_counted_as_abandoned() {
    let d = tempfile::tempdir().unwrap();
    let pid_file = d.path().join("child.pid");
    let script = format!(
        "echo $$ > {}.tmp && mv {0}.tmp {0}; sleep 30",
        pid_file.display()
    );
    let promdrop_process = spawn_run(d.path(), &["job", "--", "sh", "-c", &script]);
    wait_for(&pid_file);
    // The run's metrics file, past `expire`'s grace for a new file: a live
    // run's is left alone, however old.
    let metrics_files = || -> Vec<String> {
        fs::read_dir(d.path().join(".promdrop"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|name| name.starts_with(".promdrop-run-job."))
            .collect()
    };
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(metrics_files().len(), 1);
    let expire = || in_dir(d.path(), &["expire"]).status(0);
    expire();
    assert_eq!(metrics_files().len(), 1, "expire removed a live run's file");
    promdrop_process.kill();
    let child: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_running", 1.0),
            ("promdrop_run_abandoned_total", 0.0),
        ],
    );
    run(d.path(), &["job", "--", "true"]).status(0);
    expect(
        d.path(),
        "job",
        &[
            ("promdrop_run_abandoned_total", 1.0),
            ("promdrop_run_running", 0.0),
            ("promdrop_run_runs_total", 1.0),
        ],
    );
    // The killed run left its metrics file behind; `expire` removes it.
    let left = metrics_files();
    assert_eq!(left.len(), 1);
    let swept = expire();
    assert!(swept.stdout.contains(&left[0]), "{}", swept.stdout);
    assert!(metrics_files().is_empty());
}

#[test]
fn a_recording_failure_warns_unless_strict() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    // The metrics file is still named (/dev/null), so that a command that
    // writes to it does not fail for that.
    let lenient = Test::new()
        .arg("--dir")
        .arg(&missing)
        .args([
            "run",
            "job",
            "--",
            "sh",
            "-ec",
            "echo 'x 1' >> \"$PROMDROP_METRICS_FILE\"; exit 5",
        ])
        .run()
        .status(5);
    assert!(
        lenient
            .stderr
            .starts_with("promdrop: warning: the run is not recorded: textfile directory"),
        "{}",
        lenient.stderr
    );
    let strict = Test::new()
        .arg("--dir")
        .arg(&missing)
        .args(["run", "job", "--strict", "--", "touch"])
        .arg(d.path().join("ran"))
        .run()
        .status(3);
    assert!(
        strict.stderr.contains("does not exist"),
        "{}",
        strict.stderr
    );
    assert!(
        !d.path().join("ran").exists(),
        "--strict ran the command although nothing could be recorded"
    );
}

#[test]
fn with_strict_a_refused_start_marker_keeps_the_command_from_starting() {
    let d = tempfile::tempdir().unwrap();
    // Another file gives the marker's family another type: every write of
    // the group is refused.
    fs::write(
        d.path().join("other.prom"),
        "# TYPE promdrop_run_running counter\npromdrop_run_running 1\n",
    )
    .unwrap();
    let ran = d.path().join("ran");
    let ran_path = ran.to_str().unwrap();
    // Exit 3, as for any recording failure under --strict.
    let strict = run(d.path(), &["job", "--strict", "--", "touch", ran_path]).status(3);
    assert!(
        strict.stderr.contains("promdrop_run_running"),
        "{}",
        strict.stderr
    );
    assert!(!ran.exists(), "--strict ran the command unrecorded");
    let lenient = run(d.path(), &["job", "--", "touch", ran_path]).status(0);
    assert!(ran.exists());
    assert!(
        lenient
            .stderr
            .starts_with("promdrop: warning: the run is not recorded"),
        "{}",
        lenient.stderr
    );
    // The command wrote no metrics of its own: none are blamed.
    assert!(
        !lenient.stderr.contains("own metrics"),
        "{}",
        lenient.stderr
    );
    assert!(!d.path().join("job.prom").exists());
    // Refused only after the command ran (it wrote the conflicting file):
    // still exit 3, not the command's 0.
    let d = tempfile::tempdir().unwrap();
    let evil = d.path().join("evil.prom");
    let script = format!(
        "printf '# TYPE promdrop_run_exit_code counter\\npromdrop_run_exit_code 1\\n' > {}",
        evil.display()
    );
    let after = run(d.path(), &["job", "--strict", "--", "sh", "-c", &script]).status(3);
    assert!(
        after.stderr.contains("--strict makes that fatal") && evil.exists(),
        "{}",
        after.stderr
    );
}

#[test]
fn node_exporter_serves_recorded_runs_cleanly() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), &["ok", "--", "true"]).status(0);
    run(
        d.path(),
        &[
            "bad",
            "host=a",
            "--",
            "sh",
            "-c",
            "echo 'bad_items 3' > \"$PROMDROP_METRICS_FILE\"; exit 2",
        ],
    )
    .status(2);
    let Some(exporter) = NodeExporter::start(d.path()) else {
        return;
    };
    let scrape = exporter.scrape();
    assert_eq!(scrape.value("node_textfile_scrape_error"), Some("0"));
    assert!(!scrape.log.contains("level=error"), "{}", scrape.log);
    for line in [
        "promdrop_run_success{instance=\"\",job=\"ok\"} 1",
        "promdrop_run_success{host=\"a\",instance=\"\",job=\"bad\"} 0",
        "promdrop_run_exit_code{host=\"a\",instance=\"\",job=\"bad\"} 2",
        "bad_items{host=\"a\",instance=\"\",job=\"bad\"} 3",
    ] {
        assert!(scrape.text.lines().any(|l| l == line), "missing {line:?}");
    }
}

#[test]
fn shipped_alert_rules_pass_promtool_and_use_the_recorded_names() {
    let rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus");
    let rules = ["promdrop-run.rules.yml", "promdrop-groups.rules.yml"]
        .map(|file| fs::read_to_string(rules_dir.join(file)).unwrap())
        .concat();
    // Every metric the rules use is one that `run` writes.
    let d = tempfile::tempdir().unwrap();
    run(d.path(), &["job", "--", "true"]).status(0);
    let written = fs::read_to_string(d.path().join("job.prom")).unwrap();
    let used: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("promdrop_run_") || *w == "push_time_seconds")
        .collect();
    assert!(used.len() >= 6, "{used:?}");
    for name in used {
        assert!(
            written.contains(&format!("\n{name}{{")),
            "the rules use {name}, which run does not write"
        );
    }
    let Some(promtool) = peer("promtool") else {
        return;
    };
    // Run from elsewhere, so that relative paths must resolve against the
    // file that names them.
    for [verb, what, file] in [
        ["check", "rules", "promdrop-run.rules.yml"],
        ["test", "rules", "promdrop-run.rules.test.yml"],
        ["check", "rules", "promdrop-groups.rules.yml"],
        ["test", "rules", "promdrop-groups.rules.test.yml"],
        ["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args([verb, what])
            .arg(rules_dir.join(file))
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {verb} {what} {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
