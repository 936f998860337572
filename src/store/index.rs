//! A cache of every `.prom` file's [`Fingerprint`], keyed by file identity
//! (inode, size, mtime), kept in the state directory. With it, checking a
//! push against 1,000 other groups costs a directory listing and 1,000
//! `stat`s instead of 1,000 parses; only files that changed since the last
//! writer looked are parsed again.
//!
//! Read and written only under the directory lock. The format is a small
//! binary one of our own (versioned): reading and writing it is a copy, where
//! JSON cost milliseconds at 1,000 groups. A missing, torn or unknown cache
//! is simply rebuilt.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::exposition::MetricType;
use crate::exposition::parse::parse;
use crate::exposition::validate::{FamilyPrint, Fingerprint, fingerprint_hash};

use super::files::{open_state_file, read_regular};
use super::postings::Postings;
use super::{StoreError, is_prom_name};

const INDEX_FILE: &str = "index";
const MAGIC: &[u8; 8] = b"PDINDEX3";
/// The largest index file read: far more than a million groups need.
const MAX_INDEX: u64 = 1 << 30;

#[derive(Debug, Default)]
pub(crate) struct Index {
    files: BTreeMap<String, Entry>,
    dirty: bool,
    /// The inverted view, kept by a long-lived store only: building it
    /// costs a pass over every series, which a one-shot push need not pay.
    postings: Option<Postings>,
}

#[derive(Debug, Clone)]
struct Entry {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    /// `None` when node_exporter would not read the file (it does not
    /// parse), so it can conflict with nothing.
    print: Option<Fingerprint>,
}

impl Entry {
    fn new(meta: &fs::Metadata, print: Option<Fingerprint>) -> Self {
        let mtime_ns = meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec());
        Self {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns,
            print,
        }
    }

    fn matches(&self, meta: &fs::Metadata) -> bool {
        let fresh = Self::new(meta, None);
        (self.ino, self.size, self.mtime_ns) == (fresh.ino, fresh.size, fresh.mtime_ns)
    }
}

impl Index {
    /// Loads the cache; a missing, unreadable or outdated one starts empty.
    /// With `inverted`, also builds the [`Postings`], which every later
    /// change then keeps current.
    pub(crate) fn load(state: &Path, inverted: bool) -> Self {
        let files: BTreeMap<String, Entry> = read_regular(&state.join(INDEX_FILE), MAX_INDEX)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        let postings = inverted.then(|| {
            let mut postings = Postings::default();
            for (name, entry) in &files {
                if let Some(print) = &entry.print {
                    postings.add(name, print);
                }
            }
            postings
        });
        Self {
            files,
            dirty: false,
            postings,
        }
    }

    /// How many `.prom` files the directory holds.
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the directory holds file `name`.
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// Sets the entry of file `name`.
    fn put(&mut self, name: String, entry: Entry) {
        if let Some(postings) = &mut self.postings {
            if let Some(print) = self.files.get(&name).and_then(|e| e.print.as_ref()) {
                postings.remove(&name, print);
            }
            if let Some(print) = &entry.print {
                postings.add(&name, print);
            }
        }
        self.files.insert(name, entry);
        self.dirty = true;
    }

    /// Forgets file `name`.
    fn forget(&mut self, name: &str) {
        if let Some(entry) = self.files.remove(name) {
            if let (Some(postings), Some(print)) = (&mut self.postings, &entry.print) {
                postings.remove(name, print);
            }
            self.dirty = true;
        }
    }

