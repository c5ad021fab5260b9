#![allow(dead_code)]
//! Helpers shared by the integration tests.
use candle_core::{Device, Result, Tensor, Var};

pub fn cpu() -> Device {
    Device::Cpu
}

pub fn var(data: &[f64]) -> Var {
    Var::new(data, &Device::Cpu).unwrap()
}

pub fn to_f64s(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Central finite differences of a scalar function of one parameter vector, compared with the
/// gradient candle's backward pass records. Fails with the worst coordinate.
pub fn check_gradient<F>(x0: &[f64], f: F, h: f64, tol: f64)
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let x = var(x0);
    let y = f(x.as_tensor()).unwrap();
    let grads = y.backward().unwrap();
    let analytic = to_f64s(grads.get(&x).expect("no gradient reached the parameter"));
    for i in 0..x0.len() {
        let mut up = x0.to_vec();
        let mut down = x0.to_vec();
        up[i] += h;
        down[i] -= h;
        let fu = scalar(&f(&Tensor::new(up.as_slice(), &Device::Cpu).unwrap()).unwrap());
        let fd = scalar(&f(&Tensor::new(down.as_slice(), &Device::Cpu).unwrap()).unwrap());
        let numeric = (fu - fd) / (2.0 * h);
        let err = (numeric - analytic[i]).abs() / (1.0 + numeric.abs());
        assert!(err < tol, "coordinate {i}: analytic {} vs finite difference {numeric} (x = {x0:?})", analytic[i]);
    }
}

/// The data cache the end-to-end tests share (downloads happen once per machine).
pub fn data_cache() -> std::path::PathBuf {
    std::env::var_os("VARATTN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("varattn-ding-cache"))
}

/// `varattn train --preset smoke` on `configs/<task>/<row>.toml` into `out`.
pub fn train_smoke(task: &str, row: &str, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
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
    let folder = cache.join(varattn::data::hub::repo_folder_name(repo));
    let sha = varattn::io::sha256_hex(bytes);
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
