//! The "no contexts" baseline: every chunk is its own allocation from a
//! general-purpose allocator ([`SysAlloc`]: glibc malloc or mimalloc).
//!
//! A program without memory contexts has to free, one by one, every
//! allocation that a context reset or delete would have freed; so this
//! backend keeps what such a program would keep: per context the list of
//! its live chunks and its children ([`Tree`]), and per chunk its pointer
//! and alignment. That bookkeeping is part of the measured cost.
//!
//! Alignment: an `A` with an `align` field larger than the allocator's
//! natural alignment ([`SysAlloc::MIN_ALIGN`]) uses the aligned allocation
//! function, and an `R` of such a chunk keeps the alignment
//! ([`SysAlloc::realloc_aligned`]). `z` uses the zeroing allocation
//! function (`calloc`, `mi_zalloc`, or aligned allocation + `memset`).
//! Size-0 requests are valid (`malloc(0)` returns a unique pointer), and
//! an `R` to size 0 reallocates to 1 byte: glibc's `realloc(p, 0)` would
//! free the chunk.

use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use mcxt_trace::{ChunkId, CtxId, Flags};

use super::tree::Tree;
use super::{Backend, ValidTrace};

/// A general-purpose allocator: `malloc` and friends.
pub trait SysAlloc {
    /// Name in reports.
    const NAME: &'static str;
    /// Alignment every plain allocation has (16 on x86-64 for both).
    const MIN_ALIGN: usize;

    /// `malloc(size)`; null when out of memory.
    fn malloc(size: usize) -> *mut u8;
    /// `calloc(1, size)`; null when out of memory.
    fn zalloc(size: usize) -> *mut u8;
    /// `size` bytes aligned to `align` (a power of two), zeroed if `zero`.
    fn malloc_aligned(size: usize, align: usize, zero: bool) -> *mut u8;

    /// `realloc(p, size)` (`size` > 0); null (and `p` untouched) when out
    /// of memory.
    ///
    /// # Safety
    /// `p` is a live allocation of this allocator, not aligned beyond
    /// [`SysAlloc::MIN_ALIGN`]; on success only the result may be used.
    unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8;

    /// Reallocates keeping the alignment `align`: contents up to the
    /// smaller size are kept.
    ///
    /// # Safety
    /// `p` is a live allocation of this allocator made by
    /// [`SysAlloc::malloc_aligned`] with `align`; on success only the
    /// result may be used.
    unsafe fn realloc_aligned(p: *mut u8, size: usize, align: usize) -> *mut u8;

    /// `free(p)`.
    ///
    /// # Safety
    /// `p` is a live allocation of this allocator, not used afterwards.
    unsafe fn free(p: *mut u8);

    /// Bytes this allocator holds from the system (see [`crate::peak`]).
    fn held_bytes() -> u64;
}

/// What the backend keeps per live chunk.
#[derive(Clone, Copy, Debug)]
struct Slot {
    ptr: *mut u8,
    /// The `align` field of its `A` (0: default).
    align: u32,
}

/// The no-contexts backend over allocator `S` (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct NoContext<S: SysAlloc> {
    tree: Tree<Slot>,
    _alloc: PhantomData<S>,
}

#[cold]
#[inline(never)]
fn out_of_memory(name: &str, size: usize) -> ! {
    panic!("{name} replay: out of memory allocating {size} bytes")
}

impl<S: SysAlloc> NoContext<S> {
    #[inline(always)]
    fn get(size: usize, align: usize, zero: bool) -> *mut u8 {
        if align > S::MIN_ALIGN {
            S::malloc_aligned(size, align, zero)
        } else if zero {
            S::zalloc(size)
        } else {
            S::malloc(size)
        }
    }

    /// A null result: retry a size-0 request as 1 byte, else fail.
    #[cold]
    #[inline(never)]
    fn get_retry(size: usize, align: usize, zero: bool) -> *mut u8 {
        let p = if size == 0 {
            Self::get(1, align, zero)
        } else {
            ptr::null_mut()
        };
        if p.is_null() {
            out_of_memory(S::NAME, size)
        }
        p
    }

