//! The raw API: PostgreSQL's, pointer in, pointer out.
//!
//! [`MemoryContext`] is a copyable handle to a context; every operation on
//! it is `unsafe` because the handle may outlive the context. [`free`],
//! [`realloc`], [`chunk_context`] and [`chunk_space`] take only the chunk
//! pointer: its header leads to the owning context and its kind.
//!
//! This layer is what the C ABI and the trace replayer use. Rust code should
//! prefer [`Context`](crate::Context), whose lifetimes make misuse a compile
//! error.
//!
//! ```
//! use mcxt::raw::{self, MemoryContext};
//! use mcxt::AllocSetSizes;
//! // SAFETY: every pointer is used while its context lives, and freed once.
//! unsafe {
//!     let top = MemoryContext::new_alloc_set(None, "top", AllocSetSizes::DEFAULT).unwrap();
//!     let query = MemoryContext::new_alloc_set(Some(top), "query", AllocSetSizes::SMALL).unwrap();
//!     let p = query.alloc(100).unwrap();
//!     p.as_ptr().write_bytes(7, 100);
//!     let p = raw::realloc(p, 400).unwrap();
//!     assert_eq!(*p.as_ptr().add(99), 7);
//!     assert_eq!(raw::chunk_context(p).unwrap(), query);
//!     raw::free(p).unwrap();
//!     top.reset(); // deletes `query` too
//!     top.delete();
//! }
//! ```

use crate::aligned;
use crate::aset::{self, AllocSetSizes};
use crate::chunk::{read_header, Header, KindId, CHUNK_HDR_SIZE};
use crate::error::{AllocFlags, Error, ErrorKind};
use crate::stats::{self, Counters, StatsSnapshot};
use crate::tree::{self, ContextHeader, ResetCallback};
use crate::ContextKind;
use crate::{bump, generation, slab, ContextSpec};
use alloc::boxed::Box;
use core::ptr::{self, NonNull};

/// A handle to a context: PostgreSQL's `MemoryContext`.
///
/// It is a plain pointer: copying it is free and it does not keep the
/// context alive. All methods are `unsafe` with one common contract:
/// **the context must be alive** (created and not yet deleted, directly or
/// through an ancestor's reset or delete), and must not be used by another
/// thread at the same time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(transparent)]
pub struct MemoryContext(NonNull<ContextHeader>);

impl MemoryContext {
    #[cfg(feature = "std")]
    #[inline(always)]
    pub(crate) fn from_header(h: NonNull<ContextHeader>) -> MemoryContext {
        MemoryContext(h)
    }

    #[inline(always)]
    pub(crate) fn header(self) -> *mut ContextHeader {
        self.0.as_ptr()
    }

    /// The raw pointer, for FFI.
    pub fn as_ptr(self) -> *mut core::ffi::c_void {
        self.0.as_ptr().cast()
    }

    /// Rebuilds a handle from [`as_ptr`](Self::as_ptr).
    ///
    /// # Safety
    /// `ptr` must come from `as_ptr` of a live context.
    pub unsafe fn from_ptr(ptr: NonNull<core::ffi::c_void>) -> MemoryContext {
        MemoryContext(ptr.cast())
    }

    /// Creates an AllocSet context (`AllocSetContextCreate`), as a child of
    /// `parent` or as a new root.
    ///
    /// # Safety
    /// `parent`, if given, must be alive.
    pub unsafe fn new_alloc_set(
        parent: Option<MemoryContext>,
        name: &'static str,
        sizes: AllocSetSizes,
    ) -> Result<MemoryContext, Error> {
        let parent = parent.map_or(ptr::null_mut(), |p| p.header());
        if !parent.is_null() && !usable(parent, "create a child of") {
            return Err(deleted(0));
        }
        // SAFETY: parent alive (caller contract).
        let set = unsafe { aset::create(parent, name, sizes)? };
        #[cfg(feature = "checking")]
        crate::checking::register(set.cast());
        crate::instrument::context_created(set.cast());
        // SAFETY: `create` never returns null.
        Ok(MemoryContext(unsafe { NonNull::new_unchecked(set.cast()) }))
    }

