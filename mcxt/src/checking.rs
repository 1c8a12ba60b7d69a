//! The `checking` feature: PostgreSQL's `MEMORY_CONTEXT_CHECKING`,
//! `CLOBBER_FREED_MEMORY` and `RANDOMIZE_ALLOCATED_MEMORY`, and more.
//!
//! # Design
//!
//! Checking is a layer over the allocator, not a second allocator: every
//! allocation, `free` and `realloc` of the raw API (and so of the safe API,
//! the current-context functions and the C ABI) goes through this module
//! when the feature is on, and the context kinds do their usual work
//! underneath. With the feature off none of it is compiled.
//!
//! **The check word.** The chunk header grows from 8 to 16 bytes: a *check
//! word* sits before the usual header word.
//!
//! ```text
//!  63        48 47                                   0
//! +------------+--------------------------------------+
//! | state      | live: requested size                 |
//! | (16 bits)  | freed: capacity of the chunk         |
//! +------------+--------------------------------------+
//! ```
//!
//! A live chunk records the size asked for; the bytes from there to the
//! end of the chunk's capacity are *sentinels* (`0x7E`). Every request
//! reserves one more byte than asked, so there is always at least one
//! sentinel (PostgreSQL skips it when the request fills the chunk). A
//! freed chunk is *clobbered* with `0x7F` and records its capacity.
//!
//! **What is detected, and when:**
//!
//! * a write past the requested size (sentinels overwritten): on `free`,
//!   `realloc`, reset (every live chunk of the context is verified first)
//!   and by [`MemoryContext::check`](crate::raw::MemoryContext::check);
//! * a write to a freed chunk: when the chunk is handed out again (the
//!   clobber pattern must still be intact, past the free-list link) and by
//!   `check`;
//! * a double free or a `realloc` of a freed chunk: the check word says
//!   *freed*;
//! * a pointer that mcxt did not allocate: its header is not one of ours
//!   (as far as the header tells: memory that happens to look like a chunk
//!   cannot be told apart);
//! * `free`, `realloc`, `chunk_context` or `chunk_space` on a bump chunk:
//!   with the feature on, bump chunks get a header too, as in PostgreSQL's
//!   checking builds, so the mistake is caught;
//! * use of a deleted context through a stale raw handle: live contexts are
//!   kept in a registry, consulted (never the context's memory) before any
//!   operation on a handle. A deleted context's address can be taken again
//!   by a new context, so a stale handle is caught only until its memory is
//!   reused; tests that delete and then use are caught reliably.
//!
//! **Fresh memory** is filled with a non-zero pattern (different for each
//! allocation) unless zeroing was asked for, so code that relies on
//! uninitialised memory fails visibly. **Freed memory** is clobbered,
//! blocks are clobbered before they go back to the system and kept blocks
//! when their context is reset.
//!
//! Each detection is a [`Report`] passed to the [report
//! handler](set_report_handler): by default a message on stderr and an
//! abort, as PostgreSQL's checking builds do for corrupted memory.
//! Operations that cannot go on safely (double free, foreign pointer, bump
//! chunk, deleted context) then return an [`Error`] and change nothing; a
//! damaged sentinel or clobber pattern is reported and the operation
//! proceeds, as PostgreSQL's WARNINGs do.

pub use crate::check::{Problem, Report};
use crate::chunk::{read_header, Header, KindId, CHUNK_HDR_SIZE};
use crate::error::{check_size, AllocFlags, Error, ErrorKind};
use crate::tree::ContextHeader;
use crate::{raw, ContextKind};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};

/// Byte written past the requested size of a live chunk.
pub const SENTINEL_BYTE: u8 = 0x7E;
/// Byte written over freed chunks and released blocks.
pub const CLOBBER_BYTE: u8 = 0x7F;

/// Extra bytes every request reserves, so each chunk has a sentinel.
pub(crate) const SENTINEL_ROOM: usize = 1;

const STATE_SHIFT: u32 = 48;
const VALUE_MASK: u64 = (1 << STATE_SHIFT) - 1;
const LIVE: u16 = 0xA11C;
const FREED: u16 = 0xF4EE;

/// A decoded check word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckWord {
    /// A live chunk and the size that was asked for.
    Live(usize),
    /// A freed chunk and its capacity.
    Freed(usize),
    /// Neither: overwritten, or not a chunk of ours.
    Garbage(u64),
}

