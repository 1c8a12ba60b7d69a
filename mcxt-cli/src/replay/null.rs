//! The null backend: receives every operation without allocating
//! anything, storing a dummy pointer per chunk, to measure what the replay
//! loop itself costs: reading the program's words, telling the operations
//! apart (see [`super::program`]) and one table store per `A`/`R`/`F`, as
//! the other backends have (their chunk tables). The table report
//! subtracts it from the other allocators' times (`net ns/op`).

use std::ptr::{self, NonNull};

use mcxt_trace::{ChunkId, CtxId, Flags};

use super::table::IdTable;
use super::{Backend, ValidTrace};

/// The null backend (see the [module docs](self)).
#[derive(Debug)]
pub struct NullBackend {
    chunks: IdTable<*mut u8>,
}

impl Backend for NullBackend {
    const NAME: &'static str = "null";
    const EXACT_PEAK: bool = false;

    fn new(trace: &ValidTrace) -> Self {
        NullBackend {
            chunks: IdTable::new(trace.n_chunks as usize, ptr::null_mut()),
        }
    }

    /// # Safety
    /// Nothing (no memory is touched); `unsafe` for the trait.
    #[inline(always)]
    unsafe fn create(&mut self, _ctx: CtxId, _parent: Option<CtxId>, _spec: u32) {}

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods): the
    /// chunk id is below the trace's chunk count.
    #[inline(always)]
    unsafe fn alloc(&mut self, chunk: ChunkId, ctx: CtxId, size: usize, _: Flags, _: u32) {
        // SAFETY: caller contract.
        unsafe { *self.chunks.at_mut(chunk) = ptr::without_provenance_mut(size ^ ctx as usize) }
    }

    /// # Safety
    /// As [`NullBackend::alloc`].
    #[inline(always)]
    unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, _: Flags) {
        // SAFETY: caller contract.
        unsafe { *self.chunks.at_mut(chunk) = ptr::without_provenance_mut(size) }
    }

    /// # Safety
    /// As [`NullBackend::alloc`].
    #[inline(always)]
    unsafe fn free(&mut self, chunk: ChunkId) {
        // SAFETY: caller contract.
        unsafe { *self.chunks.at_mut(chunk) = ptr::null_mut() }
    }

    /// # Safety
    /// Nothing (no memory is touched); `unsafe` for the trait.
    #[inline(always)]
    unsafe fn reset(&mut self, _ctx: CtxId) {}

    /// # Safety
    /// Nothing (no memory is touched); `unsafe` for the trait.
    #[inline(always)]
    unsafe fn reset_only(&mut self, _ctx: CtxId) {}

    /// # Safety
    /// Nothing (no memory is touched); `unsafe` for the trait.
    #[inline(always)]
    unsafe fn delete_children(&mut self, _ctx: CtxId) {}

    /// # Safety
    /// Nothing (no memory is touched); `unsafe` for the trait.
    #[inline(always)]
    unsafe fn delete(&mut self, _ctx: CtxId) {}

    /// # Safety
    /// Nothing (no memory is touched); `unsafe` for the trait.
    #[inline(always)]
    unsafe fn set_parent(&mut self, _ctx: CtxId, _parent: Option<CtxId>) {}

    fn finish(&mut self) {}

    fn held_bytes(&self) -> u64 {
        0
    }

    fn chunk_ptr(&self, _chunk: ChunkId) -> Option<NonNull<u8>> {
        None
    }
}