    /// Creates a context of any kind (`AllocSetContextCreate`,
    /// `GenerationContextCreate`, `SlabContextCreate`, `BumpContextCreate`),
    /// as a child of `parent` or as a new root.
    ///
    /// # Safety
    /// `parent`, if given, must be alive.
    pub unsafe fn create(
        parent: Option<MemoryContext>,
        name: &'static str,
        spec: ContextSpec,
    ) -> Result<MemoryContext, Error> {
        let parent = parent.map_or(ptr::null_mut(), |p| p.header());
        if !parent.is_null() && !usable(parent, "create a child of") {
            return Err(deleted(0));
        }
        // SAFETY: parent alive (caller contract).
        let ctx: *mut ContextHeader = unsafe {
            match spec {
                ContextSpec::AllocSet(sizes) => aset::create(parent, name, sizes)?.cast(),
                ContextSpec::Generation(sizes) => generation::create(parent, name, sizes)?.cast(),
                ContextSpec::Slab {
                    block_size,
                    chunk_size,
                } => slab::create(parent, name, block_size, chunk_size)?.cast(),
                ContextSpec::Bump(sizes) => bump::create(parent, name, sizes)?.cast(),
            }
        };
        #[cfg(feature = "checking")]
        crate::checking::register(ctx);
        crate::instrument::context_created(ctx);
        // SAFETY: creators never return null.
        Ok(MemoryContext(unsafe { NonNull::new_unchecked(ctx) }))
    }

    /// Allocates `size` bytes (`MemoryContextAlloc`). Errors: size over
    /// [`MAX_ALLOC_SIZE`](crate::MAX_ALLOC_SIZE), out of memory, limit
    /// reached, critical section.
    ///
    /// # Safety
    /// The context must be alive.
    #[inline(always)]
    pub unsafe fn alloc(self, size: usize) -> Result<NonNull<u8>, Error> {
        // SAFETY: caller contract.
        unsafe { alloc_in(self.header(), size, AllocFlags::empty()) }
    }

    /// Allocates `size` zeroed bytes (`MemoryContextAllocZero`).
    ///
    /// # Safety
    /// The context must be alive.
    #[inline]
    pub unsafe fn alloc_zero(self, size: usize) -> Result<NonNull<u8>, Error> {
        // SAFETY: caller contract; the chunk holds at least `size` bytes.
        unsafe {
            let p = alloc_in(self.header(), size, AllocFlags::empty())?;
            p.as_ptr().write_bytes(0, size);
            Ok(p)
        }
    }

    /// Allocates with flags (`MemoryContextAllocExtended`): `HUGE` allows
    /// sizes up to [`MAX_ALLOC_HUGE_SIZE`](crate::MAX_ALLOC_HUGE_SIZE),
    /// `ZERO` zeroes, `NO_OOM` turns out-of-memory and limit errors into
    /// `Ok(None)`.
    ///
    /// # Safety
    /// The context must be alive.
    #[inline]
    pub unsafe fn alloc_extended(
        self,
        size: usize,
        flags: AllocFlags,
    ) -> Result<Option<NonNull<u8>>, Error> {
        // SAFETY: caller contract.
        let r = unsafe { alloc_in(self.header(), size, flags) };
        finish_extended(r, size, flags)
    }

