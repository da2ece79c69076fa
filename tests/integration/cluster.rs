//! Cluster mode end to end: several real jobds (each its own state directory, socket,
//! spool and `JOBD_HOST_ID`) on one jobfile and one throwaway PostgreSQL (pgserver.rs;
//! skipped with a message when PostgreSQL is not installed, unless
//! JOBD_REQUIRE_POSTGRES=1). The jobs append `INSTANT HOST` lines to files in a folder
//! all hosts share, which is what the tests count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobd::adapter::postgres::{Libpq, Query, Session, Settings};
use tempfile::TempDir;

use crate::harness::{Daemon, Dir, eventually, kill_with_groups, processes_with_env};
use crate::pgserver::PgServer;

const T: Duration = Duration::from_secs(30);

/// Several hosts of one cluster, and the folder their jobs write to.
struct Hosts {
    pg: PgServer,
    shared: TempDir,
    hosts: Vec<Host>,
}

struct Host {
    id: String,
    dir: Dir,
    jobd: Option<Daemon>,
}

impl Hosts {
    /// `count` hosts named h1, h2, … on a jobfile of `jobs` (with `{shared}` standing
    /// for the shared folder) and the cluster section, its lease `lease`.
    fn new(pg: PgServer, count: usize, lease: &str, jobs: &str) -> Hosts {
        let shared = tempfile::Builder::new()
            .prefix("jobd-cluster-")
            .tempdir()
            .unwrap();
        let text = jobfile(
            &pg,
            lease,
            &jobs.replace("{shared}", &shared.path().display().to_string()),
        );
        let hosts = (1..=count)
            .map(|n| Host {
                id: format!("h{n}"),
                dir: Dir::new(&text),
                jobd: None,
            })
            .collect();
        Hosts { pg, shared, hosts }
    }

    fn start_all(&mut self) {
        for n in 0..self.hosts.len() {
            self.start(n);
        }
        for n in 0..self.hosts.len() {
            self.wait_available(n);
        }
    }

    fn start(&mut self, n: usize) {
        let host = &mut self.hosts[n];
        host.jobd = Some(host.dir.start_with(
            &[],
            &[("JOBD_HOST_ID", host.id.as_str()), ("JOBD_LOG", "info")],
        ));
    }

    #[track_caller]
    fn wait_available(&self, n: usize) {
        let jobd = self.jobd(n);
        if !eventually(T, || jobd.log().contains("cluster: available")) {
            panic!(
                "host {} did not join the cluster:\n{}\n--- server\n{}",
                self.hosts[n].id,
                jobd.log(),
                self.pg.log()
            );
        }
    }

    fn jobd(&self, n: usize) -> &Daemon {
        self.hosts[n].jobd.as_ref().expect("started")
    }

    /// Stop every jobd still running, and wait for each to exit 0.
    fn stop_all(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut jobd) = host.jobd.take() {
                assert_eq!(jobd.stop(), Some(0), "{}:\n{}", host.id, jobd.log());
            }
        }
    }

    /// The lines of a file in the shared folder, as (instant, host) pairs.
    fn lines(&self, name: &str) -> Vec<(String, String)> {
        fs::read_to_string(self.shared.path().join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (at, host) = line.split_once(' ')?;
                Some((at.to_string(), host.to_string()))
            })
            .collect()
    }

    /// What went wrong on each host: the log lines above `info`, and the cluster's.
    fn logs(&self) -> String {
        self.hosts
            .iter()
            .filter_map(|h| {
                let log = h.jobd.as_ref()?.log();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains(" INFO ") || l.contains("cluster"))
                    .collect();
                Some(format!("--- {}\n{}\n", h.id, lines.join("\n")))
            })
            .collect()
    }

    fn sql(&self) -> Session {
        let lib = Libpq::system().expect("libpq loads");
        Session::connect_blocking(lib, Settings::new(&self.pg.uri()), T).expect("connects")
    }
}

