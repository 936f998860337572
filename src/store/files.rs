//! How the store opens files in a directory that other users and tools may
//! write too. Reads never block (a FIFO named `x.prom` must not hang a
//! push or a scrape) and take only regular files, up to a size. Files of the
//! state directory are opened without following symlinks, so that a
//! symlink planted as `.promdrop/index` or as a lock file cannot make a
//! writer create or overwrite a file elsewhere.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Opens a regular file for reading, following symlinks (as node_exporter
/// does) but never blocking; anything else is an error.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    regular(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?,
    )
}

/// `file` if it is a regular file, else an error.
fn regular(file: File) -> io::Result<File> {
    check_regular(&file.metadata()?)?;
    Ok(file)
}

/// An error unless `meta` is a regular file's.
pub(crate) fn check_regular(meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// What a directory entry is, following a symlink as node_exporter does;
/// without one, no `stat` beyond the listing's own.
pub(crate) fn entry_metadata(entry: &fs::DirEntry) -> io::Result<fs::Metadata> {
    match entry.metadata() {
        Ok(meta) if meta.file_type().is_symlink() => fs::metadata(entry.path()),
        other => other,
    }
}

/// The whole content of a regular file of at most `limit` bytes.
pub(crate) fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_limited(open_regular(path)?, limit)
}

/// The whole content of `file`, a regular file, if it holds at most `limit`
/// bytes.
pub(crate) fn read_limited(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let size = file.metadata()?.len();
    if size > limit {
        return Err(too_large(size, limit));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow while read: never past the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn too_large(size: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{size} bytes, over the limit of {limit}"),
    )
}

/// Opens a file promdrop writes (in the state directory, or a group file a
/// write is about to replace), creating it with `mode` if need be, without
/// following a symlink in its place (which is then an error).
pub(crate) fn open_state_file(
    path: &Path,
    write: bool,
    create_mode: Option<u32>,
) -> io::Result<File> {
    regular(open_state_entry(path, write, create_mode)?)
}

/// [`open_state_file`], whatever the file is: for a caller that checks it
/// with [`check_regular`] in a `stat` it makes anyway.
pub(crate) fn open_state_entry(
    path: &Path,
    write: bool,
    create_mode: Option<u32>,
) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    if let Some(mode) = create_mode {
        options.create(true).truncate(false).mode(mode);
    }
    options.open(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::ErrorKind;
    use std::path::Path;

    use super::{open_state_file, read_regular};

    /// Makes a FIFO at `path`.
    pub(crate) fn mkfifo(path: &Path) {
        assert!(
            std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    }

    #[test]
    fn reads_refuse_fifos_and_big_files_and_state_files_refuse_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.prom");
        mkfifo(&fifo);
        assert_eq!(
            read_regular(&fifo, 100).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let big = dir.path().join("big.prom");
        std::fs::write(&big, vec![b'x'; 101]).unwrap();
        assert_eq!(
            read_regular(&big, 100).unwrap_err().kind(),
            ErrorKind::FileTooLarge
        );
        assert_eq!(read_regular(&big, 101).unwrap().len(), 101);
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("index");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_state_file(&link, true, Some(0o644)).is_err());
        assert!(!target.exists(), "a write followed a planted symlink");
    }
}
