//! A real PostgreSQL server for tests, started in a temporary directory and stopped on drop.
//!
//! It uses the machine's PostgreSQL (Debian's `postgresql` package: `/usr/lib/postgresql/<v>/bin`),
//! listening only on a Unix socket inside its data directory, with `fsync=off` for speed. `initdb`
//! refuses to run as root, so as root the server runs as the `postgres` user (`runuser`).
//! Without PostgreSQL, [`Postgres::start`] returns `None` (the caller skips) — unless
//! `LODE_REQUIRE_POSTGRES` is set, as CI sets it, where it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running PostgreSQL server (stopped, its data removed, on drop).
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

/// The socket's port number (the server listens on no TCP port; the number names the socket).
const PORT: u16 = 5432;

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Initialises and starts a server; `None` when PostgreSQL is not installed (and not required).
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("LODE_REQUIRE_POSTGRES").is_none(),
                "LODE_REQUIRE_POSTGRES is set but PostgreSQL is not installed (apt-get install postgresql)"
            );
            eprintln!("note: PostgreSQL is not installed; skipping");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("lode-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        let pg = Postgres {
            dir,
            bin,
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the data directory failed");
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl(&self, action: &[&str]) {
        let data = self.data();
        let socket = self.dir.path();
        let options = format!(
            "-k {} -p {PORT} -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            socket.display()
        );
        let log = self.dir.path().join("server.log");
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-o",
            options.as_str(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-m",
            "fast",
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// The connection string (`host=<socket dir> port=… user=postgres dbname=postgres`).
    pub fn url(&self) -> String {
        format!(
            "host={} port={PORT} user=postgres dbname=postgres",
            self.dir.path().display()
        )
    }

    /// The directory holding the socket and the data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        self.ctl(&["stop"]);
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn start_again(&self) {
        self.ctl(&["start"]);
    }

    /// Creates database `name` (each test its own, on one server).
    pub fn create_database(&self, name: &str) -> String {
        let socket = self.dir.path().to_str().unwrap().to_string();
        let port = PORT.to_string();
        self.run(
            "createdb",
            &["-h", &socket, "-p", &port, "-U", "postgres", name],
        );
        format!(
            "host={} port={PORT} user=postgres dbname={name}",
            self.dir.path().display()
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = cmd
            .args([
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}
