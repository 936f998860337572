//! Table tests for every parse and validation rule, with the exact message,
//! and the round-trip property `parse(render(x)) == x`.

use std::fmt::Write as _;
use std::sync::Arc;

use proptest::prelude::*;

use super::parse::{parse, parse_injected};
use super::render::to_string;
use super::validate::{Source, validate};
use super::{Distribution, Family, Injection, MetricType, Value};

fn injection(set: &[(&str, &str)], defaults: &[(&str, &str)]) -> Arc<Injection> {
    Arc::new(Injection::new(set, defaults))
}

/// Parses `input` and returns the canonical rendering, or `line:col: message`.
fn outcome(input: &str) -> String {
    match parse(input.as_bytes()) {
        Ok(families) => to_string(&families),
        Err(err) => format!("{}:{}: {err}", err.line, err.column),
    }
}

#[track_caller]
fn accepts(input: &str, rendered: &str) {
    assert_eq!(outcome(input), rendered, "input: {input:?}");
}

#[track_caller]
fn refuses(input: &str, message: &str) {
    assert_eq!(outcome(input), message, "input: {input:?}");
}

#[test]
fn accepts_the_go_parser_syntax() {
    accepts("", "");
    accepts("\n \n\t\n", "");
    accepts("m 1\n   ", "# TYPE m untyped\nm 1\n");
    accepts("# HELP m h\n# TYPE m gauge\n", "");
    accepts("m 1\n", "# TYPE m untyped\nm 1\n");
    accepts(":m_1:X 1\n", "# TYPE :m_1:X untyped\n:m_1:X 1\n");
    accepts("  \tm\t \t2\n", "# TYPE m untyped\nm 2\n");
    accepts(
        "m { b = \"2\" , a=\"1\" , } 3\n",
        "# TYPE m untyped\nm{a=\"1\",b=\"2\"} 3\n",
    );
    accepts(
        "m{a =\"1\",b= \"2\",c=\"3\"} 1\n",
        "# TYPE m untyped\nm{a=\"1\",b=\"2\",c=\"3\"} 1\n",
    );
    accepts("m{} 1\n", "# TYPE m untyped\nm 1\n");
    accepts("m{a=\"1\"}1\n", "# TYPE m untyped\nm{a=\"1\"} 1\n");
    accepts(
        "m{_=\"\",a__b=\"x\"} 1\n",
        "# TYPE m untyped\nm{_=\"\",a__b=\"x\"} 1\n",
    );
    accepts(
        "m{a=\"q\\\"b\\\\s\\nn\",t=\"\t}, #{=\"} 1\n",
        "# TYPE m untyped\nm{a=\"q\\\"b\\\\s\\nn\",t=\"\t}, #{=\"} 1\n",
    );
    // A '-' or '.' ends the name, and Go then reads the rest as the value.
    accepts("m-1\n", "# TYPE m untyped\nm -1\n");
    // Go's text encoder writes a negative zero as 0, in values and bounds.
    accepts(
        "m -0\n# TYPE h histogram\nh_bucket{le=\"-0\"} 0\n",
        "# TYPE h histogram\nh_bucket{le=\"0\"} 0\n# TYPE m untyped\nm 0\n",
    );
    accepts(
        "a 1\nb 2\na{x=\"2\"} 3\n",
        "# TYPE a untyped\na 1\na{x=\"2\"} 3\n# TYPE b untyped\nb 2\n",
    );
}

#[test]
fn accepts_comments_help_and_type() {
    accepts(
        "# just a comment\n#\n# EOF\n# UNIT m seconds\nm 1\n",
        "# TYPE m untyped\nm 1\n",
    );
    accepts(
        "#HELP m  two  spaces \nm 1\n",
        "# HELP m two  spaces \n# TYPE m untyped\nm 1\n",
    );
    accepts(
        "# HELP m a \\\\ b \\n c \"q\"\tt\nm 1\n",
        "# HELP m a \\\\ b \\n c \"q\"\tt\n# TYPE m untyped\nm 1\n",
    );
    accepts("# HELP m\n# HELP m \nm 1\n", "# TYPE m untyped\nm 1\n");
    accepts(
        "m 1\n# HELP m late\n",
        "# HELP m late\n# TYPE m untyped\nm 1\n",
    );
    accepts("# TYPE m GAUGE\nm 1\n", "# TYPE m gauge\nm 1\n");
    accepts("# TYPE m cou\\nter\nm 1\n", "# TYPE m counter\nm 1\n");
    accepts(
        "# HELP m\tx\n# TYPE\tm\tcounter\nm 1\n",
        "# HELP m x\n# TYPE m counter\nm 1\n",
    );
}

