//! Hostile input: broken and malicious jobfiles for `jobd check`, and hostile spool files
//! for a running jobd. Every case must be refused quickly, with a message naming the
//! problem, without a panic, and (for spool files) without anything running.
//!
//! What check.rs and spool.rs already cover (a missing file, `\xff\xfe`, one alias bomb, a
//! FIFO jobfile; the basic bad spool files) is not repeated here, except where a case
//! needs the stronger "nothing ran" assertion.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{self, Dir, JOBD, eventually};

/// How long `jobd check` may take on one broken jobfile.
const LIMIT: Duration = Duration::from_secs(2);

/// Inputs at the size of a parser budget (half a million nodes) take seconds to parse in
/// an unoptimised build; they get this much there, and `LIMIT` in a release build.
fn heavy_limit() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(10)
    } else {
        LIMIT
    }
}

/// What `jobd check` did with one file.
struct Checked {
    code: Option<i32>,
    /// CPU time, user and system.
    took: Duration,
    killed: bool,
    stdout: String,
    stderr: String,
}

/// Run `jobd check -c FILE`, killing it if it runs past `limit` plus a margin. Output goes
/// to files, so that a case printing megabytes cannot block on a full pipe.
fn check(dir: &Path, label: &str, file: &Path, limit: Duration) -> Checked {
    let out = dir.join(format!("{label}.stdout"));
    let err = dir.join(format!("{label}.stderr"));
    let started = Instant::now();
    // Reaped by wait4 in `reap_with_cpu`, which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(JOBD)
        .arg("check")
        .arg("-c")
        .arg(file)
        .current_dir(dir)
        .env_remove("JOBD_CONFIG")
        .env_remove("JOBD_ENVIRONMENT")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // The bound is on the CPU time jobd used: on a loaded machine wall time says more
    // about the neighbours than about jobd. A run past a generous wall-clock stop is
    // killed, whatever it cost.
    let hard_stop = limit * 5 + Duration::from_secs(10);
    let (code, cpu, killed) = loop {
        if let Some((code, cpu)) = harness::reap_with_cpu(&child, false) {
            break (code, cpu, false);
        }
        if started.elapsed() > hard_stop {
            let _ = child.kill();
            let (code, cpu) = harness::reap_with_cpu(&child, true).expect("waited for it");
            break (code, cpu, true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = cpu;
    let read =
        |path: &Path| String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    Checked {
        code,
        took,
        killed,
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// A message shortened for a failure report (some cases echo megabytes).
fn clip(text: &str) -> String {
    const KEEP: usize = 600;
    if text.len() <= KEEP {
        return text.to_string();
    }
    let mut end = KEEP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Whether `text` says what `expected` asks: every entry must appear, and an entry
/// `a|b` is satisfied by either alternative.
fn says(text: &str, expected: &[&str]) -> Result<(), String> {
    for entry in expected {
        if !entry
            .split('|')
            .any(|alternative| text.contains(alternative))
        {
            return Err(format!("does not say `{entry}`"));
        }
    }
    Ok(())
}

/// Why a refused-jobfile outcome is wrong, if it is.
fn judge(checked: &Checked, expected: &[&str], limit: Duration) -> Result<(), String> {
    if checked.killed {
        return Err(format!(
            "still running after {:?} of CPU; killed",
            checked.took
        ));
    }
    if checked.stderr.contains("panicked") || checked.code == Some(101) {
        return Err(format!("panicked (exit {:?})", checked.code));
    }
    if checked.code != Some(1) {
        return Err(format!("exit {:?}, expected 1", checked.code));
    }
    if checked.took > limit {
        return Err(format!(
            "took {:?} of CPU, more than {limit:?}",
            checked.took
        ));
    }
    if !checked.stdout.is_empty() {
        return Err(format!("printed on stdout: {}", clip(&checked.stdout)));
    }
    says(&checked.stderr, expected)
}

/// One broken jobfile: how to make it, and what `jobd check` must say.
struct Broken {
    label: String,
    make: Box<dyn Fn(&Path) -> PathBuf>,
    says: Vec<&'static str>,
    limit: Duration,
}

fn broken(
    label: impl Into<String>,
    says: &[&'static str],
    make: impl Fn(&Path) -> PathBuf + 'static,
) -> Broken {
    Broken {
        label: label.into(),
        make: Box::new(make),
        says: says.to_vec(),
        limit: LIMIT,
    }
}

/// A broken jobfile given by its bytes.
fn text(label: impl Into<String>, says: &[&'static str], bytes: impl Into<Vec<u8>>) -> Broken {
    let label = label.into();
    let bytes = bytes.into();
    let file = format!("{label}.yaml");
    broken(label, says, move |dir| {
        let path = dir.join(&file);
        fs::write(&path, &bytes).unwrap();
        path
    })
}

/// A jobfile with one job `a` whose body is `body` (indented by four spaces).
fn job(body: &str) -> String {
    let mut text = String::from("timezone: UTC\njobs:\n  a:\n");
    for line in body.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Bytes that look like nothing in particular, the same at every run.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect()
}

/// The billion laughs: ten aliases of the level below, `levels` deep.
fn billion_laughs(levels: usize, first_line: &str) -> String {
    let mut text =
        format!("{first_line}\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=levels {
        let below = vec![format!("*l{}", i - 1); 10].join(", ");
        text.push_str(&format!("l{i}: &l{i} [{below}]\n"));
    }
    text
}

fn cases() -> Vec<Broken> {
    let mut cases = vec![
        // Not text at all.
        text("binary-garbage", &["not valid UTF-8"], {
            let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
            bytes.extend(noise(64 << 10, 7));
            bytes
        }),
        text(
            "truncated-utf8",
            &["not valid UTF-8", "at byte 35"],
            &b"jobs:\n  a:\n    command: [echo, \"caf\xc3"[..],
        ),
        text(
            "utf16-with-bom",
            &["not valid UTF-8"],
            b"\xff\xfej\x00o\x00b\x00s\x00:\x00\n\x00".to_vec(),
        ),
        text(
            "bom-inside-the-document",
            &["BOM"],
            "timezone: UTC\n\u{feff}jobs:\n  a:\n    every: 1s\n    command: [x]\n",
        ),
        text(
            "nul-byte",
            &["unexpected character", ":3:14:"],
            &b"jobs:\n  a:\n    every: 1s\x00\n    command: [x]\n"[..],
        ),
        text(
            "escaped-nul-in-a-shell-command",
            &["jobs.a.command: the command contains a NUL character"],
            job("every: 1s\ncommand: \"ls\\0; rm -rf /\""),
        ),
        text(
            "escaped-nul-in-an-argument",
            &["an argument contains a NUL character"],
            job("every: 1s\ncommand: [ls, \"-l\\0a\"]"),
        ),
        text(
            "escaped-nul-in-env",
            &["the value of `A` contains a NUL character"],
            job("every: 1s\ncommand: [x]\nenv: {A: \"x\\0y\"}"),
        ),
        text(
            "escaped-nul-in-workdir",
            &["the path contains a NUL character"],
            job("every: 1s\ncommand: [x]\nworkdir: \"/tmp\\0/etc\""),
        ),
        text("empty-file", &["it is empty"], ""),
        text(
            "only-comments",
            &["it is empty"],
            "# jobs: none\n# tasks: none\n",
        ),
        text(
            "a-scalar",
            &["expected a mapping"],
            noise(2000, 3)
                .iter()
                .map(|b| (b'a' + b % 26) as char)
                .collect::<String>(),
        ),
        text(
            "two-documents",
            &["more than one YAML document"],
            "jobs:\n  a: {every: 1s, command: [x]}\n---\njobs:\n  b: {every: 1s, command: [x]}\n",
        ),
        text(
            "ten-thousand-documents",
            &["more than one YAML document"],
            "---\njobs:\n".repeat(10_000),
        ),
        text(
            "tabs",
            &["tabs"],
            "jobs:\n\ta:\n\t\tevery: 1s\n\t\tcommand: [x]\n",
        ),
        text(
            "duplicate-job",
            &["duplicate key `a`", ":5:3:"],
            "jobs:\n  a:\n    every: 1s\n    command: [x]\n  a:\n    every: 2s\n    command: [y]\n",
        ),
        text(
            "duplicate-setting",
            &["duplicate key `command`"],
            job("every: 1s\ncommand: [harmless]\ncommand: [rm, -rf, /]"),
        ),
        text(
            "duplicate-top-level-key",
            &["duplicate key `tasks`"],
            "tasks:\n  t: {command: [x]}\njobs: {}\ntasks:\n  u: {command: [y]}\n",
        ),
        text(
            "job-and-task-share-a-name",
            &["`same` is both a job and a task"],
            "jobs:\n  same: {every: 1s, command: [x]}\ntasks:\n  same: {command: [x]}\n",
        ),
        // Parser budgets.
        text("billion-laughs", &["alias"], billion_laughs(9, "jobs:")),
        text(
            "more-than-1000-aliases",
            &["more than 1000 aliases or anchors"],
            format!("x: &x 1\ny: [{}]\n", vec!["*x"; 1001].join(", ")),
        ),
        text(
            "scalar-alias-amplification",
            // 100 KB aliased 999 times would be 100 MB of strings.
            &["too large|alias|budget"],
            format!(
                "x:\n  a: &a \"{}\"\n  b: [{}]\n",
                "q".repeat(100 << 10),
                vec!["*a"; 999].join(", ")
            ),
        ),
        text(
            "ten-thousand-brackets",
            &["nested deeper|recursion limit"],
            format!("jobs: {}", "[".repeat(10_000)),
        ),
        text(
            "forty-levels-of-flow",
            &["nested deeper than 32 levels"],
            format!("jobs: {}1{}", "{a: [".repeat(20), "]}".repeat(20)),
        ),
        text(
            "two-hundred-levels-of-blocks",
            &["nested deeper than 32 levels"],
            (0..200)
                .map(|depth| format!("{}k:\n", "  ".repeat(depth)))
                .collect::<String>(),
        ),
        text(
            "twenty-thousand-keys-and-a-duplicate",
            &["duplicate key `j0`"],
            {
                let mut text = String::from("jobs:\n");
                for i in 0..20_000 {
                    text.push_str(&format!("  j{i}: 1\n"));
                }
                text.push_str("  j0: 2\n");
                text
            },
        ),
        Broken {
            limit: heavy_limit(),
            ..text(
                "six-hundred-thousand-items",
                &["too large or too complex"],
                format!("jobs: [{}]", vec!["1"; 600_000].join(",")),
            )
        },
        // Size.
        text(
            "ten-megabyte-value",
            &["shutdown_grace: `aaaa", "is not a duration"],
            format!("shutdown_grace: {}\njobs: {{}}\n", "a".repeat(10 << 20)),
        ),
        text(
            "ten-megabytes-of-digits",
            &["jobs.a.every", "the number is too large"],
            job(&format!("every: {}s\ncommand: [x]", "9".repeat(10 << 20))),
        ),
        text(
            "ten-megabyte-job-name",
            &["is not a valid name"],
            format!(
                "jobs:\n  ? {}\n  : {{every: 1s, command: [x]}}\n",
                "a".repeat(10 << 20)
            ),
        ),
        broken("seventeen-megabytes", &["more than the 16777216"], |dir| {
            let path = dir.join("seventeen-megabytes.yaml");
            fs::File::create(&path).unwrap().set_len(17 << 20).unwrap();
            path
        }),
        // Not a regular file.
        broken(
            "symlink-loop",
            &["Too many levels of symbolic links"],
            |dir| {
                std::os::unix::fs::symlink(dir.join("loop-b.yaml"), dir.join("loop-a.yaml"))
                    .unwrap();
                std::os::unix::fs::symlink(dir.join("loop-a.yaml"), dir.join("loop-b.yaml"))
                    .unwrap();
                dir.join("loop-a.yaml")
            },
        ),
        broken("dangling-symlink", &["cannot open the jobfile"], |dir| {
            let path = dir.join("dangling.yaml");
            std::os::unix::fs::symlink(dir.join("nowhere.yaml"), &path).unwrap();
            path
        }),
        broken("a-directory", &["not a regular file"], |dir| {
            let path = dir.join("directory.yaml");
            fs::create_dir(&path).unwrap();
            path
        }),
        broken("dev-zero", &["not a regular file"], |_| {
            PathBuf::from("/dev/zero")
        }),
        broken("symlink-to-dev-zero", &["not a regular file"], |dir| {
            let path = dir.join("zero.yaml");
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
            path
        }),
        // Wrong types everywhere: every problem is reported, not just the first.
        text(
            "wrong-types-everywhere",
            &[
                ":1:11: timezone: expected an IANA time zone name",
                "shutdown_grace: expected a duration",
                "state_dir: expected a string, found a list",
                "defaults: expected a mapping of `key: value` lines, found a string",
                "spool: expected a mapping of `key: value` lines, found a list",
                "tasks: expected a mapping from names to settings, found a number",
                "jobs.a.every: expected a duration like 250ms, 5s, 2m, 1h or 1d, found a boolean",
                "jobs.a.command: expected a list (`[program, arg, ...]`, run directly) or a string",
                "jobs.a.max_instances: expected a whole number, found a string",
                "jobs.a.env: expected a mapping of NAME: value, found a list",
                "jobs.a.on_overlap: expected one of skip | queue | replace, found a number",
                "jobs.a.catch_up: expected one of none | once, found a list",
                "jobs.a.environments: expected a list like [a, b], found a string",
                "jobs.a.timeout: expected a duration",
                "jobs.b: expected a mapping of `key: value` lines, found a list",
                "jobs: expected a name, found a number",
                "jobs: expected a name, found nothing (null)",
            ],
            "timezone: 5\n\
             shutdown_grace: [1]\n\
             state_dir: [a]\n\
             defaults: nothing\n\
             spool: [1]\n\
             tasks: 7\n\
             jobs:\n  \
               a:\n    \
                 every: true\n    \
                 command: {program: x}\n    \
                 max_instances: \"3\"\n    \
                 env: [A=1]\n    \
                 on_overlap: 3\n    \
                 catch_up: [once]\n    \
                 environments: production\n    \
                 timeout: {m: 5}\n  \
               b: [every, 1s]\n  \
               1: {every: 1s, command: [x]}\n  \
               ~: {every: 1s, command: [x]}\n",
        ),
        text(
            "jobs-is-a-list",
            &["jobs: expected a mapping from names to settings, found a list"],
            "jobs: [a, b]\n",
        ),
        text(
            "counts-out-of-range",
            &[
                "jobs.a.max_instances: -1 is out of range",
                "jobs.b.max_instances: expected a whole number",
                "spool.workers: 0 is out of range",
            ],
            "spool: {workers: 0}\njobs:\n  a: {every: 1s, command: [x], max_instances: -1}\n  \
             b: {every: 1s, command: [x], max_instances: 170141183460469231731687303715884105727}\n",
        ),
        text(
            "command-shapes",
            &[
                "jobs.a.command: the command is empty",
                "jobs.b.command: the command list is empty",
                "jobs.c.command: the program name is empty",
                "jobs.d.command: found a boolean; put the value in quotes",
            ],
            "jobs:\n  a: {every: 1s, command: \"  \"}\n  b: {every: 1s, command: []}\n  \
             c: {every: 1s, command: [\"\", x]}\n  d: {every: 1s, command: [true]}\n",
        ),
        text(
            "empty-environments",
            &["`environments: []` would disable the job everywhere"],
            job("every: 1s\ncommand: [x]\nenvironments: []"),
        ),
    ];

    // Names that must not become log prefixes, variables or file names.
    let long = "a".repeat(101);
    for (label, name) in [
        ("name-with-a-newline", "\"a\\nb\""),
        ("name-dot-dot", "\"..\""),
        ("name-dot", "\".\""),
        ("name-with-a-slash", "\"a/b\""),
        ("name-absolute-path", "\"/etc/passwd\""),
        ("name-101-characters", long.as_str()),
        ("name-empty", "\"\""),
        ("name-option", "\"-rf\""),
        ("name-with-a-space", "\"a b\""),
        ("name-not-ascii", "\"jöb\""),
        ("name-with-an-escape-sequence", "\"\\e[31mred\""),
        ("name-with-a-nul", "\"a\\0b\""),
        ("name-shell", "\"$(id)\""),
        ("name-hidden", "\".hidden\""),
    ] {
        cases.push(text(
            label,
            &["is not a valid name"],
            format!("jobs:\n  {name}:\n    every: 1s\n    command: [x]\n"),
        ));
    }
    cases.push(text(
        "task-name-dot-dot-slash",
        &["tasks: `../x` is not a valid name"],
        "tasks:\n  \"../x\":\n    command: [x]\n",
    ));

    // Cron expressions that are not: each names its field and problem.
    for (index, (expr, reason)) in [
        (
            "*/0 * * * *",
            "minute field: '*/0': the step after '/' must be a number from 1 to 59",
        ),
        ("99 * * * *", "minute field: 99 is out of range 0-59"),
        (
            "0 0 0 * * * *",
            "expected 5 or 6 fields (or an alias like @daily), found 7",
        ),
        ("* * * * * * * * * * * *", "found 12"),
        ("0 0 L-40 * *", "day-of-month field"),
        ("0 0 0 L-40 * *", "day-of-month field"),
        ("60 * * * * *", "second field: 60 is out of range 0-59"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 32W * *", "day-of-month field: 32 is out of range"),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("0 0 * * 1#6", "the number after '#' must be 1-5"),
        ("0 0 * * L", "'L' needs a day before it"),
        ("5-1 * * * *", "runs backwards"),
        ("-1 * * * *", "is missing a value"),
        ("*/5/5 * * * *", "the step after '/' must be a number"),
        ("5/15 * * * *", "needs '*' or a range before the '/'"),
        (
            "*/99999999999999999999 * * * *",
            "the step after '/' must be a number",
        ),
        ("99999999999999999999 * * * *", "is out of range 0-59"),
        ("1,,2 * * * *", "empty entry in the list '1,,2'"),
        ("\u{0660} * * * *", "is not a number"),
        ("\u{ff10} * * * *", "is not a number"),
        (
            "0 0 * JANUARY *",
            "'JANUARY' is not a number or a month name",
        ),
        ("0 0 * * FUNDAY", "is not a number or a day name"),
        ("a b c d e", "is not a number"),
        ("", "empty cron expression"),
        ("   ", "empty cron expression"),
        ("@reboot", "@reboot is not supported"),
        ("@every 5m", "unknown alias @every"),
        ("@daily 5", "@daily must stand alone"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(text(
            format!("cron-{index:02}"),
            &["jobs.a.schedule: ", reason],
            job(&format!("schedule: \"{expr}\"\ncommand: [x]")),
        ));
    }
    cases.push(text(
        "cron-not-a-string",
        &["jobs.a.schedule: expected a cron expression in quotes"],
        job("schedule: 5\ncommand: [x]"),
    ));

    // Durations that overflow, vanish or have no unit.
    for (index, (body, reason)) in [
        (
            "every: 99999999999d",
            "jobs.a.every: `99999999999d` is not a duration: it is too long",
        ),
        ("every: 213504d", "it is too long"),
        ("every: 18446744073709551616ms", "the number is too large"),
        ("every: 0s", "jobs.a.every: must be at least 1ms"),
        ("every: 0ms", "must be at least 1ms"),
        ("every: 0d0h0m0s", "must be at least 1ms"),
        ("every: 1us", "unknown unit"),
        ("every: 1ns", "unknown unit"),
        ("every: 1e3s", "unknown unit"),
        ("every: -1s", "expected a whole number"),
        ("every: 1.5s", "a number needs a unit"),
        ("every: 5", "`5` has no unit"),
        ("every: \"\"", "it is empty"),
        ("every: .inf", "non-finite float"),
        (
            "every: 1s\noffset: 99999999999d",
            "jobs.a.offset: `99999999999d` is not a duration",
        ),
        (
            "every: 1s\ntimeout: 0s",
            "jobs.a.timeout: must be longer than 0s",
        ),
        (
            "every: 1s\nkill_grace: 1y",
            "jobs.a.kill_grace: `1y` is not a duration: unknown unit",
        ),
        (
            "schedule: \"* * * * *\"\noffset: 5s",
            "`offset:` goes with `every:`",
        ),
        (
            "every: 1s\nschedule: \"* * * * *\"",
            "has both `schedule:` and `every:`",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(text(
            format!("duration-{index:02}"),
            &[reason],
            job(&format!("{body}\ncommand: [x]")),
        ));
    }
    cases
}

#[test]
fn jobd_check_refuses_every_broken_jobfile_quickly_and_says_why() {
    let dir = Dir::new("");
    let cases = cases();
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for case in &cases {
        let path = (case.make)(dir.path());
        let checked = check(dir.path(), &case.label, &path, case.limit);
        if checked.took > slowest.0 {
            slowest = (checked.took, case.label.clone());
        }
        if let Err(why) = judge(&checked, &case.says, case.limit) {
            failures.push(format!(
                "{}: {why}\n  stderr: {}",
                case.label,
                clip(&checked.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken jobfiles were not refused as they should be:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} broken jobfiles refused; slowest: {} in {:?}",
        cases.len(),
        slowest.1,
        slowest.0
    );
}

#[test]
fn a_byte_order_mark_before_a_valid_jobfile_is_fine() {
    let dir = Dir::new("\u{feff}timezone: UTC\njobs:\n  a:\n    every: 1h\n    command: [x]\n");
    let run = dir.jobd(&["check", "--from", "2027-01-01T00:30:00Z"]);
    run.code(0);
    assert_eq!(run.stdout(), "a  2027-01-01T01:00:00+00:00\n");
}

/// Bug: "did you mean" compares a misspelt value with every candidate by a full
/// edit-distance matrix, with no bound on the value's length. An unknown time zone of
/// 100,000 characters is compared with ~600 zone names (50 s in a debug build, ~4 s in
/// release; 10 MB would take hours), and a 10 MB `on_overlap:` value allocates a
/// 10M x 8 matrix (740 MB). `jobd check`, a reload (in the daemon's loop) and `jobctl`
/// (which reads the zone of even a broken jobfile) all stall on it.
#[test]
fn a_long_misspelt_value_is_refused_quickly() {
    let dir = Dir::new("");
    let mut failures = Vec::new();
    for case in [
        text(
            "long-time-zone",
            &["unknown time zone"],
            format!("timezone: {}\njobs: {{}}\n", "a".repeat(100_000)),
        ),
        text(
            "long-choice",
            &["jobs.a.on_overlap: unknown value"],
            job(&format!(
                "every: 1s\ncommand: [x]\non_overlap: {}",
                "q".repeat(10 << 20)
            )),
        ),
        text(
            "long-explicit-key",
            &["jobs.a: unknown key"],
            job(&format!(
                "every: 1s\ncommand: [x]\n? {}\n: 1",
                "q".repeat(1 << 20)
            )),
        ),
    ] {
        let path = (case.make)(dir.path());
        let checked = check(dir.path(), &case.label, &path, case.limit);
        if let Err(why) = judge(&checked, &case.says, case.limit) {
            failures.push(format!("{}: {why}", case.label));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bug: a budget breached while an alias is replayed comes wrapped in serde-saphyr's
/// `Error::AliasError`, which `yaml::describe` does not unwrap: the user sees the
/// parser's debug output, cut at the first line break.
#[test]
fn a_budget_breached_through_an_alias_is_explained_in_the_users_terms() {
    let dir = Dir::new(&format!(
        "x:\n  a: &a \"{}\"\n  b: [{}]\n",
        "q".repeat(100 << 10),
        vec!["*a"; 999].join(", ")
    ));
    let run = dir.jobd(&["check"]);
    run.code(1);
    let stderr = run.stderr();
    assert!(
        !stderr.contains("ScalarBytes") && !stderr.contains("budget breached"),
        "{stderr}"
    );
    assert!(
        stderr.contains("too large or too complex") || stderr.contains("alias bomb"),
        "{stderr}"
    );
}

/// The spool test's jobfile: the one task records every file it runs for.
const MARKING: &str = r#"
timezone: UTC
shutdown_grace: 2s
spool:
  workers: 4
tasks:
  mark:
    command: [sh, -c, 'printf "%s\n" "$JOBD_SPOOL_NAME" >> ran.log', mark]
"#;

/// A spool file jobd must refuse, and a word its result's reason must contain.
struct Hostile {
    name: &'static str,
    contents: Vec<u8>,
    reason: &'static str,
}

fn hostile(name: &'static str, contents: impl Into<Vec<u8>>, reason: &'static str) -> Hostile {
    Hostile {
        name,
        contents: contents.into(),
        reason,
    }
}

fn hostile_spool_files() -> Vec<Hostile> {
    vec![
        hostile("binary.bin", noise(4096, 11), "not UTF-8"),
        hostile(
            "truncated-utf8.json",
            &b"{\"task\": \"mark\", \"args\": [\"caf\xc3"[..],
            "it is not UTF-8 text (byte 30)",
        ),
        // Refused by the aliases' limit, or sooner by the count of values a spool file
        // may hold.
        hostile(
            "alias-bomb.yaml",
            billion_laughs(9, "task: mark"),
            "alias|more than 10000 values",
        ),
        hostile(
            "deep-nesting.json",
            format!("{{\"task\": \"mark\", \"args\": {}", "[".repeat(10_000)),
            "nested deeper|recursion limit",
        ),
        hostile(
            "forty-levels.json",
            format!(
                "{{\"task\": \"mark\", \"args\": {}\"x\"{}}}",
                "[".repeat(40),
                "]".repeat(40)
            ),
            "nested deeper than 32 levels",
        ),
        hostile(
            "two-megabytes.json",
            format!(
                "{{\"task\": \"mark\", \"args\": [\"{}\"]}}",
                "a".repeat(2 << 20)
            ),
            "more than the 1048576 a spool file may have",
        ),
        hostile("empty.json", "", "found nothing (null)"),
        hostile(
            "null.json",
            "null",
            "expected a mapping with at least `task:`",
        ),
        hostile("list.json", "[{\"task\": \"mark\"}]", "expected a mapping"),
        hostile("string.json", "\"mark\"", "expected a mapping"),
        hostile("no-task.json", "{\"args\": [\"x\"]}", "`task:` is missing"),
        hostile(
            "args-string.json",
            "{\"task\": \"mark\", \"args\": \"x\"}",
            "args: expected a list",
        ),
        hostile(
            "args-boolean.yaml",
            "task: mark\nargs: [true]\n",
            "found a boolean; put the value in quotes",
        ),
        hostile(
            "args-mapping.json",
            "{\"task\": \"mark\", \"args\": [{\"a\": 1}]}",
            "args: expected a string, found a mapping",
        ),
        hostile(
            "args-nul.json",
            "{\"task\": \"mark\", \"args\": [\"a\\u0000b\"]}",
            "an argument contains a NUL character",
        ),
        hostile(
            "env-list.json",
            "{\"task\": \"mark\", \"env\": [1]}",
            "env: expected a mapping of NAME: value, found a list",
        ),
        hostile(
            "env-path.json",
            "{\"task\": \"mark\", \"env\": {\"PATH\": \"/tmp/evil\"}}",
            "`PATH` may not be set",
        ),
        hostile(
            "env-ld-preload.json",
            "{\"task\": \"mark\", \"env\": {\"LANG\": \"C\", \"LD_PRELOAD\": \"/tmp/evil.so\"}}",
            "`LD_PRELOAD` may not be set",
        ),
        hostile(
            "env-pythonpath.json",
            "{\"task\": \"mark\", \"env\": {\"PYTHONSTARTUP\": \"/tmp/evil.py\"}}",
            "`PYTHONSTARTUP` may not be set",
        ),
        hostile(
            "env-bash-function.json",
            "{\"task\": \"mark\", \"env\": {\"BASH_FUNC_printf%%\": \"() { touch pwned; }\"}}",
            "may not be set",
        ),
        hostile(
            "env-jobd.json",
            "{\"task\": \"mark\", \"env\": {\"JOBD_SPOOL_FILE\": \"../../etc/passwd\"}}",
            "set by jobd itself",
        ),
        hostile(
            "env-equals.json",
            "{\"task\": \"mark\", \"env\": {\"A=B\": \"x\"}}",
            "`A=B` is not a valid variable name",
        ),
        hostile(
            "env-nul.json",
            "{\"task\": \"mark\", \"env\": {\"A\": \"x\\u0000y\"}}",
            "contains a NUL character",
        ),
        hostile(
            "unknown-task.json",
            "{\"task\": \"sh\"}",
            "unknown task `sh`",
        ),
        hostile(
            "task-case.json",
            "{\"task\": \"MARK\"}",
            "unknown task `MARK`",
        ),
        hostile(
            "task-space.json",
            "{\"task\": \"mark \"}",
            "`mark ` is not a task name",
        ),
        hostile(
            "task-newline.json",
            "{\"task\": \"mark\\nx\"}",
            "`mark\\nx` is not a task name",
        ),
        hostile(
            "task-path.json",
            "{\"task\": \"../mark\"}",
            "`../mark` is not a task name",
        ),
        hostile("task-number.json", "{\"task\": 5}", "unknown task `5`"),
        hostile(
            "task-list.json",
            "{\"task\": [\"mark\"]}",
            "task: expected a string",
        ),
        hostile(
            "unknown-key.json",
            "{\"task\": \"mark\", \"program\": \"/bin/sh\"}",
            "unknown key `program`",
        ),
        hostile(
            "unknown-key-user.json",
            "{\"task\": \"mark\", \"user\": \"root\", \"workdir\": \"/\"}",
            "unknown key `user`",
        ),
        hostile(
            "duplicate-task.yaml",
            "task: sh\ntask: mark\n",
            "duplicate key `task`",
        ),
        hostile(
            "two-documents.yaml",
            "task: mark\n---\ntask: mark\n",
            "more than one YAML document",
        ),
        hostile(
            "delay-overflow.json",
            "{\"task\": \"mark\", \"delay\": \"99999999999d\"}",
            "it is too long",
        ),
        hostile(
            "run-at-nonsense.json",
            "{\"task\": \"mark\", \"run_at\": \"2026-13-45T99:00:00Z\"}",
            "is not an RFC 3339 time",
        ),
        hostile(
            "run-at-and-delay.json",
            "{\"task\": \"mark\", \"run_at\": \"2026-01-01T00:00:00Z\", \"delay\": \"1s\"}",
            "has both `run_at:` and `delay:`",
        ),
        hostile(
            "x.result.json",
            "{\"task\": \"mark\"}",
            "names ending in .result.json are kept for results",
        ),
    ]
}

#[test]
fn hostile_spool_files_go_to_failed_with_a_reason_and_nothing_runs() {
    let dir = Dir::new(MARKING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let new = dir.spool("new");
    let files = hostile_spool_files();
    for file in &files {
        dir.drop_file(file.name, &file.contents);
    }
    // What is not a file of its own, each pointing at a request that would run. A
    // hard link is a regular file, refused and moved; the others are not files, and
    // are refused where they lie, never moved into jobd's folders.
    let valid = dir.join("valid.json");
    fs::write(&valid, br#"{"task": "mark"}"#).unwrap();
    fs::hard_link(&valid, new.join("hardlink.json")).unwrap();
    let moved = [("hardlink.json", "it has 2 hard links")];
    let mut in_place = vec![
        ("symlink.json", "it is a symbolic link, not a regular file"),
        ("symlink-dir", "it is a symbolic link"),
        ("dangling-symlink.json", "it is a symbolic link"),
        ("fifo.json", "it is a FIFO, not a regular file"),
        ("directory.json", "it is a directory, not a regular file"),
        ("socket.json", "it is a socket, not a regular file"),
    ];
    std::os::unix::fs::symlink(&valid, new.join("symlink.json")).unwrap();
    std::os::unix::fs::symlink(dir.path(), new.join("symlink-dir")).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere.json"), new.join("dangling-symlink.json"))
        .unwrap();
    nix::unistd::mkfifo(&new.join("fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    fs::create_dir(new.join("directory.json")).unwrap();
    fs::write(
        new.join("directory.json").join("inner.json"),
        br#"{"task": "mark"}"#,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(new.join("socket.json")).unwrap();
    if nix::unistd::Uid::effective().is_root()
        && nix::sys::stat::mknod(
            &new.join("zero.json"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            nix::sys::stat::makedev(1, 5),
        )
        .is_ok()
    {
        in_place.push(("zero.json", "it is a device, not a regular file"));
    }
    // A name that is not UTF-8 cannot be reported in JSON: it moves to failed/ alone.
    let unnamed = OsStr::from_bytes(b"\xff\xfe.json");
    fs::write(dir.spool("tmp").join(unnamed), br#"{"task": "mark"}"#).unwrap();
    fs::rename(dir.spool("tmp").join(unnamed), new.join(unnamed)).unwrap();
    // Dropped last, it still runs.
    dir.drop_file("good.json", br#"{"task": "mark"}"#);

    // `spool_files` leaves out names ending in .result.json, like x.result.json; the
    // unnamed file counts.
    let expected = files
        .iter()
        .map(|f| f.name)
        .chain(moved.iter().map(|(name, _)| *name))
        .filter(|name| !name.ends_with(".result.json"))
        .count()
        + 1;
    let refused_in_place = || {
        in_place.iter().all(|(name, _)| {
            dir.spool("failed")
                .join(format!("{name}.result.json"))
                .exists()
        })
    };
    assert!(
        eventually(Duration::from_secs(20), || {
            dir.spool_files("failed").len() == expected
                && dir.spool_files("done") == ["good.json"]
                && refused_in_place()
        }),
        "expected {expected} files in failed/ and good.json in done/\nnew: {:?}\nrunning: {:?}\ndone: {:?}\nfailed: {:?}\n{}",
        dir.spool_files("new"),
        dir.spool_files("running"),
        dir.spool_files("done"),
        dir.spool_files("failed"),
        jobd.log()
    );
    assert_eq!(jobd.stop(), Some(0));

    assert_eq!(
        dir.lines("ran.log"),
        ["good.json"],
        "only the good file may run"
    );
    let mut left: Vec<String> = in_place.iter().map(|(name, _)| name.to_string()).collect();
    left.sort();
    assert_eq!(dir.spool_files("new"), left, "refused where they lie");
    assert!(dir.spool_files("running").is_empty());
    let mut wrong = Vec::new();
    let reasons = files
        .iter()
        .map(|f| (f.name, f.reason))
        .chain(moved.iter().copied())
        .chain(in_place.iter().copied());
    for (name, reason) in reasons {
        let result = dir.result("failed", name);
        let text = result["reason"].as_str().unwrap_or_default();
        if result["state"] != "failed" || says(text, &[reason]).is_err() {
            wrong.push(format!(
                "{name}: {} `{text}`, expected `{reason}`",
                result["state"]
            ));
        }
        if !result["attempts"].as_array().is_none_or(Vec::is_empty) {
            wrong.push(format!("{name}: has attempts: {}", result["attempts"]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        dir.spool("failed").join(unnamed).exists(),
        "the unnamed file is kept"
    );
    // Nothing that is not a regular file of its own came into jobd's folders.
    for (name, _) in &in_place {
        assert!(!dir.spool("failed").join(name).exists(), "{name} moved");
    }
    assert!(valid.exists());
    // Each is refused once, not at every look.
    let log = jobd.log();
    assert_eq!(log.matches("refusing directory.json").count(), 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// The names a writer may give a spool file that are awkward for the tools that read
/// the spool (a newline breaks `ls | while read`, a dot hides the file): whatever jobd
/// does with them, it does not let them forge lines in its log.
#[test]
fn awkward_spool_file_names_cannot_forge_log_lines() {
    let dir = Dir::new(MARKING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    dir.drop_file("a\nFORGED: name.json", br#"{"task": "mark"}"#);
    dir.drop_file("b\nFORGED: name.json", br#"{"task": "nope"}"#);
    dir.drop_file("good.json", br#"{"task": "mark"}"#);
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    dir.wait_spool("failed", 2, Duration::from_secs(20), &jobd);
    jobd.stop();
    let log = jobd.log();
    assert!(
        !log.lines().any(|line| line.starts_with("FORGED")),
        "a file name wrote its own log line:\n{log}"
    );
}

/// Bug: the reason a spool file is refused is logged unescaped (only the file name is
/// escaped), and it quotes the file's own text: `{"task": "x\nFORGED ..."}` writes a
/// line of the writer's choosing into jobd's log (and journald).
#[test]
fn a_spool_file_cannot_forge_log_lines_through_its_contents() {
    let dir = Dir::new(MARKING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let forged = "2026-01-01T00:00:00.000Z INFO  FORGED[1]: succeeded after 1ms";
    dir.drop_file(
        "task.json",
        format!(r#"{{"task": "x\n{forged}"}}"#).as_bytes(),
    );
    dir.drop_file(
        "key.json",
        format!(r#"{{"task": "mark", "x\n{forged}": 1}}"#).as_bytes(),
    );
    dir.drop_file(
        "run-at.json",
        format!(r#"{{"task": "mark", "run_at": "x\n{forged}"}}"#).as_bytes(),
    );
    dir.wait_spool("failed", 3, Duration::from_secs(20), &jobd);
    jobd.stop();
    let log = jobd.log();
    assert!(
        !log.lines()
            .any(|line| line.contains("FORGED") && line.starts_with("2026-01-01")),
        "{log}"
    );
}

/// A name starting with `.` is a temporary file's (`.NAME.tmp`, ignored) or refused:
/// jobd's recovery after a crash would not see it.
#[test]
fn a_hidden_spool_file_is_refused() {
    let dir = Dir::new(MARKING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    dir.drop_file(".hidden.json", br#"{"task": "mark"}"#);
    dir.drop_file("good.json", br#"{"task": "mark"}"#);
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    assert!(eventually(Duration::from_secs(5), || !dir
        .spool("new")
        .join(".hidden.json")
        .exists()));
    jobd.stop();
    assert_eq!(dir.lines("ran.log"), ["good.json"]);
    assert!(dir.spool("failed").join(".hidden.json").exists());
}

/// `NAME.result.json` must fit in 255 bytes, with room for `.NAME.result.json.tmp`:
/// longer names move to failed/ without a result, at once and once, and never run.
#[test]
fn a_spool_file_with_a_long_name_is_refused_once() {
    let dir = Dir::new(MARKING);
    let good = "g".repeat(239);
    let bad = "b".repeat(201);
    let fits = "f".repeat(200);
    dir.drop_file(&good, br#"{"task": "mark"}"#);
    dir.drop_file(&bad, br#"{"task": "nope"}"#);
    dir.drop_file(&fits, br#"{"task": "mark"}"#);
    for _ in 0..2 {
        let mut jobd = dir.start(&[]);
        jobd.wait_log("started", Duration::from_secs(10));
        assert!(
            eventually(Duration::from_secs(10), || dir
                .spool_files("new")
                .is_empty()
                && dir.spool_files("running").is_empty()),
            "new: {:?}\nrunning: {:?}\n{}",
            dir.spool_files("new"),
            dir.spool_files("running"),
            jobd.log()
        );
        jobd.stop();
    }
    assert_eq!(dir.spool_files("done"), std::slice::from_ref(&fits));
    let mut failed = vec![bad, good];
    failed.sort();
    assert_eq!(dir.spool_files("failed"), failed);
    assert_eq!(dir.lines("ran.log"), [fits]);
}

/// A file named with a newline would reach the task in `JOBD_SPOOL_FILE` and every
/// tool that lists the spool line by line: it is refused.
#[test]
fn a_spool_file_name_with_a_newline_is_refused() {
    let dir = Dir::new(MARKING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    dir.drop_file("two\nlines.json", br#"{"task": "mark"}"#);
    dir.drop_file("good.json", br#"{"task": "mark"}"#);
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    assert!(eventually(Duration::from_secs(5), || dir
        .spool_files("new")
        .is_empty()));
    jobd.stop();
    assert_eq!(dir.lines("ran.log"), ["good.json"]);
    assert_eq!(dir.spool_files("failed"), ["two\nlines.json"]);
}

/// Times at the edges of what a spool file can say: they wait or run, and nothing else
/// is disturbed.
#[test]
fn far_future_and_ancient_times_in_spool_files_do_no_harm() {
    let dir = Dir::new(MARKING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    // The longest delay a duration can hold (about 584 years), and the last second of 9999.
    dir.drop_file("far-delay.json", br#"{"task": "mark", "delay": "213503d"}"#);
    dir.drop_file(
        "far-run-at.json",
        br#"{"task": "mark", "run_at": "9999-12-31T23:59:59Z"}"#,
    );
    dir.drop_file(
        "ancient.json",
        br#"{"task": "mark", "run_at": "0000-01-01T00:00:00Z"}"#,
    );
    dir.drop_file(
        "odd-offset.json",
        br#"{"task": "mark", "run_at": "2026-01-01T00:00:00+23:59"}"#,
    );
    jobd.wait_log("far-run-at.json waits until", Duration::from_secs(10));
    dir.drop_file("good.json", br#"{"task": "mark"}"#);
    dir.wait_spool("done", 3, Duration::from_secs(20), &jobd);
    let status = dir.jobctl(&["-c", "jobd.yaml", "status", "--json"]);
    status.code(0);
    assert_eq!(jobd.stop(), Some(0));
    assert_eq!(
        dir.spool_files("new"),
        ["far-delay.json", "far-run-at.json"]
    );
    let mut ran = dir.lines("ran.log");
    ran.sort();
    assert_eq!(ran, ["ancient.json", "good.json", "odd-offset.json"]);
}
