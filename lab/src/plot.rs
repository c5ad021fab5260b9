//! Figures for reports: alignment heatmaps, line plots, bar charts and
//! image-attention overlays, each written as `{stem}.png` and `{stem}.svg`.
//!
//! * [`alignment_heatmaps`]: weight matrices side by side, axes named by the
//!   caller (source / target tokens, image regions, letters, draws).
//! * [`line_plot`]: named [`Series`] with optional error bars (given, or the
//!   spread over seeds, [`Series::over_seeds`]), linear or logarithmic axes
//!   ([`Scale`]), a distinct colour, marker and dash per series and the legend
//!   inside the plotting area; [`line_chart`] is the plain form.
//! * [`bar_chart`], [`image_attention`].
//!
//! Every figure is a plotters chart (`ChartBuilder`: caption, label areas, mesh, series with
//! their labels) in coordinates of its own data: cells of a heatmap or an image grid, epochs,
//! bars. Only the heatmaps' column labels, which read upwards, are placed by hand at the chart's
//! column centres (plotters' mesh anchors a bottom label at its centre, so a rotated one would
//! run up into the grid).
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
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
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

/// A pixel position on a drawing backend.
type BackendCoord = (i32, i32);

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
const HM_MAX_AXIS_CHARS: usize = 48;
const HM_CBAR_W: i32 = 16;

/// Pixel geometry of a heatmap figure: where each panel's chart goes and where its cell grid (the
/// chart's plotting area) lands.
#[derive(Debug, Clone)]
struct HeatmapLayout {
    width: u32,
    height: u32,
    cell: i32,
    /// Top-left corner of each panel's cell grid.
    grid_origin: Vec<(i32, i32)>,
    n_rows: usize,
    n_cols: usize,
    /// Width of the row-label area left of a grid (the y name and the row labels).
    label_left: i32,
    /// Height of the column-label area under a grid (the column labels and the x name).
    label_below: i32,
    /// Height the chart caption (panel title) takes above each panel's grid.
    caption_h: Vec<i32>,
    cbar_x: i32,
}

#[cfg(test)]
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
    /// Axis names: under the columns (x) and left of the rows (y).
    x_label: String,
    y_label: String,
    src: Vec<String>,
    tgt: Vec<String>,
    panels: Vec<(&'a str, &'a [Vec<f32>])>,
    layout: HeatmapLayout,
    tick_w: i32,
}

/// Height plotters' chart caption takes for `title` (`DrawingArea::titled`: the text's height
/// and up to 5 px of padding above and below it).
fn caption_height(title: &str, px: f64) -> Result<i32> {
    let h = text_size(title, px)?.1 as i32;
    Ok(h + 2 * (h / 2).min(5))
}

/// Cell (`row`, `col`) of a grid chart in cell coordinates (columns along x, rows along y).
fn grid_cell(row: usize, col: usize, style: ShapeStyle) -> Rectangle<(f64, f64)> {
    let (x, y) = (col as f64, row as f64);
    Rectangle::new([(x, y), (x + 1.0, y + 1.0)], style)
}

/// The lines between the cells of a `rows` × `cols` grid chart, in cell coordinates.
fn grid_separators(rows: usize, cols: usize) -> impl Iterator<Item = Vec<(f64, f64)>> {
    let (nr, nc) = (rows as f64, cols as f64);
    (1..cols)
        .map(move |c| vec![(c as f64, 0.0), (c as f64, nr)])
        .chain((1..rows).map(move |r| vec![(0.0, r as f64), (nc, r as f64)]))
}

/// Distance plotters leaves between an axis and its tick labels (twice the default tick).
const HM_LABEL_DIST: i32 = 10;

