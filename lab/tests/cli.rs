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
    for name in ["soft", "exact", "hard-enum", "hard-sample", "relaxed-dirichlet", "var-enum", "var-sample", "gumbel", "rws", "vimco", "kmax"] {
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
        .current_dir(varattn_lab::repo_root())
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
    let out = varattn()
        .args(["bench", "--presets", "smoke", "--rows", "soft,kmax-2", "--steps", "2", "--warmup", "1", "--rounds", "2", "--config-dir"])
        .arg(varattn_lab::repo_root().join("configs/nmt"))
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
    varattn_lab::repo_root()
}

/// `dir/<task>/<base>.toml`: the shipped row `configs/<task>/<base>.toml` with the TOML `extra`
/// merged over it, beside a copy of the task's presets file.
fn row_config(dir: &Path, task: &str, base: &str, extra: &str) -> PathBuf {
    let d = dir.join(task);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(root().join("configs").join(task).join("presets.toml"), d.join("presets.toml")).unwrap();
    let mut row: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("configs").join(task).join(format!("{base}.toml"))).unwrap()).unwrap();
    varattn_lab::config::merge(&mut row, toml::from_str(extra).unwrap());
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

/// A run of another config (a preset or row file changed since) is refused, or with `--stale-to`
/// moved aside under its config hash while the run starts over.
#[test]
fn a_run_of_another_config_is_refused_or_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let config = shipped("nmt", "soft");
    let run = tmp.path().join("runs/nmt/soft/seed-3435");
    let stopped = train(&config, &run, &["--stop-after-steps", "2"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("last.json")).unwrap()).unwrap();
    let old_hash = old["config_hash"].as_str().unwrap().to_string();
    let changed = ["--set", "train.lr=0.002", "--stop-after-steps", "2"];
    let refused = train(&config, &run, &changed);
    assert_refused(&refused, &["another config", &old_hash, "--fresh"]);
    let stale = tmp.path().join("stale");
    let moved = train(&config, &run, &[&changed[..], &["--stale-to", stale.to_str().unwrap()]].concat());
    assert!(moved.status.success(), "{}", stderr(&moved));
    let aside = stale.join(format!("nmt/soft/seed-3435-{old_hash}"));
    assert!(String::from_utf8_lossy(&moved.stdout).contains(&aside.display().to_string()));
    let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(aside.join("last.json")).unwrap()).unwrap();
    assert_eq!(kept["config_hash"], old_hash.as_str());
    let new: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("last.json")).unwrap()).unwrap();
    assert_ne!(new["config_hash"], old_hash.as_str());
    // the same config again resumes in place: nothing more is moved
    let again = train(&config, &run, &[&changed[..], &["--stale-to", stale.to_str().unwrap()]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(std::fs::read_dir(stale.join("nmt/soft")).unwrap().count(), 1);
}

/// Row 4: the data files (prepared splits, the BPE) are part of a run's identity, and a BPE file
/// whose vocabulary is not the configured size is refused.
#[test]
fn a_changed_vocabulary_is_refused() {
    use varattn_lab::data::ding::{train_bpe, ParallelCorpus};
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
    assert_eq!(recorded, varattn_lab::provenance::sha256_file(&bpe).unwrap());
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
        for k in ["train_seconds", "train_tokens_per_second", "git_revision", "git_dirty_paths"] {
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
        assert_eq!(l["valid"], h["valid"]);
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

// ---------------------------------------------------------------------------
// Using a finished run (issue 25): translate, align and eval read a run directory of `train`;
// `train --set` overrides config values; presets, devices and tokenizers are checked by clap.

/// `varattn <args> --run <run> --cache <shared cache>` with `input` on stdin.
fn with_run(args: &[&str], run: &Path, extra: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut c = varattn();
    c.args(args).arg("--run").arg(run).arg("--cache").arg(common::data_cache()).args(extra);
    let mut child = c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A smoke run of `configs/<task>/<row>.toml` in `dir/<row>`, trained.
fn smoke_run(dir: &Path, task: &str, row: &str) -> PathBuf {
    let run = dir.join(row);
    let o = common::train_smoke(task, row, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    run
}

/// The metric `name` of an `eval --json` file: (value, recorded).
fn eval_metric(json: &Path, name: &str) -> (Option<f64>, Option<f64>) {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let m = v["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no metric {name} in {v}"));
    (m["value"].as_f64(), m["recorded"].as_f64())
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * a.abs().max(b.abs()), "{what}: {a} vs {b}");
}

/// Every row of a probability matrix sums to 1; the matrix is `rows` × `cols`.
fn assert_distributions(m: &serde_json::Value, rows: usize, cols: usize) {
    let m = m.as_array().unwrap_or_else(|| panic!("not a matrix: {m}"));
    assert_eq!(m.len(), rows);
    for row in m {
        let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(row.len(), cols);
        assert!(row.iter().all(|p| (0.0..=1.0 + 1e-6).contains(p)), "{row:?}");
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row:?} sums to {}", row.iter().sum::<f64>());
    }
}

/// `varattn align` of a pair with `--png png` and `--json` beside it: its stdout and the JSON's
/// `alignments`.
fn align(run: &Path, src: &str, tgt: &str, png: &Path) -> (String, serde_json::Value) {
    let json = png.with_extension("json");
    let a = with_run(&["align", "--src", src, "--tgt", tgt], run, &["--png", png.to_str().unwrap(), "--json", json.to_str().unwrap()], "");
    assert!(a.status.success(), "{}", stderr(&a));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (stdout(&a), v["alignments"].clone())
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000, "{} is not a PNG", path.display());
    image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `translate` writes one line per input line, the same on every call and from a file as from
/// stdin; `eval --split test` gives the run's result.json numbers and `--split valid` its best
/// validation perplexity; `align` shows the prior (no posterior for soft attention) as text,
/// PNG and JSON; a missing, unfinished or non-NMT run and K-Max on a soft row are refused.
#[test]
fn translate_eval_and_align_use_a_finished_soft_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = smoke_run(tmp.path(), "nmt", "soft");
    assert!(run.join("config.toml").is_file());
    let input = "Das ist ein Haus.\n\nEr hat Besuch.\nIch treffe Hanna nächsten Monat.\n";
    let first = with_run(&["translate"], &run, &[], input);
    assert!(first.status.success(), "{}", stderr(&first));
    let lines: Vec<String> = stdout(&first).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[1], "", "an empty line translates to an empty line");
    assert!(lines.iter().any(|l| !l.is_empty()), "{lines:?}");
    let again = with_run(&["translate"], &run, &[], input);
    assert_eq!(stdout(&again), stdout(&first));
    let file = tmp.path().join("input.de");
    std::fs::write(&file, input).unwrap();
    let from_file = with_run(&["translate"], &run, &["--input", file.to_str().unwrap()], "");
    assert_eq!(stdout(&from_file), stdout(&first), "{}", stderr(&from_file));
    let greedy = with_run(&["translate"], &run, &["--beam", "1", "--max-len-ratio", "0.5"], input);
    assert!(greedy.status.success() && stdout(&greedy).lines().count() == 4, "{}", stderr(&greedy));
    assert_refused(&with_run(&["translate"], &run, &["--kmax", "2"], input), &["--kmax 2", "`soft` row"]);
    assert_refused(&with_run(&["translate"], &run, &["--beam", "0"], input), &["--beam = 0", "at least 1"]);

    // eval: the test numbers are result.json's, the validation perplexity the best epoch's
    let r = common::run_result(&run);
    let json = tmp.path().join("eval-test.json");
    let e = with_run(&["eval", "--split", "test", "--quiet", "--json", json.to_str().unwrap()], &run, &[], "");
    assert!(e.status.success(), "{}", stderr(&e));
    let (ppl, recorded) = eval_metric(&json, "ppl");
    assert_close(ppl.unwrap(), r["test_ppl"].as_f64().unwrap(), "test PPL");
    assert_eq!(recorded, r["test_ppl"].as_f64());
    assert_close(eval_metric(&json, "bleu").0.unwrap(), r["bleu"].as_f64().unwrap(), "BLEU");
    assert_close(eval_metric(&json, "chrf").0.unwrap(), r["chrf"].as_f64().unwrap(), "chrF");
    assert!(stdout(&e).contains(" same") && !stdout(&e).contains("differs"), "{}", stdout(&e));
    let json = tmp.path().join("eval-valid.json");
    let e = with_run(&["eval", "--split", "valid", "--quiet", "--json", json.to_str().unwrap()], &run, &[], "");
    assert!(e.status.success(), "{}", stderr(&e));
    let best = r["best_epoch"].as_u64().unwrap() as usize;
    assert_close(eval_metric(&json, "ppl").0.unwrap(), r["history"][best - 1]["valid"].as_f64().unwrap(), "valid PPL");

    // align: the prior only
    let png = tmp.path().join("figs/soft.png");
    let (text, al) = align(&run, "Das ist ein Haus.", "This is a house.", &png);
    assert!(text.contains("prior p(z_t | x, y<t):") && text.contains("no posterior q(z_t | x, y)"), "{text}");
    let (s, t) = (al["source_tokens"].as_array().unwrap().len(), al["target_tokens"].as_array().unwrap().len());
    assert!(s >= 4 && t >= 5 && al["target_tokens"][t - 1] == "</s>", "{al}");
    assert_distributions(&al["prior"], t, s);
    assert!(al["posterior"].is_null() && al["true_posterior"].is_null(), "{al}");
    assert_png(&png);
    assert!(tmp.path().join("figs/soft.svg").is_file());

    // runs that cannot be read
    let missing = tmp.path().join("no-such-run");
    assert_refused(&with_run(&["translate"], &missing, &[], input), &[&missing.display().to_string(), "no such run directory"]);
    let part = tmp.path().join("part");
    assert!(common::train_smoke("nmt", "soft", &part, &["--stop-after-steps", "2"]).status.success());
    assert_refused(&with_run(&["eval"], &part, &[], ""), &[&part.display().to_string(), "not a finished run", "result.json"]);
    // a run without config.toml (an older varattn's) is matched to its row config by hash
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::remove_file(run.join("config.toml")).unwrap();
    let configs = root().join("configs");
    let old = with_run(&["translate"], &run, &["--configs", configs.to_str().unwrap()], input);
    assert_eq!(stdout(&old), stdout(&first), "{}", stderr(&old));
    let elsewhere = tmp.path().join("no-configs");
    assert_refused(&with_run(&["translate"], &run, &["--configs", elsewhere.to_str().unwrap()], input), &["no config.toml", "no soft.toml"]);
    // a config.toml that is not the run's config
    std::fs::write(run.join("config.toml"), text.replace("epochs = 1", "epochs = 3")).unwrap();
    assert_refused(&with_run(&["translate"], &run, &[], input), &["config.toml", "hashes to", "result.json"]);
}