fn jobfile(pg: &PgServer, lease: &str, jobs: &str) -> String {
    format!(
        "timezone: UTC\ncluster:\n  database_url: \"{}\"\n  lease: {lease}\n{jobs}",
        pg.uri()
    )
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_utc()
}

/// Each instant's hosts, for instants in `from..=to`.
fn by_instant(
    lines: &[(String, String)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<DateTime<Utc>, Vec<String>> {
    let mut seen: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for (at, host) in lines {
        let at = instant(at);
        if at >= from && at <= to {
            seen.entry(at).or_default().push(host.clone());
        }
    }
    seen
}

/// Every instant of a `period` schedule in `from..=to` ran exactly once: none twice,
/// none missing.
#[track_caller]
fn exactly_once(
    name: &str,
    lines: &[(String, String)],
    period: Duration,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    logs: &dyn Fn() -> String,
) -> BTreeMap<String, usize> {
    let seen = by_instant(lines, from, to);
    let twice: Vec<_> = seen.iter().filter(|(_, hosts)| hosts.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{name}: instants run more than once: {twice:?}"
    );
    let step = chrono::TimeDelta::from_std(period).unwrap();
    let mut expected = BTreeSet::new();
    let mut at = DateTime::from_timestamp_millis(
        from.timestamp_millis().div_euclid(step.num_milliseconds()) * step.num_milliseconds(),
    )
    .unwrap();
    while at <= to {
        if at >= from {
            expected.insert(at);
        }
        at += step;
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|at| !seen.contains_key(at))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: {} of {} instants never ran: {missing:?}\n{}",
        missing.len(),
        expected.len(),
        logs()
    );
    let mut per_host = BTreeMap::new();
    for hosts in seen.values() {
        *per_host.entry(hosts[0].clone()).or_insert(0) += 1;
    }
    per_host
}

#[test]
fn three_hosts_run_each_instant_of_a_second_and_a_quarter_second_job_exactly_once() {
    let Some(pg) = PgServer::start("three_hosts_run_each_instant_exactly_once") else {
        return;
    };
    // Room for overlaps: a run holds its slot from its claim to the record of its end,
    // which a loaded machine can stretch past 250 ms; max_instances is another test's.
    let jobs = r#"jobs:
  tick:
    schedule: "* * * * * *"
    command: 'echo "$JOBD_SCHEDULED_AT $JOBD_HOST_ID" >> {shared}/tick'
    max_instances: 10
  quarter:
    every: 250ms
    command: 'echo "$JOBD_SCHEDULED_AT $JOBD_HOST_ID" >> {shared}/quarter'
    max_instances: 10
"#;
    let mut hosts = Hosts::new(pg, 3, "10s", jobs);
    hosts.start_all();
    let from = Utc::now() + chrono::TimeDelta::seconds(1);
    let to = from + chrono::TimeDelta::seconds(30);
    std::thread::sleep((to - Utc::now()).to_std().unwrap() + Duration::from_secs(2));
    let logs = hosts.logs();
    hosts.stop_all();
    let show = || logs.clone();
    let tick = exactly_once(
        "tick",
        &hosts.lines("tick"),
        Duration::from_secs(1),
        from,
        to,
        &show,
    );
    let quarter = exactly_once(
        "quarter",
        &hosts.lines("quarter"),
        Duration::from_millis(250),
        from,
        to,
        &show,
    );
    println!("instants run, by host: tick {tick:?}, quarter {quarter:?}");
}

/// Start and end times (ns) of each run of `name`, from `start`/`end` lines.
fn intervals(hosts: &Hosts, name: &str) -> Vec<(u128, u128, String)> {
    let text = fs::read_to_string(hosts.shared.path().join(name)).unwrap_or_default();
    let mut starts = BTreeMap::new();
    let mut runs = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [what, at, host, run] = words[..] else {
            continue;
        };
        let at: u128 = at.parse().unwrap();
        match what {
            "start" => {
                starts.insert(run.to_string(), (at, host.to_string()));
            }
            _ => {
                if let Some((start, host)) = starts.remove(run) {
                    runs.push((start, at, host));
                }
            }
        }
    }
    runs.sort();
    runs
}