impl<'a> Heatmap<'a> {
    fn new(
        x_label: &str,
        y_label: &str,
        src_tokens: &[String],
        tgt_tokens: &[String],
        panels: &[(&'a str, &'a [Vec<f32>])],
    ) -> Result<Self> {
        ensure!(
            !src_tokens.is_empty(),
            "alignment heatmap: no column labels ({x_label})"
        );
        ensure!(
            !tgt_tokens.is_empty(),
            "alignment heatmap: no row labels ({y_label})"
        );
        ensure!(!panels.is_empty(), "alignment heatmap: no panels");
        let (n_rows, n_cols) = (tgt_tokens.len(), src_tokens.len());
        for (title, m) in panels {
            ensure!(
                m.len() == n_rows,
                "alignment heatmap panel {title:?}: {} rows but {} row labels ({y_label})",
                m.len(),
                n_rows
            );
            for (i, row) in m.iter().enumerate() {
                ensure!(
                    row.len() == n_cols,
                    "alignment heatmap panel {title:?}: row {i} has {} values but {} column labels ({x_label})",
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
        let caption_h = panels
            .iter()
            .map(|(t, _)| caption_height(t, HM_TITLE_PX))
            .collect::<Result<Vec<_>>>()?;
        let caption_max = caption_h.iter().copied().max().unwrap_or(0);

        let x_label = truncate(x_label, HM_MAX_AXIS_CHARS);
        let y_label = truncate(y_label, HM_MAX_AXIS_CHARS);
        let x_label_w = text_width(&x_label, HM_AXIS_PX)?;
        let y_label_w = text_width(&y_label, HM_AXIS_PX)?;

        // A panel's chart: [y name][row labels][gap][grid], under the grid the column labels
        // (reading upwards) and the x name; the chart is centred in a column wide enough for
        // the panel title and the x name. The colour bar's chart follows the last panel.
        let axis_h = HM_AXIS_PX as i32 + 6;
        let label_left = axis_h + slack(tgt_label_w) + HM_LABEL_DIST;
        let label_below = 6 + slack(src_label_w) + 8 + axis_h;
        let chart_w = label_left + grid_w;
        let column_w = chart_w
            .max(slack(title_w) + 8)
            .max(label_left + slack(x_label_w) + 8);
        // The y name is centred on the grid: the grid moves down when the name is longer than
        // the room above the grid's middle, and the figure is tall enough to hold it.
        let half = slack(y_label_w) / 2;
        let grid_top = (HM_PAD + caption_max).max(HM_PAD + half - grid_h / 2);
        let grid_origin: Vec<(i32, i32)> = (0..panels.len())
            .map(|p| (HM_PAD + p as i32 * column_w + (column_w - chart_w) / 2 + label_left, grid_top))
            .collect();
        let cbar_x = HM_PAD + panels.len() as i32 * column_w + 10;
        let tick_w = slack(text_width("1.00", HM_LABEL_PX - 2.0)?);
        let width = cbar_x + HM_CBAR_W + HM_LABEL_DIST + tick_w + HM_PAD;
        let height = (grid_top + (grid_h + label_below).max(cbar_height(grid_h)) + HM_PAD)
            .max(grid_top + grid_h / 2 + half + HM_PAD);

        Ok(Self {
            x_label,
            y_label,
            src,
            tgt,
            panels: panels.to_vec(),
            layout: HeatmapLayout {
                width: width as u32,
                height: height as u32,
                cell,
                grid_origin,
                n_rows,
                n_cols,
                label_left,
                label_below,
                caption_h,
                cbar_x,
            },
            tick_w,
        })
    }

    /// One panel: a chart whose plotting area is the cell grid, rows top down, columns left to
    /// right, each cell a filled rectangle in cell coordinates.
    fn draw_panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        panel: usize,
    ) -> Result<()> {
        let l = &self.layout;
        let (title, m) = self.panels[panel];
        let (gx, gy) = l.grid_origin[panel];
        let (nr, nc) = (l.n_rows as f64, l.n_cols as f64);
        let (grid_w, grid_h) = (l.cell * l.n_cols as i32, l.cell * l.n_rows as i32);
        let top = gy - l.caption_h[panel];
        let area = root.clone().shrink(
            (gx - l.label_left, top),
            (
                (l.label_left + grid_w) as u32,
                (l.caption_h[panel] + grid_h + l.label_below) as u32,
            ),
        );
        let row_centres: Vec<f64> = (0..l.n_rows).map(|i| i as f64 + 0.5).collect();
        let mut chart = ChartBuilder::on(&area)
            .caption(title, font(HM_TITLE_PX).color(&TEXT))
            .y_label_area_size(l.label_left as u32)
            .x_label_area_size(l.label_below as u32)
            .build_cartesian_2d(0f64..nc, Ticked { inner: RangedCoordf64::from(nr..0f64), ticks: row_centres })
            .map_err(perr)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_label_formatter(&|y| self.tgt[(y.floor() as usize).min(l.n_rows - 1)].clone())
            .y_label_style(font(HM_LABEL_PX).color(&TEXT))
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .axis_desc_style(font(HM_AXIS_PX).color(&MUTED))
            .axis_style(MUTED)
            .draw()
            .map_err(perr)?;
        chart
            .draw_series(m.iter().enumerate().flat_map(|(i, row)| {
                row.iter().enumerate().map(move |(j, &v)| grid_cell(i, j, blues(v as f64).filled()))
            }))
            .map_err(perr)?;
        // Faint cell separators and a frame.
        chart
            .draw_series(grid_separators(l.n_rows, l.n_cols).map(|p| PathElement::new(p, GRID)))
            .map_err(perr)?;
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, 0.0), (nc, nr)], MUTED)))
            .map_err(perr)?;
        // Column labels under the columns, reading upwards. (plotters' mesh anchors a bottom
        // label at its centre, so a rotated one would run up into the grid: they are placed
        // here, at the chart's own column centres.)
        let label = style(HM_LABEL_PX, TEXT, HPos::Right, VPos::Center)
            .transform(FontTransform::Rotate270);
        for (j, s) in self.src.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(j as f64 + 0.5, nr));
            root.draw_text(s, &label, (x, y + 6)).map_err(perr)?;
        }
        Ok(())
    }

    /// The colour bar: a chart over [0, 1] filled with the colour scale, 0 at the bottom, ticks
    /// on its right.
    fn draw_colour_bar<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let l = &self.layout;
        let (_, gy) = l.grid_origin[0];
        let bar_h = cbar_height(l.cell * l.n_rows as i32);
        let area = root.clone().shrink(
            (l.cbar_x, gy),
            ((HM_CBAR_W + HM_LABEL_DIST + self.tick_w) as u32, bar_h as u32),
        );
        let mut chart = ChartBuilder::on(&area)
            .right_y_label_area_size((HM_LABEL_DIST + self.tick_w) as u32)
            .build_cartesian_2d(
                0f64..1f64,
                Ticked { inner: RangedCoordf64::from(0f64..1f64), ticks: vec![0.0, 0.25, 0.5, 0.75, 1.0] },
            )
            .map_err(perr)?;
        let steps = bar_h.max(1) as usize;
        chart
            .draw_series((0..steps).map(|k| {
                let (v0, v1) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
                Rectangle::new([(0.0, v0), (1.0, v1)], blues(v0).filled())
            }))
            .map_err(perr)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .set_tick_mark_size(LabelAreaPosition::Right, 4)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .y_label_style(font(HM_LABEL_PX - 2.0).color(&TEXT))
            .axis_style(MUTED)
            .draw()
            .map_err(perr)?;
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, 0.0), (1.0, 1.0)], MUTED)))
            .map_err(perr)?;
        Ok(())
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
        for p in 0..self.panels.len() {
            self.draw_panel(root, p)?;
        }
        self.draw_colour_bar(root)
    }
}

