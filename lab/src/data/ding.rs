//! `ding-de-en`: an offline German→English sentence corpus built from the
//! example sentences of the Ding dictionary (Frank Richter, TU Chemnitz),
//! as shipped in Debian's package `trans-de-en` (licence: GPL-2+; the
//! derived split files carry the same licence).
//!
//! # Source
//!
//! The package contains one text file, `/usr/share/trans/de-en` (UTF-8,
//! already in Unicode NFC), with one dictionary entry per line:
//!
//! ```text
//! Besuch {m} | Besuche {pl} | ... | Er hat Besuch. | ... :: visit | visits | ... | He has visitors. | ...
//! ```
//!
//! * `#` lines are comments (header), blank lines are ignored;
//! * `::` separates the German side from the English side;
//! * `|` separates *alternatives* (word forms, phrases, example sentences);
//!   the n-th German alternative translates the n-th English one;
//! * `;` separates *sub-entries* (synonyms / variants) inside an alternative;
//! * `{..}` (grammar: `{m}`, `{pl}`, `{adj}`), `[..]` (domain / register:
//!   `[ugs.]`, `[geol.]`) and `<..>` (alternative spellings) are annotations;
//!   `(..)` are optional words or explanations.
//!
//! # Extraction rule ([`extract_pairs`])
//!
//! 1. Skip blank lines and lines starting with `#`.
//! 2. Split the line at `::`; it must give exactly two sides, otherwise the
//!    line is *malformed* (skipped and counted, see [`ExtractStats`]).
//! 3. Split each side at `|` into alternatives; both sides must have the
//!    same number of alternatives, otherwise the line is *misaligned*
//!    (skipped and counted). Alternatives are aligned by position.
//! 4. For every aligned alternative pair and on each side: remove the
//!    annotations `{..}`, `[..]`, `<..>` (each replaced by a space; an
//!    alternative with unbalanced annotation brackets is rejected), keep the
//!    text before the first `;` (the first sub-entry), apply Unicode NFC,
//!    collapse runs of whitespace to one space and trim.
//! 5. Keep the pair iff *both* sides are whole sentences: non-empty, first
//!    character upper-case (`char::is_uppercase`), last character one of
//!    `.` `!` `?`, and containing none of `/` (inline alternatives such as
//!    `breitgeschlagen/bequatscht`), `…` (placeholders / fragments), `(` or
//!    `)` (optional words / glosses).
//! 6. Deduplicate exact `(de, en)` pairs, keeping the first occurrence in
//!    file order.
//!
//! On `trans-de-en` 1.9-6 (Ding "devel 2023-01-30") this gives 16 839
//! unique pairs (see `datasets/ding-de-en.toml`).
//!
//! # Split ([`split`])
//!
//! The unique pairs (file order) are shuffled with
//! `rand_chacha::ChaCha8Rng::seed_from_u64(DING_SEED)` and
//! `rand::seq::SliceRandom::shuffle` (rand 0.9.2, rand_chacha 0.9.0); the
//! first 500 shuffled pairs are `valid`, the next 500 `test`, the rest
//! `train` (in shuffled order).
//!
//! # Files
//!
//! [`prepare_ding`] writes `cache_dir/ding-de-en/{train,valid,test}.{de,en}`
//! (one sentence per line, `\n`-terminated, line i of `.de` translates to
//! line i of `.en`) atomically and checks their sha256 against the manifest
//! `datasets/ding-de-en.toml` (embedded at compile time).
//!
//! # BPE
//!
//! [`train_bpe`] learns a joint (German+English) BPE on `train` with the
//! `tokenizers` crate: NFC normaliser (no lower-casing), pre-tokeniser
//! `Metaspace('▁')` followed by `Punctuation(Isolated)` (split on
//! whitespace, punctuation isolated), matching `Metaspace` decoder so that
//! `decode(encode(s)) == s` for whitespace-normalised text, special tokens
//! `<pad>`=0, `<unk>`=1, `<s>`=2, `</s>`=3 and no post-processor (callers
//! add `<s>`/`</s>` themselves).
//!
//! # Tests
//!
//! Unit tests use literal lines copied from the real file; the test
//! `prepare_on_real_package` needs the real package (it uses an installed
//! `/usr/share/trans/de-en` or runs `apt-get download trans-de-en` into
//! `$VARATTN_DING_CACHE`, default `<tmp>/varattn-ding-cache`) and is skipped
//! with a printed message when neither is possible. The counts on
//! `trans-de-en` 1.9-6 are `train  15839`, `valid  500`, `test  500`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
pub use crate::provenance::sha256_hex;
use crate::provenance::write_atomic;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, Source, Split};

/// Name of the dataset and of its sub-directory in the cache directory.
pub const DING_NAME: &str = "ding-de-en";
/// Debian package holding the Ding dictionary (German–English).
pub const DING_PACKAGE: &str = "trans-de-en";
/// Path of the dictionary file inside the package (and when installed).
pub const DING_FILE_IN_PACKAGE: &str = "usr/share/trans/de-en";
/// Seed of the train/valid/test shuffle.
pub const DING_SEED: u64 = 20230130;
/// Number of validation pairs.
pub const DING_N_VALID: usize = 500;
/// Number of test pairs.
pub const DING_N_TEST: usize = 500;
/// Special tokens of [`train_bpe`], in id order (`<pad>`=0 … `</s>`=3).
pub const SPECIAL_TOKENS: [&str; 4] = ["<pad>", "<unk>", "<s>", "</s>"];
/// The manifest `datasets/ding-de-en.toml`, embedded at compile time.
pub const DING_MANIFEST_TOML: &str = include_str!("../../../datasets/ding-de-en.toml");

/// Names of the split files, in the order they are written and hashed.
pub const SPLIT_FILES: [&str; 6] = [
    "train.de", "train.en", "valid.de", "valid.en", "test.de", "test.en",
];

/// One sentence pair: German source, English target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    /// German sentence.
    pub src: String,
    /// English sentence.
    pub tgt: String,
}

impl Pair {
    /// Convenience constructor.
    pub fn new(src: impl Into<String>, tgt: impl Into<String>) -> Self {
        Self {
            src: src.into(),
            tgt: tgt.into(),
        }
    }
}

