//! The textfile store: one `.prom` file per group in node_exporter's textfile
//! directory, written atomically under a per-group lock, after validation
//! against every other file there. This is the only module that creates,
//! renames, removes or locks files in the directory.
//!
//! A group file starts with a comment that node_exporter ignores and
//! promdrop reads back, so the file describes itself:
//!
//! ```text
//! # promdrop group {"job":"backup","labels":{"instance":"db1"},"ttl_seconds":86400}
//! ```
//!
//! Its state lives in the hidden `.promdrop/` subdirectory (node_exporter
//! does not descend into directories): per-group lock files and the
//! fingerprint index. The short directory-wide lock is a `flock` on the
//! directory itself.

mod atomic;
mod files;
mod index;
mod lock;
mod postings;
mod snapshot;
mod watch;

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exposition::parallel;
use crate::exposition::parse::parse;
use crate::exposition::render::render_after;
use crate::exposition::validate::{Fingerprint, Problem, Source, validate};
use crate::exposition::{Family, MetricType, Value};
use crate::grouping_key::GroupingKey;

use self::atomic::{TEMP_PREFIX, Target, WriteOptions, write_atomic};
use self::index::{Index, Stamp};
pub use self::lock::Wait;
use self::lock::{FileLock, HeldLock, Turn, Turns};
pub use self::snapshot::{Rendered, RenderedFamily, Snapshot};

const STATE_DIR: &str = ".promdrop";
/// The largest file a store reads unless told otherwise.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 30;
const HEADER: &str = "# promdrop group ";
/// Temp files older than this are leftovers of a crash, held or not (for
/// filesystems where locks do not work); `expire` removes them.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// How long a new temp file may stay unlocked: the moment between its
/// creation and its writer's lock.
const TEMP_GRACE: Duration = Duration::from_secs(1);
/// The start of the name of a run's metrics file ([`Store::scratch_file`]).
const RUN_PREFIX: &str = ".promdrop-run-";
/// How a group's lock file ends, in `.promdrop/locks`.
const LOCK_SUFFIX: &str = ".lock";
/// How the lock file of a group's runs ends.
const RUN_LOCK_SUFFIX: &str = ".run";

/// The Pushgateway's own HELP texts, so the same HELP stands in every file.
pub const PUSH_TIME_HELP: &str =
    "Last Unix time when changing this group in the Pushgateway succeeded.";
/// See [`PUSH_TIME_HELP`].
pub const PUSH_FAILURE_TIME_HELP: &str =
    "Last Unix time when changing this group in the Pushgateway failed.";

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The textfile directory.
    pub dir: PathBuf,
    /// The label the job is written under in every sample (normally `job`).
    pub job_label: String,
    /// Permission bits of group files.
    pub mode: u32,
    /// fsync files and the directory (off only for tests on tmpfs).
    pub fsync: bool,
    /// How long to wait for a lock.
    pub wait: Wait,
}

/// Whether a push replaces the group or only the families it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMode {
    /// Replace the whole group (the Pushgateway's PUT).
    Replace,
    /// Replace only families with the same names (the Pushgateway's POST).
    Add,
}

/// Everything that can go wrong in the store. Messages name the file and
/// say what to do; the underlying I/O error is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory does not exist.
    #[error(
        "textfile directory {0:?} does not exist\nhint: create it (install -d -m 2775 -g promdrop DIR), or choose another with --dir or PROMDROP_DIR"
    )]
    Missing(PathBuf),
    /// The path is not a directory.
    #[error(
        "{0:?} is not a directory\nhint: --dir and PROMDROP_DIR name node_exporter's textfile directory"
    )]
    NotADirectory(PathBuf),
    /// The directory cannot be written.
    #[error(
        "cannot write to textfile directory {dir:?}\nhint: run as a user that may write it (for example a member of its group, if it is group-writable)"
    )]
    Unwritable {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state directory is a mount of its own.
    #[error(
        "{state:?} is on another filesystem than {dir:?}\nhint: remove that mount; promdrop keeps its locks next to the files it guards"
    )]
    OtherFilesystem {
        /// The textfile directory.
        dir: PathBuf,
        /// Its state directory.
        state: PathBuf,
    },
    /// An I/O operation failed.
    #[error("cannot {op} {path:?}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing was refused by permissions or a read-only filesystem.
    #[error(
        "cannot {op} {path:?}: not permitted\nhint: run as a user that may write the textfile directory (a member of its group, if it is group-writable), or check that it is not mounted read-only"
    )]
    Denied {
        /// What was being done.
        op: &'static str,
        /// To which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another writer holds the group's lock.
    #[error(
        "group {key} is locked by another writer; {}\nhint: raise --lock-timeout",
        gave_up(*.waited)
    )]
    LockTimeout {
        /// The group.
        key: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The metrics were refused; nothing was changed.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// A new group would pass the store's cap on groups.
    #[error("a new group (the directory holds {held}) would exceed the limit of {limit} groups")]
    GroupLimit {
        /// The cap.
        limit: usize,
        /// The `.prom` files the directory holds.
        held: usize,
    },
    /// A file with the group's name exists but is not a promdrop group.
    #[error(
        "{0:?} exists and was not written by promdrop, which neither replaces nor deletes it\nhint: remove or rename it yourself, or use another job name"
    )]
    NotOurs(PathBuf),
    /// The group's current file cannot be read back.
    #[error("cannot read group file {path:?}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// An I/O error, told apart when it is a matter of permission.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                Self::Denied { op, path, source }
            }
            _ => Self::Io { op, path, source },
        }
    }
}

/// A group as stored: its key, optional TTL, and families (including
/// `push_time_seconds` and `push_failure_time_seconds`).
#[derive(Debug, Clone)]
pub struct Group {
    /// The grouping key, from the header.
    pub key: GroupingKey,
    /// Time to live after the last push.
    pub ttl: Option<Duration>,
    /// The families, sorted by name.
    pub families: Vec<Family>,
}

impl Group {
    /// The value of `push_time_seconds`, if present.
    pub fn pushed_at(&self) -> Option<f64> {
        self.single_value("push_time_seconds")
    }

    /// The value of a family that holds a single series, like the push times.
    pub fn single_value(&self, name: &str) -> Option<f64> {
        self.families
            .iter()
            .find(|f| f.name() == name)?
            .first_value()
    }

    /// Number of series, not counting the push times.
    pub fn series(&self) -> usize {
        self.families
            .iter()
            .filter(|f| !is_push_metric(f.name()))
            .map(Family::len)
            .sum()
    }

