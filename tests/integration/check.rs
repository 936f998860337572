//! `promdrop check`: inputs, output formats and exit codes.

use std::fs;

use crate::util::Test;

#[test]
fn clean_stdin_exits_zero_silently() {
    Test::new()
        .arg("check")
        .stdin("# HELP m h\n# TYPE m gauge\nm{a=\"1\"} 1\n")
        .run()
        .status(0)
        .stdout("")
        .stderr("");
}

#[test]
fn bad_stdin_names_line_and_column() {
    Test::new()
        .arg("check")
        .stdin("m 1\nm{a=\"1\" 2\n")
        .run()
        .status(1)
        .stdout("<stdin>:2:9: expected ',' or '}' after label value \"1\", found '2'\n");
}

#[test]
fn directory_is_checked_as_node_exporter_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.prom"), "# HELP m A.\nm{x=\"1\"} 1\n").unwrap();
    fs::write(dir.path().join("b.prom"), "# HELP m B.\nm{x=\"2\"} 1\n").unwrap();
    fs::write(dir.path().join(".c.prom"), "m{x=\"3\"} 1 123\n").unwrap();
    fs::write(dir.path().join("ignored.prom.tmp"), "garbage\n").unwrap();
    fs::write(dir.path().join("IGNORED.PROM"), "garbage\n").unwrap();
    let d = dir.path().display();
    Test::new().arg("check").arg(dir.path()).run().status(1).stdout(&format!(
        "{d}/.c.prom:1:12: client-side timestamp \"123\" is not allowed: node_exporter skips the whole file and the Pushgateway refuses the push\n\
         {d}/b.prom:1:1: HELP for \"m\" is \"B.\" here but \"A.\" in {d}/a.prom:1: node_exporter would drop these series\n"
    ));
}

#[test]
fn files_are_checked_together() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.prom");
    let b = dir.path().join("b.txt");
    fs::write(&a, "m{x=\"1\"} 1\n").unwrap();
    fs::write(&b, "m{x=\"1\"} 2\n").unwrap();
    Test::new().arg("check").arg(&a).run().status(0);
    Test::new()
        .arg("check")
        .arg(&a)
        .arg(&b)
        .run()
        .status(1)
        .stdout(&format!(
            "{}:1:1: duplicate series m{{x=\"1\"}} (also in {}:1): node_exporter would drop it\n",
            b.display(),
            a.display()
        ));
}

#[test]
fn a_dash_is_standard_input_checked_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.prom");
    fs::write(&a, "m{x=\"1\"} 1\n").unwrap();
    Test::new()
        .arg("check")
        .arg(&a)
        .arg("-")
        .stdin("m{x=\"1\"} 2\n")
        .run()
        .status(1)
        .stdout(&format!(
            "<stdin>:1:1: duplicate series m{{x=\"1\"}} (also in {}:1): node_exporter would drop it\n",
            a.display()
        ));
}

#[test]
fn json_report() {
    let outcome = Test::new()
        .args(["check", "--json"])
        .stdin("m 1\nm 2\n")
        .run()
        .status(1);
    let report: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "ok": false,
            "inputs": ["<stdin>"],
            "problems": [{
                "file": "<stdin>", "line": 2, "column": 1,
                "message": "duplicate series m (also in <stdin>:1): node_exporter would drop it",
            }],
        })
    );
    let clean = Test::new()
        .args(["check", "--json"])
        .stdin("m 1\n")
        .run()
        .status(0);
    let clean: serde_json::Value = serde_json::from_str(&clean.stdout).unwrap();
    assert_eq!(clean["ok"], true);
}

#[test]
fn missing_path_is_an_io_error() {
    Test::new()
        .args(["check", "/nonexistent/promdrop-test"])
        .run()
        .status(3)
        .stdout("")
        .stderr("promdrop: cannot read \"/nonexistent/promdrop-test\": No such file or directory (os error 2)\n");
}

#[test]
fn fifo_named_prom_is_reported_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.prom");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    Test::new().arg("check").arg(dir.path()).run().status(1).stdout(&format!(
        "{}:0:0: is not a regular file (a FIFO, socket or device): node_exporter's scrape would hang on it\n",
        fifo.display()
    ));
}

#[test]
fn usage_errors_exit_two() {
    let outcome = Test::new()
        .args(["check", "--no-such-flag"])
        .run()
        .status(2);
    assert!(
        outcome.stderr.contains("--no-such-flag"),
        "{}",
        outcome.stderr
    );
}
