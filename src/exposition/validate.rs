//! The checks node_exporter's textfile collector and the client_golang
//! registry apply after parsing, applied before anything is written.
//!
//! node_exporter reads every `*.prom` file in name order, merges families of
//! the same name, pads missing labels with `""`, and hands every sample to the
//! registry, which drops (with only a log line) a series whose HELP or TYPE
//! differs from the first one seen, a duplicate series, and a name that
//! collides with a summary's or histogram's `_sum`/`_count`/`_bucket`. Label
//! names starting with `__` crash it. Names of its own metrics are masked or
//! merged. [`validate`] finds all of these in a set of files at once, so a
//! writer can refuse the file that would cause them.
//!
//! Pure: sources are borrowed models, problems are returned.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use super::{Family, Labels, MetricType};

/// One input of a set: a name for messages (a path) and its families, as
/// [`parse`](super::parse::parse) returned them.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The file name or path shown in messages; empty for content that is
    /// no file yet (a push), whose lines are those of its input.
    pub name: &'a str,
    /// The parsed families.
    pub families: &'a [Family],
}

/// A problem found in one source, with the other source it conflicts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Index of the source the problem is reported against (the later one,
    /// whose series node_exporter would drop).
    pub source: usize,
    /// Line in that source, or 0 when unknown.
    pub line: u32,
    /// What is wrong.
    pub violation: Violation,
    /// The earlier source and line this one conflicts with, if any.
    pub other: Option<(usize, u32)>,
}

/// The gather-time rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // each variant is documented by its message
pub enum Violation {
    #[error("invalid metric name {metric:?}: expected [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName { metric: String },
    #[error("invalid label name {label:?} on {metric:?}: expected [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName { metric: String, label: String },
    #[error(
        "label name {label:?} on {metric:?} starts with \"__\", which is reserved: node_exporter 1.5.0 crashes on it"
    )]
    ReservedLabelName { metric: String, label: String },
    #[error("label name {label:?} appears twice on {metric:?}")]
    DuplicateLabelName { metric: String, label: String },
    #[error("label {label:?} is reserved on {kind} {metric:?}")]
    BoundLabel {
        metric: String,
        label: String,
        kind: MetricType,
    },
    #[error(
        "metric name {metric:?} belongs to node_exporter itself: its series would mask or be merged into the exporter's own"
    )]
    ExporterName { metric: String },
    #[error(
        "metric name {metric:?} collides with node_exporter's own {owner_kind} {owner:?}: node_exporter would drop it"
    )]
    ExporterSuffixClash {
        metric: String,
        owner: String,
        owner_kind: MetricType,
    },
    #[error(
        "{metric:?} has type {kind} here but {other_kind} in {other_source}: node_exporter would drop these series"
    )]
    TypeConflict {
        metric: String,
        kind: MetricType,
        other_kind: MetricType,
        other_source: String,
    },
    #[error(
        "HELP for {metric:?} is {help} here but {other_help} in {other_source}: node_exporter would drop these series"
    )]
    HelpConflict {
        metric: String,
        help: HelpText,
        other_help: HelpText,
        other_source: String,
    },
    #[error("duplicate series {series} (also in {other_source}): node_exporter would drop it")]
    DuplicateSeries {
        series: String,
        other_source: String,
    },
    #[error(
        "{metric:?} collides with {kind} {owner:?} in {other_source} (its _sum, _count or _bucket): node_exporter would drop one of them"
    )]
    SuffixCollision {
        metric: String,
        owner: String,
        kind: MetricType,
        other_source: String,
    },
}

/// A HELP text as quoted in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpText(pub Option<String>);

impl fmt::Display for HelpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(text) => write!(f, "{text:?}"),
            None => f.write_str("missing"),
        }
    }
}

