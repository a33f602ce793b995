//! The route table: which route a method and normalised path reach. First match wins.

use crate::config::{Config, Environment, Environments, Window};
use crate::path::prefix_matches;
use crate::policy::permissions::{Catalog, PermissionSet};
use http::Method;
use std::sync::Arc;

#[derive(Debug)]
pub struct Route {
    /// Position in the table; indexes per-route metric handles.
    pub index: usize,
    pub name: Arc<str>,
    pub path_prefix: String,
    methods: Option<Vec<Method>>,
    pub upstream: Arc<str>,
    /// Position of the upstream among `config.upstreams` (sorted by name).
    pub upstream_index: usize,
    pub require: PermissionSet,
    pub anonymous: bool,
    /// The route's safeguard, under the route's name.
    pub rate_limit: Option<(&'static str, Window)>,
    /// The credits an allowed request spends from a caller that has credits.
    pub cost: u64,
    /// Only callers of these environments may use the route, when set.
    pub environments: Option<Environments>,
    /// Another upstream (name and position) for callers of an environment.
    upstream_by_environment: Vec<(Environment, Arc<str>, usize)>,
}

impl Route {
    /// The upstream a caller of `environment` goes to, with its position among
    /// `config.upstreams`.
    pub fn upstream_for(&self, environment: Option<Environment>) -> (&Arc<str>, usize) {
        environment
            .and_then(|environment| {
                self.upstream_by_environment
                    .iter()
                    .find(|(of, _, _)| *of == environment)
            })
            .map_or((&self.upstream, self.upstream_index), |(_, name, index)| {
                (name, *index)
            })
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table from a validated config (permissions and upstreams already checked).
    pub fn new(config: &Config, catalog: &Catalog) -> Self {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| Route {
                index,
                name: Arc::from(route.name.as_str()),
                path_prefix: route.path_prefix.clone(),
                methods: route.methods.clone(),
                upstream: Arc::from(route.upstream.as_str()),
                upstream_index: config
                    .upstreams
                    .keys()
                    .position(|name| *name == route.upstream)
                    .unwrap_or(0),
                require: catalog.set(&route.require).unwrap_or_default(),
                anonymous: route.anonymous,
                rate_limit: route
                    .rate_limit
                    .map(|window| (crate::policy::rate_limit::route_window(&route.name), window)),
                cost: route.cost,
                environments: route.environments.as_deref().map(Environments::of),
                upstream_by_environment: route
                    .upstream_by_environment
                    .iter()
                    .map(|(environment, name)| {
                        let index = config.upstreams.keys().position(|n| n == name).unwrap_or(0);
                        (*environment, Arc::from(name.as_str()), index)
                    })
                    .collect(),
            })
            .collect();
        RouteTable { routes }
    }

    /// The first route whose prefix covers `path` (on a segment boundary) and whose
    /// methods include `method`.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.allows(method) && prefix_matches(&route.path_prefix, path))
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Route {
    fn allows(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let config = Config::parse(
            r#"
permissions: [accounts:read, accounts:write]
upstreams:
  api: { targets: ["127.0.0.1:3000"] }
routes:
  - path_prefix: /v1/accounts
    methods: [GET]
    upstream: api
    require: [accounts:read]
  - path_prefix: /v1/accounts
    methods: [POST]
    upstream: api
    require: [accounts:write]
  - path_prefix: /v1/public/
    upstream: api
    anonymous: true
  - path_prefix: /
    name: fallback
    methods: [GET]
    upstream: api
"#,
        )
        .unwrap();
        let catalog = Catalog::new(&config.permissions);
        RouteTable::new(&config, &catalog)
    }

    #[test]
    fn first_match_wins_by_method_and_prefix() {
        let table = table();
        assert_eq!(
            table.find(&Method::GET, "/v1/accounts").map(|r| r.index),
            Some(0)
        );
        assert_eq!(
            table.find(&Method::GET, "/v1/accounts/42").map(|r| r.index),
            Some(0)
        );
        assert_eq!(
            table.find(&Method::POST, "/v1/accounts").map(|r| r.index),
            Some(1)
        );
        assert_eq!(
            table.find(&Method::PUT, "/v1/public/x").map(|r| r.index),
            Some(2)
        );
        assert_eq!(
            table.find(&Method::GET, "/v1/accountsx").map(|r| &*r.name),
            Some("fallback")
        );
        assert!(table.find(&Method::DELETE, "/v1/accounts").is_none());
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/v1/accounts", "/v1/accounts"));
        assert!(prefix_matches("/v1/accounts", "/v1/accounts/1"));
        assert!(!prefix_matches("/v1/accounts", "/v1/accounts;x"));
        assert!(!prefix_matches("/v1/accounts", "/v1/accountsx"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/v1/public/", "/v1/public/a"));
    }
}
