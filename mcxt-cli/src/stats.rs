//! `mcxt stats`: the context trees at a point of the replay, in
//! PostgreSQL's `MemoryContextStats` format.

use std::fmt::Write;

use crate::peak::measure_peak;
use crate::replay::mcxt::McxtBackend;
use crate::replay::{Replay, ValidTrace};

/// Where to stop the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// After this many operations (0: before the first).
    Op(usize),
    /// After the operation where mcxt's held memory peaks (found by a
    /// first, full pass).
    Peak,
}

impl std::str::FromStr for At {
    type Err = String;
    fn from_str(s: &str) -> Result<At, String> {
        if s == "peak" {
            return Ok(At::Peak);
        }
        s.parse::<usize>()
            .map(At::Op)
            .map_err(|_| format!("expected an operation count or `peak`, got `{s}`"))
    }
}

/// The state at a point of the replay.
#[derive(Clone, Debug)]
pub struct StatsAt {
    /// Operations replayed.
    pub ops_done: usize,
    /// Operations in the trace.
    pub ops_total: usize,
    /// Bytes held by the live contexts (Σ over roots of
    /// `mem_allocated(true)`).
    pub context_bytes: u64,
    /// Bytes in this thread's caches: recycled contexts and freed blocks
    /// ([`mcxt::cached_bytes`]).
    pub cached_bytes: u64,
    /// Every root's tree in `MemoryContextStats` format.
    pub text: String,
}

/// Replays `trace` with mcxt up to `at` and returns every root's tree
/// (`MemoryContext::write_stats(out, 100, 100)`, roots in creation order).
pub fn stats_at(trace: &ValidTrace, at: At) -> Result<StatsAt, String> {
    let total = trace.ops.len();
    let n = match at {
        At::Op(n) if n > total => {
            return Err(format!(
                "--at {n}: {} has only {total} operations",
                trace.name
            ))
        }
        At::Op(n) => n,
        At::Peak => {
            let mut r = Replay::<McxtBackend>::new(trace);
            measure_peak(&mut r, 1).peak_op
        }
    };
    mcxt::release_recycled();
    let mut r = Replay::<McxtBackend>::new(trace);
    r.run_to(n);
    let mut text = String::new();
    r.backend()
        .write_stats(&mut text)
        .map_err(|_| "formatting error".to_owned())?;
    let out = StatsAt {
        ops_done: n,
        ops_total: total,
        context_bytes: r.backend().held_by_contexts(),
        cached_bytes: mcxt::cached_bytes() as u64,
        text,
    };
    r.finish();
    mcxt::release_recycled();
    Ok(out)
}

impl StatsAt {
    /// The report printed by `mcxt stats`: a header line, the trees, and
    /// the totals.
    pub fn render(&self, trace_name: &str, at: At) -> String {
        let mut s = String::new();
        let what = match at {
            At::Peak => " (mcxt's peak)",
            At::Op(_) => "",
        };
        let _ = writeln!(
            s,
            "# {trace_name}: after {} of {} operations{what}",
            self.ops_done, self.ops_total
        );
        s.push_str(&self.text);
        let _ = writeln!(
            s,
            "# held: {} bytes in contexts + {} bytes cached (recycled contexts, freed blocks) = {} bytes",
            self.context_bytes,
            self.cached_bytes,
            self.context_bytes + self.cached_bytes
        );
        s
    }
}
