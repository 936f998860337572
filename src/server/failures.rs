//! The server's memory of refused pushes: per grouping key, when the last
//! push was refused and why, for the status page. It lives in memory only,
//! never in the directory: a refused push must not create a group, nor
//! anything in the scrape (the Pushgateway's failure-only groups poison the
//! scrape; promdrop's do not exist). Bounded in keys, key length and
//! message length (a few megabytes at most), so that a client pushing
//! garbage under ever new keys cannot grow it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::grouping_key::GroupingKey;

/// The most keys remembered; past it, the oldest failure is forgotten.
pub const MAX_KEYS: usize = 1000;
/// The longest message kept, in bytes; longer ones are cut and end in `…`.
pub const MAX_MESSAGE: usize = 1000;
/// The longest key remembered, job and label names and values together, in
/// bytes; refusals of longer keys are answered but not remembered.
pub const MAX_KEY: usize = 4096;

/// One refused push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When it was refused.
    pub at: SystemTime,
    /// The message the client got.
    pub message: String,
}

/// The last failure of each key, shared by every request.
#[derive(Debug, Default)]
pub struct Failures {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    /// The failure, and the order it was recorded in (for eviction).
    by_key: HashMap<GroupingKey, (u64, Failure)>,
    next: u64,
}

impl Failures {
    fn with<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Remembers that a push to `key` was refused at `at` with `message`,
    /// replacing the key's previous failure. When that makes more than
    /// [`MAX_KEYS`] keys, forgets the one whose failure is oldest. A key
    /// longer than [`MAX_KEY`] is not remembered.
    pub fn record(&self, key: &GroupingKey, at: SystemTime, message: &str) {
        let size = key.job().len()
            + key
                .labels()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>();
        if size > MAX_KEY {
            return;
        }
        let failure = Failure {
            at,
            message: truncated(message.trim_end()),
        };
        self.with(|memory| {
            let order = memory.next;
            memory.next += 1;
            memory.by_key.insert(key.clone(), (order, failure));
            if memory.by_key.len() > MAX_KEYS {
                let oldest = memory
                    .by_key
                    .iter()
                    .min_by_key(|(_, (order, _))| *order)
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    memory.by_key.remove(&oldest);
                }
            }
        });
    }

    /// Forgets the failure of `key`: a later push succeeded, or the group
    /// was deleted.
    pub fn clear(&self, key: &GroupingKey) {
        self.with(|memory| memory.by_key.remove(key));
    }

    /// Forgets every failure (the admin API's wipe).
    pub fn clear_all(&self) {
        self.with(|memory| memory.by_key.clear());
    }

    /// Every remembered failure, in no particular order.
    pub fn all(&self) -> Vec<(GroupingKey, Failure)> {
        self.with(|memory| {
            memory
                .by_key
                .iter()
                .map(|(key, (_, failure))| (key.clone(), failure.clone()))
                .collect()
        })
    }
}

/// `message`, cut to at most [`MAX_MESSAGE`] bytes on a character boundary.
fn truncated(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::{Failures, MAX_KEY, MAX_KEYS, MAX_MESSAGE};
    use crate::grouping_key::GroupingKey;

    fn key(job: &str) -> GroupingKey {
        GroupingKey::new(job, []).unwrap()
    }

    fn at(seconds: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn the_last_failure_per_key_until_cleared() {
        let failures = Failures::default();
        failures.record(&key("a"), at(1), "first\n");
        failures.record(&key("a"), at(2), "second\n");
        failures.record(&key("b"), at(3), "other");
        let mut all = failures.all();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        let seen: Vec<(&str, u64, &str)> = all
            .iter()
            .map(|(k, f)| {
                let secs = f.at.duration_since(UNIX_EPOCH).unwrap().as_secs();
                (k.job(), secs, f.message.as_str())
            })
            .collect();
        assert_eq!(seen, [("a", 2, "second"), ("b", 3, "other")]);
        failures.clear(&key("a"));
        assert_eq!(failures.all().len(), 1);
        failures.clear_all();
        assert!(failures.all().is_empty());
    }

    #[test]
    fn bounded_by_dropping_the_oldest() {
        let failures = Failures::default();
        for i in 0..MAX_KEYS {
            failures.record(&key(&format!("k{i}")), at(10), "bad");
        }
        // Refreshing k0 makes k1 the oldest.
        failures.record(&key("k0"), at(20), "worse");
        failures.record(&key("new"), at(30), "bad");
        let all = failures.all();
        assert_eq!(all.len(), MAX_KEYS);
        assert!(all.iter().any(|(k, _)| k.job() == "k0"));
        assert!(all.iter().any(|(k, _)| k.job() == "new"));
        assert!(!all.iter().any(|(k, _)| k.job() == "k1"));
    }

    #[test]
    fn huge_keys_are_not_remembered() {
        let failures = Failures::default();
        let huge = GroupingKey::new("j", [("x".to_owned(), "v".repeat(MAX_KEY))]).unwrap();
        failures.record(&huge, at(1), "bad");
        assert!(failures.all().is_empty());
        let fits = GroupingKey::new("j", [("x".to_owned(), "v".repeat(MAX_KEY - 2))]).unwrap();
        failures.record(&fits, at(1), "bad");
        assert_eq!(failures.all().len(), 1);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let failures = Failures::default();
        failures.record(&key("a"), at(1), &"é".repeat(MAX_MESSAGE));
        let message = failures.all().remove(0).1.message;
        assert!(message.len() <= MAX_MESSAGE, "{}", message.len());
        assert!(message.ends_with("é…"), "{message}");
    }
}
