//! A throwaway PostgreSQL server for the cluster tests and the cluster benchmark: initdb
//! in a temporary directory, listening only on its own Unix socket there and on
//! 127.0.0.1 at a free port, fsync on; stopped by its own `pg_ctl -D … stop` (its data
//! directory, then its postmaster pid) when dropped, a panicking test included.
//!
//! PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the `postgres`
//! user (or a test user created for the purpose and removed afterwards) through
//! setpriv or runuser, in a directory that user owns.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, chown};
use tempfile::TempDir;

/// The superuser initdb creates, and its password (TCP connections must give it).
pub const USER: &str = "jobd_test";
pub const PASSWORD: &str = "pw-for-jobd-tests";

/// Whether a missing PostgreSQL fails the tests instead of skipping them.
fn required() -> bool {
    std::env::var("JOBD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

pub struct PgServer {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<ServerUser>,
    /// One server at a time: a server and its test's client threads can fill this
    /// machine's two cores, and the suite's timing tests run beside them. Last, so it
    /// is released once the server has stopped.
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

impl PgServer {
    /// A running server, or None (after saying why on stderr) when PostgreSQL or libpq
    /// is not installed; with `JOBD_REQUIRE_POSTGRES=1` that is a panic instead.
    pub fn start(test: &str) -> Option<PgServer> {
        let missing = match (find_bin(), jobd::adapter::postgres::Libpq::system()) {
            (Some(bin), Ok(_)) => return Some(PgServer::start_in(&bin)),
            (None, _) => "PostgreSQL's initdb and pg_ctl were not found (in PATH or \
                          /usr/lib/postgresql/*/bin); `apt-get install postgresql`"
                .to_string(),
            (_, Err(e)) => e.to_string(),
        };
        if required() {
            panic!("{test}: JOBD_REQUIRE_POSTGRES=1 but {missing}");
        }
        eprintln!("{test}: skipped: {missing}");
        None
    }

    /// libpq, or None (after saying why) when it is not installed; with
    /// `JOBD_REQUIRE_POSTGRES=1` that is a panic instead.
    pub fn libpq(test: &str) -> Option<&'static jobd::adapter::postgres::Libpq> {
        match jobd::adapter::postgres::Libpq::system() {
            Ok(lib) => Some(lib),
            Err(e) if required() => panic!("{test}: JOBD_REQUIRE_POSTGRES=1 but {e}"),
            Err(e) => {
                eprintln!("{test}: skipped: {e}");
                None
            }
        }
    }

    fn start_in(bin: &Path) -> PgServer {
        // A test that panicked with the server released it all the same.
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let run_as = Uid::effective().is_root().then(ServerUser::acquire);
        let dir = tempfile::Builder::new()
            .prefix("jobd-pg-")
            .tempdir()
            .expect("a temporary directory");
        let pwfile = dir.path().join("password");
        fs::write(&pwfile, PASSWORD).unwrap();
        if let Some(user) = &run_as {
            for path in [dir.path(), &pwfile] {
                chown(path, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
        let mut server = PgServer {
            bin: bin.to_path_buf(),
            port: 0,
            run_as,
            dir,
            _turn: turn,
        };
        let data = server.data();
        server.run_checked(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                &format!("--pwfile={}", pwfile.display()),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                // Only initdb's own final sync is skipped; the server runs with fsync on.
                "--no-sync",
            ],
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = on\n\
             synchronous_commit = on\n\
             max_connections = 60\n\
             shared_buffers = 32MB\n",
            server.dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        fs::write(&conf_path, text).unwrap();
        // A free port can be taken by someone else before the server binds it: try a
        // few.
        for attempt in 1..=5 {
            server.port = free_port();
            let started = server.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    server.log_path().to_str().unwrap(),
                    "-o",
                    &format!("-p {}", server.port),
                    "-w",
                    "-t",
                    "120",
                    "start",
                ],
            );
            if started.status.success() {
                return server;
            }
            if attempt == 5 {
                panic!(
                    "PostgreSQL did not start: {}\n{}",
                    String::from_utf8_lossy(&started.stderr),
                    server.log()
                );
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Keyword form, over the Unix socket (trusted: no password).
    pub fn socket_conninfo(&self) -> String {
        format!(
            "host={} port={} dbname=postgres user={USER}",
            self.dir.path().display(),
            self.port
        )
    }

    /// URI form, over TCP with the password.
    pub fn uri(&self) -> String {
        self.uri_with_password(PASSWORD)
    }

    pub fn uri_with_password(&self, password: &str) -> String {
        format!(
            "postgresql://{USER}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// `pg_ctl restart -m fast`: every connection is cut.
    pub fn restart(&self) {
        let data = self.data();
        self.run_checked(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.log_path().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "120",
                "restart",
            ],
        );
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => user.command(&program),
            None => Command::new(&program),
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
    }

    fn run_checked(&self, program: &str, args: &[&str]) {
        let output = self.run(program, args);
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// The postmaster's pid, from the first line of its pid file.
    fn postmaster(&self) -> Option<Pid> {
        let text = fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok().map(Pid::from_raw)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let stopped = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
        if !stopped.status.success()
            && let Some(pid) = self.postmaster()
        {
            // SIGQUIT is PostgreSQL's immediate shutdown; this pid is our own server's.
            let _ = kill(pid, Signal::SIGQUIT);
        }
        if let Some(user) = self.run_as.take() {
            user.release();
        }
    }
}

/// A port on 127.0.0.1 nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The directory holding initdb and pg_ctl: Debian's newest
/// /usr/lib/postgresql/N/bin, else PATH.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

/// The unprivileged user the server runs as when the tests run as root.
#[derive(Clone)]
struct ServerUser {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// The test user this process created (when `postgres` does not exist) and how many
/// servers use it; the last one to stop removes it.
static CREATED_USER: Mutex<(usize, bool)> = Mutex::new((0, false));
const TEST_USER: &str = "jobd-pgtest";

impl ServerUser {
    fn acquire() -> ServerUser {
        let mut created = CREATED_USER.lock().unwrap_or_else(|e| e.into_inner());
        let user = match User::from_name("postgres").unwrap() {
            Some(user) => user,
            None => {
                if User::from_name(TEST_USER).unwrap().is_none() {
                    let status = Command::new("useradd")
                        .args(["--system", "--no-create-home", "--user-group"])
                        .args(["--shell", "/usr/sbin/nologin", TEST_USER])
                        .status()
                        .expect("useradd runs");
                    assert!(status.success(), "useradd {TEST_USER} failed");
                    created.1 = true;
                }
                created.0 += 1;
                User::from_name(TEST_USER)
                    .unwrap()
                    .expect("the test user exists")
            }
        };
        ServerUser {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
        }
    }

    fn release(self) {
        if self.name != TEST_USER {
            return;
        }
        let mut created = CREATED_USER.lock().unwrap_or_else(|e| e.into_inner());
        created.0 -= 1;
        if created.0 == 0 && created.1 {
            let _ = Command::new("userdel").arg(TEST_USER).status();
            created.1 = false;
        }
    }

    /// `program`, run as this user: setpriv (util-linux), else runuser.
    fn command(&self, program: &Path) -> Command {
        if Path::new("/usr/bin/setpriv").exists() || Path::new("/bin/setpriv").exists() {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", self.uid))
                .arg(format!("--regid={}", self.gid))
                .arg("--init-groups")
                .arg("--")
                .arg(program);
            command
        } else {
            let mut command = Command::new("runuser");
            command.args(["-u", &self.name, "--"]).arg(program);
            command
        }
    }
}
