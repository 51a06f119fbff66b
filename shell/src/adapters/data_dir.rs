//! The data directory at start-up (issue 16): made absolute, so every message and the
//! development banner name a directory the operator can find from anywhere; created when
//! missing; refused with its absolute path when something else is in the way. A directory
//! another chatbox already uses is refused when its store files are opened ([`locked`]).

use std::io;
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The path exists and is not a directory.
    #[error("DATA_DIR {0} is not a directory (a file is in the way); choose another DATA_DIR or move the file")]
    NotADirectory(PathBuf),
    /// The directory does not exist and cannot be created, or cannot be inspected.
    #[error("DATA_DIR {path} cannot be used: {source}")]
    Unusable {
        /// The absolute path.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// `dir` made absolute (against the current directory), created when missing.
pub fn prepare(dir: &Path) -> Result<PathBuf, DataDirError> {
    let unusable =
        |path: &Path, source| DataDirError::Unusable { path: path.to_path_buf(), source };
    let path = std::path::absolute(dir).map_err(|e| unusable(dir, e))?;
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(DataDirError::NotADirectory(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&path).map_err(|e| unusable(&path, e))?;
            Ok(path)
        }
        Err(e) => Err(unusable(&path, e)),
    }
}

/// The message for a store file of the data directory that another process holds open (redb
/// locks its files): names the file, and the likely cause.
pub fn locked(file: &Path) -> String {
    format!(
        "{} is locked by another process: is another chatbox running on this data directory? \
         Stop it, or give this one its own DATA_DIR",
        file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_and_are_created() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a").join("b");
        let prepared = prepare(&nested).unwrap();
        assert!(prepared.is_absolute() && prepared.is_dir());
        let relative = prepare(Path::new(".")).unwrap();
        assert!(relative.is_absolute(), "{}", relative.display());
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("data");
        std::fs::write(&file, b"not a directory").unwrap();
        let error = prepare(&file).unwrap_err();
        assert!(matches!(&error, DataDirError::NotADirectory(p) if p == &file), "{error}");
        assert!(error.to_string().contains(&file.display().to_string()), "{error}");
    }
}
