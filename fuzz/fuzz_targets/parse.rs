//! Fuzz target for the exposition core.
//!
//! Properties checked on every input:
//! - `parse` and `validate` never panic, whatever the bytes;
//! - round trip: text that promdrop accepts (it parses and validates clean,
//!   exactly what `promdrop check` passes) renders to text it accepts again,
//!   with identical families. Parsed input that `validate` refuses (a
//!   family named like a summary's `_count` before the summary's TYPE line,
//!   say) is never written by promdrop, so it is outside the property.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promdrop::exposition::{parse::parse, render, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(families) = parse(data) else { return };
    let sources = [validate::Source { name: "fuzz.prom", families: &families }];
    if !validate::validate(&sources).is_empty() {
        return;
    }
    let text = render::to_string(&families);
    match parse(text.as_bytes()) {
        Ok(again) => assert_eq!(again, families, "reparse differs; rendered:\n{text}"),
        Err(e) => panic!("rendered text does not parse: {e:?}\nrendered:\n{text}"),
    }
    let again = [validate::Source { name: "fuzz.prom", families: &families }];
    assert!(validate::validate(&again).is_empty(), "rendered text no longer validates:\n{text}");
});