/// Draws side-by-side alignment heatmaps and writes `{stem}.png` and
/// `{stem}.svg`.
///
/// Each panel is `(title, matrix)`, where `matrix[r][c]` is the weight that
/// row `r` puts on column `c`: rows are labelled by `y_tokens` (on the left,
/// top to bottom), columns by `x_tokens` (underneath, reading upwards), and
/// the axes are named `x_label` (under the columns) and `y_label` (left of
/// the rows, reading upwards). For NMT that is `"source token"` /
/// `"target token"`; for VQA image regions, G2P letters or Monte Carlo draws
/// name what the rows and columns are. Values must lie in [0, 1] (a rounding
/// slack of 1e-3 is clamped); 0 is drawn near-white and 1 dark blue, with a
/// colour bar on the right. Token labels longer than 18 characters and axis
/// names longer than 48 are shortened with an ellipsis; any text the
/// embedded Noto Sans covers (Latin, Greek, Cyrillic, umlauts, ß, …) renders.
///
/// Errors, before any file is created, when a token list or the panel list
/// is empty, a matrix's shape differs from `y_tokens.len()` ×
/// `x_tokens.len()`, or a value is NaN, infinite or outside [0, 1].
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use varattn_lab::plot;
/// let cols: Vec<String> = ["s", "t", "r"].iter().map(|s| s.to_string()).collect();
/// let rows: Vec<String> = vec!["sample 1".into(), "sample 2".into()];
/// let m = vec![vec![1.0f32, 0.0, 0.0], vec![0.0, 0.5, 0.5]];
/// plot::alignment_heatmaps("figs/g2p".as_ref(), "input letter", "sampled alignment",
///                          &cols, &rows, &[("q(b | x, y)", m.as_slice())])?;
/// # Ok(()) }
/// ```
pub fn alignment_heatmaps(
    path_stem: &Path,
    x_label: &str,
    y_label: &str,
    x_tokens: &[String],
    y_tokens: &[String],
    panels: &[(&str, &[Vec<f32>])],
) -> Result<()> {
    let fig = Heatmap::new(x_label, y_label, x_tokens, y_tokens, panels)?;
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

/// Round tick values in `[lo, hi]`, about seven of them: the multiples of a
/// step of 1, 2 or 5 × 10^k; whole numbers only when `integer`.
fn linear_ticks(lo: f64, hi: f64, integer: bool) -> Vec<f64> {
    let span = hi - lo;
    if span.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = span / 7.0;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Ticks of a logarithmic axis over `[lo, hi]` (both > 0): the powers of
/// `base` inside it (every n-th when there are more than ten); when a base-10
/// range holds fewer than three powers, 1, 2 and 5 times the powers of 10;
/// failing both, round linear ticks.
fn log_ticks(lo: f64, hi: f64, base: f64) -> Vec<f64> {
    let (a, b) = (lo.log(base), hi.log(base));
    let ks: Vec<i32> = ((a - 1e-9).ceil() as i32..=(b + 1e-9).floor() as i32).collect();
    if ks.len() >= 3 || (ks.len() == 2 && base != 10.0) {
        let every = ks.len().div_ceil(10) as i32;
        return ks
            .into_iter()
            .filter(|k| k.rem_euclid(every) == 0)
            .map(|k| base.powi(k))
            .collect();
    }
    if base == 10.0 {
        let v: Vec<f64> = (a.floor() as i32..=b.ceil() as i32)
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
            .filter(|t| *t >= lo * (1.0 - 1e-9) && *t <= hi * (1.0 + 1e-9))
            .collect();
        if v.len() >= 2 {
            return v;
        }
    }
    linear_ticks(lo, hi, false)
}

/// How a line plot's axis places values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// Evenly spaced. Ticks at round numbers, and at whole numbers only when
    /// every value on the axis is a whole number (epochs, K, steps).
    #[default]
    Linear,
    /// Logarithmic, ticks at the powers of 10 (1, 10, 100, …; also at 2 and 5
    /// times the powers when the axis holds fewer than three powers). Values
    /// must be positive.
    Log10,
    /// Logarithmic, ticks at the powers of 2 (1, 2, 4, 8, …). Values must be
    /// positive.
    Log2,
}

impl Scale {
    fn base(self) -> Option<f64> {
        match self {
            Scale::Linear => None,
            Scale::Log10 => Some(10.0),
            Scale::Log2 => Some(2.0),
        }
    }
}

/// What the error bars of a series averaged over seeds span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// The mean ± the sample standard deviation over seeds (what the report's
    /// tables print after "±").
    Std,
    /// The mean ± its standard error, the standard deviation over √(seeds).
    StdErr,
}

/// One point of a line [`Series`]: `y` at `x`, with an error bar from
/// `y - err` to `y + err` when `err` is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub err: Option<f64>,
}

/// A named line of a [`line_plot`], its points in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

impl Series {
    /// A line without error bars.
    pub fn new(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let points = points.into_iter().map(|(x, y)| Point { x, y, err: None }).collect();
        Self { name: name.into(), points }
    }

    /// A line with an error bar `y ± err` at every `(x, y, err)`.
    pub fn with_errors(
        name: impl Into<String>,
        points: impl IntoIterator<Item = (f64, f64, f64)>,
    ) -> Self {
        let points = points.into_iter().map(|(x, y, e)| Point { x, y, err: Some(e) }).collect();
        Self { name: name.into(), points }
    }

    /// One line from several seeds' runs of the same setting (`runs[s]` is
    /// seed s's `(x, y)` points, e.g. (epoch, validation PPL)): at every x
    /// that some run has, the mean of the runs' y there, with an error bar of
    /// `spread` where two or more runs have that x (runs that stopped early
    /// simply contribute fewer points). Points are sorted by x.
    pub fn over_seeds(name: impl Into<String>, runs: &[Vec<(f64, f64)>], spread: Spread) -> Self {
        let mut at: Vec<(f64, Vec<f64>)> = Vec::new();
        for &(x, y) in runs.iter().flatten() {
            match at.iter_mut().find(|(ax, _)| *ax == x) {
                Some((_, ys)) => ys.push(y),
                None => at.push((x, vec![y])),
            }
        }
        at.sort_by(|a, b| a.0.total_cmp(&b.0));
        let points = at
            .into_iter()
            .map(|(x, ys)| {
                let (y, sd) = crate::stats::mean_std(&ys);
                let err = (ys.len() > 1).then(|| match spread {
                    Spread::Std => sd,
                    Spread::StdErr => sd / (ys.len() as f64).sqrt(),
                });
                Point { x, y, err }
            })
            .collect();
        Self { name: name.into(), points }
    }
}

impl From<&(String, Vec<(f64, f64)>)> for Series {
    fn from((name, pts): &(String, Vec<(f64, f64)>)) -> Self {
        Series::new(name.clone(), pts.iter().copied())
    }
}

/// Title, axis names and axis scales of a [`line_plot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_scale: Scale,
    pub y_scale: Scale,
}

impl<'a> LinePlot<'a> {
    /// Linear axes named `x_label` and `y_label`.
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str) -> Self {
        Self { title, x_label, y_label, x_scale: Scale::Linear, y_scale: Scale::Linear }
    }

    /// The same plot with the x axis on `scale`.
    pub fn x_scale(self, scale: Scale) -> Self {
        Self { x_scale: scale, ..self }
    }

    /// The same plot with the y axis on `scale`.
    pub fn y_scale(self, scale: Scale) -> Self {
        Self { y_scale: scale, ..self }
    }
}

/// The series look: colour `i % 10` of Tableau 10, marker shape `i % 6`,
/// every second series dashed, so no two of the first 30 series look alike.
const MARKERS: usize = 6;

fn dashed(i: usize) -> bool {
    i % 2 == 1
}

/// Outline of series `i`'s marker, in pixels around its centre: circle,
/// square, triangle, diamond, downward triangle, plus.
fn marker_shape(i: usize) -> Vec<(i32, i32)> {
    match i % MARKERS {
        0 => (0..12)
            .map(|k| {
                let a = k as f64 * std::f64::consts::PI / 6.0;
                ((4.5 * a.cos()).round() as i32, (4.5 * a.sin()).round() as i32)
            })
            .collect(),
        1 => vec![(-4, -4), (4, -4), (4, 4), (-4, 4)],
        2 => vec![(0, -5), (5, 4), (-5, 4)],
        3 => vec![(0, -6), (5, 0), (0, 6), (-5, 0)],
        4 => vec![(0, 5), (5, -4), (-5, -4)],
        _ => vec![
            (-2, -5), (2, -5), (2, -2), (5, -2), (5, 2), (2, 2),
            (2, 5), (-2, 5), (-2, 2), (-5, 2), (-5, -2), (-2, -2),
        ],
    }
}

