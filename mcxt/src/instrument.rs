//! Telling Valgrind (feature `valgrind`) and AddressSanitizer (feature
//! `asan`) which bytes of mcxt's blocks a caller may touch.
//!
//! # Design
//!
//! To memcheck and ASan, a block of mcxt is one heap allocation: a read of
//! a freed chunk inside a live block looks legal to them. These hooks
//! describe the chunks, as PostgreSQL does under `USE_VALGRIND`:
//!
//! * **Valgrind**: every context is a *memory pool*
//!   (`VALGRIND_CREATE_MEMPOOL`), every chunk a pool allocation of its
//!   requested size (`VALGRIND_MEMPOOL_ALLOC`); `free` ends it
//!   (`VALGRIND_MEMPOOL_FREE`, the bytes become inaccessible), a reset or
//!   delete ends them all (the pool is destroyed and, for a reset, made
//!   anew). memcheck then reports "Invalid read ... inside a block of size
//!   N free'd" for a read of a freed or reset chunk, and "uninitialised
//!   value" for memory used before it was written.
//! * **ASan**: a freed chunk's bytes are *poisoned*
//!   (`__asan_poison_memory_region`), a new chunk's requested bytes
//!   unpoisoned, so ASan reports "use-after-poison" for a read of a freed
//!   chunk, and the bytes past the requested size inside the chunk stay
//!   poisoned when they were (a write past the end is caught too).
//!
//! The kinds themselves read and write inside chunk memory at a few places
//! (the free-list link of a freed chunk, the headers carved into a block
//! after a reset): there they first call [`make_accessible`].
//!
//! The client requests are the magic instruction sequence of
//! `valgrind.h` (a no-op outside Valgrind, a few cycles); they are
//! implemented for x86-64 and compile to nothing on other targets. The ASan
//! hooks are the runtime's functions, present when the program is built
//! with `-Zsanitizer=address` (nightly).

use crate::tree::ContextHeader;

#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
mod valgrind {
    //! The client-request ABI of valgrind.h (amd64).

    pub(super) const CREATE_MEMPOOL: usize = 0x1303;
    pub(super) const DESTROY_MEMPOOL: usize = 0x1304;
    pub(super) const MEMPOOL_ALLOC: usize = 0x1305;
    pub(super) const MEMPOOL_FREE: usize = 0x1306;
    pub(super) const MEMPOOL_CHANGE: usize = 0x1309;
    /// memcheck's tool base: ('M' << 24) | ('C' << 16).
    const MEMCHECK: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16;
    pub(super) const MAKE_MEM_NOACCESS: usize = MEMCHECK;
    pub(super) const MAKE_MEM_DEFINED: usize = MEMCHECK + 2;

    /// Issues a client request; returns 0 when not under Valgrind.
    ///
    /// The "special instruction preamble" rotates rdi by 128 bits in all
    /// (leaving it unchanged) and `xchg rbx, rbx` is a no-op on real
    /// hardware; Valgrind recognises the sequence, reads the six words at
    /// rax and writes its answer to rdx.
    #[inline(always)]
    pub(super) fn request(code: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize {
        let args: [usize; 6] = [code, a1, a2, a3, a4, 0];
        let result: usize;
        // SAFETY: the sequence changes only flags and rdx (declared).
        unsafe {
            core::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") 0usize => result,
                options(nostack, readonly),
            );
        }
        result
    }
}

#[cfg(feature = "asan")]
mod asan {
    extern "C" {
        pub(super) fn __asan_poison_memory_region(addr: *const u8, size: usize);
        pub(super) fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
    }
}

/// A context was created: it becomes a pool.
#[inline(always)]
pub(crate) fn context_created(ctx: *mut ContextHeader) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    valgrind::request(valgrind::CREATE_MEMPOOL, ctx as usize, 0, 0, 0);
    let _ = ctx;
}

/// A context was reset: all its chunks end.
#[inline(always)]
pub(crate) fn context_reset(ctx: *mut ContextHeader) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    {
        valgrind::request(valgrind::DESTROY_MEMPOOL, ctx as usize, 0, 0, 0);
        valgrind::request(valgrind::CREATE_MEMPOOL, ctx as usize, 0, 0, 0);
    }
    let _ = ctx;
}