    /// Whether the TTL has run out at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        expired(self.ttl, self.pushed_at(), now)
    }

    /// The value of `push_failure_time_seconds`; 0 when it never failed.
    fn failed(&self) -> f64 {
        self.single_value("push_failure_time_seconds")
            .unwrap_or(0.0)
    }

    /// Writes the group file: header, then the families.
    fn write(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let header = Header {
            key: self.key.clone(),
            ttl: self.ttl,
            failed: self.failed(),
        };
        render_after(header.render().as_bytes(), &self.families, out)
    }

    /// Reads a group file; `Ok(None)` when it has no promdrop header.
    fn read(bytes: &[u8]) -> Result<Option<Self>, String> {
        let Some(header) = Header::read(bytes)? else {
            return Ok(None);
        };
        let families = parse(bytes).map_err(|e| format!("line {}: {e}", e.line))?;
        Ok(Some(Self {
            key: header.key,
            ttl: header.ttl,
            families,
        }))
    }
}

/// What a push keeps of the group it replaces or adds to.
struct Previous {
    ttl: Option<Duration>,
    /// `push_failure_time_seconds`.
    failed: f64,
    /// The old families; read only for an add.
    families: Vec<Family>,
}

/// A group file's first line: what a replacing push needs of the old file,
/// readable without parsing the rest.
#[derive(Debug, Clone)]
struct Header {
    key: GroupingKey,
    ttl: Option<Duration>,
    /// `push_failure_time_seconds`, kept across pushes.
    failed: f64,
}

impl Header {
    fn render(&self) -> String {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .key
            .labels()
            .map(|(n, v)| (n.to_owned(), v.into()))
            .collect();
        let mut header = serde_json::json!({ "job": self.key.job(), "labels": labels });
        if let Some(ttl) = self.ttl {
            header["ttl_seconds"] = ttl.as_secs().into();
        }
        if self.failed != 0.0 {
            header["push_failure_time_seconds"] = self.failed.into();
        }
        format!("{HEADER}{header}\n")
    }

    /// Reads the header from the start of a file; `Ok(None)` when there is
    /// none (the file is not a promdrop group).
    fn read(bytes: &[u8]) -> Result<Option<Self>, String> {
        let Some(rest) = bytes.strip_prefix(HEADER.as_bytes()) else {
            return Ok(None);
        };
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let header: serde_json::Value =
            serde_json::from_slice(&rest[..end]).map_err(|e| format!("bad header: {e}"))?;
        let job = header["job"].as_str().ok_or("header has no job")?;
        let labels: Vec<(String, String)> = header["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(n, v)| (n.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let key = GroupingKey::new(job, labels).map_err(|e| format!("bad header: {e}"))?;
        let ttl = header["ttl_seconds"].as_u64().map(Duration::from_secs);
        let failed = header["push_failure_time_seconds"].as_f64().unwrap_or(0.0);
        Ok(Some(Self { key, ttl, failed }))
    }
}

/// One line of `promdrop list`.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// The group's file name.
    pub file: String,
    /// The group, as last read.
    pub group: Arc<Snapshot>,
}

/// A `*.prom` file that [`Store::listing`] left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file name.
    pub file: String,
    /// Why it is not a group.
    pub reason: SkipReason,
    /// Whether this version of the file was skipped for the first time.
    pub new: bool,
}

/// Why a `*.prom` file is not served as a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A FIFO, device, socket or directory: never opened.
    NotRegular,
    /// Larger than the store reads.
    TooLarge,
    /// It cannot be read (permissions, I/O).
    Unreadable(String),
    /// Not written by promdrop (another tool's file).
    Foreign,
    /// A promdrop header, but content that does not read back.
    Invalid(String),
}

impl SkipReason {
    /// A short label, as in `promdrop_skipped_files{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotRegular => "not_regular",
            Self::TooLarge => "too_large",
            Self::Unreadable(_) => "unreadable",
            Self::Foreign => "foreign",
            Self::Invalid(_) => "invalid",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRegular => f.write_str("not a regular file"),
            Self::TooLarge => f.write_str("larger than the store reads"),
            Self::Unreadable(why) => write!(f, "cannot be read: {why}"),
            Self::Foreign => f.write_str("not written by promdrop"),
            Self::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

/// The groups of the directory, and the `*.prom` files that are not.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// The groups, by file name.
    pub groups: Vec<GroupInfo>,
    /// The other files, by file name.
    pub skipped: Vec<Skipped>,
}

/// What `expire` removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// A group past its TTL.
    Group {
        /// Its key.
        key: String,
        /// Its file.
        file: String,
    },
    /// A temp file left by a crashed writer.
    TempFile(String),
}

/// A file's identity for caching: inode, size, mtime and ctime (seconds,
/// nanoseconds). The ctime changes with the mode too, which can make a file
/// that could not be read readable.
type FileId = (u64, u64, i64, i64, i64, i64);

/// What reading a `*.prom` file gave: a group, or why it is none.
type ReadOutcome = Result<Arc<Snapshot>, SkipReason>;

/// What [`Store::listing`] found last time.
#[derive(Debug, Default)]
struct Seen {
    /// Each file as last read, by name, with its identity then.
    files: std::collections::HashMap<String, (FileId, ReadOutcome)>,
    /// The whole listing, when the watch can tell that it still holds: no
    /// entry changed and none is a symlink.
    listing: Option<Listing>,
}

/// The textfile directory, opened.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The directory, open: the directory lock is a `flock` on it.
    handle: fs::File,
    state: PathBuf,
    options: StoreOptions,
    /// Whether the directory is group-writable (shared by several users).
    shared: bool,
    /// The fingerprint index as of this store's last write, and what the
    /// directory looked like then (no stamp when a watch keeps it current).
    cache: std::sync::Mutex<Option<(Index, Option<Stamp>)>>,
    /// A server: the index stays in memory, inverted, and its file is
    /// written only by [`Store::flush_index`]; a one-shot process writes the
    /// file after every write.
    long_lived: bool,
    /// The most `.prom` files a write may leave; a write that would create
    /// one more is refused, under the directory lock.
    max_groups: Option<usize>,
    /// The largest file the store reads; larger `*.prom` files are skipped
    /// (and refused as groups), so a planted huge file cannot exhaust
    /// memory.
    max_file_size: u64,
    /// What the last listing found.
    seen: std::sync::Mutex<Seen>,
    /// A long-lived store's inotify watch on the directory: a listing then
    /// looks again only at the entries that changed.
    watch: Option<watch::Watch>,
    /// This process's threads take turns at the directory lock here.
    dir_turns: Turns,
}

