//! Files that are replaced whole: the artifact, feed caches, the spool's
//! state, the pseudonym key.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` so that a reader sees the old file or the new
/// one, never a part: a temporary file in the same folder, fsynced, renamed
/// over `path`, and the folder fsynced where the platform allows.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Not every platform can fsync a directory; the rename is done either way.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_atomic;

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
