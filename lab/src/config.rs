//! Configuration files: a row of a paper table is a TOML file; a preset (smoke, cpu, full,
//! paper, reference) supplies the sizes. `load_with_preset` deep-merges the row file over the
//! preset's table and deserialises with unknown keys rejected, naming the file and key. A row may
//! also hold `[presets.<name>]` tables: settings of that row under that preset only, merged last.
//! Every row declares its [`Task`] (`task = "nmt"`) and the distribution of its latent alignment
//! ([`Alignment`], `alignment = "categorical"`); both are checked and, like the per-preset tables,
//! not part of the merged config (they follow from the file's place and its objective and model). [`registry`] reads `configs/tables.toml`, the rows of every table.
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::Value;

pub mod registry;

/// The task of a row config: the experiment that trains it, the `configs/<task>/` folder of its
/// presets file and the `runs/<task>/` folder of its runs. `wmt17` rows are NMT rows on the WMT17
/// corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Nmt,
    Wmt17,
    Vqa,
    G2p,
}

impl Task {
    /// Every task, in the order messages list them.
    pub const ALL: [Task; 4] = [Task::Nmt, Task::Wmt17, Task::Vqa, Task::G2p];

    /// `nmt`, `wmt17`, `vqa` or `g2p`: the value of `task` in a row file and the folder names.
    pub fn name(self) -> &'static str {
        match self {
            Task::Nmt => "nmt",
            Task::Wmt17 => "wmt17",
            Task::Vqa => "vqa",
            Task::G2p => "g2p",
        }
    }

    /// The task named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The allowed names, for messages: `"nmt", "wmt17", "vqa" or "g2p"`.
    pub fn allowed() -> String {
        quoted_choices(&Task::ALL.map(Task::name))
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The distribution of a row's latent alignment, the first of the three axes (distribution,
/// objective, model): `categorical` (one source position / image region per target step, the
/// rows of Deng et al.), `dirichlet` (a relaxed alignment on the simplex, objective `var-relaxed`),
/// `weibull` (Weibull attention weights with a gamma prior, a `model.attention.bayes` module:
/// BAM / BABN) and `bernoulli` (a sequence of emit decisions, the monotonic alignments of g2p).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alignment {
    Categorical,
    Dirichlet,
    Weibull,
    Bernoulli,
}

impl Alignment {
    /// Every alignment distribution, in the order messages list them.
    pub const ALL: [Alignment; 4] = [Alignment::Categorical, Alignment::Dirichlet, Alignment::Weibull, Alignment::Bernoulli];

    /// The value of `alignment` in a row file.
    pub fn name(self) -> &'static str {
        match self {
            Alignment::Categorical => "categorical",
            Alignment::Dirichlet => "dirichlet",
            Alignment::Weibull => "weibull",
            Alignment::Bernoulli => "bernoulli",
        }
    }

    /// The alignment distribution that a merged config of `task` trains, and why: Bernoulli emit
    /// decisions for g2p; Weibull weights when `model.attention.bayes` is set; Dirichlet for
    /// objective `var-relaxed`; categorical otherwise (soft, exact, hard-*, var-enum/-sample,
    /// gumbel, rws, kmax).
    pub fn trained_by(task: Task, merged: &Value) -> (Alignment, String) {
        if task == Task::G2p {
            return (Alignment::Bernoulli, "the g2p task's alignment is a sequence of Bernoulli emit decisions".into());
        }
        let bayes = merged.get("model").and_then(|m| m.get("attention")).and_then(|a| a.get("bayes"));
        if let Some(kind) = bayes.map(|b| b.get("kind").and_then(Value::as_str).unwrap_or("?")) {
            return (Alignment::Weibull, format!("model.attention.bayes (kind \"{kind}\") samples Weibull attention weights"));
        }
        let objective = merged.get("objective").and_then(|o| o.get("kind")).and_then(Value::as_str).unwrap_or("?");
        if objective == "var-relaxed" {
            return (Alignment::Dirichlet, "objective var-relaxed samples a Dirichlet alignment".into());
        }
        (Alignment::Categorical, format!("objective {objective} with no model.attention.bayes has a categorical alignment"))
    }
}

