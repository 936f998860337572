//! An inverted view of the fingerprint index, for a long-lived store: which
//! files hold each family name (by type and HELP), and which hold each
//! series. With it, finding the files a push might conflict with costs
//! lookups for the push's own families and series, however many groups the
//! directory holds; without it, [`Fingerprint::conflicting`] scans every
//! file's families. Both give the same files (a hash collision can only add
//! one, which the exact check then clears).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::exposition::MetricType;
use crate::exposition::validate::{Fingerprint, fingerprint_hash};

/// A family's type and HELP: what files holding one name must agree on.
type Signature = (MetricType, Option<String>);

#[derive(Debug, Default)]
pub(crate) struct Postings {
    /// Family name → its type and HELP → the files with that family.
    names: HashMap<String, HashMap<Signature, BTreeSet<Arc<str>>>>,
    /// [`series_key`] → the files holding that series (almost always one).
    series: HashMap<u64, Vec<Arc<str>>>,
}

/// One key per (family name, series identity hash).
fn series_key(family: &str, id: u64) -> u64 {
    fingerprint_hash(family.as_bytes()).rotate_left(17) ^ id
}

impl Postings {
    /// Adds what `file` holds.
    pub(crate) fn add(&mut self, file: &str, print: &Fingerprint) {
        let file: Arc<str> = Arc::from(file);
        for family in &print.families {
            self.names
                .entry(family.name.clone())
                .or_default()
                .entry((family.kind, family.help.clone()))
                .or_default()
                .insert(Arc::clone(&file));
            for id in &family.ids {
                self.series
                    .entry(series_key(&family.name, *id))
                    .or_default()
                    .push(Arc::clone(&file));
            }
        }
    }

    /// Removes what [`Postings::add`] added for `file` with `print`.
    pub(crate) fn remove(&mut self, file: &str, print: &Fingerprint) {
        for family in &print.families {
            if let Some(kinds) = self.names.get_mut(&family.name) {
                let signature = (family.kind, family.help.clone());
                if let Some(files) = kinds.get_mut(&signature) {
                    files.remove(file);
                    if files.is_empty() {
                        kinds.remove(&signature);
                    }
                }
                if kinds.is_empty() {
                    self.names.remove(&family.name);
                }
            }
            for id in &family.ids {
                let key = series_key(&family.name, *id);
                if let Some(files) = self.series.get_mut(&key) {
                    if let Some(at) = files.iter().position(|f| &**f == file) {
                        files.swap_remove(at);
                    }
                    if files.is_empty() {
                        self.series.remove(&key);
                    }
                }
            }
        }
    }

    /// Files other than `name` that might conflict with `print`: those with
    /// a family of the same name but another type or HELP, or with one of
    /// its series, and those with a suffix relative's name (`x_count` next
    /// to summary `x`), as [`Fingerprint::conflicting`] decides.
    pub(crate) fn candidates(&self, name: &str, print: &Fingerprint) -> Vec<String> {
        let mut found: BTreeSet<&str> = BTreeSet::new();
        for (related, mine) in print.related_names() {
            let Some(kinds) = self.names.get(&related) else {
                continue;
            };
            let Some(mine) = mine else {
                found.extend(kinds.values().flatten().map(|f| &**f));
                continue;
            };
            for ((kind, help), files) in kinds {
                if *kind != mine.kind || *help != mine.help {
                    found.extend(files.iter().map(|f| &**f));
                }
            }
            for id in &mine.ids {
                if let Some(files) = self.series.get(&series_key(&mine.name, *id)) {
                    found.extend(files.iter().map(|f| &**f));
                }
            }
        }
        found.remove(name);
        found.into_iter().map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Postings;
    use crate::exposition::MetricType;
    use crate::exposition::validate::{FamilyPrint, Fingerprint};

    /// Small alphabets, so that names, suffix relatives, types, HELP texts
    /// and series collide often.
    fn print() -> impl Strategy<Value = Fingerprint> {
        let family = (
            prop::sample::select(vec!["a", "a_count", "a_sum", "a_bucket", "b", "c_total"]),
            prop::sample::select(vec![
                MetricType::Counter,
                MetricType::Gauge,
                MetricType::Summary,
                MetricType::Histogram,
            ]),
            prop::option::of(prop::sample::select(vec!["x", "y"])),
            prop::collection::btree_set(0u64..6, 0..4),
        )
            .prop_map(|(name, kind, help, ids)| FamilyPrint {
                name: name.to_owned(),
                kind,
                help: help.map(str::to_owned),
                ids: ids.into_iter().collect(),
            });
        prop::collection::vec(family, 0..4).prop_map(|families| Fingerprint { families })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The lookups find exactly the files the scan finds, also after
        /// files are replaced and removed.
        #[test]
        fn lookups_find_what_the_scan_finds(
            files in prop::collection::vec(print(), 1..8),
            replaced in print(),
            push in print(),
        ) {
            let names: Vec<String> = (0..files.len()).map(|i| format!("f{i}.prom")).collect();
            let mut current: Vec<Option<Fingerprint>> = files.into_iter().map(Some).collect();
            let mut postings = Postings::default();
            for (name, print) in names.iter().zip(&current) {
                postings.add(name, print.as_ref().unwrap());
            }
            // Replace the first file, remove the last.
            postings.remove(&names[0], current[0].as_ref().unwrap());
            postings.add(&names[0], &replaced);
            current[0] = Some(replaced);
            let last = names.len() - 1;
            if last > 0 {
                postings.remove(&names[last], current[last].as_ref().unwrap());
                current[last] = None;
            }
            for pushed_as in [names[0].as_str(), "new.prom"] {
                let others = names
                    .iter()
                    .zip(&current)
                    .filter(|(n, _)| n.as_str() != pushed_as)
                    .filter_map(|(n, p)| Some((n.as_str(), p.as_ref()?)));
                let mut scanned: Vec<String> = push.conflicting(others).map(str::to_owned).collect();
                scanned.sort();
                prop_assert_eq!(postings.candidates(pushed_as, &push), scanned);
            }
        }
    }

    #[test]
    fn removing_everything_leaves_nothing() {
        let print = Fingerprint {
            families: vec![FamilyPrint {
                name: "a".into(),
                kind: MetricType::Gauge,
                help: None,
                ids: vec![1, 2],
            }],
        };
        let mut postings = Postings::default();
        postings.add("x.prom", &print);
        postings.add("y.prom", &print);
        postings.remove("x.prom", &print);
        postings.remove("y.prom", &print);
        assert!(postings.names.is_empty() && postings.series.is_empty());
    }
}
