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
    if let Some(value) = parse_short_decimal(token) {
        return Some(value);
    }
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

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The common spelling, `[+-]?digits[.digits]` with at most 15 digits, read
/// in one pass; `None` sends anything else to the full reader. With at most
/// 15 digits the digits are an integer `m` exact in an `f64` and there are
/// at most 15 after the point, so `m / 10^k` is one correctly rounded
/// division of exact operands (Clinger's fast path): the value the full
/// reader finds.
fn parse_short_decimal(token: &[u8]) -> Option<f64> {
    let (negative, unsigned) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, token),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut point = None;
    for (i, &b) in unsigned.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
                if digits > 15 {
                    return None;
                }
            }
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // below 10^15 < 2^53: exact
    let value = match point.map_or(0, |i| unsigned.len() - i - 1) {
        0 => mantissa as f64,
        scale => mantissa as f64 / POW10[scale],
    };
    Some(if negative { -value } else { value })
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
/// scrapes written by promdrop diff cleanly against theirs; their text
/// format only writes a negative zero as `0`, which `render` does too.
pub fn write(out: &mut Vec<u8>, value: f64) {
    use std::io::Write as _;
    let positional = (1e-4..1e6).contains(&value.abs());
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value == 0.0 {
        out.extend_from_slice(if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        });
    } else if let Some((mantissa, scale)) = short_decimal(value.abs()) {
        if positional {
            write_positional(out, value < 0.0, mantissa, scale);
        } else {
            if value < 0.0 {
                out.push(b'-');
            }
            write_decimal(out, mantissa, scale);
        }
    } else if positional {
        // Go writes these positionally, with the shortest round-trip digits,
        // which is exactly what Rust's `Display` does.
        let _ = write!(out, "{value}");
    } else {
        write_scientific_as_go(out, &format!("{value:e}"));
    }
}

/// Mantissas below this have a unique decimal of their scale in the
/// rounding interval of their value, with a wide margin: the interval is at
/// most `value * 2^-52` wide, and `10^14 * 2^-52` is below 1/40 of a step of
/// the next finer scale.
const SHORT_MANTISSA: f64 = 1e14;

/// `(m, k)` with `value == m / 10^k` exactly as Go reads it, for the
/// smallest `k`, when `m` is below [`SHORT_MANTISSA`]: what counts, sizes,
/// and values written with a few decimals (`12.5`, `0.005`) are. Then the
/// digits of `m` are the shortest round-trip digits of `value`, the ones
/// `Display` and Go's `'g'` find the slow way: another decimal of at most as
/// many digits would lie on the same grid of `10^-k` (or a coarser one) in
/// the rounding interval, which holds only one point of that grid.
/// `value` is positive and finite.
fn short_decimal(value: f64) -> Option<(u64, usize)> {
    // A whole number (a count, a size) is its own mantissa, and no other
    // number has one at scale 0: the search starts at 1.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    if value < SHORT_MANTISSA && (value as i64) as f64 == value {
        #[allow(clippy::cast_sign_loss)] // positive
        return Some((value as i64 as u64, 0));
    }
    for (scale, &power) in POW10.iter().enumerate().skip(1) {
        // `scaled + 0.5` is exact below 2^52, so its integer part is
        // `scaled` rounded half up, which for a positive number is what
        // `round` gives; it takes no call into the maths library (x86-64
        // has no rounding instruction before SSE4.1).
        let half_up = value * power + 0.5;
        if half_up >= SHORT_MANTISSA {
            return None;
        }
        // Through i64, which x86-64 converts to and from in one instruction
        // each (u64 takes a dozen).
        let mantissa = half_up as i64;
        // `mantissa` and `power` are exact, so this division is how Go
        // reads the decimal `mantissa / 10^scale`.
        #[allow(clippy::cast_precision_loss)] // below 10^14 < 2^53: exact
        if mantissa as f64 / power == value {
            #[allow(clippy::cast_sign_loss)] // positive
            return Some((mantissa as u64, scale));
        }
    }
    None
}

