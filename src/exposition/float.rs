//! Float spelling as Go reads and writes it: `strconv.ParseFloat` behind the
//! text parser's extra refusals, and `FormatFloat(v, 'g', -1, 64)` for output.
//!
//! Owns nothing but these two conversions; it never allocates on the hot path
//! of reading, and writes straight into the caller's buffer.

/// Parses a sample value, `le` or `quantile` exactly as the Go text parser does.
///
/// Accepted: decimal forms (`1`, `-0`, `.5`, `5.`, `+5`, `1e3`, `1E-3`, `007`),
/// `NaN` in any case without a sign, and `Inf`/`Infinity` in any case with an
/// optional sign. Refused: `p`, `P` or `_` anywhere, hex, an empty string, and
/// values that overflow to infinity (`1e400`). Underflow rounds to zero.
pub fn parse(token: &[u8]) -> Option<f64> {
    if token.is_empty() || token.iter().any(|b| matches!(b, b'p' | b'P' | b'_')) {
        return None;
    }
    if let Some(special) = parse_special(token) {
        return Some(special);
    }
    if !is_decimal(token) {
        return None;
    }
    // `is_decimal` admitted only ASCII.
    let text = std::str::from_utf8(token).ok()?;
    let value: f64 = text.parse().ok()?;
    value.is_finite().then_some(value)
}

fn parse_special(token: &[u8]) -> Option<f64> {
    let (negative, rest) = match token.first() {
        Some(b'+') => (false, &token[1..]),
        Some(b'-') => (true, &token[1..]),
        _ => {
            if token.eq_ignore_ascii_case(b"nan") {
                return Some(f64::NAN);
            }
            (false, token)
        }
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    } else {
        None
    }
}

/// `[+-]? (digits ('.' digits?)? | '.' digits) ([eE] [+-]? digits)?`
fn is_decimal(token: &[u8]) -> bool {
    let mut i = usize::from(matches!(token.first(), Some(b'+' | b'-')));
    let int_start = i;
    while token.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if token.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while token.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if matches!(token.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(token.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while token.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == token.len()
}

/// Appends `value` spelled as Go's `%v`/`'g'` shortest form: `NaN`, `+Inf`,
/// `-Inf`, `-0`, `123456`, `1.2345675e+06`, `1e-05`.
///
/// This is the spelling node_exporter and the Pushgateway emit, so files and
/// scrapes written by promdrop diff cleanly against theirs.
pub fn write(out: &mut String, value: f64) {
    use std::fmt::Write as _;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0" } else { "0" });
    } else if value.fract() == 0.0 && value.abs() < 1e6 {
        // Integers are the common case (counts, sizes) and format fastest.
        #[allow(clippy::cast_possible_truncation)]
        let integer = value as i64;
        let _ = write!(out, "{integer}");
    } else if (1e-4..1e6).contains(&value.abs()) {
        // Go writes these positionally, with the shortest round-trip digits,
        // which is exactly what Rust's `Display` does.
        let _ = write!(out, "{value}");
    } else {
        let mut scratch = String::with_capacity(32);
        let _ = write!(scratch, "{value:e}");
        write_scientific_as_go(out, &scratch);
    }
}

/// Converts Rust's shortest `{:e}` spelling (`-1.2345675e6`) to Go's layout.
fn write_scientific_as_go(out: &mut String, rust: &str) {
    let (mantissa, exponent) = rust.split_once('e').unwrap_or((rust, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.push_str(sign);
    if !(-4..6).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
    } else if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exponent.unsigned_abs() as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

/// Go's spelling of `value` as a new string; see [`write()`].
pub fn to_string(value: f64) -> String {
    let mut out = String::new();
    write(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::{parse, to_string};

    #[test]
    fn accepts_what_go_accepts() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-0", -0.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("+5", 5.0),
            ("007", 7.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("1.5E+3", 1500.0),
            ("1e-400", 0.0),
            ("4.9e-324", 4.9e-324),
            ("1.7976931348623157e308", f64::MAX),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("Inf", f64::INFINITY),
            ("inf", f64::INFINITY),
            ("INF", f64::INFINITY),
            ("Infinity", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
        ];
        for &(text, want) in cases {
            let got = parse(text.as_bytes()).unwrap_or_else(|| panic!("{text:?} refused"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text:?}");
        }
        for text in ["NaN", "nan", "NAN"] {
            assert!(parse(text.as_bytes()).is_some_and(f64::is_nan), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for text in [
            "", "+NaN", "-NaN", "0x1A", "0x1p3", "1_000", "1e400", "-1e400", "1,5", ".", "e5",
            "1e", "1e+", "infin", "--1", "1.2.3", "1\r", " 1", "１",
        ] {
            assert_eq!(parse(text.as_bytes()), None, "{text:?} accepted");
        }
    }

    #[test]
    fn writes_like_go_g_format() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (123_456.0, "123456"),
            (1e6, "1e+06"),
            (1_234_567.5, "1.2345675e+06"),
            (1_795_260_746.352_809, "1.795260746352809e+09"),
            (3.25, "3.25"),
            (0.0001, "0.0001"),
            (0.000_012_5, "1.25e-05"),
            (1e-5, "1e-05"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.1, "0.1"),
            (100_000.5, "100000.5"),
        ];
        for &(value, want) in cases {
            assert_eq!(to_string(value), want, "{value:?}");
        }
    }

    #[test]
    fn written_values_read_back_exactly() {
        for value in [
            0.1,
            1.0 / 3.0,
            1e-300,
            5e-324,
            f64::MAX,
            -2.5e17,
            9_007_199_254_740_993.0,
        ] {
            let text = to_string(value);
            assert_eq!(
                parse(text.as_bytes()).map(f64::to_bits),
                Some(value.to_bits()),
                "{text}"
            );
        }
    }
}