    /// Brings the cache up to date with the directory: drops vanished files
    /// and fingerprints new or changed ones.
    pub(crate) fn refresh(&mut self, dir: &Path, max_file_size: u64) -> Result<(), StoreError> {
        let listing = fs::read_dir(dir).map_err(|source| StoreError::io("list", dir, source))?;
        let mut present = BTreeMap::new();
        for entry in listing.flatten() {
            let Some(name) = entry
                .file_name()
                .to_str()
                .filter(|n| is_prom_name(n))
                .map(str::to_owned)
            else {
                continue;
            };
            // node_exporter follows symlinks; a FIFO would hang it, so never
            // open anything but a regular file here.
            let meta = match entry.metadata() {
                Ok(meta) if meta.file_type().is_symlink() => fs::metadata(entry.path()),
                other => other,
            };
            if let Ok(meta) = meta.filter_file() {
                present.insert(name, meta);
            }
        }
        let vanished: Vec<String> = self
            .files
            .keys()
            .filter(|name| !present.contains_key(*name))
            .cloned()
            .collect();
        for name in vanished {
            self.forget(&name);
        }
        for (name, meta) in present {
            if self.files.get(&name).is_some_and(|e| e.matches(&meta)) {
                continue;
            }
            let print = read_regular(&dir.join(&name), max_file_size)
                .ok()
                .and_then(|bytes| parse(&bytes).ok())
                .map(|f| Fingerprint::of(&f));
            self.put(name, Entry::new(&meta, print));
        }
        Ok(())
    }

    /// Files other than `name` whose content might conflict with `print`:
    /// looked up in the [`Postings`] when this index keeps them, else found
    /// by scanning every file's families.
    pub(crate) fn candidates(&self, name: &str, print: &Fingerprint) -> Vec<String> {
        if let Some(postings) = &self.postings {
            return postings.candidates(name, print);
        }
        let others = self
            .files
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .filter_map(|(other, entry)| Some((other.as_str(), entry.print.as_ref()?)));
        print.conflicting(others).map(str::to_owned).collect()
    }

    /// Records a file just published.
    pub(crate) fn record(&mut self, dir: &Path, name: &str, print: Fingerprint) {
        if let Ok(meta) = fs::metadata(dir.join(name)) {
            self.put(name.to_owned(), Entry::new(&meta, Some(print)));
        }
    }

    /// Writes the cache back if it changed, in place: it is read and written
    /// only under the directory lock, and a torn or missing cache is simply
    /// rebuilt. A failure here costs the next writer some parsing, nothing
    /// else.
    ///
    /// Overwritten rather than truncated: ext4 flushes a file truncated to
    /// zero when it is closed, which would cost every push a disk write. The
    /// checksum trailer catches a write torn by a crash.
    pub(crate) fn save(&self, state: &Path, mode: u32) {
        if !self.dirty {
            return;
        }
        let bytes = encode(&self.files);
        let write = || -> std::io::Result<()> {
            let file = open_state_file(&state.join(INDEX_FILE), true, Some(mode))?;
            if file.metadata()?.permissions().mode() & 0o777 != mode {
                // Shared with every writer, whatever this one's umask.
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            file.write_all_at(&bytes, 0)?;
            file.set_len(bytes.len() as u64)
        };
        let _ = write();
    }
}

/// What a long-lived [`Store`](super::Store) knew of the directory and of
/// the index file when it last wrote: if neither changed since, its index in
/// memory is current and no file needs listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    dir: Option<(i64, i64)>,
    index_file: Option<(u64, u64, i64, i64)>,
}

impl Stamp {
    pub(crate) fn now(dir: &Path, state: &Path) -> Self {
        let dir = fs::metadata(dir).ok().map(|m| (m.mtime(), m.mtime_nsec()));
        let index_file = fs::metadata(state.join(INDEX_FILE))
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        Self { dir, index_file }
    }

    /// Whether only the directory changed (files written by others), not the
    /// index file (another promdrop process).
    pub(crate) fn same_index_file(&self, other: &Self) -> bool {
        self.index_file == other.index_file
    }
}

trait FilterFile {
    fn filter_file(self) -> std::io::Result<fs::Metadata>;
}

impl FilterFile for std::io::Result<fs::Metadata> {
    fn filter_file(self) -> std::io::Result<fs::Metadata> {
        self.and_then(|m| {
            if m.is_file() {
                Ok(m)
            } else {
                Err(std::io::ErrorKind::InvalidInput.into())
            }
        })
    }
}

