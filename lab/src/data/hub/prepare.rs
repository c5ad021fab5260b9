//! `varattn data prepare <hub data set>`: fetch a registry entry's parquet files through
//! [`Hub`], read them (shards concatenated, row counts compared with the registry) and, for
//! translation sets, write the same text layout the offline corpus uses:
//! `<cache>/<name>/{train,valid,test}.{source,target language}` (one sentence a line, whitespace
//! collapsed, Unicode NFC), then `<cache>/<name>/prepared.json` last. The NMT experiment reads a
//! prepared set with [`load_translation_corpus`].
use crate::data::ding::{normalize_text, ParallelCorpus};
use super::Hub;
use super::parquet::{for_each_translation, for_each_vqa_v2, read_vqa_v2, VqaV2Example};
use super::registry::{HubDataset, HubKind, HubRegistry, HubSplit, SplitSource};
use crate::provenance::{write_atomic, AtomicFile};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The splits of a translation set, in the order they are prepared.
pub const TRANSLATION_SPLITS: [&str; 3] = ["train", "valid", "test"];

/// One split as prepared: where it came from and how many rows it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedSplit {
    pub split: String,
    pub repo: String,
    pub revision: String,
    /// Paths in the repository, in reading order.
    pub files: Vec<String>,
    pub rows: usize,
    /// The registry's expected count.
    pub expected_rows: usize,
}

/// `<cache>/<name>/prepared.json` of a translation set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedManifest {
    pub name: String,
    pub source: String,
    pub target: String,
    pub splits: Vec<PreparedSplit>,
}

/// The warning for a row count that differs from the registry's (not an error: newer Hub
/// revisions and test fixtures differ).
pub fn row_count_warning(name: &str, split: &str, got: usize, expected: usize) -> Option<String> {
    (got != expected).then(|| {
        format!("warning: {name} {split}: {got} rows, but datasets/hub.toml expects {expected} (a newer Hub revision or a fixture?)")
    })
}

/// The local paths of one split's files (fetched or found in the cache), with their repository
/// paths, in reading order.
pub fn fetch_split(hub: &Hub, ds: &HubDataset, split: &HubSplit) -> Result<(SplitSource, Vec<(String, PathBuf)>)> {
    let src = ds.source_of(split)?;
    let names = match &split.pattern {
        Some(p) => hub.list(&src.repo, &src.revision, p)?,
        None => split.files.clone(),
    };
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let local = hub.fetch(&src.repo, &src.revision, &n)?;
        out.push((n, local));
    }
    Ok((src, out))
}

/// Prepares Hub data set `name` (see the module doc); prints and returns one `(split, rows)`
/// per split.
pub fn prepare_hub_dataset(name: &str, cache_dir: &Path, hub: &Hub, progress: bool) -> Result<Vec<(String, usize)>> {
    let registry = HubRegistry::embedded()?;
    let ds = registry.get(name)?;
    let counts = match ds.kind {
        HubKind::Translation => {
            let m = prepare_translation(name, ds, cache_dir, hub, progress)?;
            m.splits.iter().map(|s| (s.split.clone(), s.rows)).collect()
        }
        HubKind::Vqa => {
            let mut counts = Vec::new();
            for (split, s) in &ds.splits {
                let (_, files) = fetch_split(hub, ds, s)?;
                let mut rows = 0;
                for (_, local) in &files {
                    rows += read_vqa_v2(local, false, progress)?.len();
                }
                if let Some(w) = row_count_warning(name, split, rows, s.rows) {
                    eprintln!("{w}");
                }
                counts.push((split.clone(), rows));
            }
            counts
        }
    };
    let lines: Vec<(&str, usize)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    for line in crate::data::split_lines(&lines) {
        println!("{line}");
    }
    Ok(counts)
}