    /// Allocates `size` bytes aligned to `align`, a power of two
    /// (`MemoryContextAllocAligned`). `free`, `realloc`, `chunk_context`
    /// and `chunk_space` work on the returned pointer; `realloc` keeps the
    /// alignment.
    ///
    /// # Safety
    /// The context must be alive.
    pub unsafe fn alloc_aligned(
        self,
        size: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<Option<NonNull<u8>>, Error> {
        if !usable(self.header(), "alloc") {
            return Err(deleted(size));
        }
        // SAFETY: caller contract.
        let r = unsafe { aligned::alloc(self.header(), size, align, flags) };
        finish_extended(r, size, flags)
    }

    /// `MemoryContextReset`: deletes all descendants, then frees every chunk
    /// (keeping the first block). Free when nothing was allocated since the
    /// last reset.
    ///
    /// # Safety
    /// Alive; no chunk of the context or of a descendant, and no descendant
    /// handle, may be used afterwards.
    #[inline]
    pub unsafe fn reset(self) {
        if !usable(self.header(), "reset") {
            return;
        }
        // SAFETY: caller contract.
        unsafe { tree::reset(self.header()) }
    }

    /// `MemoryContextResetOnly`: frees every chunk; children are untouched.
    ///
    /// # Safety
    /// As [`reset`](Self::reset), for this context's chunks.
    pub unsafe fn reset_only(self) {
        if !usable(self.header(), "reset") {
            return;
        }
        // SAFETY: caller contract.
        unsafe { tree::reset_only(self.header()) }
    }

    /// `MemoryContextResetChildren`: reset-only every descendant.
    ///
    /// # Safety
    /// No chunk of a descendant may be used afterwards.
    pub unsafe fn reset_children(self) {
        if !usable(self.header(), "reset children of") {
            return;
        }
        // SAFETY: caller contract.
        unsafe { tree::reset_children(self.header()) }
    }

    /// `MemoryContextDelete`: deletes the context and its whole subtree,
    /// children first, running their callbacks.
    ///
    /// # Safety
    /// Nothing of the subtree (handles, chunks) may be used afterwards.
    pub unsafe fn delete(self) {
        if !usable(self.header(), "delete") {
            return;
        }
        // SAFETY: caller contract.
        unsafe { tree::delete(self.header()) }
    }

    /// `MemoryContextDeleteChildren`.
    ///
    /// # Safety
    /// Nothing of the descendants may be used afterwards.
    pub unsafe fn delete_children(self) {
        if !usable(self.header(), "delete children of") {
            return;
        }
        // SAFETY: caller contract.
        unsafe { tree::delete_children(self.header()) }
    }

    /// `MemoryContextSetParent`: moves the context (and its subtree) under
    /// `parent`, or makes it a root. Refuses, changing nothing, a move that
    /// would make a cycle or take the new ancestors past a limit.
    ///
    /// # Safety
    /// Both alive.
    pub unsafe fn set_parent(self, parent: Option<MemoryContext>) -> Result<(), Error> {
        if !usable(self.header(), "set_parent")
            || parent.is_some_and(|p| !usable(p.header(), "set_parent (new parent)"))
        {
            return Err(deleted(0));
        }
        // SAFETY: caller contract.
        unsafe {
            tree::set_parent(
                self.header(),
                parent.map_or(ptr::null_mut(), |p| p.header()),
            )
        }
    }

    /// The parent, or `None` for a root (`MemoryContextGetParent`).
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn parent(self) -> Option<MemoryContext> {
        // SAFETY: caller contract.
        NonNull::new(unsafe { (*self.header()).parent }).map(MemoryContext)
    }

    /// `MemoryContextIsEmpty`: no children and nothing allocated since the
    /// last reset.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn is_empty(self) -> bool {
        // SAFETY: caller contract.
        unsafe { tree::is_empty(self.header()) }
    }

    /// `MemoryContextMemAllocated`: bytes held from the system by this
    /// context, or by its whole subtree when `recurse` (O(1) either way).
    ///
    /// # Safety
    /// Alive.
    #[inline]
    pub unsafe fn mem_allocated(self, recurse: bool) -> usize {
        // SAFETY: caller contract.
        unsafe {
            let h = self.header();
            if recurse {
                (*h).subtree_bytes
            } else {
                (*h).own_bytes
            }
        }
    }

