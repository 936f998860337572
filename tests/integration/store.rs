//! The textfile store through the CLI: `push`, `delete`, `show`, `list`,
//! `expire`; locking, atomicity under SIGKILL, failures that leave the old
//! file alone, and interop with the real node_exporter and Python client.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use promdrop::exposition::parse::parse;

use crate::node_exporter::NodeExporter;
use crate::util::{Rng, Test, Tmpfs, binary, in_dir, is_root, lock_files, peer, promdrop, push};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).expect("readable file")
}

/// The group file without its volatile push time.
fn stable(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("push_time_seconds"))
        .flat_map(|l| {
            [
                l, "
",
            ]
        })
        .collect()
}

#[test]
fn a_push_large_enough_for_two_threads_writes_what_smaller_pushes_write() {
    // 50 families of 500 series, 1.8 MB: past the sizes from which parsing,
    // label injection and the checks share two threads. Pushed as two
    // halves, the second with --add, each below those sizes, the same group
    // comes out.
    let family = |f: usize| {
        let kind = ["gauge", "counter", "untyped"][f % 3];
        let mut text = format!("# HELP m{f} Family {f}.\n# TYPE m{f} {kind}\n");
        for s in 0..500 {
            writeln!(
                text,
                "m{f}{{path=\"/srv/{f}/{s}\",host=\"db{s}.example.com\",instance=\"body\"}} {}",
                s * f
            )
            .unwrap();
        }
        text
    };
    let all: String = (0..50).map(family).collect();
    let first: String = (0..25).map(family).collect();
    let second: String = (25..50).map(family).collect();
    assert!(all.len() > 1 << 20 && first.len() < 1 << 20 && second.len() < 1 << 20);
    let (whole, pieces) = (dir(), dir());
    push(whole.path(), &["big", "instance=i"], &all)
        .status(0)
        .stderr("");
    push(pieces.path(), &["big", "instance=i"], &first).status(0);
    push(pieces.path(), &["big", "instance=i", "--add"], &second).status(0);
    let text = read(whole.path().join("big@instance=i.prom"));
    assert_eq!(
        stable(&text),
        stable(&read(pieces.path().join("big@instance=i.prom")))
    );
    assert_eq!(
        text.matches("instance=\"i\",job=\"big\",path=").count(),
        25_000
    );
    assert!(!text.contains("body"));
}

#[test]
fn push_writes_a_self_describing_group_file() {
    let d = dir();
    push(d.path(), &["backup", "instance=db1", "--ttl", "26h"], "# HELP backup_size_bytes Size.\n# TYPE backup_size_bytes gauge\nbackup_size_bytes{volume=\"data\",instance=\"body\"} 1234\n")
        .status(0)
        .stdout("")
        .stderr("");
    let text = read(d.path().join("backup@instance=db1.prom"));
    assert_eq!(
        stable(&text),
        "# promdrop group {\"job\":\"backup\",\"labels\":{\"instance\":\"db1\"},\"ttl_seconds\":93600}\n\
         # HELP backup_size_bytes Size.\n# TYPE backup_size_bytes gauge\n\
         backup_size_bytes{instance=\"db1\",job=\"backup\",volume=\"data\"} 1234\n\
         # HELP push_failure_time_seconds Last Unix time when changing this group in the Pushgateway failed.\n\
         # TYPE push_failure_time_seconds gauge\npush_failure_time_seconds{instance=\"db1\",job=\"backup\"} 0\n\
         # HELP push_time_seconds Last Unix time when changing this group in the Pushgateway succeeded.\n\
         # TYPE push_time_seconds gauge\n"
    );
    let pushed: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("push_time_seconds{instance=\"db1\",job=\"backup\"} "))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - pushed).abs() < 60.0,
        "push time {pushed} vs now {now}"
    );
    let mode = fs::metadata(d.path().join("backup@instance=db1.prom")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o644
    );
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["check"])
        .arg(d.path())
        .run()
        .status(0);
}

