//! The command line end to end: the demo writes its tables, BLEU prints sacrebleu's line, and
//! bad input fails with a message that names the problem.
use std::process::Command;

fn varattn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_varattn"))
}

#[test]
fn demo_trains_every_objective_and_writes_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = varattn().args(["demo", "--steps", "5", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(dir.path().join("table.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 12, "header + 11 objectives:\n{csv}");
    for name in ["soft", "exact", "hard-enum", "hard-sample", "var-relaxed", "var-enum", "var-sample", "gumbel", "rws", "vimco", "kmax"] {
        assert!(rows.iter().any(|r| r.starts_with(&format!("{name},"))), "missing {name}");
    }
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["seed"], 3435);
    // the same (config, seed) gives the same table, timing columns aside
    let again = tempfile::tempdir().unwrap();
    let out2 = varattn().args(["demo", "--steps", "5", "--out"]).arg(again.path()).output().unwrap();
    assert!(out2.status.success());
    let strip = |s: String| -> Vec<String> { s.lines().map(|l| l.split(',').take(4).collect::<Vec<_>>().join(",")).collect() };
    assert_eq!(strip(csv), strip(std::fs::read_to_string(again.path().join("table.csv")).unwrap()));
}

#[test]
fn bleu_prints_the_sacrebleu_line() {
    let dir = tempfile::tempdir().unwrap();
    let hyp = dir.path().join("hyp.txt");
    let reference = dir.path().join("ref.txt");
    std::fs::write(&hyp, "the cat sat on the mat\n").unwrap();
    std::fs::write(&reference, "the cat sat on the mat\n").unwrap();
    let out = varattn().arg("bleu").arg(&hyp).arg(&reference).output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)"), "{line}");
    // a line-count mismatch is an error naming the file
    std::fs::write(&reference, "one\ntwo\n").unwrap();
    let bad = varattn().arg("bleu").arg(&hyp).arg(&reference).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("hyp.txt"));
}

