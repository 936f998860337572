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
//!
//! A one-shot push reads the families of other files straight from the
//! loaded bytes, and writes back the bytes of every entry it did not
//! change: decoding 1,000 fingerprints into owned values cost more than
//! everything else the check does.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::exposition::MetricType;
use crate::exposition::parse::parse;
use crate::exposition::validate::{FamilyPrint, Fingerprint, family_conflicts};

use super::files::{entry_metadata, open_state_file, read_regular};
use super::postings::Postings;
use super::{StoreError, is_prom_name};

const INDEX_FILE: &str = "index";
const MAGIC: &[u8; 8] = b"PDINDEX4";
/// The largest index file read: far more than a million groups need.
const MAX_INDEX: u64 = 1 << 30;

#[derive(Debug, Default)]
pub(crate) struct Index {
    files: BTreeMap<String, Entry>,
    /// The index file as this index last read or wrote it, which
    /// [`Print::Stored`] entries point into.
    stored: Vec<u8>,
    /// Whether the file holds exactly [`Index::stored`], so that a save
    /// need write only what differs.
    in_sync: bool,
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
    print: Print,
}

/// What a file holds, as far as conflicts go.
#[derive(Debug, Clone)]
enum Print {
    /// The file does not parse, so node_exporter drops it and it can
    /// conflict with nothing. (A file that cannot be read gets no entry.)
    Unparsable,
    /// The families as encoded at this range of [`Index::stored`]: checked
    /// when loaded, not decoded.
    Stored(Range<usize>),
    Decoded(Fingerprint),
}

