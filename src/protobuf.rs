//! Reads protobuf-delimited `io.prometheus.client.MetricFamily` messages,
//! the body client_golang's push package sends by default, into the same
//! [`Family`] model as the text format. The messages are declared here by
//! hand from `client_model`'s `metrics.proto` (proto2), with only the fields
//! promdrop reads, so there is no code generation and no build script.
//!
//! Pure: bytes in, families out. What text format 0.0.4 cannot carry is
//! refused with a message, not dropped: timestamps, native histograms and
//! gauge histograms. Exemplars and created timestamps are skipped, as the
//! text format has no place for them. Names are checked by
//! [`validate`](crate::exposition::validate) like any other family.
//!
//! Kept outside [`exposition`](crate::exposition), which depends on std
//! alone.

use prost::Message;

use crate::exposition::{Distribution, Family, MetricType, Value};

/// Why a protobuf body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The stream is not a sequence of length-delimited messages.
    #[error("invalid protobuf body: {0}")]
    Decode(String),
    /// A family without a name.
    #[error("metric family {index} has no name")]
    NoName {
        /// Its position in the body, from 1.
        index: usize,
    },
    /// A type the text format cannot carry.
    #[error(
        "metric family {name:?} has type {kind}, which the text format and node_exporter cannot carry"
    )]
    Unsupported {
        /// The family.
        name: String,
        /// Its protobuf type.
        kind: &'static str,
    },
    /// A metric whose value does not match its family's type.
    #[error("metric of family {name:?} has no {kind} value")]
    Mismatch {
        /// The family.
        name: String,
        /// The family's type.
        kind: MetricType,
    },
    /// A client-side timestamp.
    #[error("pushed metrics must not have timestamps (family {name:?})")]
    Timestamp {
        /// The family.
        name: String,
    },
    /// A native (sparse) histogram.
    #[error("metric family {name:?} is a native histogram, which the text format cannot carry")]
    NativeHistogram {
        /// The family.
        name: String,
    },
    /// Families that the text format cannot carry.
    #[error("pushed metrics cannot be stored as text: {0}")]
    NotText(String),
    /// A summary with a quantile twice, or a histogram with a bucket
    /// bound twice, in one metric: the text format would refuse it.
    #[error("metric family {name:?} has {label}=\"{bound}\" twice in one metric")]
    DuplicateBound {
        /// The family.
        name: String,
        /// `quantile` or `le`.
        label: &'static str,
        /// The bound.
        bound: String,
    },
}

/// Decodes a delimited stream: each message is preceded by its length as a
/// varint, until the end of the body. As in the Pushgateway, a later family
/// with the same name replaces an earlier one. A family without metrics
/// comes back empty, which text cannot say: as in the Pushgateway, pushed
/// with POST it removes the stored family of its name. Families come back
/// sorted.
pub fn decode(mut body: &[u8]) -> Result<Vec<Family>, ProtobufError> {
    let mut families: Vec<Family> = Vec::new();
    let mut index = 0;
    while !body.is_empty() {
        index += 1;
        let message = MetricFamily::decode_length_delimited(&mut body)
            .map_err(|e| ProtobufError::Decode(e.to_string()))?;
        let family = convert(message, index)?;
        families.retain(|f| f.name() != family.name());
        families.push(family);
    }
    let (empty, families): (Vec<Family>, Vec<Family>) =
        families.into_iter().partition(Family::is_empty);
    // Protobuf can carry what the text format cannot (a NaN quantile, say),
    // and promdrop stores text: hold pushed families to exactly the text
    // parser's rules by passing them through it.
    let text = crate::exposition::render::to_string(&families);
    let mut families = crate::exposition::parse::parse(text.as_bytes())
        .map_err(|e| ProtobufError::NotText(e.kind.to_string()))?;
    families.extend(empty);
    families.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(families)
}

