//! Reads text format 0.0.4 into [`Family`]s with exactly the acceptance of
//! the Go `expfmt` text parser in node_exporter 1.5.0 and the Pushgateway
//! 1.5.1, plus refusals for the inputs that parser accepts but then drops,
//! rewrites or crashes on (ignored summary and histogram lines, duplicate
//! buckets, wrapped counts, timestamps, `gauge_histogram`, non-UTF-8 HELP).
//!
//! Pure: it reads a byte slice and allocates only the model it returns.
//! Errors carry the line, the column and the offending text.

use std::collections::HashMap;

mod cursor;
mod error;

pub use error::{ParseError, ParseErrorKind};

use self::cursor::{
    Cursor, lossy, read_help, read_label_value, timestamp_error, without_backslashes,
};
use super::float;
use super::{Distribution, Family, MetricType, Value};

/// Parses a whole exposition. Families come back in canonical order: sorted
/// by name, series sorted by labels, buckets and quantiles by bound.
pub fn parse(input: &[u8]) -> Result<Vec<Family>, ParseError> {
    Parser::default().run(input)
}

/// What a sample line's name means for the family it resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Count,
    Sum,
}

#[derive(Default)]
struct FamilyState {
    family: Option<Family>,
    help_line: bool,
    type_line: bool,
    type_set: bool,
    /// For summaries and histograms: canonical label text → series index.
    distributions: HashMap<Box<str>, usize>,
}

impl FamilyState {
    fn family(&mut self) -> &mut Family {
        self.family
            .as_mut()
            .expect("family state always holds a family")
    }
}

#[derive(Default)]
struct Parser<'a> {
    /// The last sample name resolved, which the next line usually repeats.
    last: Option<(&'a str, usize, Role)>,
    states: Vec<FamilyState>,
    by_name: HashMap<&'a str, usize>,
    labels: Vec<(&'a str, &'a str)>,
    text: String,
}

type Step<T = ()> = Result<T, (usize, ParseErrorKind)>;

/// The offset of the first `\n` in `haystack`.
///
/// On x86-64 this is memchr's SSE2 search, which every x86-64 CPU has.
/// memchr's default search first asks the CPU which vector units it has,
/// with a dozen CPUID instructions. In a virtual machine each one traps to
/// the hypervisor; together they took 0.1–0.2 ms of a 10-series
/// `promdrop push` on the benchmark machine. Lines are short, so wider
/// vectors would gain nothing here.
fn find_newline(haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse2) = memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        return sse2.find(haystack);
    }
    memchr::memchr(b'\n', haystack)
}

