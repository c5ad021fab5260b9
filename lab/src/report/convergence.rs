//! Whether each finished run trained until validation stopped improving.
//!
//! A run is *flat* when its best epoch came before its last one, or when its last epoch improved
//! the best earlier validation score v* by less than [`FLAT_GAIN`]: (v* − v_last) / v* < 0.02.
//! Every task's validation score is lower-is-better (NMT perplexity, VQA NLL, G2P PER), read from
//! the `history` of each `runs/<task>/<row>/seed-<n>/result.json`.
use super::tables::Table;
use anyhow::{Context, Result};
use std::path::Path;

/// The largest relative gain of the last epoch over the best earlier one that still counts as flat.
pub const FLAT_GAIN: f64 = 0.02;

/// How one run's training ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConvergence {
    pub task: String,
    pub row: String,
    pub seed: String,
    /// Validation scores, one per epoch.
    pub scores: Vec<f64>,
    pub best_epoch: usize,
    pub stopped_early: bool,
}

impl RunConvergence {
    /// (v* − v_last) / v*, with v* the best score before the last epoch; `None` with one epoch.
    pub fn last_epoch_gain(&self) -> Option<f64> {
        let (last, earlier) = self.scores.split_last()?;
        let best = earlier.iter().copied().fold(f64::INFINITY, f64::min);
        best.is_finite().then(|| (best - last) / best)
    }

    /// Best epoch before the last, or a last-epoch gain below [`FLAT_GAIN`].
    pub fn is_flat(&self) -> bool {
        self.best_epoch < self.scores.len() || self.last_epoch_gain().is_some_and(|g| g < FLAT_GAIN)
    }
}

