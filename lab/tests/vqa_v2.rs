//! VQA-v2 end to end on a tiny fixture laid out as the Hugging Face Hub cache holds the
//! registry's `vqa-v2` entry (train: pminervini/VQAv2, validation: lmms-lab/VQAv2), read with
//! HF_HUB_OFFLINE=1: images made here (JPEG and PNG), grid features from a tiny randomly
//! initialised DINOv2 cached as safetensors shards and reused by a second run, one smoke epoch
//! through `varattn train`, the official VQA accuracy, the annotator-proportional answer draw,
//! and a corrupt image named in the error.
use std::path::{Path, PathBuf};
use std::process::Output;
use varattn_lab::data::hub::parquet::{write_vqa_v2_parquet, VqaV2Example};
use varattn_lab::data::vqa_v2::{normalize_answer, vqa_accuracy, AnswerCounts, AnswerVocab};
use varattn::rng::SeededRng;

mod common;
use common::put_cached;

const COMMIT_TRAIN: &str = "1111111111111111111111111111111111111111";
const COMMIT_VAL: &str = "2222222222222222222222222222222222222222";

/// A 24×20 image: a colored square on grey, encoded as JPEG or PNG.
fn image_bytes(color: [u8; 3], jpeg: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(24, 20, |x, y| if (6..18).contains(&x) && (4..16).contains(&y) { image::Rgb(color) } else { image::Rgb([128, 128, 128]) });
    let mut out = std::io::Cursor::new(Vec::new());
    let fmt = if jpeg { image::ImageFormat::Jpeg } else { image::ImageFormat::Png };
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

fn row(question_id: i64, image_id: i64, question: &str, answers: &[(&str, usize)], image: Vec<u8>) -> VqaV2Example {
    let answers: Vec<String> = answers.iter().flat_map(|(a, n)| std::iter::repeat_n(a.to_string(), *n)).collect();
    assert_eq!(answers.len(), 10);
    VqaV2Example {
        question_id,
        image_id,
        question: question.into(),
        answer_confidences: vec!["yes".into(); 10],
        multiple_choice_answer: Some(answers[0].clone()),
        question_type: Some("what color is the".into()),
        answer_type: Some("other".into()),
        answers,
        image: Some(image),
    }
}

/// 8 training questions over images 1 (JPEG, red) and 2 (PNG, blue); 4 validation questions
/// over images 3 (JPEG, red) and 4 (PNG, green) — or garbage bytes for image 4 when `corrupt`.
fn fixture(corrupt: bool) -> (Vec<VqaV2Example>, Vec<VqaV2Example>) {
    let (red_j, blue_p) = (image_bytes([220, 20, 20], true), image_bytes([20, 20, 220], false));
    let train = vec![
        row(101, 1, "What color is the square?", &[("Red", 8), ("red.", 1), ("orange", 1)], red_j.clone()),
        row(102, 1, "Is there a square?", &[("yes", 10)], red_j.clone()),
        row(103, 1, "How many squares are there?", &[("one", 6), ("1", 3), ("two", 1)], red_j.clone()),
        row(104, 1, "Is it blue?", &[("no", 9), ("yes", 1)], red_j.clone()),
        row(105, 2, "What color is the square?", &[("blue", 7), ("Blue", 2), ("purple", 1)], blue_p.clone()),
        row(106, 2, "Is there a square?", &[("yes", 9), ("no", 1)], blue_p.clone()),
        row(107, 2, "Is it blue?", &[("yes", 10)], blue_p.clone()),
        // no answer among the top 5 (yes, no, 1, blue, red): skipped and counted
        row(108, 2, "What is this made of?", &[("pixels", 5), ("paint", 5)], blue_p),
    ];
    let green = if corrupt { b"\xff\xd8\xff\xe0 this is not a JPEG".to_vec() } else { image_bytes([20, 200, 20], false) };
    let red2 = image_bytes([200, 30, 30], true);
    let val = vec![
        row(201, 3, "What color is the square?", &[("red", 9), ("pink", 1)], red2.clone()),
        row(202, 3, "Is it blue?", &[("no", 10)], red2),
        row(203, 4, "What color is the square?", &[("green", 10)], green.clone()),
        row(204, 4, "Is there a square?", &[("yes", 3), ("no", 7)], green),
    ];
    (train, val)
}

fn parquet(rows: &[VqaV2Example]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.parquet");
    write_vqa_v2_parquet(&p, rows, true).unwrap();
    std::fs::read(p).unwrap()
}

/// A temp HF_HOME with the fixture in its hub cache, and a config folder `configs/vqa/` with
/// the repository's presets and a VQA-v2 row using the tiny random backbone.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(corrupt: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hub = dir.path().join("hf-home").join("hub");
        let (train, val) = fixture(corrupt);
        put_cached(&hub, "pminervini/VQAv2", "main", COMMIT_TRAIN, "data/train-00000-of-00001.parquet", &parquet(&train));
        put_cached(&hub, "lmms-lab/VQAv2", "main", COMMIT_VAL, "data/validation-00000-of-00001.parquet", &parquet(&val));
        let configs = dir.path().join("configs").join("vqa");
        std::fs::create_dir_all(&configs).unwrap();
        std::fs::copy(varattn_lab::repo_root().join("configs/vqa/presets.toml"), configs.join("presets.toml")).unwrap();
        std::fs::write(
            configs.join("v2-tiny.toml"),
            r#"task = "vqa"
alignment = "categorical"
name = "v2-tiny"
objective = { kind = "exact" }
[data]
dataset = "vqa-v2"
valid_fraction = 0.5
[data.vqa_v2]
answers = 5
shard_size = 2
feature_batch = 2
backbone = { kind = "dinov2", depth = 1, embed_dim = 16, heads = 2, image_size = 56, init_seed = 3 }
"#,
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `varattn train --config configs/vqa/v2-tiny.toml --preset smoke` offline.
    fn train(&self, out: &str) -> Output {
        self.train_with(out, "v2-tiny", &[])
    }

    /// `varattn train --config configs/vqa/<row>.toml --preset smoke <extra>` offline.
    fn train_with(&self, out: &str, row: &str, extra: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_varattn"));
        c.args(["train", "--preset", "smoke", "--quiet", "--config"]).arg(self.path(&format!("configs/vqa/{row}.toml")));
        c.args(extra);
        c.arg("--out").arg(self.path(out)).arg("--cache").arg(self.path("data"));
        for v in ["HF_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"] {
            c.env_remove(v);
        }
        c.env("HF_HOME", self.path("hf-home")).env("HF_HUB_OFFLINE", "1");
        c.output().unwrap()
    }

    fn json(&self, p: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(p)).unwrap()).unwrap()
    }

    /// The one backbone folder under the feature cache.
    fn feature_dir(&self) -> PathBuf {
        let root = self.path("data/vqa-v2/features");
        let dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    }
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn vqa_v2_features_are_cached_and_a_smoke_epoch_trains() {
    let f = Fixture::new(false);
    let o = f.train("run-a");
    assert_ok(&o);

    // the cache: manifest, index, two shards of two images; features [2, (56/14)², 16]
    let dir = f.feature_dir();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["regions"].as_u64(), manifest["dim"].as_u64()), (Some(16), Some(16)));
    assert_eq!(manifest["backbone"]["kind"], "dinov2");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["shards"].as_array().unwrap().len(), 2);
    assert_eq!(index["images"].as_object().unwrap().len(), 4);
    let shard = candle_core::safetensors::load(dir.join("shard-00000.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(shard["features"].dims(), &[2, 16, 16]);
    assert_eq!(shard["image_ids"].to_vec1::<i64>().unwrap(), vec![1, 2]);
    let feats = shard["features"].to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(feats.iter().all(|x| x.is_finite()));

    // the run: 7 training questions (1 skipped), a result with finite NLL, accuracies in [0, 1]
    let extra = f.json("run-a/vqa-v2.json");
    assert_eq!((extra["train_questions"].as_u64(), extra["skipped_train"].as_u64()), (Some(7), Some(1)));
    assert_eq!((extra["features_computed"].as_u64(), extra["features_reused"].as_u64()), (Some(4), Some(0)));
    assert_eq!(extra["answers"], serde_json::json!(["yes", "no", "1", "blue", "red"]));
    let r = f.json("run-a/result.json");
    for cond in ["test", "test_noisy"] {
        let m = &r[cond];
        let nll = m["nll"].as_f64().unwrap();
        let acc = m["vqa_accuracy"].as_f64().unwrap();
        assert!(nll.is_finite() && nll > 0.0, "{cond}: {m}");
        assert!((0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&m["accuracy"].as_f64().unwrap()), "{cond}: {m}");
        assert_eq!(m["questions"], 2, "{cond}: one of the two validation images is the test set");
    }
    assert_eq!(r["epochs"], 1);

    // a second run reuses every shard (files untouched) and trains to the same result
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = stamp(&dir.join("shard-00001.safetensors"));
    assert_ok(&f.train("run-b"));
    let extra = f.json("run-b/vqa-v2.json");
    assert_eq!((extra["features_computed"].as_u64(), extra["features_reused"].as_u64()), (Some(0), Some(4)));
    assert_eq!(stamp(&dir.join("shard-00001.safetensors")), before);
    assert_eq!(f.json("run-b/result.json")["test"], r["test"]);
}

#[test]
fn a_corrupt_image_is_named_and_leaves_whole_shards_only() {
    let f = Fixture::new(true);
    let o = f.train("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("image 4") && err.contains("question 203") && err.contains("decoded"), "{err}");
    // images 1, 2 (shard 0) and 3 (shard 1 with the corrupt 4) were attempted: shard 0 is
    // complete and indexed, nothing half-written is left
    let dir = f.feature_dir();
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert!(!dir.join("shard-00001.safetensors").exists());
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["images"].as_object().unwrap().len(), 2);
}

#[test]
fn vqa_accuracy_rule_by_hand() {
    // m of 10 annotators agree: (m·min((m−1)/3, 1) + (10−m)·min(m/3, 1)) / 10
    // m=1: (0 + 9/3)/10 = 0.3; m=2: (2/3 + 16/3)/10 = 0.6; m=3: (2 + 7)/10 = 0.9; m=4: 1
    let ten = |m: usize| -> Vec<String> { (0..10).map(|i| if i < m { "A dog.".to_string() } else { format!("cat {i}") }).collect() };
    for (m, want) in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (10, 1.0)] {
        let got = vqa_accuracy(&normalize_answer("dog"), &ten(m));
        assert!((got - want).abs() < 1e-12, "{m} matches: {got} vs {want}");
    }
}