/// A parallel corpus split into train / valid / test.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParallelCorpus {
    pub train: Vec<Pair>,
    pub valid: Vec<Pair>,
    pub test: Vec<Pair>,
}

impl ParallelCorpus {
    /// `(name, pairs)` for the three splits, in the order train, valid, test.
    pub fn splits(&self) -> [(&'static str, &[Pair]); 3] {
        [
            ("train", &self.train),
            ("valid", &self.valid),
            ("test", &self.test),
        ]
    }

    /// Total number of pairs.
    pub fn len(&self) -> usize {
        self.train.len() + self.valid.len() + self.test.len()
    }

    /// True if the corpus has no pairs at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `dir/{train,valid,test}.{de,en}` (as written by [`prepare_ding`]).
    pub fn read_dir(dir: &Path) -> Result<Self> {
        Self::read_dir_langs(dir, "de", "en")
    }

    /// Reads `dir/{train,valid,test}.{src,tgt}`: line i of `<split>.<src>` is the source of
    /// pair i, line i of `<split>.<tgt>` its target (e.g. `en`, `de` for English->German).
    pub fn read_dir_langs(dir: &Path, src: &str, tgt: &str) -> Result<Self> {
        let read = |split: &str| -> Result<Vec<Pair>> {
            let p_de = dir.join(format!("{split}.{src}"));
            let p_en = dir.join(format!("{split}.{tgt}"));
            let de =
                fs::read_to_string(&p_de).with_context(|| format!("reading {}", p_de.display()))?;
            let en =
                fs::read_to_string(&p_en).with_context(|| format!("reading {}", p_en.display()))?;
            let (de, en): (Vec<&str>, Vec<&str>) = (de.lines().collect(), en.lines().collect());
            if de.len() != en.len() {
                bail!(
                    "{} has {} lines but {} has {}",
                    p_de.display(),
                    de.len(),
                    p_en.display(),
                    en.len()
                );
            }
            Ok(de
                .into_iter()
                .zip(en)
                .map(|(s, t)| Pair::new(s, t))
                .collect())
        };
        Ok(Self {
            train: read("train")?,
            valid: read("valid")?,
            test: read("test")?,
        })
    }
}

/// One line per split, `"<name>  <count>"` (two spaces), e.g. `train  15839`.
pub fn summary_lines(corpus: &ParallelCorpus) -> Vec<String> {
    let splits: Vec<(&str, usize)> = corpus.splits().iter().map(|(name, xs)| (*name, xs.len())).collect();
    super::split_lines(&splits)
}

/// Counters of [`extract_pairs_with_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// All lines of the input.
    pub lines: usize,
    /// Blank lines and `#` comment lines.
    pub comments: usize,
    /// Dictionary entries that parsed (two sides, same number of alternatives).
    pub entries: usize,
    /// Lines without exactly one `::` (skipped).
    pub skipped_malformed: usize,
    /// Lines whose sides have different numbers of `|` alternatives (skipped).
    pub skipped_misaligned: usize,
    /// 1-based numbers of the first (up to 20) skipped lines.
    pub skipped_line_numbers: Vec<usize>,
    /// Aligned alternative pairs that passed the sentence test (before dedup).
    pub sentence_pairs: usize,
    /// Exact duplicates removed.
    pub duplicates: usize,
    /// Unique pairs returned.
    pub pairs: usize,
}

impl ExtractStats {
    /// Total skipped (malformed + misaligned) lines.
    pub fn skipped(&self) -> usize {
        self.skipped_malformed + self.skipped_misaligned
    }
}

/// Extracts the unique sentence pairs of a Ding dictionary text (see the
/// module documentation for the exact rule). Pure; unparsable lines are
/// skipped (use [`extract_pairs_with_stats`] to see how many).
pub fn extract_pairs(text: &str) -> Vec<Pair> {
    extract_pairs_with_stats(text).0
}

/// [`extract_pairs`] plus counters (skipped lines, duplicates, ...).
pub fn extract_pairs_with_stats(text: &str) -> (Vec<Pair>, ExtractStats) {
    let mut st = ExtractStats::default();
    let mut seen: HashSet<Pair> = HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        st.lines += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            st.comments += 1;
            continue;
        }
        let sides: Vec<&str> = line.split("::").collect();
        if sides.len() != 2 {
            st.skipped_malformed += 1;
            if st.skipped_line_numbers.len() < 20 {
                st.skipped_line_numbers.push(i + 1);
            }
            continue;
        }
        let de: Vec<&str> = sides[0].split('|').collect();
        let en: Vec<&str> = sides[1].split('|').collect();
        if de.len() != en.len() {
            st.skipped_misaligned += 1;
            if st.skipped_line_numbers.len() < 20 {
                st.skipped_line_numbers.push(i + 1);
            }
            continue;
        }
        st.entries += 1;
        for (a, b) in de.iter().zip(&en) {
            let (Some(a), Some(b)) = (clean_alternative(a), clean_alternative(b)) else {
                continue;
            };
            if !is_sentence(&a) || !is_sentence(&b) {
                continue;
            }
            st.sentence_pairs += 1;
            let pair = Pair { src: a, tgt: b };
            if seen.insert(pair.clone()) {
                out.push(pair);
            } else {
                st.duplicates += 1;
            }
        }
    }
    st.pairs = out.len();
    (out, st)
}

/// Step 4 of the rule: strip annotations, first `;` sub-entry, NFC,
/// whitespace normalisation. `None` if annotation brackets are unbalanced.
fn clean_alternative(alt: &str) -> Option<String> {
    let stripped = strip_annotations(alt)?;
    let first = stripped.split(';').next().unwrap_or("");
    Some(normalize_text(first))
}

/// Removes `{..}`, `[..]` and `<..>` (nesting allowed), replacing each by a
/// space. Returns `None` for unbalanced brackets.
fn strip_annotations(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut stack: Vec<char> = Vec::new();
    for c in s.chars() {
        match c {
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '<' => stack.push('>'),
            '}' | ']' | '>' => {
                if stack.pop() != Some(c) {
                    return None;
                }
                if stack.is_empty() {
                    out.push(' ');
                }
            }
            _ if stack.is_empty() => out.push(c),
            _ => {}
        }
    }
    stack.is_empty().then_some(out)
}