    /// Sets (or with `None` removes) a byte limit over the subtree. It is
    /// checked whenever the subtree acquires a block: an allocation that
    /// would take this context's subtree past `limit` fails with
    /// [`ErrorKind::LimitExceeded`]. A limit below current usage only
    /// stops growth.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn set_limit(self, limit: Option<usize>) {
        // SAFETY: caller contract.
        unsafe { tree::set_limit(self.header(), limit.unwrap_or(usize::MAX)) }
    }

    /// The byte limit, if any.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn limit(self) -> Option<usize> {
        // SAFETY: caller contract.
        let l = unsafe { (*self.header()).limit };
        (l != usize::MAX).then_some(l)
    }

    /// The context's name.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn name(self) -> &'static str {
        // SAFETY: caller contract.
        unsafe { (*self.header()).name }
    }

    /// The context's identifier, if set. The returned string lives until
    /// the identifier is changed or the context deleted.
    ///
    /// # Safety
    /// Alive, and the result must not be used past those events.
    pub unsafe fn ident<'a>(self) -> Option<&'a str> {
        // SAFETY: caller contract.
        unsafe { (*self.header()).ident.as_deref() }
    }

    /// Sets (copying it) or clears the identifier
    /// (`MemoryContextSetIdentifier`), shown in stats after the name.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn set_ident(self, ident: Option<&str>) {
        // SAFETY: caller contract.
        unsafe { (*self.header()).ident = ident.map(Box::from) }
    }

    /// The context kind.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn kind(self) -> ContextKind {
        // SAFETY: caller contract.
        unsafe { (*self.header()).kind }
    }

    /// Registers a callback run at the next reset or at delete, newest
    /// first (`MemoryContextRegisterResetCallback`). Marks the context
    /// non-empty so the next reset is not skipped.
    ///
    /// # Safety
    /// Alive; `cb` must stay valid and unmoved until it has run or been
    /// unregistered, and the callback must not delete, reset or reparent
    /// the contexts being reset or deleted when it runs.
    pub unsafe fn register_reset_callback(self, cb: NonNull<ResetCallback>) {
        // SAFETY: caller contract.
        unsafe { tree::register_callback(self.header(), cb.as_ptr()) }
    }

    /// Removes a registered callback without running it; false if it was
    /// not registered (PostgreSQL 19's `MemoryContextUnregisterResetCallback`).
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn unregister_reset_callback(self, cb: NonNull<ResetCallback>) -> bool {
        // SAFETY: caller contract.
        unsafe { tree::unregister_callback(self.header(), cb.as_ptr()) }
    }

    /// Allows or forbids allocation in this context inside critical
    /// sections (`MemoryContextAllowInCriticalSection`). Children created
    /// later inherit it.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn allow_in_critical_section(self, allow: bool) {
        // SAFETY: caller contract.
        unsafe { (*self.header()).allow_in_critical = allow }
    }

    /// Bump contexts: lets a reset keep up to `max_bytes` of the
    /// context's blocks (newest first) for reuse, instead of returning
    /// them to the system; 0, the default, keeps none beyond the first
    /// block (PostgreSQL's behaviour). A context filled and reset in a
    /// loop then stops paying a `malloc`/`free` pair per block and cycle:
    /// once a cycle fits in the kept blocks, it makes no system call. Kept
    /// blocks stay counted in [`mem_allocated`](Self::mem_allocated) and
    /// limits, show in the stats as free blocks, and are freed by
    /// `delete`; lowering the bound frees kept blocks above it.
    ///
    /// Errors: [`ErrorKind::InvalidParameters`] for a context of another
    /// kind.
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn retain_on_reset(self, max_bytes: usize) -> Result<(), Error> {
        let ctx = self.header();
        // SAFETY: caller contract; the kind tag names the real type.
        unsafe {
            if (*ctx).kind != ContextKind::Bump {
                return Err(Error::new(
                    ErrorKind::InvalidParameters("only Bump contexts keep a block across resets"),
                    (*ctx).name,
                    max_bytes,
                ));
            }
            bump::set_retain_limit(ctx.cast(), max_bytes);
        }
        Ok(())
    }

    /// The bound set by [`retain_on_reset`](Self::retain_on_reset) (0 for
    /// other kinds, and by default).
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn retained_on_reset(self) -> usize {
        let ctx = self.header();
        // SAFETY: caller contract; the kind tag names the real type.
        unsafe {
            if (*ctx).kind == ContextKind::Bump {
                bump::retain_limit(ctx.cast())
            } else {
                0
            }
        }
    }

    /// Counters of this context alone (blocks, free space, ...).
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn counters(self) -> Counters {
        // SAFETY: caller contract.
        unsafe { stats::counters(self.header()) }
    }

    /// A structured snapshot of the subtree (see [`StatsSnapshot`]).
    ///
    /// # Safety
    /// Alive.
    pub unsafe fn stats(self) -> StatsSnapshot {
        // SAFETY: caller contract.
        unsafe { stats::snapshot(self.header()) }
    }

    /// Iterates over the direct children, newest first.
    ///
    /// # Safety
    /// Alive, and the tree must not change during the iteration.
    pub unsafe fn children(self) -> impl Iterator<Item = MemoryContext> {
        // SAFETY: caller contract.
        let mut next = unsafe { (*self.header()).first_child };
        core::iter::from_fn(move || {
            let cur = NonNull::new(next)?;
            // SAFETY: children are alive while the parent is.
            next = unsafe { (*cur.as_ptr()).next_sibling };
            Some(MemoryContext(cur))
        })
    }
}

