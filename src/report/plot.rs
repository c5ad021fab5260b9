//! Figures for reports: alignment heatmaps, line charts, bar charts and
//! image-attention overlays, each written as `{stem}.png` and `{stem}.svg`.
//!
//! # Fonts
//!
//! `plotters` normally finds system fonts through font-kit/fontconfig, which a
//! fresh machine may not have. This module instead builds `plotters` without
//! its `ttf` feature and with `ab_glyph`, and registers Noto Sans Regular
//! (embedded in the binary by the `ttf-noto-sans` crate; font licensed under
//! Apache-2.0) on first use, under the family name `Noto Sans, sans-serif`
//! (and `sans-serif`). Text in the PNGs therefore never touches system fonts.
//! The SVGs carry that name as their CSS `font-family` list, so a viewer uses
//! Noto Sans if installed and its own sans-serif face otherwise; layouts
//! leave 20% slack for wider substitutes.
//!
//! # Files
//!
//! Every function validates its input first (mismatched lengths, NaN or
//! infinite values, empty data give an error and create nothing), then
//! creates the parent folder, renders both files to hidden temporary files in
//! that folder and renames them into place (PNG first, then SVG), so a
//! reader never sees a half-written figure and a failed render leaves no
//! temporary file behind.
//!
//! The stem is used as given: `figs/align.ep3` writes `figs/align.ep3.png`
//! and `figs/align.ep3.svg`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{anyhow, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

// ---------------------------------------------------------------------------
// Fonts, colours, text helpers
// ---------------------------------------------------------------------------

/// Family under which the embedded font is registered and which every text
/// element names. In SVG files it becomes the CSS `font-family` list, so a
/// viewer uses Noto Sans when it has it and its own sans-serif face otherwise.
const FAMILY: &str = "Noto Sans, sans-serif";

/// Layout room for text measured with Noto Sans is widened by this factor,
/// so that SVG viewers substituting a wider sans-serif face (DejaVu Sans is
/// about 12% wider) do not run labels off the figure.
const SLACK: f64 = 1.2;

fn slack(w: i32) -> i32 {
    (w as f64 * SLACK).ceil() as i32
}

/// Registers the embedded Noto Sans face once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // Also under "sans-serif", the name plotters' own defaults
            // (`FontFamily::SansSerif`) look up. Other styles (bold, italic)
            // fall back to the registered normal face inside plotters.
            for name in [FAMILY, "sans-serif"] {
                plotters::style::register_font(name, FontStyle::Normal, ttf_noto_sans::REGULAR)
                    .map_err(|_| "embedded Noto Sans font could not be parsed".to_string())?;
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

fn font(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), px, FontStyle::Normal)
}

/// Width and height in pixels of `text` at `px`.
fn text_size(text: &str, px: f64) -> Result<(u32, u32)> {
    font(px)
        .box_size(text)
        .map_err(|e| anyhow!("measuring text {text:?}: {e:?}"))
}

fn text_width(text: &str, px: f64) -> Result<i32> {
    Ok(text_size(text, px)?.0 as i32)
}

fn style(px: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    font(px).color(&color).pos(Pos::new(h, v))
}

/// Shortens `s` to at most `max` characters, ending in an ellipsis.
fn truncate(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Splits `text` into lines no wider than `max_w` pixels (explicit `\n`
/// are kept; a single over-long word gets a line of its own).
fn wrap(text: &str, px: f64, max_w: i32) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if line.is_empty() || text_width(&candidate, px)? <= max_w {
                line = candidate;
            } else {
                lines.push(std::mem::take(&mut line));
                line = word.to_string();
            }
        }
        lines.push(line);
    }
    Ok(lines)
}

const TEXT: RGBColor = RGBColor(33, 33, 33);
const MUTED: RGBColor = RGBColor(90, 90, 90);
const GRID: RGBColor = RGBColor(215, 215, 215);

/// Sequential white-to-blue scale (ColorBrewer "Blues" anchors).
const BLUES: [(u8, u8, u8); 9] = [
    (247, 251, 255),
    (222, 235, 247),
    (198, 219, 239),
    (158, 202, 225),
    (107, 174, 214),
    (66, 146, 198),
    (33, 113, 181),
    (8, 81, 156),
    (8, 48, 107),
];

/// Colour of value `v` in [0, 1]: near-white for 0, dark blue for 1.
fn blues(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0) * (BLUES.len() - 1) as f64;
    let i = (v.floor() as usize).min(BLUES.len() - 2);
    let t = v - i as f64;
    let (a, b) = (BLUES[i], BLUES[i + 1]);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Qualitative palette for series (Tableau 10).
