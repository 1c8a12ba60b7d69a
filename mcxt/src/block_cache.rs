//! The per-thread cache of freed blocks, between the contexts and the
//! thread's [`BlockSource`](crate::system::BlockSource).
//!
//! # Why
//!
//! mcxt takes its blocks from the global allocator, which is usually
//! glibc `malloc`. When a context is reset or deleted, its blocks go back
//! at once, often from the top of glibc's heap; glibc then gives the top
//! of its heap back to the kernel (its trim threshold is 128 KiB), and the
//! next context to grow has its blocks faulted in again, page by page,
//! zeroed by the kernel. Replaying the analytic trace, that cycle cost
//! mcxt a fifth of its time (3.5 ns/op, against 2.8 with trimming turned
//! off for the whole process). Keeping a few freed blocks here, to be
//! handed out again for a request of the same size, spares both the
//! `malloc`/`free` calls and the refaults, without a setting of the
//! process: analytic replays in 3.1 ns/op with the cache. What is left
//! is the deletion of whole multi-megabyte contexts (analytic deletes a
//! 3 MiB one three times): glibc trims what they free at once, and a
//! cache big enough to keep them (8 MiB) measured no faster in the
//! replay tool, so the bound stays small.
//!
//! # The peak is not raised
//!
//! A cache of memory is memory held, and the cached bytes count wherever
//! mcxt reports what it holds (`mcxt replay`'s peak adds
//! [`cached_block_bytes`]). The policy makes that free at the peak: when a
//! request misses (no cached block has exactly its size), the oldest
//! cached blocks are returned to the source *before* the new block is
//! requested, until they add up to at least its size or the cache is
//! empty. So the bytes held by the contexts plus the cache rise only by
//! requests the cache could not have covered, and never exceed the
//! highest the contexts alone would have held. (Freeing first also lets
//! `malloc` satisfy the new request from the memory just returned.)
//!
//! # Bounds
//!
//! At most [`DEFAULT_BLOCK_CACHE_LIMIT`] bytes (per thread, adjustable
//! with [`set_block_cache_limit`]; 0 turns the cache off) and [`SLOTS`]
//! blocks; a block larger than the limit is never cached. Over either
//! bound, the oldest blocks go back first. That bounds what an idle
//! thread keeps; [`release_cached_blocks`] (or `mcxt::release_recycled`)
//! returns it all.
//!
//! Exact sizes only: a block is what its context asked for (block sizes
//! follow each kind's growth sequence, so a handful of sizes repeat), and
//! handing out a larger one would misstate what the context holds.
//! Replaying the shared traces with 512 KiB, 37,000 of plpgsql's 45,000
//! block requests and 31,000 of pgbench's 32,000 are served here.

use core::cell::RefCell;

use crate::instrument;
use crate::system::with_source;

/// Default bound on the bytes one thread's cache holds. Replaying the
/// shared traces (block requests served by the cache, by bound): 128 KiB
/// 1,667 / 35,789 / 31,065 on analytic / plpgsql / pgbench, 512 KiB 1,957
/// / 37,102 / 31,427, 2 MiB 2,113 / 37,106 / 31,443. In time, 512 KiB,
/// 2 MiB and 8 MiB (with 256 slots) replayed every trace alike (analytic
/// 3.1-3.2 ns/op); past 512 KiB only the idle footprint grows.
pub const DEFAULT_BLOCK_CACHE_LIMIT: usize = 512 * 1024;

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

/// A cached block of exactly `size` bytes, or `None`; on a miss, cached
/// blocks adding up to `size` (or all) have been returned to the source,
/// so that the request about to be made of it does not raise the peak.
#[inline(never)]
pub(crate) fn take(size: usize) -> Option<*mut u8> {
    match with_cache(|b| b.take(size)).flatten() {
        Some(p) => {
            instrument::make_accessible(p, size);
            Some(p)
        }
        None => {
            make_room(size);
            None
        }
    }
}

/// Returns the oldest cached blocks to the source until they add up to
/// `bytes` (or the cache is empty): called before the source is asked for
/// `bytes` more, so that the cache never raises the peak.
#[inline(never)]
pub(crate) fn make_room(bytes: usize) {
    let mut left = bytes;
    give_back_while(|b| {
        if left == 0 {
            return Step::Done;
        }
        let step = b.evict_oldest();
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
