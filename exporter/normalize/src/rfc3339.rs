//! A syntax check for RFC 3339 date-time strings
//! (`2026-11-21T04:30:00.123Z`, `2026-11-21T05:30:00+01:00`), shared by the
//! schema checkers. It only says whether a string is well formed; it must not
//! become a parser that output code relies on for time arithmetic.

/// Whether `s` is an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS`, optional
/// fraction of a second, then `Z` or a numeric offset. Field ranges are
/// checked (month 1-12, day 1-31, hour 0-23, minute 0-59, second 0-60 for
/// leap seconds); days per month are not.
pub(crate) fn is_rfc3339_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    let (Some(_year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0, 4),
        digits(5, 2),
        digits(8, 2),
        digits(11, 2),
        digits(14, 2),
        digits(17, 2),
    ) else {
        return false;
    };
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return false;
    }
    if !((1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60)
    {
        return false;
    }
    let mut at = 19;
    if sep(at, b".") {
        let fraction = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if fraction == 0 {
            return false;
        }
        at += 1 + fraction;
    }
    match b.get(at) {
        Some(b'Z' | b'z') => at + 1 == b.len(),
        Some(b'+' | b'-') => {
            let (Some(oh), Some(om)) = (digits(at + 1, 2), digits(at + 4, 2)) else {
                return false;
            };
            sep(at + 3, b":") && oh <= 23 && om <= 59 && at + 6 == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_rfc3339_date_time;

    #[test]
    fn date_times() {
        let cases = [
            ("2026-11-21T04:30:00Z", true),
            ("2026-11-21T04:30:00.123Z", true),
            ("2026-11-21T04:30:00.123456789Z", true),
            ("2026-11-21t04:30:00z", true),
            ("2026-11-21T05:30:00+01:00", true),
            ("2026-11-21T04:30:00-07:30", true),
            ("2016-12-31T23:59:60Z", true),
            ("2026-11-21T04:30:00", false),
            ("2026-11-21 04:30:00Z", false),
            ("2026-11-21T04:30:00.Z", false),
            ("2026-13-21T04:30:00Z", false),
            ("2026-11-00T04:30:00Z", false),
            ("2026-11-21T24:00:00Z", false),
            ("2026-11-21T04:30:00+0100", false),
            ("2026-11-21T04:30:00Zjunk", false),
            ("2026-11-21", false),
            ("", false),
            ("1700000000000", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_rfc3339_date_time(s), want, "{s:?}");
        }
    }
}
