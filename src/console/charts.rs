//! Usage drawn on the server as SVG: a 14-day sparkline per key, and a key's requests by
//! hour and outcome. Colours come from the stylesheet (classes per outcome), so the page
//! needs no inline style.

use maud::{html, Markup};
use serde_json::Value;

/// Requests per day for the last `days` days, oldest first, from `GET /keys/{id}/usage`.
pub fn daily_totals(usage: &Value, days: usize, today: i64) -> Vec<i64> {
    let mut totals = vec![0; days];
    for day in usage["days"].as_array().into_iter().flatten() {
        let Some(date) = day["date"].as_str() else {
            continue;
        };
        let Some(at) = crate::clock::parse_rfc3339(&format!("{date}T00:00:00Z")) else {
            continue;
        };
        let back = today - crate::clock::day_of(at);
        if (0..days as i64).contains(&back) {
            totals[days - 1 - back as usize] += day["total"].as_i64().unwrap_or(0);
        }
    }
    totals
}

/// A small line of daily totals.
pub fn sparkline(totals: &[i64]) -> Markup {
    let (width, height) = (112.0, 24.0);
    let top = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = width / (totals.len().max(2) - 1) as f64;
    let points: Vec<String> = totals
        .iter()
        .enumerate()
        .map(|(i, total)| {
            let x = i as f64 * step;
            let y = height - 2.0 - (*total as f64 / top) * (height - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let sum: i64 = totals.iter().sum();
    let label = format!("{sum} requests in the last {} days", totals.len());
    html! {
        svg.sparkline width="112" height="24" viewBox="0 0 112 24" role="img" aria-label=(label) {
            title { (label) }
            polyline.spark points=(points.join(" ")) {}
        }
    }
}

/// Every outcome, in the legend's order: allowed first, then the refusals.
const OUTCOMES: [&str; 8] = [
    "allowed",
    "rate_limited",
    "quota_exceeded",
    "credits_exhausted",
    "ip_not_allowed",
    "insufficient_permission",
    "key_expired",
    "key_revoked",
];

/// One hour of the chart: where it starts (x), its start time, its total, and a rectangle
/// (outcome, top, height) per outcome.
type Bar = (f64, String, i64, Vec<(&'static str, f64, f64)>);

/// Requests per hour for the last `hours` hours, stacked by outcome, from
/// `GET /keys/{id}/usage?hours=N`.
pub fn hourly(usage: &Value, hours: usize, now: i64) -> Markup {
    let this_hour = now.div_euclid(3_600_000);
    let mut counts = vec![[0i64; OUTCOMES.len()]; hours];
    for hour in usage["hours"].as_array().into_iter().flatten() {
        let Some(start) = hour["hour"].as_str().and_then(crate::clock::parse_rfc3339) else {
            continue;
        };
        let back = this_hour - start.div_euclid(3_600_000);
        if !(0..hours as i64).contains(&back) {
            continue;
        }
        let slot = &mut counts[hours - 1 - back as usize];
        for (name, count) in hour["outcomes"].as_object().into_iter().flatten() {
            if let Some(index) = OUTCOMES.iter().position(|o| o == name) {
                slot[index] += count.as_i64().unwrap_or(0);
            }
        }
    }
    let top = counts
        .iter()
        .map(|c| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, left, bottom) = (720.0, 200.0, 40.0, 20.0);
    let plot = height - bottom - 8.0;
    let bar = (width - left) / hours as f64;
    let total: i64 = counts.iter().flatten().sum();
    let label = format!("{total} requests in the last {hours} hours, by hour and outcome");
    let seen: Vec<usize> = (0..OUTCOMES.len())
        .filter(|i| counts.iter().any(|c| c[*i] > 0))
        .collect();
    // Each hour: its start, its total, and one rectangle per outcome, stacked upwards.
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let x = left + i as f64 * bar;
            let start = (this_hour - (hours - 1 - i) as i64) * 3_600_000;
            let mut y = height - bottom;
            let mut rects = Vec::new();
            for (index, count) in slot.iter().enumerate().filter(|(_, c)| **c > 0) {
                let h = *count as f64 / top as f64 * plot;
                y -= h;
                rects.push((OUTCOMES[index], y, h));
            }
            (x, crate::clock::rfc3339(start), slot.iter().sum(), rects)
        })
        .collect();
    html! {
        figure.chart {
            svg width="100%" viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(label) {
                title { (label) }
                line.axis x1=(left) y1=(8) x2=(left) y2=(height - bottom) {}
                line.axis x1=(left) y1=(height - bottom) x2=(width) y2=(height - bottom) {}
                text.tick x=(left - 4.0) y=(12) text-anchor="end" { (top) }
                text.tick x=(left - 4.0) y=(height - bottom) text-anchor="end" { "0" }
                @for (i, (x, when, sum, rects)) in bars.iter().enumerate() {
                    g {
                        title { (when) ": " (sum) " requests" }
                        @for (outcome, y, h) in rects {
                            rect class=(format!("o-{outcome}")) x=(format!("{:.1}", x + 1.0)) y=(format!("{y:.1}"))
                                width=(format!("{:.1}", (bar - 2.0).max(1.0))) height=(format!("{h:.1}")) {}
                        }
                    }
                    @if i % (hours / 4).max(1) == 0 {
                        text.tick x=(format!("{x:.1}")) y=(height - 4.0) { (when.get(11..16).unwrap_or_default()) " UTC" }
                    }
                }
            }
            figcaption {
                @if total == 0 {
                    "No requests in the last " (hours) " hours."
                } @else {
                    ul.legend {
                        @for index in &seen {
                            li { span class=(format!("swatch o-{}", OUTCOMES[*index])) {} (OUTCOMES[*index]) }
                        }
                    }
                }
            }
        }
    }
}

/// The ranges the charts offer, as (query value, label, hours).
pub const RANGES: [(&str, &str, usize); 3] = [
    ("24h", "24 hours", 24),
    ("7d", "7 days", 168),
    ("30d", "30 days", 720),
];

/// The hours of a range picked by its query value (24 by default).
pub fn range_hours(picked: Option<&str>) -> usize {
    RANGES
        .iter()
        .find(|(value, _, _)| Some(*value) == picked)
        .map_or(24, |(_, _, hours)| *hours)
}

/// Links to the page itself with each range; the one shown is marked as current.
pub fn range_picker(base: &str, hours: usize) -> Markup {
    html! {
        nav.ranges aria-label="Range" {
            @for (value, label, range) in RANGES {
                @if range == hours {
                    a aria-current="page" href=(format!("{base}?range={value}")) { (label) }
                } @else {
                    a href=(format!("{base}?range={value}")) { (label) }
                }
                " "
            }
        }
    }
}

/// `GET /admin/v1/analytics?group_by=outcome` rows in the shape [`hourly`] draws.
pub fn from_analytics(page: &Value) -> Value {
    let mut hours: std::collections::BTreeMap<String, serde_json::Map<String, Value>> =
        Default::default();
    for row in page["data"].as_array().into_iter().flatten() {
        let (Some(start), Some(outcome)) = (row["start"].as_str(), row["outcome"].as_str()) else {
            continue;
        };
        let count = row["count"].as_i64().unwrap_or(0);
        let slot = hours.entry(start.to_string()).or_default();
        let sum = slot.get(outcome).and_then(Value::as_i64).unwrap_or(0) + count;
        slot.insert(outcome.to_string(), Value::from(sum));
    }
    let hours: Vec<Value> = hours
        .into_iter()
        .map(|(hour, outcomes)| serde_json::json!({"hour": hour, "outcomes": outcomes}))
        .collect();
    serde_json::json!({ "hours": hours })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn daily_totals_line_up_with_their_days() {
        let today =
            crate::clock::day_of(crate::clock::parse_rfc3339("2026-12-02T10:00:00Z").unwrap());
        let usage = json!({"days": [
            {"date": "2026-12-02", "total": 5},
            {"date": "2026-11-30", "total": 2},
            {"date": "2026-10-01", "total": 9}
        ]});
        assert_eq!(daily_totals(&usage, 4, today), [0, 2, 0, 5]);
    }

    #[test]
    fn the_hourly_chart_stacks_outcomes_and_says_what_it_shows() {
        let now = crate::clock::parse_rfc3339("2026-12-02T10:30:00Z").unwrap();
        let usage = json!({"hours": [
            {"hour": "2026-12-02T10:00:00Z", "outcomes": {"allowed": 3, "rate_limited": 1}, "total": 4}
        ]});
        let svg = hourly(&usage, 48, now).into_string();
        assert!(svg.contains("4 requests in the last 48 hours"), "{svg}");
        assert!(svg.contains("class=\"o-allowed\"") && svg.contains("class=\"o-rate_limited\""));
        assert!(
            !svg.contains("style="),
            "no inline style: the CSP forbids it"
        );
        assert!(hourly(&json!({}), 48, now)
            .into_string()
            .contains("No requests"));
    }
}
