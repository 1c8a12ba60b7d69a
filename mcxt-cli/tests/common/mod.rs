//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use mcxt_cli::replay::{Backend, Replay, ValidTrace};
use mcxt_trace::{ChunkId, ContextKind, CtxId, Flags, Op};

/// The trace shipped with the project.
pub fn shipped_trace_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces/pgbench-small.trace.gz")
}

/// The shipped trace, parsed.
pub fn shipped_trace() -> ValidTrace {
    ValidTrace::parse_file(&shipped_trace_path()).expect("the shipped trace parses")
}

/// A small trace using every operation, flag and an alignment.
pub const TINY: &str = "mcxt-trace 1
# every operation at least once
C 1 - aset 0 8192 8388608 TopMemoryContext
C 2 1 aset 0 1024 8192 small child
C 3 2 generation 0 8192 8388608 gen grandchild
C 4 1 slab 8192 64 0 slab
C 5 1 bump 0 8192 8388608 bump
A 1 1 100 z
A 2 2 0 -
A 3 3 5000 h
A 4 4 64 -
A 5 5 30 z
A 6 2 200 - 128
A 7 1 40000 zn 4096
R 1 300
R 6 5000
R 7 10 h
R 2 0
F 4
A 8 3 17 -
O 3
A 9 3 33 -
C 6 - aset 0 8192 8388608 second root
P 2 6
A 10 2 12 -
X 6
C 7 1 aset 8192 8192 8192 another
A 11 7 8 -
D 5
H 1
A 12 1 9000 -
R 12 100000
C 8 - aset 0 8192 8388608 left at the end
A 13 8 1 -
P 8 1
C 9 1 aset 0 8192 8388608 made a root
P 9 -
A 14 9 77 z
";

/// [`TINY`], parsed.
pub fn tiny_trace() -> ValidTrace {
    ValidTrace::parse_str("tiny.trace", TINY).expect("TINY parses")
}

/// A backend that records the operations it is given, as [`Op`]s.
pub struct Recorder {
    kinds: Vec<ContextKind>,
    ops: Vec<Op>,
}

impl Backend for Recorder {
    const NAME: &'static str = "recorder";
    const EXACT_PEAK: bool = false;
    fn new(trace: &ValidTrace) -> Self {
        Recorder {
            kinds: trace.creates.iter().map(|c| c.kind).collect(),
            ops: Vec::with_capacity(trace.ops.len()),
        }
    }
    /// # Safety
    /// None needed: nothing is dereferenced.
    unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>, spec: u32) {
        let kind = self.kinds[spec as usize];
        self.ops.push(Op::Create {
            ctx,
            parent,
            kind,
            spec,
        });
    }
    /// # Safety
    /// None needed.
    unsafe fn alloc(&mut self, chunk: ChunkId, ctx: CtxId, size: usize, flags: Flags, align: u32) {
        self.ops.push(Op::Alloc {
            chunk,
            ctx,
            size: size as u64,
            flags,
            align,
        });
    }
    /// # Safety
    /// None needed.
    unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, flags: Flags) {
        self.ops.push(Op::Realloc {
            chunk,
            size: size as u64,
            flags,
        });
    }
    /// # Safety
    /// None needed.
    unsafe fn free(&mut self, chunk: ChunkId) {
        self.ops.push(Op::Free { chunk });
    }
    /// # Safety
    /// None needed.
    unsafe fn reset(&mut self, ctx: CtxId) {
        self.ops.push(Op::Reset { ctx });
    }
    /// # Safety
    /// None needed.
    unsafe fn reset_only(&mut self, ctx: CtxId) {
        self.ops.push(Op::ResetOnly { ctx });
    }
    /// # Safety
    /// None needed.
    unsafe fn delete_children(&mut self, ctx: CtxId) {
        self.ops.push(Op::DeleteChildren { ctx });
    }
    /// # Safety
    /// None needed.
    unsafe fn delete(&mut self, ctx: CtxId) {
        self.ops.push(Op::Delete { ctx });
    }
    /// # Safety
    /// None needed.
    unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        self.ops.push(Op::SetParent { ctx, parent });
    }
    fn finish(&mut self) {}
    fn held_bytes(&self) -> u64 {
        0
    }
    fn chunk_ptr(&self, _chunk: ChunkId) -> Option<NonNull<u8>> {
        None
    }
}

/// Index and operations of the first difference, for a readable failure.
pub fn first_difference(a: &[Op], b: &[Op]) -> Option<(usize, Option<Op>, Option<Op>)> {
    (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| (i, a.get(i).copied(), b.get(i).copied()))
}

/// Asserts that the trace's program decodes to its operations and that
/// replaying it (timed loop, observed loop, in pieces, twice) hands the
/// backend exactly those operations.
pub fn assert_program_is_the_trace(t: &ValidTrace) {
    let p = t.program();
    assert_eq!(p.len(), t.ops.len());
    assert_eq!(p.words().len(), t.ops.len());
    let decoded: Vec<Op> = p.decode().collect();
    assert_eq!(first_difference(&decoded, &t.ops), None, "{}", t.name);

    let n = t.ops.len();
    let mut r = Replay::<Recorder>::new(t);
    r.run_all();
    assert_eq!(
        first_difference(&r.backend().ops, &t.ops),
        None,
        "{}",
        t.name
    );
    r.finish();

    // again after `finish`, in pieces, with the observed loop in between
    let mut seen = Vec::new();
    r.run_to(n / 3);
    r.run_observed(2 * n / 3, |i, op, _| seen.push((i, *op)));
    r.run_to(n);
    let replayed = &r.backend().ops[n..];
    assert_eq!(first_difference(replayed, &t.ops), None, "{}", t.name);
    assert_eq!(seen.len(), 2 * n / 3 - n / 3);
    for (i, op) in seen {
        assert_eq!(op, t.ops[i], "observed operation {i} of {}", t.name);
    }
}
