//! Blocks from the system: the one place mcxt asks for memory. Every
//! context block, dedicated large-chunk block and context header comes
//! from the thread's [`BlockSource`] (by default the global allocator) and
//! goes back to it, so fault injection and leak counting watch only this
//! module (see `tests/faults.rs`).
//!
//! Between the two sits a bounded per-thread cache of freed blocks (`std`
//! feature), which hands a block of the same size out again without
//! asking the source, and never raises the peak memory held: see
//! [`cached_block_bytes`] and the `block_cache` module's design notes.

use alloc::alloc::{alloc, dealloc, realloc, Layout};

/// Alignment of every block. 16 matches what `malloc` gives, so the global
/// allocator takes its fastest path.
pub const BLOCK_ALIGN: usize = 16;

/// Where mcxt gets its memory: every block, dedicated chunk and context
/// header comes from a block source and goes back to it.
///
/// The default is the global allocator ([`SystemSource`]). Another source
/// can be installed per thread with [`set_block_source`] (context trees
/// belong to one thread), for fault injection, leak counting, or memory
/// from an arena of the application's.
///
/// # Safety
/// Implementations must behave like an allocator: `alloc` returns null or
/// a block of at least `size` bytes aligned to [`BLOCK_ALIGN`], not handed
/// out again until freed; `free` and `realloc` receive only blocks this
/// source returned, with the size they were allocated (or last resized)
/// with; `realloc` returns null (leaving the block untouched) or a block
/// of the new size, aligned to [`BLOCK_ALIGN`], holding the old contents
/// up to the smaller size. (mcxt also shrinks cached blocks with
/// `realloc` to serve large requests: a source that moves a block to
/// shrink it holds both for the moment of the copy.)
pub unsafe trait BlockSource: Sync {
    /// A block of `size` bytes (`size > 0`), or null.
    fn alloc(&self, size: usize) -> *mut u8;
    /// Returns a block.
    ///
    /// # Safety
    /// `ptr` came from this source with this `size`, and is not used after.
    unsafe fn free(&self, ptr: *mut u8, size: usize);
    /// Resizes a block (possibly moving it), or returns null.
    ///
    /// # Safety
    /// `ptr` came from this source with size `old`; `new > 0`.
    unsafe fn realloc(&self, ptr: *mut u8, old: usize, new: usize) -> *mut u8;
}

/// The global allocator as a [`BlockSource`] (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemSource;

// SAFETY: forwards to the global allocator with a valid, matching layout.
unsafe impl BlockSource for SystemSource {
    #[inline]
    fn alloc(&self, size: usize) -> *mut u8 {
        match layout(size) {
            // SAFETY: the layout has a non-zero size (trait contract).
            Some(l) if size > 0 => unsafe { alloc(l) },
            _ => core::ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn free(&self, ptr: *mut u8, size: usize) {
        // SAFETY: the same size and alignment the block was allocated
        // with, so the layout is valid and matches (trait contract).
        unsafe { dealloc(ptr, Layout::from_size_align_unchecked(size, BLOCK_ALIGN)) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        if layout(new).is_none() {
            return core::ptr::null_mut();
        }
        // SAFETY: `ptr` was allocated with this layout (trait contract) and
        // the new size forms a valid layout with the same alignment.
        unsafe {
            realloc(
                ptr,
                Layout::from_size_align_unchecked(old, BLOCK_ALIGN),
                new,
            )
        }
    }
}

#[inline]
fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, BLOCK_ALIGN).ok()
}

#[cfg(feature = "std")]
std::thread_local! {
    static SOURCE: core::cell::Cell<Option<&'static dyn BlockSource>> = const { core::cell::Cell::new(None) };
}

/// Installs `source` (or, with `None`, the global allocator) as this
/// thread's block source and returns the previous one. The recycled
/// contexts and cached blocks of this thread are released first (to the
/// previous source).
///
/// # Safety
/// No context created on this thread while the previous source was
/// installed may be alive: their blocks would be returned to the wrong
/// source.
#[cfg(feature = "std")]
pub unsafe fn set_block_source(
    source: Option<&'static dyn BlockSource>,
) -> Option<&'static dyn BlockSource> {
    crate::release_recycled();
    SOURCE.with(|s| s.replace(source))
}

#[cfg(feature = "std")]
pub use crate::block_cache::{
    block_cache_limit, cached_block_bytes, release_cached_blocks, set_block_cache_limit,
    DEFAULT_BLOCK_CACHE_LIMIT,
};