/// The legend glyph's two strokes of series `i` (two dashes when the series
/// is dashed), as `(from, to)` pixel offsets of a 24 px line.
fn legend_strokes(i: usize) -> [(i32, i32); 2] {
    if dashed(i) {
        [(0, 8), (16, 24)]
    } else {
        [(0, 12), (12, 24)]
    }
}

/// The legend corners and sides tried, in order of preference.
const LEGEND_PLACES: [SeriesLabelPosition; 8] = [
    SeriesLabelPosition::UpperRight,
    SeriesLabelPosition::UpperLeft,
    SeriesLabelPosition::LowerRight,
    SeriesLabelPosition::LowerLeft,
    SeriesLabelPosition::MiddleRight,
    SeriesLabelPosition::MiddleLeft,
    SeriesLabelPosition::UpperMiddle,
    SeriesLabelPosition::LowerMiddle,
];

/// Where plotters puts a `w` × `h` legend at `pos` in an `area` (as
/// `SeriesLabelStyle::draw` lays it out): its top-left corner.
fn legend_origin(pos: &SeriesLabelPosition, (w, h): (i32, i32), area: (i32, i32)) -> (i32, i32) {
    use SeriesLabelPosition::*;
    let x = match pos {
        UpperLeft | MiddleLeft | LowerLeft => 5,
        UpperMiddle | MiddleMiddle | LowerMiddle => (area.0 - w) / 2,
        UpperRight | MiddleRight | LowerRight => area.0 - w - 5,
        Coordinate(x, _) => *x,
    };
    let y = match pos {
        UpperLeft | UpperMiddle | UpperRight => 5,
        MiddleLeft | MiddleMiddle | MiddleRight => (area.1 - h) / 2,
        LowerLeft | LowerMiddle | LowerRight => area.1 - h - 5,
        Coordinate(_, y) => *y,
    };
    (x, y)
}

/// The legend place, among [`LEGEND_PLACES`], whose box (grown by 6 px)
/// covers the fewest of `pixels` (points of the drawn lines, in plotting-area
/// pixels); the first such place on a tie.
fn pick_legend_place(area: (i32, i32), legend: (i32, i32), pixels: &[(i32, i32)]) -> SeriesLabelPosition {
    let covered = |pos: &SeriesLabelPosition| {
        let (x0, y0) = legend_origin(pos, legend, area);
        let (x1, y1) = (x0 + legend.0, y0 + legend.1);
        pixels
            .iter()
            .filter(|&&(x, y)| x >= x0 - 6 && x <= x1 + 6 && y >= y0 - 6 && y <= y1 + 6)
            .count()
    };
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for pos in LEGEND_PLACES {
        let n = covered(&pos);
        if n < best.0 {
            best = (n, pos);
        }
    }
    best.1
}

// ---------------------------------------------------------------------------
// 2. Line plots
// ---------------------------------------------------------------------------

const CHART_W: u32 = 800;
const CHART_H: u32 = 480;
const CHART_PX: f64 = 16.0;
const CHART_TITLE_PX: f64 = 20.0;
const LEGEND_PX: f64 = 14.0;
/// plotters' legend layout: glyph column width and margin around the text.
const LEGEND_GLYPH_W: i32 = 30;
const LEGEND_MARGIN: i32 = 8;
/// Markers are drawn at every n-th point so that a series shows about this many.
const MARKERS_PER_SERIES: usize = 15;

/// One axis of a line plot: its scale, padded range and tick values.
#[derive(Debug, Clone)]
struct Axis {
    scale: Scale,
    range: (f64, f64),
    ticks: Vec<f64>,
}

impl Axis {
    /// The axis over data in `[lo, hi]`: linear ranges padded by 5% (starting
    /// at 0 for non-negative data near it when `pad_zero`), logarithmic ones
    /// by 5% of their span in powers (half a power each side for a single
    /// value).
    fn new(scale: Scale, lo: f64, hi: f64, pad_zero: bool, integer: bool) -> Self {
        match scale.base() {
            None => {
                let range = padded_range(lo, hi, pad_zero);
                Self { scale, range, ticks: linear_ticks(range.0, range.1, integer) }
            }
            Some(base) => {
                let (a, b) = (lo.log(base), hi.log(base));
                let pad = if b - a > 1e-9 { 0.05 * (b - a) } else { 0.5 };
                let range = (base.powf(a - pad), base.powf(b + pad));
                Self { scale, range, ticks: log_ticks(range.0, range.1, base) }
            }
        }
    }
}

/// A plotters coordinate (linear or logarithmic) with our own tick values as
/// its key points, labelled by the mesh's label formatter.
struct Ticked<R: Ranged<ValueType = f64>> {
    inner: R,
    ticks: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }

    fn axis_pixel_range(&self, limit: (i32, i32)) -> std::ops::Range<i32> {
        self.inner.axis_pixel_range(limit)
    }
}

struct LineChart<'a> {
    plot: LinePlot<'a>,
    series: &'a [Series],
    names: Vec<String>,
    x: Axis,
    y: Axis,
    y_label_area: i32,
}

