//! NMT end to end on the real ding-de-en corpus with the smoke preset: every row trains and
//! evaluates, a finished run is skipped, an interrupted run resumes to the same result as an
//! uninterrupted one, and bad configs fail with messages that name the problem.
use std::path::Path;
use std::process::Command;

const ROWS: [&str; 9] =
    ["soft", "exact", "hard-enum", "hard-sample", "relaxed-dirichlet", "var-enum", "var-sample", "gumbel", "rws"];

mod common;
use common::{run_result as result, train_smoke};

fn train(row: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    train_smoke("nmt", row, out, extra)
}

/// `experiments::train_or_open` (the notebooks' route) trains what `varattn train` trains, opens
/// the finished run the second time, and refuses a run of another seed.
#[test]
fn train_or_open_equals_varattn_train_and_refuses_another_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let by_cli = tmp.path().join("cli");
    let o = train("soft", &by_cli, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = varattn_lab::repo_root().join("configs/nmt/soft.toml");
    let dir = tmp.path().join("lib");
    let device = candle_core::Device::Cpu;
    let run = varattn_lab::experiments::train_or_open(&config, "smoke", 3435, &dir, &common::data_cache(), &device).unwrap();
    // the same numbers; equal to rounding, since the binary and this test process may split sums
    // over different thread counts on a machine where candle and rayon count cores differently
    let (a, b) = (result(&by_cli), &run.result);
    assert_eq!(a["config_hash"], b["config_hash"]);
    assert_eq!(a["epochs"], b["epochs"]);
    let close = |x: &serde_json::Value, y: &serde_json::Value, what: &str| {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() <= 1e-3 * x.abs().max(1.0), "{what}: {x} by varattn train, {y} by train_or_open");
    };
    for key in ["test_ppl", "test_prior_entropy"] {
        close(&a[key], &b[key], key);
    }
    for (ea, eb) in a["history"].as_array().unwrap().iter().zip(b["history"].as_array().unwrap()) {
        close(&ea["valid"], &eb["valid"], "validation score");
    }
    let mtime = std::fs::metadata(dir.join("result.json")).unwrap().modified().unwrap();
    let again = varattn_lab::experiments::train_or_open(&config, "smoke", 3435, &dir, &common::data_cache(), &device).unwrap();
    assert_eq!(again.result["test_ppl"], run.result["test_ppl"]);
    assert_eq!(std::fs::metadata(dir.join("result.json")).unwrap().modified().unwrap(), mtime, "the finished run was trained again");
    let err = varattn_lab::experiments::train_or_open(&config, "smoke", 3436, &dir, &common::data_cache(), &device).unwrap_err().to_string();
    assert!(err.contains("seed 3435") && err.contains("not seed 3436"), "{err}");
}

#[test]
fn every_row_trains_resumes_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    for row in ROWS {
        let out = tmp.path().join(row);
        let o = train(row, &out, &[]);
        assert!(o.status.success(), "{row}: {}", String::from_utf8_lossy(&o.stderr));
        let r = result(&out);
        let ppl = r["test_ppl"].as_f64().unwrap();
        assert!(ppl.is_finite() && ppl > 1.0, "{row}: test PPL {ppl}");
        let latent = !matches!(row, "soft" | "relaxed-dirichlet");
        assert_eq!(r["test_ppl_kmax"].is_number(), latent, "{row}: K-Max PPL only for latent rows");
        if latent {
            let curve = r["ppl_against_k"].as_array().unwrap();
            assert_eq!(curve.len(), 3, "{row}: PPL against K = 1, 2, 3");
            assert!(curve.iter().all(|kp| kp[1].as_f64().unwrap().is_finite()));
        }
        assert!(out.join("translations.txt").exists());
        // a finished run is skipped
        let again = train(row, &out, &[]);
        assert!(String::from_utf8_lossy(&again.stdout).contains("finished already"), "{row} was not skipped");
    }

    // interrupted at step 3 and resumed == uninterrupted
    let a = tmp.path().join("resume-a");
    let b = tmp.path().join("resume-b");
    assert!(train("var-sample", &a, &[]).status.success());
    let stopped = train("var-sample", &b, &["--stop-after-steps", "3"]);
    assert!(stopped.status.success() && !b.join("result.json").exists());
    let resumed = train("var-sample", &b, &[]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let (ra, rb) = (result(&a), result(&b));
    for key in ["test_ppl", "test_prior_entropy", "bleu", "test_ppl_kmax", "history"] {
        let strip = |v: &serde_json::Value| -> serde_json::Value {
            // timing fields differ between runs
            match v {
                serde_json::Value::Array(xs) => serde_json::Value::Array(
                    xs.iter()
                        .map(|x| {
                            let mut x = x.clone();
                            x.as_object_mut().map(|o| o.remove("train_tokens_per_second"));
                            x
                        })
                        .collect(),
                ),
                other => other.clone(),
            }
        };
        assert_eq!(strip(&ra[key]), strip(&rb[key]), "{key} differs after resuming");
    }

    // bad config: unknown key named, nothing written
    let cfg_dir = tmp.path().join("nmt");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let bad = cfg_dir.join("bad.toml");
    std::fs::copy(varattn_lab::repo_root().join("configs/nmt/presets.toml"), cfg_dir.join("presets.toml")).unwrap();
    std::fs::write(&bad, "task = \"nmt\"\nalignment = \"categorical\"\nname = \"bad\"\nobjective = { kind = \"var-enum\" }\n[train]\nlearning_rate = 1.0\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_varattn"))
        .args(["train", "--preset", "smoke", "--config"])
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("bad-out"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("learning_rate") && err.contains("bad.toml"), "{err}");
    assert!(!tmp.path().join("bad-out").exists());
    // unknown objective kind
    std::fs::write(&bad, "task = \"nmt\"\nalignment = \"categorical\"\nname = \"bad\"\nobjective = { kind = \"telepathy\" }\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_varattn")).args(["train", "--preset", "smoke", "--config"]).arg(&bad).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("telepathy"));
}

/// The `paper` preset is the authors' setup where their code differs from our defaults: 2-layer
/// inference BiLSTMs, linear_out to the decoder width, beam search with eos_norm 3; the other
/// presets keep 1 layer and no eos_norm.
#[test]
fn paper_preset_matches_the_authors_code() {
    use varattn_lab::config::load_with_preset;
    use varattn_lab::experiments::nmt::NmtConfig;
    let row = varattn_lab::repo_root().join("configs/nmt/var-enum.toml");
    let (paper, _) = load_with_preset::<NmtConfig>(&row, "paper").unwrap();
    assert_eq!((paper.model.inf_layers, paper.model.out_hidden), (2, paper.model.dec_hidden));
    assert_eq!(paper.eval.beam.eos_norm, 3.0);
    for preset in ["smoke", "cpu"] {
        let (c, _) = load_with_preset::<NmtConfig>(&row, preset).unwrap();
        assert_eq!((c.model.inf_layers, c.eval.beam.eos_norm), (1, 0.0), "{preset}");
    }
}
