//! Writes [`Family`]s as canonical text format 0.0.4: one `# HELP` (when
//! there is one) and one `# TYPE` per family, families in the order given,
//! labels sorted, `le`/`quantile` last, values in Go's spelling, LF endings.
//!
//! What this writes, [`parse`](super::parse::parse) reads back to an equal
//! model; the round-trip property test pins that.

use std::io;

use super::{Family, MetricType, Value, float};

/// Flush to the writer in chunks of about this size.
const CHUNK: usize = 64 * 1024;

/// Renders `families` into `out`. Families without series are skipped, as
/// a parser would drop them anyway.
pub fn render(families: &[Family], out: &mut impl io::Write) -> io::Result<()> {
    render_after(b"", families, out)
}

/// [`render`], after `head` (a file's first line, say), which goes out with
/// the first chunk: a small file is one write.
pub fn render_after(head: &[u8], families: &[Family], out: &mut impl io::Write) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK + 1024);
    buf.extend_from_slice(head);
    for family in families {
        render_family(family, &mut buf, out)?;
    }
    out.write_all(&buf)
}

/// Renders into a new string.
///
/// # Panics
///
/// Never: writing to memory cannot fail and rendered text is UTF-8.
pub fn to_string(families: &[Family]) -> String {
    let mut out = Vec::new();
    render(families, &mut out).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("rendered text is UTF-8")
}

fn render_family(family: &Family, buf: &mut Vec<u8>, out: &mut impl io::Write) -> io::Result<()> {
    if family.is_empty() {
        return Ok(());
    }
    let name = family.name();
    if let Some(help) = family.help() {
        buf.extend_from_slice(b"# HELP ");
        buf.extend_from_slice(name.as_bytes());
        buf.push(b' ');
        escape_help(buf, help);
        buf.push(b'\n');
    }
    buf.extend_from_slice(b"# TYPE ");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(family.kind().as_str().as_bytes());
    buf.push(b'\n');
    let (points_suffix, bound_label) = if family.kind() == MetricType::Summary {
        ("", "quantile")
    } else {
        ("_bucket", "le")
    };
    let mut bounds = Bounds::default();
    let mut head = Vec::new();
    for series in family.series() {
        let labels = series.labels.as_text();
        match series.value {
            Value::Single(v) => line(buf, name, "", labels, *v),
            Value::Distribution(d) => {
                // The lines of a series' points are alike up to the bound.
                head.clear();
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(points_suffix.as_bytes());
                head.push(b'{');
                head.extend_from_slice(labels.as_bytes());
                if !labels.is_empty() {
                    head.push(b',');
                }
                head.extend_from_slice(bound_label.as_bytes());
                head.extend_from_slice(b"=\"");
                for (at, &(bound, v)) in d.points.iter().enumerate() {
                    buf.extend_from_slice(&head);
                    buf.extend_from_slice(bounds.spell(at, bound));
                    buf.extend_from_slice(b"\"} ");
                    number(buf, v);
                    buf.push(b'\n');
                }
                if let Some(sum) = d.sum {
                    line(buf, name, "_sum", labels, sum);
                }
                if let Some(count) = d.count {
                    line(buf, name, "_count", labels, count);
                }
            }
        }
        if buf.len() >= CHUNK {
            out.write_all(buf)?;
            buf.clear();
        }
    }
    Ok(())
}

/// A sample line without a bound: a single value, a `_sum` or a `_count`.
fn line(buf: &mut Vec<u8>, name: &str, suffix: &str, labels: &str, value: f64) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(suffix.as_bytes());
    if !labels.is_empty() {
        buf.push(b'{');
        buf.extend_from_slice(labels.as_bytes());
        buf.push(b'}');
    }
    buf.push(b' ');
    number(buf, value);
    buf.push(b'\n');
}

/// The spelling of each bound of the series written last, by position: the
/// series of one summary or histogram mostly have the same quantiles or
/// buckets, and each is spelled once and then copied.
#[derive(Default)]
struct Bounds {
    text: Vec<u8>,
    /// `(bits of the bound, start, end)` of each position's spelling.
    spans: Vec<(u64, usize, usize)>,
}

impl Bounds {
    /// The spelling of `bound`, the bound at position `at` of a series,
    /// where the positions before it were asked for first.
    fn spell(&mut self, at: usize, bound: f64) -> &[u8] {
        let bits = bound.to_bits();
        if let Some(&(known, start, end)) = self.spans.get(at)
            && known == bits
        {
            return &self.text[start..end];
        }
        let start = self.text.len();
        number(&mut self.text, bound);
        let span = (bits, start, self.text.len());
        if let Some(old) = self.spans.get_mut(at) {
            *old = span;
        } else {
            self.spans.push(span);
        }
        &self.text[start..span.2]
    }
}

/// A value or bound as Go's text encoder writes it: [`float::write`], but a
/// negative zero is `0`, as node_exporter and the Pushgateway print it.
fn number(buf: &mut Vec<u8>, value: f64) {
    if value == 0.0 {
        buf.push(b'0');
    } else {
        float::write(buf, value);
    }
}

/// HELP escaping as node_exporter 1.5.0 reads it: `\` and newline only.
fn escape_help(buf: &mut Vec<u8>, help: &str) {
    if !help.contains(['\\', '\n']) {
        buf.extend_from_slice(help.as_bytes());
        return;
    }
    // Both escaped characters are ASCII, which never occurs inside the
    // UTF-8 encoding of another character: the bytes can be copied one by
    // one.
    for &b in help.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b => buf.push(b),
        }
    }
}
