//! The OpenAPI 3.1 document of the admin API, served at `/admin/v1/openapi.json`.
//! A test calls every operation listed here, so it cannot drift from the router.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn operation(summary: &str, responses: Value) -> Value {
    json!({"summary": summary, "responses": responses})
}

fn with_body(mut op: Value, schema: &str) -> Value {
    op["requestBody"] = body(schema);
    op
}

fn idempotent(mut op: Value) -> Value {
    op["parameters"] = json!([{"$ref": "#/components/parameters/IdempotencyKey"}]);
    op
}

pub fn document() -> Value {
    let key_id =
        json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let page = json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}}
    ]);
    let mut list_keys = operation(
        "List keys (never their secrets)",
        json!({"200": ok("A page of keys", "KeyPage"), "401": error_response("No operator token")}),
    );
    list_keys["parameters"] = page.clone();
    let mut list_audit = operation(
        "Every change: who, what, when, before and after",
        json!({"200": ok("A page of audit entries", "AuditPage")}),
    );
    list_audit["parameters"] = page;
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": "tollgate admin API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/admin/v1"}],
        "security": [{"operatorToken": []}],
        "paths": {
            "/keys": {
                "post": idempotent(with_body(operation("Create a key; the secret is in `key`, once", json!({
                    "201": ok("The key and its secret", "KeyWithSecret"),
                    "400": error_response("invalid_request, unknown_permission, permission_required, invalid_cidr, expiry_required, expiry_beyond_max_lifetime"),
                    "403": error_response("legacy_keys_blocked"),
                    "503": error_response("store_unavailable")
                })), "CreateKey")),
                "get": list_keys
            },
            "/keys/{id}": {
                "parameters": key_id.clone(),
                "get": operation("Show a key", json!({"200": ok("The key", "Key"), "404": error_response("not_found")})),
                "patch": with_body(operation("Change name, permissions, allowlist, rate limit or metadata", json!({
                    "200": ok("The key", "Key"),
                    "400": error_response("expiry_immutable, invalid_request, ..."),
                    "409": error_response("already_revoked")
                })), "PatchKey")
            },
            "/keys/{id}/rotate": {
                "parameters": key_id.clone(),
                "post": idempotent(with_body(operation("Issue a new secret; the old one stops now or after `grace`", json!({
                    "200": ok("The key and its new secret", "KeyWithSecret"),
                    "409": error_response("already_revoked")
                })), "RotateKey"))
            },
            "/keys/{id}/revoke": {
                "parameters": key_id.clone(),
                "post": idempotent(operation("Revoke a key; final", json!({"200": ok("The revoked key", "Key"), "409": error_response("already_revoked")})))
            },
            "/keys/{id}/usage": {
                "parameters": key_id,
                "get": operation("Requests per UTC day by outcome, and last_used_at", json!({"200": ok("Usage", "Usage")}))
            },
            "/policy": {
                "get": operation("The organisation-wide key policy", json!({"200": ok("The policy", "Policy")})),
                "put": with_body(operation("Change the policy; fields left out keep their value", json!({"200": ok("The policy", "Policy")})), "Policy")
            },
            "/audit": {"get": list_audit},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        },
        "components": {
            "securitySchemes": {"operatorToken": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255},
                    "description": "The same key and body within 24 h returns the first answer (without the secret)."}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message", "request_id"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}},
                "RateLimit": {"type": "object", "additionalProperties": false, "required": ["per_minute", "per_day"], "properties": {
                    "per_minute": {"type": "integer", "minimum": 1}, "per_day": {"type": "integer", "minimum": 1}}},
                "Key": {"type": "object", "properties": {
                    "id": {"type": "string"}, "client_id": {"type": "string"}, "name": {"type": "string"},
                    "type": {"enum": ["fine_grained", "legacy"]}, "permissions": {"type": "array", "items": {"type": "string"}},
                    "role": {"type": ["string", "null"]}, "environment": {"enum": ["live", "test"]}, "start": {"type": "string"},
                    "ip_allowlist": {"type": "array", "items": {"type": "string"}}, "allow_infrastructure_ips": {"type": "boolean"},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": {"type": "string", "format": "date-time"},
                    "rotated_at": {"type": ["string", "null"], "format": "date-time"}, "revoked_at": {"type": ["string", "null"], "format": "date-time"},
                    "last_used_at": {"type": ["string", "null"], "format": "date-time"},
                    "rate_limit": {"oneOf": [{"$ref": "#/components/schemas/RateLimit"}, {"type": "null"}]},
                    "metadata": {"type": "object"}}},
                "KeyWithSecret": {"allOf": [{"$ref": "#/components/schemas/Key"}, {"type": "object", "properties": {"key": {"type": "string", "description": "The secret, shown once"}}}]},
                "KeyPage": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}, "next_cursor": {"type": ["string", "null"]}}},
                "CreateKey": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                    "name": {"type": "string"}, "type": {"enum": ["fine_grained", "legacy"]},
                    "permissions": {"type": "array", "items": {"type": "string"}}, "preset": {"type": "string"}, "role": {"type": "string"},
                    "ip_allowlist": {"type": "array", "items": {"type": "string"}}, "allow_infrastructure_ips": {"type": "boolean"},
                    "expires_at": {"type": "string", "format": "date-time"}, "environment": {"enum": ["live", "test"]},
                    "rate_limit": {"$ref": "#/components/schemas/RateLimit"}, "metadata": {"type": "object"}}},
                "PatchKey": {"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string"}, "permissions": {"type": "array", "items": {"type": "string"}},
                    "ip_allowlist": {"type": "array", "items": {"type": "string"}}, "allow_infrastructure_ips": {"type": "boolean"},
                    "rate_limit": {"oneOf": [{"$ref": "#/components/schemas/RateLimit"}, {"type": "null"}]}, "metadata": {"type": "object"}}},
                "RotateKey": {"type": "object", "additionalProperties": false, "properties": {
                    "expires_at": {"type": "string", "format": "date-time"}, "grace": {"type": "string", "examples": ["1h"]}}},
                "Policy": {"type": "object", "additionalProperties": false, "properties": {
                    "block_legacy_keys": {"type": "boolean"}, "max_key_lifetime": {"type": ["string", "null"], "examples": ["90d"]}}},
                "Usage": {"type": "object", "properties": {"key_id": {"type": "string"}, "last_used_at": {"type": ["string", "null"]},
                    "days": {"type": "array", "items": {"type": "object", "properties": {"date": {"type": "string"}, "outcomes": {"type": "object"}, "total": {"type": "integer"}}}}}},
                "AuditPage": {"type": "object", "properties": {"data": {"type": "array", "items": {"type": "object"}}, "next_cursor": {"type": ["string", "null"]}}}
            }
        }
    });
    add_oauth_admin(&mut document);
    document
}