#[test]
fn replace_and_add_follow_the_pushgateway() {
    let d = dir();
    push(d.path(), &["j"], "a 1\nb 2\n").status(0);
    push(d.path(), &["j", "--add"], "b{x=\"new\"} 3\nc 4\n").status(0);
    let text = stable(&read(d.path().join("j.prom")));
    assert!(text.contains("a{instance=\"\",job=\"j\"} 1\n"), "{text}");
    assert!(
        text.contains("b{instance=\"\",job=\"j\",x=\"new\"} 3\n")
            && !text.contains("b{instance=\"\",job=\"j\"} 2"),
        "{text}"
    );
    assert!(text.contains("c{instance=\"\",job=\"j\"} 4\n"), "{text}");
    push(d.path(), &["j"], "z 9\n").status(0);
    let text = stable(&read(d.path().join("j.prom")));
    assert!(
        !text.contains("\na{")
            && !text.contains("\nc{")
            && text.contains("z{instance=\"\",job=\"j\"} 9"),
        "{text}"
    );
    // A pushed push_time_seconds is always overridden.
    push(d.path(), &["j", "--add"], "push_time_seconds 5\n").status(0);
    assert!(
        !read(d.path().join("j.prom")).contains("push_time_seconds{instance=\"\",job=\"j\"} 5\n")
    );
}

#[test]
fn run_metrics_ttls_under_a_second_and_endless_input_are_refused() {
    let d = dir();
    push(d.path(), &["evil"], "promdrop_run_success 1\n")
        .status(1)
        .stderr(
            "promdrop: <stdin>:1: \"promdrop_run_success\" is reserved for the metrics of promdrop run\n\
             promdrop: refused push to group {job=\"evil\"}; nothing was changed\n",
        );
    for ttl in ["0", "500ms"] {
        push(d.path(), &["t", "--ttl", ttl], "m 1\n").status(2);
    }
    assert!(
        fs::read_dir(d.path())
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".prom") })
    );
    // Reading stops at the cap instead of taking all memory.
    let endless = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 4000000; exec \"$0\" --dir \"$1\" push z --file /dev/zero")
        .arg(binary())
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(endless.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&endless.stderr).contains("over the limit of 1073741824 bytes"),
        "{}",
        String::from_utf8_lossy(&endless.stderr)
    );
}

#[test]
fn list_warns_about_a_group_file_that_does_not_read_back() {
    let d = dir();
    push(d.path(), &["broken"], "m 1\n").status(0);
    push(d.path(), &["fine"], "m 2\n").status(0);
    let mut text = read(d.path().join("broken.prom"));
    text.push_str("garbage{\n");
    fs::write(d.path().join("broken.prom"), text).unwrap();
    // Another tool's file is none of promdrop's business: no warning.
    fs::write(d.path().join("foreign.prom"), "other 1\n").unwrap();
    let listed = Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("list")
        .run()
        .status(0);
    assert!(
        listed.stdout.contains("{job=\"fine\"}") && !listed.stdout.contains("broken"),
        "{}",
        listed.stdout
    );
    assert!(
        listed
            .stderr
            .starts_with("promdrop: warning: broken.prom is not listed: invalid: line ")
            && listed.stderr.lines().count() == 1,
        "{}",
        listed.stderr
    );
}

#[test]
fn file_dash_is_standard_input() {
    let d = dir();
    push(d.path(), &["j", "--file", "-"], "m 1\n").status(0);
    assert!(read(d.path().join("j.prom")).contains("\nm{instance=\"\",job=\"j\"} 1\n"));
}

#[test]
fn job_label_option_avoids_exported_job() {
    let d = dir();
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["--job-label", "cron_job", "push", "backup"])
        .stdin("m 1\n")
        .run()
        .status(0);
    assert!(
        read(d.path().join("backup.prom")).contains("m{cron_job=\"backup\",instance=\"\"} 1\n")
    );
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["--job-label", "__x", "push", "b"])
        .stdin("m 1\n")
        .run()
        .status(2);
    // A grouping label of that name would be overwritten in every series.
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["--job-label", "cron_job", "push", "b", "cron_job=x"])
        .stdin("m 1\n")
        .run()
        .status(2);
    // Boolean settings take the usual spellings.
    for value in ["1", "yes", "0"] {
        Test::new()
            .arg("--dir")
            .arg(d.path())
            .env("PROMDROP_NO_FSYNC", value)
            .args(["push", "b"])
            .stdin("m 1\n")
            .run()
            .status(0);
    }
}

