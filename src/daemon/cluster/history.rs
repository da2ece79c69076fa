//! `jobctl history` in cluster mode: the runs of every host from the database, merged
//! with this host's own history (which has the output lines of failed runs, and the
//! runs of `cluster: local` jobs and hooks).

use chrono::{DateTime, Utc};
use log::warn;

use super::Daemon;
use crate::adapter::cluster::history::{PastKind, PastRun};
use crate::adapter::control::protocol::Body;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::model::record::{RunInfo, Verdict};

impl<S: Spawner> Daemon<S> {
    /// Ask the database; the answer goes to `client` when it comes.
    pub(in crate::daemon) fn cluster_history(
        &mut self,
        client: u64,
        job: Option<String>,
        limit: usize,
        now: Now,
    ) {
        if let Some(side) = &mut self.cluster {
            side.machine.history(client, job, limit, now.mono);
        }
    }

    pub(super) fn answer_history(
        &mut self,
        client: u64,
        job: Option<&str>,
        limit: usize,
        runs: Result<Vec<PastRun>, String>,
        now: Now,
    ) {
        let host = self
            .cluster
            .as_ref()
            .map(|side| side.machine.host_id().to_string())
            .unwrap_or_default();
        let local = self.history.recent(job, limit);
        let runs = match runs {
            Ok(cluster) => merge(local, cluster, &host, limit),
            Err(why) => {
                warn!("cluster: the history of the other hosts is not available: {why}");
                local
            }
        };
        self.server
            .respond(client, Body::History { runs }, now.mono);
    }
}

/// The cluster's runs and this host's, oldest first, at most `limit`: a run this host
/// ran is in both, and its own record (with the run id and output lines) is kept.
fn merge(local: Vec<RunInfo>, cluster: Vec<PastRun>, host: &str, limit: usize) -> Vec<RunInfo> {
    let mut runs: Vec<RunInfo> = local
        .into_iter()
        .map(|mut run| {
            run.host.get_or_insert_with(|| host.to_string());
            run
        })
        .collect();
    for past in cluster {
        let kind = past.kind;
        let Some(info) = info_of(past) else { continue };
        // A one-off's attempt knows its local run id; a scheduled run is one per
        // instant and attempt.
        let known = runs.iter().any(|run| match kind {
            PastKind::Oneoff => run.run_id == info.run_id,
            PastKind::Run => {
                run.job == info.job
                    && run.scheduled_at == info.scheduled_at
                    && run.attempt == info.attempt
            }
        });
        if !known {
            runs.push(info);
        }
    }
    runs.sort_by(|a, b| a.ended_at.cmp(&b.ended_at));
    let skip = runs.len().saturating_sub(limit);
    runs.split_off(skip)
}

/// A database row as a history record; None for an end jobd has no word for (a run
/// given back unstarted).
fn info_of(past: PastRun) -> Option<RunInfo> {
    let outcome: Verdict = match past.outcome.as_deref()? {
        "host_lost" => Verdict::Lost,
        word => serde_json::from_value(word.into()).ok()?,
    };
    let started = past.started_at.unwrap_or(past.scheduled_at);
    let took = |to: DateTime<Utc>| (to - started).num_milliseconds().max(0) as u64;
    let field = |key: &str| past.result[key].clone();
    let (run_id, signal, message, output) = match past.kind {
        PastKind::Run => (
            format!("cluster-{}", past.id),
            None,
            match outcome {
                Verdict::Lost => "lost: its host stopped while it ran".to_string(),
                other => other.word().to_string(),
            },
            Vec::new(),
        ),
        PastKind::Oneoff => (
            field("attempts")
                .as_array()
                .and_then(|attempts| attempts.last()?["run_id"].as_str())
                .map_or_else(|| format!("oneoff-{}", past.id), str::to_string),
            field("signal").as_str().map(str::to_string),
            format!("one-off {}: {}", past.id, outcome.word()),
            serde_json::from_value(field("output")).unwrap_or_default(),
        ),
    };
    Some(RunInfo {
        job: past.name,
        run_id,
        attempt: u32::try_from(past.attempt).unwrap_or(1),
        scheduled_at: timestamp::precise(past.scheduled_at),
        started_at: timestamp::precise(started),
        ended_at: timestamp::precise(past.finished_at),
        duration_ms: took(past.finished_at),
        outcome,
        exit_code: past.exit_code,
        signal,
        message,
        output,
        host: past.host_id,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn past(id: i64, host: &str, scheduled: i64, outcome: &str) -> PastRun {
        PastRun {
            kind: PastKind::Run,
            id,
            name: "report".into(),
            host_id: Some(host.into()),
            attempt: 1,
            scheduled_at: at(scheduled),
            started_at: Some(at(scheduled)),
            finished_at: at(scheduled + 1),
            outcome: Some(outcome.into()),
            exit_code: Some(0),
            result: Value::Null,
        }
    }

    #[test]
    fn this_hosts_records_win_and_the_newest_are_kept() {
        let mut mine = past(2, "web1", 10, "failure");
        mine.exit_code = Some(3);
        let mut local = info_of(mine).unwrap();
        local.run_id = "abcd-7".into();
        local.output = vec!["boom".into()];
        local.host = None;
        let cluster = vec![
            past(1, "web2", 0, "success"),
            past(2, "web1", 10, "failure"),
            past(3, "web3", 20, "host_lost"),
            past(4, "web2", 30, "too_late"),
        ];
        let runs = merge(vec![local], cluster, "web1", 10);
        let ids: Vec<(&str, Option<&str>)> = runs
            .iter()
            .map(|r| (r.run_id.as_str(), r.host.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("cluster-1", Some("web2")),
                ("abcd-7", Some("web1")),
                ("cluster-3", Some("web3")),
            ]
        );
        assert_eq!(runs[1].output, ["boom"]);
        assert_eq!(runs[2].outcome, Verdict::Lost);
        let last = merge(
            Vec::new(),
            vec![past(1, "a", 0, "success"), past(2, "b", 5, "success")],
            "a",
            1,
        );
        assert_eq!(last[0].run_id, "cluster-2");
    }
}
