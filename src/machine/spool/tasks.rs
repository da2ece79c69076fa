//! `spool/tasks.json`: the tasks and what each accepts, written by jobd at start-up and
//! at every reload, so that clients refuse up front, in jobd's words, what jobd would
//! refuse (docs/spool-format.md).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::inspect::MAX_FILE_BYTES;
use super::request::MAX_ID_CHARS;
use crate::leaf::files::{self, Durability};
use crate::model::config::Config;
use crate::model::config::accept::{FENCE, MAX_ARGS_BYTES};

#[derive(Serialize)]
struct Tasks<'a> {
    version: u32,
    tasks: BTreeMap<&'a str, TaskEntry<'a>>,
    limits: Limits,
    forbidden_env: ForbiddenEnv,
}

#[derive(Serialize)]
struct TaskEntry<'a> {
    accept: AcceptEntry<'a>,
    retries: u32,
    max_instances: Option<u32>,
}

#[derive(Serialize)]
struct AcceptEntry<'a> {
    args: Vec<&'a str>,
    max_args: u32,
    env: &'a [String],
    data: bool,
}

#[derive(Serialize)]
struct Limits {
    max_file_bytes: u64,
    max_args_bytes: usize,
    max_id_chars: usize,
}

#[derive(Serialize)]
struct ForbiddenEnv {
    names: &'static [&'static str],
    prefixes: &'static [&'static str],
    suffixes: &'static [&'static str],
    substrings: &'static [&'static str],
}

/// The text of `tasks.json` for `config`.
pub fn render(config: &Config) -> Vec<u8> {
    let tasks = config
        .tasks
        .iter()
        .map(|task| {
            let accept = &task.accept;
            let entry = TaskEntry {
                accept: AcceptEntry {
                    args: accept.args.iter().map(|p| p.source()).collect(),
                    max_args: accept.max_args,
                    env: &accept.env,
                    data: accept.data,
                },
                retries: task.retries,
                max_instances: task.max_instances,
            };
            (task.name.as_str(), entry)
        })
        .collect();
    let whole = Tasks {
        version: 1,
        tasks,
        limits: Limits {
            max_file_bytes: MAX_FILE_BYTES,
            max_args_bytes: MAX_ARGS_BYTES,
            max_id_chars: MAX_ID_CHARS,
        },
        forbidden_env: ForbiddenEnv {
            names: FENCE.names,
            prefixes: FENCE.prefixes,
            suffixes: FENCE.suffixes,
            substrings: FENCE.substrings,
        },
    };
    let mut bytes = serde_json::to_vec_pretty(&whole).expect("tasks.json serializes");
    bytes.push(b'\n');
    bytes
}

/// Replace `path` with the tasks of `config`, with `mode`, readable by `group`.
pub fn write(
    path: &Path,
    config: &Config,
    mode: u32,
    group: Option<nix::unistd::Gid>,
) -> io::Result<()> {
    files::replace_shared(path, &render(config), mode, group, Durability::Synced)
}