#[test]
fn max_instances_holds_across_hosts_for_a_slow_job() {
    let Some(pg) = PgServer::start("max_instances_holds_across_hosts") else {
        return;
    };
    let jobs = r#"jobs:
  slow:
    every: 1s
    max_instances: 1
    command: 'echo "start $(date +%s%N) $JOBD_HOST_ID $JOBD_RUN_ID" >> {shared}/slow; sleep 2.5; echo "end $(date +%s%N) $JOBD_HOST_ID $JOBD_RUN_ID" >> {shared}/slow'
"#;
    let mut hosts = Hosts::new(pg, 3, "10s", jobs);
    hosts.start_all();
    if !eventually(Duration::from_secs(60), || {
        intervals(&hosts, "slow").len() >= 4
    }) {
        panic!("the slow job did not run 4 times:\n{}", hosts.logs());
    }
    let logs = hosts.logs();
    hosts.stop_all();
    let runs = intervals(&hosts, "slow");
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs at once across hosts: {pair:?}\n{logs}"
        );
    }
    assert!(
        logs.contains("max_instances are running in the cluster (on_overlap: skip)"),
        "no instant was skipped for overlap:\n{logs}"
    );
    let on: BTreeSet<&str> = runs.iter().map(|r| r.2.as_str()).collect();
    println!("{} runs, on hosts {on:?}", runs.len());
}

/// Lines `MARKER HOST ATTEMPT` of a file in the shared folder.
fn marks(hosts: &Hosts, name: &str) -> Vec<(String, String, u32)> {
    fs::read_to_string(hosts.shared.path().join(name))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [marker, host, attempt] = words[..] else {
                return None;
            };
            Some((marker.to_string(), host.to_string(), attempt.parse().ok()?))
        })
        .collect()
}

fn scalar(session: &mut Session, sql: &str) -> String {
    let rows = session.exec_blocking(&Query::new(sql), T).unwrap();
    let row = rows.iter().next().expect("a row");
    row.opt_text(&rows.columns()[0])
        .unwrap()
        .unwrap_or_default()
}

