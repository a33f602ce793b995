//! `GET /admin/v1/analytics` (SPEC 15): request counts by hour or day, for a key, an owner
//! or everything, grouped by outcome, route or key; JSON, or CSV with `Accept: text/csv`.

use super::{respond, AdminError, AdminState};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::store::{AnalyticsPoint, AnalyticsQuery};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The widest range one request may ask for.
const MAX_RANGE_MS: i64 = 400 * 86_400_000;

#[derive(Debug, Deserialize)]
pub struct AnalyticsParams {
    key_id: Option<String>,
    owner_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    group_by: Option<String>,
}

fn time(name: &str, text: Option<&str>, default: i64) -> Result<i64, AdminError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => parse_rfc3339(text).ok_or_else(|| {
            AdminError::InvalidRequest(format!("{name} \"{text}\" is not an RFC 3339 time"))
        }),
    }
}

/// The query `params` ask for, at `now`.
fn read(params: &AnalyticsParams, now: i64) -> Result<AnalyticsQuery, AdminError> {
    let to = time("to", params.to.as_deref(), now)?;
    let from = time("from", params.from.as_deref(), to - 86_400_000)?;
    if from >= to || to - from > MAX_RANGE_MS {
        return Err(AdminError::InvalidRequest(
            "from must come before to, at most 400 days apart".into(),
        ));
    }
    let daily = match params.granularity.as_deref() {
        None | Some("hour") => false,
        Some("day") => true,
        Some(other) => {
            return Err(AdminError::InvalidRequest(format!(
                "granularity must be hour or day, not \"{other}\""
            )))
        }
    };
    let mut query = AnalyticsQuery {
        key_id: params.key_id.clone().filter(|id| !id.is_empty()),
        owner_id: params.owner_id.clone().filter(|id| !id.is_empty()),
        // Whole buckets: the hour (or day) holding `from`, up to `to`.
        from: from - from.rem_euclid(if daily { 86_400_000 } else { 3_600_000 }),
        to,
        daily,
        ..AnalyticsQuery::default()
    };
    for group in params
        .group_by
        .as_deref()
        .unwrap_or("outcome")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        match group {
            "outcome" => query.by_outcome = true,
            "route" => query.by_route = true,
            "key" => query.by_key = true,
            other => {
                return Err(AdminError::InvalidRequest(format!(
                    "group_by takes outcome, route and key, not \"{other}\""
                )))
            }
        }
    }
    Ok(query)
}

/// The fields of each row, in order: those the query fixed or grouped by.
fn fields(query: &AnalyticsQuery) -> Vec<&'static str> {
    let mut names = vec!["start"];
    if query.key_id.is_some() || query.by_key {
        names.push("key_id");
    }
    if query.owner_id.is_some() {
        names.push("owner_id");
    }
    if query.by_route {
        names.push("route");
    }
    if query.by_outcome {
        names.push("outcome");
    }
    names.push("count");
    names
}

fn row(query: &AnalyticsQuery, point: &AnalyticsPoint) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("start".into(), json!(rfc3339(point.start)));
    if let Some(key_id) = point.key_id.as_ref().or(query.key_id.as_ref()) {
        row.insert("key_id".into(), json!(key_id));
    }
    if let Some(owner_id) = &query.owner_id {
        row.insert("owner_id".into(), json!(owner_id));
    }
    if let Some(route) = &point.route {
        row.insert("route".into(), json!(route));
    }
    if let Some(outcome) = &point.outcome {
        row.insert("outcome".into(), json!(outcome));
    }
    row.insert("count".into(), json!(point.count));
    row
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv(names: &[&str], rows: &[Map<String, Value>]) -> String {
    let mut out = names.join(",");
    out.push_str("\r\n");
    for row in rows {
        let line: Vec<String> = names
            .iter()
            .map(|name| row.get(*name).map(csv_field).unwrap_or_default())
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

pub async fn analytics(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(params): Query<AnalyticsParams>,
) -> Response {
    let query = match read(&params, state.now()) {
        Ok(query) => query,
        Err(error) => return respond(Err(error)),
    };
    let store = match state.store() {
        Ok(store) => store,
        Err(error) => return respond(Err(error)),
    };
    let points = match state.call(store.query_analytics(&query)).await {
        Ok(points) => points,
        Err(error) => return respond(Err(error)),
    };
    let rows: Vec<Map<String, Value>> = points.iter().map(|p| row(&query, p)).collect();
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"));
    if wants_csv {
        let body = csv(&fields(&query), &rows);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            Body::from(body),
        )
            .into_response();
    }
    respond(Ok((StatusCode::OK, json!({"data": rows}))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_groups_and_csv() {
        let params =
            |from: Option<&str>, granularity: Option<&str>, group: Option<&str>| AnalyticsParams {
                key_id: Some("key_1".into()),
                owner_id: None,
                from: from.map(str::to_string),
                to: Some("2026-12-07T12:30:00Z".into()),
                granularity: granularity.map(str::to_string),
                group_by: group.map(str::to_string),
            };
        let query = read(&params(None, None, None), 0).unwrap();
        assert_eq!(rfc3339(query.from), "2026-12-06T12:00:00Z");
        assert!(query.by_outcome && !query.by_route && !query.daily);
        assert_eq!(fields(&query), ["start", "key_id", "outcome", "count"]);
        let query = read(
            &params(Some("2026-12-01T05:00:00Z"), Some("day"), Some("route,key")),
            0,
        )
        .unwrap();
        assert_eq!(rfc3339(query.from), "2026-12-01T00:00:00Z");
        assert!(query.daily && query.by_route && query.by_key && !query.by_outcome);
        assert!(read(&params(None, Some("week"), None), 0).is_err());
        assert!(read(&params(None, None, Some("colour")), 0).is_err());
        assert!(read(&params(Some("yesterday"), None, None), 0).is_err());
        assert!(read(&params(Some("2026-12-08T00:00:00Z"), None, None), 0).is_err());
        let mut one = Map::new();
        one.insert("start".into(), json!("2026-12-07T12:00:00Z"));
        one.insert("route".into(), json!("a,\"b\""));
        one.insert("count".into(), json!(3));
        assert_eq!(
            csv(&["start", "route", "count"], &[one]),
            "start,route,count\r\n2026-12-07T12:00:00Z,\"a,\"\"b\"\"\",3\r\n"
        );
    }
}
