//! Side by side with the real Pushgateway 1.5.1: each case sends the same
//! request sequence to a fresh `promdrop serve` and a fresh Pushgateway, then
//! compares every status code and the scrape of the pushed groups (own
//! metrics left out, push times blanked), and where asked the JSON API.
//!
//! Where promdrop differs on purpose, the case says why (`Differs`) and
//! asserts promdrop's own behaviour instead of the Pushgateway's.

use std::io::Write as _;

use promdrop::protobuf::{
    Bucket, Histogram, LabelPair, Metric, MetricFamily, Quantile, Single, Summary,
};
use prost::Message as _;

use crate::serve::{Pushgateway, TestServer};
use crate::util::{failures_in_parallel, http, http_get};

/// One request of a case.
struct Step {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn put(path: &'static str, body: &str) -> Step {
    Step {
        method: "PUT",
        path,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn post(path: &'static str, body: &str) -> Step {
    Step {
        method: "POST",
        ..put(path, body)
    }
}

fn delete(path: &'static str) -> Step {
    Step {
        method: "DELETE",
        ..put(path, "")
    }
}

fn get(path: &'static str) -> Step {
    Step {
        method: "GET",
        ..put(path, "")
    }
}

fn with(mut step: Step, name: &'static str, value: &str) -> Step {
    step.headers.push((name, value.to_owned()));
    step
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

fn protobuf(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for family in families {
        family.encode_length_delimited(&mut out).unwrap();
    }
    out
}

fn proto_put(path: &'static str, families: &[MetricFamily]) -> Step {
    with(
        Step {
            method: "PUT",
            path,
            headers: Vec::new(),
            body: protobuf(families),
        },
        "Content-Type",
        PROTOBUF,
    )
}

fn gauge_family(name: &str, value: f64, timestamp: Option<i64>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        help: Some("From protobuf.".into()),
        r#type: Some(1),
        metric: vec![Metric {
            label: vec![LabelPair {
                name: Some("k".into()),
                value: Some("v".into()),
            }],
            gauge: Some(Single { value: Some(value) }),
            timestamp_ms: timestamp,
            ..Metric::default()
        }],
    }
}

/// How promdrop is expected to compare.
enum Expect {
    /// Same status codes and the same scrape.
    Same,
    /// Same, and the same JSON from `/api/v1/metrics`.
    SameJson,
    /// Deliberately different: why, and what promdrop's scrape of pushed
    /// groups must contain (lines) or must not contain (lines prefixed `!`).
    Differs(&'static str, &'static [&'static str]),
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
    expect: Expect,
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case {
        name,
        steps,
        expect: Expect::Same,
    }
}

#[allow(clippy::too_many_lines)] // a table of cases
fn cases() -> Vec<Case> {
    let poisoning = "the Pushgateway keeps a refused push's group with push_failure_time_seconds (its poisoning bug); promdrop changes nothing";
    let bump = "the Pushgateway bumps push_failure_time_seconds on a refused push; promdrop leaves the stored group byte for byte";
    vec![
        // Grouping keys.
        case("plain job", vec![put("/metrics/job/a", "m 1\n")]),
        case(
            "job and instance",
            vec![put("/metrics/job/a/instance/i1", "m 1\n")],
        ),
        case(
            "several labels in any order",
            vec![
                put("/metrics/job/a/z/1/b/2", "m 1\n"),
                put("/metrics/job/a/b/2/z/1", "m 2\n"),
            ],
        ),
        case(
            "job in base64",
            vec![put("/metrics/job@base64/YmFja3Vw", "m 1\n")],
        ),
        case(
            "value in base64 with a slash",
            vec![put("/metrics/job/a/path@base64/L3Zhci94", "m 1\n")],
        ),
        case(
            "empty value in base64",
            vec![put("/metrics/job/a/instance@base64/=", "m 1\n")],
        ),
        case(
            "padding is optional",
            vec![
                put("/metrics/job/a/x@base64/YQ", "m 1\n"),
                put("/metrics/job/b/x@base64/YQ===", "n 1\n"),
            ],
        ),
        case(
            "percent-encoded unicode",
            vec![put("/metrics/job/a/name/%CE%A0%CF%81", "m 1\n")],
        ),
        case(
            "last duplicate label wins",
            vec![put("/metrics/job/a/x/first/x@base64/c2Vjb25k", "m 1\n")],
        ),
        case(
            "job pair among labels ignored",
            vec![put("/metrics/job/a/job/other", "m 1\n")],
        ),
        case(
            "trailing slash after job",
            vec![put("/metrics/job/a/", "m 1\n")],
        ),
        case(
            "odd number of components",
            vec![put("/metrics/job/a/instance", "m 1\n")],
        ),
        case(
            "trailing slash after a value",
            vec![put("/metrics/job/a/instance/i/", "m 1\n")],
        ),
        case(
            "improper label name",
            vec![put("/metrics/job/a/1x/v", "m 1\n")],
        ),
        case(
            "reserved label name",
            vec![put("/metrics/job/a/__x/v", "m 1\n")],
        ),
        case(
            "empty job in base64",
            vec![put("/metrics/job@base64/=", "m 1\n")],
        ),
        case(
            "invalid base64 value",
            vec![put("/metrics/job/a/x@base64/a+b", "m 1\n")],
        ),
        case(
            "empty value and absent label are different groups",
            vec![
                put("/metrics/job/a/instance@base64/=", "m 1\n"),
                delete("/metrics/job/a"),
            ],
        ),
        // PUT, POST, DELETE.
        case(
            "PUT replaces the group",
            vec![
                put("/metrics/job/a", "m 1\nn 2\n"),
                put("/metrics/job/a", "o 3\n"),
            ],
        ),
        case(
            "POST replaces same-named families",
            vec![
                put("/metrics/job/a", "m 1\nn 2\n"),
                post("/metrics/job/a", "n{x=\"y\"} 3\no 4\n"),
            ],
        ),
        case(
            "POST to a new group",
            vec![post("/metrics/job/new", "m 1\n")],
        ),
        case(
            "DELETE removes the group",
            vec![
                put("/metrics/job/a", "m 1\n"),
                put("/metrics/job/b", "m 2\n"),
                delete("/metrics/job/a"),
            ],
        ),
        case(
            "DELETE of a missing group",
            vec![delete("/metrics/job/never")],
        ),
        case(
            "DELETE matches the exact key",
            vec![
                put("/metrics/job/a", "m 1\n"),
                put("/metrics/job/a/instance/i", "m 2\n"),
                delete("/metrics/job/a"),
            ],
        ),
        case(
            "PUT with an empty body keeps the group",
            vec![put("/metrics/job/a", "m 1\n"), put("/metrics/job/a", "")],
        ),
        case(
            "POST with an empty body",
            vec![put("/metrics/job/a", "m 1\n"), post("/metrics/job/a", "")],
        ),
        case(
            "TYPE-only families are dropped",
            vec![put(
                "/metrics/job/a",
                "# TYPE m gauge\n# HELP n Only help.\nx 1\n",
            )],
        ),
        // Body labels against URL labels.
        case(
            "URL labels override body labels",
            vec![put(
                "/metrics/job/a/instance/url",
                "m{job=\"body\",instance=\"body\",x=\"y\"} 1\n",
            )],
        ),
        case(
            "a body instance stays when the key has none",
            vec![put("/metrics/job/a", "m{instance=\"body\"} 1\n")],
        ),
        case(
            "the same family in two groups merges",
            vec![
                put("/metrics/job/a", "# HELP m Help.\n# TYPE m gauge\nm 1\n"),
                put("/metrics/job/b", "# HELP m Help.\n# TYPE m gauge\nm 2\n"),
            ],
        ),
        case(
            "every metric type",
            vec![put(
                "/metrics/job/a",
                "# TYPE c counter\nc 1\n# TYPE g gauge\ng -2.5\nu NaN\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
            )],
        ),
        case(
            "a summary and histograms without their sum, count or +Inf bucket",
            vec![put(
                "/metrics/job/a",
                "# TYPE s summary\ns{quantile=\"0.5\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\n# TYPE i histogram\ni_bucket{le=\"1\"} 1\ni_count 3\n",
            )],
        ),
        case(
            "special values, and a negative zero",
            vec![put(
                "/metrics/job/a",
                "m{x=\"a\"} -0\nm{x=\"b\"} +Inf\nm{x=\"c\"} -Inf\nm{x=\"d\"} 1e-05\nm{x=\"e\"} 1234567\n",
            )],
        ),
        // Timestamps.
        Case {
            name: "a timestamp refused for a new group",
            steps: vec![put("/metrics/job/ts", "m 1 1000\n")],
            expect: Expect::Differs(poisoning, &["!job=\"ts\""]),
        },
        Case {
            name: "a timestamp refused for an existing group",
            steps: vec![
                put("/metrics/job/ts", "m 1\n"),
                put("/metrics/job/ts", "m 2 1000\n"),
            ],
            expect: Expect::Differs(
                bump,
                &[
                    "m{instance=\"\",job=\"ts\"} 1",
                    "push_failure_time_seconds{instance=\"\",job=\"ts\"} 0",
                ],
            ),
        },
        // Conflicts.
        Case {
            name: "a type clash with another group",
            steps: vec![
                put("/metrics/job/a", "# TYPE m gauge\nm 1\n"),
                put("/metrics/job/b", "# TYPE m counter\nm 2\n"),
            ],
            expect: Expect::Differs(poisoning, &["!job=\"b\""]),
        },
        Case {
            name: "a duplicate series with another group",
            steps: vec![
                put("/metrics/job/a", "m{instance=\"i\"} 1\n"),
                put("/metrics/job/a/instance/i", "m 2\n"),
            ],
            expect: Expect::Differs(poisoning, &["m{instance=\"i\",job=\"a\"} 1", "!} 2"]),
        },
        Case {
            name: "a summary against another group's _count",
            steps: vec![
                put("/metrics/job/a", "s_count 1\n"),
                put("/metrics/job/b", "# TYPE s summary\ns_sum 1\ns_count 2\n"),
            ],
            expect: Expect::Differs(poisoning, &["!job=\"b\""]),
        },
        Case {
            name: "a HELP conflict across groups",
            steps: vec![
                put("/metrics/job/a", "# HELP m One.\nm 1\n"),
                put("/metrics/job/b", "# HELP m Two.\nm 2\n"),
            ],
            expect: Expect::Differs(
                "the Pushgateway serves one of the two HELP texts, chosen at random per scrape; promdrop refuses the second, as node_exporter would drop its series",
                &["!job=\"b\""],
            ),
        },
        // Parse errors never touch the store, in either.
        case("missing final newline", vec![put("/metrics/job/a", "m 1")]),
        case("CRLF line endings", vec![put("/metrics/job/a", "m 1\r\n")]),
        case(
            "invalid label value escape",
            vec![put("/metrics/job/a", "m{x=\"\\t\"} 1\n")],
        ),
        case(
            "second TYPE line",
            vec![put(
                "/metrics/job/a",
                "# TYPE m gauge\n# TYPE m gauge\nm 1\n",
            )],
        ),
        case(
            "unknown metric type",
            vec![put("/metrics/job/a", "# TYPE m info\nm 1\n")],
        ),
        case(
            "__name__ as a label",
            vec![put("/metrics/job/a", "m{__name__=\"x\"} 1\n")],
        ),
        case(
            "a value that is not a float",
            vec![put("/metrics/job/a", "m one\n")],
        ),
        case(
            "an exemplar",
            vec![put("/metrics/job/a", "m 1 # {t=\"1\"} 1\n")],
        ),
        case(
            "a parse error after a good push",
            vec![
                put("/metrics/job/a", "m 1\n"),
                put("/metrics/job/a", "m 2\nbroken\n"),
            ],
        ),
        // Push times.
        case(
            "a pushed push_time_seconds is overridden",
            vec![put("/metrics/job/a", "push_time_seconds 5\nm 1\n")],
        ),
        // The JSON API.
        Case {
            name: "JSON after a PUT",
            steps: vec![put(
                "/metrics/job/a/instance/i",
                "# HELP m Help.\n# TYPE m gauge\nm{x=\"y\"} 1234567.5\n",
            )],
            expect: Expect::SameJson,
        },
        Case {
            name: "JSON after PUT and POST",
            steps: vec![
                put("/metrics/job/a", "m 1\n"),
                post(
                    "/metrics/job/a",
                    "# TYPE s summary\ns{quantile=\"0.9\"} 1e-05\ns_sum 1\ns_count 1\n",
                ),
            ],
            expect: Expect::SameJson,
        },
        Case {
            name: "JSON of an empty store",
            steps: vec![],
            expect: Expect::SameJson,
        },
        // gzip.
        case(
            "a gzip body",
            vec![with(
                Step {
                    body: gzip("m 1\n"),
                    ..put("/metrics/job/a", "")
                },
                "Content-Encoding",
                "gzip",
            )],
        ),
        case(
            "a broken gzip body",
            vec![with(
                put("/metrics/job/a", "not gzip"),
                "Content-Encoding",
                "gzip",
            )],
        ),
        // Protobuf.
        case(
            "protobuf gauge",
            vec![proto_put(
                "/metrics/job/a",
                &[gauge_family("pg", 1.5, None)],
            )],
        ),
        case(
            "protobuf summary and histogram",
            vec![proto_put(
                "/metrics/job/a",
                &[
                    MetricFamily {
                        name: Some("ps".into()),
                        help: Some("Summary.".into()),
                        r#type: Some(2),
                        metric: vec![Metric {
                            summary: Some(Summary {
                                sample_count: Some(2),
                                sample_sum: Some(3.0),
                                quantile: vec![Quantile {
                                    quantile: Some(0.5),
                                    value: Some(1.0),
                                }],
                            }),
                            ..Metric::default()
                        }],
                    },
                    MetricFamily {
                        name: Some("ph".into()),
                        help: Some("Histogram.".into()),
                        r#type: Some(4),
                        metric: vec![Metric {
                            histogram: Some(Histogram {
                                sample_count: Some(2),
                                sample_sum: Some(1.5),
                                bucket: vec![Bucket {
                                    cumulative_count: Some(1),
                                    upper_bound: Some(1.0),
                                    cumulative_count_float: None,
                                }],
                                ..Histogram::default()
                            }),
                            ..Metric::default()
                        }],
                    },
                ],
            )],
        ),
        case(
            "protobuf, a later family of the same name wins",
            vec![proto_put(
                "/metrics/job/a",
                &[gauge_family("pg", 1.0, None), gauge_family("pg", 2.0, None)],
            )],
        ),
        case(
            "truncated protobuf",
            vec![{
                let mut step = proto_put("/metrics/job/a", &[gauge_family("pg", 1.0, None)]);
                step.body.pop();
                step
            }],
        ),
        case(
            "protobuf POST of a family without metrics removes the stored one",
            vec![
                put("/metrics/job/a", "m 1\nn 2\n"),
                Step {
                    method: "POST",
                    ..proto_put(
                        "/metrics/job/a",
                        &[MetricFamily {
                            metric: Vec::new(),
                            ..gauge_family("m", 0.0, None)
                        }],
                    )
                },
            ],
        ),
        Case {
            name: "protobuf with a timestamp",
            steps: vec![proto_put(
                "/metrics/job/ts",
                &[gauge_family("pg", 1.0, Some(5))],
            )],
            expect: Expect::Differs(poisoning, &["!job=\"ts\""]),
        },
        // Routes.
        case("GET on a push path", vec![get("/metrics/job/a")]),
        case("POST on the scrape path", vec![post("/metrics", "")]),
        case("an unknown path", vec![get("/no/such/path")]),
        case(
            "a push path that is not job",
            vec![put("/metrics/jobs/a", "m 1\n")],
        ),
        case(
            "wipe without the admin API",
            vec![
                put("/metrics/job/a", "m 1\n"),
                put("/api/v1/admin/wipe", ""),
            ],
        ),
        case("quit without the lifecycle API", vec![put("/-/quit", "")]),
        case("GET quit", vec![get("/-/quit")]),
        case(
            "GET on a push path that is not job",
            vec![get("/metrics/jobs/a")],
        ),
        case(
            "GET on a push path without a job",
            vec![get("/metrics/job/")],
        ),
        case(
            "an empty job in base64",
            vec![put("/metrics/job@base64/", "m 1\n")],
        ),
        case(
            "a malformed percent escape",
            vec![put("/metrics/job/a%zz", "m 1\n")],
        ),
        case(
            "OPTIONS on a push path",
            vec![Step {
                method: "OPTIONS",
                ..get("/metrics/job/a")
            }],
        ),
        case(
            "OPTIONS on the scrape path",
            vec![Step {
                method: "OPTIONS",
                ..get("/metrics")
            }],
        ),
        case(
            "OPTIONS on the API",
            vec![Step {
                method: "OPTIONS",
                ..get("/api/v1/metrics")
            }],
        ),
        case(
            "HEAD on the scrape path",
            vec![Step {
                method: "HEAD",
                ..get("/metrics")
            }],
        ),
    ]
}

/// The pushed groups of a scrape: own metrics left out, push times blanked.
fn pushed(scrape: &str) -> Vec<String> {
    let own = ["go_", "process_", "promhttp_", "pushgateway_", "promdrop_"];
    let mut lines: Vec<String> = scrape
        .lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .unwrap_or(l);
            !own.iter().any(|p| name.starts_with(p))
        })
        .map(|l| match l.rsplit_once(' ') {
            Some((series, value)) if l.starts_with("push_") && value != "0" => {
                format!("{series} T")
            }
            _ => l.to_owned(),
        })
        .collect();
    lines.sort();
    lines
}

fn run_case(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let ours = TestServer::start(dir.path());
    let Some(theirs) = Pushgateway::start() else {
        return Ok(());
    };
    let deliberate = matches!(case.expect, Expect::Differs(..));
    for (i, step) in case.steps.iter().enumerate() {
        let headers: Vec<(&str, &str)> =
            step.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let a = http(ours.addr, step.method, step.path, &headers, &step.body)
            .map_err(|e| e.to_string())?;
        let b = http(theirs.addr, step.method, step.path, &headers, &step.body)
            .map_err(|e| e.to_string())?;
        // A deliberate difference is always a refusal by promdrop, of the
        // last request.
        if deliberate && i + 1 == case.steps.len() {
            if a.0 != 400 {
                return Err(format!(
                    "promdrop answered {} to the push it must refuse",
                    a.0
                ));
            }
            continue;
        }
        if a.0 != b.0 {
            return Err(format!(
                "{} {}: promdrop {} ({}) vs Pushgateway {} ({})",
                step.method,
                step.path,
                a.0,
                String::from_utf8_lossy(&a.1).trim(),
                b.0,
                String::from_utf8_lossy(&b.1).trim()
            ));
        }
    }
    let scrape_ours = ours.scrape();
    let scrape_theirs =
        String::from_utf8_lossy(&http_get(theirs.addr, "/metrics").unwrap().1).into_owned();
    match &case.expect {
        Expect::Same | Expect::SameJson => {
            let (a, b) = (pushed(&scrape_ours), pushed(&scrape_theirs));
            if a != b {
                return Err(format!(
                    "scrapes differ:\npromdrop:\n{}\nPushgateway:\n{}",
                    a.join("\n"),
                    b.join("\n")
                ));
            }
        }
        Expect::Differs(why, promdrop_must) => {
            for line in *promdrop_must {
                let ok = match line.strip_prefix('!') {
                    Some(absent) => !scrape_ours.contains(absent),
                    None => scrape_ours.lines().any(|l| l == *line),
                };
                if !ok {
                    return Err(format!(
                        "promdrop's scrape fails {line:?} (deliberately, because {why}):\n{scrape_ours}"
                    ));
                }
            }
        }
    }
    if let Expect::SameJson = case.expect {
        let a = crate::serve::normalized_groups(&http_get(ours.addr, "/api/v1/metrics").unwrap().1);
        let b =
            crate::serve::normalized_groups(&http_get(theirs.addr, "/api/v1/metrics").unwrap().1);
        if a != b {
            return Err(format!(
                "JSON differs:\npromdrop:\n{a:#}\nPushgateway:\n{b:#}"
            ));
        }
    }
    Ok(())
}

#[test]
fn promdrop_serve_answers_like_the_pushgateway() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let failures = failures_in_parallel(&cases, |c| {
        run_case(c).err().map(|e| format!("[{}] {e}", c.name))
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
