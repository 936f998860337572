//! `promdrop check`: would node_exporter serve these files cleanly?
//!
//! Collects the inputs the way node_exporter's textfile collector would see
//! them (a directory means its `*.prom` entries, hidden ones included, in
//! name order), parses each, validates the set together, and reports one
//! line per problem. Reading user-named paths is this module's only I/O; it
//! never writes.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::exit::Exit;
use crate::exposition::parse::parse;
use crate::exposition::validate::{Source, validate};

/// Options of `promdrop check`.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Files and directories; `-`, or none at all, means standard input.
    pub paths: Vec<PathBuf>,
    /// Machine-readable output.
    pub json: bool,
}

/// An input that could not even be listed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A path named on the command line could not be read.
    #[error("cannot read {path:?}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Output(#[from] io::Error),
}

/// One input: its name for messages, and its bytes or why it can't be read.
#[derive(Debug)]
pub struct Input {
    /// A path, or `<stdin>`.
    pub name: String,
    /// The content, or a reason node_exporter would fail on it too.
    pub content: Result<Vec<u8>, String>,
}

/// One problem, as `name:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The input it is reported against.
    pub name: String,
    /// 1-based line, or 0 when the problem is with the file as a whole.
    pub line: u32,
    /// 1-based column, or 0.
    pub column: u32,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.name, self.line, self.column, self.message
        )
    }
}

/// Runs `check` and writes the report to `out`.
pub fn run(
    options: &CheckOptions,
    stdin: impl Read,
    mut out: impl Write,
) -> Result<Exit, CheckError> {
    let inputs = collect(&options.paths, stdin)?;
    let findings = check(&inputs);
    if options.json {
        let report = serde_json::json!({
            "ok": findings.is_empty(),
            "inputs": inputs.iter().map(|i| &i.name).collect::<Vec<_>>(),
            "problems": findings.iter().map(|f| serde_json::json!({
                "file": f.name, "line": f.line, "column": f.column, "message": f.message,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{report:#}")?;
    } else {
        for finding in &findings {
            writeln!(out, "{finding}")?;
        }
    }
    Ok(if findings.is_empty() {
        Exit::Success
    } else {
        Exit::InvalidInput
    })
}

/// Expands the command-line paths into inputs, in node_exporter's order;
/// `-`, or no path at all, is standard input.
pub fn collect(paths: &[PathBuf], stdin: impl Read) -> Result<Vec<Input>, CheckError> {
    let stdin_only = [PathBuf::from("-")];
    let paths = if paths.is_empty() { &stdin_only } else { paths };
    let mut stdin = Some(stdin);
    let mut inputs = Vec::new();
    for path in paths {
        let read_err = |source| CheckError::Read {
            path: path.clone(),
            source,
        };
        if path.as_os_str() == "-" {
            // Read once; a second `-` would only repeat it.
            if let Some(mut stdin) = stdin.take() {
                let content = crate::read_input(&mut stdin).map_err(|source| CheckError::Read {
                    path: "<stdin>".into(),
                    source,
                })?;
                inputs.push(Input {
                    name: "<stdin>".into(),
                    content: Ok(content),
                });
            }
        } else if fs::metadata(path).map_err(read_err)?.is_dir() {
            let mut names: Vec<_> = fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n.as_encoded_bytes().ends_with(b".prom"))
                .collect();
            names.sort();
            inputs.extend(names.iter().map(|n| read_input(&path.join(n))));
        } else {
            inputs.push(read_input(path));
        }
    }
    Ok(inputs)
}

/// Reads one file without ever blocking on a FIFO or a device.
fn read_input(path: &Path) -> Input {
    let name = path.display().to_string();
    let content = match fs::metadata(path) {
        Err(err) => Err(format!("cannot read: {err}")),
        Ok(meta) if meta.is_dir() => Err("is a directory, not a file".to_owned()),
        Ok(meta) if !meta.is_file() => Err(
            "is not a regular file (a FIFO, socket or device): node_exporter's scrape would hang on it"
                .to_owned(),
        ),
        Ok(_) => fs::read(path).map_err(|err| format!("cannot read: {err}")),
    };
    Input { name, content }
}

/// Parses every input and validates the readable ones as one set.
pub fn check(inputs: &[Input]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut parsed = Vec::new();
    for input in inputs {
        let finding = |line, column, message| Finding {
            name: input.name.clone(),
            line,
            column,
            message,
        };
        match &input.content {
            Err(why) => findings.push(finding(0, 0, why.clone())),
            Ok(bytes) => match parse(bytes) {
                Ok(families) => parsed.push((input.name.as_str(), families)),
                Err(err) => findings.push(finding(err.line, err.column, err.to_string())),
            },
        }
    }
    let sources: Vec<Source<'_>> = parsed
        .iter()
        .map(|(name, families)| Source { name, families })
        .collect();
    for problem in validate(&sources) {
        findings.push(Finding {
            name: sources[problem.source].name.to_owned(),
            line: problem.line,
            column: u32::from(problem.line > 0),
            message: problem.violation.to_string(),
        });
    }
    findings
}
