//! The grouping key: a job plus optional labels, as in the Pushgateway. It is
//! parsed in exactly one place, maps to exactly one file name, and injects
//! its labels into pushed metrics.
//!
//! The file name is derived deterministically and injectively: the job, then
//! `@name=value` per label in name order, with every byte outside
//! `[A-Za-z0-9_.-]` (and a leading `.`) written as `%XX`. `backup` becomes
//! `backup.prom`, `{job="backup", instance="db1"}` becomes
//! `backup@instance=db1.prom`. A name that would be long keeps a readable
//! prefix and ends in `~` plus a SHA-256 of the key; `~` is escaped
//! everywhere else, so hashed and plain names never meet. No name contains
//! `/` or NUL, so no key can leave the directory.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::exposition::parallel::for_each_family;
use crate::exposition::validate::is_label_name;
use crate::exposition::{Family, Injection};

/// The longest file stem kept readable; longer ones are hashed. Leaves room
/// under the 255-byte name limit for `.prom` and for temp-file decorations.
const MAX_STEM: usize = 180;

/// A job and its grouping labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupingKey {
    job: String,
    labels: BTreeMap<String, String>,
}

/// Why a grouping key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The job is empty.
    #[error("job name is required")]
    EmptyJob,
    /// A `NAME=VALUE` argument without `=`.
    #[error("grouping label {0:?} is not NAME=VALUE")]
    NotAPair(String),
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or starting with `__`.
    #[error("improper label name {0:?}: expected [a-zA-Z_][a-zA-Z0-9_]* not starting with \"__\"")]
    LabelName(String),
    /// `job` given as a label.
    #[error("\"job\" cannot be a grouping label: it is the JOB argument")]
    JobLabel,
    /// The same label twice.
    #[error("grouping label {0:?} is given twice")]
    Duplicate(String),
}

impl GroupingKey {
    /// A valid key from string slices, for tests.
    #[cfg(test)]
    pub(crate) fn of(job: &str, labels: &[(&str, &str)]) -> Self {
        Self::new(
            job,
            labels
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        )
        .expect("a valid key")
    }