/// Checks a set of sources together, in the order given (node_exporter's
/// order is sorted file names). Problems come back in source order.
pub fn validate(sources: &[Source<'_>]) -> Vec<Problem> {
    let mut sources_per_name: HashMap<&str, usize> = HashMap::new();
    for source in sources {
        for family in source.families {
            *sources_per_name.entry(family.name()).or_default() += 1;
        }
    }
    let mut validator = Validator {
        sources,
        sources_per_name,
        first: HashMap::new(),
        series_seen: HashMap::new(),
        problems: Vec::new(),
    };
    for (index, source) in sources.iter().enumerate() {
        for family in source.families {
            match validator.family_conflict(index, family) {
                Some((violation, other)) => {
                    validator.report(index, family.line(), violation, other);
                }
                None => validator.duplicates(index, family),
            }
        }
    }
    validator.problems
}

/// The state of one [`validate`] pass: what was seen first, and where.
struct Validator<'a> {
    sources: &'a [Source<'a>],
    sources_per_name: HashMap<&'a str, usize>,
    first: HashMap<&'a str, FirstSeen<'a>>,
    /// Per metric name, each series identity: where it was first seen
    /// (source, line) and its labels there.
    series_seen: HashMap<&'a str, HashMap<Cow<'a, str>, SeenSeries<'a>>>,
    problems: Vec<Problem>,
}

type SeenSeries<'a> = (usize, u32, Labels<'a>);

type Conflict = (Violation, Option<(usize, u32)>);

impl<'a> Validator<'a> {
    fn report(
        &mut self,
        source: usize,
        line: u32,
        violation: Violation,
        other: Option<(usize, u32)>,
    ) {
        self.problems.push(Problem {
            source,
            line,
            violation,
            other,
        });
    }

    /// A problem with the family as a whole: its names, a clash with
    /// node_exporter's own metrics, or a HELP, TYPE or suffix conflict with
    /// an earlier family. Records the family when it is the first of its name.
    fn family_conflict(&mut self, index: usize, family: &'a Family) -> Option<Conflict> {
        if let Some(violation) = check_names(family).or_else(|| exporter_clash(family)) {
            return Some((violation, None));
        }
        let name = family.name();
        let Some(earlier) = self.first.get(name) else {
            if let Some((owner, kind, at)) = suffix_collision(family, &self.first) {
                let other_source = place(self.sources, at.0, at.1);
                let metric = name.into();
                let owner = owner.into();
                return Some((
                    Violation::SuffixCollision {
                        metric,
                        owner,
                        kind,
                        other_source,
                    },
                    Some(at),
                ));
            }
            let seen = FirstSeen {
                kind: family.kind(),
                help: family.help(),
                source: index,
                line: family.line(),
            };
            self.first.insert(name, seen);
            return None;
        };
        let other_source = place(self.sources, earlier.source, earlier.line);
        let other = Some((earlier.source, earlier.line));
        if earlier.kind != family.kind() {
            let violation = Violation::TypeConflict {
                metric: name.into(),
                kind: family.kind(),
                other_kind: earlier.kind,
                other_source,
            };
            return Some((violation, other));
        }
        if earlier.help != family.help() {
            let violation = Violation::HelpConflict {
                metric: name.into(),
                help: HelpText(family.help().map(str::to_owned)),
                other_help: HelpText(earlier.help.map(str::to_owned)),
                other_source,
            };
            return Some((violation, other));
        }
        None
    }

    /// Reports series whose identity was already seen under this name.
    fn duplicates(&mut self, index: usize, family: &'a Family) {
        let name = family.name();
        let alone = self.sources_per_name.get(name) == Some(&1);
        if alone && identities_increase(family) {
            // Distinct identities, so nothing to report, and no other
            // family of this name will look them up: no map needed. Series
            // are sorted by label text, and dropping the empty values all of
            // them usually share (a pushed `instance=""`) keeps that order.
            return;
        }
        if alone && !family.series().any(|s| has_empty_value(s.labels)) {
            // Series are sorted by label text, so duplicates are neighbours.
            let series: Vec<_> = family.series().collect();
            for pair in series.windows(2) {
                if pair[0].labels == pair[1].labels {
                    let violation = duplicate(
                        name,
                        pair[1].labels,
                        pair[0].labels,
                        place(self.sources, index, pair[0].line),
                    );
                    self.report(index, pair[1].line, violation, Some((index, pair[0].line)));
                }
            }
            return;
        }
        for s in family.series() {
            let seen = self.series_seen.entry(name).or_default();
            match seen.entry(identity(s.labels)) {
                Entry::Vacant(e) => {
                    e.insert((index, s.line, s.labels));
                }
                Entry::Occupied(e) => {
                    let (at, mut at_line, at_labels) = *e.get();
                    // Within one file, report the later line of the two.
                    let mut line = s.line;
                    if at == index && at_line > line {
                        std::mem::swap(&mut line, &mut at_line);
                    }
                    let violation =
                        duplicate(name, s.labels, at_labels, place(self.sources, at, at_line));
                    self.report(index, line, violation, Some((at, at_line)));
                }
            }
        }
    }
}

