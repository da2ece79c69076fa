//! `JOBD_RESULT_FILE`: an empty file in `values/`, made by jobd before the attempt
//! starts and writable by the attempt's user alone, where the child may write one JSON
//! value; read back (at most 1 MiB) when the attempt ends, then removed.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

pub use super::result::Value;

/// The largest value jobd reads back.
pub const MAX_VALUE_BYTES: u64 = 1 << 20;

/// Make the value file of run `run_id` in `dir`, owned by `owner` (the task's user,
/// when jobd runs as root and the task runs as another user).
pub(super) fn create(dir: &Path, run_id: &str, owner: Option<(Uid, Gid)>) -> io::Result<PathBuf> {
    let path = dir.join(format!("{run_id}.json"));
    // Left by an attempt of the same id? Run ids are unique per start of jobd, and the
    // folder is emptied at start-up; a file here is stale all the same.
    let _ = fs::remove_file(&path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(&file, Some(uid), Some(gid))?;
    }
    Ok(path)
}

/// What the child left in its value file, which is removed. An empty file is no
/// value; anything but one JSON value, or too much, is said in `error`.
pub fn take(path: &Path) -> Value {
    let read = read(path);
    let _ = fs::remove_file(path);
    match read {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Value::default(),
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) => Value {
                value: Some(value),
                error: None,
            },
            Err(e) => Value {
                value: None,
                error: Some(format!("it does not hold one JSON value: {e}")),
            },
        },
        Err(error) => Value {
            value: None,
            error: Some(error),
        },
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file any more".to_string());
    }
    if meta.size() > MAX_VALUE_BYTES {
        return Err(format!(
            "it holds {} bytes, more than the {MAX_VALUE_BYTES} a value may have",
            meta.size()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    file.take(MAX_VALUE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_VALUE_BYTES {
        return Err(format!(
            "it holds more than the {MAX_VALUE_BYTES} bytes a value may have"
        ));
    }
    Ok(bytes)
}

/// Value files left by attempts of an earlier jobd: nobody reads them any more.
pub(super) fn clear(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = fs::remove_file(entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_read_back_once_and_explained_when_it_is_not_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "r-1", None).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(take(&path), Value::default(), "empty: no value");
        assert!(!path.exists());

        let path = create(dir.path(), "r-2", None).unwrap();
        fs::write(&path, br#"{"rows": 12}"#).unwrap();
        assert_eq!(take(&path).value, Some(serde_json::json!({"rows": 12})));

        let path = create(dir.path(), "r-3", None).unwrap();
        fs::write(&path, b"{\"rows\": 1} trailing").unwrap();
        let bad = take(&path);
        assert!(bad.value.is_none());
        assert!(bad.error.unwrap().contains("one JSON value"));

        let path = create(dir.path(), "r-4", None).unwrap();
        fs::write(&path, vec![b'1'; MAX_VALUE_BYTES as usize + 1]).unwrap();
        assert!(take(&path).error.unwrap().contains("more than the 1048576"));

        let path = create(dir.path(), "r-5", None).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        assert!(take(&path).error.unwrap().contains("cannot read it"));
        assert!(fs::symlink_metadata(&path).is_err(), "removed all the same");
    }
}
