//! The man pages in `man/`: they document every option and command the binaries print
//! in their help, every jobfile key the loader accepts and every key of a spool file (a
//! new option or key fails these tests until it is documented), and, as an extra check
//! that needs groff, they render without a warning.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::harness::{JOBCTL, JOBD};

const PAGES: [&str; 3] = ["jobd.8", "jobctl.1", "jobd.yaml.5"];

fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// An extra check, run by .ci/run (`cargo test -- --ignored extra_`), which installs
/// groff.
#[test]
#[ignore = "extra check: needs groff, which .ci/run installs"]
fn extra_man_pages_render_without_groff_warnings() {
    for page in PAGES {
        let file = path(&format!("man/{page}"));
        let output = match Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&file)
            .env("LC_ALL", "C.UTF-8")
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "groff is not installed, so the man pages cannot be checked; \
                 install it (Debian: apt-get install groff-base) or run .ci/run"
            ),
            Err(e) => panic!("cannot run groff: {e}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.is_empty(),
            "groff -man -ww on man/{page}: {}\n{stderr}",
            output.status
        );
    }
}

#[test]
fn jobd_8_documents_every_option_and_command() {
    check_cli(JOBD, "man/jobd.8");
}

#[test]
fn jobctl_1_documents_every_option_and_command() {
    check_cli(JOBCTL, "man/jobctl.1");
}

#[test]
fn jobd_yaml_5_documents_every_jobfile_key() {
    let source = read("src/model/config/load.rs");
    let lists = key_lists(&source);
    for required in [
        "TOP_KEYS",
        "JOB_KEYS",
        "TASK_KEYS",
        "SPOOL_KEYS",
        "RUN_KEYS",
    ] {
        assert!(
            lists
                .iter()
                .any(|(name, keys)| name == required && !keys.is_empty()),
            "src/model/config/load.rs has no `const {required}: &[&str]` list this test can read"
        );
    }
    let entries = entries(&plain(&read("man/jobd.yaml.5")));
    let missing: Vec<String> = lists
        .iter()
        .flat_map(|(list, keys)| keys.iter().map(move |key| (list, key)))
        .filter(|(_, key)| !entries.contains(*key))
        .map(|(list, key)| format!("`{key}:` (from {list})"))
        .collect();
    assert!(
        missing.is_empty(),
        "man/jobd.yaml.5 has no .TP entry for: {}",
        missing.join(", ")
    );
}

