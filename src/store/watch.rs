//! Which entries of the directory changed since a long-lived store last
//! looked, from inotify: a listing, or the fingerprint index before a push,
//! then looks again (`stat`, and a read if the file changed) only at those,
//! instead of at every file. A file written in place, or given a new mode,
//! leaves the directory's mtime as it was; only the watch tells.
//!
//! Used only where inotify sees every change, on local filesystems (ext2/3/4,
//! XFS, Btrfs, tmpfs); on any other (NFS, FUSE, …), or when the kernel's
//! event queue overflowed, or the watch is lost, every file is looked at, as
//! without a watch. A symlink's target can change without an event in the
//! directory, so symlinks are always looked at.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, FsType, TMPFS_MAGIC, statfs};

/// XFS's magic number; nix names it only for glibc.
const XFS_SUPER_MAGIC: FsType = FsType(0x5846_5342 as _);

/// What changed since a reader last asked [`Watch::changed`].
#[derive(Debug)]
pub(crate) enum Changed {
    /// Anything may have: look at every entry.
    All,
    /// Only entries with these names (created, removed, renamed, written or
    /// with new attributes).
    Names(HashSet<OsString>),
}

impl Changed {
    fn nothing() -> Self {
        Self::Names(HashSet::new())
    }

    fn add(&mut self, more: &Self) {
        match (&mut *self, more) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Names(names), Self::Names(more)) => names.extend(more.iter().cloned()),
        }
    }
}

/// Who asks a [`Watch`]; each is told of every change once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reader {
    /// The listing scrapes serve.
    Listing = 0,
    /// The fingerprint index a push is checked against.
    Index = 1,
}

/// An inotify watch on the directory.
#[derive(Debug)]
pub(crate) struct Watch {
    inotify: Inotify,
    /// Set once the watch can no longer be trusted.
    lost: AtomicBool,
    /// What each [`Reader`] has yet to be told.
    pending: Mutex<[Changed; 2]>,
}

impl Watch {
    /// Watches `dir`; `None` where a watch would not see every change.
    pub(crate) fn new(dir: &Path) -> Option<Self> {
        let kind = statfs(dir).ok()?.filesystem_type();
        if ![
            EXT4_SUPER_MAGIC,
            XFS_SUPER_MAGIC,
            BTRFS_SUPER_MAGIC,
            TMPFS_MAGIC,
        ]
        .contains(&kind)
        {
            return None;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_ATTRIB
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )
            .ok()?;
        Some(Self {
            inotify,
            lost: AtomicBool::new(false),
            pending: Mutex::new([Changed::nothing(), Changed::nothing()]),
        })
    }

    /// The changes since `reader` last asked (or since the watch began).
    pub(crate) fn changed(&self, reader: Reader) -> Changed {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = self.read();
        for changed in pending.iter_mut() {
            changed.add(&fresh);
        }
        std::mem::replace(&mut pending[reader as usize], Changed::nothing())
    }

    /// The events the kernel queued since the last call.
    fn read(&self) -> Changed {
        let mut names = HashSet::new();
        while !self.lost.load(Ordering::Relaxed) {
            match self.inotify.read_events() {
                Ok(events) => {
                    for event in events {
                        let gone = AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF;
                        if event.mask.intersects(AddWatchFlags::IN_Q_OVERFLOW) {
                            // Events were dropped: this once, look at all.
                            return Changed::All;
                        }
                        if event.mask.intersects(gone) {
                            self.lost.store(true, Ordering::Relaxed);
                        } else if let Some(name) = event.name {
                            names.insert(name);
                        }
                    }
                }
                Err(Errno::EAGAIN) => return Changed::Names(names),
                Err(_) => self.lost.store(true, Ordering::Relaxed),
            }
        }
        Changed::All
    }
}

#[cfg(test)]
mod tests {
    use super::{Changed, Reader, Watch};

    fn names(changed: Changed) -> Vec<String> {
        let Changed::Names(names) = changed else {
            panic!("the watch was lost");
        };
        let mut names: Vec<_> = names
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn tells_each_reader_the_names_that_changed_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.prom"), "a 1\n").unwrap();
        std::fs::write(dir.path().join("b.prom"), "b 1\n").unwrap();
        // /tmp may be any filesystem; skip where the watch is not used.
        let Some(watch) = Watch::new(dir.path()) else {
            return;
        };
        assert!(names(watch.changed(Reader::Listing)).is_empty());
        // In place, by rename, removed, and a new mode.
        std::fs::write(dir.path().join("a.prom"), "a 2\n").unwrap();
        std::fs::write(dir.path().join("tmp"), "c 1\n").unwrap();
        std::fs::rename(dir.path().join("tmp"), dir.path().join("c.prom")).unwrap();
        std::fs::remove_file(dir.path().join("b.prom")).unwrap();
        assert_eq!(
            names(watch.changed(Reader::Listing)),
            ["a.prom", "b.prom", "c.prom", "tmp"]
        );
        assert!(names(watch.changed(Reader::Listing)).is_empty());
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(dir.path().join("c.prom"), mode).unwrap();
        // The other reader is told of everything since it last asked.
        assert_eq!(
            names(watch.changed(Reader::Index)),
            ["a.prom", "b.prom", "c.prom", "tmp"]
        );
        assert_eq!(names(watch.changed(Reader::Listing)), ["c.prom"]);
        assert!(names(watch.changed(Reader::Index)).is_empty());
        // The directory itself going away loses the watch for good.
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
        for reader in [Reader::Listing, Reader::Index, Reader::Listing] {
            assert!(matches!(watch.changed(reader), Changed::All));
        }
    }
}
