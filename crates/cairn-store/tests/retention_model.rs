//! Property test: the retention policy against an independent model.
//!
//! The model groups snapshots into calendar periods by their formatted
//! UTC date (a different algorithm from the policy's streaming bucket
//! walk): for each rule it sorts the periods newest first, takes the N
//! newest, and keeps the newest snapshot of each. Cases come from
//! `CAIRN_PROPTEST_CASES` (default 256).

use std::collections::{BTreeMap, BTreeSet};

use cairn_store::format::SnapshotId;
use cairn_store::retention::{KeepReason, Period, Policy, Span};
use proptest::prelude::*;
use time::OffsetDateTime;

fn period_key(p: Period, unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap();
    match p {
        Period::Hourly => format!(
            "{:05}-{:02}-{:02} {:02}",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour()
        ),
        Period::Daily => format!("{:05}-{:02}-{:02}", t.year(), t.month() as u8, t.day()),
        Period::Weekly => format!("{:05}-W{:02}", t.iso_week_year(), t.iso_week()),
        Period::Monthly => format!("{:05}-{:02}", t.year(), t.month() as u8),
        Period::Yearly => format!("{:05}", t.year()),
    }
}

trait IsoYear {
    fn iso_week_year(&self) -> i32;
}
impl IsoYear for OffsetDateTime {
    fn iso_week_year(&self) -> i32 {
        self.to_iso_week_date().0
    }
}

/// The model: the set of kept ids, each with its reasons.
fn model(snaps: &BTreeSet<i64>, p: &Policy, now: i64) -> BTreeMap<i64, BTreeSet<KeepReason>> {
    let mut kept: BTreeMap<i64, BTreeSet<KeepReason>> = BTreeMap::new();
    let newest_first: Vec<i64> = snaps.iter().rev().copied().collect();
    if let Some(n) = p.last {
        for s in newest_first.iter().take(n as usize) {
            kept.entry(*s).or_default().insert(KeepReason::Last);
        }
    }
    for (period, n) in &p.periods {
        let mut groups: BTreeMap<String, i64> = BTreeMap::new();
        for s in snaps {
            let g = groups.entry(period_key(*period, *s)).or_insert(*s);
            *g = (*g).max(*s);
        }
        for (_, newest) in groups.iter().rev().take(*n as usize) {
            kept.entry(*newest)
                .or_default()
                .insert(KeepReason::Period(*period));
        }
    }
    if let (Some(w), Some(newest)) = (p.within, newest_first.first()) {
        for s in snaps.iter().filter(|s| **s >= newest - w.secs) {
            kept.entry(*s).or_default().insert(KeepReason::Within);
        }
    }
    if p.last.is_none() && p.periods.is_empty() && p.within.is_none() {
        for s in snaps {
            kept.entry(*s).or_default().insert(KeepReason::Unexpired);
        }
    }
    if let Some(m) = p.max_age {
        kept.retain(|s, _| *s >= now - m.secs);
    }
    kept
}

fn policy() -> impl Strategy<Value = Policy> {
    let count = proptest::option::weighted(0.4, 1u32..12);
    let span = proptest::option::weighted(
        0.25,
        prop_oneof![
            Just("12h"),
            Just("2d"),
            Just("1w"),
            Just("3m"),
            Just("1y"),
            Just("5d6h")
        ],
    );
    (
        count.clone(),
        proptest::collection::vec(count, 5),
        span.clone(),
        span,
    )
        .prop_map(|(last, periods, within, max_age)| Policy {
            last,
            periods: Period::ALL
                .into_iter()
                .zip(periods)
                .filter_map(|(p, n)| n.map(|n| (p, n)))
                .collect(),
            within: within.map(|s| Span::parse(s).unwrap()),
            max_age: max_age.map(|s| Span::parse(s).unwrap()),
        })
        .prop_filter("a policy has a rule", |p| !p.is_empty())
}

/// Snapshot times: bursts of frequent snapshots over up to three years,
/// half of them within a week of a new year, where calendar years and
/// ISO week-years disagree.
fn timeline() -> impl Strategy<Value = BTreeSet<i64>> {
    let start = 1_735_000_000i64; // 2024-12-24
    let new_years = [1_735_689_600i64, 1_767_225_600, 1_798_761_600]; // 2025..2027-01-01
    let offset = prop_oneof![
        0i64..3 * 365 * 86_400,
        (0usize..3, -7 * 86_400i64..7 * 86_400).prop_map(move |(y, d)| new_years[y] + d - start),
    ];
    proptest::collection::vec((offset, proptest::collection::vec(1i64..7200, 0..6)), 0..40)
        .prop_map(move |bursts| {
            let mut out = BTreeSet::new();
            for (at, gaps) in bursts {
                let mut t = start + at;
                out.insert(t);
                for g in gaps {
                    t += g;
                    out.insert(t);
                }
            }
            out
        })
}

fn cases() -> u32 {
    std::env::var("CAIRN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn kept_set_equals_the_model(snaps in timeline(), p in policy(), ahead in 0i64..400 * 86_400) {
        let now = snaps.last().copied().unwrap_or(1_735_000_000) + ahead;
        let ids: Vec<SnapshotId> = snaps.iter().map(|s| SnapshotId(*s)).collect();
        let plan = p.plan(&ids, now);
        let got: BTreeMap<i64, BTreeSet<KeepReason>> = plan
            .keep
            .iter()
            .map(|(id, why)| (id.0, why.iter().copied().collect()))
            .collect();
        prop_assert_eq!(&got, &model(&snaps, &p, now));
        // Every snapshot is either kept or removed, once.
        let removed: BTreeSet<i64> = plan.remove.iter().map(|(id, _)| id.0).collect();
        prop_assert_eq!(removed.len() + got.len(), snaps.len());
        prop_assert!(removed.iter().all(|r| !got.contains_key(r)));
        // Kept and removed lists are oldest first.
        prop_assert!(plan.keep.windows(2).all(|w| w[0].0 < w[1].0));
        prop_assert!(plan.remove.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