impl std::fmt::Display for Alignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `"a", "b" or "c"`, for messages.
fn quoted_choices(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The value of a row file's top-level `key` (`task`, `alignment`), one of `all` by `name`.
/// Refused, naming the file and the allowed values: no `key` (`what_it_declares` says what the
/// key is for), a value that is not a string, and a string that names none of `all` (`kind`).
fn declared_choice<T: Copy>(
    row: &Path,
    value: &Value,
    key: &str,
    what_it_declares: &str,
    kind: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T> {
    let allowed = quoted_choices(&all.iter().map(|&c| name(c)).collect::<Vec<_>>());
    match value.get(key) {
        None => bail!("{}: no `{key}`; a row config declares {what_it_declares} at the top: {key} = {allowed}", row.display()),
        Some(Value::String(s)) => all
            .iter()
            .copied()
            .find(|&c| name(c) == s)
            .with_context(|| format!("{}: {key} = \"{s}\" is not {kind}; allowed: {allowed}", row.display())),
        Some(other) => bail!("{}: {key} = {other}: must be a string, one of {allowed}", row.display()),
    }
}

/// The alignment distribution a row file declares with its top-level `alignment` key (see
/// [`declared_choice`]'s refusals; [`load_with_overrides`] checks it against the objective and model).
fn declared_alignment(row: &Path, value: &Value) -> Result<Alignment> {
    let what = "the distribution of its latent alignment";
    declared_choice(row, value, "alignment", what, "an alignment distribution", &Alignment::ALL, Alignment::name)
}

/// The task a row file declares with its top-level `task` key. Refused, naming the file and the
/// allowed values: no `task`, a value that is not one of them, and a task other than the one of
/// the folder the file sits in when that folder is named after a task (`configs/nmt/`: the
/// presets file beside the row is that task's).
fn declared_task(row: &Path, value: &Value) -> Result<Task> {
    let task = declared_choice(row, value, "task", "its task", "a task", &Task::ALL, Task::name)?;
    let folder = row.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(of_folder) = Task::from_name(&folder) {
        if of_folder != task {
            bail!(
                "{}: task = \"{task}\", but the file sits in a `{folder}` folder, whose presets file is the {folder} task's; move it to a `{task}` folder or declare task = \"{folder}\"",
                row.display()
            )
        }
    }
    Ok(task)
}

/// The task `row` declares (see [`declared_task`]'s rules); errors name the file.
pub fn row_task(row: &Path) -> Result<Task> {
    declared_task(row, &read_toml(row)?)
}

/// Deep-merge `over` into `base` (tables merge key by key; anything else replaces).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn read_toml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The presets file that sits beside a row config: `<dir>/presets.toml`.
pub fn presets_path(row: &Path) -> PathBuf {
    row.parent().unwrap_or(Path::new(".")).join("presets.toml")
}

/// Load `row` merged over `[preset]` of the presets file beside it; returns the typed config
/// and the merged TOML (for hashing and provenance). The row must declare its task (see
/// [`row_task`]) and its alignment distribution, which must be the one its objective and model
/// train ([`Alignment::trained_by`]); neither `task` nor `alignment` is part of the merged config.
pub fn load_with_preset<T: DeserializeOwned>(row: &Path, preset: &str) -> Result<(T, Value)> {
    load_with_overrides(row, preset, &[])
}

/// [`load_with_preset`] with `overrides` set in the merged TOML before it is typed: the merged
/// config (and so its [`config_hash`]) is the one an edit of the files to those values gives.
pub fn load_with_overrides<T: DeserializeOwned>(row: &Path, preset: &str, overrides: &[Override]) -> Result<(T, Value)> {
    let presets_file = presets_path(row);
    let presets = read_toml(&presets_file)?;
    let mut merged = match presets.get(preset) {
        Some(v) => v.clone(),
        None => {
            let known: Vec<String> = presets.as_table().map(|t| t.keys().cloned().collect()).unwrap_or_default();
            bail!("{}: no preset `{preset}` (known: {})", presets_file.display(), known.join(", "))
        }
    };
    let mut row_value = read_toml(row)?;
    let task = declared_task(row, &row_value)?;
    let alignment = declared_alignment(row, &row_value)?;
    let per_preset = row_value.as_table_mut().and_then(|t| {
        t.remove("task");
        t.remove("alignment");
        t.remove("presets")
    });
    merge(&mut merged, row_value);
    if let Some(per_preset) = per_preset {
        let Some(table) = per_preset.as_table() else {
            bail!("{}: `presets` must be a table of preset names ([presets.cpu], ...)", row.display())
        };
        let known = presets.as_table().map(|t| t.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        if let Some(unknown) = table.keys().find(|k| !known.contains(k)) {
            bail!("{}: [presets.{unknown}] names no preset of {} (known: {})", row.display(), presets_file.display(), known.join(", "))
        }
        if let Some(over) = table.get(preset) {
            merge(&mut merged, over.clone());
        }
    }
    apply_overrides(&mut merged, overrides)?;
    let sets: String = overrides.iter().map(|o| format!(" --set {}", o.key)).collect();
    let typed: T = merged.clone().try_into().map_err(|e| anyhow!("{} (with preset `{preset}`{sets}): {e}", row.display()))?;
    let (trained, why) = Alignment::trained_by(task, &merged);
    if trained != alignment {
        bail!(
            "{} (with preset `{preset}`{sets}): alignment = \"{alignment}\", but {why}: declare alignment = \"{trained}\" (implemented: categorical with soft, exact, hard-enum, hard-sample, var-enum, var-sample, gumbel, rws or kmax; dirichlet with var-relaxed; weibull with model.attention.bayes; bernoulli for g2p)",
            row.display()
        )
    }
    Ok((typed, merged))
}

/// One `--set key=value`: a dotted key of the merged config (`train.epochs`, `eval.beam.beam`)
/// and a TOML value (`2`, `0.1`, `true`, `"soft"`, `[1, 2]`; a bare word is a string).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: Value,
}

impl std::str::FromStr for Override {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let Some((key, raw)) = s.split_once('=') else {
            bail!("`{s}`: expected key=value, e.g. train.epochs=2")
        };
        let key = key.trim();
        if key.split('.').any(|part| part.trim().is_empty()) {
            bail!("`{s}`: the key `{key}` has an empty part (keys are dotted names, e.g. model.dropout)")
        }
        let raw = raw.trim();
        if raw.is_empty() {
            bail!("`{s}`: no value after `=`")
        }
        let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(t) if t.len() == 1 => t.get("v").cloned().unwrap_or_else(|| Value::String(raw.to_string())),
            _ if raw.contains(['\n', '=', '[', '{', '"']) => bail!("`{s}`: `{raw}` is not one TOML value"),
            _ => Value::String(raw.to_string()),
        };
        Ok(Override { key: key.to_string(), value })
    }
}

