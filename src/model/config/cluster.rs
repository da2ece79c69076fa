//! `cluster:`: several hosts running one jobfile on a shared PostgreSQL, and what each
//! job says about it (`cluster: local`, `on_host_loss:`).

use std::time::Duration;

use super::Host;
use super::checker::Checker;
use super::load::CLUSTER_KEYS;
use crate::leaf::yaml::{Node, Value};

/// How long a host's hold on its work lasts without a heartbeat, when the jobfile
/// does not say.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Shorter leases leave a heartbeat (every lease/3) no room for one slow round trip.
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// The variable that names the host when `cluster.host_id` does not.
pub const HOST_ID_VARIABLE: &str = "JOBD_HOST_ID";

/// Cluster mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// A libpq connection string (URI or `key=value` words) for the work queries.
    pub database_url: String,
    /// A direct connection for LISTEN, when `database_url` goes through a pooler.
    pub listen_url: Option<String>,
    /// This host's name in the cluster: `cluster.host_id`, else `$JOBD_HOST_ID`, else
    /// the host name.
    pub host_id: String,
    pub lease: Duration,
    /// What the hosts compare to find one running another jobfile: a hash of the
    /// jobfile as parsed (comments and layout do not count), `cluster.host_id` left
    /// out so that every host can share one file.
    pub jobfile_hash: String,
}

impl Cluster {
    /// The connection LISTEN runs on.
    pub fn listen_url(&self) -> &str {
        self.listen_url.as_deref().unwrap_or(&self.database_url)
    }
}

/// Where a job's instants run in cluster mode (`cluster:` of a job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Each instant on one host, claimed in the database (the default).
    Shared,
    /// Every host runs every instant, as without cluster mode.
    Local,
}

/// What becomes of a run whose host died while it ran (`on_host_loss:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHostLoss {
    /// Recorded `lost`; the job's on_failure runs on a live host.
    Lost,
    /// Recorded lost, and run again on a live host.
    Rerun,
}

impl Checker {
    /// The `cluster:` section.
    pub(super) fn cluster(&mut self, node: &Node, root: &Node, host: &Host) -> Option<Cluster> {
        let fields = self.fields(node, "cluster", CLUSTER_KEYS)?;
        let database_url = match fields.get("database_url") {
            Some(url) => self.conninfo(url, "cluster.database_url"),
            None if fields.misspelt("database_url") => None,
            None => {
                self.report(
                    Some(node.pos),
                    super::ProblemKind::Missing {
                        path: "cluster".to_string(),
                        key: "database_url",
                    },
                );
                None
            }
        };
        let listen_url = match fields.get("listen_url") {
            Some(url) => Some(self.conninfo(url, "cluster.listen_url")?),
            None => None,
        };
        let host_id = match fields.get("host_id") {
            Some(id) => {
                let id = self.text(id, "cluster.host_id").and_then(|text| {
                    valid_host_id(&text)
                        .map_err(|why| self.bad(id, "cluster.host_id", why))
                        .ok()
                        .map(|()| text)
                });
                id?
            }
            None => self.default_host_id(node, host)?,
        };
        let lease = match fields.get("lease") {
            Some(n) => {
                let lease = self.duration(n, "cluster.lease")?;
                if lease < MIN_LEASE {
                    self.bad(
                        n,
                        "cluster.lease",
                        format!(
                            "must be at least {}s: a heartbeat goes every lease/3",
                            MIN_LEASE.as_secs()
                        ),
                    );
                    return None;
                }
                lease
            }
            None => DEFAULT_LEASE,
        };
        Some(Cluster {
            database_url: database_url?,
            listen_url,
            host_id,
            lease,
            jobfile_hash: jobfile_hash(root),
        })
    }

    /// A connection string: any non-empty text libpq will read (it says what is wrong
    /// with it when jobd connects).
    fn conninfo(&mut self, node: &Node, path: &str) -> Option<String> {
        let Value::Str(text) = &node.value else {
            self.wrong_type(
                node,
                path,
                "a connection string like postgresql://jobd@db.internal/app",
            );
            return None;
        };
        if text.trim().is_empty() {
            self.bad(node, path, "is empty");
            return None;
        }
        if text.contains('\0') {
            self.bad(node, path, "contains a NUL character");
            return None;
        }
        Some(text.clone())
    }

