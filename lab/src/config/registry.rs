//! The table registry, `configs/tables.toml`: every table of the report with its task, the
//! `reproduce.sh` group that trains it, its rows in table order and how many seeds each row
//! trains under each preset. `varattn tables` lists the runs it asks for and `varattn report`
//! takes the row order of its tables from it.
//!
//! ```toml
//! [[table]]
//! name = "nmt"                   # the report's table (claims-nmt.md, ...)
//! group = "nmt"                  # reproduce.sh --only nmt
//! task = "nmt"                   # rows are configs/nmt/<row>.toml, runs go to runs/nmt/
//! seeds = { smoke = 1, cpu = 1 } # per preset; a preset not named: the row does not train under it
//! rows = ["hard-sample", { row = "soft", seeds = { cpu = 3 } }]
//! ```
//!
//! A row is its name or a table `{ row, seeds }` whose `seeds` are merged over the table's, preset
//! by preset. Loading checks everything and names the file, the table, the row and the field of
//! any error: the keys, the task (nmt, wmt17, vqa, g2p), names that are plain and unique (no table
//! twice, no row twice in a table), a config file `<configs>/<task>/<row>.toml` for every row that
//! declares the table's task and the row's name, and seeds counts of at least 1 for presets the
//! task's presets file has.
use super::{row_task, Task};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use toml::Value;

/// The registry's file name inside the configs folder.
pub const FILE: &str = "tables.toml";

/// The seed of a row's first run; its n-th run has seed `FIRST_SEED + n - 1`.
pub const FIRST_SEED: u64 = 3435;

/// `configs/tables.toml`, loaded and checked.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// The tables in file order.
    pub tables: Vec<TableSpec>,
}

/// One table of the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The report's name for the table (its claims file is `claims-<name>.md`).
    pub name: String,
    /// The `reproduce.sh --only` group that trains its rows.
    pub group: String,
    pub task: Task,
    /// The rows in table order.
    pub rows: Vec<RowSpec>,
}

/// One row of a table: a row config `configs/<task>/<row>.toml` and its seeds per preset.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    pub row: String,
    /// Seeds the row trains under each preset (the table's, overridden by the row's); a preset
    /// that is not a key here does not train the row.
    pub seeds: BTreeMap<String, usize>,
}

/// One run a table needs: a row config trained with one seed under one preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The group of the first selected table that lists the run.
    pub group: String,
    pub task: Task,
    pub row: String,
    pub seed: u64,
}

impl TableSpec {
    /// The row names in table order.
    pub fn row_names(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r.row.as_str()).collect()
    }
}