impl<'a> Parser<'a> {
    fn run(mut self, input: &'a [u8]) -> Result<Vec<Family>, ParseError> {
        // One check of the whole input instead of one per name and value;
        // past the first invalid byte, the cursor checks each value itself.
        let valid = match std::str::from_utf8(input) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default(),
        };
        let mut start = 0;
        let mut line_no: u32 = 0;
        while start < input.len() {
            line_no += 1;
            let (end, terminated) = match find_newline(&input[start..]) {
                Some(i) => (start + i, true),
                None => (input.len(), false),
            };
            let line = &input[start..end];
            let text = valid.get(start..end.min(valid.len())).unwrap_or_default();
            if !terminated && line.iter().all(|&b| b == b' ' || b == b'\t') {
                break;
            }
            let result = if line_no == 1 && line.starts_with(b"\xEF\xBB\xBF") {
                Err((0, ParseErrorKind::ByteOrderMark))
            } else {
                self.line(Cursor { line, text, pos: 0 }, line_no)
            };
            let result = match result {
                Ok(()) if !terminated => Err((line.len(), ParseErrorKind::UnexpectedEof)),
                Err((pos, _)) if !terminated && pos >= line.len() => {
                    Err((pos, ParseErrorKind::UnexpectedEof))
                }
                other => other,
            };
            if let Err((pos, kind)) = result {
                return Err(error_at(line, line_no, pos, kind));
            }
            start = end + 1;
        }
        self.finish().map_err(|(line, kind)| ParseError {
            line,
            column: 1,
            kind,
            crlf: false,
        })
    }

    fn line(&mut self, mut c: Cursor<'a>, line_no: u32) -> Step {
        c.skip_blanks();
        match c.peek() {
            None => Ok(()),
            Some(b'#') => {
                c.pos += 1;
                self.comment(&mut c, line_no)
            }
            Some(_) => self.sample(&mut c, line_no),
        }
    }

    fn comment(&mut self, c: &mut Cursor<'a>, line_no: u32) -> Step {
        c.skip_blanks();
        let keyword = match c.take_until_blank() {
            b"HELP" => "HELP",
            b"TYPE" => "TYPE",
            _ => return Ok(()),
        };
        if c.at_end() {
            return Ok(());
        }
        c.skip_blanks();
        let name = c.take_metric_name();
        if c.at_end() {
            return Ok(());
        }
        if !matches!(c.peek(), Some(b' ' | b'\t')) {
            return Err((
                c.pos,
                ParseErrorKind::InvalidMetricNameInComment {
                    keyword,
                    found: c.found(),
                },
            ));
        }
        let (index, _) = self.resolve(name, line_no);
        c.skip_blanks();
        if c.at_end() {
            return Ok(());
        }
        let state = &mut self.states[index];
        let metric = state.family().name().to_owned();
        if keyword == "HELP" {
            if state.help_line {
                return Err((c.pos, ParseErrorKind::SecondHelp { metric }));
            }
            let help = read_help(c, &metric)?;
            state.help_line = true;
            state.family().set_help(Some(help));
        } else {
            if state.type_set {
                return Err((c.pos, ParseErrorKind::SecondType { metric }));
            }
            let token = without_backslashes(&c.line[c.pos..]);
            let kind = match token.to_ascii_uppercase().as_str() {
                "COUNTER" => MetricType::Counter,
                "GAUGE" => MetricType::Gauge,
                "SUMMARY" => MetricType::Summary,
                "UNTYPED" => MetricType::Untyped,
                "HISTOGRAM" => MetricType::Histogram,
                "GAUGE_HISTOGRAM" => return Err((c.pos, ParseErrorKind::GaugeHistogram)),
                _ => return Err((c.pos, ParseErrorKind::UnknownType { token })),
            };
            state.type_line = true;
            state.type_set = true;
            state.family().kind = kind;
        }
        Ok(())
    }

    /// Go's `setOrCreateCurrentMF`: an exact family, else the summary or
    /// histogram this `_sum`/`_count`/`_bucket` belongs to, else a new one.
    fn resolve(&mut self, name: &'a str, line_no: u32) -> (usize, Role) {
        if let Some(&index) = self.by_name.get(name) {
            return (index, Role::Plain);
        }
        let parent = |suffix: &str| name.strip_suffix(suffix).filter(|base| !base.is_empty());
        let suffixes = [
            ("_count", Role::Count, true),
            ("_sum", Role::Sum, true),
            ("_bucket", Role::Plain, false),
        ];
        for wanted in [MetricType::Summary, MetricType::Histogram] {
            for (suffix, role, in_summary) in suffixes {
                if wanted == MetricType::Summary && !in_summary {
                    continue;
                }
                let Some(base) = parent(suffix) else { continue };
                if let Some(&index) = self.by_name.get(base) {
                    let state = &self.states[index];
                    if state.family.as_ref().is_some_and(|f| f.kind() == wanted) {
                        return (index, role);
                    }
                }
            }
        }
        let mut family = Family::new(name, MetricType::Untyped);
        family.line = line_no;
        self.states.push(FamilyState {
            family: Some(family),
            ..FamilyState::default()
        });
        self.by_name.insert(name, self.states.len() - 1);
        (self.states.len() - 1, Role::Plain)
    }

    fn sample(&mut self, c: &mut Cursor<'a>, line_no: u32) -> Step {
        let name_pos = c.pos;
        let name = c.take_metric_name();
        if name.is_empty() {
            return Err((
                c.pos,
                ParseErrorKind::InvalidMetricName { found: c.found() },
            ));
        }
        let (index, role) = match self.last {
            Some((last, index, role)) if last == name => (index, role),
            _ => self.resolve(name, line_no),
        };
        self.last = Some((name, index, role));
        let state = &mut self.states[index];
        state.type_set = true;
        let family = state
            .family
            .as_ref()
            .expect("family state always holds a family");
        let kind = family.kind();
        // The family is named `name` or, for a `_sum`, `_count` or
        // `_bucket` line, a prefix of it: borrow it from the line.
        let metric = &name[..family.name().len()];
        debug_assert_eq!(metric, family.name());
        c.skip_blanks();
        self.labels.clear();
        let mut bound = None;
        if c.peek() == Some(b'{') {
            c.pos += 1;
            bound = self.read_labels(c, kind, metric)?;
            c.skip_blanks();
        }
        let value_pos = c.pos;
        let token = c.take_until_blank();
        let value = float::parse(token).ok_or_else(|| {
            (
                value_pos,
                ParseErrorKind::InvalidValue {
                    token: lossy(token),
                },
            )
        })?;
        if !c.at_end() {
            return Err(timestamp_error(c));
        }
        self.canonical_text();
        let state = &mut self.states[index];
        if self.labels.iter().any(|(name, _)| name.starts_with("__")) {
            // Read, but refused later by validate: it must look at them.
            state.family().label_names_ok = false;
        }
        if !kind.is_distribution() {
            let text = std::mem::take(&mut self.text);
            state
                .family()
                .push_canonical(&text, Value::Single(value), line_no);
            self.text = text;
            return Ok(());
        }
        // A series' lines are usually together: try the last one before
        // hashing.
        let last = state.family().len().checked_sub(1);
        let series = if let Some(series) =
            last.filter(|&last| state.family().labels_at(last) == self.text.as_str())
        {
            series
        } else if let Some(&series) = state.distributions.get(self.text.as_str()) {
            series
        } else {
            let series = state.family().push_canonical(
                &self.text,
                Value::Distribution(Box::default()),
                line_no,
            );
            state
                .distributions
                .insert(self.text.as_str().into(), series);
            series
        };
        let Value::Distribution(d) = state.family().value_mut(series) else {
            unreachable!("summary and histogram series always hold a distribution");
        };
        record(d, kind, role, name, metric, value, bound, token).map_err(|kind| (name_pos, kind))
    }

    /// Reads `{...}` up to and including the closing brace; returns the
    /// `quantile` (summary) or `le` (histogram) value, which is not a label.
    fn read_labels(
        &mut self,
        c: &mut Cursor<'a>,
        kind: MetricType,
        metric: &str,
    ) -> Step<Option<(f64, String)>> {
        let mut bound = None;
        loop {
            c.skip_blanks();
            if c.peek() == Some(b'}') {
                c.pos += 1;
                return Ok(bound);
            }
            let name_pos = c.pos;
            let label = c.take_label_name();
            if label.is_empty() {
                let found = c.found();
                return Err((
                    c.pos,
                    ParseErrorKind::InvalidLabelName {
                        metric: metric.into(),
                        found,
                    },
                ));
            }
            c.skip_blanks();
            if c.peek() != Some(b'=') {
                let found = c.found();
                return Err((
                    c.pos,
                    ParseErrorKind::ExpectedEquals {
                        label: label.into(),
                        found,
                    },
                ));
            }
            c.pos += 1;
            if label == "__name__" {
                return Err((name_pos, ParseErrorKind::ReservedLabelName));
            }
            let special = matches!(
                (kind, label),
                (MetricType::Summary, "quantile") | (MetricType::Histogram, "le")
            );
            let duplicate = if special {
                bound.is_some()
            } else {
                self.labels.iter().any(|(n, _)| *n == label)
            };
            if duplicate {
                let kind = ParseErrorKind::DuplicateLabelName {
                    metric: metric.into(),
                    label: label.into(),
                };
                return Err((name_pos, kind));
            }
            c.skip_blanks();
            if c.peek() != Some(b'"') {
                let found = c.found();
                return Err((
                    c.pos,
                    ParseErrorKind::ExpectedQuote {
                        label: label.into(),
                        found,
                    },
                ));
            }
            c.pos += 1;
            let raw = read_label_value(c)?;
            if special {
                let decoded = super::unescape_label_value(raw).into_owned();
                let label = if kind == MetricType::Summary {
                    "quantile"
                } else {
                    "le"
                };
                let value = float::parse(decoded.as_bytes()).ok_or_else(|| {
                    (
                        c.pos,
                        ParseErrorKind::InvalidBound {
                            label,
                            value: decoded.clone(),
                        },
                    )
                })?;
                bound = Some((value, decoded));
            } else {
                self.labels.push((label, raw));
            }
            c.skip_blanks();
            match c.peek() {
                Some(b',') => c.pos += 1,
                Some(b'}') => {
                    c.pos += 1;
                    return Ok(bound);
                }
                _ => {
                    let kind = ParseErrorKind::UnexpectedEndOfLabelValue {
                        value: raw.into(),
                        found: c.found(),
                    };
                    return Err((c.pos, kind));
                }
            }
        }
    }

    /// Sorts the line's labels by name and writes their canonical text.
    fn canonical_text(&mut self) {
        if !self.labels.is_sorted_by(|a, b| a.0 <= b.0) {
            self.labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        self.text.clear();
        for (i, (name, raw)) in self.labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(name);
            self.text.push_str("=\"");
            self.text.push_str(raw);
            self.text.push('"');
        }
    }

    fn finish(self) -> Result<Vec<Family>, (u32, ParseErrorKind)> {
        let mut families = Vec::with_capacity(self.states.len());
        let populated: HashMap<&str, usize> = self
            .states
            .iter()
            .filter_map(|s| s.family.as_ref())
            .filter(|f| !f.is_empty())
            .map(|f| (f.name(), f.len()))
            .collect();
        for state in &self.states {
            let Some(family) = &state.family else {
                continue;
            };
            if !family.is_empty() {
                continue;
            }
            let sibling = ["_total", "_bucket", "_count", "_sum", "_created", "_info"]
                .iter()
                .map(|suffix| format!("{}{suffix}", family.name()))
                .find(|candidate| populated.contains_key(candidate.as_str()));
            if let Some(sibling) = sibling {
                let keyword = if state.type_line { "TYPE" } else { "HELP" };
                let metric = family.name().to_owned();
                return Err((
                    family.line,
                    ParseErrorKind::OrphanDeclaration {
                        keyword,
                        metric,
                        sibling,
                    },
                ));
            }
        }
        for state in self.states {
            if let Some(mut family) = state.family.filter(|f| !f.is_empty()) {
                family.canonicalize();
                families.push(family);
            }
        }
        families.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(families)
    }
}

