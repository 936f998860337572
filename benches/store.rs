//! The cost of one push into the store, without HTTP: a replace of one of
//! 1,000 stored groups, each of 10 series (the body bench/serve pushes), as
//! `promdrop serve --no-fsync` makes it (index kept in memory, directory
//! watched), and as a one-shot `promdrop push --no-fsync` makes it (checked
//! against every other group's fingerprint, index file written), less the
//! index file's load that each new process adds.
//!
//! Without fsync, so that it measures promdrop's own work (locks, the old
//! file's header, checks, the temp file and the rename) rather than the
//! disk: the directory is on tmpfs (`/dev/shm`) where there is one,
//! else in the system's temp directory. `cargo bench --bench store`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion};
use promdrop::exposition::Family;
use promdrop::exposition::parse::parse;
use promdrop::grouping_key::GroupingKey;
use promdrop::store::{PushMode, Store, StoreOptions, Wait};

const GROUPS: usize = 1_000;

fn body() -> String {
    let mut body = String::from("# HELP bench_value A gauge.\n# TYPE bench_value gauge\n");
    for series in 0..10 {
        let _ = writeln!(
            body,
            "bench_value{{series=\"s{series:03}\"}} {}",
            f64::from(series) * 0.5
        );
    }
    body
}

fn key(group: usize) -> GroupingKey {
    GroupingKey::from_url_path(&format!("job/bench/instance/i{group:04}")).expect("a valid key")
}

fn open(dir: &Path, long_lived: bool) -> Store {
    let store = Store::open(StoreOptions {
        dir: dir.to_owned(),
        job_label: "job".into(),
        mode: 0o644,
        fsync: false,
        wait: Wait::Up(Duration::from_secs(10)),
    })
    .expect("the store opens");
    if long_lived {
        store.keep_index_in_memory()
    } else {
        store
    }
}

fn push(store: &Store, group: usize, families: Vec<Family>) {
    store
        .push(
            &key(group),
            families,
            PushMode::Replace,
            None,
            SystemTime::now(),
        )
        .expect("the push is accepted");
}

fn main() {
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("a temp directory");
    let families = parse(body().as_bytes()).expect("the body parses");
    {
        let store = open(dir.path(), false);
        for group in 0..GROUPS {
            push(&store, group, families.clone());
        }
    }
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    let mut group = criterion.benchmark_group("store_replace_1000_groups");
    for (name, long_lived) in [("serve", true), ("one_shot_store", false)] {
        let store = open(dir.path(), long_lived);
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || families.clone(),
                |families| {
                    next = (next + 499) % GROUPS;
                    push(black_box(&store), next, families);
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
    criterion.final_summary();
}