const SERIES: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn series_color(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// Converts any plotters error into an `anyhow` error.
fn perr<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

// ---------------------------------------------------------------------------
// Atomic two-format output
// ---------------------------------------------------------------------------

/// A figure with a fixed pixel size that can draw itself on any backend.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Removes the temporary file on drop unless it was moved into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Hidden temporary path next to `target`, keeping its extension (the PNG
/// encoder picks the format from it).
fn temp_path(target: &Path, ext: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.{n}.tmp.{ext}", std::process::id()))
}

/// Renders `fig` to `{stem}.png` and `{stem}.svg` atomically.
fn render<F: Figure>(stem: &Path, fig: &F) -> Result<()> {
    ensure!(
        stem.file_name().is_some(),
        "figure path stem {} has no file name",
        stem.display()
    );
    let (w, h) = fig.size();
    ensure!(w > 0 && h > 0, "figure has zero size");
    let png = with_ext(stem, "png");
    let svg = with_ext(stem, "svg");
    if let Some(dir) = png.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let png_tmp = TempFile(Some(temp_path(&png, "png")));
    {
        let p = png_tmp.0.as_ref().unwrap();
        let root = BitMapBackend::new(p, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        fig.draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e:?}", p.display()))?;
    }

    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        fig.draw(&root)?;
        root.present().map_err(perr)?;
    }
    let svg_tmp = TempFile(Some(temp_path(&svg, "svg")));
    let p = svg_tmp.0.as_ref().unwrap();
    fs::write(p, svg_text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;

    commit(png_tmp, &png)?;
    commit(svg_tmp, &svg)?;
    Ok(())
}

fn commit(mut tmp: TempFile, target: &Path) -> Result<()> {
    let p = tmp.0.as_ref().unwrap();
    fs::rename(p, target)
        .with_context(|| format!("moving {} to {}", p.display(), target.display()))?;
    tmp.0 = None;
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Alignment heatmaps
// ---------------------------------------------------------------------------

const HM_PAD: i32 = 18;
const HM_LABEL_PX: f64 = 16.0;
const HM_TITLE_PX: f64 = 18.0;
const HM_AXIS_PX: f64 = 14.0;
const HM_MAX_LABEL_CHARS: usize = 18;
const HM_CBAR_W: i32 = 16;

/// Pixel geometry of a heatmap figure.
#[derive(Debug, Clone)]
struct HeatmapLayout {
    width: u32,
    height: u32,
    cell: i32,
    /// Top-left corner of each panel's cell grid.
    grid_origin: Vec<(i32, i32)>,
    n_rows: usize,
    n_cols: usize,
    title_y: i32,
    cbar_x: i32,
}

impl HeatmapLayout {
    /// Pixel rectangle `(x0, y0, x1, y1)` of cell (`row`, `col`) in `panel`.
    fn cell_rect(&self, panel: usize, row: usize, col: usize) -> (i32, i32, i32, i32) {
        let (gx, gy) = self.grid_origin[panel];
        let x0 = gx + col as i32 * self.cell;
        let y0 = gy + row as i32 * self.cell;
        (x0, y0, x0 + self.cell, y0 + self.cell)
    }
}

struct Heatmap<'a> {
    src: Vec<String>,
    tgt: Vec<String>,
    /// The names of the source (column) and target (row) axes.
    axes: (String, String),
    panels: Vec<(&'a str, &'a [Vec<f32>])>,
    layout: HeatmapLayout,
    src_label_w: i32,
    tgt_label_w: i32,
}

impl<'a> Heatmap<'a> {
    fn new(
        axes: (&str, &str),
        src_tokens: &[String],
        tgt_tokens: &[String],
        panels: &[(&'a str, &'a [Vec<f32>])],
    ) -> Result<Self> {
        ensure!(
            !src_tokens.is_empty(),
            "alignment heatmap: no source tokens"
        );
        ensure!(
            !tgt_tokens.is_empty(),
            "alignment heatmap: no target tokens"
        );
        ensure!(!panels.is_empty(), "alignment heatmap: no panels");
        let (n_rows, n_cols) = (tgt_tokens.len(), src_tokens.len());
        for (title, m) in panels {
            ensure!(
                m.len() == n_rows,
                "alignment heatmap panel {title:?}: {} rows but {} target tokens",
                m.len(),
                n_rows
            );
            for (i, row) in m.iter().enumerate() {
                ensure!(
                    row.len() == n_cols,
                    "alignment heatmap panel {title:?}: row {i} has {} values but {} source tokens",
                    row.len(),
                    n_cols
                );
                for (j, &v) in row.iter().enumerate() {
                    ensure!(
                        v.is_finite(),
                        "alignment heatmap panel {title:?}: value at (row {i}, col {j}) is {v}"
                    );
                    ensure!(
                        (-1e-3..=1.0 + 1e-3).contains(&v),
                        "alignment heatmap panel {title:?}: value {v} at (row {i}, col {j}) is outside [0, 1]"
                    );
                }
            }
        }
        ensure_font()?;

        let src: Vec<String> = src_tokens
            .iter()
            .map(|s| truncate(s, HM_MAX_LABEL_CHARS))
            .collect();
        let tgt: Vec<String> = tgt_tokens
            .iter()
            .map(|s| truncate(s, HM_MAX_LABEL_CHARS))
            .collect();
        let max_w = |v: &[String]| -> Result<i32> {
            v.iter()
                .try_fold(0, |m, s| Ok(m.max(text_width(s, HM_LABEL_PX)?)))
        };
        let src_label_w = max_w(&src)?;
        let tgt_label_w = max_w(&tgt)?;

        // Cells shrink for long sentences so that a panel stays about 520 px.
        let n_max = n_rows.max(n_cols) as i32;
        let cell = (520 / n_max).clamp(18, 40);
        let grid_w = cell * n_cols as i32;
        let grid_h = cell * n_rows as i32;

        let title_w = panels
            .iter()
            .map(|(t, _)| text_width(t, HM_TITLE_PX))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(0);

        // Horizontal: [pad][axis name][tgt labels][gap][grid] ... [cbar][ticks][pad]
        let axis_h = HM_AXIS_PX as i32 + 6;
        let left = HM_PAD + axis_h + slack(tgt_label_w) + 8;
        // The grid is centred in a column wide enough for the panel title and the axis name.
        let src_axis_w = text_width(axes.0, HM_AXIS_PX)?;
        let inner = grid_w.max(slack(title_w) + 8).max(slack(src_axis_w) + 8);
        let panel_w = left + inner;
        let title_y = HM_PAD;
        let grid_top = title_y + HM_TITLE_PX as i32 + 14;
        let grid_origin: Vec<(i32, i32)> = (0..panels.len())
            .map(|p| (p as i32 * panel_w + left + (inner - grid_w) / 2, grid_top))
            .collect();
        let cbar_x = panels.len() as i32 * panel_w + 10;
        let tick_w = text_width("1.00", HM_LABEL_PX)?;
        let width = cbar_x + HM_CBAR_W + 6 + slack(tick_w) + HM_PAD;
        let below = grid_h + 8 + slack(src_label_w) + 8 + axis_h;
        let height = grid_top + below.max(cbar_height(grid_h)) + HM_PAD;

        Ok(Self {
            src,
            tgt,
            axes: (axes.0.to_string(), axes.1.to_string()),
            panels: panels.to_vec(),
            layout: HeatmapLayout {
                width: width as u32,
                height: height as u32,
                cell,
                grid_origin,
                n_rows,
                n_cols,
                title_y,
                cbar_x,
            },
            src_label_w,
            tgt_label_w,
        })
    }
}

/// Height of the colour bar: the grid's, but at least 120 px.
fn cbar_height(grid_h: i32) -> i32 {
    grid_h.max(120)
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        (self.layout.width, self.layout.height)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let l = &self.layout;
        let cell = l.cell;
        let grid_w = cell * l.n_cols as i32;
        let grid_h = cell * l.n_rows as i32;
        for (p, (title, m)) in self.panels.iter().enumerate() {
            let (gx, gy) = l.grid_origin[p];
            root.draw_text(
                title,
                &style(HM_TITLE_PX, TEXT, HPos::Center, VPos::Top),
                (gx + grid_w / 2, l.title_y),
            )
            .map_err(perr)?;
            for (i, row) in m.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let (x0, y0, x1, y1) = l.cell_rect(p, i, j);
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x1, y1)],
                        blues(v as f64).filled(),
                    ))
                    .map_err(perr)?;
                }
            }
            // Faint cell separators and a frame.
            for j in 1..l.n_cols as i32 {
                let x = gx + j * cell;
                root.draw(&PathElement::new(vec![(x, gy), (x, gy + grid_h)], GRID))
                    .map_err(perr)?;
            }
            for i in 1..l.n_rows as i32 {
                let y = gy + i * cell;
                root.draw(&PathElement::new(vec![(gx, y), (gx + grid_w, y)], GRID))
                    .map_err(perr)?;
            }
            root.draw(&Rectangle::new(
                [(gx, gy), (gx + grid_w, gy + grid_h)],
                MUTED,
            ))
            .map_err(perr)?;

            // Target tokens to the left of the rows.
            for (i, t) in self.tgt.iter().enumerate() {
                let y = gy + i as i32 * cell + cell / 2;
                root.draw_text(
                    t,
                    &style(HM_LABEL_PX, TEXT, HPos::Right, VPos::Center),
                    (gx - 6, y),
                )
                .map_err(perr)?;
            }
            // Source tokens under the columns, reading upwards.
            for (j, s) in self.src.iter().enumerate() {
                let x = gx + j as i32 * cell + cell / 2;
                let st = style(HM_LABEL_PX, TEXT, HPos::Right, VPos::Center)
                    .transform(FontTransform::Rotate270);
                root.draw_text(s, &st, (x, gy + grid_h + 6)).map_err(perr)?;
            }
            // Axis names.
            let axis = style(HM_AXIS_PX, MUTED, HPos::Center, VPos::Top);
            root.draw_text(
                &self.axes.0,
                &axis,
                (
                    gx + grid_w / 2,
                    gy + grid_h + 8 + slack(self.src_label_w) + 8,
                ),
            )
            .map_err(perr)?;
            root.draw_text(
                &self.axes.1,
                &style(HM_AXIS_PX, MUTED, HPos::Center, VPos::Center)
                    .transform(FontTransform::Rotate270),
                (
                    gx - 8 - slack(self.tgt_label_w) - HM_AXIS_PX as i32 / 2,
                    gy + grid_h / 2,
                ),
            )
            .map_err(perr)?;
        }

        // Colour bar, 0 at the bottom, 1 at the top.
        let (_, gy) = l.grid_origin[0];
        let bar_h = cbar_height(grid_h);
        let x0 = l.cbar_x;
        for k in 0..bar_h {
            let v = 1.0 - k as f64 / (bar_h - 1).max(1) as f64;
            root.draw(&Rectangle::new(
                [(x0, gy + k), (x0 + HM_CBAR_W, gy + k + 1)],
                blues(v).filled(),
            ))
            .map_err(perr)?;
        }
        root.draw(&Rectangle::new(
            [(x0, gy), (x0 + HM_CBAR_W, gy + bar_h)],
            MUTED,
        ))
        .map_err(perr)?;
        for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let y = gy + ((1.0 - t) * (bar_h - 1) as f64).round() as i32;
            root.draw(&PathElement::new(
                vec![(x0 + HM_CBAR_W, y), (x0 + HM_CBAR_W + 4, y)],
                MUTED,
            ))
            .map_err(perr)?;
            root.draw_text(
                &format!("{t:.2}"),
                &style(HM_LABEL_PX - 2.0, TEXT, HPos::Left, VPos::Center),
                (x0 + HM_CBAR_W + 6, y),
            )
            .map_err(perr)?;
        }
        Ok(())
    }
}