#[test]
fn unknown_data_set_lists_the_known_ones() {
    let out = varattn().args(["data", "prepare", "no-such-corpus"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-corpus") && err.contains("ding-de-en"), "{err}");
}

#[test]
fn report_removes_tables_that_no_run_backs() {
    let results = tempfile::tempdir().unwrap();
    let dir = results.path().join("cpu");
    std::fs::create_dir_all(dir.join("runs")).unwrap();
    let stale = ["vqa-aa-bam.md", "vqa-aa-bam.csv", "claims-vqa-aa-bam.md", "table1-nmt.md", "table-g2p.csv", "claims-vqa.md"];
    for f in stale {
        std::fs::write(dir.join(f), "old numbers\n").unwrap();
    }
    std::fs::write(dir.join("notes.md"), "not a table\n").unwrap();
    let out = varattn()
        .args(["report", "--preset", "cpu", "--results"])
        .arg(results.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in stale {
        assert!(!dir.join(f).exists(), "{f} survived a report without runs");
    }
    assert!(dir.join("notes.md").exists(), "a file that is not a table was removed");
}

#[test]
fn bench_measures_the_smoke_sizes_and_names_a_device_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = varattn()
        .args(["bench", "--presets", "smoke", "--rows", "soft,kmax-2", "--steps", "2", "--warmup", "1", "--rounds", "2", "--config-dir"])
        .arg(format!("{root}/configs/nmt"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap()).unwrap();
    assert_eq!(v["device"], "cpu");
    let rows = v["varattn"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "two rows in each of two rounds");
    for r in rows {
        assert!(r["tokens_per_second"].as_f64().unwrap() > 0.0 && r["steps"] == 2, "{r}");
    }
    let summary = v["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    assert!(summary.iter().all(|s| s["rounds"] == 2 && s["ratio"].is_null()), "{summary:?}");
    assert!(v["output_layer"][0]["matmul_gflops"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(dir.path().join("bench.md")).unwrap().contains("| smoke | kmax-2 |"));
    let zero = varattn().args(["bench", "--presets", "smoke", "--rounds", "0", "--out"]).arg(dir.path().join("zero")).output().unwrap();
    assert!(!zero.status.success() && String::from_utf8_lossy(&zero.stderr).contains("--rounds"));
    // a device this build cannot open: a clear error, nothing written
    let none = dir.path().join("none");
    let bad = varattn().args(["bench", "--presets", "smoke", "--device", "cuda", "--out"]).arg(&none).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("device `cuda`"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!none.exists());
}

// ---------------------------------------------------------------------------
// Reliability (issue 23): no run can be mixed, mislabelled or silently wrong. Each test names the
// rows of the table it covers.

mod common;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `dir/<task>/<base>.toml`: the shipped row `configs/<task>/<base>.toml` with the TOML `extra`
/// merged over it, beside a copy of the task's presets file.
fn row_config(dir: &Path, task: &str, base: &str, extra: &str) -> PathBuf {
    let d = dir.join(task);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(root().join("configs").join(task).join("presets.toml"), d.join("presets.toml")).unwrap();
    let mut row: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("configs").join(task).join(format!("{base}.toml"))).unwrap()).unwrap();
    varattn::config::merge(&mut row, toml::from_str(extra).unwrap());
    let path = d.join(format!("{base}.toml"));
    std::fs::write(&path, toml::to_string(&row).unwrap()).unwrap();
    path
}

/// `varattn train --preset smoke --quiet --cache <shared cache> --config <config> --out <out> <extra>`.
fn train_cmd(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = loud_train_cmd(config, out, extra);
    c.arg("--quiet");
    c
}

/// [`train_cmd`] without `--quiet`: the epoch lines are printed.
fn loud_train_cmd(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = varattn();
    c.args(["train", "--preset", "smoke", "--config"]).arg(config).arg("--out").arg(out).arg("--cache").arg(common::data_cache()).args(extra);
    c
}

fn train(config: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    train_cmd(config, out, extra).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failure with exit status 1 (an error, not a panic's 101) whose message holds every `needle`.
fn assert_refused(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected an error exit:\n{err}\n{}", stdout(o));
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from:\n{err}");
    }
}

fn shipped(task: &str, row: &str) -> PathBuf {
    root().join("configs").join(task).join(format!("{row}.toml"))
}

/// Rows 1, 2, 3, 15: a second process on a run directory refuses at once naming the directory
/// and the holder; the seed is part of a run's identity (checkpoint and finished run);
/// `VARATTN_RESULTS` places the default run directory; checkpoints have the results' file mode.
#[test]
fn a_run_directory_has_one_owner_and_one_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let config = shipped("nmt", "soft");
    let mut first = varattn();
    first
        .args(["train", "--preset", "smoke", "--quiet", "--config"])
        .arg(&config)
        .arg("--cache")
        .arg(common::data_cache())
        .env("VARATTN_RESULTS", &results);
    let mut child = first.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let dir = results.join("smoke/runs/nmt/soft/seed-3435");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(dir.join(".lock")).unwrap_or_default().trim() != child.id().to_string() {
        assert!(t0.elapsed().as_secs() < 120, "the first run never took its lock");
        assert!(child.try_wait().unwrap().is_none(), "the first run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = format!("pid {}", child.id());
    let other_seed = train(&config, &dir, &["--seed", "7"]);
    assert_refused(&other_seed, &[&dir.display().to_string(), &pid, "in use"]);
    let same_seed = train(&config, &dir, &[]);
    assert_refused(&same_seed, &[&dir.display().to_string(), &pid]);
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    let r = common::run_result(&dir);
    assert_eq!(r["seed"], 3435);
    assert_eq!(r["identity"]["seed"], 3435);
    let files = r["identity"]["data_files"].as_object().unwrap();
    assert!(files.contains_key("ding-de-en/bpe-300.json") && files.contains_key("ding-de-en/train.de"), "{files:?}");
    assert_eq!(r["identity"]["build_features"].as_array().unwrap().iter().any(|f| f == "avx512"), cfg!(feature = "avx512"));
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("last.safetensors"), mode("result.json"));
    assert_eq!(mode("best.safetensors"), mode("result.json"));
    // the finished run is another seed's
    let finished = train(&config, &dir, &["--seed", "7"]);
    assert_refused(&finished, &["result.json", "seed 3435 there, 7 now", "--fresh"]);
    // ... and so is a checkpoint
    let part = tmp.path().join("part");
    let stopped = train(&config, &part, &["--stop-after-steps", "2"]);
    assert!(stopped.status.success() && !part.join("result.json").exists(), "{}", stderr(&stopped));
    let resumed = train(&config, &part, &["--seed", "7"]);
    assert_refused(&resumed, &["last.safetensors", "seed 3435 there, 7 now", "--fresh"]);
    let fresh = train(&config, &part, &["--seed", "7", "--fresh", "--stop-after-steps", "2"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
}

/// Row 4: the data files (prepared splits, the BPE) are part of a run's identity, and a BPE file
/// whose vocabulary is not the configured size is refused.
#[test]
fn a_changed_vocabulary_is_refused() {
    use varattn::data::ding::{train_bpe, ParallelCorpus};
    let tmp = tempfile::tempdir().unwrap();
    // a private cache (the BPE files are changed below); the package from the shared one
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    for e in std::fs::read_dir(common::data_cache()).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".deb") {
            std::fs::copy(e.path(), cache.join(e.file_name())).unwrap();
        }
    }
    let config = shipped("nmt", "soft");
    let run = |out: &Path| varattn().args(["train", "--preset", "smoke", "--quiet", "--config"]).arg(&config).arg("--out").arg(out).arg("--cache").arg(&cache).output().unwrap();
    let out = tmp.path().join("run");
    let o = run(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    let bpe = cache.join("ding-de-en/bpe-300.json");
    let recorded = common::run_result(&out)["identity"]["data_files"]["ding-de-en/bpe-300.json"].as_str().unwrap().to_string();
    assert_eq!(recorded, varattn::data::hub::sha256_file(&bpe).unwrap());
    // another 300-entry vocabulary (learnt on lower-cased text) in its place
    let mut corpus = ParallelCorpus::read_dir(&cache.join("ding-de-en")).unwrap();
    for p in corpus.train.iter_mut() {
        p.src = p.src.to_lowercase();
        p.tgt = p.tgt.to_lowercase();
    }
    train_bpe(&corpus, 300, &bpe).unwrap();
    let o = run(&out);
    assert_refused(&o, &["result.json", "data file ding-de-en/bpe-300.json", "--fresh"]);
    // a vocabulary of another size under the name bpe-300.json
    train_bpe(&corpus, 200, &bpe).unwrap();
    let o = run(&tmp.path().join("fresh"));
    assert_refused(&o, &["bpe-300.json", "200 entries", "bpe_vocab = 300"]);
    assert!(!tmp.path().join("fresh/result.json").exists());
}

/// Rows 5, 6, 7, 13: every config value out of range is refused when the config is loaded, with
/// the key and the allowed range, exit status 1 and nothing created.
#[test]
fn config_values_out_of_range_are_refused_when_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, &[&str]); 16] = [
        ("nmt", "soft", "[train]\nbatch = 0", &["train.batch = 0", "at least 1"]),
        ("nmt", "soft", "[train]\ncheckpoint_every = 0", &["train.checkpoint_every = 0", "at least 1"]),
        ("nmt", "soft", "[eval.beam]\nbeam = 0", &["eval.beam.beam = 0", "at least 1"]),
        ("nmt", "soft", "[train]\nlr = -1e-3", &["train.lr = -0.001", "> 0"]),
        ("nmt", "soft", "[train]\nlr = 0.0", &["train.lr = 0", "> 0"]),
        ("nmt", "soft", "[train]\nlr_decay = -5.0", &["train.lr_decay = -5", "(0, 1]"]),
        ("nmt", "soft", "[train]\nepochs = 0", &["train.epochs = 0", "at least 1"]),
        ("nmt", "soft", "[train]\nmax_grad_norm = -1.0", &["train.max_grad_norm = -1", "> 0"]),
        ("nmt", "exact", "[eval]\nkmax = 0", &["eval.kmax = 0", "at least 1"]),
        ("nmt", "soft", "[data]\nbpe_vocab = 3", &["data.bpe_vocab = 3", "at least 5"]),
        ("nmt", "soft", "[model]\ndropout = 1.5", &["model.dropout = 1.5", "[0, 1)"]),
        ("nmt", "var-sample", "objective = { kind = \"var-sample\", samples = 0 }", &["objective.samples = 0", "at least 1"]),
        ("nmt", "soft", "name = \"../../../escape\"", &["name = \"../../../escape\"", "plain name"]),
        ("vqa", "soft", "[train]\nbatch = 0", &["train.batch = 0", "at least 1"]),
        ("vqa", "soft", "[data]\nvalid_fraction = 1.0", &["data.valid_fraction = 1", "(0, 1)"]),
        ("g2p", "nvil", "[train]\nlr = -1.0", &["train.lr = -1", "> 0"]),
    ];
    for (i, (task, base, extra, needles)) in cases.iter().enumerate() {
        let config = row_config(&tmp.path().join(format!("case-{i}")), task, base, extra);
        let results = tmp.path().join(format!("results-{i}"));
        let o = varattn()
            .args(["train", "--preset", "smoke", "--quiet", "--config"])
            .arg(&config)
            .env("VARATTN_RESULTS", &results)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let mut needles = needles.to_vec();
        let file = config.display().to_string();
        needles.push(&file);
        assert_refused(&o, &needles);
        assert!(!results.exists(), "case {i} ({extra}) created {}", results.display());
    }
    assert!(!tmp.path().join("escape").exists() && !tmp.path().join("results").exists());
}

/// Row 5: `bleu --multi-bleu` with a reference of another length and `bench --steps 0` are
/// errors, not panics.
#[test]
fn bleu_and_bench_refuse_bad_input_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (hyp, reference) = (dir.path().join("hyp.txt"), dir.path().join("ref.txt"));
    std::fs::write(&hyp, "a b c\nd e f\n").unwrap();
    std::fs::write(&reference, "a b c\n").unwrap();
    let o = varattn().args(["bleu", "--multi-bleu"]).arg(&hyp).arg(&reference).output().unwrap();
    assert_refused(&o, &["hyp.txt"]);
    for flag in ["--steps", "--src-len", "--tgt-len", "--batch"] {
        let out = dir.path().join("bench");
        let o = varattn().args(["bench", "--presets", "smoke", "--rows", "soft", flag, "0", "--out"]).arg(&out).output().unwrap();
        assert_refused(&o, &[flag, "at least 1"]);
        assert!(!out.exists());
    }
}

/// Row 8: a run whose validation score is non-finite or past the bound stops with a message and
/// writes no result.
#[test]
fn a_diverging_run_stops_without_a_result() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, &[&str]); 3] = [
        ("nmt", "soft", "[train]\nlr = 10.0", &["soft: training diverged", "validation score after epoch 1", "vocabulary"]),
        ("vqa", "soft", "[train]\nlr = 1e3", &["soft: training diverged", "validation score after epoch 1", "13 answers"]),
        ("g2p", "nvil", "[train]\nlr = 10.0", &["nvil: training diverged", "mean training objective of epoch 1", "uniform guess"]),
    ];
    for (task, base, extra, needles) in cases {
        let config = row_config(tmp.path(), task, base, extra);
        let out = tmp.path().join(format!("{task}-run"));
        let o = train(&config, &out, &[]);
        let mut needles = needles.to_vec();
        needles.push("lower train.lr");
        assert_refused(&o, &needles);
        assert!(!out.join("result.json").exists());
    }
}

