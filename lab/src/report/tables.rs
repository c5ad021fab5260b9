//! The papers' tables from finished runs: mean ± std over seeds beside the paper's numbers,
//! as Markdown and CSV, and a summary of which of the paper's orderings hold.
use crate::experiments::g2p::G2pResult;
use crate::experiments::nmt::NmtResult;
use crate::experiments::vqa::{VqaMetrics, VqaResult};
use crate::provenance::write_atomic;
use crate::report::verdict::{claim_interval, Interval, Items, Link, Measure, Term, Verdict};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::stats::mean_std;

fn fmt_ms(xs: &[f64], digits: usize) -> String {
    if xs.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(xs);
    if xs.len() > 1 {
        format!("{m:.digits$} ± {s:.digits$}")
    } else {
        format!("{m:.digits$}")
    }
}

/// Finished NMT runs under `runs_dir/<row>/seed-*/result.json`, grouped by row.
pub fn collect_nmt(runs_dir: &Path) -> Result<BTreeMap<String, Vec<NmtResult>>> {
    collect(runs_dir, |r: &NmtResult| r.name.clone())
}

/// Finished VQA runs under `runs_dir/<row>/seed-*/result.json`, grouped by row.
pub fn collect_vqa(runs_dir: &Path) -> Result<BTreeMap<String, Vec<VqaResult>>> {
    collect(runs_dir, |r: &VqaResult| r.name.clone())
}

