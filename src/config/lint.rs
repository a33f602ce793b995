//! What a valid configuration probably does not mean, reported as warnings: a route that
//! can never match because an earlier one takes every request it would, and a gateway with
//! no routes at all.

use super::lines::LineIndex;
use super::{Config, ConfigError, RouteConfig};
use crate::path::prefix_matches;

pub fn warnings(config: &Config, lines: &LineIndex) -> Vec<ConfigError> {
    let mut found = Vec::new();
    let mut warn = |path: String, message: String| {
        found.push(ConfigError {
            line: lines.line_of(&path),
            path,
            message,
        });
    };
    if config.routes.is_empty() {
        warn(
            "routes".into(),
            "no routes: every request will answer 404 route_not_found".into(),
        );
    }
    for (later, route) in config.routes.iter().enumerate() {
        let shadow = config.routes[..later]
            .iter()
            .position(|earlier| covers(earlier, route));
        if let Some(earlier) = shadow {
            let line = lines
                .line_of(&format!("routes[{earlier}]"))
                .map_or(String::new(), |line| format!(", line {line}"));
            warn(
                format!("routes[{later}]"),
                format!(
                    "never matches: routes[{earlier}] ({}{line}) comes first and takes every \
                     request it would; first match wins, so list the narrower route first",
                    describe(&config.routes[earlier])
                ),
            );
        }
    }
    found
}

/// Every request `later` would match, `earlier` matches too.
fn covers(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    let methods = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(first), Some(second)) => second.iter().all(|method| first.contains(method)),
    };
    methods && prefix_matches(&earlier.path_prefix, &later.path_prefix)
}

fn describe(route: &RouteConfig) -> String {
    let methods = match &route.methods {
        None => "every method".to_string(),
        Some(methods) => methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("{} for {methods}", route.path_prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(routes: &str) -> Vec<String> {
        let config = Config::parse(&format!(
            "upstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nroutes:\n{routes}"
        ))
        .unwrap();
        config.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn a_route_behind_one_that_takes_all_its_requests_is_reported() {
        let found = warned(
            "  - { path_prefix: /v1, upstream: u }\n  - { path_prefix: /v1/accounts, methods: [GET], upstream: u }\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .starts_with("routes[1]: never matches: routes[0] (/v1 for every method, line 3)"),
            "{found:?}"
        );
        let same = warned(
            "  - { path_prefix: /a, methods: [GET, POST], upstream: u }\n  - { path_prefix: /a, methods: [POST], upstream: u }\n",
        );
        assert_eq!(same.len(), 1, "{same:?}");
    }

    #[test]
    fn routes_that_can_still_match_are_not() {
        for routes in [
            "  - { path_prefix: /v1/accounts, upstream: u }\n  - { path_prefix: /v1, upstream: u }\n",
            "  - { path_prefix: /a, methods: [GET], upstream: u }\n  - { path_prefix: /a, methods: [POST], upstream: u }\n",
            "  - { path_prefix: /a, methods: [GET], upstream: u }\n  - { path_prefix: /a, upstream: u }\n",
            "  - { path_prefix: /ab, upstream: u }\n  - { path_prefix: /abc, upstream: u }\n",
        ] {
            assert!(warned(routes).is_empty(), "{routes}");
        }
    }

    #[test]
    fn no_routes_is_a_warning() {
        let config = Config::parse("").unwrap();
        assert!(config.warnings[0].to_string().contains("no routes"));
    }
}
