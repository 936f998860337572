//! Fuzz target for the delimited protobuf decoder (`io.prometheus.client.
//! MetricFamily`, client_golang's push format).
//!
//! Properties:
//! - `decode` never panics and never allocates without bound, whatever the
//!   bytes (libFuzzer's `-rss_limit_mb` catches the latter);
//! - families it decodes that validate clean render to text that parses
//!   back to the same families, as a push through `serve` is stored (save
//!   for families without metrics, which the store never writes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use promdrop::exposition::{parse::parse, render, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(mut families) = promdrop::protobuf::decode(data) else {
        return;
    };
    families.retain(|f| !f.is_empty());
    let sources = [validate::Source {
        name: "fuzz",
        families: &families,
    }];
    if !validate::validate(&sources).is_empty() {
        return;
    }
    let text = render::to_string(&families);
    match parse(text.as_bytes()) {
        Ok(again) => assert_eq!(again, families, "reparse differs; rendered:\n{text}"),
        Err(e) => panic!("rendered text does not parse: {e:?}\nrendered:\n{text}"),
    }
});
