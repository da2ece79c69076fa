//! Users and groups named in the jobfile: by name or by number.

use nix::unistd::{Gid, Group, Uid, User};

/// The user named `name` (or numbered so).
pub fn user(name: &str) -> Option<User> {
    let found = match name.parse::<u32>() {
        Ok(id) => User::from_uid(Uid::from_raw(id)),
        Err(_) => User::from_name(name),
    };
    found.ok().flatten()
}

/// The id of the user named `name`; a number is taken as an id even with no entry.
pub fn uid(name: &str) -> Option<Uid> {
    match name.parse::<u32>() {
        Ok(id) => Some(Uid::from_raw(id)),
        Err(_) => user(name).map(|u| u.uid),
    }
}

/// The id of the group named `name`; a number is taken as an id even with no entry.
pub fn gid(name: &str) -> Option<Gid> {
    match name.parse::<u32>() {
        Ok(id) => Some(Gid::from_raw(id)),
        Err(_) => Group::from_name(name).ok().flatten().map(|g| g.gid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_both_work() {
        assert_eq!(uid("root"), Some(Uid::from_raw(0)));
        assert_eq!(uid("0"), Some(Uid::from_raw(0)));
        assert_eq!(gid("root"), Some(Gid::from_raw(0)));
        assert_eq!(user("0").map(|u| u.name), Some("root".to_string()));
        assert_eq!(gid("no-such-group-here"), None);
    }
}
