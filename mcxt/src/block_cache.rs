//! The per-thread cache of freed blocks, between the contexts and the
//! thread's [`BlockSource`](crate::system::BlockSource).
//!
//! # Why
//!
//! mcxt takes its blocks from the global allocator, which is usually
//! glibc `malloc`. When a context is reset or deleted, its blocks go back
//! at once, often from the top of glibc's heap; glibc then gives the top
//! of its heap back to the kernel (once the free top exceeds its trim
//! threshold), and the next context to grow has its blocks faulted in
//! again, page by page, zeroed by the kernel. Replaying the analytic
//! trace, that cycle cost mcxt a sixth of its time (3.3-3.5 ns/op, against
//! 2.9 with trimming turned off for the whole process). Keeping freed
//! blocks here, to be handed out again for a request of the same size,
//! spares both the `malloc`/`free` calls and the refaults, without a
//! setting of the process. Analytic's costly pattern is a context of a
//! megabyte or more (blocks of 8-150 KiB plus dedicated chunks of 120
//! and 480 KiB) deleted and built again, over and over: the cache must
//! hold a whole one to help, hence the default bound of 8 MiB (see
//! [`DEFAULT_BLOCK_CACHE_LIMIT`]).
//!
//! # The peak is not raised
//!
//! A cache of memory is memory held, and the cached bytes count wherever
//! mcxt reports what it holds (`mcxt replay`'s peak adds
//! [`cached_block_bytes`]). The policy makes that free at the peak: when a
//! request misses (no cached block has exactly its size) and is not
//! served by shrinking a larger one (from [`SHRINK_MIN`] bytes, below),
//! cached blocks are returned to the source *before* the new block is
//! requested, until they add up to at least its size or the cache is
//! empty. So the bytes
//! held by the contexts plus the cache rise only by requests the cache
//! could not have covered, and never exceed the highest the contexts
//! alone would have held.
//!
//! Which blocks go back matters for the memory the *source* holds: the
//! smallest cached block at least as large as the request, if there is
//! one, so that `malloc` can serve the request from exactly the memory
//! just returned (returning the oldest blocks instead scattered holes
//! through glibc's heap, and the heap grew around them). Only when no
//! cached block is large enough do the oldest go, several of them.
//!
//! A large request (a block of 64 KiB or more, [`SHRINK_MIN`]) does
//! better than that when a larger block is cached: the covering block is
//! not returned but shrunk to the request by the source (`realloc`, in
//! place in glibc, only the tail freed) and handed out. Returned whole,
//! it could merge with glibc's free heap top, which glibc then trims and
//! the request faults in again, page by page; that was most of the page
//! faults left with the cache (analytic 2,300 per replay, 435 with
//! shrinking). The peak still cannot rise: the
//! cache loses the whole block, the context gains only its request (with
//! a source that shrinks in place, as glibc does; one that moves the
//! block holds both for the moment of the copy).
//!
//! # Bounds
//!
//! At most [`DEFAULT_BLOCK_CACHE_LIMIT`] bytes (per thread, adjustable
//! with [`set_block_cache_limit`]; 0 turns the cache off) and [`SLOTS`]
//! blocks; a block larger than the limit is never cached. Over either
//! bound, the oldest blocks go back first. That bounds what an idle
//! thread keeps, and it never keeps more than it once held;
//! [`release_cached_blocks`] (or `mcxt::release_recycled`) returns it
//! all.
//!
//! Exact sizes only: a block is what its context asked for (block sizes
//! follow each kind's growth sequence, so a handful of sizes repeat), and
//! handing out a larger one would misstate what the context holds (a
//! shrunk block, from [`SHRINK_MIN`] bytes, is exactly the size asked
//! for).

use core::cell::RefCell;

use crate::instrument;
use crate::system::with_source;

