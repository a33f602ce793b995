//! The stores and Redis the tests run against: SQLite, a shared PostgreSQL with a database
//! per test, and a private PostgreSQL or Redis a test can stop, freeze and start.

use super::gateway::free_port;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// A Redis Cluster of three primaries on free ports, private to the test: `redis-server
/// --cluster-enabled yes` three times, joined by `redis-cli --cluster create`.
pub struct PrivateRedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<std::process::Child>>,
    _dir: tempfile::TempDir,
}

impl PrivateRedisCluster {
    pub fn start() -> PrivateRedisCluster {
        let dir = tempfile::tempdir().expect("cluster dir");
        // A cluster node also listens on its port + 10000 (the cluster bus), and does not
        // start when that one is taken: pick ports whose bus port is free too.
        let ports: Vec<u16> = (0..3)
            .map(|_| loop {
                let port = free_port();
                if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                    break port;
                }
            })
            .collect();
        let children = ports
            .iter()
            .map(|port| {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir_all(&node_dir).expect("node dir");
                let child = std::process::Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&node_dir)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("redis-server (make test installs it)");
                Some(child)
            })
            .collect();
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "a cluster node did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (make test installs redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = PrivateRedisCluster {
            ports,
            children,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .ports
            .iter()
            .all(|port| cluster.info(*port).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn info(&self, port: u16) -> String {
        std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", "info"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Kills node `index` (its slots become unreachable).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill(index);
        }
    }
}