#[test]
fn accepts_go_float_spellings() {
    for (spelled, canonical) in [
        ("NaN", "NaN"),
        ("nan", "NaN"),
        ("+Inf", "+Inf"),
        ("-Inf", "-Inf"),
        ("Inf", "+Inf"),
        ("infinity", "+Inf"),
        ("1e3", "1000"),
        (".5", "0.5"),
        ("5.", "5"),
        ("+5", "5"),
        ("007", "7"),
        ("-0", "0"),
        ("1e-400", "0"),
        ("1e6", "1e+06"),
        ("9007199254740993", "9.007199254740992e+15"),
    ] {
        accepts(
            &format!("m {spelled}\n"),
            &format!("# TYPE m untyped\nm {canonical}\n"),
        );
    }
}

#[test]
fn assembles_summaries_and_histograms() {
    accepts(
        "# TYPE s summary\ns{a=\"1\",quantile=\"0.9\"} 3\ns{quantile=\"0.5\",a=\"1\"} 2\ns_sum{a=\"1\"} 10\ns_count{a=\"1\"} 4\n",
        "# TYPE s summary\ns{a=\"1\",quantile=\"0.5\"} 2\ns{a=\"1\",quantile=\"0.9\"} 3\ns_sum{a=\"1\"} 10\ns_count{a=\"1\"} 4\n",
    );
    accepts(
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_bucket{le=\"1.0\"} 1\nh{le=\"2\"} 2\nh_count 3\nh_sum 4.5\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"2\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4.5\nh_count 3\n",
    );
    // No +Inf bucket and non-monotonic buckets are passed through, as by node_exporter.
    accepts(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 3\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 3\n",
    );
    // `le` and `quantile` are ordinary labels elsewhere.
    accepts(
        "g{le=\"1\",quantile=\"x\"} 1\n",
        "# TYPE g untyped\ng{le=\"1\",quantile=\"x\"} 1\n",
    );
    // _count of something that is not a summary or histogram is its own family.
    accepts(
        "# TYPE x gauge\nx_count 1\nx 2\n",
        "# TYPE x gauge\nx 2\n# TYPE x_count untyped\nx_count 1\n",
    );
}

#[test]
fn refuses_framing_errors() {
    refuses(
        "m 1",
        "1:4: unexpected end of input: the last line must end with a newline",
    );
    refuses(
        "m 1\n# c",
        "2:4: unexpected end of input: the last line must end with a newline",
    );
    refuses(
        "m{a=\"1",
        "1:7: unexpected end of input: the last line must end with a newline",
    );
    refuses(
        "m 1\r\n",
        "1:3: expected float as value, got \"1\\r\" (the line ends in a carriage return: use LF line endings, not CRLF)",
    );
    refuses(
        "\u{feff}m 1\n",
        "1:1: the input starts with a UTF-8 byte order mark, which the format does not allow",
    );
    refuses(
        "m 1 \n",
        "1:5: trailing blank after the value: node_exporter reads anything after a value as a timestamp",
    );
    refuses(
        "m 1 # {t=\"x\"} 1\n",
        "1:5: exemplar \"# {t=\\\"x\\\"} 1\" after the value: exemplars are OpenMetrics only, not text format 0.0.4",
    );
}

#[test]
fn refuses_timestamps_even_zero() {
    let message = "client-side timestamp {} is not allowed: node_exporter skips the whole file and the Pushgateway refuses the push";
    for ts in ["0", "-5", "1600000000000"] {
        refuses(
            &format!("m 1 {ts}\n"),
            &format!("1:5: {}", message.replace("{}", &format!("{ts:?}"))),
        );
    }
    refuses(
        "m 1 1.5\n",
        "1:5: expected integer as timestamp, got \"1.5\"",
    );
    refuses("m 1 1 x\n", "1:6: spurious string after timestamp: \" x\"");
}

#[test]
fn refuses_bad_names_and_values() {
    refuses(
        "1m 1\n",
        "1:1: invalid metric name: expected a letter, '_' or ':', found '1'",
    );
    refuses(
        "{a=\"1\"} 1\n",
        "1:1: invalid metric name: expected a letter, '_' or ':', found '{'",
    );
    refuses(
        "my.metric 1\n",
        "1:3: expected float as value, got \".metric\"",
    );
    refuses("m\n", "1:2: expected float as value, got \"\"");
    for bad in ["+NaN", "0x1A", "1_000", "1e400", "1,5"] {
        refuses(
            &format!("m {bad}\n"),
            &format!("1:3: expected float as value, got {bad:?}"),
        );
    }
    refuses(
        "# HELP m.x y\n",
        "1:9: invalid metric name in HELP line: expected a blank after the name, found '.'",
    );
}

#[test]
fn refuses_bad_labels() {
    refuses(
        "m{1a=\"1\"} 1\n",
        "1:3: invalid label name for metric \"m\": expected a letter or '_', found '1'",
    );
    refuses(
        "m{a-b=\"1\"} 1\n",
        "1:4: expected '=' after label name \"a\", found '-'",
    );
    refuses(
        "m{__name__=\"x\"} 1\n",
        "1:3: label name \"__name__\" is reserved",
    );
    refuses(
        "m{a=\"1\",a=\"2\"} 1\n",
        "1:9: duplicate label name \"a\" for metric \"m\"",
    );
    refuses(
        "m{a=1} 1\n",
        "1:5: expected '\"' at start of the value of label \"a\", found '1'",
    );
    refuses(
        "m{a=\"\\t\"} 1\n",
        "1:7: invalid escape sequence \"\\\\t\" in a label value: only \\\\, \\\" and \\n are allowed",
    );
    refuses(
        "m{a=\"x\n",
        "1:7: label value \"x\" contains an unescaped new-line (missing closing '\"'?)",
    );
    refuses(
        "m{a=\"say \"hi\"\"} 1\n",
        "1:11: expected ',' or '}' after label value \"say \", found 'h'",
    );
    assert_eq!(
        outcome("m{a=\"\u{ff}\"} 1\n".replace('\u{ff}', "\u{1}").as_str())
            .lines()
            .count(),
        2,
        "a control character is a valid label value"
    );
    let invalid = parse(b"m{a=\"\xff\xfe\"} 1\n").unwrap_err();
    assert_eq!(
        invalid.to_string(),
        "label value \"\\xff\\xfe\" is not valid UTF-8"
    );
}

#[test]
fn refuses_help_and_type_mistakes() {
    refuses(
        "# HELP m a \\\"q\\\"\n",
        "1:13: invalid escape sequence \"\\\\\\\"\" in a HELP text: only \\\\ and \\n are allowed",
    );
    refuses(
        "# HELP m a\n# HELP m b\n",
        "2:10: second HELP line for metric name \"m\"",
    );
    refuses(
        "m 1\n# TYPE m gauge\n",
        "2:10: second TYPE line for metric name \"m\", or TYPE reported after samples",
    );
    for bad in ["gauge ", "info", "stateset", "unknown", "gaugehistogram"] {
        refuses(
            &format!("# TYPE m {bad}\n"),
            &format!(
                "1:10: unknown metric type {bad:?}: expected counter, gauge, histogram, summary or untyped"
            ),
        );
    }
    refuses(
        "# TYPE m gauge_histogram\nm_bucket{le=\"1\"} 1\n",
        "1:10: metric type \"gauge_histogram\" is not supported: node_exporter 1.5.0 crashes on it",
    );
    let help = parse(b"# HELP m \xff\nm 1\n").unwrap_err();
    assert_eq!(
        help.to_string(),
        "HELP text for \"m\" is not valid UTF-8: the Prometheus server would refuse the scrape"
    );
    refuses(
        "# TYPE foo counter\nfoo_total 1\n",
        "1:1: TYPE line for \"foo\" matches no sample, but \"foo_total\" has samples: node_exporter would serve them without it (name the TYPE line \"foo_total\", or move it before those samples)",
    );
}

#[test]
fn refuses_what_node_exporter_silently_drops_from_summaries_and_histograms() {
    refuses(
        "# TYPE s summary\ns 1\n",
        "2:1: sample of summary \"s\" has no 'quantile' label: node_exporter silently ignores it",
    );
    refuses(
        "# TYPE h histogram\nh_bucket 1\n",
        "2:1: sample \"h_bucket\" of histogram \"h\" has no 'le' label: node_exporter silently ignores it",
    );
    refuses(
        "# TYPE h histogram\nh_bucket{le=\"NaN\"} 1\n",
        "2:1: le=\"NaN\" on \"h\": node_exporter silently ignores this sample",
    );
    refuses(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 2\n",
        "3:1: second le=\"1.0\" for one series of \"h\": node_exporter silently keeps only the last",
    );
    refuses(
        "# TYPE s summary\ns_sum 1\ns_sum 2\n",
        "3:1: second \"s_sum\" sample for one series: node_exporter silently keeps only the last",
    );
    for (line, token) in [
        ("s_count -1", "-1"),
        ("s_count 2.5", "2.5"),
        ("s_count NaN", "NaN"),
    ] {
        refuses(
            &format!("# TYPE s summary\n{line}\n"),
            &format!(
                "2:1: \"s_count\" must be a whole number from 0 to 2^64, got {token:?}: node_exporter would store it as an unsigned integer"
            ),
        );
    }
    refuses(
        "# TYPE h histogram\nh_bucket{le=\"1\"} -4\n",
        "2:1: \"h_bucket\" must be a whole number from 0 to 2^64, got \"-4\": node_exporter would store it as an unsigned integer",
    );
    refuses(
        "# TYPE h histogram\nh_bucket{le=\"abc\"} 1\n",
        "2:18: expected float as value for 'le' label, got \"abc\"",
    );
    refuses(
        "# TYPE h histogram\nh_bucket{le=\"1\",le=\"2\"} 1\n",
        "2:17: duplicate label name \"le\" for metric \"h\"",
    );
}

/// Validates the given files (name, text) together; returns `name:line: message`.
fn problems(files: &[(&str, &str)]) -> Vec<String> {
    let parsed: Vec<Vec<Family>> = files
        .iter()
        .map(|(_, text)| parse(text.as_bytes()).expect("test input parses"))
        .collect();
    let sources: Vec<Source<'_>> = files
        .iter()
        .zip(&parsed)
        .map(|((name, _), families)| Source { name, families })
        .collect();
    validate(&sources)
        .into_iter()
        .map(|p| format!("{}:{}: {}", sources[p.source].name, p.line, p.violation))
        .collect()
}

/// Validates built families as one file; returns the violations.
fn violations(families: &[Family]) -> Vec<String> {
    validate(&[Source {
        name: "x",
        families,
    }])
    .into_iter()
    .map(|p| p.violation.to_string())
    .collect()
}

#[test]
fn validates_like_node_exporter_gathers() {
    assert!(
        problems(&[
            ("a", "# HELP m h\n# TYPE m gauge\nm{x=\"1\"} 1\n"),
            ("b", "# HELP m h\n# TYPE m gauge\nm{x=\"2\"} 1\n")
        ])
        .is_empty()
    );
    assert!(
        problems(&[("a", "m{x=\"1\"} 1\n"), ("b", "m{x=\"2\"} 1\n")]).is_empty(),
        "no HELP anywhere merges"
    );
    assert_eq!(
        problems(&[("a", "m{a=\"1\"} 1\nm{a=\"1\"} 2\n")]),
        ["a:2: duplicate series m{a=\"1\"} (also in a:1): node_exporter would drop it"]
    );
    assert_eq!(
        problems(&[("a", "m{a=\"\"} 1\nm 2\n")]),
        [
            "a:2: duplicate series m, where an empty label value counts as absent (also in a:1): node_exporter would drop it"
        ]
    );
    // The note only explains a pair that differs in its empty values.
    assert_eq!(
        problems(&[("a", "m{a=\"\"} 1\nm{a=\"\"} 2\n")]),
        ["a:2: duplicate series m (also in a:1): node_exporter would drop it"]
    );
    assert_eq!(
        problems(&[
            ("a", "m{b=\"2\",a=\"1\"} 1\n"),
            ("b", "m{a=\"1\",b=\"2\",c=\"\"} 1\n")
        ]),
        [
            "b:1: duplicate series m{a=\"1\",b=\"2\"}, where an empty label value counts as absent (also in a:1): node_exporter would drop it"
        ]
    );
    assert_eq!(
        problems(&[
            ("a", "# HELP m A.\nm 1\n"),
            ("b", "# HELP m B.\nm{x=\"1\"} 1\n")
        ]),
        [
            "b:1: HELP for \"m\" is \"B.\" here but \"A.\" in a:1: node_exporter would drop these series"
        ]
    );
    assert_eq!(
        problems(&[("a", "# HELP m A.\nm 1\n"), ("b", "m{x=\"1\"} 1\n")]),
        [
            "b:1: HELP for \"m\" is missing here but \"A.\" in a:1: node_exporter would drop these series"
        ]
    );
    assert_eq!(
        problems(&[
            ("a", "# TYPE m counter\nm 1\n"),
            ("b", "# TYPE m gauge\nm{x=\"1\"} 1\n")
        ]),
        [
            "b:1: \"m\" has type gauge here but counter in a:1: node_exporter would drop these series"
        ]
    );
    assert_eq!(
        problems(&[("a", "# TYPE s summary\ns_sum 1\n"), ("b", "s_count 1\n")]),
        [
            "b:1: \"s_count\" collides with summary \"s\" in a:1 (its _sum, _count or _bucket): node_exporter would drop one of them"
        ]
    );
    assert_eq!(
        problems(&[
            ("a", "h_bucket 1\n"),
            ("b", "# TYPE h histogram\nh_sum 1\n")
        ]),
        [
            "b:1: \"h\" collides with histogram \"h_bucket\" in a:1 (its _sum, _count or _bucket): node_exporter would drop one of them"
        ]
    );
    assert_eq!(
        problems(&[("a", "m{__x=\"1\"} 1\n")]),
        [
            "a:1: label name \"__x\" on \"m\" starts with \"__\", which is reserved: node_exporter 1.5.0 crashes on it"
        ]
    );
    assert_eq!(
        problems(&[(
            "a",
            "node_textfile_custom 1\ngo_goroutines 1\ngo_gc_duration_seconds_sum 1\n"
        )]),
        [
            "a:3: metric name \"go_gc_duration_seconds_sum\" collides with node_exporter's own summary \"go_gc_duration_seconds\": node_exporter would drop it",
            "a:2: metric name \"go_goroutines\" belongs to node_exporter itself: its series would mask or be merged into the exporter's own",
            "a:1: metric name \"node_textfile_custom\" belongs to node_exporter itself: its series would mask or be merged into the exporter's own",
        ]
    );
}

#[test]
fn validates_built_families_names() {
    let mut bad = Family::new("bad.name", MetricType::Gauge);
    bad.push(&[("ok", "1")], Value::Single(1.0));
    let mut label = Family::new("m", MetricType::Gauge);
    label.push(&[("bad-label", "1")], Value::Single(1.0));
    let mut le = Family::new("h", MetricType::Histogram);
    le.push(&[("le", "1")], Value::Distribution(Box::default()));
    let families = [bad, label, le];
    assert_eq!(
        violations(&families),
        [
            "invalid metric name \"bad.name\": expected [a-zA-Z_:][a-zA-Z0-9_:]*",
            "invalid label name \"bad-label\" on \"m\": expected [a-zA-Z_][a-zA-Z0-9_]*",
            "label \"le\" is reserved on histogram \"h\"",
        ]
    );
}

// ---- round trip -------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    // No name is another plus _sum/_count/_bucket/_total, so every valid
    // combination survives; collisions are the validator's business.
    prop::sample::select(vec![
        "a",
        "b_x",
        ":c",
        "D:e_1",
        "_f",
        "g_total",
        "h_seconds",
    ])
    .prop_map(str::to_owned)
}

fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    let label_name =
        prop::sample::select(vec!["a", "b", "job", "instance", "_z", "le", "quantile"]);
    prop::collection::btree_map(label_name, any::<String>(), 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn count() -> impl Strategy<Value = f64> {
    #[allow(clippy::cast_precision_loss)]
    (0u64..(1 << 53)).prop_map(|c| c as f64)
}

fn distribution(histogram: bool) -> impl Strategy<Value = Value> {
    let bound = prop_oneof![
        any::<f64>().prop_filter("not NaN", |b| !b.is_nan()),
        Just(f64::INFINITY)
    ];
    let point_value = if histogram {
        count().boxed()
    } else {
        any::<f64>().boxed()
    };
    (
        prop::collection::vec((bound, point_value), 0..4),
        prop::option::of(any::<f64>()),
        prop::option::of(count()),
    )
        .prop_map(|(mut points, sum, count)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
            Value::Distribution(Box::new(Distribution { points, sum, count }))
        })
}

fn family() -> impl Strategy<Value = Family> {
    let kind = prop::sample::select(vec![
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Untyped,
        MetricType::Summary,
        MetricType::Histogram,
    ]);
    (name(), prop::option::of(any::<String>()), kind).prop_flat_map(|(name, help, kind)| {
        let value = if kind.is_distribution() {
            distribution(kind == MetricType::Histogram).boxed()
        } else {
            any::<f64>().prop_map(Value::Single).boxed()
        };
        prop::collection::vec((labels(), value), 1..4).prop_map(move |series| {
            let mut family = Family::new(name.clone(), kind);
            family.set_help(help.clone());
            for (labels, value) in series {
                family.push(&labels, value);
            }
            family.canonicalize();
            family
        })
    })
}

