//! The PostgreSQL client and cluster mode's SQL against a real server (see pgserver.rs;
//! skipped with a message when PostgreSQL is not installed, unless
//! JOBD_REQUIRE_POSTGRES=1).

use std::os::fd::BorrowedFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use jobd::adapter::cluster::leases::{Heartbeat, HeartbeatReply, Rescue, Rescued};
use jobd::adapter::cluster::oneoff::{
    ClaimOneoffs, FinishOneoff, Listening, NextOneoff, OneoffFinished, Submit,
};
use jobd::adapter::cluster::scheduled::{
    Claim, ClaimInstant, FinishRun, LastRun, Overlap, StartRun,
};
use jobd::adapter::cluster::schema::{MigrateError, Migrated, latest, migrate};
use jobd::adapter::cluster::status::{HostList, Prune};
use jobd::adapter::cluster::{ONEOFF_CHANNEL, STOP_CHANNEL, run_blocking};
use jobd::adapter::postgres::{Error, Event, Libpq, Query, Ready, SendError, Session, Settings};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::json;

use crate::pgserver::{self, PgServer};

const T: Duration = Duration::from_secs(30);

fn lib() -> &'static Libpq {
    Libpq::system().expect("libpq loads")
}

fn connect(conninfo: &str) -> Session {
    Session::connect_blocking(lib(), Settings::new(conninfo), T)
        .unwrap_or_else(|e| panic!("connecting with {conninfo}: {e}"))
}

fn scalar(session: &mut Session, sql: &str) -> String {
    let rows = session.exec_blocking(&Query::new(sql), T).unwrap();
    rows.iter()
        .next()
        .unwrap()
        .text(&rows.columns()[0])
        .unwrap()
}

#[test]
fn connects_with_a_uri_and_with_keywords_and_names_a_wrong_password() {
    let Some(pg) = PgServer::start("connects_with_a_uri_and_with_keywords") else {
        return;
    };
    let mut tcp = connect(&pg.uri());
    assert_eq!(scalar(&mut tcp, "SELECT current_user"), "jobd_test");
    let mut unix = connect(&pg.socket_conninfo());
    assert_eq!(scalar(&mut unix, "SELECT 1 + 1"), "2");
    assert_eq!(
        scalar(
            &mut unix,
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ),
        "jobd"
    );

    // libpq's own options work through the non-blocking connect: a password file, and
    // several hosts tried in turn (the first refuses) for a read-write server.
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!(
            "127.0.0.1:{}:*:jobd_test:{}\n",
            pg.port(),
            pgserver::PASSWORD
        ),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = refused.local_addr().unwrap().port();
    drop(refused);
    let mut failover = connect(&format!(
        "host=127.0.0.1,127.0.0.1 port={dead_port},{} dbname=postgres user=jobd_test \
         passfile={} target_session_attrs=read-write",
        pg.port(),
        passfile.display()
    ));
    assert_eq!(
        scalar(&mut failover, "SELECT inet_server_port()"),
        pg.port().to_string()
    );

    let wrong = Session::connect_blocking(lib(), Settings::new(&pg.uri_with_password("nope")), T);
    let message = match wrong {
        Err(Error::Unavailable { message, .. }) => message,
        Err(e) => panic!("not a connection error: {e:?}"),
        Ok(_) => panic!("a wrong password connected"),
    };
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(
        message.contains(&format!("127.0.0.1:{}", pg.port())),
        "{message}"
    );
    assert!(!message.contains("nope"), "the password leaks: {message}");
}

#[test]
fn a_missing_libpq_is_an_error_naming_the_package() {
    let error = Libpq::open("libpq-does-not-exist.so.5")
        .err()
        .expect("no such library");
    let message = error.to_string();
    assert!(message.contains("libpq5"), "{message}");
    assert!(message.contains("libpq-does-not-exist.so.5"), "{message}");
}

#[test]
fn queries_fail_with_the_servers_reason_and_the_session_goes_on() {
    let Some(pg) = PgServer::start("queries_fail_with_the_servers_reason") else {
        return;
    };
    let mut session = connect(&pg.socket_conninfo());
    let error = session
        .exec_blocking(&Query::new("SELECT * FROM no_such_table"), T)
        .unwrap_err();
    match &error {
        Error::Query(e) => assert_eq!(e.sqlstate, "42P01", "{e}"),
        e => panic!("{e:?}"),
    }
    assert!(error.to_string().contains("no_such_table"), "{error}");
    let rows = session
        .exec_blocking(
            &Query::new("SELECT $1::int + $2::int AS sum, $3::text AS nothing")
                .bind(2)
                .bind(3)
                .bind(None::<String>),
            T,
        )
        .unwrap();
    let row = rows.first("the sum").unwrap();
    assert_eq!(row.i64("sum").unwrap(), 5);
    assert_eq!(row.opt_text("nothing").unwrap(), None);
}

