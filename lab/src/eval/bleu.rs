//! Corpus-level BLEU.
//!
//! Two flavours are provided:
//!
//! * [`corpus_bleu`]: a std-only port of sacrebleu 2.6.0's corpus BLEU with
//!   its defaults (tokenizer `13a`, max n-gram order 4, smoothing `exp`,
//!   `effective_order = false`, case-sensitive unless
//!   [`BleuOptions::lowercase`] is set, closest reference length for the
//!   brevity penalty, one or more references per segment).  The `13a`
//!   tokenizer (`tokenizer_13a.py` + `tokenizer_re.py`) is ported character for
//!   character, including sacrebleu's string clean-up (`&quot;`, `&amp;`,
//!   `&lt;`, `&gt;`, `<skipped>`, `-\n`), Python's `str.rstrip()` /
//!   `str.split()` whitespace set and `re.sub` scanning semantics.
//!   `Display` on the result prints sacrebleu's text line, e.g.
//!   `BLEU = 27.31 60.2/33.4/20.1/12.9 (BP = 0.958 ratio = 0.959 hyp_len = 1234 ref_len = 1287)`.
//! * [`multi_bleu`]: "tokenized (lowercased) BLEU" exactly as Moses'
//!   `multi-bleu.perl [-lc]` computes it: input already tokenized and split on
//!   whitespace, no smoothing (BLEU is 0 as soon as one n-gram precision is
//!   0), closest reference length (ties -> shorter) for the brevity penalty.
//!
//! # Reference layout
//!
//! Both entry points take references as sacrebleu does, as *streams*:
//! `refs[k][i]` is the `k`-th reference of segment `i`.  With one reference
//! per segment pass `&[refs_vec]` (a single stream).  Every stream must have
//! exactly `hyps.len()` entries, otherwise an error naming both counts is
//! returned.  Each segment therefore has exactly `refs.len()` references
//! (sacrebleu's `None` placeholders for a variable number of references are
//! not supported).
//!
//! The module is self-contained (std only).

use std::collections::HashMap;
use std::fmt;

/// Maximum n-gram order (sacrebleu's and multi-bleu.perl's default, 4).
pub const MAX_NGRAM_ORDER: usize = 4;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Errors returned by the BLEU entry points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BleuError {
    /// Reference stream `stream` has `refs` segments but there are `hyps`
    /// hypotheses.
    LengthMismatch {
        stream: usize,
        hyps: usize,
        refs: usize,
    },
    /// No reference stream was given.
    NoReferences,
    /// No hypothesis was given (sacrebleu raises on an empty corpus too).
    EmptyCorpus,
    /// [`Tokenizer::from_str`](std::str::FromStr) got an unknown name.
    UnknownTokenizer(String),
}

impl fmt::Display for BleuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BleuError::LengthMismatch { stream, hyps, refs } => write!(
                f,
                "BLEU: reference stream {stream} has {refs} segments but there are {hyps} hypotheses"
            ),
            BleuError::NoReferences => write!(f, "BLEU: no reference stream given"),
            BleuError::EmptyCorpus => write!(f, "BLEU: empty corpus (0 hypotheses)"),
            BleuError::UnknownTokenizer(name) => write!(
                f,
                "BLEU: unknown tokenizer {name:?} (expected \"13a\" or \"none\")"
            ),
        }
    }
}

impl std::error::Error for BleuError {}

// ---------------------------------------------------------------------------
// Python string helpers
// ---------------------------------------------------------------------------

/// Python's `str.isspace()` (used by `str.split()` / `str.rstrip()`):
/// Unicode `White_Space` plus the information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `line.split()` (no argument).
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `line.rstrip()` (no argument).
fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Python's `' '.join(line.split())`.
fn py_join_split(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for tok in py_split(s) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(tok);
    }
    out
}

// ---------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------

/// The tokenizers supported by [`corpus_bleu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tokenizer {
    /// sacrebleu `13a` (mteval-v13a.pl), sacrebleu's default.
    #[default]
    Tok13a,
    /// sacrebleu `none`: no tokenization; n-grams are taken over the
    /// whitespace-separated tokens.
    None,
}

impl Tokenizer {
    /// sacrebleu's signature string for the tokenizer (`13a` / `none`).
    pub fn signature(&self) -> &'static str {
        match self {
            Tokenizer::Tok13a => "13a",
            Tokenizer::None => "none",
        }
    }

    /// Applies the tokenizer to one line (like calling sacrebleu's tokenizer
    /// object; no lowercasing, no `rstrip`).
    pub fn tokenize(&self, line: &str) -> String {
        match self {
            Tokenizer::Tok13a => tokenize_13a(line),
            Tokenizer::None => line.to_string(),
        }
    }
}

impl std::str::FromStr for Tokenizer {
    type Err = BleuError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "13a" => Ok(Tokenizer::Tok13a),
            "none" => Ok(Tokenizer::None),
            other => Err(BleuError::UnknownTokenizer(other.to_string())),
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.signature())
    }
}

/// sacrebleu's `Tokenizer13a()(line)`.
pub fn tokenize_13a(line: &str) -> String {
    // language-independent part
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    tokenize_re(&format!(" {line} "))
}