impl Registry {
    /// Reads and checks `<configs>/tables.toml`, whose row configs live under `configs`.
    pub fn load(configs: &Path) -> Result<Registry> {
        let path = configs.join(FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading the table registry {}", path.display()))?;
        Registry::parse(&text, &path, configs)
    }

    /// Checks the registry `text`, read from `path`, against the row configs under `configs`.
    pub fn parse(text: &str, path: &Path, configs: &Path) -> Result<Registry> {
        let file = path.display().to_string();
        let doc: Value = toml::from_str(text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let top = doc.as_table().with_context(|| format!("{file}: not a TOML table"))?;
        if let Some(k) = top.keys().find(|k| *k != "table") {
            bail!("{file}: unknown key `{k}` (the file holds [[table]] entries only)")
        }
        let Some(Value::Array(entries)) = top.get("table") else {
            bail!("{file}: no [[table]] entries (each with name, group, task, seeds and rows)")
        };
        let mut presets_of: BTreeMap<Task, Vec<String>> = BTreeMap::new();
        let mut tables: Vec<TableSpec> = vec![];
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{file}: [[table]] {}", i + 1);
            let t = entry.as_table().with_context(|| format!("{at}: not a table"))?;
            if let Some(k) = t.keys().find(|k| !["name", "group", "task", "seeds", "rows"].contains(&k.as_str())) {
                bail!("{at}: unknown key `{k}` (allowed: name, group, task, seeds, rows)")
            }
            let name = plain_string(t.get("name"), &at, "name")?;
            let at = format!("{file}: table `{name}`");
            if tables.iter().any(|o| o.name == name) {
                bail!("{at}: a second table of that name (table names are unique)")
            }
            let group = plain_string(t.get("group"), &at, "group")?;
            let task_name = plain_string(t.get("task"), &at, "task")?;
            let task = Task::from_name(&task_name).with_context(|| format!("{at}: task = \"{task_name}\" is not a task; allowed: {}", Task::allowed()))?;
            if let std::collections::btree_map::Entry::Vacant(e) = presets_of.entry(task) {
                e.insert(preset_names(configs, task)?);
            }
            let presets = &presets_of[&task];
            let table_seeds = seeds(t.get("seeds"), &at, "seeds", presets, configs, task)?;
            let Some(Value::Array(raw_rows)) = t.get("rows") else {
                bail!("{at}: `rows` must be an array of row names or {{ row, seeds }} tables")
            };
            if raw_rows.is_empty() {
                bail!("{at}: `rows` is empty")
            }
            let mut rows: Vec<RowSpec> = vec![];
            for (j, raw) in raw_rows.iter().enumerate() {
                let (row, own) = match raw {
                    Value::String(_) => (plain_string(Some(raw), &format!("{at}, rows[{j}]"), "row")?, BTreeMap::new()),
                    Value::Table(r) => {
                        let rat = format!("{at}, rows[{j}]");
                        if let Some(k) = r.keys().find(|k| *k != "row" && *k != "seeds") {
                            bail!("{rat}: unknown key `{k}` (allowed: row, seeds)")
                        }
                        let row = plain_string(r.get("row"), &rat, "row")?;
                        let own = seeds(r.get("seeds"), &format!("{at}, row `{row}`"), "seeds", presets, configs, task)?;
                        (row, own)
                    }
                    other => bail!("{at}, rows[{j}]: {other} is neither a row name nor a {{ row, seeds }} table"),
                };
                let rat = format!("{at}, row `{row}`");
                if rows.iter().any(|r| r.row == row) {
                    bail!("{rat}: listed twice (a row appears once per table)")
                }
                check_row_config(configs, task, &row, &rat)?;
                let mut merged = table_seeds.clone();
                merged.extend(own);
                rows.push(RowSpec { row, seeds: merged });
            }
            tables.push(TableSpec { name, group, task, rows });
        }
        if tables.is_empty() {
            bail!("{file}: no [[table]] entries")
        }
        Ok(Registry { path: path.to_path_buf(), tables })
    }

    /// The table called `name`; the error lists the registry's tables.
    pub fn table(&self, name: &str) -> Result<&TableSpec> {
        self.tables.iter().find(|t| t.name == name).with_context(|| {
            let known: Vec<&str> = self.tables.iter().map(|t| t.name.as_str()).collect();
            format!("{}: no table `{name}` (tables: {})", self.path.display(), known.join(", "))
        })
    }

    /// The groups, in the order of their first table.
    pub fn groups(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![];
        for t in &self.tables {
            if !out.contains(&t.group.as_str()) {
                out.push(&t.group);
            }
        }
        out
    }

    /// Whether a table other than `table` lists the row `row` of `table`'s task.
    pub fn shared(&self, table: &TableSpec, row: &str) -> bool {
        self.tables.iter().any(|t| t.name != table.name && t.task == table.task && t.rows.iter().any(|r| r.row == row))
    }

    /// The runs the tables of the groups `only` (every table when empty) need under `preset`, in
    /// table order (a row's seeds together), each (task, row, seed) once: a row listed by two
    /// tables trains the larger of their seed counts. With `at_least`, every row that trains under
    /// `preset` trains at least that many seeds. An unknown group is an error listing the groups.
    pub fn runs(&self, preset: &str, only: &[String], at_least: Option<usize>) -> Result<Vec<Run>> {
        let groups = self.groups();
        if let Some(g) = only.iter().find(|g| !groups.contains(&g.as_str())) {
            bail!("{}: no group `{g}` (groups: {})", self.path.display(), groups.join(", "))
        }
        if at_least == Some(0) {
            bail!("at least 0 seeds: the seed count must be at least 1")
        }
        let mut seen: BTreeSet<(Task, &str, u64)> = BTreeSet::new();
        let mut out = vec![];
        for t in self.tables.iter().filter(|t| only.is_empty() || only.contains(&t.group)) {
            for r in &t.rows {
                let Some(&n) = r.seeds.get(preset) else { continue };
                let n = at_least.map_or(n, |m| n.max(m));
                for seed in (0..n as u64).map(|i| FIRST_SEED + i) {
                    if seen.insert((t.task, r.row.as_str(), seed)) {
                        out.push(Run { group: t.group.clone(), task: t.task, row: r.row.clone(), seed });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A string field that is a plain name (no path separator, no `..`, not empty).
fn plain_string(v: Option<&Value>, at: &str, key: &str) -> Result<String> {
    match v {
        None => bail!("{at}: no `{key}`"),
        Some(Value::String(s)) => {
            crate::rundir::check_plain_name(key, s).with_context(|| at.to_string())?;
            Ok(s.clone())
        }
        Some(other) => bail!("{at}: {key} = {other}: must be a string"),
    }
}

/// The presets `<configs>/<task>/presets.toml` defines.
fn preset_names(configs: &Path, task: Task) -> Result<Vec<String>> {
    let path = configs.join(task.name()).join("presets.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(v.as_table().map(|t| t.keys().cloned().collect()).unwrap_or_default())
}

/// A `seeds` table (absent: empty): preset name -> count of at least 1, for presets of the task.
fn seeds(v: Option<&Value>, at: &str, key: &str, presets: &[String], configs: &Path, task: Task) -> Result<BTreeMap<String, usize>> {
    let Some(v) = v else { return Ok(BTreeMap::new()) };
    let t = v.as_table().with_context(|| format!("{at}: {key} = {v}: must be a table of preset = count, e.g. {{ cpu = 3 }}"))?;
    let mut out = BTreeMap::new();
    for (preset, n) in t {
        if !presets.contains(preset) {
            let file = configs.join(task.name()).join("presets.toml");
            bail!("{at}: {key}.{preset}: {} has no preset `{preset}` (its presets: {})", file.display(), presets.join(", "))
        }
        match n.as_integer() {
            Some(n) if n >= 1 => out.insert(preset.clone(), n as usize),
            _ => bail!("{at}: {key}.{preset} = {n}: must be a whole number of seeds, at least 1 (leave the preset out to not train the row under it)"),
        };
    }
    Ok(out)
}

/// The row config of a registered row exists, declares the table's task and has the row's name.
fn check_row_config(configs: &Path, task: Task, row: &str, at: &str) -> Result<()> {
    let path = configs.join(task.name()).join(format!("{row}.toml"));
    if !path.is_file() {
        bail!("{at}: no row config {} (a row is a file configs/<task>/<row>.toml)", path.display())
    }
    let declared = row_task(&path).with_context(|| at.to_string())?;
    if declared != task {
        bail!("{at}: {} declares task = \"{declared}\", the table's task is \"{task}\"", path.display())
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match v.get("name").and_then(Value::as_str) {
        Some(n) if n == row => Ok(()),
        Some(n) => bail!("{at}: {} has name = \"{n}\"; a registered row's name is its file name (`{row}`), the folder of its runs", path.display()),
        None => bail!("{at}: {} has no `name`", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped registry: every table loads, and the main claims' rows train 3 seeds under
    /// cpu and full.
    #[test]
    fn the_shipped_registry_loads_and_gives_the_main_claims_three_seeds() {
        let configs = crate::repo_root().join("configs");
        let reg = Registry::load(&configs).unwrap();
        let names: Vec<&str> = reg.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["nmt", "vqa", "vqa-aa-bam", "g2p", "wmt17"]);
        assert_eq!(reg.groups(), ["nmt", "vqa", "vqa-bayes", "g2p", "wmt17"]);
        let seeds = |table: &str, row: &str, preset: &str| {
            reg.table(table).unwrap().rows.iter().find(|r| r.row == row).unwrap().seeds.get(preset).copied().unwrap_or(0)
        };
        for (table, rows) in [("nmt", &["soft", "exact", "var-enum", "var-sample", "hard-enum"][..]), ("vqa", &["soft", "exact", "var-enum", "hard-enum"][..])] {
            for row in rows {
                for preset in ["cpu", "full"] {
                    assert!(seeds(table, row, preset) >= 3, "{table} {row} {preset}");
                }
            }
        }
        assert_eq!(seeds("nmt", "gumbel", "cpu"), 1);
        assert_eq!(seeds("nmt", "gumbel", "full"), 3);
        assert_eq!(seeds("nmt", "soft", "smoke"), 1);
    }

    fn lines(runs: &[Run]) -> Vec<String> {
        runs.iter().map(|r| format!("{} {} {}", r.task, r.row, r.seed)).collect()
    }

    #[test]
    fn runs_follow_the_presets_dedup_shared_rows_and_select_groups() {
        let configs = crate::repo_root().join("configs");
        let reg = Registry::load(&configs).unwrap();
        // reference: NMT soft, exact and var-enum, one seed each; nothing else
        let reference = reg.runs("reference", &[], None).unwrap();
        assert_eq!(lines(&reference), ["nmt soft 3435", "nmt exact 3435", "nmt var-enum 3435"]);
        // smoke: one seed a row, VQA soft once although two tables list it; wmt17 paper only
        let smoke = reg.runs("smoke", &[], None).unwrap();
        let l = lines(&smoke);
        assert_eq!(l.iter().filter(|x| *x == "vqa soft 3435").count(), 1, "{l:?}");
        assert!(l.iter().all(|x| x.ends_with(" 3435")) && !l.iter().any(|x| x.starts_with("wmt17")), "{l:?}");
        assert_eq!(l.len(), 9 + 12 + 8 + 8, "{l:?}");
        // cpu: the main claims' rows three seeds, in table order, a row's seeds together
        let cpu = lines(&reg.runs("cpu", &["nmt".to_string()], None).unwrap());
        assert_eq!(cpu[..4], ["nmt soft 3435", "nmt soft 3436", "nmt soft 3437", "nmt exact 3435"]);
        assert_eq!(cpu.len(), 5 * 3 + 4);
        // the vqa-bayes group alone trains soft (listed by it), once per seed
        let bayes = reg.runs("cpu", &["vqa-bayes".to_string()], None).unwrap();
        assert_eq!(lines(&bayes)[0], "vqa soft 3435");
        assert_eq!(bayes.len(), 9);
        // vqa and vqa-bayes together: soft's three seeds (the larger count) once, under vqa
        let both = reg.runs("cpu", &["vqa-bayes".to_string(), "vqa".to_string()], None).unwrap();
        let soft: Vec<&Run> = both.iter().filter(|r| r.row == "soft").collect();
        assert_eq!(soft.len(), 3);
        assert!(soft.iter().all(|r| r.group == "vqa"));
        // at least 2 seeds: every row that trains under the preset, and no more rows
        let two = lines(&reg.runs("reference", &[], Some(2)).unwrap());
        assert_eq!(two, ["nmt soft 3435", "nmt soft 3436", "nmt exact 3435", "nmt exact 3436", "nmt var-enum 3435", "nmt var-enum 3436"]);
        assert_eq!(reg.runs("cpu", &["nmt".to_string()], Some(2)).unwrap().len(), 5 * 3 + 4 * 2);
        // wmt17 under paper only
        assert_eq!(lines(&reg.runs("paper", &["wmt17".to_string()], None).unwrap()), ["wmt17 soft 3435", "wmt17 var-enum 3435", "wmt17 var-sample 3435"]);
        assert!(reg.runs("cpu", &["wmt17".to_string()], None).unwrap().is_empty());
        let err = reg.runs("cpu", &["demo".to_string()], None).unwrap_err().to_string();
        assert!(err.contains("tables.toml") && err.contains("no group `demo`") && err.contains("vqa-bayes"), "{err}");
        assert!(reg.runs("cpu", &[], Some(0)).is_err());
    }

    /// A configs folder with an nmt task (presets smoke and cpu; rows soft and exact).
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let nmt = dir.path().join("nmt");
        std::fs::create_dir_all(&nmt).unwrap();
        std::fs::write(nmt.join("presets.toml"), "[smoke]\n[cpu]\n").unwrap();
        for row in ["soft", "exact"] {
            std::fs::write(nmt.join(format!("{row}.toml")), format!("task = \"nmt\"\nalignment = \"categorical\"\nname = \"{row}\"\n")).unwrap();
        }
        std::fs::write(nmt.join("misnamed.toml"), "task = \"nmt\"\nalignment = \"categorical\"\nname = \"other\"\n").unwrap();
        dir
    }

    fn parse(dir: &tempfile::TempDir, text: &str) -> Result<Registry> {
        Registry::parse(text, &dir.path().join(FILE), dir.path())
    }

    #[test]
    fn a_registry_merges_row_seeds_over_the_table_s() {
        let dir = fixture();
        let reg = parse(&dir, "[[table]]\nname = \"t\"\ngroup = \"g\"\ntask = \"nmt\"\nseeds = { smoke = 1, cpu = 2 }\nrows = [\"soft\", { row = \"exact\", seeds = { cpu = 3 } }]\n").unwrap();
        let t = reg.table("t").unwrap();
        assert_eq!(t.row_names(), ["soft", "exact"]);
        assert_eq!(t.rows[0].seeds, BTreeMap::from([("smoke".to_string(), 1), ("cpu".to_string(), 2)]));
        assert_eq!(t.rows[1].seeds, BTreeMap::from([("smoke".to_string(), 1), ("cpu".to_string(), 3)]));
        let err = reg.table("u").unwrap_err().to_string();
        assert!(err.contains("no table `u`") && err.contains("tables: t"), "{err}");
    }

    #[test]
    fn registry_errors_name_the_file_the_table_the_row_and_the_field() {
        let dir = fixture();
        let table = |body: &str| format!("[[table]]\nname = \"t\"\ngroup = \"g\"\n{body}\n");
        let cases: Vec<(String, &[&str])> = vec![
            (table("task = \"mt\"\nrows = [\"soft\"]"), &["table `t`", "task = \"mt\" is not a task", "\"nmt\", \"wmt17\", \"vqa\" or \"g2p\""]),
            (table("rows = [\"soft\"]"), &["table `t`", "no `task`"]),
            (table("task = \"nmt\"\nrows = [\"soft\", \"exact\", \"soft\"]"), &["table `t`, row `soft`", "listed twice"]),
            (table("task = \"nmt\"\nrows = [\"missing\"]"), &["table `t`, row `missing`", "no row config", "missing.toml"]),
            (table("task = \"nmt\"\nrows = [\"misnamed\"]"), &["row `misnamed`", "name = \"other\""]),
            (table("task = \"nmt\"\nseeds = { cpu = 0 }\nrows = [\"soft\"]"), &["table `t`", "seeds.cpu = 0", "at least 1"]),
            (table("task = \"nmt\"\nrows = [{ row = \"soft\", seeds = { cpu = -2 } }]"), &["row `soft`", "seeds.cpu = -2"]),
            (table("task = \"nmt\"\nrows = [{ row = \"soft\", seeds = { huge = 1 } }]"), &["row `soft`", "seeds.huge", "no preset `huge`", "cpu, smoke"]),
            (table("task = \"nmt\"\nrows = [{ row = \"soft\", seed = 1 }]"), &["rows[0]", "unknown key `seed`", "row, seeds"]),
            (table("task = \"nmt\"\nrows = []"), &["table `t`", "`rows` is empty"]),
            (table("task = \"nmt\"\nrow = [\"soft\"]"), &["[[table]] 1", "unknown key `row`"]),
            (table("task = \"nmt\"\nrows = [\"../soft\"]"), &["rows[0]", "plain name"]),
            (format!("{}{}", table("task = \"nmt\"\nrows = [\"soft\"]"), table("task = \"nmt\"\nrows = [\"exact\"]")), &["table `t`", "a second table"]),
            ("tables = 1\n".to_string(), &["unknown key `tables`"]),
            ("".to_string(), &["no [[table]] entries"]),
            ("[[table]\n".to_string(), &["tables.toml"]),
        ];
        for (text, needles) in cases {
            let err = format!("{:#}", parse(&dir, &text).unwrap_err());
            assert!(err.contains(FILE), "{err}");
            for n in needles {
                assert!(err.contains(n), "`{n}` missing from: {err}\n(registry:\n{text})");
            }
        }
        // a row file of another task (here: one that declares none)
        std::fs::write(dir.path().join("nmt").join("untasked.toml"), "name = \"untasked\"\n").unwrap();
        let err = format!("{:#}", parse(&dir, &table("task = \"nmt\"\nrows = [\"untasked\"]")).unwrap_err());
        assert!(err.contains("row `untasked`") && err.contains("no `task`"), "{err}");
    }
}
