//! VQA 2.0 answers: normalisation, the top-N answer vocabulary, the official accuracy and the
//! training answer drawn in proportion to the annotators.
//!
//! * Normalisation ([`normalize_answer`]), a subset of the official evaluation's
//!   (`vqaEval.py`): lower-case; trim and collapse whitespace; strip trailing `.` `,` `!` `?` `;`
//!   `:`; number words zero..ten → digits; drop the articles a / an / the. (Not done: the
//!   official contraction table and its punctuation rules inside answers.)
//! * Vocabulary ([`AnswerVocab::top_n`]): the N most frequent normalised answers over all
//!   annotations (10 per question) of the training questions, ties broken alphabetically.
//! * Accuracy ([`vqa_accuracy`]): for a predicted answer a and 10 annotators,
//!   acc(a) = (1/10) Σ_{i=1}^{10} min(#{j ≠ i : answer_j = a} / 3, 1),
//!   the mean over the 10 leave-one-out subsets of 9 annotators; 0, 1, 2, 3, ≥ 4 matching
//!   annotators give 0, 0.3, 0.6, 0.9, 1.
//! * Training target ([`AnswerCounts::sample`]): a ~ Categorical(c_a / Σ c) over the in-vocabulary
//!   answers a with annotator counts c_a; questions with no in-vocabulary answer are skipped.
use crate::rng::SeededRng;
use std::collections::{BTreeMap, HashMap};

/// The official-style normalisation of an answer (see the module doc).
pub fn normalize_answer(raw: &str) -> String {
    let lower = raw.to_lowercase();
    let trimmed = lower.trim().trim_end_matches(['.', ',', '!', '?', ';', ':']).trim();
    let words: Vec<&str> = trimmed
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(|w| match w {
            "none" => "0",
            "zero" => "0",
            "one" => "1",
            "two" => "2",
            "three" => "3",
            "four" => "4",
            "five" => "5",
            "six" => "6",
            "seven" => "7",
            "eight" => "8",
            "nine" => "9",
            "ten" => "10",
            w => w,
        })
        .collect();
    words.join(" ")
}

/// A question as the word vocabulary sees it: ASCII punctuation other than `'` becomes a space
/// (the easy-VQA tokeniser then lower-cases and splits on whitespace).
pub fn clean_question(q: &str) -> String {
    q.chars().map(|c| if c.is_ascii_punctuation() && c != '\'' { ' ' } else { c }).collect()
}

/// The answer classes: the top-N normalised training answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerVocab {
    answers: Vec<String>,
    ids: HashMap<String, usize>,
}

impl AnswerVocab {
    /// The `n` most frequent normalised answers over all annotations of `annotations` (one list
    /// of raw answers per question), ties broken alphabetically.
    pub fn top_n<'a>(annotations: impl IntoIterator<Item = &'a [String]>, n: usize) -> Self {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for list in annotations {
            for a in list {
                let a = normalize_answer(a);
                if !a.is_empty() {
                    *counts.entry(a).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
        // stable sort over the alphabetical order: equal counts stay alphabetical
        ranked.sort_by_key(|a| std::cmp::Reverse(a.1));
        ranked.truncate(n);
        let answers: Vec<String> = ranked.into_iter().map(|(a, _)| a).collect();
        let ids = answers.iter().enumerate().map(|(i, a)| (a.clone(), i)).collect();
        Self { answers, ids }
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The class of a normalised answer.
    pub fn id(&self, normalized: &str) -> Option<usize> {
        self.ids.get(normalized).copied()
    }

    pub fn answer(&self, id: usize) -> &str {
        &self.answers[id]
    }

    pub fn answers(&self) -> &[String] {
        &self.answers
    }
}

/// The in-vocabulary answers of one question with their annotator counts, in class order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerCounts(pub Vec<(usize, u32)>);

impl AnswerCounts {
    /// Counts the annotators' normalised answers that are in `vocab`; `None` when none is.
    pub fn new(vocab: &AnswerVocab, raw: &[String]) -> Option<Self> {
        let mut c: BTreeMap<usize, u32> = BTreeMap::new();
        for a in raw {
            if let Some(id) = vocab.id(&normalize_answer(a)) {
                *c.entry(id).or_default() += 1;
            }
        }
        (!c.is_empty()).then(|| Self(c.into_iter().collect()))
    }

    /// The most common in-vocabulary answer (ties: the smaller class id, i.e. the more frequent
    /// answer overall): the gold answer of the NLL and exact-match accuracy at evaluation.
    pub fn most_common(&self) -> usize {
        let max = self.0.iter().map(|&(_, c)| c).max().unwrap_or(0);
        self.0.iter().find(|&&(_, c)| c == max).map(|&(a, _)| a).unwrap_or(0)
    }

    /// a ~ Categorical(c_a / Σ c): one uniform, inverted through the cumulative counts.
    pub fn sample(&self, rng: &mut SeededRng) -> usize {
        let total: u32 = self.0.iter().map(|&(_, c)| c).sum();
        let u = rng.next_uniform() * total as f64;
        let mut acc = 0.0;
        for &(a, c) in &self.0 {
            acc += c as f64;
            if u < acc {
                return a;
            }
        }
        self.0.last().map(|&(a, _)| a).unwrap_or(0)
    }
}

/// The official VQA accuracy of answer `predicted` (normalised) against the annotators' raw
/// answers: the mean over leave-one-out subsets of min(matches / 3, 1) (see the module doc).
pub fn vqa_accuracy(predicted: &str, raw_answers: &[String]) -> f64 {
    let n = raw_answers.len();
    if n == 0 {
        return 0.0;
    }
    let matches: Vec<bool> = raw_answers.iter().map(|a| normalize_answer(a) == predicted).collect();
    let m = matches.iter().filter(|&&x| x).count();
    let total: f64 = matches.iter().map(|&own| (((m - own as usize) as f64) / 3.0).min(1.0)).sum();
    total / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(matching: usize) -> Vec<String> {
        (0..10).map(|i| if i < matching { "Two".to_string() } else { format!("other{i}") }).collect()
    }

    #[test]
    fn accuracy_follows_the_leave_one_out_rule() {
        // hand-computed: m matches -> (m·min((m-1)/3,1) + (10-m)·min(m/3,1)) / 10
        for (m, want) in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)] {
            let got = vqa_accuracy("2", &answers(m));
            assert!((got - want).abs() < 1e-12, "{m} matching annotators: {got} != {want}");
        }
        assert_eq!(vqa_accuracy("2", &[]), 0.0);
    }

    #[test]
    fn normalisation_and_vocabulary() {
        assert_eq!(normalize_answer("  The Red Car. "), "red car");
        assert_eq!(normalize_answer("Two!"), "2");
        assert_eq!(normalize_answer("yes"), "yes");
        assert_eq!(clean_question("What's this, a cat?"), "What's this  a cat ");
        let lists = [vec!["Yes".to_string(), "yes".into(), "no".into()], vec!["no".into(), "two".into(), "b".into()]];
        let v = AnswerVocab::top_n(lists.iter().map(|l| l.as_slice()), 3);
        // yes 2, no 2 (alphabetical: no first), then 2 / b by 1 each: "2" < "b"
        assert_eq!(v.answers(), &["no", "yes", "2"]);
        let c = AnswerCounts::new(&v, &lists[0]).unwrap();
        assert_eq!(c.0, vec![(0, 1), (1, 2)]);
        assert_eq!(c.most_common(), 1);
        assert!(AnswerCounts::new(&v, &["b".to_string()]).is_none());
    }
}
