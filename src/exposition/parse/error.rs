//! The errors of [`parse`](super::parse): where parsing stopped, and why,
//! in the house tone (what was found, what was expected).

use std::fmt;

/// Where and why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Set when the line ends in a carriage return, the usual root cause.
    pub crlf: bool,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if self.crlf {
            write!(
                f,
                " (the line ends in a carriage return: use LF line endings, not CRLF)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// The ways a text exposition can be refused at parse time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // each variant is documented by its message
pub enum ParseErrorKind {
    #[error("unexpected end of input: the last line must end with a newline")]
    UnexpectedEof,
    #[error("the input starts with a UTF-8 byte order mark, which the format does not allow")]
    ByteOrderMark,
    #[error("invalid metric name: expected a letter, '_' or ':', found {found}")]
    InvalidMetricName { found: String },
    #[error(
        "invalid metric name in {keyword} line: expected a blank after the name, found {found}"
    )]
    InvalidMetricNameInComment {
        keyword: &'static str,
        found: String,
    },
    #[error("invalid label name for metric {metric:?}: expected a letter or '_', found {found}")]
    InvalidLabelName { metric: String, found: String },
    #[error("label name \"__name__\" is reserved")]
    ReservedLabelName,
    #[error("expected '=' after label name {label:?}, found {found}")]
    ExpectedEquals { label: String, found: String },
    #[error("duplicate label name {label:?} for metric {metric:?}")]
    DuplicateLabelName { metric: String, label: String },
    #[error("expected '\"' at start of the value of label {label:?}, found {found}")]
    ExpectedQuote { label: String, found: String },
    #[error("label value \"{value}\" is not valid UTF-8")]
    InvalidLabelValue { value: String },
    #[error("label value {value:?} contains an unescaped new-line (missing closing '\"'?)")]
    UnescapedNewline { value: String },
    #[error("invalid escape sequence {sequence:?} in {context}: only {allowed} are allowed")]
    InvalidEscape {
        sequence: String,
        context: &'static str,
        allowed: &'static str,
    },
    #[error("expected ',' or '}}' after label value {value:?}, found {found}")]
    UnexpectedEndOfLabelValue { value: String, found: String },
    #[error("expected float as value for '{label}' label, got {value:?}")]
    InvalidBound { label: &'static str, value: String },
    #[error("expected float as value, got {token:?}")]
    InvalidValue { token: String },
    #[error("expected integer as timestamp, got {token:?}")]
    InvalidTimestamp { token: String },
    #[error(
        "trailing blank after the value: node_exporter reads anything after a value as a timestamp"
    )]
    TrailingBlank,
    #[error(
        "exemplar {token:?} after the value: exemplars are OpenMetrics only, not text format 0.0.4"
    )]
    Exemplar { token: String },
    #[error("spurious string after timestamp: {token:?}")]
    SpuriousAfterTimestamp { token: String },
    #[error(
        "client-side timestamp {token:?} is not allowed: node_exporter skips the whole file and the Pushgateway refuses the push"
    )]
    Timestamp { token: String },
    #[error("second HELP line for metric name {metric:?}")]
    SecondHelp { metric: String },
    #[error("second TYPE line for metric name {metric:?}, or TYPE reported after samples")]
    SecondType { metric: String },
    #[error(
        "unknown metric type {token:?}: expected counter, gauge, histogram, summary or untyped"
    )]
    UnknownType { token: String },
    #[error("metric type \"gauge_histogram\" is not supported: node_exporter 1.5.0 crashes on it")]
    GaugeHistogram,
    #[error(
        "HELP text for {metric:?} is not valid UTF-8: the Prometheus server would refuse the scrape"
    )]
    HelpNotUtf8 { metric: String },
    #[error(
        "sample of summary {metric:?} has no 'quantile' label: node_exporter silently ignores it"
    )]
    SummaryWithoutQuantile { metric: String },
    #[error(
        "sample {name:?} of histogram {metric:?} has no 'le' label: node_exporter silently ignores it"
    )]
    HistogramWithoutLe { name: String, metric: String },
    #[error("{label}=\"NaN\" on {metric:?}: node_exporter silently ignores this sample")]
    NanBound { label: &'static str, metric: String },
    #[error(
        "second {label}={bound:?} for one series of {metric:?}: node_exporter silently keeps only the last"
    )]
    DuplicateBound {
        label: &'static str,
        bound: String,
        metric: String,
    },
    #[error("second {name:?} sample for one series: node_exporter silently keeps only the last")]
    DuplicateSumOrCount { name: String },
    #[error(
        "{name:?} must be a whole number from 0 to 2^64, got {token:?}: node_exporter would store it as an unsigned integer"
    )]
    BadCount { name: String, token: String },
    #[error(
        "{keyword} line for {metric:?} matches no sample, but {sibling:?} has samples: node_exporter would serve them without it (name the {keyword} line {sibling:?}, or move it before those samples)"
    )]
    OrphanDeclaration {
        keyword: &'static str,
        metric: String,
        sibling: String,
    },
}