/// The TOML type of a value, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Sets each override in `merged`, creating the tables on its path. A key that holds a value of
/// another type is refused naming the key and both types (an integer for a float becomes that
/// float, as `1` would be written `1.0`); a key the config does not know is refused when the
/// merged config is typed.
pub fn apply_overrides(merged: &mut Value, overrides: &[Override]) -> Result<()> {
    for o in overrides {
        let parts: Vec<&str> = o.key.split('.').map(str::trim).collect();
        let (last, path) = parts.split_last().context("empty key")?;
        let mut table = merged.as_table_mut().context("the merged config is not a table")?;
        for (i, part) in path.iter().enumerate() {
            let slot = table.entry(part.to_string()).or_insert_with(|| Value::Table(Default::default()));
            let at = parts[..=i].join(".");
            table = match slot {
                Value::Table(t) => t,
                other => bail!("--set {}: `{at}` is {} ({other}), not a table", o.key, type_name(other)),
            };
        }
        let value = match (table.get(*last), &o.value) {
            (Some(Value::Float(_)), Value::Integer(i)) => Value::Float(*i as f64),
            (Some(old), new) if std::mem::discriminant(old) != std::mem::discriminant(new) => {
                bail!("--set {}: `{}` is {} in the config ({old}), got {} ({new})", o.key, o.key, type_name(old), type_name(new))
            }
            (_, new) => new.clone(),
        };
        table.insert(last.to_string(), value);
    }
    Ok(())
}

/// A short stable hash of a merged config (FNV-1a over its TOML text), to tell whether a
/// finished run's result matches the config asked for.
pub fn config_hash(v: &Value) -> String {
    let text = toml::to_string(v).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Checks an objective's settings (`key` names it in the config): K (samples, K-Max's k) at least