impl<'a> LineChart<'a> {
    fn new(plot: LinePlot<'a>, series: &'a [Series]) -> Result<Self> {
        let title = plot.title;
        ensure!(!series.is_empty(), "line chart {title:?}: no series");
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) =
            (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        let mut integer_x = true;
        for Series { name, points } in series {
            ensure!(!points.is_empty(), "line chart {title:?}: series {name:?} has no points");
            for (k, p) in points.iter().enumerate() {
                let (x, y) = (p.x, p.y);
                ensure!(
                    x.is_finite() && y.is_finite(),
                    "line chart {title:?}: series {name:?} point {k} is ({x}, {y})"
                );
                if let Some(e) = p.err {
                    ensure!(
                        e.is_finite() && e >= 0.0,
                        "line chart {title:?}: series {name:?} point {k} has error bar ±{e}"
                    );
                }
                ensure!(
                    plot.x_scale == Scale::Linear || x > 0.0,
                    "line chart {title:?}: series {name:?} point {k} has x = {x} on a logarithmic axis"
                );
                ensure!(
                    plot.y_scale == Scale::Linear || y > 0.0,
                    "line chart {title:?}: series {name:?} point {k} has y = {y} on a logarithmic axis"
                );
                integer_x &= x == x.round();
                x_lo = x_lo.min(x);
                x_hi = x_hi.max(x);
                let e = p.err.unwrap_or(0.0);
                // On a log axis a bar reaching 0 or below is cut at the axis' end.
                let low = if plot.y_scale == Scale::Linear || y - e > 0.0 { y - e } else { y };
                y_lo = y_lo.min(low);
                y_hi = y_hi.max(y + e);
            }
        }
        ensure_font()?;
        let x = Axis::new(plot.x_scale, x_lo, x_hi, false, integer_x);
        let y = Axis::new(plot.y_scale, y_lo, y_hi, true, false);
        let tick_w = y
            .ticks
            .iter()
            .try_fold(0, |m, &t| Ok::<_, anyhow::Error>(m.max(text_width(&fmt_tick(t), CHART_PX - 2.0)?)))?;
        Ok(Self {
            plot,
            series,
            names: series.iter().map(|s| truncate(&s.name, 40)).collect(),
            x,
            y,
            y_label_area: slack(tick_w) + CHART_PX as i32 + 20,
        })
    }

    /// Width and height plotters gives the legend box.
    fn legend_size(&self) -> Result<(i32, i32)> {
        let mut text = MultiLineText::<BackendCoord, &str>::new((0, 0), font(LEGEND_PX));
        for n in &self.names {
            text.push_line(n.as_str());
        }
        let (w, h) = text.estimate_dimension().map_err(perr)?;
        Ok((w + LEGEND_GLYPH_W + 2 * LEGEND_MARGIN, h + 2 * LEGEND_MARGIN))
    }

    fn draw_on<DB, X, Y>(&self, root: &DrawingArea<DB, Shift>, x: X, y: Y) -> Result<()>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64, FormatOption = DefaultFormatting>,
        Y: Ranged<ValueType = f64, FormatOption = DefaultFormatting>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(self.plot.title, font(CHART_TITLE_PX).color(&TEXT))
            .margin(14)
            .margin_right(24)
            .x_label_area_size(52)
            .y_label_area_size(self.y_label_area)
            .build_cartesian_2d(x, y)
            .map_err(perr)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .axis_style(MUTED)
            .x_desc(self.plot.x_label)
            .y_desc(self.plot.y_label)
            .axis_desc_style(font(CHART_PX).color(&TEXT))
            .label_style(font(CHART_PX - 2.0).color(&TEXT))
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .draw()
            .map_err(perr)?;

        let y_floor = self.y.range.0;
        let mut pixels = Vec::new();
        let (ox, oy) = chart.plotting_area().get_base_pixel();
        for (i, s) in self.series.iter().enumerate() {
            let c = series_color(i);
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.y)).collect();
            // Error bars first, so that lines and markers sit on top.
            let bars = s.points.iter().filter_map(|p| {
                p.err.map(|e| {
                    ErrorBar::new_vertical(p.x, (p.y - e).max(y_floor), p.y, p.y + e, c.stroke_width(1), 7)
                })
            });
            chart.draw_series(bars).map_err(perr)?;
            let style = c.stroke_width(2);
            let anno = if dashed(i) {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 9, 5, style))
            } else {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style))
            }
            .map_err(perr)?;
            // Legend glyph: the series' stroke with its marker in the middle.
            let [a, b] = legend_strokes(i);
            anno.label(self.names[i].as_str()).legend(move |at| {
                EmptyElement::at(at)
                    + PathElement::new(vec![(a.0, 0), (a.1, 0)], style)
                    + PathElement::new(vec![(b.0, 0), (b.1, 0)], style)
                    + Polygon::new(
                        marker_shape(i).into_iter().map(|(x, y)| (x + 12, y)).collect::<Vec<_>>(),
                        c.filled(),
                    )
            });
            let every = pts.len().div_ceil(MARKERS_PER_SERIES).max(1);
            chart
                .draw_series(
                    pts.iter()
                        .step_by(every)
                        .map(|&p| EmptyElement::at(p) + Polygon::new(marker_shape(i), c.filled())),
                )
                .map_err(perr)?;
            // What the legend should not cover: the points, 8 more along each
            // segment, and the error bars' ends.
            let px = |p: (f64, f64)| {
                let (bx, by) = chart.backend_coord(&p);
                (bx - ox, by - oy)
            };
            for w in pts.windows(2) {
                let (a, b) = (px(w[0]), px(w[1]));
                pixels.extend((0..9).map(|k| (a.0 + (b.0 - a.0) * k / 9, a.1 + (b.1 - a.1) * k / 9)));
            }
            pixels.push(px(pts[pts.len() - 1]));
            for p in &s.points {
                if let Some(e) = p.err {
                    pixels.push(px((p.x, (p.y - e).max(y_floor))));
                    pixels.push(px((p.x, p.y + e)));
                }
            }
        }
        let (aw, ah) = chart.plotting_area().dim_in_pixel();
        let place = pick_legend_place((aw as i32, ah as i32), self.legend_size()?, &pixels);
        chart
            .configure_series_labels()
            .position(place)
            .legend_area_size(LEGEND_GLYPH_W)
            .margin(LEGEND_MARGIN)
            .label_font(font(LEGEND_PX).color(&TEXT))
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .draw()
            .map_err(perr)?;
        Ok(())
    }
}

impl Figure for LineChart<'_> {
    fn size(&self) -> (u32, u32) {
        (CHART_W, CHART_H)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let lin = |a: &Axis| Ticked { inner: RangedCoordf64::from(a.range.0..a.range.1), ticks: a.ticks.clone() };
        let log = |a: &Axis| Ticked { inner: LogCoord::from((a.range.0..a.range.1).log_scale()), ticks: a.ticks.clone() };
        match (self.x.scale == Scale::Linear, self.y.scale == Scale::Linear) {
            (true, true) => self.draw_on(root, lin(&self.x), lin(&self.y)),
            (true, false) => self.draw_on(root, lin(&self.x), log(&self.y)),
            (false, true) => self.draw_on(root, log(&self.x), lin(&self.y)),
            (false, false) => self.draw_on(root, log(&self.x), log(&self.y)),
        }
    }
}

