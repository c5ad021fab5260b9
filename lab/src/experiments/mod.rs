//! Experiments: a configuration plus a seed in, a trained model and a results file out.
pub mod finished;
pub mod g2p;
pub mod nmt;
pub mod vqa;
pub mod vqa_v2;

pub use crate::train::runner::RunOptions;

pub use crate::config::check_objective;

use anyhow::{Context, Result};
use std::path::Path;

use crate::config::{load_with_overrides, Override, Task};
use finished::FinishedRun;

/// A row config of one task, merged over its preset and validated.
pub enum RowConfig {
    Nmt(Box<nmt::NmtConfig>),
    G2p(Box<g2p::G2pConfig>),
    Vqa(Box<vqa::VqaConfig>),
}

/// What training a row returned: its task's result.
pub enum RowResult {
    Nmt(Box<nmt::NmtResult>),
    G2p(Box<g2p::G2pResult>),
    Vqa(Box<vqa::VqaResult>),
}

impl RowConfig {
    /// The row's name (`soft`, `exact`, ...).
    pub fn name(&self) -> &str {
        match self {
            RowConfig::Nmt(c) => &c.name,
            RowConfig::G2p(c) => &c.name,
            RowConfig::Vqa(c) => &c.name,
        }
    }

    /// Trains (or resumes) the row as `opts` says and evaluates it; `None` when it stopped at
    /// `opts.stop_after_steps`.
    pub fn run(&self, merged: &toml::Value, opts: &RunOptions) -> Result<Option<RowResult>> {
        Ok(match self {
            RowConfig::Nmt(c) => nmt::run(c, merged, opts)?.map(|r| RowResult::Nmt(Box::new(r))),
            RowConfig::G2p(c) => g2p::run(c, merged, opts)?.map(|r| RowResult::G2p(Box::new(r))),
            RowConfig::Vqa(c) => vqa::run(c, merged, opts)?.map(|r| RowResult::Vqa(Box::new(r))),
        })
    }
}

/// The task a row config declares (`task = "nmt"`, ...) and the row merged over its preset with
/// the overrides, validated; the merged TOML beside it.
pub fn load_row(config: &Path, preset: &str, sets: &[Override]) -> Result<(Task, RowConfig, toml::Value)> {
    let task = crate::config::row_task(config)?;
    let keys: String = sets.iter().map(|o| format!(" --set {}", o.key)).collect();
    let in_config = || format!("{} (with preset `{preset}`{keys})", config.display());
    // wmt17 rows are NMT rows on another corpus (their runs go under runs/wmt17/)
    let (row, merged): (RowConfig, toml::Value) = match task {
        Task::Nmt | Task::Wmt17 => {
            let (c, m): (nmt::NmtConfig, toml::Value) = load_with_overrides(config, preset, sets)?;
            c.validate().with_context(in_config)?;
            (RowConfig::Nmt(Box::new(c)), m)
        }
        Task::G2p => {
            let (c, m): (g2p::G2pConfig, toml::Value) = load_with_overrides(config, preset, sets)?;
            c.validate().with_context(in_config)?;
            (RowConfig::G2p(Box::new(c)), m)
        }
        Task::Vqa => {
            let (c, m): (vqa::VqaConfig, toml::Value) = load_with_overrides(config, preset, sets)?;
            c.validate().with_context(in_config)?;
            (RowConfig::Vqa(Box::new(c)), m)
        }
    };
    Ok((task, row, merged))
}

/// The finished run of `config` under `preset` with `seed` in `out`: opened when `out` holds its
/// result, else trained there first (resuming from `out`'s last checkpoint, if any) on `device`,
/// with the data prepared into `cache`. A result of another config is an error naming both hashes.
/// `varattn train` with `--out` does the same and also refuses a checkpoint of another identity
/// (seed, data, thread count); this is the route for notebooks.
pub fn train_or_open(config: &Path, preset: &str, seed: u64, out: &Path, cache: &Path, device: &candle_core::Device) -> Result<FinishedRun> {
    let (_, row, merged) = load_row(config, preset, &[])?;
    let configs = config.parent().unwrap_or(Path::new("."));
    let lock = crate::rundir::RunLock::acquire(out)?;
    if !out.join("result.json").exists() {
        finished::write_config(out, &merged)?;
        let opts = RunOptions { preset: preset.to_string(), seed, out_dir: out.to_path_buf(), cache_dir: cache.to_path_buf(), stop_after_steps: None, device: device.clone(), progress: false };
        row.run(&merged, &opts)?.with_context(|| format!("{}: training stopped before it finished", out.display()))?;
    }
    drop(lock);
    let run = FinishedRun::open(out, configs)?;
    let hash = crate::config::config_hash(&merged);
    let recorded = run.result["config_hash"].as_str().unwrap_or_default();
    anyhow::ensure!(
        recorded == hash,
        "{}: a run of another config (hash {recorded}; {} under preset `{preset}` is {hash}); remove it or choose another directory",
        out.display(),
        config.display()
    );
    anyhow::ensure!(
        run.seed == seed && run.preset == preset,
        "{}: a run of seed {} under preset `{}`, not seed {seed} under `{preset}`; remove it or choose another directory",
        out.display(),
        run.seed,
        run.preset
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use crate::config::load_with_preset;

    /// The validation accepts every row config shipped in configs/ under every preset.
    #[test]
    fn every_shipped_config_is_valid_under_every_preset() {
        let root = crate::repo_root().join("configs");
        let mut checked = 0;
        for task in ["nmt", "wmt17", "vqa", "g2p"] {
            let dir = root.join(task);
            let presets: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("presets.toml")).unwrap()).unwrap();
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                if !file.ends_with(".toml") || file == "presets.toml" || file == "paper-numbers.toml" {
                    continue;
                }
                for preset in presets.as_table().unwrap().keys() {
                    let r = match task {
                        "nmt" | "wmt17" => load_with_preset::<super::nmt::NmtConfig>(&path, preset).and_then(|(c, _)| c.validate()),
                        "vqa" => load_with_preset::<super::vqa::VqaConfig>(&path, preset).and_then(|(c, _)| c.validate()),
                        _ => load_with_preset::<super::g2p::G2pConfig>(&path, preset).and_then(|(c, _)| c.validate()),
                    };
                    r.unwrap_or_else(|e| panic!("{} under preset {preset}: {e:#}", path.display()));
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "{checked}");
    }
}