/// Default bound on the bytes one thread's cache holds: 8 MiB.
///
/// Chosen by replaying the shared PostgreSQL traces (`mcxt replay`,
/// glibc as the block source). Alternating builds with the README's
/// command, analytic replayed in 3.3 ns/op with 512 KiB and 2.9 with
/// 8 MiB (2.44x glibc `malloc`'s time instead of 2.14x); in runs of mcxt
/// and malloc alone, 3.1-3.3 with 512 KiB, 2.9-3.0 with 4 MiB, 2.6 with
/// 8 MiB, and 16 MiB no faster. The other traces were unchanged. The
/// peak held is the same at every bound (the cache gives blocks back
/// before a request it misses); what a larger bound costs is what an
/// idle thread may keep after a large context is gone. For scale,
/// glibc's own dynamic trim threshold (the free heap top it keeps rather
/// than return) rises to 64 MiB.
pub const DEFAULT_BLOCK_CACHE_LIMIT: usize = 8 * 1024 * 1024;

/// Most blocks one thread's cache holds. A request scans the cached sizes
/// (newest first), so the bound keeps that scan to eight cache lines; 16
/// slots served 10% fewer of analytic's requests than 64, 256 no more.
pub const SLOTS: usize = 64;

/// The cached blocks of one thread, oldest first.
struct Blocks {
    ptrs: [*mut u8; SLOTS],
    sizes: [usize; SLOTS],
    len: usize,
    bytes: usize,
    limit: usize,
}

/// What a step of [`Blocks::admit`] or an eviction decided. Blocks to
/// return are handed out one at a time, so that the source is called
/// without the cache borrowed.
enum Step {
    /// Done: the block was admitted, or nothing is left to evict.
    Done,
    /// Return this (oldest) block to the source, then step again.
    Evict(*mut u8, usize),
    /// Not cached (larger than the limit): return it to the source.
    Refused,
}

impl Blocks {
    const fn new() -> Blocks {
        Blocks {
            ptrs: [core::ptr::null_mut(); SLOTS],
            sizes: [0; SLOTS],
            len: 0,
            bytes: 0,
            limit: DEFAULT_BLOCK_CACHE_LIMIT,
        }
    }

    fn remove(&mut self, i: usize) -> (*mut u8, usize) {
        let taken = (self.ptrs[i], self.sizes[i]);
        self.ptrs.copy_within(i + 1..self.len, i);
        self.sizes.copy_within(i + 1..self.len, i);
        self.len -= 1;
        self.bytes -= taken.1;
        taken
    }

    fn evict_oldest(&mut self) -> Step {
        if self.len == 0 {
            return Step::Done;
        }
        let (p, size) = self.remove(0);
        Step::Evict(p, size)
    }

    /// One step of caching `(p, size)`: room is made first, oldest out.
    fn admit(&mut self, p: *mut u8, size: usize) -> Step {
        if size > self.limit {
            return Step::Refused;
        }
        if self.len == SLOTS || self.bytes + size > self.limit {
            return self.evict_oldest();
        }
        self.ptrs[self.len] = p;
        self.sizes[self.len] = size;
        self.len += 1;
        self.bytes += size;
        Step::Done
    }

    /// The smallest cached block of at least `bytes`, taken out.
    fn take_covering(&mut self, bytes: usize) -> Option<(*mut u8, usize)> {
        let (i, _) = self.sizes[..self.len]
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s >= bytes)
            .min_by_key(|&(_, &s)| s)?;
        Some(self.remove(i))
    }

    /// One step of making room for a request of `bytes`: the smallest
    /// cached block of at least `bytes` if there is one (so a single
    /// block goes back, and the source can serve the request from exactly
    /// that memory), else the oldest.
    fn evict_for(&mut self, bytes: usize) -> Step {
        match self.take_covering(bytes) {
            Some((p, size)) => Step::Evict(p, size),
            None => self.evict_oldest(),
        }
    }

    /// The newest cached block of exactly `size` bytes, taken out.
    fn take(&mut self, size: usize) -> Option<*mut u8> {
        let i = self.sizes[..self.len].iter().rposition(|&s| s == size)?;
        Some(self.remove(i).0)
    }

    /// One step of shrinking to a new limit.
    fn trim(&mut self) -> Step {
        if self.bytes > self.limit {
            self.evict_oldest()
        } else {
            Step::Done
        }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        while let Step::Evict(p, size) = self.evict_oldest() {
            // SAFETY: a cached block, owned by the cache alone, from this
            // thread's source (which cannot change while blocks are cached).
            unsafe { give_back(p, size) };
        }
    }
}

