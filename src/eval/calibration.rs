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

#[cfg(test)]
mod tests {
    use super::*;

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
