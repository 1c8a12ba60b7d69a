//! The replay engine: one [`Backend`] per allocator, and the loop that
//! feeds a trace's operations to it.
//!
//! * [`ValidTrace`] is a trace that went through `mcxt-trace`'s validating
//!   parser and can no longer be changed: every id in it is in range and
//!   alive where it is used. This is what makes replaying it sound.
//! * [`Backend`] is the interface of an allocator under test, one method
//!   per operation. Its methods are `unsafe`: they trust the ids.
//! * [`Replay`] owns a backend and a position in a [`ValidTrace`], and is
//!   the only way to call the backend: it hands it the trace's operations
//!   in order, from the first, so the backends' contract always holds.
//!
//! The loop ([`Replay::run_to`]) is monomorphised for each backend: one
//! `match` per operation, direct indexing into tables sized up front, no
//! allocation, hashing or dynamic dispatch.
//!
//! The backends: [`mcxt`] (memory contexts through `mcxt::raw`),
//! [`nocontext`] with [`libc_malloc`] and [`mimalloc`] (every chunk its own
//! allocation, contexts emulated by bookkeeping), [`null`] (no allocation,
//! measures the loop) and [`checked`] (wraps another backend and verifies
//! memory contents). All `unsafe` code of the crate is in these modules.

pub mod checked;
pub mod libc_malloc;
pub mod mcxt;
pub mod mimalloc;
pub mod nocontext;
pub mod null;
pub mod tree;

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use mcxt_trace::{ChunkId, CtxId, Flags, Op, Trace, TraceError};

/// A trace validated by `mcxt-trace`'s parser, read-only from then on.
///
/// Every context and chunk id of its operations is below
/// [`Trace::n_contexts`] / [`Trace::n_chunks`], is created before it is
/// used and is never used after it died: the properties the backends rely
/// on. It derefs to the [`Trace`].
#[derive(Debug)]
pub struct ValidTrace {
    trace: Trace,
    path: Option<PathBuf>,
}

impl ValidTrace {
    /// Parses and validates a trace file (gzip or plain text).
    pub fn parse_file(path: &Path) -> Result<ValidTrace, TraceError> {
        mcxt_trace::parse_file(path).map(|trace| ValidTrace {
            trace,
            path: Some(path.to_path_buf()),
        })
    }

    /// Parses and validates a trace held in a string.
    pub fn parse_str(name: &str, text: &str) -> Result<ValidTrace, TraceError> {
        mcxt_trace::parse_str(name, text).map(|trace| ValidTrace { trace, path: None })
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The file it was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Deref for ValidTrace {
    type Target = Trace;
    fn deref(&self) -> &Trace {
        &self.trace
    }
}

/// The allocators the tool can replay a trace against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Allocator {
    /// mcxt's memory contexts (`mcxt::raw`).
    Mcxt,
    /// glibc `malloc`/`free`/`realloc`/`posix_memalign`, one allocation
    /// per chunk, contexts emulated by bookkeeping.
    Malloc,
    /// mimalloc (`mi_malloc`/`mi_free`/...), likewise.
    Mimalloc,
    /// No allocation at all: the cost of the replay loop itself.
    Null,
}

impl Allocator {
    /// The allocators of `--allocator all`, in report order.
    pub const ALL: [Allocator; 3] = [Allocator::Mcxt, Allocator::Malloc, Allocator::Mimalloc];

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Allocator::Mcxt => "mcxt",
            Allocator::Malloc => "malloc",
            Allocator::Mimalloc => "mimalloc",
            Allocator::Null => "null",
        }
    }

    /// Parses a name given by [`Allocator::name`].
    pub fn from_name(s: &str) -> Option<Allocator> {
        [
            Allocator::Mcxt,
            Allocator::Malloc,
            Allocator::Mimalloc,
            Allocator::Null,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }
}

impl fmt::Display for Allocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An allocator under test: one method per trace operation.
///
/// # Contract of the `unsafe` methods
///
/// Since [`Backend::new`] (or the last [`Backend::finish`]) the calls must
/// be exactly the operations of the trace given to `new`, in order, from
/// its first operation, each mapped to its method as [`Replay`] does.
/// Then every id names a table slot, every context or chunk named is alive
/// and every chunk pointer the backend stored is valid. [`Replay`] is the
/// safe way to drive a backend; a wrapper backend ([`checked::Checked`])
/// fulfils the contract for the backend it wraps by forwarding the same
/// calls.
pub trait Backend: Sized {
    /// Name in reports.
    const NAME: &'static str;
    /// The peak pass samples [`Backend::held_bytes`] after every operation
    /// (it is cheap and exact) rather than every 64 operations.
    const EXACT_PEAK: bool;

    /// Prepares the tables for `trace` (not timed). Tables are written in
    /// full so their pages are faulted in before any timed replay.
    fn new(trace: &ValidTrace) -> Self;

    /// `C`: creates context `ctx` under `parent` with parameters
    /// `trace.creates[spec]`.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>, spec: u32);

    /// `A`: allocates chunk `chunk` of `size` bytes in `ctx`; `align` 0
    /// means the default alignment.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn alloc(&mut self, chunk: ChunkId, ctx: CtxId, size: usize, flags: Flags, align: u32);

    /// `R`: resizes the chunk, keeping contents and alignment.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, flags: Flags);

    /// `F`: frees the chunk.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn free(&mut self, chunk: ChunkId);

    /// `X`: deletes the descendants of `ctx` and frees its chunks.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn reset(&mut self, ctx: CtxId);

