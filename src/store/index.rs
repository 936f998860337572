//! A cache of every `.prom` file's [`Fingerprint`], keyed by file identity
//! (inode, size, mtime), kept in the state directory. With it, checking a
//! push against 1,000 other groups costs a directory listing and 1,000
//! `stat`s instead of 1,000 parses; only files that changed since the last
//! writer looked are parsed again.
//!
//! Read and written only under the directory lock.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::exposition::parse::parse;
use crate::exposition::validate::Fingerprint;

use super::atomic::{WriteOptions, write_atomic};
use super::{StoreError, is_prom_name};

const INDEX_FILE: &str = "index.json";
const VERSION: u32 = 1;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Index {
    version: u32,
    files: BTreeMap<String, Entry>,
    #[serde(skip)]
    dirty: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    /// `None` when node_exporter would not read the file (it does not
    /// parse), so it can conflict with nothing.
    print: Option<Fingerprint>,
}

impl Entry {
    fn matches(&self, meta: &fs::Metadata) -> bool {
        self.ino == meta.ino() && self.size == meta.size() && self.mtime_ns == mtime_ns(meta)
    }
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
}

impl Index {
    /// Loads the cache; a missing, unreadable or outdated one starts empty.
    pub(crate) fn load(state: &Path) -> Self {
        fs::read(state.join(INDEX_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Self>(&bytes).ok())
            .filter(|index| index.version == VERSION)
            .unwrap_or_else(|| Self { version: VERSION, ..Self::default() })
    }

    /// Brings the cache up to date with the directory: drops vanished files
    /// and fingerprints new or changed ones.
    pub(crate) fn refresh(&mut self, dir: &Path) -> Result<(), StoreError> {
        let listing = fs::read_dir(dir).map_err(|source| StoreError::Io { op: "list", path: dir.into(), source })?;
        let mut present = BTreeMap::new();
        for entry in listing.flatten() {
            let Some(name) = entry.file_name().to_str().filter(|n| is_prom_name(n)).map(str::to_owned) else {
                continue;
            };
            // node_exporter follows symlinks; a FIFO would hang it, so never
            // open anything but a regular file here.
            let Ok(meta) = fs::metadata(entry.path()) else { continue };
            if !meta.is_file() {
                continue;
            }
            present.insert(name, meta);
        }
        let before = self.files.len();
        self.files.retain(|name, _| present.contains_key(name));
        self.dirty |= self.files.len() != before;
        for (name, meta) in present {
            if self.files.get(&name).is_some_and(|e| e.matches(&meta)) {
                continue;
            }
            let print = fs::read(dir.join(&name)).ok().and_then(|bytes| parse(&bytes).ok()).map(|f| Fingerprint::of(&f));
            let entry = Entry { ino: meta.ino(), size: meta.size(), mtime_ns: mtime_ns(&meta), print };
            self.files.insert(name, entry);
            self.dirty = true;
        }
        Ok(())
    }

    /// Files other than `name` whose content might conflict with `print`.
    pub(crate) fn candidates(&self, name: &str, print: &Fingerprint) -> Vec<String> {
        self.files
            .iter()
            .filter(|(other, entry)| {
                other.as_str() != name && entry.print.as_ref().is_some_and(|p| print.may_conflict(p))
            })
            .map(|(other, _)| other.clone())
            .collect()
    }

    /// Records a file just published.
    pub(crate) fn record(&mut self, dir: &Path, name: &str, print: Fingerprint) {
        if let Ok(meta) = fs::metadata(dir.join(name)) {
            let entry = Entry { ino: meta.ino(), size: meta.size(), mtime_ns: mtime_ns(&meta), print: Some(print) };
            self.files.insert(name.to_owned(), entry);
            self.dirty = true;
        }
    }

    /// Writes the cache back if it changed. It is only a cache: a failure
    /// here costs the next writer some parsing, nothing else.
    pub(crate) fn save(&self, state: &Path, mode: u32) {
        if !self.dirty {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(self) {
            let options = WriteOptions { mode, fsync: false };
            let _ = write_atomic(state, INDEX_FILE, &bytes, options, || Ok(()));
        }
    }
}