/// Apps and users of the authorization-code flow.
fn add_oauth_admin(document: &mut Value) {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let paths = &mut document["paths"];
    paths["/clients"] = json!({
        "post": idempotent(with_body(operation("Register an OAuth app; a confidential app's `client_secret` is shown once", json!({
            "201": {"description": "The app"}, "400": error_response("invalid_request, unknown_permission")
        })), "CreateClient")),
        "get": operation("List OAuth apps", json!({"200": {"description": "A page of apps"}}))
    });
    paths["/clients/{id}"] = json!({
        "parameters": id.clone(),
        "get": operation("Show an app", json!({"200": {"description": "The app"}, "404": error_response("not_found")})),
        "delete": operation("Delete an app; its tokens stop working", json!({"200": {"description": "The deleted app"}, "409": error_response("already_revoked")}))
    });
    paths["/users"] = json!({
        "post": idempotent(with_body(operation("Create a user (password stored as argon2id)", json!({"201": {"description": "The user"}})), "CreateUser")),
        "get": operation("List users", json!({"200": {"description": "A page of users"}}))
    });
    paths["/users/{id}"] = json!({
        "parameters": id,
        "patch": with_body(operation("Change a user's password or disable them", json!({"200": {"description": "The user"}})), "PatchUser")
    });
    let schemas = &mut document["components"]["schemas"];
    schemas["CreateClient"] = json!({"type": "object", "additionalProperties": false, "required": ["name", "type", "redirect_uris", "scopes"], "properties": {
        "name": {"type": "string"}, "type": {"enum": ["public", "confidential"]},
        "redirect_uris": {"type": "array", "items": {"type": "string", "format": "uri"}}, "scopes": {"type": "array", "items": {"type": "string"}}}});
    schemas["CreateUser"] = json!({"type": "object", "additionalProperties": false, "required": ["username", "password"], "properties": {
        "username": {"type": "string"}, "password": {"type": "string", "minLength": 12}, "disabled": {"type": "boolean"}}});
    schemas["PatchUser"] = json!({"type": "object", "additionalProperties": false, "properties": {
        "password": {"type": "string", "minLength": 12}, "disabled": {"type": "boolean"}}});
}
