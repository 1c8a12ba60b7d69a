//! The current context of each thread (PostgreSQL's `CurrentMemoryContext`)
//! and the palloc-style functions that allocate in it.
//!
//! Safe code changes the current context only through [`SwitchGuard`]s,
//! which borrow the context (so it cannot be reset or dropped while
//! current) and restore the previous one when dropped, also during
//! unwinding. Deleting a context that is current makes the thread have no
//! current context rather than a dangling one.

use crate::error::{AllocFlags, Error, ErrorKind};
use crate::raw::MemoryContext;
use crate::tree::ContextHeader;
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

std::thread_local! {
    static CURRENT: Cell<*mut ContextHeader> = const { Cell::new(ptr::null_mut()) };
}

pub(crate) fn current_ptr() -> *mut ContextHeader {
    CURRENT.try_with(|c| c.get()).unwrap_or(ptr::null_mut())
}

pub(crate) fn clear_current() {
    let _ = CURRENT.try_with(|c| c.set(ptr::null_mut()));
}

/// The current context of this thread, if any.
pub fn current() -> Option<MemoryContext> {
    NonNull::new(current_ptr()).map(MemoryContext::from_header)
}

/// Makes `ctx` (or nothing) the current context and returns the previous
/// one (PostgreSQL's `MemoryContextSwitchTo`).
///
/// # Safety
/// `ctx` must stay valid while it is current: switch away before deleting
/// it (deleting it while current clears the current context, which is safe,
/// but resetting or deleting an *ancestor* chain through other threads is
/// not).
pub unsafe fn switch_to(ctx: Option<MemoryContext>) -> Option<MemoryContext> {
    let new = ctx.map_or(ptr::null_mut(), |c| c.header());
    NonNull::new(CURRENT.with(|c| c.replace(new))).map(MemoryContext::from_header)
}

/// Restores the previous current context when dropped. Created by
/// [`Context::switch_to`](crate::Context::switch_to).
#[must_use = "the switch is undone when the guard is dropped"]
pub struct SwitchGuard<'c> {
    previous: *mut ContextHeader,
    _ctx: PhantomData<&'c ()>,
    _not_send: PhantomData<*mut ()>,
}

impl SwitchGuard<'_> {
    /// # Safety
    /// `ctx` must outlive the guard.
    pub(crate) unsafe fn new(ctx: MemoryContext) -> Self {
        let previous = CURRENT.with(|c| c.replace(ctx.header()));
        SwitchGuard {
            previous,
            _ctx: PhantomData,
            _not_send: PhantomData,
        }
    }
}

impl Drop for SwitchGuard<'_> {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.previous));
    }
}

#[inline]
fn current_or_err(size: usize) -> Result<MemoryContext, Error> {
    current().ok_or(Error::new(ErrorKind::NoCurrentContext, "(none)", size))
}

/// Allocates `size` bytes in the current context (`palloc`).
///
/// Returns raw memory; using it is up to the caller. Fails when there is
/// no current context.
///
/// ```
/// use mcxt::Context;
/// let ctx = Context::new("work");
/// let _guard = ctx.switch_to();
/// let p = mcxt::palloc(64).unwrap();
/// // SAFETY: the chunk is live and 64 bytes long.
/// unsafe { p.as_ptr().write_bytes(1, 64); mcxt::raw::free(p).unwrap(); }
/// ```
#[inline]
pub fn palloc(size: usize) -> Result<NonNull<u8>, Error> {
    let ctx = current_or_err(size)?;
    // SAFETY: the current context is valid: safe code sets it only through
    // guards borrowing the context, and `switch_to` is unsafe.
    unsafe { ctx.alloc(size) }
}

/// Allocates `size` zeroed bytes in the current context (`palloc0`).
#[inline]
pub fn palloc0(size: usize) -> Result<NonNull<u8>, Error> {
    let ctx = current_or_err(size)?;
    // SAFETY: as for `palloc`.
    unsafe { ctx.alloc_zero(size) }
}

/// `palloc_extended`: with [`AllocFlags::NO_OOM`], `Ok(None)` when memory
/// or a limit runs out.
#[inline]
pub fn palloc_extended(size: usize, flags: AllocFlags) -> Result<Option<NonNull<u8>>, Error> {
    let ctx = current_or_err(size)?;
    // SAFETY: as for `palloc`.
    unsafe { ctx.alloc_extended(size, flags) }
}

/// `palloc_aligned`: `size` bytes aligned to `align` (a power of two).
#[inline]
pub fn palloc_aligned(
    size: usize,
    align: usize,
    flags: AllocFlags,
) -> Result<Option<NonNull<u8>>, Error> {
    let ctx = current_or_err(size)?;
    // SAFETY: as for `palloc`.
    unsafe { ctx.alloc_aligned(size, align, flags) }
}
