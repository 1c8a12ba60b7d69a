//! Critical sections: code regions where an allocation failure could not be
//! handled (PostgreSQL panics there), so allocating is itself an error
//! unless the context was marked as allowed
//! ([`MemoryContext::allow_in_critical_section`](crate::raw::MemoryContext::allow_in_critical_section)).
//!
//! The check must cost nothing on the allocation hot path when no thread is
//! in a critical section, which is nearly always: the hot path reads one
//! process-wide counter of threads inside critical sections and only when
//! it is non-zero looks at this thread's depth.

use crate::error::Error;
#[cfg(feature = "std")]
use crate::error::ErrorKind;
use crate::tree::ContextHeader;

#[cfg(feature = "std")]
mod imp {
    use core::cell::Cell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    pub(super) static THREADS_INSIDE: AtomicUsize = AtomicUsize::new(0);

    std::thread_local! {
        pub(super) static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    #[inline(always)]
    pub(super) fn any_thread_inside() -> bool {
        THREADS_INSIDE.load(Ordering::Relaxed) != 0
    }

    pub(super) fn this_thread_inside() -> bool {
        DEPTH.try_with(|d| d.get() > 0).unwrap_or(false)
    }

    pub(super) fn enter() {
        DEPTH.with(|d| {
            if d.get() == 0 {
                THREADS_INSIDE.fetch_add(1, Ordering::Relaxed);
            }
            d.set(d.get() + 1);
        });
    }

    pub(super) fn exit() {
        DEPTH.with(|d| {
            let depth = d.get();
            assert!(depth > 0, "critical section exited more often than entered");
            d.set(depth - 1);
            if depth == 1 {
                THREADS_INSIDE.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
}

/// Guard of a critical section: while one is alive on a thread, allocating
/// there in a context not allowed in critical sections fails with
/// [`ErrorKind::CriticalSection`]. Sections nest.
///
/// ```
/// use mcxt::{Context, CriticalSection, ErrorKind};
/// let ctx = Context::new("work");
/// let err_ctx = Context::new("errors");
/// err_ctx.allow_in_critical_section(true);
/// {
///     let _section = CriticalSection::enter();
///     assert_eq!(ctx.try_alloc_bytes(16).unwrap_err().kind, ErrorKind::CriticalSection);
///     assert!(err_ctx.try_alloc_bytes(16).is_ok());
/// }
/// assert!(ctx.try_alloc_bytes(16).is_ok());
/// ```
#[cfg(feature = "std")]
#[must_use = "the critical section ends when the guard is dropped"]
pub struct CriticalSection {
    _not_send: core::marker::PhantomData<*mut ()>,
}

#[cfg(feature = "std")]
impl CriticalSection {
    /// Enters a critical section on this thread (PostgreSQL's
    /// `START_CRIT_SECTION`).
    pub fn enter() -> CriticalSection {
        imp::enter();
        CriticalSection {
            _not_send: core::marker::PhantomData,
        }
    }

    /// True while this thread is inside a critical section.
    pub fn is_active() -> bool {
        imp::this_thread_inside()
    }
}

#[cfg(feature = "std")]
impl Drop for CriticalSection {
    fn drop(&mut self) {
        imp::exit();
    }
}

/// Fails if allocating in `ctx` is forbidden right now.
///
/// # Safety
/// `ctx` must be a valid context.
#[inline(always)]
pub(crate) unsafe fn check(ctx: *mut ContextHeader, size: usize) -> Result<(), Error> {
    #[cfg(feature = "std")]
    if imp::any_thread_inside() {
        // SAFETY: caller contract.
        return unsafe { check_slow(ctx, size) };
    }
    let _ = (ctx, size);
    Ok(())
}

#[cfg(feature = "std")]
#[cold]
unsafe fn check_slow(ctx: *mut ContextHeader, size: usize) -> Result<(), Error> {
    // SAFETY: caller contract.
    unsafe {
        if imp::this_thread_inside() && !(*ctx).allow_in_critical {
            return Err(Error::new(ErrorKind::CriticalSection, (*ctx).name, size));
        }
    }
    Ok(())
}

/// Creating a context inside a critical section is refused unless the
/// parent is allowed there.
///
/// # Safety
/// `parent` valid or null.
pub(crate) unsafe fn check_create(
    parent: *mut ContextHeader,
    name: &'static str,
) -> Result<(), Error> {
    #[cfg(feature = "std")]
    if imp::any_thread_inside() && imp::this_thread_inside() {
        // SAFETY: caller contract.
        let allowed = !parent.is_null() && unsafe { (*parent).allow_in_critical };
        if !allowed {
            return Err(Error::new(ErrorKind::CriticalSection, name, 0));
        }
    }
    let _ = (parent, name);
    Ok(())
}
