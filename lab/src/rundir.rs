//! A run directory's guards: the exclusive lock a process holds while it works in the directory,
//! and the identity (seed, data, build) that the directory's checkpoints and result belong to.
//!
//! * [`RunLock`]: an advisory `flock(2)` on `<run>/.lock`, taken before anything in the
//!   directory is read or written and held until the process exits (or crashes: the kernel drops
//!   the lock with the file descriptor). The holder writes its pid into the file, so a second
//!   process on the same directory refuses at once and names the holder.
//! * [`RunIdentity`]: the seed, the sha256 of every data file the run reads (prepared splits,
//!   BPE / vocabulary files, data set archives) and the build's features. A checkpoint or
//!   finished result whose identity differs from the run asked for is refused, naming what
//!   differs; `--fresh` starts the directory over.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use crate::provenance::sha256_file;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive advisory lock on a run directory, released when dropped or when the process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
    dir: PathBuf,
}

impl RunLock {
    /// Creates `dir` if needed and locks it; fails at once, naming the directory and the pid in
    /// the lock file, when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        use std::os::unix::io::AsRawFd;
        std::fs::create_dir_all(dir).with_context(|| format!("creating run directory {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that has not written its pid yet".to_string(),
                    pid => format!("pid {pid}"),
                };
                bail!(
                    "{} is in use by another varattn process ({holder}, lock {}); wait for it to finish or use another --out",
                    dir.display(),
                    path.display()
                )
            }
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        file.set_len(0).and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes())).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { _file: file, dir: dir.to_path_buf() })
    }

    /// Moves everything in the locked directory except the lock file into `dest` (created; it must
    /// not exist yet or be empty), leaving the run directory empty (`--stale-to`).
    pub fn move_contents_to(&self, dest: &Path) -> Result<()> {
        if dest.exists() && std::fs::read_dir(dest).map(|mut d| d.next().is_some()).unwrap_or(true) {
            bail!("{}: already exists and is not empty; cannot move {} there", dest.display(), self.dir.display())
        }
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        let entries = std::fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("listing {}", self.dir.display()))?;
            if e.file_name() == LOCK_FILE {
                continue;
            }
            let to = dest.join(e.file_name());
            std::fs::rename(e.path(), &to).with_context(|| format!("moving {} to {}", e.path().display(), to.display()))?;
        }
        Ok(())
    }

    /// Removes everything in the locked directory except the lock file (`--fresh`).
    pub fn clear(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("listing {}", self.dir.display()))?;
            if e.file_name() == LOCK_FILE {
                continue;
            }
            let p = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.with_context(|| format!("removing {}", p.display()))?;
        }
        Ok(())
    }
}

/// The cargo features this binary was built with that change its numbers (`avx512`: another
/// float summation order; `cuda`).
pub fn build_features() -> Vec<String> {
    let mut f = vec![];
    if cfg!(feature = "avx512") {
        f.push("avx512".to_string());
    }
    if cfg!(feature = "cuda") {
        f.push("cuda".to_string());
    }
    f
}

/// What a run's checkpoints and result belong to besides its config: the seed, the data and
/// the build.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunIdentity {
    pub seed: u64,
    /// sha256 over the lines `<path> <sha256>` of `data_files` (in path order).
    pub data_sha256: String,
    /// sha256 of every file the run's data is read from, keyed by its path relative to the cache
    /// directory.
    pub data_files: BTreeMap<String, String>,
    /// [`build_features`] of the binary.
    pub build_features: Vec<String>,
    /// The CPU thread count the run trained with (`RAYON_NUM_THREADS`): reductions split across
    /// threads sum in another order, so a run resumed on another count would not reproduce the
    /// uninterrupted one. `None` in runs recorded before it was kept; compared only when both
    /// sides have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl RunIdentity {
    /// The identity of a run with `seed` whose data comes from `files` (inside `cache_dir`;
    /// a file outside it is keyed by its full path).
    pub fn new(seed: u64, cache_dir: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut data_files = BTreeMap::new();
        for f in files {
            data_files.insert(relative_key(cache_dir, f), sha256_file(f)?);
        }
        Ok(Self {
            seed,
            data_sha256: combined_sha256(&data_files),
            data_files,
            build_features: build_features(),
            threads: Some(candle_core::utils::get_num_threads()),
        })
    }

    /// What differs between `self` (recorded in a run directory) and `now` (the run asked for),
    /// one phrase each; empty when they agree.
    pub fn differences(&self, now: &RunIdentity) -> Vec<String> {
        let mut d = vec![];
        if self.seed != now.seed {
            d.push(format!("seed {} there, {} now", self.seed, now.seed));
        }
        let keys: std::collections::BTreeSet<&String> = self.data_files.keys().chain(now.data_files.keys()).collect();
        for k in keys {
            match (self.data_files.get(k), now.data_files.get(k)) {
                (Some(a), Some(b)) if a != b => d.push(format!("data file {k}: sha256 {} there, {} now", short(a), short(b))),
                (Some(_), None) => d.push(format!("data file {k}: read there, not now")),
                (None, Some(_)) => d.push(format!("data file {k}: read now, not there")),
                _ => {}
            }
        }
        if self.build_features != now.build_features {
            d.push(format!("build features [{}] there, [{}] now", self.build_features.join(", "), now.build_features.join(", ")));
        }
        if let (Some(there), Some(here)) = (self.threads, now.threads) {
            if there != here {
                d.push(format!(
                    "{there} thread(s) there, {here} now (set RAYON_NUM_THREADS={there} to continue it)"
                ));
            }
        }
        d
    }

    /// [`RunIdentity::differences`] against a run with `seed` on the data now in `cache_dir`,
    /// re-hashing the recorded files (for a finished run, without preparing the data again).
    /// A recorded file that is gone from the cache is not a difference: the data is prepared again
    /// from its sources before a run reads it.
    pub fn differences_from_cache(&self, seed: u64, cache_dir: &Path) -> Result<Vec<String>> {
        let mut now = RunIdentity { seed, build_features: build_features(), ..Default::default() };
        for k in self.data_files.keys() {
            let p = cache_dir.join(k);
            if p.is_file() {
                now.data_files.insert(k.clone(), sha256_file(&p)?);
            } else {
                now.data_files.insert(k.clone(), self.data_files[k].clone());
            }
        }
        Ok(self.differences(&now))
    }
}

