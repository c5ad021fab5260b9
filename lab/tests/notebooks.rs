//! The notebooks (notebooks/*.ipynb, evcxr kernel) executed headless by `notebooks/run.sh`, so
//! that `cargo test` fails when a notebook errors or one of its closing assertions fails.
//!
//! Skipped only when `VARATTN_SKIP_NOTEBOOKS=1` (it says so on stderr). The first run on a machine
//! installs evcxr_jupyter and Jupyter's executor (see run.sh) and compiles varattn once more for
//! the kernel; later runs reuse both.
mod common;

use std::io::Write;
use std::process::Command;

/// Writes to the real stderr, past the test harness's output capture, so that the line shows in
/// `cargo test` (and CI) output even when the test passes.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn every_notebook_executes_headless_without_error() {
    if std::env::var_os("VARATTN_SKIP_NOTEBOOKS").is_some_and(|v| v == "1") {
        say("lab/tests/notebooks.rs: SKIPPED because VARATTN_SKIP_NOTEBOOKS=1: the notebooks were not executed");
        return;
    }
    let root = varattn_lab::repo_root();
    let script = root.join("notebooks").join("run.sh");
    let start = std::time::Instant::now();
    // stdout/stderr are inherited: run.sh reports installs and each notebook's time as it goes
    let status = Command::new("bash")
        .arg(&script)
        .env("VARATTN_CACHE", common::data_cache())
        .current_dir(root)
        .status()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", script.display()));
    say(&format!("lab/tests/notebooks.rs: notebooks/run.sh finished in {:.0} s", start.elapsed().as_secs_f64()));
    assert!(status.success(), "notebooks/run.sh failed ({status}); see its output above");
}
