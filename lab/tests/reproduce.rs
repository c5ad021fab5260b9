//! `./reproduce.sh --preset smoke` end to end, killed midway and rerun: the rerun finishes
//! every table without redoing the runs that had finished. Then `--device`: checked before
//! anything runs, and with a binary built without the `cuda` feature every run fails naming why.
use std::path::Path;
mod common;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn reproduce(results: &Path) -> Command {
    let root = varattn_lab::repo_root();
    let mut c = Command::new(root.join("reproduce.sh"));
    c.args(["--preset", "smoke", "--quiet"])
        .env("VARATTN_BIN", env!("CARGO_BIN_EXE_varattn"))
        .env("VARATTN_RESULTS", results)
        .env("VARATTN_CACHE", common::data_cache())
        .current_dir(root);
    c
}

#[test]
fn smoke_preset_survives_a_kill_and_skips_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path();
    let first = results.join("smoke/runs/nmt/soft/seed-3435/result.json");
    // start, wait for the first NMT run to finish, then kill the whole process group
    let mut child = reproduce(results).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().unwrap();
    let t0 = Instant::now();
    while !first.exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "first run never finished");
        assert!(child.try_wait().unwrap().is_none(), "reproduce.sh exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pgid = child.id() as i32;
    Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status().unwrap();
    let _ = child.wait();
    assert!(!results.join("smoke/table1-nmt.md").exists(), "killed before the tables");
    let finished_at = std::fs::metadata(&first).unwrap().modified().unwrap();

    let out = reproduce(results).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // one job: the binary's own line; a pool of jobs (the default on two or more cores): the pool's
    assert!(
        stdout.contains("soft: finished already") || stdout.contains("(nmt soft, seed 3435: finished already)"),
        "the finished run was redone:\n{stdout}"
    );
    let log = results.join("smoke/logs/nmt-soft-seed-3435.log");
    if log.exists() {
        // the rerun appends to the run's log: its first training output is still there
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains("soft: test PPL") && log.contains("soft: finished already"), "log of the soft run:\n{log}");
    }
    assert_eq!(std::fs::metadata(&first).unwrap().modified().unwrap(), finished_at);
    // the closing summary: every table's claims, then the total time
    let summary = stdout.split("== the papers' claims in this run (preset `smoke`)").nth(1).unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    for part in ["claims-vqa.md", "claims-g2p.md", "claims-vqa-aa-bam.md", "claims-nmt.md"] {
        assert!(summary.contains(&format!("{part}: ")), "{part} missing from the summary:\n{summary}");
    }
    // every claim gets one of the verdicts, and the last line counts them
    let total = summary.lines().find(|l| l.starts_with("all tables: ")).unwrap_or_else(|| panic!("no total:\n{summary}"));
    assert!(total.contains(" hold, ") && total.contains(" contradicted, ") && total.contains(" inconclusive, "), "{total}");
    assert!(summary.contains("== done in "), "{summary}");
    // the WMT17 line needs the Hub corpus: the paper preset only, said out loud elsewhere
    assert!(stdout.contains("WMT17 English->German: skipped under preset smoke"), "{stdout}");
    assert!(!results.join("smoke/runs/wmt17").exists() && !results.join("smoke/table-wmt17.md").exists());
    for table in [
        "table1-nmt.md", "table1-nmt.csv", "table2-kmax.md", "table3-nmt.md", "claims-nmt.md", "demo/table.md", "nmt-valid-ppl.png",
        "nmt-ppl-vs-k.png", "table1-vqa.md", "table1-vqa.csv", "claims-vqa.md", "table-g2p.md", "table-g2p.csv", "claims-g2p.md", "vqa-aa-bam.md", "vqa-aa-bam.csv",
        "claims-vqa-aa-bam.md",
    ] {
        assert!(results.join("smoke").join(table).exists(), "missing {table}");
    }
    let t1 = std::fs::read_to_string(results.join("smoke/table1-nmt.csv")).unwrap();
    assert_eq!(t1.lines().count(), 10, "header + nine rows:\n{t1}");
    let v1 = std::fs::read_to_string(results.join("smoke/table1-vqa.csv")).unwrap();
    assert_eq!(v1.lines().count(), 13, "header + twelve rows:\n{v1}");
    let g = std::fs::read_to_string(results.join("smoke/table-g2p.csv")).unwrap();
    assert_eq!(g.lines().count(), 5, "header + four estimators:\n{g}");
    let v2 = std::fs::read_to_string(results.join("smoke/vqa-aa-bam.csv")).unwrap();
    assert_eq!(v2.lines().count(), 10, "header + soft + eight attention rows:\n{v2}");

    // --device (after the runs above, which share the data cache): a bad value stops the script
    // before it builds or runs anything; `cuda` with this CPU-only binary fails each G2P run with
    // the binary's reason, writes no result, and the script exits 1 naming the failed runs.
    let bad = reproduce(results).args(["--device", "tpu"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--device takes cpu, cuda or cuda:N, got 'tpu'"));
    let gpu = tmp.path().join("gpu");
    let out = reproduce(&gpu).args(["--only", "g2p", "--device", "cuda"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("built without the `cuda` feature") && stderr.contains("8 run(s) failed"), "{stderr}");
    assert!(!gpu.join("smoke/runs/g2p/reinforce/seed-3435/result.json").exists());
}

/// `--seeds 3`: every table cell is a mean ± std over the seeds and every claim is decided by a
/// paired t interval over the three seeds (NMT only, to keep it short).
#[test]
fn three_seeds_give_mean_and_std_and_paired_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let out = reproduce(tmp.path()).args(["--seeds", "3", "--only", "nmt"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let t1 = std::fs::read_to_string(tmp.path().join("smoke/table1-nmt.md")).unwrap();
    for row in t1.lines().filter(|l| l.starts_with("| soft ") || l.starts_with("| var-enum ")) {
        assert!(row.contains(" ± ") && row.contains("3435 3436 3437"), "{row}");
    }
    let claims = std::fs::read_to_string(tmp.path().join("smoke/claims-nmt.md")).unwrap();
    let rows: Vec<&str> = claims.lines().filter(|l| l.starts_with("| ") && l.contains("PPL(")).collect();
    assert_eq!(rows.len(), 9, "{claims}");
    for r in rows {
        assert!(r.contains("paired t over 3 seeds"), "{r}");
        assert!(["| holds |", "| contradicted |", "| inconclusive"].iter().any(|v| r.contains(v)), "{r}");
    }
    assert!(stdout.contains("all tables: "), "{stdout}");
}
