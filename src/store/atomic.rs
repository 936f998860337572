//! The one recipe by which promdrop publishes a file: write a temp file on
//! the same filesystem (in the store's `.promdrop/tmp`, so that writing it
//! changes nothing node_exporter or the index sees, and its name never ends
//! in `.prom`), set its mode, fsync it, run the caller's last check, rename
//! it over the target, fsync the directory. On any error before the rename
//! the temp file is removed, so a crash at any point leaves the old file or
//! the new one, never a torn one.

use std::fs::{self, File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::StoreError;

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
    temp.persist(dir.join(name))
        .map_err(|e| io("rename into place")(e.error))?;
    after_rename(held);
    if options.fsync {
        sync_dir(dir).map_err(io("fsync the directory after writing"))?;
    }
    Ok(())
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `dir/name` and makes that durable; a missing file is no error.
pub(crate) fn remove(dir: &Path, name: &str, fsync: bool) -> Result<bool, StoreError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {
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