std::thread_local! {
    static CACHE: RefCell<Blocks> = const { RefCell::new(Blocks::new()) };
}

/// Runs `f` on this thread's cache; `None` once the cache is gone (thread
/// exit) or already borrowed (a block source reentering mcxt).
#[inline]
fn with_cache<R>(f: impl FnOnce(&mut Blocks) -> R) -> Option<R> {
    CACHE
        .try_with(|c| c.try_borrow_mut().ok().map(|mut b| f(&mut b)))
        .ok()
        .flatten()
}

/// Returns to the source, one at a time, the blocks `pick` evicts, until
/// it says [`Step::Done`].
fn give_back_while(mut pick: impl FnMut(&mut Blocks) -> Step) {
    while let Some(Step::Evict(p, size)) = with_cache(&mut pick) {
        // SAFETY: it left the cache, which owned it.
        unsafe { give_back(p, size) };
    }
}

/// Returns a block that left the cache to the thread's source.
///
/// # Safety
/// `p` is a block of `size` bytes from the thread's source, owned by the
/// caller and not used after.
unsafe fn give_back(p: *mut u8, size: usize) {
    instrument::make_accessible(p, size);
    // SAFETY: caller contract.
    with_source(|s| unsafe { s.free(p, size) });
}

/// A block of exactly `size` bytes from the cache, or `None`: a cached
/// block of that size, else (from [`SHRINK_MIN`] bytes) a larger cached
/// block shrunk in place by the source. On `None`, cached blocks adding
/// up to `size` (or all) have been returned to the source, so that the
/// request about to be made of it does not raise the peak.
#[inline(never)]
pub(crate) fn take(size: usize) -> Option<*mut u8> {
    match with_cache(|b| b.take(size)).flatten() {
        Some(p) => {
            instrument::make_accessible(p, size);
            Some(p)
        }
        None => match take_shrunk(size) {
            Shrunk::Block(p) => Some(p),
            // The block that failed to shrink went back whole: it covers
            // the request.
            Shrunk::RoomMade => None,
            Shrunk::NotTried => {
                make_room(size);
                None
            }
        },
    }
}

/// What [`take_shrunk`] did.
enum Shrunk {
    /// Here is the shrunk block.
    Block(*mut u8),
    /// The source failed to shrink the covering block, which went back to
    /// it whole.
    RoomMade,
    /// The request is small, or no cached block covers it.
    NotTried,
}

/// A request of at least this many bytes that no cached block matches
/// exactly is served from the smallest larger cached block, shrunk to
/// `size` by the source (`realloc`, which glibc does in place, freeing
/// the tail): its pages are already faulted in, and the cached bytes fall
/// by more than the context gains.
///
/// Returning the block and asking for a new one instead lets glibc trim
/// the freed memory off its heap top and fault it in again: 1,900 of
/// analytic's 2,300 page faults per replay (a page fault costs about
/// 2 µs on the development machine; analytic replays in about 18 ms), and
/// 680 of pgbench-tpcb's 730. glibc trims that eagerly because its trim
/// threshold is dynamic: it starts at 128 KiB and rises only when the
/// program frees a large `mmap`ed chunk, and the cache keeps exactly the
/// large blocks whose `free` would have raised it. (With the threshold
/// raised first, by freeing one 30 MiB allocation at start, every policy
/// here faulted fewer than 70 times per replay; mcxt does not touch
/// glibc's settings, which belong to the program.)
///
/// The threshold is measured, and the fault count of analytic depends on
/// it in ways that follow glibc's heap layout, not a smooth curve: per
/// replay 485 with no threshold (every miss with a larger cached block
/// shrinks it), 2,065 from 48 KiB, 1,604 from 60 KiB, 435 from 64 KiB,
/// 1,875 from 68 KiB, 2,041 from 96 KiB, 2,068 from 128 KiB;
/// pgbench-tpcb 49-69 from any of them. No threshold was not chosen
/// because shrinking small blocks scatters small holes through glibc's
/// heap: it grew by 10-20% on every trace against no shrinking at all
/// (plpgsql 4.07 to 4.80 MiB, pgbench-tpcb 17.1 to 20.0), where from
/// 64 KiB it did not grow on any trace but analytic (7.66 to 8.86 MiB;
/// pgbench-tpcb 16.6). mcxt's own peak is the same with every threshold.
const SHRINK_MIN: usize = 64 * 1024;

