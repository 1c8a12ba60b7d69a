//! # mcxt-capi: the C ABI of mcxt
//!
//! Builds `libmcxt.so` and `libmcxt.a`: PostgreSQL's `palloc` API for C
//! programs (`include/mcxt.h`), backed by the [`mcxt_core`] (`mcxt`) crate.
//!
//! The library has two halves:
//!
//! * **C** (`src/capi.c`, compiled by `build.rs`): every function of
//!   `mcxt.h`, the thread-local `CurrentMemoryContext`, `TopMemoryContext`
//!   and `ErrorContext` variables, and the error handler. Each function is
//!   a thin wrapper around one of the internal functions below.
//! * **Rust** (this crate): the internal `mcxt__*` entry points, which do
//!   the work through [`mcxt_core::raw`].
//!
//! ## Errors and `longjmp`
//!
//! A PostgreSQL error (`ereport(ERROR)`) does not return, and C programs
//! commonly leave it with `longjmp`. Jumping over Rust frames is not
//! allowed, so the Rust side never raises: an `mcxt__*` function returns
//! NULL (or -1) and records the error in a per-thread slot
//! ([`mcxt__take_error`]). Only after it has returned does its C wrapper
//! take the record and call the handler, so a handler that `longjmp`s skips
//! C wrapper frames only, which hold no state; and every mcxt operation
//! that fails has changed nothing. Every entry point catches panics
//! ([`error::ffi`]), so none unwinds into C. Reset and delete run C
//! callbacks with Rust frames below them: the C side counts those
//! operations in progress and aborts, instead of calling the handler, on
//! an error raised inside a callback.
//!
//! ## Contract of the internal functions
//!
//! They are exported (the C half links against them) but are not part of
//! the API: only `mcxt.h` is. Each is `unsafe`, with one common contract
//! besides its own: a `MemoryContext` argument is NULL or a live context
//! (created by this library and not yet deleted) owned by the calling
//! thread, and a chunk pointer is NULL or a live chunk of such a context.

#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod check;
mod error;
#[cfg(test)]
mod symbols;

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::{self, NonNull};
use error::{ffi, ffi_status, Failure};
use mcxt_core::raw::{self, MemoryContext};
use mcxt_core::{AllocFlags, BlockSizes, ContextSpec, ResetCallback};
use std::io::Write as _;

pub use error::mcxt__take_error;

/// `mcxt__create` kind: AllocSet.
const KIND_ALLOC_SET: c_int = 0;
/// `mcxt__create` kind: Generation.
const KIND_GENERATION: c_int = 1;
/// `mcxt__create` kind: Slab.
const KIND_SLAB: c_int = 2;
/// `mcxt__create` kind: Bump.
const KIND_BUMP: c_int = 3;

/// The C `MemoryContextCallback`: `mcxt_core::ResetCallback` with a
/// nullable function pointer, so that a NULL `func` from C is caught
/// before the record is handed to mcxt.
#[repr(C)]
pub struct MemoryContextCallback {
    /// Function to call with `arg`.
    pub func: Option<unsafe extern "C" fn(arg: *mut c_void)>,
    /// Argument passed to `func`.
    pub arg: *mut c_void,
    /// Link to the next callback; managed by the context.
    pub next: *mut MemoryContextCallback,
}

// The C record must be usable as an mcxt `ResetCallback` once `func` is
// known to be non-NULL.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<MemoryContextCallback>() == size_of::<ResetCallback>());
    assert!(align_of::<MemoryContextCallback>() == align_of::<ResetCallback>());
    assert!(offset_of!(MemoryContextCallback, func) == offset_of!(ResetCallback, func));
    assert!(offset_of!(MemoryContextCallback, arg) == offset_of!(ResetCallback, arg));
    assert!(offset_of!(MemoryContextCallback, next) == offset_of!(ResetCallback, next));
};

/// The context behind a C handle.
///
/// # Safety
/// `ctx` must be NULL or a live context (crate contract).
#[inline(always)]
unsafe fn context(ctx: *mut c_void, func: &'static str) -> Result<MemoryContext, Failure> {
    match NonNull::new(ctx) {
        // SAFETY: a non-NULL handle is a live context (caller contract).
        Some(p) => Ok(unsafe { MemoryContext::from_ptr(p) }),
        None => Err(Failure::Null {
            func,
            what: "memory context",
        }),
    }
}