#[test]
fn delete_show_and_list() {
    let d = dir();
    push(
        d.path(),
        &["a", "--ttl", "1h"],
        "m{x=\"1\"} 1\nm{x=\"2\"} 2\n",
    )
    .status(0);
    push(d.path(), &["b", "path=/var/../x"], "n 1\n").status(0);
    fs::write(d.path().join("foreign.prom"), "other_tool_metric 1\n").unwrap();
    let shown = Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["show", "a"])
        .run()
        .status(0);
    assert_eq!(shown.stdout, read(d.path().join("a.prom")));
    let list = Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("list")
        .run()
        .status(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", list.stdout);
    assert!(
        lines[0].starts_with("GROUP ") && lines[0].ends_with("SERIES"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("{job=\"a\"}")
            && lines[1].contains(" a.prom ")
            && lines[1].contains(" 1h ")
            && lines[1].ends_with(" 2"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("b@path=%2Fvar%2F..%2Fx.prom"),
        "{}",
        lines[2]
    );
    let json = Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["list", "--json"])
        .run()
        .status(0);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows[0]["job"], "a");
    assert_eq!(rows[0]["series"], 2);
    assert_eq!(rows[0]["ttl_seconds"], 3600);
    assert_eq!(rows[0]["expired"], false);
    assert_eq!(rows[1]["labels"]["path"], "/var/../x");
    assert!(rows[1]["ttl_seconds"].is_null());
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["delete", "b", "path=/var/../x"])
        .run()
        .status(0)
        .stdout("");
    assert!(!d.path().join("b@path=%2Fvar%2F..%2Fx.prom").exists());
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["delete", "b", "path=/var/../x"])
        .run()
        .status(0);
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["show", "nope"])
        .run()
        .status(1)
        .stderr(&format!(
            "promdrop: no group {{job=\"nope\"}} in {:?}\n",
            d.path()
        ));
    // A file promdrop did not write is never replaced or deleted.
    push(d.path(), &["foreign"], "m 1\n").status(1);
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["delete", "foreign"])
        .run()
        .status(1)
        .stderr(&format!(
            "promdrop: {:?} exists and was not written by promdrop, which neither replaces nor deletes it\nhint: remove or rename it yourself, or use another job name\n",
            d.path().join("foreign.prom")
        ));
    assert_eq!(read(d.path().join("foreign.prom")), "other_tool_metric 1\n");
}

#[test]
fn expire_removes_groups_past_their_ttl_and_stale_temp_files() {
    let d = dir();
    push(d.path(), &["short", "--ttl", "1s"], "m 1\n").status(0);
    push(d.path(), &["long", "--ttl", "1h"], "n 1\n").status(0);
    push(d.path(), &["forever"], "o 1\n").status(0);
    let stale = d.path().join(".promdrop-tmp-crashed.prom.abc123");
    fs::write(&stale, "half a fi").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // A live writer's temp file is locked; a dead writer's is not, and goes
    // once it is more than a moment old, long before ten minutes.
    let fresh = d.path().join(".promdrop-tmp-inflight.prom.def456");
    fs::write(&fresh, "in progress").unwrap();
    let writer = fs::File::open(&fresh).unwrap();
    fs2::FileExt::lock_exclusive(&writer).unwrap();
    let orphan = d.path().join(".promdrop-tmp-orphan.prom.fed789");
    fs::write(&orphan, "its writer died").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let dry = Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["expire", "--dry-run"])
        .run()
        .status(0);
    assert_eq!(
        dry.stdout,
        format!(
            "would remove group {{job=\"short\"}} (short.prom): past its TTL\nwould remove stale temp file {}\nwould remove stale temp file {}\n",
            stale.display(),
            orphan.display()
        )
    );
    assert!(d.path().join("short.prom").exists() && stale.exists() && orphan.exists());
    let done = Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("expire")
        .run()
        .status(0);
    assert_eq!(done.stdout, dry.stdout.replace("would remove", "removed"));
    assert!(!d.path().join("short.prom").exists() && !stale.exists() && !orphan.exists());
    assert!(
        d.path().join("long.prom").exists()
            && d.path().join("forever.prom").exists()
            && fresh.exists()
    );
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("expire")
        .run()
        .status(0)
        .stdout("");
}

