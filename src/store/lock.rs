//! Locks as values. A [`GroupLock`] is the only way to change a group: it
//! holds an exclusive `flock` on a separate, stable lock file (never on the
//! `.prom`, which a rename replaces), and its write methods consume it. The
//! short directory-wide lock serializes the final cross-file check and the
//! rename of every writer, so two pushes to different groups cannot together
//! create a conflict that neither creates alone.

use std::fs::File;
use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::StoreError;
use super::files::{check_regular, open_state_entry, open_state_file};

/// How long to wait for a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Give up at once when the lock is held.
    No,
    /// Retry until this much time has passed.
    Up(Duration),
}

/// Turns at a lock for the threads of this process: a thread waits here,
/// woken as soon as the one before gives its turn back, instead of polling
/// the lock's `flock`, which then only waits for other processes.
///
/// A thread that finds the turn taken first yields its core and tries again,
/// up to [`YIELDS`] times, before it sleeps: a turn is short (a final check
/// and a rename), and a sleeping thread must be woken and scheduled before it
/// can take its turn, which on a busy machine takes longer than the turn
/// itself, while every thread behind it waits too.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    state: Mutex<TurnState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct TurnState {
    taken: bool,
    /// Threads asleep on `freed`: a turn given back wakes one, if any.
    sleepers: u32,
}

/// How often a thread yields and tries again before it sleeps on a turn.
const YIELDS: u32 = 50;

/// One thread's turn, given back on drop.
pub(crate) struct Turn<'a>(&'a Turns);

impl Turns {
    /// Takes the turn; `None` when `wait` ran out first.
    pub(crate) fn take(&self, wait: Wait) -> Option<Turn<'_>> {
        let limit = match wait {
            Wait::No => Duration::ZERO,
            Wait::Up(limit) => limit,
        };
        if wait != Wait::No {
            for _ in 0..YIELDS {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if !state.taken {
                    state.taken = true;
                    return Some(Turn(self));
                }
                drop(state);
                std::thread::yield_now();
            }
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sleepers += 1;
        let (mut state, _) = self
            .freed
            .wait_timeout_while(state, limit, |state| state.taken)
            .unwrap_or_else(PoisonError::into_inner);
        state.sleepers -= 1;
        if state.taken {
            return None;
        }
        state.taken = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.taken = false;
        let sleepers = state.sleepers;
        drop(state);
        if sleepers > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// An exclusive lock on one lock file, released on drop.
///
/// Its holder may remove the file ([`FileLock::unlink`]), so that the lock
/// files of groups long gone do not pile up. Another process may have opened
/// the file before that and be waiting for its lock: once it has the lock, it
/// finds the file unlinked and starts over on a fresh one.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock on `path`, creating the file with `mode`. `Ok(None)`
    /// means it is held elsewhere and `wait` ran out.
    ///
    /// `flock` needs only a read-only descriptor, so a lock file created by
    /// one user can be taken by every user who may read it; a new one gets
    /// `mode` by fchmod, which the umask does not narrow.
    pub(crate) fn acquire(
        path: PathBuf,
        mode: u32,
        wait: Wait,
    ) -> Result<Option<Self>, StoreError> {
        let start = Instant::now();
        loop {
            let err = |source| StoreError::io("open the lock file", &path, source);
            // Checked for a regular file only once locked, in the one
            // `stat` that also finds a removed file.
            let file = match open_state_entry(&path, false, None) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Checked before its mode is set.
                    let file = open_state_file(&path, true, Some(mode)).map_err(err)?;
                    file.set_permissions(Permissions::from_mode(mode))
                        .map_err(err)?;
                    file
                }
                Err(e) => return Err(err(e)),
            };
            let left = match wait {
                Wait::No => Wait::No,
                Wait::Up(limit) => Wait::Up(limit.saturating_sub(start.elapsed())),
            };
            if !wait_for(&file, &path, left)? {
                return Ok(None);
            }
            let meta = file.metadata().map_err(err)?;
            check_regular(&meta).map_err(err)?;
            // Nobody renames a lock file: linked, it is still the one at `path`.
            if meta.nlink() > 0 {
                return Ok(Some(Self { _file: file, path }));
            }
        }
    }

    /// Removes the lock file, still locked: whoever waits on it then takes
    /// a fresh one. Failing leaves a stale file, which `expire` removes.
    pub(crate) fn unlink(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An exclusive lock on a file this process keeps open, such as the
/// directory itself (a stable inode that no rename replaces, and no extra
/// file), released on drop. The threads of the process must take turns at
/// it ([`Turns`]): a `flock` belongs to the open file, which they share.
#[derive(Debug)]
pub(crate) struct HeldLock<'a>(&'a File);

