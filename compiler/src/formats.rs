//! Validators for the string formats of `string(FORMAT)`. Shared by the checker (defaults and
//! test values) and the runtime (inputs), so both agree on what is valid.

use crate::ir::Format;

pub fn matches(format: Format, s: &str) -> bool {
    match format {
        Format::Email => is_email(s),
        Format::Phone => is_e164(s),
        Format::Date => is_date(s),
        Format::Datetime => is_datetime(s),
        Format::Uuid => is_uuid(s),
        Format::Url => is_url(s),
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let ok_chars = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '@' && c != ',')
    };
    ok_chars(local)
        && ok_chars(domain)
        && s.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// E.164: a `+`, a non-zero country code digit, at most 15 digits in all.
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn is_date(s: &str) -> bool {
    let mut it = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_datetime(s: &str) -> bool {
    let Some((date, time)) = s.split_once(['T', 't', ' ']) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, None)
    } else if let Some(i) = time.rfind(['+', '-']) {
        (&time[..i], Some(&time[i + 1..]))
    } else {
        return false;
    };
    let clock = clock.split_once('.').map_or(clock, |(hms, frac)| {
        if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            hms
        } else {
            "invalid"
        }
    });
    let hms: Vec<&str> = clock.split(':').collect();
    let [h, m, sec] = hms.as_slice() else {
        return false;
    };
    let ok_clock = matches!((digits(h, 2), digits(m, 2), digits(sec, 2)),
        (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s <= 60);
    let ok_offset = match offset {
        None => true,
        Some(o) => match o.split_once(':') {
            Some((h, m)) => {
                matches!((digits(h, 2), digits(m, 2)), (Some(h), Some(m)) if h < 24 && m < 60)
            }
            None => false,
        },
    };
    ok_clock && ok_offset
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: Format, good: &[&str], bad: &[&str]) {
        for g in good {
            assert!(matches(format, g), "{g:?} should be a valid {format:?}");
        }
        for b in bad {
            assert!(
                !matches(format, b),
                "{b:?} should not be a valid {format:?}"
            );
        }
    }

    #[test]
    fn formats_accept_valid_and_refuse_invalid_values() {
        check(
            Format::Phone,
            &["+4930123456", "+14155550123"],
            &[
                "4930123456",
                "+0301234567",
                "+49 30 123456",
                "+49",
                "+1234567890123456",
            ],
        );
        check(
            Format::Email,
            &["max@example.com", "a.b+c@mail.example.de"],
            &[
                "max",
                "max@",
                "@example.com",
                "max@example",
                "m ax@example.com",
            ],
        );
        check(
            Format::Date,
            &["2026-11-24", "2024-02-29"],
            &[
                "2026-13-01",
                "2025-02-29",
                "26-11-24",
                "2026-11-24T10:00:00Z",
            ],
        );
        check(
            Format::Datetime,
            &["2026-11-24T15:00:00+01:00", "2026-11-24T15:00:00.123Z"],
            &["2026-11-24", "2026-11-24T25:00:00Z", "2026-11-24T15:00:00"],
        );
        check(
            Format::Uuid,
            &["123e4567-e89b-12d3-a456-426614174000"],
            &[
                "123e4567e89b12d3a456426614174000",
                "123e4567-e89b-12d3-a456-42661417400g",
            ],
        );
        check(
            Format::Url,
            &["https://example.com/x", "http://a.b"],
            &["example.com", "ftp://a.b", "https://", "https://a b"],
        );
    }
}
