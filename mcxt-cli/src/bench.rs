//! Measuring one trace against one allocator: timed replays, the peak
//! pass and, on request, the checked replay.
//!
//! For each (trace, allocator):
//!
//! 1. the backend's tables are prepared (not timed);
//! 2. `repeat` timed replays of all operations, each starting from a clean
//!    allocator state: after each one every context still alive is deleted
//!    and every chunk still live freed (not timed), and mcxt's caches
//!    (recycled contexts, freed blocks) are emptied
//!    (`mcxt::release_recycled()`) before the next;
//! 3. one untimed peak pass ([`crate::peak`]);
//! 4. with `check`, one untimed checked replay ([`crate::check`]), on a
//!    fresh backend; its time is not part of any reported number.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::check::CheckReport;
use crate::peak::{measure_peak, measure_peak_isolated, PeakResult, SERIES_POINTS};
use crate::replay::checked::Checked;
use crate::replay::libc_malloc::MallocBackend;
use crate::replay::mcxt::McxtBackend;
use crate::replay::mimalloc::MimallocBackend;
use crate::replay::null::NullBackend;
use crate::replay::{Allocator, Backend, Replay, ValidTrace};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Number of timed replays (at least 1).
    pub repeat: usize,
    /// Also run a checked replay.
    pub check: bool,
    /// Resolution of the memory-over-time series.
    pub series_points: usize,
    /// The `mcxt` executable to run each peak pass in a fresh process
    /// ([`crate::peak::measure_peak_isolated`]); `None`, or a trace not
    /// read from a file: in this process.
    pub peak_exe: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            repeat: 3,
            check: false,
            series_points: SERIES_POINTS,
            peak_exe: None,
        }
    }
}

/// The measurements of one (trace, allocator).
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The trace's file name.
    pub trace: String,
    /// The allocator.
    pub allocator: Allocator,
    /// Number of operations replayed.
    pub ops: usize,
    /// Wall-clock time of each timed replay, in nanoseconds, in order.
    pub times_ns: Vec<u64>,
    /// The peak pass.
    pub peak: PeakResult,
    /// The checked replay, when asked for.
    pub check: Option<CheckReport>,
    /// Context kinds of the trace that this allocator replayed as another
    /// kind (trace names: `generation`, `bump`, `slab`).
    pub substituted_kinds: Vec<&'static str>,
}

impl Measurement {
    /// Fastest replay, in nanoseconds.
    pub fn min_ns(&self) -> u64 {
        self.times_ns.iter().copied().min().unwrap_or(0)
    }

    /// Median replay time, in nanoseconds (mean of the two middle ones
    /// for an even count).
    pub fn median_ns(&self) -> u64 {
        let mut t = self.times_ns.clone();
        t.sort_unstable();
        match t.len() {
            0 => 0,
            n if n % 2 == 1 => t[n / 2],
            n => (t[n / 2 - 1] + t[n / 2]) / 2,
        }
    }

    /// Nanoseconds per operation of the fastest replay.
    pub fn ns_per_op(&self) -> f64 {
        per_op(self.min_ns(), self.ops)
    }

    /// Nanoseconds per operation of the median replay.
    pub fn ns_per_op_median(&self) -> f64 {
        per_op(self.median_ns(), self.ops)
    }
}

fn per_op(ns: u64, ops: usize) -> f64 {
    if ops == 0 {
        0.0
    } else {
        ns as f64 / ops as f64
    }
}

/// Measures `trace` with `allocator`; `step` is told each phase as it
/// starts (for progress display): `repeat` replays, the peak pass, and the
/// check if asked for. Fails only if an isolated peak pass fails.
pub fn measure(
    trace: &ValidTrace,
    allocator: Allocator,
    opts: &BenchOptions,
    step: &mut dyn FnMut(&str),
) -> Result<Measurement, String> {
    match allocator {
        Allocator::Mcxt => measure_with::<McxtBackend>(trace, allocator, opts, step),
        Allocator::Malloc => measure_with::<MallocBackend>(trace, allocator, opts, step),
        Allocator::Mimalloc => measure_with::<MimallocBackend>(trace, allocator, opts, step),
        Allocator::Null => measure_with::<NullBackend>(trace, allocator, opts, step),
    }
}

fn measure_with<B: Backend>(
    trace: &ValidTrace,
    allocator: Allocator,
    opts: &BenchOptions,
    step: &mut dyn FnMut(&str),
) -> Result<Measurement, String> {
    let mut r = Replay::<B>::new(trace);
    let substituted_kinds = r.backend().substituted_kinds();
    let repeat = opts.repeat.max(1);
    let mut times_ns = Vec::with_capacity(repeat);
    for i in 0..repeat {
        step(&format!("replay {}/{repeat}", i + 1));
        mcxt::release_recycled();
        let t0 = Instant::now();
        r.run_all();
        let dt = t0.elapsed();
        r.finish();
        times_ns.push(dt.as_nanos() as u64);
    }
    mcxt::release_recycled();
    step("peak");
    let peak = match (&opts.peak_exe, trace.path()) {
        (Some(exe), Some(path)) => {
            drop(r);
            measure_peak_isolated(exe, path, allocator, opts.series_points)?
        }
        _ => {
            let p = measure_peak(&mut r, opts.series_points);
            drop(r);
            p
        }
    };
    let check = opts.check.then(|| {
        step("check");
        check_with::<B>(trace)
    });
    Ok(Measurement {
        trace: trace.name.clone(),
        allocator,
        ops: trace.ops.len(),
        times_ns,
        peak,
        check,
        substituted_kinds,
    })
}

/// Only the peak pass of `trace` with `allocator`, in this process (see
/// [`crate::peak`] on isolation).
pub fn peak_only(trace: &ValidTrace, allocator: Allocator, points: usize) -> PeakResult {
    fn with<B: Backend>(trace: &ValidTrace, points: usize) -> PeakResult {
        let mut r = Replay::<B>::new(trace);
        measure_peak(&mut r, points)
    }
    match allocator {
        Allocator::Mcxt => with::<McxtBackend>(trace, points),
        Allocator::Malloc => with::<MallocBackend>(trace, points),
        Allocator::Mimalloc => with::<MimallocBackend>(trace, points),
        Allocator::Null => with::<NullBackend>(trace, points),
    }
}

/// Replays `trace` with `allocator` in check mode (untimed) and returns
/// the report. For `null`, which has no memory, only the bookkeeping
/// runs and no content is verified.
pub fn check(trace: &ValidTrace, allocator: Allocator) -> CheckReport {
    match allocator {
        Allocator::Mcxt => check_with::<McxtBackend>(trace),
        Allocator::Malloc => check_with::<MallocBackend>(trace),
        Allocator::Mimalloc => check_with::<MimallocBackend>(trace),
        Allocator::Null => check_with::<NullBackend>(trace),
    }
}

fn check_with<B: Backend>(trace: &ValidTrace) -> CheckReport {
    let mut r = Replay::<Checked<B>>::new(trace);
    r.run_all();
    r.finish();
    let report = r.backend().report().clone();
    drop(r);
    mcxt::release_recycled();
    report
}

/// The peak pass of `trace` with `allocator`: in a fresh process of
/// `exe` when given and the trace was read from a file, else in this one.
pub fn peak_pass(
    trace: &ValidTrace,
    allocator: Allocator,
    points: usize,
    exe: Option<&Path>,
) -> Result<PeakResult, String> {
    match (exe, trace.path()) {
        (Some(exe), Some(path)) => measure_peak_isolated(exe, path, allocator, points),
        _ => Ok(peak_only(trace, allocator, points)),
    }
}