struct FirstSeen<'a> {
    kind: MetricType,
    help: Option<&'a str>,
    source: usize,
    line: u32,
}

/// A duplicate of `labels`, as `other_labels` at `other_source`; the note
/// explains a pair that differs only in empty values.
fn duplicate(
    metric: &str,
    labels: Labels<'_>,
    other_labels: Labels<'_>,
    other_source: String,
) -> Violation {
    let note = if labels == other_labels {
        ""
    } else {
        ", where an empty label value counts as absent"
    };
    let labels = identity(labels);
    let series = if labels.is_empty() {
        metric.to_owned()
    } else {
        format!("{metric}{{{labels}}}")
    };
    let series = format!("{series}{note}");
    Violation::DuplicateSeries {
        series,
        other_source,
    }
}

/// `name:line` of an earlier definition, for messages.
fn place(sources: &[Source<'_>], index: usize, line: u32) -> String {
    match (sources[index].name, line) {
        ("", 0) => "the input".to_owned(),
        ("", line) => format!("line {line} of the input"),
        (name, 0) => name.to_owned(),
        (name, line) => format!("{name}:{line}"),
    }
}

fn has_empty_value(labels: Labels<'_>) -> bool {
    labels.as_text().contains("=\"\"")
}

/// Whether the identities of the family's series strictly increase, which
/// proves them distinct.
fn identities_increase(family: &Family) -> bool {
    // One spare buffer, handed back and forth, instead of a string per series.
    let mut spare = String::new();
    let mut previous: Option<Cow<'_, str>> = None;
    for s in family.series() {
        let current = if has_empty_value(s.labels) {
            let mut buf = std::mem::take(&mut spare);
            buf.clear();
            push_identity(s.labels, &mut buf);
            Cow::Owned(buf)
        } else {
            Cow::Borrowed(s.labels.as_text())
        };
        if previous.as_ref().is_some_and(|p| *p >= current) {
            return false;
        }
        if let Some(Cow::Owned(old)) = previous.replace(current) {
            spare = old;
        }
    }
    true
}

/// [`identity`], borrowed from the labels or built in `buf`.
fn identity_in<'b>(labels: Labels<'b>, buf: &'b mut String) -> &'b str {
    if !has_empty_value(labels) {
        return labels.as_text();
    }
    buf.clear();
    push_identity(labels, buf);
    buf
}

/// A series' identity for the registry: node_exporter pads absent labels
/// with `""`, so an empty value is the same as no label.
fn identity(labels: Labels<'_>) -> Cow<'_, str> {
    if !has_empty_value(labels) {
        return Cow::Borrowed(labels.as_text());
    }
    let mut out = String::new();
    push_identity(labels, &mut out);
    Cow::Owned(out)
}

/// Appends [`identity`] to `out`, without allocating when `out` has room.
///
/// The identity is the canonical text of the pairs with a value: the label
/// text minus its `name=""` pairs. When every name is a valid label name
/// (as in any parsed or validated family) that is a filter of the text, which
/// is sorted and escaped already; otherwise the pairs are rebuilt the long
/// way, as a new series of a family would be.
fn push_identity(labels: Labels<'_>, out: &mut String) {
    if !has_empty_value(labels) {
        out.push_str(labels.as_text());
        return;
    }
    let start = out.len();
    for super::Pair { name, raw, .. } in super::raw_pairs(labels.as_text()) {
        if !is_label_name(name) {
            out.truncate(start);
            let kept: Vec<_> = labels.iter().filter(|(_, v)| !v.is_empty()).collect();
            let mut family = Family::new("", MetricType::Untyped);
            family.push(&kept, super::Value::Single(0.0));
            if let Some(s) = family.series().next() {
                out.push_str(s.labels.as_text());
            }
            return;
        }
        if raw.is_empty() {
            continue;
        }
        if out.len() > start {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(raw);
        out.push('"');
    }
}

pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

pub(crate) fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a label name passes [`check_names`] on a family of type `kind`.
pub(crate) fn is_plain_label_name(name: &str, kind: MetricType) -> bool {
    is_label_name(name) && !name.starts_with("__") && bound_label(kind) != Some(name)
}

fn bound_label(kind: MetricType) -> Option<&'static str> {
    match kind {
        MetricType::Summary => Some("quantile"),
        MetricType::Histogram => Some("le"),
        _ => None,
    }
}

/// Names and label names; parsed input already satisfies the charset, built
/// families (protobuf, wrappers) may not.
fn check_names(family: &Family) -> Option<Violation> {
    let metric = family.name();
    if !is_metric_name(metric) {
        return Some(Violation::InvalidMetricName {
            metric: metric.into(),
        });
    }
    if family.label_names_ok {
        return None;
    }
    let bound = bound_label(family.kind());
    for series in family.series() {
        let mut previous = None;
        for label in series.labels.names() {
            let err =
                |make: fn(String, String) -> Violation| Some(make(metric.into(), label.into()));
            if !is_label_name(label) {
                return err(|metric, label| Violation::InvalidLabelName { metric, label });
            }
            if label.starts_with("__") {
                return err(|metric, label| Violation::ReservedLabelName { metric, label });
            }
            if previous == Some(label) {
                return err(|metric, label| Violation::DuplicateLabelName { metric, label });
            }
            if bound == Some(label) {
                let kind = family.kind();
                return Some(Violation::BoundLabel {
                    metric: metric.into(),
                    label: label.into(),
                    kind,
                });
            }
            previous = Some(label);
        }
    }
    None
}

/// The first earlier family this one collides with through a suffix, in
/// either direction.
fn suffix_collision<'a>(
    family: &Family,
    first: &HashMap<&'a str, FirstSeen<'a>>,
) -> Option<(&'a str, MetricType, (usize, u32))> {
    let name = family.name();
    for (base, kind) in suffix_owners(name) {
        if let Some((&owner, seen)) = first.get_key_value(base)
            && owns_suffix(seen.kind, kind)
        {
            return Some((owner, seen.kind, (seen.source, seen.line)));
        }
    }
    for child in suffix_children(name, family.kind()) {
        if let Some((&owner, seen)) = first.get_key_value(child.as_str()) {
            return Some((owner, family.kind(), (seen.source, seen.line)));
        }
    }
    None
}

/// `(parent, the parent type that owns this suffix)`: `x_bucket` can only be
/// a histogram's; `x_sum`/`x_count` a summary's or a histogram's (reported as
/// `Summary`, matched against both).
fn suffix_owners(name: &str) -> impl Iterator<Item = (&str, MetricType)> {
    let summary_or_histogram = ["_count", "_sum"]
        .into_iter()
        .filter_map(move |s| name.strip_suffix(s).map(|base| (base, MetricType::Summary)));
    let histogram = name
        .strip_suffix("_bucket")
        .map(|base| (base, MetricType::Histogram));
    summary_or_histogram.chain(histogram)
}

/// Whether a family of `owner` type claims a suffix that [`suffix_owners`]
/// attributed to `claimed` (`Summary` stands for "summary or histogram").
fn owns_suffix(owner: MetricType, claimed: MetricType) -> bool {
    owner == claimed || (claimed == MetricType::Summary && owner == MetricType::Histogram)
}

fn suffix_children(name: &str, kind: MetricType) -> Vec<String> {
    match kind {
        MetricType::Summary => vec![format!("{name}_count"), format!("{name}_sum")],
        MetricType::Histogram => {
            vec![
                format!("{name}_count"),
                format!("{name}_sum"),
                format!("{name}_bucket"),
            ]
        }
        _ => Vec::new(),
    }
}

/// Metric families node_exporter 1.5.0 serves itself with only the textfile
/// collector enabled (measured), which a file must not define.
const EXPORTER_FAMILIES: &[(&str, MetricType)] = &[
    ("go_gc_duration_seconds", MetricType::Summary),
    ("go_goroutines", MetricType::Gauge),
    ("go_info", MetricType::Gauge),
    ("go_memstats_alloc_bytes", MetricType::Gauge),
    ("go_memstats_alloc_bytes_total", MetricType::Counter),
    ("go_memstats_buck_hash_sys_bytes", MetricType::Gauge),
    ("go_memstats_frees_total", MetricType::Counter),
    ("go_memstats_gc_sys_bytes", MetricType::Gauge),
    ("go_memstats_heap_alloc_bytes", MetricType::Gauge),
    ("go_memstats_heap_idle_bytes", MetricType::Gauge),
    ("go_memstats_heap_inuse_bytes", MetricType::Gauge),
    ("go_memstats_heap_objects", MetricType::Gauge),
    ("go_memstats_heap_released_bytes", MetricType::Gauge),
    ("go_memstats_heap_sys_bytes", MetricType::Gauge),
    ("go_memstats_last_gc_time_seconds", MetricType::Gauge),
    ("go_memstats_lookups_total", MetricType::Counter),
    ("go_memstats_mallocs_total", MetricType::Counter),
    ("go_memstats_mcache_inuse_bytes", MetricType::Gauge),
    ("go_memstats_mcache_sys_bytes", MetricType::Gauge),
    ("go_memstats_mspan_inuse_bytes", MetricType::Gauge),
    ("go_memstats_mspan_sys_bytes", MetricType::Gauge),
    ("go_memstats_next_gc_bytes", MetricType::Gauge),
    ("go_memstats_other_sys_bytes", MetricType::Gauge),
    ("go_memstats_stack_inuse_bytes", MetricType::Gauge),
    ("go_memstats_stack_sys_bytes", MetricType::Gauge),
    ("go_memstats_sys_bytes", MetricType::Gauge),
    ("go_threads", MetricType::Gauge),
    ("node_exporter_build_info", MetricType::Gauge),
    ("node_scrape_collector_duration_seconds", MetricType::Gauge),
    ("node_scrape_collector_success", MetricType::Gauge),
    ("node_textfile_mtime_seconds", MetricType::Gauge),
    ("node_textfile_scrape_error", MetricType::Gauge),
    ("process_cpu_seconds_total", MetricType::Counter),
    ("process_max_fds", MetricType::Gauge),
    ("process_open_fds", MetricType::Gauge),
    ("process_resident_memory_bytes", MetricType::Gauge),
    ("process_start_time_seconds", MetricType::Gauge),
    ("process_virtual_memory_bytes", MetricType::Gauge),
    ("process_virtual_memory_max_bytes", MetricType::Gauge),
    ("promhttp_metric_handler_errors_total", MetricType::Counter),
    (
        "promhttp_metric_handler_requests_in_flight",
        MetricType::Gauge,
    ),
    (
        "promhttp_metric_handler_requests_total",
        MetricType::Counter,
    ),
];

fn exporter_kind(name: &str) -> Option<MetricType> {
    EXPORTER_FAMILIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

fn exporter_clash(family: &Family) -> Option<Violation> {
    let name = family.name();
    if name.starts_with("node_textfile_") || exporter_kind(name).is_some() {
        return Some(Violation::ExporterName {
            metric: name.into(),
        });
    }
    for (base, kind) in suffix_owners(name) {
        if let Some(owner_kind) = exporter_kind(base)
            && owns_suffix(owner_kind, kind)
        {
            return Some(Violation::ExporterSuffixClash {
                metric: name.into(),
                owner: base.into(),
                owner_kind,
            });
        }
    }
    for child in suffix_children(name, family.kind()) {
        if let Some(owner_kind) = exporter_kind(&child) {
            return Some(Violation::ExporterSuffixClash {
                metric: name.into(),
                owner: child,
                owner_kind,
            });
        }
    }
    None
}

/// What one file contributes to the cross-file checks, small enough to cache
/// for every file of a directory: per family its name, type, HELP and a
/// 64-bit hash of each series identity.
///
/// [`Fingerprint::may_conflict`] is a conservative filter: `false` means the
/// two files cannot conflict; `true` means run [`validate`] on them to find
/// out (a hash collision only costs that exact check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The families, in any order.
    pub families: Vec<FamilyPrint>,
}

/// One family of a [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyPrint {
    /// The metric name.
    pub name: String,
    /// The type.
    pub kind: MetricType,
    /// The HELP text.
    pub help: Option<String>,
    /// Sorted hashes of the series identities.
    pub ids: Vec<u64>,
}

