//! glibc's allocator ([`Glibc`]: `malloc`, `calloc`, `posix_memalign`,
//! `realloc`, `free`) and its statistics (`mallinfo2`, `malloc_trim`).

use std::ptr;

use super::nocontext::{NoContext, SysAlloc};

/// glibc `malloc` and friends.
#[derive(Debug)]
pub struct Glibc;

/// The "no contexts" backend over glibc malloc.
pub type MallocBackend = NoContext<Glibc>;

/// Bytes glibc's allocator holds from the kernel: `mallinfo2()`'s
/// `arena` (bytes obtained with `brk`/`mmap` for the heaps, in use or free
/// inside them) plus `hblkhd` (bytes in separately `mmap`ed large blocks).
/// Summed over all arenas, so other threads' allocations count too.
pub fn glibc_held_bytes() -> u64 {
    // SAFETY: mallinfo2 has no preconditions; it only reads allocator state
    // under its locks.
    let mi = unsafe { libc::mallinfo2() };
    (mi.arena + mi.hblkhd) as u64
}

/// Bytes of glibc heap memory currently handed out to the program
/// (`mallinfo2()`'s `uordblks + hblkhd`): allocated and not yet freed.
pub fn glibc_in_use_bytes() -> u64 {
    // SAFETY: as in `glibc_held_bytes`.
    let mi = unsafe { libc::mallinfo2() };
    (mi.uordblks + mi.hblkhd) as u64
}

/// `malloc_trim(0)`: gives free memory at the top of the heaps back to the
/// kernel, so that a measuring pass starts from a heap without slack.
pub fn glibc_trim() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

impl SysAlloc for Glibc {
    const NAME: &'static str = "malloc";
    const MIN_ALIGN: usize = 16;

    #[inline(always)]
    fn malloc(size: usize) -> *mut u8 {
        // SAFETY: malloc has no preconditions.
        unsafe { libc::malloc(size).cast() }
    }

    #[inline(always)]
    fn zalloc(size: usize) -> *mut u8 {
        // SAFETY: calloc has no preconditions.
        unsafe { libc::calloc(1, size).cast() }
    }

    #[inline]
    fn malloc_aligned(size: usize, align: usize, zero: bool) -> *mut u8 {
        let mut p: *mut libc::c_void = ptr::null_mut();
        // SAFETY: `p` is a valid out-pointer; `align` is a power of two and
        // a multiple of `sizeof(void *)` (it exceeds MIN_ALIGN).
        let rc = unsafe { libc::posix_memalign(&mut p, align, size) };
        if rc != 0 {
            return ptr::null_mut();
        }
        if zero && !p.is_null() {
            // SAFETY: a fresh allocation of `size` bytes.
            unsafe { p.cast::<u8>().write_bytes(0, size) };
        }
        p.cast()
    }

    /// # Safety
    /// As [`SysAlloc::realloc`].
    #[inline]
    unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { libc::realloc(p.cast(), size).cast() }
    }

    /// glibc has no aligned realloc: when the chunk's usable size does not
    /// already hold `size` bytes, allocate aligned, copy, free.
    ///
    /// # Safety
    /// As [`SysAlloc::realloc_aligned`].
    #[inline(never)]
    unsafe fn realloc_aligned(p: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: `p` is a live glibc allocation (caller contract).
        let usable = unsafe { libc::malloc_usable_size(p.cast()) };
        if size <= usable {
            return p;
        }
        let q = Self::malloc_aligned(size, align, false);
        if q.is_null() {
            return q;
        }
        // SAFETY: `p` holds `usable` bytes, `q` holds `size` > `usable`
        // bytes; two distinct live allocations. `p` is freed once.
        unsafe {
            ptr::copy_nonoverlapping(p, q, usable);
            libc::free(p.cast());
        }
        q
    }

    /// # Safety
    /// As [`SysAlloc::free`].
    #[inline(always)]
    unsafe fn free(p: *mut u8) {
        // SAFETY: caller contract.
        unsafe { libc::free(p.cast()) }
    }

    fn held_bytes() -> u64 {
        glibc_held_bytes()
    }
}