/// A context is being deleted: its pool ends.
#[inline(always)]
pub(crate) fn context_deleted(ctx: *mut ContextHeader) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    valgrind::request(valgrind::DESTROY_MEMPOOL, ctx as usize, 0, 0, 0);
    let _ = ctx;
}

/// A chunk of `size` requested bytes was handed out.
#[cfg_attr(not(any(feature = "valgrind", feature = "asan")), allow(dead_code))]
#[inline(always)]
pub(crate) fn chunk_allocated(ctx: *mut ContextHeader, p: *mut u8, size: usize) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    valgrind::request(valgrind::MEMPOOL_ALLOC, ctx as usize, p as usize, size, 0);
    #[cfg(feature = "asan")]
    // SAFETY: the runtime only updates its shadow memory.
    unsafe {
        asan::__asan_unpoison_memory_region(p, size)
    };
    let _ = (ctx, p, size);
}

/// A chunk of `capacity` usable bytes was freed.
#[cfg_attr(not(any(feature = "valgrind", feature = "asan")), allow(dead_code))]
#[inline(always)]
pub(crate) fn chunk_freed(ctx: *mut ContextHeader, p: *mut u8, capacity: usize) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    valgrind::request(valgrind::MEMPOOL_FREE, ctx as usize, p as usize, 0, 0);
    #[cfg(feature = "asan")]
    // SAFETY: the runtime only updates its shadow memory.
    unsafe {
        asan::__asan_poison_memory_region(p, capacity)
    };
    let _ = (ctx, p, capacity);
}

/// A chunk was resized in place to `size` requested bytes.
#[cfg_attr(not(any(feature = "valgrind", feature = "asan")), allow(dead_code))]
#[inline(always)]
pub(crate) fn chunk_resized(ctx: *mut ContextHeader, p: *mut u8, size: usize) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    {
        valgrind::request(
            valgrind::MEMPOOL_CHANGE,
            ctx as usize,
            p as usize,
            p as usize,
            size,
        );
        // The change updates the record, not the bytes' state: a chunk
        // grown in place over memory closed by a reset must be opened.
        valgrind::request(valgrind::MAKE_MEM_DEFINED, p as usize, size, 0, 0);
    }
    #[cfg(feature = "asan")]
    // SAFETY: the runtime only updates its shadow memory.
    unsafe {
        asan::__asan_unpoison_memory_region(p, size)
    };
    let _ = (ctx, p, size);
}

/// The allocator itself is about to use `len` bytes at `p` that may lie in
/// a freed chunk (a free-list link, headers carved after a reset).
#[inline(always)]
pub(crate) fn make_accessible(p: *mut u8, len: usize) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    valgrind::request(valgrind::MAKE_MEM_DEFINED, p as usize, len, 0, 0);
    #[cfg(feature = "asan")]
    // SAFETY: the runtime only updates its shadow memory.
    unsafe {
        asan::__asan_unpoison_memory_region(p, len)
    };
    let _ = (p, len);
}

/// A kept block's used part `[p, p + len)` is being rewound for reuse
/// (reset, an emptied Generation block): made accessible to the allocator
/// again and, with `checking`, clobbered.
///
/// # Safety
/// `p[..len]` is memory of a block of the caller's, with no live chunk.
#[inline(always)]
pub(crate) unsafe fn rewound(p: *mut u8, len: usize) {
    make_accessible(p, len);
    #[cfg(feature = "checking")]
    // SAFETY: caller contract.
    unsafe {
        crate::checking::clobber(p, len)
    };
    // The old chunks stay out of bounds for callers: a read of a chunk
    // from before the reset is reported. The allocator opens each header
    // as it carves (`chunk::write_header`), the hooks each new chunk.
    make_inaccessible(p, len);
}

/// `[p, p + len)` holds no chunk: callers may not touch it.
#[inline(always)]
pub(crate) fn make_inaccessible(p: *mut u8, len: usize) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    valgrind::request(valgrind::MAKE_MEM_NOACCESS, p as usize, len, 0, 0);
    #[cfg(feature = "asan")]
    // SAFETY: the runtime only updates its shadow memory.
    unsafe {
        asan::__asan_poison_memory_region(p, len)
    };
    let _ = (p, len);
}