#[test]
fn jobd_8_documents_the_spool_file() {
    let list = |file: &str, name: &str| {
        string_lists(&read(file))
            .into_iter()
            .find(|(list, _)| list == name)
            .map(|(_, items)| items)
            .unwrap_or_else(|| panic!("{file} has no `const {name}` list"))
    };
    let page = plain(&read("man/jobd.8"));
    let entries = entries(&page);
    let mut missing: Vec<String> = list("src/machine/spool/request.rs", "KEYS")
        .into_iter()
        .filter(|key| !entries.contains(key))
        .map(|key| format!("spool file key `{key}` (a .TP entry)"))
        .collect();
    let fence = "src/model/config/accept.rs";
    for name in [
        "FORBIDDEN_NAMES",
        "FORBIDDEN_PREFIXES",
        "FORBIDDEN_SUFFIXES",
        "FORBIDDEN_SUBSTRINGS",
    ]
    .into_iter()
    .flat_map(|list_name| list(fence, list_name))
    {
        if !contains_word(&page, &name) {
            missing.push(format!("forbidden variable `{name}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "man/jobd.8 does not mention: {}",
        missing.join(", ")
    );
}

/// Every option and command in `program`'s help, and in the help of each of its
/// commands, must appear in `page`: options as written, commands as `program command`.
fn check_cli(program: &str, page: &str) {
    let name = program.rsplit('/').next().unwrap_or(program);
    let text = plain(&read(page));
    let mut options = BTreeSet::new();
    let mut commands = BTreeSet::new();
    collect(program, &[], &mut options, &mut commands);
    assert!(
        options.contains("--help") && !commands.is_empty(),
        "could not read the options and commands of `{name} --help`: {options:?} {commands:?}"
    );
    let mut missing: Vec<String> = options
        .iter()
        .filter(|option| !contains_word(&text, option))
        .map(|option| format!("option `{option}`"))
        .collect();
    missing.extend(
        commands
            .iter()
            .filter(|command| !contains_word(&text, &format!("{name} {command}")))
            .map(|command| format!("command `{name} {command}`")),
    );
    assert!(
        missing.is_empty(),
        "{page} does not document: {}",
        missing.join(", ")
    );
}

/// Read `program [path] --help`; recurse into the commands it lists.
fn collect(
    program: &str,
    path: &[String],
    options: &mut BTreeSet<String>,
    commands: &mut BTreeSet<String>,
) {
    let output = Command::new(program)
        .args(path)
        .arg("--help")
        .env_remove("JOBD_CONFIG")
        .env_remove("JOBD_ENVIRONMENT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "`{program} {} --help` failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut section = "";
    let mut found = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let first = line.split_whitespace().next().unwrap_or("");
        match section {
            // `  name   What it does`; wrapped descriptions are indented further.
            "Commands:" if indent == 2 => found.push(first.to_string()),
            // `  -c, --config <PATH>`, `      --next <N>`, `  -n <N>`.
            "Options:" if (indent == 2 || indent == 6) && first.starts_with('-') => {
                let flags = line.trim_start().split("  ").next().unwrap_or("");
                for word in flags.split([' ', ',']) {
                    let word = word.split(['=', '<', '[']).next().unwrap_or("");
                    if word.len() > 1 && word.starts_with('-') {
                        options.insert(word.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    for command in found {
        if command != "help" {
            let mut sub = path.to_vec();
            sub.push(command.clone());
            collect(program, &sub, options, commands);
        }
        let mut full = path.to_vec();
        full.push(command);
        commands.insert(full.join(" "));
    }
}

/// The roff source as text: `\-` as `-`, font changes and zero-width marks removed.
fn plain(roff: &str) -> String {
    let mut text = roff.to_string();
    for (from, to) in [
        ("\\-", "-"),
        ("\\&", ""),
        ("\\(dq", "\""),
        ("\\(aq", "'"),
        ("\\ ", " "),
        ("\\fB", ""),
        ("\\fI", ""),
        ("\\fR", ""),
        ("\\fP", ""),
        ("\\e", "\\"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// The first word of each `.TP` tag, without a trailing `:`, e.g. `timezone` for
/// `.BI "timezone: " ZONE`.
fn entries(text: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|pair| pair[0].trim() == ".TP")
        .filter_map(|pair| {
            let tag = pair[1].trim();
            let tag = match tag.strip_prefix('.') {
                Some(macro_line) => macro_line.split_once(' ').map_or("", |(_, rest)| rest),
                None => tag,
            };
            let word = tag.trim_start_matches('"').split([' ', '"']).next()?;
            Some(word.trim_end_matches(':').to_string())
        })
        .collect()
}

/// Whether `word` occurs in `text` with no letter, digit, `_` or `-` right before
/// or after it (so `--next` is not found in `--next-thing`, nor `dir` in `state_dir`).
fn contains_word(text: &str, word: &str) -> bool {
    let part_of_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(part_of_word)
            && !after.is_some_and(|c| part_of_word(c) && !word.ends_with('_'))
    })
}

/// Every `const NAME: &[&str] = &[...]` in a Rust source file, with its strings.
fn string_lists(source: &str) -> Vec<(String, Vec<String>)> {
    let mut lists = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("const ") {
        rest = &rest[at + "const ".len()..];
        let Some((name, after)) = rest.split_once(':') else {
            break;
        };
        let name = name.trim();
        let Some(body) = after.trim_start().strip_prefix("&[&str]") else {
            continue;
        };
        let Some(body) = body.trim_start().strip_prefix('=') else {
            continue;
        };
        let Some(body) = body.trim_start().strip_prefix("&[") else {
            continue;
        };
        let Some((items, _)) = body.split_once("];") else {
            break;
        };
        let strings = items
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        lists.push((name.to_string(), strings));
    }
    lists
}

/// The lists of jobfile keys: every `const ..._KEYS: &[&str]`.
fn key_lists(source: &str) -> Vec<(String, Vec<String>)> {
    string_lists(source)
        .into_iter()
        .filter(|(name, _)| name.ends_with("_KEYS"))
        .collect()
}
