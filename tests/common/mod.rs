//! Shared test harness: a recording echo upstream and real gateway processes on free ports.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tollgate::echo::Recorder;

/// One runtime per test binary for the upstreams, so they outlive any single test.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// A port that is free now, below the kernel's ephemeral range (32768+), so outgoing
/// connections of other tests cannot take it before the gateway binds it.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The echo API plus `/slow/{ms}`, which waits before answering. Records every request.
pub struct Upstream {
    pub addr: SocketAddr,
    pub recorder: Recorder,
}

pub fn upstream() -> Upstream {
    let recorder = Recorder::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let slow = axum::routing::any(
        |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "slow done"
        },
    );
    let app = axum::Router::new()
        .route("/slow/{ms}", slow.clone())
        .route("/timeout/slow/{ms}", slow)
        .merge(tollgate::echo::router(recorder.clone()));
    runtime().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let _ = axum::serve(listener, app).await;
    });
    Upstream { addr, recorder }
}

/// A `tollgate serve` process with its own folder, config and ports.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub env: Vec<(String, String)>,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

impl Gateway {
    /// Starts a gateway from `yaml`, where `{listen}`, `{admin}`, `{metrics}` and `{dir}`
    /// are filled in, and waits until `/readyz` answers 200.
    pub fn start(yaml: &str) -> Gateway {
        Gateway::start_with_env(yaml, &[])
    }

