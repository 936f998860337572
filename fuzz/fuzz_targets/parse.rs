//! Fuzz target for `promdrop::exposition::parse::parse`.
//!
//! Properties checked on every input:
//! - `parse` never panics, whatever the bytes;
//! - round trip: text `parse` accepts renders (`render::to_string`) to text it
//!   accepts again, and the reparse equals the first parse;
//! - `validate` on the parsed families, as one source, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promdrop::exposition::{parse::parse, render, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(families) = parse(data) else { return };
    let text = render::to_string(&families);
    match parse(text.as_bytes()) {
        Ok(again) => assert_eq!(again, families, "reparse differs; rendered:\n{text}"),
        Err(e) => panic!("rendered text does not parse: {e:?}\nrendered:\n{text}"),
    }
    let _ = validate::validate(&[validate::Source { name: "fuzz.prom", families: &families }]);
});