/// Row 9: `--stop-after-steps N` stops at the first checkpoint at or after step N and says
/// where; N = 0 is an error; N past the end lets the run finish.
#[test]
fn stop_after_steps_stops_at_the_next_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // 6 steps an epoch, 2 epochs, a checkpoint every 4 steps and at each epoch's end (6, 12)
    let config = row_config(tmp.path(), "nmt", "soft", "[train]\nepochs = 2\ncheckpoint_every = 4");
    let out = tmp.path().join("run");
    let step = || -> u64 {
        let st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("last.json")).unwrap()).unwrap();
        st["step"].as_u64().unwrap()
    };
    let zero = train(&config, &out, &["--stop-after-steps", "0"]);
    assert_refused(&zero, &["--stop-after-steps 0", "at least 1"]);
    let o = train(&config, &out, &["--stop-after-steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("stopped at step 4, the first checkpoint at or after step 3"), "{}", stdout(&o));
    assert_eq!(step(), 4);
    let o = train(&config, &out, &["--stop-after-steps", "5"]);
    assert!(stdout(&o).contains("stopped at step 6"), "{}", stdout(&o));
    assert_eq!(step(), 6);
    assert!(!out.join("result.json").exists());
    let o = train(&config, &out, &["--stop-after-steps", "100"]);
    assert!(o.status.success() && out.join("result.json").exists(), "{}", stderr(&o));
    assert_eq!(step(), 12);
}

/// Row 10: a run stopped at every step and resumed each time ends with the uninterrupted run's
/// result, history included, to the last bit (every number of result.json but timings).
#[test]
fn resuming_at_every_step_gives_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    // 3 steps an epoch, 2 epochs, a checkpoint after every step
    let config = row_config(
        tmp.path(),
        "nmt",
        "var-sample",
        "[data]\ntrain_limit = 48\nvalid_limit = 8\ntest_limit = 4\n[train]\nepochs = 2\ncheckpoint_every = 1\n[eval]\nbleu_sentences = 2\nkmax_curve = [1]",
    );
    let whole = tmp.path().join("whole");
    assert!(train(&config, &whole, &[]).status.success());
    let parts = tmp.path().join("parts");
    for n in 1..=6 {
        let o = train(&config, &parts, &["--stop-after-steps", &n.to_string()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(&format!("stopped at step {n},")), "{}", stdout(&o));
    }
    let o = train(&config, &parts, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let strip = |mut v: serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        for k in ["train_seconds", "train_tokens_per_second", "git_revision"] {
            o.remove(k);
        }
        for h in o["history"].as_array_mut().unwrap() {
            h.as_object_mut().unwrap().remove("train_tokens_per_second");
        }
        v
    };
    let (a, b) = (strip(common::run_result(&whole)), strip(common::run_result(&parts)));
    assert_eq!(a["history"].as_array().unwrap().len(), 2);
    assert_eq!(a, b);
    // the training log too: one line per epoch, none repeated by the resumptions
    let log = |dir: &Path| -> Vec<serde_json::Value> {
        train_log(dir)
            .into_iter()
            .map(|mut l| {
                for k in ["seconds", "valid_seconds"] {
                    l.as_object_mut().unwrap().remove(k);
                }
                l
            })
            .collect()
    };
    assert_eq!(log(&whole).len(), 2);
    assert_eq!(log(&whole), log(&parts));
}

/// The lines of `<run>/train_log.jsonl`, each parsed.
fn train_log(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("train_log.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

/// The epoch line names the validation metric; `train_log.jsonl` has a line per epoch agreeing
/// with the result's history; the result names the best epoch, whether the run stopped early and
/// the changed paths outside results/.
#[test]
fn the_epoch_line_names_its_metric_and_the_training_log_follows_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let config = row_config(tmp.path(), "nmt", "soft", "[train]\nepochs = 2");
    let out = tmp.path().join("run");
    let o = loud_train_cmd(&config, &out, &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("soft epoch 1: valid PPL ") && stderr(&o).contains("soft epoch 2: valid PPL "), "{}", stderr(&o));
    let r = common::run_result(&out);
    let history = r["history"].as_array().unwrap();
    let log = train_log(&out);
    assert_eq!(log.len(), 2);
    for (i, (l, h)) in log.iter().zip(history).enumerate() {
        assert_eq!(l["epoch"], i + 1);
        assert_eq!(l["valid_metric"], "PPL");
        assert_eq!(l["valid"], h["valid_ppl"]);
        assert_eq!((&l["lr"], &l["improved"]), (&h["lr"], &h["improved"]));
        assert!(l["seconds"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(r["stopped_early"], false);
    let best = r["best_epoch"].as_u64().unwrap() as usize;
    assert!(history[best - 1]["improved"].as_bool().unwrap());
    assert!(r["git_revision"].as_str().is_none_or(|g| !g.contains("dirty")));
    assert!(r["git_dirty_paths"].as_array().unwrap().iter().all(|p| !p.as_str().unwrap().starts_with("results/")));
}

/// Row 12: I/O errors name their path; a corrupt checkpoint points to `--fresh`.
#[test]
fn io_errors_name_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let config = shipped("nmt", "soft");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let o = train(&config, &file.join("run"), &[]);
    assert_refused(&o, &[&file.join("run").display().to_string(), "Not a directory"]);
    // a read-only run directory (root writes anyway: then there is nothing to check)
    let ro = tmp.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), "").is_err() {
        let o = train(&config, &ro, &[]);
        assert_refused(&o, &[&ro.join(".lock").display().to_string(), "Permission denied"]);
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    // a cut-off checkpoint
    let out = tmp.path().join("run");
    assert!(train(&config, &out, &["--stop-after-steps", "2"]).status.success());
    let st = out.join("last.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let o = train(&config, &out, &[]);
    assert_refused(&o, &[&st.display().to_string(), "--fresh"]);
}

/// Row 14: `report` skips a result.json it cannot read with a warning naming it, writes the
/// tables of the others and exits non-zero at the end.
#[test]
fn report_skips_an_unreadable_result_and_writes_the_other_tables() {
    let results = tempfile::tempdir().unwrap();
    let runs = results.path().join("smoke/runs/nmt/soft");
    let good = runs.join("seed-3435");
    let o = train(&shipped("nmt", "soft"), &good, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bad = runs.join("seed-3436").join("result.json");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    let text = std::fs::read_to_string(good.join("result.json")).unwrap();
    std::fs::write(&bad, &text[..text.len() / 2]).unwrap();
    let o = varattn().args(["report", "--preset", "smoke", "--results"]).arg(results.path()).current_dir(root()).output().unwrap();
    assert_refused(&o, &["warning: skipping", &bad.display().to_string(), "1 result file(s) could not be read"]);
    let t1 = std::fs::read_to_string(results.path().join("smoke/table1-nmt.csv")).unwrap();
    assert!(t1.lines().any(|l| l.starts_with("soft,") || l.contains("soft")), "{t1}");
}