/// Writes `mantissa / 10^scale`, which is from 10^-4 up to 10^6, as Go
/// does: positionally, `scale` digits after the point (none, and no point,
/// for 0). The digits are put together backwards in a buffer, two at a
/// time, then the point goes in and the text is appended at once.
fn write_positional(out: &mut Vec<u8>, negative: bool, mantissa: u64, scale: usize) {
    // A sign, six digits before the point, the point, at most 22 after it.
    let mut buf = [b'0'; 32];
    let end = buf.len();
    let mut at = end;
    let mut rest = mantissa;
    while rest >= 100 {
        let pair = 2 * (rest % 100) as usize;
        rest /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = 2 * rest as usize;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + rest as u8;
    }
    if scale > 0 {
        // At least one digit before the point: the buffer's zeros pad it.
        let point = end - scale;
        at = at.min(point - 1);
        buf.copy_within(at..point, at - 1);
        at -= 1;
        buf[point - 1] = b'.';
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    out.extend_from_slice(&buf[at..]);
}

/// `00`, `01`, ... `99`: the digits of a number below 100, two at a time.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut n = 0;
    while n < 100 {
        pairs[2 * n] = b'0' + (n / 10) as u8;
        pairs[2 * n + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    pairs
};

/// Writes `mantissa / 10^scale`, which is below 10^-4 or from 10^6 up, as
/// Go does ([`write_exponent`]). `mantissa` is not 0, and does not end in 0
/// when `scale` is not 0.
fn write_decimal(out: &mut Vec<u8>, mantissa: u64, scale: usize) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = mantissa;
    while rest > 0 {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let digits = &buf[at..];
    // At most 20 digits and a scale of at most 22: no truncation.
    let exponent = i32::from(digits.len() as u8) - 1 - i32::from(scale as u8);
    let end = digits.iter().rposition(|&d| d != b'0').map_or(1, |i| i + 1);
    write_exponent(out, &digits[..end], exponent);
}

/// Converts Rust's shortest `{:e}` spelling (`-1.2345675e6`) of a number
/// below 10^-4 or from 10^6 up to Go's (`-1.2345675e+06`).
fn write_scientific_as_go(out: &mut Vec<u8>, rust: &str) {
    let (mantissa, exponent) = rust.split_once('e').unwrap_or((rust, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if mantissa.starts_with('-') {
        out.push(b'-');
    }
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    write_exponent(out, &digits, exponent);
}

/// Writes the number `d.ddd × 10^exponent`, given its significant `digits`
/// (no trailing zeros), as Go's `'g'` does for an `exponent` outside -4 to
/// 5: `d.ddde+XX`. (Inside that range Go writes the number positionally,
/// which [`write()`] does itself.)
fn write_exponent(out: &mut Vec<u8>, digits: &[u8], exponent: i32) {
    use std::io::Write as _;
    debug_assert!(!(-4..6).contains(&exponent), "positional: {exponent}");
    out.push(digits[0]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend_from_slice(&digits[1..]);
    }
    out.push(b'e');
    out.push(if exponent < 0 { b'-' } else { b'+' });
    let _ = write!(out, "{:02}", exponent.unsigned_abs());
}

/// Go's spelling of `value` as a new string; see [`write()`].
///
/// # Panics
///
/// Never: the spelling is ASCII.
pub fn to_string(value: f64) -> String {
    let mut out = Vec::new();
    write(&mut out, value);
    String::from_utf8(out).expect("a number is spelled in ASCII")
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

    /// `write` before its fast paths: `Display`, `{:e}` and the integer
    /// case, which the fast paths must match byte for byte.
    fn reference(value: f64) -> String {
        if value.is_nan() || value.is_infinite() || value == 0.0 {
            to_string(value)
        } else if value.fract() == 0.0 && value.abs() < 1e6 {
            #[allow(clippy::cast_possible_truncation)]
            let integer = value as i64;
            integer.to_string()
        } else if (1e-4..1e6).contains(&value.abs()) {
            format!("{value}")
        } else {
            let mut bytes = Vec::new();
            super::write_scientific_as_go(&mut bytes, &format!("{value:e}"));
            String::from_utf8(bytes).unwrap()
        }
    }

    /// A small deterministic generator (xorshift64*), so the comparison
    /// covers the same million values on every run.
    fn numbers(count: usize) -> impl Iterator<Item = u64> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        std::iter::repeat_with(move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        })
        .take(count)
    }

    #[test]
    fn fast_paths_write_what_the_slow_ones_did() {
        let mut values = vec![
            1e-4,
            1e-5,
            0.005,
            0.1,
            0.3,
            1.0 / 3.0,
            12.5,
            999_999.5,
            1e6,
            1.5e9,
            99_999_999_999_999.0,
            99_999_999_999_999.5,
            1e14,
            1e15,
            1e22,
            1e23,
            123_456_789_012_345.6,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        for bits in numbers(300_000) {
            // Random bit patterns, then short decimals of every scale, then
            // integers, the last two near the fast paths' bounds.
            values.push(f64::from_bits(bits));
            let mantissa = bits >> (bits % 64);
            let scale = (bits >> 58) % 23;
            #[allow(clippy::cast_precision_loss)]
            let decimal = mantissa as f64 / super::POW10[scale as usize];
            values.push(decimal);
            #[allow(clippy::cast_precision_loss)]
            values.push((bits >> 10) as f64);
        }
        for value in values {
            for value in [value, -value] {
                assert_eq!(to_string(value), reference(value), "{value:?}");
            }
        }
    }

    #[test]
    fn the_short_decimal_reader_agrees_with_the_full_one() {
        let mut tokens: Vec<String> = [
            "0",
            "-0",
            "+0",
            ".5",
            "5.",
            "-.5",
            "007",
            "1.",
            ".",
            "+",
            "-",
            "",
            "1..2",
            "1.2.3",
            "999999999999999",
            "9999999999999999",
            "0.000000000000001",
            "123456789.012345",
        ]
        .map(str::to_owned)
        .to_vec();
        for bits in numbers(200_000) {
            let digits = (bits % 18) as usize + 1;
            let text = format!("{:018}", bits % 1_000_000_000_000_000_000);
            let text = &text[18 - digits..];
            let point = (bits >> 40) as usize % (digits + 1);
            let sign = ["", "-", "+"][(bits >> 50) as usize % 3];
            tokens.push(format!("{sign}{}.{}", &text[..point], &text[point..]));
            tokens.push(format!("{sign}{text}"));
        }
        for token in tokens {
            let fast = super::parse_short_decimal(token.as_bytes());
            let full = token.parse::<f64>().ok();
            if let Some(fast) = fast {
                assert_eq!(Some(fast.to_bits()), full.map(f64::to_bits), "{token:?}");
            }
            assert_eq!(
                parse(token.as_bytes()).map(f64::to_bits),
                full.filter(|_| super::is_decimal(token.as_bytes()))
                    .map(f64::to_bits),
                "{token:?}"
            );
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