/// Unicode NFC, then collapse whitespace runs to one space and trim.
pub fn normalize_text(s: &str) -> String {
    let mut n = tokenizers::NormalizedString::from(s);
    n.nfc();
    n.get().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Step 5 of the rule: a "whole sentence".
fn is_sentence(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    first.is_uppercase() && matches!(last, '.' | '!' | '?') && !s.contains(['/', '…', '(', ')'])
}

/// Shuffles `pairs` with `ChaCha8Rng::seed_from_u64(seed)` and splits them:
/// the first `n_valid` are valid, the next `n_test` test, the rest train.
/// Fails if fewer than `n_valid + n_test + 1` pairs are given.
pub fn split(pairs: Vec<Pair>, seed: u64, n_valid: usize, n_test: usize) -> Result<ParallelCorpus> {
    if pairs.len() <= n_valid + n_test {
        bail!(
            "cannot split {} pairs into {n_valid} valid + {n_test} test + a non-empty train set",
            pairs.len()
        );
    }
    let mut pairs = pairs;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    pairs.shuffle(&mut rng);
    let train = pairs.split_off(n_valid + n_test);
    let test = pairs.split_off(n_valid);
    Ok(ParallelCorpus {
        train,
        valid: pairs,
        test,
    })
}

// ---------------------------------------------------------------------------
// Manifest

/// `datasets/ding-de-en.toml`.
pub type DingManifest = Manifest<DingSections>;

/// The sections of `datasets/ding-de-en.toml` besides those of every [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DingSections {
    pub extraction: ManifestExtraction,
    /// sha256 (lower-case hex) of each split file, keyed `train.de` etc.
    pub sha256: BTreeMap<String, String>,
}

/// `[extraction]` of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestExtraction {
    /// The extraction rule in words.
    pub rule: String,
    /// Lines of the source file.
    pub lines: usize,
    /// Skipped (unparsable) lines.
    pub skipped_lines: usize,
    /// Sentence pairs before deduplication.
    pub sentence_pairs: usize,
    /// Unique pairs.
    pub pairs: usize,
}

impl DingManifest {
    /// Parses the embedded `datasets/ding-de-en.toml`.
    pub fn embedded() -> Result<Self> {
        Self::parse("datasets/ding-de-en.toml", DING_MANIFEST_TOML)
    }
}

/// The extraction rule, as written into the manifest.
pub const EXTRACTION_RULE: &str = "Lines 'DE :: EN' (blank and '#' lines ignored; a line without exactly one '::' \
or whose sides have different numbers of '|'-alternatives is skipped). Alternatives are aligned by position. \
On each side of each aligned alternative: remove the annotations {..} [..] <..> (unbalanced brackets: rejected), \
keep the text before the first ';' (first sub-entry), Unicode NFC, collapse whitespace and trim. \
Keep the pair iff both sides start with an upper-case character, end with '.', '!' or '?', and contain none of \
'/', '\u{2026}', '(', ')'. Exact duplicate pairs are removed (first occurrence in file order kept).";

/// The split method, as written into the manifest.
pub const SPLIT_METHOD: &str = "unique pairs in file order, shuffled with rand 0.9.2 SliceRandom::shuffle and \
rand_chacha 0.9.0 ChaCha8Rng::seed_from_u64(seed); first `valid` pairs -> valid, next `test` -> test, rest -> train";

// ---------------------------------------------------------------------------
// Preparation

/// What [`prepare_ding_unverified`] found and wrote.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    /// Dictionary file that was read.
    pub source_file: PathBuf,
    /// Package version.
    pub version: String,
    /// sha256 of the dictionary file.
    pub source_sha256: String,
    /// Extraction counters.
    pub stats: ExtractStats,
    /// Directory with the split files.
    pub out_dir: PathBuf,
    /// sha256 of each split file.
    pub sha256: BTreeMap<String, String>,
}

impl PrepareReport {
    /// The manifest describing this preparation.
    pub fn manifest(&self, corpus: &ParallelCorpus) -> DingManifest {
        DingManifest {
            path: "datasets/ding-de-en.toml".into(),
            name: DING_NAME.into(),
            license: "GPL-2.0-or-later (Ding dictionary, Frank Richter, TU Chemnitz)".into(),
            source: Source {
                package: DING_PACKAGE.into(),
                version: self.version.clone(),
                file: Some(DING_FILE_IN_PACKAGE.into()),
                file_sha256: Some(self.source_sha256.clone()),
                wheel: None,
                wheel_sha256: None,
                member: None,
                member_sha256: None,
                fetch: None,
            },
            split: Split {
                method: SPLIT_METHOD.into(),
                seed: DING_SEED,
                train: corpus.train.len(),
                valid: corpus.valid.len(),
                test: corpus.test.len(),
                valid_fraction: None,
                train_images: None,
                valid_images: None,
                test_images: None,
                test_words_sha256: None,
            },
            sections: DingSections {
                extraction: ManifestExtraction {
                    rule: EXTRACTION_RULE.into(),
                    lines: self.stats.lines,
                    skipped_lines: self.stats.skipped(),
                    sentence_pairs: self.stats.sentence_pairs,
                    pairs: self.stats.pairs,
                },
                sha256: self.sha256.clone(),
            },
        }
    }
}

/// Prepares `ding-de-en` in `cache_dir` and verifies it against the
/// embedded manifest: finds (or downloads with `apt-get download` and
/// extracts with `dpkg-deb -x`) the package, extracts and splits the pairs,
/// writes `cache_dir/ding-de-en/{train,valid,test}.{de,en}` atomically and
/// checks package version, source sha256, counts and split-file sha256.
/// Prints one line per split (see [`summary_lines`]).
pub fn prepare_ding(cache_dir: &Path) -> Result<ParallelCorpus> {
    let corpus = prepare_ding_quietly(cache_dir)?;
    for line in summary_lines(&corpus) {
        println!("{line}");
    }
    Ok(corpus)
}

