//! `mcxt plot`: an SVG picture of a trace's memory use.
//!
//! * Top: memory held from the system over the replay, one line per
//!   allocator (mcxt, malloc, mimalloc), from their peak passes
//!   ([`crate::peak`]); x is the operation number, y MiB. A vertical line
//!   marks mcxt's peak.
//! * Bottom: the contexts holding memory at mcxt's peak: the [`TOP_CONTEXTS`]
//!   contexts with the largest subtrees, in tree order (indented by depth),
//!   each bar the bytes held by its subtree with the part held by the
//!   context itself darker.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::peak_pass;
use crate::peak::PeakResult;
use crate::replay::mcxt::{ContextInfo, McxtBackend};
use crate::replay::{Allocator, Replay, ValidTrace};
use crate::table::MIB;

/// Bottom of the memory axis, MiB (values below are drawn there).
const YMIN_MIB: f64 = 0.05;

/// How many contexts the bottom chart shows.
pub const TOP_CONTEXTS: usize = 25;

/// What the picture shows.
#[derive(Clone, Debug)]
pub struct PlotData {
    /// The trace's name.
    pub trace: String,
    /// Its number of operations.
    pub ops: usize,
    /// Peak pass of each allocator.
    pub peaks: Vec<(Allocator, PeakResult)>,
    /// Every live context at mcxt's peak, depth-first.
    pub contexts: Vec<ContextInfo>,
    /// mcxt's caches (recycled contexts, freed blocks) at its peak, bytes.
    pub cached_at_peak: u64,
}

impl PlotData {
    /// mcxt's peak pass.
    pub fn mcxt_peak(&self) -> Option<&PeakResult> {
        self.peaks
            .iter()
            .find(|(a, _)| *a == Allocator::Mcxt)
            .map(|(_, p)| p)
    }
}

/// Runs the peak passes of mcxt, malloc and mimalloc (each in a fresh
/// process of `exe` when given, see [`crate::peak`]), then replays mcxt up
/// to its peak and lists the contexts.
pub fn gather(
    trace: &ValidTrace,
    exe: Option<&Path>,
    mut step: impl FnMut(&str),
) -> Result<PlotData, String> {
    let mut peaks = Vec::new();
    for a in Allocator::ALL {
        step(a.name());
        peaks.push((a, peak_pass(trace, a, 600, exe)?));
    }
    step("contexts at the peak");
    let peak_op = peaks[0].1.peak_op;
    mcxt::release_recycled();
    let mut r = Replay::<McxtBackend>::new(trace);
    r.run_to(peak_op);
    let contexts = r.backend().context_tree();
    let cached_at_peak = mcxt::cached_bytes() as u64;
    r.finish();
    mcxt::release_recycled();
    Ok(PlotData {
        trace: trace.name.clone(),
        ops: trace.ops.len(),
        peaks,
        contexts,
        cached_at_peak,
    })
}

fn color(a: Allocator) -> RGBColor {
    match a {
        Allocator::Mcxt => RGBColor(31, 119, 180),
        Allocator::Malloc => RGBColor(214, 39, 40),
        Allocator::Mimalloc => RGBColor(44, 160, 44),
        Allocator::Null => RGBColor(127, 127, 127),
    }
}

fn fmt_ops(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_mib(b: u64) -> String {
    let m = b as f64 / MIB;
    if m >= 10.0 {
        format!("{m:.1} MiB")
    } else if m >= 0.1 {
        format!("{m:.2} MiB")
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}

/// The contexts shown: the [`TOP_CONTEXTS`] largest subtrees (earlier
/// contexts first among equals), in tree order. The set is closed under
/// taking parents: a parent's subtree is larger than any child's, since it
/// holds at least its own keeper block.
pub fn top_contexts(all: &[ContextInfo]) -> Vec<&ContextInfo> {
    let mut idx: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].subtree_bytes > 0)
        .collect();
    idx.sort_by(|&a, &b| {
        all[b]
            .subtree_bytes
            .cmp(&all[a].subtree_bytes)
            .then(a.cmp(&b))
    });
    idx.truncate(TOP_CONTEXTS);
    idx.sort_unstable();
    idx.into_iter().map(|i| &all[i]).collect()
}

