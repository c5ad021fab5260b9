//! VQA end to end on the real easy-VQA wheel with the smoke preset: a row trains and reports
//! clean and noisy metrics with attention pictures, and an interrupted run resumes to the same
//! result.
use std::path::Path;

mod common;
use common::{run_result as result, train_smoke};

fn train(row: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    train_smoke("vqa", row, out, extra)
}

#[test]
fn vqa_rows_train_report_noisy_metrics_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exact");
    let o = train("exact", &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = result(&out);
    for cond in ["test", "test_noisy"] {
        let acc = r[cond]["accuracy"].as_f64().unwrap();
        let nll = r[cond]["nll"].as_f64().unwrap();
        let ece = r[cond]["ece"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc) && nll > 0.0 && nll.is_finite() && (0.0..=1.0).contains(&ece), "{cond}: {r}");
        assert_eq!(r[cond]["questions"], 32);
    }
    assert_ne!(r["test"]["nll"], r["test_noisy"]["nll"], "noise on the region features changed nothing");
    assert!(out.join("attention-0.png").exists() && out.join("attention-1.svg").exists());

    // the low-data row trains on 10% of the images
    let low = tmp.path().join("low");
    assert!(train("soft-lowdata", &low, &[]).status.success());
    assert_eq!(result(&low)["train_image_fraction"], 0.1);

    // resume: stopped after 1 step, resumed == uninterrupted
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    assert!(train("var-sample", &a, &[]).status.success());
    assert!(train("var-sample", &b, &["--stop-after-steps", "1"]).status.success());
    assert!(!b.join("result.json").exists());
    assert!(train("var-sample", &b, &[]).status.success());
    let (ra, rb) = (result(&a), result(&b));
    assert_eq!(ra["test"], rb["test"]);
    assert_eq!(ra["test_noisy"], rb["test_noisy"]);
}

/// A row file written next to a copy of the VQA presets, trained with the smoke preset; it
/// declares the Weibull alignment when `body` sets Bayesian attention weights, else the categorical.
fn train_custom(dir: &Path, name: &str, body: &str) -> (std::process::Output, std::path::PathBuf) {
    let root = varattn_lab::repo_root();
    std::fs::copy(root.join("configs/vqa/presets.toml"), dir.join("presets.toml")).unwrap();
    let row = dir.join(format!("{name}.toml"));
    let alignment = if body.contains("bayes = ") { "weibull" } else { "categorical" };
    std::fs::write(&row, format!("task = \"vqa\"\nalignment = \"{alignment}\"\nname = \"{name}\"\n{body}")).unwrap();
    let out = dir.join(format!("run-{name}"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_varattn"))
        .args(["train", "--preset", "smoke", "--quiet", "--config"])
        .arg(&row)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(common::data_cache())
        .output()
        .unwrap();
    (o, out)
}

#[test]
fn vqa_attention_rows_train_with_pavpu_and_step_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let mut params = std::collections::HashMap::new();
    for row in ["multihead", "aa-ct", "aa-gan", "aa-ot", "bam", "bam-contextual", "multihead-2hop", "babn"] {
        let out = tmp.path().join(row);
        let o = train(row, &out, &[]);
        assert!(o.status.success(), "{row}: {}", String::from_utf8_lossy(&o.stderr));
        let r = result(&out);
        for cond in ["test", "test_noisy"] {
            let p = r[cond]["pavpu"].as_f64().unwrap_or(-1.0);
            let u = r[cond]["uncertain_fraction"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&u), "{row} {cond}: {r}");
            assert!(r[cond]["nll"].as_f64().unwrap().is_finite());
        }
        assert_eq!(r["train_steps"], 2, "{row}");
        assert!(r["train_seconds"].as_f64().unwrap() > 0.0);
        params.insert(row, r["parameters"].as_u64().unwrap());
    }
    // the regularisers and priors bring their own networks; BAM with a constant prior none
    assert!(params["aa-ct"] > params["multihead"] && params["aa-gan"] > params["multihead"]);
    assert_eq!(params["aa-ot"], params["multihead"]);
    assert_eq!(params["bam"], params["multihead"]);
    assert!(params["bam-contextual"] > params["bam"] && params["babn"] > params["multihead-2hop"]);
}

#[test]
fn one_head_layered_attention_matches_the_plain_soft_row() {
    // one head, one hop, an OT regulariser with weight 0 (no extra parameters, no extra draws)
    // runs the layered-attention code path; it must train and evaluate like the plain soft row
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vqa");
    std::fs::create_dir(&dir).unwrap();
    let (o, layered) = train_custom(
        &dir,
        "layered",
        "objective = { kind = \"soft\" }\n[model.attention]\nheads = 1\nregularizer = { kind = \"ot\", weight = 0.0 }\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plain = tmp.path().join("soft");
    assert!(train("soft", &plain, &[]).status.success());
    let (a, b) = (result(&layered), result(&plain));
    for cond in ["test", "test_noisy"] {
        for key in ["nll", "accuracy", "ece", "prior_entropy"] {
            let (x, y) = (a[cond][key].as_f64().unwrap(), b[cond][key].as_f64().unwrap());
            assert!((x - y).abs() < 1e-5, "{cond}.{key}: layered {x} vs plain {y}");
        }
    }
}

#[test]
fn vqa_attention_config_errors_name_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vqa");
    std::fs::create_dir(&dir).unwrap();
    let cases = [
        ("babn1", "objective = { kind = \"soft\" }\n[model.attention]\nbayes = { kind = \"babn\", shape = 10.0, prior = { kind = \"constant\", alpha = 1.0, beta = 1.0 }, kl_weight = 1.0 }\n", "hops"),
        ("heads3", "objective = { kind = \"soft\" }\n[model.attention]\nheads = 3\n", "attn_hidden"),
        ("exact4", "objective = { kind = \"exact\" }\n[model.attention]\nheads = 4\n", "soft"),
        ("typo", "objective = { kind = \"soft\" }\n[model.attention]\nregularizer = { kind = \"ct\", weight = 0.01, rhoo = 0.5 }\n", "rhoo"),
    ];
    for (name, body, needle) in cases {
        let (o, out) = train_custom(&dir, name, body);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{name}: {err}");
        assert!(!out.join("result.json").exists());
    }
}
