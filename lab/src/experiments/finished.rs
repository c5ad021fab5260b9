//! A finished run directory opened for use after training: its result, the merged config it was
//! trained with, its task and the checkpoint of the parameters its results were computed with;
//! and the re-evaluation of such a run on a held-out split (`varattn eval`).
//!
//! `varattn train` writes the merged config (preset, row file and `--set` overrides) into the run
//! directory as [`CONFIG_FILE`]. A run without one (made by an older varattn) is matched to
//! `<configs>/<task>/<name>.toml` under the preset its result names. Either way the config must
//! hash to the `config_hash` that `result.json` records.
use crate::config::{config_hash, load_with_preset};
use crate::rundir::RunIdentity;
use crate::train::checkpoint;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The merged config of a run, in its run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// The result of a finished run, in its run directory.
pub const RESULT_FILE: &str = "result.json";

/// The task of a run, told from the keys of its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Nmt,
    Vqa,
    G2p,
}

impl Task {
    /// `nmt`, `vqa` or `g2p`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Nmt => "nmt",
            Task::Vqa => "vqa",
            Task::G2p => "g2p",
        }
    }

    /// The task whose result has these keys: NMT results have `bleu_line`, G2P results
    /// `test_per`, VQA results a `test` table with `accuracy`.
    fn of_result(result: &serde_json::Value) -> Option<Task> {
        if result.get("bleu_line").is_some() {
            Some(Task::Nmt)
        } else if result.get("test_per").is_some() {
            Some(Task::G2p)
        } else if result.get("test").and_then(|t| t.get("accuracy")).is_some() {
            Some(Task::Vqa)
        } else {
            None
        }
    }

    /// The folders of the configs directory that hold rows of this task.
    fn config_folders(self) -> &'static [&'static str] {
        match self {
            Task::Nmt => &["nmt", "wmt17"],
            Task::Vqa => &["vqa"],
            Task::G2p => &["g2p"],
        }
    }
}

/// The held-out split an evaluation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Valid,
    Test,
}

/// A run directory with a result, opened: see the module documentation.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    pub dir: PathBuf,
    pub task: Task,
    /// `result.json`, parsed.
    pub result: serde_json::Value,
    /// The merged config the run was trained with.
    pub merged: toml::Value,
    /// Where `merged` came from, for messages: the run's config file, or a row config and preset.
    pub config_source: String,
    pub name: String,
    pub seed: u64,
    pub preset: String,
}

