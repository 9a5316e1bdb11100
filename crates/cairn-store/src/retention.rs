//! Retention policies (`cairn forget`): which snapshots a policy keeps,
//! and why.
//!
//! The rules follow restic's, so operators who know one know the other:
//!
//! * `keep-last N` keeps the N newest snapshots;
//! * `keep-hourly|daily|weekly|monthly|yearly N` keeps, for each of the N
//!   newest hours (days, ISO weeks, months, years, in UTC) that have a
//!   snapshot, the newest snapshot of that period;
//! * `keep-within D` keeps every snapshot taken within D of the *newest*
//!   snapshot (not of now, so a store that stopped receiving snapshots
//!   does not empty itself);
//! * `max-age D` is a hard expiry measured from *now*: a snapshot older
//!   than that goes, whatever rule would keep it (GDPR-style deadlines).
//!
//! A snapshot is kept if any keep rule keeps it and `max-age` does not
//! expire it; each kept snapshot carries the rules that keep it. A policy
//! with no rule at all is refused ([`Policy::is_empty`]): forgetting
//! everything is never a default.
//!
//! A policy can be stored in the store (`STORE/policy`, a small text file
//! written atomically) and applied after each snapshot.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use cairn_format::SnapshotId;
use time::OffsetDateTime;

/// Name of the policy file in the store root.
pub const POLICY_FILE: &str = "policy";

const POLICY_HEADER: &str = "cairn retention policy v1";

/// A calendar period a bucket rule keeps one snapshot of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// An hour (UTC).
    Hourly,
    /// A day (UTC).
    Daily,
    /// An ISO 8601 week.
    Weekly,
    /// A calendar month.
    Monthly,
    /// A calendar year.
    Yearly,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    /// The rule's name (`hourly`, …).
    pub fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period `unix` falls in, as a number that orders like time.
    pub fn bucket(self, unix: i64) -> i64 {
        let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let year = i64::from(t.year());
        match self {
            Period::Hourly => unix.div_euclid(3600),
            Period::Daily => unix.div_euclid(86_400),
            Period::Weekly => {
                let (iso_year, week, _) = t.to_iso_week_date();
                i64::from(iso_year) * 100 + i64::from(week)
            }
            Period::Monthly => year * 100 + i64::from(u8::from(t.month())),
            Period::Yearly => year,
        }
    }
}

/// A span of time given as `1y6m2w3d12h` (y = 365 days, m = 30 days,
/// w = 7 days; at least one part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Length in seconds.
    pub secs: i64,
    text_parts: [u32; 5],
}

const SPAN_UNITS: [(char, i64); 5] = [
    ('y', 365 * 86_400),
    ('m', 30 * 86_400),
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
];

impl Span {
    /// Parses `1y6m2w3d12h` (each unit at most once, in that order).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("bad duration {s:?}: expected a number with units y, m (30 days), w, d, h, e.g. 7d or 1y6m")
        };
        let mut parts = [0u32; 5];
        let mut secs: i64 = 0;
        let mut digits = String::new();
        let mut next_unit = 0;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let pos = SPAN_UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(bad)?
                + next_unit;
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            parts[pos] = n;
            secs = secs
                .checked_add(i64::from(n) * SPAN_UNITS[pos].1)
                .ok_or_else(bad)?;
            next_unit = pos + 1;
        }
        if !digits.is_empty() || next_unit == 0 {
            return Err(bad());
        }
        Ok(Self {
            secs,
            text_parts: parts,
        })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (unit, _)) in self.text_parts.iter().zip(SPAN_UNITS) {
            if *n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        if self.text_parts.iter().all(|n| *n == 0) {
            write!(f, "0h")?;
        }
        Ok(())
    }
}

/// A retention policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest periods.
    pub periods: BTreeMap<Period, u32>,
    /// Keep every snapshot within this span of the newest one.
    pub within: Option<Span>,
    /// Remove every snapshot older than this (from now), whatever keeps it.
    pub max_age: Option<Span>,
}

/// Why a snapshot is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeepReason {
    /// One of the `keep-last` newest.
    Last,
    /// The newest of its period, within the `keep-<period>` count.
    Period(Period),
    /// Taken within `keep-within` of the newest snapshot.
    Within,
    /// Not expired by `max-age`, the policy's only rule.
    Unexpired,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Last => write!(f, "last"),
            KeepReason::Period(p) => write!(f, "{}", p.name()),
            KeepReason::Within => write!(f, "within"),
            KeepReason::Unexpired => write!(f, "unexpired"),
        }
    }
}

/// What a policy does to a set of snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForgetPlan {
    /// Snapshots that stay, oldest first, with the rules that keep them.
    pub keep: Vec<(SnapshotId, Vec<KeepReason>)>,
    /// Snapshots that go, oldest first; `true` when `max-age` expired a
    /// snapshot some keep rule would have kept.
    pub remove: Vec<(SnapshotId, bool)>,
}

impl Policy {
    /// Whether a count is zero (refused by `forget`: `keep-last 0` would
    /// keep nothing).
    pub fn has_zero_count(&self) -> bool {
        self.last == Some(0) || self.periods.values().any(|n| *n == 0)
    }