/// Draws side-by-side alignment heatmaps and writes `{stem}.png` and
/// `{stem}.svg`.
///
/// Each panel is `(title, matrix)`, where `matrix[t][s]` is the probability
/// that target position `t` aligns to source position `s`: rows are target
/// tokens (labelled on the left, top to bottom), columns are source tokens
/// (labelled underneath, reading upwards). Values must lie in [0, 1] (a
/// rounding slack of 1e-3 is clamped); 0 is drawn near-white and 1 dark blue,
/// with a colour bar on the right. Labels longer than 18 characters are
/// shortened with an ellipsis; any text the embedded Noto Sans covers
/// (Latin, Greek, Cyrillic, umlauts, ß, …) renders.
///
/// Errors, before any file is created, when a token list or the panel list
/// is empty, a matrix's shape differs from `tgt_tokens.len()` ×
/// `src_tokens.len()`, or a value is NaN, infinite or outside [0, 1].
pub fn alignment_heatmaps(
    path_stem: &Path,
    src_tokens: &[String],
    tgt_tokens: &[String],
    panels: &[(&str, &[Vec<f32>])],
) -> Result<()> {
    alignment_heatmaps_with_axes(path_stem, ("source", "target"), src_tokens, tgt_tokens, panels)
}

/// [`alignment_heatmaps`] with the axes named `axes` = (source, target), e.g.
/// `("source (German)", "target (English)")`.
pub fn alignment_heatmaps_with_axes(
    path_stem: &Path,
    axes: (&str, &str),
    src_tokens: &[String],
    tgt_tokens: &[String],
    panels: &[(&str, &[Vec<f32>])],
) -> Result<()> {
    let fig = Heatmap::new(axes, src_tokens, tgt_tokens, panels)?;
    render(path_stem, &fig)
}

// ---------------------------------------------------------------------------
// Shared chart helpers
// ---------------------------------------------------------------------------

/// `[lo, hi]` padded by 5% on each side; a degenerate range is widened.
fn padded_range(lo: f64, hi: f64, pad_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= d;
        hi += d;
        return (lo, hi);
    }
    let pad = (hi - lo) * 0.05;
    let new_lo = if pad_zero && lo >= 0.0 && lo - pad < 0.0 {
        0.0
    } else {
        lo - pad
    };
    (new_lo, hi + pad)
}