/// 1, VIMCO's K at least 2, the Gumbel temperature positive.
pub fn check_objective(key: &str, kind: &crate::objective::ObjectiveKind) -> anyhow::Result<()> {
    use crate::objective::ObjectiveKind as K;
    match *kind {
        K::HardSample { samples } | K::VarSample { samples } | K::Rws { samples } => {
            check::at_least(&format!("{key}.samples"), samples, 1)
        }
        K::Vimco { samples } => check::at_least(&format!("{key}.samples"), samples, 2),
        K::KMax { k } => check::at_least(&format!("{key}.k"), k, 1),
        K::Gumbel { temperature } => check::positive(&format!("{key}.temperature"), temperature),
        _ => Ok(()),
    }
}

/// Range checks of config values, run when a config is loaded; each error names the key, the
/// value and the allowed range.
pub mod check {
    use anyhow::{bail, Result};

    /// An integer of at least `min`.
    pub fn at_least(key: &str, v: usize, min: usize) -> Result<()> {
        if v < min {
            bail!("{key} = {v}: must be at least {min}")
        }
        Ok(())
    }

    /// An optional integer (a limit): when given, at least 1.
    pub fn limit(key: &str, v: Option<usize>) -> Result<()> {
        v.map_or(Ok(()), |v| at_least(key, v, 1))
    }

    /// A finite number > 0.
    pub fn positive(key: &str, v: f64) -> Result<()> {
        if !(v.is_finite() && v > 0.0) {
            bail!("{key} = {v}: must be a finite number > 0")
        }
        Ok(())
    }

    /// A finite number >= 0.
    pub fn non_negative(key: &str, v: f64) -> Result<()> {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{key} = {v}: must be a finite number >= 0")
        }
        Ok(())
    }

    /// A number in the interval from `lo` to `hi`, each end included or not as flagged.
    pub fn within(key: &str, v: f64, (lo, lo_in): (f64, bool), (hi, hi_in): (f64, bool)) -> Result<()> {
        let above = if lo_in { v >= lo } else { v > lo };
        let below = if hi_in { v <= hi } else { v < hi };
        if !(above && below) {
            bail!("{key} = {v}: must be in {}{lo}, {hi}{}", if lo_in { "[" } else { "(" }, if hi_in { "]" } else { ")" })
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        a: i64,
        inner: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        x: i64,
        y: i64,
    }

    #[test]
    fn row_overrides_preset_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("presets.toml"), "[small]\na = 1\ninner = { x = 1, y = 2 }\n").unwrap();
        let row = dir.path().join("row.toml");
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n[inner]\ny = 5\n").unwrap();
        let (c, _): (Cfg, _) = load_with_preset(&row, "small").unwrap();
        assert_eq!((c.a, c.inner.x, c.inner.y), (1, 1, 5));
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n[inner]\nzz = 5\n").unwrap();
        let err = load_with_preset::<Cfg>(&row, "small").unwrap_err().to_string();
        assert!(err.contains("zz") && err.contains("row.toml"), "{err}");
        let err = load_with_preset::<Cfg>(&row, "huge").unwrap_err().to_string();
        assert!(err.contains("huge") && err.contains("small"), "{err}");
    }

    #[test]
    fn overrides_set_typed_values_and_name_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("presets.toml"), "[small]\na = 1\ninner = { x = 1, y = 2 }\n").unwrap();
        let row = dir.path().join("row.toml");
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n[inner]\ny = 5\n").unwrap();
        let set = |s: &[&str]| s.iter().map(|o| o.parse::<Override>().unwrap()).collect::<Vec<_>>();
        let (c, merged): (Cfg, _) = load_with_overrides(&row, "small", &set(&["inner.x=7", "a = 3"])).unwrap();
        assert_eq!((c.a, c.inner.x, c.inner.y), (3, 7, 5));
        // the same values written in the row file: the same merged config and hash
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\na = 3\n[inner]\ny = 5\nx = 7\n").unwrap();
        let (_, edited): (Cfg, _) = load_with_preset(&row, "small").unwrap();
        assert_eq!(config_hash(&edited), config_hash(&merged));
        let err = load_with_overrides::<Cfg>(&row, "small", &set(&["inner.z=1"])).unwrap_err().to_string();
        assert!(err.contains("--set inner.z") && err.contains("unknown field `z`"), "{err}");
        let err = load_with_overrides::<Cfg>(&row, "small", &set(&["inner.x=abc"])).unwrap_err().to_string();
        assert!(err.contains("inner.x") && err.contains("an integer") && err.contains("a string"), "{err}");
        let err = load_with_overrides::<Cfg>(&row, "small", &set(&["a.b=1"])).unwrap_err().to_string();
        assert!(err.contains("`a` is an integer") && err.contains("not a table"), "{err}");
        for bad in ["novalue", "inner..x=1", "a=", "a=[1, 2"] {
            assert!(bad.parse::<Override>().is_err(), "{bad} parsed");
        }
        let mut v: Value = toml::from_str("lr = 0.5").unwrap();
        apply_overrides(&mut v, &set(&["lr=1"])).unwrap();
        assert_eq!(v["lr"], Value::Float(1.0));
    }

    #[test]
    fn per_preset_row_settings_apply_to_their_preset_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("presets.toml"), "[small]