/// The smallest cached block larger than `size`, shrunk to `size` by the
/// source, for a request of at least [`SHRINK_MIN`] bytes.
#[inline(never)]
fn take_shrunk(size: usize) -> Shrunk {
    if size < SHRINK_MIN {
        return Shrunk::NotTried;
    }
    let Some((p, cached)) = with_cache(|b| b.take_covering(size)).flatten() else {
        return Shrunk::NotTried;
    };
    instrument::make_accessible(p, cached);
    // SAFETY: a block of `cached` bytes from the thread's source, which
    // left the cache and is ours; `size` is not zero.
    let shrunk = with_source(|s| unsafe { s.realloc(p, cached, size) });
    if shrunk.is_null() {
        // SAFETY: a failed `realloc` leaves the block as it was, ours.
        unsafe { give_back(p, cached) };
        return Shrunk::RoomMade;
    }
    Shrunk::Block(shrunk)
}

/// Returns cached blocks to the source until they add up to `bytes` (or
/// the cache is empty), each the smallest that covers what is left, else
/// the oldest: called before the source is asked for `bytes` more, so
/// that the cache never raises the peak.
#[inline(never)]
pub(crate) fn make_room(bytes: usize) {
    let mut left = bytes;
    give_back_while(|b| {
        if left == 0 {
            return Step::Done;
        }
        let step = b.evict_for(left);
        if let Step::Evict(_, size) = step {
            left = left.saturating_sub(size);
        }
        step
    });
}

/// Caches a freed block, or returns it to the source.
///
/// # Safety
/// `p` is a block of `size` bytes from the thread's source, given up by
/// the caller.
#[inline(never)]
pub(crate) unsafe fn put(p: *mut u8, size: usize) {
    loop {
        match with_cache(|b| b.admit(p, size)) {
            Some(Step::Done) => {
                // Stale pointers into it are reported by Valgrind / ASan,
                // as they would be after `free`.
                instrument::make_inaccessible(p, size);
                return;
            }
            Some(Step::Evict(old, s)) => {
                // SAFETY: it left the cache, which owned it.
                unsafe { give_back(old, s) };
            }
            Some(Step::Refused) | None => {
                // SAFETY: caller contract.
                return unsafe { give_back(p, size) };
            }
        }
    }
}

/// Bytes held by this thread's cache of freed blocks.
///
/// ```
/// mcxt::system::release_cached_blocks();
/// assert_eq!(mcxt::system::cached_block_bytes(), 0);
/// ```
pub fn cached_block_bytes() -> usize {
    with_cache(|b| b.bytes).unwrap_or(0)
}

/// This thread's bound on the bytes of its block cache.
pub fn block_cache_limit() -> usize {
    with_cache(|b| b.limit).unwrap_or(0)
}