/// Compact tick label: integers without decimals, otherwise up to 4
/// significant digits, scientific notation for very large/small values.
fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let digits = (4 - a.log10().floor() as i32 - 1).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Legend box on the right: coloured swatch and name for each series.
/// Returns the width it needs.
fn legend_width(names: &[String], px: f64) -> Result<i32> {
    let w = names
        .iter()
        .try_fold(0, |m, s| Ok::<_, anyhow::Error>(m.max(text_width(s, px)?)))?;
    Ok(slack(w) + 34 + 16)
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[String],
    px: f64,
    top: i32,
    markers: bool,
) -> Result<()> {
    let row_h = px as i32 + 8;
    for (i, name) in names.iter().enumerate() {
        let y = top + i as i32 * row_h + row_h / 2;
        let c = series_color(i);
        area.draw(&PathElement::new(vec![(4, y), (28, y)], c.stroke_width(2)))
            .map_err(perr)?;
        if markers {
            area.draw(&Circle::new((16, y), 3, c.filled()))
                .map_err(perr)?;
        }
        area.draw_text(name, &style(px, TEXT, HPos::Left, VPos::Center), (34, y))
            .map_err(perr)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Line chart
// ---------------------------------------------------------------------------

const CHART_W: u32 = 760;
const CHART_H: u32 = 460;
const CHART_PX: f64 = 16.0;
const CHART_TITLE_PX: f64 = 20.0;

struct LineChart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [(String, Vec<(f64, f64)>)],
    names: Vec<String>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    legend_w: i32,
    markers: bool,
}

impl<'a> LineChart<'a> {
    fn new(
        title: &'a str,
        x_label: &'a str,
        y_label: &'a str,
        series: &'a [(String, Vec<(f64, f64)>)],
    ) -> Result<Self> {
        ensure!(!series.is_empty(), "line chart {title:?}: no series");
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for (name, pts) in series {
            ensure!(
                !pts.is_empty(),
                "line chart {title:?}: series {name:?} has no points"
            );
            for (k, &(x, y)) in pts.iter().enumerate() {
                ensure!(
                    x.is_finite() && y.is_finite(),
                    "line chart {title:?}: series {name:?} point {k} is ({x}, {y})"
                );
                x_lo = x_lo.min(x);
                x_hi = x_hi.max(x);
                y_lo = y_lo.min(y);
                y_hi = y_hi.max(y);
            }
        }
        ensure_font()?;
        let names: Vec<String> = series.iter().map(|(n, _)| truncate(n, 32)).collect();
        let legend_w = legend_width(&names, CHART_PX - 2.0)?;
        let max_pts = series.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
        Ok(Self {
            title,
            x_label,
            y_label,
            series,
            names,
            x_range: padded_range(x_lo, x_hi, false),
            y_range: padded_range(y_lo, y_hi, true),
            legend_w,
            markers: max_pts <= 40,
        })
    }
}

impl Figure for LineChart<'_> {
    fn size(&self) -> (u32, u32) {
        (CHART_W + self.legend_w as u32, CHART_H)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (plot_area, legend_area) = root.split_horizontally(CHART_W);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(self.title, font(CHART_TITLE_PX).color(&TEXT))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(
                self.x_range.0..self.x_range.1,
                self.y_range.0..self.y_range.1,
            )
            .map_err(perr)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .axis_style(MUTED)
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .axis_desc_style(font(CHART_PX).color(&TEXT))
            .label_style(font(CHART_PX - 2.0).color(&TEXT))
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .x_labels(8)
            .y_labels(8)
            .draw()
            .map_err(perr)?;
        for (i, (_, pts)) in self.series.iter().enumerate() {
            let c = series_color(i);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(perr)?;
            if self.markers {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map_err(perr)?;
            }
        }
        // Legend beside the plot, aligned with the top of the plotting area.
        draw_legend(
            &legend_area,
            &self.names,
            CHART_PX - 2.0,
            14 + CHART_TITLE_PX as i32 + 12,
            self.markers,
        )
    }
}

/// Draws one line per named series, with a legend on the right, and writes
/// `{stem}.png` and `{stem}.svg`.
///
/// Points are drawn in the given order (sort by x first for a curve); series
/// of at most 40 points also get dot markers. Both axes range over the data
/// plus 5% padding (the y axis starts at 0 when the data are non-negative and
/// close to it). Errors, before any file is created, when there are no
/// series, a series has no points, or any coordinate is NaN or infinite.
pub fn line_chart(
    path_stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let fig = LineChart::new(title, x_label, y_label, series)?;
    render(path_stem, &fig)
}

// ---------------------------------------------------------------------------
// 3. Bar chart
// ---------------------------------------------------------------------------

struct BarChart<'a> {
    title: &'a str,
    x_label: &'a str,
    labels: Vec<String>,
    values: Vec<f64>,
    label_w: i32,
    x_range: (f64, f64),
}

impl<'a> BarChart<'a> {
    fn new(title: &'a str, x_label: &'a str, bars: &[(String, f64)]) -> Result<Self> {
        ensure!(!bars.is_empty(), "bar chart {title:?}: no bars");
        for (name, v) in bars {
            ensure!(
                v.is_finite(),
                "bar chart {title:?}: value of {name:?} is {v}"
            );
        }
        ensure_font()?;
        let labels: Vec<String> = bars.iter().map(|(n, _)| truncate(n, 40)).collect();
        let values: Vec<f64> = bars.iter().map(|(_, v)| *v).collect();
        let label_w = labels.iter().try_fold(0, |m, s| {
            Ok::<_, anyhow::Error>(m.max(text_width(s, CHART_PX - 2.0)?))
        })?;
        let lo = values.iter().copied().fold(0.0_f64, f64::min);
        let hi = values.iter().copied().fold(0.0_f64, f64::max);
        let (lo, hi) = if hi - lo == 0.0 { (0.0, 1.0) } else { (lo, hi) };
        // Room on the value side for the number printed at each bar's end.
        let span = hi - lo;
        let x_range = (
            if lo < 0.0 { lo - 0.15 * span } else { 0.0 },
            if hi > 0.0 { hi + 0.15 * span } else { 0.0 },
        );
        Ok(Self {
            title,
            x_label,
            labels,
            values,
            label_w,
            x_range,
        })
    }

    fn height(&self) -> u32 {
        (110 + 34 * self.labels.len()).max(220) as u32
    }
}