#[inline(always)]
fn finish_extended(
    r: Result<NonNull<u8>, Error>,
    size: usize,
    flags: AllocFlags,
) -> Result<Option<NonNull<u8>>, Error> {
    match r {
        Ok(p) => {
            if flags.contains(AllocFlags::ZERO) {
                // SAFETY: a fresh chunk of at least `size` bytes.
                unsafe { p.as_ptr().write_bytes(0, size) };
            }
            Ok(Some(p))
        }
        Err(e) if flags.contains(AllocFlags::NO_OOM) && e.is_out_of_memory() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Allocation dispatch on the context kind.
///
/// # Safety
/// `ctx` alive.
#[inline(always)]
pub(crate) unsafe fn alloc_in(
    ctx: *mut ContextHeader,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // With `checking`, a deleted context is refused before its kind is read.
    if !usable(ctx, "alloc") {
        return Err(deleted(size));
    }
    // SAFETY: caller contract.
    unsafe { alloc_known(ctx, (*ctx).kind, size, flags) }
}

/// Allocation in a context whose kind the caller already knows (the safe
/// handle caches it, so loops need not reload it through the pointer).
///
/// # Safety
/// `ctx` alive and of kind `kind`.
#[inline(always)]
pub(crate) unsafe fn alloc_known(
    ctx: *mut ContextHeader,
    kind: ContextKind,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    #[cfg(feature = "checking")]
    // SAFETY: caller contract.
    unsafe {
        crate::checking::alloc(ctx, kind, size, flags)
    }
    #[cfg(not(feature = "checking"))]
    // SAFETY: caller contract.
    unsafe {
        alloc_dispatch(ctx, kind, size, flags)
    }
}

/// Allocation by the context's kind, without the `checking` layer.
///
/// # Safety
/// `ctx` alive and of kind `kind`.
#[inline(always)]
pub(crate) unsafe fn alloc_dispatch(
    ctx: *mut ContextHeader,
    kind: ContextKind,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract; the kind names the real type.
    unsafe {
        crate::critical::check(ctx, size)?;
        // Plain compares, most common kinds first: a jump table here costs
        // an indirect branch on every allocation.
        let r = if kind == ContextKind::AllocSet {
            aset::alloc(ctx.cast(), size, flags)
        } else {
            alloc_not_aset(ctx, kind, size, flags)
        };
        #[cfg(any(feature = "valgrind", feature = "asan"))]
        if let Ok(p) = r {
            // An empty bump chunk shares its address with the next chunk:
            // it has no bytes to describe, and no free will come.
            if size != 0 || kind != ContextKind::Bump {
                crate::instrument::chunk_allocated(ctx, p.as_ptr(), size);
            }
        }
        r
    }
}

/// Bump allocation inline, the other kinds out of line.
///
/// # Safety
/// `ctx` alive and of kind `kind`.
#[inline(always)]
unsafe fn alloc_not_aset(
    ctx: *mut ContextHeader,
    kind: ContextKind,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract.
    unsafe {
        if kind == ContextKind::Bump {
            bump::alloc(ctx.cast(), size, flags)
        } else {
            alloc_other(ctx, size, flags)
        }
    }
}

/// Generation and Slab allocation, out of line.
#[inline(never)]
unsafe fn alloc_other(
    ctx: *mut ContextHeader,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract; the kind tag names the real type.
    unsafe {
        match (*ctx).kind {
            ContextKind::Generation => generation::alloc(ctx.cast(), size, flags),
            ContextKind::Slab => slab::alloc(ctx.cast(), size),
            ContextKind::AllocSet => aset::alloc(ctx.cast(), size, flags),
            ContextKind::Bump => bump::alloc(ctx.cast(), size, flags),
        }
    }
}

#[cold]
fn bad_pointer(hdr: Header, size: usize) -> Error {
    Error::new(ErrorKind::BadPointer { header: hdr.0 }, "?", size)
}

/// `pfree`: frees a chunk, whatever context it belongs to.
///
/// Returns [`ErrorKind::BadPointer`] when the word before `ptr` is not a
/// chunk header of any kind (zeroed memory, a `malloc` pointer, clobbered
/// memory); a freed or corrupted chunk is not detected.
///
/// # Safety
/// `ptr` must be a live chunk from a context of this library (from `alloc`,
/// `realloc`, `alloc_aligned`, ...), not freed before, and not used after.
#[inline(always)]
pub unsafe fn free(ptr: NonNull<u8>) -> Result<(), Error> {
    let p = ptr.as_ptr();
    #[cfg(feature = "checking")]
    // SAFETY: caller contract.
    unsafe {
        crate::checking::free(p)
    }
    #[cfg(not(feature = "checking"))]
    // SAFETY: caller contract: a live chunk has a readable header.
    unsafe {
        free_dispatch(p, read_header(p))
    }
}

/// A header of a kind with chunk headers whose external magic, if any, is
/// intact: the sanitizer hooks may follow it to the context and size.
#[cfg(any(feature = "valgrind", feature = "asan"))]
#[inline(always)]
fn is_sound_chunk_header(hdr: Header) -> bool {
    matches!(
        hdr.kind(),
        Some(KindId::AllocSet | KindId::AllocSetFar | KindId::Generation | KindId::Slab)
    ) && (!hdr.is_external() || hdr.external_magic_ok())
}

/// `free` by the chunk's kind, without the `checking` layer.
///
/// # Safety
/// As [`free`]; `hdr` is the chunk's header.
#[inline(always)]
pub(crate) unsafe fn free_dispatch(p: *mut u8, hdr: Header) -> Result<(), Error> {
    #[cfg(any(feature = "valgrind", feature = "asan"))]
    // SAFETY: caller contract; the chunk's context and size are read
    // before the kind frees it.
    unsafe {
        if is_sound_chunk_header(hdr) {
            // Before the kind frees it: the kind may give the block back
            // or rewind it (kinds make accessible what they write).
            let ctx = chunk_context_dispatch(p, hdr);
            crate::instrument::chunk_freed(ctx, p, chunk_capacity_dispatch(p, hdr));
            return free_uninstrumented(p, hdr);
        }
    }
    // SAFETY: caller contract.
    unsafe { free_uninstrumented(p, hdr) }
}

/// `free` by the chunk's kind.
///
/// # Safety
/// As [`free`]; `hdr` is the chunk's header.
#[inline(always)]
unsafe fn free_uninstrumented(p: *mut u8, hdr: Header) -> Result<(), Error> {
    // SAFETY: caller contract.
    unsafe {
        if hdr.is_shared_chunk_of(KindId::AllocSet) {
            aset::free_small(p, hdr);
            return Ok(());
        }
        free_other(p, hdr)
    }
}

/// Everything but a small AllocSet chunk, out of line.
#[inline(never)]
unsafe fn free_other(p: *mut u8, hdr: Header) -> Result<(), Error> {
    // SAFETY: caller contract of `free`.
    unsafe {
        match hdr.kind() {
            Some(KindId::AllocSet | KindId::AllocSetFar) => aset::free(p, hdr),
            Some(KindId::Generation) => generation::free(p, hdr),
            Some(KindId::Slab) => {
                slab::free(p, hdr);
                Ok(())
            }
            Some(KindId::AlignedRedirect) => {
                free(NonNull::new_unchecked(aligned::unaligned(p, hdr)))
            }
            _ => Err(bad_pointer(hdr, 0)),
        }
    }
}

/// `repalloc`: resizes a chunk, possibly moving it; the contents up to the
/// smaller size are kept. On error the old chunk is untouched.
///
/// # Safety
/// As [`free`]; after success only the returned pointer may be used.
#[inline]
pub unsafe fn realloc(ptr: NonNull<u8>, size: usize) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract.
    unsafe { realloc_flags(ptr, size, AllocFlags::empty()) }
}

/// `repalloc_extended`: as [`realloc`] with `HUGE` and `NO_OOM` flags
/// (`ZERO` is ignored, as in PostgreSQL).
///
/// # Safety
/// As [`realloc`].
pub unsafe fn realloc_extended(
    ptr: NonNull<u8>,
    size: usize,
    flags: AllocFlags,
) -> Result<Option<NonNull<u8>>, Error> {
    // SAFETY: caller contract.
    let r = unsafe { realloc_flags(ptr, size, flags) };
    finish_extended(r, size, flags - AllocFlags::ZERO)
}

#[inline]
unsafe fn realloc_flags(
    ptr: NonNull<u8>,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    let p = ptr.as_ptr();
    #[cfg(feature = "checking")]
    // SAFETY: caller contract.
    unsafe {
        crate::checking::realloc(p, size, flags)
    }
    #[cfg(all(not(feature = "checking"), any(feature = "valgrind", feature = "asan")))]
    // SAFETY: caller contract. With the sanitizer hooks a chunk is resized
    // in place when it has room, else moved here (new chunk, copy, free),
    // so that every chunk comes and goes through the hooked paths.
    unsafe {
        let hdr = read_header(p);
        if is_sound_chunk_header(hdr) {
            let ctx = chunk_context_dispatch(p, hdr);
            let capacity = chunk_capacity_dispatch(p, hdr);
            if hdr.kind() == Some(KindId::Slab) {
                slab::realloc(p, hdr, size)?;
            }
            if size <= capacity {
                crate::instrument::chunk_resized(ctx, p, size);
                return Ok(ptr);
            }
            crate::error::check_size(size, flags, (*ctx).name)?;
            let new = alloc_known(ctx, (*ctx).kind, size, flags)?;
            crate::instrument::make_accessible(p, capacity);
            ptr::copy_nonoverlapping(p, new.as_ptr(), capacity);
            free_dispatch(p, hdr)?;
            return Ok(new);
        }
        realloc_uninstrumented(p, hdr, size, flags)
    }
    #[cfg(all(
        not(feature = "checking"),
        not(any(feature = "valgrind", feature = "asan"))
    ))]
    // SAFETY: caller contract.
    unsafe {
        realloc_uninstrumented(p, read_header(p), size, flags)
    }
}