#[test]
fn training_answers_follow_the_annotator_proportions() {
    let raw: Vec<String> = [("yes", 5), ("no", 3), ("maybe", 2)].iter().flat_map(|(a, n)| std::iter::repeat_n(a.to_string(), *n)).collect();
    // "unknown" is not in the vocabulary: the proportions are over yes/no/maybe only
    let mut with_oov = raw.clone();
    with_oov.push("unknown".into());
    let vocab = AnswerVocab::top_n([raw.as_slice()], 3);
    let counts = AnswerCounts::new(&vocab, &with_oov).unwrap();
    let n = 40_000;
    let mut rng = SeededRng::new(11);
    let mut hits = vec![0usize; vocab.len()];
    for _ in 0..n {
        hits[counts.sample(&mut rng)] += 1;
    }
    for (answer, p) in [("yes", 0.5), ("no", 0.3), ("maybe", 0.2)] {
        let got = hits[vocab.id(answer).unwrap()] as f64 / n as f64;
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!((got - p).abs() < 4.0 * se, "{answer}: {got} vs {p} (4 s.e. = {})", 4.0 * se);
    }
}

#[test]
fn pretrained_backbone_weights_resolve_from_the_model_cache_offline() {
    use varattn_lab::data::hub::{Hub, HubSettings};
    let dir = tempfile::tempdir().unwrap();
    let settings = HubSettings { endpoint: "http://127.0.0.1:9".into(), token: None, cache_dir: dir.path().to_path_buf(), offline: true };
    let hub = Hub::new(settings, false).unwrap();
    let err = format!("{:#}", hub.fetch_model("lmz/candle-dino-v2", "main", "dinov2_vits14.safetensors").unwrap_err());
    assert!(err.contains("dinov2_vits14.safetensors") && err.contains("models--lmz--candle-dino-v2"), "{err}");
    // huggingface_hub's model layout: models--owner--name/{refs/main, snapshots/<commit>/<file>}
    let folder = dir.path().join("models--lmz--candle-dino-v2");
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), COMMIT_TRAIN).unwrap();
    let file = folder.join("snapshots").join(COMMIT_TRAIN).join("dinov2_vits14.safetensors");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"weights").unwrap();
    assert_eq!(hub.fetch_model("lmz/candle-dino-v2", "main", "dinov2_vits14.safetensors").unwrap(), file);
}