/// Families with distinct names, in canonical order, empty distributions
/// (which render to no line at all) left out.
fn families() -> impl Strategy<Value = Vec<Family>> {
    prop::collection::vec(family(), 0..5).prop_map(|mut families| {
        families.sort_by(|a, b| a.name().cmp(b.name()));
        families.dedup_by(|a, b| a.name() == b.name());
        families
    })
}

fn renders_something(family: &Family) -> bool {
    family.series().all(|s| match s.value {
        Value::Single(_) => true,
        Value::Distribution(d) => !d.points.is_empty() || d.sum.is_some() || d.count.is_some(),
    })
}

#[test]
fn name_comparisons_agree_with_the_standard_ones() {
    // Lengths around the eight-byte steps, differing at every position.
    let mut texts = vec![String::new()];
    for len in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 25] {
        let base: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        texts.push(base.clone());
        for at in 0..len {
            let mut other = base.clone().into_bytes();
            other[at] = b'Z';
            texts.push(String::from_utf8(other).unwrap());
        }
    }
    texts.push("é".to_owned());
    for a in &texts {
        for b in &texts {
            assert_eq!(super::same_text(a, b), a == b, "{a:?} {b:?}");
            assert_eq!(super::cmp_names(a, b), a.cmp(b), "{a:?} {b:?}");
        }
    }
}