/// `realloc` by the chunk's kind.
///
/// # Safety
/// As [`realloc`]; `hdr` is the chunk's header.
#[cfg_attr(feature = "checking", allow(dead_code))]
#[inline]
unsafe fn realloc_uninstrumented(
    p: *mut u8,
    hdr: Header,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract.
    unsafe {
        match hdr.kind() {
            Some(KindId::AllocSet | KindId::AllocSetFar) => aset::realloc(p, hdr, size, flags),
            Some(KindId::Generation) => generation::realloc(p, hdr, size, flags),
            Some(KindId::Slab) => slab::realloc(p, hdr, size),
            Some(KindId::AlignedRedirect) => aligned::realloc(p, hdr, size, flags),
            _ => Err(bad_pointer(hdr, size)),
        }
    }
}

/// Usable bytes of a chunk of a kind with headers, as the kind sees it.
///
/// # Safety
/// As [`free`]; `hdr` the chunk's header, naming AllocSet, Generation,
/// Slab (or Bump, with `checking`).
#[cfg(any(feature = "checking", feature = "valgrind", feature = "asan"))]
pub(crate) unsafe fn chunk_capacity_dispatch(p: *mut u8, hdr: Header) -> usize {
    // SAFETY: caller contract.
    unsafe {
        match hdr.kind() {
            Some(KindId::AllocSet | KindId::AllocSetFar) => aset::chunk_capacity(p, hdr),
            Some(KindId::Generation) => generation::chunk_capacity(p, hdr),
            Some(KindId::Slab) => slab::chunk_space(p, hdr) - CHUNK_HDR_SIZE,
            #[cfg(feature = "checking")]
            Some(KindId::Bump) => bump::chunk_capacity(p, hdr),
            _ => 0,
        }
    }
}

