//! Spool files to runs: what arrives, the spool takes in a batch at a time; what it
//! claims, the daemon starts.

use super::Daemon;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::machine::spool::Budget;
use crate::machine::supervisor::{Launch, Origin};

impl<S: Spawner> Daemon<S> {
    /// Look at a batch of the files that arrived.
    pub(super) fn take_in(&mut self, now: Now) {
        let config = self.config.clone();
        self.spool.intake(&config, now, Budget::BATCH);
    }

    /// Start every file the spool hands out. A file that could not start frees its
    /// worker at once: dispatch again until every start has been tried.
    pub(super) fn start_files(&mut self, now: Now) {
        if self.cluster.is_some() {
            return self.forward_files(now);
        }
        loop {
            let config = self.config.clone();
            let starts = self.spool.dispatch(&config, now);
            let mut freed = false;
            for start in &starts {
                let Some(task) = config.task(&start.task) else {
                    continue;
                };
                let id = self.supervisor.next_id();
                let vars = self.spool.starting(&start.file, &id, now.wall, &config);
                let launched = self.launch(
                    id,
                    Launch {
                        name: &task.name,
                        spec: &task.run,
                        args: &start.args,
                        env: Some(&start.env),
                        vars,
                        stdin: None,
                        scheduled_at: start.scheduled_at,
                        attempt: start.attempt,
                        origin: Origin::Spool(start.file.clone()),
                    },
                    now,
                );
                freed |= launched.is_err();
            }
            if !freed {
                return;
            }
        }
    }
}