#[test]
fn lock_files_go_with_their_groups() {
    let d = dir();
    let locks = d.path().join(".promdrop/locks");
    push(d.path(), &["kept"], "# TYPE m counter\nm 1\n").status(0);
    push(d.path(), &["deleted"], "n 1\n").status(0);
    push(d.path(), &["brief", "--ttl", "1s"], "n 1\n").status(0);
    push(d.path(), &["by-hand"], "n 1\n").status(0);
    // Refused under its lock (a TYPE clash with `kept`): no group, a lock file.
    push(d.path(), &["refused"], "# TYPE m gauge\nm 1\n").status(1);
    fs::remove_file(d.path().join("by-hand.prom")).unwrap();
    assert_eq!(
        lock_files(d.path()),
        [
            "brief.lock",
            "by-hand.lock",
            "deleted.lock",
            "kept.lock",
            "refused.lock"
        ]
    );
    in_dir(d.path(), &["delete", "deleted"]).status(0);
    in_dir(d.path(), &["delete", "never-pushed"]).status(0);
    assert!(!lock_files(d.path()).contains(&"deleted.lock".to_owned()));
    // Left by a killed run, and held by a writer about to create its group.
    fs::write(locks.join("killed.run"), "").unwrap();
    let busy = fs::File::create(locks.join("busy.lock")).unwrap();
    fs2::FileExt::lock_exclusive(&busy).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    in_dir(d.path(), &["expire"]).status(0);
    assert_eq!(lock_files(d.path()), ["busy.lock", "kept.lock"]);
    drop(busy);
    in_dir(d.path(), &["expire"]).status(0);
    assert_eq!(lock_files(d.path()), ["kept.lock"]);
    push(d.path(), &["deleted"], "n 2\n").status(0);
    assert_eq!(lock_files(d.path()), ["deleted.lock", "kept.lock"]);
}

#[test]
fn exit_codes_are_distinct() {
    let d = dir();
    push(d.path(), &["j"], "m 1\n").status(0);
    push(d.path(), &["j"], "m 1 123\n").status(1).stderr(
        "promdrop: <stdin>:1:5: client-side timestamp \"123\" is not allowed: node_exporter skips the whole file and the Pushgateway refuses the push\n\
         promdrop: refused push to group {job=\"j\"}; nothing was changed\n",
    );
    push(d.path(), &["j", "bad-name=x"], "m 1\n").status(2);
    push(d.path(), &["j", "--ttl", "soon"], "m 1\n").status(2);
    let missing = d.path().join("missing");
    let out = Test::new()
        .arg("--dir")
        .arg(&missing)
        .args(["push", "j"])
        .stdin("m 1\n")
        .run()
        .status(3);
    assert_eq!(
        out.stderr,
        format!(
            "promdrop: textfile directory {missing:?} does not exist\nhint: create it (install -d -m 2775 -g promdrop DIR), or choose another with --dir or PROMDROP_DIR\n"
        )
    );
    let env = Test::new()
        .env("PROMDROP_DIR", missing.to_str().unwrap())
        .args(["push", "j"])
        .stdin("m 1\n")
        .run()
        .status(3);
    assert!(env.stderr.contains("does not exist"), "{}", env.stderr);
    // Hold the group's lock: the push gives up with code 4.
    let lock = fs::File::open(d.path().join(".promdrop/locks/j.lock")).unwrap();
    fs2::FileExt::lock_exclusive(&lock).unwrap();
    for (timeout, gave_up) in [
        ("200ms", "; gave up after 200ms\n"),
        ("0", "; gave up at once (a lock timeout of 0)\n"),
    ] {
        let busy = Test::new()
            .arg("--dir")
            .arg(d.path())
            .args(["--lock-timeout", timeout, "push", "j"])
            .stdin("m 2\n")
            .run()
            .status(4);
        let expected = format!("group {{job=\"j\"}} is locked by another writer{gave_up}");
        assert!(busy.stderr.contains(&expected), "{}", busy.stderr);
    }
    drop(lock);
    push(d.path(), &["j"], "m 2\n").status(0);
}

#[test]
fn a_refused_push_names_the_lines_of_its_input() {
    let d = dir();
    push(d.path(), &["j"], "m 1\n").status(0);
    let before = fs::read(d.path().join("j.prom")).unwrap();
    // Two identical lines: no note about empty label values, although the
    // group carries an injected `instance=""`.
    push(d.path(), &["j"], "m 1\nm 2\n").status(1).stderr(
        "promdrop: j.prom: line 2 of the input: duplicate series m{job=\"j\"} (also in line 1 of the input): node_exporter would drop it\n\
         promdrop: refused push to group {job=\"j\"}; nothing was changed\n",
    );
    // Valid alone, but the grouping label overrides the `job` that told
    // the two series apart.
    push(d.path(), &["j"], "m{job=\"a\"} 1\nm{job=\"b\"} 2\n")
        .status(1)
        .stderr(
            "promdrop: j.prom: line 2 of the input: duplicate series m{job=\"j\"} (also in line 1 of the input): node_exporter would drop it\n\
             promdrop: refused push to group {job=\"j\"}; nothing was changed\n",
        );
    assert_eq!(fs::read(d.path().join("j.prom")).unwrap(), before);
}