impl Print {
    fn decoded(&self) -> Option<&Fingerprint> {
        match self {
            Self::Decoded(print) => Some(print),
            _ => None,
        }
    }
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
            print: print.map_or(Print::Unparsable, Print::Decoded),
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
        let stored = read_regular(&state.join(INDEX_FILE), MAX_INDEX).unwrap_or_default();
        let Some(mut files) = decode(&stored) else {
            return Self {
                postings: inverted.then(Postings::default),
                ..Self::default()
            };
        };
        let postings = inverted.then(|| {
            // The postings need every fingerprint decoded, and a long-lived
            // store loads once.
            let mut postings = Postings::default();
            for (name, entry) in &mut files {
                if let Print::Stored(range) = &entry.print {
                    entry.print = Print::Decoded(Fingerprint {
                        families: stored_families(&stored[range.clone()])
                            .map(|f| f.to_print())
                            .collect(),
                    });
                }
                if let Some(print) = entry.print.decoded() {
                    postings.add(name, print);
                }
            }
            postings
        });
        Self {
            files,
            stored,
            in_sync: true,
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
            let old = self.files.get(&name).and_then(|e| e.print.decoded());
            let new = entry.print.decoded();
            // A group pushed again with the same families and series, as
            // cron jobs do, leaves the postings as they are.
            if old != new {
                if let Some(print) = old {
                    postings.remove(&name, print);
                }
                if let Some(print) = new {
                    postings.add(&name, print);
                }
            }
        }
        self.files.insert(name, entry);
        self.dirty = true;
    }

    /// Forgets file `name`.
    fn forget(&mut self, name: &str) {
        if let Some(entry) = self.files.remove(name) {
            if let (Some(postings), Some(print)) = (&mut self.postings, entry.print.decoded()) {
                postings.remove(name, print);
            }
            self.dirty = true;
        }
    }

    /// Brings the cache up to date with the directory: drops vanished files
    /// and fingerprints new or changed ones.
    pub(crate) fn refresh(&mut self, dir: &Path, max_file_size: u64) -> Result<(), StoreError> {
        let listing = fs::read_dir(dir).map_err(|source| StoreError::io("list", dir, source))?;
        let mut listed = Vec::with_capacity(self.files.len());
        let mut changed = Vec::new();
        for entry in listing.flatten() {
            let Some(name) = entry
                .file_name()
                .into_string()
                .ok()
                .filter(|n| is_prom_name(n))
            else {
                continue;
            };
            // A FIFO would hang a reader, so never open anything but a
            // regular file here.
            let Ok(meta) = entry_metadata(&entry).filter_file() else {
                continue;
            };
            if !self.files.get(&name).is_some_and(|e| e.matches(&meta)) {
                changed.push((name.clone(), meta));
            }
            listed.push(name);
        }
        let new = changed
            .iter()
            .filter(|(name, _)| !self.files.contains_key(name));
        if listed.len() - new.count() < self.files.len() {
            listed.sort_unstable();
            let vanished: Vec<String> = self
                .files
                .keys()
                .filter(|name| listed.binary_search(name).is_err())
                .cloned()
                .collect();
            for name in vanished {
                self.forget(&name);
            }
        }
        for (name, meta) in changed {
            self.reread(dir, name, &meta, max_file_size);
        }
        Ok(())
    }

    /// Brings the entries of these names up to date, and only those: the
    /// files a watch saw change.
    pub(crate) fn refresh_names(
        &mut self,
        dir: &Path,
        names: impl IntoIterator<Item = OsString>,
        max_file_size: u64,
    ) {
        for name in names.into_iter().filter_map(|n| n.into_string().ok()) {
            if !is_prom_name(&name) {
                continue;
            }
            match fs::metadata(dir.join(&name)).filter_file() {
                Ok(meta) if self.files.get(&name).is_some_and(|e| e.matches(&meta)) => {}
                Ok(meta) => self.reread(dir, name, &meta, max_file_size),
                Err(_) => self.forget(&name),
            }
        }
    }

    /// Fingerprints file `name` afresh. One that does not parse can conflict
    /// with nothing; one that cannot be read now (for its mode, say) gets no
    /// entry, so that it is tried again next time.
    fn reread(&mut self, dir: &Path, name: String, meta: &fs::Metadata, max_file_size: u64) {
        match read_regular(&dir.join(&name), max_file_size) {
            Ok(bytes) => {
                let print = parse(&bytes).ok().map(|f| Fingerprint::of(&f));
                self.put(name, Entry::new(meta, print));
            }
            Err(_) => self.forget(&name),
        }
    }

    /// Files other than `name` whose content might conflict with `print`:
    /// looked up in the [`Postings`] when this index keeps them, else found
    /// by scanning every file's families.
    pub(crate) fn candidates(&self, name: &str, print: &Fingerprint) -> Vec<String> {
        if let Some(postings) = &self.postings {
            return postings.candidates(name, print);
        }
        let mut others = self
            .files
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .peekable();
        if others.peek().is_none() {
            // Alone in the directory: spare the names of a large push.
            return Vec::new();
        }
        let related = print.related_names();
        let conflicts = |entry: &Entry| match &entry.print {
            Print::Unparsable => false,
            Print::Stored(range) => stored_families(&self.stored[range.clone()])
                .any(|f| family_conflicts(&related, f.name, f.kind, f.help, f.ids())),
            Print::Decoded(theirs) => theirs.hits(&related),
        };
        others
            .filter(|(_, entry)| conflicts(entry))
            .map(|(other, _)| other.clone())
            .collect()
    }

    /// Records a file just published, with its metadata.
    pub(crate) fn record(&mut self, name: &str, meta: &fs::Metadata, print: Fingerprint) {
        self.put(name.to_owned(), Entry::new(meta, Some(print)));
    }

    /// Writes the cache back if it changed, in place: it is read and written
    /// only under the directory lock, and a torn or missing cache is simply
    /// rebuilt. A failure here costs the next writer some parsing, nothing
    /// else.
    ///
    /// Only the bytes that differ from what the file holds are written:
    /// most pushes change one entry's file identity, and the checksum.
    /// Overwritten rather than truncated: ext4 flushes a file truncated to
    /// zero when it is closed, which would cost every push a disk write. The
    /// checksum trailer catches a write torn by a crash.
    pub(crate) fn save(&mut self, state: &Path, mode: u32) {
        if !self.dirty {
            return;
        }
        let bytes = encode(&mut self.files, &self.stored);
        let old = std::mem::replace(&mut self.stored, bytes);
        let new = &self.stored;
        let write = || -> std::io::Result<()> {
            let file = open_state_file(&state.join(INDEX_FILE), true, Some(mode))?;
            if file.metadata()?.permissions().mode() & 0o777 != mode {
                // Shared with every writer, whatever this one's umask.
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            let old: &[u8] = if self.in_sync { &old } else { &[] };
            for span in changed_spans(old, new) {
                if !span.is_empty() {
                    file.write_all_at(&new[span.clone()], span.start as u64)?;
                }
            }
            if old.len() != new.len() {
                file.set_len(new.len() as u64)?;
            }
            Ok(())
        };
        self.in_sync = write().is_ok();
        self.dirty = !self.in_sync;
    }
}