/// The context to allocate `size` bytes in (NULL: no current context).
///
/// # Safety
/// As [`context`].
#[inline(always)]
unsafe fn alloc_context(ctx: *mut c_void, size: usize) -> Result<MemoryContext, Failure> {
    match NonNull::new(ctx) {
        // SAFETY: a non-NULL handle is a live context (caller contract).
        Some(p) => Ok(unsafe { MemoryContext::from_ptr(p) }),
        None => Err(Failure::NoContext { size }),
    }
}

/// A chunk pointer from C.
#[inline(always)]
fn chunk(p: *mut c_void, func: &'static str) -> Result<NonNull<u8>, Failure> {
    NonNull::new(p.cast()).ok_or(Failure::Null {
        func,
        what: "pointer",
    })
}

#[inline(always)]
fn out_ptr(p: NonNull<u8>) -> *mut c_void {
    p.as_ptr().cast()
}

#[inline(always)]
fn out_opt(p: Option<NonNull<u8>>) -> *mut c_void {
    p.map_or(ptr::null_mut(), out_ptr)
}

#[inline(always)]
fn flags(flags: c_int) -> AllocFlags {
    AllocFlags::from_bits_truncate(flags as u32)
}

/// Allocates `size` bytes in `ctx` (`MemoryContextAlloc`, `palloc`); NULL
/// (with an error recorded) on failure or when `ctx` is NULL.
///
/// # Safety
/// Crate contract (see the crate docs).
#[no_mangle]
pub unsafe extern "C" fn mcxt__alloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        // SAFETY: crate contract: NULL or a live context of this thread.
        let ctx = unsafe { alloc_context(ctx, size)? };
        // SAFETY: the context is alive (crate contract).
        Ok(out_ptr(unsafe { ctx.alloc(size)? }))
    })
}

/// Allocates `size` zeroed bytes in `ctx` (`MemoryContextAllocZero`,
/// `palloc0`); NULL with an error recorded on failure.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__alloc_zero(ctx: *mut c_void, size: usize) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        // SAFETY: crate contract.
        let ctx = unsafe { alloc_context(ctx, size)? };
        // SAFETY: the context is alive (crate contract).
        Ok(out_ptr(unsafe { ctx.alloc_zero(size)? }))
    })
}

/// `MemoryContextAllocExtended`: NULL *without* an error recorded when
/// `MCXT_ALLOC_NO_OOM` turned an out-of-memory error into NULL, NULL with
/// an error recorded on any other failure.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__alloc_extended(
    ctx: *mut c_void,
    size: usize,
    flag_bits: c_int,
) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        // SAFETY: crate contract.
        let ctx = unsafe { alloc_context(ctx, size)? };
        // SAFETY: the context is alive (crate contract).
        Ok(out_opt(unsafe {
            ctx.alloc_extended(size, flags(flag_bits))?
        }))
    })
}

/// `MemoryContextAllocAligned`: as [`mcxt__alloc_extended`], aligned to
/// `align` (a power of two).
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__alloc_aligned(
    ctx: *mut c_void,
    size: usize,
    align: usize,
    flag_bits: c_int,
) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        // SAFETY: crate contract.
        let ctx = unsafe { alloc_context(ctx, size)? };
        // SAFETY: the context is alive (crate contract).
        Ok(out_opt(unsafe {
            ctx.alloc_aligned(size, align, flags(flag_bits))?
        }))
    })
}

/// `pfree`: 0, or -1 with an error recorded (NULL or invalid pointer).
///
/// # Safety
/// Crate contract; `p` is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mcxt__free(p: *mut c_void) -> c_int {
    ffi_status(|| {
        let p = chunk(p, "pfree")?;
        // SAFETY: a live chunk of this library, freed once (crate contract).
        unsafe { raw::free(p)? };
        Ok(())
    })
}

