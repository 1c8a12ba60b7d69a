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
//! * [`program::Program`] is the form the operations are replayed from:
//!   compiled when the trace is loaded (not timed), one 8-byte word per
//!   operation, laid out so that the loop reads as little memory and takes
//!   as few hard-to-predict branches as possible.
//!
//! The loop ([`Replay::run_to`]) is monomorphised for each backend: per
//! operation, one word read and two or three conditional branches for the
//! frequent operations (`A`, `F`, `X`, see [`program`]), direct indexing
//! into tables sized up front, no allocation, hashing or dynamic dispatch.
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
pub mod program;
pub mod table;
pub mod tree;

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use mcxt_trace::{ChunkId, CtxId, Flags, Op, Trace, TraceError};

use program::{Program, Word};

/// A trace validated by `mcxt-trace`'s parser, read-only from then on.
///
/// Every context and chunk id of its operations is below
/// [`Trace::n_contexts`] / [`Trace::n_chunks`], is created before it is
/// used and is never used after it died: the properties the backends rely
/// on. It derefs to the [`Trace`].
///
/// It also holds the operations compiled into a replay [`Program`]
/// (compiled with the parse, so never during a timed replay).
#[derive(Debug)]
pub struct ValidTrace {
    trace: Trace,
    path: Option<PathBuf>,
    program: Program,
}

impl ValidTrace {
    fn new(trace: Trace, path: Option<PathBuf>) -> ValidTrace {
        let program = Program::compile(&trace.ops);
        ValidTrace {
            trace,
            path,
            program,
        }
    }

    /// Parses and validates a trace file (gzip or plain text), and
    /// compiles its program.
    pub fn parse_file(path: &Path) -> Result<ValidTrace, TraceError> {
        mcxt_trace::parse_file(path).map(|trace| ValidTrace::new(trace, Some(path.to_path_buf())))
    }

