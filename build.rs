//! Build script: with the `cuda` feature, compiles the CUDA kernels of the custom ops
//! (src/special/cuda/kernels.cu) to PTX with nvcc for `CUDA_COMPUTE_CAP` (default 90, the H100);
//! src/special/cuda.rs embeds the PTX. Without the feature it does nothing, so the CPU build needs
//! no CUDA toolkit. scripts/cuda-build.sh provides nvcc on a machine without a system toolkit.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let src = PathBuf::from("src/special/cuda/kernels.cu");
    println!("cargo:rerun-if-changed=src/special/cuda/kernels.cu");
    println!("cargo:rerun-if-changed=src/special/cuda/special.cuh");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    let cap = cap.trim().replace('.', "");
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_digit()) {
        panic!("CUDA_COMPUTE_CAP must be a number such as 90 (got `{cap}`)");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("varattn_kernels.ptx");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17", &format!("-arch=sm_{cap}"), "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running `{nvcc}` to compile {}: {e} (set PATH or NVCC; see scripts/cuda-build.sh)", src.display()));
    if !status.success() {
        panic!("`{nvcc}` failed to compile {} for sm_{cap} ({status})", src.display());
    }
}
