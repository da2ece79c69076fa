//! The PostgreSQL client and cluster mode's SQL against a real server (see pgserver.rs;
//! skipped with a message when PostgreSQL is not installed, unless
//! JOBD_REQUIRE_POSTGRES=1).

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use jobd::adapter::cluster::oneoff::{Listening, Submit};
use jobd::adapter::cluster::schema::{MigrateError, Migrated, latest, migrate};
use jobd::adapter::cluster::{ONEOFF_CHANNEL, run_blocking};
use jobd::adapter::postgres::{Error, Event, Libpq, Query, Ready, SendError, Session, Settings};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::pgserver::PgServer;

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
    let query = Query::new("SELECT pg_sleep(0.5), 42 AS answer");
    session.send(&query, Instant::now()).unwrap();
    assert!(!session.is_idle());
    assert_eq!(
        session.send(&query, Instant::now()),
        Err(SendError::NotReady)
    );
    // While the server sleeps, the loop keeps turning every 10 ms.
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
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(
        turns >= 10,
        "the loop turned only {turns} times while the query ran"
    );
    assert_eq!(rows.first("the answer").unwrap().i64("answer").unwrap(), 42);
    assert!(session.is_idle());
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