fn convert(message: MetricFamily, index: usize) -> Result<Family, ProtobufError> {
    let name = message
        .name
        .filter(|n| !n.is_empty())
        .ok_or(ProtobufError::NoName { index })?;
    let kind = match message.r#type.unwrap_or(0) {
        0 => MetricType::Counter,
        1 => MetricType::Gauge,
        2 => MetricType::Summary,
        3 => MetricType::Untyped,
        4 => MetricType::Histogram,
        5 => {
            return Err(ProtobufError::Unsupported {
                name,
                kind: "GAUGE_HISTOGRAM",
            });
        }
        _ => {
            return Err(ProtobufError::Unsupported {
                name,
                kind: "an unknown type",
            });
        }
    };
    let mut family = Family::new(name.clone(), kind);
    family.set_help(message.help);
    for metric in message.metric {
        if metric.timestamp_ms.is_some() {
            return Err(ProtobufError::Timestamp { name });
        }
        let mismatch = || ProtobufError::Mismatch {
            name: name.clone(),
            kind,
        };
        let value = match kind {
            MetricType::Counter => {
                Value::Single(metric.counter.ok_or_else(mismatch)?.value.unwrap_or(0.0))
            }
            MetricType::Gauge => {
                Value::Single(metric.gauge.ok_or_else(mismatch)?.value.unwrap_or(0.0))
            }
            MetricType::Untyped => {
                Value::Single(metric.untyped.ok_or_else(mismatch)?.value.unwrap_or(0.0))
            }
            MetricType::Summary => summary_value(&metric.summary.ok_or_else(mismatch)?),
            MetricType::Histogram => histogram_value(&metric.histogram.ok_or_else(mismatch)?)
                .ok_or_else(|| ProtobufError::NativeHistogram { name: name.clone() })?,
        };
        if let Value::Distribution(distribution) = &value {
            let mut bounds: Vec<f64> = distribution.points.iter().map(|(b, _)| *b).collect();
            bounds.sort_by(f64::total_cmp);
            if let Some(twice) = bounds.windows(2).find(|w| w[0].total_cmp(&w[1]).is_eq()) {
                return Err(ProtobufError::DuplicateBound {
                    name,
                    label: if kind == MetricType::Summary {
                        "quantile"
                    } else {
                        "le"
                    },
                    bound: twice[0].to_string(),
                });
            }
        }
        let labels: Vec<(String, String)> = metric
            .label
            .into_iter()
            .map(|l| (l.name.unwrap_or_default(), l.value.unwrap_or_default()))
            .collect();
        family.push(&labels, value);
    }
    family.canonicalize();
    Ok(family)
}

// Absent proto2 fields read as 0, as Go's getters (and so the Pushgateway's
// text output) have them.

fn summary_value(summary: &Summary) -> Value {
    let points = summary
        .quantile
        .iter()
        .map(|q| (q.quantile.unwrap_or(0.0), q.value.unwrap_or(0.0)))
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let count = summary.sample_count.unwrap_or(0) as f64;
    Value::Distribution(Box::new(Distribution {
        points,
        sum: Some(summary.sample_sum.unwrap_or(0.0)),
        count: Some(count),
    }))
}

/// `None` for a native histogram, which the text format cannot carry.
fn histogram_value(histogram: &Histogram) -> Option<Value> {
    if !histogram.positive_span.is_empty()
        || !histogram.negative_span.is_empty()
        || histogram.schema.is_some()
    {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let points = histogram
        .bucket
        .iter()
        .map(|b| {
            let count = b
                .cumulative_count
                .map(|c| c as f64)
                .or(b.cumulative_count_float)
                .unwrap_or(0.0);
            (b.upper_bound.unwrap_or(0.0), count)
        })
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let count = histogram
        .sample_count
        .map(|c| c as f64)
        .or(histogram.sample_count_float)
        .unwrap_or(0.0);
    Some(Value::Distribution(Box::new(Distribution {
        points,
        sum: Some(histogram.sample_sum.unwrap_or(0.0)),
        count: Some(count),
    })))
}

// The subset of client_model's metrics.proto that promdrop reads. Field
// numbers and types are the protocol; unknown fields are skipped.

/// `io.prometheus.client.MetricFamily`
#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    /// The metric name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The HELP text.
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    /// `COUNTER` 0, `GAUGE` 1, `SUMMARY` 2, `UNTYPED` 3, `HISTOGRAM` 4, `GAUGE_HISTOGRAM` 5.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    /// The series.
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// `io.prometheus.client.Metric`
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    /// The labels.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// A gauge's value.
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Single>,
    /// A counter's value.
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Single>,
    /// A summary.
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    /// An untyped value.
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Single>,
    /// A client-side timestamp, which promdrop refuses.
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
    /// A histogram.
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

/// `io.prometheus.client.LabelPair`
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    /// The label name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The label value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `Gauge`, `Counter` and `Untyped`: a value in field 1 (other fields, such
/// as a counter's exemplar, are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct Single {
    /// The value.
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Summary`
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// `_count`
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    /// `_sum`
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    /// The quantiles.
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

/// `io.prometheus.client.Quantile`
#[derive(Clone, PartialEq, Message)]
pub struct Quantile {
    /// The quantile, 0 to 1.
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    /// Its value.
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Histogram`, classic buckets plus the fields that
/// mark a native histogram.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// `_count`
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    /// `_sum`
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    /// Cumulative buckets.
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    /// `_count` as a float (float histograms).
    #[prost(double, optional, tag = "4")]
    pub sample_count_float: Option<f64>,
    /// Native histograms only.
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    /// Native histograms only.
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    /// Native histograms only.
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
}

