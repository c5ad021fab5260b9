//! Data flows one way. Each top-level module of the library (`src/`) and of the laboratory
//! (`lab/src/`) has a layer, and a module may name (`crate::<module>`) only modules of lower
//! layers: no cycles, and in the laboratory data -> models -> train / eval -> experiments ->
//! report -> the tools. Comments and `#[cfg(test)]` modules are not counted.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The library's layers: the generator, special functions, distributions and building blocks,
/// objectives, attention layers.
const LIBRARY: &[(&str, u32)] = &[("rng", 0), ("special", 1), ("distributions", 2), ("nn", 2), ("objective", 3), ("attention", 4)];

/// The laboratory's layers (the library's modules, re-exported, sit below all of them).
const LAB: &[(&str, u32)] = &[
    ("provenance", 0),
    ("stats", 0),
    ("rundir", 1),
    ("plot", 1),
    ("config", 2),
    ("data", 3),
    ("kernels", 4),
    ("models", 5),
    ("train", 6),
    ("eval", 6),
    ("experiments", 7),
    ("report", 8),
    ("demo", 9),
    ("selftest", 9),
    ("bench", 9),
    ("parity", 10),
];

/// The source of every `.rs` file under `dir`, by the top-level module it belongs to.
fn sources_by_module(src: &Path) -> BTreeMap<String, Vec<(PathBuf, String)>> {
    let mut out: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            out.entry(top).or_default().push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// Every `crate::<module>` reference that does not go to a lower layer, as "file: a -> b".
fn violations(src: &Path, layers: &[(&str, u32)]) -> Vec<String> {
    let layer: BTreeMap<&str, u32> = layers.iter().copied().collect();
    let mut bad = vec![];
    for (module, files) in sources_by_module(src) {
        let Some(&own) = layer.get(module.as_str()) else {
            bad.push(format!("{}: module `{module}` has no layer in tests/module_layers.rs", src.join(&module).display()));
            continue;
        };
        for (path, text) in files {
            let code = code(&text);
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name == module {
                    continue;
                }
                if let Some(&theirs) = layer.get(name.as_str()) {
                    if theirs >= own {
                        bad.push(format!("{}: {module} (layer {own}) -> {name} (layer {theirs})", path.display()));
                    }
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn the_library_modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let bad = violations(&src, LIBRARY);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_laboratory_modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src, LAB);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_reference_upwards_is_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/mod.rs"), "use crate::models::Thing; // crate::report in a comment\n").unwrap();
    std::fs::write(dir.path().join("models.rs"), "use crate::data::Corpus;\n#[cfg(test)]\nmod tests {\n    use crate::report::x;\n}\n").unwrap();
    std::fs::write(dir.path().join("report.rs"), "").unwrap();
    let bad = violations(dir.path(), &[("data", 0), ("models", 1), ("report", 2)]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].ends_with("data (layer 0) -> models (layer 1)"), "{bad:?}");
    std::fs::write(dir.path().join("extra.rs"), "").unwrap();
    assert!(violations(dir.path(), &[("data", 0), ("models", 1), ("report", 2)]).iter().any(|v| v.contains("`extra` has no layer")));
}
