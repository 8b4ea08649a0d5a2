//! The real `diffmart` binary, started on free ports (tests run in parallel) and
//! killed when dropped.

use std::process::{Child, Command, Stdio};

pub struct DiffmartProcess {
    pub pg_port: u16,
    pub http_port: u16,
    child: Child,
}

impl DiffmartProcess {
    /// Starts `diffmart` with `args` after its listen options; its output is discarded.
    pub fn start(args: &[&str]) -> DiffmartProcess {
        let (pg_port, http_port) = (super::free_port(), super::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_diffmart"))
            .args(["--pg-listen", &format!("127.0.0.1:{pg_port}"), "--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("diffmart starts");
        DiffmartProcess { pg_port, http_port, child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for DiffmartProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