impl Figure for BarChart<'_> {
    fn size(&self) -> (u32, u32) {
        (CHART_W.max(slack(self.label_w) as u32 + 440), self.height())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let n = self.labels.len() as i32;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, font(CHART_TITLE_PX).color(&TEXT))
            .margin(14)
            .margin_right(24)
            .x_label_area_size(46)
            .y_label_area_size(slack(self.label_w) + 14)
            .build_cartesian_2d(self.x_range.0..self.x_range.1, (0..n - 1).into_segmented())
            .map_err(perr)?;
        let labels = &self.labels;
        // Rows top to bottom in input order: segment k holds bar n-1-k.
        let fmt_y = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(k) if (0..n).contains(k) => labels[(n - 1 - k) as usize].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .axis_style(MUTED)
            .x_desc(self.x_label)
            .axis_desc_style(font(CHART_PX).color(&TEXT))
            .label_style(font(CHART_PX - 2.0).color(&TEXT))
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&fmt_y)
            .y_labels(self.labels.len())
            .x_labels(8)
            .draw()
            .map_err(perr)?;
        for (i, &v) in self.values.iter().enumerate() {
            let k = n - 1 - i as i32;
            let c = series_color(0);
            let bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(k)),
                    (v, SegmentValue::Exact(k + 1)),
                ],
                c.mix(0.85).filled(),
            );
            let mut bar = bar;
            bar.set_margin(5, 5, 0, 0);
            chart.draw_series(std::iter::once(bar)).map_err(perr)?;
            let (h, dx) = if v >= 0.0 {
                (HPos::Left, 5)
            } else {
                (HPos::Right, -5)
            };
            let label = fmt_tick(v);
            let pos = chart.backend_coord(&(v, SegmentValue::CenterOf(k)));
            root.draw_text(
                &label,
                &style(CHART_PX - 2.0, TEXT, h, VPos::Center),
                (pos.0 + dx, pos.1),
            )
            .map_err(perr)?;
        }
        Ok(())
    }
}

/// Draws one horizontal bar per `(row label, value)`, top to bottom in the
/// given order, with the value printed at the end of each bar, and writes
/// `{stem}.png` and `{stem}.svg`. The value axis always includes 0.
///
/// Errors, before any file is created, when `bars` is empty or a value is
/// NaN or infinite.
pub fn bar_chart(
    path_stem: &Path,
    title: &str,
    value_label: &str,
    bars: &[(String, f64)],
) -> Result<()> {
    let fig = BarChart::new(title, value_label, bars)?;
    render(path_stem, &fig)
}

// ---------------------------------------------------------------------------
// 4. Image attention overlay
// ---------------------------------------------------------------------------

const IMG_PAD: i32 = 16;
const IMG_GAP: i32 = 24;
const IMG_PX: f64 = 16.0;
const OVERLAY: RGBColor = RGBColor(255, 60, 0);

struct ImageAttention<'a> {
    rgb: &'a [u8],
    w: u32,
    h: u32,
    scale: u32,
    grid: (usize, usize),
    weights: &'a [f32],
    max_w: f32,
    caption_lines: Vec<String>,
}

impl<'a> ImageAttention<'a> {
    fn new(
        rgb: &'a [u8],
        w: u32,
        h: u32,
        grid: (usize, usize),
        weights: &'a [f32],
        caption: &str,
    ) -> Result<Self> {
        ensure!(w > 0 && h > 0, "image attention: image is {w}x{h}");
        ensure!(
            rgb.len() as u64 == w as u64 * h as u64 * 3,
            "image attention: {} RGB bytes for a {w}x{h} image (expected {})",
            rgb.len(),
            w as u64 * h as u64 * 3
        );
        let (rows, cols) = grid;
        ensure!(
            rows > 0 && cols > 0,
            "image attention: grid is {rows}x{cols}"
        );
        ensure!(
            rows <= h as usize && cols <= w as usize,
            "image attention: grid {rows}x{cols} is finer than the {w}x{h} image"
        );
        ensure!(
            weights.len() == rows * cols,
            "image attention: {} weights for a {rows}x{cols} grid",
            weights.len()
        );
        for (k, &v) in weights.iter().enumerate() {
            ensure!(
                v.is_finite() && v >= 0.0,
                "image attention: weight {k} is {v} (weights must be finite and non-negative)"
            );
        }
        ensure_font()?;
        // Upscale by an integer factor so the longer side is at least 256 px.
        let scale = 256u32.div_ceil(w.max(h)).max(1);
        let img_w = (w * scale) as i32;
        let total_w = 2 * img_w + IMG_GAP;
        let caption_lines = wrap(caption, IMG_PX, (total_w as f64 / SLACK) as i32)?;
        let max_w = weights.iter().copied().fold(0.0_f32, f32::max);
        Ok(Self {
            rgb,
            w,
            h,
            scale,
            grid,
            weights,
            max_w,
            caption_lines,
        })
    }

    fn img_size(&self) -> (i32, i32) {
        ((self.w * self.scale) as i32, (self.h * self.scale) as i32)
    }

    fn line_h() -> i32 {
        IMG_PX as i32 + 6
    }
}

