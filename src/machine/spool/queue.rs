//! The files the spool holds: one `Item` each, whose `Stage` says what comes next, and
//! the orders they are taken in. Items change stage only here, so the orders always
//! agree with the stages.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::result::SpoolResult;

pub(super) type Key = u64;

/// A file jobd holds: little enough to keep thousands. Its request is read again from
/// its file when it starts.
#[derive(Debug)]
pub(super) struct Item {
    pub name: String,
    pub task: String,
    /// Its file is in `running/` (claimed before: recovered at start-up, or between
    /// attempts) rather than `new/`.
    pub claimed: bool,
    /// The inode read when it was taken in from `new/`: a file replaced under the same
    /// name is a new file.
    pub inode: u64,
    pub arrived: DateTime<Utc>,
    pub due: DateTime<Utc>,
    pub stage: Stage,
}

#[derive(Debug)]
pub(super) enum Stage {
    /// In `new/`, until `due`.
    Delayed,
    /// Due, waiting for a worker.
    Waiting,
    /// Its last attempt failed; the next one starts at `at`.
    Retrying { at: Instant },
    /// An attempt runs.
    Running(Box<Active>),
}

/// What a running file needs until its attempt ends.
#[derive(Debug)]
pub(super) struct Active {
    pub result: SpoolResult,
    /// Where the child writes its value, once the attempt started.
    pub value: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub(super) struct Queue {
    items: HashMap<Key, Item>,
    last_key: Key,
    waiting: VecDeque<Key>,
    delayed: BTreeSet<(DateTime<Utc>, Key)>,
    retrying: BTreeSet<(Instant, Key)>,
    running: Vec<Key>,
    in_new: HashMap<String, Key>,
    in_running: HashMap<String, Key>,
}

/// Files held by stage: waiting, delayed, running, retrying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub waiting: usize,
    pub delayed: usize,
    pub running: usize,
    pub retrying: usize,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            waiting: self.waiting.len(),
            delayed: self.delayed.len(),
            running: self.running.len(),
            retrying: self.retrying.len(),
        }
    }

    /// Hold a new item; a waiting one goes last in line.
    pub fn add(&mut self, item: Item) -> Key {
        self.last_key += 1;
        self.put(self.last_key, item, false);
        self.last_key
    }

    pub fn get(&self, key: Key) -> Option<&Item> {
        self.items.get(&key)
    }

    /// Stop holding an item, whatever its stage.
    pub fn take(&mut self, key: Key) -> Option<Item> {
        let item = self.items.remove(&key)?;
        match &item.stage {
            Stage::Delayed => {
                self.delayed.remove(&(item.due, key));
            }
            Stage::Waiting => self.waiting.retain(|k| *k != key),
            Stage::Retrying { at } => {
                self.retrying.remove(&(*at, key));
            }
            Stage::Running(_) => self.running.retain(|k| *k != key),
        }
        let names = if item.claimed {
            &mut self.in_running
        } else {
            &mut self.in_new
        };
        if names.get(&item.name) == Some(&key) {
            names.remove(&item.name);
        }
        Some(item)
    }

    /// Hold `item` again under its key (after `take`); a waiting one goes first in line
    /// with `front`.
    pub fn put(&mut self, key: Key, item: Item, front: bool) {
        match &item.stage {
            Stage::Delayed => {
                self.delayed.insert((item.due, key));
            }
            Stage::Waiting if front => self.waiting.push_front(key),
            Stage::Waiting => self.waiting.push_back(key),
            Stage::Retrying { at } => {
                self.retrying.insert((*at, key));
            }
            Stage::Running(_) => self.running.push(key),
        }
        if item.claimed {
            self.in_running.insert(item.name.clone(), key);
        } else {
            self.in_new.insert(item.name.clone(), key);
        }
        self.items.insert(key, item);
    }

    /// The item of `name` in `new/`, or in `running/`.
    pub fn in_new(&self, name: &str) -> Option<Key> {
        self.in_new.get(name).copied()
    }

    pub fn in_running(&self, name: &str) -> Option<Key> {
        self.in_running.get(name).copied()
    }

    /// The waiting items, first in line first.
    pub fn waiting(&self) -> impl Iterator<Item = Key> + '_ {
        self.waiting.iter().copied()
    }

    /// The running items.
    pub fn running(&self) -> impl Iterator<Item = &Item> + '_ {
        self.running.iter().filter_map(|key| self.items.get(key))
    }

    pub fn running_mut(&mut self, key: Key) -> Option<&mut Active> {
        match &mut self.items.get_mut(&key)?.stage {
            Stage::Running(active) => Some(active),
            _ => None,
        }
    }

    /// A delayed item that is due by `now`, earliest first.
    pub fn due_delayed(&self, now: DateTime<Utc>) -> Option<Key> {
        self.delayed
            .first()
            .filter(|(due, _)| *due <= now)
            .map(|(_, key)| *key)
    }

    /// A retry that is due by `now`, earliest first.
    pub fn due_retry(&self, now: Instant) -> Option<Key> {
        self.retrying
            .first()
            .filter(|(at, _)| *at <= now)
            .map(|(_, key)| *key)
    }

    pub fn next_delayed(&self) -> Option<DateTime<Utc>> {
        self.delayed.first().map(|(due, _)| *due)
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.retrying.first().map(|(at, _)| *at)
    }

    /// Give the item of `key` a new stage (it keeps its key; a waiting one goes last
    /// in line, or first with `front`).
    pub fn restage(&mut self, key: Key, stage: Stage, front: bool) {
        if let Some(mut item) = self.take(key) {
            item.stage = stage;
            self.put(key, item, front);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, stage: Stage) -> Item {
        Item {
            name: name.to_string(),
            task: "t".to_string(),
            claimed: false,
            inode: 1,
            arrived: DateTime::UNIX_EPOCH,
            due: DateTime::UNIX_EPOCH,
            stage,
        }
    }

    #[test]
    fn every_order_follows_the_stage() {
        let mut queue = Queue::default();
        let a = queue.add(item("a", Stage::Waiting));
        let b = queue.add(item("b", Stage::Delayed));
        let c = queue.add(item("c", Stage::Waiting));
        assert_eq!(queue.waiting().collect::<Vec<_>>(), [a, c]);
        assert_eq!(queue.due_delayed(DateTime::UNIX_EPOCH), Some(b));
        queue.restage(b, Stage::Waiting, true);
        assert_eq!(queue.waiting().collect::<Vec<_>>(), [b, a, c]);
        assert_eq!(queue.due_delayed(DateTime::UNIX_EPOCH), None);
        let at = Instant::now();
        queue.restage(a, Stage::Retrying { at }, false);
        assert_eq!(queue.due_retry(at), Some(a));
        assert_eq!(
            queue.counts(),
            Counts {
                waiting: 2,
                delayed: 0,
                running: 0,
                retrying: 1
            }
        );
        assert_eq!(queue.in_new("c"), Some(c));
        let taken = queue.take(c).unwrap();
        assert_eq!(taken.name, "c");
        assert_eq!(queue.in_new("c"), None);
        assert_eq!(queue.len(), 2);
    }
}
