//! Work on large expositions, split over two threads. A cron job's push of
//! ten series never reaches the threshold; a push of 100,000 does, and then
//! both cores of a small machine share the parsing (see `parse_parts`), and
//! the checks run beside the writing of the file.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};

use super::Family;

/// Families with at least this many series between them are worked on by
/// two threads; below it, a thread's start costs more than it saves.
pub const TWO_THREADS_FROM: usize = 20_000;

/// The number of series of `families`.
fn series(families: &[Family]) -> usize {
    families.iter().map(Family::len).sum()
}

/// Where the second half of `families` starts: the first family past the
/// one that brings the series counted to half of them.
fn halfway(families: &[Family]) -> usize {
    let total = series(families);
    let mut seen = 0;
    families
        .iter()
        .position(|family| {
            seen += family.len();
            seen * 2 >= total
        })
        .map_or(families.len(), |i| i + 1)
}

/// Runs `work` on every family: on the caller's thread and one more when the
/// families hold [`TWO_THREADS_FROM`] series or more, each taking about half
/// of the series.
pub fn for_each_family(families: &mut [Family], work: impl Fn(&mut Family) + Sync) {
    let large = is_large(families);
    let (first, second) = families.split_at_mut(halfway(families));
    both(
        large,
        || second.iter_mut().for_each(&work),
        || first.iter_mut().for_each(&work),
    );
}

/// Whether `families` are large enough to be worked on by two threads.
pub fn is_large(families: &[Family]) -> bool {
    series(families) >= TWO_THREADS_FROM
}

/// Runs `a` and `b`: at once, on two threads, when `two_threads`; else one
/// after the other.
///
/// # Panics
///
/// When `a` or `b` panics.
pub fn both<A: Send, B>(
    two_threads: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B,
) -> (A, B) {
    if !two_threads {
        return (a(), b());
    }
    let a = Handover::new(a);
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new().spawn_scoped(scope, || a.take().map(|a| a()));
        let b = b();
        let a = match helper {
            Ok(helper) => helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had (a process limit, say): `a` runs here.
            Err(_) => a.take().map(|a| a()),
        };
        (a.expect("`a` ran on one thread or the other"), b)
    })
}

/// Work handed from the thread that finds it to the threads that do it, in
/// the order it was found. A taker waits while the queue is empty and open.
pub struct Queue<T> {
    /// The work not yet taken, and whether more may come.
    state: Mutex<(VecDeque<T>, bool)>,
    more: Condvar,
}

impl<T> Queue<T> {
    /// An open queue of `items`.
    pub fn new(items: impl IntoIterator<Item = T>) -> Self {
        Self {
            state: Mutex::new((items.into_iter().collect(), true)),
            more: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (VecDeque<T>, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `item` after the rest, for the next taker.
    pub fn push(&self, item: T) {
        self.state().0.push_back(item);
        self.more.notify_one();
    }

    /// No more work will come: takers finish what is queued, then stop.
    pub fn close(&self) {
        self.state().1 = false;
        self.more.notify_all();
    }

    /// Drops the work not yet taken, and closes the queue.
    pub fn abandon(&self) {
        self.state().0.clear();
        self.close();
    }

    /// The next piece of work, waiting for one while the queue is open;
    /// `None` once it is closed and empty.
    pub fn take(&self) -> Option<T> {
        let mut state = self.state();
        loop {
            if let Some(item) = state.0.pop_front() {
                return Some(item);
            }
            if !state.1 {
                return None;
            }
            state = self
                .more
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Work for a helper thread, which the caller does itself when the thread
/// cannot be started: whoever takes it first.
struct Handover<T>(Mutex<Option<T>>);

impl<T> Handover<T> {
    fn new(work: T) -> Self {
        Self(Mutex::new(Some(work)))
    }

    fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::Arc;

    use super::*;
    use crate::exposition::Injection;
    use crate::exposition::parse::parse;
    use crate::exposition::render::to_string;

    fn families(count: usize, series: usize) -> Vec<Family> {
        let mut text = String::new();
        for f in 0..count {
            for s in 0..series {
                writeln!(text, "f{f}{{s=\"{s}\"}} {s}").unwrap();
            }
        }
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn every_family_is_worked_on_once_with_two_threads_or_one() {
        for (count, series) in [(3, 10), (7, TWO_THREADS_FROM / 5), (1, TWO_THREADS_FROM)] {
            let mut together = families(count, series);
            let injection = Arc::new(Injection::new(&[("job", "j")], &[]));
            for_each_family(&mut together, |f| f.set_labels(&injection));
            let mut alone = families(count, series);
            for family in &mut alone {
                family.set_labels(&injection);
            }
            assert_eq!(to_string(&together), to_string(&alone));
            assert!(to_string(&together).matches("job=\"j\"").count() == count * series);
        }
    }

    #[test]
    fn a_queue_hands_out_its_work_once_in_order_until_it_is_closed() {
        let queue = Queue::new([0]);
        let (taken, ()) = both(
            true,
            || std::iter::from_fn(|| queue.take()).collect::<Vec<_>>(),
            || {
                for item in 1..1000 {
                    queue.push(item);
                }
                queue.close();
            },
        );
        assert_eq!(taken, (0..1000).collect::<Vec<_>>());
        let queue = Queue::new([1, 2]);
        queue.abandon();
        assert_eq!(queue.take(), None, "an abandoned queue hands out nothing");
    }

    #[test]
    fn both_returns_both_results_in_order() {
        for two_threads in [false, true] {
            let who = std::thread::current().id();
            let (a, b) = both(two_threads, || (1, std::thread::current().id()), || 2);
            assert_eq!((a.0, b), (1, 2));
            assert_eq!(
                a.1 != who,
                two_threads,
                "`a` runs on a thread of its own only when asked"
            );
        }
    }
}
