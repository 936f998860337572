//! Fuzz target for grouping keys from push URLs (the Pushgateway's rules,
//! `@base64` included).
//!
//! The input is one or two URL paths (what follows `/metrics/`), split at
//! the first newline. Properties:
//! - `from_url_path` never panics, whatever the text;
//! - an accepted key names one file inside the directory: a single path
//!   component, not hidden, ending in `.prom`, at most 255 bytes, no NUL;
//! - two keys share a file name only if they are the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promdrop::grouping_key::GroupingKey;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
    let keys: Vec<GroupingKey> = [first, second]
        .into_iter()
        .filter_map(|path| GroupingKey::from_url_path(path).ok())
        .collect();
    for key in &keys {
        let name = key.file_name();
        assert!(
            name.ends_with(".prom")
                && !name.starts_with('.')
                && !name.contains('/')
                && !name.contains('\0')
                && name.len() <= 255,
            "unsafe file name {name:?} for {key:?}"
        );
    }
    if let [a, b] = keys.as_slice() {
        assert_eq!(a == b, a.file_name() == b.file_name(), "{a:?} and {b:?}");
    }
});
