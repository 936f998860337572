//! The command line itself: help texts, shell completions and manual pages,
//! all generated from the one clap definition.

use std::process::Command;

use crate::util::promdrop;

const COMMANDS: [&str; 10] = [
    "push",
    "delete",
    "show",
    "list",
    "expire",
    "run",
    "serve",
    "check",
    "completions",
    "man",
];

fn stdout_of(command: &mut Command) -> String {
    let out = command.output().expect("promdrop runs");
    assert!(out.status.success(), "{command:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn every_command_has_a_summary_and_an_example() {
    let overview = stdout_of(promdrop().arg("--help"));
    for name in COMMANDS {
        let summary = overview
            .lines()
            .find_map(|line| line.trim().strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("`promdrop --help` does not list {name}:\n{overview}"));
        assert!(
            summary.len() > 10 && !summary.contains('\n'),
            "{name}: summary {summary:?}"
        );
        let help = stdout_of(promdrop().args([name, "--help"]));
        let example = help
            .lines()
            .find_map(|line| line.trim().strip_prefix("Example: "))
            .unwrap_or_else(|| panic!("`promdrop {name} --help` has no example:\n{help}"));
        assert!(example.contains("promdrop"), "{name}: example {example:?}");
    }
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(promdrop().args(["completions", shell]));
        for name in COMMANDS {
            assert!(script.contains(name), "{shell} completion lacks {name}");
        }
    }
    // The bash script at least parses.
    let script = stdout_of(promdrop().args(["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("promdrop.bash");
    std::fs::write(&path, script).unwrap();
    let status = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(status.success(), "bash -n rejects the completion script");
    let out = promdrop().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn manual_pages_render_for_promdrop_and_each_command() {
    let page = stdout_of(promdrop().arg("man"));
    assert!(page.contains(".TH promdrop 1"), "{page}");
    for name in COMMANDS {
        assert!(page.contains(name), "the overview page lacks {name}");
        let page = stdout_of(promdrop().args(["man", name]));
        assert!(page.contains(&format!(".TH promdrop-{name} 1")), "{page}");
        assert!(page.contains(".SH NAME"), "{page}");
    }
    let out = promdrop().args(["man", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command \"nope\""));
}