    /// `O`: frees the chunks of `ctx`.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn reset_only(&mut self, ctx: CtxId);

    /// `H`: deletes the descendants of `ctx`.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn delete_children(&mut self, ctx: CtxId);

    /// `D`: deletes `ctx` and its descendants.
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn delete(&mut self, ctx: CtxId);

    /// `P`: moves `ctx` under `parent` (`None`: makes it a root).
    ///
    /// # Safety
    /// See the [trait contract](Backend#contract-of-the-unsafe-methods).
    unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>);

    /// Deletes every context still alive and frees every chunk still live
    /// (not timed), leaving the allocator as clean as before the replay
    /// (except for caches such as mcxt's recycled contexts). The tables
    /// are kept for the next replay of the same trace.
    fn finish(&mut self);

    /// Bytes held from the system now, as this backend measures it (see
    /// [`crate::peak`]); an absolute figure, compared to a baseline.
    fn held_bytes(&self) -> u64;

    /// The memory of a live chunk, `None` for a backend that has none
    /// ([`null`]).
    fn chunk_ptr(&self, chunk: ChunkId) -> Option<NonNull<u8>>;

    /// Names of the trace's context kinds that this backend replays as
    /// another kind (empty for backends without contexts).
    fn substituted_kinds(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// Applies one operation.
///
/// # Safety
/// The backend contract: `op` is the next operation of the backend's trace.
#[inline(always)]
unsafe fn apply<B: Backend>(b: &mut B, op: &Op) {
    // SAFETY: forwarded caller contract.
    unsafe {
        match *op {
            Op::Create {
                ctx, parent, spec, ..
            } => b.create(ctx, parent, spec),
            Op::Alloc {
                chunk,
                ctx,
                size,
                flags,
                align,
            } => b.alloc(chunk, ctx, size as usize, flags, align),
            Op::Realloc { chunk, size, flags } => b.realloc(chunk, size as usize, flags),
            Op::Free { chunk } => b.free(chunk),
            Op::Reset { ctx } => b.reset(ctx),
            Op::ResetOnly { ctx } => b.reset_only(ctx),
            Op::DeleteChildren { ctx } => b.delete_children(ctx),
            Op::Delete { ctx } => b.delete(ctx),
            Op::SetParent { ctx, parent } => b.set_parent(ctx, parent),
        }
    }
}

/// The replay loop: kept out of line so that profiles show it as one
/// function per backend.
///
/// # Safety
/// `ops` are the next operations of the backend's trace.
#[inline(never)]
unsafe fn run_ops<B: Backend>(b: &mut B, ops: &[Op]) {
    for op in ops {
        // SAFETY: forwarded caller contract.
        unsafe { apply(b, op) }
    }
}

/// The loop of the measuring passes: `after` runs after each operation
/// with its 0-based index.
///
/// # Safety
/// `ops` are the next operations of the backend's trace, the first being
/// operation number `first`.
#[inline(never)]
unsafe fn run_ops_observed<B: Backend>(
    b: &mut B,
    ops: &[Op],
    first: usize,
    mut after: impl FnMut(usize, &Op, &B),
) {
    for (i, op) in ops.iter().enumerate() {
        // SAFETY: forwarded caller contract.
        unsafe { apply(b, op) };
        after(first + i, op, b);
    }
}

/// A backend being fed one [`ValidTrace`], with its position in it.
pub struct Replay<'t, B: Backend> {
    trace: &'t ValidTrace,
    backend: B,
    pos: usize,
}

impl<'t, B: Backend> Replay<'t, B> {
    /// A fresh backend for `trace` (tables prepared, nothing replayed).
    pub fn new(trace: &'t ValidTrace) -> Replay<'t, B> {
        Replay {
            trace,
            backend: B::new(trace),
            pos: 0,
        }
    }

    /// The trace.
    pub fn trace(&self) -> &'t ValidTrace {
        self.trace
    }

    /// Number of operations replayed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The backend (read-only: its state must follow the trace).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Replays the remaining operations up to (not including) operation
    /// index `end` (clamped to the trace's length).
    pub fn run_to(&mut self, end: usize) {
        let end = end.min(self.trace.ops.len());
        if end <= self.pos {
            return;
        }
        // SAFETY: ops[pos..end] follow the ops already replayed, from the
        // start of the backend's own validated trace.
        unsafe { run_ops(&mut self.backend, &self.trace.ops[self.pos..end]) };
        self.pos = end;
    }

    /// Replays every remaining operation.
    pub fn run_all(&mut self) {
        self.run_to(self.trace.ops.len());
    }

    /// As [`run_to`](Self::run_to), calling `after(index, op, backend)`
    /// after each operation.
    pub fn run_observed(&mut self, end: usize, after: impl FnMut(usize, &Op, &B)) {
        let end = end.min(self.trace.ops.len());
        if end <= self.pos {
            return;
        }
        // SAFETY: as in `run_to`; `after` sees the backend only by shared
        // reference, between operations.
        unsafe {
            run_ops_observed(
                &mut self.backend,
                &self.trace.ops[self.pos..end],
                self.pos,
                after,
            )
        };
        self.pos = end;
    }

    /// Deletes everything left ([`Backend::finish`]) and rewinds to the
    /// start of the trace, ready for another replay with the same tables.
    pub fn finish(&mut self) {
        self.backend.finish();
        self.pos = 0;
    }
}

impl<B: Backend> Drop for Replay<'_, B> {
    fn drop(&mut self) {
        if self.pos != 0 {
            self.backend.finish();
        }
    }
}