/// `repalloc`: the resized chunk, or NULL with an error recorded (the old
/// chunk is then untouched).
///
/// # Safety
/// Crate contract; after success only the returned pointer may be used.
#[no_mangle]
pub unsafe extern "C" fn mcxt__realloc(p: *mut c_void, size: usize) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        let p = chunk(p, "repalloc")?;
        // SAFETY: a live chunk of this library (crate contract).
        Ok(out_ptr(unsafe { raw::realloc(p, size)? }))
    })
}

/// `repalloc_extended`: as [`mcxt__realloc`]; NULL without an error
/// recorded when `MCXT_ALLOC_NO_OOM` applied.
///
/// # Safety
/// As [`mcxt__realloc`].
#[no_mangle]
pub unsafe extern "C" fn mcxt__realloc_extended(
    p: *mut c_void,
    size: usize,
    flag_bits: c_int,
) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        let p = chunk(p, "repalloc_extended")?;
        // SAFETY: a live chunk of this library (crate contract).
        Ok(out_opt(unsafe {
            raw::realloc_extended(p, size, flags(flag_bits))?
        }))
    })
}

/// Borrows a C context name for ever: PostgreSQL never copies names and
/// requires them to be constants.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string that is never freed or
/// changed (a string literal).
unsafe fn static_name(name: *const c_char, func: &'static str) -> Result<&'static str, Failure> {
    if name.is_null() {
        return Err(Failure::Null {
            func,
            what: "context name",
        });
    }
    // SAFETY: a NUL-terminated string that lives for ever (caller contract).
    let name: &'static CStr = unsafe { CStr::from_ptr(name) };
    name.to_str()
        .map_err(|_| Failure::Invalid("memory context names must be valid UTF-8"))
}

/// Creates a context: `kind` 0 (AllocSet), 1 (Generation) and 3 (Bump)
/// with block sizes `a` (min), `b` (init), `c` (max); 2 (Slab) with block
/// size `a` and chunk size `b`. `parent` NULL makes a root. NULL with an
/// error recorded on failure.
///
/// # Safety
/// Crate contract; `name` must be a string constant (never freed).
#[no_mangle]
pub unsafe extern "C" fn mcxt__create(
    parent: *mut c_void,
    name: *const c_char,
    kind: c_int,
    a: usize,
    b: usize,
    c: usize,
) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        let func = match kind {
            KIND_ALLOC_SET => "AllocSetContextCreate",
            KIND_GENERATION => "GenerationContextCreate",
            KIND_SLAB => "SlabContextCreate",
            KIND_BUMP => "BumpContextCreate",
            _ => return Err(Failure::Invalid("unknown memory context kind")),
        };
        // SAFETY: a string constant (caller contract).
        let name = unsafe { static_name(name, func)? };
        let sizes = BlockSizes {
            min_context_size: a,
            init_block_size: b,
            max_block_size: c,
        };
        let spec = match kind {
            KIND_ALLOC_SET => ContextSpec::AllocSet(sizes),
            KIND_GENERATION => ContextSpec::Generation(sizes),
            KIND_SLAB => ContextSpec::Slab {
                block_size: a,
                chunk_size: b,
            },
            _ => ContextSpec::Bump(sizes),
        };
        // SAFETY: crate contract: the parent, if any, is alive.
        let parent = unsafe { NonNull::new(parent).map(|p| MemoryContext::from_ptr(p)) };
        // SAFETY: the parent is alive (above).
        let ctx = unsafe { MemoryContext::create(parent, name, spec)? };
        Ok(ctx.as_ptr())
    })
}

/// True if `ctx` is a strict descendant of `root`.
///
/// # Safety
/// Both alive.
unsafe fn is_descendant(ctx: MemoryContext, root: MemoryContext) -> bool {
    // SAFETY: ancestors of a live context are alive.
    let mut cur = unsafe { ctx.parent() };
    while let Some(c) = cur {
        if c == root {
            return true;
        }
        // SAFETY: as above.
        cur = unsafe { c.parent() };
    }
    false
}

