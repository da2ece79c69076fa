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
    let mut content = false;
    let lines: Vec<&str> = text.lines().collect();
    for (at, &line) in lines.iter().enumerate() {
        let Some(first) = line.chars().next() else {
            continue;
        };
        if first == ' ' || first == '#' || line.trim().is_empty() {
            continue;
        }
        if line == "---" && !content {
            continue;
        }
        content = true;
        let (key, rest) = line.split_once(':')?;
        if !top_keys.contains(&key) {
            return None;
        }
        // A flow collection may run over lines that start at column 0.
        if rest.trim_start_matches(' ').starts_with(['{', '[']) {
            return None;
        }
        let index = match key {
            "timezone" => 0,
            "state_dir" => 1,
            "socket" => 2,
            _ => continue,
        };
        // An indented line after it (blank lines between) continues the value, or
        // holds it.
        let continued = lines[at + 1..]
            .iter()
            .find(|next| !next.trim().is_empty())
            .is_some_and(|next| next.starts_with([' ', '\t']));
        if found[index].is_some() || continued {
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

/// A one-line string after `key:`: plain (up to a ` #` comment), or in quotes without
/// escapes. `None` for whatever YAML might read otherwise: numbers, null, booleans,
/// tabs, comments where the value should be.
fn scalar(rest: &str) -> Option<String> {
    if !rest.starts_with(' ') || rest.contains('\t') {
        return None;
    }
    // Spaces only: YAML keeps other white space (a no-break space) in the value.
    let value = rest.trim_matches(' ');
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote) {
            let (inner, after) = inner.split_once(quote)?;
            let comment = after.is_empty()
                || (after.starts_with(' ') && after.trim_start_matches(' ').starts_with('#'));
            if inner.contains('\\') || inner.contains(quote) || !comment {
                return None;
            }
            return Some(inner.to_string());
        }
    }
    let value = match value.find(" #") {
        Some(at) => value[..at].trim_end(),
        None => value,
    };
    let special = |c: char| "#&*!|>{}[]%@`,+-.~0123456789".contains(c);
    let lower = value.to_ascii_lowercase();
    if value.is_empty()
        || value.starts_with(special)
        || value.ends_with(':')
        || value.contains(": ")
        || value.contains(['"', '\''])
        || ["null", "true", "false"].contains(&lower.as_str())
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

    /// Wherever the scan answers, it answers what the parser would.
    #[test]
    fn the_scan_agrees_with_the_parser() {
        let dir = Path::new("/app");
        let texts = [
            "timezone: UTC\nsocket: /run/jobd/jobd.sock\nstate_dir: /var/lib/jobd\njobs:\n",
            "state_dir: state # here\njobs:\n  a:\n    every: 1s\n    command: [x]\n",
            "socket: 'a b.sock'\n",
            "---\nsocket: /s\n",
            "socket: # where jobctl finds jobd\n  /run/jobd.sock\n",
            "state_dir: /var/lib/jobd\t# tab comment\n",
            "state_dir: /var/lib\n  jobd-data\n",
            "state_dir: 0x10\n",
            "state_dir: +12\n",
            "state_dir: 0o17\n",
            "state_dir: 12\n",
            "state_dir: ~\n",
            "state_dir: null\n",
            "state_dir: True\n",
            "state_dir: 1.5\n",
            "state_dir: .hidden\n",
            "state_dir: /x:\n",
            "state_dir: \"/x\"#c\n",
            "state_dir: \"/x\" # c\n",
            "state_dir: '/it''s'\n",
            "socket: /s\n---\nsocket: /t\n",
            "socket: /s\n...\n",
            "timezone: Europe/Amsterdam\nstate_dir: s\n\n# end\n",
            "socket: /a#b\n",
            "socket:  /two spaces\n",
            "defaults: {env: {A: b,\nsocket: /evil}}\n",
            "socket: /x\n\n  y\n",
            "socket: /x\u{a0}\n",
            "state_dir: /s\njobs: {}\n",
        ];
        for text in texts {
            let thorough = super::super::load::places_thorough(text, dir, &host());
            if let Some(quick) = scan(text, TOP, dir, &host()) {
                assert_eq!(quick, thorough, "{text:?}");
            }
        }
        // The plain forms are answered by the scan itself.
        for text in &texts[..3] {
            assert!(scan(text, TOP, dir, &host()).is_some(), "{text:?}");
        }
    }
}