/// Writes the merged config a run trains with into its directory as [`CONFIG_FILE`].
pub fn write_config(dir: &Path, merged: &toml::Value) -> Result<()> {
    let text = toml::to_string(merged).context("writing the merged config as TOML")?;
    crate::provenance::write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

impl FinishedRun {
    /// Opens the finished run in `dir`; `configs` is the folder of row configs for runs without
    /// their own [`CONFIG_FILE`]. Errors name the directory and what is missing.
    pub fn open(dir: &Path, configs: &Path) -> Result<Self> {
        if !dir.exists() {
            bail!("{}: no such run directory", dir.display())
        }
        if !dir.is_dir() {
            bail!("{}: not a directory (a run directory of `varattn train` is expected)", dir.display())
        }
        let result_path = dir.join(RESULT_FILE);
        if !result_path.is_file() {
            let why = if checkpoint::exists(&dir.join("last")) {
                "its training has not finished; the same `varattn train` command finishes it"
            } else {
                "nor a checkpoint: is it a run directory of `varattn train`?"
            };
            bail!("{}: not a finished run: no {RESULT_FILE}; {why}", dir.display())
        }
        let text = std::fs::read_to_string(&result_path).with_context(|| format!("reading {}", result_path.display()))?;
        let result: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", result_path.display()))?;
        let task = Task::of_result(&result)
            .with_context(|| format!("{}: not the result of an NMT, VQA or G2P run of `varattn train`", result_path.display()))?;
        let field = |key: &str| result.get(key).with_context(|| format!("{}: no `{key}`", result_path.display()));
        let recorded = field("config_hash")?.as_str().with_context(|| format!("{}: `config_hash` is not a string", result_path.display()))?;
        let name = field("name")?.as_str().with_context(|| format!("{}: `name` is not a string", result_path.display()))?.to_string();
        let preset = field("preset")?.as_str().with_context(|| format!("{}: `preset` is not a string", result_path.display()))?.to_string();
        let seed = field("seed")?.as_u64().with_context(|| format!("{}: `seed` is not a number", result_path.display()))?;
        let (merged, config_source) = run_config(dir, task, &name, &preset, recorded, configs)?;
        Ok(Self { dir: dir.to_path_buf(), task, result, merged, config_source, name, seed, preset })
    }

    /// The merged config as a task's config type.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        self.merged.clone().try_into().map_err(|e| anyhow!("{}: {e}", self.config_source))
    }

    /// The checkpoint (stem) holding the parameters the run's results were computed with: the
    /// best validation score's (`best`), or the last one when there is no best.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        ["best", "last"]
            .iter()
            .map(|stem| self.dir.join(stem))
            .find(|stem| stem.with_extension("safetensors").is_file())
            .with_context(|| format!("{}: a finished run without its checkpoint (best.safetensors); it cannot be loaded", self.dir.display()))
    }

    /// Refuses data in `cache_dir` (`files`, the files a run of this config reads) other than the
    /// data the run was trained on, as its result's identity records it; another build or thread
    /// count only warns (its numbers may differ in the last digits).
    pub fn check_data(&self, cache_dir: &Path, files: &[PathBuf]) -> Result<()> {
        let Some(id) = self.result.get("identity").filter(|v| !v.is_null()) else { return Ok(()) };
        let there: RunIdentity = serde_json::from_value(id.clone())
            .with_context(|| format!("parsing `identity` of {}", self.dir.join(RESULT_FILE).display()))?;
        let now = RunIdentity::new(self.seed, cache_dir, files)?;
        if there.build_features != now.build_features {
            eprintln!(
                "warning: {} was trained by a build with features [{}], this one has [{}]: numbers may differ in the last digits",
                self.dir.display(),
                there.build_features.join(", "),
                now.build_features.join(", ")
            );
        }
        if let (Some(t), Some(n)) = (there.threads, now.threads) {
            if t != n {
                eprintln!(
                    "warning: {} was trained on {t} thread(s), this process uses {n}: recomputed numbers may differ in the last digits (RAYON_NUM_THREADS={t} matches them)",
                    self.dir.display()
                );
            }
        }
        let data = RunIdentity { build_features: now.build_features.clone(), threads: now.threads, ..there };
        let differences = data.differences(&now);
        if !differences.is_empty() {
            bail!(
                "{}: the data in {} is not the data the run was trained on ({}); pass the run's data cache with --cache",
                self.dir.display(),
                cache_dir.display(),
                differences.join("; ")
            )
        }
        Ok(())
    }

    /// The number at a dotted key of the result (`test_ppl`, `test.nll`).
    pub fn recorded(&self, key: &str) -> Option<f64> {
        key.split('.').try_fold(&self.result, |v, k| v.get(k))?.as_f64()
    }

    /// The validation score of the evaluated parameters: the training history's entry of the
    /// best epoch.
    pub fn best_valid_score(&self) -> Option<f64> {
        let best = self.result.get("best_epoch")?.as_u64()? as usize;
        crate::train::runner::history_score(self.result.get("history")?.get(best.checked_sub(1)?)?)
    }

    /// `(K, PPL)` of the result's `ppl_against_k` (NMT).
    pub fn recorded_ppl_against_k(&self) -> Vec<(usize, f64)> {
        let pairs = self.result.get("ppl_against_k").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        pairs.iter().filter_map(|p| Some((p.get(0)?.as_u64()? as usize, p.get(1)?.as_f64()?))).collect()
    }
}