#[test]
fn a_split_keeps_one_copy_of_an_image_shared_by_questions() {
    let (train, _) = fixture(false);
    let mut split = varattn_lab::experiments::vqa_v2::V2Split::default();
    for r in train {
        split.push(r);
    }
    assert_eq!(split.rows.len(), 8);
    assert!(split.rows.iter().all(|r| r.image.is_none()));
    let mut ids: Vec<i64> = split.images.keys().copied().collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn an_interrupted_vqa_v2_run_resumes_to_the_same_result() {
    // batches of 2: 4 steps per epoch, 2 epochs; the sampled answers are redrawn per epoch
    let f = Fixture::new(false);
    let tiny = std::fs::read_to_string(f.path("configs/vqa/v2-tiny.toml")).unwrap();
    let row = tiny.replace("name = \"v2-tiny\"", "name = \"v2-resume\"") + "[train]\nbatch = 2\nepochs = 2\n";
    std::fs::write(f.path("configs/vqa/v2-resume.toml"), row).unwrap();
    assert_ok(&f.train_with("a", "v2-resume", &[]));
    assert_ok(&f.train_with("b", "v2-resume", &["--stop-after-steps", "5"]));
    assert!(!f.path("b/result.json").exists());
    assert_ok(&f.train_with("b", "v2-resume", &[]));
    let (a, b) = (f.json("a/result.json"), f.json("b/result.json"));
    assert_eq!(a["train_steps"], 8);
    assert_eq!(a["test"], b["test"]);
    // every epoch's training objective and validation score (not the timings)
    let curve = |r: &serde_json::Value| -> Vec<(f64, f64)> {
        r["history"].as_array().unwrap().iter().map(|e| (e["train_objective_per_token"].as_f64().unwrap(), e["valid"].as_f64().unwrap())).collect()
    };
    assert_eq!(curve(&a), curve(&b));
}

#[test]
fn the_vqa_v2_row_loads_with_every_preset() {
    let row = varattn_lab::repo_root().join("configs/vqa/v2-soft.toml");
    for preset in ["smoke", "cpu", "paper"] {
        let (cfg, _): (varattn_lab::experiments::vqa::VqaConfig, toml::Value) = varattn_lab::config::load_with_preset(&row, preset).unwrap();
        assert_eq!(cfg.data.dataset, "vqa-v2");
        let v2 = cfg.data.vqa_v2.unwrap();
        v2.backbone.validate().unwrap();
        assert_eq!((v2.backbone.regions(), v2.backbone.embed_dim), (64, 384), "{preset}");
        assert_eq!(v2.backbone.weights.as_ref().unwrap().file, "dinov2_vits14.safetensors");
    }
    // the row's ViT-S/14 geometry with random weights (the pretrained file is not fetched
    // here): a 224² JPEG gives an 8×8 grid of 384-vectors
    let (cfg, _): (varattn_lab::experiments::vqa::VqaConfig, toml::Value) = varattn_lab::config::load_with_preset(&row, "smoke").unwrap();
    let bb = varattn_lab::models::backbone::BackboneConfig { weights: None, ..cfg.data.vqa_v2.unwrap().backbone };
    let vit = varattn_lab::models::backbone::Backbone::new(&bb, None, &candle_core::Device::Cpu).unwrap();
    let jpeg = image_bytes([10, 200, 90], true);
    let f = vit.features_of_encoded(&[&jpeg]).unwrap();
    assert_eq!(f.dims(), &[1, 64, 384]);
}
