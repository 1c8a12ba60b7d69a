//! Blocks from the system: the one place mcxt asks the global allocator for
//! memory. Every context block, dedicated large-chunk block and context
//! header comes from here and goes back here, so fault injection and leak
//! counting need to watch only this module.

use alloc::alloc::{alloc, dealloc, realloc, Layout};

/// Alignment of every block. 16 matches what `malloc` gives, so the global
/// allocator takes its fastest path.
pub(crate) const BLOCK_ALIGN: usize = 16;

#[inline]
fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, BLOCK_ALIGN).ok()
}

/// Allocates `size` bytes (size > 0), or null.
///
/// # Safety
/// `size` must be non-zero.
#[inline]
pub(crate) unsafe fn alloc_block(size: usize) -> *mut u8 {
    debug_assert!(size > 0);
    match layout(size) {
        // SAFETY: the layout has a non-zero size (caller contract).
        Some(l) => unsafe { alloc(l) },
        None => core::ptr::null_mut(),
    }
}

/// Returns a block.
///
/// # Safety
/// `ptr` must come from [`alloc_block`] or [`realloc_block`] with exactly
/// this `size`, and must not be used afterwards.
#[inline]
pub(crate) unsafe fn free_block(ptr: *mut u8, size: usize) {
    // SAFETY: the same size and alignment the block was allocated with, so
    // the layout is valid and matches (caller contract).
    unsafe { dealloc(ptr, Layout::from_size_align_unchecked(size, BLOCK_ALIGN)) }
}

/// Resizes a block, possibly moving it; null on failure (the old block is
/// then untouched).
///
/// # Safety
/// `ptr`/`old_size` as for [`free_block`]; `new_size` must be non-zero.
#[inline]
pub(crate) unsafe fn realloc_block(ptr: *mut u8, old_size: usize, new_size: usize) -> *mut u8 {
    if layout(new_size).is_none() {
        return core::ptr::null_mut();
    }
    // SAFETY: `ptr` was allocated with this layout (caller contract) and the
    // new size was checked to form a valid layout with the same alignment.
    unsafe {
        realloc(
            ptr,
            Layout::from_size_align_unchecked(old_size, BLOCK_ALIGN),
            new_size,
        )
    }
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
