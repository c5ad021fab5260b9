//! The registry of Hugging Face Hub data sets, `datasets/hub.toml` (embedded at compile time):
//! name -> Hub repository, revision, parquet files per split, columns, expected row counts and,
//! for translation sets, the direction.
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `datasets/hub.toml`, embedded at compile time.
pub const HUB_REGISTRY_TOML: &str = include_str!("../../../../datasets/hub.toml");

/// The data sets `varattn data prepare` knows that need no Hub (prepared offline).
pub const OFFLINE_DATASETS: [&str; 3] = ["ding-de-en", "easy-vqa", "cmudict"];

/// What a data set's rows hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HubKind {
    /// One struct column `{<lang>: string, ...}` per row (the datasets `Translation` feature).
    Translation,
    /// VQA 2.0 annotations: question, question/image ids, the 10 annotators' answers, and
    /// (where the repository has them) the image bytes.
    Vqa,
}

/// One split of a Hub data set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSplit {
    /// Exact paths in the repository, read in this order (shards concatenated).
    #[serde(default)]
    pub files: Vec<String>,
    /// A glob (`*` matches within one path segment) over the repository's files, when the
    /// shard count is not fixed in the registry; matches are read in lexicographic order.
    pub pattern: Option<String>,
    /// Expected number of rows (a mismatch is a warning).
    pub rows: usize,
    /// Repository for this split, when it differs from the data set's.
    pub repo: Option<String>,
    /// Revision for this split, when it differs from the data set's.
    pub revision: Option<String>,
}

/// One entry of `datasets/hub.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubDataset {
    pub kind: HubKind,
    pub description: String,
    /// Hub dataset id `owner/name` (default for every split).
    pub repo: Option<String>,
    /// Branch, tag, ref (`refs/convert/parquet`) or commit (default for every split).
    pub revision: Option<String>,
    /// Translation sets: the struct column holding both sides.
    pub column: Option<String>,
    /// Translation sets: source language (field of `column`).
    pub source: Option<String>,
    /// Translation sets: target language (field of `column`).
    pub target: Option<String>,
    /// Splits by our name (`train`, `valid`, `test` for translation sets).
    pub splits: BTreeMap<String, HubSplit>,
}

/// Where one split's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSource {
    pub repo: String,
    pub revision: String,
}

impl HubDataset {
    /// The repository and revision of `split` (split overrides, else the data set's).
    pub fn source_of(&self, split: &HubSplit) -> Result<SplitSource> {
        let repo = split.repo.clone().or_else(|| self.repo.clone()).context("no `repo` for the split or the data set")?;
        let revision = split.revision.clone().or_else(|| self.revision.clone()).unwrap_or_else(|| "main".to_string());
        Ok(SplitSource { repo, revision })
    }

    /// Translation sets: `(column, source language, target language)`.
    pub fn translation_fields(&self) -> Result<(&str, &str, &str)> {
        match (&self.column, &self.source, &self.target) {
            (Some(c), Some(s), Some(t)) => Ok((c, s, t)),
            _ => bail!("a translation data set needs `column`, `source` and `target`"),
        }
    }

    /// A split by name, with an error listing the known ones.
    pub fn split(&self, name: &str) -> Result<&HubSplit> {
        self.splits.get(name).ok_or_else(|| {
            anyhow!("no split `{name}` (known: {})", self.splits.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
}

/// The parsed registry, by data set name.
#[derive(Debug, Clone)]
pub struct HubRegistry {
    pub datasets: BTreeMap<String, HubDataset>,
}

impl HubRegistry {
    /// Parses the embedded `datasets/hub.toml`.
    pub fn embedded() -> Result<Self> {
        Self::parse(HUB_REGISTRY_TOML).context("parsing the embedded datasets/hub.toml")
    }

    /// Parses registry TOML and checks every entry (repo given, files or pattern, translation
    /// fields present).
    pub fn parse(text: &str) -> Result<Self> {
        let datasets: BTreeMap<String, HubDataset> = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        for (name, d) in &datasets {
            if d.splits.is_empty() {
                bail!("[{name}]: no splits");
            }
            if d.kind == HubKind::Translation {
                d.translation_fields().map_err(|e| anyhow!("[{name}]: {e}"))?;
            }
            for (split, s) in &d.splits {
                d.source_of(s).map_err(|e| anyhow!("[{name}.splits.{split}]: {e}"))?;
                if s.files.is_empty() == s.pattern.is_none() {
                    bail!("[{name}.splits.{split}]: give exactly one of `files` and `pattern`");
                }
            }
        }
        Ok(Self { datasets })
    }

    /// A data set by name; an unknown name is an error listing every known data set (the Hub
    /// ones and the offline ones).
    pub fn get(&self, name: &str) -> Result<&HubDataset> {
        self.datasets.get(name).ok_or_else(|| anyhow!("unknown data set `{name}`; known: {}", self.known_names().join(", ")))
    }

    /// Every name `varattn data prepare` accepts: the offline sets, then the Hub sets.
    pub fn known_names(&self) -> Vec<String> {
        OFFLINE_DATASETS.iter().map(|s| s.to_string()).chain(self.datasets.keys().cloned()).collect()
    }
}

/// Whether `path` matches the glob `pattern`: `*` matches any run of characters except `/`,
/// `?` one character except `/`; everything else literally.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn rec(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).take_while(|&i| i == 0 || s[i - 1] != '/').any(|i| rec(rest, &s[i..])),
            Some(('?', rest)) => s.first().is_some_and(|&c| c != '/') && rec(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && rec(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = path.chars().collect();
    rec(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_registry_parses_and_names_the_paper_sets() {
        let r = HubRegistry::embedded().unwrap();
        for name in ["iwslt14-de-en", "iwslt2017-de-en", "wmt14-de-en", "wmt16-de-en", "wmt17-de-en", "vqa-v2"] {
            r.get(name).unwrap();
        }
        let iwslt = r.get("iwslt14-de-en").unwrap();
        assert_eq!(iwslt.source_of(iwslt.split("train").unwrap()).unwrap().revision, "refs/convert/parquet");
        assert_eq!(iwslt.split("train").unwrap().rows, 160239);
        let wmt17 = r.get("wmt17-de-en").unwrap();
        assert_eq!(wmt17.translation_fields().unwrap(), ("translation", "en", "de"));
        let err = r.get("nope").unwrap_err().to_string();
        for known in ["ding-de-en", "easy-vqa", "cmudict", "iwslt14-de-en", "vqa-v2"] {
            assert!(err.contains(known), "{err}");
        }
    }

    #[test]
    fn registry_errors_name_the_entry() {
        let err = HubRegistry::parse("[x]\nkind = \"translation\"\ndescription = \"\"\nrepo = \"a/b\"\nsplits.train = { files = [\"f\"], rows = 1 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[x]") && err.contains("column"), "{err}");
        let err = HubRegistry::parse("[x]\nkind = \"vqa\"\ndescription = \"\"\nrepo = \"a/b\"\nsplits.train = { rows = 1 }\n").unwrap_err().to_string();
        assert!(err.contains("x.splits.train"), "{err}");
    }

    #[test]
    fn glob_matches_within_a_segment() {
        assert!(glob_match("data/validation-*.parquet", "data/validation-00000-of-00068.parquet"));
        assert!(!glob_match("data/validation-*.parquet", "data/validation-0/x.parquet"));
        assert!(!glob_match("data/validation-*.parquet", "data/train-00000.parquet"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "a/c"));
    }
}
