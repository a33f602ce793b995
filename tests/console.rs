//! The console in a real browser: Debian's Chromium, driven through chromedriver by
//! WebDriver, against a real gateway. Each flow acts as a person would, by label and
//! visible text. One gateway and one chromedriver serve every flow of this binary.
//! Screenshots land in target/console-screenshots/ (docs/console/ with
//! TOLLGATE_SCREENSHOTS=docs, which `make screenshots` sets).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    for tool in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run `.ci/deps.sh test` (make test does), which installs Debian's chromium and chromium-driver"
        );
    }
    let port = free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A new browser, with script on or off, in a profile of its own.
async fn browser(driver: &Driver, profile: &std::path::Path, script: bool) -> Client {
    let mut options = json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,1800",
            "--hide-scrollbars", format!("--user-data-dir={}", profile.display()),
        ],
    });
    if !script {
        options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap()
}

/// The control a visible label names (its `for`), as a person finds it.
async fn labelled(client: &Client, label: &str) -> fantoccini::elements::Element {
    let xpath = format!("//label[starts-with(normalize-space(.), '{label}')]");
    let found = client.find(Locator::XPath(&xpath)).await;
    let label_element = found.unwrap_or_else(|_| panic!("no label \"{label}\""));
    let id = label_element
        .attr("for")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the label \"{label}\" names no control"));
    client.find(Locator::Id(&id)).await.unwrap()
}

async fn fill(client: &Client, label: &str, value: &str) {
    let field = labelled(client, label).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// The button or link with this visible text.
async fn button(client: &Client, text: &str) -> fantoccini::elements::Element {
    let xpath = format!(
        "//button[normalize-space(.)='{text}'] | //a[normalize-space(.)='{text}'] | //input[@type='submit' and @value='{text}']"
    );
    client
        .find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|_| panic!("nothing to press called \"{text}\""))
}