    /// A key from a job and labels, validated.
    pub fn new(
        job: impl Into<String>,
        labels: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, KeyError> {
        let job = job.into();
        if job.is_empty() {
            return Err(KeyError::EmptyJob);
        }
        let mut map = BTreeMap::new();
        for (name, value) in labels {
            if name == "job" {
                return Err(KeyError::JobLabel);
            }
            if !is_label_name(&name) || name.starts_with("__") {
                return Err(KeyError::LabelName(name));
            }
            if map.contains_key(&name) {
                return Err(KeyError::Duplicate(name));
            }
            map.insert(name, value);
        }
        Ok(Self { job, labels: map })
    }

    /// A key from the command line: `JOB` and `NAME=VALUE` arguments.
    pub fn from_args(job: &str, pairs: &[String]) -> Result<Self, KeyError> {
        let labels = pairs
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .ok_or_else(|| KeyError::NotAPair(pair.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(job, labels)
    }

    /// The job.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The grouping labels other than the job, in name order.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The file stem: see the module documentation.
    pub fn file_stem(&self) -> String {
        let mut stem = String::new();
        escape(&mut stem, &self.job);
        for (name, value) in &self.labels {
            stem.push('@');
            stem.push_str(name);
            stem.push('=');
            escape(&mut stem, value);
        }
        if stem.len() <= MAX_STEM {
            return stem;
        }
        let mut cut = MAX_STEM / 2;
        // Never cut inside a `%XX`.
        while stem.as_bytes()[cut - 1] == b'%' || stem.as_bytes()[cut - 2] == b'%' {
            cut -= 1;
        }
        stem.truncate(cut);
        stem.push('~');
        let digest = Sha256::digest(self.canonical_bytes());
        for byte in &digest[..16] {
            let _ = write!(stem, "{byte:02x}");
        }
        stem
    }

    /// The group's file name in the directory: the stem plus `.prom`.
    pub fn file_name(&self) -> String {
        format!("{}.prom", self.file_stem())
    }

    /// Length-prefixed job, names and values: unambiguous whatever they hold.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |s: &str| {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        put(&self.job);
        for (name, value) in &self.labels {
            put(name);
            put(value);
        }
        out
    }

    /// The grouping labels as the Pushgateway sets them on every series:
    /// they override body labels of the same name, and `instance=""` is
    /// added where there is no instance label. The job is written under
    /// `job_label` (normally `job`).
    pub fn injection(&self, job_label: &str) -> Arc<Injection> {
        let mut set: Vec<(&str, &str)> = vec![(job_label, self.job.as_str())];
        set.extend(self.labels());
        Arc::new(Injection::new(&set, &[("instance", "")]))
    }

    /// Sets [`GroupingKey::injection`] on every series. Families the parser
    /// already merged it into are left as they are.
    pub fn inject(&self, families: &mut [Family], job_label: &str) {
        let injection = self.injection(job_label);
        if families.iter().any(|family| !family.carries(&injection)) {
            for_each_family(families, |family| family.set_labels(&injection));
        }
    }
}

/// Why a Pushgateway URL path names no valid group. The messages are the
/// Pushgateway's own, so clients see the same 400 bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlKeyError {
    /// The path is not `job/...` or `job@base64/...`: no such route.
    #[error("not a grouping key path")]
    NoRoute,
    /// The job is empty (only reachable through `@base64`).
    #[error("job name is required")]
    EmptyJob,
    /// A trailing value is missing.
    #[error("odd number of components in label string {0:?}")]
    OddComponents(String),
    /// A label name outside the legacy charset, or starting with `__`.
    #[error("improper label name {0:?}")]
    LabelName(String),
    /// The job's base64 does not decode.
    #[error("invalid base64 encoding in job name {job:?}: {reason}")]
    JobBase64 {
        /// The encoded job, as sent.
        job: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `%` in a path segment without two hex digits after it.
    #[error(
        "invalid URL escape in path segment {0:?}: a '%' must be followed by two hexadecimal digits"
    )]
    Escape(String),
    /// A path segment that is not UTF-8 once percent-decoded.
    #[error("path segment {0:?} is not valid UTF-8 once percent-decoded")]
    NotUtf8(String),
    /// A label value's base64 does not decode.
    #[error("invalid base64 encoding for label {name}={value:?}: {reason}")]
    ValueBase64 {
        /// The label name.
        name: String,
        /// The encoded value, as sent.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl GroupingKey {
    /// The key of a Pushgateway push URL: `path` is what follows
    /// `/metrics/`, already percent-decoded, e.g. `job/backup/instance/db1`
    /// or `job@base64/YmFja3Vw/instance@base64/=`.
    ///
    /// As in the Pushgateway: a `job` pair among the labels is ignored (the
    /// job segment wins), a label given twice keeps the last value, a trailing
    /// `/` right after the job means no labels, and `@base64` values are
    /// URL-safe base64 with optional padding (`=` alone is the empty value).
    pub fn from_url_path(path: &str) -> Result<Self, UrlKeyError> {
        let (route, rest) = path.split_once('/').ok_or(UrlKeyError::NoRoute)?;
        let (job, labels) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if job.is_empty() {
            // An empty segment matches no route, `job` or `job@base64`.
            return Err(UrlKeyError::NoRoute);
        }
        let job = match route {
            "job" => job.to_owned(),
            "job@base64" => decode_base64(job).map_err(|reason| UrlKeyError::JobBase64 {
                job: job.into(),
                reason,
            })?,
            _ => return Err(UrlKeyError::NoRoute),
        };
        let mut map = BTreeMap::new();
        if labels.len() > 1 {
            let components: Vec<&str> = labels.split('/').collect();
            if components.len().is_multiple_of(2) {
                return Err(UrlKeyError::OddComponents(labels.into()));
            }
            for pair in components[1..].chunks(2) {
                let (name, value) = (pair[0], pair[1]);
                let plain = name.strip_suffix("@base64").unwrap_or(name);
                if !is_label_name(plain) || plain.starts_with("__") {
                    return Err(UrlKeyError::LabelName(plain.into()));
                }
                let value = if plain == name {
                    value.to_owned()
                } else {
                    decode_base64(value).map_err(|reason| UrlKeyError::ValueBase64 {
                        name: plain.into(),
                        value: value.into(),
                        reason,
                    })?
                };
                map.insert(plain.to_owned(), value);
            }
        }
        if job.is_empty() {
            return Err(UrlKeyError::EmptyJob);
        }
        map.remove("job");
        Ok(Self { job, labels: map })
    }
}

/// URL-safe base64 as the Pushgateway reads it: trailing `=` stripped, no
/// padding needed, non-canonical trailing bits and CR/LF tolerated (Go's
/// lenient decoder).
fn decode_base64(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('=');
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut sextets = 0;
    for (i, byte) in trimmed.bytes().enumerate() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'\r' | b'\n' => continue,
            _ => return Err(format!("illegal base64 data at input byte {i}")),
        };
        sextets += 1;
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).expect("masked to a byte"));
        }
    }
    if sextets % 4 == 1 {
        return Err(format!(
            "illegal base64 data at input byte {}",
            trimmed.len()
        ));
    }
    String::from_utf8(out).map_err(|_| "the decoded value is not valid UTF-8".to_owned())
}

