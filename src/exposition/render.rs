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
    let mut buf = String::with_capacity(CHUNK + 1024);
    for family in families {
        render_family(family, &mut buf, out)?;
    }
    out.write_all(buf.as_bytes())
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

fn render_family(family: &Family, buf: &mut String, out: &mut impl io::Write) -> io::Result<()> {
    if family.is_empty() {
        return Ok(());
    }
    let name = family.name();
    if let Some(help) = family.help() {
        buf.push_str("# HELP ");
        buf.push_str(name);
        buf.push(' ');
        escape_help(buf, help);
        buf.push('\n');
    }
    buf.push_str("# TYPE ");
    buf.push_str(name);
    buf.push(' ');
    buf.push_str(family.kind().as_str());
    buf.push('\n');
    let (points_suffix, bound_label) = if family.kind() == MetricType::Summary {
        ("", "quantile")
    } else {
        ("_bucket", "le")
    };
    for series in family.series() {
        let labels = series.labels.as_text();
        match series.value {
            Value::Single(v) => line(buf, name, "", labels, None, *v),
            Value::Distribution(d) => {
                for &(bound, v) in &d.points {
                    line(
                        buf,
                        name,
                        points_suffix,
                        labels,
                        Some((bound_label, bound)),
                        v,
                    );
                }
                if let Some(sum) = d.sum {
                    line(buf, name, "_sum", labels, None, sum);
                }
                if let Some(count) = d.count {
                    line(buf, name, "_count", labels, None, count);
                }
            }
        }
        if buf.len() >= CHUNK {
            out.write_all(buf.as_bytes())?;
            buf.clear();
        }
    }
    Ok(())
}

fn line(
    buf: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    bound: Option<(&str, f64)>,
    value: f64,
) {
    buf.push_str(name);
    buf.push_str(suffix);
    if !labels.is_empty() || bound.is_some() {
        buf.push('{');
        buf.push_str(labels);
        if let Some((label, at)) = bound {
            if !labels.is_empty() {
                buf.push(',');
            }
            buf.push_str(label);
            buf.push_str("=\"");
            number(buf, at);
            buf.push('"');
        }
        buf.push('}');
    }
    buf.push(' ');
    number(buf, value);
    buf.push('\n');
}

/// A value or bound as Go's text encoder writes it: [`float::write`], but a
/// negative zero is `0`, as node_exporter and the Pushgateway print it.
fn number(buf: &mut String, value: f64) {
    if value == 0.0 {
        buf.push('0');
    } else {
        float::write(buf, value);
    }
}

/// HELP escaping as node_exporter 1.5.0 reads it: `\` and newline only.
fn escape_help(buf: &mut String, help: &str) {
    if !help.contains(['\\', '\n']) {
        buf.push_str(help);
        return;
    }
    for c in help.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            c => buf.push(c),
        }
    }
}
