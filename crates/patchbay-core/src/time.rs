//! Timestamps: microseconds since the Unix epoch, UTC.
//!
//! Both storage backends keep timestamps as `BIGINT` microseconds: one
//! representation, exact ordering, no time-zone conversion at the boundary.
//! They are printed as RFC 3339 (`2026-11-23T09:14:05.123456Z`).

use serde::{Deserialize, Serialize};

use crate::date::Date;

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(us: i64) -> Timestamp {
        Timestamp(us)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current time of the system clock.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// This instant moved by `secs` seconds (negative: earlier).
    #[must_use]
    pub fn plus_seconds(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// The UTC calendar date of this instant.
    pub fn date(self) -> Date {
        Date::from_unix_seconds(self.0.div_euclid(1_000_000))
    }

    /// Parses RFC 3339 (`2026-02-24T00:00:00Z`, with optional fraction and a
    /// `Z` or `±hh:mm` offset) or a bare date (`2026-02-24`, meaning midnight UTC).
    #[allow(clippy::many_single_char_names)] // h, m, s: the names RFC 3339 itself uses.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let bad = || "not an RFC 3339 timestamp like 2026-02-24T00:00:00Z".to_owned();
        let date = Date::parse(s.get(..10).ok_or_else(bad)?).map_err(|_| bad())?;
        let days = days_from_civil(
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        if s.len() == 10 {
            return Ok(Timestamp(days * 86_400_000_000));
        }
        let rest = &s[10..];
        let rest = rest
            .strip_prefix('T')
            .or_else(|| rest.strip_prefix('t'))
            .or_else(|| rest.strip_prefix(' '))
            .ok_or_else(bad)?;
        let digits = |t: &str| -> Result<i64, String> {
            if t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let (h, m, sec) = (
            digits(rest.get(0..2).ok_or_else(bad)?)?,
            digits(rest.get(3..5).ok_or_else(bad)?)?,
            digits(rest.get(6..8).ok_or_else(bad)?)?,
        );
        if rest.as_bytes().get(2) != Some(&b':')
            || rest.as_bytes().get(5) != Some(&b':')
            || h > 23
            || m > 59
            || sec > 60
        {
            return Err(bad());
        }
        let mut tail = &rest[8..];
        let mut micros = 0i64;
        if let Some(frac) = tail.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return Err(bad());
            }
            let kept = &frac[..n.min(6)];
            micros = kept.parse::<i64>().map_err(|_| bad())?
                * 10i64.pow(u32::try_from(6 - kept.len()).unwrap_or(0));
            tail = &frac[n..];
        }
        let offset_secs = match tail {
            "Z" | "z" => 0,
            t if t.len() == 6
                && (t.starts_with('+') || t.starts_with('-'))
                && t.as_bytes()[3] == b':' =>
            {
                let (oh, om) = (digits(&t[1..3])?, digits(&t[4..6])?);
                let v = oh * 3600 + om * 60;
                if t.starts_with('-') { -v } else { v }
            }
            _ => return Err(bad()),
        };
        let secs = days * 86_400 + h * 3600 + m * 60 + sec.min(59) - offset_secs;
        Ok(Timestamp(secs * 1_000_000 + micros))
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let tod = secs.rem_euclid(86_400);
        write!(
            f,
            "{}T{:02}:{:02}:{:02}",
            self.date(),
            tod / 3600,
            tod % 3600 / 60,
            tod % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_parses_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-02-24T14:23:05Z").unwrap();
        assert_eq!(t.to_string(), "2026-02-24T14:23:05Z");
        assert_eq!(
            Timestamp::from_micros(0).to_string(),
            "1970-01-01T00:00:00Z"
        );
        let f = Timestamp::parse_rfc3339("2026-02-24T14:23:05.5+01:00").unwrap();
        assert_eq!(f.to_string(), "2026-02-24T13:23:05.500000Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-02-24").unwrap().to_string(),
            "2026-02-24T00:00:00Z"
        );
        for bad in [
            "",
            "2026-02-24T",
            "2026-02-24T25:00:00Z",
            "2026-02-24T10:00:00",
            "2026-02-24T10:00:00+1",
            "2026-02-30T00:00:00Z",
            "2026-02-24T10:00:00.Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_over_many_instants() {
        let mut t = -86_400_000_000i64 * 365;
        while t < 86_400_000_000i64 * 365 * 200 {
            let ts = Timestamp::from_micros(t);
            assert_eq!(Timestamp::parse_rfc3339(&ts.to_string()).unwrap(), ts);
            t += 7_777_777_777_777;
        }
    }
}
