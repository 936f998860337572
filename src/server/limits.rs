//! The caps `serve` puts on what one client can make it hold or do: body
//! sizes (compressed and decompressed), series per push, label name and
//! value lengths, and groups. A refusal names the cap and its flag. The
//! groups cap is kept by the store, under its directory lock, so that
//! concurrent pushes cannot pass it together.

use crate::exposition::Family;

/// The caps, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body as received (gzip-compressed or not).
    pub compressed_body: usize,
    /// The largest body after decompression.
    pub body: usize,
    /// The most series one push may hold.
    pub series: usize,
    /// The longest label name, in bytes.
    pub label_name: usize,
    /// The longest label value, in bytes.
    pub label_value: usize,
    /// The most groups the directory may hold; a push that would create
    /// one more is refused.
    pub groups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            compressed_body: 16 << 20,
            body: 64 << 20,
            series: 500_000,
            label_name: 1024,
            label_value: 16 * 1024,
            groups: 100_000,
        }
    }
}

/// Which cap a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `--max-compressed-body`
    CompressedBody,
    /// `--max-body`
    Body,
    /// `--max-series-per-push`
    Series,
    /// `--max-label-name-length`
    LabelName,
    /// `--max-label-value-length`
    LabelValue,
    /// `--max-groups`
    Groups,
}

impl Cap {
    /// The flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::CompressedBody => "--max-compressed-body",
            Self::Body => "--max-body",
            Self::Series => "--max-series-per-push",
            Self::LabelName => "--max-label-name-length",
            Self::LabelValue => "--max-label-value-length",
            Self::Groups => "--max-groups",
        }
    }

    /// What it counts.
    pub fn unit(self) -> &'static str {
        match self {
            Self::CompressedBody | Self::Body | Self::LabelName | Self::LabelValue => "bytes",
            Self::Series => "series",
            Self::Groups => "groups",
        }
    }
}

/// A request past a cap: what was too big, the cap, and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} exceeds the limit of {limit} {} ({})", .cap.unit(), .cap.flag())]
pub struct OverLimit {
    /// What was too big, e.g. `push of 12 series`.
    pub what: String,
    /// The cap.
    pub cap: Cap,
    /// Its value.
    pub limit: usize,
}

impl Limits {
    /// Checks the parsed families of one push against the series and label
    /// caps.
    pub fn check(&self, families: &[Family]) -> Result<(), OverLimit> {
        let series: usize = families.iter().map(|f| f.series().count()).sum();
        if series > self.series {
            return Err(OverLimit {
                what: format!("push of {series} series"),
                cap: Cap::Series,
                limit: self.series,
            });
        }
        for family in families {
            for labels in family.series().map(|s| s.labels) {
                for (name, value) in labels.iter() {
                    if name.len() > self.label_name {
                        return Err(OverLimit {
                            what: format!(
                                "label name {:?}… of metric {:?} ({} bytes)",
                                cut(name),
                                family.name(),
                                name.len()
                            ),
                            cap: Cap::LabelName,
                            limit: self.label_name,
                        });
                    }
                    if value.len() > self.label_value {
                        return Err(OverLimit {
                            what: format!(
                                "value of label {name:?} of metric {:?} ({} bytes)",
                                family.name(),
                                value.len()
                            ),
                            cap: Cap::LabelValue,
                            limit: self.label_value,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The start of a long name, for a message.
fn cut(name: &str) -> &str {
    &name[..name.len().min(40)]
}

#[cfg(test)]
mod tests {
    use super::{Cap, Limits};
    use crate::exposition::parse::parse;

    #[test]
    fn each_cap_is_named_with_its_flag() {
        let limits = Limits {
            series: 2,
            label_name: 8,
            label_value: 5,
            ..Limits::default()
        };
        let families = parse(b"a{x=\"1\"} 1\na{x=\"2\"} 1\nb 1\n").unwrap();
        let err = limits.check(&families).unwrap_err();
        assert_eq!(err.cap, Cap::Series);
        assert_eq!(
            err.to_string(),
            "push of 3 series exceeds the limit of 2 series (--max-series-per-push)"
        );
        let families = parse(b"a{long_name=\"1\"} 1\n").unwrap();
        assert_eq!(
            limits.check(&families).unwrap_err().to_string(),
            "label name \"long_name\"… of metric \"a\" (9 bytes) exceeds the limit of 8 bytes (--max-label-name-length)"
        );
        let families = parse(b"a{x=\"123456\"} 1\n").unwrap();
        assert_eq!(
            limits.check(&families).unwrap_err().to_string(),
            "value of label \"x\" of metric \"a\" (6 bytes) exceeds the limit of 5 bytes (--max-label-value-length)"
        );
        // At the caps exactly: accepted.
        let families = parse(b"a{labelnam=\"12345\"} 1\nb 2\n").unwrap();
        assert_eq!(limits.check(&families), Ok(()));
    }
}
