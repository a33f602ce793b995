//! Every admin endpoint in one table: its method, its path and the query parameters it
//! takes. The router checks each request against it, the OpenAPI document lists the
//! parameters from it, and a test holds the router and the table to each other.

use super::AdminError;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    /// Under `/admin/v1`, with `{id}` for path parameters.
    pub path: &'static str,
    /// The query parameters it takes; any other is `400 invalid_request`.
    pub query: &'static [&'static str],
}

const PAGE: &[&str] = &["limit", "cursor"];

const fn at(method: &'static str, path: &'static str, query: &'static [&'static str]) -> Endpoint {
    Endpoint {
        method,
        path,
        query,
    }
}

pub const ENDPOINTS: &[Endpoint] = &[
    at("POST", "/keys", &[]),
    at("GET", "/keys", &["limit", "cursor", "status", "type"]),
    at("GET", "/keys/{id}", &[]),
    at("PATCH", "/keys/{id}", &[]),
    at("POST", "/keys/{id}/rotate", &[]),
    at("POST", "/keys/{id}/revoke", &[]),
    at("GET", "/keys/{id}/usage", &["days"]),
    at("POST", "/clients", &[]),
    at("GET", "/clients", PAGE),
    at("GET", "/clients/{id}", &[]),
    at("DELETE", "/clients/{id}", &[]),
    at("POST", "/users", &[]),
    at("GET", "/users", PAGE),
    at("PATCH", "/users/{id}", &[]),
    at("GET", "/policy", &[]),
    at("PUT", "/policy", &[]),
    at(
        "GET",
        "/audit",
        &["limit", "cursor", "actor", "action", "target", "from", "to"],
    ),
    at("GET", "/openapi.json", &[]),
];

/// The endpoint a request was routed to, by method and matched path.
pub fn find(method: &str, path: &str) -> Option<&'static Endpoint> {
    let path = path.strip_prefix("/admin/v1").unwrap_or(path);
    ENDPOINTS
        .iter()
        .find(|endpoint| endpoint.method == method && endpoint.path == path)
}

/// Refuses a query parameter the endpoint does not take, or one given twice, as an unknown
/// or repeated body field is refused.
pub fn check_query(endpoint: &Endpoint, query: Option<&str>) -> Result<(), AdminError> {
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !endpoint.query.contains(&name.as_ref()) {
            let takes = match endpoint.query {
                [] => "no query parameters".to_string(),
                names => names.join(", "),
            };
            return Err(AdminError::InvalidRequest(format!(
                "unknown query parameter \"{name}\"; {} {} takes {takes}",
                endpoint.method, endpoint.path
            )));
        }
        if seen.iter().any(|s| *s == name) {
            return Err(AdminError::InvalidRequest(format!(
                "query parameter \"{name}\" is given twice"
            )));
        }
        seen.push(name.into_owned());
    }
    Ok(())
}

/// The router's check of every routed request against the table.
pub async fn checked(path: Option<MatchedPath>, request: Request, next: Next) -> Response {
    if let Some(endpoint) = path.and_then(|p| find(request.method().as_str(), p.as_str())) {
        if let Err(error) = check_query(endpoint, request.uri().query()) {
            return error.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let list = find("GET", "/admin/v1/keys").unwrap();
        assert!(check_query(list, Some("limit=5&status=active&type=legacy")).is_ok());
        assert!(check_query(list, None).is_ok());
        let unknown = check_query(list, Some("limti=5")).unwrap_err().to_string();
        assert!(
            unknown.contains("\"limti\"") && unknown.contains("limit, cursor"),
            "{unknown}"
        );
        assert!(check_query(list, Some("limit=5&limit=6")).is_err());
        let show = find("GET", "/keys/{id}").unwrap();
        let none = check_query(show, Some("x=1")).unwrap_err().to_string();
        assert!(none.contains("no query parameters"), "{none}");
    }
}
