//! The status page, `GET /`: one self-contained HTML page, no JavaScript
//! and no external assets, listing every group with its last push, age,
//! TTL left, series and last refused push, plus keys whose pushes were
//! refused before any succeeded. Pure: it takes the data and returns the
//! page; the handler gathers the data. Every text that comes from a client
//! or from the directory passes through [`escape`].

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::duration::{human, timestamp};
use crate::grouping_key::GroupingKey;
use crate::store::{GroupInfo, Skipped, Snapshot};

use super::failures::Failure;

/// The page's Content-Security-Policy: its own inline style and nothing
/// else, so that even a value that escaped escaping could not run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

const STYLE: &str = "\
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin: 0 0 .2em; font-size: 1.6em; }
h2 { margin: 1.5em 0 .5em; font-size: 1.2em; }
p.meta { margin: 0 0 1em; color: #555; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .7em; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f4f4f4; }
td:first-child { white-space: normal; }
td.num { text-align: right; }
tr.refused td:first-child { border-left: 4px solid #c33; }
.nodata, .none { color: #888; }
.message { white-space: pre-wrap; color: #a22; }
";

/// One line of the page: a key with its group, its last refused push, or
/// both.
#[derive(Debug, Clone)]
pub struct Row {
    /// The grouping key.
    pub key: GroupingKey,
    /// The group as stored; `None` when only a refused push is known.
    pub group: Option<Arc<Snapshot>>,
    /// The last refused push to the key, if remembered.
    pub failure: Option<Failure>,
}

/// The stored groups and the remembered failures, joined by key and
/// sorted by file name, as `promdrop list` sorts.
pub fn rows(groups: Vec<GroupInfo>, failures: Vec<(GroupingKey, Failure)>) -> Vec<Row> {
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|info| Row {
            key: info.group.key.clone(),
            group: Some(info.group),
            failure: None,
        })
        .collect();
    for (key, failure) in failures {
        match rows.iter_mut().find(|row| row.key == key) {
            Some(row) => row.failure = Some(failure),
            None => rows.push(Row {
                key,
                group: None,
                failure: Some(failure),
            }),
        }
    }
    rows.sort_by_cached_key(|row| row.key.file_name());
    rows
}

/// The page for the groups of `dir`, as of `now`.
pub fn render(dir: &Path, rows: &[Row], skipped: &[Skipped], now: SystemTime) -> String {
    let groups = rows.iter().filter(|row| row.group.is_some()).count();
    let mut page = String::with_capacity(2048 + rows.len() * 512);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str("<title>promdrop</title>\n<style>\n");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<h1>promdrop</h1>\n");
    let _ = writeln!(
        page,
        "<p class=\"meta\">Serving <code>{}</code> &middot; {groups} group{} &middot; promdrop {}</p>",
        escape(&dir.display().to_string()),
        if groups == 1 { "" } else { "s" },
        escape(env!("CARGO_PKG_VERSION")),
    );
    if rows.is_empty() {
        page.push_str("<p class=\"none\">No groups yet.</p>\n");
    } else {
        page.push_str(
            "<table>\n<thead><tr><th>Group</th><th>Last push (UTC)</th><th>Age</th>\
             <th>TTL left</th><th>Series</th><th>Last refused push</th></tr></thead>\n<tbody>\n",
        );
        for row in rows {
            render_row(&mut page, row, now);
        }
        page.push_str("</tbody>\n</table>\n");
    }
    if !skipped.is_empty() {
        page.push_str(
            "<h2>Files not served</h2>\n<table>\n<thead><tr><th>File</th><th>Why</th></tr></thead>\n<tbody>\n",
        );
        for file in skipped {
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(&file.file),
                escape(&file.reason.to_string())
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn render_row(page: &mut String, row: &Row, now: SystemTime) {
    let class = if row.failure.is_some() {
        " class=\"refused\""
    } else {
        ""
    };
    let _ = write!(page, "<tr{class}><td>{}</td>", key_cell(&row.key));
    match &row.group {
        Some(group) => {
            let pushed = group.pushed_at();
            let age = group.age(now);
            let ttl_left = match (group.ttl, age) {
                (None, _) => "none".to_owned(),
                (Some(_), _) if group.expired(now) => "expired".to_owned(),
                (Some(ttl), Some(age)) => human(ttl.saturating_sub(age)),
                (Some(ttl), None) => human(ttl),
            };
            let _ = write!(
                page,
                "<td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>",
                escape(&pushed.map_or_else(|| "-".to_owned(), timestamp)),
                escape(&age.map_or_else(|| "-".to_owned(), human)),
                escape(&ttl_left),
                group.series(),
            );
        }
        None => page.push_str(
            "<td class=\"nodata\">no data</td><td>-</td><td>-</td><td class=\"num\">-</td>",
        ),
    }
    match &row.failure {
        Some(failure) => {
            let at = chrono::DateTime::<chrono::Utc>::from(failure.at)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let _ = writeln!(
                page,
                "<td><time>{}</time><div class=\"message\">{}</div></td></tr>",
                escape(&at),
                escape(&failure.message),
            );
        }
        None => page.push_str("<td class=\"none\">none</td></tr>\n"),
    }
}

/// `job="backup" instance="db1"`, each pair in a `<code>`, escaped.
fn key_cell(key: &GroupingKey) -> String {
    std::iter::once(("job", key.job()))
        .chain(key.labels())
        .map(|(name, value)| {
            format!(
                "<code>{}=&quot;{}&quot;</code>",
                escape(name),
                escape(&label_value(value))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A label value as the text format writes it: `\`, `"` and newlines
/// escaped, so that the pairs read unambiguously.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::{Row, escape, render, rows};
    use crate::exposition::{Family, MetricType, Value};
    use crate::grouping_key::GroupingKey;
    use crate::server::failures::Failure;
    use crate::store::{Group, GroupInfo, Snapshot};

    fn key(job: &str, labels: &[(&str, &str)]) -> GroupingKey {
        GroupingKey::of(job, labels)
    }

    fn group(key: GroupingKey, pushed: f64, ttl: Option<u64>, series: usize) -> Arc<Snapshot> {
        let mut families = Vec::new();
        let mut pushed_family = Family::new("push_time_seconds", MetricType::Gauge);
        pushed_family.push::<&str, &str>(&[], Value::Single(pushed));
        families.push(pushed_family);
        let mut metric = Family::new("m", MetricType::Gauge);
        for i in 0..series {
            metric.push(&[("i", i.to_string())], Value::Single(1.0));
        }
        families.push(metric);
        Arc::new(Snapshot::of(Group {
            key,
            ttl: ttl.map(Duration::from_secs),
            families,
        }))
    }

    fn failure(seconds: u64, message: &str) -> Failure {
        Failure {
            at: UNIX_EPOCH + Duration::from_secs(seconds),
            message: message.into(),
        }
    }

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn every_client_text_is_escaped() {
        let evil = "<script>alert('x')</script>";
        let rows = [Row {
            key: key(evil, &[("path", "/a\"b&<i>")]),
            group: Some(group(key(evil, &[]), 1_700_000_000.0, None, 1)),
            failure: Some(failure(1_700_000_100, "bad <b>body</b> & \"more\"")),
        }];
        let page = render(
            Path::new("/srv/<dir>"),
            &rows,
            &[],
            UNIX_EPOCH + Duration::from_secs(1_700_000_192),
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>") && !page.contains("<i>"), "{page}");
        assert!(
            page.contains(
                "<code>job=&quot;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;</code> \
             <code>path=&quot;/a\\&quot;b&amp;&lt;i&gt;&quot;</code>"
            ),
            "{page}"
        );
        assert!(
            page.contains("bad &lt;b&gt;body&lt;/b&gt; &amp; &quot;more&quot;"),
            "{page}"
        );
        assert!(page.contains("<code>/srv/&lt;dir&gt;</code>"), "{page}");
    }

    #[test]
    fn a_group_row_shows_push_age_ttl_and_series() {
        let k = key("backup", &[("instance", "db1")]);
        let rows = [Row {
            key: k.clone(),
            group: Some(group(k, 1_700_000_000.0, Some(3600), 3)),
            failure: None,
        }];
        let page = render(
            Path::new("/d"),
            &rows,
            &[],
            UNIX_EPOCH + Duration::from_secs(1_700_000_192),
        );
        assert!(page.contains(
            "<tr><td><code>job=&quot;backup&quot;</code> <code>instance=&quot;db1&quot;</code></td>\
             <td>2023-11-14T22:13:20Z</td><td>3m12s</td><td>56m48s</td><td class=\"num\">3</td>\
             <td class=\"none\">none</td></tr>\n"
        ), "{page}");
        assert!(
            page.contains("Serving <code>/d</code> &middot; 1 group &middot; promdrop "),
            "{page}"
        );
        assert!(page.contains("<title>promdrop</title>"), "{page}");
        assert!(!page.contains("<script"), "{page}");
        let expired = render(
            Path::new("/d"),
            &rows,
            &[],
            UNIX_EPOCH + Duration::from_secs(1_700_004_000),
        );
        assert!(
            expired.contains("<td>1h6m</td><td>expired</td>"),
            "{expired}"
        );
    }

    #[test]
    fn a_refused_push_without_data_gets_a_row() {
        let rows = [Row {
            key: key("nightly", &[]),
            group: None,
            failure: Some(failure(
                1_700_000_000,
                "text format parsing error in line 1: unexpected end of input",
            )),
        }];
        let page = render(Path::new("/d"), &rows, &[], UNIX_EPOCH);
        assert!(
            page.contains(
                "<tr class=\"refused\"><td><code>job=&quot;nightly&quot;</code></td>\
             <td class=\"nodata\">no data</td><td>-</td><td>-</td><td class=\"num\">-</td>\
             <td><time>2023-11-14T22:13:20Z</time><div class=\"message\">\
             text format parsing error in line 1: unexpected end of input</div></td></tr>\n"
            ),
            "{page}"
        );
        assert!(page.contains("&middot; 0 groups &middot;"), "{page}");
    }

    #[test]
    fn rows_join_by_key_and_sort_like_list() {
        let info = |k: GroupingKey| GroupInfo {
            file: k.file_name(),
            group: group(k, 1.0, None, 1),
        };
        let joined = rows(
            vec![info(key("b", &[])), info(key("d", &[]))],
            vec![
                (key("d", &[]), failure(5, "refused")),
                (key("a", &[("x", "1")]), failure(6, "never stored")),
                (key("c", &[]), failure(7, "never stored")),
            ],
        );
        let seen: Vec<(String, bool, bool)> = joined
            .iter()
            .map(|r| (r.key.to_string(), r.group.is_some(), r.failure.is_some()))
            .collect();
        assert_eq!(
            seen,
            [
                ("{job=\"a\",x=\"1\"}".to_owned(), false, true),
                ("{job=\"b\"}".to_owned(), true, false),
                ("{job=\"c\"}".to_owned(), false, true),
                ("{job=\"d\"}".to_owned(), true, true),
            ]
        );
    }

    #[test]
    fn no_groups_at_all() {
        let page = render(Path::new("/d"), &[], &[], UNIX_EPOCH);
        assert!(page.contains("0 groups"), "{page}");
        assert!(page.contains("No groups yet."), "{page}");
        assert!(!page.contains("<table"), "{page}");
    }
}
