//! Spool files to runs: what the spool claims, the daemon starts.

use super::Daemon;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::machine::supervisor::{Launch, Origin};

impl<S: Spawner> Daemon<S> {
    /// Start every file the spool hands out. A file that could not start frees its
    /// worker at once: dispatch again until every start has been tried.
    pub(super) fn start_files(&mut self, now: Now) {
        if self.cluster.is_some() {
            return self.forward_files(now);
        }
        loop {
            let config = self.config.clone();
            let starts = self.spool.dispatch(&config, now.mono);
            let mut freed = false;
            for start in &starts {
                let Some(task) = config.task(&start.task) else {
                    continue;
                };
                let id = self.supervisor.next_id();
                self.spool.starting(&start.file, &id, now.wall);
                let launched = self.launch(
                    id,
                    Launch {
                        name: &task.name,
                        spec: &task.run,
                        args: &start.args,
                        env: Some(&start.env),
                        vars: vec![("JOBD_SPOOL_FILE", start.file.clone())],
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