#[test]
fn a_host_killed_mid_run_loses_its_run_and_its_oneoffs_run_again_elsewhere() {
    let Some(pg) = PgServer::start("a_host_killed_mid_run") else {
        return;
    };
    let jobs = r#"spool:
  workers: 2
jobs:
  tick:
    schedule: "* * * * * *"
    max_instances: 10
    command: 'echo "$JOBD_SCHEDULED_AT $JOBD_HOST_ID" >> {shared}/tick'
  long:
    every: 3s
    command: 'echo "$JOBD_SCHEDULED_AT $JOBD_HOST_ID" >> {shared}/long; sleep 30'
    on_failure: 'echo "$JOBD_FAILED_OUTCOME $JOBD_HOST_ID" >> {shared}/hook'
tasks:
  nap:
    command: [sh, -c, 'echo "$1 $JOBD_HOST_ID $JOBD_ATTEMPT" >> {shared}/naps; sleep 6', nap]
    accept:
      args: ['nap-\d+']
"#;
    let mut hosts = Hosts::new(pg, 3, "6s", jobs);
    hosts.start_all();
    let mut sql = hosts.sql();
    for n in 0..6 {
        scalar(
            &mut sql,
            &format!("SELECT id FROM jobd.submit('nap', '[\"nap-{n}\"]'::jsonb)"),
        );
    }
    // Every host runs two naps (two workers each), and one of them the long job.
    let victim = crate::harness::wait_for(T, || {
        let long = hosts.lines("long");
        let naps = marks(&hosts, "naps");
        (naps.len() == 6).then(|| long.first().map(|(_, host)| host.clone()))?
    })
    .unwrap_or_else(|| panic!("the naps and the long job did not start:\n{}", hosts.logs()));
    let naps_of_victim: Vec<String> = marks(&hosts, "naps")
        .into_iter()
        .filter(|(_, host, _)| *host == victim)
        .map(|(marker, _, _)| marker)
        .collect();
    assert!(!naps_of_victim.is_empty(), "{victim} runs no nap");
    let n = hosts.hosts.iter().position(|h| h.id == victim).unwrap();
    // The host dies: jobd and everything it started (they all carry its JOBD_HOST_ID).
    let pids = processes_with_env("JOBD_HOST_ID", &victim);
    kill_with_groups(&pids);
    let killed_at = Utc::now();
    let mut dead = hosts.hosts[n].jobd.take().unwrap();
    dead.wait_exit(T);

    // Its scheduled run is recorded lost, and on_failure runs on a live host.
    let hook = crate::harness::wait_for(Duration::from_secs(60), || {
        let text = fs::read_to_string(hosts.shared.path().join("hook")).ok()?;
        text.lines().next().map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no on_failure for the lost run:\n{}", hosts.logs()));
    let lost_after = Utc::now() - killed_at;
    let (outcome, hook_host) = hook.split_once(' ').unwrap();
    assert_eq!(outcome, "lost");
    assert_ne!(hook_host, victim);
    assert_eq!(
        scalar(
            &mut sql,
            &format!(
                "SELECT count(*) FROM jobd.runs WHERE job = 'long' AND state = 'lost' AND host_id = '{victim}'"
            )
        ),
        "1"
    );
    // Its naps run again on live hosts, attempt 2; none is lost.
    let all_done = eventually(Duration::from_secs(90), || {
        scalar(
            &mut sql,
            "SELECT count(*) FROM jobd.oneoffs WHERE state = 'done'",
        ) == "6"
    });
    assert!(all_done, "not every nap ended:\n{}", hosts.logs());
    println!(
        "kill -9 of {victim} (lease 6s): its run recorded lost and on_failure run on {hook_host} \
         after {} ms; its {} naps run again, all 6 done after {} ms",
        lost_after.num_milliseconds(),
        naps_of_victim.len(),
        (Utc::now() - killed_at).num_milliseconds()
    );
    let naps = marks(&hosts, "naps");
    for marker in &naps_of_victim {
        let again: Vec<_> = naps.iter().filter(|(m, _, _)| m == marker).collect();
        assert_eq!(again.len(), 2, "{marker}: {naps:?}");
        assert_eq!(again[1].2, 2, "{marker} again as attempt 2: {naps:?}");
        assert_ne!(again[1].1, victim);
    }
    assert_eq!(naps.len(), 6 + naps_of_victim.len(), "{naps:?}");
    // The others went on.
    let after: Vec<_> = hosts
        .lines("tick")
        .into_iter()
        .filter(|(at, _)| instant(at) > killed_at + chrono::TimeDelta::seconds(1))
        .collect();
    assert!(after.len() >= 5, "ticks after the kill: {after:?}");
    assert!(after.iter().all(|(_, host)| *host != victim));
    hosts.stop_all();
}

#[test]
fn oneoffs_from_every_hosts_spool_and_from_sql_run_once_each() {
    let Some(pg) = PgServer::start("oneoffs_from_every_hosts_spool_and_sql") else {
        return;
    };
    let jobs = r#"spool:
  workers: 2
tasks:
  mark:
    command: [sh, -c, 'echo "$1 $JOBD_HOST_ID $JOBD_ATTEMPT" >> {shared}/marks', mark]
    accept:
      args: ['[a-z0-9-]+']
"#;
    let mut hosts = Hosts::new(pg, 3, "10s", jobs);
    hosts.start_all();
    let mut expected = BTreeSet::new();
    for (n, host) in hosts.hosts.iter().enumerate() {
        for i in 0..10 {
            let marker = format!("spool-{n}-{i}");
            host.dir.drop_file(
                &format!("{marker}.json"),
                format!(r#"{{"task": "mark", "args": ["{marker}"]}}"#).as_bytes(),
            );
            expected.insert(marker);
        }
    }
    let mut sql = hosts.sql();
    for i in 0..10 {
        let marker = format!("sql-{i}");
        scalar(
            &mut sql,
            &format!("SELECT id FROM jobd.submit('mark', '[\"{marker}\"]'::jsonb)"),
        );
        expected.insert(marker);
    }
    let submitted = hosts.hosts[0]
        .dir
        .jobctl(&["submit", "mark", "--", "jobctl-0"]);
    submitted.code(0);
    expected.insert("jobctl-0".to_string());
    let all_ran = eventually(Duration::from_secs(60), || {
        marks(&hosts, "marks").len() >= expected.len()
    });
    assert!(all_ran, "{:?}\n{}", marks(&hosts, "marks"), hosts.logs());
    // A moment for a run twice to show.
    std::thread::sleep(Duration::from_secs(2));
    let ran = marks(&hosts, "marks");
    let markers: Vec<&String> = ran.iter().map(|(m, _, _)| m).collect();
    let unique: BTreeSet<String> = markers.iter().map(|m| m.to_string()).collect();
    assert_eq!(unique, expected, "{ran:?}");
    assert_eq!(markers.len(), expected.len(), "some ran twice: {ran:?}");
    assert!(ran.iter().all(|(_, _, attempt)| *attempt == 1), "{ran:?}");
    // Each spool file is filed as forwarded.
    for host in &hosts.hosts {
        let done = host.dir.spool_files("done");
        assert_eq!(done.len(), 10, "{}: {done:?}", host.id);
        let result = host.dir.result("done", &done[0]);
        assert_eq!(result["state"], "forwarded", "{result}");
        assert!(
            result["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("origin {}/", host.id)),
            "{result}"
        );
    }
    // The history is the cluster's: runs of every host, on every host.
    let history = hosts.hosts[0]
        .dir
        .jobctl(&["history", "mark", "-n", "100", "--json"]);
    history.code(0);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history.stdout()).unwrap();
    let on: BTreeSet<&str> = runs.iter().filter_map(|r| r["host"].as_str()).collect();
    assert_eq!(runs.len(), expected.len(), "{}", history.stdout());
    println!("one-offs ran on {on:?}");
    let shown = hosts.hosts[0].dir.jobctl(&["history", "mark", "-n", "5"]);
    assert!(shown.stdout().contains("HOST"), "{}", shown.stdout());
    // A new file named like one forwarded before would find the earlier row: it is
    // refused with the reason, never silently taken for the earlier request.
    let first = &hosts.hosts[0];
    first
        .dir
        .drop_file("spool-0-0.json", br#"{"task": "mark", "args": ["again"]}"#);
    let refused = eventually(T, || {
        first
            .dir
            .spool_files("failed")
            .contains(&"spool-0-0.json".to_string())
    });
    assert!(refused, "{}", hosts.logs());
    let result = first.dir.result("failed", "spool-0-0.json");
    assert!(
        result["reason"].as_str().unwrap().contains("unique name"),
        "{result}"
    );
    assert!(marks(&hosts, "marks").iter().all(|(m, _, _)| m != "again"));
    hosts.stop_all();
}

#[test]
fn a_postgres_restart_runs_nothing_twice_and_the_listener_recovers() {
    let Some(pg) = PgServer::start("a_postgres_restart_runs_nothing_twice") else {
        return;
    };
    let jobs = r#"jobs:
  tick:
    schedule: "* * * * * *"
    max_instances: 10
    command: 'echo "$JOBD_SCHEDULED_AT $JOBD_HOST_ID" >> {shared}/tick'
tasks:
  mark:
    command: [sh, -c, 'echo "$1 $JOBD_HOST_ID $JOBD_ATTEMPT" >> {shared}/marks', mark]
    accept:
      args: ['[a-z0-9-]+']
"#;
    let mut hosts = Hosts::new(pg, 3, "10s", jobs);
    hosts.start_all();
    std::thread::sleep(Duration::from_secs(4));
    let restarting = Utc::now();
    hosts.pg.restart();
    let restarted_at = Utc::now();
    // Each host is back: its work session claims again, and it listens again.
    for n in 0..3 {
        let jobd = hosts.jobd(n);
        let back = eventually(T, || {
            let log = jobd.log();
            log.matches("cluster: available").count() >= 2
                && log.matches("cluster: listening for one-off jobs").count() >= 2
        });
        assert!(
            back,
            "{} did not come back:\n{}",
            hosts.hosts[n].id,
            jobd.log()
        );
    }
    println!(
        "pg_ctl restart took {} ms; every host claimed and listened again {} ms after it",
        (restarted_at - restarting).num_milliseconds(),
        (Utc::now() - restarted_at).num_milliseconds()
    );
    let mut sql = hosts.sql();
    let listening = eventually(T, || {
        scalar(
            &mut sql,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobd' \
             AND pid <> pg_backend_pid() \
             AND (query LIKE 'LISTEN%' OR query LIKE '%pg_listening_channels%')",
        ) == "3"
    });
    if !listening {
        let rows = sql
            .exec_blocking(
                &Query::new("SELECT application_name, state, query FROM pg_stat_activity"),
                T,
            )
            .unwrap();
        let sessions: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{:?} {:?} {:?}",
                    r.opt_text("application_name"),
                    r.opt_text("state"),
                    r.opt_text("query")
                )
            })
            .collect();
        panic!(
            "not 3 listening connections: {sessions:#?}\n{}",
            hosts.logs()
        );
    }
    scalar(
        &mut sql,
        "SELECT id FROM jobd.submit('mark', '[\"after\"]'::jsonb)",
    );
    let ran = eventually(T, || marks(&hosts, "marks").len() == 1);
    assert!(
        ran,
        "the one-off after the restart did not run:\n{}",
        hosts.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    let logs = hosts.logs();
    hosts.stop_all();
    let ticks = hosts.lines("tick");
    let seen = by_instant(&ticks, DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    let twice: Vec<_> = seen.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(twice.is_empty(), "instants run twice: {twice:?}\n{logs}");
    let after = seen.keys().filter(|at| **at > restarted_at).count();
    let during = seen
        .keys()
        .filter(|at| **at > restarting && **at <= restarted_at)
        .count();
    println!(
        "ticks: {} in all, none twice; {during} ran while the server restarted, {after} after",
        seen.len()
    );
    assert!(after >= 3, "no ticks after the restart:\n{logs}");
    // An instant that fell while the hosts were away is logged as not run when they
    // are back; without such a line, no second is missing.
    let instants: Vec<_> = seen.keys().collect();
    let gaps: i64 = instants
        .windows(2)
        .map(|pair| (*pair[1] - *pair[0]).num_seconds() - 1)
        .sum();
    assert!(
        gaps == 0 || logs.contains("not run while the cluster was unavailable"),
        "{gaps} instants missing and none said so: {instants:?}\n{logs}"
    );
}

#[test]
fn status_shows_the_hosts_and_flags_one_on_another_jobfile() {
    let Some(pg) = PgServer::start("status_shows_the_hosts") else {
        return;
    };
    let jobs = "jobs:\n  a:\n    every: 1h\n    command: [\"true\"]\n";
    let mut hosts = Hosts::new(pg, 2, "3s", jobs);
    let other = fs::read_to_string(hosts.hosts[1].dir.jobfile()).unwrap()
        + "  b:\n    every: 1h\n    command: [\"true\"]\n";
    fs::write(hosts.hosts[1].dir.jobfile(), other).unwrap();
    hosts.start_all();
    let dir = &hosts.hosts[0].dir;
    let shown = crate::harness::wait_for(T, || {
        let status = dir.jobctl(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&status.stdout()).ok()?;
        (json["cluster"]["hosts"].as_array()?.len() == 2).then_some(json)
    })
    .unwrap_or_else(|| panic!("the hosts are not shown:\n{}", hosts.logs()));
    let cluster = &shown["cluster"];
    assert_eq!(cluster["host_id"], "h1");
    assert_eq!(cluster["lease_seconds"], 3);
    assert_eq!(cluster["available"], true);
    let h2 = &cluster["hosts"][1];
    assert_eq!(h2["host_id"], "h2");
    assert_eq!(h2["other_jobfile"], true);
    assert_eq!(h2["alive"], true);
    assert_ne!(h2["jobfile_hash"], cluster["jobfile_hash"]);
    assert_eq!(cluster["hosts"][0]["other_jobfile"], false);
    let problems = shown["problems"].to_string();
    assert!(
        problems.contains("host h2 runs another jobfile"),
        "{problems}"
    );
    let text = dir.jobctl(&["status"]).stdout();
    assert!(text.contains("OTHER JOBFILE"), "{text}");
    assert!(
        text.contains("PROBLEM: cluster: host h2 runs another jobfile"),
        "{text}"
    );
    // A host that stopped is shown gone.
    hosts.hosts[1].jobd.take().unwrap().stop();
    let dir = &hosts.hosts[0].dir;
    let gone = eventually(T, || dir.jobctl(&["status"]).stdout().contains("gone"));
    assert!(gone, "{}", dir.jobctl(&["status"]).stdout());
    hosts.stop_all();
}

#[test]
fn migrate_creates_the_schema_once_and_says_so() {
    let Some(pg) = PgServer::start("migrate_creates_the_schema_once") else {
        return;
    };
    let dir = Dir::new(&jobfile(&pg, "30s", "jobs: {}\n"));
    let first = dir.jobd(&["migrate"]);
    first.code(0);
    assert!(
        first
            .stdout()
            .contains("created the jobd schema at version 1"),
        "{}",
        first.stdout()
    );
    let again = dir.jobd(&["migrate"]);
    again.code(0);
    assert!(
        again.stdout().contains("up to date (version 1)"),
        "{}",
        again.stdout()
    );
    let plain = Dir::new("jobs: {}\n");
    let refused = plain.jobd(&["migrate"]);
    refused.code(1);
    assert!(
        refused.stderr().contains("has no `cluster:` section"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn without_its_database_a_host_runs_local_jobs_and_says_why() {
    let Some(_) = PgServer::libpq("without_its_database_a_host_runs_local_jobs") else {
        return;
    };
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Dir::new(&format!(
        "cluster:\n  database_url: \"postgresql://nobody@127.0.0.1:{port}/none\"\n  host_id: lonely\n\
         jobs:\n  here:\n    every: 200ms\n    cluster: local\n    command: 'echo x >> here'\n\
         \x20 everywhere:\n    every: 200ms\n    command: 'echo x >> everywhere'\n"
    ));
    let jobd = dir.start(&[]);
    assert!(
        eventually(T, || dir.lines("here").len() >= 3),
        "{}",
        jobd.log()
    );
    let status = dir.jobctl(&["status"]);
    status.code(0);
    let text = status.stdout();
    assert!(
        text.contains("PROBLEM: cluster: the database is unreachable"),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) || text.contains("Connection refused"),
        "{text}"
    );
    assert!(text.contains("NOT claiming"), "{text}");
    assert!(
        dir.lines("everywhere").is_empty(),
        "a shared job ran without its database"
    );
}