fn encode(files: &BTreeMap<String, Entry>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let put_u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    put_u64(&mut out, files.len() as u64);
    for (name, entry) in files {
        put_str(&mut out, name);
        put_u64(&mut out, entry.ino);
        put_u64(&mut out, entry.size);
        out.extend_from_slice(&entry.mtime_ns.to_le_bytes());
        let families = entry.print.as_ref().map(|p| p.families.as_slice());
        // u64::MAX: no fingerprint (the file does not parse).
        put_u64(&mut out, families.map_or(u64::MAX, |f| f.len() as u64));
        for family in families.unwrap_or_default() {
            put_str(&mut out, &family.name);
            put_str(&mut out, family.kind.as_str());
            match &family.help {
                Some(help) => {
                    out.push(1);
                    put_str(&mut out, help);
                }
                None => out.push(0),
            }
            put_u64(&mut out, family.ids.len() as u64);
            for id in &family.ids {
                put_u64(&mut out, *id);
            }
        }
    }
    // A checksum, to tell a write torn by a crash from a whole one.
    let sum = fingerprint_hash(&out);
    put_u64(&mut out, sum);
    out
}

/// Reads what [`encode`] wrote; `None` on anything unexpected.
fn decode(bytes: &[u8]) -> Option<BTreeMap<String, Entry>> {
    let (body, sum) = bytes.split_last_chunk::<8>()?;
    if fingerprint_hash(body) != u64::from_le_bytes(*sum) {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC)?);
    let mut files = BTreeMap::new();
    for _ in 0..r.u64()? {
        let name = r.string()?;
        let (ino, size, mtime_ns) = (r.u64()?, r.u64()?, r.u64()?.cast_signed());
        let count = r.u64()?;
        let print = if count == u64::MAX {
            None
        } else {
            let mut families = Vec::new();
            for _ in 0..count {
                let name = r.string()?;
                let kind = MetricType::from_name(&r.string()?)?;
                let help = if r.byte()? == 1 {
                    Some(r.string()?)
                } else {
                    None
                };
                let n = usize::try_from(r.u64()?)
                    .ok()
                    .filter(|n| n * 8 <= r.0.len())?;
                let ids = (0..n).map(|_| r.u64()).collect::<Option<Vec<_>>>()?;
                families.push(FamilyPrint {
                    name,
                    kind,
                    help,
                    ids,
                });
            }
            Some(Fingerprint { families })
        };
        files.insert(
            name,
            Entry {
                ino,
                size,
                mtime_ns,
                print,
            },
        );
    }
    r.0.is_empty().then_some(files)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u64()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Entry, decode, encode};
    use crate::exposition::parse::parse;
    use crate::exposition::validate::Fingerprint;

    #[test]
    fn the_codec_round_trips_and_refuses_garbage() {
        let families = parse(b"# HELP a A.\n# TYPE a counter\na{x=\"1\"} 1\nb 2\n").unwrap();
        let mut files = BTreeMap::new();
        files.insert(
            "a.prom".to_owned(),
            Entry {
                ino: 7,
                size: 9,
                mtime_ns: -3,
                print: Some(Fingerprint::of(&families)),
            },
        );
        files.insert(
            "broken.prom".to_owned(),
            Entry {
                ino: 1,
                size: 2,
                mtime_ns: 3,
                print: None,
            },
        );
        let bytes = encode(&files);
        let back = decode(&bytes).unwrap();
        assert_eq!(back["a.prom"].print, files["a.prom"].print);
        assert_eq!((back["a.prom"].ino, back["a.prom"].mtime_ns), (7, -3));
        assert!(back["broken.prom"].print.is_none());
        for cut in [0, 8, 20, bytes.len() - 1] {
            assert!(
                decode(&bytes[..cut]).is_none(),
                "a cache cut at {cut} bytes was accepted"
            );
        }
        assert!(decode(b"something else entirely").is_none());
        // An in-place overwrite torn by a crash: the start of a new, shorter
        // index over the rest of an older, longer one.
        let mut older = files.clone();
        older.get_mut("broken.prom").unwrap().size = 5;
        older.insert("zz.prom".to_owned(), older["a.prom"].clone());
        let mut torn = encode(&older);
        torn[..bytes.len() / 2].copy_from_slice(&bytes[..bytes.len() / 2]);
        assert!(decode(&torn).is_none(), "a torn cache was accepted");
    }
}