/// The directory lock, as [`Store::lock_directory`] takes it.
struct DirectoryLock<'a> {
    // Fields drop in order: the flock is free before the next thread's turn.
    _flock: HeldLock<'a>,
    _turn: Turn<'a>,
}

impl Store {
    /// Opens the directory for reading and writing, creating the state
    /// directory if needed.
    pub fn open(options: StoreOptions) -> Result<Self, StoreError> {
        let (store, dir_meta) = Self::open_dir(options)?;
        let locks = store.state.join("locks");
        let temp = store.state.join("tmp");
        if !locks.is_dir() || !temp.is_dir() {
            // Same permission bits as the directory, so that when it is
            // group-writable for several cron users, so are the locks.
            let bits = dir_meta.permissions().mode() & 0o7777;
            for path in [&store.state, &locks, &temp] {
                match fs::create_dir(path) {
                    Ok(()) => {
                        let _ = fs::set_permissions(path, fs::Permissions::from_mode(bits));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(StoreError::Unwritable {
                            dir: store.dir.clone(),
                            source,
                        });
                    }
                }
            }
        }
        let state_meta = fs::metadata(&store.state).map_err(|source| StoreError::Unwritable {
            dir: store.dir.clone(),
            source,
        })?;
        if state_meta.dev() != dir_meta.dev() {
            return Err(StoreError::OtherFilesystem {
                dir: store.dir.clone(),
                state: store.state.clone(),
            });
        }
        Ok(store)
    }

    /// Opens the directory for `list` and `show`, which write nothing.
    pub fn open_read_only(options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_dir(options).map(|(store, _)| store)
    }

