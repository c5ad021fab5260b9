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