/// `GetMemoryChunkContext`: the context owning a chunk.
///
/// # Safety
/// As [`free`] (the chunk stays live).
pub unsafe fn chunk_context(ptr: NonNull<u8>) -> Result<MemoryContext, Error> {
    // SAFETY: caller contract.
    unsafe { chunk_context_raw(ptr.as_ptr()).map(|h| MemoryContext(NonNull::new_unchecked(h))) }
}

pub(crate) unsafe fn chunk_context_raw(p: *mut u8) -> Result<*mut ContextHeader, Error> {
    // SAFETY: caller contract.
    unsafe {
        #[cfg(feature = "checking")]
        crate::checking::verify_chunk(p, "chunk_context")?;
        let hdr = read_header(p);
        match hdr.kind() {
            Some(KindId::AlignedRedirect) => chunk_context_raw(aligned::unaligned(p, hdr)),
            Some(KindId::AllocSet | KindId::AllocSetFar | KindId::Generation | KindId::Slab) => {
                Ok(chunk_context_dispatch(p, hdr))
            }
            _ => Err(bad_pointer(hdr, 0)),
        }
    }
}

/// The context of a chunk of a kind with headers (AllocSet, Generation,
/// Slab, and Bump with `checking`).
///
/// # Safety
/// As [`free`]; `hdr` the chunk's header, naming one of those kinds.
pub(crate) unsafe fn chunk_context_dispatch(p: *mut u8, hdr: Header) -> *mut ContextHeader {
    // SAFETY: caller contract.
    unsafe {
        match hdr.kind() {
            Some(KindId::AllocSet | KindId::AllocSetFar) => aset::chunk_context(p, hdr),
            Some(KindId::Generation) => generation::chunk_context(p, hdr),
            Some(KindId::Slab) => slab::chunk_context(p, hdr),
            #[cfg(feature = "checking")]
            Some(KindId::Bump) => crate::bump::chunk_context(p, hdr),
            _ => ptr::null_mut(),
        }
    }
}

