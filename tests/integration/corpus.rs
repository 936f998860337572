//! The differential test: `promdrop check` against the real node_exporter
//! 1.5.0 on every case of `tests/corpus` (see its README for the format and
//! for what "served cleanly" means).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::node_exporter::{NodeExporter, Scrape};
use crate::util::{Test, copy_files, failures_in_parallel};

struct Case {
    dir: PathBuf,
    verdict: String,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/corpus exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let expect =
                fs::read_to_string(dir.join("expect")).expect("every case has an expect file");
            let verdict = expect
                .lines()
                .find_map(|l| l.strip_prefix("verdict: "))
                .unwrap_or_else(|| panic!("{}: expect has no verdict line", dir.display()))
                .to_owned();
            Case { dir, verdict }
        })
        .collect()
}

#[test]
fn corpus_is_large_and_covers_every_verdict() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for verdict in ["clean", "rejected", "stricter", "crash"] {
        assert!(
            cases.iter().any(|c| c.verdict == verdict),
            "no {verdict} case"
        );
    }
}

#[test]
fn check_agrees_with_the_verdicts() {
    for case in cases() {
        let outcome = Test::new().arg("check").arg(&case.dir).run();
        let want = i32::from(case.verdict != "clean");
        assert_eq!(
            outcome.code,
            Some(want),
            "{}: verdict {}, but check said:\n{}{}",
            case.dir.display(),
            case.verdict,
            outcome.stdout,
            outcome.stderr
        );
    }
}

#[test]
fn node_exporter_agrees_with_the_verdicts() {
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.verdict != "crash")
        .collect();
    let failures = failures_in_parallel(&cases, |case| {
        let served = served_cleanly(&case.dir)?;
        let want_clean = matches!(case.verdict.as_str(), "clean" | "stricter");
        let place = format!("{} ({})", case.dir.display(), case.verdict);
        match (want_clean, served) {
            (true, Err(why)) => Some(format!("{place}: not served cleanly: {why}")),
            (false, Ok(())) => Some(format!("{place}: served cleanly")),
            _ => None,
        }
    });
    assert!(
        failures.is_empty(),
        "node_exporter disagrees:\n{}",
        failures.join("\n")
    );
}

/// Runs node_exporter over a copy of the case; `Ok` when it serves it
/// cleanly, else why not. `None` when node_exporter is not installed.
fn served_cleanly(case: &Path) -> Option<Result<(), String>> {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_files(case, dir.path(), &["expect"]);
    let exporter = NodeExporter::start(dir.path())?;
    let scrape = exporter.scrape();
    drop(exporter);
    Some(judge(dir.path(), &scrape))
}

fn judge(dir: &Path, scrape: &Scrape) -> Result<(), String> {
    if scrape.status != 200 {
        return Err(format!("status {}", scrape.status));
    }
    if scrape.value("node_textfile_scrape_error") != Some("0") {
        return Err(format!(
            "node_textfile_scrape_error {:?}",
            scrape.value("node_textfile_scrape_error")
        ));
    }
    if let Some(line) = scrape.log.lines().find(|l| l.contains("level=error")) {
        return Err(format!("logged: {line}"));
    }
    let served: BTreeSet<String> = scrape.text.lines().filter_map(series_key).collect();
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for name in names
        .iter()
        .filter(|n| n.as_encoded_bytes().ends_with(b".prom"))
    {
        let path = dir.join(name);
        let mtime = format!(
            "node_textfile_mtime_seconds{{file={:?}}}",
            path.display().to_string()
        );
        if scrape.value(&mtime).is_none() {
            return Err(format!("no mtime series for {}", path.display()));
        }
        let content = fs::read(&path).expect("readable input");
        for line in String::from_utf8_lossy(&content).lines() {
            let trimmed = line.trim_start_matches([' ', '\t']);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match series_key(line) {
                Some(key) if served.contains(&key) => {}
                _ => {
                    return Err(format!(
                        "sample line {line:?} of {} not served",
                        path.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A sample line's identity, read independently of promdrop's parser: name
/// plus sorted labels, empty values dropped, `le`/`quantile` as numbers.
fn series_key(line: &str) -> Option<String> {
    let line = line.trim_start_matches([' ', '\t']);
    if line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))?;
    let (name, mut rest) = line.split_at(name_end);
    if name.is_empty() {
        return None;
    }
    rest = rest.trim_start_matches([' ', '\t']);
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches([' ', '\t']);
            if inner.starts_with('}') {
                break;
            }
            let eq = inner.find('=')?;
            let label = inner[..eq].trim_matches([' ', '\t']).to_owned();
            let mut value_part = inner[eq + 1..]
                .trim_start_matches([' ', '\t'])
                .strip_prefix('"')?
                .chars();
            let mut value = String::new();
            loop {
                match value_part.next()? {
                    '\\' => value.push(value_part.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
            inner = value_part.as_str().trim_start_matches([' ', '\t']);
            inner = inner.strip_prefix(',').unwrap_or(inner);
            if value.is_empty() {
                continue;
            }
            if (label == "le" || label == "quantile")
                && let Ok(number) = value.parse::<f64>()
            {
                value = number.to_string();
            }
            labels.push(format!("{label}={value:?}"));
        }
    }
    labels.sort();
    Some(format!("{name}{{{}}}", labels.join(",")))
}
