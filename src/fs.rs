//! Files that are replaced whole: the artifact, feed caches, the spool's
//! state, the pseudonym key.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` so that a reader sees the old file or the new
/// one, never a part: a temporary file in the same folder, fsynced, renamed
/// over `path`, and the folder fsynced where the platform allows.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// [`write_atomic`] of `parts` one after the other, without joining them
/// in memory first.
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    for part in parts {
        tmp.write_all(part)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Not every platform can fsync a directory; the rename is done either way.
        let _ = d.sync_all();
    }
    Ok(())
}

/// The prefix of [`write_atomic`]'s temporary files (tempfile's default).
const TEMP_PREFIX: &str = ".tmp";

/// Remove [`write_atomic`] temporary files in `dir` (not below it) whose
/// last change is more than `older_than` ago: what a process killed in the
/// middle of a write leaves behind. A younger one may be another write in
/// progress and is left alone. Returns how many were removed; a folder that
/// does not exist holds none.
pub fn remove_stale_temp_files(
    dir: &Path,
    older_than: std::time::Duration,
) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let stale = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > older_than);
        if meta.is_file() && stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::{remove_stale_temp_files, write_atomic};

    #[test]
    fn stale_temp_files_go_fresh_ones_and_others_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join(".tmpAbC123");
        let young = dir.path().join(".tmpXyZ789");
        let kept = dir.path().join("list");
        for p in [&old, &young, &kept] {
            std::fs::write(p, b"x").expect("write");
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&old, &kept] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .and_then(|f| f.set_modified(hour_ago))
                .expect("set mtime");
        }
        let n =
            remove_stale_temp_files(dir.path(), std::time::Duration::from_secs(60)).expect("clean");
        assert_eq!(n, 1);
        assert!(!old.exists(), "the stale temp file is gone");
        assert!(young.exists(), "a temp file being written stays");
        assert!(kept.exists(), "other files stay, however old");
        assert_eq!(
            remove_stale_temp_files(&dir.path().join("none"), std::time::Duration::ZERO)
                .expect("missing folder"),
            0
        );
    }

    #[test]
    fn replaces_whole_and_creates_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/file");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
