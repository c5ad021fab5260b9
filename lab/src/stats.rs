//! Small statistics for deciding claims: mean and sample standard deviation, the Student-t
//! quantile, the paired t interval, Student's two-sample t-test and the percentile bootstrap.
use crate::rng::SeededRng;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() > 1 { (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

/// How an interval was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// t interval over `seeds` per-seed paired statistics.
    PairedSeeds { seeds: usize },
    /// Percentile bootstrap over `items` test items of one seed, `resamples` resamples.
    PairedBootstrap { items: usize, resamples: usize },
}

impl Method {
    pub fn describe(&self) -> String {
        match self {
            Method::PairedSeeds { seeds } => format!("paired t over {seeds} seeds"),
            Method::PairedBootstrap { items, .. } => format!("paired bootstrap over {items} test items, 1 seed"),
        }
    }
}

/// A 95% interval of a claim's statistic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    /// The statistic on all seeds (their mean) or on all items.
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    pub method: Method,
}

impl Interval {
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

/// `t_{1−α/2, df}`, the two-sided Student-t quantile.
pub fn t_quantile(level: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).expect("df > 0").inverse_cdf(0.5 + level / 2.0)
}

/// The 95% t interval of the mean of paired differences `d` (at least two).
pub fn paired_t_interval(d: &[f64]) -> Option<Interval> {
    let n = d.len();
    if n < 2 || d.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let (mean, sd) = mean_std(d);
    let half = t_quantile(0.95, (n - 1) as f64) * sd / (n as f64).sqrt();
    Some(Interval { estimate: mean, lo: mean - half, hi: mean + half, method: Method::PairedSeeds { seeds: n } })
}

/// Student's two-sample t-test with pooled variance (SciPy's `ttest_ind` default): the two-sided
/// p-value of H0: equal means, 2 P(T_df > |t|) by statrs's Student-t survival function, with
/// t = (m₁ - m₂) / (s_p √(1/n₁ + 1/n₂)), s_p² = ((n₁-1)s₁² + (n₂-1)s₂²)/(n₁+n₂-2) and
/// df = n₁+n₂-2. With zero pooled variance the p-value is 1 for equal means and 0 otherwise.
/// Needs n₁ + n₂ > 2 and both samples non-empty.
pub fn two_sample_t_test(x: &[f64], y: &[f64]) -> f64 {
    assert!(x.len() + y.len() > 2 && !x.is_empty() && !y.is_empty(), "t-test needs more than two observations");
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (m1, m2) = (mean(x), mean(y));
    let ss = |v: &[f64], m: f64| v.iter().map(|z| (z - m).powi(2)).sum::<f64>();
    let df = n1 + n2 - 2.0;
    let sp2 = (ss(x, m1) + ss(y, m2)) / df;
    let se = (sp2 * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return if m1 == m2 { 1.0 } else { 0.0 };
    }
    2.0 * StudentsT::new(0.0, 1.0, df).expect("df > 0").sf(((m1 - m2) / se).abs())
}

/// Percentile bootstrap of `stat` over `n` items: `stat(idx)` gets a multiset of item indices
/// (all items for the point estimate, resamples with replacement for the interval).
pub fn bootstrap_interval(n: usize, resamples: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Option<Interval> {
    if n < 2 || resamples < 2 {
        return None;
    }
    let all: Vec<usize> = (0..n).collect();
    let estimate = stat(&all);
    let mut rng = SeededRng::new(seed);
    let mut idx = vec![0usize; n];
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for i in idx.iter_mut() {
            *i = rng.next_index(n);
        }
        stats.push(stat(&idx));
    }
    if !estimate.is_finite() || stats.iter().any(|s| !s.is_finite()) {
        return None;
    }
    stats.sort_by(|a, b| a.total_cmp(b));
    Some(Interval {
        estimate,
        lo: percentile(&stats, 0.025),
        hi: percentile(&stats, 0.975),
        method: Method::PairedBootstrap { items: n, resamples },
    })
}

/// Linear-interpolated percentile of sorted values (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] + f * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

