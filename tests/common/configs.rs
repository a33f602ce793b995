//! The configurations most tests start from.

use super::upstream::Upstream;
use std::path::Path;

pub fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write");
}

/// The config used by most tests: an echo upstream, a dead one, a slow-timeout one.
pub fn basic_config(upstream: &Upstream) -> String {
    format!(
        r#"
listen: "{{listen}}"
threads: 1
grace_period: 5s
upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
store: {{ url: "sqlite://{{dir}}/tollgate.db" }}
oauth: {{ issuer: "http://{{listen}}", signing_key_path: "{{dir}}/signing.pem" }}
permissions: [accounts:read, accounts:write]
upstreams:
  echo: {{ targets: ["{up}"] }}
  dead: {{ targets: ["127.0.0.1:1"], connect_timeout: 500ms }}
  impatient: {{ targets: ["{up}"], read_timeout: 300ms }}
routes:
  - path_prefix: /v1/accounts
    methods: [GET]
    upstream: echo
    require: [accounts:read]
  - path_prefix: /v1/accounts
    methods: [POST]
    upstream: echo
    require: [accounts:write]
  - path_prefix: /v1/public
    name: public
    upstream: echo
    anonymous: true
  - path_prefix: /slow
    upstream: echo
    anonymous: true
  - path_prefix: /dead
    upstream: dead
    anonymous: true
  - path_prefix: /timeout
    upstream: impatient
    anonymous: true
"#,
        up = upstream.addr
    )
}

/// The config of the credential tests: accounts routes in front of the echo upstream.
pub fn credentials_config(upstream: &Upstream, store_url: &str, environment: &str) -> String {
    format!(
        r#"
listen: "{{listen}}"
threads: 1
grace_period: 5s
environment: {environment}
upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
store: {{ url: "{store_url}", sync_interval: 1s, max_staleness: 5m }}
oauth: {{ issuer: "http://{{listen}}", signing_key_path: "{{dir}}/signing.pem" }}
infrastructure_ips: [127.0.0.3/32]
permissions: [accounts:read, accounts:write]
presets:
  read_only: [accounts:read]
roles:
  workbench: [accounts:read, accounts:write]
upstreams:
  echo: {{ targets: ["{up}"] }}
routes:
  - path_prefix: /v1/accounts
    methods: [GET]
    upstream: echo
    require: [accounts:read]
  - path_prefix: /v1/accounts
    methods: [POST]
    upstream: echo
    require: [accounts:write]
  - path_prefix: /v1/public
    upstream: echo
    anonymous: true
"#,
        up = upstream.addr
    )
}
