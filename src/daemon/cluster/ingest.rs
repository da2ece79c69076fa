//! Spool files on a cluster host: what the spool claims goes on to the cluster's
//! table (idempotent by origin `<host_id>/<file name>`, so a crash between the commit
//! and the filing only submits it again, harmlessly), and the file is filed to done/
//! with the state `forwarded`, or to failed/ when the table refused it. The table
//! keeps a finished row for 7 days: a fresh file named like one forwarded from this
//! host within that time would find the earlier row and never run, so it goes to
//! failed/ with the reason instead.

use std::io::Read;

use super::Daemon;
use crate::adapter::cluster::oneoff::{Submit, Submitted};
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::leaf::yaml;
use crate::machine::spool::{MAX_FILE_BYTES, Start};

impl<S: Spawner> Daemon<S> {
    /// Forward every file the spool hands out.
    pub(in crate::daemon) fn forward_files(&mut self, now: Now) {
        let config = self.config.clone();
        for start in self.spool.dispatch(&config, now) {
            let Some(side) = &mut self.cluster else {
                return;
            };
            let path = config.spool.dir.join("running").join(&start.file);
            match request_of(&path, &start, side.machine.host_id()) {
                Ok(submit) => {
                    if !start.claimed_before {
                        side.fresh.insert(start.file.clone());
                    }
                    side.machine.forward(submit, start.file, now.mono)
                }
                Err(why) => self.spool.forwarded(&start.file, Err(why)),
            }
        }
    }

    /// The table took the file's request (or already had it), or refused it.
    pub(super) fn forwarded(&mut self, file: &str, outcome: Result<Submitted, String>) {
        let Some(side) = &mut self.cluster else {
            return;
        };
        let host = side.machine.host_id().to_string();
        let fresh = side.fresh.remove(file);
        // The name is the writer's: shown escaped, in the log and in the reason alike.
        let shown = file.escape_debug().to_string();
        let outcome = outcome.and_then(|submitted| match submitted.id {
            Some(id) if fresh && !submitted.created => Err(format!(
                "a file named {shown} was forwarded from host {host} within the last 7 days \
                 (one-off {id} in jobd.oneoffs, origin {host}/{shown}), and a name is the \
                 request's identity in the cluster: give each file a unique name (jobctl \
                 submit and the Python package do)"
            )),
            _ => Ok(submitted),
        });
        if let Err(why) = &outcome {
            log::warn!("spool: {shown} not forwarded: {why}");
        }
        let outcome = outcome.map(|submitted| {
            let id = submitted
                .id
                .map_or_else(|| "(pruned since)".to_string(), |id| id.to_string());
            log::info!(
                "spool: {} forwarded to the cluster as one-off {id}",
                file.escape_debug()
            );
            format!(
                "forwarded to the cluster: one-off {id} in jobd.oneoffs, origin {host}/{file}{}; \
                 jobctl history shows how it ends",
                if submitted.created {
                    ""
                } else {
                    " (submitted before)"
                }
            )
        });
        self.spool.forwarded(file, outcome);
    }
}

/// The submission of a claimed spool file: what the spool checked (task, arguments,
/// variables, when), with its `data` read from the file itself.
fn request_of(path: &std::path::Path, start: &Start, host: &str) -> Result<Submit, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("cannot read it again to forward it: {e}"))?;
    // JSON as it was written, numbers and all; YAML through jobd's own parser.
    let data = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut root) => Some(root["data"].take()),
        Err(_) => yaml::parse(&text).ok().and_then(|root| match root.value {
            yaml::Value::Map(entries) => entries
                .into_iter()
                .find(|(key, _)| key.value == yaml::Value::Str("data".into()))
                .map(|(_, value)| yaml::to_json(&value)),
            _ => None,
        }),
    }
    .filter(|data| !data.is_null());
    Ok(Submit {
        task: start.task.clone(),
        args: start.args.clone(),
        env: start
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect(),
        data,
        run_at: Some(start.scheduled_at),
        delay: None,
        max_attempts: None,
        origin: Some(format!("{host}/{}", start.file)),
    })
}
