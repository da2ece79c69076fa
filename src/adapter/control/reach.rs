//! Whether the groups the jobfile lets in can use the socket: `jobd check` warns when a
//! group does not exist, or when its members cannot pass through the folders that
//! lead to the socket (jobd decides each request, but only once it can be connected to).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::Gid;

use crate::leaf::account;
use crate::model::config::Config;

/// What may keep `socket_group` or `read_group` members from the socket, in words.
pub fn warnings(config: &Config) -> Vec<String> {
    [
        ("socket_group", &config.socket_group),
        ("read_group", &config.read_group),
    ]
    .into_iter()
    .filter_map(|(key, name)| Some((key, name.as_deref()?)))
    .filter_map(|(key, name)| match account::gid(name) {
        None => Some(format!(
            "{key}: there is no group `{name}` on this system: jobd will not start until it exists"
        )),
        Some(gid) => closed_folder(config, gid).map(|why| {
            format!(
                "{key}: members of `{name}` cannot reach the control socket {}: {why}",
                config.socket.display()
            )
        }),
    })
    .collect()
}

/// The first folder on the way to the socket that members of `gid` (who are not its
/// owner) may not pass through, and why; `None` when the way is open.
fn closed_folder(config: &Config, gid: Gid) -> Option<String> {
    let folder = config.socket.parent()?;
    let mut ancestors: Vec<&Path> = folder.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        // jobd gives its state directory its mode at start-up: passable when a socket
        // others use is inside (`state::dir_mode`).
        if dir == config.state_dir {
            continue;
        }
        // Missing: jobd makes it, passable (0711).
        let Ok(meta) = std::fs::metadata(dir) else {
            return None;
        };
        let mode = meta.mode();
        let passable = mode & 0o001 != 0 || (mode & 0o010 != 0 && meta.gid() == gid.as_raw());
        if !passable {
            return Some(format!(
                "{} is mode {:o}, owner uid {}, group gid {} (`chmod o+x {}`, or give it to the group with g+x)",
                dir.display(),
                mode & 0o7777,
                meta.uid(),
                meta.gid(),
                dir.display()
            ));
        }
    }
    None
}
