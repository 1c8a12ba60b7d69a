//! mimalloc ([`Mimalloc`]: `mi_malloc`, `mi_zalloc`, `mi_malloc_aligned`,
//! `mi_realloc`, `mi_realloc_aligned`, `mi_free`) and its statistics
//! (`mi_process_info`, `mi_collect`). mimalloc is linked in as a library;
//! the program's own allocator stays glibc.

use libmimalloc_sys as mi;

use super::nocontext::{NoContext, SysAlloc};

/// mimalloc's `mi_*` functions.
#[derive(Debug)]
pub struct Mimalloc;

/// The "no contexts" backend over mimalloc.
pub type MimallocBackend = NoContext<Mimalloc>;

/// Bytes mimalloc has committed from the kernel (`mi_process_info`'s
/// `current_commit`): its segments and pages in use or cached, not yet
/// decommitted.
pub fn mimalloc_committed_bytes() -> u64 {
    let (mut elapsed, mut user, mut sys, mut rss, mut peak_rss) = (0, 0, 0, 0, 0);
    let (mut commit, mut peak_commit, mut faults) = (0, 0, 0);
    // SAFETY: every argument is a valid out-pointer to a usize.
    unsafe {
        mi::mi_process_info(
            &mut elapsed,
            &mut user,
            &mut sys,
            &mut rss,
            &mut peak_rss,
            &mut commit,
            &mut peak_commit,
            &mut faults,
        )
    };
    commit as u64
}

/// `mi_collect(true)`: returns mimalloc's free cached memory to the kernel,
/// so that a measuring pass starts without slack.
pub fn mimalloc_collect() {
    // SAFETY: mi_collect has no preconditions.
    unsafe { mi::mi_collect(true) }
}

impl SysAlloc for Mimalloc {
    const NAME: &'static str = "mimalloc";
    const MIN_ALIGN: usize = 16;

    #[inline(always)]
    fn malloc(size: usize) -> *mut u8 {
        // SAFETY: mi_malloc has no preconditions.
        unsafe { mi::mi_malloc(size).cast() }
    }

    #[inline(always)]
    fn zalloc(size: usize) -> *mut u8 {
        // SAFETY: mi_zalloc has no preconditions.
        unsafe { mi::mi_zalloc(size).cast() }
    }

    #[inline]
    fn malloc_aligned(size: usize, align: usize, zero: bool) -> *mut u8 {
        // SAFETY: no preconditions; `align` is a power of two.
        unsafe {
            if zero {
                mi::mi_zalloc_aligned(size, align).cast()
            } else {
                mi::mi_malloc_aligned(size, align).cast()
            }
        }
    }

    /// # Safety
    /// As [`SysAlloc::realloc`].
    #[inline]
    unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { mi::mi_realloc(p.cast(), size).cast() }
    }

    /// # Safety
    /// As [`SysAlloc::realloc_aligned`].
    #[inline]
    unsafe fn realloc_aligned(p: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: caller contract: `p` is a live mimalloc allocation.
        unsafe { mi::mi_realloc_aligned(p.cast(), size, align).cast() }
    }

    /// # Safety
    /// As [`SysAlloc::free`].
    #[inline(always)]
    unsafe fn free(p: *mut u8) {
        // SAFETY: caller contract.
        unsafe { mi::mi_free(p.cast()) }
    }

    fn held_bytes() -> u64 {
        mimalloc_committed_bytes()
    }
}