    fn prepare(yaml: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = yaml
            .replace("{listen}", &addr.to_string())
            .replace("{admin}", &admin.to_string())
            .replace("{metrics}", &metrics.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        let config_path = dir.path().join("tollgate.yaml");
        std::fs::write(&config_path, config).expect("write config");
        Gateway {
            child: None,
            addr,
            admin,
            metrics,
            dir,
            config_path,
            env: Vec::new(),
        }
    }

    /// Like [`Gateway::start`] with extra environment variables for the process.
    pub fn start_with_env(yaml: &str, env: &[(&str, String)]) -> Gateway {
        let mut gateway = Gateway::prepare(yaml);
        gateway.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        gateway.spawn();
        gateway
    }

    /// Starts without waiting for readiness (only for the admin listener to answer).
    pub fn start_unready(yaml: &str) -> Gateway {
        let mut gateway = Gateway::prepare(yaml);
        gateway.spawn_unready();
        gateway
    }

    /// Starts (again) on the same config and folder, and waits until ready.
    pub fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    /// Starts (again) on the same config and folder, waiting only for the listeners (the admin
    /// API and the proxy), not for the first snapshot.
    pub fn spawn_unready(&mut self) {
        self.launch();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(self.admin, "/healthz").is_none() || TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the listeners never answered:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn launch(&mut self) {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .expect("log")
        };
        let (stdout, stderr) = (log("stdout.log"), log("stderr.log"));
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn tollgate");
        self.child = Some(child);
    }

    pub fn wait_ready(&mut self) {
        if let Err(message) = self.try_wait_ready() {
            panic!("{message}");
        }
    }

    fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "tollgate exited early with {status}:\n{}",
                    self.stderr()
                ));
            }
            if http_get(self.admin, "/readyz").is_some_and(|r| r.status == 200)
                && TcpStream::connect(self.addr).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("tollgate did not become ready:\n{}", self.stderr()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Sends `signal` and waits for the process to exit; returns its exit code.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tollgate did not exit within {within:?} after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn scrape(&self) -> String {
        http_get(self.metrics, "/metrics")
            .map(|r| r.body)
            .unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789";

/// A raw HTTP exchange: what came back on the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
    /// Whether the server closed the connection after the response.
    pub closed: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Sends `bytes` on a fresh connection and reads one response (by Content-Length), then
/// checks whether the connection was closed.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    read_response(&mut stream).expect("a response")
}

/// Like [`raw`], from a chosen local address (any 127.x.y.z works on Linux loopback).
pub fn raw_from(source: &str, addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{source}:0").parse().expect("source address");
    socket.bind(&local.into()).expect("bind source");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    read_response(&mut stream).expect("a response")
}

pub fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    // A server that says it closes gets time to do so; otherwise a short probe.
    let closing = head.to_ascii_lowercase().contains("connection: close");
    let closed = {
        let probe = Duration::from_millis(if closing { 5_000 } else { 300 });
        stream.set_read_timeout(Some(probe)).ok()?;
        match stream.read(&mut chunk) {
            Ok(0) => true,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    };
    Some(RawResponse {
        status,
        head,
        body: String::from_utf8_lossy(&body[..length.min(body.len())]).into_owned(),
        closed,
    })
}

/// Reads `count` responses sent back to back on one connection (pipelining): bytes of
/// the next response that arrive with the current one are kept for it.
pub fn read_pipelined(stream: &mut TcpStream, count: usize) -> Vec<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut out = Vec::new();
    while out.len() < count {
        let Some(head_end) = find(&buf, b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            match stream.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let end = (head_end + 4 + length).min(buf.len());
        let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
            break;
        };
        out.push(RawResponse {
            status,
            body: String::from_utf8_lossy(&buf[head_end + 4..end]).into_owned(),
            head,
            closed: false,
        });
        buf.drain(..end);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A minimal GET over a fresh connection.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    read_response(&mut stream)
}

/// The value of a Prometheus sample line starting with `prefix` (labels included).
pub fn metric(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

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

/// Where a test's credentials live: the embedded SQLite file, or a fresh PostgreSQL database.
pub enum Backend {
    Sqlite,
    Postgres(TestDatabase),
}

impl Backend {
    /// `store.url` for a gateway whose folder is `{dir}`.
    pub fn url(&self) -> String {
        match self {
            Backend::Sqlite => "sqlite://{dir}/data/tollgate.db".to_string(),
            Backend::Postgres(db) => db.url.clone(),
        }
    }

    pub fn postgres() -> Backend {
        Backend::Postgres(TestDatabase::create())
    }
}

/// A store held locked by the test, so that a starting gateway cannot load from it.
pub enum StoreLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl StoreLock {
    /// Takes a write lock on the SQLite file in `dir` (`{dir}/data/tollgate.db`), or an
    /// exclusive lock on PostgreSQL's `keys` table.
    pub async fn take(backend: &Backend, dir: &Path) -> StoreLock {
        use sqlx::Connection;
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/data/tollgate.db", dir.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                // In WAL mode readers pass a writer; exclusive locking mode stops them too.
                for sql in [
                    "PRAGMA locking_mode = EXCLUSIVE",
                    "BEGIN EXCLUSIVE",
                    "SELECT COUNT(*) FROM keys",
                ] {
                    sqlx::Executor::execute(&mut conn, sql).await.expect("lock");
                }
                StoreLock::Sqlite(conn)
            }
            Backend::Postgres(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url)
                    .await
                    .expect("postgres");
                sqlx::Executor::execute(
                    &mut conn,
                    "BEGIN; LOCK TABLE keys IN ACCESS EXCLUSIVE MODE",
                )
                .await
                .expect("lock");
                StoreLock::Postgres(conn)
            }
        }
    }

    /// Holds only the write lock, as a long writer would: readers pass, writes wait.
    pub async fn take_writes(backend: &Backend, dir: &Path) -> StoreLock {
        use sqlx::Connection;
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/data/tollgate.db", dir.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                for sql in ["PRAGMA busy_timeout = 10000", "BEGIN IMMEDIATE"] {
                    sqlx::Executor::execute(&mut conn, sql).await.expect("lock");
                }
                StoreLock::Sqlite(conn)
            }
            Backend::Postgres(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url)
                    .await
                    .expect("postgres");
                sqlx::Executor::execute(&mut conn, "BEGIN; LOCK TABLE keys IN EXCLUSIVE MODE")
                    .await
                    .expect("lock");
                StoreLock::Postgres(conn)
            }
        }
    }

    pub async fn release(self) {
        match self {
            StoreLock::Sqlite(mut conn) => {
                use sqlx::Connection;
                sqlx::Executor::execute(&mut conn, "ROLLBACK")
                    .await
                    .expect("unlock");
                conn.close().await.expect("close");
            }
            StoreLock::Postgres(mut conn) => {
                sqlx::Executor::execute(&mut conn, "ROLLBACK")
                    .await
                    .expect("unlock");
            }
        }
    }
}

/// The PostgreSQL server the tests use: `TOLLGATE_TEST_POSTGRES`, or the local one.
pub fn postgres_server() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".to_string())
}

/// A database created for one test and dropped after it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let db = TestDatabase::named(&format!(
            "tollgate_t_{}",
            tollgate::auth::base62::random(10).to_lowercase()
        ));
        db.execute_on_server(&format!("CREATE DATABASE {}", db.name));
        db
    }

    /// A name and URL for a database that does not exist yet.
    pub fn named(name: &str) -> TestDatabase {
        TestDatabase {
            name: name.to_string(),
            url: format!("{}/{name}", postgres_server()),
        }
    }

    /// Runs `sql` on the server's `postgres` database, from a thread of its own so it
    /// works inside or outside a runtime.
    pub fn execute_on_server(&self, sql: &str) {
        let server = format!("{}/postgres", postgres_server());
        let sql = sql.to_string();
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&server)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::Executor::execute(&mut conn, sql.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .join()
        .expect("thread");
        result.unwrap_or_else(|e| panic!("PostgreSQL (is it running?): {e}"));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = format!("{}/postgres", postgres_server());
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::Executor::execute(&mut conn, sql.as_str()).await.ok()
            })
        })
        .join();
    }
}

