//! promdrop's own metrics on `/metrics`: requests by route and code, push
//! sizes and durations, rejected pushes by reason, expirations, groups,
//! series, skipped files and build info. Counters live here; the handlers add to them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::exposition::{Distribution, Family, MetricType, Value};
use crate::store::Skipped;

/// Names a push may not use: they are the server's own.
pub const OWN_METRICS: &[&str] = &[
    "promdrop_build_info",
    "promdrop_http_requests_total",
    "promdrop_push_size_bytes",
    "promdrop_push_duration_seconds",
    "promdrop_rejected_pushes_total",
    "promdrop_expired_groups_total",
    "promdrop_groups",
    "promdrop_series",
    "promdrop_skipped_files",
];

/// The counters, shared by every request.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<(&'static str, u16), f64>,
    rejected: BTreeMap<&'static str, f64>,
    push_bytes: (f64, f64),
    push_seconds: (f64, f64),
    expired: f64,
}

impl Stats {
    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// One request answered.
    pub fn request(&self, route: &'static str, code: u16) {
        self.with(|c| *c.requests.entry((route, code)).or_default() += 1.0);
    }

    /// One push refused, for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        self.with(|c| *c.rejected.entry(reason).or_default() += 1.0);
    }

    /// One push stored: its body size and how long it took.
    #[allow(clippy::cast_precision_loss)]
    pub fn pushed(&self, bytes: usize, took: Duration) {
        self.with(|c| {
            c.push_bytes = (c.push_bytes.0 + bytes as f64, c.push_bytes.1 + 1.0);
            c.push_seconds = (
                c.push_seconds.0 + took.as_secs_f64(),
                c.push_seconds.1 + 1.0,
            );
        });
    }

    /// Groups removed past their TTL.
    #[allow(clippy::cast_precision_loss)]
    pub fn expired(&self, groups: usize) {
        self.with(|c| c.expired += groups as f64);
    }

    /// The families for a scrape, with the current number of groups and series.
    #[allow(clippy::cast_precision_loss)]
    pub fn families(&self, groups: usize, series: usize, skipped: &[Skipped]) -> Vec<Family> {
        let counts = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let single = |name: &str, kind, help: &str, rows: Vec<(Vec<(&str, String)>, f64)>| {
            let mut family = Family::new(name, kind).with_help(help);
            for (labels, value) in rows {
                family.push(&labels, Value::Single(value));
            }
            family
        };
        let summary = |name: &str, help: &str, (sum, count): (f64, f64)| {
            let mut family = Family::new(name, MetricType::Summary).with_help(help);
            let value = Distribution {
                points: Vec::new(),
                sum: Some(sum),
                count: Some(count),
            };
            family.push::<&str, &str>(&[], Value::Distribution(Box::new(value)));
            family
        };
        let mut families = vec![
            single(
                "promdrop_build_info",
                MetricType::Gauge,
                "promdrop's version, as a label; always 1.",
                vec![(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0)],
            ),
            single(
                "promdrop_http_requests_total",
                MetricType::Counter,
                "HTTP requests answered, by route and status code.",
                counts
                    .requests
                    .iter()
                    .map(|((route, code), n)| {
                        (
                            vec![("route", (*route).to_owned()), ("code", code.to_string())],
                            *n,
                        )
                    })
                    .collect(),
            ),
            summary(
                "promdrop_push_size_bytes",
                "Sizes of stored pushes, decompressed.",
                counts.push_bytes,
            ),
            summary(
                "promdrop_push_duration_seconds",
                "Time from a push's arrival to its durable storage.",
                counts.push_seconds,
            ),
            single(
                "promdrop_rejected_pushes_total",
                MetricType::Counter,
                "Pushes refused, by reason.",
                counts
                    .rejected
                    .iter()
                    .map(|(reason, n)| (vec![("reason", (*reason).to_owned())], *n))
                    .collect(),
            ),
            single(
                "promdrop_expired_groups_total",
                MetricType::Counter,
                "Groups removed because their TTL ran out.",
                vec![(vec![], counts.expired)],
            ),
            single(
                "promdrop_groups",
                MetricType::Gauge,
                "Groups served.",
                vec![(vec![], groups as f64)],
            ),
            single(
                "promdrop_series",
                MetricType::Gauge,
                "Series served, own metrics aside.",
                vec![(vec![], series as f64)],
            ),
            single(
                "promdrop_skipped_files",
                MetricType::Gauge,
                "*.prom files in the directory not served as groups, by reason: not_regular, too_large, unreadable, foreign (not written by promdrop), invalid.",
                skipped
                    .iter()
                    .fold(BTreeMap::<&str, f64>::new(), |mut by, s| {
                        *by.entry(s.reason.label()).or_default() += 1.0;
                        by
                    })
                    .into_iter()
                    .map(|(reason, n)| (vec![("reason", reason.to_owned())], n))
                    .collect(),
            ),
        ];
        families.retain(|f| !f.is_empty());
        families
    }
}