/// Draws one line per [`Series`], with error bars where points have them and
/// a legend inside the plotting area, and writes `{stem}.png` and
/// `{stem}.svg` (800 × 480 px).
///
/// Points are joined in the given order (sort by x first for a curve). Each
/// series has its own colour (Tableau 10), marker shape (six shapes, on every
/// point of a short series and on about 15 points of a long one) and dash
/// pattern (every second series dashed), so series stay apart in print and
/// for colour-blind readers. The legend goes to the corner or side of the
/// plotting area where it covers the fewest drawn points.
///
/// Axes follow `plot.x_scale` and `plot.y_scale` ([`Scale`]). A linear axis
/// spans the data (error bars included) plus 5% (the y axis starts at 0 when
/// the data are non-negative and close to it), with ticks at round numbers;
/// an x axis whose values are all whole numbers (epochs, K) gets whole-number
/// ticks only. A logarithmic axis puts its ticks at powers of its base.
///
/// Errors, before any file is created, when there are no series, a series
/// has no points, a coordinate or error bar is NaN or infinite, an error bar
/// is negative, or a value on a logarithmic axis is not positive.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use varattn_lab::plot::{self, LinePlot, Scale, Series, Spread};
/// // validation PPL per epoch of two seeds: one line, mean ± std over the seeds
/// let seeds = vec![vec![(1.0, 120.0), (2.0, 80.0)], vec![(1.0, 126.0), (2.0, 77.0)]];
/// let soft = Series::over_seeds("soft", &seeds, Spread::Std);
/// plot::line_plot("figs/valid".as_ref(), &LinePlot::new("Validation PPL", "epoch", "PPL"), &[soft])?;
/// // a K-sample bound against K on a log2 axis, with standard errors
/// let bound = Series::with_errors("E[L_K]", [(1.0, -3.2, 0.05), (4.0, -3.0, 0.03), (16.0, -2.9, 0.02)]);
/// let spec = LinePlot::new("Bound against K", "K", "nats").x_scale(Scale::Log2);
/// plot::line_plot("figs/bound".as_ref(), &spec, &[bound])?;
/// # Ok(()) }
/// ```
pub fn line_plot(path_stem: &Path, plot: &LinePlot, series: &[Series]) -> Result<()> {
    let fig = LineChart::new(*plot, series)?;
    render(path_stem, &fig)
}

/// [`line_plot`] with linear axes and no error bars: one line per
/// `(name, points)`.
pub fn line_chart(
    path_stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let series: Vec<Series> = series.iter().map(Series::from).collect();
    line_plot(path_stem, &LinePlot::new(title, x_label, y_label), &series)
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
    /// The two panel headings and the height of each one's chart caption.
    heads: [String; 2],
    caption_h: [i32; 2],
    /// Top edge of the images: under the taller of the two chart captions.
    top: i32,
    /// The image upscaled by pixel repetition, RGB rows (drawn in both panels and both files).
    big: Vec<u8>,
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
        Self {
            rgb,
            w,
            h,
            scale,
            grid,
            weights,
            max_w,
            caption_lines,
            heads: ["image".to_string(), format!("attention (max weight {max_w:.3})")],
            caption_h: [0; 2],
            top: 0,
            big: vec![],
        }
        .laid_out()
    }

    fn img_size(&self) -> (i32, i32) {
        ((self.w * self.scale) as i32, (self.h * self.scale) as i32)
    }

    fn line_h() -> i32 {
        IMG_PX as i32 + 6
    }
}

impl ImageAttention<'_> {
    /// Sets the caption heights, the images' top edge and the upscaled image.
    fn laid_out(mut self) -> Result<Self> {
        for (h, head) in self.caption_h.iter_mut().zip(&self.heads) {
            *h = caption_height(head, IMG_PX - 2.0)?;
        }
        self.top = IMG_PAD + self.caption_h.iter().copied().max().unwrap_or(0);
        self.big = self.upscaled();
        Ok(self)
    }

    /// The image upscaled by pixel repetition (`scale` × `scale` per pixel), RGB rows.
    fn upscaled(&self) -> Vec<u8> {
        let (iw, ih) = self.img_size();
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
        big
    }
}

