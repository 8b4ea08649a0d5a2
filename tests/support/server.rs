//! The real `diffmart` binary, started on free ports (tests run in parallel) and
//! killed when dropped.
//!
//! [`DiffmartProcess::start`] runs it with `--ephemeral`, so a test leaves nothing on
//! disk; [`DiffmartProcess::start_on`] keeps its state in a data directory, for tests
//! that stop it ([`kill9`](DiffmartProcess::kill9), [`terminate`](DiffmartProcess::terminate))
//! and start it again on the same directory. Its stderr goes to a temporary file, readable
//! during the run and after exit ([`stderr`](DiffmartProcess::stderr)), and its last lines
//! are printed when a test panics.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

/// How often the `wait_*` methods look again.
const POLL: Duration = Duration::from_millis(50);

pub struct DiffmartProcess {
    pub pg_port: u16,
    pub http_port: u16,
    /// `root`'s password, when `args` set one with `--root-password`.
    pub root_password: Option<String>,
    child: Child,
    stderr: NamedTempFile,
}

impl DiffmartProcess {
    /// Starts `diffmart --ephemeral` with `args` after its listen options: nothing is
    /// kept on disk.
    pub fn start(args: &[&str]) -> DiffmartProcess {
        DiffmartProcess::spawn([OsStr::new("--ephemeral")], args)
    }

    /// Starts `diffmart --data-dir <data_dir>` with `args` after its listen options.
    pub fn start_on(data_dir: &Path, args: &[&str]) -> DiffmartProcess {
        DiffmartProcess::spawn([OsStr::new("--data-dir"), data_dir.as_os_str()], args)
    }

    /// [`start`](Self::start) with environment variables set for the process (`FAILPOINTS`).
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> DiffmartProcess {
        DiffmartProcess::spawn_with_env([OsStr::new("--ephemeral")], args, env)
    }

    fn spawn<'a>(storage: impl IntoIterator<Item = &'a OsStr>, args: &[&str]) -> DiffmartProcess {
        DiffmartProcess::spawn_with_env(storage, args, &[])
    }

    fn spawn_with_env<'a>(
        storage: impl IntoIterator<Item = &'a OsStr>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> DiffmartProcess {
        let (pg_port, http_port) = (super::free_port(), super::free_port());
        let stderr = NamedTempFile::new().expect("a temporary file for diffmart's stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_diffmart"))
            .args(["--pg-listen", &format!("127.0.0.1:{pg_port}"), "--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(storage)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("reopening the stderr file"))
            .spawn()
            .expect("diffmart starts");
        let root_password = args.windows(2).find(|pair| pair[0] == "--root-password").map(|pair| pair[1].to_string());
        DiffmartProcess { pg_port, http_port, root_password, child, stderr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.stderr.path()).expect("reading diffmart's stderr")).into_owned()
    }

    /// Kills the process with SIGKILL and reaps it: when this returns, it is gone
    /// (its files are closed, its locks released).
    pub fn kill9(&mut self) {
        // `Child::kill` sends SIGKILL on unix; it fails only if the process was reaped already.
        let _ = self.child.kill();
        self.child.wait().expect("reaping diffmart");
    }

    /// Asks the process to shut down (SIGTERM); [`wait_exit`](Self::wait_exit) waits for it.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes any pid and signal number; `pid` is our child, not yet
        // reaped (reaping takes `&mut self`), so it cannot name another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill -TERM {pid}: {}", std::io::Error::last_os_error());
    }

    /// The exit status, once the process has exited; `None` if it is still running
    /// after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("checking on diffmart") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the Postgres port answers `SELECT 1` and the HTTP port takes
    /// connections. Panics, with the process's stderr, if it exits first or is not
    /// ready within `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("checking on diffmart") {
                panic!("diffmart exited ({status}) before it was ready; stderr:\n{}", self.stderr());
            }
            if let Ok(client) = self.try_connect().await
                && client.simple_query("SELECT 1").await.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.http_port)).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "diffmart did not answer SELECT 1 within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A client of the Postgres port (user `root`, with its password if it has one; database `dev`).
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.try_connect().await.unwrap_or_else(|e| panic!("connecting to diffmart: {e}"))
    }

    async fn try_connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = format!("host=127.0.0.1 port={} user=root dbname=dev connect_timeout=5", self.pg_port);
        if let Some(password) = &self.root_password {
            config.push_str(&format!(" password='{}'", password.replace('\\', "\\\\").replace('\'', "\\'")));
        }
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

impl Drop for DiffmartProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let stderr = self.stderr();
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("diffmart (pid {}) stderr, last {} lines:\n{}", self.pid(), tail.len(), tail.join("\n"));
        }
    }
}

/// One HTTP/1.1 request to the binary's HTTP port on a fresh connection, with the admin
/// key `key`: the status and the body, or an error if the server went away before it
/// answered (what a kill looks like to a client).
pub async fn admin_request(
    key: &str,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let cut = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("a cut answer: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(cut)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(cut)?;
    Ok((status, body.to_string()))
}
