//! A throwaway PostgreSQL cluster for the portal's tests: `initdb` into a temporary directory
//! and a postmaster on a free loopback port, both run as the `postgres` user (PostgreSQL
//! refuses root), from Debian's `postgresql` package. Stopped, with its files, on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster.
pub(crate) struct Postgres {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    uid: u32,
    gid: u32,
    child: Option<Child>,
}

/// A server program of the newest PostgreSQL installed (`/usr/lib/postgresql/N/bin/NAME`).
fn program(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL (Debian postgresql) is installed").flatten().map(|e| e.path()).collect();
    versions.sort();
    versions.last().expect("a PostgreSQL version").join("bin").join(name)
}

impl Postgres {
    /// Make a cluster (trust authentication for the superuser `cloudlet`, loopback only) and
    /// start it.
    pub(crate) fn start() -> Postgres {
        let user = nix::unistd::User::from_name("postgres").ok().flatten().expect("the postgres user (Debian postgresql)");
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let tmp = tempfile::tempdir().expect("tempdir");
        nix::unistd::chown(tmp.path(), Some(user.uid), Some(user.gid)).expect("chown");
        let data = tmp.path().join("data");
        let out = Command::new(program("initdb"))
            .args(["-A", "trust", "-U", "cloudlet", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .env("LC_ALL", "C")
            .uid(uid)
            .gid(gid)
            .current_dir(tmp.path())
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut pg = Postgres { _tmp: tmp, data, port, uid, gid, child: None };
        pg.launch();
        pg
    }

    /// Start the postmaster and wait until it takes connections.
    pub(crate) fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data.with_file_name("postgres.log")).expect("log");
        let _ = nix::unistd::chown(&self.data.with_file_name("postgres.log"), Some(self.uid.into()), Some(self.gid.into()));
        let child = Command::new(program("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("unix_socket_directories={}", self.data.display()))
            .env("LC_ALL", "C")
            .uid(self.uid)
            .gid(self.gid)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(program("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start in 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the postmaster at once, as a crash would (SIGQUIT: immediate shutdown, no
    /// checkpoint; the next start recovers from the WAL).
    pub(crate) fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGQUIT);
            let _ = c.wait();
        }
    }

    /// The connection string of the superuser's database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://cloudlet@127.0.0.1:{}/postgres", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_file_name("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.crash();
    }
}