/// Sets this thread's bound on the bytes of its block cache (0 turns the
/// cache off) and returns the previous one; cached blocks over the new
/// bound are returned to the block source at once.
///
/// ```
/// use mcxt::system::{cached_block_bytes, set_block_cache_limit};
///
/// let previous = set_block_cache_limit(0);
/// assert_eq!(cached_block_bytes(), 0);
/// set_block_cache_limit(previous);
/// ```
pub fn set_block_cache_limit(bytes: usize) -> usize {
    let previous = with_cache(|b| core::mem::replace(&mut b.limit, bytes)).unwrap_or(0);
    give_back_while(Blocks::trim);
    previous
}

/// Returns every block of this thread's cache to the block source.
pub fn release_cached_blocks() {
    give_back_while(Blocks::evict_oldest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(n: usize) -> *mut u8 {
        core::ptr::without_provenance_mut(n * 16)
    }

    #[test]
    fn a_hit_takes_the_newest_block_of_that_size() {
        let mut b = Blocks::new();
        assert!(matches!(b.admit(fake(1), 8192), Step::Done));
        assert!(matches!(b.admit(fake(2), 1024), Step::Done));
        assert!(matches!(b.admit(fake(3), 8192), Step::Done));
        assert_eq!(b.bytes, 8192 * 2 + 1024);
        assert_eq!(b.take(8192), Some(fake(3)));
        assert_eq!((b.len, b.bytes), (2, 8192 + 1024));
        assert_eq!(&b.sizes[..2], &[8192, 1024], "order kept");
        assert_eq!(b.take(4096), None);
        assert_eq!(b.take(8192), Some(fake(1)));
        match b.evict_oldest() {
            Step::Evict(p, 1024) => assert_eq!(p, fake(2)),
            _ => panic!("1024 is left"),
        }
        assert!(matches!(b.evict_oldest(), Step::Done));
        assert_eq!((b.len, b.bytes), (0, 0));
    }

    #[test]
    fn a_miss_returns_the_smallest_block_that_covers_it_else_the_oldest() {
        let mut b = Blocks::new();
        for (i, size) in [40_000, 9000, 20_000, 12_000].into_iter().enumerate() {
            assert!(matches!(b.admit(fake(i + 1), size), Step::Done));
        }
        assert_eq!(b.take_covering(50_000), None, "nothing covers it");
        assert_eq!(b.len, 4);
        // 10,000 bytes: 12,000 is the smallest block that covers it.
        assert!(matches!(b.evict_for(10_000), Step::Evict(p, 12_000) if p == fake(4)));
        // Nothing covers 50,000: the oldest goes.
        assert!(matches!(b.evict_for(50_000), Step::Evict(p, 40_000) if p == fake(1)));
        assert_eq!(&b.sizes[..b.len], &[9000, 20_000], "order kept");
        assert!(matches!(b.evict_for(9000), Step::Evict(_, 9000)));
        assert!(matches!(b.evict_for(1), Step::Evict(_, 20_000)));
        assert!(matches!(b.evict_for(1), Step::Done));
    }

    #[test]
    fn admission_respects_both_bounds() {
        let mut b = Blocks::new();
        b.limit = 10_000;
        assert!(matches!(b.admit(fake(1), 10_001), Step::Refused));
        assert!(matches!(b.admit(fake(1), 6000), Step::Done));
        // 6000 + 6000 > limit: the oldest must go first.
        assert!(matches!(b.admit(fake(2), 6000), Step::Evict(_, 6000)));
        assert!(matches!(b.admit(fake(2), 6000), Step::Done));
        b.limit = usize::MAX;
        for i in 1..SLOTS {
            assert!(matches!(b.admit(fake(i + 2), 16), Step::Done));
        }
        assert_eq!(b.len, SLOTS);
        assert!(matches!(b.admit(fake(99), 16), Step::Evict(_, 6000)));
        b.limit = 100;
        let mut trimmed = 0;
        while let Step::Evict(..) = b.trim() {
            trimmed += 1;
        }
        assert!(b.bytes <= 100, "{}", b.bytes);
        assert_eq!(trimmed, SLOTS - 1 - 100 / 16);
        core::mem::forget(b);
    }
}
