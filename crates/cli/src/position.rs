//! Positions given on the command line: where a consumer starts (`--from`) and where a reset
//! moves a checkpoint (`--to`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardwise::InitialPosition;
use shardwise::lease::{Checkpoint, SequenceNumber};

/// Reads `--from trim-horizon|latest|at-timestamp:RFC3339`.
pub(crate) fn parse_from(text: &str) -> Result<InitialPosition, String> {
    match text {
        "trim-horizon" => Ok(InitialPosition::TrimHorizon),
        "latest" => Ok(InitialPosition::Latest),
        _ => match text.strip_prefix("at-timestamp:") {
            Some(timestamp) => parse_rfc3339(timestamp).map(InitialPosition::AtTimestamp),
            None => Err(format!(
                "{text:?} is not a start position: use trim-horizon, latest or \
                 at-timestamp:2024-05-01T12:00:00Z"
            )),
        },
    }
}

/// Reads `--to trim-horizon|latest|SEQUENCE_NUMBER`.
pub(crate) fn parse_to(text: &str) -> Result<Checkpoint, String> {
    match text {
        "trim-horizon" => Ok(Checkpoint::TrimHorizon),
        "latest" => Ok(Checkpoint::Latest),
        digits => SequenceNumber::new(digits)
            .map(|sequence| Checkpoint::at(sequence, 0))
            .map_err(|e| {
                format!("{text:?} is neither trim-horizon, latest nor a sequence number ({e})")
            }),
    }
}

/// Reads an RFC 3339 timestamp: `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`
/// (a space or lowercase `t`/`z` accepted too). Times before 1970 are refused.
pub(crate) fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = |why: &str| {
        format!("{text:?} is not an RFC 3339 timestamp like 2024-05-01T12:00:00Z ({why})")
    };
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return Err(bad("too short"));
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let digits = text.get(range).ok_or_else(|| bad("misplaced fields"))?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("a field is not a number"));
        }
        digits.parse().map_err(|_| bad("a field is not a number"))
    };
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    // A leap second (60) is read as the last second of the minute.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such time"));
    }
    let mut rest = &text[19..];
    let mut nanos: u64 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("empty fraction of a second"));
        }
        for (i, b) in fraction.bytes().take(digits).enumerate() {
            if i < 9 {
                nanos += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
            }
        }
        rest = &fraction[digits..];
    }
    let offset_seconds: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let offset = rest.as_bytes();
            if offset.len() != 6 || !matches!(offset[0], b'+' | b'-') || offset[3] != b':' {
                return Err(bad("expected Z or an offset like +02:00"));
            }
            let hours = rest[1..3].parse::<i64>().map_err(|_| bad("bad offset"))?;
            let minutes = rest[4..6].parse::<i64>().map_err(|_| bad("bad offset"))?;
            if hours > 23 || minutes > 59 {
                return Err(bad("bad offset"));
            }
            let sign = if offset[0] == b'-' { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second.min(59))
            - offset_seconds;
    let seconds = u64::try_from(seconds).map_err(|_| bad("before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos))
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Option<u64> {
        parse_rfc3339(text).ok().map(epoch_ms)
    }

    #[test]
    fn timestamps() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-05-01T12:00:00Z", Some(1_714_564_800_000)),
            ("2024-05-01t12:00:00z", Some(1_714_564_800_000)),
            ("2024-05-01 12:00:00Z", Some(1_714_564_800_000)),
            ("2024-05-01T14:00:00+02:00", Some(1_714_564_800_000)),
            ("2024-05-01T11:30:00-00:30", Some(1_714_564_800_000)),
            ("2024-05-01T12:00:00.250Z", Some(1_714_564_800_250)),
            ("2024-05-01T12:00:00.123456789Z", Some(1_714_564_800_123)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000)),
            ("2023-02-29T00:00:00Z", None),
            ("1900-02-29T00:00:00Z", None),
            ("2024-13-01T00:00:00Z", None),
            ("2024-05-01T24:00:00Z", None),
            ("2024-05-01T12:00:00", None),
            ("2024-05-01T12:00:00+0200", None),
            ("2024-05-01T12:00:00.Z", None),
            ("2024-05-01", None),
            ("1969-12-31T23:59:59Z", None),
            ("yesterday", None),
            ("２０２４-05-01T12:00:00Z", None),
        ];
        for (text, expected) in cases {
            assert_eq!(ms(text), *expected, "{text}");
        }
    }

    #[test]
    fn start_positions() {
        assert_eq!(parse_from("trim-horizon"), Ok(InitialPosition::TrimHorizon));
        assert_eq!(parse_from("latest"), Ok(InitialPosition::Latest));
        assert_eq!(
            parse_from("at-timestamp:1970-01-01T00:00:01Z"),
            Ok(InitialPosition::AtTimestamp(
                UNIX_EPOCH + Duration::from_secs(1)
            ))
        );
        assert!(parse_from("at-timestamp:soon").is_err());
        assert!(parse_from("TRIM_HORIZON").is_err());
    }

    #[test]
    fn reset_targets() {
        assert_eq!(parse_to("trim-horizon"), Ok(Checkpoint::TrimHorizon));
        assert_eq!(parse_to("latest"), Ok(Checkpoint::Latest));
        let sequence = "49590338271490256608559692538361571095921575989136588898";
        assert_eq!(
            parse_to(sequence).map(|c| c.to_string()),
            Ok(Checkpoint::at(SequenceNumber::new(sequence).unwrap(), 0).to_string())
        );
        assert!(parse_to("12abc").is_err());
        assert!(parse_to("").is_err());
    }
}
