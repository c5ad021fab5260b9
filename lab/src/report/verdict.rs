//! A paper's claim decided with uncertainty.
//!
//! A claim is a statistic `S = Σ_j c_j m_j` over the metrics `m_j` of some table rows (e.g.
//! `S = PPL(soft) − PPL(exact)` for "exact beats soft"), signed so that the paper says `S > 0`.
//! Its 95% interval comes from
//! * **paired seeds**, when every row ran the same `n ≥ 2` seeds (same seed = same initial
//!   weights and batches): the t interval of the per-seed statistics `S_s`,
//!   `S̄ ± t_{0.975, n−1} · sd(S_s) / √n`;
//! * **a paired bootstrap over test items**, when the rows share one seed and kept per-item
//!   sufficient statistics of the same test items (sentences, questions, words): `B` resamples
//!   of the item indices, the same indices for every row, `S` recomputed from each resample;
//!   the interval is the 2.5 and 97.5 percentiles.
//!
//! The verdict is **holds** when the whole interval is above 0, **contradicted** when it is
//! below 0 and **inconclusive** otherwise; a claim whose rows have no common seed is **not
//! run**. An inconclusive claim reports the interval's half-width: effects smaller than that
//! cannot be resolved at this budget.
pub use crate::stats::{bootstrap_interval, paired_t_interval, t_quantile, Interval, Method};
use serde::Serialize;

/// Bootstrap resamples of a one-seed claim.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Seed of the bootstrap's resampling (fixed: a report is a function of its runs).
pub const BOOTSTRAP_SEED: u64 = 20_181_204;

/// The three-valued verdict, plus `NotRun` for a claim whose rows did not all run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    Contradicted,
    Inconclusive,
    NotRun,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotRun => "not run",
        }
    }

    /// The verdict of an interval of a statistic the paper says is positive.
    pub fn of_interval(iv: &Interval) -> Verdict {
        Verdict::of(iv.lo, iv.hi)
    }

    /// The verdict of the interval [lo, hi] of a statistic the paper says is positive.
    pub fn of(lo: f64, hi: f64) -> Verdict {
        if lo > 0.0 {
            Verdict::Holds
        } else if hi < 0.0 {
            Verdict::Contradicted
        } else {
            Verdict::Inconclusive
        }
    }
}

/// How a per-item metric is formed from its sufficient statistics: `link(Σ num / Σ den)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    Identity,
    /// `exp` of the ratio: perplexity from per-sentence NLL sums and token counts.
    Exp,
}

/// Per-item sufficient statistics of a metric on one run: `m = link(Σ_i num_i / Σ_i den_i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Items {
    pub num: Vec<f64>,
    pub den: Vec<f64>,
    pub link: Link,
}

impl Items {
    /// Mean of per-item values (den = 1 each).
    pub fn mean_of(values: Vec<f64>) -> Items {
        let den = vec![1.0; values.len()];
        Items { num: values, den, link: Link::Identity }
    }
    pub fn metric(&self, idx: &[usize]) -> f64 {
        let (n, d) = idx.iter().fold((0.0, 0.0), |(n, d), &i| (n + self.num[i], d + self.den[i]));
        match self.link {
            Link::Identity => n / d,
            Link::Exp => (n / d).exp(),
        }
    }
}

/// One run's measurement of a row's metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub seed: u64,
    pub value: f64,
    pub items: Option<Items>,
}

/// One term `c · m` of a claim's statistic: a coefficient and the row's runs.
pub struct Term {
    pub coef: f64,
    pub runs: Vec<Measure>,
}