/// Stores one summary or histogram line in its series.
#[allow(clippy::too_many_arguments)]
fn record(
    d: &mut Distribution,
    kind: MetricType,
    role: Role,
    name: &str,
    metric: &str,
    value: f64,
    bound: Option<(f64, String)>,
    token: &[u8],
) -> Result<(), ParseErrorKind> {
    let check_count = |v: f64| {
        // 2^64: node_exporter converts counts to uint64.
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0 {
            Ok(())
        } else {
            Err(ParseErrorKind::BadCount {
                name: name.into(),
                token: lossy(token),
            })
        }
    };
    match role {
        Role::Count => {
            check_count(value)?;
            if d.count.replace(value).is_some() {
                return Err(ParseErrorKind::DuplicateSumOrCount { name: name.into() });
            }
        }
        Role::Sum => {
            if d.sum.replace(value).is_some() {
                return Err(ParseErrorKind::DuplicateSumOrCount { name: name.into() });
            }
        }
        Role::Plain => {
            let label = if kind == MetricType::Summary {
                "quantile"
            } else {
                "le"
            };
            let Some((at, spelled)) = bound else {
                return Err(if kind == MetricType::Summary {
                    ParseErrorKind::SummaryWithoutQuantile {
                        metric: metric.into(),
                    }
                } else {
                    ParseErrorKind::HistogramWithoutLe {
                        name: name.into(),
                        metric: metric.into(),
                    }
                });
            };
            if at.is_nan() {
                return Err(ParseErrorKind::NanBound {
                    label,
                    metric: metric.into(),
                });
            }
            if d.points.iter().any(|(seen, _)| *seen == at) {
                return Err(ParseErrorKind::DuplicateBound {
                    label,
                    bound: spelled,
                    metric: metric.into(),
                });
            }
            if kind == MetricType::Histogram {
                check_count(value)?;
            }
            d.points.push((at, value));
        }
    }
    Ok(())
}

fn error_at(line: &[u8], line_no: u32, pos: usize, kind: ParseErrorKind) -> ParseError {
    let pos = pos.min(line.len());
    let column = String::from_utf8_lossy(&line[..pos]).chars().count() as u32 + 1;
    ParseError {
        line: line_no,
        column,
        kind,
        crlf: line.ends_with(b"\r"),
    }
}