/// A var-enum run: `align` gives the prior, the inference network's posterior and the exact
/// posterior, each row a distribution; `eval` reproduces the latent row's numbers (K-Max
/// included); `translate --kmax` decodes.
#[test]
fn align_shows_the_posteriors_of_a_var_enum_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = smoke_run(tmp.path(), "nmt", "var-enum");
    let png = tmp.path().join("var-enum.png");
    let (text, al) = align(&run, "Er hat Besuch.", "He has visitors.", &png);
    for title in ["prior p(z_t | x, y<t):", "posterior q(z_t | x, y):", "true posterior p(z_t | x, y<=t):"] {
        assert!(text.contains(title), "{title} missing:\n{text}");
    }
    let (s, t) = (al["source_tokens"].as_array().unwrap().len(), al["target_tokens"].as_array().unwrap().len());
    for m in ["prior", "posterior", "true_posterior"] {
        assert_distributions(&al[m], t, s);
    }
    assert_ne!(al["prior"], al["posterior"]);
    assert_png(&png);
    let json = tmp.path().join("eval.json");
    let e = with_run(&["eval", "--quiet", "--json", json.to_str().unwrap()], &run, &[], "");
    assert!(e.status.success(), "{}", stderr(&e));
    let r = common::run_result(&run);
    for (metric, key) in [("ppl", "test_ppl"), ("ppl_kmax", "test_ppl_kmax"), ("bleu_kmax", "bleu_kmax"), ("posterior_entropy", "test_posterior_entropy")] {
        assert_close(eval_metric(&json, metric).0.unwrap(), r[key].as_f64().unwrap(), metric);
    }
    let k = with_run(&["translate"], &run, &["--kmax", "2"], "Er hat Besuch.\n");
    assert!(k.status.success() && stdout(&k).lines().count() == 1, "{}", stderr(&k));
}