    /// `$JOBD_HOST_ID`, else the host name, for a `cluster:` without `host_id:`.
    fn default_host_id(&mut self, node: &Node, host: &Host) -> Option<String> {
        let (id, source) = match (&host.host_id_variable, &host.hostname) {
            (Some(id), _) => (id, format!("${HOST_ID_VARIABLE}")),
            (None, Some(name)) => (name, "the host name".to_string()),
            (None, None) => {
                self.bad(
                    node,
                    "cluster",
                    format!(
                        "this host has no name to go by in the cluster: set `host_id:` here \
                         or ${HOST_ID_VARIABLE} in jobd's environment"
                    ),
                );
                return None;
            }
        };
        match valid_host_id(id) {
            Ok(()) => Some(id.clone()),
            Err(why) => {
                self.bad(
                    node,
                    "cluster",
                    format!(
                        "{source} (`{}`) cannot be the host id: {why}; set `host_id:` here \
                         or ${HOST_ID_VARIABLE}",
                        id.escape_debug()
                    ),
                );
                None
            }
        }
    }

    /// A job's `cluster:`.
    pub(super) fn placement(&mut self, node: &Node, path: &str) -> Option<Placement> {
        self.choice(
            node,
            path,
            &[("shared", Placement::Shared), ("local", Placement::Local)],
        )
    }

    /// A job's `on_host_loss:`.
    pub(super) fn on_host_loss(&mut self, node: &Node, path: &str) -> Option<OnHostLoss> {
        self.choice(
            node,
            path,
            &[("lost", OnHostLoss::Lost), ("rerun", OnHostLoss::Rerun)],
        )
    }
}

const MAX_HOST_ID_LEN: usize = 100;

