//! The one recipe by which promdrop publishes a file: write a temp file on
//! the same filesystem (in the store's `.promdrop/tmp`, so that writing it
//! changes nothing node_exporter or the index sees, and its name never ends
//! in `.prom`), set its mode, fsync it, run the caller's last check, rename
//! it over the target, fsync the directory. On any error before the rename
//! the temp file is removed, so a crash at any point leaves the old file or
//! the new one, never a torn one.
//!
//! In a server, the file a rename replaces, or an unlink removes, is held
//! open across it and closed later on a thread of its own. On ext4 the last
//! close frees the file's blocks, and with the `discard` mount option on a
//! filesystem without a journal it waits for the device to discard them:
//! about 0.15 ms per replaced file on the machine of BENCHMARKS.md, which
//! the rename, and the directory lock held across it, then no longer pay.

use std::fs::{self, File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, sync_channel};

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
    /// that overlaps its other requests. A one-shot process would wait for
    /// it at exit anyway, and pay for the thread.
    pub close_later: bool,
}

/// Publishes what `write` writes as `dir/name`.
///
/// `before_rename` runs after the temp file is complete and synced, just
/// before it replaces the target; an error from it aborts the write and
/// leaves the target untouched. What it returns (a lock guard, say) is held
/// across the rename and handed to `after_rename`, which runs before the
/// directory is synced: a directory lock is then not held across that sync,
/// and concurrent writers share one journal commit. The journal commits
/// renames in order, so a crash still leaves a prefix of them.
pub(crate) fn write_atomic<T>(
    dir: &Path,
    temp_dir: &Path,
    name: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    options: WriteOptions,
    before_rename: impl FnOnce() -> Result<T, StoreError>,
    after_rename: impl FnOnce(T),
) -> Result<(), StoreError> {
    let io = |op: &'static str| move |source| StoreError::io(op, dir.join(name), source);
    let stem = name.strip_suffix(".prom").unwrap_or(name);
    let mut temp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{stem}."))
        .rand_bytes(8)
        .tempfile_in(temp_dir)
        .map_err(io("create a temp file for"))?;
    // Held until the temp file is renamed in or removed: `expire` removes
    // only temp files nobody holds, those of writers that died.
    let _ = fs2::FileExt::try_lock_exclusive(temp.as_file());
    write(temp.as_file_mut()).map_err(io("write"))?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(options.mode))
        .map_err(io("set the mode of"))?;
    if options.fsync {
        // fdatasync: the data and the size, which is all a rename needs.
        temp.as_file().sync_data().map_err(io("fsync"))?;
    }
    let held = before_rename()?;
    let target = dir.join(name);
    let replaced = options.close_later.then(|| hold(&target)).flatten();
    temp.persist(&target)
        .map_err(|e| io("rename into place")(e.error))?;
    after_rename(held);
    close_in_background(replaced);
    if options.fsync {
        sync_dir(dir).map_err(io("fsync the directory after writing"))?;
    }
    Ok(())
}

/// Opens `path` to hold it across a rename over it or its removal, so that
/// its last close comes later, in [`close_in_background`]. `None` when it is
/// missing, not a regular file, or a symlink (not followed): the rename or
/// unlink then frees it, as it would anyway.
fn hold(path: &Path) -> Option<File> {
    files::open_state_file(path, false, None).ok()
}

/// Closes a held file on the closer thread, where freeing it overlaps the
/// server's other requests. The queue is short: a writer waits when the
/// thread falls behind.
fn close_in_background(held: Option<File>) {
    static CLOSER: OnceLock<Option<SyncSender<File>>> = OnceLock::new();
    let Some(file) = held else { return };
    let closer = CLOSER.get_or_init(|| {
        let (sender, files) = sync_channel::<File>(64);
        std::thread::Builder::new()
            .name("promdrop-closer".into())
            .spawn(move || files.into_iter().for_each(drop))
            .ok()
            .map(|_| sender)
    });
    if let Some(sender) = closer {
        // Fails only once the thread is gone, and then drops the file here.
        let _ = sender.send(file);
    }
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `dir/name` and makes that durable (`fsync`), closing it on the
/// closer thread (`close_later`, as for a write); a missing file is no error.
pub(crate) fn remove(
    dir: &Path,
    name: &str,
    fsync: bool,
    close_later: bool,
) -> Result<bool, StoreError> {
    let path = dir.join(name);
    let removed = close_later.then(|| hold(&path)).flatten();
    match fs::remove_file(&path) {
        Ok(()) => {
            close_in_background(removed);
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

    #[test]
    fn the_replaced_file_keeps_its_content_for_whoever_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let options = WriteOptions {
            mode: 0o644,
            fsync: true,
            close_later: true,
        };
        let publish = |text: &'static str| {
            write_atomic(
                dir.path(),
                temp.path(),
                "g.prom",
                |f| std::io::Write::write_all(f, text.as_bytes()),
                options,
                || Ok(()),
                |()| {},
            )
        };
        publish("a 1\n").unwrap();
        let reader = File::open(dir.path().join("g.prom")).unwrap();
        publish("a 2\n").unwrap();
        remove(dir.path(), "g.prom", true, true).unwrap();
        assert_eq!(std::io::read_to_string(reader).unwrap(), "a 1\n");
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
        assert!(fs::read_dir(temp.path()).unwrap().next().is_none());
    }
}
