//! The one recipe by which promdrop publishes a file: write a temp file on
//! the same filesystem (in the store's `.promdrop/tmp`, so that writing it
//! changes nothing node_exporter or the index sees, and its name never ends
//! in `.prom`), set its mode, fsync it, run the caller's last check, rename
//! it over the target, fsync the directory. On any error before the rename
//! the temp file is removed, so a crash at any point leaves the old file or
//! the new one, never a torn one.
//!
//! The file a rename replaces, or an unlink removes, is held open across it
//! and closed after it: in a server later, on a thread of its own; in a
//! one-shot process at once, or on a thread of its own when it is large. On
//! ext4 the last close frees the file's blocks, and with the `discard` mount
//! option on a filesystem without a journal it waits for the device to
//! discard them: about 0.15 ms per replaced file of a few kilobytes on the
//! machine of BENCHMARKS.md, which the rename, and the directory lock held
//! across it, then no longer pay.
//!
//! A temp file to be fsynced is sent to disk as it is written (see
//! [`Writeback`]), so that the fsync of a large one waits for little.

use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use super::{StoreError, files};

/// Temp files start with this; `expire` sweeps old ones.
pub(crate) const TEMP_PREFIX: &str = ".promdrop-tmp-";

/// Durability knobs of a write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteOptions {
    /// Permission bits of the published file, applied with fchmod, so the
    /// umask does not narrow them.
    pub mode: u32,
    /// fsync the file before the rename and the directory after it.
    pub fsync: bool,
    /// Close the replaced file on the closer thread: for a server, where
    /// that overlaps its other requests. A one-shot process closes a large
    /// one on a thread of its own ([`CLOSE_ALONE_FROM`]), and a small one
    /// at once.
    pub close_later: bool,
}

/// The file a write publishes: `dir/name`.
pub(crate) struct Target<'a> {
    pub dir: &'a Path,
    pub name: &'a str,
    /// The file there now, if the caller already opened it (with [`hold`]);
    /// else it is opened here.
    pub held: Option<File>,
}

/// Publishes what `write` writes as the target, with a temp file in
/// `temp_dir`.
///
/// `before_rename` runs after the temp file is complete and synced, just
/// before it replaces the target; an error from it aborts the write and
/// leaves the target untouched. What it returns (a lock guard, say) is held
/// across the rename and handed to `after_rename`, with the published file's
/// metadata (taken before the rename, which changes none of its inode
/// number, size and mtime). `after_rename` runs before the directory is
/// synced: a directory lock is then not held across that sync,
/// and concurrent writers share one journal commit. The journal commits
/// renames in order, so a crash still leaves a prefix of them.
pub(crate) fn write_atomic<T>(
    target: Target<'_>,
    temp_dir: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    options: WriteOptions,
    before_rename: impl FnOnce() -> Result<T, StoreError>,
    after_rename: impl FnOnce(T, &fs::Metadata),
) -> Result<(), StoreError> {
    let Target { dir, name, held } = target;
    let io = |op: &'static str| move |source| StoreError::io(op, dir.join(name), source);
    let stem = name.strip_suffix(".prom").unwrap_or(name);
    let temp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{stem}."))
        .rand_bytes(8)
        .tempfile_in(temp_dir)
        .map_err(io("create a temp file for"))?;
    // Held until the temp file is renamed in or removed: `expire` removes
    // only temp files nobody holds, those of writers that died.
    let _ = fs2::FileExt::try_lock_exclusive(temp.as_file());
    write(&mut Writeback::new(temp.as_file(), options.fsync)).map_err(io("write"))?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(options.mode))
        .map_err(io("set the mode of"))?;
    if options.fsync {
        // fdatasync: the data and the size, which is all a rename needs.
        temp.as_file().sync_data().map_err(io("fsync"))?;
    }
    let target = dir.join(name);
    // Opened before the caller's last check, which may hold a directory
    // lock: the caller's group lock keeps other writers from replacing it
    // meanwhile.
    let replaced = held.or_else(|| hold(&target));
    let written = temp.as_file().metadata().map_err(io("stat"))?;
    let held = before_rename()?;
    temp.persist(&target)
        .map_err(|e| io("rename into place")(e.error))?;
    after_rename(held, &written);
    release(replaced, options.close_later);
    if options.fsync {
        sync_dir(dir).map_err(io("fsync the directory after writing"))?;
    }
    Ok(())
}

/// The temp file as the caller writes it. When it is to be fsynced, the
/// writeback of every [`WRITEBACK_EVERY`] bytes is started as soon as they
/// are written (`sync_file_range`), so that the disk writes the start of a
/// large file while the rest is rendered, and the fsync waits only for the
/// end of it.
struct Writeback<'a> {
    file: &'a File,
    written: u64,
    started: u64,
    start_early: bool,
}

