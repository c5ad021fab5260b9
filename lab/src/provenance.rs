//! Provenance of what a run writes: atomic writes (every result and checkpoint goes to a temporary
//! file in the same directory and is renamed into place, so an interrupted run never leaves a
//! half-written file), sha256 fingerprints of data and configs, and the git revision of the code.
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically (temporary file + rename), creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ok();
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The data cache: `$VARATTN_CACHE`, default `~/.cache/varattn` (`./.cache/varattn` without
/// `$HOME`). The command line's `--cache` and the notebooks use it.
pub fn default_cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var_os("VARATTN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("varattn")
    })
}

/// A file written through a temporary sibling and renamed into place by [`AtomicFile::commit`],
/// for outputs too big to hold in memory; dropped without commit, it leaves nothing behind.
pub struct AtomicFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    writer: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path` (parent directories are created).
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
        let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self { path: path.to_path_buf(), tmp, writer: Some(std::io::BufWriter::new(f)) })
    }

    /// The buffered writer of the temporary file.
    pub fn writer(&mut self) -> &mut impl Write {
        self.writer.as_mut().expect("AtomicFile used after commit")
    }

    /// Flushes and renames the temporary file to the final path.
    pub fn commit(mut self) -> Result<()> {
        let w = self.writer.take().expect("AtomicFile committed twice");
        let f = w.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", self.tmp.display(), e.error()))?;
        f.sync_all().ok();
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("renaming {} to {}", self.tmp.display(), self.path.display()))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Lower-case hex SHA-256 of `bytes` (manifest checksums).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex sha256 of a file, streamed.
pub fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The HEAD commit of the working tree's repository (12 hex digits), if any, for provenance in
/// results files; [`git_dirty_paths`] lists what the working tree changes on top of it.
pub fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// The paths (relative to the repository root) where the working tree differs from HEAD:
/// modified, added, deleted, renamed and untracked files (git-ignored ones excepted), leaving out
/// everything under `results/`, so that a tree whose only changes are results names its commit.
/// Empty when clean or outside a repository.
pub fn git_dirty_paths() -> Vec<String> {
    std::process::Command::new("git")
        .args(["status", "--porcelain=v1", "-z", "--untracked-files=normal"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| dirty_paths_from_porcelain(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// The HEAD commit and, when the tree has changes outside `results/`, how many paths they touch
/// (e.g. `0123456789ab` or `0123456789ab with uncommitted changes to 2 path(s): lab/src/io.rs, x.rs`),
/// for the provenance line of reports; `unknown` outside a repository.
pub fn git_description() -> String {
    let rev = git_revision().unwrap_or_else(|| "unknown".into());
    let dirty = git_dirty_paths();
    match dirty.len() {
        0 => rev,
        n => {
            let shown: Vec<&str> = dirty.iter().take(5).map(String::as_str).collect();
            format!("{rev} with uncommitted changes to {n} path(s): {}{}", shown.join(", "), if n > 5 { ", ..." } else { "" })
        }
    }
}

/// The paths of `git status --porcelain=v1 -z` output (`XY path\0`, a rename or copy followed by
/// its source `path\0`), without those under `results/`.
pub fn dirty_paths_from_porcelain(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut entries = text.split('\0').filter(|e| !e.is_empty());
    while let Some(e) = entries.next() {
        let (status, path) = (e.get(..2).unwrap_or(""), e.get(3..).unwrap_or(""));
        if status.starts_with(['R', 'C']) {
            entries.next();
        }
        if !path.is_empty() && path != "results" && !path.starts_with("results/") {
            out.push(path.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("varattn-io-{}", std::process::id()));
        let path = dir.join("sub").join("out.csv");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dirty_paths_leave_out_results_and_rename_sources() {
        let porcelain = " M lab/src/io.rs\0?? results/cpu/table.md\0?? results/\0R  new.rs\0old.rs\0?? notes.txt\0 D results\0";
        assert_eq!(dirty_paths_from_porcelain(porcelain), ["lab/src/io.rs", "new.rs", "notes.txt"]);
        assert!(dirty_paths_from_porcelain("?? results/x.json\0 M results/cpu/a.md\0").is_empty());
        assert!(dirty_paths_from_porcelain("").is_empty());
        // a folder merely starting with "results" is not results/
        assert_eq!(dirty_paths_from_porcelain("?? results-old/a\0"), ["results-old/a"]);
    }

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        let mut f = AtomicFile::create(&path).unwrap();
        f.writer().write_all(b"line\n").unwrap();
        assert!(!path.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"line\n");
        let mut g = AtomicFile::create(&dir.path().join("dropped.txt")).unwrap();
        g.writer().write_all(b"x").unwrap();
        drop(g);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