/// The refusal of a run directory whose checkpoint or result (`what`, a path) belongs to another
/// run.
pub fn identity_error(what: &Path, differences: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "{} belongs to another run ({}); rerun with --fresh to start this run over, or use another --out",
        what.display(),
        differences.join("; ")
    )
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn relative_key(cache_dir: &Path, f: &Path) -> String {
    f.strip_prefix(cache_dir).unwrap_or(f).to_string_lossy().into_owned()
}

fn combined_sha256(files: &BTreeMap<String, String>) -> String {
    let text: String = files.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    crate::provenance::sha256_hex(text.as_bytes())
}

/// Checks that a run name is a plain name: not empty, no path separator, not `.` or `..`, no
/// leading dot, no control characters (it names a directory under the results root).
pub fn check_plain_name(key: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
        || name.contains("..");
    if bad {
        bail!("{key} = {name:?}: must be a plain name (letters, digits, '-', '_'; no path separators, no \"..\", no leading '.')")
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_another_thread_count_is_a_difference_and_an_unrecorded_count_is_not() {
        let base = RunIdentity { seed: 1, threads: Some(1), ..Default::default() };
        let two = RunIdentity { threads: Some(2), ..base.clone() };
        assert_eq!(base.differences(&base), Vec::<String>::new());
        let d = base.differences(&two);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("1 thread(s) there, 2 now") && d[0].contains("RAYON_NUM_THREADS=1"), "{d:?}");
        let unrecorded = RunIdentity { threads: None, ..base.clone() };
        assert!(unrecorded.differences(&two).is_empty() && two.differences(&unrecorded).is_empty());
        // an identity written before the field existed reads as None and is written back without it
        let old: RunIdentity = serde_json::from_str(r#"{"seed":1,"data_sha256":"","data_files":{},"build_features":[]}"#).unwrap();
        assert_eq!(old.threads, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("threads"));
    }

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = RunLock::acquire(&run).unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts too
        let err = format!("{:#}", RunLock::acquire(&run).unwrap_err());
        assert!(err.contains(&run.display().to_string()) && err.contains(&format!("pid {}", std::process::id())), "{err}");
        std::fs::write(run.join("last.json"), "{}").unwrap();
        std::fs::create_dir(run.join("sub")).unwrap();
        first.clear().unwrap();
        let left: Vec<_> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(LOCK_FILE)]);
        drop(first);
        RunLock::acquire(&run).unwrap();
    }

    #[test]
    fn a_run_moved_aside_leaves_only_the_lock_and_refuses_a_non_empty_destination() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let lock = RunLock::acquire(&run).unwrap();
        std::fs::write(run.join("result.json"), "{}").unwrap();
        std::fs::create_dir(run.join("sub")).unwrap();
        let dest = dir.path().join("stale").join("seed-1");
        lock.move_contents_to(&dest).unwrap();
        let left: Vec<_> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(LOCK_FILE)]);
        let mut moved: Vec<_> = std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        moved.sort();
        assert_eq!(moved, ["result.json", "sub"]);
        std::fs::write(run.join("last.json"), "{}").unwrap();
        let err = format!("{:#}", lock.move_contents_to(&dest).unwrap_err());
        assert!(err.contains("not empty") && err.contains(&dest.display().to_string()), "{err}");
        assert!(run.join("last.json").exists());
    }

    #[test]
    fn identity_differences_name_seed_data_file_and_build() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("corpus").join("bpe-300.json");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "vocabulary one").unwrap();
        let a = RunIdentity::new(3435, dir.path(), std::slice::from_ref(&f)).unwrap();
        assert_eq!(a.data_files.keys().collect::<Vec<_>>(), ["corpus/bpe-300.json"]);
        assert!(a.differences(&a.clone()).is_empty());
        assert!(a.differences_from_cache(3435, dir.path()).unwrap().is_empty());
        std::fs::write(&f, "vocabulary two").unwrap();
        let b = RunIdentity::new(7, dir.path(), &[f]).unwrap();
        let d = a.differences(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("seed 3435 there, 7 now") && d[1].contains("corpus/bpe-300.json"), "{d:?}");
        assert_ne!(a.data_sha256, b.data_sha256);
        let d = a.differences_from_cache(3435, dir.path()).unwrap();
        assert!(d.len() == 1 && d[0].contains("bpe-300.json"), "{d:?}");
        let c = RunIdentity { build_features: vec!["cuda".into()], ..a.clone() };
        assert!(a.differences(&c)[0].contains("build features"));
    }

    #[test]
    fn run_names_are_plain() {
        for ok in ["soft", "var-enum", "kmax_2", "a.b"] {
            check_plain_name("name", ok).unwrap();
        }
        for bad in ["", "../../../escape", "a/b", "..", ".hidden", "a\\b", "x\ny"] {
            let e = check_plain_name("name", bad).unwrap_err().to_string();
            assert!(e.contains("plain name"), "{e}");
        }
    }
}