impl Figure for ImageAttention<'_> {
    fn size(&self) -> (u32, u32) {
        let (iw, ih) = self.img_size();
        let w = IMG_PAD * 2 + 2 * iw + IMG_GAP;
        let h = IMG_PAD
            + Self::line_h()
            + 6
            + ih
            + 12
            + Self::line_h() * self.caption_lines.len() as i32
            + IMG_PAD;
        (w as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (iw, ih) = self.img_size();
        let top = IMG_PAD + Self::line_h() + 6;
        let lefts = [IMG_PAD, IMG_PAD + iw + IMG_GAP];
        let head = style(IMG_PX - 2.0, MUTED, HPos::Center, VPos::Top);
        root.draw_text("image", &head, (lefts[0] + iw / 2, IMG_PAD))
            .map_err(perr)?;
        let head_text = format!("attention (max weight {:.3})", self.max_w);
        root.draw_text(&head_text, &head, (lefts[1] + iw / 2, IMG_PAD))
            .map_err(perr)?;

        // The image itself, upscaled by pixel repetition, once per panel
        // (the SVG embeds it as a PNG).
        let (w, su) = (self.w as usize, self.scale as usize);
        let mut big = Vec::with_capacity((iw * ih * 3) as usize);
        for y in 0..self.h as usize {
            let row = &self.rgb[y * w * 3..(y + 1) * w * 3];
            let start = big.len();
            for px in row.chunks_exact(3) {
                for _ in 0..su {
                    big.extend_from_slice(px);
                }
            }
            for _ in 1..su {
                big.extend_from_within(start..start + w * su * 3);
            }
        }
        for &left in &lefts {
            let elem = BitMapElement::with_ref((left, top), (iw as u32, ih as u32), &big)
                .ok_or_else(|| anyhow!("image attention: bitmap buffer has the wrong size"))?;
            root.draw(&elem).map_err(perr)?;
        }

        // Overlay: cells dimmed by (1 - w/max) and tinted by w/max.
        let (rows, cols) = self.grid;
        let left = lefts[1];
        let edge = |k: usize, n: usize, len: i32| (k as i64 * len as i64 / n as i64) as i32;
        for r in 0..rows {
            for c in 0..cols {
                let rel = if self.max_w > 0.0 {
                    (self.weights[r * cols + c] / self.max_w) as f64
                } else {
                    0.0
                };
                let (x0, x1) = (left + edge(c, cols, iw), left + edge(c + 1, cols, iw));
                let (y0, y1) = (top + edge(r, rows, ih), top + edge(r + 1, rows, ih));
                let dim = 0.6 * (1.0 - rel);
                if dim > 0.0 {
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x1, y1)],
                        BLACK.mix(dim).filled(),
                    ))
                    .map_err(perr)?;
                }
                if rel > 0.0 {
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x1, y1)],
                        OVERLAY.mix(0.45 * rel).filled(),
                    ))
                    .map_err(perr)?;
                }
            }
        }
        let grid_style = WHITE.mix(0.35);
        for c in 1..cols {
            let x = left + edge(c, cols, iw);
            root.draw(&PathElement::new(vec![(x, top), (x, top + ih)], grid_style))
                .map_err(perr)?;
        }
        for r in 1..rows {
            let y = top + edge(r, rows, ih);
            root.draw(&PathElement::new(
                vec![(left, y), (left + iw, y)],
                grid_style,
            ))
            .map_err(perr)?;
        }
        for &l in &lefts {
            root.draw(&Rectangle::new([(l, top), (l + iw, top + ih)], MUTED))
                .map_err(perr)?;
        }

        // Caption.
        let mut y = top + ih + 12;
        for line in &self.caption_lines {
            root.draw_text(
                line,
                &style(IMG_PX, TEXT, HPos::Left, VPos::Top),
                (IMG_PAD, y),
            )
            .map_err(perr)?;
            y += Self::line_h();
        }
        Ok(())
    }
}