    fn open_dir(options: StoreOptions) -> Result<(Self, fs::Metadata), StoreError> {
        let meta = match fs::metadata(&options.dir) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => return Err(StoreError::NotADirectory(options.dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(options.dir));
            }
            Err(source) => {
                return Err(StoreError::io("read", options.dir, source));
            }
        };
        let handle = fs::File::open(&options.dir)
            .map_err(|source| StoreError::io("open", &options.dir, source))?;
        let state = options.dir.join(STATE_DIR);
        let shared = meta.permissions().mode() & 0o020 != 0;
        Ok((
            Self {
                dir: options.dir.clone(),
                handle,
                state,
                options,
                shared,
                cache: std::sync::Mutex::new(None),
                long_lived: false,
                max_groups: None,
                max_file_size: DEFAULT_MAX_FILE_SIZE,
                seen: std::sync::Mutex::default(),
                watch: None,
                dir_turns: Turns::default(),
            },
            meta,
        ))
    }

    /// Keeps the fingerprint index in memory between writes, for a
    /// long-lived process: a push then costs no directory listing unless the
    /// directory changed behind its back, finding the files it might
    /// conflict with costs lookups for its own families and series (however
    /// many groups are stored), and the index file is written only by
    /// [`Store::flush_index`].
    ///
    /// It also watches the directory (inotify, on local filesystems), so
    /// that a listing looks again only at the files that changed.
    #[must_use]
    pub fn keep_index_in_memory(mut self) -> Self {
        self.long_lived = true;
        self.watch = watch::Watch::new(&self.dir);
        self
    }

    /// Caps the size of the files the store reads (1 GiB by default).
    #[must_use]
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Caps the number of groups (`.prom` files) the directory may hold: a
    /// write that would create one more fails with
    /// [`StoreError::GroupLimit`].
    #[must_use]
    pub fn with_max_groups(mut self, limit: usize) -> Self {
        self.max_groups = Some(limit);
        self
    }

    /// The short directory-wide lock under which every write makes its final
    /// cross-file check and renames its file in.
    fn lock_directory(&self) -> Result<DirectoryLock<'_>, StoreError> {
        let wait = self.options.wait;
        let timeout = || StoreError::LockTimeout {
            key: "(the directory)".into(),
            waited: waited(wait),
        };
        let start = std::time::Instant::now();
        let turn = self.dir_turns.take(wait).ok_or_else(timeout)?;
        let left = match wait {
            Wait::No => Wait::No,
            Wait::Up(limit) => Wait::Up(limit.saturating_sub(start.elapsed())),
        };
        let flock = HeldLock::on(&self.handle, &self.dir, left)?.ok_or_else(timeout)?;
        Ok(DirectoryLock {
            _flock: flock,
            _turn: turn,
        })
    }

    /// Under the directory lock: lists the directory afresh, writes the index
    /// file, and keeps the result in memory. A server calls this now and then,
    /// which also bounds how long a change by another tool can go unseen.
    pub fn flush_index(&self) -> Result<(), StoreError> {
        let _lock = self.lock_directory()?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut index = cache
            .take()
            .map_or_else(|| self.load_index(), |(index, _)| index);
        // The full listing covers whatever the watch holds for the index,
        // which then never gathers more than one sweep's worth of names.
        if let Some(watch) = &self.watch {
            let _ = watch.changed(watch::Reader::Index);
        }
        index.refresh(&self.dir, self.max_file_size)?;
        index.save(&self.state, self.lock_mode());
        *cache = Some((index, self.stamp()));
        Ok(())
    }

    /// Reads the index file ahead of the directory lock, when this one-shot
    /// store has no index in memory. Under the lock, [`Store::current_index`]
    /// lists the directory again, as it would have, and reads the index file
    /// again only if it changed meanwhile. (A long-lived store's index in
    /// memory is the only current one; the file lags behind it.)
    fn warm_index(&self) {
        if self.long_lived {
            return;
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.is_some() {
            return;
        }
        // Taken first: whatever changes the file while it is read changes it.
        let stamp = self.stamp().map(Stamp::index_file_only);
        *cache = Some((self.load_index(), stamp));
    }

    /// What the directory and the index file look like now, to tell whether
    /// a cached index is current; `None` with a watch, which tells that by
    /// itself and saves the `stat`s.
    fn stamp(&self) -> Option<Stamp> {
        self.watch
            .is_none()
            .then(|| Stamp::now(&self.dir, &self.state))
    }

    /// The index file's content; a long-lived store also inverts it.
    fn load_index(&self) -> Index {
        Index::load(&self.state, self.long_lived)
    }

    /// The index as it is now, from memory when nothing changed since this
    /// store last wrote. Called under the directory lock.
    fn current_index(&self) -> Result<Index, StoreError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((mut index, stamp)) = cached {
            // The watch names every change since the index was current:
            // writes by this process, by other promdrop processes and by
            // other tools alike.
            if let Some(watch) = &self.watch {
                match watch.changed(watch::Reader::Index) {
                    watch::Changed::Names(names) => {
                        index.refresh_names(&self.dir, names, self.max_file_size);
                    }
                    watch::Changed::All => index.refresh(&self.dir, self.max_file_size)?,
                }
                return Ok(index);
            }
            let now = Stamp::now(&self.dir, &self.state);
            match stamp {
                Some(stamp) if stamp == now => return Ok(index),
                // Only other tools wrote: the index file is still this one's.
                Some(stamp) if stamp.same_index_file(&now) => {
                    index.refresh(&self.dir, self.max_file_size)?;
                    return Ok(index);
                }
                _ => {}
            }
        }
        // The full listing covers whatever the watch holds so far.
        if let Some(watch) = &self.watch {
            let _ = watch.changed(watch::Reader::Index);
        }
        let mut index = self.load_index();
        index.refresh(&self.dir, self.max_file_size)?;
        Ok(index)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether writes are fsynced.
    pub fn fsyncs(&self) -> bool {
        self.options.fsync
    }

    /// Takes the group's lock.
    pub fn lock(&self, key: &GroupingKey) -> Result<GroupLock<'_>, StoreError> {
        self.lock_with(key, self.options.wait)
    }

    fn lock_with(&self, key: &GroupingKey, wait: Wait) -> Result<GroupLock<'_>, StoreError> {
        let path = self.lock_path(key, LOCK_SUFFIX);
        match FileLock::acquire(path, self.lock_mode(), wait)? {
            Some(lock) => Ok(GroupLock {
                store: self,
                key: key.clone(),
                durable: self.options.fsync,
                lock,
            }),
            None => Err(StoreError::LockTimeout {
                key: key.to_string(),
                waited: waited(wait),
            }),
        }
    }

    /// Takes the lock that keeps two runs of the group from interleaving
    /// (`promdrop run`); `Ok(None)` when another run holds it and `wait` ran
    /// out. Held for the whole run, apart from the group lock, which each
    /// write takes briefly.
    pub fn run_lock(&self, key: &GroupingKey, wait: Wait) -> Result<Option<RunLock>, StoreError> {
        let path = self.lock_path(key, RUN_LOCK_SUFFIX);
        Ok(FileLock::acquire(path, self.lock_mode(), wait)?.map(|lock| RunLock { lock }))
    }

    /// The lock file of `key`'s group (`suffix` [`LOCK_SUFFIX`]) or of its
    /// runs ([`RUN_LOCK_SUFFIX`]).
    fn lock_path(&self, key: &GroupingKey, suffix: &str) -> PathBuf {
        self.state
            .join("locks")
            .join(format!("{}{suffix}", key.file_stem()))
    }

    /// An empty scratch file in the state directory, removed on drop: where a
    /// wrapped command writes its own metrics.
    ///
    /// It is locked for as long as it lives, so that `expire` removes only
    /// those of runs whose promdrop was killed, however long a job runs.
    pub fn scratch_file(&self, key: &GroupingKey) -> Result<ScratchFile, StoreError> {
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!("{RUN_PREFIX}{}.", key.file_stem()))
            .suffix(".txt")
            .tempfile_in(&self.state)
            .map_err(|source| StoreError::io("create a scratch file in", &self.state, source))?
            .into_parts();
        // Where locks do not work, `expire` takes the file for held.
        let _ = fs2::FileExt::try_lock_exclusive(&file);
        Ok(ScratchFile {
            path,
            _lock: file,
            limit: self.max_file_size,
        })
    }

    /// Lock and cache files: group-writable when the directory is, so that
    /// every user who may push can take the locks.
    fn lock_mode(&self) -> u32 {
        if self.shared { 0o664 } else { 0o644 }
    }

    /// Pushes `families` to the group of `key`: see [`GroupLock::push`].
    pub fn push(
        &self,
        key: &GroupingKey,
        families: Vec<Family>,
        mode: PushMode,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<Group, StoreError> {
        self.lock(key)?.push(families, mode, ttl, now)
    }

    /// Deletes the group of `key`; `false` when there was none.
    pub fn delete(&self, key: &GroupingKey) -> Result<bool, StoreError> {
        self.lock(key)?.delete()
    }

    /// The raw text of the group of `key`, if there is one.
    pub fn show(&self, key: &GroupingKey) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(key.file_name());
        match files::read_regular(&path, self.max_file_size) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::io("read", path, source)),
        }
    }

    fn read_group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        let path = self.dir.join(name);
        let bytes = match files::read_regular(&path, self.max_file_size) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::io("read", path, source));
            }
        };
        match Group::read(&bytes) {
            Ok(Some(group)) => Ok(Some(group)),
            Ok(None) => Err(StoreError::NotOurs(path)),
            Err(reason) => Err(StoreError::Corrupt { path, reason }),
        }
    }

    /// Every promdrop group in the directory, by file name. Files that are
    /// not promdrop groups are skipped; [`Store::listing`] says which.
    pub fn list(&self) -> Result<Vec<GroupInfo>, StoreError> {
        self.listing().map(|listing| listing.groups)
    }

    /// Every promdrop group in the directory, and every other `*.prom` file
    /// with the reason it is not one.
    ///
    /// Files are read once per version: a file with the same inode, size,
    /// mtime and ctime as last time comes from memory, so a server's scrapes
    /// parse only what changed. Anything but a regular file (a FIFO named
    /// `*.prom`, say) is skipped without being opened, and so is a file
    /// larger than the store reads.
    pub fn listing(&self) -> Result<Listing, StoreError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = self
            .watch
            .as_ref()
            .map(|w| w.changed(watch::Reader::Listing));
        if let (Some(watch::Changed::Names(names)), Some(last)) = (&changed, &seen.listing)
            && names.is_empty()
        {
            let mut listing = last.clone();
            for skipped in &mut listing.skipped {
                skipped.new = false;
            }
            return Ok(listing);
        }
        let unchanged = |entry: &fs::DirEntry| match &changed {
            Some(watch::Changed::Names(names)) => {
                !names.contains(&entry.file_name())
                    && entry.file_type().is_ok_and(|t| !t.is_symlink())
            }
            _ => false,
        };
        let mut previous = std::mem::take(&mut seen.files);
        let mut listing = Listing::default();
        let mut symlinks = false;
        for (name, entry) in self.prom_files()? {
            symlinks |= entry.file_type().is_ok_and(|t| t.is_symlink());
            let (id, outcome, new) = match previous.remove(&name) {
                Some((id, outcome)) if unchanged(&entry) => (id, outcome, false),
                seen => {
                    let meta = match files::entry_metadata(&entry) {
                        Ok(meta) => meta,
                        // A symlink to nothing, or a file removed since the listing.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            listing.skipped.push(Skipped {
                                file: name,
                                reason: SkipReason::Unreadable(e.to_string()),
                                new: false,
                            });
                            continue;
                        }
                    };
                    let id = (
                        meta.ino(),
                        meta.size(),
                        meta.mtime(),
                        meta.mtime_nsec(),
                        meta.ctime(),
                        meta.ctime_nsec(),
                    );
                    match seen {
                        Some((seen, outcome)) if seen == id => (id, outcome, false),
                        _ => match self.read_outcome(&name, &meta) {
                            Some(outcome) => (id, outcome, true),
                            None => continue,
                        },
                    }
                }
            };
            seen.files.insert(name.clone(), (id, outcome.clone()));
            match outcome {
                Ok(group) => listing.groups.push(GroupInfo { file: name, group }),
                Err(reason) => listing.skipped.push(Skipped {
                    file: name,
                    reason,
                    new,
                }),
            }
        }
        seen.listing = (changed.is_some() && !symlinks).then(|| listing.clone());
        Ok(listing)
    }

    /// What file `name`, described by `meta`, holds; `None` when it is gone.
    fn read_outcome(&self, name: &str, meta: &fs::Metadata) -> Option<ReadOutcome> {
        if !meta.is_file() {
            return Some(Err(SkipReason::NotRegular));
        }
        if meta.size() > self.max_file_size {
            return Some(Err(SkipReason::TooLarge));
        }
        Some(match self.read_group(name) {
            Ok(Some(group)) => Ok(Arc::new(Snapshot::of(group))),
            Ok(None) => return None,
            Err(StoreError::NotOurs(_)) => Err(SkipReason::Foreign),
            Err(StoreError::Corrupt { reason, .. }) => Err(SkipReason::Invalid(reason)),
            Err(e) => Err(SkipReason::Unreadable(crate::error_chain(&e))),
        })
    }

    /// Removes groups past their TTL and temp files left by crashed writers;
    /// with `dry_run`, only reports them.
    pub fn expire(&self, now: SystemTime, dry_run: bool) -> Result<Vec<Expired>, StoreError> {
        let mut removed = Vec::new();
        for info in self.list()? {
            if !info.group.expired(now) {
                continue;
            }
            let key = info.group.key.to_string();
            if dry_run {
                removed.push(Expired::Group {
                    key,
                    file: info.file,
                });
                continue;
            }
            // A writer holding the lock is about to refresh the group: skip it.
            let Ok(lock) = self.lock_with(&info.group.key, Wait::No) else {
                continue;
            };
            if lock.read()?.is_some_and(|g| g.expired(now)) && lock.delete()? {
                removed.push(Expired::Group {
                    key,
                    file: info.file,
                });
            }
        }
        for dir in [&self.dir, &self.state, &self.state.join("tmp")] {
            for name in stale_temp_files(dir, now) {
                if dry_run || atomic::remove(dir, &name, None, false, false)? {
                    removed.push(Expired::TempFile(dir.join(&name).display().to_string()));
                }
            }
        }
        if !dry_run {
            self.remove_stale_locks();
        }
        Ok(removed)
    }

    /// Removes the lock files that nothing needs any more: a group's once
    /// the group has no file (left by a refused first push, a crash, or a
    /// group removed by hand), a run's once no run holds it. A lock file in
    /// use is held, and left alone. Housekeeping: errors leave the file.
    fn remove_stale_locks(&self) {
        let Ok(listing) = fs::read_dir(self.state.join("locks")) else {
            return;
        };
        for entry in listing.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let group = match name.strip_suffix(LOCK_SUFFIX) {
                Some(stem) => Some(self.dir.join(format!("{stem}.prom"))),
                None if name.ends_with(RUN_LOCK_SUFFIX) => None,
                None => continue,
            };
            let needed = || group.as_ref().is_some_and(|g| g.symlink_metadata().is_ok());
            if needed() {
                continue;
            }
            // Looked at again under the lock, which a push to a new group
            // holds while it creates the group's file.
            if let Ok(Some(lock)) = FileLock::acquire(entry.path(), self.lock_mode(), Wait::No)
                && !needed()
            {
                lock.unlink();
            }
        }
    }

    /// The entries node_exporter reads, sorted by name as it reads them.
    fn prom_files(&self) -> Result<Vec<(String, fs::DirEntry)>, StoreError> {
        let listing = fs::read_dir(&self.dir)
            .map_err(|source| StoreError::io("list", self.dir.clone(), source))?;
        let mut files: Vec<(String, fs::DirEntry)> = listing
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                is_prom_name(&name).then_some((name, entry))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    /// Refuses `families` (to be published as `name`) when they conflict
    /// with another file in the directory. Runs under the directory lock.
    fn check_against_directory(
        &self,
        index: &Index,
        name: &str,
        families: &[Family],
        print: &Fingerprint,
    ) -> Result<(), StoreError> {
        let mut names = index.candidates(name, print);
        if names.is_empty() {
            return Ok(());
        }
        let others: Vec<(String, Vec<Family>)> = names
            .drain(..)
            .filter_map(|other| {
                let bytes = files::read_regular(&self.dir.join(&other), self.max_file_size);
                let parsed = parse(&bytes.ok()?).ok()?;
                Some((other, parsed))
            })
            .collect();
        let mut sources: Vec<Source<'_>> = others
            .iter()
            .map(|(n, f)| Source {
                name: n,
                families: f,
            })
            .collect();
        // Conflicts are symmetric, so which side node_exporter would drop
        // does not matter for a refusal: check the new file last, and every
        // message reads from its side ("here" is the push).
        sources.sort_by(|a, b| a.name.cmp(b.name));
        sources.push(Source { name, families });
        let mine = sources.len() - 1;
        // Lines of the pushed content are lines of its input, not of the
        // file: name only the file for it.
        let problems: Vec<String> = validate(&sources)
            .into_iter()
            .filter(|p| p.source == mine)
            .map(|p| format!("{name}: {}", p.violation))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(problems))
        }
    }
}

