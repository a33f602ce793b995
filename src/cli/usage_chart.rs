//! `tollgate keys usage ID --hours N`: a key's requests per hour drawn in the terminal,
//! from `GET /admin/v1/analytics` grouped by outcome.

use serde_json::Value;
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;
/// The widest bar, in characters.
const WIDTH: u64 = 40;

/// One line per hour of the last `hours` (oldest first): the bar, allowed requests as `█`
/// and refused ones as `░`, the total, and each outcome's count.
pub fn hourly(page: &Value, hours: u32, now: i64) -> String {
    let this_hour = now.div_euclid(HOUR_MS);
    let mut slots: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); hours as usize];
    for row in page["data"].as_array().into_iter().flatten() {
        let Some(start) = row["start"].as_str().and_then(crate::clock::parse_rfc3339) else {
            continue;
        };
        let back = this_hour - start.div_euclid(HOUR_MS);
        if !(0..i64::from(hours)).contains(&back) {
            continue;
        }
        let outcome = row["outcome"].as_str().unwrap_or("all").to_string();
        *slots[hours as usize - 1 - back as usize]
            .entry(outcome)
            .or_default() += row["count"].as_u64().unwrap_or(0);
    }
    let top = slots
        .iter()
        .map(|s| s.values().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let total: u64 = slots.iter().flat_map(|s| s.values()).sum();
    let mut out =
        format!("{total} requests in the last {hours} hours (UTC hours, █ allowed, ░ refused)\n");
    for (i, slot) in slots.iter().enumerate() {
        let start = (this_hour - (hours as i64 - 1 - i as i64)) * HOUR_MS;
        let sum: u64 = slot.values().sum();
        let allowed = slot.get("allowed").copied().unwrap_or(0);
        // Rounded up, so a single request still shows.
        let scale = |n: u64| (n * WIDTH).div_ceil(top);
        let (full, refused) = (scale(allowed), scale(sum) - scale(allowed));
        let when = crate::clock::rfc3339(start);
        let outcomes: Vec<String> = slot.iter().map(|(o, n)| format!("{o} {n}")).collect();
        out.push_str(&format!(
            "{} {:<40} {sum:>6}  {}\n",
            when.get(..16).unwrap_or(&when).replace('T', " "),
            "█".repeat(full as usize) + &"░".repeat(refused as usize),
            outcomes.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_hour_is_a_line_with_its_bar_and_outcomes() {
        let now = crate::clock::parse_rfc3339("2026-12-07T12:30:00Z").unwrap();
        let page = json!({"data": [
            {"start": "2026-12-07T11:00:00Z", "outcome": "allowed", "count": 30},
            {"start": "2026-12-07T11:00:00Z", "outcome": "rate_limited", "count": 10},
            {"start": "2026-12-07T12:00:00Z", "outcome": "allowed", "count": 1},
            {"start": "2026-12-01T12:00:00Z", "outcome": "allowed", "count": 99}
        ]});
        let chart = hourly(&page, 3, now);
        let lines: Vec<&str> = chart.lines().collect();
        assert!(
            lines[0].starts_with("41 requests in the last 3 hours"),
            "{chart}"
        );
        assert!(lines[1].starts_with("2026-12-07 10:00") && lines[1].trim_end().ends_with('0'));
        assert!(lines[2].contains(&"█".repeat(30)) && lines[2].contains(&"░".repeat(10)));
        assert!(lines[2].contains("allowed 30, rate_limited 10"), "{chart}");
        assert!(lines[3].contains("█ ") || lines[3].contains('█'), "{chart}");
        assert_eq!(lines.len(), 4);
    }
}
