//! A throwaway PostgreSQL server for tests.
//!
//! [`TestPostgres::start`] finds the server binaries (`pg_config --bindir`, else
//! the newest `/usr/lib/postgresql/*/bin`), runs `initdb` into a fresh temporary
//! directory, starts `postgres` on a free TCP port of 127.0.0.1 (its Unix socket
//! in the same temporary directory) and waits until it accepts connections.
//! Dropping the value shuts the server down (immediate mode) and deletes the
//! directory. [`TestPostgres::stop`] and [`TestPostgres::start_again`] restart it
//! on the same port and cluster (fault tests).
//!
//! PostgreSQL refuses to run as root. When the tests do, initdb and the server
//! run as the `postgres` system user if there is one, else as a `diffmart-test`
//! system user created on the fly, and the directory is handed to that user.
//!
//! The server runs with `wal_level=logical` so CDC tests can use it, and with
//! durability switched off (`fsync`, `synchronous_commit`, `full_page_writes`):
//! nothing here needs to survive a crash.

#![allow(dead_code)]

use std::fs::{self, File};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the server gets to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The superuser initdb creates; connections need no password (`-A trust`).
pub const SUPERUSER: &str = "postgres";

/// A running PostgreSQL server in a temporary directory.
pub struct TestPostgres {
    bindir: PathBuf,
    /// Holds `data/` (the cluster), the Unix socket and `server.log`.
    dir: Option<tempfile::TempDir>,
    port: u16,
    server: Child,
}

