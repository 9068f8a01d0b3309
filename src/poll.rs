//! Polling files for changes: a [`fingerprint`] of the files, a change loaded only once it
//! holds still ([`Settle`]), and the loop ([`watch_paths`]) that the state files, the TLS
//! certificates and the trust bundle reload through. Imports nothing of the crate.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

/// A cheap summary of `files` (what `paths` hold): names, sizes and modification times. A change
/// in it triggers a reload. Symlinks are followed, so a Kubernetes ConfigMap's atomic `..data`
/// swap is seen.
///
/// Size and modification time alone miss a change that keeps both (`cp -p`, `rsync -t`, or a
/// tool that restores the mtime): the fingerprint also holds the file's device and inode (a
/// file renamed into place is a new inode) and its status-change time, which every write,
/// `chmod` or `utimes` moves forward and no user can set back.
pub fn fingerprint(paths: &[PathBuf], files: Vec<PathBuf>) -> Vec<FileStamp> {
    let mut out: Vec<_> = files
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(&f).ok();
            FileStamp::new(f, m.as_ref())
        })
        .collect();
    // A path that disappears (or reappears) changes the fingerprint too.
    for p in paths {
        if !p.exists() {
            out.push(FileStamp {
                path: p.clone(),
                len: u64::MAX,
                modified: None,
                inode: (0, 0),
                changed: (0, 0),
            });
        }
    }
    out
}

/// What [`fingerprint`] records of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    /// Device and inode.
    inode: (u64, u64),
    /// Status-change time (ctime), seconds and nanoseconds.
    changed: (i64, i64),
}

impl FileStamp {
    fn new(path: PathBuf, m: Option<&std::fs::Metadata>) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        FileStamp {
            path,
            len: m.map_or(0, std::fs::Metadata::len),
            modified: m.and_then(|m| m.modified().ok()),
            inode: m.map_or((0, 0), |m| (m.dev(), m.ino())),
            changed: m.map_or((0, 0), |m| (m.ctime(), m.ctime_nsec())),
        }
    }
}

/// Polls `paths` every `interval` and calls `on_change` (on a blocking thread) whenever the
/// [`fingerprint`] of the `files` they hold changes and then holds still for one interval.
pub async fn watch_paths<F>(
    paths: Vec<PathBuf>,
    interval: Duration,
    files: fn(&[PathBuf]) -> Vec<PathBuf>,
    on_change: F,
) where
    F: FnMut() + Send + 'static,
{
    let on_change = std::sync::Arc::new(std::sync::Mutex::new(on_change));
    let mut settle = Settle::new(fingerprint(&paths, files(&paths)));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let p = paths.clone();
        let now = match tokio::task::spawn_blocking(move || fingerprint(&p, files(&p))).await {
            Ok(f) => f,
            Err(_) => continue,
        };
        if !settle.observe(now) {
            continue;
        }
        let f = on_change.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f();
        })
        .await;
    }
}

/// When to reload: the files changed, and have stayed as they are since the previous poll.
///
/// A file written in place (truncated, then written, as `cp`, a shell redirection or some
/// editors do) can be polled between the two, when it is empty or half written. Read then, an
/// empty file is a valid, empty state: every request allowed until the next poll. Waiting one
/// interval for the fingerprint to hold still closes that window for any write shorter than
/// the interval; a rename into place (what a ConfigMap update does) is atomic anyway.
#[derive(Debug)]
pub struct Settle<F> {
    /// What was last loaded.
    loaded: F,
    /// A change seen at the previous poll, not loaded yet.
    pending: Option<F>,
}

impl<F: PartialEq> Settle<F> {
    /// Starts from what is loaded now.
    pub fn new(loaded: F) -> Self {
        Settle {
            loaded,
            pending: None,
        }
    }

    /// Takes one poll's fingerprint; returns whether to reload now.
    pub fn observe(&mut self, now: F) -> bool {
        if now == self.loaded {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() != Some(&now) {
            self.pending = Some(now);
            return false;
        }
        self.pending = None;
        self.loaded = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nstatus: {podIP: 10.0.0.1}\n";

    /// The files under `paths`, as the state source lists them.
    fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
        crate::source::file::state_files(paths)
    }

    #[test]
    fn a_change_is_loaded_once_it_holds_still() {
        let mut s = Settle::new("v1");
        assert!(!s.observe("v1"), "nothing changed");
        // Written in place: truncated at one poll, complete at the next, then still.
        assert!(!s.observe("empty"));
        assert!(!s.observe("v2"));
        assert!(s.observe("v2"), "v2 held still for a poll");
        assert!(!s.observe("v2"), "loaded once");
        // Changed and changed back before it held still: nothing to load.
        assert!(!s.observe("v3"));
        assert!(!s.observe("v2"));
        assert!(!s.observe("v2"));
        assert!(!s.observe("v3"));
        assert!(s.observe("v3"));
    }

    #[test]
    fn fingerprint_changes_with_content_and_presence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, POD).unwrap();
        let paths = vec![dir.path().to_owned()];
        let a = fingerprint(&paths, expand(&paths));
        std::fs::write(&f, format!("{POD}\n")).unwrap();
        assert_ne!(fingerprint(&paths, expand(&paths)), a);
        let b = fingerprint(std::slice::from_ref(&f), expand(std::slice::from_ref(&f)));
        std::fs::remove_file(&f).unwrap();
        assert_ne!(
            fingerprint(std::slice::from_ref(&f), expand(std::slice::from_ref(&f))),
            b
        );
    }

    /// Issue #13 item 9: `cp -p` / `rsync -t` keep size and mtime; the change is still seen.
    #[test]
    fn fingerprint_sees_a_change_that_keeps_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, "a: 1\n").unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let paths = vec![dir.path().to_owned()];
        let before = fingerprint(&paths, expand(&paths));
        // Past the kernel's coarse timestamp tick.
        std::thread::sleep(Duration::from_millis(30));
        // In place, same size, mtime put back (what `cp -p` onto an existing file does).
        std::fs::write(&f, "a: 2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), mtime);
        assert_ne!(fingerprint(&paths, expand(&paths)), before);
        // Renamed into place with the same size and mtime (what `rsync -t` does).
        let before = fingerprint(&paths, expand(&paths));
        let tmp = dir.path().join(".p.yaml.tmp");
        std::fs::write(&tmp, "a: 3\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_ne!(fingerprint(&paths, expand(&paths)), before);
    }
}