/// [`prepare_ding`] without the lines on stdout (warnings still go to stderr).
pub fn prepare_ding_quietly(cache_dir: &Path) -> Result<ParallelCorpus> {
    let manifest = DingManifest::embedded()?;
    let (corpus, report) = prepare_ding_unverified(cache_dir)?;
    verify_against_manifest(&corpus, &report, &manifest)?;
    Ok(corpus)
}

/// Checks a preparation against a manifest; errors name the file and both hashes.
pub fn verify_against_manifest(
    corpus: &ParallelCorpus,
    report: &PrepareReport,
    manifest: &DingManifest,
) -> Result<()> {
    manifest.check_sha256(
        report.source_file.display(),
        &report.source_sha256,
        "source.file_sha256",
        manifest.source.file_sha256.as_deref(),
        &format!(
            "; found version {}: the dictionary changed, so the splits would not be reproducible",
            report.version
        ),
    )?;
    manifest.check_split_sizes(corpus.train.len(), corpus.valid.len(), corpus.test.len())?;
    for name in SPLIT_FILES {
        let expected = manifest.sections.sha256.get(name).map(String::as_str);
        let actual = report
            .sha256
            .get(name)
            .ok_or_else(|| anyhow!("internal: no sha256 computed for {name}"))?;
        manifest.check_sha256(report.out_dir.join(name).display(), actual, &format!("sha256.{name:?}"), expected, "")?;
    }
    Ok(())
}

/// Everything [`prepare_ding`] does except the manifest check; returns the
/// corpus and a report (from which a new manifest can be rendered with
/// [`PrepareReport::manifest`]).
pub fn prepare_ding_unverified(cache_dir: &Path) -> Result<(ParallelCorpus, PrepareReport)> {
    fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    sweep_extractions(cache_dir)?;
    let (source_file, version) = locate_source(cache_dir)?;
    let bytes =
        fs::read(&source_file).with_context(|| format!("reading {}", source_file.display()))?;
    let source_sha256 = sha256_hex(&bytes);
    let text = decode_utf8(&bytes, &source_file)?;
    let (pairs, stats) = extract_pairs_with_stats(text);
    if stats.skipped() > 0 {
        eprintln!(
            "warning: {}: skipped {} unparsable lines ({} without exactly one '::', {} with different \
             numbers of '|' alternatives); first at lines {:?}",
            source_file.display(),
            stats.skipped(),
            stats.skipped_malformed,
            stats.skipped_misaligned,
            stats.skipped_line_numbers
        );
    }
    if pairs.is_empty() {
        bail!(
            "{}: no sentence pairs extracted ({} lines, {} entries, {} skipped lines)",
            source_file.display(),
            stats.lines,
            stats.entries,
            stats.skipped()
        );
    }
    let corpus = split(pairs, DING_SEED, DING_N_VALID, DING_N_TEST)
        .with_context(|| format!("splitting pairs of {}", source_file.display()))?;
    let out_dir = cache_dir.join(DING_NAME);
    let sha256 = write_corpus(&corpus, &out_dir)?;
    let report = PrepareReport {
        source_file,
        version,
        source_sha256,
        stats,
        out_dir,
        sha256,
    };
    Ok((corpus, report))
}

/// Writes `dir/{train,valid,test}.{de,en}` atomically; returns their sha256.
pub fn write_corpus(corpus: &ParallelCorpus, dir: &Path) -> Result<BTreeMap<String, String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut hashes = BTreeMap::new();
    for (split, pairs) in corpus.splits() {
        for lang in ["de", "en"] {
            let mut buf = String::new();
            for p in pairs {
                let s = if lang == "de" { &p.src } else { &p.tgt };
                if s.contains('\n') {
                    bail!("sentence contains a newline: {s:?}");
                }
                buf.push_str(s);
                buf.push('\n');
            }
            let name = format!("{split}.{lang}");
            write_atomic(&dir.join(&name), buf.as_bytes())?;
            hashes.insert(name, sha256_hex(buf.as_bytes()));
        }
    }
    Ok(hashes)
}



/// UTF-8 decoding with an error naming the file and line.
fn decode_utf8<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow!("{}:{line}: invalid UTF-8 ({e})", path.display())
    })
}

/// Finds the dictionary file and its package version:
/// 1. `cache_dir/trans-de-en/usr/share/trans/de-en` (a previous extraction,
///    version from `cache_dir/trans-de-en/VERSION`);
/// 2. a `cache_dir/trans-de-en_*.deb`, extracted with `dpkg-deb -x`;
/// 3. the installed `/usr/share/trans/de-en` (version from `dpkg-query`);
/// 4. `apt-get download trans-de-en` into `cache_dir` (after one
///    `apt-get update` if the first attempt fails), then as in 2.
fn locate_source(cache_dir: &Path) -> Result<(PathBuf, String)> {
    let extracted = cache_dir.join(DING_PACKAGE);
    let file = extracted.join(DING_FILE_IN_PACKAGE);
    let version_file = extracted.join("VERSION");
    if file.is_file() && version_file.is_file() {
        let v = fs::read_to_string(&version_file)
            .with_context(|| format!("reading {}", version_file.display()))?;
        return Ok((file, v.trim().to_string()));
    }
    if let Some(deb) = find_deb(cache_dir)? {
        return extract_deb(&deb, &extracted);
    }
    let installed = Path::new("/").join(DING_FILE_IN_PACKAGE);
    if installed.is_file() {
        if let Ok(v) = run_capture(
            Command::new("dpkg-query").args(["-W", "-f=${Version}", DING_PACKAGE]),
            "dpkg-query",
        ) {
            return Ok((installed, v.trim().to_string()));
        }
    }
    download_deb(cache_dir)?;
    let deb = find_deb(cache_dir)?.ok_or_else(|| {
        anyhow!(
            "apt-get download {DING_PACKAGE} succeeded but no {DING_PACKAGE}_*.deb is in {}",
            cache_dir.display()
        )
    })?;
    extract_deb(&deb, &extracted)
}