/// The result files the `collect_*` functions skipped because they could not be read or parsed
/// (each with the reason), since [`take_skipped_results`] was last called.
static SKIPPED_RESULTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Takes the list of result files skipped as unreadable (each `<path>: <reason>`).
pub fn take_skipped_results() -> Vec<String> {
    std::mem::take(&mut *SKIPPED_RESULTS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Every readable `result.json` under `runs_dir/<row>/seed-*/`, in path order; one that cannot be read or
/// parsed is skipped with a warning naming it (and recorded for [`take_skipped_results`]).
/// Refused: two results of one row made from different configs (their `config_hash` differs, e.g.
/// a stale run left from before a preset changed), since their mean would mix two experiments.
fn collect<R: serde::de::DeserializeOwned>(runs_dir: &Path, name: impl Fn(&R) -> String) -> Result<BTreeMap<String, Vec<R>>> {
    let mut out: BTreeMap<String, Vec<R>> = BTreeMap::new();
    // the config hash of each row's first result, and where it came from
    let mut hashes: BTreeMap<String, (String, std::path::PathBuf)> = BTreeMap::new();
    // in path order: a row's results (and so its seeds) come in the same order on every machine
    let sorted = |dir: &Path| -> Option<Vec<std::path::PathBuf>> {
        let mut v: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
        v.sort();
        Some(v)
    };
    let Some(rows) = sorted(runs_dir) else { return Ok(out) };
    for row in rows {
        let Some(seeds) = sorted(&row) else { continue };
        for seed in seeds {
            let p = seed.join("result.json");
            if p.exists() {
                let read = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display())).and_then(|t| {
                    let r = serde_json::from_str::<R>(&t).with_context(|| format!("parsing {}", p.display()))?;
                    let hash = serde_json::from_str::<serde_json::Value>(&t)
                        .ok()
                        .and_then(|v| v.get("config_hash")?.as_str().map(str::to_string))
                        .unwrap_or_default();
                    Ok((r, hash))
                });
                match read {
                    Ok((r, hash)) => {
                        let row = name(&r);
                        match hashes.get(&row) {
                            Some((first, at)) if *first != hash => bail!(
                                "{} and {} are runs of row `{row}` made from different configs (config_hash {first} vs {hash}): one is stale; remove it (or train it again) before reporting",
                                at.display(),
                                p.display()
                            ),
                            Some(_) => {}
                            None => {
                                hashes.insert(row.clone(), (hash, p.clone()));
                            }
                        }
                        out.entry(row).or_default().push(r)
                    }
                    Err(e) => {
                        eprintln!("warning: skipping {}: {e:#}", p.display());
                        SKIPPED_RESULTS.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{e:#}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn paper(p: &toml::Value, row: &str, key: &str) -> String {
    p.get(row).and_then(|r| r.get(key)).and_then(|v| v.as_float()).map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

/// A table as (header, rows) → Markdown and CSV text.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|{}|\n", self.header.join(" | "), vec!["---"; self.header.len()].join("|"));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
    pub fn csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        Ok(String::from_utf8(w.into_inner()?)?)
    }
    pub fn write(&self, stem: &Path, preamble: &str) -> Result<()> {
        write_atomic(&stem.with_extension("md"), format!("{preamble}\n\n{}", self.markdown()).as_bytes())?;
        write_atomic(&stem.with_extension("csv"), self.csv()?.as_bytes())
    }

    /// Read back a table written by [`Table::csv`] (first record = header); errors name the file
    /// and the record.
    pub fn read_csv(path: &Path) -> Result<Table> {
        let mut r = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let header = r.headers().with_context(|| format!("{}: header", path.display()))?.iter().map(String::from).collect();
        let rows = r
            .records()
            .enumerate()
            .map(|(i, rec)| {
                rec.map(|rec| rec.iter().map(String::from).collect())
                    .with_context(|| format!("{}: record {}", path.display(), i + 2))
            })
            .collect::<Result<Vec<Vec<String>>>>()?;
        Ok(Table { header, rows })
    }

    /// The cells of column `name`, top to bottom; errors (naming the known columns) when the
    /// table has no such column.
    pub fn column(&self, name: &str) -> Result<Vec<&str>> {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no column `{name}` (columns: {})", self.header.join(", ")))?;
        Ok(self.rows.iter().map(|r| r.get(i).map(String::as_str).unwrap_or("")).collect())
    }
}

/// The number a table cell shows: the mean of `m ± s`, a plain number, or `None` for `–`,
/// empty or non-numeric cells.
pub fn cell_value(cell: &str) -> Option<f64> {
    cell.split('±').next()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The paper's numbers (`configs/<task>/paper-numbers.toml`) that the tables print beside ours.
pub fn read_paper_numbers(path: &Path) -> Result<toml::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn field(rs: &[NmtResult], f: impl Fn(&NmtResult) -> Option<f64>) -> Vec<f64> {
    rs.iter().filter_map(f).filter(|x| x.is_finite()).collect()
}

/// Deng et al. Table 1 (NMT columns) with prior entropy, speed and provenance: one line per row
/// of `rows` (table order, `configs/tables.toml`) that has runs.
pub fn nmt_table1<S: AsRef<str>>(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value, rows: &[S]) -> Table {
    let header = [
        "row", "PPL", "paper PPL", "shuffled-source PPL", "BLEU", "BLEU unsmoothed", "chrF", "BLEU tok-lc", "paper BLEU", "prior entropy",
        "ln S (uniform)", "posterior entropy", "argmax p = q", "paper entropy", "train tok/s", "train s", "seeds",
    ];
    let mut lines = vec![];
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name) else { continue };
        lines.push(vec![
            name.to_string(),
            fmt_ms(&field(rs, |r| Some(r.test_ppl)), 2),
            paper(paper_numbers, name, "ppl"),
            fmt_ms(&field(rs, |r| r.test_ppl_shuffled_source), 2),
            fmt_ms(&field(rs, |r| Some(r.bleu)), 2),
            fmt_ms(&field(rs, |r| r.bleu_unsmoothed), 2),
            fmt_ms(&field(rs, |r| r.chrf), 2),
            fmt_ms(&field(rs, |r| Some(r.bleu_tok_lc)), 2),
            paper(paper_numbers, name, "bleu"),
            fmt_ms(&field(rs, |r| Some(r.test_prior_entropy)), 2),
            fmt_ms(&field(rs, |r| r.test_log_source_len), 2),
            fmt_ms(&field(rs, |r| r.test_posterior_entropy), 2),
            fmt_ms(&field(rs, |r| r.prior_posterior_argmax_agreement), 3),
            paper(paper_numbers, name, "prior_entropy"),
            fmt_ms(&field(rs, |r| Some(r.train_tokens_per_second)), 0),
            fmt_ms(&field(rs, |r| Some(r.train_seconds)), 0),
            rs.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// Deng et al. Table 2: exact enumeration against K-Max, for the rows of `rows` with K-Max results.
pub fn nmt_table2<S: AsRef<str>>(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value, rows: &[S]) -> Table {
    let header = ["row", "PPL exact", "PPL K-Max", "paper exact/K-Max", "BLEU exact", "BLEU K-Max", "paper BLEU exact/K-Max"];
    let mut lines = vec![];
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name) else { continue };
        if rs.iter().all(|r| r.test_ppl_kmax.is_none()) {
            continue;
        }
        lines.push(vec![
            name.to_string(),
            fmt_ms(&field(rs, |r| Some(r.test_ppl)), 2),
            fmt_ms(&field(rs, |r| r.test_ppl_kmax), 2),
            format!("{}/{}", paper(paper_numbers, name, "ppl"), paper(paper_numbers, name, "ppl_kmax")),
            fmt_ms(&field(rs, |r| Some(r.bleu)), 2),
            fmt_ms(&field(rs, |r| r.bleu_kmax), 2),
            format!("{}/{}", paper(paper_numbers, name, "bleu"), paper(paper_numbers, name, "bleu_kmax")),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// Deng et al. Table 3: inference alternatives (REINFORCE = var-sample, RWS, Gumbel-softmax)
/// and the prior alignment entropy of every row of `rows` (a row that is not one of the
/// alternatives shows `–` for method and samples).
pub fn nmt_table3<S: AsRef<str>>(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value, rows: &[S]) -> Table {
    let header = ["row", "method", "samples", "PPL", "paper PPL", "BLEU", "paper BLEU", "prior entropy", "paper entropy"];
    let alternatives = [("var-sample", "REINFORCE", "1"), ("rws", "RWS", "5"), ("gumbel", "Gumbel-softmax", "1")];
    let mut lines = vec![];
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name) else { continue };
        let (method, samples) = alternatives
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, m, k)| (m.to_string(), k.to_string()))
            .unwrap_or(("–".into(), "–".into()));
        lines.push(vec![
            name.to_string(),
            method,
            samples,
            fmt_ms(&field(rs, |r| Some(r.test_ppl)), 2),
            paper(paper_numbers, name, "ppl"),
            fmt_ms(&field(rs, |r| Some(r.bleu)), 2),
            paper(paper_numbers, name, "bleu"),
            fmt_ms(&field(rs, |r| Some(r.test_prior_entropy)), 2),
            paper(paper_numbers, name, "prior_entropy"),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// Deng et al.'s WMT17 En->De line: BLEU of soft against variational attention, with PPL and
/// the training speed relative to soft attention (the paper's "comparable speed" claim):
/// `speed vs soft = tok/s(row) / tok/s(soft)` on the mean over seeds; one line per row of `rows`.
pub fn wmt17_table<S: AsRef<str>>(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value, rows: &[S]) -> Table {
    let header = ["row", "BLEU", "paper BLEU", "PPL", "prior entropy", "train tok/s", "speed vs soft", "train s", "seeds"];
    let soft_speed = results.get("soft").map(|rs| mean_std(&field(rs, |r| Some(r.train_tokens_per_second))).0);
    let mut lines = vec![];
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name) else { continue };
        let speed = mean_std(&field(rs, |r| Some(r.train_tokens_per_second))).0;
        lines.push(vec![
            name.to_string(),
            fmt_ms(&field(rs, |r| Some(r.bleu)), 2),
            paper(paper_numbers, name, "bleu"),
            fmt_ms(&field(rs, |r| Some(r.test_ppl)), 2),
            fmt_ms(&field(rs, |r| Some(r.test_prior_entropy)), 2),
            fmt_ms(&field(rs, |r| Some(r.train_tokens_per_second)), 0),
            soft_speed.filter(|s| *s > 0.0).map(|s| format!("{:.2}", speed / s)).unwrap_or_else(|| "–".into()),
            fmt_ms(&field(rs, |r| Some(r.train_seconds)), 0),
            rs.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// The WMT17 line's claims: variational attention beats soft attention in BLEU, and trains at
/// a speed comparable to it (at least 1/1.3 of soft attention's tokens per second, the
/// performance issue's reading of "comparable").
pub fn wmt17_claims(results: &BTreeMap<String, Vec<NmtResult>>) -> Vec<Claim> {
    let bleu = |n: &'static str| (n, values(results.get(n), |r| r.seed, |r| Some(r.bleu)));
    let mut out = vec![];
    for row in ["var-sample", "var-enum"] {
        out.push(compare("WMT17 En->De", "BLEU", false, bleu(row), bleu("soft"), 2));
    }
    let speed = |n: &str| values(results.get(n), |r| r.seed, |r| Some(r.train_tokens_per_second));
    let (v, sp) = (speed("var-sample"), speed("soft"));
    out.push(decide(
        "WMT17 En->De: var-sample trains at >= 1/1.3 of soft's tokens/s".into(),
        "1.3 · tok/s(var-sample) − tok/s(soft)".into(),
        format!("var-sample {} vs soft {} tok/s", show(&v, 0), show(&sp, 0)),
        &[Term { coef: 1.3, runs: v }, Term { coef: -1.0, runs: sp }],
    ));
    out
}

/// Deng et al. Table 1 (VQA columns) on easy-VQA, with the noisy and low-data conditions; one
/// line per row of `rows`.
pub fn vqa_table1<S: AsRef<str>>(results: &BTreeMap<String, Vec<VqaResult>>, paper_numbers: &toml::Value, rows: &[S]) -> Table {
    let header = [
        "row", "train images", "NLL", "paper NLL", "accuracy %", "question-only acc %", "paper Eval", "ECE", "noisy NLL", "noisy accuracy %", "noisy ECE",
        "prior entropy", "paper entropy", "train s", "seeds",
    ];
    let mut lines = vec![];
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name) else { continue };
        let f = |g: &dyn Fn(&VqaResult) -> f64| rs.iter().map(g).filter(|x| x.is_finite()).collect::<Vec<f64>>();
        lines.push(vec![
            name.to_string(),
            format!("{:.0}%", 100.0 * rs[0].train_image_fraction),
            fmt_ms(&f(&|r| r.test.nll), 3),
            paper(paper_numbers, name, "nll"),
            fmt_ms(&f(&|r| 100.0 * r.test.accuracy), 2),
            fmt_ms(&f(&|r| r.question_only_accuracy.map_or(f64::NAN, |a| 100.0 * a)), 2),
            paper(paper_numbers, name, "eval"),
            fmt_ms(&f(&|r| r.test.ece), 3),
            fmt_ms(&f(&|r| r.test_noisy.nll), 3),
            fmt_ms(&f(&|r| 100.0 * r.test_noisy.accuracy), 2),
            fmt_ms(&f(&|r| r.test_noisy.ece), 3),
            fmt_ms(&f(&|r| r.test.prior_entropy), 2),
            paper(paper_numbers, name, "prior_entropy"),
            fmt_ms(&f(&|r| r.train_seconds), 0),
            rs.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// The paper's VQA orderings, checked on mean test NLL.
pub fn vqa_claims(results: &BTreeMap<String, Vec<VqaResult>>) -> Vec<Claim> {
    let nll = |n: &'static str| (n, vqa_measures(results.get(n), false, |m| m.nll, |m| &m.question_nll));
    let less = |a, b, what: &str| compare(what, "NLL", true, nll(a), nll(b), 3);
    vec![
        less("exact", "soft", "exact marginal beats soft"),
        less("var-enum", "soft", "variational (enum) beats soft"),
        less("soft", "hard-enum", "hard attention is worse than soft"),
        less("soft", "hard-sample", "hard attention (sample) is worse than soft"),
        less("exact-lowdata", "soft-lowdata", "exact marginal beats soft with 10% of the images"),
    ]
}

/// A VQA metric per run (clean or noisy test condition), with its per-question values as
/// bootstrap items when the run kept them.
fn vqa_measures(
    rs: Option<&Vec<VqaResult>>,
    noisy: bool,
    value: impl Fn(&VqaMetrics) -> f64,
    items: impl Fn(&VqaMetrics) -> &Vec<f64>,
) -> Vec<Measure> {
    rs.map(|rs| {
        rs.iter()
            .map(|r| {
                let m = if noisy { &r.test_noisy } else { &r.test };
                let it = items(m);
                let items = (!it.is_empty() && it.len() == m.questions && it.iter().all(|x| x.is_finite())).then(|| Items::mean_of(it.clone()));
                Measure { seed: r.seed, value: value(m), items }
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Finished grapheme-to-phoneme runs under `runs_dir/<row>/seed-*/result.json`, grouped by row.
pub fn collect_g2p(runs_dir: &Path) -> Result<BTreeMap<String, Vec<G2pResult>>> {
    collect(runs_dir, |r: &G2pResult| r.name.clone())
}

/// The estimators of the g2p table's `rows`, in order of their first row: row `<e>` trains on
/// clean letters, `<e>-noisy` on corrupted ones, and both are estimator `<e>`.
pub fn g2p_estimators<S: AsRef<str>>(rows: &[S]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for row in rows.iter().map(AsRef::as_ref) {
        let e = row.strip_suffix("-noisy").unwrap_or(row);
        if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    out
}

fn g2p_field(rs: Option<&Vec<G2pResult>>, f: impl Fn(&G2pResult) -> f64) -> Vec<f64> {
    rs.map(|rs| rs.iter().map(f).filter(|x| x.is_finite()).collect()).unwrap_or_default()
}

/// One row per estimator: PER clean (clean-trained row, clean test letters) and noisy
/// (noisy-trained row, noisy test letters), the test bound L_K per phoneme, the gradient
/// variance at initialisation and after training, the learning signal's mean square, and
/// training time of both runs; one line per estimator of `rows` (see [`g2p_estimators`]).
pub fn g2p_table<S: AsRef<str>>(results: &BTreeMap<String, Vec<G2pResult>>, rows: &[S]) -> Table {
    let header = [
        "estimator", "K", "PER clean %", "PER noisy %", "letter noise", "bound L_K / phoneme (clean)", "grad var init", "grad var init 95% (draws)", "grad var final (clean)",
        "grad var final (noisy)", "signal mean square (clean)", "train s clean", "train s noisy", "seeds",
    ];
    let mut lines = vec![];
    for name in g2p_estimators(rows) {
        let clean = results.get(&name);
        let noisy = results.get(&format!("{name}-noisy"));
        let Some(any) = clean.or(noisy) else { continue };
        let sci = |xs: &[f64]| if xs.is_empty() { "–".to_string() } else { format!("{:.3e}", mean_std(xs).0) };
        lines.push(vec![
            name.to_string(),
            any[0].samples.to_string(),
            fmt_ms(&g2p_field(clean, |r| 100.0 * r.test_per), 2),
            fmt_ms(&g2p_field(noisy, |r| 100.0 * r.test_noisy_per), 2),
            noisy.map(|rs| format!("{}", rs[0].train_noise)).unwrap_or("–".into()),
            fmt_ms(&g2p_field(clean, |r| r.test_bound_per_label), 3),
            sci(&g2p_field(clean.or(noisy), |r| r.grad_variance_init)),
            clean.or(noisy).and_then(|rs| rs[0].grad_variance_init_detail.as_ref()).map_or("–".into(), |d| {
                format!("[{:.3e}, {:.3e}] ({}×{})", d.interval[0], d.interval[1], d.batches, d.draws_per_batch)
            }),
            sci(&g2p_field(clean, |r| r.grad_variance_final)),
            sci(&g2p_field(noisy, |r| r.grad_variance_final)),
            sci(&g2p_field(clean, |r| r.signal_mean_square)),
            fmt_ms(&g2p_field(clean, |r| r.train_seconds), 0),
            fmt_ms(&g2p_field(noisy, |r| r.train_seconds), 0),
            any.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// Zhang et al. (2021) / Fan et al. (2020) on easy-VQA: clean and noisy accuracy, NLL, ECE,
/// PAvPU and seconds per training step, beside the paper's MCAN VQA-v2 numbers; one line per row
/// of `rows` (`× base` is relative to the `multihead` row).
pub fn vqa_bayes_table<S: AsRef<str>>(results: &BTreeMap<String, Vec<VqaResult>>, paper_numbers: &toml::Value, rows: &[S]) -> Table {
    let header = [
        "row", "accuracy %", "question-only acc %", "paper acc", "NLL", "ECE", "PAvPU %", "paper PAvPU", "noisy accuracy %", "paper noisy acc", "noisy NLL",
        "noisy ECE", "noisy PAvPU %", "paper noisy PAvPU", "s/step", "× base", "paper s/step", "params", "seeds",
    ];
    let base = results.get("multihead").and_then(|rs| {
        let v: Vec<f64> = rs.iter().filter_map(|r| r.seconds_per_step()).collect();
        (!v.is_empty()).then(|| mean_std(&v).0)
    });
    let mut lines = vec![];
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name) else { continue };
        let f = |g: &dyn Fn(&VqaResult) -> Option<f64>| rs.iter().filter_map(g).filter(|x| x.is_finite()).collect::<Vec<f64>>();
        let step = f(&|r| r.seconds_per_step());
        lines.push(vec![
            name.to_string(),
            fmt_ms(&f(&|r| Some(100.0 * r.test.accuracy)), 2),
            fmt_ms(&f(&|r| r.question_only_accuracy.map(|a| 100.0 * a)), 2),
            paper(paper_numbers, name, "accuracy"),
            fmt_ms(&f(&|r| Some(r.test.nll)), 3),
            fmt_ms(&f(&|r| Some(r.test.ece)), 3),
            fmt_ms(&f(&|r| r.test.pavpu.map(|p| 100.0 * p)), 2),
            paper(paper_numbers, name, "pavpu"),
            fmt_ms(&f(&|r| Some(100.0 * r.test_noisy.accuracy)), 2),
            paper(paper_numbers, name, "noisy_accuracy"),
            fmt_ms(&f(&|r| Some(r.test_noisy.nll)), 3),
            fmt_ms(&f(&|r| Some(r.test_noisy.ece)), 3),
            fmt_ms(&f(&|r| r.test_noisy.pavpu.map(|p| 100.0 * p)), 2),
            paper(paper_numbers, name, "noisy_pavpu"),
            fmt_ms(&step, 3),
            match (base, step.is_empty()) {
                (Some(b), false) => format!("{:.2}", mean_std(&step).0 / b),
                _ => "–".into(),
            },
            paper(paper_numbers, name, "seconds_per_step"),
            match rs[0].parameters {
                0 => "–".into(), // results written before the count was recorded
                n => n.to_string(),
            },
            rs.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows: lines }
}

/// Lawson et al.'s orderings: the multi-sample estimators reach a lower PER than REINFORCE, and
/// the gap grows when the task is harder (noisy letters); VIMCO's gradient variance is lower.
pub fn g2p_claims(results: &BTreeMap<String, Vec<G2pResult>>) -> Vec<Claim> {
    // PER per run as Σ edits / Σ phonemes over the test words (the bootstrap's items)
    let per = |row: &str, noisy: bool| -> Vec<Measure> {
        let rs = if noisy { results.get(&format!("{row}-noisy")) } else { results.get(row) };
        rs.map(|rs| {
            rs.iter()
                .map(|r| {
                    let edits = if noisy { &r.test_noisy_word_edits } else { &r.test_word_edits };
                    let ok = !edits.is_empty() && edits.len() == r.test_word_phonemes.len();
                    let items = ok.then(|| Items { num: edits.clone(), den: r.test_word_phonemes.clone(), link: Link::Identity });
                    Measure { seed: r.seed, value: if noisy { r.test_noisy_per } else { r.test_per }, items }
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let mut out = vec![];
    for a in ["vimco", "vimco-per-step", "nvil"] {
        for (noisy, cond) in [(false, "clean letters"), (true, "noisy letters")] {
            let c = compare(&format!("{a} reaches a lower PER than reinforce ({cond})"), "PER", true, (a, per(a, noisy)), ("reinforce", per("reinforce", noisy)), 4);
            out.push(c);
        }
    }
    for a in ["vimco", "vimco-per-step"] {
        let terms = [
            Term { coef: 1.0, runs: per("reinforce", true) },
            Term { coef: -1.0, runs: per(a, true) },
            Term { coef: -1.0, runs: per("reinforce", false) },
            Term { coef: 1.0, runs: per(a, false) },
        ];
        let gap = |noisy: bool| -> String {
            let (r, v) = (per("reinforce", noisy), per(a, noisy));
            let d: Vec<f64> = r.iter().filter_map(|x| v.iter().find(|y| y.seed == x.seed).map(|y| x.value - y.value)).collect();
            fmt_ms(&d, 4)
        };
        out.push(decide(
            format!("the PER gap reinforce - {a} is larger with noisy letters"),
            format!("(PER(reinforce) − PER({a}))_noisy − (PER(reinforce) − PER({a}))_clean"),
            format!("gap noisy {} vs clean {}", gap(true), gap(false)),
            &terms,
        ));
    }
    // gradient variance at the shared initial parameters: the per-draw terms are the items
    let gv = |row: &str| -> Vec<Measure> {
        results
            .get(row)
            .map(|rs| {
                rs.iter()
                    .map(|r| Measure {
                        seed: r.seed,
                        value: r.grad_variance_init,
                        items: r.grad_variance_init_detail.as_ref().map(|d| Items::mean_of(d.items.clone())),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for a in ["nvil", "vimco", "vimco-per-step"] {
        let c = compare(
            &format!("{a} has a lower gradient variance than reinforce at the same (initial) parameters"),
            "gradvar",
            true,
            (a, gv(a)),
            ("reinforce", gv("reinforce")),
            6,
        );
        out.push(c);
    }
    out
}
/// The orderings Zhang et al. (2021) and Fan et al. (2020) report, checked on this run's means.
pub fn vqa_bayes_claims(results: &BTreeMap<String, Vec<VqaResult>>) -> Vec<Claim> {
    type Get = fn(Option<&Vec<VqaResult>>) -> Vec<Measure>;
    let acc: Get = |rs| vqa_measures(rs, false, |m| m.accuracy, |m| &m.question_correct);
    let noisy: Get = |rs| vqa_measures(rs, true, |m| m.accuracy, |m| &m.question_correct);
    let pav: Get = |rs| values(rs, |r| r.seed, |r| r.test.pavpu);
    let npav: Get = |rs| values(rs, |r| r.seed, |r| r.test_noisy.pavpu);
    let ece: Get = |rs| values(rs, |r| r.seed, |r| Some(r.test.ece));
    let step: Get = |rs| values(rs, |r| r.seed, |r| r.seconds_per_step());
    let cmp = |a: &'static str, b: &'static str, what: &str, label: &str, higher: bool, g: Get| {
        compare(what, label, !higher, (a, g(results.get(a))), (b, g(results.get(b))), 4)
    };
    vec![
        cmp("aa-ct", "multihead", "AA-CT improves accuracy (AA Table: 67.01 vs 66.74)", "acc", true, acc),
        cmp("aa-gan", "multihead", "AA-GAN improves accuracy (66.92 vs 66.74)", "acc", true, acc),
        cmp("aa-ct", "multihead", "AA-CT is more robust to noisy features (64.57 vs 63.58)", "noisy acc", true, noisy),
        cmp("aa-gan", "multihead", "AA-GAN is more robust to noisy features (64.28 vs 63.58)", "noisy acc", true, noisy),
        cmp("aa-ct", "aa-gan", "AA-CT beats AA-GAN on noisy features (64.57 vs 64.28)", "noisy acc", true, noisy),
        cmp("aa-ct", "multihead", "AA-CT improves PAvPU (72.21 vs 71.96)", "PAvPU", true, pav),
        cmp("aa-ct", "multihead", "AA-CT improves noisy PAvPU (69.98 vs 68.29)", "noisy PAvPU", true, npav),
        cmp("aa-ot", "multihead", "AA-OT improves accuracy", "acc", true, acc),
        cmp("multihead", "aa-gan", "AA-GAN costs more per step than the base (0.31 vs 0.25 s)", "s/step", false, step),
        cmp("aa-gan", "aa-ct", "AA-CT costs more per step than AA-GAN (0.36 vs 0.31 s)", "s/step", false, step),
        cmp("bam", "multihead", "BAM improves accuracy (Fan et al.)", "acc", true, acc),
        cmp("bam", "multihead", "BAM is better calibrated", "ECE", false, ece),
        cmp("bam", "multihead", "BAM improves PAvPU", "PAvPU", true, pav),
        cmp("bam-contextual", "bam", "the contextual prior beats the constant prior", "acc", true, acc),
        cmp("babn", "multihead-2hop", "BABN improves accuracy over its deterministic base", "acc", true, acc),
        cmp("babn", "multihead-2hop", "BABN improves PAvPU over its deterministic base", "PAvPU", true, pav),
    ]
}

/// One claim of a paper decided on this run's results (see [`crate::report::verdict`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    pub claim: String,
    /// The statistic S the claim is about, signed so that the paper says S > 0.
    pub statistic: String,
    pub verdict: Verdict,
    /// The 95% interval of S.
    pub interval: Option<Interval>,
    /// Why there is no interval (a row not run, one seed without per-item results, ...).
    pub why_no_interval: Option<String>,
    /// The rows' values, mean ± std over seeds.
    pub detail: String,
}

/// A claim about `S = Σ c_j m_j` decided from its terms' runs.
pub fn decide(claim: String, statistic: String, detail: String, terms: &[Term]) -> Claim {
    match claim_interval(terms) {
        Ok(iv) => Claim { claim, statistic, verdict: Verdict::of_interval(&iv), interval: Some(iv), why_no_interval: None, detail },
        Err(why) => {
            let verdict = if terms.iter().any(|t| t.runs.is_empty()) { Verdict::NotRun } else { Verdict::Inconclusive };
            Claim { claim, statistic, verdict, interval: None, why_no_interval: Some(why), detail }
        }
    }
}

/// Mean ± std of the runs' values.
fn show(runs: &[Measure], digits: usize) -> String {
    fmt_ms(&runs.iter().map(|m| m.value).filter(|x| x.is_finite()).collect::<Vec<_>>(), digits)
}

/// "`what`: metric(a) < metric(b)" (`lower`) or "> " (higher is the paper's side), decided on
/// S = m(b) − m(a) or m(a) − m(b).
fn compare(what: &str, metric: &str, lower: bool, a: (&str, Vec<Measure>), b: (&str, Vec<Measure>), digits: usize) -> Claim {
    let ((na, ma), (nb, mb)) = (a, b);
    let rel = if lower { "<" } else { ">" };
    let (statistic, terms) = if lower {
        (format!("{metric}({nb}) − {metric}({na})"), [Term { coef: 1.0, runs: mb.clone() }, Term { coef: -1.0, runs: ma.clone() }])
    } else {
        (format!("{metric}({na}) − {metric}({nb})"), [Term { coef: 1.0, runs: ma.clone() }, Term { coef: -1.0, runs: mb.clone() }])
    };
    let detail = format!("{na} {} vs {nb} {}", show(&ma, digits), show(&mb, digits));
    decide(format!("{what}: {metric}({na}) {rel} {metric}({nb})"), statistic, detail, &terms)
}

/// Test perplexity per run, with the per-sentence NLL and token counts as bootstrap items.
fn nmt_ppl(rs: Option<&Vec<NmtResult>>) -> Vec<Measure> {
    rs.map(|rs| {
        rs.iter()
            .map(|r| {
                let ok = !r.test_sentence_nll.is_empty()
                    && r.test_sentence_nll.len() == r.test_sentence_tokens.len()
                    && r.test_sentence_nll.iter().all(|x| x.is_finite());
                let items = ok.then(|| Items { num: r.test_sentence_nll.clone(), den: r.test_sentence_tokens.clone(), link: Link::Exp });
                Measure { seed: r.seed, value: r.test_ppl, items }
            })
            .collect()
    })
    .unwrap_or_default()
}

/// A per-run value without items (paired seeds only).
fn values<R>(rs: Option<&Vec<R>>, seed: impl Fn(&R) -> u64, f: impl Fn(&R) -> Option<f64>) -> Vec<Measure> {
    rs.map(|rs| rs.iter().filter_map(|r| f(r).map(|value| Measure { seed: seed(r), value, items: None })).collect()).unwrap_or_default()
}

/// The orderings of Table 1 that the paper reports, on test PPL.
pub fn nmt_claims(results: &BTreeMap<String, Vec<NmtResult>>) -> Vec<Claim> {
    let ppl = |n: &'static str| (n, nmt_ppl(results.get(n)));
    let less = |a, b, what: &str| compare(what, "PPL", true, ppl(a), ppl(b), 3);
    vec![
        less("exact", "soft", "exact marginal beats soft"),
        less("var-enum", "soft", "variational (enum) beats soft"),
        less("var-sample", "soft", "variational (sample) beats soft"),
        less("soft", "hard-enum", "hard attention is worse than soft"),
        less("soft", "hard-sample", "hard attention (sample) is worse than soft"),
        less("var-sample", "hard-sample", "variational sampling beats hard sampling"),
        less("soft", "relaxed-dirichlet", "the relaxed Dirichlet row is worse than soft"),
        less("var-sample", "gumbel", "REINFORCE beats Gumbel-softmax (Table 3)"),
        less("var-sample", "rws", "REINFORCE beats RWS (Table 3)"),
    ]
}

fn fmt_interval(c: &Claim) -> (String, String, String) {
    match &c.interval {
        Some(iv) => (format!("{:.4}", iv.estimate), format!("[{:.4}, {:.4}]", iv.lo, iv.hi), iv.method.describe()),
        None => ("–".into(), "–".into(), c.why_no_interval.clone().unwrap_or_default()),
    }
}

/// The verdict as a table cell; an inconclusive one says what the budget can resolve.
fn verdict_cell(c: &Claim) -> String {
    match (c.verdict, &c.interval) {
        (Verdict::Inconclusive, Some(iv)) => format!("inconclusive (resolves only effects above {:.3})", iv.half_width()),
        (v, _) => v.label().to_string(),
    }
}

pub fn claims_markdown(claims: &[Claim]) -> String {
    let mut s = String::from(
        "S is the claim's statistic, signed so that the paper says S > 0. Verdict: **holds** when the 95% interval of S is above 0, \
         **contradicted** when it is below 0, **inconclusive** otherwise (see `varattn_lab::report::verdict`). \
         With several seeds the interval is a paired t interval over seeds; with one seed it is a paired bootstrap over \
         test items, which covers the test set's sampling but not the spread between training seeds.\n\n\
         | claim | verdict | S | S here | 95% interval | interval from | ours |\n|---|---|---|---|---|---|---|\n",
    );
    for c in claims {
        let (est, iv, how) = fmt_interval(c);
        s.push_str(&format!("| {} | {} | {} | {est} | {iv} | {how} | {} |\n", c.claim, verdict_cell(c), c.statistic, c.detail));
    }
    s
}

/// Counts of (holds, contradicted, inconclusive, not run).
pub fn verdict_counts(claims: &[Claim]) -> [usize; 4] {
    let n = |v| claims.iter().filter(|c| c.verdict == v).count();
    [n(Verdict::Holds), n(Verdict::Contradicted), n(Verdict::Inconclusive), n(Verdict::NotRun)]
}

fn counts_line(c: [usize; 4]) -> String {
    format!("{} hold, {} contradicted, {} inconclusive, {} not run", c[0], c[1], c[2], c[3])
}

/// The closing one-screen summary of `varattn report`: for every table written, how many of its
/// claims hold, are contradicted or are inconclusive, then one line per claim with its verdict,
/// the statistic's interval and our numbers; a last line totals the verdicts.
pub fn claims_summary(preset: &str, parts: &[(String, Vec<Claim>)]) -> String {
    let mut s = format!("== the papers' claims in this run (preset `{preset}`): 95% intervals of S, the paper says S > 0\n");
    if parts.is_empty() {
        s.push_str("no finished runs, no claims to check\n");
    }
    let mut total = [0usize; 4];
    for (title, claims) in parts {
        let c = verdict_counts(claims);
        for (t, x) in total.iter_mut().zip(c) {
            *t += x;
        }
        s.push_str(&format!("{title}: {}\n", counts_line(c)));
        for c in claims {
            let iv = match &c.interval {
                Some(iv) => format!("S = {:.4} [{:.4}, {:.4}]", iv.estimate, iv.lo, iv.hi),
                None => c.why_no_interval.clone().unwrap_or_default(),
            };
            s.push_str(&format!("  {:<12} {} ({iv}; {})\n", c.verdict.label(), c.claim, c.detail));
        }
    }
    if !parts.is_empty() {
        s.push_str(&format!("all tables: {}\n", counts_line(total)));
    }
    s
}

/// Figures of the NMT runs of `rows`, as `<dir>/nmt-valid-ppl.{png,svg}` and `<dir>/nmt-ppl-vs-k.*`:
/// validation PPL per epoch for every row, and test PPL against K (log axis) for the latent rows.
/// With several seeds a row's line is the mean over its seeds with error bars of ± one standard
/// deviation (the spread the tables print after "±"), and the title says how many seeds.
pub fn nmt_figures<S: AsRef<str>>(results: &BTreeMap<String, Vec<NmtResult>>, rows: &[S], dir: &Path) -> Result<()> {
    use super::plot::{line_plot, LinePlot, Scale, Series, Spread};
    let mut curves = vec![];
    let mut ks = vec![];
    let mut seeds = 0;
    for name in rows.iter().map(AsRef::as_ref) {
        let Some(rs) = results.get(name).filter(|rs| !rs.is_empty()) else { continue };
        seeds = seeds.max(rs.len());
        let runs: Vec<Vec<(f64, f64)>> = rs
            .iter()
            .map(|r| r.history.iter().map(|e| (e.epoch as f64, e.valid)).filter(|p| p.1.is_finite()).collect())
            .collect();
        if runs.iter().any(|r| !r.is_empty()) {
            curves.push(Series::over_seeds(name, &runs, Spread::Std));
        }
        let runs: Vec<Vec<(f64, f64)>> = rs
            .iter()
            .map(|r| r.ppl_against_k.iter().map(|&(k, p)| (k as f64, p)).filter(|p| p.1.is_finite()).collect())
            .collect();
        if runs.iter().any(|r| !r.is_empty()) {
            ks.push(Series::over_seeds(name, &runs, Spread::Std));
        }
    }
    let over = if seeds > 1 { format!(" (mean ± sd over {seeds} seeds)") } else { String::new() };
    if !curves.is_empty() {
        let title = format!("Validation perplexity per epoch{over}");
        line_plot(&dir.join("nmt-valid-ppl"), &LinePlot::new(&title, "epoch", "validation PPL"), &curves)?;
    }
    if !ks.is_empty() {
        let title = format!("Test perplexity with K-Max{over}");
        let spec = LinePlot::new(&title, "K (alignments kept)", "test PPL").x_scale(Scale::Log10);
        line_plot(&dir.join("nmt-ppl-vs-k"), &spec, &ks)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12 && (s - 1.2909944487358056).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
    }

    #[test]
    fn a_table_survives_the_csv_round_trip_and_cells_parse() {
        let t = Table {
            header: vec!["row".into(), "PPL".into(), "note".into()],
            rows: vec![
                vec!["soft".into(), "7.17 ± 0.05".into(), "a, \"quoted\" cell".into()],
                vec!["exact".into(), "–".into(), "".into()],
            ],
        };
        let dir = std::env::temp_dir().join(format!("varattn-table-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv");
        std::fs::write(&path, t.csv().unwrap()).unwrap();
        let back = Table::read_csv(&path).unwrap();
        assert_eq!(back.header, t.header);
        assert_eq!(back.rows, t.rows);
        assert_eq!(back.markdown(), t.markdown());
        let ppl: Vec<Option<f64>> = back.column("PPL").unwrap().into_iter().map(cell_value).collect();
        assert_eq!(ppl, vec![Some(7.17), None]);
        let err = back.column("BLEU").unwrap_err().to_string();
        assert!(err.contains("no column `BLEU`") && err.contains("row, PPL, note"), "{err}");
        std::fs::write(&path, "row,PPL\nsoft,1,extra\n").unwrap();
        let err = format!("{:#}", Table::read_csv(&path).unwrap_err());
        assert!(err.contains("t.csv: record 2"), "{err}");
        let err = format!("{:#}", Table::read_csv(&dir.join("missing.csv")).unwrap_err());
        assert!(err.contains("missing.csv"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn results_of_one_row_from_different_configs_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let write = |seed: u64, hash: &str| {
            let mut r = nmt_result("soft", seed, 1.0, 100.0);
            r.config_hash = hash.into();
            let d = dir.path().join("soft").join(format!("seed-{seed}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("result.json"), serde_json::to_string(&r).unwrap()).unwrap();
        };
        write(3435, "aaaa");
        write(3436, "aaaa");
        assert_eq!(collect_nmt(dir.path()).unwrap()["soft"].len(), 2);
        write(3437, "bbbb");
        let e = format!("{:#}", collect_nmt(dir.path()).unwrap_err());
        assert!(e.contains("seed-3435") && e.contains("seed-3437") && e.contains("aaaa vs bbbb"), "{e}");
    }

    fn nmt_result(name: &str, seed: u64, bleu: f64, tok_s: f64) -> NmtResult {
        NmtResult {
            name: name.into(),
            seed,
            preset: "paper".into(),
            config_hash: "0".into(),
            git_revision: None,
            git_dirty_paths: vec![],
            device: "cpu".into(),
            test_ppl: 10.0,
            test_ppl_bound_samples: None,
            test_prior_entropy: 1.0,
            test_ppl_kmax: None,
            ppl_against_k: vec![],
            bleu,
            bleu_line: String::new(),
            bleu_tok_lc: bleu,
            bleu_kmax: None,
            bleu_unsmoothed: None,
            chrf: None,
            test_log_source_len: None,
            test_posterior_entropy: None,
            test_ppl_shuffled_source: None,
            prior_posterior_argmax_agreement: None,
            test_sentence_nll: vec![],
            test_sentence_tokens: vec![],
            bleu_sentences: 3,
            train_tokens_per_second: tok_s,
            train_seconds: 1.0,
            epochs: 1,
            history: vec![],
            outcome: Default::default(),
            dropped_too_long: 0,
        }
    }

    /// A row no code names (here `soft-copy`) gets every generic column, computed as for the
    /// others, in the order `rows` gives; rows without runs are left out.
    #[test]
    fn tables_render_any_registered_row_in_registry_order() {
        let paper: toml::Value = toml::from_str("[soft]\nppl = 7.17\n").unwrap();
        let mut rs = BTreeMap::new();
        rs.insert("soft".to_string(), vec![nmt_result("soft", 3435, 20.0, 1000.0)]);
        rs.insert("soft-copy".to_string(), vec![nmt_result("soft-copy", 3435, 21.0, 900.0), nmt_result("soft-copy", 3436, 23.0, 900.0)]);
        let rows = ["soft-copy", "exact", "soft"];
        let t1 = nmt_table1(&rs, &paper, &rows);
        assert_eq!(t1.column("row").unwrap(), ["soft-copy", "soft"]);
        assert_eq!(t1.column("BLEU").unwrap(), ["22.00 ± 1.41", "20.00"]);
        assert_eq!(t1.column("paper PPL").unwrap(), ["–", "7.17"]);
        assert_eq!(t1.column("seeds").unwrap(), ["3435 3436", "3435"]);
        let t3 = nmt_table3(&rs, &paper, &rows);
        assert_eq!(t3.rows[0][..3], ["soft-copy", "–", "–"]);
        assert_eq!(wmt17_table(&rs, &paper, &rows).column("speed vs soft").unwrap(), ["0.90", "1.00"]);
        assert_eq!(g2p_estimators(&["reinforce", "nvil", "reinforce-noisy", "new-noisy", "nvil-noisy"]), ["reinforce", "nvil", "new"]);
    }

    #[test]
    fn nmt_figures_average_the_seeds_with_error_bars() {
        use crate::train::runner::EpochRecord;
        let epoch = |epoch, valid| EpochRecord {
            epoch,
            train_objective_per_token: -5.0,
            train_tokens_per_second: 1.0,
            valid,
            lr: 1e-3,
            improved: true,
        };
        let with = |seed, h: Vec<EpochRecord>, ks: Vec<(usize, f64)>| NmtResult {
            history: h,
            ppl_against_k: ks,
            ..nmt_result("var-enum", seed, 1.0, 1.0)
        };
        let mut rs = BTreeMap::new();
        rs.insert(
            "var-enum".to_string(),
            vec![
                with(1, vec![epoch(1, 120.0), epoch(2, 80.0), epoch(3, 60.0)], vec![(1, 58.0), (2, 55.0), (10, 53.0)]),
                with(2, vec![epoch(1, 130.0), epoch(2, f64::NAN)], vec![(1, 60.0), (2, 56.0), (10, 54.0)]),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        nmt_figures(&rs, &["soft", "var-enum"], dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("nmt-valid-ppl.svg")).unwrap();
        assert!(svg.contains("Validation perplexity per epoch (mean ± sd over 2 seeds)"));
        use crate::plot::tests::svg_has_text;
        assert!(svg_has_text(&svg, "validation PPL") && svg_has_text(&svg, "var-enum"));
        let k_svg = std::fs::read_to_string(dir.path().join("nmt-ppl-vs-k.svg")).unwrap();
        // log10 K axis: ticks 1, 2, 5, 10 (the range is less than two decades)
        for t in ["1", "2", "5", "10"] {
            assert!(svg_has_text(&k_svg, t), "no K tick {t}");
        }
        assert!(dir.path().join("nmt-ppl-vs-k.png").exists());
    }

    #[test]
    fn wmt17_table_puts_the_paper_bleu_beside_ours_and_speed_relative_to_soft() {
        let paper: toml::Value = toml::from_str("[soft]\nbleu = 24.10\n[var-sample]\nbleu = 24.98\n").unwrap();
        let mut rs = BTreeMap::new();
        rs.insert("soft".to_string(), vec![nmt_result("soft", 1, 20.0, 1000.0), nmt_result("soft", 2, 22.0, 1000.0)]);
        rs.insert("var-sample".to_string(), vec![nmt_result("var-sample", 1, 23.0, 700.0)]);
        let t = wmt17_table(&rs, &paper, &["soft", "var-enum", "var-sample"]);
        assert_eq!(t.column("row").unwrap(), ["soft", "var-sample"]);
        assert_eq!(t.column("BLEU").unwrap(), ["21.00 ± 1.41", "23.00"]);
        assert_eq!(t.column("paper BLEU").unwrap(), ["24.10", "24.98"]);
        assert_eq!(t.column("speed vs soft").unwrap(), ["1.00", "0.70"]);
        assert_eq!(t.column("seeds").unwrap(), ["1 2", "1"]);
        // three paired seeds: BLEU differences 3, 2.5, 2.5 → holds; 1.3 · 700 − 1000 = −90 on
        // every seed → contradicted; var-enum not run
        let mut rs = BTreeMap::new();
        rs.insert("soft".to_string(), [(1, 20.0), (2, 22.0), (3, 21.0)].map(|(s, b)| nmt_result("soft", s, b, 1000.0)).to_vec());
        rs.insert("var-sample".to_string(), [(1, 23.0), (2, 24.5), (3, 23.5)].map(|(s, b)| nmt_result("var-sample", s, b, 700.0)).to_vec());
        let claims = wmt17_claims(&rs);
        let verdicts: Vec<Verdict> = claims.iter().map(|c| c.verdict).collect();
        assert_eq!(verdicts, [Verdict::Holds, Verdict::NotRun, Verdict::Contradicted]);
        let iv = claims[0].interval.as_ref().unwrap();
        // mean 8/3, sd 0.288675, t(0.975, 2) = 4.302653 → half-width 0.717129
        assert!((iv.estimate - 8.0 / 3.0).abs() < 1e-12 && (iv.half_width() - 4.302652729911275 * (1.0f64 / 12.0).sqrt() / 3f64.sqrt()).abs() < 1e-9);
        let summary = claims_summary("paper", &[("WMT17, claims-wmt17.md".into(), claims)]);
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines[1], "WMT17, claims-wmt17.md: 1 hold, 1 contradicted, 0 inconclusive, 1 not run", "{summary}");
        assert!(lines[2].starts_with("  holds        WMT17 En->De: BLEU(var-sample) > BLEU(soft) (S = 2.6667 ["), "{summary}");
        assert!(lines[3].starts_with("  not run      WMT17 En->De: BLEU(var-enum)") && lines[4].starts_with("  contradicted WMT17"), "{summary}");
        assert_eq!(lines[5], "all tables: 1 hold, 1 contradicted, 0 inconclusive, 1 not run");
        assert_eq!(lines.len(), 6);
    }
}