/// Character class of the first regex in `tokenizer_re.py`:
/// `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
fn is_re_punct(c: char) -> bool {
    matches!(c,
        '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// `re.sub(r'(A)(B)', repl, line)` for a pattern made of two single-character
/// classes: scan left to right, non-overlapping, resume after each match.
/// `space_first` selects between replacement `' \1 \2'` (true) and
/// `'\1 \2 '` (false).
fn sub_pair(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    space_first: bool,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            if space_first {
                out.extend_from_slice(&[' ', chars[i], ' ', chars[i + 1]]);
            } else {
                out.extend_from_slice(&[chars[i], ' ', chars[i + 1], ' ']);
            }
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `TokenizerRegexp()(line)` (the post-tokenizer of `13a`).
fn tokenize_re(line: &str) -> String {
    let is_digit = |c: char| c.is_ascii_digit(); // `[0-9]`
    let not_digit = |c: char| !c.is_ascii_digit(); // `[^0-9]`
    let is_dot_comma = |c: char| c == '.' || c == ',';

    // (re.compile(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])'), r' \1 ')
    let mut chars: Vec<char> = Vec::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_re_punct(c) {
            chars.extend_from_slice(&[' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    // tokenize period and comma unless preceded by a digit
    // (re.compile(r'([^0-9])([\.,])'), r'\1 \2 ')
    let chars = sub_pair(&chars, not_digit, is_dot_comma, false);
    // tokenize period and comma unless followed by a digit
    // (re.compile(r'([\.,])([^0-9])'), r' \1 \2')
    let chars = sub_pair(&chars, is_dot_comma, not_digit, true);
    // tokenize dash when preceded by a digit
    // (re.compile(r'([0-9])(-)'), r'\1 \2 ')
    let chars = sub_pair(&chars, is_digit, |c| c == '-', false);

    let s: String = chars.into_iter().collect();
    // no leading or trailing spaces, single space within words
    py_join_split(&s)
}

// ---------------------------------------------------------------------------
// Options and score
// ---------------------------------------------------------------------------

/// Options for [`corpus_bleu`]. `Default` is sacrebleu's default
/// (`13a`, case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuOptions {
    pub tokenizer: Tokenizer,
    /// Lowercase hypotheses and references before tokenization
    /// (sacrebleu `lowercase=True` / `-lc`).
    pub lowercase: bool,
}

/// A corpus BLEU score with its sufficient statistics, mirroring sacrebleu's
/// `BLEUScore`.  `score` and `precisions` are in percent (0..=100).
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU in percent.
    pub score: f64,
    /// Matched (clipped) n-gram counts for n = 1..=4.
    pub counts: [usize; MAX_NGRAM_ORDER],
    /// Hypothesis n-gram counts for n = 1..=4.
    pub totals: [usize; MAX_NGRAM_ORDER],
    /// n-gram precisions in percent (smoothed for sacrebleu's `exp`).
    pub precisions: [f64; MAX_NGRAM_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Total hypothesis length (tokens).
    pub sys_len: usize,
    /// Total (closest) reference length (tokens).
    pub ref_len: usize,
}

impl BleuScore {
    /// `sys_len / ref_len` (0 when `ref_len == 0`), as sacrebleu's `ratio`.
    pub fn ratio(&self) -> f64 {
        if self.ref_len > 0 {
            self.sys_len as f64 / self.ref_len as f64
        } else {
            0.0
        }
    }

    /// sacrebleu's `BLEUScore.format(width=width)` (no signature, no
    /// confidence interval). `Display` uses `width = 2`.
    pub fn format(&self, width: usize) -> String {
        let prec = self
            .precisions
            .iter()
            .map(|p| format!("{p:.1}"))
            .collect::<Vec<_>>()
            .join("/");
        format!(
            "BLEU = {score:.width$} {prec} (BP = {bp:.3} ratio = {ratio:.3} hyp_len = {sys} ref_len = {rl})",
            score = self.score,
            bp = self.bp,
            ratio = self.ratio(),
            sys = self.sys_len,
            rl = self.ref_len,
        )
    }

    /// The line `multi-bleu.perl` prints, e.g.
    /// `BLEU = 27.31, 60.2/33.4/20.1/12.9 (BP=0.958, ratio=0.959, hyp_len=1234, ref_len=1287)`.
    /// (multi-bleu.perl prints `BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)`
    /// when the reference length is 0; this is reproduced.)
    pub fn multi_bleu_line(&self) -> String {
        if self.ref_len == 0 {
            return "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)".to_string();
        }
        let p = &self.precisions;
        format!(
            "BLEU = {:.2}, {:.1}/{:.1}/{:.1}/{:.1} (BP={:.3}, ratio={:.3}, hyp_len={}, ref_len={})",
            self.score,
            p[0],
            p[1],
            p[2],
            p[3],
            self.bp,
            self.ratio(),
            self.sys_len,
            self.ref_len
        )
    }
}

impl fmt::Display for BleuScore {
    /// sacrebleu's `str(BLEUScore)`, e.g.
    /// `BLEU = 27.31 60.2/33.4/20.1/12.9 (BP = 0.958 ratio = 0.959 hyp_len = 1234 ref_len = 1287)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(2))
    }
}

// ---------------------------------------------------------------------------
// Sufficient statistics
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Stats {
    sys_len: usize,
    ref_len: usize,
    correct: [usize; MAX_NGRAM_ORDER],
    total: [usize; MAX_NGRAM_ORDER],
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_NGRAM_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }
}

/// Counts of all n-grams, 1 <= n <= 4 (n-gram = token slice).
fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], usize> {
    let mut m = HashMap::new();
    for n in 1..=MAX_NGRAM_ORDER {
        if tokens.len() < n {
            break;
        }
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// sacrebleu's `_get_closest_ref_len` (ties -> shorter reference), which is
/// also multi-bleu.perl's rule.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None; // (diff, len)
    for &rl in ref_lens {
        let diff = hyp_len.abs_diff(rl);
        best = match best {
            None => Some((diff, rl)),
            Some((bd, bl)) if diff < bd || (diff == bd && rl < bl) => Some((diff, rl)),
            keep => keep,
        };
    }
    best.map_or(0, |(_, l)| l)
}

/// Segment statistics: max-over-references clipped n-gram matches, closest
/// reference length.
fn segment_stats(hyp: &[&str], refs: &[Vec<&str>]) -> Stats {
    let mut ref_ngrams: HashMap<&[&str], usize> = HashMap::new();
    let mut ref_lens = Vec::with_capacity(refs.len());
    for r in refs {
        ref_lens.push(r.len());
        for (ng, c) in ngram_counts(r) {
            let e = ref_ngrams.entry(ng).or_insert(0);
            if *e < c {
                *e = c;
            }
        }
    }
    let mut st = Stats {
        sys_len: hyp.len(),
        ref_len: closest_ref_len(hyp.len(), &ref_lens),
        ..Stats::default()
    };
    for (ng, c) in ngram_counts(hyp) {
        let n = ng.len() - 1;
        st.total[n] += c;
        if let Some(&rc) = ref_ngrams.get(ng) {
            st.correct[n] += c.min(rc);
        }
    }
    st
}

fn validate<H, R>(hyps: &[H], refs: &[Vec<R>]) -> Result<(), BleuError> {
    if refs.is_empty() {
        return Err(BleuError::NoReferences);
    }
    for (k, stream) in refs.iter().enumerate() {
        if stream.len() != hyps.len() {
            return Err(BleuError::LengthMismatch {
                stream: k,
                hyps: hyps.len(),
                refs: stream.len(),
            });
        }
    }
    if hyps.is_empty() {
        return Err(BleuError::EmptyCorpus);
    }
    Ok(())
}

/// Accumulates corpus statistics; `prep` maps a raw line to its
/// preprocessed form and `split` splits it into tokens.
fn corpus_stats<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    prep: impl Fn(&str) -> String,
    split: impl for<'s> Fn(&'s str) -> Vec<&'s str>,
) -> Stats {
    let mut acc = Stats::default();
    for (i, h) in hyps.iter().enumerate() {
        let h = prep(h.as_ref());
        let rs: Vec<String> = refs.iter().map(|s| prep(s[i].as_ref())).collect();
        let ht = split(&h);
        let rt: Vec<Vec<&str>> = rs.iter().map(|r| split(r)).collect();
        acc.add(&segment_stats(&ht, &rt));
    }
    acc
}

/// sacrebleu's / multi-bleu.perl's floored log.
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9999999999.0
    } else {
        x.ln()
    }
}