#[inline]
pub(crate) fn with_source<R>(f: impl FnOnce(&dyn BlockSource) -> R) -> R {
    #[cfg(feature = "std")]
    if let Ok(Some(src)) = SOURCE.try_with(|s| s.get()) {
        return f(src);
    }
    f(&SystemSource)
}

/// Allocates `size` bytes (size > 0), or null.
///
/// # Safety
/// `size` must be non-zero.
#[inline]
pub(crate) unsafe fn alloc_block(size: usize) -> *mut u8 {
    debug_assert!(size > 0);
    #[cfg(feature = "std")]
    let cached = crate::block_cache::take(size);
    #[cfg(not(feature = "std"))]
    let cached = None;
    let block = match cached {
        Some(block) => block,
        None => with_source(|s| s.alloc(size)),
    };
    // With `checking`, a new block is clobbered like a freed one: the
    // checks read check words of slots not carved yet, which must be
    // initialised memory (and must not look like freed chunks).
    #[cfg(feature = "checking")]
    if !block.is_null() {
        // SAFETY: a fresh block of `size` bytes, ours.
        unsafe { crate::checking::clobber(block, size) };
    }
    block
}

/// Returns a block.
///
/// # Safety
/// `ptr` must come from [`alloc_block`] or [`realloc_block`] with exactly
/// this `size` (under the same block source), and must not be used
/// afterwards.
#[inline]
pub(crate) unsafe fn free_block(ptr: *mut u8, size: usize) {
    // Stale pointers into a released block then read the clobber pattern
    // (until the system reuses the memory), and stale check words of its
    // chunks cannot pass for freed chunks if the block comes back.
    #[cfg(feature = "checking")]
    // SAFETY: the caller gives the block back: its bytes are dead.
    unsafe {
        crate::checking::clobber(ptr, size)
    };
    #[cfg(feature = "std")]
    // SAFETY: caller contract.
    unsafe {
        crate::block_cache::put(ptr, size)
    };
    #[cfg(not(feature = "std"))]
    // SAFETY: caller contract.
    with_source(|s| unsafe { s.free(ptr, size) })
}

/// Resizes a block, possibly moving it; null on failure (the old block is
/// then untouched).
///
/// # Safety
/// `ptr`/`old_size` as for [`free_block`]; `new_size` must be non-zero.
#[inline]
// With `checking`, the checking layer resizes chunks itself.
#[cfg_attr(feature = "checking", allow(dead_code))]
pub(crate) unsafe fn realloc_block(ptr: *mut u8, old_size: usize, new_size: usize) -> *mut u8 {
    // Growth is a request like any other: the block cache makes room for
    // it first, so that it does not raise the peak.
    #[cfg(feature = "std")]
    if new_size > old_size {
        crate::block_cache::make_room(new_size - old_size);
    }
    // SAFETY: caller contract.
    with_source(|s| unsafe { s.realloc(ptr, old_size, new_size) })
}

/// Block growth is capped by the context's size: a new block is at most
/// `1 / GROWTH_DIVISOR` of what the context already holds (but never
/// below `init_block_size`), within PostgreSQL's doubling sequence
/// (`next`, which doubles up to `max_block_size`). 8 was chosen.
///
/// Doubling alone lets the newest, mostly empty block be half of all a
/// context holds. Replaying the shared PostgreSQL traces, the peak memory
/// held (relative to glibc malloc's) was, by divisor: 1 (pure doubling)
/// 1.34 / 1.01 / 1.46 (analytic / pgbench / plpgsql), 2: 1.49 / 0.85 /
/// 1.39, 4: 1.15 / 0.84 / 1.32, 8: 1.14 / 0.84 / 1.31. The cost is a few
/// more blocks per large context (about 30 instead of 8 to reach 1 MiB),
/// that is a few more `malloc` calls per megabyte.
pub(crate) const GROWTH_DIVISOR: usize = 8;

/// Size of the next block: PostgreSQL's doubling `next`, capped by a
/// fraction of `held` (never below `init`), rounded to whole KiB (whole
/// pages above 64 KiB).
#[inline]
pub(crate) fn capped_block_size(next: usize, init: usize, held: usize) -> usize {
    let cap = (held / GROWTH_DIVISOR).max(init);
    let size = next.min(cap);
    let unit = if size > 64 * 1024 { 4096 } else { 1024 };
    (size + unit - 1) & !(unit - 1)
}
