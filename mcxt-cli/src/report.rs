//! Result rows: one per (trace, allocator), with the ratios to malloc;
//! serialised as one JSON object per line by `replay --json`.

use serde::Serialize;

use crate::bench::Measurement;
use crate::replay::Allocator;

/// One (trace, allocator) result, as printed by `mcxt replay --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// The trace's file name.
    pub trace: String,
    /// `mcxt`, `malloc`, `mimalloc` or `null`.
    pub allocator: String,
    /// Number of operations of the trace.
    pub ops: usize,
    /// Number of timed replays.
    pub repeat: usize,
    /// Fastest replay, nanoseconds.
    pub replay_ns_min: u64,
    /// Median replay, nanoseconds.
    pub replay_ns_median: u64,
    /// `replay_ns_min / ops`.
    pub ns_per_op: f64,
    /// `replay_ns_median / ops`.
    pub ns_per_op_median: f64,
    /// malloc's `ns_per_op` ÷ this `ns_per_op` ("x times faster than
    /// malloc"); `null` when malloc was not measured.
    pub ratio_to_malloc: Option<f64>,
    /// Peak bytes held from the system (see `crate::peak`).
    pub peak_bytes: u64,
    /// Number of operations replayed when the peak was reached.
    pub peak_op: usize,
    /// This `peak_bytes` ÷ malloc's `peak_bytes` (below 1: less memory
    /// than malloc); `null` when malloc was not measured.
    pub peak_ratio_to_malloc: Option<f64>,
    /// Peak growth of glibc's heap (`mallinfo2` `arena + hblkhd`) during
    /// the peak pass: for mcxt, what its blocks cost in glibc's heap.
    pub peak_bytes_system: u64,
    /// Errors found by `--check`; `null` without `--check`.
    pub check_errors: Option<u64>,
    /// Context kinds replayed as another kind (empty once mcxt has them
    /// all, and always for allocators without contexts).
    pub substituted_kinds: Vec<String>,
}

/// Rows for `ms`, in the same order; ratios are to the malloc
/// measurement of the same trace, if any.
pub fn rows(ms: &[Measurement]) -> Vec<Row> {
    ms.iter()
        .map(|m| {
            let malloc = ms
                .iter()
                .find(|o| o.trace == m.trace && o.allocator == Allocator::Malloc);
            let ratio_to_malloc = malloc.and_then(|o| {
                let this = m.ns_per_op();
                (this > 0.0).then(|| o.ns_per_op() / this)
            });
            let peak_ratio_to_malloc = malloc.and_then(|o| {
                (o.peak.peak_bytes > 0).then(|| m.peak.peak_bytes as f64 / o.peak.peak_bytes as f64)
            });
            Row {
                trace: m.trace.clone(),
                allocator: m.allocator.name().to_owned(),
                ops: m.ops,
                repeat: m.times_ns.len(),
                replay_ns_min: m.min_ns(),
                replay_ns_median: m.median_ns(),
                ns_per_op: m.ns_per_op(),
                ns_per_op_median: m.ns_per_op_median(),
                ratio_to_malloc,
                peak_bytes: m.peak.peak_bytes,
                peak_op: m.peak.peak_op,
                peak_ratio_to_malloc,
                peak_bytes_system: m.peak.peak_bytes_system,
                check_errors: m.check.as_ref().map(|c| c.errors),
                substituted_kinds: m.substituted_kinds.iter().map(|s| s.to_string()).collect(),
            }
        })
        .collect()
}
