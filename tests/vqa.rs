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