/// A file in the state directory that another process may write; see
/// [`Store::scratch_file`]. Removed when dropped.
#[derive(Debug)]
pub struct ScratchFile {
    path: tempfile::TempPath,
    _lock: fs::File,
    limit: u64,
}

impl ScratchFile {
    /// Its path, to hand to the other process.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What it holds now: nothing, when it was removed or never written.
    /// Whatever the other process left there, reading it never blocks,
    /// follows no symlink and stops at the store's size cap: anything but
    /// a regular file within the cap is an error.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match files::open_state_file(&self.path, false, None) {
            Ok(file) => files::read_limited(file, self.limit),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a symlink, which is not followed",
            )),
            Err(e) => Err(e),
        }
    }
}

/// The hold of one run of a group; see [`Store::run_lock`]. Its lock file
/// goes with it.
#[derive(Debug)]
pub struct RunLock {
    lock: FileLock,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        self.lock.unlink();
    }
}

/// An exclusive hold on one group. Reading under it is consistent; writing
/// is only possible through it, and consumes it.
#[derive(Debug)]
pub struct GroupLock<'s> {
    store: &'s Store,
    key: GroupingKey,
    /// Whether this write is fsynced (the store's setting, unless waived).
    durable: bool,
    lock: FileLock,
}

impl GroupLock<'_> {
    /// Makes the next write atomic but not fsynced: after a machine crash the
    /// group may show the write before it, never a torn file. For state that
    /// is cheap to lose, such as `run`'s start marker.
    #[must_use]
    pub fn without_fsync(mut self) -> Self {
        self.durable = false;
        self
    }

    /// The group as it is now.
    pub fn read(&self) -> Result<Option<Group>, StoreError> {
        self.store.read_group(&self.key.file_name())
    }

    /// Only the first line of the group's file, however large the file; and
    /// the file, held open for the write that replaces it or the removal
    /// (see [`atomic::try_hold`]), unless it is a symlink.
    fn read_header(&self) -> Result<(Option<Header>, Option<File>), StoreError> {
        use std::io::BufRead as _;
        let path = self.store.dir.join(self.key.file_name());
        let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let (file, held) = match atomic::try_hold(&path) {
            Ok(file) => (file, true),
            Err(e) if not_found(&e) => return Ok((None, None)),
            // A symlink, say: read through it, as node_exporter does.
            Err(_) => match files::open_regular(&path) {
                Ok(file) => (file, false),
                Err(e) if not_found(&e) => return Ok((None, None)),
                Err(source) => return Err(StoreError::io("read", path, source)),
            },
        };
        let mut line = Vec::new();
        std::io::BufReader::new(&file)
            .read_until(b'\n', &mut line)
            .map_err(|source| StoreError::io("read", &path, source))?;
        match Header::read(&line) {
            Ok(Some(header)) => Ok((Some(header), held.then_some(file))),
            Ok(None) => Err(StoreError::NotOurs(path)),
            Err(reason) => Err(StoreError::Corrupt { path, reason }),
        }
    }

    /// Pushes families to the group, as the Pushgateway does: grouping labels
    /// are injected; [`PushMode::Replace`] replaces the group,
    /// [`PushMode::Add`] only same-named families; `push_time_seconds` is set
    /// to `now` and `push_failure_time_seconds` kept (0 for a new group).
    /// Without a `ttl`, an `Add` keeps the group's TTL. A refused push
    /// changes nothing. Returns the group as written.
    pub fn push(
        self,
        families: Vec<Family>,
        mode: PushMode,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<Group, StoreError> {
        let (previous, held) = match mode {
            // A replace reads only the old file's first line.
            PushMode::Replace => {
                let (header, held) = self.read_header()?;
                let previous = header.map(|header| Previous {
                    ttl: header.ttl,
                    failed: header.failed,
                    families: Vec::new(),
                });
                (previous, held)
            }
            PushMode::Add => {
                let previous = self.read()?.map(|group| Previous {
                    ttl: group.ttl,
                    failed: group.failed(),
                    families: group.families,
                });
                (previous, None)
            }
        };
        self.push_onto(previous, held, families, mode, ttl, now)
    }

    /// [`GroupLock::push`] as a replace, over `old`, the group as
    /// [`GroupLock::read`] returned it under this lock: the file is not read
    /// again.
    pub fn replace_over(
        self,
        old: Option<&Group>,
        families: Vec<Family>,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<Group, StoreError> {
        let previous = old.map(|group| Previous {
            ttl: group.ttl,
            failed: group.failed(),
            families: Vec::new(),
        });
        self.push_onto(previous, None, families, PushMode::Replace, ttl, now)
    }

    /// Writes the push over `previous`; `held` is the old file, if open.
    fn push_onto(
        self,
        previous: Option<Previous>,
        held: Option<File>,
        mut families: Vec<Family>,
        mode: PushMode,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<Group, StoreError> {
        let job_label = &self.store.options.job_label;
        families.retain(|f| !is_push_metric(f.name()));
        self.key.inject(&mut families, job_label);
        let failed = previous.as_ref().map_or(0.0, |p| p.failed);
        let mut ttl = ttl;
        if let (PushMode::Add, Some(previous)) = (mode, previous) {
            let pushed: Vec<String> = families.iter().map(|f| f.name().to_owned()).collect();
            families.extend(
                previous
                    .families
                    .into_iter()
                    .filter(|f| !is_push_metric(f.name()) && !pushed.iter().any(|p| p == f.name())),
            );
            ttl = ttl.or(previous.ttl);
        }
        // A family without series (protobuf can push one) has only taken
        // the place of the stored family of its name.
        families.retain(|f| !f.is_empty());
        families.push(self.push_metric("push_time_seconds", PUSH_TIME_HELP, seconds(now)));
        families.push(self.push_metric(
            "push_failure_time_seconds",
            PUSH_FAILURE_TIME_HELP,
            failed,
        ));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let group = Group {
            key: self.key.clone(),
            ttl,
            families,
        };
        self.publish_over(&group, held)?;
        Ok(group)
    }

    /// Writes `group` as the group's file: validated alone, then against
    /// the rest of the directory under the directory lock, then renamed in.
    pub fn publish(self, group: &Group) -> Result<(), StoreError> {
        self.publish_over(group, None)
    }

    /// [`GroupLock::publish`], over `held`, the old file if open.
    fn publish_over(self, group: &Group, held: Option<File>) -> Result<(), StoreError> {
        let name = self.key.file_name();
        // Unnamed: the lines of pushed series are lines of the push's input,
        // not of the file, and messages say so.
        let alone = [Source {
            name: "",
            families: &group.families,
        }];
        let checks = || (validate(&alone), Fingerprint::of(&group.families));
        let refuse_any = |problems: Vec<Problem>| {
            if problems.is_empty() {
                return Ok(());
            }
            Err(StoreError::Invalid(
                problems
                    .into_iter()
                    .map(|p| match p.line {
                        0 => format!("{name}: {}", p.violation),
                        line => format!("{name}: line {line} of the input: {}", p.violation),
                    })
                    .collect(),
            ))
        };
        let store = self.store;
        std::thread::scope(|scope| {
            // A large group is checked on a second thread while its file is
            // written: a refusal then only removes the temp file. That thread
            // usually finishes first, and then loads the index for the check
            // against the directory, which otherwise waits for the fsync.
            let pending = parallel::is_large(&group.families)
                .then(|| {
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || {
                            let checked = checks();
                            store.warm_index();
                            checked
                        })
                        .ok()
                })
                .flatten();
            let checked: Box<dyn FnOnce() -> Result<Fingerprint, StoreError>> =
                if let Some(pending) = pending {
                    Box::new(move || {
                        let (problems, print) = pending
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                        refuse_any(problems).map(|()| print)
                    })
                } else {
                    let (problems, print) = checks();
                    refuse_any(problems)?;
                    Box::new(move || Ok(print))
                };
            self.write_checked(group, &name, held, checked)
        })
    }

    /// The rest of [`GroupLock::publish`]: writes the file, and renames it in
    /// once `checked` passed and the group fits with the directory.
    fn write_checked(
        &self,
        group: &Group,
        name: &str,
        held: Option<File>,
        checked: impl FnOnce() -> Result<Fingerprint, StoreError>,
    ) -> Result<(), StoreError> {
        let store = self.store;
        let write = |mut file: &mut dyn std::io::Write| group.write(&mut file);
        let options = WriteOptions {
            mode: store.options.mode,
            fsync: self.durable,
            close_later: store.long_lived,
        };
        let temp_dir = store.state.join("tmp");
        let file = name;
        let check = move || {
            let print = checked()?;
            let lock = store.lock_directory()?;
            let index = store.current_index()?;
            if let Some(limit) = store.max_groups
                && !index.holds(file)
                && index.len() >= limit
            {
                return Err(StoreError::GroupLimit {
                    limit,
                    held: index.len(),
                });
            }
            store.check_against_directory(&index, file, &group.families, &print)?;
            Ok((lock, index, print))
        };
        let record = |(dir_lock, mut index, print): (DirectoryLock, Index, Fingerprint),
                      written: &fs::Metadata| {
            index.record(file, written, print);
            if !store.long_lived {
                index.save(&store.state, store.lock_mode());
            }
            let stamp = store.stamp();
            *store
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((index, stamp));
            drop(dir_lock);
        };
        let target = Target {
            dir: &store.dir,
            name,
            held,
        };
        write_atomic(target, &temp_dir, write, options, check, record)
    }

    /// Removes the group's file, and its lock file; `false` when there was
    /// no group.
    pub fn delete(self) -> Result<bool, StoreError> {
        let (exists, held) = match self.read_header() {
            Err(StoreError::NotOurs(path)) => return Err(StoreError::NotOurs(path)),
            Ok((header, held)) => (header.is_some(), held),
            // Corrupt or unreadable: removed all the same.
            Err(_) => (true, None),
        };
        let removed = exists
            && atomic::remove(
                &self.store.dir,
                &self.key.file_name(),
                held,
                self.store.options.fsync,
                self.store.long_lived,
            )?;
        self.lock.unlink();
        Ok(removed)
    }

    fn push_metric(&self, name: &str, help: &str, value: f64) -> Family {
        let mut family = Family::new(name, MetricType::Gauge).with_help(help);
        family.push::<&str, &str>(&[], Value::Single(value));
        self.key.inject(
            std::slice::from_mut(&mut family),
            &self.store.options.job_label,
        );
        family
    }
}

/// `push_time_seconds` and `push_failure_time_seconds`, which the store writes
/// into every group.
pub(crate) fn is_push_metric(name: &str) -> bool {
    name == "push_time_seconds" || name == "push_failure_time_seconds"
}

/// Whether node_exporter reads a directory entry of this name.
pub(crate) fn is_prom_name(name: &str) -> bool {
    name.ends_with(".prom")
}

/// Whether a group with this TTL, last pushed at `pushed`, has expired at
/// `now`; never without both.
fn expired(ttl: Option<Duration>, pushed: Option<f64>, now: SystemTime) -> bool {
    match (ttl, pushed) {
        (Some(ttl), Some(pushed)) => seconds(now) > pushed + ttl.as_secs_f64(),
        _ => false,
    }
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How long a writer waited for a lock, for [`StoreError::LockTimeout`].
fn gave_up(waited: Duration) -> String {
    if waited.is_zero() {
        "gave up at once (a lock timeout of 0)".to_owned()
    } else {
        format!("gave up after {waited:?}")
    }
}

fn waited(wait: Wait) -> Duration {
    match wait {
        Wait::No => Duration::ZERO,
        Wait::Up(limit) => limit,
    }
}

/// The temp files of writers that died, and the metrics files of runs
/// whose promdrop was killed.
fn stale_temp_files(dir: &Path, now: SystemTime) -> Vec<String> {
    let Ok(listing) = fs::read_dir(dir) else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let temp = name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX));
            if !temp && !name.to_str().is_some_and(|n| n.starts_with(RUN_PREFIX)) {
                return false;
            }
            let age = e
                .metadata()
                .and_then(|m| m.modified())
                .map_or(Duration::ZERO, |t| {
                    now.duration_since(t).unwrap_or_default()
                });
            // A writer locks its temp file right after creating it: past a
            // moment's grace, one nobody holds is a dead writer's. Where locks
            // do not work, age alone decides for temp files, and nothing for
            // a run's metrics file, which lives as long as its job runs.
            (temp && age > STALE_TEMP) || (age > TEMP_GRACE && !held(&e.path()))
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether a live writer holds the lock on this temp file.
fn held(path: &Path) -> bool {
    files::open_regular(path).is_ok_and(|file| fs2::FileExt::try_lock_exclusive(&file).is_err())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::watch::{Changed, Reader};
    use super::{Group, PushMode, Store, StoreError, StoreOptions, Wait};
    use crate::exposition::parse::parse;
    use crate::grouping_key::GroupingKey;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(StoreOptions {
            dir: dir.into(),
            job_label: "job".into(),
            mode: 0o644,
            fsync: false,
            wait: Wait::No,
        })
        .unwrap()
    }

    #[test]
    fn every_kind_of_push_keeps_the_failure_time_and_an_add_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let key = GroupingKey::of("job", &[]);
        let now = SystemTime::now();
        let hour = Some(Duration::from_secs(3600));
        let families = parse(b"a 1\npush_failure_time_seconds{instance=\"\",job=\"job\"} 5\n");
        let group = Group {
            key: key.clone(),
            ttl: hour,
            families: families.unwrap(),
        };
        store.lock(&key).unwrap().publish(&group).unwrap();
        let read = || store.lock(&key).unwrap().read().unwrap().unwrap();
        let names = |g: &Group| -> Vec<String> {
            let own = g.families.iter().map(|f| f.name().to_owned());
            own.filter(|n| !n.starts_with("push_")).collect()
        };

        let lock = store.lock(&key).unwrap();
        lock.push(parse(b"b 1\n").unwrap(), PushMode::Replace, None, now)
            .unwrap();
        let replaced = read();
        assert_eq!((replaced.failed(), replaced.ttl), (5.0, None));
        assert_eq!(names(&replaced), ["b"]);

        let lock = store.lock(&key).unwrap();
        let old = lock.read().unwrap();
        lock.replace_over(old.as_ref(), parse(b"c 1\n").unwrap(), hour, now)
            .unwrap();
        let over = read();
        assert_eq!((over.failed(), over.ttl), (5.0, hour));
        assert_eq!(names(&over), ["c"]);

        let lock = store.lock(&key).unwrap();
        lock.push(parse(b"d 1\n").unwrap(), PushMode::Add, None, now)
            .unwrap();
        let added = read();
        assert_eq!((added.failed(), added.ttl), (5.0, hour));
        assert_eq!(names(&added), ["c", "d"]);
    }

    /// A large push reads the index file ahead of the directory lock: what
    /// other writers did meanwhile must still count in its check.
    #[test]
    fn an_index_read_ahead_still_sees_what_others_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let push = |store: &Store, job: &str, text: &str| {
            let key = GroupingKey::of(job, &[]);
            let families = parse(text.as_bytes()).unwrap();
            store.push(&key, families, PushMode::Replace, None, SystemTime::now())
        };
        let refused = |result: Result<Group, StoreError>| match result {
            Err(StoreError::Invalid(problems)) => problems.join("\n"),
            other => panic!("not refused: {other:?}"),
        };
        let foreign = dir.path().join("foreign.prom");
        std::fs::write(&foreign, "# TYPE f gauge\nf 1\n").unwrap();
        push(&store(dir.path()), "a", "# TYPE a gauge\na 1\n").unwrap();
        let read_ahead = || {
            let store = store(dir.path());
            store.warm_index();
            store
        };

        // Nothing changed: the index as read ahead.
        let problem = refused(push(&read_ahead(), "mine", "# TYPE a counter\na 1\n"));
        assert!(problem.contains("a.prom"), "{problem}");
        // Another promdrop process wrote a group, and the index file.
        let ours = read_ahead();
        push(&store(dir.path()), "b", "# TYPE b gauge\nb 1\n").unwrap();
        let problem = refused(push(&ours, "mine", "# TYPE b counter\nb 1\n"));
        assert!(problem.contains("b.prom"), "{problem}");
        // Another tool rewrote its file in place, which the directory's
        // time need not show.
        let ours = read_ahead();
        std::fs::write(&foreign, "# TYPE g gauge\ng 1\n").unwrap();
        let problem = refused(push(&ours, "mine", "# TYPE g counter\ng 1\n"));
        assert!(problem.contains("foreign.prom"), "{problem}");
        // And a push that fits goes through.
        push(&read_ahead(), "mine", "# TYPE m gauge\nm 1\n").unwrap();
    }

    /// A large group is checked while its file is written; a refusal must
    /// still leave the old file as it was, and no temp file.
    #[test]
    fn a_large_refused_push_leaves_the_group_and_no_temp_file() {
        use std::fmt::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let key = GroupingKey::of("job", &[]);
        let input = |extra: &str| {
            let mut text = String::new();
            for i in 0..crate::exposition::parallel::TWO_THREADS_FROM {
                writeln!(text, "m{{i=\"{i}\"}} {i}").unwrap();
            }
            text.push_str(extra);
            parse(text.as_bytes()).unwrap()
        };
        let push = |families| {
            let lock = store.lock(&key).unwrap();
            lock.push(families, PushMode::Replace, None, SystemTime::now())
        };
        push(input("")).unwrap();
        let file = dir.path().join(key.file_name());
        let before = std::fs::read(&file).unwrap();
        // The same series as the first, once the grouping label replaces
        // its own `job`.
        let err = push(input("m{i=\"0\",job=\"other\"} 1\n")).unwrap_err();
        let StoreError::Invalid(problems) = err else {
            panic!("refused as invalid: {err}");
        };
        assert!(problems[0].contains("duplicate"), "{problems:?}");
        assert_eq!(std::fs::read(&file).unwrap(), before);
        let temp = dir.path().join(".promdrop/tmp");
        assert_eq!(std::fs::read_dir(temp).unwrap().count(), 0);
    }

    #[test]
    fn threads_of_one_process_take_turns_at_the_directory_lock_within_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = store(dir.path()).options.clone();
        options.wait = Wait::Up(Duration::from_secs(2));
        let store = &Store::open(options).unwrap();
        let first = store.lock_directory().unwrap();
        std::thread::scope(|scope| {
            // While the first holds it, a second thread gives up when its
            // wait runs out.
            let (sent, outcome) = std::sync::mpsc::channel();
            scope.spawn(move || sent.send(store.lock_directory().map(drop)));
            let gave_up = outcome.recv_timeout(Duration::from_secs(10));
            assert!(
                matches!(gave_up, Ok(Err(StoreError::LockTimeout { .. }))),
                "{gave_up:?}"
            );
            // A third gets its turn once the first lets go.
            let third = scope.spawn(|| store.lock_directory().map(drop));
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            assert!(third.join().unwrap().is_ok());
        });
    }

    #[test]
    fn a_flush_takes_what_the_watch_holds_for_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).keep_index_in_memory();
        // /tmp may be any filesystem; skip where the watch is not used.
        let Some(watch) = &store.watch else {
            return;
        };
        std::fs::write(dir.path().join("a.prom"), "a 1\n").unwrap();
        std::fs::write(dir.path().join("b.prom"), "b 1\n").unwrap();
        store.flush_index().unwrap();
        assert!(matches!(watch.changed(Reader::Index), Changed::Names(n) if n.is_empty()));
        // The listing's reader is left alone.
        assert!(matches!(watch.changed(Reader::Listing), Changed::Names(n) if n.len() == 2));
    }
}
