//! Other users and groups for the trust-boundary tests: made with useradd and groupadd,
//! removed when dropped; commands run as such a user through setpriv. Only root can
//! make them: elsewhere `TestUser::create` says why and the test skips.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test run) uses; useradd allows 32 characters.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Whether users can be made here; the reason when not.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root: cannot create test users".to_string());
    }
    for tool in ["useradd", "userdel", "groupadd", "groupdel", "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn create() -> TestGroup {
        let name = unique("jdg");
        run("groupadd", &[&name]);
        TestGroup { name }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).status();
    }
}

pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// A user with no home and no login, in `groups` besides its own.
    pub fn create(groups: &[&str]) -> TestUser {
        let name = unique("jdu");
        let mut args = vec![
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ];
        let list = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &list]);
        }
        args.push(&name);
        run("useradd", &args);
        let user = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the user just made");
        TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }

    /// `program` run as this user, with its groups, and nothing else of root's.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--reset-env")
            .arg("--")
            .arg(program);
        command
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_test_user_runs_commands_as_itself_with_its_groups() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let group = TestGroup::create();
    let user = TestUser::create(&[&group.name]);
    let out = user.command("id").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("uid={}", user.uid)), "{text}");
    assert!(text.contains(&group.name), "{text}");
    let name = user.name.clone();
    drop(user);
    assert!(nix::unistd::User::from_name(&name).unwrap().is_none());
}