/// Sets to NULL each of the `n` context variables at `globals` (C's
/// `CurrentMemoryContext`, ...) that points into the part of `root`'s
/// subtree about to be deleted: its descendants, and `root` itself if
/// `with_root`.
///
/// # Safety
/// `globals` must point to `n` valid pointers to context variables, each
/// NULL or a live context of this thread.
unsafe fn forget_doomed(
    root: MemoryContext,
    with_root: bool,
    globals: *const *mut *mut c_void,
    n: usize,
) {
    if globals.is_null() {
        return;
    }
    for i in 0..n {
        // SAFETY: `n` valid variable pointers (caller contract).
        let slot = unsafe { *globals.add(i) };
        if slot.is_null() {
            continue;
        }
        // SAFETY: a valid variable (caller contract).
        let Some(value) = NonNull::new(unsafe { *slot }) else {
            continue;
        };
        // SAFETY: the variable holds a live context (caller contract).
        let ctx = unsafe { MemoryContext::from_ptr(value) };
        // SAFETY: both alive.
        if (with_root && ctx == root) || unsafe { is_descendant(ctx, root) } {
            // SAFETY: a valid variable (caller contract).
            unsafe { *slot = ptr::null_mut() };
        }
    }
}

/// True if `ctx` has children.
///
/// # Safety
/// Alive.
unsafe fn has_children(ctx: MemoryContext) -> bool {
    // SAFETY: alive (caller contract); the tree does not change meanwhile.
    unsafe { ctx.children().next().is_some() }
}

/// `MemoryContextReset`: deletes the descendants of `ctx` and frees its
/// chunks; clears the `n` context variables at `globals` that pointed to a
/// deleted descendant. 0, or -1 with an error recorded.
///
/// # Safety
/// Crate contract; `globals` as for the context variables of the C side
/// (`n` valid pointers to variables holding NULL or live contexts). No
/// chunk or descendant of `ctx` may be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mcxt__reset(
    ctx: *mut c_void,
    globals: *const *mut *mut c_void,
    n: usize,
) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextReset")? };
        // SAFETY: alive; `globals` valid (caller contract). The reset
        // itself is the caller's request.
        unsafe {
            if has_children(ctx) {
                forget_doomed(ctx, false, globals, n);
            }
            ctx.reset();
        }
        Ok(())
    })
}

/// `MemoryContextResetOnly`: frees the chunks of `ctx`, children untouched.
///
/// # Safety
/// Crate contract; no chunk of `ctx` may be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mcxt__reset_only(ctx: *mut c_void) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract; the reset is the caller's request.
        unsafe { context(ctx, "MemoryContextResetOnly")?.reset_only() };
        Ok(())
    })
}

/// `MemoryContextResetChildren`: reset-only every descendant of `ctx`.
///
/// # Safety
/// Crate contract; no chunk of a descendant may be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mcxt__reset_children(ctx: *mut c_void) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract; the reset is the caller's request.
        unsafe { context(ctx, "MemoryContextResetChildren")?.reset_children() };
        Ok(())
    })
}

/// `MemoryContextDelete`: deletes `ctx` and its subtree, clearing the
/// context variables at `globals` that pointed into it.
///
/// # Safety
/// As [`mcxt__reset`], for the whole subtree.
#[no_mangle]
pub unsafe extern "C" fn mcxt__delete(
    ctx: *mut c_void,
    globals: *const *mut *mut c_void,
    n: usize,
) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextDelete")? };
        // SAFETY: alive; `globals` valid (caller contract).
        unsafe {
            forget_doomed(ctx, true, globals, n);
            ctx.delete();
        }
        Ok(())
    })
}

/// `MemoryContextDeleteChildren`, clearing the context variables at
/// `globals` that pointed to a deleted descendant.
///
/// # Safety
/// As [`mcxt__reset`].
#[no_mangle]
pub unsafe extern "C" fn mcxt__delete_children(
    ctx: *mut c_void,
    globals: *const *mut *mut c_void,
    n: usize,
) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextDeleteChildren")? };
        // SAFETY: alive; `globals` valid (caller contract).
        unsafe {
            if has_children(ctx) {
                forget_doomed(ctx, false, globals, n);
            }
            ctx.delete_children();
        }
        Ok(())
    })
}