    /// Whether the policy has no rule at all.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.periods.is_empty()
            && self.within.is_none()
            && self.max_age.is_none()
    }

    /// Whether the policy has a keep rule (with `max-age` alone, every
    /// snapshot it does not expire stays).
    fn has_keep_rule(&self) -> bool {
        self.last.is_some() || !self.periods.is_empty() || self.within.is_some()
    }

    /// Applies the policy to `snapshots` (any order, unique) at unix time
    /// `now`.
    pub fn plan(&self, snapshots: &[SnapshotId], now: i64) -> ForgetPlan {
        let mut ids: Vec<SnapshotId> = snapshots.to_vec();
        ids.sort_unstable_by(|a, b| b.cmp(a)); // newest first
        ids.dedup();
        let mut reasons: BTreeMap<SnapshotId, BTreeSet<KeepReason>> = BTreeMap::new();
        let mut keep = |id: SnapshotId, r: KeepReason| {
            reasons.entry(id).or_default().insert(r);
        };
        if let Some(n) = self.last {
            for id in ids.iter().take(n as usize) {
                keep(*id, KeepReason::Last);
            }
        }
        for (period, n) in &self.periods {
            let mut seen = HashSet::new();
            for id in &ids {
                if seen.len() >= *n as usize {
                    break;
                }
                if seen.insert(period.bucket(id.0)) {
                    keep(*id, KeepReason::Period(*period));
                }
            }
        }
        if let (Some(span), Some(newest)) = (self.within, ids.first()) {
            for id in &ids {
                if id.0 >= newest.0.saturating_sub(span.secs) {
                    keep(*id, KeepReason::Within);
                }
            }
        }
        let expired = |id: &SnapshotId| {
            self.max_age
                .is_some_and(|span| id.0 < now.saturating_sub(span.secs))
        };
        if !self.has_keep_rule() {
            for id in &ids {
                keep(*id, KeepReason::Unexpired);
            }
        }
        let mut plan = ForgetPlan::default();
        for id in ids.iter().rev() {
            match reasons.remove(id) {
                Some(why) if !expired(id) => plan.keep.push((*id, why.into_iter().collect())),
                why => plan.remove.push((*id, why.is_some() && expired(id))),
            }
        }
        plan
    }

    /// The policy as `--keep-*` style text (`last 3, daily 7, max-age 1y`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.last {
            parts.push(format!("keep-last {n}"));
        }
        for (p, n) in &self.periods {
            parts.push(format!("keep-{} {n}", p.name()));
        }
        if let Some(s) = self.within {
            parts.push(format!("keep-within {s}"));
        }
        if let Some(s) = self.max_age {
            parts.push(format!("max-age {s}"));
        }
        if parts.is_empty() {
            "no rules".into()
        } else {
            parts.join(", ")
        }
    }

    /// The policy file's text.
    pub fn encode(&self) -> String {
        let mut out = format!("{POLICY_HEADER}\n");
        if let Some(n) = self.last {
            out.push_str(&format!("keep-last = {n}\n"));
        }
        for (p, n) in &self.periods {
            out.push_str(&format!("keep-{} = {n}\n", p.name()));
        }
        if let Some(s) = self.within {
            out.push_str(&format!("keep-within = {s}\n"));
        }
        if let Some(s) = self.max_age {
            out.push_str(&format!("max-age = {s}\n"));
        }
        out
    }

    /// Parses a policy file's text.
    pub fn decode(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(POLICY_HEADER) {
            return Err(format!(
                "not a policy file (first line is not {POLICY_HEADER:?})"
            ));
        }
        let mut p = Policy::default();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let count = || {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("bad count in {line:?} (a whole number from 1)"))
            };
            match key {
                "keep-last" => p.last = Some(count()?),
                "keep-within" => p.within = Some(Span::parse(value)?),
                "max-age" => p.max_age = Some(Span::parse(value)?),
                _ => {
                    let period = Period::ALL
                        .into_iter()
                        .find(|p| key.strip_prefix("keep-") == Some(p.name()))
                        .ok_or_else(|| format!("unknown rule {key:?}"))?;
                    p.periods.insert(period, count()?);
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SnapshotId {
        s.parse().unwrap()
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("7d").unwrap().secs, 7 * 86_400);
        assert_eq!(Span::parse("1y6m").unwrap().to_string(), "1y6m");
        assert_eq!(Span::parse("2w12h").unwrap().secs, 14 * 86_400 + 12 * 3600);
        for bad in ["", "7", "d", "1d1y", "1x", "1d1d", "-1d"] {
            assert!(Span::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn policy_file_round_trips() {
        let mut p = Policy {
            last: Some(3),
            within: Some(Span::parse("2d").unwrap()),
            max_age: Some(Span::parse("1y").unwrap()),
            ..Policy::default()
        };
        p.periods.insert(Period::Daily, 7);
        p.periods.insert(Period::Yearly, 2);
        assert_eq!(Policy::decode(&p.encode()).unwrap(), p);
        assert!(Policy::decode("keep-last = 1\n").is_err());
        assert!(Policy::decode(&format!("{POLICY_HEADER}\nkeep-last = 0\n")).is_err());
        assert!(Policy::decode(&format!("{POLICY_HEADER}\nkeep-often = 1\n")).is_err());
    }

    #[test]
    fn daily_keeps_newest_of_each_day_and_max_age_wins() {
        let snaps = [
            id("2026-01-01T010000Z"),
            id("2026-01-01T230000Z"),
            id("2026-01-02T120000Z"),
            id("2026-01-03T080000Z"),
            id("2026-01-03T090000Z"),
        ];
        let mut p = Policy::default();
        p.periods.insert(Period::Daily, 2);
        let plan = p.plan(&snaps, id("2026-01-04T000000Z").0);
        let kept: Vec<_> = plan.keep.iter().map(|(i, _)| i.to_string()).collect();
        assert_eq!(kept, ["2026-01-02T120000Z", "2026-01-03T090000Z"]);
        p.max_age = Some(Span::parse("1d").unwrap());
        let plan = p.plan(&snaps, id("2026-01-04T000000Z").0);
        assert_eq!(plan.keep.len(), 1);
        assert!(plan.remove.contains(&(id("2026-01-02T120000Z"), true)));
    }
}
