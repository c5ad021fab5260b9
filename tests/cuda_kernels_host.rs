//! The CUDA kernels' math (src/special/cuda/special.cuh) compiled as plain C++ on the host and
//! checked against the Rust scalar functions it ports (src/special/scalar.rs), so that a machine
//! without a GPU still verifies what the GPU will compute. Skipped, with a message, when no C++
//! compiler (`c++`) is installed.
use std::io::Write;
use std::process::{Command, Stdio};
use varattn::special::scalar;

const DRIVER: &str = r#"
#include <stdio.h>
#include "special.cuh"
// stdin: lines "s <op> <x>" (va_special) or "g <alpha> <x>" (va_standard_gamma_grad);
// stdout: one value per line, %.17g.
int main(void) {
    char kind;
    while (scanf(" %c", &kind) == 1) {
        if (kind == 's') {
            int op; double x;
            if (scanf("%d %lf", &op, &x) != 2) return 2;
            printf("%.17g\n", va_special(op, x));
        } else {
            double a, x;
            if (scanf("%lf %lf", &a, &x) != 2) return 2;
            printf("%.17g\n", va_standard_gamma_grad(a, x));
        }
    }
    return 0;
}
"#;

fn compiler() -> Option<String> {
    ["c++", "g++", "clang++"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().map(|o| o.status.success()).unwrap_or(false))
        .map(str::to_string)
}

/// Agreement of two doubles: equal (NaN with NaN, same infinity) or within `rel` relative.
fn agree(got: f64, want: f64, rel: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn cuda_special_functions_port_matches_the_rust_scalars() {
    let Some(cxx) = compiler() else {
        eprintln!("skipped: no C++ compiler (c++, g++ or clang++) to build the CUDA math on the host");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("driver.cpp");
    let exe = dir.path().join("driver");
    std::fs::write(&src, DRIVER).unwrap();
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/src/special/cuda");
    let build = Command::new(&cxx).args(["-O2", "-std=c++17", "-ffp-contract=off", "-I", include, "-o"]).arg(&exe).arg(&src).arg("-lm").output().unwrap();
    assert!(build.status.success(), "{cxx} failed on special.cuh:\n{}", String::from_utf8_lossy(&build.stderr));

    // arguments across every branch: tiny, the series windows around 1 and 2, the digamma root,
    // the recurrence range, the asymptotic range, negative non-integers (reflection), poles,
    // infinities and NaN
    let mut xs: Vec<f64> = vec![
        1e-300, 1e-8, 1e-3, 0.1, 0.2499, 0.25, 0.3, 0.4999, 0.5, 0.74, 0.75, 1.0, 1.1, 1.25, 1.3, 1.4616321449683622, 1.46,
        1.5, 1.9, 2.0, 2.5, 3.7, 9.99, 10.0, 12.5, 150.0, 1e6, 1e8, -0.5, -1.5, -2.25, -7.75, -30.3, 0.0, -1.0, -4.0,
        f64::INFINITY, f64::NEG_INFINITY, f64::NAN,
    ];
    xs.extend((0..200).map(|i| 0.013 + 0.157 * i as f64));
    type Scalar = fn(f64) -> f64;
    let mut ops: Vec<(i32, &str, Scalar, f64)> = vec![
        (0, "lgamma", scalar::lgamma, 1e-13),
        (1, "digamma", scalar::digamma, 1e-13),
        (2, "trigamma", scalar::trigamma, 1e-13),
        (3, "tetragamma", scalar::tetragamma, 1e-13),
        (4, "softplus", scalar::softplus, 1e-15),
        (5, "log1p", scalar::log1p, 1e-15),
    ];
    let soft_xs: Vec<f64> = vec![-800.0, -40.0, -20.0, -19.99, -1.0, 0.0, 1e-10, 3.0, 19.99, 20.0, 20.01, 40.0, 800.0];
    let log1p_xs: Vec<f64> = vec![-0.999, -0.5, -1e-12, 0.0, 1e-12, 1e-5, 0.5, 3.0, 1e10, -1.0, -2.0];
    let mut input = String::new();
    let mut expected: Vec<(String, f64, f64)> = Vec::new();
    for (code, name, f, rel) in ops.drain(..) {
        let args: &[f64] = match code {
            4 => &soft_xs,
            5 => &log1p_xs,
            _ => &xs,
        };
        for &x in args {
            input.push_str(&format!("s {code} {x:e}\n"));
            expected.push((format!("{name}({x:e})"), f(x), rel));
        }
    }
    // (alpha, x) pairs in each branch of the gamma gradient: x < 0.8 series, alpha > 8 saddle
    // point (inside and outside the 0.9-1.1 patch), rational fit
    let alphas = [0.01, 0.3, 1.0, 2.5, 7.9, 8.5, 30.0, 500.0];
    let ratios = [1e-3, 0.2, 0.5, 0.95, 1.0, 1.05, 1.5, 3.0];
    for &a in &alphas {
        for &r in &ratios {
            let x = a * r;
            input.push_str(&format!("g {a:e} {x:e}\n"));
            expected.push((format!("standard_gamma_grad({a:e}, {x:e})"), scalar::standard_gamma_grad(a, x), 1e-12));
        }
    }
    // `{:e}` prints the shortest string that round-trips, so the C++ side reads the same doubles
    let mut child = Command::new(&exe).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<f64> = text
        .lines()
        .map(|l| match l.trim() {
            "nan" | "-nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "one output line per input line");
    let bad: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|((_, want, rel), g)| !agree(**g, *want, *rel))
        .map(|((what, want, _), g)| format!("{what}: CUDA port {g:e}, Rust {want:e}"))
        .collect();
    assert!(bad.is_empty(), "{} of {} disagree:\n{}", bad.len(), got.len(), bad.join("\n"));
}
