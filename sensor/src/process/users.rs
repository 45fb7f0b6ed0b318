//! User names from `/etc/passwd`, reloaded when the file changes.
//!
//! Names come from the host's database, as the sensor sees it: a process in a
//! container whose uid is not in the host's `/etc/passwd` gets no name.

use std::{collections::HashMap, fs, os::unix::fs::MetadataExt, path::PathBuf, time::SystemTime};

/// Which version of the file the names came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

/// uid → name, as `/etc/passwd` says.
#[derive(Debug)]
pub(super) struct Users {
    path: PathBuf,
    stamp: Option<Stamp>,
    names: HashMap<u32, String>,
}

impl Users {
    /// Names from the passwd file at `path`, read on first use.
    pub(super) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            stamp: None,
            names: HashMap::new(),
        }
    }

    /// The name of `uid`; the file is read again when it has changed.
    pub(super) fn name(&mut self, uid: u32) -> Option<String> {
        self.refresh();
        self.names.get(&uid).cloned()
    }

    fn refresh(&mut self) {
        let stamp = fs::metadata(&self.path).ok().map(|m| Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            ino: m.ino(),
        });
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.names = match fs::read(&self.path) {
            Ok(bytes) => parse_passwd(&String::from_utf8_lossy(&bytes)),
            Err(_) => HashMap::new(),
        };
        self.stamp = stamp;
    }
}

/// uid → name from passwd(5) text; the first entry of a uid wins, as with
/// `getpwuid`. NIS markers (`+`, `-`) and comments are skipped.
fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        if line.starts_with(['#', '+', '-']) {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(uid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if let Ok(uid) = uid.parse::<u32>() {
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n\
             # comment\n\
             daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
             toor:x:0:0::/root:/bin/sh\n\
             +nis::::::\n\
             broken\n\
             :x:5:5::/:/bin/false\n\
             bad:x:notanumber:0::/:/bin/false\n\
             alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&1).map(String::as_str), Some("daemon"));
        assert_eq!(names.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn reloads_when_the_file_changes() {
        let path = std::env::temp_dir().join(format!("telltale-passwd-{}", std::process::id()));
        fs::write(&path, "alice:x:1000:1000::/home/alice:/bin/sh\n").expect("write passwd");
        let mut users = Users::new(&path);
        assert_eq!(users.name(1000).as_deref(), Some("alice"));
        assert_eq!(users.name(1001), None);

        // A different length is a change even within one mtime tick.
        fs::write(
            &path,
            "alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        )
        .expect("rewrite passwd");
        assert_eq!(users.name(1001).as_deref(), Some("bob"));

        fs::remove_file(&path).expect("remove passwd");
        assert_eq!(users.name(1000), None);
    }
}