a = 1
inner = { x = 1, y = 2 }
[big]
a = 10
inner = { x = 10, y = 20 }
").unwrap();
        let row = dir.path().join("row.toml");
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n[inner]
y = 5

[presets.big.inner]
x = 99
").unwrap();
        let (c, merged): (Cfg, _) = load_with_preset(&row, "big").unwrap();
        assert_eq!((c.a, c.inner.x, c.inner.y), (10, 99, 5));
        assert!(merged.get("presets").is_none(), "the per-preset tables stay out of the merged config");
        let (c, _): (Cfg, _) = load_with_preset(&row, "small").unwrap();
        assert_eq!((c.a, c.inner.x, c.inner.y), (1, 1, 5));
        // the same settings written for every preset give the same merged config (and hash)
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n[inner]
y = 5
x = 99
").unwrap();
        let (_, plain): (Cfg, _) = load_with_preset(&row, "big").unwrap();
        assert_eq!(config_hash(&plain), config_hash(&merged));
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n[presets.huge.inner]
x = 1
").unwrap();
        let err = load_with_preset::<Cfg>(&row, "small").unwrap_err().to_string();
        assert!(err.contains("presets.huge") && err.contains("row.toml"), "{err}");
    }

    #[test]
    fn a_row_declares_its_task_and_the_task_stays_out_of_the_merged_config() {
        let dir = tempfile::tempdir().unwrap();
        let nmt = dir.path().join("nmt");
        std::fs::create_dir_all(&nmt).unwrap();
        std::fs::write(nmt.join("presets.toml"), "[small]\na = 1\ninner = { x = 1, y = 2 }\n").unwrap();
        let row = nmt.join("row.toml");
        std::fs::write(&row, "task = \"nmt\"\nalignment = \"categorical\"\n").unwrap();
        assert_eq!(row_task(&row).unwrap(), Task::Nmt);
        let (_, merged): (Cfg, _) = load_with_preset(&row, "small").unwrap();
        assert!(merged.get("task").is_none(), "{merged}");
        // the hash is the one of the same row without the key
        let plain: Value = toml::from_str("a = 1\ninner = { x = 1, y = 2 }\n").unwrap();
        assert_eq!(config_hash(&merged), config_hash(&plain));
        let cases: [(&str, &[&str]); 4] = [
            ("a = 1\n", &["row.toml", "no `task`", "\"nmt\", \"wmt17\", \"vqa\" or \"g2p\""]),
            ("task = \"mt\"\n", &["row.toml", "task = \"mt\" is not a task", "\"g2p\""]),
            ("task = 3\n", &["row.toml", "task = 3", "must be a string"]),
            ("task = \"vqa\"\n", &["row.toml", "task = \"vqa\"", "`nmt` folder"]),
        ];
        for (text, needles) in cases {
            std::fs::write(&row, text).unwrap();
            for err in [row_task(&row).unwrap_err().to_string(), load_with_preset::<Cfg>(&row, "small").unwrap_err().to_string()] {
                for n in needles {
                    assert!(err.contains(n), "`{n}` missing from: {err}");
                }
            }
        }
        // outside a task folder the declared task decides
        let elsewhere = dir.path().join("row.toml");
        std::fs::write(&elsewhere, "task = \"g2p\"\n").unwrap();
        assert_eq!(row_task(&elsewhere).unwrap(), Task::G2p);
    }

    #[test]
    fn a_row_declares_its_alignment_which_its_objective_and_model_must_train() {
        let dir = tempfile::tempdir().unwrap();
        let vqa = dir.path().join("vqa");
        std::fs::create_dir_all(&vqa).unwrap();
        std::fs::write(vqa.join("presets.toml"), "[small]\nobjective = { kind = \"soft\" }\n").unwrap();
        let row = vqa.join("row.toml");
        let load = |text: &str| {
            std::fs::write(&row, text).unwrap();
            load_with_preset::<Value>(&row, "small")
        };
        // declared and trained agree; the key stays out of the merged config and its hash
        let (_, merged) = load("task = \"vqa\"\nalignment = \"categorical\"\n").unwrap();
        assert!(merged.get("alignment").is_none(), "{merged}");
        let plain: Value = toml::from_str("objective = { kind = \"soft\" }\n").unwrap();
        assert_eq!(config_hash(&merged), config_hash(&plain));
        assert_eq!(declared_alignment(&row, &read_toml(&row).unwrap()).unwrap(), Alignment::Categorical);
        load("task = \"vqa\"\nalignment = \"dirichlet\"\nobjective = { kind = \"var-relaxed\" }\n").unwrap();
        load("task = \"vqa\"\nalignment = \"weibull\"\n[model.attention]\nbayes = { kind = \"bam\" }\n").unwrap();
        let cases: [(&str, &[&str]); 6] = [
            ("task = \"vqa\"\n", &["row.toml", "no `alignment`", "\"categorical\", \"dirichlet\", \"weibull\" or \"bernoulli\""]),
            ("task = \"vqa\"\nalignment = \"gaussian\"\n", &["row.toml", "alignment = \"gaussian\" is not an alignment distribution", "\"bernoulli\""]),
            ("task = \"vqa\"\nalignment = 2\n", &["row.toml", "alignment = 2", "must be a string"]),
            ("task = \"vqa\"\nalignment = \"dirichlet\"\n", &["row.toml", "alignment = \"dirichlet\"", "objective soft", "declare alignment = \"categorical\""]),
            (
                "task = \"vqa\"\nalignment = \"categorical\"\nobjective = { kind = \"var-relaxed\" }\n",
                &["alignment = \"categorical\"", "var-relaxed samples a Dirichlet", "declare alignment = \"dirichlet\""],
            ),
            (
                "task = \"vqa\"\nalignment = \"categorical\"\n[model.attention]\nbayes = { kind = \"babn\" }\n",
                &["bayes (kind \"babn\") samples Weibull", "declare alignment = \"weibull\""],
            ),
        ];
        for (text, needles) in cases {
            let err = format!("{:#}", load(text).unwrap_err());
            for n in needles {
                assert!(err.contains(n), "`{n}` missing from: {err}");
            }
        }
        // an override that changes the distribution is refused too, naming the override
        std::fs::write(&row, "task = \"vqa\"\nalignment = \"categorical\"\n").unwrap();
        let set = vec!["objective.kind=\"var-relaxed\"".parse::<Override>().unwrap()];
        let err = format!("{:#}", load_with_overrides::<Value>(&row, "small", &set).unwrap_err());
        assert!(err.contains("--set objective.kind") && err.contains("declare alignment = \"dirichlet\""), "{err}");
        // g2p's alignment is Bernoulli whatever the objective
        let g2p = dir.path().join("g2p");
        std::fs::create_dir_all(&g2p).unwrap();
        std::fs::write(g2p.join("presets.toml"), "[small]\nobjective = { kind = \"vimco\" }\n").unwrap();
        std::fs::write(g2p.join("row.toml"), "task = \"g2p\"\nalignment = \"categorical\"\n").unwrap();
        let err = format!("{:#}", load_with_preset::<Value>(&g2p.join("row.toml"), "small").unwrap_err());
        assert!(err.contains("Bernoulli emit decisions") && err.contains("declare alignment = \"bernoulli\""), "{err}");
    }

    #[test]
    fn every_row_config_in_the_repository_declares_the_alignment_it_trains() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut checked = 0;
        for task in Task::ALL {
            let Ok(entries) = std::fs::read_dir(configs.join(task.name())) else { continue };
            for e in entries {
                let path = e.unwrap().path();
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                if path.extension().is_none_or(|x| x != "toml") || stem == "presets" || stem == "paper-numbers" {
                    continue;
                }
                let presets = read_toml(&presets_path(&path)).unwrap();
                for preset in presets.as_table().unwrap().keys() {
                    load_with_preset::<Value>(&path, preset).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                }
                checked += 1;
            }
        }
        assert!(checked >= 40, "only {checked} row configs found");
    }
}