/// `io.prometheus.client.Bucket`
#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    /// The cumulative count.
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    /// The upper bound (`le`).
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
    /// The cumulative count as a float (float histograms).
    #[prost(double, optional, tag = "4")]
    pub cumulative_count_float: Option<f64>,
}

/// `io.prometheus.client.BucketSpan` (presence is all that matters here).
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span.
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    /// Number of buckets.
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::{
        Bucket, Histogram, LabelPair, Metric, MetricFamily, ProtobufError, Quantile, Single,
        Summary, decode,
    };
    use crate::exposition::render::to_string;

    fn label(name: &str, value: &str) -> LabelPair {
        LabelPair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    fn family(name: &str, kind: i32, metrics: Vec<Metric>) -> MetricFamily {
        MetricFamily {
            name: Some(name.into()),
            help: Some(format!("{name} help.")),
            r#type: Some(kind),
            metric: metrics,
        }
    }

    fn body(families: &[MetricFamily]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn decodes_every_type_into_canonical_text() {
        let gauge = Metric {
            label: vec![label("z", "1"), label("a", "q\"")],
            gauge: Some(Single { value: Some(2.5) }),
            ..Metric::default()
        };
        let counter = Metric {
            counter: Some(Single { value: Some(7.0) }),
            ..Metric::default()
        };
        let summary = Metric {
            summary: Some(Summary {
                sample_count: Some(4),
                sample_sum: Some(10.0),
                quantile: vec![
                    Quantile {
                        quantile: Some(0.9),
                        value: Some(3.0),
                    },
                    Quantile {
                        quantile: Some(0.5),
                        value: Some(2.0),
                    },
                ],
            }),
            ..Metric::default()
        };
        let histogram = Metric {
            histogram: Some(Histogram {
                sample_count: Some(3),
                sample_sum: Some(0.7),
                bucket: vec![
                    Bucket {
                        cumulative_count: Some(1),
                        upper_bound: Some(0.1),
                        cumulative_count_float: None,
                    },
                    Bucket {
                        cumulative_count: Some(3),
                        upper_bound: Some(f64::INFINITY),
                        cumulative_count_float: None,
                    },
                ],
                ..Histogram::default()
            }),
            ..Metric::default()
        };
        let families = decode(&body(&[
            family("g", 1, vec![gauge]),
            family("c_total", 0, vec![counter]),
            family("s", 2, vec![summary]),
            family("h", 4, vec![histogram]),
        ]))
        .unwrap();
        assert_eq!(
            to_string(&families),
            "# HELP c_total c_total help.\n# TYPE c_total counter\nc_total 7\n\
             # HELP g g help.\n# TYPE g gauge\ng{a=\"q\\\"\",z=\"1\"} 2.5\n\
             # HELP h h help.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 0.7\nh_count 3\n\
             # HELP s s help.\n# TYPE s summary\ns{quantile=\"0.5\"} 2\ns{quantile=\"0.9\"} 3\ns_sum 10\ns_count 4\n"
        );
    }

    #[test]
    fn absent_sums_and_counts_read_as_zero_as_in_go() {
        // Found by the protobuf fuzz target: a summary with no fields at
        // all rendered to no lines and vanished from the stored file.
        let empty = |summary: bool| Metric {
            summary: summary.then(Summary::default),
            histogram: (!summary).then(Histogram::default),
            ..Metric::default()
        };
        let families = decode(&body(&[
            family("s", 2, vec![empty(true)]),
            family("h", 4, vec![empty(false)]),
        ]))
        .unwrap();
        let text = to_string(&families);
        assert_eq!(
            text,
            "# HELP h h help.\n# TYPE h histogram\nh_sum 0\nh_count 0\n\
             # HELP s s help.\n# TYPE s summary\ns_sum 0\ns_count 0\n"
        );
        assert_eq!(
            crate::exposition::parse::parse(text.as_bytes()).unwrap(),
            families
        );
    }

    #[test]
    fn a_bound_twice_is_refused_as_in_text() {
        // Found by the protobuf fuzz target: it rendered to text that does
        // not parse.
        let quantile = |q| Quantile {
            quantile: Some(q),
            value: Some(1.0),
        };
        let summary = Metric {
            summary: Some(Summary {
                quantile: vec![quantile(0.5), quantile(0.9), quantile(0.5)],
                ..Summary::default()
            }),
            ..Metric::default()
        };
        let err = decode(&body(&[family("s", 2, vec![summary])])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metric family \"s\" has quantile=\"0.5\" twice in one metric"
        );
    }

    #[test]
    fn what_text_cannot_carry_is_refused() {
        // Found by the protobuf fuzz target: a NaN quantile.
        let summary = Metric {
            summary: Some(Summary {
                quantile: vec![Quantile {
                    quantile: Some(f64::NAN),
                    value: Some(1.0),
                }],
                ..Summary::default()
            }),
            ..Metric::default()
        };
        let err = decode(&body(&[family("s", 2, vec![summary])])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pushed metrics cannot be stored as text: "),
            "{err}"
        );
    }

    #[test]
    fn a_family_without_metrics_comes_back_empty() {
        let families = decode(&body(&[family("empty", 2, vec![])])).unwrap();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].name(), "empty");
        assert!(families[0].is_empty());
    }

    #[test]
    fn a_later_family_of_the_same_name_wins() {
        let one = |v| Metric {
            gauge: Some(Single { value: Some(v) }),
            ..Metric::default()
        };
        let families = decode(&body(&[
            family("g", 1, vec![one(1.0)]),
            family("g", 1, vec![one(2.0)]),
        ]))
        .unwrap();
        assert_eq!(
            to_string(&families),
            "# HELP g g help.\n# TYPE g gauge\ng 2\n"
        );
    }

    #[test]
    fn refuses_what_the_text_format_cannot_carry() {
        let timestamped = Metric {
            gauge: Some(Single { value: Some(1.0) }),
            timestamp_ms: Some(5),
            ..Metric::default()
        };
        assert_eq!(
            decode(&body(&[family("g", 1, vec![timestamped])]))
                .unwrap_err()
                .to_string(),
            "pushed metrics must not have timestamps (family \"g\")"
        );
        let wrong = Metric {
            counter: Some(Single { value: Some(1.0) }),
            ..Metric::default()
        };
        assert_eq!(
            decode(&body(&[family("g", 1, vec![wrong])]))
                .unwrap_err()
                .to_string(),
            "metric of family \"g\" has no gauge value"
        );
        assert!(matches!(
            decode(&body(&[family("gh", 5, vec![])])),
            Err(ProtobufError::Unsupported { .. })
        ));
        let native = Metric {
            histogram: Some(Histogram {
                schema: Some(3),
                ..Histogram::default()
            }),
            ..Metric::default()
        };
        assert!(matches!(
            decode(&body(&[family("h", 4, vec![native])])),
            Err(ProtobufError::NativeHistogram { .. })
        ));
        let nameless = MetricFamily {
            name: None,
            ..family("x", 1, vec![])
        };
        assert_eq!(
            decode(&body(&[nameless])).unwrap_err().to_string(),
            "metric family 1 has no name"
        );
        let mut truncated = body(&[family(
            "g",
            1,
            vec![Metric {
                gauge: Some(Single { value: Some(1.0) }),
                ..Metric::default()
            }],
        )]);
        truncated.pop();
        assert!(matches!(decode(&truncated), Err(ProtobufError::Decode(_))));
        assert_eq!(decode(&[]), Ok(Vec::new()));
    }
}
