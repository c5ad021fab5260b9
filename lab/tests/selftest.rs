//! `varattn selftest --device cpu`: the device check of issue 9 run CPU against CPU, which still
//! exercises every case end to end (and must agree exactly), and its failure modes.
mod common;
use std::process::Command;

fn varattn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_varattn"))
}

#[test]
fn selftest_on_the_cpu_compares_every_case_and_passes() {
    let out_dir = tempfile::tempdir().unwrap();
    let cache = common::data_cache();
    let out = varattn()
        .args(["selftest", "--device", "cpu", "--steps", "1", "--configs"])
        .arg(varattn_lab::repo_root().join("configs"))
        .arg("--cache")
        .arg(&cache)
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("selftest passed on Cpu"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("selftest.json")).unwrap()).unwrap();
    assert_eq!(summary["mismatches"], 0);
    // every distribution, the ops and all eleven objectives, values and gradients, f32 and f64
    assert!(summary["quantities"].as_u64().unwrap() > 300, "{summary}");
    assert_eq!(summary["worst_f32"], 0.0, "the CPU must agree with itself exactly");
    assert_eq!(summary["worst_f64"], 0.0);
    let md = std::fs::read_to_string(out_dir.path().join("selftest.md")).unwrap();
    for case in ["special ops", "implicit gamma", "Dirichlet", "Weibull", "gold_log_softmax", "objective vimco", "objective kmax", "objective relaxed-dirichlet"] {
        assert!(md.contains(&format!("| {case} | F64 |")), "missing {case}");
    }
    // the training check ran for every row whose data is in the cache, and was skipped by name otherwise
    let trained = summary["training"].as_array().unwrap();
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(trained.len() + skipped.len(), 4, "{summary}");
    for t in trained {
        assert_eq!(t["ok"], true);
        assert_eq!(t["objective_cpu"], t["objective_device"]);
    }
    if varattn_lab::selftest::data_present("nmt", &cache) && varattn_lab::selftest::data_present("vqa", &cache) {
        assert_eq!(trained.len(), 4, "data present, yet rows were skipped: {summary}");
    }
}

#[test]
fn selftest_rejects_an_unknown_device() {
    let out = varattn().args(["selftest", "--device", "tpu:0", "--steps", "0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tpu:0") && err.contains("cuda:N"), "{err}");
    #[cfg(not(feature = "cuda"))]
    {
        let out = varattn().args(["selftest", "--device", "cuda", "--steps", "0"]).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("without the `cuda` feature"));
    }
}
