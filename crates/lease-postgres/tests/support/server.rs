//! A PostgreSQL instance the test owns: its own data directory and port, started and stopped
//! by the test, always stopped (by its PID) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `initdb` and `postgres` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`. Panics with what to install when there are none.
fn server_bindir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut candidates: Vec<PathBuf> = from_pg_config.into_iter().collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, postgres) not found via `pg_config --bindir` \
                 or /usr/lib/postgresql/*/bin: install the `postgresql` package to run this test"
            )
        })
}

/// A free TCP port on 127.0.0.1 below the ephemeral range (32768–60999).
pub fn free_port() -> u16 {
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos().into())
            .unwrap_or(0);
    for attempt in 0..200u64 {
        let port = 20_000 + ((seed.wrapping_mul(31).wrapping_add(attempt * 7919)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found in 20000..32000")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a server binary, as the `postgres` user when we are root (PostgreSQL refuses root).
fn server_command(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

pub struct PgInstance {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
    postmaster_pid: Option<u32>,
    launcher: Option<Child>,
}

impl PgInstance {
    /// A new cluster in a fresh temporary directory, not yet started.
    pub fn init(port: u16) -> Self {
        let bindir = server_bindir();
        let dir = std::env::temp_dir().join(format!("shardwise-pg-{}", super::run_suffix()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let instance = Self {
            bindir,
            dir,
            port,
            postmaster_pid: None,
            launcher: None,
        };
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&instance.dir)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown of the data directory failed"
            );
        }
        let output = server_command(&instance.bindir, "initdb")
            .arg("-D")
            .arg(instance.dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("run initdb: {e}"));
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        instance
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        let data = self.dir.join("data");
        let log = std::fs::File::create(self.dir.join("server.log"))
            .unwrap_or_else(|e| panic!("create server log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("server log: {e}"));
        let child = server_command(&self.bindir, "postgres")
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data.display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start postgres: {e}"));
        self.launcher = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            let pid = std::fs::read_to_string(data.join("postmaster.pid"))
                .ok()
                .filter(|text| text.lines().nth(7).is_some_and(|s| s.trim() == "ready"))
                .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()));
            if let Some(pid) = pid
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                self.postmaster_pid = Some(pid);
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("postgres did not become ready on port {}: {log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown, by its PID) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(pid) = self.postmaster_pid.take() {
            signal(pid, "INT");
            let deadline = Instant::now() + Duration::from_secs(20);
            // The launcher (runuser, or postgres itself) exits when the server has; checking it
            // also reaps it, so a zombie is never mistaken for a live server.
            let mut gone = || {
                let launcher_done = self
                    .launcher
                    .as_mut()
                    .is_none_or(|l| l.try_wait().ok().flatten().is_some());
                launcher_done && !alive(pid)
            };
            while !gone() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !gone() {
                signal(pid, "KILL");
            }
        }
        if let Some(mut launcher) = self.launcher.take() {
            let _ = launcher.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