/// The state bits are the state XOR a 16-bit fold of the header word, so
/// a damaged header (a write just before the chunk) no longer matches its
/// check word and is caught before the header is trusted.
///
/// # Safety
/// `p - 8 .. p` readable.
unsafe fn header_fold(p: *const u8) -> u16 {
    // SAFETY: caller contract.
    let h = unsafe { read_header(p) }.0;
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

/// Reads the check word of the chunk at `p`.
///
/// # Safety
/// `p - 16 .. p` must be readable.
#[inline]
pub(crate) unsafe fn read_word(p: *const u8) -> CheckWord {
    // SAFETY: caller contract; the words may be unaligned in bogus pointers.
    let (w, fold) = unsafe {
        (
            p.sub(CHUNK_HDR_SIZE).cast::<u64>().read_unaligned(),
            header_fold(p),
        )
    };
    let value = (w & VALUE_MASK) as usize;
    match (w >> STATE_SHIFT) as u16 ^ fold {
        LIVE => CheckWord::Live(value),
        FREED => CheckWord::Freed(value),
        _ => CheckWord::Garbage(w),
    }
}

/// Writes the check word of the chunk at `p`, whose header word must be
/// in place.
///
/// # Safety
/// `p - 16 .. p` must be writable and belong to the chunk's header.
#[inline]
unsafe fn write_word(p: *mut u8, word: CheckWord) {
    // SAFETY: caller contract.
    let fold = unsafe { header_fold(p) } as u64;
    let w = match word {
        CheckWord::Live(n) => ((LIVE as u64 ^ fold) << STATE_SHIFT) | (n as u64 & VALUE_MASK),
        CheckWord::Freed(n) => ((FREED as u64 ^ fold) << STATE_SHIFT) | (n as u64 & VALUE_MASK),
        CheckWord::Garbage(w) => w,
    };
    // SAFETY: caller contract; chunk headers are 8-aligned.
    unsafe { p.sub(CHUNK_HDR_SIZE).cast::<u64>().write(w) }
}

/// Offset of the first byte of `p[from..to]` that is not `byte`.
///
/// # Safety
/// `p[from..to]` readable.
pub(crate) unsafe fn first_mismatch(
    p: *const u8,
    from: usize,
    to: usize,
    byte: u8,
) -> Option<usize> {
    // SAFETY: caller contract.
    let bytes = unsafe { core::slice::from_raw_parts(p.add(from), to.saturating_sub(from)) };
    bytes.iter().position(|&b| b != byte).map(|i| from + i)
}

/// Clobbers `len` bytes at `p` (freed chunks, released or rewound blocks).
///
/// # Safety
/// `p[..len]` writable and dead.
#[inline]
pub(crate) unsafe fn clobber(p: *mut u8, len: usize) {
    // SAFETY: caller contract.
    unsafe { p.write_bytes(CLOBBER_BYTE, len) }
}

/// Fills fresh memory with a non-zero pattern that differs between
/// allocations (PostgreSQL's `randomize_mem`).
unsafe fn randomize(p: *mut u8, len: usize) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut state = NEXT.fetch_add(0x9E37_79B9, Ordering::Relaxed) as u32 | 1;
    let mut i = 0;
    while i < len {
        // xorshift32: cheap, and never zero once seeded non-zero.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let word = state.to_le_bytes();
        for &b in word.iter().take(len - i) {
            // SAFETY: `i < len` (caller: `p[..len]` writable).
            unsafe { p.add(i).write(b | 1) };
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------
// Reports

/// What a [`Report`] handler is: called on the thread that detected the
/// problem, before the operation returns.
pub type ReportHandler = fn(&Report);

static HANDLER: RwLock<Option<ReportHandler>> = RwLock::new(None);

/// Installs the handler of every detection (`None` restores the default:
/// print the report on stderr and abort). Returns the previous handler.
///
/// The handler is process-wide. If it returns, operations that cannot go
/// on safely return an error and change nothing (see the module docs).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// static SEEN: AtomicUsize = AtomicUsize::new(0);
/// fn count(r: &mcxt::checking::Report) {
///     eprintln!("{r}");
///     SEEN.fetch_add(1, Ordering::Relaxed);
/// }
/// mcxt::checking::set_report_handler(Some(count));
/// let top = mcxt::Context::new("top");
/// let p = unsafe { top.as_raw().alloc(10).unwrap() };
/// unsafe {
///     p.as_ptr().add(10).write(0); // one byte too far
///     mcxt::raw::free(p).unwrap(); // reported, then freed
/// }
/// assert_eq!(SEEN.load(Ordering::Relaxed), 1);
/// ```
pub fn set_report_handler(handler: Option<ReportHandler>) -> Option<ReportHandler> {
    let mut h = HANDLER.write().unwrap_or_else(|e| e.into_inner());
    core::mem::replace(&mut *h, handler)
}

/// The default handler: the report on stderr, then abort.
pub fn abort_handler(report: &Report) {
    use std::io::Write;
    // Straight to the stream, not `eprintln!`: the test harness captures
    // that, and the abort would lose the message.
    let _ = writeln!(std::io::stderr(), "mcxt: {report}");
    std::process::abort();
}

/// Passes a report to the installed handler.
#[cold]
#[inline(never)]
pub(crate) fn report(report: Report) {
    let handler = HANDLER
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(abort_handler);
    handler(&report);
}

#[cold]
fn report_chunk(
    problem: Problem,
    context: &'static str,
    p: *const u8,
    requested: Option<usize>,
    capacity: Option<usize>,
) {
    report(Report {
        problem,
        context,
        chunk: p as usize,
        requested,
        capacity,
    });
}

// ---------------------------------------------------------------------
// The registry of live contexts

static LIVE_CONTEXTS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

fn registry() -> std::sync::MutexGuard<'static, BTreeSet<usize>> {
    LIVE_CONTEXTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a new context.
pub(crate) fn register(ctx: *mut ContextHeader) {
    registry().insert(ctx as usize);
}

/// Forgets a deleted context.
pub(crate) fn unregister(ctx: *mut ContextHeader) {
    registry().remove(&(ctx as usize));
}

/// True when `ctx` is a live context; else reports the use of a deleted
/// (or never created) context by `operation`.
pub(crate) fn context_is_live(ctx: *mut ContextHeader, operation: &'static str) -> bool {
    if registry().contains(&(ctx as usize)) {
        return true;
    }
    report(Report {
        problem: Problem::DeletedContext { operation },
        context: "?",
        chunk: 0,
        requested: None,
        capacity: None,
    });
    false
}

/// True when `ctx` is registered (no report).
pub(crate) fn is_registered(ctx: *mut ContextHeader) -> bool {
    registry().contains(&(ctx as usize))
}

/// The error returned after a deleted context was reported.
#[cold]
pub(crate) fn deleted_context_error(size: usize) -> Error {
    Error::new(ErrorKind::DeletedContext, "?", size)
}

// ---------------------------------------------------------------------
// The allocation layer

/// Verifies the sentinels of a live chunk.
///
/// # Safety
/// `p[..capacity]` readable.
unsafe fn verify_sentinels(p: *mut u8, requested: usize, capacity: usize, context: &'static str) {
    // SAFETY: caller contract.
    if let Some(offset) = unsafe { first_mismatch(p, requested, capacity, SENTINEL_BYTE) } {
        report_chunk(
            Problem::SentinelOverwritten { offset },
            context,
            p,
            Some(requested),
            Some(capacity),
        );
    }
}

/// Marks a freshly handed-out chunk live: verifies that a reused freed
/// chunk was not written to, fills it and writes its sentinels.
///
/// # Safety
/// `p` a chunk just returned by a kind, with capacity `capacity`.
unsafe fn take(p: *mut u8, size: usize, capacity: usize, context: &'static str) {
    // SAFETY: caller contract; everything stays inside the chunk.
    unsafe {
        if read_word(p) == CheckWord::Freed(capacity) {
            // The first word may hold the kind's free-list link.
            if let Some(offset) = first_mismatch(p, 8.min(capacity), capacity, CLOBBER_BYTE) {
                report_chunk(
                    Problem::WriteAfterFree { offset },
                    context,
                    p,
                    None,
                    Some(capacity),
                );
            }
        }
        write_word(p, CheckWord::Live(size));
        randomize(p, size);
        p.add(size).write_bytes(SENTINEL_BYTE, capacity - size);
    }
}

/// Checked allocation: the funnel of every allocation in a context.
///
/// # Safety
/// `ctx` a context pointer (checked against the registry) of kind `kind`.
#[inline(never)]
pub(crate) unsafe fn alloc(
    ctx: *mut ContextHeader,
    kind: ContextKind,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    if !context_is_live(ctx, "alloc") {
        return Err(deleted_context_error(size));
    }
    // SAFETY: `ctx` is live.
    unsafe {
        let name = (*ctx).name;
        check_size(size, flags, name)?;
        // Slab reserves the sentinel room in its fixed chunk size.
        let request = if kind == ContextKind::Slab {
            size
        } else if size < crate::MAX_ALLOC_HUGE_SIZE {
            size + SENTINEL_ROOM
        } else {
            // The largest huge request plus its sentinel: no system
            // could serve it, so fail as a build without checking would.
            return Err(Error::new(ErrorKind::OutOfMemory, name, size));
        };
        let p = raw::alloc_dispatch(ctx, kind, request, flags | AllocFlags::HUGE)
            .map_err(|e| Error { size, ..e })?;
        let ptr = p.as_ptr();
        let capacity = raw::chunk_capacity_dispatch(ptr, read_header(ptr));
        take(ptr, size, capacity, name);
        Ok(p)
    }
}

/// A chunk that passed the checks of `free` and `realloc`.
struct Checked {
    /// The chunk the kind knows (the base of an aligned chunk).
    base: *mut u8,
    hdr: Header,
    /// Size asked for, counted from `base`.
    requested: usize,
    capacity: usize,
    ctx: *mut ContextHeader,
}

/// Reports `p` as a pointer mcxt did not allocate; the error to return.
#[cold]
fn foreign(p: *mut u8, hdr: Header, size: usize) -> Error {
    report_chunk(
        Problem::ForeignPointer { header: hdr.0 },
        "?",
        p,
        None,
        None,
    );
    Error::new(ErrorKind::BadPointer { header: hdr.0 }, "?", size)
}

/// The requested size in the live check word of `chunk`; a freed or
/// damaged word is reported (at `reported`, the caller's pointer) and
/// refused.
///
/// # Safety
/// `chunk - 16 .. chunk` readable.
unsafe fn live_word(
    chunk: *mut u8,
    reported: *mut u8,
    hdr: Header,
    what: &'static str,
    size: usize,
) -> Result<usize, Error> {
    // SAFETY: caller contract.
    match unsafe { read_word(chunk) } {
        CheckWord::Live(n) => Ok(n),
        CheckWord::Freed(_) => {
            report_chunk(Problem::DoubleFree, "?", reported, None, None);
            Err(Error::new(ErrorKind::DoubleFree, "?", size))
        }
        CheckWord::Garbage(_) => {
            report_chunk(Problem::CorruptChunk { what }, "?", reported, None, None);
            Err(Error::new(
                ErrorKind::BadPointer { header: hdr.0 },
                "?",
                size,
            ))
        }
    }
}

/// Checks that `p` is a live chunk that may be freed or resized:
/// reports and returns an error otherwise.
///
/// # Safety
/// `p - 16 .. p` readable (the raw API's contract).
unsafe fn check_live(p: *mut u8, operation: &'static str, size: usize) -> Result<Checked, Error> {
    // SAFETY: caller contract; every further read is inside memory the
    // headers just vouched for.
    unsafe {
        let mut hdr = read_header(p);
        let mut base = p;
        match hdr.kind() {
            None => {
                return Err(foreign(p, hdr, size));
            }
            Some(KindId::Bump) => {
                report_chunk(Problem::BumpChunk { operation }, "?", p, None, None);
                return Err(Error::new(
                    ErrorKind::Unsupported(
                        "bump chunks cannot be freed, resized or asked for their context",
                    ),
                    "?",
                    size,
                ));
            }
            Some(KindId::AlignedRedirect) => {
                live_word(
                    p,
                    p,
                    hdr,
                    "check word of an aligned chunk overwritten",
                    size,
                )?;
                base = crate::aligned::unaligned(p, hdr);
                hdr = read_header(base);
            }
            Some(_) => {}
        }
        if hdr.is_external() && !hdr.external_magic_ok() {
            return Err(foreign(p, hdr, size));
        }
        let requested = live_word(
            base,
            p,
            hdr,
            "check word overwritten (or not a chunk)",
            size,
        )?;
        let ctx = raw::chunk_context_dispatch(base, hdr);
        if !context_is_live(ctx, operation) {
            return Err(deleted_context_error(size));
        }
        let capacity = raw::chunk_capacity_dispatch(base, hdr);
        verify_sentinels(base, requested, capacity, (*ctx).name);
        Ok(Checked {
            base,
            hdr,
            requested,
            capacity,
            ctx,
        })
    }
}

/// Checked `free`.
///
/// # Safety
/// As [`raw::free`].
pub(crate) unsafe fn free(p: *mut u8) -> Result<(), Error> {
    // SAFETY: caller contract; `check_live` vouched for the chunk.
    unsafe {
        let c = check_live(p, "free", 0)?;
        release(p, c)
    }
}

/// Clobbers a checked chunk, marks it freed and gives it to its kind.
///
/// # Safety
/// `c` from `check_live(p, ..)`; the chunk is not used afterwards.
unsafe fn release(p: *mut u8, c: Checked) -> Result<(), Error> {
    // SAFETY: caller contract.
    unsafe {
        if c.base != p {
            write_word(p, CheckWord::Freed(0));
        }
        clobber(c.base, c.capacity);
        write_word(c.base, CheckWord::Freed(c.capacity));
        raw::free_dispatch(c.base, c.hdr)
    }
}

/// Checked `realloc`: in place when the chunk has room for the new size
/// and a sentinel, else a new chunk in the same context (same alignment),
/// the contents copied and the old chunk freed.
///
/// # Safety
/// As [`raw::realloc`].
pub(crate) unsafe fn realloc(
    p: *mut u8,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract; `check_live` vouched for the chunk; copies
    // stay inside both chunks.
    unsafe {
        let c = check_live(p, "realloc", size)?;
        let name = (*c.ctx).name;
        check_size(size, flags, name)?;
        if c.hdr.kind() == Some(KindId::Slab) {
            // The kind's rule: a slab chunk never grows past its size.
            crate::slab::realloc(c.base, c.hdr, size)?;
        }
        let offset = p as usize - c.base as usize;
        let old_size = c.requested - offset;
        if offset + size + SENTINEL_ROOM <= c.capacity {
            crate::instrument::chunk_resized(c.ctx, c.base, offset + size + SENTINEL_ROOM);
            if size > old_size {
                randomize(p.add(old_size), size - old_size);
            }
            write_word(c.base, CheckWord::Live(offset + size));
            if offset != 0 {
                write_word(p, CheckWord::Live(size));
            }
            p.add(size)
                .write_bytes(SENTINEL_BYTE, c.capacity - offset - size);
            return Ok(NonNull::new_unchecked(p));
        }
        let new = if offset == 0 {
            alloc(c.ctx, (*c.ctx).kind, size, flags)?
        } else {
            let align = 1usize << read_header(p).value();
            crate::aligned::alloc(c.ctx, size, align, flags)?
        };
        core::ptr::copy_nonoverlapping(p, new.as_ptr(), old_size.min(size));
        release(p, c)?;
        Ok(new)
    }
}

/// A chunk the kind carved straight onto a free list (the remainder of
/// a block): clobbered and marked freed like any freed chunk.
///
/// # Safety
/// `p` a fresh chunk with its header, `capacity` bytes, not handed out.
pub(crate) unsafe fn carved_free(p: *mut u8, capacity: usize) {
    // SAFETY: caller contract.
    unsafe {
        clobber(p, capacity);
        write_word(p, CheckWord::Freed(capacity));
    }
}

/// After an aligned chunk was placed inside an ordinary one: the base
/// chunk's requested size now ends where the aligned one does, so its
/// sentinels guard the aligned chunk; the redirect gets its own check word.
///
/// # Safety
/// `base` a live chunk just allocated, `aligned` inside it with room for
/// `size` bytes and a header.
pub(crate) unsafe fn place_aligned(base: *mut u8, aligned: *mut u8, size: usize) {
    // SAFETY: caller contract.
    unsafe {
        let capacity = raw::chunk_capacity_dispatch(base, read_header(base));
        let end = aligned as usize - base as usize + size;
        write_word(base, CheckWord::Live(end));
        write_word(aligned, CheckWord::Live(size));
        base.add(end).write_bytes(SENTINEL_BYTE, capacity - end);
    }
}

/// Usable bytes of a live chunk: what was asked for.
///
/// # Safety
/// `p` a live chunk.
pub(crate) unsafe fn requested_size(p: *mut u8) -> Result<usize, Error> {
    // SAFETY: caller contract.
    unsafe {
        let c = check_live(p, "chunk_capacity", 0)?;
        Ok(c.requested - (p as usize - c.base as usize))
    }
}

/// Verifies a chunk given to `chunk_context` or `chunk_space` as `free`
/// would (bump chunk, foreign pointer, freed chunk, deleted context,
/// sentinels), reporting and refusing what is wrong.
///
/// # Safety
/// `p - 16 .. p` readable.
pub(crate) unsafe fn verify_chunk(p: *mut u8, operation: &'static str) -> Result<(), Error> {
    // SAFETY: caller contract.
    unsafe { check_live(p, operation, 0).map(|_| ()) }
}

/// Before a reset: verify every live chunk of the context (the same walk
/// as `check`), reporting each problem.
///
/// # Safety
/// `ctx` live.
pub(crate) unsafe fn before_reset(ctx: *mut ContextHeader) {
    // SAFETY: caller contract.
    let problems = unsafe { crate::check::check_one(ctx) };
    for r in problems {
        report(r);
    }
}
