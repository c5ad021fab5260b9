//! Corpus chrF (Popović 2015) as sacrebleu computes it with its defaults (`chrF2`: character
//! n-grams of orders 1..6, no word n-grams, β = 2, whitespace removed, no ε-smoothing).
//!
//! For each order n the hypothesis, reference and matched n-gram counts are summed over the
//! corpus (a hypothesis n-gram is counted only when the reference has n-grams of that order);
//! precision P_n and recall R_n are averaged over the orders where both counts are positive,
//! and chrF = 100 · (1 + β²) P̄ R̄ / (β² P̄ + R̄).
use std::collections::HashMap;

/// Maximum character n-gram order of sacrebleu's default chrF.
pub const CHAR_ORDER: usize = 6;
/// Recall weight of sacrebleu's default chrF.
pub const BETA: f64 = 2.0;

/// Character n-gram counts of orders 1..=order of a line's non-whitespace characters.
fn char_ngrams(chars: &[char], order: usize) -> Vec<HashMap<&[char], usize>> {
    (1..=order)
        .map(|n| {
            let mut m = HashMap::new();
            for g in chars.windows(n) {
                *m.entry(g).or_insert(0) += 1;
            }
            m
        })
        .collect()
}

fn non_whitespace(line: &str) -> Vec<char> {
    line.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Corpus chrF of hypotheses against one reference each, in percent.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[R]) -> Result<f64, String> {
    if hyps.len() != refs.len() {
        return Err(format!("chrF: {} hypotheses but {} references", hyps.len(), refs.len()));
    }
    // [hyp, ref, match] per order, summed over the corpus
    let mut stats = vec![[0usize; 3]; CHAR_ORDER];
    for (h, r) in hyps.iter().zip(refs) {
        let (hc, rc) = (non_whitespace(h.as_ref()), non_whitespace(r.as_ref()));
        let (hn, rn) = (char_ngrams(&hc, CHAR_ORDER), char_ngrams(&rc, CHAR_ORDER));
        for (n, (hc, rc)) in hn.iter().zip(&rn).enumerate() {
            let hyp_count: usize = hc.values().sum();
            let matches: usize = hc.iter().map(|(g, c)| (*c).min(*rc.get(g).unwrap_or(&0))).sum();
            stats[n][0] += if rc.is_empty() { 0 } else { hyp_count };
            stats[n][1] += rc.values().sum::<usize>();
            stats[n][2] += matches;
        }
    }
    Ok(f_score(&stats))
}

fn f_score(stats: &[[usize; 3]]) -> f64 {
    let (mut p, mut r, mut orders) = (0.0, 0.0, 0usize);
    for &[h, rf, m] in stats {
        if h > 0 && rf > 0 {
            p += m as f64 / h as f64;
            r += m as f64 / rf as f64;
            orders += 1;
        }
    }
    if orders == 0 {
        return 0.0;
    }
    let (p, r) = (p / orders as f64, r / orders as f64);
    let f = BETA * BETA;
    if p + r > 0.0 {
        100.0 * (1.0 + f) * p * r / (f * p + r)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from sacrebleu 2.6.0: `sacrebleu.corpus_chrf(hyps, [refs]).score`.
    #[test]
    fn matches_sacrebleu() {
        let hyps = ["The cat sat on the mat.", "Das ist gut", "", "a b c"];
        let refs = ["The cat is on the mat.", "Das ist sehr gut.", "Nothing here", "a b c"];
        let cases: [(&[&str], &[&str], f64); 4] = [
            (&hyps, &refs, CHRF_ALL),
            (&hyps[..1], &refs[..1], CHRF_FIRST),
            (&["The terms of the colds of the colds."], &["The conditions of the contract apply."], CHRF_DEGENERATE),
            (&["Grüße aus Köln"], &["Grüße aus Köln!"], CHRF_UNICODE),
        ];
        for (h, r, want) in cases {
            let got = corpus_chrf(h, r).unwrap();
            assert!((got - want).abs() < 1e-9, "{h:?} vs {r:?}: {got} != {want}");
        }
        assert_eq!(corpus_chrf(&["x"], &["x"]).unwrap(), 100.0);
        assert_eq!(corpus_chrf(&["abc"], &["xyz"]).unwrap(), 0.0);
        assert!(corpus_chrf(&["a"], &["a", "b"]).is_err());
    }

    const CHRF_ALL: f64 = 44.88011472093163;
    const CHRF_FIRST: f64 = 67.17273492330233;
    const CHRF_DEGENERATE: f64 = 29.596765148423515;
    const CHRF_UNICODE: f64 = 92.01329840103502;
}