#[test]
fn cross_file_conflicts_are_refused_and_change_nothing() {
    let d = dir();
    push(
        d.path(),
        &["a"],
        "# HELP shared_total Runs.\n# TYPE shared_total counter\nshared_total 1\n",
    )
    .status(0);
    let before = fs::read(d.path().join("a.prom")).unwrap();
    let refused = push(
        d.path(),
        &["b"],
        "# HELP shared_total Other help.\n# TYPE shared_total counter\nshared_total 2\n",
    )
    .status(1);
    assert_eq!(
        refused.stderr,
        "promdrop: b.prom: HELP for \"shared_total\" is \"Other help.\" here but \"Runs.\" in a.prom:8: node_exporter would drop these series\n\
         promdrop: refused push to group {job=\"b\"}; nothing was changed\n"
    );
    assert!(!d.path().join("b.prom").exists());
    push(
        d.path(),
        &["b"],
        "# TYPE shared_total gauge\nshared_total 2\n",
    )
    .status(1);
    // The same family with the same HELP and TYPE merges across groups.
    push(
        d.path(),
        &["b"],
        "# HELP shared_total Runs.\n# TYPE shared_total counter\nshared_total 2\n",
    )
    .status(0);
    // {job="a"} and {job="a",instance=""} expose the same series: refused, no poisoning.
    push(d.path(), &["a", "instance="], "x 1\n").status(1);
    assert!(!d.path().join("a@instance=.prom").exists());
    assert_eq!(fs::read(d.path().join("a.prom")).unwrap(), before);
}