#[test]
fn bounds_that_differ_between_series_are_each_spelled() {
    // Bounds are spelled once per position and copied while the next
    // series has the same one there.
    let input = "# TYPE h histogram\n\
                 h_bucket{a=\"1\",le=\"1\"} 1\nh_bucket{a=\"1\",le=\"2.5\"} 2\n\
                 h_bucket{a=\"2\",le=\"1\"} 1\nh_bucket{a=\"2\",le=\"5\"} 2\nh_bucket{a=\"2\",le=\"7\"} 3\n\
                 h_bucket{a=\"3\",le=\"0.25\"} 1\nh_bucket{a=\"3\",le=\"5\"} 2\n";
    let rendered = to_string(&parse(input.as_bytes()).unwrap());
    let bounds: Vec<&str> = rendered
        .lines()
        .filter_map(|line| line.split("le=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(bounds, ["1", "2.5", "1", "5", "7", "0.25", "5"]);
}

#[test]
fn names_that_start_or_extend_those_of_the_line_before_are_read_whole() {
    // The parser first tries the names of the line before, in the same
    // places: each line here has a name one of them starts, or one that
    // starts one of them.
    let input = "a{x=\"1\",xy=\"2\"} 1\n\
                 a_b{xy=\"1\",x=\"2\"} 2\n\
                 a{x=\"3\"} 3\n\
                 ab{x=\"1\",xyz=\"3\",x1=\"4\"} 4\n\
                 a_b:c{x1=\"5\",x=\"6\"} 5\n\
                 a_b:c{x1=\"7\"} 6\n";
    let families = parse(input.as_bytes()).unwrap();
    let read: Vec<(&str, Vec<&str>)> = families
        .iter()
        .map(|f| (f.name(), f.series().map(|s| s.labels.as_text()).collect()))
        .collect();
    let expected = [
        ("a", vec![r#"x="1",xy="2""#, r#"x="3""#]),
        ("a_b", vec![r#"x="2",xy="1""#]),
        ("a_b:c", vec![r#"x1="7""#, r#"x="6",x1="5""#]),
        ("ab", vec![r#"x="1",x1="4",xyz="3""#]),
    ];
    assert_eq!(read, expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_global_rejects: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_render_is_identity(families in families()) {
        prop_assume!(families.iter().all(renders_something));
        prop_assume!(validate(&[Source { name: "x", families: &families }]).is_empty());
        let text = to_string(&families);
        let reparsed = parse(text.as_bytes());
        prop_assert!(reparsed.is_ok(), "{:?} on\n{}", reparsed, text);
        prop_assert_eq!(reparsed.unwrap(), families, "text:\n{}", text);
    }

    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    /// `set_labels` edits canonical text in place; a map of the labels,
    /// edited and pushed again, must give the same text.
    #[test]
    fn set_labels_agrees_with_editing_a_map(
        series in prop::collection::vec(prop::collection::btree_map("[a-e]", "[a\"\\\\\n,=]{0,3}", 0..5), 1..4),
        set in prop::collection::btree_map("[a-f]", "[a\"\\\\\n,=]{0,3}", 0..3),
        defaults in prop::collection::btree_map("[a-f]", "[a\"\\\\\n,=]{0,3}", 0..3),
    ) {
        fn refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
        }
        let pairs = |map: &std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
            map.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
        };
        let (set, defaults) = (pairs(&set), pairs(&defaults));
        let mut edited = Family::new("m", MetricType::Gauge);
        let mut expected = Family::new("m", MetricType::Gauge);
        for (i, labels) in (0..).zip(&series) {
            edited.push(&refs(&pairs(labels)), Value::Single(f64::from(i)));
            let mut map = labels.clone();
            for (n, v) in &defaults {
                if !set.iter().any(|(s, _)| s == n) {
                    map.entry(n.clone()).or_insert_with(|| v.clone());
                }
            }
            map.extend(set.iter().cloned());
            expected.push(&refs(&pairs(&map)), Value::Single(f64::from(i)));
        }
        expected.canonicalize();
        edited.set_labels(&injection(&refs(&set), &refs(&defaults)));
        let texts = |f: &Family| f.series().map(|s| s.labels.as_text().to_owned()).collect::<Vec<_>>();
        prop_assert_eq!(texts(&edited), texts(&expected));
    }

    /// Series sort by their label text, and series of equal text keep the
    /// order they were added in: short texts, shared starts, NUL bytes.
    #[test]
    fn canonical_order_is_the_text_order_and_stable(
        values in prop::collection::vec("(ab|a|\\x00|b){0,6}", 1..40),
    ) {
        let mut family = Family::new("m", MetricType::Gauge);
        for (i, value) in (0..).zip(&values) {
            family.push(&[("a", value.as_str())], Value::Single(f64::from(i)));
        }
        family.canonicalize();
        let mut expected: Vec<(String, f64)> = values
            .iter()
            .zip(0..)
            .map(|(v, i)| (format!("a=\"{v}\""), f64::from(i)))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let got: Vec<(String, f64)> = family
            .series()
            .map(|s| match s.value {
                Value::Single(v) => (s.labels.as_text().to_owned(), *v),
                Value::Distribution(_) => unreachable!("gauges only"),
            })
            .collect();
        prop_assert_eq!(got, expected);
    }

    /// Merging the labels while parsing gives what parsing and then merging
    /// gives, refusals included; also where a body label is replaced or a
    /// default is already set, so that series of a summary or histogram
    /// could merge.
    #[test]
    fn parse_injected_agrees_with_parse_then_set_labels(
        lines in prop::collection::vec(
            (
                0..7usize,
                prop::collection::btree_map("a|job|instance", "|1|2", 0..3),
                0..2usize,
                0..2usize,
            ),
            1..12,
        ),
        job in "1|2",
        with_a in any::<bool>(),
    ) {
        let mut text = String::from("# TYPE h histogram\n# TYPE s summary\n");
        for (name, labels, bound, value) in &lines {
            let (name, bound_label) = [
                ("g", None),
                ("h_bucket", Some(("le", ["1", "+Inf"][*bound]))),
                ("h_sum", None),
                ("h_count", None),
                ("s", Some(("quantile", ["0.5", "0.9"][*bound]))),
                ("s_sum", None),
                ("s_count", None),
            ][*name];
            let pairs: Vec<String> = labels
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .chain(bound_label)
                .map(|(n, v)| format!("{n}=\"{v}\""))
                .collect();
            writeln!(text, "{name}{{{}}} {value}", pairs.join(",")).unwrap();
        }
        let mut set = vec![("job", job.as_str())];
        if with_a {
            set.push(("a", "1"));
        }
        let injection = injection(&set, &[("instance", "")]);
        let merged_after = parse(text.as_bytes()).map(|mut families| {
            for family in &mut families {
                family.set_labels(&injection);
            }
            families
        });
        let merged_while = parse_injected(text.as_bytes(), &injection);
        prop_assert_eq!(&merged_while, &merged_after, "{}", text);
        if let Ok(families) = &merged_while {
            prop_assert!(families.iter().all(|f| f.carries(&injection)));
            prop_assert_eq!(violations(families), violations(&merged_after.unwrap()));
        }
    }
}

#[test]
fn model_helpers() {
    let mut f = Family::new("m", MetricType::Gauge);
    f.push(&[("z", "1"), ("a", "q\"u\\o\nte")], Value::Single(1.0));
    let s = f.series().next().unwrap();
    assert_eq!(s.labels.as_text(), r#"a="q\"u\\o\nte",z="1""#);
    let pairs: Vec<_> = s.labels.iter().map(|(n, v)| (n, v.into_owned())).collect();
    assert_eq!(
        pairs,
        [("a", "q\"u\\o\nte".to_owned()), ("z", "1".to_owned())]
    );
    assert_eq!(s.labels.get("y"), None);
    assert_eq!(s.labels.names().collect::<Vec<_>>(), ["a", "z"]);
    assert_eq!(
        Family::new("m", MetricType::Gauge)
            .with_help("  text ")
            .help(),
        Some("text ")
    );
    assert_eq!(Value::Single(f64::NAN), Value::Single(f64::NAN));
    assert_eq!(Value::Single(0.0), Value::Single(-0.0));
    f.set_labels(&injection(
        &[("b", "new\"q"), ("z", "2")],
        &[("a", "ignored"), ("c", "")],
    ));
    assert_eq!(
        f.series().next().unwrap().labels.as_text(),
        r#"a="q\"u\\o\nte",b="new\"q",c="",z="2""#
    );
}

/// Parsed families skip validate's label name checks; labels added later
/// must not.
#[test]
fn validates_label_names_added_after_parsing() {
    let parsed = |text: &str| parse(text.as_bytes()).expect("test input parses");
    let mut reserved = parsed("m{a=\"1\"} 1\n");
    reserved[0].set_labels(&injection(&[("__x", "1")], &[]));
    let mut bound = parsed("# TYPE h histogram\nh_sum 1\n");
    bound[0].set_labels(&injection(&[], &[("le", "1")]));
    let mut absorbed = parsed("n 1\n");
    let mut built = Family::new("n", MetricType::Untyped);
    built.push(&[("bad-label", "1")], Value::Single(1.0));
    absorbed[0].absorb(&built);
    let families = [reserved, bound, absorbed].concat();
    assert_eq!(
        violations(&families),
        [
            "label name \"__x\" on \"m\" starts with \"__\", which is reserved: node_exporter 1.5.0 crashes on it",
            "label \"le\" is reserved on histogram \"h\"",
            "invalid label name \"bad-label\" on \"n\": expected [a-zA-Z_][a-zA-Z0-9_]*",
        ]
    );
}

/// A family starts with room for as much as the family before it held, but
/// never much more than a few pages, whatever that one held.
#[test]
fn a_family_starts_with_room_like_the_one_before_within_bounds() {
    let mut text = String::from("# TYPE big gauge\n");
    for i in 0..1000 {
        writeln!(text, "big{{instance=\"host-{i}.example.com\"}} {i}").unwrap();
    }
    text.push_str("small{a=\"b\"} 1\n");
    text.push_str("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n");
    let families = parse(text.as_bytes()).unwrap();
    let room = |name: &str| {
        let family = families.iter().find(|f| f.name() == name).unwrap();
        (family.series.capacity(), family.arena.capacity())
    };
    let (series, arena) = room("small");
    assert!((256..512).contains(&series), "{series}");
    assert!((16 * 1024..32 * 1024).contains(&arena), "{arena}");
    let (series, arena) = room("h");
    assert!((1..8).contains(&series), "{series}");
    assert!((5..64).contains(&arena), "{arena}");
}

/// So does a summary's or histogram's series, with room for the points of
/// the series before it, within bounds too.
#[test]
fn a_distribution_starts_with_room_like_the_one_before_within_bounds() {
    let mut text = String::from("# TYPE h histogram\n");
    for (series, buckets) in [("a", 1000), ("b", 3), ("c", 1)] {
        for le in 0..buckets {
            writeln!(text, "h_bucket{{s=\"{series}\",le=\"{le}\"}} {le}").unwrap();
        }
    }
    let families = parse(text.as_bytes()).unwrap();
    let room: Vec<(usize, usize)> = (families[0].series.iter())
        .map(|s| match &s.value {
            Value::Distribution(d) => (d.points.len(), d.points.capacity()),
            Value::Single(_) => panic!("{s:?}"),
        })
        .collect();
    let [a, b, c] = room[..] else {
        panic!("{room:?}")
    };
    assert_eq!((a.0, b.0, c.0), (1000, 3, 1));
    assert!((64..128).contains(&b.1), "{room:?}");
    assert!((3..8).contains(&c.1), "{room:?}");
}