/// One turn of a daemon-like loop over `session`: poll its socket (or sleep to its
/// deadline) for at most `step`, then advance it.
fn turn(session: &mut Session, step: Duration) -> Vec<Event> {
    let interest = session.interest();
    let now = Instant::now();
    let wait = interest
        .deadline
        .map_or(step, |d| d.saturating_duration_since(now).min(step));
    let ready = match interest.fd {
        Some(fd) => {
            // SAFETY: the session's socket stays open during this poll.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut fds = [PollFd::new(fd, interest.events)];
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) => Ready::from_revents(fds[0].revents().unwrap_or(PollFlags::empty())),
                Err(_) => Ready::default(),
            }
        }
        None => {
            std::thread::sleep(wait);
            Ready::default()
        }
    };
    session.advance(Instant::now(), ready)
}

/// Turn the loop until `pick` accepts an event, at most `within`.
fn until_event<T>(
    session: &mut Session,
    within: Duration,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let end = Instant::now() + within;
    while Instant::now() < end {
        for event in turn(session, Duration::from_millis(50)) {
            if let Some(found) = pick(event) {
                return found;
            }
        }
    }
    panic!("no such event within {within:?}");
}

#[test]
fn a_query_driven_by_poll_never_blocks_the_loop() {
    let Some(pg) = PgServer::start("a_query_driven_by_poll_never_blocks_the_loop") else {
        return;
    };
    let mut session = Session::new(lib(), Settings::new(&pg.uri()));
    until_event(&mut session, T, |e| {
        matches!(e, Event::Connected).then_some(())
    });
    assert!(session.is_idle());
    let query = Query::new("SELECT pg_sleep(1), 42 AS answer");
    session.send(&query, Instant::now()).unwrap();
    assert!(!session.is_idle());
    assert_eq!(
        session.send(&query, Instant::now()),
        Err(SendError::NotReady)
    );
    // While the server sleeps, the loop keeps turning (every 10 ms on an idle machine; a
    // loaded one only slows it down).
    let started = Instant::now();
    let mut turns = 0;
    let rows = loop {
        turns += 1;
        let events = turn(&mut session, Duration::from_millis(10));
        if let Some(Event::Done(result)) = events.into_iter().next() {
            break result.unwrap();
        }
        assert!(started.elapsed() < T, "no result");
    };
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert!(
        turns >= 5,
        "the loop turned only {turns} times while the query ran"
    );
    assert_eq!(rows.first("the answer").unwrap().i64("answer").unwrap(), 42);
    assert!(session.is_idle());
}

#[test]
fn a_slow_query_gives_up_the_connection_and_the_session_reconnects() {
    let Some(pg) = PgServer::start("a_slow_query_gives_up_the_connection") else {
        return;
    };
    let mut settings = Settings::new(&pg.uri());
    settings.query_timeout = Duration::from_millis(300);
    settings.min_backoff = Duration::from_millis(50);
    let mut session = Session::new(lib(), settings);
    until_event(&mut session, T, |e| {
        matches!(e, Event::Connected).then_some(())
    });
    let sent = Instant::now();
    session
        .send(&Query::new("SELECT pg_sleep(10)"), sent)
        .unwrap();
    let error = until_event(&mut session, T, |e| match e {
        Event::Broken { error, in_flight } => {
            assert!(in_flight, "the query was on the wire");
            Some(error)
        }
        Event::Done(result) => panic!("the sleep finished: {result:?}"),
        Event::Connected => None,
    });
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "gave up only after {:?}",
        sent.elapsed()
    );
    assert!(error.contains("did not answer within 300ms"), "{error}");
    until_event(&mut session, T, |e| {
        matches!(e, Event::Connected).then_some(())
    });
    assert_eq!(scalar(&mut session, "SELECT 'back'"), "back");
}