/// sacrebleu's `BLEU.compute_bleu` with `smooth_method='exp'`,
/// `effective_order=False`, `max_ngram_order=4`.
fn compute_bleu_exp(st: &Stats) -> BleuScore {
    let (sys_len, ref_len) = (st.sys_len, st.ref_len);
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        };
    }
    let mut precisions = [0.0f64; MAX_NGRAM_ORDER];
    let mut out = BleuScore {
        score: 0.0,
        counts: st.correct,
        totals: st.total,
        precisions,
        bp,
        sys_len,
        ref_len,
    };
    // Early stop if there are no matches (sacrebleu #141)
    if st.correct.iter().all(|&c| c == 0) {
        return out;
    }
    let mut smooth_mteval = 1.0f64;
    for (p, (&correct, &total)) in precisions.iter_mut().zip(st.correct.iter().zip(&st.total)) {
        if total == 0 {
            break;
        }
        if correct == 0 {
            smooth_mteval *= 2.0;
            *p = 100.0 / (smooth_mteval * total as f64);
        } else {
            *p = 100.0 * correct as f64 / total as f64;
        }
    }
    // Python 3.11's sum(): plain left-to-right double addition from 0.
    let mut sum = 0.0f64;
    for &p in &precisions {
        sum += my_log(p);
    }
    out.score = bp * (sum / MAX_NGRAM_ORDER as f64).exp();
    out.precisions = precisions;
    out
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// sacrebleu's preprocessing of one segment: optional `str.lower()`, then
/// `rstrip()`, then the tokenizer.
pub fn preprocess(line: &str, opts: &BleuOptions) -> String {
    if opts.lowercase {
        let lc = line.to_lowercase();
        opts.tokenizer.tokenize(py_rstrip(&lc))
    } else {
        opts.tokenizer.tokenize(py_rstrip(line))
    }
}

/// Corpus BLEU exactly as sacrebleu 2.6.0's
/// `BLEU(lowercase=opts.lowercase, tokenize=opts.tokenizer).corpus_score(hyps, refs)`
/// (smoothing `exp`, order 4, `effective_order=False`).
///
/// `refs[k][i]` is the `k`-th reference of segment `i` (sacrebleu's stream
/// layout); every stream must have `hyps.len()` entries.
///
/// Errors: [`BleuError::NoReferences`] if `refs` is empty,
/// [`BleuError::LengthMismatch`] if a stream's length differs from
/// `hyps.len()`, [`BleuError::EmptyCorpus`] if there are no hypotheses.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    opts: &BleuOptions,
) -> Result<BleuScore, BleuError> {
    validate(hyps, refs)?;
    let st = corpus_stats(
        hyps,
        refs,
        |s| preprocess(s, opts),
        |s| py_split(s).collect(),
    );
    Ok(compute_bleu_exp(&st))
}

/// Perl's `split ' '` on a byte string: ASCII whitespace
/// (space, `\t`, `\n`, `\v`, `\f`, `\r`).
fn perl_split(s: &str) -> Vec<&str> {
    s.split([' ', '\t', '\n', '\u{0b}', '\u{0c}', '\r'])
        .filter(|t| !t.is_empty())
        .collect()
}