/// See [`Writeback`]: a cron job's group of a few kilobytes never reaches it.
const WRITEBACK_EVERY: u64 = 1 << 20;

impl<'a> Writeback<'a> {
    fn new(file: &'a File, start_early: bool) -> Self {
        Self {
            file,
            written: 0,
            started: 0,
            start_early,
        }
    }
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.written += n as u64;
        if self.start_early && self.written - self.started >= WRITEBACK_EVERY {
            start_writeback(self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts writing `len` bytes of `file` from `offset` to disk, without
/// waiting for it. Only a head start: the fsync that follows is what makes
/// the file durable, so a failure here is ignored.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and
    // the call reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// Opens `path` to hold it across a rename over it or its removal, so that
/// its last close comes later, in [`release`]. `None` when it is missing,
/// not a regular file, or a symlink (not followed): the rename or unlink
/// then frees it, as it would anyway.
fn hold(path: &Path) -> Option<File> {
    try_hold(path).ok()
}

/// [`hold`], with the reason when the file is not held.
pub(crate) fn try_hold(path: &Path) -> std::io::Result<File> {
    files::open_state_file(path, false, None)
}

/// A one-shot process closes a replaced or removed file at least this large
/// on a thread of its own, started right after the rename or unlink, so
/// that freeing its blocks (about 4 ms for 8.8 MB on the machine of
/// BENCHMARKS.md) overlaps the rest of the write and the process's exit.
/// The thread is not joined: an exit waits for a close under way, and closes
/// the file itself if the thread never ran. Below this size, a thread costs
/// more than it saves.
const CLOSE_ALONE_FROM: u64 = 1 << 20;

/// Closes a file held by [`hold`], now that it is replaced or removed: on
/// the closer thread when `close_later` (a server), else on a thread of its
/// own when it is large, else here.
fn release(held: Option<File>, close_later: bool) {
    let Some(file) = held else { return };
    if close_later {
        close_in_background(file);
    } else if file.metadata().is_ok_and(|m| m.len() >= CLOSE_ALONE_FROM) {
        // When no thread can be had, the file is closed here, as it is dropped.
        let _ = std::thread::Builder::new().spawn(move || drop(file));
    }
}

/// Closes a held file on the closer thread, where freeing it overlaps the
/// server's other requests. The thread is woken once for a batch: when a
/// file arrives in an empty queue, it waits [`CLOSE_BATCH`] for more, then
/// closes them all, so a busy server does not pay a thread wake-up per
/// write. A writer that finds the queue full closes its file itself.
fn close_in_background(file: File) {
    static CLOSER: OnceLock<Option<Closer>> = OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        std::thread::Builder::new()
            .name("promdrop-closer".into())
            .spawn(|| {
                let closer = CLOSER.wait().as_ref().expect("started with the closer");
                loop {
                    closer.take_batch();
                }
            })
            .ok()
            .map(|_| Closer::default())
    });
    match closer {
        Some(closer) => closer.hand_over(file),
        None => drop(file),
    }
}

/// How long the closer thread waits, once woken, for more files to close.
const CLOSE_BATCH: std::time::Duration = std::time::Duration::from_millis(5);
/// The most files the closer's queue holds (each an open descriptor).
const CLOSE_QUEUE: usize = 64;

/// The closer thread's queue.
#[derive(Default)]
struct Closer {
    queue: Mutex<Vec<File>>,
    arrived: Condvar,
}

impl Closer {
    fn hand_over(&self, file: File) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= CLOSE_QUEUE {
            drop(queue);
            drop(file);
            return;
        }
        queue.push(file);
        if queue.len() == 1 {
            self.arrived.notify_one();
        }
    }