/// The admin API, as an operator calls it.
pub struct Admin {
    pub base: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub fn of(gateway: &Gateway) -> Admin {
        Admin {
            base: format!("http://{}/admin/v1", gateway.admin),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Creates a key and returns (id, secret), panicking unless it is 201.
    pub async fn create_key(&self, body: serde_json::Value) -> (String, String) {
        let (status, key) = self.post("/keys", body).await;
        assert_eq!(status, 201, "{key}");
        (
            key["id"].as_str().expect("id").to_string(),
            key["key"].as_str().expect("key").to_string(),
        )
    }
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

/// A Redis of the test's own, on a free port, so it can be stopped and started.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start(port: u16) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateRedis {
            port,
            child: Some(child),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of the test's own (initdb in a temp folder), so it can be stopped,
/// frozen with SIGSTOP and started again without touching the shared one.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

fn postgres_bin(name: &str) -> String {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .last()
        .map(|v| v.join("bin").join(name).display().to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Runs a command as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(command: &str) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut process = if root {
        let mut su = std::process::Command::new("su");
        su.args(["postgres", "-s", "/bin/sh", "-c", command]);
        su
    } else {
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", command]);
        sh
    };
    process
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    process
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-pg")
            .tempdir()
            .expect("tempdir");
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let status = as_postgres(&format!(
            "{} -D {} -A trust -U postgres --no-sync",
            postgres_bin("initdb"),
            data.display()
        ))
        .status()
        .expect("initdb");
        assert!(status.success(), "initdb failed");
        let mut server = PrivatePostgres {
            port: free_port(),
            dir,
        };
        server.resume_from_stop();
        server
    }

    /// Starts the server (again) on the same data and port. `pg_ctl` daemonizes it, so
    /// no process of ours is its parent when it is stopped or frozen.
    pub fn resume_from_stop(&mut self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let command = format!(
            "{} -D {} -o '{options}' -l {}/server.log -w -t 30 start",
            postgres_bin("pg_ctl"),
            data.display(),
            self.dir.path().display()
        );
        let status = as_postgres(&command).status().expect("pg_ctl");
        assert!(status.success(), "pg_ctl start failed: {}", self.log());
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's pid, from its pid file.
    fn pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        text.lines().next().map(str::to_string)
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            // The whole process group: the postmaster and its backends.
            let _ = std::process::Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status();
            if signal == "STOP" || signal == "CONT" {
                let _ = std::process::Command::new("pkill")
                    .args([&format!("-{signal}"), "-P", &pid])
                    .status();
            }
        }
    }

    /// Fast shutdown: clients are disconnected at once.
    pub fn stop(&mut self) {
        self.signal("INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        while (TcpStream::connect(("127.0.0.1", self.port)).is_ok() || self.pid().is_some())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn freeze(&self) {
        self.signal("STOP");
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}

/// Scrapes until the sample `prefix` reaches `expected` (at most 3 s), and returns the
/// last scrape. Request metrics are recorded after the response is sent, so a client can
/// see its answer a moment before the counter moves.
pub fn scrape_until(gw: &Gateway, prefix: &str, expected: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = gw.scrape();
        if metric(&scrape, prefix) >= expected || Instant::now() > deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A key's usage once `done` holds of it (usage is written in batches every 5 s, later on a
/// busy machine), or as it is at the deadline, for the caller's assertion to show.
pub async fn usage_when(
    admin: &Admin,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, usage) = admin.get(&format!("/keys/{id}/usage")).await;
        if done(&usage) || Instant::now() > deadline {
            return usage;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Today's count of one outcome in a usage answer.
pub fn used(usage: &serde_json::Value, outcome: &str) -> u64 {
    usage["days"][0]["outcomes"][outcome].as_u64().unwrap_or(0)
}

/// Waits until no window of a minute or less ends within `margin` of now.
pub async fn away_from_window_edges(margin: Duration) {
    loop {
        let into_minute = tollgate::clock::now_ms().rem_euclid(60_000);
        if into_minute > 1_000 && 60_000 - into_minute > margin.as_millis() as i64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