/// The newest-looking (lexicographically last) `trans-de-en_*.deb` in `dir`.
fn find_deb(dir: &Path) -> Result<Option<PathBuf>> {
    let prefix = format!("{DING_PACKAGE}_");
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    Ok(debs.pop())
}

/// `apt-get download trans-de-en` in `cache_dir`; on failure runs
/// `apt-get update` once and retries.
fn download_deb(cache_dir: &Path) -> Result<()> {
    let download = || {
        run_capture(
            Command::new("apt-get")
                .args(["download", DING_PACKAGE])
                .current_dir(cache_dir),
            "apt-get download",
        )
    };
    match download() {
        Ok(_) => Ok(()),
        Err(first) => {
            eprintln!("apt-get download {DING_PACKAGE} failed ({first:#}); running apt-get update and retrying");
            run_capture(
                Command::new("apt-get").args(["update", "-q"]),
                "apt-get update",
            )
            .with_context(|| format!("after: {first:#}"))?;
            download().with_context(|| {
                format!(
                    "could not download Debian package {DING_PACKAGE} into {} \
                     (put a {DING_PACKAGE}_*.deb there, or install the package)",
                    cache_dir.display()
                )
            })?;
            Ok(())
        }
    }
}

/// Extracts `deb` into `dest` (via a temporary directory and a rename) and
/// records the package version in `dest/VERSION`.
fn extract_deb(deb: &Path, dest: &Path) -> Result<(PathBuf, String)> {
    let version = run_capture(
        Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"),
        "dpkg-deb -f",
    )?
    .trim()
    .to_string();
    let package = run_capture(
        Command::new("dpkg-deb").arg("-f").arg(deb).arg("Package"),
        "dpkg-deb -f",
    )?;
    if package.trim() != DING_PACKAGE {
        bail!(
            "{}: package is {:?}, expected {DING_PACKAGE}",
            deb.display(),
            package.trim()
        );
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!("{EXTRACT_PREFIX}{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let extracted = (|| -> Result<()> {
        run_capture(
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp),
            "dpkg-deb -x",
        )
        .with_context(|| format!("extracting {}", deb.display()))?;
        fs::write(tmp.join("VERSION"), format!("{version}\n"))
            .with_context(|| format!("writing {}/VERSION", tmp.display()))?;
        let file = tmp.join(DING_FILE_IN_PACKAGE);
        if !file.is_file() {
            bail!("{}: does not contain {DING_FILE_IN_PACKAGE}", deb.display());
        }
        if dest.exists() {
            fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        fs::rename(&tmp, dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
    })();
    if extracted.is_err() && tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    extracted?;
    Ok((dest.join(DING_FILE_IN_PACKAGE), version))
}

/// The name prefix of the temporary extraction directories in the cache, followed by the pid of
/// the process extracting.
const EXTRACT_PREFIX: &str = ".trans-de-en.extract";

/// Removes the temporary extraction directories in `cache_dir` whose process is gone (left by a
/// kill in the middle of an extraction).
fn sweep_extractions(cache_dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(cache_dir) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(EXTRACT_PREFIX).and_then(|p| p.parse::<i32>().ok()) else { continue };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
        if !alive {
            let p = e.path();
            fs::remove_dir_all(&p).with_context(|| format!("removing the abandoned extraction {}", p.display()))?;
        }
    }
    Ok(())
}

/// Runs a command, returning its stdout; errors include exit status and stderr.
fn run_capture(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not run {what} ({cmd:?})"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {cmd:?}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------
// BPE

/// Learns a joint German+English BPE with `vocab_size` entries (including
/// the 4 [`SPECIAL_TOKENS`]) on `corpus.train` (all German sentences, then
/// all English ones), saves it as pretty JSON to `out` (atomically) and
/// returns it. NFC normaliser, no lower-casing, `Metaspace('▁')` +
/// `Punctuation(Isolated)` pre-tokeniser, `Metaspace` decoder, `<unk>` for
/// unseen characters. Deterministic: the same corpus gives the same file.
pub fn train_bpe(
    corpus: &ParallelCorpus,
    vocab_size: usize,
    out: &Path,
) -> Result<tokenizers::Tokenizer> {
    use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
    use tokenizers::models::bpe::{BpeTrainer, BPE};
    use tokenizers::models::TrainerWrapper;
    use tokenizers::normalizers::unicode::NFC;
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    use tokenizers::pre_tokenizers::punctuation::Punctuation;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

    if corpus.train.is_empty() {
        bail!("cannot train a BPE on an empty training set");
    }
    if vocab_size <= SPECIAL_TOKENS.len() {
        bail!(
            "vocab_size {vocab_size} must exceed the {} special tokens",
            SPECIAL_TOKENS.len()
        );
    }
    let e = |e: tokenizers::Error| anyhow!("{e}");
    let model = BPE::builder()
        .unk_token("<unk>".to_string())
        .build()
        .map_err(e)?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(NFC)).map_err(e)?;
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        Metaspace::new('▁', PrependScheme::Always, true).into(),
        Punctuation::new(SplitDelimiterBehavior::Isolated).into(),
    ])));
    tok.with_decoder(Some(MetaspaceDecoder::new(
        '▁',
        PrependScheme::Always,
        true,
    )));
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    let trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(0)
        .show_progress(false)
        .special_tokens(specials)
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    let sentences = corpus
        .train
        .iter()
        .map(|p| p.src.as_str())
        .chain(corpus.train.iter().map(|p| p.tgt.as_str()));
    tok.train(&mut trainer, sentences).map_err(e)?;
    for (id, s) in SPECIAL_TOKENS.iter().enumerate() {
        if tok.token_to_id(s) != Some(id as u32) {
            bail!("internal: special token {s} did not get id {id}");
        }
    }
    let json = tok.to_string(true).map_err(e)?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(out, json.as_bytes())?;
    Ok(tok)
}

