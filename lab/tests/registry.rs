//! The table registry (configs/tables.toml) from the command line: a row added with one row file
//! and one line of the registry is trained and reaches its table; `varattn tables` lists the runs
//! of a preset; a broken registry stops `tables` and `report` naming the file and the field.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn varattn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_varattn"))
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status.code());
    out
}

/// A copy of the shipped configs/ (row files, presets, paper numbers, tables.toml) in `dir`.
fn copy_configs(dir: &Path) -> PathBuf {
    let from = varattn_lab::repo_root().join("configs");
    let to = dir.join("configs");
    for entry in walk(&from) {
        let target = to.join(entry.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    to
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `varattn tables <args> --configs <configs>`: its lines.
fn tables(configs: &Path, args: &[&str]) -> Vec<String> {
    let o = varattn().arg("tables").args(args).arg("--configs").arg(configs).output().unwrap();
    ok(&o).lines().map(str::to_string).collect()
}

/// A new NMT row: configs/nmt/soft-copy.toml (soft.toml under another name) and one line in the
/// NMT table of tables.toml. `varattn tables` lists it, `varattn train` puts its run under
/// runs/nmt/soft-copy/ (the task its file declares), and `varattn report --configs` shows it in
/// Table 1; the report of the shipped registry, which does not list it, writes no NMT table.
#[test]
fn a_row_added_through_the_registry_alone_reaches_its_table() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = copy_configs(tmp.path());
    let soft = std::fs::read_to_string(configs.join("nmt/soft.toml")).unwrap();
    assert!(soft.contains("name = \"soft\""), "{soft}");
    std::fs::write(configs.join("nmt/soft-copy.toml"), soft.replace("name = \"soft\"", "name = \"soft-copy\"")).unwrap();
    let registry = std::fs::read_to_string(configs.join("tables.toml")).unwrap();
    let registry = registry.replacen("  \"rws\",\n]", "  \"rws\",\n  \"soft-copy\",\n]", 1);
    assert!(registry.contains("soft-copy"), "the NMT table's rows end with rws");
    std::fs::write(configs.join("tables.toml"), registry).unwrap();

    let runs = tables(&configs, &["--preset", "smoke", "--only", "nmt"]);
    assert_eq!(runs.len(), 10, "{runs:?}");
    assert_eq!(runs.last().map(String::as_str), Some("nmt soft-copy 3435"));

    let results = tmp.path().join("results");
    let o = varattn()
        .args(["train", "--preset", "smoke", "--quiet", "--config"])
        .arg(configs.join("nmt/soft-copy.toml"))
        .arg("--results")
        .arg(&results)
        .arg("--cache")
        .arg(common::data_cache())
        .output()
        .unwrap();
    ok(&o);
    assert!(results.join("smoke/runs/nmt/soft-copy/seed-3435/result.json").is_file());

    // run from elsewhere: --configs is where the report finds the registry, paper numbers and presets
    let o = varattn()
        .args(["report", "--preset", "smoke", "--results"])
        .arg(&results)
        .arg("--configs")
        .arg(&configs)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    ok(&o);
    let t1 = std::fs::read_to_string(results.join("smoke/table1-nmt.md")).unwrap();
    let line = t1.lines().find(|l| l.starts_with("| soft-copy |")).unwrap_or_else(|| panic!("no soft-copy row:\n{t1}"));
    assert!(line.ends_with("| 3435 |") && line.contains(" | – | "), "{line}");
    assert!(std::fs::read_to_string(results.join("smoke/table3-nmt.md")).unwrap().contains("| soft-copy | – | – |"));

    let o = varattn()
        .args(["report", "--preset", "smoke", "--results"])
        .arg(&results)
        .current_dir(varattn_lab::repo_root())
        .output()
        .unwrap();
    assert!(ok(&o).contains("no finished NMT runs"));
    assert!(!results.join("smoke/table1-nmt.md").exists(), "the shipped registry does not list soft-copy");
}

/// `varattn tables`: the preset's seeds per row, a run shared by two tables once, `--only`,
/// `--seeds` as a floor, `--with-group`, and errors for an unknown group and `--seeds 0`.
#[test]
fn tables_lists_each_run_of_a_preset_once_in_table_order() {
    let configs = varattn_lab::repo_root().join("configs");
    assert_eq!(tables(&configs, &["--preset", "reference"]), ["nmt soft 3435", "nmt exact 3435", "nmt var-enum 3435"]);
    let cpu = tables(&configs, &["--preset", "cpu"]);
    assert_eq!(cpu[..4], ["nmt soft 3435", "nmt soft 3436", "nmt soft 3437", "nmt exact 3435"]);
    assert_eq!(cpu.iter().filter(|l| l.starts_with("vqa soft ")).count(), 3, "{cpu:?}");
    assert_eq!(cpu.iter().filter(|l| l.starts_with("nmt gumbel ")).count(), 1, "{cpu:?}");
    assert!(!cpu.iter().any(|l| l.starts_with("wmt17 ")), "{cpu:?}");
    let mut unique = cpu.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), cpu.len(), "a run printed twice: {cpu:?}");
    assert_eq!(cpu.len(), (5 * 3 + 4) + (4 * 3 + 8) + 8 + 8);
    // full: every row of every table with 3 seeds, the cpu runs among them
    let full = tables(&configs, &["--preset", "full"]);
    assert_eq!(full.len(), 3 * (9 + 12 + 8 + 8), "{full:?}");
    assert!(cpu.iter().all(|run| full.contains(run)), "a cpu run that full does not train");
    assert_eq!(full.iter().filter(|l| l.starts_with("nmt gumbel ")).count(), 3, "{full:?}");
    let bayes = tables(&configs, &["--preset", "cpu", "--only", "vqa-bayes", "--with-group"]);
    assert_eq!(bayes.len(), 9);
    assert_eq!(bayes[0], "vqa-bayes vqa soft 3435");
    let smoke = tables(&configs, &["--preset", "smoke", "--only", "g2p,nmt", "--seeds", "2"]);
    assert_eq!(smoke.len(), (9 + 8) * 2);
    assert_eq!(smoke[..2], ["nmt soft 3435", "nmt soft 3436"], "tables in file order whatever --only's order");
    assert_eq!(tables(&configs, &["--preset", "paper", "--only", "wmt17"]), ["wmt17 soft 3435", "wmt17 var-enum 3435", "wmt17 var-sample 3435"]);
    assert!(tables(&configs, &["--preset", "smoke", "--only", "wmt17"]).is_empty());
    for (args, needles) in [
        (&["--only", "demo"][..], &["tables.toml", "no group `demo`", "nmt, vqa, vqa-bayes, g2p, wmt17"][..]),
        (&["--seeds", "0"][..], &["--seeds 0", "at least 1"][..]),
    ] {
        let o = varattn().arg("tables").args(args).arg("--configs").arg(&configs).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        for n in needles {
            assert!(err.contains(n), "`{n}` missing from:\n{err}");
        }
    }
}

