//! Configuration files: a row of a paper table is a TOML file; a preset (smoke, cpu, paper)
//! supplies the sizes. `load_with_preset` deep-merges the row file over the preset's table and
//! deserialises with unknown keys rejected, naming the file and key. A row may also hold
//! `[presets.<name>]` tables: settings of that row under that preset only, merged last.
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::Value;

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
/// and the merged TOML (for hashing and provenance).
pub fn load_with_preset<T: DeserializeOwned>(row: &Path, preset: &str) -> Result<(T, Value)> {
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
    let per_preset = row_value.as_table_mut().and_then(|t| t.remove("presets"));
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
    let typed: T = merged
        .clone()
        .try_into()
        .map_err(|e| anyhow!("{} (with preset `{preset}`): {e}", row.display()))?;
    Ok((typed, merged))
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
        std::fs::write(&row, "[inner]\ny = 5\n").unwrap();
        let (c, _): (Cfg, _) = load_with_preset(&row, "small").unwrap();
        assert_eq!((c.a, c.inner.x, c.inner.y), (1, 1, 5));
        std::fs::write(&row, "[inner]\nzz = 5\n").unwrap();
        let err = load_with_preset::<Cfg>(&row, "small").unwrap_err().to_string();
        assert!(err.contains("zz") && err.contains("row.toml"), "{err}");
        let err = load_with_preset::<Cfg>(&row, "huge").unwrap_err().to_string();
        assert!(err.contains("huge") && err.contains("small"), "{err}");
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
        std::fs::write(&row, "[inner]
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
        std::fs::write(&row, "[inner]
y = 5
x = 99
").unwrap();
        let (_, plain): (Cfg, _) = load_with_preset(&row, "big").unwrap();
        assert_eq!(config_hash(&plain), config_hash(&merged));
        std::fs::write(&row, "[presets.huge.inner]
x = 1
").unwrap();
        let err = load_with_preset::<Cfg>(&row, "small").unwrap_err().to_string();
        assert!(err.contains("presets.huge") && err.contains("row.toml"), "{err}");
    }
}
