//! Log lines on stderr: with a timestamp on a terminal or in a file, with a syslog
//! priority prefix (`<3>`…`<7>`) under journald, which stamps lines itself.

use std::io::Write;

use log::Level;

use crate::leaf::visible;

/// Log at `info` unless `JOBD_LOG` (or `RUST_LOG`) says otherwise, e.g. `JOBD_LOG=debug`.
pub fn init() {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let env = env_logger::Env::new().filter_or(
        "JOBD_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    env_logger::Builder::from_env(env)
        .format(move |out, record| {
            let message = record.args().to_string();
            // Text a child or a submitter chose (a child's output, a file's name, a
            // reason quoting a file) reaches the terminal or the journal with its
            // control characters written out, whichever line logs it. A message of
            // several lines (a jobfile's problems) gives each line the prefix, so
            // that none reads as a line of another priority, or of another job.
            for line in visible::escape_lines(&message).split('\n') {
                if journald {
                    let priority = match record.level() {
                        Level::Error => 3,
                        Level::Warn => 4,
                        Level::Info => 6,
                        Level::Debug | Level::Trace => 7,
                    };
                    writeln!(out, "<{priority}>{line}")?;
                } else {
                    writeln!(
                        out,
                        "{} {:5} {line}",
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        record.level(),
                    )?;
                }
            }
            Ok(())
        })
        .init();
}