    /// Parses and validates a trace held in a string, and compiles its
    /// program.
    pub fn parse_str(name: &str, text: &str) -> Result<ValidTrace, TraceError> {
        mcxt_trace::parse_str(name, text).map(|trace| ValidTrace::new(trace, None))
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The operations compiled for replay: [`Program::decode`] gives back
    /// exactly `trace().ops`.
    pub fn program(&self) -> &Program {
        &self.program
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

/// Applies one operation given as an [`Op`] (the escaped operations of
/// the program).
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

/// Applies the operation of one program word; returns the chunk id of the
/// next in-word `A`.
///
/// The frequent operations (`A`, then `F`, then `X`) are told apart by
/// conditional branches, which the processor predicts far better than the
/// indirect jump of a `match` on the tag; the others take the out-of-line
/// [`step_rare`].
///
/// # Safety
/// The backend contract: `w` is the next operation of the backend's trace,
/// in the program compiled from it, and `next_chunk` the chunk id of the
/// next in-word `A` at this point.
#[inline(always)]
unsafe fn step<B: Backend>(b: &mut B, w: Word, escaped: &[Op], next_chunk: ChunkId) -> ChunkId {
    // SAFETY: forwarded caller contract; the word decodes to the trace's
    // operation (with the implicit chunk id of an `A`).
    unsafe {
        if program::is_alloc(w) {
            b.alloc(
                next_chunk,
                program::alloc_ctx(w),
                program::alloc_size(w) as usize,
                program::alloc_flags(w),
                0,
            );
            program::after_alloc(next_chunk)
        } else if w & program::TAG_MASK == program::TAG_FREE {
            b.free(program::high(w));
            next_chunk
        } else if w & program::TAG_MASK == program::TAG_RESET {
            b.reset(program::high(w));
            next_chunk
        } else {
            step_rare(b, w, escaped, next_chunk)
        }
    }
}

/// [`step`] for the rare operations: `R`, `O`, `H`, `D`, `C` and the
/// escaped ones (it handles any word but an in-word `A`).
///
/// # Safety
/// As [`step`].
#[cold]
#[inline(never)]
unsafe fn step_rare<B: Backend>(
    b: &mut B,
    w: Word,
    escaped: &[Op],
    next_chunk: ChunkId,
) -> ChunkId {
    use program::{
        create_ctx, create_parent, escape_index, high, realloc_flags, realloc_size, TAG_CREATE,
        TAG_DELETE, TAG_DELETE_CHILDREN, TAG_FREE, TAG_MASK, TAG_REALLOC, TAG_RESET,
        TAG_RESET_ONLY,
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        match w & TAG_MASK {
            TAG_REALLOC => b.realloc(high(w), realloc_size(w) as usize, realloc_flags(w)),
            TAG_RESET_ONLY => b.reset_only(high(w)),
            TAG_DELETE_CHILDREN => b.delete_children(high(w)),
            TAG_DELETE => b.delete(high(w)),
            TAG_CREATE => b.create(create_ctx(w), create_parent(w), create_ctx(w)),
            TAG_FREE => b.free(high(w)),
            TAG_RESET => b.reset(high(w)),
            _ => {
                let op = &escaped[escape_index(w)];
                apply(b, op);
                return program::next_chunk_after(op, next_chunk);
            }
        }
    }
    next_chunk
}

/// The timed replay loop: kept out of line so that profiles show it as
/// one function per backend. Returns the chunk id of the next in-word `A`.
///
/// # Safety
/// `words` are the next operations of the backend's trace, in the program
/// compiled from it (whose escaped operations are `escaped`), and
/// `next_chunk` is the chunk id of the next in-word `A`.
#[inline(never)]
unsafe fn run_words<B: Backend>(
    b: &mut B,
    words: &[Word],
    escaped: &[Op],
    mut next_chunk: ChunkId,
) -> ChunkId {
    for &w in words {
        // SAFETY: forwarded caller contract, one word after the other.
        next_chunk = unsafe { step(b, w, escaped, next_chunk) };
    }
    next_chunk
}

/// The loop of the measuring passes (not timed): replays operations
/// `range` of `program` with the same [`step`] as the timed loop, and runs
/// `after` after each one with its 0-based index and the operation
/// (decoded from the program).
///
/// # Safety
/// `program` is the program of the backend's trace, `range.start`
/// operations of it were replayed so far, and `next_chunk` is the chunk id
/// of the next in-word `A`.
#[inline(never)]
unsafe fn run_words_observed<B: Backend>(
    b: &mut B,
    program: &Program,
    range: std::ops::Range<usize>,
    mut next_chunk: ChunkId,
    mut after: impl FnMut(usize, &Op, &B),
) -> ChunkId {
    let escaped = program.escaped();
    for i in range {
        let w = program.words()[i];
        let op = program.decode_word(w, next_chunk);
        // SAFETY: forwarded caller contract, one word after the other.
        next_chunk = unsafe { step(b, w, escaped, next_chunk) };
        after(i, &op, b);
    }
    next_chunk
}

/// A backend being fed one [`ValidTrace`], with its position in it.
pub struct Replay<'t, B: Backend> {
    trace: &'t ValidTrace,
    backend: B,
    pos: usize,
    /// Chunk id of the next in-word `A` of the program.
    next_chunk: ChunkId,
}

impl<'t, B: Backend> Replay<'t, B> {
    /// A fresh backend for `trace` (tables prepared, nothing replayed).
    pub fn new(trace: &'t ValidTrace) -> Replay<'t, B> {
        Replay {
            trace,
            backend: B::new(trace),
            pos: 0,
            next_chunk: 0,
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
    /// index `end` (clamped to the trace's length), from the trace's
    /// compiled [`Program`].
    pub fn run_to(&mut self, end: usize) {
        let program = self.trace.program();
        let end = end.min(program.len());
        if end <= self.pos {
            return;
        }
        // The program was compiled from the backend's own validated trace
        // and decodes to exactly its operations (`Program::compile` is exact).
        // SAFETY: words[pos..end] follow the operations already replayed
        // from its start, and `next_chunk` was kept up to date.
        self.next_chunk = unsafe {
            run_words(
                &mut self.backend,
                &program.words()[self.pos..end],
                program.escaped(),
                self.next_chunk,
            )
        };
        self.pos = end;
    }

    /// Replays every remaining operation.
    pub fn run_all(&mut self) {
        self.run_to(self.trace.program().len());
    }

    /// As [`run_to`](Self::run_to), calling `after(index, op, backend)`
    /// after each operation.
    pub fn run_observed(&mut self, end: usize, after: impl FnMut(usize, &Op, &B)) {
        let program = self.trace.program();
        let end = end.min(program.len());
        if end <= self.pos {
            return;
        }
        // SAFETY: as in `run_to`; `after` sees the backend only by shared
        // reference, between operations.
        self.next_chunk = unsafe {
            run_words_observed(
                &mut self.backend,
                program,
                self.pos..end,
                self.next_chunk,
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
        self.next_chunk = 0;
    }
}

impl<B: Backend> Drop for Replay<'_, B> {
    fn drop(&mut self) {
        if self.pos != 0 {
            self.backend.finish();
        }
    }
}
