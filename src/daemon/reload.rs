//! Reload: re-read the jobfile; a broken one changes nothing, a valid one is applied
//! as a difference without touching running jobs.

use std::rc::Rc;

use log::{error, info};

use super::shutdown::Phase;
use super::{Daemon, DaemonError};
use crate::adapter::control::protocol::ReloadAnswer;
use crate::adapter::spawner::Spawner;
use crate::leaf::memory;
use crate::leaf::now::Now;
use crate::leaf::words::count;
use crate::machine::spool::Spool;
use crate::machine::supervisor::Which;
use crate::model::config::{self, Config, RemovedJobs};
use crate::model::record::Stop;
use crate::policy::metrics::MetricsFile;

impl<S: Spawner> Daemon<S> {
    /// Re-read the jobfile; apply it unless `dry_run`.
    pub(super) fn reload_with(
        &mut self,
        dry_run: bool,
        now: Now,
    ) -> Result<ReloadAnswer, DaemonError> {
        if self.phase != Phase::Running {
            return Ok(refused("jobd is shutting down".to_string()));
        }
        let loaded = config::reload(
            &self.jobfile,
            self.environment.as_deref(),
            &self.host,
            Some(&self.config),
        );
        let config = match loaded {
            Ok(config) => config,
            Err(err) => {
                let error = err.to_string();
                if !dry_run {
                    error!("reload refused, keeping the running configuration:\n{error}");
                    self.reload_error = Some(error.clone());
                    self.metrics.reloaded(false);
                }
                return Ok(refused(error));
            }
        };
        let config::Diff {
            added,
            removed,
            changed,
        } = config::diff(&self.config, &config);
        let mut answer = ReloadAnswer {
            applied: false,
            error: None,
            added,
            removed,
            changed,
        };
        if dry_run {
            // What `apply` would refuse, a dry run refuses too.
            if let Err(err) = Spool::check(&config) {
                return Ok(refused(err.to_string()));
            }
            return Ok(answer);
        }
        // Between RELOADING=1 and READY=1 systemd holds other reloads back.
        self.notifier.reloading();
        let applied = self.apply(config, &mut answer, now);
        self.notifier.send("READY=1");
        applied?;
        // The old jobfile and the parse of the new one are gone.
        memory::give_back();
        Ok(answer)
    }

    fn apply(
        &mut self,
        config: Config,
        answer: &mut ReloadAnswer,
        now: Now,
    ) -> Result<(), DaemonError> {
        if let Err(err) = self.spool.reload(&config) {
            let error = err.to_string();
            error!("reload refused, keeping the running configuration: {error}");
            self.reload_error = Some(error.clone());
            *answer = refused(error);
            self.metrics.reloaded(false);
            return Ok(());
        }
        self.plan.reload(&config, now.wall);
        let history = &self.history;
        self.watch
            .reload(&config, |job| history.last_success(job, now.wall), now.wall);
        for job in self
            .config
            .jobs
            .iter()
            .filter(|j| config.job(&j.name).is_none())
        {
            self.pending.forget(&job.name);
            if config.removed_jobs == RemovedJobs::Stop {
                self.supervisor
                    .stop(Which::Job(&job.name), Stop::Removed, now);
            }
        }
        if config.metrics_file != self.config.metrics_file {
            // node_exporter would go on reading the old file's last values.
            if let Some(old) = &self.metrics_file {
                let _ = std::fs::remove_file(old.path());
            }
            self.metrics_file = config.metrics_file.clone().map(MetricsFile::new);
        }
        info!(
            "reloaded {}: {}, {}; added: [{}], removed: [{}], changed: [{}]",
            config.file.display(),
            count(config.jobs.len(), "job"),
            count(config.tasks.len(), "task"),
            answer.added.join(", "),
            answer.removed.join(", "),
            answer.changed.join(", ")
        );
        // A deploy may have changed the code the servers imported: new ones start.
        if let Some(runtimes) = self.supervisor.spawner().runtimes() {
            runtimes.configure(&config.runtimes, now);
        }
        if let Some(side) = &mut self.cluster {
            side.machine.configure(&config);
        }
        self.config = Rc::new(config);
        self.reload_error = None;
        self.metrics.reloaded(true);
        self.armed = None;
        self.arm()?;
        answer.applied = true;
        Ok(())
    }
}

fn refused(error: String) -> ReloadAnswer {
    ReloadAnswer {
        applied: false,
        error: Some(error),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    }
}
