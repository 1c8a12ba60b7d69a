//! Peak memory: the largest number of bytes an allocator held from the
//! system at any point of a replay, measured in an untimed pass.
//!
//! What the number means, per allocator (always a difference from a
//! baseline taken just before the pass, after the backend's tables are
//! allocated and after glibc's and mimalloc's free memory was returned
//! with `malloc_trim(0)` and `mi_collect(true)`):
//!
//! * **mcxt**: Σ over the root contexts of `mem_allocated(true)` (every
//!   block of every live context: keeper blocks, growing blocks, dedicated
//!   blocks of large chunks, headers included) plus
//!   `mcxt::cached_bytes()` (deleted contexts and freed blocks kept for
//!   reuse). mcxt's own
//!   accounting, sampled after **every** operation: exact.
//! * **malloc**: glibc's `mallinfo2()` `arena + hblkhd`: the heap obtained
//!   with `brk`/`mmap` (in use or free inside it) plus separately mapped
//!   large blocks. Sampled every 64 operations and after every `A`/`R` of
//!   at least [`LARGE_OP`] bytes.
//! * **mimalloc**: `mi_process_info()`'s `current_commit`: memory mimalloc
//!   has committed (segments and pages, used or cached). Sampled likewise.
//! * **null**: 0.
//!
//! **Isolation.** glibc and mimalloc keep memory they got from the system
//! after it is freed (glibc's heap cannot shrink below a chunk still in
//! use, e.g. one parked in a thread cache; mimalloc v3 keeps its arenas
//! committed), so a pass run in a process that already replayed the trace
//! would reuse that memory and report almost no growth. The `mcxt` tool
//! therefore runs every peak pass in a fresh child process (the hidden
//! command `mcxt __peak-pass`, see [`measure_peak_isolated`]), whose only
//! earlier work is parsing the trace. [`measure_peak`] itself works in the
//! current process: exact for mcxt, an underestimate for malloc and
//! mimalloc unless the process is fresh.
//!
//! Secondary figure, [`PeakResult::peak_bytes_system`]: glibc's
//! `arena + hblkhd` growth during the same pass, sampled every 64
//! operations and after large ones, for every allocator. For mcxt this is
//! what its blocks (which come from glibc `malloc`) cost in glibc's heap,
//! fragmentation included; for malloc it equals the main figure; for
//! mimalloc it is near 0.

use std::path::Path;
use std::process::Command;

use mcxt_trace::Op;
use serde::{Deserialize, Serialize};

use crate::replay::libc_malloc::{glibc_held_bytes, glibc_trim};
use crate::replay::mimalloc::mimalloc_collect;
use crate::replay::{Allocator, Backend, Replay};

/// An `A` or `R` of at least this many bytes is followed by a sample (on
/// top of one every 64 operations): it is where the held memory can jump.
pub const LARGE_OP: u64 = 8192;

/// Default number of points of a [`Series`].
pub const SERIES_POINTS: usize = 1000;

/// Held bytes over the replay, bucketed: point `k` is the largest sample
/// taken during operations `k * ops_per_point .. (k + 1) * ops_per_point`
/// (`None` if no sample fell in that bucket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// Operations per point.
    pub ops_per_point: usize,
    /// One value per bucket.
    pub points: Vec<Option<u64>>,
}

impl Series {
    fn new(n_ops: usize, points: usize) -> Series {
        let ops_per_point = n_ops.div_ceil(points.max(1)).max(1);
        Series {
            ops_per_point,
            points: vec![None; n_ops.div_ceil(ops_per_point)],
        }
    }

    #[inline]
    fn record(&mut self, op_index: usize, v: u64) {
        let p = &mut self.points[op_index / self.ops_per_point];
        *p = Some(p.map_or(v, |old| old.max(v)));
    }
}

/// The outcome of a peak pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakResult {
    /// Largest held bytes seen (see the [module docs](self)).
    pub peak_bytes: u64,
    /// Number of operations replayed when `peak_bytes` was first seen.
    pub peak_op: usize,
    /// Largest growth of glibc's `arena + hblkhd` during the pass.
    pub peak_bytes_system: u64,
    /// Held bytes over time.
    pub series: Series,
    /// Held bytes (above the baseline) after the last operation, before
    /// the final delete.
    pub end_bytes: u64,
}

/// Returns free memory of glibc and mimalloc to the system, so that a
/// measurement starts from a clean state.
pub fn settle() {
    mcxt::release_recycled();
    glibc_trim();
    mimalloc_collect();
}

/// Runs the peak pass over the whole trace on a fresh (or finished)
/// replay, then finishes it. `points` is the resolution of the series.
pub fn measure_peak<B: Backend>(r: &mut Replay<'_, B>, points: usize) -> PeakResult {
    assert_eq!(
        r.position(),
        0,
        "the peak pass starts at the first operation"
    );
    settle();
    let n = r.trace().ops.len();
    let base = r.backend().held_bytes();
    let sys_base = glibc_held_bytes();
    let mut series = Series::new(n, points);
    let (mut peak, mut peak_op, mut peak_sys) = (0u64, 0usize, 0u64);
    let mut last = 0u64;
    r.run_observed(n, |i, op, b| {
        let large = match *op {
            Op::Alloc { size, .. } | Op::Realloc { size, .. } => size >= LARGE_OP,
            _ => false,
        };
        let tick = i & 63 == 63 || large || i + 1 == n;
        if B::EXACT_PEAK || tick {
            let h = b.held_bytes().saturating_sub(base);
            if h > peak {
                peak = h;
                peak_op = i + 1;
            }
            series.record(i, h);
            last = h;
        }
        if tick {
            peak_sys = peak_sys.max(glibc_held_bytes().saturating_sub(sys_base));
        }
    });
    r.finish();
    mcxt::release_recycled();
    PeakResult {
        peak_bytes: peak,
        peak_op,
        peak_bytes_system: peak_sys,
        series,
        end_bytes: last,
    }
}

/// Name of the hidden subcommand running one peak pass in a fresh
/// process: `mcxt __peak-pass TRACE ALLOCATOR POINTS` prints the
/// [`PeakResult`] as JSON.
pub const PEAK_PASS_COMMAND: &str = "__peak-pass";

/// Runs the peak pass of the trace file `trace` with `allocator` in a fresh
/// process of the `mcxt` executable `exe` (see the [module docs](self)).
pub fn measure_peak_isolated(
    exe: &Path,
    trace: &Path,
    allocator: Allocator,
    points: usize,
) -> Result<PeakResult, String> {
    let out = Command::new(exe)
        .arg(PEAK_PASS_COMMAND)
        .arg(trace)
        .arg(allocator.name())
        .arg(points.to_string())
        .output()
        .map_err(|e| format!("cannot run {} for the peak pass: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "peak pass of {} with {allocator} failed ({}): {}",
            trace.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("peak pass of {}: bad output: {e}", trace.display()))
}
