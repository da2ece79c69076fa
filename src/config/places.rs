//! Where jobd keeps its socket and state, and its zone: what jobctl needs from the
//! jobfile before every command, read in a millisecond from a jobfile of 10,000 jobs.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use super::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    pub timezone: Tz,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
}

/// The zone and folders, where the jobfile names none: systemd's directories, else
/// `.jobd/` beside the jobfile.
pub(super) fn resolve(
    timezone: Option<Tz>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    dir: &Path,
    host: &Host,
) -> Places {
    let timezone = timezone.unwrap_or_else(|| {
        host.local_zone
            .as_deref()
            .and_then(|name| name.parse().ok())
            .unwrap_or(Tz::UTC)
    });
    let state_dir = state_dir.unwrap_or_else(|| {
        host.state_directory
            .clone()
            .unwrap_or_else(|| dir.join(".jobd"))
    });
    let socket = socket.unwrap_or_else(|| {
        host.runtime_directory
            .clone()
            .unwrap_or_else(|| state_dir.clone())
            .join("jobd.sock")
    });
    Places {
        timezone,
        state_dir,
        socket,
    }
}

/// The places of a jobfile written the plain way: every line at column 0 is a comment,
/// `---` or `key:` with one of the jobfile's top-level keys (`top_keys`), and the three keys, if present, hold plain or quoted
/// one-line values without escapes. `None` for anything else (flow style, anchors,
/// block scalars, a repeated key...): the caller then parses the YAML properly.
pub(super) fn scan(text: &str, top_keys: &[&str], dir: &Path, host: &Host) -> Option<Places> {
    let mut found: [Option<String>; 3] = [None, None, None];
    for line in text.lines() {
        let Some(first) = line.chars().next() else {
            continue;
        };
        if first == ' ' || first == '#' || line.trim().is_empty() || line == "---" {
            continue;
        }
        let (key, rest) = line.split_once(':')?;
        if !top_keys.contains(&key) {
            return None;
        }
        let index = match key {
            "timezone" => 0,
            "state_dir" => 1,
            "socket" => 2,
            _ => continue,
        };
        if found[index].is_some() {
            return None;
        }
        found[index] = Some(scalar(rest)?);
    }
    let [timezone, state_dir, socket] = found;
    let timezone = match timezone {
        Some(name) => Some(name.parse::<Tz>().ok()?),
        None => None,
    };
    let path = |value: Option<String>| match value {
        None => Some(None),
        Some(text) if text.is_empty() || text.contains('\0') => None,
        Some(text) => Some(Some(dir.join(text))),
    };
    Some(resolve(
        timezone,
        path(state_dir)?,
        path(socket)?,
        dir,
        host,
    ))
}

/// A one-line scalar after `key:`: plain (up to a ` #` comment), or in quotes without
/// escapes.
fn scalar(rest: &str) -> Option<String> {
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let value = rest.trim();
    let value = match value.find(" #") {
        Some(at) if !value.starts_with(['"', '\'']) => value[..at].trim_end(),
        _ => value,
    };
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote) {
            let (inner, after) = inner.split_once(quote)?;
            let after = after.trim();
            if inner.contains('\\') || !(after.is_empty() || after.starts_with('#')) {
                return None;
            }
            return Some(inner.to_string());
        }
    }
    let special = |c: char| "&*!|>{}[]%@`,".contains(c);
    if value.is_empty()
        || value.starts_with(special)
        || value.contains(": ")
        || value.contains(['"', '\''])
    {
        return None;
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: &[&str] = &["timezone", "state_dir", "socket", "jobs"];

    fn host() -> Host {
        Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        }
    }

    #[test]
    fn plain_jobfiles_are_read_quickly_and_anything_unusual_is_left_to_the_parser() {
        let dir = Path::new("/app");
        let text = "# jobs\ntimezone: Europe/Amsterdam   # local\nstate_dir: '/var/lib/jobd'\n\
                    socket: \"run/jobd.sock\"\njobs:\n  a:\n    socket: nested, ignored\n";
        let places = scan(text, TOP, dir, &host()).unwrap();
        assert_eq!(places.timezone, chrono_tz::Europe::Amsterdam);
        assert_eq!(places.state_dir, Path::new("/var/lib/jobd"));
        assert_eq!(places.socket, Path::new("/app/run/jobd.sock"));

        let defaults = scan("jobs:\n  a:\n    every: 1s\n", TOP, dir, &host()).unwrap();
        assert_eq!(defaults.socket, Path::new("/app/.jobd/jobd.sock"));
        assert_eq!(defaults.timezone, Tz::UTC);

        for unusual in [
            "{socket: /x}\n",
            "socket: &a /x\n",
            "socket: >\n  /x\n",
            "\"socket\": /x\n",
            "socket: /x\nsocket: /y\n",
            "socket: \"/x\\n\"\n",
            "socket: ''\n",
            "timezone: Mars/Olympus\n",
            "<<: *base\n",
            "? socket\n: /x\n",
            "note: x\nsocket: /x\n",
            "socket: /x\"\n",
        ] {
            assert_eq!(scan(unusual, TOP, dir, &host()), None, "{unusual:?}");
        }
    }

    #[test]
    fn the_scan_agrees_with_the_parser() {
        let dir = Path::new("/app");
        for text in [
            "timezone: UTC\nsocket: /run/jobd/jobd.sock\nstate_dir: /var/lib/jobd\njobs: {}\n",
            "state_dir: state # here\njobs:\n  a:\n    every: 1s\n    command: [x]\n",
            "socket: 'a b.sock'\n",
        ] {
            let quick = scan(text, TOP, dir, &host()).unwrap();
            let mut check = super::super::checker::Checker::default();
            let root = crate::yaml::parse(text).unwrap();
            let top = check
                .fields(
                    &root,
                    "the jobfile",
                    &["timezone", "state_dir", "socket", "jobs"],
                )
                .unwrap();
            let timezone = top.get("timezone").map(|_| Tz::UTC);
            let path = |key: &str| {
                top.get(key).map(|n| {
                    let crate::yaml::Value::Str(s) = &n.value else {
                        panic!()
                    };
                    dir.join(s)
                })
            };
            let thorough = resolve(timezone, path("state_dir"), path("socket"), dir, &host());
            assert_eq!(quick, thorough, "{text:?}");
        }
    }
}