/// The convergence of one `result.json` (its `history[].valid`, `best_epoch`, `stopped_early`).
pub fn read_run(task: &str, row: &str, seed: &str, result: &Path) -> Result<RunConvergence> {
    let text = std::fs::read_to_string(result).with_context(|| format!("reading {}", result.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", result.display()))?;
    let history = v.get("history").and_then(|h| h.as_array()).with_context(|| format!("{}: no `history` array", result.display()))?;
    let scores = history
        .iter()
        .map(crate::train::runner::history_score)
        .collect::<Option<Vec<f64>>>()
        .with_context(|| format!("{}: a `history` entry without a numeric validation score `valid`", result.display()))?;
    let best_epoch = match v.get("best_epoch").and_then(|b| b.as_u64()) {
        Some(b) => b as usize,
        // the epoch of the lowest score (first on ties), as the runner keeps it
        None => scores.iter().enumerate().fold((0, f64::INFINITY), |(bi, bv), (i, &s)| if s < bv { (i + 1, s) } else { (bi, bv) }).0,
    };
    let stopped_early = v.get("stopped_early").and_then(|s| s.as_bool()).unwrap_or(false);
    Ok(RunConvergence { task: task.into(), row: row.into(), seed: seed.into(), scores, best_epoch, stopped_early })
}

/// Every finished run under `runs` (`<task>/<row>/seed-<n>/result.json`), sorted by task, row
/// and seed; a directory without `result.json` (unfinished) is left out, and so is a result that
/// cannot be read (with a warning on stderr: the tables report those files).
pub fn read_runs(runs: &Path) -> Result<Vec<RunConvergence>> {
    let mut out = vec![];
    let dirs = |p: &Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        v.sort();
        v
    };
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for task in dirs(runs) {
        for row in dirs(&task) {
            for seed in dirs(&row) {
                let result = seed.join("result.json");
                if result.exists() {
                    let seed_name = name(&seed);
                    match read_run(&name(&task), &name(&row), seed_name.trim_start_matches("seed-"), &result) {
                        Ok(r) => out.push(r),
                        Err(e) => eprintln!("warning: convergence: skipping {}: {e:#}", result.display()),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One line per run: epochs trained, best epoch, whether patience stopped it, the last epoch's
/// gain and whether it is flat.
pub fn convergence_table(runs: &[RunConvergence]) -> Table {
    let header = ["task", "row", "seed", "epochs", "best epoch", "stopped early", "last-epoch gain %", "flat"];
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.task.clone(),
                r.row.clone(),
                r.seed.clone(),
                r.scores.len().to_string(),
                r.best_epoch.to_string(),
                if r.stopped_early { "yes" } else { "no" }.into(),
                r.last_epoch_gain().map(|g| format!("{:.1}", 100.0 * g)).unwrap_or_else(|| "–".into()),
                if r.is_flat() { "yes" } else { "NO" }.into(),
            ]
        })
        .collect();
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// `convergence.md`: the table and a first line counting the flat runs.
pub fn convergence_markdown(runs: &[RunConvergence]) -> String {
    let flat = runs.iter().filter(|r| r.is_flat()).count();
    let not_flat: Vec<String> = runs.iter().filter(|r| !r.is_flat()).map(|r| format!("{} {} seed {}", r.task, r.row, r.seed)).collect();
    let mut s = format!(
        "# Convergence\n\n{flat} of {} runs trained until validation stopped improving (best epoch before the last, or a last-epoch gain under {:.0}%){}.\n\n",
        runs.len(),
        100.0 * FLAT_GAIN,
        if not_flat.is_empty() { String::new() } else { format!("; still improving: {}", not_flat.join(", ")) }
    );
    s.push_str(&convergence_table(runs).markdown());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scores: &[f64], best_epoch: usize) -> RunConvergence {
        RunConvergence { task: "nmt".into(), row: "soft".into(), seed: "3435".into(), scores: scores.to_vec(), best_epoch, stopped_early: false }
    }

    #[test]
    fn a_run_is_flat_when_its_best_epoch_is_not_the_last_or_the_last_gain_is_under_two_percent() {
        // best at epoch 2 of 3
        assert!(run(&[50.0, 40.0, 41.0], 2).is_flat());
        // last epoch 40 -> 39.5 is a 1.25% gain
        let r = run(&[50.0, 40.0, 39.5], 3);
        assert!((r.last_epoch_gain().unwrap() - 0.0125).abs() < 1e-12);
        assert!(r.is_flat());
        // 40 -> 38 is 5%: still falling
        assert!(!run(&[50.0, 40.0, 38.0], 3).is_flat());
        // one epoch: nothing to compare, not flat
        assert!(!run(&[50.0], 1).is_flat());
        assert_eq!(run(&[50.0], 1).last_epoch_gain(), None);
    }

    #[test]
    fn runs_are_read_from_result_files_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let write = |row: &str, seed: u32, scores: &[f64], best: Option<usize>| {
            let d = dir.path().join("nmt").join(row).join(format!("seed-{seed}"));
            std::fs::create_dir_all(&d).unwrap();
            let history: Vec<serde_json::Value> = scores.iter().enumerate().map(|(i, s)| serde_json::json!({"epoch": i + 1, "valid": s})).collect();
            let mut v = serde_json::json!({"history": history, "stopped_early": true});
            if let Some(b) = best {
                v["best_epoch"] = b.into();
            }
            std::fs::write(d.join("result.json"), v.to_string()).unwrap();
        };
        write("soft", 3435, &[60.0, 50.0, 51.0, 52.0], Some(2));
        write("exact", 3435, &[60.0, 50.0, 45.0], None);
        std::fs::create_dir_all(dir.path().join("nmt/exact/seed-3436")).unwrap(); // unfinished
        let broken = dir.path().join("nmt/rws/seed-3435");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("result.json"), "{ not json").unwrap(); // unreadable: left out
        let runs = read_runs(dir.path()).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].row.as_str(), runs[0].best_epoch, runs[0].is_flat()), ("exact", 3, false));
        assert_eq!((runs[1].row.as_str(), runs[1].best_epoch, runs[1].is_flat()), ("soft", 2, true));
        let md = convergence_markdown(&runs);
        assert!(md.contains("1 of 2 runs"), "{md}");
        assert!(md.contains("still improving: nmt exact seed 3435"), "{md}");
        assert!(md.contains("| nmt | exact | 3435 | 3 | 3 | yes | 10.0 | NO |"), "{md}");
    }

    #[test]
    fn a_history_without_scores_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("result.json");
        std::fs::write(&p, r#"{"history": [{"epoch": 1}]}"#).unwrap();
        let e = read_run("vqa", "soft", "3435", &p).unwrap_err();
        assert!(format!("{e:#}").contains("result.json") && format!("{e:#}").contains("`valid`"), "{e:#}");
    }
}