/// The ranges of `new` to write over a file holding `old` to make it hold
/// `new` (either may be empty): the span between the first and the last
/// byte that differ, and the checksum trailer apart, or everything from the
/// first difference on when the length changed.
fn changed_spans(old: &[u8], new: &[u8]) -> [Range<usize>; 2] {
    let from = common_prefix(old, new);
    let end = new.len();
    if old.len() != end || from == end {
        return [from..end, end..end];
    }
    let body = end.saturating_sub(8);
    let to = body - common_suffix(&old[..body], &new[..body]);
    [from..to.max(from), body.max(from)..end]
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

    /// This stamp with the directory taken as changed since: an index kept
    /// with it is listed again before it is used, and only what was read
    /// from the index file is reused.
    pub(crate) fn index_file_only(self) -> Self {
        Self { dir: None, ..self }
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

/// The index file's checksum. Every 8-byte word goes through a step that
/// changes the state for any change of the word (xor, rotate and a
/// multiplication by an odd constant, as in `FxHash`), over four lanes
/// that the CPU runs side by side: a whole index is checked on every push.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |state: u64, word: &[u8]| {
        let mut padded = [0; 8];
        padded[..word.len()].copy_from_slice(word);
        (state.rotate_left(5) ^ u64::from_le_bytes(padded)).wrapping_mul(K)
    };
    let mut blocks = bytes.chunks_exact(32);
    let mut lanes = [1, 2, 3, 4];
    for block in blocks.by_ref() {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = step(*lane, word);
        }
    }
    let mut state = lanes
        .iter()
        .fold(0, |state, lane| step(state, &lane.to_le_bytes()));
    for word in blocks.remainder().chunks(8) {
        state = step(state, word);
    }
    step(state, &(bytes.len() as u64).to_le_bytes())
}

/// How many bytes [`common_prefix`] and [`common_suffix`] compare at once.
const BLOCK: usize = 512;

/// How many bytes `a` and `b` have in common at their start: compared a
/// block at a time (a `memcmp`), then byte by byte.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let blocks = a
        .chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .take_while(|(x, y)| x == y)
        .count();
    let same = (blocks * BLOCK).min(a.len().min(b.len()));
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// How many bytes `a` and `b` have in common at their end.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let blocks = a
        .rchunks(BLOCK)
        .zip(b.rchunks(BLOCK))
        .take_while(|(x, y)| x == y)
        .count();
    let same = (blocks * BLOCK).min(a.len().min(b.len()));
    let (a, b) = (&a[..a.len() - same], &b[..b.len() - same]);
    same + a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Encodes the entries; those still [`Print::Stored`] are copied from
