//! Reading engine content from disk: a file as-is, or a directory of Sigma rules as one YAML
//! stream.
//!
//! Directories are read in sorted name order so that the same rules always make the same bytes
//! (and so the same sha256, which names content in releases and failure records).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: directory has no .yml or .yaml files")]
    EmptyDirectory { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads `path`: a file's bytes, or for a directory every `.yml`/`.yaml` file in it (not
/// recursive), each starting a new YAML document.
pub fn read_content(path: &Path) -> Result<Vec<u8>, ContentError> {
    let metadata = std::fs::metadata(path).map_err(io(path))?;
    if !metadata.is_dir() {
        return std::fs::read(path).map_err(io(path));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let entry = entry.map_err(io(path))?;
        let file = entry.path();
        let is_yaml = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        );
        if is_yaml && entry.file_type().map_err(io(&file))?.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(ContentError::EmptyDirectory {
            path: path.to_owned(),
        });
    }
    files.sort();
    let mut stream = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(io(&file))?;
        stream.extend_from_slice(b"---\n");
        stream.extend_from_slice(&bytes);
        if !bytes.ends_with(b"\n") {
            stream.push(b'\n');
        }
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_becomes_sorted_yaml_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b.yml"), "title: b").expect("write");
        std::fs::write(dir.path().join("a.yaml"), "title: a\n").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let stream = read_content(dir.path()).expect("reads");
        assert_eq!(
            String::from_utf8(stream).expect("utf-8"),
            "---\ntitle: a\n---\ntitle: b\n"
        );
    }

    #[test]
    fn empty_directory_and_missing_path_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            read_content(dir.path()),
            Err(ContentError::EmptyDirectory { .. })
        ));
        let err = read_content(&dir.path().join("missing")).expect_err("missing");
        assert!(err.to_string().contains("missing"));
    }
}