impl<'a> HeldLock<'a> {
    /// Takes the lock on `file`, opened from `path`. `Ok(None)` means it is
    /// held elsewhere and `wait` ran out.
    pub(crate) fn on(file: &'a File, path: &Path, wait: Wait) -> Result<Option<Self>, StoreError> {
        Ok(wait_for(file, path, wait)?.then_some(Self(file)))
    }
}

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(self.0);
    }
}

/// Takes an exclusive `flock` on `file`, retrying with growing pauses until
/// `wait` runs out; `false` if it did.
fn wait_for(file: &File, path: &Path, wait: Wait) -> Result<bool, StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match fs2::FileExt::try_lock_exclusive(file) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(source) => return Err(StoreError::io("lock", PathBuf::from(path), source)),
        }
        match wait {
            Wait::Up(limit) if start.elapsed() < limit => {
                std::thread::sleep(pause.min(limit.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            _ => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many descriptors of this process have `path` open.
    fn opened(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    #[test]
    fn a_waiter_on_a_removed_lock_file_takes_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.lock");
        let first = FileLock::acquire(path.clone(), 0o644, Wait::No)
            .unwrap()
            .unwrap();
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || FileLock::acquire(path, 0o644, Wait::Up(Duration::from_secs(30)))
        });
        // The waiter has the file `first` holds open, and polls its lock.
        while opened(&path) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        first.unlink();
        drop(first);
        let second = waiter.join().unwrap().unwrap().unwrap();
        // It holds the file now at the path, not the removed one.
        assert!(
            FileLock::acquire(path.clone(), 0o644, Wait::No)
                .unwrap()
                .is_none()
        );
        second.unlink();
        assert!(!path.exists());
    }

    #[test]
    fn a_lock_file_that_is_no_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.lock");
        crate::store::files::tests::mkfifo(&fifo);
        let directory = dir.path().join("dir.lock");
        std::fs::create_dir(&directory).unwrap();
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        for path in [fifo, directory, link] {
            let wait = Wait::Up(Duration::from_secs(30));
            let refused = FileLock::acquire(path.clone(), 0o644, wait).unwrap_err();
            assert!(
                refused.to_string().contains("lock file"),
                "{path:?}: {refused}"
            );
        }
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn holders_that_remove_the_lock_file_still_exclude_each_other() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.lock");
        let inside = AtomicBool::new(false);
        let (overlaps, removals) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (path, inside, overlaps, removals) = (&path, &inside, &overlaps, &removals);
                scope.spawn(move || {
                    for turn in 0..300 {
                        let wait = Wait::Up(Duration::from_secs(30));
                        let lock = FileLock::acquire(path.clone(), 0o644, wait)
                            .unwrap()
                            .unwrap();
                        if inside.swap(true, Ordering::SeqCst) {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::yield_now();
                        inside.store(false, Ordering::SeqCst);
                        // Every third turn, as a delete does.
                        if (turn + thread) % 3 == 0 {
                            lock.unlink();
                            removals.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        assert!(removals.load(Ordering::SeqCst) >= 400);
    }
}