/// `stored`, the index file they were loaded from, and then point into the
/// encoding.
fn encode(files: &mut BTreeMap<String, Entry>, stored: &[u8]) -> Vec<u8> {
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
        let families = match &mut entry.print {
            Print::Stored(range) => {
                let start = out.len();
                out.extend_from_slice(&stored[range.clone()]);
                *range = start..out.len();
                continue;
            }
            // u64::MAX: no fingerprint (the file does not parse).
            Print::Unparsable => {
                put_u64(&mut out, u64::MAX);
                continue;
            }
            Print::Decoded(print) => &print.families,
        };
        put_u64(&mut out, families.len() as u64);
        for family in families {
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
    let sum = checksum(&out);
    put_u64(&mut out, sum);
    out
}

/// Reads what [`encode`] wrote, checking every entry but decoding only
/// names and file identities: each entry's families stay where they are,
/// [`Print::Stored`]. `None` on anything unexpected.
fn decode(bytes: &[u8]) -> Option<BTreeMap<String, Entry>> {
    let (body, sum) = bytes.split_last_chunk::<8>()?;
    if checksum(body) != u64::from_le_bytes(*sum) {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC)?);
    let mut files = BTreeMap::new();
    for _ in 0..r.u64()? {
        let name = r.str()?.to_owned();
        let (ino, size, mtime_ns) = (r.u64()?, r.u64()?, r.u64()?.cast_signed());
        let start = body.len() - r.0.len();
        let count = r.u64()?;
        let print = if count == u64::MAX {
            Print::Unparsable
        } else {
            for _ in 0..count {
                next_family(&mut r)?;
            }
            Print::Stored(start..body.len() - r.0.len())
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

/// One family as encoded, borrowed from the index file.
struct StoredFamily<'a> {
    name: &'a str,
    kind: MetricType,
    help: Option<&'a str>,
    /// The sorted series ids, eight little-endian bytes each.
    ids: &'a [u8],
}

impl StoredFamily<'_> {
    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.ids
            .chunks_exact(8)
            .map(|id| u64::from_le_bytes(id.try_into().expect("eight bytes")))
    }

    fn to_print(&self) -> FamilyPrint {
        FamilyPrint {
            name: self.name.to_owned(),
            kind: self.kind,
            help: self.help.map(str::to_owned),
            ids: self.ids().collect(),
        }
    }
}

/// The families of a [`Print::Stored`] range, which [`decode`] checked.
fn stored_families(bytes: &[u8]) -> impl Iterator<Item = StoredFamily<'_>> {
    let mut r = Reader(bytes);
    let count = r.u64().unwrap_or(0);
    (0..count).map_while(move |_| next_family(&mut r))
}