#[test]
fn concurrent_adds_to_one_group_all_land() {
    let d = dir();
    let children: Vec<Child> = (0..32)
        .map(|p| {
            let mut script = String::new();
            for i in 0..50 {
                let _ = writeln!(
                    script,
                    "printf 'f_{p}_{i} {i}\\n' | \"$0\" --dir \"$1\" push shared --add || exit 1"
                );
            }
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(binary())
                .arg(d.path())
                .env("PROMDROP_LOCK_TIMEOUT", "120s")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let families = parse(&fs::read(d.path().join("shared.prom")).unwrap()).unwrap();
    let names: std::collections::HashSet<&str> = families
        .iter()
        .map(promdrop::exposition::Family::name)
        .filter(|n| n.starts_with("f_"))
        .collect();
    assert_eq!(names.len(), 1600);
}

#[test]
fn racing_conflicting_types_in_two_groups_exactly_one_wins() {
    let d = dir();
    for round in 0..20 {
        let body_a = format!("# TYPE race_{round} gauge\nrace_{round} 1\n");
        let body_b = format!("# TYPE race_{round} counter\nrace_{round} 1\n");
        let spawn = |job: &str, body: String| {
            let mut child = promdrop()
                .arg("--dir")
                .arg(d.path())
                .args(["push", job])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || stdin.write_all(body.as_bytes()));
            child
        };
        let a = spawn(&format!("a{round}"), body_a);
        let b = spawn(&format!("b{round}"), body_b);
        let won = [a, b]
            .into_iter()
            .filter_map(|c| c.wait_with_output().ok())
            .filter(|o| o.status.success())
            .count();
        assert_eq!(won, 1, "round {round}");
    }
    Test::new().arg("check").arg(d.path()).run().status(0);
    if let Some(exporter) = NodeExporter::start(d.path()) {
        let scrape = exporter.scrape();
        assert_eq!(scrape.value("node_textfile_scrape_error"), Some("0"));
        assert!(!scrape.log.contains("level=error"), "{}", scrape.log);
    }
}

/// A body of about `bytes` bytes whose every line carries `generation`.
fn big_body(generation: u32, bytes: usize) -> String {
    let mut body =
        format!("# HELP gen Generation.\n# TYPE gen gauge\ngen {generation}\n# TYPE bulk gauge\n");
    let mut i = 0;
    while body.len() < bytes {
        let _ = writeln!(
            body,
            "bulk{{generation=\"{generation}\",series=\"{i:08}\",pad=\"xxxxxxxxxxxxxxxx\"}} {i}"
        );
        i += 1;
    }
    body
}

#[test]
fn sigkill_during_pushes_never_exposes_a_torn_file() {
    let d = dir();
    let bodies: Vec<String> = (0..4).map(|g| big_body(g, 1 << 20)).collect();
    let expected: Vec<usize> = bodies
        .iter()
        .map(|b| b.lines().filter(|l| !l.starts_with('#')).count())
        .collect();
    let started = std::time::Instant::now();
    push(d.path(), &["big"], &bodies[0]).status(0);
    // Kill at uniform moments over 1.5 pushes, whatever the build profile:
    // some pushes complete, most die somewhere inside.
    let window = u64::try_from(started.elapsed().as_micros() * 3 / 2).unwrap();
    let stop = AtomicBool::new(false);
    let (reads, generations) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0;
            let mut generations = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                for entry in fs::read_dir(d.path()).unwrap().flatten() {
                    let name = entry.file_name().into_string().unwrap();
                    if !name.ends_with(".prom") {
                        continue;
                    }
                    assert_eq!(name, "big.prom", "a temp file is named like a group file");
                    let Ok(bytes) = fs::read(entry.path()) else {
                        continue;
                    };
                    let families = parse(&bytes).unwrap_or_else(|e| panic!("torn file: {e}"));
                    let gen_family = families
                        .iter()
                        .find(|f| f.name() == "gen")
                        .expect("gen family");
                    let generation = gen_family.series().next().map(|s| match s.value {
                        promdrop::exposition::Value::Single(v) => {
                            v.to_string().parse().expect("a whole generation")
                        }
                        promdrop::exposition::Value::Distribution(_) => usize::MAX,
                    });
                    let generation = generation.expect("gen sample");
                    let bulk = families
                        .iter()
                        .find(|f| f.name() == "bulk")
                        .map_or(0, promdrop::exposition::Family::len);
                    assert_eq!(
                        bulk + 1,
                        expected[generation],
                        "partial content of generation {generation}"
                    );
                    generations.insert(generation);
                    reads += 1;
                }
            }
            (reads, generations)
        });
        let mut rng = Rng::new(0x5eed);
        for iteration in 0..200 {
            let generation = iteration % bodies.len();
            let mut child = promdrop()
                .arg("--dir")
                .arg(d.path())
                .args(["push", "big"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let body = bodies[generation].clone();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(body.as_bytes());
            });
            // Every fifth push is left to finish, so new content is sure to
            // appear; the others die at a random moment.
            if iteration % 5 != 4 {
                std::thread::sleep(Duration::from_micros(rng.below(window)));
                let _ = child.kill();
            }
            let _ = child.wait();
            let _ = writer.join();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(reads > 20, "the reader only checked {reads} files");
    assert!(
        generations.len() > 1,
        "no push completed: the reader only saw {generations:?}"
    );
    for entry in fs::read_dir(d.path()).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            name == "big.prom" || !name.ends_with(".prom"),
            "stray {name}"
        );
    }
    Test::new().arg("check").arg(d.path()).run().status(0);
}

/// Every byte of every file under `dir`, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.path(), fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn failed_writes_leave_the_old_file_byte_identical() {
    let d = dir();
    push(d.path(), &["keep"], big_body(1, 4096)).status(0);
    let before = snapshot(d.path());
    // Invalid input.
    push(d.path(), &["keep"], "keep 1\nkeep 2\n").status(1);
    push(d.path(), &["keep"], "m{a=\"1\"} 1\r\n").status(1);
    assert_eq!(snapshot(d.path()), before);
    // The file-size limit hit mid-write: the write fails with EFBIG (promdrop
    // does not let SIGXFSZ kill it), and promdrop says so and exits 3.
    let limited = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 64 && exec \"$0\" --dir \"$1\" push keep")
        .arg(binary())
        .arg(d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = big_body(2, 1 << 20);
    let mut stdin_handle = limited;
    let mut stdin = stdin_handle.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let output = stdin_handle.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    let after: Vec<_> = snapshot(d.path())
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "prom"))
        .collect();
    let before_prom: Vec<_> = before
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "prom"))
        .cloned()
        .collect();
    assert_eq!(after, before_prom);
    // A directory the writer may not write.
    let unwritable = |test: Test| {
        if is_root() {
            test.uid(65_534)
        } else {
            let mut perms = fs::metadata(d.path()).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
            fs::set_permissions(d.path(), perms).unwrap();
            test
        }
    };
    let mut perms = fs::metadata(d.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(d.path(), perms).unwrap();
    let outcome = unwritable(
        Test::new()
            .arg("--dir")
            .arg(d.path())
            .args(["push", "keep"])
            .stdin("keep_new 1\n"),
    )
    .run();
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("not permitted\nhint: run as a user that may write"),
        "{}",
        outcome.stderr
    );
    let after: Vec<_> = snapshot(d.path())
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "prom"))
        .collect();
    assert_eq!(after, before_prom);
}