/// Host ids go into log lines, status tables and the one-off origins
/// (`<host_id>/<file name>`): the characters of host names.
pub fn valid_host_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".to_string());
    }
    if id.len() > MAX_HOST_ID_LEN {
        return Err(format!("it is longer than {MAX_HOST_ID_LEN} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err("use letters, digits, `_`, `-` and `.`".to_string());
    }
    Ok(())
}

/// The jobfile's hash: FNV-1a (64 bits) of the parsed tree written canonically, with
/// `cluster.host_id` left out. Not a defence against anyone: it tells hosts on one
/// jobfile from hosts on another.
fn jobfile_hash(root: &Node) -> String {
    let mut text = String::new();
    canonical(root, &mut text, true);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `node` as unambiguous text: each value tagged with its kind, strings quoted and
/// escaped, positions dropped. `top` marks the document's own mapping, where
/// `cluster:` is.
fn canonical(node: &Node, out: &mut String, top: bool) {
    match &node.value {
        Value::Null => out.push('~'),
        Value::Bool(b) => out.push_str(if *b { "T" } else { "F" }),
        Value::Int(n) => out.push_str(&format!("i{n};")),
        Value::Float(x) => out.push_str(&format!("f{x:?};")),
        Value::Str(s) => out.push_str(&format!("{s:?}")),
        Value::Seq(items) => {
            out.push('[');
            for item in items {
                canonical(item, out, false);
                out.push(',');
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (key, value) in entries {
                canonical(key, out, false);
                out.push(':');
                if top && key.value == Value::Str("cluster".into()) {
                    canonical(&without_host_id(value), out, false);
                } else {
                    canonical(value, out, false);
                }
                out.push(',');
            }
            out.push('}');
        }
    }
}

fn without_host_id(cluster: &Node) -> Node {
    match &cluster.value {
        Value::Map(entries) => Node {
            value: Value::Map(
                entries
                    .iter()
                    .filter(|(key, _)| key.value != Value::Str("host_id".into()))
                    .cloned()
                    .collect(),
            ),
            pos: cluster.pos,
        },
        _ => cluster.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::leaf::yaml;
    use crate::model::config::{Config, ConfigError, parse};

    fn load(text: &str, host: &Host) -> Result<Config, ConfigError> {
        parse(text, Path::new("/srv/app/jobd.yaml"), None, host)
    }

    fn named(variable: Option<&str>, hostname: Option<&str>) -> Host {
        Host {
            local_zone: Some("UTC".into()),
            host_id_variable: variable.map(str::to_string),
            hostname: hostname.map(str::to_string),
            ..Host::default()
        }
    }

    const JOBS: &str = "jobs:\n  a:\n    every: 1s\n    command: [x]\n";

    #[test]
    fn a_cluster_section_with_its_defaults() {
        let text = format!("cluster:\n  database_url: postgresql://db/app\n{JOBS}");
        let config = load(&text, &named(None, Some("web1"))).unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.database_url, "postgresql://db/app");
        assert_eq!(cluster.listen_url(), "postgresql://db/app");
        assert_eq!(cluster.host_id, "web1");
        assert_eq!(cluster.lease, DEFAULT_LEASE);
        assert_eq!(config.jobs[0].placement, Placement::Shared);
        assert_eq!(config.jobs[0].on_host_loss, OnHostLoss::Lost);
        // $JOBD_HOST_ID before the host name; the jobfile's own before both.
        let by_variable = load(&text, &named(Some("blue"), Some("web1"))).unwrap();
        assert_eq!(by_variable.cluster.unwrap().host_id, "blue");
        let own = text.replace(
            "app\n",
            "app\n  host_id: green\n  lease: 6s\n  listen_url: host=db\n",
        );
        let cluster = load(&own, &named(Some("blue"), None))
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(cluster.host_id, "green");
        assert_eq!(cluster.lease, Duration::from_secs(6));
        assert_eq!(cluster.listen_url(), "host=db");
        let hash = |text: &str| {
            let config = load(text, &named(None, Some("web1"))).unwrap();
            config.cluster.unwrap().jobfile_hash
        };
        assert_eq!(
            hash(&text),
            hash(&text.replace("app\n", "app\n  host_id: green\n")),
            "the same hash for every host, whatever its id"
        );
        assert_ne!(hash(&text), cluster.jobfile_hash);
        assert!(load(JOBS, &named(None, None)).unwrap().cluster.is_none());
    }

    #[test]
    fn cluster_problems_name_the_place() {
        let host = named(None, Some("web1"));
        for (text, line, words) in [
            (
                "cluster:\n  lease: 30s\n",
                2,
                "cluster: `database_url:` is missing",
            ),
            ("cluster:\n  database_url: ''\n", 2, "is empty"),
            (
                "cluster:\n  database_url: [x]\n",
                2,
                "expected a connection string",
            ),
            (
                "cluster:\n  database_url: x\n  lease: 1s\n",
                3,
                "at least 2s",
            ),
            (
                "cluster:\n  database_url: x\n  host_id: a/b\n",
                3,
                "letters, digits",
            ),
            (
                "cluster:\n  databse_url: x\n",
                2,
                "did you mean `database_url`",
            ),
            ("cluster: x\n", 1, "expected a mapping"),
        ] {
            let err = load(&format!("{text}{JOBS}"), &host).unwrap_err();
            let problem = &err.problems[0];
            assert_eq!(problem.pos.map(|p| p.line), Some(line), "{text}: {err}");
            assert!(err.to_string().contains(words), "{text}: {err}");
            assert_eq!(err.problems.len(), 1, "{text}: {err}");
        }
        let nameless = load(
            &format!("cluster:\n  database_url: x\n{JOBS}"),
            &named(None, None),
        );
        assert!(nameless.unwrap_err().to_string().contains("$JOBD_HOST_ID"));
        let bad_variable = load(
            &format!("cluster:\n  database_url: x\n{JOBS}"),
            &named(Some("web 1"), None),
        );
        let err = bad_variable.unwrap_err().to_string();
        assert!(
            err.contains("$JOBD_HOST_ID (`web 1`) cannot be the host id"),
            "{err}"
        );
    }

    #[test]
    fn jobs_say_where_they_run_and_what_a_lost_host_means() {
        let text = "jobs:\n  a:\n    every: 1s\n    command: [x]\n    cluster: local\n    on_host_loss: rerun\n";
        let config = load(text, &named(None, None)).unwrap();
        assert_eq!(config.jobs[0].placement, Placement::Local);
        assert_eq!(config.jobs[0].on_host_loss, OnHostLoss::Rerun);
        let err = load(&text.replace("local", "lokal"), &named(None, None)).unwrap_err();
        assert!(
            err.to_string()
                .contains(":5:14: jobs.a.cluster: unknown value `lokal`; did you mean `local`?"),
            "{err}"
        );
        let err = load(&text.replace("rerun", "retry"), &named(None, None)).unwrap_err();
        assert!(err.to_string().contains("jobs.a.on_host_loss"), "{err}");
    }

    fn hash(text: &str) -> String {
        jobfile_hash(&yaml::parse(text).unwrap())
    }

    #[test]
    fn the_hash_ignores_layout_comments_and_the_host_id_only() {
        let one = "cluster:\n  database_url: x\n  host_id: web1\njobs: {a: {every: 1s}}\n";
        let two = "# web2\ncluster: {host_id: web2, database_url: x}\njobs:\n  a:\n    every: 1s\n";
        assert_eq!(hash(one), hash(two));
        assert_ne!(hash(one), hash(&one.replace("1s", "2s")));
        assert_ne!(hash("a: '1'"), hash("a: 1"));
        assert_ne!(hash("{a: 1, b: 2}"), hash("{b: 2, a: 1}"), "order is kept");
        // host_id counts anywhere but in the top-level cluster section.
        assert_ne!(hash("x: {host_id: a}"), hash("x: {host_id: b}"));
        assert_eq!(hash(one).len(), 16);
    }

    #[test]
    fn host_ids_are_host_names() {
        assert!(valid_host_id("web-1.example.org").is_ok());
        assert!(valid_host_id("").is_err());
        assert!(valid_host_id("a/b").unwrap_err().contains("letters"));
        assert!(valid_host_id(&"x".repeat(101)).is_err());
    }
}
