//! Durations as people type and read them: `90s`, `5m`, `26h`, `1h30m`,
//! `2d` in, `1d2h` out. Shared by the command line and the server.

use std::time::Duration;

/// Go-style durations: `90s`, `5m`, `26h`, `1h30m`, `2d`; a bare number is
/// seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {text:?}: expected e.g. 90s, 5m, 26h, 1h30m or 2d");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(err)?;
        let number: f64 = rest[..digits].parse().map_err(|_| err())?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let unit = match &rest[digits..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(err()),
        };
        total += Duration::try_from_secs_f64(number * unit).map_err(|_| err())?;
        rest = &rest[unit_end..];
    }
    if text.is_empty() {
        Err(err())
    } else {
        Ok(total)
    }
}

/// A group's time to live: a duration of at least one second, kept in whole
/// seconds. A shorter one (`0`, `500ms`) would make a group that is
/// expired as it is written.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse(text)?;
    if ttl < Duration::from_secs(1) {
        return Err(format!(
            "a TTL must be at least 1s, not {text:?} (for no expiry, give no TTL)"
        ));
    }
    Ok(ttl)
}

/// `1d2h`, `5m3s`, `42s`: the two largest units.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(secs, |left, &(unit, size)| {
            let n = *left / size;
            *left %= size;
            Some((n, unit))
        })
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.concat()
    }
}

/// Unix seconds as RFC 3339 in UTC, to the second; `-` when out of range.
pub fn timestamp(seconds: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let millis = (seconds * 1000.0) as i64;
    chrono::DateTime::from_timestamp_millis(millis).map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{human, parse as parse_duration};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "h", "5x", "1h-2m", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(0)), "0s");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(303)), "5m3s");
        assert_eq!(human(Duration::from_secs(93_600)), "1d2h");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
    }
}