#[test]
fn a_server_that_never_answers_times_out_the_connect() {
    let Some(lib) = PgServer::libpq("a_server_that_never_answers") else {
        return;
    };
    // The kernel completes the TCP handshake into the backlog; nobody ever reads the
    // startup packet.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut settings = Settings::new(&format!("host=127.0.0.1 port={port} user=x dbname=x"));
    settings.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let mut session = Session::new(lib, settings);
    let error = until_event(&mut session, T, |e| match e {
        Event::Broken { error, .. } => Some(error),
        other => panic!("{other:?}"),
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.contains("no answer within 300ms"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!session.is_connected());
    assert_eq!(session.down_reason(), Some(error.as_str()));
}

#[test]
fn notifications_arrive_and_the_listener_recovers_after_a_restart() {
    let Some(pg) = PgServer::start("notifications_arrive_and_the_listener_recovers") else {
        return;
    };
    let mut setup = connect(&pg.uri());
    migrate(&mut setup, T).unwrap();
    let mut settings = Settings::new(&pg.uri());
    settings.listen = vec![ONEOFF_CHANNEL.to_string()];
    let mut listener = Session::new(lib(), settings);
    until_event(&mut listener, T, |e| {
        matches!(e, Event::Connected).then_some(())
    });

    let submit = Submit::task("report");
    run_blocking(&mut setup, &submit, T).unwrap();
    let notification = listener.wait_notification(T).unwrap();
    assert_eq!(notification.channel, ONEOFF_CHANNEL);
    assert_eq!(notification.payload, "");

    pg.restart();
    // The listener notices, waits its backoff, reconnects and LISTENs again.
    until_event(&mut listener, T, |e| match e {
        Event::Broken { in_flight, .. } => {
            assert!(!in_flight);
            Some(())
        }
        _ => None,
    });
    assert!(listener.down_reason().is_some());
    until_event(&mut listener, T, |e| {
        matches!(e, Event::Connected).then_some(())
    });
    assert!(listener.down_reason().is_none());
    assert!(
        run_blocking(
            &mut listener,
            &Listening {
                channel: ONEOFF_CHANNEL.into()
            },
            T
        )
        .unwrap()
    );

    // The other session broke too: its next query fails, the one after reconnects.
    let mut submitted = false;
    for _ in 0..50 {
        match run_blocking(&mut setup, &submit, T) {
            Ok(_) => {
                submitted = true;
                break;
            }
            Err(Error::Unavailable { .. }) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(submitted, "no reconnect after the restart");
    let notification = listener.wait_notification(T).unwrap();
    assert_eq!(notification.channel, ONEOFF_CHANNEL);
}

#[test]
fn migration_is_idempotent_concurrent_and_refuses_a_newer_schema() {
    let Some(pg) = PgServer::start("migration_is_idempotent_concurrent") else {
        return;
    };
    let uri = pg.uri();
    let results: Vec<Migrated> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let uri = uri.clone();
                scope.spawn(move || migrate(&mut connect(&uri), T).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut froms: Vec<i32> = results.iter().map(|m| m.from).collect();
    froms.sort();
    assert_eq!(
        froms,
        vec![0, latest()],
        "one migrated, the other found it done"
    );
    assert!(results.iter().all(|m| m.to == latest()));

    let mut session = connect(&uri);
    assert_eq!(
        migrate(&mut session, T).unwrap(),
        Migrated {
            from: latest(),
            to: latest()
        }
    );
    assert_eq!(
        scalar(&mut session, "SELECT count(*) FROM jobd.schema_version"),
        latest().to_string()
    );

    // A newer jobd's additive step is fine; one that needs a newer jobd is refused.
    let newer = latest() + 1;
    session
        .exec_blocking(
            &Query::new("INSERT INTO jobd.schema_version VALUES ($1::int, 1, 'additive')")
                .bind(newer),
            T,
        )
        .unwrap();
    assert_eq!(
        migrate(&mut session, T).unwrap(),
        Migrated {
            from: newer,
            to: newer
        }
    );
    session
        .exec_blocking(
            &Query::new("INSERT INTO jobd.schema_version VALUES ($1::int, $1::int, 'breaking')")
                .bind(newer + 1),
            T,
        )
        .unwrap();
    let error = migrate(&mut session, T).unwrap_err();
    assert!(matches!(error, MigrateError::TooNew { .. }), "{error}");
    assert!(error.to_string().contains("upgrade jobd"), "{error}");
    // The failed migration left no transaction open.
    assert_eq!(scalar(&mut session, "SELECT 7"), "7");
}

/// A migrated database and a session on it.
fn migrated(pg: &PgServer) -> Session {
    let mut session = connect(&pg.uri());
    migrate(&mut session, T).unwrap();
    session
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap()
}

/// Now on the database's clock, whole seconds, for instants the claim window accepts.
fn db_now(session: &mut Session) -> i64 {
    scalar(session, "SELECT floor(extract(epoch FROM now()))::bigint")
        .parse()
        .unwrap()
}

fn claim(
    host: &str,
    job: &str,
    instant: DateTime<Utc>,
    max: u32,
    overlap: Overlap,
) -> ClaimInstant {
    ClaimInstant {
        job: job.to_string(),
        scheduled_at: instant,
        host_id: host.to_string(),
        lease: Duration::from_secs(60),
        max_instances: max,
        on_overlap: overlap,
        window: Duration::from_secs(3600),
    }
}

fn start(host: &str, run_id: i64) -> StartRun {
    StartRun {
        run_id,
        host_id: host.to_string(),
        lease: Duration::from_secs(60),
    }
}

fn finish(host: &str, run_id: i64, outcome: &str) -> FinishRun {
    FinishRun {
        run_id,
        host_id: host.to_string(),
        outcome: outcome.to_string(),
        exit_code: Some(0),
        lease: Duration::from_secs(60),
    }
}

#[test]
fn three_hosts_racing_for_1000_instants_claim_each_exactly_once() {
    let Some(pg) = PgServer::start("three_hosts_racing_for_1000_instants") else {
        return;
    };
    let mut setup = migrated(&pg);
    let base = db_now(&mut setup) - 1000;
    let barrier = Barrier::new(3);
    let wins: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|host| {
                let (uri, barrier) = (pg.uri(), &barrier);
                scope.spawn(move || {
                    let mut session = connect(&uri);
                    let mut won = Vec::new();
                    for i in 0..1000 {
                        barrier.wait();
                        let op = claim(host, "tick", at(base + i), 1, Overlap::Skip);
                        match run_blocking(&mut session, &op, T).unwrap() {
                            Claim::Start { run_id, slot } => {
                                assert_eq!(slot, 0);
                                assert!(
                                    run_blocking(&mut session, &start(host, run_id), T).unwrap()
                                );
                                let done =
                                    run_blocking(&mut session, &finish(host, run_id, "success"), T)
                                        .unwrap();
                                assert!(done.recorded && done.next.is_none());
                                won.push(i);
                            }
                            Claim::Taken => {}
                            other => panic!("{host}: instant {i}: {other:?}"),
                        }
                    }
                    won
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<i64> = wins.iter().flatten().copied().collect();
    all.sort();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "each instant claimed exactly once"
    );
    assert_eq!(
        scalar(
            &mut setup,
            "SELECT count(*) FROM jobd.runs WHERE state = 'finished'"
        ),
        "1000"
    );
    eprintln!(
        "claims won per host: {:?}",
        wins.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn max_instances_and_on_overlap_hold_across_connections() {
    let Some(pg) = PgServer::start("max_instances_and_on_overlap_hold") else {
        return;
    };
    let mut setup = migrated(&pg);
    let [mut a, mut b, mut c] = [connect(&pg.uri()), connect(&pg.uri()), connect(&pg.uri())];
    let t = db_now(&mut setup) - 100;

    // skip, max_instances 2: two start, the third is skipped, a freed slot is reused.
    let run = |s: &mut Session, op: &ClaimInstant| run_blocking(s, op, T).unwrap();
    let Claim::Start {
        run_id: s1,
        slot: 0,
    } = run(&mut a, &claim("a", "s", at(t), 2, Overlap::Skip))
    else {
        panic!("first instant not started");
    };
    let Claim::Start { slot: 1, .. } = run(&mut b, &claim("b", "s", at(t + 1), 2, Overlap::Skip))
    else {
        panic!("second instant not started in slot 1");
    };
    assert!(matches!(
        run(&mut c, &claim("c", "s", at(t + 2), 2, Overlap::Skip)),
        Claim::Skipped { .. }
    ));
    assert!(
        run_blocking(&mut a, &finish("a", s1, "success"), T)
            .unwrap()
            .recorded
    );
    assert!(matches!(
        run(&mut c, &claim("c", "s", at(t + 3), 2, Overlap::Skip)),
        Claim::Start { slot: 0, .. }
    ));

    // queue, max_instances 1: one waits, a newer one supersedes it, the finishing host
    // gets it.
    let Claim::Start { run_id: q1, .. } = run(&mut a, &claim("a", "q", at(t), 1, Overlap::Queue))
    else {
        panic!("not started");
    };
    assert!(run_blocking(&mut a, &start("a", q1), T).unwrap());
    let Claim::Queued { run_id: q2 } = run(&mut b, &claim("b", "q", at(t + 1), 1, Overlap::Queue))
    else {
        panic!("not queued");
    };
    let Claim::Queued { run_id: q3 } = run(&mut c, &claim("c", "q", at(t + 2), 1, Overlap::Queue))
    else {
        panic!("not queued");
    };
    let state = |s: &mut Session, id: i64| {
        let rows = s
            .exec_blocking(
                &Query::new("SELECT state, outcome FROM jobd.runs WHERE id = $1::bigint").bind(id),
                T,
            )
            .unwrap();
        let row = rows.first("the run").unwrap();
        (row.text("state").unwrap(), row.opt_text("outcome").unwrap())
    };
    assert_eq!(
        state(&mut setup, q2),
        ("skipped".into(), Some("superseded".into()))
    );
    let done = run_blocking(&mut a, &finish("a", q1, "success"), T).unwrap();
    let next = done.next.expect("the queued run is handed over");
    assert_eq!((next.run_id, next.job.as_str(), next.slot), (q3, "q", 0));
    assert_eq!(next.scheduled_at, at(t + 2));
    assert!(run_blocking(&mut a, &start("a", q3), T).unwrap());
    assert!(
        !run_blocking(&mut c, &start("c", q3), T).unwrap(),
        "the claimer no longer owns it"
    );

    // replace, max_instances 1: the holder is asked to stop (by NOTIFY and by its
    // heartbeat); its finish hands the slot to the replacement.
    let mut settings = Settings::new(&pg.uri());
    settings.listen = vec![STOP_CHANNEL.to_string()];
    let mut listener = Session::connect_blocking(lib(), settings, T).unwrap();
    let Claim::Start { run_id: r1, .. } = run(&mut a, &claim("a", "r", at(t), 1, Overlap::Replace))
    else {
        panic!("not started");
    };
    assert!(run_blocking(&mut a, &start("a", r1), T).unwrap());
    let Claim::Replace {
        run_id: r2,
        stop_run,
        stop_host,
    } = run(&mut b, &claim("b", "r", at(t + 1), 1, Overlap::Replace))
    else {
        panic!("not replacing");
    };
    assert_eq!((stop_run, stop_host.as_str()), (r1, "a"));
    assert_eq!(
        listener.wait_notification(T).unwrap().payload,
        r1.to_string()
    );
    let reply = run_blocking(&mut a, &heartbeat("a", vec![r1], vec![]), T).unwrap();
    assert_eq!(reply.stop, vec![r1]);
    let done = run_blocking(&mut a, &finish("a", r1, "replaced"), T).unwrap();
    assert_eq!(done.next.map(|n| n.run_id), Some(r2));
    assert_eq!(
        state(&mut setup, r1),
        ("finished".into(), Some("replaced".into()))
    );

    // Too old for the window: nobody claims it.
    let mut late = claim("a", "s", at(t - 3600), 2, Overlap::Skip);
    late.window = Duration::from_secs(5);
    assert_eq!(run(&mut a, &late), Claim::TooLate);
    // A host whose clock is ahead of the database's claims nothing early.
    let early = claim("a", "s", at(t + 100 + 30), 2, Overlap::Skip);
    assert_eq!(run(&mut a, &early), Claim::TooEarly);
}

fn heartbeat(host: &str, runs: Vec<i64>, oneoffs: Vec<i64>) -> Heartbeat {
    Heartbeat {
        host_id: host.to_string(),
        jobfile_hash: format!("hash-of-{host}"),
        lease: Duration::from_secs(1),
        runs,
        oneoffs,
        starting: false,
    }
}

/// Wait for `check` in short steps, at most `within`.
fn eventually<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn heartbeats_renew_leases_and_a_rescue_acts_once_they_run_out() {
    let Some(pg) = PgServer::start("heartbeats_renew_leases_and_a_rescue_acts") else {
        return;
    };
    let mut a = migrated(&pg);
    let mut b = connect(&pg.uri());
    let t = db_now(&mut a) - 10;
    // Long enough that a loaded machine never stalls a heartbeat past it, short enough
    // to wait for.
    let lease = Duration::from_secs(4);
    let mut claim_short = |job: &str, instant: i64, overlap: Overlap| {
        let mut op = claim("a", job, at(instant), 1, overlap);
        op.lease = lease;
        run_blocking(&mut a, &op, T).unwrap()
    };
    // On host a: a running run with a queued one behind it, a claimed run never
    // started, a running run of an on_host_loss: rerun job, and a running one-off.
    let Claim::Start {
        run_id: running, ..
    } = claim_short("q", t, Overlap::Queue)
    else {
        panic!()
    };
    let Claim::Queued { run_id: queued } = claim_short("q", t + 1, Overlap::Queue) else {
        panic!()
    };
    let Claim::Start {
        run_id: unstarted, ..
    } = claim_short("u", t, Overlap::Skip)
    else {
        panic!()
    };
    let Claim::Start { run_id: rerun, .. } = claim_short("r", t, Overlap::Skip) else {
        panic!()
    };
    for id in [running, rerun] {
        assert!(
            run_blocking(
                &mut a,
                &StartRun {
                    run_id: id,
                    host_id: "a".into(),
                    lease
                },
                T
            )
            .unwrap()
        );
    }
    run_blocking(&mut a, &Submit::task("mail"), T).unwrap();
    let claimed = run_blocking(&mut a, &claim_oneoffs("a", lease, 10), T).unwrap();
    assert_eq!(claimed.len(), 1);
    let oneoff = claimed[0].id;
    let runs = vec![running, unstarted, rerun];
    let rescue = Rescue {
        host_id: "b".into(),
        lease: Duration::from_secs(60),
        rerun_jobs: vec!["r".into()],
        limit: 100,
    };

    // Heartbeats every 250 ms keep everything a's for well over a lease.
    let beat = Heartbeat {
        lease,
        ..heartbeat("a", runs.clone(), vec![oneoff])
    };
    let first = Heartbeat {
        starting: true,
        ..beat.clone()
    };
    assert_eq!(
        run_blocking(&mut a, &first, T).unwrap(),
        HeartbeatReply::default()
    );
    let until = Instant::now() + lease * 3 / 2;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        let reply = run_blocking(&mut a, &beat, T).unwrap();
        assert_eq!(
            reply,
            HeartbeatReply::default(),
            "a lease lapsed under heartbeats"
        );
        assert_eq!(run_blocking(&mut b, &rescue, T).unwrap(), vec![]);
    }
    let hosts = run_blocking(&mut b, &HostList, T).unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].alive && hosts[0].jobfile_hash == "hash-of-a");

    // a goes silent: once the leases run out, b's rescue acts on each item once.
    let mut found = Vec::new();
    eventually(Duration::from_secs(30), || {
        found.extend(run_blocking(&mut b, &rescue, T).unwrap());
        (found.len() >= 5).then_some(())
    })
    .unwrap_or_else(|| panic!("the rescue found only {found:?}"));
    let has = |kind: Rescued, id: i64| found.iter().any(|r| r.kind == kind && r.id == id);
    assert!(has(Rescued::Requeued, oneoff), "{found:?}");
    assert!(has(Rescued::Lost, running), "{found:?}");
    assert!(has(Rescued::Promoted, queued), "{found:?}");
    assert!(has(Rescued::Takeover, unstarted), "{found:?}");
    assert!(has(Rescued::Rerun, rerun), "{found:?}");
    assert_eq!(found.len(), 5, "{found:?}");
    let lost = found.iter().find(|r| r.kind == Rescued::Lost).unwrap();
    assert_eq!(
        (lost.name.as_str(), lost.previous_host.as_deref()),
        ("q", Some("a"))
    );
    assert_eq!(
        found
            .iter()
            .find(|r| r.kind == Rescued::Rerun)
            .unwrap()
            .attempt,
        2
    );
    assert_eq!(
        run_blocking(&mut b, &rescue, T).unwrap(),
        vec![],
        "acted on once"
    );
    assert!(!run_blocking(&mut b, &HostList, T).unwrap()[0].alive);

    // a comes back: its heartbeat tells it what it lost; nothing it does counts.
    let reply = run_blocking(&mut a, &heartbeat("a", runs.clone(), vec![oneoff]), T).unwrap();
    let mut lost_runs = reply.lost_runs.clone();
    lost_runs.sort();
    let mut expected = runs.clone();
    expected.sort();
    assert_eq!(lost_runs, expected);
    assert_eq!(reply.lost_oneoffs, vec![oneoff]);
    assert!(
        !run_blocking(&mut a, &finish("a", running, "success"), T)
            .unwrap()
            .recorded
    );
    assert!(!run_blocking(&mut a, &start("a", unstarted), T).unwrap());
    // b owns what it was handed, and the one-off runs again with its attempt counted.
    for id in [queued, unstarted, rerun] {
        assert!(
            run_blocking(&mut b, &start("b", id), T).unwrap(),
            "run {id}"
        );
    }
    let again = run_blocking(&mut b, &claim_oneoffs("b", Duration::from_secs(60), 10), T).unwrap();
    assert_eq!((again.len(), again[0].id, again[0].attempt), (1, oneoff, 2));
}

fn claim_oneoffs(host: &str, lease: Duration, limit: u32) -> ClaimOneoffs {
    ClaimOneoffs {
        host_id: host.to_string(),
        lease,
        tasks: vec!["mail".into(), "report".into()],
        limit,
    }
}

#[test]
fn three_hosts_claim_2000_oneoffs_with_skip_locked_each_once() {
    let Some(pg) = PgServer::start("three_hosts_claim_2000_oneoffs") else {
        return;
    };
    let mut setup = migrated(&pg);
    setup
        .exec_blocking(
            &Query::new(
                "SELECT count(*) FROM generate_series(1, 2000) AS n,
                        LATERAL jobd.submit('mail', jsonb_build_array(n::text))",
            ),
            T,
        )
        .unwrap();
    let claimed: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|host| {
                let uri = pg.uri();
                scope.spawn(move || {
                    let mut session = connect(&uri);
                    let mut mine = Vec::new();
                    loop {
                        let op = claim_oneoffs(host, Duration::from_secs(60), 7);
                        let batch = run_blocking(&mut session, &op, T).unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        for job in batch {
                            assert_eq!(job.attempt, 1);
                            let finish = FinishOneoff {
                                id: job.id,
                                host_id: host.to_string(),
                                success: true,
                                result: json!({"args": job.args}),
                                max_attempts: 1,
                                retry_delay: Duration::from_secs(1),
                            };
                            assert_eq!(
                                run_blocking(&mut session, &finish, T).unwrap(),
                                OneoffFinished::Done
                            );
                            mine.push(job.id);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (total, all.len()),
        (2000, 2000),
        "each claimed once, none missed"
    );
    assert_eq!(
        scalar(
            &mut setup,
            "SELECT count(*) FROM jobd.oneoffs WHERE state = 'done'"
        ),
        "2000"
    );
    eprintln!(
        "one-offs per host: {:?}",
        claimed.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn oneoffs_ingest_by_origin_once_wait_for_their_time_and_retry_with_backoff() {
    let Some(pg) = PgServer::start("oneoffs_ingest_by_origin_once") else {
        return;
    };
    let mut s = migrated(&pg);
    let mut spool = Submit::task("report");
    spool.origin = Some("host-a/report-42.json".into());
    spool.args = vec!["--month".into(), "2026-10".into()];
    spool.data = Some(json!({"user": 7}));
    spool.max_attempts = Some(3);
    let first = run_blocking(&mut s, &spool, T).unwrap();
    let again = run_blocking(&mut s, &spool, T).unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.id, again.id);
    assert_eq!(scalar(&mut s, "SELECT count(*) FROM jobd.oneoffs"), "1");

    // A delayed one is not claimed before its time; the next due time is on the
    // database's clock.
    let mut later = Submit::task("mail");
    later.delay = Some(Duration::from_secs(3600));
    run_blocking(&mut s, &later, T).unwrap();
    let next = NextOneoff {
        tasks: vec!["mail".into()],
    };
    let due = run_blocking(&mut s, &next, T).unwrap().unwrap();
    assert!(
        due > Duration::from_secs(3500) && due <= Duration::from_secs(3600),
        "{due:?}"
    );
    let nothing = NextOneoff {
        tasks: vec!["unknown".into()],
    };
    assert_eq!(run_blocking(&mut s, &nothing, T).unwrap(), None);

    // Fail, retry after 100 ms, then 200 ms, then fail for good at the third attempt.
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let job = eventually(Duration::from_secs(30), || {
            run_blocking(&mut s, &claim_oneoffs("a", Duration::from_secs(60), 5), T)
                .unwrap()
                .pop()
        })
        .expect("the retry comes due");
        assert_eq!((job.task.as_str(), job.attempt), ("report", attempt));
        assert_eq!(job.args, json!(["--month", "2026-10"]));
        assert_eq!(job.data, json!({"user": 7}));
        let failed = FinishOneoff {
            id: job.id,
            host_id: "a".into(),
            success: false,
            result: json!({"errors": attempt}),
            max_attempts: 1,
            retry_delay: Duration::from_millis(100),
        };
        let outcome = run_blocking(&mut s, &failed, T).unwrap();
        match outcome {
            OneoffFinished::Retrying { run_at } => delays.push(run_at),
            OneoffFinished::Failed => assert_eq!(attempt, 3),
            other => panic!("{other:?}"),
        }
        assert!(job.result == json!(null) || job.result == json!({"errors": attempt - 1}));
    }
    assert_eq!(delays.len(), 2);
    // The second attempt started after the first retry was due, and waits twice as long.
    assert!(
        delays[1] - delays[0] >= chrono::Duration::milliseconds(200),
        "{delays:?}"
    );
    assert_eq!(
        scalar(
            &mut s,
            "SELECT state FROM jobd.oneoffs WHERE origin IS NOT NULL"
        ),
        "failed"
    );
}

#[test]
fn last_run_hosts_and_pruning_keep_what_claims_need() {
    let Some(pg) = PgServer::start("last_run_hosts_and_pruning") else {
        return;
    };
    let mut s = migrated(&pg);
    let now = db_now(&mut s);
    assert_eq!(
        run_blocking(
            &mut s,
            &LastRun {
                job: "nightly".into()
            },
            T
        )
        .unwrap(),
        None
    );
    let mut ids = Vec::new();
    for days_ago in [5, 4, 3] {
        let mut op = claim(
            "a",
            "nightly",
            at(now - days_ago * 86_400),
            1,
            Overlap::Skip,
        );
        op.window = Duration::from_secs(10 * 86_400);
        let Claim::Start { run_id, .. } = run_blocking(&mut s, &op, T).unwrap() else {
            panic!()
        };
        run_blocking(&mut s, &finish("a", run_id, "success"), T).unwrap();
        ids.push(run_id);
    }
    let last = run_blocking(
        &mut s,
        &LastRun {
            job: "nightly".into(),
        },
        T,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (last.run_id, last.scheduled_at),
        (ids[2], at(now - 3 * 86_400))
    );
    assert_eq!(last.state, "finished");

    let short = Prune {
        keep: Duration::from_secs(3600),
        limit: 100,
    };
    let error = run_blocking(&mut s, &short, T).unwrap_err();
    assert!(error.to_string().contains("too short"), "{error}");
    let prune = Prune {
        keep: Duration::from_secs(86_400),
        limit: 100,
    };
    let pruned = run_blocking(&mut s, &prune, T).unwrap();
    assert_eq!(pruned.runs, 2, "the job's newest row stays, however old");
    let last = run_blocking(
        &mut s,
        &LastRun {
            job: "nightly".into(),
        },
        T,
    )
    .unwrap()
    .unwrap();
    assert_eq!(last.run_id, ids[2]);
    // A pruned instant stays claimed for anyone inside the window, and the window
    // keeps old ones out.
    let mut op = claim("b", "nightly", at(now - 5 * 86_400), 1, Overlap::Skip);
    op.window = Duration::from_secs(60);
    assert_eq!(run_blocking(&mut s, &op, T).unwrap(), Claim::TooLate);

    run_blocking(&mut s, &heartbeat("b", vec![], vec![]), T).unwrap();
    run_blocking(&mut s, &heartbeat("a", vec![], vec![]), T).unwrap();
    let mut other = heartbeat("c", vec![], vec![]);
    other.jobfile_hash = "hash-of-a".into();
    run_blocking(&mut s, &other, T).unwrap();
    let hosts = run_blocking(&mut s, &HostList, T).unwrap();
    let names: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| (h.host_id.as_str(), h.jobfile_hash.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("a", "hash-of-a"), ("b", "hash-of-b"), ("c", "hash-of-a")]
    );
    assert!(
        hosts
            .iter()
            .all(|h| h.alive && h.seen_ago < Duration::from_secs(30))
    );
}

#[test]
fn a_oneoff_whose_host_is_lost_again_and_again_fails_at_its_third_attempt() {
    let Some(pg) = PgServer::start("a_oneoff_whose_host_is_lost_again") else {
        return;
    };
    let mut a = migrated(&pg);
    let mut b = connect(&pg.uri());
    let id = run_blocking(&mut a, &Submit::task("mail"), T)
        .unwrap()
        .id
        .unwrap();
    let rescue = Rescue {
        host_id: "b".into(),
        lease: Duration::from_secs(60),
        rerun_jobs: vec![],
        limit: 100,
    };
    // Each attempt's host dies (no heartbeat): its lease of a second runs out.
    let mut kinds = Vec::new();
    for attempt in 1..=3 {
        let claimed = eventually(Duration::from_secs(30), || {
            let claimed =
                run_blocking(&mut a, &claim_oneoffs("a", Duration::from_secs(1), 1), T).unwrap();
            claimed.first().map(|oneoff| oneoff.attempt)
        });
        assert_eq!(claimed, Some(attempt));
        let rescued = eventually(Duration::from_secs(30), || {
            run_blocking(&mut b, &rescue, T).unwrap().into_iter().next()
        })
        .unwrap();
        assert_eq!((rescued.id, rescued.attempt), (id, attempt));
        kinds.push(rescued.kind);
    }
    assert_eq!(
        kinds,
        [Rescued::Requeued, Rescued::Requeued, Rescued::Abandoned]
    );
    assert_eq!(
        scalar(
            &mut b,
            &format!(
                "SELECT state || ' ' || (result->>'outcome') FROM jobd.oneoffs WHERE id = {id}"
            )
        ),
        "failed lost"
    );
    let reason = scalar(
        &mut b,
        &format!("SELECT result->>'reason' FROM jobd.oneoffs WHERE id = {id}"),
    );
    assert!(reason.contains("attempt 3 of 3"), "{reason}");
    // Not claimed again.
    assert!(
        run_blocking(&mut a, &claim_oneoffs("a", Duration::from_secs(1), 1), T)
            .unwrap()
            .is_empty()
    );
}