    /// Waits for a file, then for [`CLOSE_BATCH`], and closes what came.
    fn take_batch(&self) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = self
            .arrived
            .wait_while(queue, |queue| queue.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        drop(queue);
        std::thread::sleep(CLOSE_BATCH);
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        drop(batch);
    }
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `dir/name` and makes that durable (`fsync`), closing it as a
/// write closes the file it replaces (`close_later`; `held` as in
/// [`write_atomic`]); a missing file is no error.
pub(crate) fn remove(
    dir: &Path,
    name: &str,
    held: Option<File>,
    fsync: bool,
    close_later: bool,
) -> Result<bool, StoreError> {
    let path = dir.join(name);
    let removed = held.or_else(|| hold(&path));
    match fs::remove_file(&path) {
        Ok(()) => {
            release(removed, close_later);
            if fsync {
                sync_dir(dir).map_err(|source| {
                    StoreError::io("fsync the directory after removing", path, source)
                })?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StoreError::io("remove", path, source)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_replaced_file_is_held_without_following_a_symlink_or_blocking_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.prom");
        fs::write(&file, "a 1\n").unwrap();
        let held = hold(&file).expect("a regular file is held");
        assert_eq!(
            held.metadata().unwrap().ino(),
            fs::metadata(&file).unwrap().ino()
        );

        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(hold(&link).is_none(), "a symlink is not followed");
        assert!(hold(&dir.path().join("missing.prom")).is_none());

        // Opening a FIFO for reading without O_NONBLOCK waits for a writer.
        let fifo = dir.path().join("fifo.prom");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(hold(&fifo).is_none());
    }

    /// Publishes `text` as `dir/g.prom` the way a server does (the replaced
    /// file closed later), with temp files in `temp`.
    fn publish(dir: &Path, temp: &Path, text: &str, fsync: bool) {
        publish_from(dir, temp, text, fsync, true);
    }

    fn publish_from(dir: &Path, temp: &Path, text: &str, fsync: bool, close_later: bool) {
        let options = WriteOptions {
            mode: 0o644,
            fsync,
            close_later,
        };
        let write = |f: &mut dyn Write| f.write_all(text.as_bytes());
        let target = Target {
            dir,
            name: "g.prom",
            held: None,
        };
        write_atomic(target, temp, write, options, || Ok(()), |(), _| {}).unwrap();
    }

    /// Waits up to 2 s for this process to close every replaced or removed
    /// file under `dir`.
    fn wait_until_released(dir: &Path) {
        let start = std::time::Instant::now();
        while held_gone(dir) > 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "replaced files still held"
            );
            std::thread::sleep(CLOSE_BATCH);
        }
    }

    #[test]
    fn the_replaced_file_keeps_its_content_for_whoever_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        publish(dir.path(), temp.path(), "a 1\n", true);
        let reader = File::open(dir.path().join("g.prom")).unwrap();
        publish(dir.path(), temp.path(), "a 2\n", true);
        remove(dir.path(), "g.prom", None, true, true).unwrap();
        assert_eq!(std::io::read_to_string(reader).unwrap(), "a 1\n");
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
        assert!(fs::read_dir(temp.path()).unwrap().next().is_none());
    }

    /// How many files under `dir` this process holds open after they were
    /// replaced or removed.
    fn held_gone(dir: &Path) -> usize {
        let prefix = dir.to_string_lossy().into_owned();
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
            .map(|target| target.to_string_lossy().into_owned())
            .filter(|target| target.starts_with(&prefix) && target.ends_with(" (deleted)"))
            .count()
    }

    #[test]
    fn replaced_files_are_closed_soon() {
        let dir = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        for i in 0..300 {
            publish(dir.path(), temp.path(), &format!("a {i}\n"), false);
        }
        wait_until_released(dir.path());
    }

    #[test]
    fn a_one_shot_process_closes_a_large_replaced_file_on_a_thread_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let large = "a 1\n".repeat(usize::try_from(CLOSE_ALONE_FROM).unwrap() / 4 + 1);
        for text in [large.as_str(), large.as_str(), "a 2\n", "a 3\n"] {
            publish_from(dir.path(), temp.path(), text, false, false);
        }
        assert_eq!(
            fs::read_to_string(dir.path().join("g.prom")).unwrap(),
            "a 3\n"
        );
        wait_until_released(dir.path());
    }

    #[test]
    fn writeback_starts_for_every_megabyte_written_when_the_file_is_to_be_synced() {
        let chunk = vec![b'x'; 64 << 10];
        for start_early in [true, false] {
            let file = tempfile::tempfile().unwrap();
            let mut out = Writeback::new(&file, start_early);
            for _ in 0..40 {
                out.write_all(&chunk).unwrap();
            }
            let written = 40 * chunk.len() as u64;
            assert_eq!(out.written, written);
            let expected = if start_early {
                written / WRITEBACK_EVERY * WRITEBACK_EVERY
            } else {
                0
            };
            assert_eq!(out.started, expected, "start_early: {start_early}");
            assert_eq!(file.metadata().unwrap().len(), written);
        }
    }

    #[test]
    fn the_closers_queue_holds_at_most_its_length_and_a_batch_takes_all() {
        let closer = Closer::default();
        for _ in 0..CLOSE_QUEUE + 10 {
            closer.hand_over(File::open("/dev/null").unwrap());
        }
        assert_eq!(closer.queue.lock().unwrap().len(), CLOSE_QUEUE);
        closer.take_batch();
        assert!(closer.queue.lock().unwrap().is_empty());
    }
}