/// "Tokenized BLEU" as Moses' `multi-bleu.perl` computes it
/// (`multi-bleu.perl [-lc] ref < hyp`), same reference layout as
/// [`corpus_bleu`].  Panics on mismatched lengths / no references / empty
/// corpus with the message of [`BleuError`]; use [`try_multi_bleu`] to get a
/// `Result` instead.
pub fn multi_bleu<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    lowercase: bool,
) -> BleuScore {
    match try_multi_bleu(hyps, refs, lowercase) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// Fallible [`multi_bleu`].
///
/// Semantics (multi-bleu.perl): tokens are the ASCII-whitespace-separated
/// fields of each line; `lowercase` is Perl's `lc` on undecoded UTF-8 bytes,
/// i.e. ASCII-only lowercasing; n-gram precisions are unsmoothed (the score
/// is 0 when any of the 4 precisions is 0); the brevity penalty is
/// `exp(1 - r/c)` when `c < r`, with `r` the sum of closest reference
/// lengths (ties -> shorter).  `score = 100 * bp * exp(sum(log p_n)/4)`,
/// `precisions[n] = 100 * (counts[n] / totals[n])` (0 when `totals[n] == 0`).
/// If the total reference length is 0, everything but the counts is 0
/// (multi-bleu.perl prints an all-zero line then).  If the hypotheses are
/// all empty (multi-bleu.perl dies with a division by zero), `bp` and
/// `score` are 0.
pub fn try_multi_bleu<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    lowercase: bool,
) -> Result<BleuScore, BleuError> {
    validate(hyps, refs)?;
    let st = corpus_stats(
        hyps,
        refs,
        |s| {
            if lowercase {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        },
        perl_split,
    );
    // multi-bleu.perl: $bleu[$n] = $TOTAL[$n] ? $CORRECT[$n] / $TOTAL[$n] : 0
    let mut fr = [0.0f64; MAX_NGRAM_ORDER];
    for (f, (&correct, &total)) in fr.iter_mut().zip(st.correct.iter().zip(&st.total)) {
        if total > 0 {
            *f = correct as f64 / total as f64;
        }
    }
    let mut out = BleuScore {
        score: 0.0,
        counts: st.correct,
        totals: st.total,
        precisions: [0.0; MAX_NGRAM_ORDER],
        bp: 0.0,
        sys_len: st.sys_len,
        ref_len: st.ref_len,
    };
    if st.ref_len == 0 {
        return Ok(out);
    }
    out.precisions = fr.map(|f| 100.0 * f);
    if st.sys_len == 0 {
        return Ok(out);
    }
    let mut bp = 1.0f64;
    if st.sys_len < st.ref_len {
        bp = (1.0 - st.ref_len as f64 / st.sys_len as f64).exp();
    }
    let bleu = bp * ((my_log(fr[0]) + my_log(fr[1]) + my_log(fr[2]) + my_log(fr[3])) / 4.0).exp();
    out.bp = bp;
    out.score = 100.0 * bleu;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values produced by sacrebleu 2.6.0 (Python 3.11.7).
    struct Expected {
        score: f64,
        counts: [usize; 4],
        totals: [usize; 4],
        precisions: [f64; 4],
        bp: f64,
        sys_len: usize,
        ref_len: usize,
        line: &'static str,
    }

    fn assert_close(what: &str, got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-9,
            "{what}: got {got:?}, want {want:?} (diff {:e})",
            got - want
        );
    }

    fn check_score(name: &str, s: &BleuScore, e: &Expected, line: &str) {
        assert_close(&format!("{name} score"), s.score, e.score);
        assert_close(&format!("{name} bp"), s.bp, e.bp);
        for n in 0..4 {
            assert_close(
                &format!("{name} precision[{n}]"),
                s.precisions[n],
                e.precisions[n],
            );
        }
        assert_eq!(s.counts, e.counts, "{name} counts");
        assert_eq!(s.totals, e.totals, "{name} totals");
        assert_eq!(s.sys_len, e.sys_len, "{name} sys_len");
        assert_eq!(s.ref_len, e.ref_len, "{name} ref_len");
        assert_eq!(line, e.line, "{name} formatted line");
    }

    fn check(name: &str, hyps: &[&str], refs: &[Vec<&str>], opts: BleuOptions, e: Expected) {
        let s = corpus_bleu(hyps, refs, &opts).unwrap();
        check_score(name, &s, &e, &s.to_string());
    }

    // -----------------------------------------------------------------------
    // 13a tokenizer
    // -----------------------------------------------------------------------

    /// Expected outputs from
    /// `python -c "from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a; print(Tokenizer13a()(s))"`
    /// with sacrebleu 2.6.0, for each input string `s`.
    #[test]
    fn tokenizer_13a_matches_sacrebleu() {
        let cases: &[(&str, &str)] = &[
            ("Hello, world!", "Hello , world !"),
            ("The price is $1,000.50 (approx.) -- or 1,000.5 EUR.", "The price is $ 1,000.50 ( approx . ) -- or 1,000.5 EUR ."),
            ("1,000.5 and 3.14, then 2-3 and 10-20 years; x-ray e-mail.", "1,000.5 and 3.14 , then 2 - 3 and 10 - 20 years ; x-ray e-mail ."),
            ("He said &quot;no&quot; &amp; left &lt;quickly&gt; &apos;now&apos;.", "He said \" no \" & left < quickly > & apos ; now & apos ; ."),
            ("It's John's \"book\" isn't it? 'quoted' `back`", "It's John's \" book \" isn't it ? 'quoted' ` back `"),
            ("Dr. Smith arrived at 5 p.m.... then left...", "Dr . Smith arrived at 5 p . m . . . . then left . . ."),
            ("a..b,,c .5 ,5 5. 5, x.y x,y 1.a a.1", "a . . b , , c . 5 , 5 5 . 5 , x . y x , y 1 . a a . 1"),
            ("Die Größe der Bäume überrascht: „Schön“, sagte Jürgen – wirklich…", "Die Größe der Bäume überrascht : „Schön“ , sagte Jürgen – wirklich…"),
            ("Straße 12-14, 80331 München; Tel. +49 (0)89 123-456.", "Straße 12 - 14 , 80331 München ; Tel . + 49 ( 0 ) 89 123 - 456 ."),
            ("hyphen-\nated line\nbreak <skipped> here", "hyphenated line break here"),
            ("tabs\tand  multiple   spaces\u{a0}nbsp\u{3000}ideographic", "tabs and multiple spaces nbsp ideographic"),
            ("brackets [x] {y} <z> a|b ~tilde^caret _under_ back\\slash @at #hash %pct *star =eq", "brackets [ x ] { y } < z > a | b ~ tilde ^ caret _ under _ back \\ slash @ at # hash % pct * star = eq"),
            ("  leading and trailing  ", "leading and trailing"),
            ("", ""),
            ("&amp;quot; &AMP; & &&amp;", "& quot ; & AMP ; & & &"),
            ("3-4-5 -5 5- a-b --", "3 - 4 - 5 -5 5 - a-b --"),
            ("ümlaut.Ende,Anfang 3.Juli 1.000,50€", "ümlaut . Ende , Anfang 3 . Juli 1.000,50€"),
            ("“curly” ‘single’ « guillemets » — em–en", "“curly” ‘single’ « guillemets » — em–en"),
            ("info\u{1f}sep\u{1c}x", "info sep x"),
        ];
        for (input, want) in cases {
            assert_eq!(&tokenize_13a(input), want, "input {input:?}");
            assert_eq!(&Tokenizer::Tok13a.tokenize(input), want);
        }
        // `none` is the identity.
        assert_eq!(Tokenizer::None.tokenize(" a,b. "), " a,b. ");
    }

    #[test]
    fn tokenizer_names() {
        assert_eq!("13a".parse::<Tokenizer>().unwrap(), Tokenizer::Tok13a);
        assert_eq!("none".parse::<Tokenizer>().unwrap(), Tokenizer::None);
        assert!("intl".parse::<Tokenizer>().is_err());
        assert_eq!(Tokenizer::default().signature(), "13a");
        assert_eq!(
            BleuOptions::default(),
            BleuOptions {
                tokenizer: Tokenizer::Tok13a,
                lowercase: false
            }
        );
    }

    // -----------------------------------------------------------------------
    // corpus BLEU vs sacrebleu 2.6.0
    //
    // Every expected value below was produced with
    //   python -c "from sacrebleu.metrics import BLEU; s = BLEU(**KW).corpus_score(HYPS, REFS); \
    //              print(repr(s.score), s.counts, s.totals, repr(s.bp), \
    //                    [repr(p) for p in s.precisions], s.sys_len, s.ref_len); print(s)"
    // (sacrebleu 2.6.0, Python 3.11.7), with HYPS / REFS / KW as in each test
    // (REFS in sacrebleu's stream layout, exactly like the Rust `refs`).
    // -----------------------------------------------------------------------

    /// KW = {}; identical hypothesis and reference -> 100 (sacrebleu's float
    /// value is 100.00000000000004).
    #[test]
    fn sacrebleu_identical() {
        let hyps = [
            "The cat sat on the mat.",
            "It's 1,000.5 km -- \"far\" away!",
            "Short one",
        ];
        let refs = vec![hyps.to_vec()];
        check("identical", &hyps, &refs, BleuOptions::default(), Expected {
            score: 100.00000000000004,
            counts: [18, 15, 12, 10],
            totals: [18, 15, 12, 10],
            precisions: [100.0, 100.0, 100.0, 100.0],
            bp: 1.0,
            sys_len: 18,
            ref_len: 18,
            line: "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 18 ref_len = 18)",
        });
    }

    /// KW = {}; contains an empty hypothesis line (its reference still counts
    /// towards ref_len) and a brevity penalty.
    #[test]
    fn sacrebleu_empty_hypothesis_line() {
        let hyps = ["the quick brown fox jumped over the dog", "", "a b c a b d"];
        let refs = vec![vec![
            "the fast brown fox jumped over the lazy dog",
            "nothing to see here",
            "a b d a b c",
        ]];
        check("empty_hyp", &hyps, &refs, BleuOptions::default(), Expected {
            score: 36.90229238456498,
            counts: [13, 8, 5, 2],
            totals: [14, 12, 10, 8],
            precisions: [92.85714285714286, 66.66666666666667, 50.0, 25.0],
            bp: 0.6996725373751302,
            sys_len: 14,
            ref_len: 19,
            line: "BLEU = 36.90 92.9/66.7/50.0/25.0 (BP = 0.700 ratio = 0.737 hyp_len = 14 ref_len = 19)",
        });
    }

    /// KW = {}; no 4-gram matches: `exp` smoothing gives p4 = 100 / (2 * 7).
    #[test]
    fn sacrebleu_zero_4gram_matches_exp_smoothing() {
        let hyps = ["a b c x d e f y g h", "i j k"];
        let refs = vec![vec!["a b c d e f g h", "i j k l"]];
        check("zero_4gram", &hyps, &refs, BleuOptions::default(), Expected {
            score: 33.64932442330152,
            counts: [11, 7, 3, 0],
            totals: [13, 11, 9, 7],
            precisions: [84.61538461538461, 63.63636363636363, 33.333333333333336, 7.142857142857143],
            bp: 1.0,
            sys_len: 13,
            ref_len: 12,
            line: "BLEU = 33.65 84.6/63.6/33.3/7.1 (BP = 1.000 ratio = 1.083 hyp_len = 13 ref_len = 12)",
        });
    }

    /// KW = {}; three reference streams (n-gram counts: max over references;
    /// length: closest reference).
    #[test]
    fn sacrebleu_multiple_references() {
        let hyps = [
            "It is a guide to action which ensures that the military always obeys the commands of the party.",
            "he read the book because he was interested in world history",
            "The cat is on the mat .",
        ];
        let refs = vec![
            vec![
                "It is a guide to action that ensures that the military will forever heed Party commands.",
                "he was interested in world history because he read the book",
                "The cat is on the mat.",
            ],
            vec![
                "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
                "he read a book about world history because he was interested",
                "There is a cat on the mat.",
            ],
            vec![
                "It is the practical guide for the army always to heed the directions of the party.",
                "interested in history he read",
                "A cat sits on the mat .",
            ],
        ];
        check("multi_ref", &hyps, &refs, BleuOptions::default(), Expected {
            score: 69.99360760281259,
            counts: [36, 26, 20, 14],
            totals: [37, 34, 31, 28],
            precisions: [97.29729729729729, 76.47058823529412, 64.51612903225806, 50.0],
            bp: 1.0,
            sys_len: 37,
            ref_len: 37,
            line: "BLEU = 69.99 97.3/76.5/64.5/50.0 (BP = 1.000 ratio = 1.000 hyp_len = 37 ref_len = 37)",
        });
    }

    /// KW = {}; two reference streams; segment 1 has refs of length 6 and 4
    /// for a 5-token hypothesis: equal distance, the *shorter* one is used
    /// (ref_len = 4 + 5 = 9, not 6 + 5 = 11).
    #[test]
    fn sacrebleu_closest_ref_len_tie_takes_shorter() {
        let hyps = ["a b c d e", "p q r s t u"];
        let refs = vec![
            vec!["a b c d f g", "p q r s t u v w"],
            vec!["a b c d", "p q r s t"],
        ];
        check("tie_shorter", &hyps, &refs, BleuOptions::default(), Expected {
            score: 86.27788640890412,
            counts: [10, 8, 6, 4],
            totals: [11, 9, 7, 5],
            precisions: [90.9090909090909, 88.88888888888889, 85.71428571428571, 80.0],
            bp: 1.0,
            sys_len: 11,
            ref_len: 9,
            line: "BLEU = 86.28 90.9/88.9/85.7/80.0 (BP = 1.000 ratio = 1.222 hyp_len = 11 ref_len = 9)",
        });
    }

    /// KW = {}; German with umlauts, ß, „quotes“, €, numbers and `&quot;`.
    #[test]
    fn sacrebleu_german() {
        let hyps = [
            "Die Größe der Bäume überrascht: „Schön“, sagte Jürgen.",
            "Wir haben 1.000,50 € für 3-4 Übernachtungen in München bezahlt.",
            "Ärger über Straßenbahn – Fahrgäste warten &quot;ewig&quot;.",
        ];
        let refs = vec![vec![
            "Die Höhe der Bäume überrascht: „Wunderschön“, sagte Jürgen.",
            "Wir zahlten 1.000,50 € für 3-4 Übernachtungen in München.",
            "Ärger über die Straßenbahn – Fahrgäste warten \"ewig\".",
        ]];
        check("german", &hyps, &refs, BleuOptions::default(), Expected {
            score: 66.68058319942482,
            counts: [30, 22, 17, 13],
            totals: [34, 31, 28, 25],
            precisions: [88.23529411764706, 70.96774193548387, 60.714285714285715, 52.0],
            bp: 1.0,
            sys_len: 34,
            ref_len: 34,
            line: "BLEU = 66.68 88.2/71.0/60.7/52.0 (BP = 1.000 ratio = 1.000 hyp_len = 34 ref_len = 34)",
        });
    }

    const LC_HYPS: [&str; 3] = [
        "THE Cat SAT on The MAT.",
        "ΟΔΟΣ Über ALLES &QUOT;x&QUOT;",
        "Hello World",
    ];
    const LC_REFS: [&str; 3] = [
        "the cat sat on the mat .",
        "οδος über alles \"x\"",
        "hello world !",
    ];

    /// KW = {'lowercase': True}; includes Greek final sigma and `&QUOT;`
    /// (lowercased before unescaping).
    #[test]
    fn sacrebleu_lowercase() {
        let refs = vec![LC_REFS.to_vec()];
        let opts = BleuOptions {
            lowercase: true,
            ..BleuOptions::default()
        };
        check("lowercase", &LC_HYPS, &refs, opts, Expected {
            score: 93.55069850316181,
            counts: [15, 12, 9, 7],
            totals: [15, 12, 9, 7],
            precisions: [100.0, 100.0, 100.0, 100.0],
            bp: 0.9355069850316178,
            sys_len: 15,
            ref_len: 16,
            line: "BLEU = 93.55 100.0/100.0/100.0/100.0 (BP = 0.936 ratio = 0.938 hyp_len = 15 ref_len = 16)",
        });
    }

    /// KW = {}; same corpus, case-sensitive: zero 2/3/4-gram matches, so
    /// `exp` smoothing yields 100/(2*16), 100/(4*13), 100/(8*11).
    #[test]
    fn sacrebleu_case_sensitive_default() {
        let refs = vec![LC_REFS.to_vec()];
        check("lowercase_off", &LC_HYPS, &refs, BleuOptions::default(), Expected {
            score: 3.222425717614811,
            counts: [3, 0, 0, 0],
            totals: [19, 16, 13, 11],
            precisions: [15.789473684210526, 3.125, 1.9230769230769231, 1.1363636363636365],
            bp: 1.0,
            sys_len: 19,
            ref_len: 16,
            line: "BLEU = 3.22 15.8/3.1/1.9/1.1 (BP = 1.000 ratio = 1.188 hyp_len = 19 ref_len = 16)",
        });
    }

    /// KW = {'tokenize': 'none'}.
    #[test]
    fn sacrebleu_tokenizer_none() {
        let hyps = ["Hello, world! It's fine.", "a-b 1,000.5 x"];
        let refs = vec![vec!["Hello , world ! It's fine .", "a-b 1,000.5 x"]];
        let opts = BleuOptions {
            tokenizer: Tokenizer::None,
            lowercase: false,
        };
        check("tok_none", &hyps, &refs, opts, Expected {
            score: 28.78004485936434,
            counts: [4, 2, 1, 0],
            totals: [7, 5, 3, 1],
            precisions: [57.142857142857146, 40.0, 33.333333333333336, 50.0],
            bp: 0.6514390575310556,
            sys_len: 7,
            ref_len: 10,
            line: "BLEU = 28.78 57.1/40.0/33.3/50.0 (BP = 0.651 ratio = 0.700 hyp_len = 7 ref_len = 10)",
        });
    }

    /// KW = {}; strong brevity penalty.
    #[test]
    fn sacrebleu_brevity_penalty() {
        let hyps = ["the cat", "a dog barks loudly at night"];
        let refs = vec![vec![
            "the cat sat on the mat",
            "the dog barks loudly at night time",
        ]];
        check("brevity", &hyps, &refs, BleuOptions::default(), Expected {
            score: 41.59251210099546,
            counts: [7, 5, 3, 2],
            totals: [8, 6, 4, 3],
            precisions: [87.5, 83.33333333333333, 75.0, 66.66666666666667],
            bp: 0.5352614285189903,
            sys_len: 8,
            ref_len: 13,
            line: "BLEU = 41.59 87.5/83.3/75.0/66.7 (BP = 0.535 ratio = 0.615 hyp_len = 8 ref_len = 13)",
        });
    }

    /// KW = {}; no 4-grams at all (total[3] == 0): sacrebleu stops and the
    /// score is 0 although all computed precisions are 100.
    #[test]
    fn sacrebleu_no_4grams_in_hypotheses() {
        let hyps = ["a b c", "d e"];
        let refs = vec![hyps.to_vec()];
        check("short_total0", &hyps, &refs, BleuOptions::default(), Expected {
            score: 0.0,
            counts: [5, 3, 1, 0],
            totals: [5, 3, 1, 0],
            precisions: [100.0, 100.0, 100.0, 0.0],
            bp: 1.0,
            sys_len: 5,
            ref_len: 5,
            line: "BLEU = 0.00 100.0/100.0/100.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 5 ref_len = 5)",
        });
    }

    /// KW = {}; no match at all (early return, precisions all 0, bp kept).
    #[test]
    fn sacrebleu_no_match() {
        let hyps = ["x y z w v"];
        let refs = vec![vec!["a b c d e f"]];
        check(
            "no_match",
            &hyps,
            &refs,
            BleuOptions::default(),
            Expected {
                score: 0.0,
                counts: [0, 0, 0, 0],
                totals: [5, 4, 3, 2],
                precisions: [0.0, 0.0, 0.0, 0.0],
                bp: 0.8187307530779819,
                sys_len: 5,
                ref_len: 6,
                line:
                    "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.819 ratio = 0.833 hyp_len = 5 ref_len = 6)",
            },
        );
    }

    /// KW = {}; Python `rstrip()` whitespace (incl. U+001F, NBSP), a tab and
    /// `<skipped>` removal.
    #[test]
    fn sacrebleu_python_whitespace_and_skipped() {
        let hyps = ["trailing spaces \u{1f}\u{a0} ", "tab\tsep<skipped>ok"];
        let refs = vec![vec!["trailing spaces", "tab sep ok"]];
        check("rstrip_ws", &hyps, &refs, BleuOptions::default(), Expected {
            score: 0.0,
            counts: [3, 1, 0, 0],
            totals: [4, 2, 0, 0],
            precisions: [75.0, 50.0, 0.0, 0.0],
            bp: 0.7788007830714049,
            sys_len: 4,
            ref_len: 5,
            line: "BLEU = 0.00 75.0/50.0/0.0/0.0 (BP = 0.779 ratio = 0.800 hyp_len = 4 ref_len = 5)",
        });
    }

    #[test]
    fn owned_strings_and_format_width() {
        let hyps: Vec<String> = vec!["the cat".into(), "a dog barks loudly at night".into()];
        let refs: Vec<Vec<String>> = vec![vec![
            "the cat sat on the mat".into(),
            "the dog barks loudly at night time".into(),
        ]];
        let s = corpus_bleu(&hyps, &refs, &BleuOptions::default()).unwrap();
        // sacrebleu: s.format(width=4)
        assert_eq!(
            s.format(4),
            "BLEU = 41.5925 87.5/83.3/75.0/66.7 (BP = 0.535 ratio = 0.615 hyp_len = 8 ref_len = 13)"
        );
        assert!((s.ratio() - 8.0 / 13.0).abs() < 1e-15);
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let hyps = ["a", "b", "c"];
        let refs = vec![vec!["a", "b", "c"], vec!["a", "b"]];
        let err = corpus_bleu(&hyps, &refs, &BleuOptions::default()).unwrap_err();
        assert_eq!(
            err,
            BleuError::LengthMismatch {
                stream: 1,
                hyps: 3,
                refs: 2
            }
        );
        let msg = err.to_string();
        assert!(msg.contains('3') && msg.contains('2'), "{msg}");
        assert_eq!(try_multi_bleu(&hyps, &refs, true).unwrap_err(), err);

        let none: Vec<Vec<&str>> = vec![];
        assert_eq!(
            corpus_bleu(&hyps, &none, &BleuOptions::default()).unwrap_err(),
            BleuError::NoReferences
        );
        let empty: [&str; 0] = [];
        let empty_refs: Vec<Vec<&str>> = vec![vec![]];
        assert_eq!(
            corpus_bleu(&empty, &empty_refs, &BleuOptions::default()).unwrap_err(),
            BleuError::EmptyCorpus
        );
    }

    #[test]
    #[should_panic(expected = "reference stream 0 has 1 segments but there are 2 hypotheses")]
    fn multi_bleu_panics_on_mismatch() {
        multi_bleu(&["a", "b"], &[vec!["a"]], false);
    }

    // -----------------------------------------------------------------------
    // multi-bleu.perl variant
    //
    // Expected values: Moses `multi-bleu.perl [-lc] ref < hyp` (perl 5.36,
    // refs written to files ref0, ref1, ... one segment per line; full
    // precision obtained by adding
    //   printf STDERR "%.17g", 100*$bleu  (and $brevity_penalty)
    // at the end of the script), cross-checked with
    //   nltk.translate.bleu_score.corpus_bleu(list_of_references, hypotheses)
    // (nltk 3.10.4, default weights, no smoothing, same closest-ref-length
    // rule; tokens = whitespace split after ASCII lowercasing) x 100.
    // -----------------------------------------------------------------------

    fn check_mb(
        name: &str,
        s: &BleuScore,
        score: f64,
        counts: [usize; 4],
        totals: [usize; 4],
        bp: f64,
        line: &str,
    ) {
        assert_close(&format!("{name} score"), s.score, score);
        assert_close(&format!("{name} bp"), s.bp, bp);
        assert_eq!(s.counts, counts, "{name} counts");
        assert_eq!(s.totals, totals, "{name} totals");
        for n in 0..4 {
            let p = if totals[n] > 0 {
                100.0 * (counts[n] as f64 / totals[n] as f64)
            } else {
                0.0
            };
            assert_close(&format!("{name} precision[{n}]"), s.precisions[n], p);
        }
        assert_eq!(s.multi_bleu_line(), line, "{name} line");
    }

    /// multi-bleu.perl -lc (%.17g): 69.993607602812617; nltk: 69.99360760281262.
    #[test]
    fn multi_bleu_three_refs_lowercased() {
        let hyps = [
            "It is a guide to action which ensures that the military always obeys the commands of the party .",
            "he read the book because he was interested in world history",
            "The cat is on the mat .",
        ];
        let refs = vec![
            vec![
                "It is a guide to action that ensures that the military will forever heed Party commands .",
                "he was interested in world history because he read the book",
                "the cat is on the mat .",
            ],
            vec![
                "It is the guiding principle which guarantees the military forces always being under the command of the Party .",
                "he read a book about world history because he was interested",
                "There is a cat on the mat .",
            ],
            vec![
                "It is the practical guide for the army always to heed the directions of the party .",
                "interested in history he read",
                "A cat sits on the mat .",
            ],
        ];
        let s = multi_bleu(&hyps, &refs, true);
        check_mb(
            "mb_multi_ref_lc",
            &s,
            69.99360760281262,
            [36, 26, 20, 14],
            [37, 34, 31, 28],
            1.0,
            "BLEU = 69.99, 97.3/76.5/64.5/50.0 (BP=1.000, ratio=1.000, hyp_len=37, ref_len=37)",
        );
        assert_eq!((s.sys_len, s.ref_len), (37, 37));
    }

    /// Brevity penalty, cased vs lowercased.
    /// Hand calculation (lowercased): c = 12, r = 7 + 7 = 14,
    /// bp = exp(1 - 14/12) = 0.846481724890614;
    /// p = 11/12, 9/10, 7/8, 5/6;
    /// BLEU = 100 * bp * (11/12 * 9/10 * 7/8 * 5/6)^(1/4)
    ///      = 100 * 0.846481724890614 * 0.8806841674939027 = 74.5483053184093.
    /// multi-bleu.perl (%.17g): 64.318702182380235 (cased), 74.548305318409319 (-lc);
    /// nltk: 64.31870218238024, 74.54830531840932.
    #[test]
    fn multi_bleu_brevity_and_case() {
        let hyps = ["The cat sat on the mat", "a dog barks loudly at night"];
        let refs = vec![vec![
            "the cat sat on the mat today",
            "the dog barks loudly at night time",
        ]];
        let bp = 0.846481724890614; // perl: 0.84648172489061402
        let s = multi_bleu(&hyps, &refs, false);
        check_mb(
            "mb_cased",
            &s,
            64.31870218238024,
            [10, 8, 6, 4],
            [12, 10, 8, 6],
            bp,
            "BLEU = 64.32, 83.3/80.0/75.0/66.7 (BP=0.846, ratio=0.857, hyp_len=12, ref_len=14)",
        );
        let s = multi_bleu(&hyps, &refs, true);
        check_mb(
            "mb_lc",
            &s,
            74.54830531840932,
            [11, 9, 7, 5],
            [12, 10, 8, 6],
            bp,
            "BLEU = 74.55, 91.7/90.0/87.5/83.3 (BP=0.846, ratio=0.857, hyp_len=12, ref_len=14)",
        );
        let hand = 100.0
            * (1.0f64 - 14.0 / 12.0).exp()
            * (11.0f64 / 12.0 * 9.0 / 10.0 * 7.0 / 8.0 * 5.0 / 6.0).powf(0.25);
        assert_close("hand", s.score, hand);
    }

    /// No 4-gram match: unsmoothed BLEU is exactly 0 (multi-bleu.perl prints
    /// `BLEU = 0.00, 84.6/63.6/33.3/0.0 ...`), whereas sacrebleu's `exp`
    /// smoothing gives 33.65 on the same corpus (see
    /// `sacrebleu_zero_4gram_matches_exp_smoothing`).
    #[test]
    fn multi_bleu_zero_precision_gives_zero() {
        let hyps = ["a b c x d e f y g h", "i j k"];
        let refs = vec![vec!["a b c d e f g h", "i j k l"]];
        let s = multi_bleu(&hyps, &refs, true);
        check_mb(
            "mb_zero_4gram",
            &s,
            0.0,
            [11, 7, 3, 0],
            [13, 11, 9, 7],
            1.0,
            "BLEU = 0.00, 84.6/63.6/33.3/0.0 (BP=1.000, ratio=1.083, hyp_len=13, ref_len=12)",
        );
        assert_eq!(s.score, 0.0);
    }

    /// multi-bleu.perl reads undecoded bytes: `lc` only lowercases ASCII and
    /// `split` only splits on ASCII whitespace (NBSP is a token here).
    /// multi-bleu.perl -lc (%.17g): 44.179182268315763; nltk (ASCII lowercasing,
    /// split on ' '): 44.17918226831577.
    #[test]
    fn multi_bleu_non_ascii_is_perl_bytes_semantics() {
        let hyps = ["ÜBER die Brücke GEHT er", "Straße \u{a0} ÄRGER x"];
        let refs = vec![vec!["über die brücke geht er", "straße ärger x"]];
        let s = multi_bleu(&hyps, &refs, true);
        check_mb(
            "mb_non_ascii",
            &s,
            44.17918226831576,
            [6, 3, 2, 1],
            [9, 7, 5, 3],
            1.0,
            "BLEU = 44.18, 66.7/42.9/40.0/33.3 (BP=1.000, ratio=1.125, hyp_len=9, ref_len=8)",
        );
    }

    #[test]
    fn multi_bleu_degenerate_lengths() {
        // all-empty references: multi-bleu.perl prints its all-zero line
        let s = multi_bleu(&["a b"], &[vec![""]], false);
        assert_eq!(s.score, 0.0);
        assert_eq!(
            s.multi_bleu_line(),
            "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)"
        );
        // all-empty hypotheses: BLEU 0 (multi-bleu.perl would die on 1/0)
        let s = multi_bleu(&[""], &[vec!["a b"]], false);
        assert_eq!((s.score, s.bp, s.sys_len, s.ref_len), (0.0, 0.0, 0, 2));
        // identical -> 100
        let s = multi_bleu(&["a b c d e"], &[vec!["a b c d e"]], false);
        assert_close("identical", s.score, 100.0);
    }
}
