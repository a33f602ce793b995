//! The OpenAPI 3.1 document of the admin API, served at `/admin/v1/openapi.json`, written
//! from the endpoint table: every operation with the permission it needs
//! (`x-required-permission`), its parameters, body and answers. A property-based run
//! (schemathesis) holds the server to it.

use super::endpoint::{Access, Endpoint};
use crate::admin_access::Permissions;
use serde_json::{json, Map, Value};

fn reference(schema: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{schema}")})
}

fn json_content(schema: &str) -> Value {
    json!({"application/json": {"schema": reference(schema)}})
}

/// The schema of each query parameter an endpoint may take.
fn query_parameter(name: &str) -> Value {
    let schema = match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        "days" => json!({"type": "integer", "minimum": 1, "maximum": 366, "default": 30}),
        "hours" => json!({"type": "integer", "minimum": 1, "maximum": 720, "default": 48}),
        "status" => json!({"enum": ["active", "expiring", "expired", "revoked"]}),
        "type" => json!({"enum": ["fine_grained", "legacy"]}),
        "from" | "to" => json!({"type": "string", "format": "date-time"}),
        "granularity" => json!({"enum": ["hour", "day"], "default": "hour"}),
        "group_by" => json!({"type": "string", "default": "outcome",
            "pattern": "^(outcome|route|key)(,(outcome|route|key))*$"}),
        _ => json!({"type": "string", "minLength": 1}),
    };
    let description = match name {
        "cursor" => "Where the previous page ended: its next_cursor.",
        "name" => "Keys whose name holds this, ignoring case.",
        "actor" => "An actor's id, or a kind (operator, token, bootstrap, system).",
        "from" => "At or after this time.",
        "to" => "Before this time.",
        "group_by" => "Comma-separated: outcome, route, key.",
        "key_id" => "Only this key's requests.",
        "owner_id" => "Only the requests of this owner's keys.",
        _ => "",
    };
    let mut parameter = json!({"name": name, "in": "query", "required": false, "schema": schema});
    if !description.is_empty() {
        parameter["description"] = json!(description);
    }
    parameter
}

fn operation(endpoint: &Endpoint) -> Value {
    let doc = &endpoint.doc;
    let mut parameters: Vec<Value> = Vec::new();
    for name in endpoint
        .path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
    {
        parameters.push(
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
        );
    }
    parameters.extend(endpoint.query.iter().map(|name| query_parameter(name)));
    if doc.idempotent {
        parameters.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
    }
    let mut responses = Map::new();
    responses.insert(
        doc.ok.0.to_string(),
        json!({"description": doc.summary, "content": json_content(doc.ok.1)}),
    );
    let error =
        json!({"description": "A refusal, with its stable code", "content": json_content("Error")});
    responses.insert("4XX".into(), error.clone());
    responses.insert("5XX".into(), error);
    let mut op = json!({
        "operationId": format!("{} {}", endpoint.method, endpoint.path),
        "summary": doc.summary,
        "x-required-permission": endpoint.permission_label(),
        "parameters": parameters,
        "responses": responses,
    });
    if endpoint.access == Access::Public {
        op["security"] = json!([]);
    }
    if let Some(body) = doc.body {
        op["requestBody"] = json!({"required": body != "Empty", "content": json_content(body)});
    }
    op
}

pub fn document(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints {
        let item = paths
            .entry(endpoint.path.to_string())
            .or_insert_with(|| json!({}));
        item[endpoint.method.to_ascii_lowercase()] = operation(endpoint);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tollgate admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every operation needs the admin permission named in x-required-permission; \
                            signed_in means any operator or token, none means no credential."
        },
        "servers": [{"url": "/admin/v1"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                    "description": "An admin token (tg_adm_...) or the bootstrap token."},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "tollgate_session",
                    "description": "A console session from POST /session; state-changing requests also send X-CSRF-Token."}
            },
            "parameters": {
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": false,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "description": "The same key and body within 24 h returns the first answer (without the secret)."}
            },
            "schemas": schemas(),
        }
    })
}

fn page(item: &str) -> Value {
    json!({"type": "object", "required": ["data", "next_cursor"], "properties": {
        "data": {"type": "array", "items": reference(item)},
        "next_cursor": {"type": ["string", "null"]}}})
}

fn with_secret(record: &str, field: &str) -> Value {
    // Shown once: a replay of the same Idempotency-Key answers without it.
    json!({"allOf": [reference(record), {"type": "object", "properties": {
        field: {"type": "string", "description": "The secret, shown once (never in a replayed answer)"}}}]})
}

fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let maybe_time = json!({"type": ["string", "null"], "format": "date-time"});
    let names = json!({"type": "array", "items": {"type": "string"}});
    // A certificate's SHA-256, as 64 hex digits or as openssl prints it (pairs and colons).
    let fingerprint = json!({"type": "string",
        "pattern": "^([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$"});
    let admin_permissions = json!({"type": "array", "items": {"enum": Permissions::all().names()}});
    let mut all = json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message", "request_id"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}},
        "Empty": {"type": "object", "additionalProperties": false},
        "OpenApi": {"type": "object"},
        "Actor": {"type": "object", "required": ["kind", "id", "name"], "properties": {
            "kind": {"enum": ["operator", "token", "bootstrap", "system"]},
            "id": {"type": ["string", "null"]}, "name": {"type": "string"}}},
        "RateLimit": {"type": "object", "additionalProperties": false, "required": ["per_minute", "per_day"], "properties": {
            "per_minute": {"type": "integer", "minimum": 1}, "per_day": {"type": "integer", "minimum": 1}}},
        "Key": {"type": "object", "required": ["id", "client_id", "name", "type", "permissions", "environment", "start",
                "ip_allowlist", "allow_infrastructure_ips", "created_at", "metadata"], "properties": {
            "id": {"type": "string"}, "client_id": {"type": "string"}, "name": {"type": "string"},
            "type": {"enum": ["fine_grained", "legacy"]}, "permissions": names.clone(),
            "role": {"type": ["string", "null"]}, "environment": {"type": "string"}, "start": {"type": "string"},
            "ip_allowlist": {"type": "array", "items": {"type": "string"},
                "description": "Addresses and CIDRs the key may be used from; empty means any address, unless allow_infrastructure_ips"},
            "allow_infrastructure_ips": {"type": "boolean",
                "description": "Adds the config's infrastructure_ips; with an empty ip_allowlist, the key works from them only"},
            "expires_at": maybe_time.clone(), "created_at": time.clone(),
            "rotated_at": maybe_time.clone(), "revoked_at": maybe_time.clone(), "last_used_at": maybe_time.clone(),
            "rate_limit": {"oneOf": [reference("RateLimit"), {"type": "null"}]},
            "metadata": {"type": "object"},
            "client_cert_sha256": {"type": ["string", "null"],
                "description": "The SHA-256 of the only client certificate the key works with (lowercase hex); null when unbound"},
            "owner_id": {"type": ["string", "null"],
                "description": "The owner whose shared rate limit the key also counts in"},
            "credits": {"oneOf": [reference("Credits"), {"type": "null"}]}}},
        "KeyWithSecret": with_secret("Key", "key"),
        "KeyPage": page("Key"),
        "CreateKey": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200}, "type": {"enum": ["fine_grained", "legacy"]},
            "permissions": names.clone(), "preset": {"type": "string"}, "role": {"type": "string"},
            "ip_allowlist": names.clone(), "allow_infrastructure_ips": {"type": "boolean"},
            "expires_at": time.clone(), "environment": {"type": "string"},
            "rate_limit": reference("RateLimit"), "metadata": {"type": "object"},
            "client_cert_sha256": fingerprint.clone(), "owner_id": {"type": "string"},
            "credits": reference("Credits")}},
        "PatchKey": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200}, "permissions": names.clone(),
            "ip_allowlist": names.clone(), "allow_infrastructure_ips": {"type": "boolean"},
            "rate_limit": {"oneOf": [reference("RateLimit"), {"type": "null"}]}, "metadata": {"type": "object"},
            "client_cert_sha256": {"oneOf": [fingerprint.clone(), {"type": "null"}]},
            "owner_id": {"type": ["string", "null"]},
            "credits": {"oneOf": [reference("Credits"), {"type": "null"}]}}},
        "RotateKey": {"type": "object", "additionalProperties": false, "properties": {
            "expires_at": time.clone(), "grace": {"type": "string", "examples": ["1h"]},
            "ip_allowlist": names.clone()}},
        "Policy": {"type": "object", "additionalProperties": false, "properties": {
            "block_legacy_keys": {"type": "boolean"}, "max_key_lifetime": {"type": ["string", "null"], "examples": ["90d"]}}},
        "Usage": {"type": "object", "required": ["key_id", "last_used_at", "days", "hours"], "properties": {
            "key_id": {"type": "string"}, "last_used_at": maybe_time.clone(),
            "days": {"type": "array", "items": {"type": "object", "required": ["date", "outcomes", "total"], "properties": {
                "date": {"type": "string"}, "outcomes": {"type": "object"}, "total": {"type": "integer"}}}},
            "hours": {"type": "array", "items": {"type": "object", "required": ["hour", "outcomes", "total"], "properties": {
                "hour": {"type": "string", "format": "date-time"}, "outcomes": {"type": "object"}, "total": {"type": "integer"}}}}}}
    });
    let more = json!({
        "AuditEntry": {"type": "object", "required": ["id", "at", "actor", "action", "target"], "properties": {
            "id": {"type": "integer"}, "at": time.clone(), "actor": reference("Actor"),
            "action": {"type": "string"}, "target": {"type": "string"},
            "before": {"type": ["object", "null"]}, "after": {"type": ["object", "null"]}}},
        "AuditPage": page("AuditEntry"),
        "Client": {"type": "object", "required": ["client_id", "name", "type", "redirect_uris", "scopes", "created_at"], "properties": {
            "client_id": {"type": "string"}, "name": {"type": "string"}, "type": {"enum": ["public", "confidential"]},
            "redirect_uris": names.clone(), "scopes": names.clone(), "created_at": time.clone(), "deleted_at": maybe_time.clone()}},
        "ClientWithSecret": {"allOf": [reference("Client"), {"type": "object", "properties": {
            "client_secret": {"type": "string", "description": "Confidential apps only, shown once"}}}]},
        "ClientPage": page("Client"),
        "CreateClient": {"type": "object", "additionalProperties": false, "required": ["name", "type", "redirect_uris", "scopes"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200}, "type": {"enum": ["public", "confidential"]},
            "redirect_uris": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "string", "format": "uri"}},
            "scopes": {"type": "array", "minItems": 1, "items": {"type": "string"}}}},
        "User": {"type": "object", "required": ["id", "username", "disabled", "created_at"], "properties": {
            "id": {"type": "string"}, "username": {"type": "string"}, "disabled": {"type": "boolean"},
            "created_at": time.clone(), "password_changed_at": maybe_time.clone()}},
        "UserPage": page("User"),
        "CreateUser": {"type": "object", "additionalProperties": false, "required": ["username", "password"], "properties": {
            "username": {"type": "string", "minLength": 1, "maxLength": 100}, "password": {"type": "string", "minLength": 12, "maxLength": 1024},
            "disabled": {"type": "boolean"}}},
        "PatchUser": {"type": "object", "additionalProperties": false, "properties": {
            "password": {"type": "string", "minLength": 12, "maxLength": 1024}, "disabled": {"type": "boolean"}}}
    });
    let workbench = json!({
        "Operator": {"type": "object", "required": ["id", "email", "name", "role", "disabled", "created_at"], "properties": {
            "id": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"}, "role": {"type": "string"},
            "disabled": {"type": "boolean"}, "created_at": time.clone(), "password_changed_at": maybe_time.clone()}},
        "OperatorPage": page("Operator"),
        "CreateOperator": {"type": "object", "additionalProperties": false, "required": ["email", "name", "password", "role"], "properties": {
            "email": {"type": "string", "format": "email"}, "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "password": {"type": "string", "minLength": 12, "maxLength": 1024}, "role": {"type": "string"}}},
        "PatchOperator": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200}, "role": {"type": "string"},
            "disabled": {"type": "boolean"}, "password": {"type": "string", "minLength": 12, "maxLength": 1024}}},
        "Token": {"type": "object", "required": ["id", "name", "start", "permissions", "role", "created_at", "created_by", "effective_permissions"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "start": {"type": "string"},
            "permissions": admin_permissions.clone(), "role": {"type": ["string", "null"]},
            "expires_at": maybe_time.clone(), "created_at": time.clone(), "created_by": reference("Actor"),
            "revoked_at": maybe_time.clone(), "last_used_at": maybe_time.clone(),
            "effective_permissions": admin_permissions.clone()}},
        "TokenWithSecret": with_secret("Token", "token"),
        "TokenPage": page("Token"),
        "CreateToken": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200}, "permissions": admin_permissions,
            "role": {"type": "string"}, "expires_at": time}},
        "SignIn": {"type": "object", "additionalProperties": false, "required": ["email", "password"], "properties": {
            "email": {"type": "string", "minLength": 1}, "password": {"type": "string", "minLength": 1}}},
        "Session": {"type": "object", "required": ["operator", "csrf_token"], "properties": {
            "operator": reference("Operator"), "csrf_token": {"type": "string"}}},
        "SignedOut": {"type": "object", "required": ["signed_out"], "properties": {"signed_out": {"type": "boolean"}}},
        "Me": {"type": "object", "required": ["kind", "id", "name", "role", "permissions"], "properties": {
            "kind": {"enum": ["operator", "token", "bootstrap"]}, "id": {"type": ["string", "null"]},
            "name": {"type": "string"}, "role": {"type": ["string", "null"]}, "permissions": {"type": "array", "items": {"type": "string"}}}}
    });
    let event_filters: Vec<&str> = std::iter::once("*")
        .chain(crate::events::catalog::TYPES.iter().copied())
        .collect();
    let events = json!({
        "Webhook": {"type": "object", "required": ["id", "url", "events", "description", "disabled", "created_at", "updated_at"], "properties": {
            "id": {"type": "string"}, "url": {"type": "string", "format": "uri"},
            "events": {"type": "array", "items": {"enum": event_filters}},
            "description": {"type": "string"}, "disabled": {"type": "boolean"},
            "created_at": time.clone(), "updated_at": time.clone(),
            "previous_secret_until": {"type": ["string", "null"], "format": "date-time",
                "description": "Until then the previous secret signs too, after the new one"}}},
        "WebhookWithSecret": with_secret("Webhook", "secret"),
        "WebhookPage": page("Webhook"),
        "CreateWebhook": {"type": "object", "additionalProperties": false, "required": ["url", "events"], "properties": {
            "url": {"type": "string", "format": "uri"}, "events": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "description": {"type": "string", "maxLength": 500}, "disabled": {"type": "boolean"}}},
        "PatchWebhook": {"type": "object", "additionalProperties": false, "properties": {
            "url": {"type": "string", "format": "uri"}, "events": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "description": {"type": "string", "maxLength": 500}, "disabled": {"type": "boolean"}}},
        "WebhookDeleted": {"type": "object", "required": ["id", "deleted"], "properties": {
            "id": {"type": "string"}, "deleted": {"type": "boolean"}}},
        "TestEvent": {"type": "object", "required": ["event_id", "type", "webhook_id"], "properties": {
            "event_id": {"type": "string"}, "type": {"const": "webhook.test"}, "webhook_id": {"type": "string"}}},
        "Delivery": {"type": "object", "required": ["id", "event_id", "type", "attempts", "last_status", "last_error", "next_attempt_at", "state", "created_at"], "properties": {
            "id": {"type": "string"}, "event_id": {"type": "string"}, "type": {"type": "string"},
            "attempts": {"type": "integer"}, "last_status": {"type": ["integer", "null"]}, "last_error": {"type": ["string", "null"]},
            "next_attempt_at": maybe_time.clone(), "state": {"enum": ["pending", "delivered", "failed"]}, "created_at": time.clone()}},
        "DeliveryPage": page("Delivery"),
        "Event": {"type": "object", "required": ["id", "type", "timestamp", "data"], "properties": {
            "id": {"type": "string"}, "type": {"type": "string"}, "timestamp": time.clone(), "data": {"type": "object"}}},
        "EventPage": {"type": "object", "required": ["data", "next_cursor"], "properties": {
            "data": {"type": "array", "items": reference("Event")}, "next_cursor": {"type": "string"}}}
    });
    let owners = json!({
        "AnalyticsPage": {"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": {"type": "object", "required": ["start", "count"], "properties": {
                "start": time.clone(), "key_id": {"type": "string"}, "owner_id": {"type": "string"},
                "route": {"type": "string"}, "outcome": {"type": "string"}, "count": {"type": "integer", "minimum": 0}}}}}},
        "Credits": {"type": "object", "additionalProperties": false, "required": ["remaining"], "properties": {
            "remaining": {"type": "integer", "minimum": 0, "maximum": 1_u64 << 50,
                "description": "As last written back: the data plane's balance may be up to 5 s ahead"},
            "refill": {"oneOf": [{"type": "object", "additionalProperties": false, "required": ["interval", "amount"], "properties": {
                "interval": {"enum": ["day", "month"]}, "amount": {"type": "integer", "minimum": 1, "maximum": 1_u64 << 50}}},
                {"type": "null"}], "description": "Each UTC day or month, the balance is set back to amount"}}},
        "CreditOp": {"type": "object", "additionalProperties": false, "required": ["op", "amount"], "properties": {
            "op": {"enum": ["set", "increment", "decrement"]}, "amount": {"type": "integer", "minimum": 0, "maximum": 1_u64 << 50}}},
        "Owner": {"type": "object", "required": ["id", "name", "external_id", "rate_limit", "metadata", "created_at", "updated_at"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "external_id": {"type": ["string", "null"]},
            "rate_limit": {"oneOf": [reference("RateLimit"), {"type": "null"}],
                "description": "Windows shared by all the owner's keys, checked beside each key's own"},
            "credits": {"oneOf": [reference("Credits"), {"type": "null"}]},
            "metadata": {"type": "object"}, "created_at": time.clone(), "updated_at": time.clone()}},
        "OwnerPage": page("Owner"),
        "CreateOwner": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "external_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "rate_limit": reference("RateLimit"), "metadata": {"type": "object"},
            "credits": reference("Credits")}},
        "PatchOwner": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "external_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
            "rate_limit": {"oneOf": [reference("RateLimit"), {"type": "null"}]}, "metadata": {"type": "object"},
            "credits": {"oneOf": [reference("Credits"), {"type": "null"}]}}}
    });
    for part in [more, workbench, events, owners] {
        if let (Some(into), Value::Object(from)) = (all.as_object_mut(), part) {
            into.extend(from);
        }
    }
    all
}