impl Fingerprint {
    /// The fingerprint of parsed families.
    pub fn of(families: &[Family]) -> Self {
        let mut buf = String::new();
        let families = families
            .iter()
            .map(|family| {
                let mut ids: Vec<u64> = family
                    .series()
                    .map(|s| fingerprint_hash(identity_in(s.labels, &mut buf).as_bytes()))
                    .collect();
                ids.sort_unstable();
                FamilyPrint {
                    name: family.name().to_owned(),
                    kind: family.kind(),
                    help: family.help().map(str::to_owned),
                    ids,
                }
            })
            .collect();
        Self { families }
    }

    /// The names a family of another file must have to possibly conflict
    /// with this one: the same names, and the suffix relatives.
    pub(crate) fn related_names(&self) -> HashMap<String, Option<&FamilyPrint>> {
        let mut related = HashMap::new();
        for family in &self.families {
            related.insert(family.name.clone(), Some(family));
            for (base, _) in suffix_owners(&family.name) {
                related.entry(base.to_owned()).or_insert(None);
            }
            for suffix in ["_count", "_sum", "_bucket"] {
                related
                    .entry(format!("{}{suffix}", family.name))
                    .or_insert(None);
            }
        }
        related
    }

    /// Whether files with these fingerprints might conflict.
    pub fn may_conflict(&self, other: &Fingerprint) -> bool {
        self.conflicting([("", other)]).next().is_some()
    }