/// `MemoryContextSetParent` (`parent` NULL: make a root). Fails, changing
/// nothing, on a cycle or a limit overrun.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__set_parent(ctx: *mut c_void, parent: *mut c_void) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextSetParent")? };
        // SAFETY: crate contract.
        let parent = unsafe { NonNull::new(parent).map(|p| MemoryContext::from_ptr(p)) };
        // SAFETY: both alive.
        unsafe { ctx.set_parent(parent)? };
        Ok(())
    })
}

/// `MemoryContextGetParent`: writes the parent (NULL for a root) to
/// `*out`.
///
/// # Safety
/// Crate contract; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mcxt__get_parent(ctx: *mut c_void, out: *mut *mut c_void) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextGetParent")? };
        // SAFETY: alive; `out` valid (caller contract).
        unsafe { out.write(ctx.parent().map_or(ptr::null_mut(), |p| p.as_ptr())) };
        Ok(())
    })
}

/// `MemoryContextSetIdentifier`: copies `id` (NULL clears it; invalid
/// UTF-8 is replaced).
///
/// # Safety
/// Crate contract; `id` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn mcxt__set_ident(ctx: *mut c_void, id: *const c_char) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextSetIdentifier")? };
        // SAFETY: NULL or a NUL-terminated string (caller contract).
        let id = (!id.is_null()).then(|| unsafe { CStr::from_ptr(id) }.to_string_lossy());
        // SAFETY: alive.
        unsafe { ctx.set_ident(id.as_deref()) };
        Ok(())
    })
}

/// `MemoryContextAllowInCriticalSection`.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__allow_in_critical_section(ctx: *mut c_void, allow: bool) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        unsafe {
            context(ctx, "MemoryContextAllowInCriticalSection")?.allow_in_critical_section(allow)
        };
        Ok(())
    })
}

/// The mcxt callback record behind a C one.
fn callback(
    cb: *mut MemoryContextCallback,
    func: &'static str,
) -> Result<NonNull<ResetCallback>, Failure> {
    let cb = NonNull::new(cb).ok_or(Failure::Null {
        func,
        what: "callback",
    })?;
    Ok(cb.cast())
}

/// `MemoryContextRegisterResetCallback`.
///
/// # Safety
/// Crate contract; `cb` NULL or a valid record that stays valid and
/// unmoved until its callback has run or been unregistered.
#[no_mangle]
pub unsafe extern "C" fn mcxt__register_callback(
    ctx: *mut c_void,
    cb: *mut MemoryContextCallback,
) -> c_int {
    const FUNC: &str = "MemoryContextRegisterResetCallback";
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, FUNC)? };
        let record = callback(cb, FUNC)?;
        // SAFETY: a valid record (caller contract).
        if unsafe { (*cb).func.is_none() } {
            return Err(Failure::Null {
                func: FUNC,
                what: "callback function",
            });
        }
        // SAFETY: alive; the record has a function, so it is a valid
        // `ResetCallback` (same layout, checked above), and it stays valid
        // until it has run (caller contract).
        unsafe { ctx.register_reset_callback(record) };
        Ok(())
    })
}

/// `MemoryContextUnregisterResetCallback`: fails if `cb` is not registered
/// on `ctx`.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__unregister_callback(
    ctx: *mut c_void,
    cb: *mut MemoryContextCallback,
) -> c_int {
    const FUNC: &str = "MemoryContextUnregisterResetCallback";
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, FUNC)? };
        let record = callback(cb, FUNC)?;
        // SAFETY: alive; the record is only compared with registered ones.
        if unsafe { ctx.unregister_reset_callback(record) } {
            Ok(())
        } else {
            Err(Failure::Invalid(
                "MemoryContextUnregisterResetCallback: the callback is not registered on this context",
            ))
        }
    })
}

/// `MemoryContextMemAllocated`: writes the bytes held by `ctx` (and its
/// descendants if `recurse`) to `*out`.
///
/// # Safety
/// Crate contract; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mcxt__mem_allocated(
    ctx: *mut c_void,
    recurse: bool,
    out: *mut usize,
) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextMemAllocated")? };
        // SAFETY: alive; `out` valid (caller contract).
        unsafe { out.write(ctx.mem_allocated(recurse)) };
        Ok(())
    })
}