/// Loads a tokenizer saved by [`train_bpe`].
pub fn load_bpe(path: &Path) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow!("loading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Literal lines from `/usr/share/trans/de-en` (trans-de-en 1.9-6).
    const REAL_LINES: &str = "\
# Version :: devel 2023-01-30
A {n}; Ais {n}; As {n}; Aisis {n}; Ases {n} [mus.] | A-Dur {n} :: A; A sharp; A flat; A double sharp; A double flat | A major
Aalbestand {m} | Aalbestände {pl} :: eel stock | eel stocks
geistliches Amt {n} [relig.] | Er ist bei den Einwanderern in der Stadt als Geistlicher tätig. :: ministry | His ministry is among the city’s immigrants.
jds. Aufenthaltsort {m}; Aufenthalt {m}; Verbleib {m} | Er ist unbekannten Aufenthalts. [adm.] :: sb.’s whereabouts | His present whereabouts are unknown.
ein(e) Ausnahme…; ein(e) Spitzen…; ein(e) … der Extraklasse | Er ist ein Ausnahmetalent/ein Talent der Extraklasse. :: a … extraordinaire | He is a talent extraordinaire.
Besuch {m} | Besuche {pl} | Familienbesuch {m} | einen Besuch machen bei jdm.; jdm. einen Besuch abstatten | bei einem Freund/in einem Land zu Besuch sein; auf Besuch sein | Er hat Besuch. | Er ist auf Besuch zu Hause. | Sie besucht gerade die Golfstaaten. | Dieses Museum ist einen Besuch wert. | Ich treffe Hanna hoffentlich nächsten Monat, wenn sie mit der Schule nach London kommt. :: visit | visits | family visit | to pay a visit to sb.; to make a visit to sb.; to pay a call to sb. | to be on a visit to a friend/to a country | He has visitors. | He’s on a visit home. | She is on a visit to the Gulf states. | This museum is worth visiting. | I hope to meet Hanna next month, when she will be coming on a school visit to London.
";

    #[test]
    fn extract_real_lines() {
        let (pairs, st) = extract_pairs_with_stats(REAL_LINES);
        assert_eq!(st.comments, 1);
        assert_eq!(st.skipped(), 0);
        let expect = [
            ("Er ist bei den Einwanderern in der Stadt als Geistlicher tätig.", "His ministry is among the city’s immigrants."),
            // annotation [adm.] after the full stop is stripped
            ("Er ist unbekannten Aufenthalts.", "His present whereabouts are unknown."),
            // "Ausnahmetalent/ein Talent" has an inline '/' alternative: rejected
            ("Er hat Besuch.", "He has visitors."),
            ("Er ist auf Besuch zu Hause.", "He’s on a visit home."),
            ("Sie besucht gerade die Golfstaaten.", "She is on a visit to the Gulf states."),
            ("Dieses Museum ist einen Besuch wert.", "This museum is worth visiting."),
            ("Ich treffe Hanna hoffentlich nächsten Monat, wenn sie mit der Schule nach London kommt.", "I hope to meet Hanna next month, when she will be coming on a school visit to London."),
        ];
        let expect: Vec<Pair> = expect.iter().map(|(a, b)| Pair::new(*a, *b)).collect();
        assert_eq!(pairs, expect);
        assert_eq!(st.pairs, 7);
    }

    #[test]
    fn sub_entries_annotations_and_rejections() {
        let text = "\
Ich spreche Deutsch.; Ich kann Deutsch. :: I speak German.; I know German.
Mir läuft   das Wasser im Mund zusammen. {ugs.} :: It makes my mouth water.; My mouth is watering.
Wir können es (unerledigt) liegen lassen. :: We can leave it.
Wie geht's? <Wie gehts?> :: How are you? [coll.]
das A und O [ugs.] :: the nuts and bolts [coll.]
Er kam. | Sie ging. :: He came.
Keine Trennung hier.
Ich spreche Deutsch. :: I speak German.
Kaputt {m. :: Broken.
";
        let (pairs, st) = extract_pairs_with_stats(text);
        assert_eq!(
            pairs,
            vec![
                Pair::new("Ich spreche Deutsch.", "I speak German."),
                Pair::new(
                    "Mir läuft das Wasser im Mund zusammen.",
                    "It makes my mouth water."
                ),
                Pair::new("Wie geht's?", "How are you?"),
            ]
        );
        assert_eq!(st.skipped_malformed, 1);
        assert_eq!(st.skipped_misaligned, 1);
        assert_eq!(st.skipped_line_numbers, vec![6, 7]);
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.sentence_pairs, 4);
    }

    #[test]
    fn nfc_is_applied() {
        // "ä" as a + combining diaeresis
        let text = "Er w\u{0061}\u{0308}hlt. :: He chooses.\n";
        assert_eq!(
            extract_pairs(text),
            vec![Pair::new("Er w\u{e4}hlt.", "He chooses.")]
        );
    }

    fn numbered(n: usize) -> Vec<Pair> {
        (0..n)
            .map(|i| Pair::new(format!("Satz {i}."), format!("Sentence {i}.")))
            .collect()
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let pairs = numbered(100);
        let a = split(pairs.clone(), 7, 10, 15).unwrap();
        let b = split(pairs.clone(), 7, 10, 15).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (75, 10, 15));
        let all: Vec<&Pair> = a.train.iter().chain(&a.valid).chain(&a.test).collect();
        let set: HashSet<&Pair> = all.iter().copied().collect();
        assert_eq!(set.len(), 100);
        assert!(pairs.iter().all(|p| set.contains(p)));
        let c = split(pairs.clone(), 8, 10, 15).unwrap();
        assert_ne!(a, c, "different seeds should give different splits");
        assert_ne!(a.train, pairs[25..].to_vec(), "pairs should be shuffled");
        assert_eq!(
            summary_lines(&a),
            vec!["train  75", "valid  10", "test  15"]
        );
        assert!(split(numbered(25), 7, 10, 15).is_err());
    }

    #[test]
    fn empty_or_garbage_input_gives_no_pairs() {
        assert!(extract_pairs("").is_empty());
        let (p, st) = extract_pairs_with_stats("foo\nbar :: baz :: qux\n");
        assert!(p.is_empty());
        assert_eq!(st.skipped_malformed, 2);
        assert_eq!(st.skipped_line_numbers, vec![1, 2]);
        assert!(split(p, 1, 0, 0).is_err());
    }

    #[test]
    fn invalid_utf8_names_file_and_line() {
        let err = decode_utf8(b"ok :: ok\n\xff\n", Path::new("x/de-en")).unwrap_err();
        assert_eq!(err.to_string().split(' ').next().unwrap(), "x/de-en:2:");
    }

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = split(numbered(30), 1, 5, 5).unwrap();
        let hashes = write_corpus(&corpus, dir.path()).unwrap();
        assert_eq!(hashes.len(), 6);
        assert_eq!(ParallelCorpus::read_dir(dir.path()).unwrap(), corpus);
        let bytes = fs::read(dir.path().join("valid.en")).unwrap();
        assert_eq!(hashes["valid.en"], sha256_hex(&bytes));
        // no temporary files left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 6);
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn manifest_embedded_parses_and_roundtrips() {
        let m = DingManifest::embedded().unwrap();
        assert_eq!(m.name, DING_NAME);
        assert_eq!(m.source.package, DING_PACKAGE);
        assert_eq!(m.split.seed, DING_SEED);
        assert_eq!((m.split.valid, m.split.test), (DING_N_VALID, DING_N_TEST));
        assert_eq!(
            m.sections.extraction.pairs,
            m.split.train + m.split.valid + m.split.test
        );
        assert_eq!(m.sections.extraction.rule, EXTRACTION_RULE);
        for f in SPLIT_FILES {
            assert_eq!(m.sections.sha256[f].len(), 64, "{f}");
        }
        assert_eq!(DingManifest::parse(&m.path, &m.to_toml().unwrap()).unwrap(), m);
    }

    #[test]
    fn verify_reports_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = split(numbered(30), 1, 5, 5).unwrap();
        let sha256 = write_corpus(&corpus, dir.path()).unwrap();
        let report = PrepareReport {
            source_file: dir.path().join("de-en"),
            version: "0".into(),
            source_sha256: "s".into(),
            stats: ExtractStats::default(),
            out_dir: dir.path().to_path_buf(),
            sha256: sha256.clone(),
        };
        let mut m = report.manifest(&corpus);
        verify_against_manifest(&corpus, &report, &m).unwrap();
        m.sections.sha256.insert("test.de".into(), "0".repeat(64));
        let msg = verify_against_manifest(&corpus, &report, &m)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("test.de"), "{msg}");
        assert!(msg.contains(&sha256["test.de"]), "{msg}");
        assert!(msg.contains(&"0".repeat(64)), "{msg}");
    }

    fn small_corpus() -> ParallelCorpus {
        let pairs = [
            ("Er hat Besuch.", "He has visitors."),
            ("Er ist auf Besuch zu Hause.", "He’s on a visit home."),
            (
                "Sie besucht gerade die Golfstaaten.",
                "She is on a visit to the Gulf states.",
            ),
            (
                "Dieses Museum ist einen Besuch wert.",
                "This museum is worth visiting.",
            ),
            (
                "Der Schneemann zerfloss in der Sonne.",
                "The snowman melted away in the sun.",
            ),
            (
                "Reserviere bitte den nächsten Tanz für mich.",
                "Please save the next dance for me.",
            ),
            (
                "Mir läuft das Wasser im Mund zusammen.",
                "It makes my mouth water.",
            ),
            (
                "AIDS bedeutet „erworbenes Immundefektsyndrom“.",
                "AIDS means \"Acquired Immune Deficiency Syndrome\".",
            ),
        ];
        ParallelCorpus {
            train: pairs.iter().map(|(a, b)| Pair::new(*a, *b)).collect(),
            valid: vec![],
            test: vec![],
        }
    }

    /// The split files of a fixture corpus and the data fingerprint a run records for them
    /// (`RunIdentity::data_sha256`), pinned: values computed independently (Python's hashlib
    /// over the same lines).
    #[test]
    fn split_files_and_run_fingerprint_of_a_fixture_are_pinned() {
        let pairs = small_corpus().train;
        let corpus = ParallelCorpus {
            train: pairs[..6].to_vec(),
            valid: pairs[6..7].to_vec(),
            test: pairs[7..].to_vec(),
        };
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join(DING_NAME);
        let hashes = write_corpus(&corpus, &dir).unwrap();
        let want = [
            ("test.de", "8210bfed8894db0326afae3e90e6df06b8117292ed5c37bcc5528cd52c98058b"),
            ("test.en", "cc74caddc1e21ae5ac01983edcbaeabc4ac8d67e2a4844e742224321e6b51169"),
            ("train.de", "9a31eec4735a1359172e4300af93ebb846767d4ace40df6fdc2ed42f01195b7f"),
            ("train.en", "4de896c1e8721bc9a5165b84a12c81fe60db8368d80c7e7eaf9362ca9caf4f58"),
            ("valid.de", "85d56d7eec97b1846500622fe0c55b72287ef94a01d9559c554a3e8191385e9f"),
            ("valid.en", "162c808a15266364fa8ebd63242c778c7b2f85650f764ed063a733787b0e1921"),
        ];
        let want: BTreeMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(hashes, want);
        let files: Vec<PathBuf> = SPLIT_FILES.iter().map(|f| dir.join(f)).collect();
        let id = crate::rundir::RunIdentity::new(3435, cache.path(), &files).unwrap();
        assert_eq!(id.data_sha256, "3fc1dc1576e1f15fea89520dcd04e6149cc46547d96854162636746200898a15");
        // the report of that preparation verifies against its own manifest, which round-trips
        let report = PrepareReport {
            source_file: cache.path().join("de-en"),
            version: "0".into(),
            source_sha256: "s".into(),
            stats: ExtractStats::default(),
            out_dir: dir.clone(),
            sha256: hashes,
        };
        let m = report.manifest(&corpus);
        verify_against_manifest(&corpus, &report, &m).unwrap();
        assert_eq!(DingManifest::parse(&m.path, &m.to_toml().unwrap()).unwrap(), m);
    }

    #[test]
    fn bpe_is_deterministic_and_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = small_corpus();
        let (p1, p2) = (dir.path().join("a/bpe.json"), dir.path().join("b.json"));
        let tok = train_bpe(&corpus, 120, &p1).unwrap();
        train_bpe(&corpus, 120, &p2).unwrap();
        let (j1, j2) = (fs::read(&p1).unwrap(), fs::read(&p2).unwrap());
        assert_eq!(j1, j2, "same corpus must give the same tokenizer file");
        for (i, s) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(s), Some(i as u32));
        }
        assert!(tok.get_vocab_size(true) <= 120);
        let loaded = load_bpe(&p1).unwrap();
        for s in [
            "Er hat Besuch zu Hause.",
            "Der Schneemann zerfloss.",
            "AIDS bedeutet „erworbenes Immundefektsyndrom“.",
            "Reserviere bitte den Tanz für mich.",
        ] {
            for t in [&tok, &loaded] {
                let enc = t.encode(s, false).unwrap();
                assert!(
                    !enc.get_ids().contains(&1),
                    "unexpected <unk> in {s:?}: {:?}",
                    enc.get_tokens()
                );
                assert_eq!(t.decode(enc.get_ids(), true).unwrap(), s);
            }
        }
        // case is preserved, unseen characters map to <unk>
        let enc = tok.encode("ER hat Besuch#", false).unwrap();
        assert!(enc.get_tokens().iter().any(|t| t.contains('E')));
        assert!(enc.get_ids().contains(&1));
        assert!(train_bpe(&ParallelCorpus::default(), 100, &dir.path().join("c.json")).is_err());
    }

    #[test]
    fn prepare_errors_name_the_file() {
        // an extracted "package" whose dictionary has no sentence pairs
        let cache = tempfile::tempdir().unwrap();
        let file = cache.path().join(DING_PACKAGE).join(DING_FILE_IN_PACKAGE);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(cache.path().join(DING_PACKAGE).join("VERSION"), "0\n").unwrap();
        fs::write(&file, "# header\nAal {m} :: eel\nkaputte Zeile\n").unwrap();
        let msg = format!("{:#}", prepare_ding_unverified(cache.path()).unwrap_err());
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("no sentence pairs"), "{msg}");
        assert!(msg.contains("1 skipped"), "{msg}");

        // a broken .deb: the dpkg-deb failure and its stderr are reported
        let has_dpkg = Command::new("dpkg-deb")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if has_dpkg {
            let cache = tempfile::tempdir().unwrap();
            let deb = cache.path().join(format!("{DING_PACKAGE}_0_all.deb"));
            fs::write(&deb, b"not a debian package").unwrap();
            let msg = format!("{:#}", prepare_ding_unverified(cache.path()).unwrap_err());
            assert!(msg.contains("dpkg-deb"), "{msg}");
            assert!(msg.contains("stderr:"), "{msg}");
        } else {
            println!("SKIPPED broken-.deb part of prepare_errors_name_the_file: no dpkg-deb");
        }
    }

    /// A .deb that extracts but lacks the dictionary leaves no temporary directory behind, and
    /// one abandoned by a dead process is swept at the next prepare (a live one's is kept).
    #[test]
    fn failed_extractions_leave_no_temporary_directory() {
        let has_dpkg = Command::new("dpkg-deb").arg("--version").output().is_ok_and(|o| o.status.success());
        if !has_dpkg {
            println!("SKIPPED failed_extractions_leave_no_temporary_directory: no dpkg-deb");
            return;
        }
        let cache = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("DEBIAN")).unwrap();
        fs::create_dir_all(root.path().join("usr/share/doc")).unwrap();
        fs::write(root.path().join("usr/share/doc/readme"), "no dictionary here\n").unwrap();
        fs::write(
            root.path().join("DEBIAN/control"),
            format!("Package: {DING_PACKAGE}\nVersion: 0.0-test\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: test\n"),
        )
        .unwrap();
        let deb = cache.path().join(format!("{DING_PACKAGE}_0.0-test_all.deb"));
        let built = Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(root.path()).arg(&deb).output().unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let dead = cache.path().join(format!("{EXTRACT_PREFIX}999999999"));
        let live = cache.path().join(format!("{EXTRACT_PREFIX}1"));
        fs::create_dir_all(dead.join("usr")).unwrap();
        fs::create_dir_all(&live).unwrap();
        let msg = format!("{:#}", prepare_ding_unverified(cache.path()).unwrap_err());
        assert!(msg.contains("does not contain"), "{msg}");
        let left: Vec<String> = fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(EXTRACT_PREFIX))
            .collect();
        assert_eq!(left, vec![format!("{EXTRACT_PREFIX}1")], "pid 1 is alive; the others must be gone");
    }

    /// Needs the real Debian package (installed, or downloadable with apt-get).
    #[test]
    fn prepare_on_real_package() {
        let cache = match std::env::var_os("VARATTN_DING_CACHE") {
            Some(d) => PathBuf::from(d),
            None => std::env::temp_dir().join("varattn-ding-cache"),
        };
        let installed = Path::new("/").join(DING_FILE_IN_PACKAGE).is_file();
        let cached = cache
            .join(DING_PACKAGE)
            .join(DING_FILE_IN_PACKAGE)
            .is_file()
            || (cache.is_dir() && find_deb(&cache).ok().flatten().is_some());
        let apt = Command::new("apt-get")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed && !cached && !apt {
            println!("SKIPPED prepare_on_real_package: no {DING_PACKAGE} package and no apt-get");
            return;
        }
        let corpus = match prepare_ding(&cache) {
            Ok(c) => c,
            Err(e) if !installed && !cached && format!("{e:#}").contains("could not download") => {
                println!("SKIPPED prepare_on_real_package: {e:#}");
                return;
            }
            Err(e) => panic!("{e:#}"),
        };
        let m = DingManifest::embedded().unwrap();
        assert_eq!(corpus.train.len(), m.split.train);
        assert_eq!(corpus.valid.len(), m.split.valid);
        assert_eq!(corpus.test.len(), m.split.test);
        let on_disk = ParallelCorpus::read_dir(&cache.join(DING_NAME)).unwrap();
        assert_eq!(on_disk, corpus);
        // second run (from the extracted cache) gives the same result
        assert_eq!(prepare_ding(&cache).unwrap(), corpus);
    }
}