/// Presses a button or link that loads a page, and waits for the new page.
async fn press(client: &Client, text: &str) {
    client
        .execute("window.tollgateOldPage = true;", vec![])
        .await
        .unwrap();
    button(client, text).await.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let loaded = client
            .execute(
                "return window.tollgateOldPage === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .unwrap_or(json!(false));
        if loaded == json!(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pressing \"{text}\" loaded no page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exists(client: &Client, xpath: &str) -> bool {
    !client
        .find_all(Locator::XPath(xpath))
        .await
        .unwrap()
        .is_empty()
}

async fn page_text(client: &Client) -> String {
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn path(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_string()
}

/// Saves a screenshot of the whole page (up to 1,600 px tall) under its name.
async fn screenshot(client: &Client, name: &str) {
    let height = client
        .execute(
            "window.scrollTo(0, 0); return document.documentElement.scrollHeight;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(900)
        .clamp(600, 1_600);
    client
        .set_window_size(1280, height as u32 + 90)
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    client.set_window_size(1280, 1800).await.unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let folder = if std::env::var("TOLLGATE_SCREENSHOTS").as_deref() == Ok("docs") {
        root.join("docs/console")
    } else {
        root.join("target/console-screenshots")
    };
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(client: &Client, gw: &Gateway, email: &str, password: &str) {
    client.goto(&gw.admin_url("/console/")).await.unwrap();
    assert_eq!(
        path(client).await,
        "/console/login",
        "signed out, the console asks to sign in"
    );
    fill(client, "Email", email).await;
    fill(client, "Password", password).await;
    press(client, "Sign in").await;
}

async fn sign_out(client: &Client) {
    press(client, "Sign out").await;
    assert_eq!(path(client).await, "/console/login");
}

/// The API's view of a key, by name.
async fn key_named(admin: &Admin, name: &str) -> Value {
    let (_, page) = admin.get(&format!("/keys?name={name}")).await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no key {name}: {page}"))
}

async fn call_with(gw: &Gateway, secret: &str) -> u16 {
    reqwest::Client::new()
        .get(gw.url("/v1/accounts"))
        .header("X-API-Key", secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn in_days(days: i64) -> String {
    tollgate::clock::date_of_day(tollgate::clock::day_of(tollgate::clock::now_ms()) + days)
}

/// Types a date into a date field: Chromium takes the digits in the field's order.
async fn fill_date(client: &Client, label: &str, date: &str) {
    let field = labelled(client, label).await;
    client
        .execute(
            "arguments[0].value = arguments[1];",
            vec![serde_json::to_value(&field).unwrap(), json!(date)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_runs_the_whole_key_lifecycle_in_a_browser() {
    let up = upstream();
    let config = credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live").replace(
        "presets:\n  read_only: [accounts:read]",
        "presets:\n  read_only: [accounts:read]\n  full_access: [accounts:read, accounts:write]",
    );
    let config = config + "webhooks: { allow_private_destinations: true }\n";
    let gw = Gateway::start(&config);
    let admin = Admin::of(&gw);
    for (email, role) in [
        ("owner@example.com", "owner"),
        ("viewer@example.com", "viewer"),
        ("guess@example.com", "viewer"),
    ] {
        let (status, made) = admin
            .post("/operators", json!({"email": email, "name": email.split('@').next().unwrap(), "password": PASSWORD, "role": role}))
            .await;
        assert_eq!(status, 201, "{made}");
    }
    let driver = chromedriver();
    let profiles = tempfile::tempdir().unwrap();
    let client = browser(&driver, &profiles.path().join("owner"), true).await;

    // Sign in; the keys list says what to do when empty.
    sign_in(&client, &gw, "owner@example.com", PASSWORD).await;
    assert_eq!(path(&client).await, "/console/keys");
    assert!(page_text(&client)
        .await
        .contains("No keys yet: New API key"));

    // A fine-grained key from a preset, narrowed to one permission, with an expiry, a
    // two-line allowlist and the infrastructure addresses.
    press(&client, "New API key").await;
    assert_eq!(path(&client).await, "/console/keys/new");
    for group in ["Key type", "Permissions"] {
        assert!(
            exists(
                &client,
                &format!("//fieldset[legend[normalize-space(.)='{group}']]")
            )
            .await,
            "{group}"
        );
    }
    fill(&client, "Name", "salesforce-production").await;
    let preset = labelled(&client, "Preset").await;
    preset.select_by_value("full_access").await.unwrap();
    let write = labelled(&client, "accounts:write").await;
    assert!(
        write.is_selected().await.unwrap(),
        "choosing the preset ticks its permissions"
    );
    write.click().await.unwrap();
    fill_date(&client, "Expiry date", &in_days(30)).await;
    fill(&client, "IP allowlist", "127.0.0.1\n10.1.0.0/16").await;
    labelled(&client, "Allow infrastructure IPs")
        .await
        .click()
        .await
        .unwrap();
    screenshot(&client, "new-key").await;
    press(&client, "Add").await;
    let text = page_text(&client).await;
    assert!(text.contains("it will not be shown again"), "{text}");
    assert!(text.contains("Client ID"), "{text}");
    let secret = client
        .find(Locator::Id("secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.starts_with("tg_live_"), "{secret}");
    // Copy copies the secret alone.
    client
        .execute(
            "window.copied = null; navigator.clipboard.writeText = function (t) { window.copied = t; return Promise.resolve(); };",
            vec![],
        )
        .await
        .unwrap();
    button(&client, "Copy").await.click().await.unwrap();
    let copied = client
        .execute("return window.copied;", vec![])
        .await
        .unwrap();
    assert_eq!(copied, json!(secret));
    screenshot(&client, "secret").await;
    let key = key_named(&admin, "salesforce-production").await;
    assert_eq!(
        key["permissions"],
        json!(["accounts:read"]),
        "the key got the ticked permissions"
    );
    assert_eq!(key["ip_allowlist"], json!(["127.0.0.1/32", "10.1.0.0/16"]));
    assert_eq!(key["allow_infrastructure_ips"], true);
    assert_eq!(
        key["expires_at"].as_str().unwrap(),
        format!("{}T00:00:00Z", in_days(30))
    );
    assert_eq!(
        call_with(&gw, &secret).await,
        200,
        "the copied secret works on the data plane"
    );

    // Reloading the page that showed it shows it no more (the form resent replays).
    client.refresh().await.unwrap();
    let source = client.source().await.unwrap();
    assert!(
        !source.contains(&secret),
        "a reload showed the secret again"
    );
    let (_, keys) = admin.get("/keys").await;
    assert_eq!(
        keys["data"].as_array().unwrap().len(),
        1,
        "the resent form created nothing"
    );

    // Usage by hour, drawn on the key's page.
    let id = key["id"].as_str().unwrap().to_string();
    for _ in 0..5 {
        call_with(&gw, &secret).await;
    }
    // And some refusals: from outside the allowlist, and without the write permission.
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    for _ in 0..2 {
        let refused = elsewhere
            .get(gw.url("/v1/accounts"))
            .header("X-API-Key", &secret)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
    }
    let refused = reqwest::Client::new()
        .post(gw.url("/v1/accounts"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    usage_when(&admin, &id, |usage| {
        used(usage, "allowed") >= 6 && used(usage, "insufficient_permission") >= 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, usage) = admin.get(&format!("/keys/{id}/usage?hours=2")).await;
        if usage["hours"].as_array().is_some_and(|h| !h.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no hourly usage: {usage}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.goto(&gw.admin_url("/console/keys")).await.unwrap();
    assert!(
        exists(
            &client,
            "//*[local-name()='svg'][contains(@aria-label, 'requests in the last 14 days')]"
        )
        .await
    );
    screenshot(&client, "keys").await;
    client
        .goto(&gw.admin_url(&format!("/console/keys/{id}")))
        .await
        .unwrap();
    assert!(
        exists(&client, "//*[local-name()='rect'][@class='o-allowed']").await,
        "the hourly chart has bars"
    );
    assert!(
        page_text(&client).await.contains("key.create"),
        "the key's audit entries"
    );
    screenshot(&client, "key-usage").await;

    // Rotate: the old secret stops, the new one works.
    press(&client, "Confirm rotation").await;
    let rotated = client
        .find(Locator::Id("secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(rotated, secret);
    assert_eq!(call_with(&gw, &secret).await, 401);
    assert_eq!(call_with(&gw, &rotated).await, 200);

    // Revoke, after a confirmation that says it is final.
    client
        .goto(&gw.admin_url(&format!("/console/keys/{id}")))
        .await
        .unwrap();
    press(&client, "Revoke").await;
    assert!(page_text(&client).await.contains("This cannot be undone"));
    press(&client, "Confirm revocation").await;
    assert_eq!(path(&client).await, format!("/console/keys/{id}"));
    assert!(page_text(&client).await.contains("revoked"));
    assert_eq!(call_with(&gw, &rotated).await, 401);

    // As an owner, block legacy keys: the Legacy option goes from the new-key form.
    client
        .goto(&gw.admin_url("/console/keys/new"))
        .await
        .unwrap();
    assert!(exists(&client, "//label[normalize-space(.)='Legacy']").await);
    client
        .goto(&gw.admin_url("/console/settings"))
        .await
        .unwrap();
    labelled(&client, "Block legacy key creation")
        .await
        .click()
        .await
        .unwrap();
    press(&client, "Save").await;
    client
        .goto(&gw.admin_url("/console/keys/new"))
        .await
        .unwrap();
    assert!(!exists(&client, "//label[normalize-space(.)='Legacy']").await);
    let (_, policy) = admin.get("/policy").await;
    assert_eq!(policy["block_legacy_keys"], true);

    // A form posted without its CSRF token is refused.
    fill(&client, "Name", "forged").await;
    labelled(&client, "accounts:read")
        .await
        .click()
        .await
        .unwrap();
    client
        .execute(
            "document.querySelector('form.key-form input[name=csrf_token]').remove();",
            vec![],
        )
        .await
        .unwrap();
    press(&client, "Add").await;
    assert!(page_text(&client).await.contains("Not allowed"));
    let (_, keys) = admin.get("/keys?name=forged").await;
    assert!(keys["data"].as_array().unwrap().is_empty());

    // Webhooks: an endpoint added (its signing secret shown once), a test event sent, and
    // its delivery listed on the endpoint's page.
    client
        .goto(&gw.admin_url("/console/webhooks"))
        .await
        .unwrap();
    assert!(page_text(&client).await.contains("No endpoints yet."));
    fill(
        &client,
        "URL",
        &format!("http://{}/hooks/tollgate", up.addr),
    )
    .await;
    press(&client, "Add endpoint").await;
    let signing = client
        .find(Locator::Id("secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signing.starts_with("whsec_"), "{signing}");
    press(&client, "Done").await;
    press(&client, "Send a test event").await;
    assert!(page_text(&client)
        .await
        .contains("A webhook.test event is on its way."));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !page_text(&client).await.contains("delivered") {
        assert!(Instant::now() < deadline, "{}", page_text(&client).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.refresh().await.unwrap();
    }
    let text = page_text(&client).await;
    assert!(
        text.contains("webhook.test") && text.contains("200"),
        "{text}"
    );
    screenshot(&client, "webhook-deliveries").await;
    assert!(
        up.recorder
            .requests()
            .iter()
            .any(|r| r.uri == "/hooks/tollgate" && !r.header("webhook-signature").is_empty()),
        "the endpoint got a signed delivery"
    );

    // Owners: one added with a shared limit, a key given to it, the limit edited.
    client.goto(&gw.admin_url("/console/owners")).await.unwrap();
    assert!(page_text(&client).await.contains("No owners yet."));
    fill(&client, "Name", "Acme Corp").await;
    fill(&client, "External ID", "cus_acme").await;
    fill(&client, "Requests per minute", "100").await;
    fill(&client, "Requests per day", "10000").await;
    press(&client, "Add owner").await;
    let owner_id = path(&client)
        .await
        .trim_start_matches("/console/owners/")
        .to_string();
    assert!(owner_id.starts_with("own_"), "{owner_id}");
    assert!(page_text(&client)
        .await
        .contains("100 a minute, 10000 a day"));
    let (_, owned) = admin
        .create_key(
            json!({"name": "acme-key", "permissions": ["accounts:read"], "owner_id": owner_id}),
        )
        .await;
    assert!(!owned.is_empty());
    fill(&client, "Requests per minute", "50").await;
    press(&client, "Save").await;
    let text = page_text(&client).await;
    assert!(
        text.contains("Saved.")
            && text.contains("50 a minute, 10000 a day")
            && text.contains("acme-key"),
        "{text}"
    );
    let (_, stored) = admin.get(&format!("/owners/{owner_id}")).await;
    assert_eq!(stored["rate_limit"]["per_minute"], 50);
    // Credits: set on the owner's page, then topped up.
    fill(&client, "Credits", "250").await;
    press(&client, "Apply").await;
    let text = page_text(&client).await;
    assert!(
        text.contains("Credits changed.") && text.contains("250 left"),
        "{text}"
    );
    labelled(&client, "Change")
        .await
        .select_by_value("increment")
        .await
        .unwrap();
    fill(&client, "Credits", "50").await;
    press(&client, "Apply").await;
    assert!(page_text(&client).await.contains("300 left"));
    // The usage chart's range picker.
    press(&client, "7 days").await;
    assert!(page_text(&client)
        .await
        .contains("No requests in the last 168 hours."));
    screenshot(&client, "owner").await;

    // At 360 px wide nothing overflows the page (tables scroll in their box).
    client.set_window_size(360, 800).await.unwrap();
    client.goto(&gw.admin_url("/console/keys")).await.unwrap();
    let width = client
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap();
    assert!(
        width.as_i64().unwrap() <= 360,
        "the page is {width} px wide at 360"
    );
    client.set_window_size(1280, 1800).await.unwrap();
    sign_out(&client).await;

    // A viewer is offered no New API key, and a forged POST is refused by the server.
    sign_in(&client, &gw, "viewer@example.com", PASSWORD).await;
    assert_eq!(path(&client).await, "/console/keys");
    assert!(!exists(&client, "//a[normalize-space(.)='New API key']").await);
    let status = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('input[name=csrf_token]').value;
             fetch('/console/keys', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},
               body: 'name=viewer-key&permissions=accounts:read&csrf_token=' + encodeURIComponent(csrf)})
               .then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    let (_, keys) = admin.get("/keys?name=viewer-key").await;
    assert!(keys["data"].as_array().unwrap().is_empty());
    sign_out(&client).await;

    // A wrong password, then throttling after five failures.
    sign_in(&client, &gw, "guess@example.com", "not the password").await;
    assert!(page_text(&client).await.contains("Wrong email or password"));
    for _ in 0..4 {
        fill(&client, "Password", "still not it").await;
        press(&client, "Sign in").await;
    }
    fill(&client, "Password", PASSWORD).await;
    press(&client, "Sign in").await;
    let text = page_text(&client).await;
    assert!(
        text.contains("Too many failed sign-ins") && text.contains("Try again in"),
        "{text}"
    );
    client.close().await.unwrap();

    // With JavaScript off, the create flow still works: the preset's permissions join the
    // ticked ones.
    let plain = browser(&driver, &profiles.path().join("plain"), false).await;
    sign_in(&plain, &gw, "owner@example.com", PASSWORD).await;
    plain
        .goto(&gw.admin_url("/console/keys/new"))
        .await
        .unwrap();
    fill(&plain, "Name", "no-script").await;
    labelled(&plain, "Preset")
        .await
        .select_by_value("read_only")
        .await
        .unwrap();
    press(&plain, "Add").await;
    let secret = plain
        .find(Locator::Id("secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(call_with(&gw, &secret).await, 200);
    let key = key_named(&admin, "no-script").await;
    assert_eq!(key["permissions"], json!(["accounts:read"]));
    sign_out(&plain).await;
    plain.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn console_answers_carry_the_security_headers_and_no_cache() {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        "live",
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = http.get(gw.admin_url("/console/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/console/login");
    let login = http
        .get(gw.admin_url("/console/login"))
        .send()
        .await
        .unwrap();
    let headers = login.headers().clone();
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let html = login.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    assert!(html.contains("<label for=\"email\">Email</label>"));
    for asset in ["/console/static/console.css", "/console/static/console.js"] {
        let response = http.get(gw.admin_url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    // A sign-in form without its own token is refused, whatever the password.
    let forged = http
        .post(gw.admin_url("/console/login"))
        .form(&[("email", "x@example.com"), ("password", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}