/// `GetMemoryChunkSpace`: bytes the chunk occupies, header and rounding
/// included.
///
/// # Safety
/// As [`free`] (the chunk stays live).
pub unsafe fn chunk_space(ptr: NonNull<u8>) -> Result<usize, Error> {
    let p = ptr.as_ptr();
    // SAFETY: caller contract.
    unsafe {
        #[cfg(feature = "checking")]
        crate::checking::verify_chunk(p, "chunk_space")?;
        let hdr = read_header(p);
        match hdr.kind() {
            Some(KindId::AllocSet | KindId::AllocSetFar) => Ok(aset::chunk_space(p, hdr)),
            Some(KindId::Generation) => Ok(generation::chunk_capacity(p, hdr) + CHUNK_HDR_SIZE),
            Some(KindId::Slab) => Ok(slab::chunk_space(p, hdr)),
            Some(KindId::AlignedRedirect) => {
                chunk_space(NonNull::new_unchecked(aligned::unaligned(p, hdr)))
            }
            _ => Err(bad_pointer(hdr, 0)),
        }
    }
}

/// Usable bytes from `ptr` to the end of its chunk.
///
/// # Safety
/// As [`free`] (the chunk stays live).
pub unsafe fn chunk_capacity(ptr: NonNull<u8>) -> Result<usize, Error> {
    let p = ptr.as_ptr();
    // With `checking`, the usable bytes are those asked for: the rest of
    // the chunk holds sentinels.
    #[cfg(feature = "checking")]
    // SAFETY: caller contract.
    return unsafe { crate::checking::requested_size(p) };
    #[cfg(not(feature = "checking"))]
    // SAFETY: caller contract.
    unsafe {
        let hdr = read_header(p);
        match hdr.kind() {
            Some(KindId::AllocSet | KindId::AllocSetFar) => Ok(aset::chunk_capacity(p, hdr)),
            Some(KindId::Generation) => Ok(generation::chunk_capacity(p, hdr)),
            Some(KindId::Slab) => Ok(slab::chunk_space(p, hdr) - CHUNK_HDR_SIZE),
            Some(KindId::AlignedRedirect) => {
                let base = aligned::unaligned(p, hdr);
                Ok(chunk_capacity(NonNull::new_unchecked(base))? - (p as usize - base as usize))
            }
            _ => Err(bad_pointer(hdr, 0)),
        }
    }
}

impl MemoryContext {
    /// Writes the subtree's stats in PostgreSQL's `MemoryContextStats`
    /// format, showing at most `max_level` levels and `max_children`
    /// children per parent (PostgreSQL uses 100 and 100); the rest is
    /// summarised.
    ///
    /// # Safety
    /// Alive; the tree must not change meanwhile (`out` must not touch it).
    pub unsafe fn write_stats(
        self,
        out: &mut impl core::fmt::Write,
        max_level: usize,
        max_children: usize,
    ) -> core::fmt::Result {
        // SAFETY: caller contract.
        unsafe { stats::write_pg_text(out, self.header(), max_level.max(1), max_children) }
    }
}

/// With `checking`: true when `ctx` is a live context (else the use is
/// reported). Without: always true, and free.
#[inline(always)]
fn usable(ctx: *mut ContextHeader, operation: &'static str) -> bool {
    #[cfg(feature = "checking")]
    {
        crate::checking::context_is_live(ctx, operation)
    }
    #[cfg(not(feature = "checking"))]
    {
        let _ = (ctx, operation);
        true
    }
}

/// The error of an operation on a deleted context.
#[cold]
fn deleted(size: usize) -> Error {
    Error::new(ErrorKind::DeletedContext, "?", size)
}

impl MemoryContext {
    /// `MemoryContextCheck`: walks the subtree (without recursion) and
    /// verifies every context's blocks and chunk headers, its byte
    /// accounting and its links; with the `checking` feature, also every
    /// chunk's sentinels or clobber pattern. Problems are returned, not
    /// passed to the report handler.
    ///
    /// ```
    /// use mcxt::{raw::MemoryContext, AllocSetSizes};
    /// unsafe {
    ///     let top = MemoryContext::new_alloc_set(None, "top", AllocSetSizes::DEFAULT).unwrap();
    ///     let p = top.alloc(100).unwrap();
    ///     let summary = top.check();
    ///     assert!(summary.is_ok(), "{:?}", summary.problems);
    ///     assert_eq!((summary.contexts, summary.chunks), (1, 1));
    ///     mcxt::raw::free(p).unwrap();
    ///     top.delete();
    /// }
    /// ```
    ///
    /// # Safety
    /// Alive (with `checking`, a deleted context is reported instead); the
    /// tree must not change meanwhile.
    pub unsafe fn check(self) -> crate::check::CheckSummary {
        // SAFETY: caller contract.
        unsafe { crate::check::check_tree(self.header()) }
    }
}