    /// The free of a dying chunk.
    ///
    /// # Safety
    /// As [`SysAlloc::free`].
    #[inline(always)]
    unsafe fn release(slot: Slot) {
        // SAFETY: caller contract.
        unsafe { S::free(slot.ptr) }
    }
}

impl<S: SysAlloc> Backend for NoContext<S> {
    const NAME: &'static str = S::NAME;
    const EXACT_PEAK: bool = false;

    fn new(trace: &ValidTrace) -> Self {
        NoContext {
            tree: Tree::new(
                trace.n_contexts,
                trace.n_chunks,
                Slot {
                    ptr: ptr::null_mut(),
                    align: 0,
                },
            ),
            _alloc: PhantomData,
        }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>, _spec: u32) {
        // SAFETY: the trace's ids (contract).
        unsafe { self.tree.create(ctx, parent) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline(always)]
    unsafe fn alloc(&mut self, chunk: ChunkId, ctx: CtxId, size: usize, flags: Flags, align: u32) {
        let mut p = Self::get(size, align as usize, flags.zero());
        if p.is_null() {
            p = Self::get_retry(size, align as usize, flags.zero());
        }
        // SAFETY: the trace's ids (contract).
        unsafe { self.tree.add_chunk(chunk, ctx, Slot { ptr: p, align }) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, _flags: Flags) {
        // SAFETY: a live chunk (contract).
        let slot = unsafe { self.tree.payload(chunk) };
        let size = size.max(1);
        // SAFETY: the chunk is live (contract) and was allocated with
        // `slot.align`; only the new pointer is kept.
        let p = unsafe {
            if slot.align as usize > S::MIN_ALIGN {
                S::realloc_aligned(slot.ptr, size, slot.align as usize)
            } else {
                S::realloc(slot.ptr, size)
            }
        };
        if p.is_null() {
            out_of_memory(S::NAME, size);
        }
        // SAFETY: a live chunk (contract).
        unsafe { self.tree.set_payload(chunk, Slot { ptr: p, ..slot }) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline(always)]
    unsafe fn free(&mut self, chunk: ChunkId) {
        // SAFETY: the chunk is live and never used again (contract).
        unsafe { Self::release(self.tree.remove_chunk(chunk)) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline(always)]
    unsafe fn reset(&mut self, ctx: CtxId) {
        // SAFETY: a live context (contract); the tree hands over each
        // live chunk that dies, once, and the trace never uses it again.
        unsafe { self.tree.reset(ctx, |_, s| Self::release(s)) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn reset_only(&mut self, ctx: CtxId) {
        // SAFETY: a live context (contract); the tree hands over each
        // live chunk that dies, once, and the trace never uses it again.
        unsafe { self.tree.reset_only(ctx, |_, s| Self::release(s)) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn delete_children(&mut self, ctx: CtxId) {
        // SAFETY: a live context (contract); the tree hands over each
        // live chunk that dies, once, and the trace never uses it again.
        unsafe { self.tree.delete_children(ctx, |_, s| Self::release(s)) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn delete(&mut self, ctx: CtxId) {
        // SAFETY: a live context (contract); the tree hands over each
        // live chunk that dies, once, and the trace never uses it again.
        unsafe { self.tree.delete(ctx, |_, s| Self::release(s)) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        // SAFETY: live contexts (contract).
        unsafe { self.tree.set_parent(ctx, parent) }
    }

    fn finish(&mut self) {
        self.tree.delete_all(|_, s| {
            // SAFETY: every chunk still in the tree is live (the backend
            // contract held for every call so far) and is freed once here.
            unsafe { Self::release(s) }
        });
    }

    fn held_bytes(&self) -> u64 {
        S::held_bytes()
    }

    fn chunk_ptr(&self, chunk: ChunkId) -> Option<NonNull<u8>> {
        NonNull::new(self.tree.slot_payload(chunk)?.ptr)
    }
}
