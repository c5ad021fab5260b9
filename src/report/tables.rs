//! The papers' tables from finished runs: mean ± std over seeds beside the paper's numbers,
//! as Markdown and CSV, and a summary of which of the paper's orderings hold.
use crate::experiments::g2p::G2pResult;
use crate::experiments::nmt::NmtResult;
use crate::experiments::vqa::VqaResult;
use crate::io::write_atomic;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Mean and sample standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() > 1 { (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

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

fn collect<R: serde::de::DeserializeOwned>(runs_dir: &Path, name: impl Fn(&R) -> String) -> Result<BTreeMap<String, Vec<R>>> {
    let mut out: BTreeMap<String, Vec<R>> = BTreeMap::new();
    let Ok(rows) = std::fs::read_dir(runs_dir) else { return Ok(out) };
    for row in rows.flatten() {
        let Ok(seeds) = std::fs::read_dir(row.path()) else { continue };
        for seed in seeds.flatten() {
            let p = seed.path().join("result.json");
            if p.exists() {
                let r: R = serde_json::from_str(&std::fs::read_to_string(&p)?)
                    .with_context(|| format!("parsing {}", p.display()))?;
                out.entry(name(&r)).or_default().push(r);
            }
        }
    }
    Ok(out)
}

/// The row order of Table 1 and 3.
pub const NMT_ROWS: [&str; 9] =
    ["soft", "exact", "hard-enum", "hard-sample", "relaxed-dirichlet", "var-enum", "var-sample", "gumbel", "rws"];

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

/// Deng et al. Table 1 (NMT columns) with prior entropy, speed and provenance.
pub fn nmt_table1(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value) -> Table {
    let header = [
        "row", "PPL", "paper PPL", "BLEU", "BLEU tok-lc", "paper BLEU", "prior entropy", "paper entropy", "train tok/s", "train s", "seeds",
    ];
    let mut rows = vec![];
    for name in NMT_ROWS {
        let Some(rs) = results.get(name) else { continue };
        rows.push(vec![
            name.to_string(),
            fmt_ms(&field(rs, |r| Some(r.test_ppl)), 2),
            paper(paper_numbers, name, "ppl"),
            fmt_ms(&field(rs, |r| Some(r.bleu)), 2),
            fmt_ms(&field(rs, |r| Some(r.bleu_tok_lc)), 2),
            paper(paper_numbers, name, "bleu"),
            fmt_ms(&field(rs, |r| Some(r.test_prior_entropy)), 2),
            paper(paper_numbers, name, "prior_entropy"),
            fmt_ms(&field(rs, |r| Some(r.train_tokens_per_second)), 0),
            fmt_ms(&field(rs, |r| Some(r.train_seconds)), 0),
            rs.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// Deng et al. Table 2: exact enumeration against K-Max.
pub fn nmt_table2(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value) -> Table {
    let header = ["row", "PPL exact", "PPL K-Max", "paper exact/K-Max", "BLEU exact", "BLEU K-Max", "paper BLEU exact/K-Max"];
    let mut rows = vec![];
    for name in NMT_ROWS {
        let Some(rs) = results.get(name) else { continue };
        if rs.iter().all(|r| r.test_ppl_kmax.is_none()) {
            continue;
        }
        rows.push(vec![
            name.to_string(),
            fmt_ms(&field(rs, |r| Some(r.test_ppl)), 2),
            fmt_ms(&field(rs, |r| r.test_ppl_kmax), 2),
            format!("{}/{}", paper(paper_numbers, name, "ppl"), paper(paper_numbers, name, "ppl_kmax")),
            fmt_ms(&field(rs, |r| Some(r.bleu)), 2),
            fmt_ms(&field(rs, |r| r.bleu_kmax), 2),
            format!("{}/{}", paper(paper_numbers, name, "bleu"), paper(paper_numbers, name, "bleu_kmax")),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// Deng et al. Table 3: inference alternatives (REINFORCE = var-sample, RWS, Gumbel-softmax)
/// and the prior alignment entropy of every row.
pub fn nmt_table3(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value) -> Table {
    let header = ["row", "method", "samples", "PPL", "paper PPL", "BLEU", "paper BLEU", "prior entropy", "paper entropy"];
    let alternatives = [("var-sample", "REINFORCE", "1"), ("rws", "RWS", "5"), ("gumbel", "Gumbel-softmax", "1")];
    let mut rows = vec![];
    for name in NMT_ROWS {
        let Some(rs) = results.get(name) else { continue };
        let (method, samples) = alternatives
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, m, k)| (m.to_string(), k.to_string()))
            .unwrap_or(("–".into(), "–".into()));
        rows.push(vec![
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
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// The rows of the WMT17 En->De line (configs/wmt17), in table order.
pub const WMT17_ROWS: [&str; 3] = ["soft", "var-enum", "var-sample"];

/// Deng et al.'s WMT17 En->De line: BLEU of soft against variational attention, with PPL and
/// the training speed relative to soft attention (the paper's "comparable speed" claim):
/// `speed vs soft = tok/s(row) / tok/s(soft)` on the mean over seeds.
pub fn wmt17_table(results: &BTreeMap<String, Vec<NmtResult>>, paper_numbers: &toml::Value) -> Table {
    let header = ["row", "BLEU", "paper BLEU", "PPL", "prior entropy", "train tok/s", "speed vs soft", "train s", "seeds"];
    let soft_speed = results.get("soft").map(|rs| mean_std(&field(rs, |r| Some(r.train_tokens_per_second))).0);
    let mut rows = vec![];
    for name in WMT17_ROWS {
        let Some(rs) = results.get(name) else { continue };
        let speed = mean_std(&field(rs, |r| Some(r.train_tokens_per_second))).0;
        rows.push(vec![
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
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// The WMT17 line's claims: variational attention beats soft attention in BLEU, and trains at
/// a speed comparable to it (at least 1/1.3 of soft attention's tokens per second, the
/// performance issue's reading of "comparable").
pub fn wmt17_claims(results: &BTreeMap<String, Vec<NmtResult>>) -> Vec<Claim> {
    let mean = |n: &str, f: fn(&NmtResult) -> f64| results.get(n).map(|rs| mean_std(&field(rs, |r| Some(f(r)))).0);
    let show = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or("–".into());
    let mut out = vec![];
    for row in ["var-sample", "var-enum"] {
        let (b, s) = (mean(row, |r| r.bleu), mean("soft", |r| r.bleu));
        out.push(Claim {
            claim: format!("WMT17 En->De: BLEU({row}) > BLEU(soft)"),
            holds: b.zip(s).map(|(b, s)| b > s),
            detail: format!("{} vs {}", show(b, 2), show(s, 2)),
        });
    }
    let (v, s) = (mean("var-sample", |r| r.train_tokens_per_second), mean("soft", |r| r.train_tokens_per_second));
    out.push(Claim {
        claim: "WMT17 En->De: var-sample trains at >= 1/1.3 of soft's tokens/s".into(),
        holds: v.zip(s).map(|(v, s)| v * 1.3 >= s),
        detail: format!("{} vs {} tok/s", show(v, 0), show(s, 0)),
    });
    out
}

/// The VQA rows in table order (the paper's six, then the relaxed row and the Table 3
/// alternatives, then the low-data condition).
pub const VQA_ROWS: [&str; 12] = [
    "soft", "exact", "hard-enum", "hard-sample", "var-enum", "var-sample", "relaxed-dirichlet", "gumbel", "rws",
    "soft-lowdata", "exact-lowdata", "var-enum-lowdata",
];

/// Deng et al. Table 1 (VQA columns) on easy-VQA, with the noisy and low-data conditions.
pub fn vqa_table1(results: &BTreeMap<String, Vec<VqaResult>>, paper_numbers: &toml::Value) -> Table {
    let header = [
        "row", "train images", "NLL", "paper NLL", "accuracy %", "paper Eval", "ECE", "noisy NLL", "noisy accuracy %", "noisy ECE",
        "prior entropy", "paper entropy", "train s", "seeds",
    ];
    let mut rows = vec![];
    for name in VQA_ROWS {
        let Some(rs) = results.get(name) else { continue };
        let f = |g: &dyn Fn(&VqaResult) -> f64| rs.iter().map(g).filter(|x| x.is_finite()).collect::<Vec<f64>>();
        rows.push(vec![
            name.to_string(),
            format!("{:.0}%", 100.0 * rs[0].train_image_fraction),
            fmt_ms(&f(&|r| r.test.nll), 3),
            paper(paper_numbers, name, "nll"),
            fmt_ms(&f(&|r| 100.0 * r.test.accuracy), 2),
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
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// The paper's VQA orderings, checked on mean test NLL.
pub fn vqa_claims(results: &BTreeMap<String, Vec<VqaResult>>) -> Vec<Claim> {
    let nll = |n: &str| results.get(n).map(|rs| mean_std(&rs.iter().map(|r| r.test.nll).collect::<Vec<_>>()).0);
    let mut out = vec![];
    let mut less = |a: &str, b: &str, what: &str| {
        let (pa, pb) = (nll(a), nll(b));
        out.push(Claim {
            claim: format!("{what}: NLL({a}) < NLL({b})"),
            holds: pa.zip(pb).map(|(x, y)| x < y),
            detail: format!("{} vs {}", pa.map(|v| format!("{v:.3}")).unwrap_or("–".into()), pb.map(|v| format!("{v:.3}")).unwrap_or("–".into())),
        });
    };
    less("exact", "soft", "exact marginal beats soft");
    less("var-enum", "soft", "variational (enum) beats soft");
    less("soft", "hard-enum", "hard attention is worse than soft");
    less("soft", "hard-sample", "hard attention (sample) is worse than soft");
    less("exact-lowdata", "soft-lowdata", "exact marginal beats soft with 10% of the images");
    out
}

/// Finished grapheme-to-phoneme runs under `runs_dir/<row>/seed-*/result.json`, grouped by row.
pub fn collect_g2p(runs_dir: &Path) -> Result<BTreeMap<String, Vec<G2pResult>>> {
    collect(runs_dir, |r: &G2pResult| r.name.clone())
}

/// The estimators of the g2p table, in order; row `<e>` trains on clean letters, `<e>-noisy` on
/// corrupted ones.
pub const G2P_ROWS: [&str; 4] = ["reinforce", "nvil", "vimco", "vimco-per-step"];

fn g2p_field(rs: Option<&Vec<G2pResult>>, f: impl Fn(&G2pResult) -> f64) -> Vec<f64> {
    rs.map(|rs| rs.iter().map(f).filter(|x| x.is_finite()).collect()).unwrap_or_default()
}

/// One row per estimator: PER clean (clean-trained row, clean test letters) and noisy
/// (noisy-trained row, noisy test letters), the test bound L_K per phoneme, the gradient
/// variance at initialisation and after training, the learning signal's mean square, and
/// training time of both runs.
pub fn g2p_table(results: &BTreeMap<String, Vec<G2pResult>>) -> Table {
    let header = [
        "estimator", "K", "PER clean %", "PER noisy %", "letter noise", "bound L_K / phoneme (clean)", "grad var init", "grad var final (clean)",
        "grad var final (noisy)", "signal mean square (clean)", "train s clean", "train s noisy", "seeds",
    ];
    let mut rows = vec![];
    for name in G2P_ROWS {
        let clean = results.get(name);
        let noisy = results.get(&format!("{name}-noisy"));
        let Some(any) = clean.or(noisy) else { continue };
        let sci = |xs: &[f64]| if xs.is_empty() { "–".to_string() } else { format!("{:.3e}", mean_std(xs).0) };
        rows.push(vec![
            name.to_string(),
            any[0].samples.to_string(),
            fmt_ms(&g2p_field(clean, |r| 100.0 * r.test_per), 2),
            fmt_ms(&g2p_field(noisy, |r| 100.0 * r.test_noisy_per), 2),
            noisy.map(|rs| format!("{}", rs[0].train_noise)).unwrap_or("–".into()),
            fmt_ms(&g2p_field(clean, |r| r.test_bound_per_label), 3),
            sci(&g2p_field(clean.or(noisy), |r| r.grad_variance_init)),
            sci(&g2p_field(clean, |r| r.grad_variance_final)),
            sci(&g2p_field(noisy, |r| r.grad_variance_final)),
            sci(&g2p_field(clean, |r| r.signal_mean_square)),
            fmt_ms(&g2p_field(clean, |r| r.train_seconds), 0),
            fmt_ms(&g2p_field(noisy, |r| r.train_seconds), 0),
            any.iter().map(|r| r.seed.to_string()).collect::<Vec<_>>().join(" "),
        ]);
    }
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// The rows of the alignment-attention / Bayesian-attention table, in table order: the plain
/// single-head soft row for reference, the multi-head base, AA-CT, AA-GAN, AA-OT, BAM (constant
/// and contextual prior), the two-hop base and BABN.
pub const VQA_BAYES_ROWS: [&str; 9] =
    ["soft", "multihead", "aa-ct", "aa-gan", "aa-ot", "bam", "bam-contextual", "multihead-2hop", "babn"];

/// Zhang et al. (2021) / Fan et al. (2020) on easy-VQA: clean and noisy accuracy, NLL, ECE,
/// PAvPU and seconds per training step, beside the paper's MCAN VQA-v2 numbers.
pub fn vqa_bayes_table(results: &BTreeMap<String, Vec<VqaResult>>, paper_numbers: &toml::Value) -> Table {
    let header = [
        "row", "accuracy %", "paper acc", "NLL", "ECE", "PAvPU %", "paper PAvPU", "noisy accuracy %", "paper noisy acc", "noisy NLL",
        "noisy ECE", "noisy PAvPU %", "paper noisy PAvPU", "s/step", "× base", "paper s/step", "params", "seeds",
    ];
    let base = results.get("multihead").and_then(|rs| {
        let v: Vec<f64> = rs.iter().filter_map(|r| r.seconds_per_step()).collect();
        (!v.is_empty()).then(|| mean_std(&v).0)
    });
    let mut rows = vec![];
    for name in VQA_BAYES_ROWS {
        let Some(rs) = results.get(name) else { continue };
        let f = |g: &dyn Fn(&VqaResult) -> Option<f64>| rs.iter().filter_map(g).filter(|x| x.is_finite()).collect::<Vec<f64>>();
        let step = f(&|r| r.seconds_per_step());
        rows.push(vec![
            name.to_string(),
            fmt_ms(&f(&|r| Some(100.0 * r.test.accuracy)), 2),
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
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

/// Lawson et al.'s orderings: the multi-sample estimators reach a lower PER than REINFORCE, and
/// the gap grows when the task is harder (noisy letters); VIMCO's gradient variance is lower.
pub fn g2p_claims(results: &BTreeMap<String, Vec<G2pResult>>) -> Vec<Claim> {
    let mean = |row: &str, f: &dyn Fn(&G2pResult) -> f64| -> Option<f64> {
        results.get(row).map(|rs| mean_std(&rs.iter().map(f).collect::<Vec<_>>()).0)
    };
    let clean = |row: &str| mean(row, &|r: &G2pResult| r.test_per);
    let noisy = |row: &str| mean(&format!("{row}-noisy"), &|r: &G2pResult| r.test_noisy_per);
    let f3 = |x: Option<f64>| x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or("–".into());
    let mut out = vec![];
    for (a, b) in [("vimco", "reinforce"), ("vimco-per-step", "reinforce"), ("nvil", "reinforce")] {
        out.push(Claim {
            claim: format!("{a} reaches a PER no higher than {b} (clean letters)"),
            holds: clean(a).zip(clean(b)).map(|(x, y)| x <= y),
            detail: format!("{} vs {}", f3(clean(a)), f3(clean(b))),
        });
        out.push(Claim {
            claim: format!("{a} reaches a PER no higher than {b} (noisy letters)"),
            holds: noisy(a).zip(noisy(b)).map(|(x, y)| x <= y),
            detail: format!("{} vs {}", f3(noisy(a)), f3(noisy(b))),
        });
    }
    for a in ["vimco", "vimco-per-step"] {
        let gap_clean = clean("reinforce").zip(clean(a)).map(|(r, v)| r - v);
        let gap_noisy = noisy("reinforce").zip(noisy(a)).map(|(r, v)| r - v);
        out.push(Claim {
            claim: format!("the PER gap reinforce - {a} is larger with noisy letters"),
            holds: gap_noisy.zip(gap_clean).map(|(n, c)| n > c),
            detail: format!("noisy {} vs clean {} (PER points)", f3(gap_noisy), f3(gap_clean)),
        });
    }
    let gv = |row: &str| mean(row, &|r: &G2pResult| r.grad_variance_init);
    for a in ["nvil", "vimco", "vimco-per-step"] {
        out.push(Claim {
            claim: format!("{a} has a lower gradient variance than reinforce at the same (initial) parameters"),
            holds: gv(a).zip(gv("reinforce")).map(|(x, y)| x < y),
            detail: format!(
                "{} vs {}",
                gv(a).map(|v| format!("{v:.3e}")).unwrap_or("–".into()),
                gv("reinforce").map(|v| format!("{v:.3e}")).unwrap_or("–".into())
            ),
        });
    }
    out
}
/// The orderings Zhang et al. (2021) and Fan et al. (2020) report, checked on this run's means.
pub fn vqa_bayes_claims(results: &BTreeMap<String, Vec<VqaResult>>) -> Vec<Claim> {
    let metric = |n: &str, g: &dyn Fn(&VqaResult) -> Option<f64>| {
        let v: Vec<f64> = results.get(n)?.iter().filter_map(g).collect();
        (!v.is_empty()).then(|| mean_std(&v).0)
    };
    let mut out = vec![];
    let mut cmp = |a: &str, b: &str, what: &str, label: &str, higher: bool, g: &dyn Fn(&VqaResult) -> Option<f64>| {
        let (va, vb) = (metric(a, g), metric(b, g));
        let rel = if higher { ">" } else { "<" };
        out.push(Claim {
            claim: format!("{what}: {label}({a}) {rel} {label}({b})"),
            holds: va.zip(vb).map(|(x, y)| if higher { x > y } else { x < y }),
            detail: format!("{} vs {}", va.map(|v| format!("{v:.4}")).unwrap_or("–".into()), vb.map(|v| format!("{v:.4}")).unwrap_or("–".into())),
        });
    };
    let acc = |r: &VqaResult| Some(r.test.accuracy);
    let noisy = |r: &VqaResult| Some(r.test_noisy.accuracy);
    let pav = |r: &VqaResult| r.test.pavpu;
    let npav = |r: &VqaResult| r.test_noisy.pavpu;
    let ece = |r: &VqaResult| Some(r.test.ece);
    let step = |r: &VqaResult| r.seconds_per_step();
    cmp("aa-ct", "multihead", "AA-CT improves accuracy (AA Table: 67.01 vs 66.74)", "acc", true, &acc);
    cmp("aa-gan", "multihead", "AA-GAN improves accuracy (66.92 vs 66.74)", "acc", true, &acc);
    cmp("aa-ct", "multihead", "AA-CT is more robust to noisy features (64.57 vs 63.58)", "noisy acc", true, &noisy);
    cmp("aa-gan", "multihead", "AA-GAN is more robust to noisy features (64.28 vs 63.58)", "noisy acc", true, &noisy);
    cmp("aa-ct", "aa-gan", "AA-CT beats AA-GAN on noisy features (64.57 vs 64.28)", "noisy acc", true, &noisy);
    cmp("aa-ct", "multihead", "AA-CT improves PAvPU (72.21 vs 71.96)", "PAvPU", true, &pav);
    cmp("aa-ct", "multihead", "AA-CT improves noisy PAvPU (69.98 vs 68.29)", "noisy PAvPU", true, &npav);
    cmp("aa-ot", "multihead", "AA-OT improves accuracy", "acc", true, &acc);
    cmp("multihead", "aa-gan", "AA-GAN costs more per step than the base (0.31 vs 0.25 s)", "s/step", false, &step);
    cmp("aa-gan", "aa-ct", "AA-CT costs more per step than AA-GAN (0.36 vs 0.31 s)", "s/step", false, &step);
    cmp("bam", "multihead", "BAM improves accuracy (Fan et al.)", "acc", true, &acc);
    cmp("bam", "multihead", "BAM is better calibrated", "ECE", false, &ece);
    cmp("bam", "multihead", "BAM improves PAvPU", "PAvPU", true, &pav);
    cmp("bam-contextual", "bam", "the contextual prior beats the constant prior", "acc", true, &acc);
    cmp("babn", "multihead-2hop", "BABN improves accuracy over its deterministic base", "acc", true, &acc);
    cmp("babn", "multihead-2hop", "BABN improves PAvPU over its deterministic base", "PAvPU", true, &pav);
    out
}

/// One claim of the paper checked against this run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    pub claim: String,
    pub holds: Option<bool>,
    pub detail: String,
}

/// The orderings of Table 1 that the paper reports, checked on mean test PPL.
pub fn nmt_claims(results: &BTreeMap<String, Vec<NmtResult>>) -> Vec<Claim> {
    let ppl = |n: &str| results.get(n).map(|rs| mean_std(&field(rs, |r| Some(r.test_ppl))).0);
    let mut out = vec![];
    let mut less = |a: &str, b: &str, what: &str| {
        let (pa, pb) = (ppl(a), ppl(b));
        out.push(Claim {
            claim: format!("{what}: PPL({a}) < PPL({b})"),
            holds: pa.zip(pb).map(|(x, y)| x < y),
            detail: format!("{} vs {}", pa.map(|v| format!("{v:.3}")).unwrap_or("–".into()), pb.map(|v| format!("{v:.3}")).unwrap_or("–".into())),
        });
    };
    less("exact", "soft", "exact marginal beats soft");
    less("var-enum", "soft", "variational (enum) beats soft");
    less("var-sample", "soft", "variational (sample) beats soft");
    less("soft", "hard-enum", "hard attention is worse than soft");
    less("soft", "hard-sample", "hard attention (sample) is worse than soft");
    less("var-sample", "hard-sample", "variational sampling beats hard sampling");
    less("soft", "relaxed-dirichlet", "the relaxed Dirichlet row is worse than soft");
    less("var-sample", "gumbel", "REINFORCE beats Gumbel-softmax (Table 3)");
    less("var-sample", "rws", "REINFORCE beats RWS (Table 3)");
    out
}

pub fn claims_markdown(claims: &[Claim]) -> String {
    let mut s = String::from("| claim | holds here | ours |\n|---|---|---|\n");
    for c in claims {
        let h = match c.holds {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not run",
        };
        s.push_str(&format!("| {} | {h} | {} |\n", c.claim, c.detail));
    }
    s
}

/// The closing one-screen summary of `varattn report`: for every table written, how many of its
/// claims hold, then one line per claim (`yes`, `no`, or `–` for a claim whose rows did not run)
/// with our numbers.
pub fn claims_summary(preset: &str, parts: &[(String, Vec<Claim>)]) -> String {
    let mut s = format!("== which of the papers' claims hold in this run (preset `{preset}`)\n");
    if parts.is_empty() {
        s.push_str("no finished runs, no claims to check\n");
    }
    for (title, claims) in parts {
        let held = claims.iter().filter(|c| c.holds == Some(true)).count();
        let checked = claims.iter().filter(|c| c.holds.is_some()).count();
        s.push_str(&format!("{title}: {held} of {checked} checked claims hold\n"));
        for c in claims {
            let h = match c.holds {
                Some(true) => "yes",
                Some(false) => "no ",
                None => "–  ",
            };
            s.push_str(&format!("  {h} {} ({})\n", c.claim, c.detail));
        }
    }
    s
}

/// Figures of the NMT runs: validation PPL per epoch for every row (first seed), and test PPL
/// against K for the latent rows, as `<dir>/nmt-valid-ppl.{png,svg}` and `<dir>/nmt-ppl-vs-k.*`.
pub fn nmt_figures(results: &BTreeMap<String, Vec<NmtResult>>, dir: &Path) -> Result<()> {
    let mut curves = vec![];
    let mut ks = vec![];
    for name in NMT_ROWS {
        let Some(r) = results.get(name).and_then(|rs| rs.first()) else { continue };
        let pts: Vec<(f64, f64)> = r.history.iter().map(|e| (e.epoch as f64, e.valid_ppl)).filter(|p| p.1.is_finite()).collect();
        if !pts.is_empty() {
            curves.push((name.to_string(), pts));
        }
        if !r.ppl_against_k.is_empty() {
            ks.push((name.to_string(), r.ppl_against_k.iter().map(|&(k, p)| (k as f64, p)).collect()));
        }
    }
    if !curves.is_empty() {
        super::plot::line_chart(&dir.join("nmt-valid-ppl"), "Validation perplexity per epoch", "epoch", "PPL", &curves)?;
    }
    if !ks.is_empty() {
        super::plot::line_chart(&dir.join("nmt-ppl-vs-k"), "Test perplexity with K-Max", "K", "PPL", &ks)?;
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

    fn nmt_result(name: &str, seed: u64, bleu: f64, tok_s: f64) -> NmtResult {
        NmtResult {
            name: name.into(),
            seed,
            preset: "paper".into(),
            config_hash: "0".into(),
            git_revision: None,
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
            bleu_sentences: 3,
            train_tokens_per_second: tok_s,
            train_seconds: 1.0,
            epochs: 1,
            history: vec![],
            dropped_too_long: 0,
        }
    }

    #[test]
    fn wmt17_table_puts_the_paper_bleu_beside_ours_and_speed_relative_to_soft() {
        let paper: toml::Value = toml::from_str("[soft]\nbleu = 24.10\n[var-sample]\nbleu = 24.98\n").unwrap();
        let mut rs = BTreeMap::new();
        rs.insert("soft".to_string(), vec![nmt_result("soft", 1, 20.0, 1000.0), nmt_result("soft", 2, 22.0, 1000.0)]);
        rs.insert("var-sample".to_string(), vec![nmt_result("var-sample", 1, 23.0, 700.0)]);
        let t = wmt17_table(&rs, &paper);
        assert_eq!(t.column("row").unwrap(), ["soft", "var-sample"]);
        assert_eq!(t.column("BLEU").unwrap(), ["21.00 ± 1.41", "23.00"]);
        assert_eq!(t.column("paper BLEU").unwrap(), ["24.10", "24.98"]);
        assert_eq!(t.column("speed vs soft").unwrap(), ["1.00", "0.70"]);
        assert_eq!(t.column("seeds").unwrap(), ["1 2", "1"]);
        let claims = wmt17_claims(&rs);
        let holds: Vec<Option<bool>> = claims.iter().map(|c| c.holds).collect();
        // BLEU 23 > 21 holds; var-enum was not run; 700 * 1.3 = 910 < 1000 tok/s: not comparable
        assert_eq!(holds, [Some(true), None, Some(false)]);
        let summary = claims_summary("paper", &[("WMT17, claims-wmt17.md".into(), claims)]);
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines[1], "WMT17, claims-wmt17.md: 1 of 2 checked claims hold", "{summary}");
        assert_eq!(lines[2], "  yes WMT17 En->De: BLEU(var-sample) > BLEU(soft) (23.00 vs 21.00)");
        assert!(lines[3].starts_with("  –   WMT17 En->De: BLEU(var-enum)") && lines[4].starts_with("  no  WMT17"), "{summary}");
        assert_eq!(lines.len(), 5);
    }
}