/// Shows an RGB image next to a copy overlaid with attention weights, with a
/// caption (e.g. question and answer) underneath, and writes `{stem}.png`
/// and `{stem}.svg`.
///
/// `rgb` holds `width * height` pixels, row-major, 3 bytes each; the image is
/// upscaled by an integer factor so its longer side is at least 256 px.
/// `grid = (rows, cols)` divides the image into cells and `weights[r * cols +
/// c]` is the weight of cell (r, c). Each cell is shown relative to the
/// largest weight: the strongest cell is tinted orange and left bright, cells
/// with weight 0 are darkened. The caption wraps to the figure width; `\n`
/// starts a new line.
///
/// Errors, before any file is created, when the buffer length does not match
/// the size, the grid is empty or finer than the image, `weights.len() !=
/// rows * cols`, or a weight is NaN, infinite or negative.
pub fn image_attention(
    path_stem: &Path,
    rgb: &[u8],
    width: u32,
    height: u32,
    grid: (usize, usize),
    weights: &[f32],
    caption: &str,
) -> Result<()> {
    let fig = ImageAttention::new(rgb, width, height, grid, weights, caption)?;
    render(path_stem, &fig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn rgb_at(img: &image::RgbImage, x: i32, y: i32) -> [u8; 3] {
        img.get_pixel(x as u32, y as u32).0
    }

    fn luma(p: [u8; 3]) -> f64 {
        0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
    }

    /// Names of all entries in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn assert_outputs(stem: &Path, size: (u32, u32)) -> image::RgbImage {
        let png = with_ext(stem, "png");
        let svg = with_ext(stem, "svg");
        let bytes = fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), size);
        let svg_text = fs::read_to_string(&svg).unwrap();
        assert!(svg_text.contains("<svg"), "not an SVG");
        assert!(svg_text.contains(&format!("width=\"{}\"", size.0)));
        assert!(svg_text.contains(&format!("height=\"{}\"", size.1)));
        img
    }

    #[test]
    fn embedded_font_renders_distinct_umlaut_glyphs() {
        ensure_font().unwrap();
        let render = |s: &str| {
            let mut buf = vec![255u8; 40 * 40 * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (40, 40)).into_drawing_area();
                root.draw_text(
                    s,
                    &style(28.0, RGBColor(0, 0, 0), HPos::Left, VPos::Top),
                    (4, 4),
                )
                .unwrap();
                root.present().unwrap();
            }
            buf
        };
        let glyphs: Vec<Vec<u8>> = ["ä", "ö", "ü", "ß", "Ü", "é"]
            .iter()
            .map(|s| render(s))
            .collect();
        for (i, g) in glyphs.iter().enumerate() {
            assert!(g.iter().any(|&b| b < 128), "glyph {i} drew nothing");
            for h in &glyphs[i + 1..] {
                assert_ne!(
                    g, h,
                    "two characters rendered identically (missing glyphs?)"
                );
            }
        }
        assert!(text_width("Straße über München", 16.0).unwrap() > 100);
    }

    #[test]
    fn heatmap_writes_both_files_with_layout_size() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("nested/deeper/align.ep3");
        let src = toks("Die Straße führt über die Brücke");
        let tgt = toks("The road leads over the bridge");
        let m: Vec<Vec<f32>> = (0..6)
            .map(|t| (0..6).map(|s| if s == t { 0.9 } else { 0.02 }).collect())
            .collect();
        let panels: [(&str, &[Vec<f32>]); 2] = [("prior p(z_t)", &m), ("posterior q(z_t)", &m)];
        alignment_heatmaps(&stem, &src, &tgt, &panels).unwrap();
        let fig = Heatmap::new(("source", "target"), &src, &tgt, &panels).unwrap();
        assert_outputs(&stem, fig.size());
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        assert!(
            svg.contains("Straße") && svg.contains("Brücke") && svg.contains("posterior q(z_t)")
        );
        // Only the two figures, no temporary files.
        assert_eq!(
            listing(&dir.path().join("nested/deeper")),
            ["align.ep3.png", "align.ep3.svg"]
        );
        // Overwriting works.
        alignment_heatmaps(&stem, &src, &tgt, &panels).unwrap();
        assert_eq!(
            listing(&dir.path().join("nested/deeper")),
            ["align.ep3.png", "align.ep3.svg"]
        );
    }

    #[test]
    fn heatmap_one_hot_cells_land_at_row_target_column_source() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("onehot");
        // 3 target rows x 5 source columns: not square, so a transposed
        // drawing would put the dark cells elsewhere.
        let src = toks("a b c d e");
        let tgt = toks("x y z");
        let one_hot = |cols: [usize; 3]| -> Vec<Vec<f32>> {
            cols.iter()
                .map(|&c| (0..5).map(|s| if s == c { 1.0 } else { 0.0 }).collect())
                .collect()
        };
        let p0 = one_hot([4, 0, 2]);
        let p1 = one_hot([1, 3, 3]);
        let panels: [(&str, &[Vec<f32>]); 2] = [("prior", &p0), ("posterior", &p1)];
        alignment_heatmaps(&stem, &src, &tgt, &panels).unwrap();
        let fig = Heatmap::new(("source", "target"), &src, &tgt, &panels).unwrap();
        let img = assert_outputs(&stem, fig.size());
        let l = &fig.layout;
        for (p, m) in [&p0, &p1].iter().enumerate() {
            let mut darkest = (f64::INFINITY, 0, 0);
            for (i, row) in m.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let (x0, y0, x1, y1) = l.cell_rect(p, i, j);
                    let px = rgb_at(&img, (x0 + x1) / 2, (y0 + y1) / 2);
                    if v == 1.0 {
                        assert!(
                            luma(px) < 80.0,
                            "panel {p} cell ({i},{j}) should be dark: {px:?}"
                        );
                        assert!(px[2] > px[0], "the scale is blue: {px:?}");
                    } else {
                        assert!(
                            luma(px) > 235.0,
                            "panel {p} cell ({i},{j}) should be light: {px:?}"
                        );
                    }
                    if luma(px) < darkest.0 {
                        darkest = (luma(px), i, j);
                    }
                }
            }
            // The geometry itself: columns run left to right, rows top down.
            let (ax, ay, _, _) = l.cell_rect(p, 0, 0);
            let (bx, by, _, _) = l.cell_rect(p, 2, 4);
            assert!(bx > ax && by > ay);
        }
        // Colour bar: dark at the top (1.0), light at the bottom (0.0).
        let (_, gy) = l.grid_origin[0];
        let bar_h = cbar_height(l.cell * 3);
        let x = l.cbar_x + HM_CBAR_W / 2;
        assert!(luma(rgb_at(&img, x, gy + 2)) < 80.0);
        assert!(luma(rgb_at(&img, x, gy + bar_h - 3)) > 235.0);
    }

    #[test]
    fn heatmap_rejects_bad_input_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("sub/bad");
        let src = toks("a b");
        let tgt = toks("x y");
        let ok = vec![vec![0.5f32, 0.5], vec![0.1, 0.9]];
        let short_row = vec![vec![0.5f32, 0.5], vec![1.0]];
        let few_rows = vec![vec![0.5f32, 0.5]];
        let nan = vec![vec![0.5f32, f32::NAN], vec![0.1, 0.9]];
        let big = vec![vec![0.5f32, 1.5], vec![0.1, 0.9]];
        type Case<'a> = (
            Vec<String>,
            Vec<String>,
            Vec<(&'a str, &'a [Vec<f32>])>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                src.clone(),
                tgt.clone(),
                vec![("p", &short_row)],
                "row 1 has 1 values",
            ),
            (
                src.clone(),
                tgt.clone(),
                vec![("p", &ok), ("q", &few_rows)],
                "1 rows but 2 target",
            ),
            (src.clone(), tgt.clone(), vec![("p", &nan)], "NaN"),
            (
                src.clone(),
                tgt.clone(),
                vec![("p", &big)],
                "outside [0, 1]",
            ),
            (src.clone(), tgt.clone(), vec![], "no panels"),
            (vec![], tgt.clone(), vec![("p", &ok)], "no source tokens"),
            (
                toks("a b c"),
                tgt.clone(),
                vec![("p", &ok)],
                "3 source tokens",
            ),
        ];
        for (s, t, p, want) in cases {
            let err = alignment_heatmaps(&stem, &s, &t, &p)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "error {err:?} should mention {want:?}");
        }
        assert!(
            listing(dir.path()).is_empty(),
            "left behind: {:?}",
            listing(dir.path())
        );
    }

    fn curves() -> Vec<(String, Vec<(f64, f64)>)> {
        vec![
            (
                "soft".to_string(),
                (0..50)
                    .map(|i| (i as f64, 30.0 / (1.0 + i as f64)))
                    .collect(),
            ),
            (
                "hard (REINFORCE)".to_string(),
                (0..50)
                    .map(|i| (i as f64, 35.0 / (1.0 + i as f64)))
                    .collect(),
            ),
        ]
    }

    #[test]
    fn line_chart_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("curves");
        let series = curves();
        line_chart(&stem, "Validation PPL", "step", "PPL", &series).unwrap();
        let fig = LineChart::new("Validation PPL", "step", "PPL", &series).unwrap();
        let img = assert_outputs(&stem, fig.size());
        // Both series colours appear in the plot.
        let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(series_color(0)) && has(series_color(1)));
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        assert!(svg.contains("hard (REINFORCE)") && svg.contains("Validation PPL"));
        // A single point and a constant series still get a usable range.
        let one = vec![("K".to_string(), vec![(5.0, 7.0)])];
        line_chart(&dir.path().join("one"), "one", "K", "PPL", &one).unwrap();
    }

    #[test]
    fn line_chart_rejects_bad_input_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("sub/c");
        let empty: Vec<(String, Vec<(f64, f64)>)> = vec![];
        let err = line_chart(&stem, "t", "x", "y", &empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no series"), "{err}");
        let no_pts = vec![
            ("a".to_string(), vec![(0.0, 1.0)]),
            ("b".to_string(), vec![]),
        ];
        let err = line_chart(&stem, "t", "x", "y", &no_pts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"b\" has no points"), "{err}");
        let nan = vec![("a".to_string(), vec![(0.0, 1.0), (1.0, f64::NAN)])];
        let err = line_chart(&stem, "t", "x", "y", &nan)
            .unwrap_err()
            .to_string();
        assert!(err.contains("point 1") && err.contains("NaN"), "{err}");
        let inf = vec![("a".to_string(), vec![(f64::INFINITY, 1.0)])];
        assert!(line_chart(&stem, "t", "x", "y", &inf).is_err());
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn bar_chart_writes_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("bleu");
        let bars = vec![
            ("soft attention".to_string(), 27.3),
            ("variational (Dirichlet)".to_string(), 27.9),
            ("negative".to_string(), -3.0),
        ];
        bar_chart(&stem, "BLEU", "BLEU", &bars).unwrap();
        let fig = BarChart::new("BLEU", "BLEU", &bars).unwrap();
        assert_outputs(&stem, fig.size());
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        assert!(svg.contains("variational (Dirichlet)") && svg.contains("27.9"));

        let bad_dir = dir.path().join("bad");
        let err = bar_chart(&bad_dir.join("b"), "t", "v", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no bars"), "{err}");
        let err = bar_chart(&bad_dir.join("b"), "t", "v", &[("x".into(), f64::NAN)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN"), "{err}");
        assert!(!bad_dir.exists());
    }

    #[test]
    fn image_attention_overlay_highlights_the_heaviest_cell() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("vqa");
        let (w, h) = (64u32, 48u32);
        let rgb = vec![128u8; (w * h * 3) as usize];
        let (rows, cols) = (3usize, 4usize);
        let mut weights = vec![0.0f32; rows * cols];
        weights[cols + 2] = 1.0; // row 1, column 2
        let caption = "Q: Welche Farbe hat der Würfel?\nA: grün";
        image_attention(&stem, &rgb, w, h, (rows, cols), &weights, caption).unwrap();
        let fig = ImageAttention::new(&rgb, w, h, (rows, cols), &weights, caption).unwrap();
        assert_eq!(fig.scale, 4);
        let img = assert_outputs(&stem, fig.size());
        let (iw, ih) = fig.img_size();
        assert_eq!((iw, ih), (256, 192));
        let top = IMG_PAD + ImageAttention::line_h() + 6;
        let overlay_left = IMG_PAD + iw + IMG_GAP;
        // Left panel: the untouched image.
        assert_eq!(
            rgb_at(&img, IMG_PAD + iw / 2, top + ih / 2),
            [128, 128, 128]
        );
        for r in 0..rows {
            for c in 0..cols {
                let x = overlay_left + (2 * c as i32 + 1) * iw / (2 * cols as i32);
                let y = top + (2 * r as i32 + 1) * ih / (2 * rows as i32);
                let p = rgb_at(&img, x, y);
                if (r, c) == (1, 2) {
                    assert!(p[0] > 170 && p[2] < 100, "hot cell should be orange: {p:?}");
                } else {
                    assert!(luma(p) < 70.0, "cell ({r},{c}) should be dimmed: {p:?}");
                }
            }
        }
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        assert!(svg.contains("Würfel") && svg.contains("<image"));
    }

    #[test]
    fn image_attention_rejects_bad_input_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("sub/img");
        let rgb = vec![0u8; 8 * 8 * 3];
        let w4 = vec![0.25f32; 4];
        type Case<'a> = (&'a [u8], u32, u32, (usize, usize), Vec<f32>, &'a str);
        let cases: Vec<Case> = vec![
            (&rgb[..10], 8, 8, (2, 2), w4.clone(), "RGB bytes"),
            (&rgb, 8, 8, (2, 2), vec![0.5; 3], "3 weights for a 2x2 grid"),
            (&rgb, 8, 8, (2, 2), vec![0.5, f32::NAN, 0.1, 0.1], "NaN"),
            (
                &rgb,
                8,
                8,
                (2, 2),
                vec![0.5, -0.1, 0.1, 0.1],
                "non-negative",
            ),
            (&rgb, 8, 8, (0, 2), vec![], "grid is 0x2"),
            (&rgb, 8, 8, (16, 16), vec![0.0; 256], "finer than"),
            (&[], 0, 0, (1, 1), vec![1.0], "image is 0x0"),
        ];
        for (buf, w, h, grid, wts, want) in cases {
            let err = image_attention(&stem, buf, w, h, grid, &wts, "q")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "error {err:?} should mention {want:?}");
        }
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn failed_commit_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("fig");
        // A directory where the SVG should go makes the final rename fail.
        fs::create_dir(with_ext(&stem, "svg")).unwrap();
        fs::write(with_ext(&stem, "svg").join("keep"), b"x").unwrap();
        let series = curves();
        assert!(line_chart(&stem, "t", "x", "y", &series).is_err());
        let left: Vec<String> = listing(dir.path())
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn helpers() {
        assert_eq!(
            with_ext(Path::new("a/b.ep3"), "png"),
            PathBuf::from("a/b.ep3.png")
        );
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_tick(2000.0), "2000");
        assert_eq!(fmt_tick(7.5), "7.5");
        assert_eq!(fmt_tick(0.125), "0.125");
        assert_eq!(fmt_tick(1.5e6), "1.5e6");
        assert_eq!(padded_range(0.0, 0.0, true), (-1.0, 1.0));
        let (lo, hi) = padded_range(1.0, 11.0, true);
        assert!((lo - 0.5).abs() < 1e-12 && (hi - 11.5).abs() < 1e-12);
        assert_eq!(padded_range(0.1, 10.0, true).0, 0.0);
        assert_eq!(truncate("Donaudampfschifffahrt", 6), "Donau…");
        assert_eq!(truncate("kurz", 6), "kurz");
        ensure_font().unwrap();
        let lines = wrap(
            "one two three four five six seven eight nine ten",
            16.0,
            120,
        )
        .unwrap();
        assert!(lines.len() > 2);
        for l in &lines {
            assert!(text_width(l, 16.0).unwrap() <= 120 || !l.contains(' '));
        }
        assert_eq!(wrap("a\nb", 16.0, 500).unwrap(), ["a", "b"]);
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
    }
}
