//! The PostgreSQL client and cluster mode's SQL against a real server (see pgserver.rs;
//! skipped with a message when PostgreSQL is not installed, unless
//! JOBD_REQUIRE_POSTGRES=1).

use std::time::Duration;

use jobd::adapter::postgres::{Error, Libpq, Query, Session, Settings};

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
    rows.iter().next().unwrap().text(&rows.columns()[0]).unwrap()
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
        scalar(&mut unix, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"),
        "jobd"
    );

    let wrong = Session::connect_blocking(lib(), Settings::new(&pg.uri_with_password("nope")), T);
    let message = match wrong {
        Err(Error::Unavailable { message, .. }) => message,
        Err(e) => panic!("not a connection error: {e:?}"),
        Ok(_) => panic!("a wrong password connected"),
    };
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{}", pg.port())), "{message}");
    assert!(!message.contains("nope"), "the password leaks: {message}");
}

#[test]
fn a_missing_libpq_is_an_error_naming_the_package() {
    let error = Libpq::open("libpq-does-not-exist.so.5").err().expect("no such library");
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
        .exec_blocking(&Query::new("SELECT $1::int + $2::int AS sum, $3::text AS nothing").bind(2).bind(3).bind(None::<String>), T)
        .unwrap();
    let row = rows.first("the sum").unwrap();
    assert_eq!(row.i64("sum").unwrap(), 5);
    assert_eq!(row.opt_text("nothing").unwrap(), None);
}
