//! Exec into a running container: the daemon runs `cloudlet container-exec` (see
//! [`super::shim::exec_main`]) with pipes for its output and a deadline.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ContainerError;
use super::runtime::{ExecOutput, Layout};

/// Most bytes kept of each of stdout and stderr.
pub const MAX_OUTPUT: usize = 1 << 20;

fn drain(mut r: impl Read + Send + 'static, tx: mpsc::Sender<(usize, Vec<u8>)>, which: usize) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if buf.len() < MAX_OUTPUT {
                buf.extend_from_slice(&chunk[..n.min(MAX_OUTPUT - buf.len())]);
            }
        }
        let _ = tx.send((which, buf));
    });
}

/// Run `args` with extra `env` in the running container of `l`; the command is killed after
/// `timeout`.
pub fn run(bin: &Path, l: &Layout, args: &[String], env: &[(String, String)], timeout: Duration) -> Result<ExecOutput, ContainerError> {
    let mut cmd = Command::new(bin);
    cmd.arg("container-exec").arg("--dir").arg(&l.dir).args(["--id", &l.id]);
    cmd.args(["--timeout-ms", &timeout.as_millis().to_string()]);
    for (k, v) in env {
        // One argument, so a name starting with "-" is not taken for a flag.
        cmd.arg(format!("--env={k}={v}"));
    }
    cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
    let mut child = cmd
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ContainerError::io("running container-exec"))?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    match (child.stdout.take(), child.stderr.take()) {
        (Some(o), Some(e)) => {
            drain(o, tx.clone(), 0);
            drain(e, tx, 1);
        }
        _ => return Err(ContainerError::Runtime("container-exec has no pipes".into())),
    }
    // The helper kills the command at the deadline; this is the backstop for the helper itself.
    let end = Instant::now() + timeout + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(ContainerError::io("waiting for container-exec"))? {
            break s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            break child.wait().map_err(ContainerError::io("waiting for container-exec"))?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // A background process the command left may hold the pipes open; do not wait for it long.
    let mut out = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok((i, b)) => out[i] = b,
            Err(_) => break,
        }
    }
    let code = status.code().unwrap_or(126);
    let [stdout, stderr] = out.map(|b| String::from_utf8_lossy(&b).into_owned());
    // 124 is also a code a command may choose: it timed out only if the deadline had passed.
    Ok(ExecOutput { exit_code: code, stdout, stderr, timed_out: code == 124 && started.elapsed() >= timeout })
}
