//! The textfile commands (`push`, `delete`, `show`, `list`, `expire`): read
//! the input, make one call into the [`Store`], print the result. Output
//! formats live here; files are the store's business.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use anyhow::{Context as _, Result};

use crate::cli::{ExpireMode, ListFormat, PushOptions};
use crate::duration::{human, timestamp};
use crate::exit::Exit;
use crate::grouping_key::GroupingKey;
use crate::store::{Expired, GroupInfo, SkipReason, Store, StoreError, StoreOptions};

/// `promdrop push`: parse the input, then one store call.
pub fn push(options: &PushOptions, stdin: impl Read) -> Result<Exit> {
    // The grouping labels are merged in as the input is read, which spares
    // the store a pass over every series to do it.
    let injection = options.key.injection(&options.store.job_label);
    let (name, parsed) = if let Some(path) = &options.file {
        let parsed = std::fs::File::open(path)
            .and_then(|file| crate::read_parsed(file, &injection))
            .with_context(|| format!("cannot read {path:?}"))?;
        (path.display().to_string(), parsed)
    } else {
        let parsed = crate::read_parsed(stdin, &injection).context("cannot read standard input")?;
        ("<stdin>".to_owned(), parsed)
    };
    let refused = |problems: &[String]| {
        for problem in problems {
            eprintln!("promdrop: {problem}");
        }
        eprintln!(
            "promdrop: refused push to group {}; nothing was changed",
            options.key
        );
        Ok(Exit::InvalidInput)
    };
    let families = match parsed {
        Ok(families) => families,
        Err(err) => return refused(&[format!("{name}:{}:{}: {err}", err.line, err.column)]),
    };
    // `run` reads its counters back from these: a push must not overwrite
    // them, or give one a type that every run's write would conflict with.
    let reserved: Vec<String> = families
        .iter()
        .filter(|f| crate::wrap::metrics::is_run_metric(f.name()))
        .map(|f| {
            format!(
                "{name}:{}: {:?} is reserved for the metrics of promdrop run",
                f.line(),
                f.name()
            )
        })
        .collect();
    if !reserved.is_empty() {
        return refused(&reserved);
    }
    let store = Store::open(options.store.clone())?;
    match store.push(
        &options.key,
        families,
        options.mode,
        options.ttl,
        SystemTime::now(),
    ) {
        Ok(group) => {
            // The process ends right after, and its exit takes the memory
            // back at once: freeing a 100,000-series group and the index
            // block by block took 1.5-2.5 ms of such a push.
            std::mem::forget((group, store));
            Ok(Exit::Success)
        }
        Err(StoreError::Invalid(problems)) => refused(&problems),
        Err(err) => Err(err.into()),
    }
}

/// `promdrop delete`: removing a group that does not exist is no error.
pub fn delete(options: StoreOptions, key: &GroupingKey) -> Result<Exit> {
    Store::open(options)?.delete(key)?;
    Ok(Exit::Success)
}

/// `promdrop show`: the group's file as it is on disk.
pub fn show(options: StoreOptions, key: &GroupingKey, mut out: impl Write) -> Result<Exit> {
    let store = Store::open_read_only(options)?;
    if let Some(text) = store.show(key)? {
        out.write_all(text.as_bytes())?;
        Ok(Exit::Success)
    } else {
        eprintln!("promdrop: no group {key} in {:?}", store.dir());
        Ok(Exit::InvalidInput)
    }
}

/// `promdrop list`.
pub fn list(options: StoreOptions, format: ListFormat, mut out: impl Write) -> Result<Exit> {
    let listing = Store::open_read_only(options)?.listing()?;
    // Other tools' files and FIFOs are no groups to miss; a group file that
    // cannot be read back, or at all, is one.
    for skipped in &listing.skipped {
        if !matches!(skipped.reason, SkipReason::Foreign | SkipReason::NotRegular) {
            eprintln!(
                "promdrop: warning: {} is not listed: {}",
                skipped.file, skipped.reason
            );
        }
    }
    let groups = listing.groups;
    let now = SystemTime::now();
    match format {
        ListFormat::Json => {
            let rows: Vec<_> = groups.iter().map(|info| json_row(info, now)).collect();
            writeln!(out, "{:#}", serde_json::Value::Array(rows))?;
        }
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = groups.iter().map(|info| table_row(info, now)).collect();
            let header = ["GROUP", "FILE", "LAST PUSH", "AGE", "TTL", "SERIES"].map(str::to_owned);
            let mut widths = [0; 6];
            for row in std::iter::once(&header).chain(&rows) {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let cells: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", cells.join("  ").trim_end())?;
            }
        }
    }
    Ok(Exit::Success)
}

/// `promdrop expire`.
pub fn expire(options: StoreOptions, mode: ExpireMode, mut out: impl Write) -> Result<Exit> {
    let store = Store::open(options)?;
    let dry_run = mode == ExpireMode::DryRun;
    let verb = if dry_run { "would remove" } else { "removed" };
    for removed in store.expire(SystemTime::now(), dry_run)? {
        match removed {
            Expired::Group { key, file } => {
                writeln!(out, "{verb} group {key} ({file}): past its TTL")
            }
            Expired::TempFile(path) => writeln!(out, "{verb} stale temp file {path}"),
        }?;
    }
    Ok(Exit::Success)
}

fn table_row(info: &GroupInfo, now: SystemTime) -> [String; 6] {
    let group = &info.group;
    let ttl = group.ttl.map_or_else(|| "-".to_owned(), human);
    let ttl = if group.expired(now) {
        format!("{ttl} (expired)")
    } else {
        ttl
    };
    [
        group.key.to_string(),
        info.file.clone(),
        group.pushed_at().map_or_else(|| "-".to_owned(), timestamp),
        group.age(now).map_or_else(|| "-".to_owned(), human),
        ttl,
        group.series().to_string(),
    ]
}

fn json_row(info: &GroupInfo, now: SystemTime) -> serde_json::Value {
    let group = &info.group;
    let labels: serde_json::Map<_, _> = group
        .key
        .labels()
        .map(|(n, v)| (n.to_owned(), v.into()))
        .collect();
    serde_json::json!({
        "job": group.key.job(),
        "labels": labels,
        "file": info.file,
        "last_push": group.pushed_at().map(timestamp),
        "last_push_seconds": group.pushed_at(),
        "age_seconds": group.age(now).map(|d| d.as_secs_f64()),
        "ttl_seconds": group.ttl.map(|d| d.as_secs()),
        "expired": group.expired(now),
        "series": group.series(),
    })
}

/// Whether `err` ended in a closed standard output, which counts as success.
pub(crate) fn is_broken_pipe(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::BrokenPipe
}
