//! Showing the library's figures and tables inline in evcxr (Jupyter, kernel `rust`) notebooks.
//!
//! evcxr turns a block printed on standard output,
//! `EVCXR_BEGIN_CONTENT <mime>\n<payload>\nEVCXR_END_CONTENT`, into a Jupyter `display_data`
//! output of that MIME type. The figures of [`crate::plot`] are written as PNG files; [`show_png`]
//! prints such a file as an `image/png` block (base64), so the picture is stored in the notebook
//! and renders wherever notebooks do, without a font or SVG renderer on the reader's side.
//!
//! evcxr 0.22 keeps one rich output per MIME type and cell (a second figure printed by the same
//! cell replaces the first, and a figure hides a Markdown table of the same cell): show one figure
//! or table per cell.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 of `bytes` (RFC 4648 §4: standard alphabet, `=` padding): every 3 bytes
/// b0 b1 b2 become the four 6-bit digits of the 24-bit number b0·2^16 + b1·2^8 + b2.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64_ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text evcxr reads as one rich output of MIME type `mime`:
/// `EVCXR_BEGIN_CONTENT <mime>\n<payload>\nEVCXR_END_CONTENT\n`.
pub fn evcxr_content(mime: &str, payload: &str) -> String {
    format!("EVCXR_BEGIN_CONTENT {mime}\n{payload}\nEVCXR_END_CONTENT\n")
}

/// `path` with `.png` appended when it does not already end in `.png` (figure functions take a
/// stem and write `{stem}.png` and `{stem}.svg`).
fn png_path(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "png") {
        path.to_path_buf()
    } else {
        let mut s = path.as_os_str().to_owned();
        s.push(".png");
        PathBuf::from(s)
    }
}

/// The `image/png` evcxr block of a PNG file (`path`, or the stem `path` + `.png`); errors when
/// the file is missing or is not a PNG.
pub fn png_content(path: &Path) -> Result<String> {
    let png = png_path(path);
    let bytes = std::fs::read(&png).with_context(|| format!("reading figure {}", png.display()))?;
    anyhow::ensure!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG file", png.display());
    Ok(evcxr_content("image/png", &base64(&bytes)))
}

/// Show a PNG figure inline in an evcxr notebook: prints [`png_content`] on standard output.
pub fn show_png(path: &Path) -> Result<()> {
    print!("{}", png_content(path)?);
    Ok(())
}

/// Show Markdown text (e.g. a [`super::tables::Table`]'s `markdown()`) as a `text/markdown`
/// output in an evcxr notebook.
pub fn show_markdown(markdown: &str) {
    print!("{}", evcxr_content("text/markdown", markdown.trim_end()));
}

/// A scratch path stem for a notebook's figure `name`: `$VARATTN_NOTEBOOK_FIGURES/<name>`,
/// default `<temp dir>/varattn-notebook-figures/<name>` (figures are shown inline, not kept).
pub fn figure_stem(name: &str) -> PathBuf {
    std::env::var_os("VARATTN_NOTEBOOK_FIGURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("varattn-notebook-figures"))
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        // RFC 4648 §10
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "base64({plain:?})");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x3f]), "//4APw==");
    }

    #[test]
    fn png_content_wraps_a_real_figure_and_rejects_other_files() {
        let dir = std::env::temp_dir().join(format!("varattn-notebook-test-{}", std::process::id()));
        let stem = dir.join("bars");
        crate::plot::bar_chart(&stem, "t", "v", &[("a".into(), 1.0), ("b".into(), 2.0)]).unwrap();
        let block = png_content(&stem).unwrap();
        let bytes = std::fs::read(dir.join("bars.png")).unwrap();
        assert!(block.starts_with("EVCXR_BEGIN_CONTENT image/png\niVBORw0KGgo"), "{}", &block[..60]);
        assert!(block.ends_with("\nEVCXR_END_CONTENT\n"));
        assert_eq!(block.lines().nth(1).unwrap(), base64(&bytes));
        assert_eq!(png_content(&dir.join("bars.png")).unwrap(), block);
        std::fs::write(dir.join("fake.png"), b"<svg/>").unwrap();
        let err = png_content(&dir.join("fake.png")).unwrap_err().to_string();
        assert!(err.contains("fake.png is not a PNG"), "{err}");
        let err = format!("{:#}", png_content(&dir.join("missing")).unwrap_err());
        assert!(err.contains("missing.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn markdown_block_is_trimmed() {
        assert_eq!(evcxr_content("text/markdown", "| a |"), "EVCXR_BEGIN_CONTENT text/markdown\n| a |\nEVCXR_END_CONTENT\n");
    }
}
