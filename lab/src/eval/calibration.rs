//! Calibration metrics.

/// Expected calibration error (Guo et al. 2017): split predictions into `bins` equal-width
/// confidence bins over [0, 1]; ECE = Σ_b (|b| / N) · |accuracy(b) - mean confidence(b)|.
/// A confidence of exactly 1 falls in the last bin.
pub fn expected_calibration_error(confidence: &[f64], correct: &[bool], bins: usize) -> f64 {
    assert_eq!(confidence.len(), correct.len(), "one confidence per prediction");
    let n = confidence.len();
    if n == 0 {
        return 0.0;
    }
    let mut count = vec![0usize; bins];
    let mut conf_sum = vec![0f64; bins];
    let mut acc_sum = vec![0f64; bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf_sum[b] += c;
        acc_sum[b] += ok as u8 as f64;
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| count[b] as f64 / n as f64 * (acc_sum[b] / count[b] as f64 - conf_sum[b] / count[b] as f64).abs())
        .sum()
}

/// PAvPU, patch accuracy versus patch uncertainty (Mukhoti & Gal 2018, as BAM/BABN/AA use it):
/// (n_accurate∧certain + n_inaccurate∧uncertain) / N.
pub fn pavpu(correct: &[bool], uncertain: &[bool]) -> f64 {
    assert_eq!(correct.len(), uncertain.len(), "one uncertainty flag per prediction");
    if correct.is_empty() {
        return 0.0;
    }
    let good = correct.iter().zip(uncertain).filter(|(&c, &u)| c != u).count();
    good as f64 / correct.len() as f64
}

/// The decision of one prediction from T stochastic forward passes `probs[t][a]` (answer
/// probabilities of pass t): the top two answers a₁, a₂ of the mean probabilities and whether
/// the prediction is *uncertain*: Student's two-sample t-test between the T samples of p(a₁)
/// and of p(a₂) fails to reject equal means at level `alpha` (p-value ≥ alpha).
/// Returns (a₁, uncertain).
pub fn top_two_uncertainty(probs: &[Vec<f64>], alpha: f64) -> (usize, bool) {
    assert!(probs.len() >= 2, "uncertainty needs at least two stochastic passes");
    let a = probs[0].len();
    let mean: Vec<f64> = (0..a).map(|j| probs.iter().map(|p| p[j]).sum::<f64>() / probs.len() as f64).collect();
    let mut order: Vec<usize> = (0..a).collect();
    order.sort_by(|&i, &j| mean[j].total_cmp(&mean[i]).then(i.cmp(&j)));
    let (a1, a2) = (order[0], order[1]);
    let x: Vec<f64> = probs.iter().map(|p| p[a1]).collect();
    let y: Vec<f64> = probs.iter().map(|p| p[a2]).collect();
    let p_value = crate::stats::two_sample_t_test(&x, &y);
    (a1, p_value >= alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pavpu_by_hand() {
        // accurate+certain, accurate+uncertain, inaccurate+uncertain, inaccurate+certain, accurate+certain
        let correct = [true, true, false, false, true];
        let uncertain = [false, true, true, false, false];
        assert!((pavpu(&correct, &uncertain) - 3.0 / 5.0).abs() < 1e-15);
        assert_eq!(pavpu(&[true, false], &[false, true]), 1.0);
        assert_eq!(pavpu(&[true, false], &[true, false]), 0.0);
    }

    #[test]
    fn top_two_test_against_scipy() {
        // scipy.stats.ttest_ind([0.6,0.7,0.65,0.8], [0.3,0.2,0.35,0.1]).pvalue = 6.68e-4: certain
        let passes = |a: [f64; 4], b: [f64; 4]| -> Vec<Vec<f64>> {
            (0..4).map(|t| vec![a[t], b[t], 1.0 - a[t] - b[t]]).collect()
        };
        let (top, unc) = top_two_uncertainty(&passes([0.6, 0.7, 0.65, 0.8], [0.3, 0.2, 0.35, 0.1]), 0.05);
        assert_eq!((top, unc), (0, false));
        // ttest_ind([0.5,0.45,0.55,0.4], [0.42,0.5,0.38,0.49]).pvalue = 0.5477: uncertain;
        // the third answer (0.08..0.12) is never in the top two
        let (top, unc) = top_two_uncertainty(&passes([0.5, 0.45, 0.55, 0.4], [0.42, 0.5, 0.38, 0.49]), 0.05);
        assert_eq!((top, unc), (0, true));
        let p = crate::stats::two_sample_t_test(&[0.5, 0.45, 0.55, 0.4], &[0.42, 0.5, 0.38, 0.49]);
        assert!((p - 0.5477312938142469).abs() < 1e-12, "{p}");
        let p = crate::stats::two_sample_t_test(&[0.6, 0.7, 0.65, 0.8], &[0.3, 0.2, 0.35, 0.1]);
        assert!((p - 0.000668064407629994).abs() < 1e-14, "{p}");
        // statrs's incomplete beta and t distribution underneath (SciPy betainc, 2 t.sf)
        use statrs::distribution::{ContinuousCDF, StudentsT};
        use statrs::function::beta::beta_reg;
        assert!((beta_reg(2.5, 0.5, 0.3) - 0.018927124071945658).abs() < 1e-14);
        assert!((beta_reg(0.5, 3.0, 0.9) - 0.9996750253207289).abs() < 1e-14);
        assert!((2.0 * StudentsT::new(0.0, 1.0, 10.0).unwrap().sf(2.0) - 0.07338803477074037).abs() < 1e-14);
        // deterministic passes: identical samples, different means -> certain
        assert_eq!(top_two_uncertainty(&passes([0.6; 4], [0.3; 4]), 0.05), (0, false));
    }

    #[test]
    fn ece_by_hand() {
        // bin [0.6, 0.667): confidences 0.6, 0.65, correct 1 of 2 -> |0.5 - 0.625| = 0.125
        // bin [0.933, 1]: confidence 1.0 (last bin), correct -> 0
        // bin [0.2, 0.267): 0.2, wrong -> |0 - 0.2| = 0.2
        let ece = expected_calibration_error(&[0.6, 0.65, 1.0, 0.2], &[true, false, true, false], 15);
        let expected = 0.5 * 0.125 + 0.25 * 0.0 + 0.25 * 0.2;
        assert!((ece - expected).abs() < 1e-12, "{ece} vs {expected}");
        // perfectly calibrated: confidence 0.5 and half right
        assert!(expected_calibration_error(&[0.5, 0.5], &[true, false], 15).abs() < 1e-12);
    }
}
