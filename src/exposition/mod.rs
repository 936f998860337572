//! Prometheus text exposition format 0.0.4: the data model, and the three
//! pure steps on it, [`parse`](mod@parse), [`validate`](mod@validate) and
//! [`render`](mod@render).
//!
//! This module owns the meaning of a metrics file. It never opens files or
//! sockets: it reads byte slices and writes to `io::Write`, so the store, the
//! server and `check` can all share it.
//!
//! A [`Family`] keeps the label sets of all its series in one string arena,
//! each in canonical form (`a="x",b="y"`: sorted by name, values escaped).
//! That keeps a parsed file compact, about the size of its text, and makes
//! rendering a copy.

pub mod float;
pub mod parallel;
pub mod parse;
pub mod render;
pub mod validate;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The metric types node_exporter's textfile collector and the Pushgateway
/// accept. `gauge_histogram` is deliberately absent: node_exporter 1.5.0
/// crashes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`
    Counter,
    /// `gauge`
    Gauge,
    /// `summary`: quantiles plus `_sum` and `_count`
    Summary,
    /// `untyped`, also what a family without a `# TYPE` line is
    Untyped,
    /// `histogram`: `_bucket`s plus `_sum` and `_count`
    Histogram,
}

impl MetricType {
    /// The spelling in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
            Self::Histogram => "histogram",
        }
    }

    /// Parses [`MetricType::as_str`]'s spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Counter,
            Self::Gauge,
            Self::Summary,
            Self::Untyped,
            Self::Histogram,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }

    /// Whether samples of this type are assembled from several lines.
    pub fn is_distribution(self) -> bool {
        matches!(self, Self::Summary | Self::Histogram)
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of one series.
#[derive(Debug, Clone)]
pub enum Value {
    /// A counter, gauge or untyped sample.
    Single(f64),
    /// A summary or histogram series.
    Distribution(Box<Distribution>),
}

/// A summary's quantiles or a histogram's cumulative buckets, with the
/// optional `_sum` and `_count`.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    /// `(quantile, value)` for a summary, `(upper bound, cumulative count)`
    /// for a histogram; sorted by the first element once canonical.
    pub points: Vec<(f64, f64)>,
    /// The `_sum` sample, if one was given.
    pub sum: Option<f64>,
    /// The `_count` sample, if one was given.
    pub count: Option<f64>,
}

/// Float equality for the model: NaN equals NaN, and `-0` equals `0`, which
/// the text format writes alike.
fn same_float(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn same_option(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_float(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Single(a), Self::Single(b)) => same_float(*a, *b),
            (Self::Distribution(a), Self::Distribution(b)) => {
                a.points.len() == b.points.len()
                    && a.points
                        .iter()
                        .zip(&b.points)
                        .all(|(x, y)| same_float(x.0, y.0) && same_float(x.1, y.1))
                    && same_option(a.sum, b.sum)
                    && same_option(a.count, b.count)
            }
            _ => false,
        }
    }
}

/// One metric family: a name, optional HELP, a type, and its series.
#[derive(Debug, Clone)]
pub struct Family {
    name: String,
    help: Option<String>,
    kind: MetricType,
    series: Vec<Series>,
    /// Canonical label text of every series, back to back.
    arena: String,
    /// Line of the first HELP, TYPE or sample that named this family; 0 when
    /// the family was built in code.
    line: u32,
    /// Whether every label name of every series is known to pass
    /// [`validate`](mod@validate)'s name checks (charset, no `__` prefix, no
    /// name twice, not the type's `le` or `quantile`), so that it can skip
    /// reading them all again. The parser vouches for what it read; every
    /// other way of adding labels clears this unless it checked them.
    label_names_ok: bool,
    /// The injection every series is known to carry, if any: see
    /// [`Family::set_labels`].
    injected: Option<Arc<Injection>>,
}

#[derive(Debug, Clone)]
struct Series {
    start: u32,
    len: u32,
    line: u32,
    value: Value,
}

impl Family {
    /// An empty family. Names are checked by [`validate`](mod@validate), not here.
    pub fn new(name: impl Into<String>, kind: MetricType) -> Self {
        Self {
            name: name.into(),
            help: None,
            kind,
            series: Vec::new(),
            arena: String::new(),
            line: 0,
            label_names_ok: true,
            injected: None,
        }
    }