/// `eval` of an easy-VQA run gives its result.json numbers, clean and noisy; `translate` refuses
/// a run that is not NMT.
#[test]
fn eval_recomputes_a_vqa_run_and_translate_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = smoke_run(tmp.path(), "vqa", "soft");
    let json = tmp.path().join("eval.json");
    let e = with_run(&["eval", "--quiet", "--json", json.to_str().unwrap()], &run, &[], "");
    assert!(e.status.success(), "{}", stderr(&e));
    let r = common::run_result(&run);
    for (metric, key) in [("nll", "nll"), ("accuracy", "accuracy"), ("ece", "ece")] {
        assert_close(eval_metric(&json, metric).0.unwrap(), r["test"][key].as_f64().unwrap(), metric);
        assert_close(eval_metric(&json, &format!("noisy_{metric}")).0.unwrap(), r["test_noisy"][key].as_f64().unwrap(), metric);
    }
    assert_refused(&with_run(&["translate"], &run, &[], "Hallo.\n"), &[&run.display().to_string(), "a VQA run, not a translation (NMT) run"]);
}

/// `--set key=value` changes the merged config as the same edit of the row file would (same
/// hash), trains with it and records it in config.toml; an unknown key, a value of the wrong type
/// and a value out of range are refused naming the key, before anything is created.
#[test]
fn train_set_overrides_the_merged_config() {
    use varattn_lab::config::{config_hash, load_with_preset};
    use varattn_lab::experiments::nmt::NmtConfig;
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = common::train_smoke("nmt", "soft", &run, &["--set", "train.epochs=2", "--set", "model.dropout=0.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = common::run_result(&run);
    assert_eq!((r["epochs"].as_u64(), r["history"].as_array().unwrap().len()), (Some(2), 2));
    let edited = row_config(tmp.path(), "nmt", "soft", "[train]\nepochs = 2\n[model]\ndropout = 0.2");
    let (_, merged): (NmtConfig, toml::Value) = load_with_preset(&edited, "smoke").unwrap();
    assert_eq!(r["config_hash"].as_str(), Some(config_hash(&merged).as_str()));
    let (_, plain): (NmtConfig, toml::Value) = load_with_preset(&shipped("nmt", "soft"), "smoke").unwrap();
    assert_ne!(r["config_hash"].as_str(), Some(config_hash(&plain).as_str()));
    let recorded: toml::Value = toml::from_str(&std::fs::read_to_string(run.join("config.toml")).unwrap()).unwrap();
    assert_eq!(recorded, merged);
    let cases: [(&str, &[&str]); 3] = [
        ("train.epoch=2", &["--set train.epoch", "unknown field `epoch`"]),
        ("train.epochs=two", &["--set train.epochs", "`train.epochs` is an integer", "a string"]),
        ("model.dropout=1.5", &["model.dropout = 1.5", "[0, 1)", "--set model.dropout"]),
    ];
    for (i, (set, needles)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("bad-{i}"));
        assert_refused(&train(&shipped("nmt", "soft"), &out, &["--set", set]), needles);
        assert!(!out.exists(), "{set} created {}", out.display());
    }
    let o = train(&shipped("nmt", "soft"), &tmp.path().join("bad"), &["--set", "train.epochs"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("key=value"), "{}", stderr(&o));
}

/// `--preset`, `--device`, `bleu --tokenize` and `eval --split` take only the values they
/// list; a preset that a task's presets file lacks is an error naming the file.
#[test]
fn clap_refuses_unknown_presets_devices_and_tokenizers() {
    let tmp = tempfile::tempdir().unwrap();
    let o = varattn().args(["train", "--preset", "huge", "--config"]).arg(shipped("nmt", "soft")).env("VARATTN_RESULTS", tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for needle in ["huge", "smoke", "cpu", "full", "reference", "paper"] {
        assert!(stderr(&o).contains(needle), "{needle} missing:\n{}", stderr(&o));
    }
    let o = varattn().args(["report", "--preset", "tiny"]).env("VARATTN_RESULTS", tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = varattn().args(["train", "--preset", "reference", "--quiet", "--config"]).arg(shipped("vqa", "soft")).env("VARATTN_RESULTS", tmp.path()).output().unwrap();
    assert_refused(&o, &["configs/vqa/presets.toml", "no preset `reference`", "smoke"]);
    let o = varattn().args(["train", "--device", "gpu", "--config"]).arg(shipped("nmt", "soft")).env("VARATTN_RESULTS", tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cpu, cuda or cuda:N"), "{}", stderr(&o));
    let o = varattn().args(["bench", "--presets", "smoke,tiny", "--out"]).arg(tmp.path().join("bench")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tiny") && stderr(&o).contains("smoke"), "{}", stderr(&o));
    let (hyp, reference) = (tmp.path().join("hyp"), tmp.path().join("ref"));
    std::fs::write(&hyp, "a b c d\n").unwrap();
    std::fs::write(&reference, "a b c d\n").unwrap();
    let o = varattn().args(["bleu", "--tokenize", "intl"]).arg(&hyp).arg(&reference).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("13a") && stderr(&o).contains("none"), "{}", stderr(&o));
    let o = varattn().args(["bleu", "--tokenize", "none"]).arg(&hyp).arg(&reference).output().unwrap();
    assert!(o.status.success() && stdout(&o).starts_with("BLEU = 100.00"), "{}", stderr(&o));
    let o = varattn().args(["eval", "--split", "train", "--run"]).arg(tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("valid") && stderr(&o).contains("test"), "{}", stderr(&o));
}

/// The entries of the Arguments and Options sections of a `--help` text that have no help of
/// their own (nothing, or only `[default: …]`).
fn undocumented(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut section = false;
    let mut bad = vec![];
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') {
            section = line.starts_with("Arguments:") || line.starts_with("Options:");
            continue;
        }
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if !section || indent > 6 || !(text.starts_with('-') || text.starts_with('<') || text.starts_with('[')) {
            continue;
        }
        let entry = text.split("  ").next().unwrap_or(text);
        let rest = text[entry.len()..].trim();
        let help = if rest.is_empty() { lines.get(i + 1).map(|l| l.trim()).unwrap_or("") } else { rest };
        if help.is_empty() || help.starts_with('[') {
            bad.push(entry.to_string());
        }
    }
    bad
}

/// Every flag and argument of every subcommand says what it is.
#[test]
fn every_flag_of_every_subcommand_has_help() {
    let top = varattn().arg("--help").output().unwrap();
    let text = stdout(&top);
    let commands: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    for c in ["train", "translate", "align", "eval", "report", "tables", "bleu", "bench"] {
        assert!(commands.iter().any(|k| k == c), "{c} missing from:\n{text}");
    }
    let mut all: Vec<Vec<String>> = commands.iter().map(|c| vec![c.clone()]).collect();
    all.push(vec!["data".into(), "prepare".into()]);
    for cmd in all {
        let o = varattn().args(&cmd).arg("--help").output().unwrap();
        assert!(o.status.success(), "{cmd:?}");
        let bad = undocumented(&stdout(&o));
        assert!(bad.is_empty(), "varattn {}: no help for {bad:?}", cmd.join(" "));
    }
    // the check finds an entry without help
    assert_eq!(undocumented("Options:\n      --seed <SEED>  [default: 3435]\n  -h, --help  Print help\n"), vec!["--seed <SEED>"]);
}