/// Writes the SVG picture of `data` to `path`.
pub fn render_svg(data: &PlotData, path: &Path) -> Result<(), String> {
    const W: u32 = 1200;
    const TOP_H: u32 = 520;
    const ROW_H: u32 = 22;
    let shown = top_contexts(&data.contexts);
    let bottom_h = 90 + ROW_H * shown.len().max(1) as u32 + 40;
    let root = SVGBackend::new(path, (W, TOP_H + bottom_h)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(TOP_H);

    // (a) memory over time
    // Log scale: allocators differ by an order of magnitude, and the small
    // ones are the interesting ones.
    let ymax = (data
        .peaks
        .iter()
        .map(|(_, p)| p.peak_bytes)
        .max()
        .unwrap_or(0) as f64
        / MIB)
        .max(1.0);
    let ymin = YMIN_MIB;
    let xmax = data.ops.max(1) as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "{}: memory held from the system during the replay",
                data.trace
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .margin_right(40)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (ymin..ymax * 1.5).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("operation")
        .y_desc("MiB held (log scale)")
        .x_label_formatter(&|x| fmt_ops(*x))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y}")
            }
        })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    for (a, p) in &data.peaks {
        let c = color(*a);
        let step = p.series.ops_per_point as f64;
        let pts: Vec<(f64, f64)> = std::iter::once((0.0, ymin))
            .chain(p.series.points.iter().enumerate().filter_map(|(k, v)| {
                v.map(|v| {
                    let x = ((k + 1) as f64 * step).min(xmax);
                    (x, (v as f64 / MIB).max(ymin))
                })
            }))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{a}: peak {}", fmt_mib(p.peak_bytes)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
    }
    if let Some(p) = data.mcxt_peak() {
        let x = p.peak_op as f64;
        chart
            .draw_series(LineSeries::new(
                vec![(x, ymin), (x, ymax * 1.5)],
                color(Allocator::Mcxt).mix(0.45).stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("mcxt peak at op {}", p.peak_op))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color(Allocator::Mcxt).mix(0.45))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(|e| err(&e))?;

    // (b) contexts at mcxt's peak
    let title = TextStyle::from(("sans-serif", 20).into_font()).color(&BLACK);
    let label = TextStyle::from(("sans-serif", 14).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let small = TextStyle::from(("sans-serif", 13).into_font())
        .color(&RGBColor(60, 60, 60))
        .pos(Pos::new(HPos::Left, VPos::Center));
    let (peak_op, peak_bytes) = data
        .mcxt_peak()
        .map_or((0, 0), |p| (p.peak_op, p.peak_bytes));
    let in_contexts: u64 = data
        .contexts
        .iter()
        .filter(|c| c.depth == 0)
        .map(|c| c.subtree_bytes)
        .sum();
    bottom
        .draw(&Text::new(
            format!(
                "Contexts holding the memory at mcxt's peak (after op {peak_op}: {} = {} in {} contexts + {} cached)",
                fmt_mib(peak_bytes),
                fmt_mib(in_contexts),
                data.contexts.len(),
                fmt_mib(data.cached_at_peak)
            ),
            (20, 12),
            title,
        ))
        .map_err(|e| err(&e))?;
    let own_c = RGBColor(31, 119, 180);
    let sub_c = RGBColor(158, 202, 225);
    // legend
    let ly = 52;
    bottom
        .draw(&Rectangle::new(
            [(20, ly - 7), (34, ly + 7)],
            own_c.filled(),
        ))
        .map_err(|e| err(&e))?;
    bottom
        .draw(&Text::new(
            "held by the context itself",
            (40, ly),
            small.clone(),
        ))
        .map_err(|e| err(&e))?;
    bottom
        .draw(&Rectangle::new(
            [(240, ly - 7), (254, ly + 7)],
            sub_c.filled(),
        ))
        .map_err(|e| err(&e))?;
    bottom
        .draw(&Text::new(
            format!(
                "held by its descendants (bars: subtree; top {} contexts by subtree size, in tree order)",
                shown.len()
            ),
            (260, ly),
            small.clone(),
        ))
        .map_err(|e| err(&e))?;
    let (x0, x1) = (400i32, 1000i32);
    let max = shown
        .iter()
        .map(|c| c.subtree_bytes)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for (i, c) in shown.iter().enumerate() {
        let y = 90 + (i as u32 * ROW_H) as i32;
        let ym = y + ROW_H as i32 / 2;
        let mut name: String = c.name.chars().take(44).collect();
        if c.name.chars().count() > 44 {
            name.push('…');
        }
        bottom
            .draw(&Text::new(
                name,
                (20 + 14 * c.depth as i32, ym),
                label.clone(),
            ))
            .map_err(|e| err(&e))?;
        let w = |b: u64| ((b as f64 / max) * (x1 - x0) as f64).round() as i32;
        let (ws, wo) = (w(c.subtree_bytes).max(1), w(c.own_bytes));
        bottom
            .draw(&Rectangle::new(
                [(x0, y + 3), (x0 + ws, y + ROW_H as i32 - 3)],
                sub_c.filled(),
            ))
            .map_err(|e| err(&e))?;
        if wo > 0 {
            bottom
                .draw(&Rectangle::new(
                    [(x0, y + 3), (x0 + wo, y + ROW_H as i32 - 3)],
                    own_c.filled(),
                ))
                .map_err(|e| err(&e))?;
        }
        let value = if c.own_bytes == c.subtree_bytes {
            fmt_mib(c.subtree_bytes)
        } else {
            format!(
                "{} (own {})",
                fmt_mib(c.subtree_bytes),
                fmt_mib(c.own_bytes)
            )
        };
        bottom
            .draw(&Text::new(value, (x0 + ws + 8, ym), small.clone()))
            .map_err(|e| err(&e))?;
    }
    let rest = data.contexts.len().saturating_sub(shown.len());
    if rest > 0 {
        let y = 90 + (shown.len() as u32 * ROW_H) as i32 + 14;
        bottom
            .draw(&Text::new(
                format!("… and {rest} smaller contexts"),
                (20, y),
                small.clone(),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