    /// Sets the HELP text. Leading blanks are dropped and an empty text means
    /// no HELP, because that is how a `# HELP` line reads back.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.set_help(Some(help.into()));
        self
    }

    /// See [`Family::with_help`].
    pub fn set_help(&mut self, help: Option<String>) {
        self.help = help
            .map(|h| h.trim_start_matches([' ', '\t']).to_owned())
            .filter(|h| !h.is_empty());
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HELP text, unescaped.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// The metric type.
    pub fn kind(&self) -> MetricType {
        self.kind
    }

    /// The line that first named this family in its source, or 0.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the family has no series (such families are never rendered).
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The value of the first series, when it is a single sample: the
    /// reading of families that hold one series, like `push_time_seconds`.
    pub fn first_value(&self) -> Option<f64> {
        match self.series.first()?.value {
            Value::Single(v) => Some(v),
            Value::Distribution(_) => None,
        }
    }

    /// The series, in order.
    pub fn series(&self) -> impl ExactSizeIterator<Item = SeriesRef<'_>> {
        self.series.iter().map(|s| self.series_ref(s))
    }

    fn series_ref<'a>(&'a self, s: &'a Series) -> SeriesRef<'a> {
        let start = s.start as usize;
        SeriesRef {
            labels: Labels(&self.arena[start..start + s.len as usize]),
            value: &s.value,
            line: s.line,
        }
    }

    /// Appends a series. Labels are sorted by name and escaped; a label with
    /// an empty value is kept, since it is meaningful to the Pushgateway.
    pub fn push<N: AsRef<str>, V: AsRef<str>>(&mut self, labels: &[(N, V)], value: Value) {
        let mut sorted: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        if !sorted.is_empty() {
            self.label_names_ok = false;
        }
        let start = self.arena.len();
        for (i, (name, value)) in sorted.iter().enumerate() {
            if i > 0 {
                self.arena.push(',');
            }
            self.arena.push_str(name);
            self.arena.push_str("=\"");
            escape_label_value(&mut self.arena, value);
            self.arena.push('"');
        }
        self.push_span(start, value, 0);
    }

    /// Room for `other`'s series and their label text, up to a bound: the
    /// families of one exposition tend to be alike in size, and a family
    /// that starts with room for what it will hold skips most of its
    /// vectors' growing, each step a copy.
    pub(crate) fn reserve_like(&mut self, other: &Family) {
        const SERIES: usize = 256;
        const TEXT: usize = 16 * 1024;
        self.series.reserve(other.series.len().min(SERIES));
        self.arena.reserve(other.arena.len().min(TEXT));
    }

    /// Appends a series whose canonical label text the caller already holds.
    /// The caller vouches for its label names, or clears `label_names_ok`.
    pub(crate) fn push_canonical(&mut self, text: &str, value: Value, line: u32) -> usize {
        let start = self.arena.len();
        self.arena.push_str(text);
        self.push_span(start, value, line)
    }

    fn push_span(&mut self, start: usize, value: Value, line: u32) -> usize {
        self.injected = None;
        self.series.push(Series {
            start: start as u32,
            len: (self.arena.len() - start) as u32,
            line,
            value,
        });
        self.series.len() - 1
    }

    /// The canonical label text of series `index`.
    pub(crate) fn labels_at(&self, index: usize) -> &str {
        let s = &self.series[index];
        &self.arena[s.start as usize..(s.start + s.len) as usize]
    }

    pub(crate) fn value_mut(&mut self, index: usize) -> &mut Value {
        &mut self.series[index].value
    }

    /// Merges `injection` into the labels of every series, then sorts the
    /// series again. Nothing is done when the family already carries an
    /// equal injection: it is idempotent.
    pub fn set_labels(&mut self, injection: &Arc<Injection>) {
        if self.carries(injection) {
            return;
        }
        let old = std::mem::take(&mut self.arena);
        self.arena
            .reserve(old.len() + self.series.len() * injection.longest_addition());
        for s in &mut self.series {
            let start = self.arena.len();
            let text = &old[s.start as usize..(s.start + s.len) as usize];
            injection.merge(raw_pairs(text), &mut self.arena);
            s.start = start as u32;
            s.len = (self.arena.len() - start) as u32;
        }
        self.canonicalize();
        self.carry(injection);
    }

    /// Whether every series is known to carry `injection` already.
    pub fn carries(&self, injection: &Injection) -> bool {
        self.injected.as_deref() == Some(injection)
    }

    /// Records that every series already carries `injection`, which the
    /// parser merged in as it read them.
    fn carry(&mut self, injection: &Arc<Injection>) {
        self.label_names_ok &= injection.names_are_plain(self.kind);
        self.injected = Some(Arc::clone(injection));
    }

    /// Appends the series of `other`, a family of the same name and type (a
    /// scrape merges groups this way). Call [`Family::canonicalize`] once
    /// after the last one.
    pub fn absorb(&mut self, other: &Family) {
        self.label_names_ok &= other.label_names_ok;
        for s in &other.series {
            let text = &other.arena[s.start as usize..(s.start + s.len) as usize];
            self.push_canonical(text, s.value.clone(), s.line);
        }
    }

    /// Fills in what a summary or histogram series left out, as
    /// node_exporter and the Pushgateway serve it (Go's text encoder): a
    /// missing `_sum` or `_count` is 0, and a histogram without a `+Inf`
    /// bucket gets one equal to its count.
    pub fn complete_distributions(&mut self) {
        let histogram = self.kind == MetricType::Histogram;
        for s in &mut self.series {
            if let Value::Distribution(d) = &mut s.value {
                let count = *d.count.get_or_insert(0.0);
                d.sum.get_or_insert(0.0);
                if histogram && !d.points.iter().any(|(bound, _)| *bound == f64::INFINITY) {
                    d.points.push((f64::INFINITY, count));
                }
            }
        }
    }

    /// Sorts series by their label text, and quantiles and buckets by bound:
    /// the order [`render`](mod@render) writes and [`parse`](mod@parse) returns.
    pub fn canonicalize(&mut self) {
        for s in &mut self.series {
            if let Value::Distribution(d) = &mut s.value
                && !d.points.is_sorted_by(|a, b| a.0.total_cmp(&b.0).is_le())
            {
                d.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        let arena = self.arena.as_bytes();
        let text = |s: &Series| &arena[s.start as usize..(s.start + s.len) as usize];
        if self.series.is_sorted_by(|a, b| text(a) <= text(b)) {
            return;
        }
        // Label texts of one family tend to share a long start (`device="sd`,
        // say). Past it, eight bytes as a number order most pairs with one
        // comparison; the rest of the text decides between equal numbers.
        let first = text(&self.series[0]);
        let shared = self
            .series
            .iter()
            .map(|s| {
                first
                    .iter()
                    .zip(text(s))
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .min()
            .unwrap_or(0);
        self.series.sort_by_cached_key(|s| {
            let rest = &text(s)[shared..];
            let mut head = [0; 8];
            let n = rest.len().min(8);
            head[..n].copy_from_slice(&rest[..n]);
            (u64::from_be_bytes(head), rest)
        });
    }
}

impl PartialEq for Family {
    /// Families are equal when name, HELP, type and series (labels and
    /// values, in order) are; source lines and arena layout do not count.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.help == other.help
            && self.kind == other.kind
            && self.series.len() == other.series.len()
            && self
                .series()
                .zip(other.series())
                .all(|(a, b)| a.labels.as_text() == b.labels.as_text() && a.value == b.value)
    }
}

/// Labels merged into every series of a push, as the Pushgateway merges a
/// group's: each overriding one replaces a series' label of the same name
/// or is added, and each default (`instance=""`) is added where a series
/// has no label of its name.
#[derive(Debug, PartialEq, Eq)]
pub struct Injection {
    /// Sorted by name, one per name.
    labels: Vec<Injected>,
}

/// One label of an [`Injection`].
#[derive(Debug, PartialEq, Eq)]
struct Injected {
    name: String,
    /// Escaped.
    value: String,
    /// `name="value"`, as it is written.
    text: String,
    overrides: bool,
}

impl Injection {
    /// What no label is merged with: plain parsing.
    pub(crate) const NONE: Self = Self { labels: Vec::new() };

    /// The labels `set` override, `defaults` are added where absent. The
    /// first of a name wins, and `set` comes first.
    pub fn new(set: &[(&str, &str)], defaults: &[(&str, &str)]) -> Self {
        let mut labels: Vec<Injected> = Vec::new();
        let all = set.iter().map(|l| (l, true));
        for ((name, value), overrides) in all.chain(defaults.iter().map(|l| (l, false))) {
            if labels.iter().all(|l| l.name != *name) {
                let mut escaped = String::with_capacity(value.len());
                escape_label_value(&mut escaped, value);
                labels.push(Injected {
                    name: (*name).to_owned(),
                    text: format!("{name}=\"{escaped}\""),
                    value: escaped,
                    overrides,
                });
            }
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Self { labels }
    }

    /// Appends to `out` the canonical text of `existing` (a series' labels,
    /// sorted by name) with these labels merged in. Returns whether the
    /// merge may have lost information: whether it replaced a label, or met
    /// a default already set to its value, so that another label set could
    /// have given the same text.
    fn merge<'a>(&self, existing: impl Iterator<Item = Pair<'a>>, out: &mut String) -> bool {
        let mut lossy = false;
        let mut added = self.labels.iter();
        let mut next_added = added.next();
        let start = out.len();
        let comma = |out: &mut String| {
            if out.len() > start {
                out.push(',');
            }
        };
        for pair in existing {
            // The labels merged in that sort before this one go first.
            let mut merged = false;
            while let Some(label) = next_added {
                let order = cmp_names(pair.name, &label.name);
                if order.is_lt() {
                    break;
                }
                next_added = added.next();
                comma(out);
                if order.is_gt() {
                    out.push_str(&label.text);
                    continue;
                }
                lossy |= label.overrides || pair.raw == label.value;
                if label.overrides {
                    out.push_str(&label.text);
                } else {
                    pair.write(out);
                }
                merged = true;
                break;
            }
            if !merged {
                comma(out);
                pair.write(out);
            }
        }
        while let Some(label) = next_added {
            comma(out);
            out.push_str(&label.text);
            next_added = added.next();
        }
        lossy
    }

    /// The most a merge can add to a series' canonical text.
    fn longest_addition(&self) -> usize {
        self.labels.iter().map(|l| l.text.len() + 1).sum()
    }

    /// Whether every name merged in is a plain label name for `kind`, one
    /// [`validate`](mod@validate) need not look at again.
    fn names_are_plain(&self, kind: MetricType) -> bool {
        self.labels
            .iter()
            .all(|l| validate::is_plain_label_name(&l.name, kind))
    }
}

/// `a.cmp(b)` for label names, decided by the first bytes when they differ,
/// as they mostly do, without a call to `memcmp`: for names this short, the
/// call costs more than the comparison, and the parser makes several a line.
pub(crate) fn cmp_names(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// `a == b`, eight bytes at a time, without a call to `memcmp` (see
/// [`cmp_names`]): for names and label texts, which are mostly equal when
/// compared, and short.
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same_text`] for bytes: eight at a time, the last eight overlapping
/// the ones before, and four at a time below eight.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    let half =
        |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().expect("four bytes"));
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// A borrowed view of one series.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    /// Its labels.
    pub labels: Labels<'a>,
    /// Its value.
    pub value: &'a Value,
    /// The line it came from (its first line, for a distribution), or 0.
    pub line: u32,
}

/// A canonical label set: `a="x",b="y\n"` (sorted by name, values escaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels<'a>(&'a str);

impl<'a> Labels<'a> {
    /// The canonical text, without braces; empty for no labels.
    pub fn as_text(self) -> &'a str {
        self.0
    }

    /// Whether there are no labels.
    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    /// The `(name, value)` pairs in name order, values unescaped.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
        raw_pairs(self.0).map(|pair| (pair.name, unescape_label_value(pair.raw)))
    }

    /// The label names in order, without decoding any value.
    pub fn names(self) -> impl Iterator<Item = &'a str> {
        raw_pairs(self.0).map(|pair| pair.name)
    }

    /// The value of label `name`, if present.
    pub fn get(self, name: &str) -> Option<Cow<'a, str>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// One label of a series: its name, its escaped value, and the whole
/// `name="value"` when it is at hand in one piece, so that writing it is
/// one copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub name: &'a str,
    pub raw: &'a str,
    pub text: Option<&'a str>,
}

impl Pair<'_> {
    /// Appends `name="value"`.
    fn write(self, out: &mut String) {
        if let Some(text) = self.text {
            out.push_str(text);
        } else {
            out.push_str(self.name);
            out.push_str("=\"");
            out.push_str(self.raw);
            out.push('"');
        }
    }
}

/// The labels of canonical label text.
fn raw_pairs(text: &str) -> impl Iterator<Item = Pair<'_>> {
    let mut rest = text;
    std::iter::from_fn(move || {
        // Names never contain '=', so the first one ends the name; `="`
        // follows it in canonical text.
        let eq = rest.find('=')?;
        let (name, after) = (&rest[..eq], rest.get(eq + 2..)?);
        let bytes = after.as_bytes();
        let mut end = 0;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(bytes.len());
        let raw = &after[..end];
        let pair = Pair {
            name,
            raw,
            text: rest.get(..eq + 2 + end + 1),
        };
        rest = after.get(end + 1..).unwrap_or("");
        rest = rest.strip_prefix(',').unwrap_or(rest);
        Some(pair)
    })
}

/// Appends `value` escaped for a label value: `\`, `"` and newline.
pub fn escape_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Undoes [`escape_label_value`] on text already known to be well formed.
fn unescape_label_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