/// `MemoryContextIsEmpty`: writes the answer to `*out`.
///
/// # Safety
/// Crate contract; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mcxt__is_empty(ctx: *mut c_void, out: *mut bool) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextIsEmpty")? };
        // SAFETY: alive; `out` valid (caller contract).
        unsafe { out.write(ctx.is_empty()) };
        Ok(())
    })
}

/// `mcxt_set_limit`: a byte limit over the subtree (`usize::MAX`: none).
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__set_limit(ctx: *mut c_void, limit: usize) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "mcxt_set_limit")? };
        // SAFETY: alive.
        unsafe { ctx.set_limit((limit != usize::MAX).then_some(limit)) };
        Ok(())
    })
}

/// `mcxt_retain_on_reset`: lets a reset of a Bump context keep up to
/// `max_bytes` of its blocks for reuse (0: none); an error for other kinds.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__retain_on_reset(ctx: *mut c_void, max_bytes: usize) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "mcxt_retain_on_reset")? };
        // SAFETY: alive.
        unsafe { ctx.retain_on_reset(max_bytes) }?;
        Ok(())
    })
}

/// `mcxt_cached_bytes`: bytes held by this thread's caches (recycled
/// contexts, freed blocks). Cannot fail.
#[no_mangle]
pub extern "C" fn mcxt__cached_bytes() -> usize {
    mcxt_core::cached_bytes()
}

/// `mcxt_release_cached`: empties this thread's caches. Cannot fail.
#[no_mangle]
pub extern "C" fn mcxt__release_cached() {
    mcxt_core::release_recycled();
}

/// `mcxt_set_block_cache_limit`: bounds this thread's block cache and
/// returns the previous bound. Cannot fail.
#[no_mangle]
pub extern "C" fn mcxt__set_block_cache_limit(max_bytes: usize) -> usize {
    mcxt_core::system::set_block_cache_limit(max_bytes)
}

/// `GetMemoryChunkContext`: NULL with an error recorded for a NULL or
/// invalid pointer.
///
/// # Safety
/// Crate contract (not a Bump chunk: those have no header).
#[no_mangle]
pub unsafe extern "C" fn mcxt__chunk_context(p: *mut c_void) -> *mut c_void {
    ffi(ptr::null_mut(), || {
        let p = chunk(p, "GetMemoryChunkContext")?;
        // SAFETY: a live chunk (crate contract).
        Ok(unsafe { raw::chunk_context(p)? }.as_ptr())
    })
}

/// `GetMemoryChunkSpace`: writes the bytes the chunk occupies to `*out`.
///
/// # Safety
/// Crate contract (not a Bump chunk); `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mcxt__chunk_space(p: *mut c_void, out: *mut usize) -> c_int {
    ffi_status(|| {
        let p = chunk(p, "GetMemoryChunkSpace")?;
        // SAFETY: a live chunk (crate contract); `out` valid.
        unsafe { out.write(raw::chunk_space(p)?) };
        Ok(())
    })
}

/// `MemoryContextStats` (PostgreSQL uses 100 levels, 100 children): prints
/// the tree under `ctx` to stderr.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__stats(
    ctx: *mut c_void,
    max_level: usize,
    max_children: usize,
) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextStats")? };
        let mut text = String::new();
        // SAFETY: alive; writing to a String does not touch the tree.
        let _ = unsafe { ctx.write_stats(&mut text, max_level, max_children) };
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
        Ok(())
    })
}

/// `MemoryContextCheck`: checks the tree under `ctx` (links and byte
/// accounting) and prints a WARNING to stderr per problem.
///
/// # Safety
/// Crate contract.
#[no_mangle]
pub unsafe extern "C" fn mcxt__check(ctx: *mut c_void) -> c_int {
    ffi_status(|| {
        // SAFETY: crate contract.
        let ctx = unsafe { context(ctx, "MemoryContextCheck")? };
        // SAFETY: alive; the walk only reads.
        let report = unsafe { check::check_tree(ctx) };
        if !report.is_empty() {
            let _ = std::io::stderr().lock().write_all(report.as_bytes());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests;
