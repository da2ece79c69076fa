//! Reading the jobfile from disk, refusing what cannot be a jobfile before parsing it.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Problem, ProblemKind};

/// Far above a 10,000-job jobfile (about 1 MiB), far below what could hurt.
const MAX_JOBFILE_BYTES: u64 = 16 << 20;

/// The jobfile's absolute path (symlinks kept, so that a `current -> release-N` deploy
/// layout resolves relative paths inside `current`) and its text.
pub fn read_jobfile(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let fail = |reason: String| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            pos: None,
            kind: ProblemKind::Unreadable(reason),
        }],
    };
    // O_NONBLOCK so that a FIFO at the path cannot hang `jobd check` or a reload.
    let mut handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&file)
        .map_err(|e| fail(format!("cannot open the jobfile: {e}")))?;
    let meta = handle
        .metadata()
        .map_err(|e| fail(format!("cannot read the jobfile: {e}")))?;
    if !meta.is_file() {
        return Err(fail("the jobfile is not a regular file".to_string()));
    }
    if meta.len() > MAX_JOBFILE_BYTES {
        return Err(fail(format!(
            "the jobfile is {} bytes, more than the {} a jobfile may have",
            meta.len(),
            MAX_JOBFILE_BYTES
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    handle
        .by_ref()
        .take(MAX_JOBFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read the jobfile: {e}")))?;
    if bytes.len() as u64 > MAX_JOBFILE_BYTES {
        return Err(fail(
            "the jobfile grew too large while being read".to_string(),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "the jobfile is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((file, text))
}