/// Translation sets: streams every split's pairs into `<cache>/<name>/<split>.<lang>` files
/// (atomically), then writes `prepared.json`.
pub fn prepare_translation(name: &str, ds: &HubDataset, cache_dir: &Path, hub: &Hub, progress: bool) -> Result<PreparedManifest> {
    let (column, src_lang, tgt_lang) = ds.translation_fields()?;
    let out_dir = cache_dir.join(name);
    let mut manifest = PreparedManifest { name: name.into(), source: src_lang.into(), target: tgt_lang.into(), splits: vec![] };
    for split in TRANSLATION_SPLITS {
        let s = ds.split(split).with_context(|| format!("datasets/hub.toml [{name}]"))?;
        let (src, files) = fetch_split(hub, ds, s)?;
        let mut f_src = AtomicFile::create(&out_dir.join(format!("{split}.{src_lang}")))?;
        let mut f_tgt = AtomicFile::create(&out_dir.join(format!("{split}.{tgt_lang}")))?;
        let mut rows = 0;
        for (_, local) in &files {
            rows += for_each_translation(local, column, src_lang, tgt_lang, progress, |s, t| {
                writeln!(f_src.writer(), "{}", normalize_text(s))?;
                writeln!(f_tgt.writer(), "{}", normalize_text(t))?;
                Ok(())
            })?;
        }
        f_src.commit()?;
        f_tgt.commit()?;
        if let Some(w) = row_count_warning(name, split, rows, s.rows) {
            eprintln!("{w}");
        }
        manifest.splits.push(PreparedSplit {
            split: split.into(),
            repo: src.repo,
            revision: src.revision,
            files: files.into_iter().map(|(n, _)| n).collect(),
            rows,
            expected_rows: s.rows,
        });
    }
    write_atomic(&out_dir.join("prepared.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    Ok(manifest)
}

/// A translation set as a [`ParallelCorpus`] (source = the registry's `source` language): read
/// from `<cache>/<name>/` when `prepared.json` is there, else prepared first with the Hub
/// settings of the environment. Unknown names and non-translation sets are errors listing the
/// translation sets.
pub fn load_translation_corpus(name: &str, cache_dir: &Path, progress: bool) -> Result<ParallelCorpus> {
    let registry = HubRegistry::embedded()?;
    let translation: Vec<&String> = registry.datasets.iter().filter(|(_, d)| d.kind == HubKind::Translation).map(|(n, _)| n).collect();
    let Some(ds) = registry.datasets.get(name).filter(|d| d.kind == HubKind::Translation) else {
        bail!(
            "unknown corpus `{name}` (known: ding-de-en, {})",
            translation.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )
    };
    let dir = cache_dir.join(name);
    let manifest_path = dir.join("prepared.json");
    let manifest: PreparedManifest = if manifest_path.is_file() {
        serde_json::from_str(&std::fs::read_to_string(&manifest_path)?).with_context(|| format!("parsing {}", manifest_path.display()))?
    } else {
        let hub = Hub::from_env(progress)?;
        prepare_translation(name, ds, cache_dir, &hub, progress)?
    };
    let corpus = ParallelCorpus::read_dir_langs(&dir, &manifest.source, &manifest.target)?;
    for s in &manifest.splits {
        let n = corpus.splits().iter().find(|(n, _)| *n == s.split).map(|(_, v)| v.len()).unwrap_or(0);
        if n != s.rows {
            bail!("{}: split {} has {n} pairs but prepared.json says {}; delete {} and prepare again", dir.display(), s.split, s.rows, dir.display());
        }
    }
    Ok(corpus)
}

/// The VQA 2.0 rows of `split` of the registry's `vqa-v2` entry (shards concatenated, in file
/// order), fetched through `hub`; `images`: also the image bytes where the repository has them.
/// A row count that differs from the registry's is a warning.
pub fn load_vqa_v2_with(hub: &Hub, split: &str, images: bool, progress: bool) -> Result<Vec<VqaV2Example>> {
    let mut out = Vec::new();
    for_each_vqa_v2_with(hub, split, images, progress, |ex| {
        out.push(ex);
        Ok(())
    })?;
    Ok(out)
}

/// [`load_vqa_v2_with`] streamed: `f` gets each row; returns the row count.
pub fn for_each_vqa_v2_with(hub: &Hub, split: &str, images: bool, progress: bool, mut f: impl FnMut(VqaV2Example) -> Result<()>) -> Result<usize> {
    let registry = HubRegistry::embedded()?;
    let ds = registry.get("vqa-v2")?;
    let s = ds.split(split).context("vqa-v2 in datasets/hub.toml")?;
    let (_, files) = fetch_split(hub, ds, s)?;
    let mut rows = 0;
    for (_, local) in &files {
        rows += for_each_vqa_v2(local, images, progress, &mut f)?;
    }
    if let Some(w) = row_count_warning("vqa-v2", split, rows, s.rows) {
        eprintln!("{w}");
    }
    Ok(rows)
}

/// [`load_vqa_v2_with`] with the Hub settings of the environment (`HF_*` variables).
pub fn load_vqa_v2(split: &str, images: bool, progress: bool) -> Result<Vec<VqaV2Example>> {
    load_vqa_v2_with(&Hub::from_env(progress)?, split, images, progress)
}