/// A registry that lists a row without a config file, or a table the report cannot lay out,
/// stops `tables` and `report` before anything is written, naming tables.toml and the table.
#[test]
fn a_broken_registry_stops_tables_and_report_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = copy_configs(tmp.path());
    let good = std::fs::read_to_string(configs.join("tables.toml")).unwrap();
    let results = tmp.path().join("results");
    let report = || varattn().args(["report", "--preset", "smoke", "--results"]).arg(&results).arg("--configs").arg(&configs).output().unwrap();
    std::fs::write(configs.join("tables.toml"), good.replacen("\"rws\",", "\"rws\",\n  \"no-such-row\",", 1)).unwrap();
    for o in [varattn().args(["tables", "--configs"]).arg(&configs).output().unwrap(), report()] {
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        for n in ["tables.toml", "table `nmt`", "row `no-such-row`", "no-such-row.toml"] {
            assert!(err.contains(n), "`{n}` missing from:\n{err}");
        }
    }
    std::fs::write(configs.join("tables.toml"), good.replacen("name = \"g2p\"", "name = \"g2p-extra\"", 1)).unwrap();
    assert_eq!(tables(&configs, &["--preset", "smoke", "--only", "g2p"]).len(), 8, "training needs no layout");
    let o = report();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("table `g2p-extra`") && err.contains("no layout") && err.contains("vqa-aa-bam"), "{err}");
    assert!(!results.exists(), "a report refused before it wrote anything");
}
