//! The authorization server and access tokens end to end, with the `oauth2` crate as the
//! client: client credentials, the authorization-code flow with PKCE, refresh rotation,
//! revocation, introspection, token attacks and external issuers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use reqwest::Method;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn http_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_with(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&credentials_config(
        up,
        "sqlite://{dir}/data/tollgate.db",
        "live",
    ))
}

fn error_of<E: std::fmt::Debug + std::error::Error + 'static>(
    result: Result<
        impl std::fmt::Debug,
        RequestTokenError<E, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
    >,
) -> BasicErrorResponseType {
    match result {
        Err(RequestTokenError::ServerResponse(response)) => response.error().clone(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_tokens_stay_tied_to_their_key() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (status, created) = admin
        .post("/keys", json!({"name": "partner", "permissions": ["accounts:read", "accounts:write"], "ip_allowlist": ["127.0.0.1"]}))
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_string();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    let token_url = TokenUrl::new(gw.url("/oauth/token")).unwrap();
    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(secret.clone()))
        .set_token_uri(token_url.clone());
    let http = http();

    // The whole key's permissions by default; the token works on a route.
    let token = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let access = token.access_token().secret().clone();
    assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
    let accounts = gw.url("/v1/accounts");
    assert_eq!(get_with(&http, &accounts, &access).await.0, 200);
    let seen = up.recorder.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-tollgate-auth-method"), ["oauth"]);
    assert_eq!(last.header("x-tollgate-subject"), [id.as_str()]);
    assert_eq!(last.header("x-tollgate-client-id"), [client_id.as_str()]);
    assert_eq!(
        last.header("x-tollgate-permissions"),
        ["accounts:read accounts:write"]
    );
    assert!(last.header("authorization").is_empty());

    // A narrowed scope is honoured.
    let narrow = client
        .exchange_client_credentials()
        .add_scope(Scope::new("accounts:read".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(narrow.scopes().unwrap()[0].as_str(), "accounts:read");
    let narrow = narrow.access_token().secret().clone();
    assert_eq!(get_with(&http, &accounts, &narrow).await.0, 200);
    let write = http
        .post(&accounts)
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);
    let write = http
        .post(&accounts)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 200);

    // Credentials in the body, and a JSON body, work too.
    let body_auth = client.clone().set_auth_type(AuthType::RequestBody);
    assert!(body_auth
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .is_ok());
    let json_body = http
        .post(gw.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 200);
    assert_eq!(json_body.headers()["cache-control"], "no-store");

    // From an address outside the key's allowlist the token is refused.
    assert_eq!(
        get_with(&http_from("127.0.0.2"), &accounts, &access).await,
        (403, "ip_not_allowed".into())
    );

    // Rotating the key ends the tokens issued under its old secret, with the code the
    // old secret itself gets.
    let (_, rotated) = admin.post(&format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(
        get_with(&http, &accounts, &access).await,
        (401, "key_revoked".into())
    );
    let rotated_client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(rotated["key"].as_str().unwrap().into()))
        .set_token_uri(token_url.clone());
    let fresh = rotated_client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let fresh = fresh.access_token().secret().clone();
    assert_eq!(get_with(&http, &accounts, &fresh).await.0, 200);
    // The old secret is no client secret any more.
    assert_eq!(
        error_of(
            client
                .exchange_client_credentials()
                .request_async(&http)
                .await
        ),
        BasicErrorResponseType::InvalidClient
    );

    // Revoking the key ends its tokens at once, answering as the key does.
    admin.post(&format!("/keys/{id}/revoke"), json!({})).await;
    assert_eq!(
        get_with(&http, &accounts, &fresh).await,
        (401, "key_revoked".into())
    );

    let scrape = gw.scrape();
    assert!(
        metric(
            &scrape,
            "tollgate_tokens_issued_total{grant=\"client_credentials\"}"
        ) >= 5.0,
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "tollgate_auth_decisions_total{method=\"oauth\",outcome=\"allowed\"}"
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_beyond_the_key_and_bad_clients_are_refused() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (status, created) = admin
        .post(
            "/keys",
            json!({"name": "reader", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(status, 201);
    let client = BasicClient::new(ClientId::new(created["client_id"].as_str().unwrap().into()))
        .set_client_secret(ClientSecret::new(created["key"].as_str().unwrap().into()))
        .set_token_uri(TokenUrl::new(gw.url("/oauth/token")).unwrap());
    let http = http();
    let beyond = client
        .exchange_client_credentials()
        .add_scope(Scope::new("accounts:write".into()))
        .request_async(&http)
        .await;
    assert_eq!(error_of(beyond), BasicErrorResponseType::InvalidScope);
    let wrong = BasicClient::new(ClientId::new(created["client_id"].as_str().unwrap().into()))
        .set_client_secret(ClientSecret::new("tg_live_wrong".into()))
        .set_token_uri(TokenUrl::new(gw.url("/oauth/token")).unwrap());
    assert_eq!(
        error_of(
            wrong
                .exchange_client_credentials()
                .request_async(&http)
                .await
        ),
        BasicErrorResponseType::InvalidClient
    );

    let raw_token = |body: &'static str| {
        http.post(gw.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let unsupported = raw_token("grant_type=password&username=a&password=b&client_id=x")
        .await
        .unwrap();
    assert_eq!(
        unsupported.status(),
        401,
        "an unknown client is refused first"
    );
    let duplicated = raw_token("grant_type=client_credentials&grant_type=client_credentials")
        .await
        .unwrap();
    assert_eq!(duplicated.status(), 400);
    let answer: serde_json::Value = duplicated.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_request");
    let no_client = raw_token("grant_type=client_credentials").await.unwrap();
    assert_eq!(no_client.status(), 401);
    assert!(no_client.headers().contains_key("www-authenticate"));
    // A large body is refused before it is parsed.
    let large = http
        .post(gw.url("/oauth/token"))
        .body(vec![b'a'; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(large.status(), 413);
}

/// The login form's hidden fields, and the CSRF cookie from the page.
async fn open_login_page(http: &reqwest::Client, url: &str) -> (Vec<(String, String)>, String) {
    let page = http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"username\">") && html.contains("lang=\"en\""));
    let mut fields = Vec::new();
    for input in html.split("<input type=\"hidden\" ").skip(1) {
        let name = input
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value = input
            .split("value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        fields.push((
            name.to_string(),
            value.replace("&amp;", "&").replace("&quot;", "\""),
        ));
    }
    (fields, cookie)
}

async fn submit_login(
    http: &reqwest::Client,
    gw: &Gateway,
    fields: &[(String, String)],
    cookie: &str,
    user: &str,
    password: &str,
    decision: &str,
) -> reqwest::Response {
    let mut form = fields.to_vec();
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    form.push(("decision".into(), decision.into()));
    http.post(gw.url("/oauth/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_code_flow_with_pkce_refresh_and_reuse_detection() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let redirect = "http://127.0.0.1:9/callback";
    let (status, app) = admin
        .post("/clients", json!({"name": "Partner Portal", "type": "confidential", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, user) = admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert!(
        !user.to_string().contains("argon2"),
        "the hash is never shown"
    );
    let client = BasicClient::new(ClientId::new(app["client_id"].as_str().unwrap().into()))
        .set_client_secret(ClientSecret::new(
            app["client_secret"].as_str().unwrap().into(),
        ))
        .set_auth_uri(AuthUrl::new(gw.url("/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(gw.url("/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let http = http();

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("accounts:read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (fields, cookie) = open_login_page(&http, auth_url.as_str()).await;

    // A wrong password shows the page again, and no code.
    let wrong = submit_login(&http, &gw, &fields, &cookie, "ada", "nope", "allow").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("Wrong username or password"));
    // Without the CSRF cookie the form is refused.
    let forged = submit_login(
        &http,
        &gw,
        &fields,
        "tg_csrf=forged",
        "ada",
        "correct horse battery",
        "allow",
    )
    .await;
    assert_eq!(forged.status(), 403);

    let answer = submit_login(
        &http,
        &gw,
        &fields,
        &cookie,
        "ada",
        "correct horse battery",
        "allow",
    )
    .await;
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(redirect));
    let query = query_of(&location);
    assert_eq!(
        query["state"],
        *state.secret(),
        "state passes through unchanged"
    );
    let code = query["code"].clone();

    // A wrong verifier, or another redirect URI, is invalid_grant (and burns nothing else).
    let (_, other_verifier) = PkceCodeChallenge::new_random_sha256();
    let bad = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(other_verifier)
        .request_async(&http)
        .await;
    assert_eq!(error_of(bad), BasicErrorResponseType::InvalidGrant);

    // A second login gives a fresh code for the real exchange.
    let (challenge, verifier2) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let (fields, cookie) = open_login_page(&http, auth_url.as_str()).await;
    let answer = submit_login(
        &http,
        &gw,
        &fields,
        &cookie,
        "ada",
        "correct horse battery",
        "allow",
    )
    .await;
    let code = query_of(answer.headers()["location"].to_str().unwrap())["code"].clone();
    let _ = verifier;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier2)
        .request_async(&http)
        .await
        .unwrap();
    let access = tokens.access_token().secret().clone();
    let refresh = tokens.refresh_token().unwrap().clone();
    let accounts = gw.url("/v1/accounts");
    assert_eq!(get_with(&http, &accounts, &access).await.0, 200);
    let user_id = user["id"].as_str().unwrap();
    assert_eq!(
        up.recorder
            .requests()
            .last()
            .unwrap()
            .header("x-tollgate-subject"),
        [user_id]
    );

    // Introspection by the client that owns the token.
    let introspected: serde_json::Value = http
        .post(gw.url("/oauth/introspect"))
        .basic_auth(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str(),
        )
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["sub"], user_id);

    // The code is single use: a replay is invalid_grant and revokes what it issued.
    let (_, replay_verifier) = PkceCodeChallenge::new_random_sha256();
    let replay = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(replay_verifier)
        .request_async(&http)
        .await;
    assert_eq!(error_of(replay), BasicErrorResponseType::InvalidGrant);
    assert_eq!(
        get_with(&http, &accounts, &access).await,
        (401, "invalid_token".into())
    );
    assert_eq!(
        error_of(
            client
                .exchange_refresh_token(&refresh)
                .request_async(&http)
                .await
        ),
        BasicErrorResponseType::InvalidGrant
    );

    // A fresh grant: refresh rotates; reusing a refresh token revokes the whole family.
    let (challenge, verifier3) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let (fields, cookie) = open_login_page(&http, auth_url.as_str()).await;
    let answer = submit_login(
        &http,
        &gw,
        &fields,
        &cookie,
        "ada",
        "correct horse battery",
        "allow",
    )
    .await;
    let code = query_of(answer.headers()["location"].to_str().unwrap())["code"].clone();
    let first = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier3)
        .request_async(&http)
        .await
        .unwrap();
    let first_refresh: RefreshToken = first.refresh_token().unwrap().clone();
    let second = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&http)
        .await
        .unwrap();
    let second_access = second.access_token().secret().clone();
    let second_refresh = second.refresh_token().unwrap().clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert_eq!(get_with(&http, &accounts, &second_access).await.0, 200);
    let reuse = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&http)
        .await;
    assert_eq!(error_of(reuse), BasicErrorResponseType::InvalidGrant);
    assert_eq!(
        error_of(
            client
                .exchange_refresh_token(&second_refresh)
                .request_async(&http)
                .await
        ),
        BasicErrorResponseType::InvalidGrant
    );
    assert_eq!(
        get_with(&http, &accounts, &second_access).await,
        (401, "invalid_token".into())
    );

    let scrape = gw.scrape();
    assert!(
        metric(
            &scrape,
            "tollgate_tokens_issued_total{grant=\"authorization_code\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &scrape,
            "tollgate_tokens_issued_total{grant=\"refresh_token\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorize_endpoint_refuses_what_it_must() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let redirect = "http://127.0.0.1:9/cb";
    let (_, app) = admin
        .post("/clients", json!({"name": "SPA", "type": "public", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    let app_id = app["client_id"].as_str().unwrap();
    assert!(
        app.get("client_secret").is_none(),
        "a public client has no secret"
    );
    admin
        .post(
            "/users",
            json!({"username": "bob", "password": "a long enough password"}),
        )
        .await;
    let http = http();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let authorize = |query: String| {
        http.get(format!("{}?{query}", gw.url("/oauth/authorize")))
            .send()
    };

    // An unregistered redirect URI (or a look-alike) gets an error page, never a redirect.
    for look_alike in [
        "http://127.0.0.1:9/cb/",
        "http://127.0.0.1:9/CB",
        "http://127.0.0.1:9/cb?x=1",
        "https://127.0.0.1:9@evil.test/cb",
        "http://evil.test/cb",
    ] {
        let response = authorize(format!(
            "response_type=code&client_id={app_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
            urlencode(look_alike)
        ))
        .await
        .unwrap();
        assert_eq!(response.status(), 400, "{look_alike}");
        assert!(response.headers().get("location").is_none());
    }
    let unknown = authorize(format!(
        "response_type=code&client_id=app_nobody&redirect_uri={}",
        urlencode(redirect)
    ))
    .await
    .unwrap();
    assert_eq!(unknown.status(), 400);

    // PKCE is required, and only S256.
    let base = format!(
        "response_type=code&client_id={app_id}&redirect_uri={}&state=xyz",
        urlencode(redirect)
    );
    for (extra, error) in [
        (String::new(), "invalid_request"),
        (
            format!("&code_challenge={challenge}&code_challenge_method=plain"),
            "invalid_request",
        ),
        (format!("&code_challenge={challenge}"), "invalid_request"),
        (
            format!("&code_challenge={challenge}&code_challenge_method=S256&scope=accounts:write"),
            "invalid_scope",
        ),
    ] {
        let response = authorize(format!("{base}{extra}")).await.unwrap();
        assert_eq!(response.status(), 303, "{extra}");
        let query = query_of(response.headers()["location"].to_str().unwrap());
        assert_eq!(query["error"], error, "{extra}");
        assert_eq!(query["state"], "xyz");
    }
    let wrong_type = authorize(format!(
        "response_type=token&client_id={app_id}&redirect_uri={}",
        urlencode(redirect)
    ))
    .await
    .unwrap();
    assert_eq!(
        query_of(wrong_type.headers()["location"].to_str().unwrap())["error"],
        "unsupported_response_type"
    );

    // Denying consent redirects with access_denied.
    let url = format!(
        "{}?{base}&code_challenge={challenge}&code_challenge_method=S256",
        gw.url("/oauth/authorize")
    );
    let (fields, cookie) = open_login_page(&http, &url).await;
    let denied = submit_login(
        &http,
        &gw,
        &fields,
        &cookie,
        "bob",
        "a long enough password",
        "deny",
    )
    .await;
    assert_eq!(
        query_of(denied.headers()["location"].to_str().unwrap())["error"],
        "access_denied"
    );

    // A code redeemed by another client is invalid_grant; a public client needs no secret.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "{}?{base}&code_challenge={}&code_challenge_method=S256",
        gw.url("/oauth/authorize"),
        challenge.as_str()
    );
    let (fields, cookie) = open_login_page(&http, &url).await;
    let answer = submit_login(
        &http,
        &gw,
        &fields,
        &cookie,
        "bob",
        "a long enough password",
        "allow",
    )
    .await;
    let code = query_of(answer.headers()["location"].to_str().unwrap())["code"].clone();
    let (_, other) = admin
        .post("/clients", json!({"name": "Other", "type": "public", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    let thief = BasicClient::new(ClientId::new(other["client_id"].as_str().unwrap().into()))
        .set_token_uri(TokenUrl::new(gw.url("/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let stolen = thief
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await;
    assert_eq!(error_of(stolen), BasicErrorResponseType::InvalidGrant);

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "{}?{base}&code_challenge={}&code_challenge_method=S256",
        gw.url("/oauth/authorize"),
        challenge.as_str()
    );
    let (fields, cookie) = open_login_page(&http, &url).await;
    let answer = submit_login(
        &http,
        &gw,
        &fields,
        &cookie,
        "bob",
        "a long enough password",
        "allow",
    )
    .await;
    let code = query_of(answer.headers()["location"].to_str().unwrap())["code"].clone();
    let public = BasicClient::new(ClientId::new(app_id.into()))
        .set_token_uri(TokenUrl::new(gw.url("/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let tokens = public
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        get_with(
            &http,
            &gw.url("/v1/accounts"),
            tokens.access_token().secret()
        )
        .await
        .0,
        200
    );

    // Disabling the user ends their tokens; deleting the app does too.
    let (_, users) = admin.get("/users").await;
    let bob = users["data"][0]["id"].as_str().unwrap().to_string();
    admin
        .call(
            Method::PATCH,
            &format!("/users/{bob}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        get_with(
            &http,
            &gw.url("/v1/accounts"),
            tokens.access_token().secret()
        )
        .await,
        (401, "invalid_token".into())
    );
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_jwks_are_published() {
    let up = upstream();
    let gw = gateway(&up);
    let metadata: serde_json::Value =
        reqwest::get(gw.url("/.well-known/oauth-authorization-server"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        metadata["issuer"],
        format!("http://{}", gw.addr),
        "byte for byte the configured issuer"
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(metadata["token_endpoint"], gw.url("/oauth/token"));
    let jwks: serde_json::Value = reqwest::get(gw.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert!(key["kid"].is_string());
    assert!(key.get("d").is_none(), "never the private part");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(gw.dir.path().join("signing.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_and_introspection_follow_rfc_7009_and_7662() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (status, created) = admin
        .post(
            "/keys",
            json!({"name": "r", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(status, 201);
    let (client_id, secret) = (
        created["client_id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let (_, other) = admin
        .post(
            "/keys",
            json!({"name": "o", "permissions": ["accounts:read"]}),
        )
        .await;
    let http = http();
    let token_for = |id: String, key: String| {
        let http = http.clone();
        let url = gw.url("/oauth/token");
        async move {
            let answer: serde_json::Value = http
                .post(url)
                .basic_auth(id, Some(key))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["access_token"].as_str().unwrap().to_string()
        }
    };
    let access = token_for(client_id.into(), secret.into()).await;
    let introspect = |id: String, key: String, token: String| {
        let http = http.clone();
        let url = gw.url("/oauth/introspect");
        async move {
            let response = http
                .post(url)
                .basic_auth(id, Some(key))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.headers()["cache-control"], "no-store");
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let active = introspect(client_id.into(), secret.into(), access.clone()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["scope"], "accounts:read");
    // Another client learns nothing about it; an unknown token is simply inactive.
    let stranger = introspect(
        other["client_id"].as_str().unwrap().into(),
        other["key"].as_str().unwrap().into(),
        access.clone(),
    )
    .await;
    assert_eq!(stranger, json!({"active": false}));
    assert_eq!(
        introspect(client_id.into(), secret.into(), "garbage".into()).await,
        json!({"active": false})
    );
    // Introspection needs client authentication.
    let anonymous = http
        .post(gw.url("/oauth/introspect"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A public app has no secret to authenticate with, so it cannot introspect.
    let (_, public) = admin
        .post(
            "/clients",
            json!({"name": "SPA", "type": "public", "redirect_uris": ["https://spa.example/cb"], "scopes": ["accounts:read"]}),
        )
        .await;
    let refused = http
        .post(gw.url("/oauth/introspect"))
        .form(&[
            ("token", access.as_str()),
            ("client_id", public["client_id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );

    // Revoking by another client does nothing (and still answers 200).
    let foreign = http
        .post(gw.url("/oauth/revoke"))
        .basic_auth(other["client_id"].as_str().unwrap(), other["key"].as_str())
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    assert_eq!(
        get_with(&http, &gw.url("/v1/accounts"), &access).await.0,
        200
    );
    let revoked = http
        .post(gw.url("/oauth/revoke"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("token", access.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        get_with(&http, &gw.url("/v1/accounts"), &access).await,
        (401, "invalid_token".into())
    );
    assert_eq!(
        introspect(client_id.into(), secret.into(), access).await,
        json!({"active": false})
    );
    let unknown = http
        .post(gw.url("/oauth/revoke"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", "tgr_unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        200,
        "RFC 7009: unknown tokens are not an error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_apps_and_users() {
    let up = upstream();
    let gw = gateway(&up);
    let cli = |args: &[&str], password: Option<&str>| {
        let mut command = std::process::Command::new(BIN);
        command
            .args(args)
            .env("TOLLGATE_ADMIN_URL", format!("http://{}", gw.admin))
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN);
        if let Some(password) = password {
            command.env("TOLLGATE_USER_PASSWORD", password);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(
        &[
            "clients",
            "create",
            "--name",
            "Portal",
            "--redirect-uri",
            "https://portal.test/cb",
            "--scope",
            "accounts:read",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("client_secret: tgs_") && out.contains("shown once"),
        "{out}"
    );
    let (_, listed, _) = cli(&["clients", "list", "--json"], None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = listed["data"][0]["client_id"].as_str().unwrap().to_string();
    assert!(
        !listed.to_string().contains("tgs_"),
        "the secret is shown once"
    );
    let (code, out, _) = cli(&["clients", "list"], None);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("CLIENT_ID") && out.contains("Portal"));
    let (code, out, _) = cli(&["clients", "show", &id], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("https://portal.test/cb"));
    let (code, out, _) = cli(&["clients", "revoke", &id], None);
    assert_eq!(code, Some(0));
    assert!(!out.contains("deleted_at  -"), "{out}");

    let (code, out, err) = cli(
        &["users", "create", "--username", "ada"],
        Some("correct horse battery"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("argon2"));
    let (_, users, _) = cli(&["users", "list", "--json"], None);
    let users: serde_json::Value = serde_json::from_str(&users).unwrap();
    let user = users["data"][0]["id"].as_str().unwrap().to_string();
    let (code, out, _) = cli(&["users", "disable", &user], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("disabled") && out.contains("true"));
    let (code, _, err) = cli(&["users", "create", "--username", "bob"], Some("short"));
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid_request"), "{err}");
}

/// Signs `ada` in for `app` and returns a fresh authorization code and its PKCE pair.
async fn fresh_code(
    http: &reqwest::Client,
    gw: &Gateway,
    app: &serde_json::Value,
    redirect: &str,
) -> (String, String, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = BasicClient::new(ClientId::new(app["client_id"].as_str().unwrap().into()))
        .set_auth_uri(AuthUrl::new(gw.url("/oauth/authorize")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let (auth_url, _) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("accounts:read".into()))
        .set_pkce_challenge(challenge.clone())
        .url();
    let (fields, cookie) = open_login_page(http, auth_url.as_str()).await;
    let answer = submit_login(
        http,
        gw,
        &fields,
        &cookie,
        "ada",
        "correct horse battery",
        "allow",
    )
    .await;
    assert_eq!(answer.status(), 303);
    let code = query_of(answer.headers()["location"].to_str().unwrap())["code"].clone();
    (
        code,
        verifier.secret().clone(),
        challenge.as_str().to_string(),
    )
}

/// Posts a form to the token endpoint; the status and the RFC 6749 `error`.
async fn token_error(
    http: &reqwest::Client,
    gw: &Gateway,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut request = http.post(gw.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error_description"].is_string(), "{body}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_token_endpoint_error_of_section_5() {
    let up = upstream();
    let gw = Gateway::start(
        &credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live").replace(
            "signing_key_path: \"{dir}/signing.pem\" }",
            "signing_key_path: \"{dir}/signing.pem\", auth_code_ttl: 1s }",
        ),
    );
    let admin = Admin::of(&gw);
    let redirect = "http://127.0.0.1:9/callback";
    let (_, app) = admin
        .post("/clients", json!({"name": "Portal", "type": "confidential", "redirect_uris": [redirect, "http://127.0.0.1:9/other"], "scopes": ["accounts:read"]}))
        .await;
    admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    let (_, key) = admin
        .post(
            "/keys",
            json!({"name": "k", "permissions": ["accounts:read"]}),
        )
        .await;
    let http = http();
    let app_auth = Some((
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    ));
    let key_auth = Some((
        key["client_id"].as_str().unwrap(),
        key["key"].as_str().unwrap(),
    ));

    // Another redirect URI than the authorization request's (even a registered one).
    let (code, verifier, _) = fresh_code(&http, &gw, &app, redirect).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9/other"),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(
        token_error(&http, &gw, app_auth, &form).await,
        (400, "invalid_grant".into())
    );

    // A PKCE downgrade: the challenge sent back as if it were a plain verifier.
    let (code, _, challenge) = fresh_code(&http, &gw, &app, redirect).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", challenge.as_str()),
    ];
    assert_eq!(
        token_error(&http, &gw, app_auth, &form).await,
        (400, "invalid_grant".into())
    );
    // No verifier at all.
    let (code, _, _) = fresh_code(&http, &gw, &app, redirect).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
    ];
    assert_eq!(
        token_error(&http, &gw, app_auth, &form).await,
        (400, "invalid_request".into())
    );
    // A repeated parameter is ambiguous.
    let (code, verifier, _) = fresh_code(&http, &gw, &app, redirect).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code", "another"),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(
        token_error(&http, &gw, app_auth, &form).await,
        (400, "invalid_request".into())
    );

    // A code past auth_code_ttl (1 s here).
    let (code, verifier, _) = fresh_code(&http, &gw, &app, redirect).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(
        token_error(&http, &gw, app_auth, &form).await,
        (400, "invalid_grant".into())
    );

    // Grants a client may not use, and a grant nobody may.
    assert_eq!(
        token_error(
            &http,
            &gw,
            app_auth,
            &[("grant_type", "client_credentials")]
        )
        .await,
        (400, "unauthorized_client".into())
    );
    assert_eq!(
        token_error(
            &http,
            &gw,
            key_auth,
            &[("grant_type", "refresh_token"), ("refresh_token", "tgr_x")]
        )
        .await,
        (400, "unauthorized_client".into())
    );
    assert_eq!(
        token_error(
            &http,
            &gw,
            key_auth,
            &[("grant_type", "password"), ("username", "ada")]
        )
        .await,
        (400, "unsupported_grant_type".into())
    );
    // A wrong secret is invalid_client with 401.
    assert_eq!(
        token_error(
            &http,
            &gw,
            Some((app["client_id"].as_str().unwrap(), "wrong")),
            &[("grant_type", "authorization_code")]
        )
        .await,
        (401, "invalid_client".into())
    );
    assert!(up.recorder.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_bounded_by_its_key_now_and_ends_with_its_app() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (_, key) = admin
        .post(
            "/keys",
            json!({"name": "rw", "permissions": ["accounts:read", "accounts:write"]}),
        )
        .await;
    let http = http();
    let answer: serde_json::Value = http
        .post(gw.url("/oauth/token"))
        .basic_auth(key["client_id"].as_str().unwrap(), key["key"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["scope"], "accounts:read accounts:write");
    let token = answer["access_token"].as_str().unwrap();
    let accounts = gw.url("/v1/accounts");
    let post = |token: String| {
        let (http, url) = (http.clone(), accounts.clone());
        async move {
            let response = http.post(url).bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    assert_eq!(post(token.into()).await.0, 200);
    // The key loses accounts:write: its existing token loses it at once, whatever its scope says.
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/keys/{}", key["id"].as_str().unwrap()),
            Some(json!({"permissions": ["accounts:read"]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        post(token.into()).await,
        (403, "insufficient_permission".into())
    );
    assert_eq!(get_with(&http, &accounts, token).await.0, 200);

    // Deleting an app ends the tokens it was given.
    let redirect = "http://127.0.0.1:9/callback";
    let (_, app) = admin
        .post("/clients", json!({"name": "Portal", "type": "confidential", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    let (code, verifier, _) = fresh_code(&http, &gw, &app, redirect).await;
    let tokens: serde_json::Value = http
        .post(gw.url("/oauth/token"))
        .basic_auth(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_token = tokens["access_token"].as_str().unwrap();
    assert_eq!(get_with(&http, &accounts, user_token).await.0, 200);
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/clients/{}", app["client_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(
        get_with(&http, &accounts, user_token).await,
        (401, "invalid_token".into())
    );
}

/// Posts a form to the token endpoint: the status, the RFC 6749 `error` and its
/// description, and the JSON answer.
async fn token_answer(
    http: &reqwest::Client,
    gw: &Gateway,
    basic: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, String, String, serde_json::Value) {
    let response = http
        .post(gw.url("/oauth/token"))
        .basic_auth(basic.0, Some(basic.1))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default().to_string();
    let description = body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, error, description, body)
}

/// A code exchanged for tokens: (access token, refresh token).
async fn user_tokens(
    http: &reqwest::Client,
    gw: &Gateway,
    app: &serde_json::Value,
    redirect: &str,
) -> (String, String) {
    let (code, verifier, _) = fresh_code(http, gw, app, redirect).await;
    let auth = (
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    );
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, _, _, body) = token_answer(http, gw, auth, &form).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_user_or_a_new_password_ends_their_grants_for_good() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let redirect = "http://127.0.0.1:9/callback";
    let (_, app) = admin
        .post("/clients", json!({"name": "Portal", "type": "confidential", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    let (_, user) = admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    let user_path = format!("/users/{}", user["id"].as_str().unwrap());
    let auth = (
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    );
    let http = http();
    let accounts = gw.url("/v1/accounts");
    let refresh = |token: String| {
        let (http, gw) = (&http, &gw);
        async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", &token)];
            token_answer(http, gw, auth, &form).await
        }
    };

    let (access, refresh_token) = user_tokens(&http, &gw, &app, redirect).await;
    assert_eq!(get_with(&http, &accounts, &access).await.0, 200);
    // A code issued but not redeemed before the disable.
    let (pending_code, pending_verifier, _) = fresh_code(&http, &gw, &app, redirect).await;

    let (status, disabled) = admin
        .call(Method::PATCH, &user_path, Some(json!({"disabled": true})))
        .await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(
        get_with(&http, &accounts, &access).await,
        (401, "invalid_token".into())
    );
    let (status, error, description, _) = refresh(refresh_token.clone()).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"));
    assert!(description.contains("revoked"), "{description}");

    // Enabled again: nothing issued before the disable comes back.
    let (status, _) = admin
        .call(Method::PATCH, &user_path, Some(json!({"disabled": false})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        get_with(&http, &accounts, &access).await,
        (401, "invalid_token".into())
    );
    let (_, error, description, _) = refresh(refresh_token.clone()).await;
    assert_eq!(error, "invalid_grant");
    // Never used, its family revoked: it says so, not "already used".
    assert!(
        description.contains("revoked") && !description.contains("already used"),
        "{description}"
    );
    let form = [
        ("grant_type", "authorization_code"),
        ("code", pending_code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", pending_verifier.as_str()),
    ];
    let (_, error, description, _) = token_answer(&http, &gw, auth, &form).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("revoked"), "{description}");

    // A new sign-in works; a new password ends that grant too.
    let (access, refresh_token) = user_tokens(&http, &gw, &app, redirect).await;
    assert_eq!(get_with(&http, &accounts, &access).await.0, 200);
    let (status, changed) = admin
        .call(
            Method::PATCH,
            &user_path,
            Some(json!({"password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert!(changed["password_changed_at"].is_string(), "{changed}");
    assert_eq!(
        get_with(&http, &accounts, &access).await,
        (401, "invalid_token".into())
    );
    let (_, error, _, _) = refresh(refresh_token).await;
    assert_eq!(error, "invalid_grant");

    // The audit entry of the password change shows that it changed, never the password.
    let (_, audit) = admin
        .get(&format!(
            "/audit?action=user.update&target={}",
            user["id"].as_str().unwrap()
        ))
        .await;
    let latest = &audit["data"][0];
    assert!(
        latest["before"]["password_changed_at"].is_null(),
        "{latest}"
    );
    assert!(
        latest["after"]["password_changed_at"].is_string(),
        "{latest}"
    );
    let text = audit.to_string();
    assert!(
        !text.contains("brand new passphrase") && !text.contains("argon2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_never_spends_a_refresh_token() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let redirect = "http://127.0.0.1:9/callback";
    let (_, app) = admin
        .post("/clients", json!({"name": "Portal", "type": "confidential", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    let (_, other) = admin
        .post("/clients", json!({"name": "Other", "type": "confidential", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    let http = http();
    let (_, refresh_token) = user_tokens(&http, &gw, &app, redirect).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    // Presented by another client: refused, and still good for its own.
    let other_auth = (
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
    );
    let (status, error, _, _) = token_answer(&http, &gw, other_auth, &form).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"));
    let auth = (
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    );
    let (status, _, _, body) = token_answer(&http, &gw, auth, &form).await;
    assert_eq!(status, 200, "{body}");
    // Used twice: that one is a replay, and ends the family.
    let (_, error, description, _) = token_answer(&http, &gw, auth, &form).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("already used"), "{description}");
    let next = body["refresh_token"].as_str().unwrap();
    let (_, error, description, _) = token_answer(
        &http,
        &gw,
        auth,
        &[("grant_type", "refresh_token"), ("refresh_token", next)],
    )
    .await;
    assert_eq!(error, "invalid_grant");
    assert!(
        description.contains("revoked") && !description.contains("already used"),
        "{description}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_answers_as_its_key_and_counts_in_the_key_tier() {
    let up = upstream();
    // api_key: 4 a minute; oauth: 40 a minute.
    let config = credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live")
        + "rate_limits:\n  tiers:\n    api_key: { per_minute: 4, per_day: 1000 }\n    oauth: { per_minute: 40, per_day: 1000 }\n";
    let gw = Gateway::start(&config);
    let admin = Admin::of(&gw);
    away_from_window_edges(Duration::from_secs(10)).await;
    let expires = tollgate::clock::rfc3339(tollgate::clock::now_ms() + 4_000);
    let (status, key) = admin
        .post(
            "/keys",
            json!({"name": "k", "permissions": ["accounts:read"], "expires_at": expires}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap();
    let http = http();
    let accounts = gw.url("/v1/accounts");
    let (status, _, _, token) = token_answer(
        &http,
        &gw,
        (key["client_id"].as_str().unwrap(), secret),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let access = token["access_token"].as_str().unwrap();
    // The token is the key: one counter, the key's tier.
    let response = http
        .get(&accounts)
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit"], "4");
    for _ in 0..3 {
        let response = http
            .get(&accounts)
            .header("X-API-Key", secret)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        get_with(&http, &accounts, access).await,
        (429, "rate_limited".into()),
        "the key used its 4, so its token is refused too"
    );
    // Past the key's expiry its token answers as the key does.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get_with(&http, &accounts, access).await;
        if answer == (401, "key_expired".into()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A user acting through an app is in the oauth tier.
    let redirect = "http://127.0.0.1:9/callback";
    let (_, app) = admin
        .post("/clients", json!({"name": "Portal", "type": "confidential", "redirect_uris": [redirect], "scopes": ["accounts:read"]}))
        .await;
    admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    let (user_access, _) = user_tokens(&http, &gw, &app, redirect).await;
    let response = http
        .get(&accounts)
        .bearer_auth(&user_access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit"], "40");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_on_an_oauth_endpoint_is_refused_in_json() {
    let up = upstream();
    let gw = gateway(&up);
    let http = http();
    for (method, path, allowed) in [
        (Method::GET, "/oauth/token", "POST"),
        (Method::DELETE, "/oauth/revoke", "POST"),
        (Method::PUT, "/oauth/introspect", "POST"),
        (Method::POST, "/.well-known/jwks.json", "GET"),
    ] {
        let response = http
            .request(method.clone(), gw.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        let allow = response.headers()["allow"].to_str().unwrap().to_string();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
}
