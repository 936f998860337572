//! A group file as its readers need it (`list`, the status page, scrapes):
//! the facts of its header and push times, and its families rendered once
//! as text. A long-lived store keeps one snapshot per file version, so a
//! scrape copies text instead of merging and rendering parsed families, and
//! a stored series costs about the bytes of its line.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use crate::exposition::parse::parse;
use crate::exposition::render::render;
use crate::exposition::{Family, MetricType};
use crate::grouping_key::GroupingKey;

use super::{Group, seconds};

/// A group as read from its file; see the module documentation.
#[derive(Debug)]
pub struct Snapshot {
    /// The grouping key, from the header.
    pub key: GroupingKey,
    /// Time to live after the last push.
    pub ttl: Option<Duration>,
    pushed_at: Option<f64>,
    failed_at: Option<f64>,
    series: usize,
    /// Series of every family, the push times included.
    served: usize,
    families: Rendered,
}

/// Families rendered once, back to back in one string, each findable by
/// name with its HELP and TYPE.
#[derive(Debug)]
pub struct Rendered {
    text: Box<str>,
    families: Box<[FamilyText]>,
}

/// Where one family stands in [`Rendered`]'s text.
#[derive(Debug)]
struct FamilyText {
    name: Box<str>,
    kind: MetricType,
    help: Option<Box<str>>,
    /// The whole family, HELP and TYPE lines included.
    all: Range<usize>,
    /// Only its sample lines.
    samples: Range<usize>,
}

/// One family of [`Rendered`], as text.
#[derive(Debug, Clone, Copy)]
pub struct RenderedFamily<'a> {
    /// The metric name.
    pub name: &'a str,
    /// Its type.
    pub kind: MetricType,
    /// Its HELP text, unescaped.
    pub help: Option<&'a str>,
    /// The family's lines: HELP (if any), TYPE and samples.
    pub text: &'a str,
    /// Only the sample lines, for appending to the same family of another
    /// group.
    pub samples: &'a str,
}

impl Rendered {
    /// Renders `families`, in their order, summaries and histograms
    /// completed as node_exporter and the Pushgateway serve them
    /// ([`Family::complete_distributions`]).
    ///
    /// # Panics
    ///
    /// Never: writing to memory cannot fail and rendered text is UTF-8.
    pub fn new(families: Vec<Family>) -> Self {
        let mut text = Vec::new();
        let mut spans = Vec::with_capacity(families.len());
        for mut family in families {
            if family.is_empty() {
                continue;
            }
            family.complete_distributions();
            family.canonicalize();
            let start = text.len();
            render(std::slice::from_ref(&family), &mut text)
                .expect("rendering to memory cannot fail");
            // Sample lines never start with '#': the leading comment lines
            // are the HELP and TYPE.
            let mut samples = start;
            while text[samples..].starts_with(b"# ") {
                samples += text[samples..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(text.len() - samples, |n| n + 1);
            }
            spans.push(FamilyText {
                name: family.name().into(),
                kind: family.kind(),
                help: family.help().map(Box::from),
                all: start..text.len(),
                samples: samples..text.len(),
            });
        }
        let text = String::from_utf8(text).expect("rendered text is UTF-8");
        Self {
            text: text.into_boxed_str(),
            families: spans.into_boxed_slice(),
        }
    }

    /// The families, in their order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RenderedFamily<'_>> {
        self.families.iter().map(|f| RenderedFamily {
            name: &f.name,
            kind: f.kind,
            help: f.help.as_deref(),
            text: &self.text[f.all.clone()],
            samples: &self.text[f.samples.clone()],
        })
    }

    /// The length of the text.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether there is no text (no family with series).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl Snapshot {
    /// Reads the facts of `group` and renders its families.
    pub fn of(group: Group) -> Self {
        Self {
            pushed_at: group.pushed_at(),
            failed_at: group.single_value("push_failure_time_seconds"),
            series: group.series(),
            served: group.families.iter().map(Family::len).sum(),
            families: Rendered::new(group.families),
            key: group.key,
            ttl: group.ttl,
        }
    }

    /// The value of `push_time_seconds`, if present.
    pub fn pushed_at(&self) -> Option<f64> {
        self.pushed_at
    }

    /// The value of `push_failure_time_seconds`, if present.
    pub fn failed_at(&self) -> Option<f64> {
        self.failed_at
    }

    /// Time since the last push, never negative; `None` without a push time.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        Duration::try_from_secs_f64((seconds(now) - self.pushed_at?).max(0.0)).ok()
    }

    /// Number of series, not counting the push times.
    pub fn series(&self) -> usize {
        self.series
    }

    /// Number of series, the push times included: what a scrape serves.
    pub fn served_series(&self) -> usize {
        self.served
    }

    /// Whether the TTL has run out at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        super::expired(self.ttl, self.pushed_at, now)
    }

    /// The families as text, sorted by name.
    pub fn rendered(&self) -> &Rendered {
        &self.families
    }

    /// The families, parsed back from the text (for the JSON API, which
    /// needs every value), the push times included.
    ///
    /// # Panics
    ///
    /// Never: what the renderer writes, the parser reads back.
    pub fn families(&self) -> Vec<Family> {
        parse(self.families.text.as_bytes()).expect("rendered text parses")
    }
}

#[cfg(test)]
mod tests {
    use super::Rendered;
    use crate::exposition::parse::parse;

    #[test]
    fn each_family_splits_into_its_header_and_its_samples() {
        let text = "# HELP a Two\\nlines.\n# TYPE a counter\na 1\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_count 3\nh_sum 4\n\
                    # TYPE u untyped\nu{x=\"# y\"} 5\n";
        let rendered = Rendered::new(parse(text.as_bytes()).unwrap());
        let families: Vec<_> = rendered.iter().collect();
        assert_eq!(families.len(), 3);
        assert_eq!(
            (families[0].name, families[0].help),
            ("a", Some("Two\nlines."))
        );
        assert_eq!(families[0].samples, "a 1\n");
        assert!(
            families[0]
                .text
                .starts_with("# HELP a Two\\nlines.\n# TYPE a counter\n")
        );
        // The +Inf bucket a scrape serves is added.
        assert_eq!(
            families[1].samples,
            "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 3\n"
        );
        assert_eq!(families[2].samples, "u{x=\"# y\"} 5\n");
        let whole: String = families.iter().map(|f| f.text).collect();
        assert_eq!(whole.len(), rendered.len());
        assert_eq!(parse(whole.as_bytes()).unwrap().len(), 3);
    }
}