/// The merged config of the run in `dir` and where it came from: see the module documentation.
fn run_config(dir: &Path, task: Task, name: &str, preset: &str, recorded: &str, configs: &Path) -> Result<(toml::Value, String)> {
    let file = dir.join(CONFIG_FILE);
    if file.is_file() {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let merged: toml::Value = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let hash = config_hash(&merged);
        if hash != recorded {
            bail!("{}: hashes to {hash}, but {} records config {recorded}", file.display(), dir.join(RESULT_FILE).display())
        }
        return Ok((merged, file.display().to_string()));
    }
    crate::rundir::check_plain_name("name", name).with_context(|| format!("{}", dir.join(RESULT_FILE).display()))?;
    let mut tried = vec![];
    for folder in task.config_folders() {
        let row = configs.join(folder).join(format!("{name}.toml"));
        if !row.is_file() {
            continue;
        }
        match load_with_preset::<toml::Value>(&row, preset) {
            Ok((_, merged)) if config_hash(&merged) == recorded => return Ok((merged, format!("{} (preset `{preset}`)", row.display()))),
            Ok((_, merged)) => tried.push(format!("{} under preset `{preset}` hashes to {}", row.display(), config_hash(&merged))),
            Err(e) => tried.push(format!("{e:#}")),
        }
    }
    if tried.is_empty() {
        tried.push(format!("no {name}.toml in {}", task.config_folders().iter().map(|f| configs.join(f).display().to_string()).collect::<Vec<_>>().join(" or ")));
    }
    bail!(
        "{}: no {CONFIG_FILE} (a run of an older varattn), and no row config is the run's config {recorded}: {}",
        dir.display(),
        tried.join("; ")
    )
}

/// One number of an evaluation, beside the value the run recorded for it (if any).
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: String,
    pub value: Option<f64>,
    /// The run's own number for it: from `result.json` for the test split, the training
    /// history's best validation score for the validation split.
    pub recorded: Option<f64>,
}

impl Metric {
    pub fn new(name: impl Into<String>, value: Option<f64>, recorded: Option<f64>) -> Self {
        Metric { name: name.into(), value, recorded }
    }
}

/// A finished run's numbers on a split, recomputed.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub run: PathBuf,
    pub task: Task,
    pub split: Split,
    pub metrics: Vec<Metric>,
}

impl Evaluation {
    /// A table of every metric: its value now, the run's value and whether they agree to 1e-9
    /// relative.
    pub fn table(&self) -> String {
        let show = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
        let width = self.metrics.iter().map(|m| m.name.len()).max().unwrap_or(6).max(6);
        let mut out = format!("{:<width$}  {:>14}  {:>14}\n", "metric", "now", "recorded");
        for m in &self.metrics {
            let agree = match (m.value, m.recorded) {
                (Some(a), Some(b)) if (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) => "  same",
                (Some(_), Some(_)) => "  differs",
                _ => "",
            };
            out.push_str(&format!("{:<width$}  {:>14}  {:>14}{agree}\n", m.name, show(m.value), show(m.recorded)));
        }
        out
    }
}

/// Recomputes a finished run's held-out numbers on `split` with the data in `cache_dir` (the
/// evaluation its training ran at the end, on the test split, gives the numbers of its result).
pub fn evaluate(run: &FinishedRun, split: Split, cache_dir: &Path, device: &Device, progress: bool) -> Result<Evaluation> {
    let metrics = match run.task {
        Task::Nmt => super::nmt::evaluate_run(run, split, cache_dir, device, progress)?,
        Task::Vqa => super::vqa::evaluate_run(run, split, cache_dir, device)?,
        Task::G2p => super::g2p::evaluate_run(run, split, cache_dir, device)?,
    };
    Ok(Evaluation { run: run.dir.clone(), task: run.task, split, metrics })
}