/// The Unix account the server runs as, when the tests run as root.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl TestPostgres {
    /// Initialises a cluster and starts a server on it. Panics with the server
    /// log if it does not come up.
    pub fn start() -> TestPostgres {
        let bindir = find_bindir();
        let run_as = run_as();
        let dir = tempfile::Builder::new().prefix("diffmart-pg-").tempdir().expect("creating a temporary directory");
        let data = dir.path().join("data");
        if let Some(user) = run_as {
            chown(dir.path(), user);
        }

        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8", "--locale=C"])
            .current_dir(dir.path());
        let output = as_user(&mut initdb, run_as).output().expect("running initdb");
        if !output.status.success() {
            panic!(
                "initdb failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }

        // A port picked by binding port 0 can be taken by someone else before the
        // server binds it: try a few.
        let mut last_failure = String::new();
        for _attempt in 0..5 {
            let port = super::free_port();
            let log_path = dir.path().join("server.log");
            let log = File::create(&log_path).expect("creating the server log");
            if let Some(user) = run_as {
                chown(&log_path, user);
            }
            let mut server = launch(&bindir, dir.path(), port, run_as, log);
            match wait_ready(&bindir, dir.path(), port, &mut server) {
                Ok(()) => return TestPostgres { bindir, dir: Some(dir), port, server },
                Err(why) => {
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    stop(&mut server);
                    let port_taken = log.contains("could not bind") || log.contains("already in use");
                    last_failure = format!("{why}\n--- server log ---\n{log}");
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        panic!("PostgreSQL did not start: {last_failure}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the Unix socket (`host=` for a socket connection).
    pub fn socket_dir(&self) -> &Path {
        self.dir.as_ref().expect("the directory lives as long as the server").path()
    }

    /// The server's binaries (psql, pg_dump, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// A libpq/tokio-postgres connection string for database `postgres`, session time zone UTC.
    pub fn connection_string(&self) -> String {
        self.connection_string_for("postgres")
    }

    /// The same, for another database.
    pub fn connection_string_for(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user={SUPERUSER} dbname={database} options='-c TimeZone=UTC'", self.port)
    }

    /// The same as a URL, for tools that want one.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Connects to database `postgres`, driving the connection on a tokio task.
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.connect_to("postgres").await
    }

    /// Connects to another database, driving the connection on a tokio task.
    pub async fn connect_to(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string_for(database), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL on port {}: {e}", self.port));
        // Errors (the server going away at the end of a test) reach the client's calls.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Creates a database and returns a connection to it.
    pub async fn create_database(&self, name: &str) -> tokio_postgres::Client {
        let admin = self.connect().await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")))
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        self.connect_to(name).await
    }

    /// Stops the server (fast shutdown: clients are disconnected, the cluster is
    /// checkpointed) and keeps its directory, for [`TestPostgres::start_again`].
    pub fn stop(&mut self) {
        if matches!(self.server.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.server.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.server.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop(&mut self.server);
    }

    /// Starts the stopped server again on the same port and cluster. Panics with
    /// the log if it does not come up.
    pub fn start_again(&mut self) {
        let dir = self.socket_dir().to_path_buf();
        let log_path = dir.join("server.log");
        let log = fs::OpenOptions::new().append(true).open(&log_path).expect("opening the server log");
        self.server = launch(&self.bindir, &dir, self.port, run_as(), log);
        if let Err(why) = wait_ready(&self.bindir, &dir, self.port, &mut self.server) {
            panic!("PostgreSQL did not start again: {why}\n--- server log ---\n{}", self.log());
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.socket_dir().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        stop(&mut self.server);
        if let Some(dir) = self.dir.take() {
            // The server's files belong to another user when we run as root; root may still delete them.
            let _ = dir.close();
        }
    }
}

/// Immediate shutdown (SIGQUIT), then SIGKILL if it lingers.
fn stop(server: &mut Child) {
    if matches!(server.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-QUIT", &server.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(server.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Starts `postgres` on the cluster in `dir`, logging to `log`.
fn launch(bindir: &Path, dir: &Path, port: u16, run_as: Option<RunAs>, log: File) -> Child {
    let mut postgres = Command::new(bindir.join("postgres"));
    postgres
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "wal_level=logical",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "TimeZone=UTC",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cloning the log handle"))
        .stderr(log);
    as_user(&mut postgres, run_as).spawn().expect("starting postgres")
}

fn wait_ready(bindir: &Path, dir: &Path, port: u16, server: &mut Child) -> Result<(), String> {
    let pg_isready = bindir.join("pg_isready");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("postgres exited during startup ({status})"));
        }
        let ready = if pg_isready.exists() {
            Command::new(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER, "-d", "postgres", "-t", "1"])
                .current_dir(dir)
                .status()
                .is_ok_and(|s| s.success())
        } else {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && dir.join("data").join("postmaster.pid").exists()
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("postgres did not accept connections on port {port} within {STARTUP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pg_config --bindir` if it works, else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server binaries: neither `pg_config --bindir` nor /usr/lib/postgresql/*/bin has initdb and postgres")
}

/// `None` when we are not root; otherwise the account the server must run as.
fn run_as() -> Option<RunAs> {
    static RUN_AS: OnceLock<Option<RunAs>> = OnceLock::new();
    *RUN_AS.get_or_init(|| {
        if id(&["-u"]) != Some(0) {
            return None;
        }
        for user in ["postgres", "diffmart-test"] {
            if let Some(found) = lookup_user(user) {
                return Some(found);
            }
        }
        let created = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "diffmart-test"])
            .output();
        match lookup_user("diffmart-test") {
            Some(found) => Some(found),
            None => panic!(
                "running as root, there is no `postgres` user and creating `diffmart-test` failed: {:?}",
                created.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            ),
        }
    })
}

fn lookup_user(user: &str) -> Option<RunAs> {
    Some(RunAs { uid: id(&["-u", user])?, gid: id(&["-g", user])? })
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn as_user(command: &mut Command, run_as: Option<RunAs>) -> &mut Command {
    if let Some(user) = run_as {
        // Setting the uid from root also drops root's supplementary groups.
        command.uid(user.uid).gid(user.gid);
    }
    command
}

fn chown(path: &Path, user: RunAs) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {} to uid {}: {e}", path.display(), user.uid));
}
