//! A real `tollgate serve` process per test, with its own folder, config and ports.

use super::raw_http::http_get;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that is free now, below the kernel's ephemeral range (32768+), so outgoing
/// connections of other tests cannot take it before the gateway binds it. Ports are handed
/// out in sequence from a start picked per process, so no two calls in one test binary
/// (one gateway's four listeners, two gateways side by side) get the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `tollgate serve` process with its own folder, config and ports.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    /// Filled in for `{forward_auth}`; listened on only when the config says so.
    pub forward_auth: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub env: Vec<(String, String)>,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

impl Gateway {
    /// Starts a gateway from `yaml`, where `{listen}`, `{admin}`, `{metrics}`,
    /// `{forward_auth}` and `{dir}`
    /// are filled in, and waits until `/readyz` answers 200.
    pub fn start(yaml: &str) -> Gateway {
        Gateway::start_with_env(yaml, &[])
    }

    fn prepare(yaml: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let forward_auth: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = yaml
            .replace("{listen}", &addr.to_string())
            .replace("{admin}", &admin.to_string())
            .replace("{metrics}", &metrics.to_string())
            .replace("{forward_auth}", &forward_auth.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        let config_path = dir.path().join("tollgate.yaml");
        std::fs::write(&config_path, config).expect("write config");
        Gateway {
            child: None,
            addr,
            admin,
            metrics,
            forward_auth,
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