/// Fills `dir` with groups of every metric type, some sharing families.
fn fill_with_every_type(dir: &Path) {
    let bodies = [
        (
            "counters",
            vec![],
            "# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{kind=\"a\"} 3\njobs_total{kind=\"b\"} 4\n",
        ),
        (
            "gauges",
            vec!["instance=db1"],
            "# HELP disk_free_bytes Free.\n# TYPE disk_free_bytes gauge\ndisk_free_bytes{dev=\"sda\"} 1e+09\n",
        ),
        ("untyped", vec![], "plain_value{x=\"y\"} NaN\n"),
        (
            "hist",
            vec!["shard=1"],
            "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\nlat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"+Inf\"} 3\nlat_seconds_sum 0.7\nlat_seconds_count 3\n",
        ),
        (
            "summ",
            vec![],
            "# HELP size_bytes Sizes.\n# TYPE size_bytes summary\nsize_bytes{quantile=\"0.5\"} 10\nsize_bytes{quantile=\"0.99\"} 90\nsize_bytes_sum 300\nsize_bytes_count 12\n",
        ),
        (
            "shared1",
            vec![],
            "# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{kind=\"c\"} 1\n",
        ),
    ];
    for (job, labels, body) in &bodies {
        let mut args = vec![*job];
        args.extend(labels.iter().copied());
        push(dir, &args, body).status(0);
    }
    for i in 0..40 {
        push(dir, &[&format!("many{i}")], format!("# HELP batch_items Items.\n# TYPE batch_items gauge\nbatch_items{{batch=\"{i}\"}} {i}\n")).status(0);
    }
}

#[test]
fn node_exporter_serves_every_group_cleanly_and_a_refused_push_changes_nothing() {
    let d = dir();
    fill_with_every_type(d.path());
    let Some(exporter) = NodeExporter::start(d.path()) else {
        return;
    };
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value("node_textfile_scrape_error"),
        Some("0"),
        "{}",
        scrape.log
    );
    assert!(!scrape.log.contains("level=error"), "{}", scrape.log);
    for expected in [
        "jobs_total{instance=\"\",job=\"counters\",kind=\"a\"} 3",
        "jobs_total{instance=\"\",job=\"shared1\",kind=\"c\"} 1",
        "disk_free_bytes{dev=\"sda\",instance=\"db1\",job=\"gauges\"} 1e+09",
        "plain_value{instance=\"\",job=\"untyped\",x=\"y\"} NaN",
        "lat_seconds_bucket{instance=\"\",job=\"hist\",shard=\"1\",le=\"0.1\"} 1",
        "lat_seconds_count{instance=\"\",job=\"hist\",shard=\"1\"} 3",
        "size_bytes{instance=\"\",job=\"summ\",quantile=\"0.99\"} 90",
        "size_bytes_count{instance=\"\",job=\"summ\"} 12",
        "batch_items{batch=\"39\",instance=\"\",job=\"many39\"} 39",
        "push_failure_time_seconds{instance=\"db1\",job=\"gauges\"} 0",
    ] {
        assert!(
            scrape.text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{}",
            scrape.text
        );
    }
    let files = fs::read_dir(d.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".prom")
        })
        .count();
    let push_times = scrape
        .text
        .lines()
        .filter(|l| l.starts_with("push_time_seconds{"))
        .count();
    assert_eq!(push_times, files);
    let served = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                !l.starts_with('#')
                    && ![
                        "go_",
                        "process_",
                        "promhttp_",
                        "node_scrape_collector_duration",
                    ]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(str::to_owned)
            .collect()
    };
    push(
        d.path(),
        &["hist", "shard=1"],
        "# TYPE jobs_total gauge\njobs_total 1\n",
    )
    .status(1);
    push(d.path(), &["newgroup"], "lat_seconds_count 1\n").status(1);
    let again = exporter.scrape();
    assert_eq!(served(&again.text), served(&scrape.text));
}