fn next_family<'a>(r: &mut Reader<'a>) -> Option<StoredFamily<'a>> {
    let name = r.str()?;
    let kind = MetricType::from_name(r.str()?)?;
    let help = match r.byte()? {
        0 => None,
        1 => Some(r.str()?),
        _ => return None,
    };
    let len = usize::try_from(r.u64()?).ok()?.checked_mul(8)?;
    let ids = r.take(len)?;
    Some(StoredFamily {
        name,
        kind,
        help,
        ids,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
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

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.u64()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{
        Entry, Index, Print, changed_spans, checksum, common_prefix, common_suffix, decode, encode,
        stored_families,
    };
    use crate::exposition::parse::parse;
    use crate::exposition::validate::Fingerprint;

    fn print(text: &str) -> Fingerprint {
        Fingerprint::of(&parse(text.as_bytes()).unwrap())
    }

    fn entry(ino: u64, print: Option<Fingerprint>) -> Entry {
        Entry {
            ino,
            size: 9,
            mtime_ns: -3,
            print: print.map_or(Print::Unparsable, Print::Decoded),
        }
    }

    /// An index as a later process loads it.
    fn reloaded(files: &BTreeMap<String, Entry>) -> Index {
        let stored = encode(&mut files.clone(), &[]);
        Index {
            files: decode(&stored).unwrap(),
            stored,
            ..Index::default()
        }
    }

    #[test]
    fn the_codec_round_trips_and_refuses_garbage() {
        let a = print("# HELP a A.\n# TYPE a counter\na{x=\"1\"} 1\nb 2\n");
        let mut files = BTreeMap::new();
        files.insert("a.prom".to_owned(), entry(7, Some(a.clone())));
        files.insert("broken.prom".to_owned(), entry(1, None));
        let bytes = encode(&mut files.clone(), &[]);
        let mut back = decode(&bytes).unwrap();
        let Print::Stored(range) = &back["a.prom"].print else {
            panic!("not left encoded: {:?}", back["a.prom"].print);
        };
        let families: Vec<_> = stored_families(&bytes[range.clone()])
            .map(|f| f.to_print())
            .collect();
        assert_eq!(families, a.families);
        assert_eq!((back["a.prom"].ino, back["a.prom"].mtime_ns), (7, -3));
        assert!(matches!(back["broken.prom"].print, Print::Unparsable));
        // Entries left encoded are written back as they were read.
        assert_eq!(encode(&mut back, &bytes), bytes);
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
        let mut torn = encode(&mut older, &[]);
        torn[..bytes.len() / 2].copy_from_slice(&bytes[..bytes.len() / 2]);
        assert!(decode(&torn).is_none(), "a torn cache was accepted");
    }

    #[test]
    fn families_left_encoded_are_checked_as_decoded_ones_are() {
        let others = [
            ("counter.prom", "# TYPE m counter\nm{a=\"1\"} 1\n"),
            (
                "help.prom",
                "# HELP m Other.\n# TYPE m gauge\nm{a=\"2\"} 1\n",
            ),
            ("series.prom", "# HELP m M.\n# TYPE m gauge\nm{a=\"3\"} 1\n"),
            ("relative.prom", "m_count 1\n"),
            (
                "fine.prom",
                "# HELP m M.\n# TYPE m gauge\nm{a=\"4\"} 1\nn 2\n",
            ),
        ];
        let files: BTreeMap<String, Entry> = others
            .iter()
            .enumerate()
            .map(|(i, (name, text))| ((*name).to_owned(), entry(i as u64, Some(print(text)))))
            .collect();
        let push = print("# HELP m M.\n# TYPE m gauge\nm{a=\"3\"} 1\nm{a=\"5\"} 1\n");
        let loaded = reloaded(&files);
        assert!(
            loaded
                .files
                .values()
                .all(|e| matches!(e.print, Print::Stored(_)))
        );
        let decoded = Index {
            files,
            ..Index::default()
        };
        let expected = ["counter.prom", "help.prom", "relative.prom", "series.prom"];
        assert_eq!(loaded.candidates("mine.prom", &push), expected);
        assert_eq!(decoded.candidates("mine.prom", &push), expected);
        assert_eq!(loaded.candidates("series.prom", &push), expected[..3]);
    }

    #[test]
    fn a_save_writes_what_changed_and_the_file_then_holds_the_new_index() {
        let state = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        for (i, name) in ["a.prom", "b.prom", "c.prom"].into_iter().enumerate() {
            let text = format!("# TYPE {} gauge\n{} 1\n", &name[..1], &name[..1]);
            files.insert(name.to_owned(), entry(i as u64, Some(print(&text))));
        }
        let mut index = Index {
            files,
            dirty: true,
            ..Index::default()
        };
        index.save(state.path(), 0o644);
        let mut index = Index::load(state.path(), false);
        let mut expected: Vec<(String, u64)> = vec![];
        // The same length with one identity changed; a new entry (longer);
        // an entry gone (shorter).
        let changes: [&dyn Fn(&mut Index); 3] = [
            &|index| index.files.get_mut("b.prom").unwrap().ino = 99,
            &|index| {
                let print = print("# TYPE bb_total counter\nbb_total 1\n");
                index.put("bb.prom".to_owned(), entry(5, Some(print)));
            },
            &|index| index.forget("a.prom"),
        ];
        for change in changes {
            change(&mut index);
            index.dirty = true;
            index.save(state.path(), 0o644);
            let files = &Index::load(state.path(), false).files;
            let got: Vec<(String, u64)> = files.iter().map(|(n, e)| (n.clone(), e.ino)).collect();
            expected = index
                .files
                .iter()
                .map(|(n, e)| (n.clone(), e.ino))
                .collect();
            assert_eq!(got, expected);
            index = Index::load(state.path(), false);
        }
        assert_eq!(
            expected,
            [
                ("b.prom".into(), 99),
                ("bb.prom".into(), 5),
                ("c.prom".into(), 2)
            ]
        );
    }

    #[test]
    fn a_refresh_follows_files_added_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let families = |index: &Index| -> Vec<(String, Vec<String>)> {
            let names = |print: &Print| match print {
                Print::Decoded(p) => p.families.iter().map(|f| f.name.clone()).collect(),
                other => panic!("not decoded: {other:?}"),
            };
            index
                .files
                .iter()
                .map(|(n, e)| (n.clone(), names(&e.print)))
                .collect()
        };
        write("a.prom", "a 1\n");
        write("b.prom", "b 1\n");
        write("notes.txt", "c 1\n");
        let mut index = Index::default();
        index.refresh(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            families(&index),
            [
                ("a.prom".into(), vec!["a".into()]),
                ("b.prom".into(), vec!["b".into()])
            ]
        );
        std::fs::remove_file(dir.path().join("a.prom")).unwrap();
        std::fs::remove_file(dir.path().join("b.prom")).unwrap();
        std::fs::create_dir(dir.path().join("b.prom")).unwrap();
        write("c.prom", "c 1\nc2 2\n");
        index.refresh(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            families(&index),
            [("c.prom".into(), vec!["c".into(), "c2".into()])]
        );
        write("c.prom", "d 1\n");
        index.refresh(dir.path(), 1 << 20).unwrap();
        assert_eq!(families(&index), [("c.prom".into(), vec!["d".into()])]);
        // A file that cannot be read is looked at again, though unchanged.
        write("f.prom", "f 1\nf2 2\n");
        index.refresh(dir.path(), 5).unwrap();
        assert_eq!(families(&index), [("c.prom".into(), vec!["d".into()])]);
        index.refresh(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            families(&index),
            [
                ("c.prom".into(), vec!["d".into()]),
                ("f.prom".into(), vec!["f".into(), "f2".into()])
            ]
        );
        // Only the names given, as a watch reports them.
        write("c.prom", "e 1\n");
        write("f.prom", "f 1\n");
        index.refresh_names(dir.path(), ["c.prom".into(), "notes.txt".into()], 1 << 20);
        assert_eq!(
            families(&index),
            [
                ("c.prom".into(), vec!["e".into()]),
                ("f.prom".into(), vec!["f".into(), "f2".into()])
            ]
        );
        std::fs::remove_file(dir.path().join("c.prom")).unwrap();
        index.refresh_names(dir.path(), ["c.prom".into(), "f.prom".into()], 1 << 20);
        assert_eq!(families(&index), [("f.prom".into(), vec!["f".into()])]);
    }

    #[test]
    fn the_checksum_sees_any_one_byte_changed() {
        let bytes: Vec<u8> = (0..101u32).map(|i| (i * 7) as u8).collect();
        let sum = checksum(&bytes);
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x10;
            assert_ne!(checksum(&changed), sum, "a change at byte {at} went unseen");
        }
        assert_ne!(checksum(&bytes[..100]), sum);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_ne!(checksum(&longer), sum);
    }

    #[test]
    fn common_ends_are_found_across_blocks() {
        let a: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        for at in [0, 1, 511, 512, 513, 1024, 1999] {
            let mut b = a.clone();
            b[at] ^= 1;
            assert_eq!(common_prefix(&a, &b), at);
            assert_eq!(common_suffix(&a, &b), a.len() - at - 1);
        }
        assert_eq!(common_prefix(&a, &a), a.len());
        assert_eq!(common_suffix(&a, &a), a.len());
        assert_eq!(common_prefix(&a[..700], &a), 700);
        assert_eq!(common_prefix(&a, &a[..1030]), 1030);
        assert_eq!(common_suffix(&a[1300..], &a), 700);
        assert_eq!(common_prefix(&[], &a), 0);
    }

    #[test]
    fn changed_spans_turn_the_old_bytes_into_the_new() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"0123456789abcdefgh", b"0123456789abcdefgh"),
            (b"0123456789abcdefgh", b"01X3456789abcdefgY"),
            (b"0123456789abcdefgh", b"0123456789abcdefgY"),
            (b"0123456789abcdefgh", b"X123456789abcdefgh"),
            (b"0123456789abcdefgh", b"0123456789abcdefghij"),
            (b"0123456789abcdefgh", b"012345678abcdefgh"),
            (b"", b"0123456789"),
        ];
        for (old, new) in cases {
            let mut file = old.to_vec();
            let spans = changed_spans(old, new);
            for span in &spans {
                if file.len() < span.end {
                    file.resize(span.end, 0);
                }
                file[span.clone()].copy_from_slice(&new[span.clone()]);
            }
            file.truncate(new.len());
            assert_eq!(file, new, "{old:?} -> {new:?} by {spans:?}");
            if old.len() == new.len() {
                let written: usize = spans.iter().map(ExactSizeIterator::len).sum();
                let differing = old.iter().zip(new).filter(|(a, b)| a != b).count();
                assert!(
                    written <= differing.max(1) + 8,
                    "{spans:?} for {old:?} -> {new:?}"
                );
            }
        }
    }
}