/// The interval of `S = Σ c_j m_j`: paired t over the seeds every term ran when there are at
/// least two, else a paired bootstrap over items when the single common seed's runs all kept
/// items of the same length. `Err` says why there is none.
pub fn claim_interval(terms: &[Term]) -> Result<Interval, String> {
    if terms.iter().any(|t| t.runs.is_empty()) {
        return Err("not run".into());
    }
    let mut seeds: Vec<u64> = terms[0].runs.iter().map(|m| m.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    seeds.retain(|s| terms.iter().all(|t| t.runs.iter().any(|m| m.seed == *s)));
    fn at(t: &Term, s: u64) -> &Measure {
        t.runs.iter().find(|m| m.seed == s).expect("common seed")
    }
    match seeds.len() {
        0 => Err("the rows share no seed".into()),
        1 => {
            let s = seeds[0];
            let items: Option<Vec<(&Items, f64)>> = terms.iter().map(|t| at(t, s).items.as_ref().map(|i| (i, t.coef))).collect();
            let Some(items) = items else { return Err("one seed and no per-item results: run more seeds".into()) };
            let n = items[0].0.num.len();
            if items.iter().any(|(i, _)| i.num.len() != n || i.den.len() != n) {
                return Err("one seed and the rows' test items differ".into());
            }
            bootstrap_interval(n, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, |idx| items.iter().map(|(i, c)| c * i.metric(idx)).sum())
                .ok_or_else(|| "too few items or a non-finite metric".into())
        }
        _ => {
            let d: Vec<f64> = seeds.iter().map(|&s| terms.iter().map(|t| t.coef * at(t, s).value).sum()).collect();
            paired_t_interval(&d).ok_or_else(|| "a non-finite metric".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // scipy.stats.t.ppf(0.975, df)
        for (df, t) in [(1.0, 12.706204736174705), (2.0, 4.302652729911275), (4.0, 2.7764451051977987), (9.0, 2.2621571627409915)] {
            assert!((t_quantile(0.95, df) - t).abs() < 1e-9, "df {df}: {} vs {t}", t_quantile(0.95, df));
        }
    }

    #[test]
    fn a_paired_t_verdict_matches_the_hand_computed_interval() {
        // PPL(soft) - PPL(exact) over three seeds: 2.0, 3.0, 4.0 → mean 3, sd 1,
        // half-width 4.302652729911275 / √3 = 2.4841... → [0.5159, 5.4841]: holds.
        let m = |seed, value| Measure { seed, value, items: None };
        let soft = Term { coef: 1.0, runs: vec![m(1, 60.0), m(2, 61.0), m(3, 62.0)] };
        let exact = Term { coef: -1.0, runs: vec![m(1, 58.0), m(2, 58.0), m(3, 58.0)] };
        let iv = claim_interval(&[soft, exact]).unwrap();
        let half = 4.302652729911275 / 3f64.sqrt();
        assert!((iv.estimate - 3.0).abs() < 1e-12);
        assert!((iv.lo - (3.0 - half)).abs() < 1e-9 && (iv.hi - (3.0 + half)).abs() < 1e-9, "{iv:?}");
        assert_eq!(Verdict::of_interval(&iv), Verdict::Holds);
        assert_eq!(iv.method, Method::PairedSeeds { seeds: 3 });
        // the same means with a noisier seed: 0, 3, 6 → sd 3, half 7.45 → inconclusive
        let soft = Term { coef: 1.0, runs: vec![m(1, 58.0), m(2, 61.0), m(3, 64.0)] };
        let exact = Term { coef: -1.0, runs: vec![m(1, 58.0), m(2, 58.0), m(3, 58.0)] };
        let iv = claim_interval(&[soft, exact]).unwrap();
        assert_eq!(Verdict::of_interval(&iv), Verdict::Inconclusive);
        // the other side: contradicted
        let soft = Term { coef: -1.0, runs: vec![m(1, 60.0), m(2, 61.0), m(3, 62.0)] };
        let exact = Term { coef: 1.0, runs: vec![m(1, 58.0), m(2, 58.0), m(3, 58.0)] };
        assert_eq!(Verdict::of_interval(&claim_interval(&[soft, exact]).unwrap()), Verdict::Contradicted);
    }

    #[test]
    fn seeds_are_paired_not_pooled() {
        // seed 9 ran for one row only: it is left out
        let m = |seed, value| Measure { seed, value, items: None };
        let a = Term { coef: 1.0, runs: vec![m(1, 10.0), m(2, 11.0), m(9, 100.0)] };
        let b = Term { coef: -1.0, runs: vec![m(2, 10.0), m(1, 9.0)] };
        let iv = claim_interval(&[a, b]).unwrap();
        assert_eq!(iv.method, Method::PairedSeeds { seeds: 2 });
        assert!((iv.estimate - 1.0).abs() < 1e-12 && iv.lo == iv.hi, "{iv:?}"); // differences 1, 1
        let none = Term { coef: 1.0, runs: vec![] };
        assert_eq!(claim_interval(&[none]).unwrap_err(), "not run");
    }

    #[test]
    fn bootstrap_interval_of_a_mean_is_close_to_the_normal_one() {
        // 400 items, values i mod 10: mean 4.5, sd 2.876 → normal 95% half-width 1.96·sd/√n = 0.2819
        let vals: Vec<f64> = (0..400).map(|i| (i % 10) as f64).collect();
        let items = Items::mean_of(vals.clone());
        let iv = bootstrap_interval(400, 4000, 1, |idx| items.metric(idx)).unwrap();
        let (m, sd) = crate::stats::mean_std(&vals);
        let half = 1.959963984540054 * sd / 20.0;
        assert!((iv.estimate - m).abs() < 1e-12);
        assert!((iv.half_width() - half).abs() < 0.03 * half + 0.01, "{iv:?} vs ±{half}");
        assert!(iv.lo < m && m < iv.hi);
    }

    #[test]
    fn one_seed_uses_the_paired_bootstrap_over_shared_items() {
        // row a's per-sentence NLL is row b's minus 0.1 on every sentence: PPL(b) > PPL(a) on
        // every resample, so "a beats b" holds even though the sentences vary a lot.
        let b_nll: Vec<f64> = (0..200).map(|i| 5.0 + 3.0 * ((i * 7919) % 13) as f64).collect();
        let tokens: Vec<f64> = (0..200).map(|i| 3.0 + (i % 5) as f64).collect();
        let a_nll: Vec<f64> = b_nll.iter().zip(&tokens).map(|(x, t)| x - 0.1 * t).collect();
        let ppl = |nll: &[f64]| Items { num: nll.to_vec(), den: tokens.clone(), link: Link::Exp };
        let meas = |nll: &[f64]| Measure { seed: 3435, value: ppl(nll).metric(&(0..200).collect::<Vec<_>>()), items: Some(ppl(nll)) };
        let iv = claim_interval(&[Term { coef: 1.0, runs: vec![meas(&b_nll)] }, Term { coef: -1.0, runs: vec![meas(&a_nll)] }]).unwrap();
        assert_eq!(Verdict::of_interval(&iv), Verdict::Holds, "{iv:?}");
        assert!(matches!(iv.method, Method::PairedBootstrap { items: 200, .. }));
        // exact statistic on all items: exp(mean b) − exp(mean b − 0.1)
        let mb = b_nll.iter().sum::<f64>() / tokens.iter().sum::<f64>();
        assert!((iv.estimate - (mb.exp() - (mb - 0.1).exp())).abs() < 1e-9);
        // unpaired, the same gap would be swamped by the spread between sentences
        let no_items = |nll: &[f64]| Measure { items: None, ..meas(nll) };
        let err = claim_interval(&[Term { coef: 1.0, runs: vec![no_items(&b_nll)] }, Term { coef: -1.0, runs: vec![no_items(&a_nll)] }]);
        assert!(err.unwrap_err().contains("one seed"));
    }
}
