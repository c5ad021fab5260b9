#![allow(dead_code)]
//! Helpers shared by the laboratory's integration tests.

/// The data cache the end-to-end tests share (downloads happen once per machine).
pub fn data_cache() -> std::path::PathBuf {
    std::env::var_os("VARATTN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("varattn-ding-cache"))
}

/// `varattn train --preset smoke` on `configs/<task>/<row>.toml` into `out`.
pub fn train_smoke(task: &str, row: &str, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let root = varattn_lab::repo_root();
    std::process::Command::new(env!("CARGO_BIN_EXE_varattn"))
        .args(["train", "--preset", "smoke", "--quiet", "--config"])
        .arg(root.join("configs").join(task).join(format!("{row}.toml")))
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(data_cache())
        .args(extra)
        .output()
        .unwrap()
}

/// The `result.json` of a run directory.
pub fn run_result(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

/// Puts `bytes` into `cache` as huggingface_hub does: blobs/<sha256>, a relative symlink
/// snapshots/<commit>/<path> -> ../../(..)/blobs/<sha256>, and refs/<revision> = commit.
pub fn put_cached(cache: &std::path::Path, repo: &str, revision: &str, commit: &str, path: &str, bytes: &[u8]) {
    let folder = cache.join(varattn_lab::data::hub::repo_folder_name(repo));
    let sha = varattn_lab::provenance::sha256_hex(bytes);
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    std::fs::write(folder.join("blobs").join(&sha), bytes).unwrap();
    let link = folder.join("snapshots").join(commit).join(path);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let up = "../".repeat(2 + path.matches('/').count());
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("{up}blobs/{sha}"), &link).unwrap();
    if revision != commit {
        let r = folder.join("refs").join(revision);
        std::fs::create_dir_all(r.parent().unwrap()).unwrap();
        std::fs::write(r, commit).unwrap();
    }
}