#[test]
fn python_write_to_textfile_goes_through_push_unchanged() {
    let Some(python) = peer("python3") else {
        return;
    };
    let has_client = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        assert!(
            std::env::var("PROMDROP_REQUIRE_PEERS").as_deref() != Ok("1"),
            "python prometheus_client is required (PROMDROP_REQUIRE_PEERS=1); run tests/peers/install"
        );
        return;
    }
    let d = dir();
    let file = d.path().join("py.txt");
    let script = r#"
import sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, Info, Enum, write_to_textfile
r = CollectorRegistry()
Counter('py_runs', 'Runs of the job.', ['kind'], registry=r).labels('full').inc(3)
Gauge('py_last_success_timestamp_seconds', 'Last success.', registry=r).set(1.7e9)
h = Histogram('py_duration_seconds', 'Duration.', buckets=[0.1, 1, 10], registry=r); h.observe(0.5); h.observe(4)
s = Summary('py_size_bytes', 'Size "quoted" \\ backslash.', registry=r); s.observe(100)
Info('py_build', 'Build.', registry=r).info({'version': '1.2', 'path': 'C:\\x\n"y"'})
Enum('py_state', 'State.', states=['ok', 'bad'], registry=r).state('bad')
write_to_textfile(sys.argv[1], r)
"#;
    let ran = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&file)
        .status()
        .unwrap();
    assert!(ran.success());
    let original = parse(&fs::read(&file).unwrap()).expect("python's file parses");
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["push", "pyjob", "--file"])
        .arg(&file)
        .run()
        .status(0);
    let mut stored = parse(&fs::read(d.path().join("pyjob.prom")).unwrap()).unwrap();
    stored.retain(|f| !f.name().starts_with("push_"));
    let key = promdrop::grouping_key::GroupingKey::new("pyjob", []).unwrap();
    let mut expected = original.clone();
    key.inject(&mut expected, "job");
    assert_eq!(stored, expected);
    assert!(original.iter().any(|f| f.name() == "py_duration_seconds"
        && f.kind() == promdrop::exposition::MetricType::Histogram));
}

#[test]
fn state_directory_on_another_filesystem_is_refused() {
    let d = dir();
    let state = d.path().join(".promdrop");
    fs::create_dir(&state).unwrap();
    let Some(mount) = Tmpfs::mount(&state, "1m") else {
        return;
    };
    let outcome = push(d.path(), &["j"], "m 1\n");
    drop(mount);
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("is on another filesystem than"),
        "{}",
        outcome.stderr
    );
    assert!(!d.path().join("j.prom").exists());
}

#[test]
fn cron_jobs_of_several_users_share_a_setgid_directory() {
    if !is_root() {
        eprintln!("skipping: changing users needs root");
        return;
    }
    let d = dir();
    let nogroup = 65_534;
    std::os::unix::fs::chown(d.path(), Some(0), Some(nogroup)).unwrap();
    let mut perms = fs::metadata(d.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o2775);
    fs::set_permissions(d.path(), perms).unwrap();
    // Root pushes first with a strict umask, creating the state, the lock
    // and the index; then another user of the group pushes to the same
    // group and to a new one.
    let as_user = |uid: u32, job: &str, body: &str| {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg("umask 077 && exec \"$0\" --dir \"$1\" push \"$2\"")
            .arg(binary())
            .arg(d.path())
            .arg(job)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, nogroup);
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "uid {uid}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    as_user(0, "shared", "m 1\n");
    as_user(65_534, "shared", "m 2\n");
    as_user(65_534, "other", "n 1\n");
    as_user(0, "shared", "m 3\n");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o7777
    };
    assert_eq!(
        mode(&d.path().join("shared.prom")),
        0o644,
        "node_exporter must read it"
    );
    assert_eq!(mode(&d.path().join(".promdrop/locks/shared.lock")), 0o664);
    assert_eq!(mode(&d.path().join(".promdrop/index")), 0o664);
}