    /// Of `others` (name, fingerprint), those that might conflict with this
    /// one, in one pass with no work per file beyond its family names.
    pub fn conflicting<'a>(
        &self,
        others: impl IntoIterator<Item = (&'a str, &'a Fingerprint)>,
    ) -> impl Iterator<Item = &'a str> {
        let related = self.related_names();
        others
            .into_iter()
            .filter_map(move |(name, other)| other.hits(&related).then_some(name))
    }

    /// Whether any family of this (another file's) fingerprint might
    /// conflict with a push whose [`Fingerprint::related_names`] are
    /// `related`.
    pub(crate) fn hits(&self, related: &HashMap<String, Option<&FamilyPrint>>) -> bool {
        self.families.iter().any(|theirs| {
            family_conflicts(
                related,
                &theirs.name,
                theirs.kind,
                theirs.help.as_deref(),
                theirs.ids.iter().copied(),
            )
        })
    }
}

/// Whether another file's family (its name, type, HELP and sorted series
/// ids) might conflict with a push whose [`Fingerprint::related_names`] are
/// `related`. Takes the family in pieces, so a caller can pass one it
/// never decoded into a [`FamilyPrint`].
pub(crate) fn family_conflicts(
    related: &HashMap<String, Option<&FamilyPrint>>,
    name: &str,
    kind: MetricType,
    help: Option<&str>,
    ids: impl Iterator<Item = u64>,
) -> bool {
    match related.get(name) {
        None => false,
        // A suffix relative: a collision whatever the types.
        Some(None) => true,
        Some(Some(mine)) => {
            kind != mine.kind || help != mine.help.as_deref() || shares_any(&mine.ids, ids)
        }
    }
}

/// Whether two sorted sequences share an element.
fn shares_any(a: &[u64], b: impl Iterator<Item = u64>) -> bool {
    let mut a = a.iter().peekable();
    for b in b {
        while a.next_if(|&&a| a < b).is_some() {}
        match a.peek() {
            None => return false,
            Some(&&a) if a == b => return true,
            Some(_) => {}
        }
    }
    false
}

/// A fixed, documented 64-bit hash (`FxHash`'s word step over 8-byte chunks,
/// then the length), so cached fingerprints stay valid across builds and
/// hashing a series costs a few instructions per 8 bytes.
pub(crate) fn fingerprint_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    let mut hash = chunks.by_ref().fold(0, |hash, chunk| {
        step(
            hash,
            u64::from_le_bytes(chunk.try_into().expect("eight bytes")),
        )
    });
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = step(hash, u64::from_le_bytes(tail));
    step(hash, bytes.len() as u64)
}