impl Figure for ImageAttention<'_> {
    fn size(&self) -> (u32, u32) {
        let (iw, ih) = self.img_size();
        let top = self.top;
        let w = IMG_PAD * 2 + 2 * iw + IMG_GAP;
        let h = top + ih + 12 + Self::line_h() * self.caption_lines.len() as i32 + IMG_PAD;
        (w as u32, h as u32)
    }

    /// Each panel is a chart over the cell grid (columns left to right, rows top down) whose
    /// plotting area is the upscaled image; the right one dims every cell by (1 - w/max) and
    /// tints it by w/max (the SVG embeds the image as a PNG).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (iw, ih) = self.img_size();
        let top = self.top;
        let (rows, cols) = self.grid;
        let (nr, nc) = (rows as f64, cols as f64);
        for (panel, (head, &caption_h)) in self.heads.iter().zip(&self.caption_h).enumerate() {
            let left = IMG_PAD + panel as i32 * (iw + IMG_GAP);
            let area = root.clone().shrink((left, top - caption_h), (iw as u32, (caption_h + ih) as u32));
            let mut chart = ChartBuilder::on(&area)
                .caption(head, font(IMG_PX - 2.0).color(&MUTED))
                .build_cartesian_2d(0f64..nc, nr..0f64)
                .map_err(perr)?;
            let image = BitMapElement::with_ref((0.0, 0.0), (iw as u32, ih as u32), &self.big)
                .ok_or_else(|| anyhow!("image attention: bitmap buffer has the wrong size"))?;
            chart.draw_series(std::iter::once(image)).map_err(perr)?;
            if panel == 1 {
                let cells = (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c)));
                let rel = |r: usize, c: usize| {
                    if self.max_w > 0.0 {
                        (self.weights[r * cols + c] / self.max_w) as f64
                    } else {
                        0.0
                    }
                };
                chart
                    .draw_series(cells.clone().filter(|&(r, c)| rel(r, c) < 1.0).map(|(r, c)| {
                        grid_cell(r, c, BLACK.mix(0.6 * (1.0 - rel(r, c))).filled())
                    }))
                    .map_err(perr)?;
                chart
                    .draw_series(cells.filter(|&(r, c)| rel(r, c) > 0.0).map(|(r, c)| {
                        grid_cell(r, c, OVERLAY.mix(0.45 * rel(r, c)).filled())
                    }))
                    .map_err(perr)?;
                chart
                    .draw_series(grid_separators(rows, cols).map(|p| PathElement::new(p, WHITE.mix(0.35))))
                    .map_err(perr)?;
            }
            chart
                .draw_series(std::iter::once(Rectangle::new([(0.0, 0.0), (nc, nr)], MUTED)))
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
pub(crate) mod tests {
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
        alignment_heatmaps(&stem, "source token", "target token", &src, &tgt, &panels).unwrap();
        let fig = Heatmap::new("source token", "target token", &src, &tgt, &panels).unwrap();
        assert_outputs(&stem, fig.size());
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        assert!(
            svg.contains("Straße") && svg.contains("Brücke") && svg.contains("posterior q(z_t)")
        );
        assert!(svg_has_text(&svg, "source token") && svg_has_text(&svg, "target token"));
        // Only the two figures, no temporary files.
        assert_eq!(
            listing(&dir.path().join("nested/deeper")),
            ["align.ep3.png", "align.ep3.svg"]
        );
        // Overwriting works.
        alignment_heatmaps(&stem, "source token", "target token", &src, &tgt, &panels).unwrap();
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
        alignment_heatmaps(&stem, "x", "y", &src, &tgt, &panels).unwrap();
        let fig = Heatmap::new("x", "y", &src, &tgt, &panels).unwrap();
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
                "1 rows but 2 row labels (target)",
            ),
            (src.clone(), tgt.clone(), vec![("p", &nan)], "NaN"),
            (
                src.clone(),
                tgt.clone(),
                vec![("p", &big)],
                "outside [0, 1]",
            ),
            (src.clone(), tgt.clone(), vec![], "no panels"),
            (vec![], tgt.clone(), vec![("p", &ok)], "no column labels (source)"),
            (
                toks("a b c"),
                tgt.clone(),
                vec![("p", &ok)],
                "3 column labels (source)",
            ),
        ];
        for (s, t, p, want) in cases {
            let err = alignment_heatmaps(&stem, "source", "target", &s, &t, &p)
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
        let owned: Vec<Series> = series.iter().map(Series::from).collect();
        let fig = LineChart::new(LinePlot::new("Validation PPL", "step", "PPL"), &owned).unwrap();
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
        let top = fig.top;
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

    /// x of the SVG `<text>` element whose content is exactly `content`.
    fn svg_text_x(svg: &str, content: &str) -> Option<f64> {
        let end = svg.find(&format!(">\n{content}\n</text>"))?;
        let start = svg[..end].rfind("<text")?;
        let tag = &svg[start..end];
        let x = tag.find(" x=\"")? + 4;
        tag[x..].split('"').next()?.parse().ok()
    }

    /// Whether the SVG has a `<text>` element whose content is exactly
    /// `content` (plotters writes it on a line of its own).
    pub(crate) fn svg_has_text(svg: &str, content: &str) -> bool {
        svg.contains(&format!(">\n{content}\n</text>"))
    }

    #[test]
    fn heatmap_axis_names_are_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("draws");
        let cols = toks("key1 key2 key3");
        let rows = toks("d1 d2");
        let m = vec![vec![0.2f32, 0.3, 0.5], vec![1.0, 0.0, 0.0]];
        let panels: [(&str, &[Vec<f32>]); 1] = [("k = 10", &m)];
        // A y name longer than the two-row grid is tall still fits in the figure.
        let long_y = "Monte Carlo draw of the attention weights";
        alignment_heatmaps(&stem, "image region", long_y, &cols, &rows, &panels).unwrap();
        let fig = Heatmap::new("image region", long_y, &cols, &rows, &panels).unwrap();
        assert_outputs(&stem, fig.size());
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        assert!(svg_has_text(&svg, "image region") && svg_has_text(&svg, long_y));
        assert!(!svg_has_text(&svg, "source") && !svg_has_text(&svg, "target"));
        let half = slack(text_width(long_y, HM_AXIS_PX).unwrap()) / 2;
        // plotters centres the y name on the grid
        let (_, gy) = fig.layout.grid_origin[0];
        let middle = gy + fig.layout.cell * rows.len() as i32 / 2;
        assert!(middle - half >= 0 && middle + half <= fig.layout.height as i32);
    }

    #[test]
    fn epoch_axes_get_whole_number_ticks_only() {
        assert_eq!(linear_ticks(0.9, 3.1, true), [1.0, 2.0, 3.0]);
        assert!(linear_ticks(0.9, 3.1, false).contains(&1.5));
        for t in linear_ticks(-1.0, 41.0, true) {
            assert_eq!(t, t.round());
        }
        assert_eq!(linear_ticks(4.5, 5.5, true), [5.0]);
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("valid");
        let series = vec![("soft".to_string(), vec![(1.0, 157.0), (2.0, 83.0), (3.0, 61.0)])];
        line_chart(&stem, "Validation perplexity per epoch", "epoch", "PPL", &series).unwrap();
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        for t in ["1", "2", "3"] {
            assert!(svg_has_text(&svg, t), "no tick {t}");
        }
        for t in ["1.5", "2.5", "0.5"] {
            assert!(!svg_has_text(&svg, t), "fractional epoch tick {t}");
        }
        // Fractional x values keep fractional ticks.
        let half = [("a".to_string(), vec![(0.5, 1.0), (1.0, 2.0), (2.5, 3.0)])];
        let owned: Vec<Series> = half.iter().map(Series::from).collect();
        let fig = LineChart::new(LinePlot::new("t", "x", "y"), &owned).unwrap();
        assert!(fig.x.ticks.iter().any(|t| *t != t.round()));
    }

    #[test]
    fn log_axes_tick_at_powers() {
        let is_power = |t: f64, b: f64| (t.log(b) - t.log(b).round()).abs() < 1e-9;
        let ax = Axis::new(Scale::Log10, 1.0, 4000.0, true, true);
        assert_eq!(ax.ticks, [1.0, 10.0, 100.0, 1000.0]);
        let ax = Axis::new(Scale::Log2, 1.0, 32.0, true, true);
        assert_eq!(ax.ticks, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        assert!(ax.range.0 < 1.0 && ax.range.1 > 32.0);
        // Many decades: every n-th power, still powers.
        let ax = Axis::new(Scale::Log10, 1e-12, 1e12, false, false);
        assert!(ax.ticks.len() <= 10 && ax.ticks.iter().all(|&t| is_power(t, 10.0)));
        // Less than two decades: 1, 2, 5 times powers of 10.
        assert_eq!(log_ticks(0.15, 1.8, 10.0), [0.2, 0.5, 1.0]);

        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("logx");
        let n: Vec<f64> = vec![10.0, 50.0, 200.0, 1000.0, 4000.0];
        let series = [Series::new("REINFORCE", n.iter().map(|&n| (n, 1.0 / n.sqrt())))];
        let spec = LinePlot::new("error against n", "number of estimates n", "error").x_scale(Scale::Log10);
        line_plot(&stem, &spec, &series).unwrap();
        let fig = LineChart::new(spec, &series).unwrap();
        assert_outputs(&stem, fig.size());
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        for t in ["10", "100", "1000"] {
            assert!(svg_has_text(&svg, t), "no tick {t}");
        }
        assert!(fig.x.ticks.iter().all(|&t| is_power(t, 10.0)), "{:?}", fig.x.ticks);
        assert!(svg_has_text(&svg, "number of estimates n") && svg_has_text(&svg, "error"));
        // The points are spread evenly in log n: 10 → 100 is as wide as 100 → 1000.
        let x = |v: f64| (v.log10() - fig.x.range.0.log10()) / (fig.x.range.1.log10() - fig.x.range.0.log10());
        assert!(((x(100.0) - x(10.0)) - (x(1000.0) - x(100.0))).abs() < 1e-12);

        // Both axes logarithmic, y with error bars reaching below 0.
        let both = [Series::with_errors("bound", [(1.0, 0.5, 0.6), (4.0, 0.2, 0.1), (16.0, 0.05, 0.01)])];
        let spec = LinePlot::new("t", "K", "gap").x_scale(Scale::Log2).y_scale(Scale::Log10);
        line_plot(&dir.path().join("loglog"), &spec, &both).unwrap();

        // Non-positive values on a log axis are refused before any file is written.
        let bad = [Series::new("a", [(0.0, 1.0), (1.0, 2.0)])];
        let err = line_plot(&dir.path().join("sub/bad"), &spec, &bad).unwrap_err().to_string();
        assert!(err.contains("x = 0 on a logarithmic axis"), "{err}");
        assert!(!dir.path().join("sub").exists());
    }

    #[test]
    fn series_over_seeds_average_with_spread() {
        let runs = vec![vec![(2.0, 20.0), (1.0, 10.0)], vec![(1.0, 14.0), (2.0, 22.0), (3.0, 30.0)]];
        let sd = Series::over_seeds("soft", &runs, Spread::Std);
        let xs: Vec<f64> = sd.points.iter().map(|p| p.x).collect();
        assert_eq!(xs, [1.0, 2.0, 3.0]);
        assert_eq!(sd.points[0].y, 12.0);
        assert!((sd.points[0].err.unwrap() - 8f64.sqrt()).abs() < 1e-12);
        assert!((sd.points[1].err.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(sd.points[2].err, None, "one seed has no spread");
        let se = Series::over_seeds("soft", &runs, Spread::StdErr);
        assert!((se.points[0].err.unwrap() - 2.0).abs() < 1e-12);
        let one = Series::over_seeds("soft", &runs[..1], Spread::Std);
        assert!(one.points.iter().all(|p| p.err.is_none()));
    }

    #[test]
    fn error_bars_are_drawn_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![vec![(1.0, 120.0), (2.0, 80.0), (3.0, 60.0)], vec![(1.0, 130.0), (2.0, 76.0), (3.0, 66.0)]];
        let spec = LinePlot::new("Validation perplexity per epoch", "epoch", "PPL");
        let c = series_color(0);
        let colour = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        let lines_in = |svg: &str| {
            svg.split("<line").skip(1).filter(|l| l[..l.find('>').unwrap()].to_uppercase().contains(&colour)).count()
        };
        let with = [Series::over_seeds("soft", &runs, Spread::Std)];
        line_plot(&dir.path().join("with"), &spec, &with).unwrap();
        let without = [Series::over_seeds("soft", &runs[..1], Spread::Std)];
        line_plot(&dir.path().join("without"), &spec, &without).unwrap();
        let svg_with = fs::read_to_string(dir.path().join("with.svg")).unwrap();
        let svg_without = fs::read_to_string(dir.path().join("without.svg")).unwrap();
        // Each ErrorBar is a vertical stroke and two caps.
        assert_eq!(lines_in(&svg_with) - lines_in(&svg_without), 3 * 3);
        // The y range holds the bars.
        let fig = LineChart::new(spec, &with).unwrap();
        let top = fig.series[0].points.iter().map(|p| p.y + p.err.unwrap()).fold(f64::MIN, f64::max);
        assert!(fig.y.range.1 >= top);

        let neg = [Series::with_errors("a", [(1.0, 2.0, -0.5)])];
        let err = line_plot(&dir.path().join("neg"), &spec, &neg).unwrap_err().to_string();
        assert!(err.contains("error bar ±-0.5"), "{err}");
        let nan = [Series::with_errors("a", [(1.0, 2.0, f64::NAN)])];
        assert!(line_plot(&dir.path().join("nan"), &spec, &nan).is_err());
    }

    #[test]
    fn series_look_different_and_the_legend_stays_inside() {
        let looks: Vec<_> = (0..30).map(|i| (series_color(i), marker_shape(i), dashed(i))).collect();
        for (i, a) in looks.iter().enumerate() {
            for b in &looks[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Six different marker outlines.
        for i in 0..MARKERS {
            for j in i + 1..MARKERS {
                assert_ne!(marker_shape(i), marker_shape(j));
            }
        }
        // A rising line covers the lower left and upper right: the legend goes upper left.
        let rising: Vec<(i32, i32)> = (0..=700).map(|x| (x, 400 - x * 400 / 700)).collect();
        let place = pick_legend_place((700, 400), (150, 80), &rising);
        assert!(matches!(place, SeriesLabelPosition::UpperLeft));
        let falling: Vec<(i32, i32)> = (0..=700).map(|x| (x, x * 400 / 700)).collect();
        assert!(matches!(pick_legend_place((700, 400), (150, 80), &falling), SeriesLabelPosition::UpperRight));

        // Nine series with long names, as the report's NMT figure has: every name is drawn
        // whole inside the figure.
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("nine");
        let names: Vec<String> = (0..9).map(|i| format!("row {i}: 20,000 implicit-gradient draws")).collect();
        let series: Vec<Series> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Series::new(n.clone(), (1..=3).map(|e| (e as f64, 200.0 / e as f64 + 5.0 * i as f64))))
            .collect();
        line_plot(&stem, &LinePlot::new("nine", "epoch", "PPL"), &series).unwrap();
        let fig = LineChart::new(LinePlot::new("nine", "epoch", "PPL"), &series).unwrap();
        let svg = fs::read_to_string(with_ext(&stem, "svg")).unwrap();
        for n in &fig.names {
            let x = svg_text_x(&svg, n).unwrap_or_else(|| panic!("legend entry {n:?} missing"));
            let w = text_width(n, LEGEND_PX).unwrap() as f64;
            assert!(x > 0.0 && x + w < CHART_W as f64, "{n:?} at x = {x} is cut off");
        }
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