impl fmt::Display for GroupingKey {
    /// `{job="backup",instance="db1"}`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{job={:?}", self.job)?;
        for (name, value) in &self.labels {
            write!(f, ",{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

fn escape(out: &mut String, text: &str) {
    for (i, byte) in text.bytes().enumerate() {
        let safe =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if safe {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::{GroupingKey, KeyError, UrlKeyError};
    use crate::exposition::parse::parse;
    use crate::exposition::render::to_string;

    fn key(job: &str, labels: &[(&str, &str)]) -> GroupingKey {
        GroupingKey::of(job, labels)
    }

    #[test]
    fn readable_names_in_the_common_case() {
        assert_eq!(key("backup", &[]).file_name(), "backup.prom");
        assert_eq!(
            key("backup", &[("instance", "db1")]).file_name(),
            "backup@instance=db1.prom"
        );
        assert_eq!(
            key("backup.daily", &[("z", "1"), ("a", "x-y_z")]).file_name(),
            "backup.daily@a=x-y_z@z=1.prom"
        );
    }

    #[test]
    fn unsafe_bytes_are_escaped() {
        let cases = [
            ("../../x", "%2E.%2F..%2Fx.prom"),
            ("/", "%2F.prom"),
            (".", "%2E.prom"),
            ("a\0b", "a%00b.prom"),
            ("100%", "100%25.prom"),
            ("Προ", "%CE%A0%CF%81%CE%BF.prom"),
            ("a@b=c~", "a%40b%3Dc%7E.prom"),
            (".hidden", "%2Ehidden.prom"),
        ];
        for (job, want) in cases {
            assert_eq!(key(job, &[]).file_name(), want, "{job:?}");
        }
        assert_eq!(
            key("j", &[("path", "/var/../etc")]).file_name(),
            "j@path=%2Fvar%2F..%2Fetc.prom"
        );
        assert_eq!(
            key("j", &[("instance", "")]).file_name(),
            "j@instance=.prom"
        );
    }

    #[test]
    fn long_keys_are_hashed_below_the_name_limit() {
        let long = "v".repeat(300);
        let a = key("job", &[("path", &long)]).file_name();
        let b = key("job", &[("path", &format!("{long}w"))]).file_name();
        assert!(a.len() < 255 && b.len() < 255, "{a}");
        assert_ne!(a, b);
        assert!(a.starts_with("job@path=vvvv") && a.contains('~'), "{a}");
        assert_eq!(
            a,
            key("job", &[("path", &long)]).file_name(),
            "deterministic"
        );
        let escaped = key(&"%".repeat(100), &[]).file_name();
        assert!(
            escaped.len() < 255 && !escaped.contains("%~") && !escaped.contains("%2~"),
            "{escaped}"
        );
    }

    #[test]
    fn refuses_bad_keys() {
        assert_eq!(GroupingKey::from_args("", &[]), Err(KeyError::EmptyJob));
        assert_eq!(
            GroupingKey::from_args("j", &["a".into()]),
            Err(KeyError::NotAPair("a".into()))
        );
        for bad in ["1a=x", "a-b=x", "__x=y", "=x"] {
            let name = bad.split('=').next().unwrap().to_owned();
            assert_eq!(
                GroupingKey::from_args("j", &[bad.into()]),
                Err(KeyError::LabelName(name))
            );
        }
        assert_eq!(
            GroupingKey::from_args("j", &["job=x".into()]),
            Err(KeyError::JobLabel)
        );
        assert_eq!(
            GroupingKey::from_args("j", &["a=1".into(), "a=2".into()]),
            Err(KeyError::Duplicate("a".into()))
        );
        let ok = GroupingKey::from_args("j", &["a=b=c".into(), "e=".into()]).unwrap();
        assert_eq!(ok.to_string(), r#"{job="j",a="b=c",e=""}"#);
    }

    #[test]
    fn inject_overrides_body_labels_and_adds_instance() {
        let mut families =
            parse(b"m{job=\"body\",a=\"1\",x=\"keep\"} 1\nn{instance=\"i\"} 2\n").unwrap();
        key("backup", &[("a", "2")]).inject(&mut families, "job");
        assert_eq!(
            to_string(&families),
            "# TYPE m untyped\nm{a=\"2\",instance=\"\",job=\"backup\",x=\"keep\"} 1\n# TYPE n untyped\nn{a=\"2\",instance=\"i\",job=\"backup\"} 2\n"
        );
        let mut renamed = parse(b"m 1\n").unwrap();
        key("backup", &[]).inject(&mut renamed, "cron_job");
        assert_eq!(
            to_string(&renamed),
            "# TYPE m untyped\nm{cron_job=\"backup\",instance=\"\"} 1\n"
        );
    }

    fn url(path: &str) -> Result<String, String> {
        GroupingKey::from_url_path(path)
            .map(|k| k.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn url_paths_follow_the_pushgateway() {
        assert_eq!(url("job/backup"), Ok(r#"{job="backup"}"#.into()));
        assert_eq!(url("job/backup/"), Ok(r#"{job="backup"}"#.into()));
        assert_eq!(
            url("job/backup/instance/db1/a/1"),
            Ok(r#"{job="backup",a="1",instance="db1"}"#.into())
        );
        assert_eq!(url("job@base64/YmFja3Vw"), Ok(r#"{job="backup"}"#.into()));
        for padded in ["YQ", "YQ=", "YQ==="] {
            assert_eq!(
                url(&format!("job/j/a@base64/{padded}")),
                Ok(r#"{job="j",a="a"}"#.into())
            );
        }
        assert_eq!(
            url("job/j/instance@base64/="),
            Ok(r#"{job="j",instance=""}"#.into())
        );
        assert_eq!(
            url("job/j/p@base64/zqDPgc6_zrzOt864zrXPjc-C"),
            Ok(r#"{job="j",p="Προμηθεύς"}"#.into())
        );
        // The last of two values wins, across plain and base64 forms.
        assert_eq!(
            url("job/j/a/first/a@base64/c2Vjb25k"),
            Ok(r#"{job="j",a="second"}"#.into())
        );
        // A job pair among the labels is ignored.
        assert_eq!(url("job/j/job/other"), Ok(r#"{job="j"}"#.into()));
    }

    #[test]
    fn bad_url_paths_give_the_pushgateway_messages() {
        assert_eq!(url("job@base64/="), Err("job name is required".into()));
        assert_eq!(
            url("job/j/instance/i/"),
            Err(r#"odd number of components in label string "/instance/i/""#.into())
        );
        assert_eq!(
            url("job/j/a"),
            Err(r#"odd number of components in label string "/a""#.into())
        );
        for (name, shown) in [
            ("a=b", "a=b"),
            ("1abc", "1abc"),
            ("a.b", "a.b"),
            ("__x", "__x"),
            ("__x@base64", "__x"),
            ("@base64", ""),
            ("a@base64@base64", "a@base64"),
        ] {
            assert_eq!(
                url(&format!("job/j/{name}/v")),
                Err(format!("improper label name {shown:?}")),
                "{name}"
            );
        }
        assert_eq!(
            url("job@base64/!!"),
            Err(
                r#"invalid base64 encoding in job name "!!": illegal base64 data at input byte 0"#
                    .into()
            )
        );
        assert_eq!(
            url("job/j/a@base64/YQ=x"),
            Err(r#"invalid base64 encoding for label a="YQ=x": illegal base64 data at input byte 2"#.into())
        );
        assert_eq!(
            url("job/j/a@base64/Y"),
            Err(
                r#"invalid base64 encoding for label a="Y": illegal base64 data at input byte 1"#
                    .into()
            )
        );
        assert_eq!(
            url("job/j/a@base64/a+b"),
            Err(
                r#"invalid base64 encoding for label a="a+b": illegal base64 data at input byte 1"#
                    .into()
            )
        );
        for no_route in ["jobs/j", "job", "job/", "other/x/y"] {
            assert_eq!(
                GroupingKey::from_url_path(no_route),
                Err(UrlKeyError::NoRoute),
                "{no_route}"
            );
        }
    }

    fn any_key() -> impl Strategy<Value = GroupingKey> {
        let text = prop_oneof![
            any::<String>(),
            "[./%@=~a]{0,6}",
            Just(".".to_owned()),
            Just("..".to_owned())
        ];
        let labels = prop::collection::btree_map("[a-z_][a-z0-9_]{0,3}", text.clone(), 0..3);
        (text.prop_filter("job", |j| !j.is_empty()), labels).prop_filter_map(
            "valid",
            |(job, labels)| {
                GroupingKey::new(
                    job,
                    labels
                        .into_iter()
                        .filter(|(n, _)| n != "job" && !n.starts_with("__")),
                )
                .ok()
            },
        )
    }

    proptest! {
        #[test]
        fn file_names_are_safe(k in any_key()) {
            let name = k.file_name();
            prop_assert!(name.len() < 255);
            prop_assert!(!name.contains('/') && !name.contains('\0'));
            prop_assert!(!name.starts_with('.'));
            prop_assert!(name.ends_with(".prom"));
            prop_assert!(name.bytes().all(|b| b.is_ascii_graphic()));
        }

        #[test]
        fn file_names_are_injective(keys in prop::collection::vec(any_key(), 2..8)) {
            let distinct: HashSet<&GroupingKey> = keys.iter().collect();
            let names: HashSet<String> = distinct.iter().map(|k| k.file_name()).collect();
            prop_assert_eq!(names.len(), distinct.len());
        }
    }
}
