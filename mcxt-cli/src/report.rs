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
    /// This `ns_per_op` minus the `null` allocator's `ns_per_op` for the
    /// same trace in the same run: the allocator's own cost, net of the
    /// replay loop (0 for `null` itself); `null` when the `null` allocator
    /// was not measured.
    pub net_ns_per_op: Option<f64>,
    /// malloc's `net_ns_per_op` ÷ this `net_ns_per_op`; `null` when either
    /// is missing or this one is not positive.
    pub net_ratio_to_malloc: Option<f64>,
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
/// measurement of the same trace, if any, and net figures subtract the
/// null measurement of the same trace, if any.
pub fn rows(ms: &[Measurement]) -> Vec<Row> {
    let find = |trace: &str, a: Allocator| {
        ms.iter()
            .find(move |o| o.trace == trace && o.allocator == a)
    };
    ms.iter()
        .map(|m| {
            let malloc = find(&m.trace, Allocator::Malloc);
            let null = find(&m.trace, Allocator::Null);
            let ratio_to_malloc = malloc.and_then(|o| {
                let this = m.ns_per_op();
                (this > 0.0).then(|| o.ns_per_op() / this)
            });
            let net = |o: &Measurement| null.map(|n| o.ns_per_op() - n.ns_per_op());
            let net_ns_per_op = net(m);
            let net_ratio_to_malloc = match (malloc.and_then(net), net_ns_per_op) {
                (Some(malloc_net), Some(this)) if this > 0.0 => Some(malloc_net / this),
                _ => None,
            };
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
                net_ns_per_op,
                net_ratio_to_malloc,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peak::{PeakResult, Series};

    fn m(trace: &str, allocator: Allocator, min_ns: u64) -> Measurement {
        Measurement {
            trace: trace.into(),
            allocator,
            ops: 100,
            times_ns: vec![min_ns, min_ns + 50],
            peak: PeakResult {
                peak_bytes: 1000,
                peak_op: 1,
                peak_bytes_system: 0,
                series: Series {
                    ops_per_point: 1,
                    points: Vec::new(),
                },
                end_bytes: 0,
            },
            check: None,
            substituted_kinds: Vec::new(),
        }
    }

    #[test]
    fn net_of_the_null_replay() {
        let ms = [
            m("a", Allocator::Mcxt, 300),
            m("a", Allocator::Malloc, 900),
            m("a", Allocator::Null, 100),
            m("b", Allocator::Mcxt, 300),
            m("b", Allocator::Malloc, 900),
        ];
        let rs = rows(&ms);
        // ns/op 3, 9 and 1: net 2, 8 and 0
        assert_eq!(rs[0].net_ns_per_op, Some(2.0));
        assert_eq!(rs[0].net_ratio_to_malloc, Some(4.0));
        assert_eq!(rs[0].ratio_to_malloc, Some(3.0));
        assert_eq!(rs[1].net_ns_per_op, Some(8.0));
        assert_eq!(rs[1].net_ratio_to_malloc, Some(1.0));
        assert_eq!(rs[2].net_ns_per_op, Some(0.0));
        assert_eq!(rs[2].net_ratio_to_malloc, None);
        // no null replay of trace b
        assert_eq!(rs[3].net_ns_per_op, None);
        assert_eq!(rs[3].net_ratio_to_malloc, None);
        assert_eq!(rs[4].ratio_to_malloc, Some(1.0));

        let text = crate::table::format_table(&rs);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("vs malloc  net ns/op  net vs malloc  peak MiB"));
        assert!(
            lines[2].contains(" 3.00x        2.0          4.00x "),
            "{text}"
        );
        assert!(lines[4].contains("        0.0              - "), "{text}");
        assert!(lines[5].contains("          -              - "), "{text}");
        assert!(text.contains("\nnet ns/op: "), "{text}");

        let without_null = crate::table::format_table(&rs[3..]);
        assert!(!without_null.contains("net"), "{without_null}");
    }
}
