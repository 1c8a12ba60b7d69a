//! The context tree: the header every context kind starts with, linking,
//! byte accounting with limits, reset and delete traversals, callbacks.
//!
//! # Design
//!
//! Every context begins with a [`ContextHeader`] (`#[repr(C)]`, first field),
//! so a `*mut ContextHeader` can be cast to the kind's own struct after a
//! look at [`ContextHeader::kind`]. Siblings form a doubly-linked list headed
//! by the parent's `first_child`; new and reparented children are pushed at
//! the head, as in PostgreSQL, so unlinking is O(1).
//!
//! **Accounting.** `own_bytes` counts the bytes this context holds from the
//! system (its header, blocks and dedicated chunks); `subtree_bytes` the same
//! over its whole subtree. Context kinds report every block they acquire or
//! release through [`charge`] and [`discharge`], which walk the ancestors
//! once, so the subtree total of any context is read in O(1) while the chunk
//! hot path pays nothing: blocks are rare, chunks are not. The same walk
//! enforces optional byte limits: a charge that would take any ancestor past
//! its limit is undone and fails, naming that ancestor. Until a limit is
//! first set (anywhere in the process) the walk only adds.
//!
//! **No recursion.** Reset and delete walk the tree iteratively, descending
//! to a leaf, deleting it and resuming at its parent, as PostgreSQL 17 does.
//! A subtree being deleted is first detached from its parent, and the
//! ancestors are discharged once for the whole subtree; inside the doomed
//! subtree totals are left as they are (everything there is about to be
//! freed), so deleting a chain a million deep costs O(n), not O(n²).
//!
//! **Callbacks** run in reverse registration order; each is unlinked before
//! it is called, so a callback that panics is not run twice, and the
//! context's memory is only freed after all its callbacks have returned.

use crate::error::{Error, ErrorKind};
use crate::ContextKind;
use crate::{aset, bump, generation, slab};
use alloc::boxed::Box;
use core::ffi::c_void;
use core::ptr;
#[cfg(target_has_atomic = "8")]
use core::sync::atomic::{AtomicBool, Ordering};

/// A reset/delete callback record (PostgreSQL's `MemoryContextCallback`).
///
/// The record is owned by the caller and must stay valid until the callback
/// has run; the usual place for it is a chunk of the very context it is
/// registered on, so it disappears with the context.
#[repr(C)]
#[derive(Debug)]
pub struct ResetCallback {
    /// Function to call with `arg`.
    pub func: unsafe extern "C" fn(arg: *mut c_void),
    /// Argument passed to `func`.
    pub arg: *mut c_void,
    /// Link to the next callback; managed by the context.
    pub next: *mut ResetCallback,
}

/// The header every context kind begins with.
#[repr(C)]
pub(crate) struct ContextHeader {
    pub(crate) kind: ContextKind,
    /// Nothing allocated (and no callback registered) since creation or the
    /// last reset: resetting again is a no-op.
    pub(crate) is_reset: bool,
    /// Allocation allowed while the thread is in a critical section.
    pub(crate) allow_in_critical: bool,
    pub(crate) parent: *mut ContextHeader,
    pub(crate) first_child: *mut ContextHeader,
    pub(crate) prev_sibling: *mut ContextHeader,
    pub(crate) next_sibling: *mut ContextHeader,
    /// Bytes this context holds from the system.
    pub(crate) own_bytes: usize,
    /// Bytes this context and all its descendants hold from the system.
    pub(crate) subtree_bytes: usize,
    /// Byte limit over the subtree; `usize::MAX` when there is none.
    pub(crate) limit: usize,
    pub(crate) callbacks: *mut ResetCallback,
    pub(crate) name: &'static str,
    pub(crate) ident: Option<Box<str>>,
}

impl ContextHeader {
    /// A fresh, unlinked header.
    pub(crate) fn new(kind: ContextKind, name: &'static str) -> ContextHeader {
        ContextHeader {
            kind,
            is_reset: true,
            allow_in_critical: false,
            parent: ptr::null_mut(),
            first_child: ptr::null_mut(),
            prev_sibling: ptr::null_mut(),
            next_sibling: ptr::null_mut(),
            own_bytes: 0,
            subtree_bytes: 0,
            limit: usize::MAX,
            callbacks: ptr::null_mut(),
            name,
            ident: None,
        }
    }
}

/// Pushes `ctx` (unlinked) at the head of `parent`'s children.
///
/// # Safety
/// Both must be valid contexts; `ctx` must be unlinked.
pub(crate) unsafe fn link(ctx: *mut ContextHeader, parent: *mut ContextHeader) {
    // SAFETY: both are valid (caller contract) and no references to them
    // are live while the tree is being edited.
    unsafe {
        debug_assert!((*ctx).parent.is_null());
        let first = (*parent).first_child;
        (*ctx).parent = parent;
        (*ctx).prev_sibling = ptr::null_mut();
        (*ctx).next_sibling = first;
        if !first.is_null() {
            (*first).prev_sibling = ctx;
        }
        (*parent).first_child = ctx;
    }
}

/// Unlinks `ctx` from its parent (no accounting).
///
/// # Safety
/// `ctx` must be a valid context.
pub(crate) unsafe fn unlink(ctx: *mut ContextHeader) {
    // SAFETY: `ctx` and its neighbours are valid contexts (tree invariant).
    unsafe {
        let parent = (*ctx).parent;
        if parent.is_null() {
            return;
        }
        let (prev, next) = ((*ctx).prev_sibling, (*ctx).next_sibling);
        if prev.is_null() {
            (*parent).first_child = next;
        } else {
            (*prev).next_sibling = next;
        }
        if !next.is_null() {
            (*next).prev_sibling = prev;
        }
        (*ctx).parent = ptr::null_mut();
        (*ctx).prev_sibling = ptr::null_mut();
        (*ctx).next_sibling = ptr::null_mut();
    }
}

/// Adds `bytes` to the subtree totals of `start` and all its ancestors,
/// failing (and changing nothing) if that would take any of them past its
/// limit. Own bytes are the caller's business.
///
/// `requester` and `request` only label the error.
///
/// # Safety
/// `start` must be a valid context (or null: nothing to do).
#[inline]
pub(crate) unsafe fn charge(
    start: *mut ContextHeader,
    bytes: usize,
    requester: &'static str,
    request: usize,
) -> Result<(), Error> {
    // SAFETY: caller contract.
    unsafe { charge_below(start, ptr::null_mut(), bytes, requester, request) }
}

/// Set when a context is first given a byte limit (by any thread) and
/// never cleared. Until then no charge can fail, and charges, walked once
/// per block and per context created, skip the comparisons: most programs
/// never set a limit.
#[cfg(target_has_atomic = "8")]
static LIMITS_SET: AtomicBool = AtomicBool::new(false);

/// False while no context has ever had a limit.
#[inline(always)]
fn limits_set() -> bool {
    #[cfg(target_has_atomic = "8")]
    {
        // Relaxed is enough: a limit set by this thread is seen in program
        // order, and one set by another thread on a context this thread now
        // uses was handed over with the synchronisation that moved it.
        LIMITS_SET.load(Ordering::Relaxed)
    }
    #[cfg(not(target_has_atomic = "8"))]
    {
        true
    }
}

/// Sets the byte limit over the subtree of `ctx` (`usize::MAX`: none).
///
/// # Safety
/// `ctx` must be a valid context.
pub(crate) unsafe fn set_limit(ctx: *mut ContextHeader, limit: usize) {
    #[cfg(target_has_atomic = "8")]
    if limit != usize::MAX {
        LIMITS_SET.store(true, Ordering::Relaxed);
    }
    // SAFETY: caller contract.
    unsafe { (*ctx).limit = limit };
}

/// [`charge`] for the chain from `start` up to, not including, `stop`
/// (an ancestor of `start`, or null for the whole chain).
///
/// # Safety
/// As [`charge`]; `stop` is null or an ancestor of `start`.
#[inline(always)]
unsafe fn charge_below(
    start: *mut ContextHeader,
    stop: *mut ContextHeader,
    bytes: usize,
    requester: &'static str,
    request: usize,
) -> Result<(), Error> {
    if limits_set() {
        // SAFETY: caller contract.
        return unsafe { charge_below_checked(start, stop, bytes, requester, request) };
    }
    // No limit anywhere: the totals cannot wrap either, as they count
    // bytes held at once and `bytes` is at most half the address space
    // plus a block header.
    // SAFETY: caller contract.
    unsafe { charge_unchecked_below(start, stop, bytes) };
    Ok(())
}

/// [`charge_below`] once limits are in use.
///
/// # Safety
/// As [`charge_below`].
#[inline(never)]
unsafe fn charge_below_checked(
    start: *mut ContextHeader,
    stop: *mut ContextHeader,
    bytes: usize,
    requester: &'static str,
    request: usize,
) -> Result<(), Error> {
    let mut cur = start;
    // SAFETY: `cur` walks valid ancestors (tree invariant).
    unsafe {
        while cur != stop {
            let new_total = (*cur).subtree_bytes.saturating_add(bytes);
            if new_total > (*cur).limit {
                let err = ErrorKind::LimitExceeded {
                    limit_context: (*cur).name,
                    limit: (*cur).limit,
                    held: (*cur).subtree_bytes,
                };
                // Undo the part already charged.
                let mut undo = start;
                while undo != cur {
                    (*undo).subtree_bytes -= bytes;
                    undo = (*undo).parent;
                }
                return Err(Error::new(err, requester, request));
            }
            (*cur).subtree_bytes = new_total;
            cur = (*cur).parent;
        }
    }
    Ok(())
}

/// Adds `bytes` to the subtree totals from `start` up to, not including,
/// `stop`, ignoring limits (used to restore a previous state, and while
/// no limit is set).
///
/// # Safety
/// `start` valid or null; `stop` null or an ancestor of `start`.
#[inline(always)]
unsafe fn charge_unchecked_below(
    start: *mut ContextHeader,
    stop: *mut ContextHeader,
    bytes: usize,
) {
    let mut cur = start;
    // SAFETY: `cur` walks valid ancestors (tree invariant).
    unsafe {
        while cur != stop {
            (*cur).subtree_bytes += bytes;
            cur = (*cur).parent;
        }
    }
}

/// Subtracts `bytes` from the subtree totals of `start` and its ancestors.
///
/// # Safety
/// `start` must be a valid context or null, and the bytes must have been
/// charged before.
#[inline]
pub(crate) unsafe fn discharge(start: *mut ContextHeader, bytes: usize) {
    // SAFETY: caller contract.
    unsafe { discharge_below(start, ptr::null_mut(), bytes) }
}

/// [`discharge`] up to, not including, `stop`.
///
/// # Safety
/// As [`discharge`]; `stop` null or an ancestor of `start`.
unsafe fn discharge_below(start: *mut ContextHeader, stop: *mut ContextHeader, bytes: usize) {
    let mut cur = start;
    // SAFETY: `cur` walks valid ancestors (tree invariant).
    unsafe {
        while cur != stop {
            debug_assert!((*cur).subtree_bytes >= bytes);
            (*cur).subtree_bytes -= bytes;
            cur = (*cur).parent;
        }
    }
}

/// Depth of `ctx` (a root is 0), or 0 for null.
unsafe fn depth(mut ctx: *mut ContextHeader) -> usize {
    let mut d = 0;
    // SAFETY: walks valid ancestors (tree invariant).
    unsafe {
        while !ctx.is_null() && !(*ctx).parent.is_null() {
            d += 1;
            ctx = (*ctx).parent;
        }
    }
    d
}

/// The lowest common ancestor of `a` and `b` (either may be null), or null.
unsafe fn common_ancestor(
    mut a: *mut ContextHeader,
    mut b: *mut ContextHeader,
) -> *mut ContextHeader {
    if a.is_null() || b.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: walks valid ancestors (tree invariant).
    unsafe {
        let (mut da, mut db) = (depth(a), depth(b));
        while da > db {
            a = (*a).parent;
            da -= 1;
        }
        while db > da {
            b = (*b).parent;
            db -= 1;
        }
        while a != b {
            a = (*a).parent;
            b = (*b).parent;
        }
    }
    a
}

/// Records that `ctx` acquired `bytes` from the system (checking limits).
///
/// # Safety
/// `ctx` must be a valid context.
#[inline]
pub(crate) unsafe fn acquire(
    ctx: *mut ContextHeader,
    bytes: usize,
    request: usize,
) -> Result<(), Error> {
    // SAFETY: `ctx` is valid (caller contract).
    unsafe {
        charge(ctx, bytes, (*ctx).name, request)?;
        (*ctx).own_bytes += bytes;
    }
    Ok(())
}

/// Records that `ctx` returned `bytes` to the system.
///
/// # Safety
/// `ctx` must be a valid context holding at least `bytes`.
#[inline]
pub(crate) unsafe fn release(ctx: *mut ContextHeader, bytes: usize) {
    // SAFETY: `ctx` is valid (caller contract).
    unsafe {
        debug_assert!((*ctx).own_bytes >= bytes);
        (*ctx).own_bytes -= bytes;
        discharge(ctx, bytes);
    }
}

/// Pushes a callback; it runs at the next reset or at delete.
///
/// # Safety
/// `ctx` valid; `cb` valid until it has run or the context is gone.
pub(crate) unsafe fn register_callback(ctx: *mut ContextHeader, cb: *mut ResetCallback) {
    // SAFETY: caller contract.
    unsafe {
        (*cb).next = (*ctx).callbacks;
        (*ctx).callbacks = cb;
        (*ctx).is_reset = false;
    }
}

/// Removes a registered callback without running it; false if it was not
/// registered (PostgreSQL 19's `MemoryContextUnregisterResetCallback`).
///
/// # Safety
/// `ctx` valid.
pub(crate) unsafe fn unregister_callback(ctx: *mut ContextHeader, cb: *mut ResetCallback) -> bool {
    // SAFETY: the callback list holds valid records (register contract).
    unsafe {
        let mut link: *mut *mut ResetCallback = &mut (*ctx).callbacks;
        while !(*link).is_null() {
            if *link == cb {
                *link = (*cb).next;
                (*cb).next = ptr::null_mut();
                return true;
            }
            link = &mut (**link).next;
        }
    }
    false
}

/// Runs and removes all callbacks of `ctx`, newest first.
unsafe fn run_callbacks(ctx: *mut ContextHeader) {
    // SAFETY: records are valid until they have run (register contract);
    // each is unlinked before its call.
    unsafe {
        loop {
            let cb = (*ctx).callbacks;
            if cb.is_null() {
                break;
            }
            (*ctx).callbacks = (*cb).next;
            ((*cb).func)((*cb).arg);
        }
    }
}

/// `MemoryContextReset`: delete all descendants, then free all chunks.
///
/// # Safety
/// `ctx` valid; no chunk of it or of a descendant may be used afterwards,
/// and no descendant handle either.
pub(crate) unsafe fn reset(ctx: *mut ContextHeader) {
    // SAFETY: caller contract.
    unsafe {
        if !(*ctx).first_child.is_null() {
            delete_children(ctx);
        }
        if !(*ctx).is_reset {
            reset_only_slow(ctx);
        }
    }
}

/// `MemoryContextResetOnly`: free all chunks of `ctx`; children untouched.
///
/// # Safety
/// As [`reset`], for the chunks of `ctx`.
#[inline]
pub(crate) unsafe fn reset_only(ctx: *mut ContextHeader) {
    // SAFETY: caller contract.
    unsafe {
        if !(*ctx).is_reset {
            reset_only_slow(ctx);
        }
    }
}

/// The reset of a context used since its last reset. Not cold: a good
/// share of the resets of real workloads (per-tuple contexts) land here.
#[inline(never)]
unsafe fn reset_only_slow(ctx: *mut ContextHeader) {
    // SAFETY: caller contract; callbacks run before any memory is freed.
    unsafe {
        if !(*ctx).callbacks.is_null() {
            run_callbacks(ctx);
        }
        if (*ctx).kind == ContextKind::AllocSet {
            before_kind_reset(ctx);
            aset::reset(ctx.cast());
            (*ctx).is_reset = true;
        } else {
            kind_reset(ctx);
            // Bump allocation does not clear the flag (it saves a store per
            // chunk), so a Bump context never claims to be reset.
            (*ctx).is_reset = (*ctx).kind != ContextKind::Bump;
        }
    }
}

/// `MemoryContextResetChildren`: reset-only every descendant (pre-order,
/// iterative); `ctx` itself is untouched.
///
/// # Safety
/// As [`reset_only`] for every descendant.
pub(crate) unsafe fn reset_children(ctx: *mut ContextHeader) {
    // SAFETY: walks valid tree links; callbacks must not edit the tree
    // (raw API contract).
    unsafe {
        let mut cur = (*ctx).first_child;
        while !cur.is_null() {
            reset_only(cur);
            cur = next_preorder(cur, ctx);
        }
    }
}

/// Next context in pre-order within the subtree of `root` (excluded), or null.
///
/// # Safety
/// `cur` must be a valid context inside the subtree of `root`.
pub(crate) unsafe fn next_preorder(
    cur: *mut ContextHeader,
    root: *mut ContextHeader,
) -> *mut ContextHeader {
    // SAFETY: valid tree links (caller contract).
    unsafe {
        if !(*cur).first_child.is_null() {
            return (*cur).first_child;
        }
        let mut c = cur;
        while c != root {
            if !(*c).next_sibling.is_null() {
                return (*c).next_sibling;
            }
            c = (*c).parent;
        }
    }
    ptr::null_mut()
}

/// `MemoryContextDeleteChildren`.
///
/// # Safety
/// No descendant (handle or chunk) may be used afterwards.
pub(crate) unsafe fn delete_children(ctx: *mut ContextHeader) {
    // SAFETY: caller contract.
    unsafe {
        while !(*ctx).first_child.is_null() {
            delete((*ctx).first_child);
        }
    }
}

/// `MemoryContextDelete`: `ctx` and its whole subtree, children first.
///
/// # Safety
/// Nothing of the subtree may be used afterwards. Callbacks run during the
/// delete must not delete or reparent contexts of the subtree.
pub(crate) unsafe fn delete(ctx: *mut ContextHeader) {
    // SAFETY: caller contract; see the module docs for the accounting.
    unsafe {
        let parent = (*ctx).parent;
        if !parent.is_null() {
            unlink(ctx);
            discharge(parent, (*ctx).subtree_bytes);
        }
        #[cfg(feature = "std")]
        let current = crate::current::current_ptr();
        let mut cur = ctx;
        loop {
            while !(*cur).first_child.is_null() {
                cur = (*cur).first_child;
            }
            run_callbacks(cur);
            if !(*cur).first_child.is_null() {
                // A callback created a child: delete it first.
                continue;
            }
            let up = (*cur).parent;
            if cur != ctx {
                unlink(cur);
            }
            #[cfg(feature = "std")]
            if cur == current {
                crate::current::clear_current();
            }
            // The identifier is the header's only owned field; dropped here,
            // once, for every kind (recycled contexts keep `None`).
            (*cur).ident = None;
            kind_delete(cur);
            if cur == ctx {
                break;
            }
            cur = up;
        }
    }
}

/// Makes `new_parent` (or nobody) the parent of `ctx`, moving its subtree
/// totals; refuses cycles and limit overruns without changing anything.
///
/// # Safety
/// Both valid.
pub(crate) unsafe fn set_parent(
    ctx: *mut ContextHeader,
    new_parent: *mut ContextHeader,
) -> Result<(), Error> {
    // SAFETY: caller contract; tree links are valid.
    unsafe {
        let old = (*ctx).parent;
        if old == new_parent {
            return Ok(());
        }
        if !new_parent.is_null() {
            let mut a = new_parent;
            while !a.is_null() {
                if a == ctx {
                    return Err(Error::new(
                        ErrorKind::Cycle {
                            new_parent: (*new_parent).name,
                        },
                        (*ctx).name,
                        0,
                    ));
                }
                a = (*a).parent;
            }
        }
        // Ancestors common to the old and new places keep their totals:
        // only the chains below the lowest common ancestor change, and
        // only the new one is checked against limits (a limit already
        // below usage must not forbid a move that adds nothing to it).
        let bytes = (*ctx).subtree_bytes;
        let common = common_ancestor(old, new_parent);
        discharge_below(old, common, bytes);
        if let Err(e) = charge_below(new_parent, common, bytes, (*ctx).name, bytes) {
            charge_unchecked_below(old, common, bytes);
            return Err(e);
        }
        unlink(ctx);
        if !new_parent.is_null() {
            link(ctx, new_parent);
        }
    }
    Ok(())
}

/// True if `ctx` has no children and its kind reports no allocations.
///
/// # Safety
/// `ctx` valid.
pub(crate) unsafe fn is_empty(ctx: *mut ContextHeader) -> bool {
    // SAFETY: caller contract; the kind tag names the real type.
    unsafe {
        if !(*ctx).first_child.is_null() {
            return false;
        }
        if (*ctx).is_reset {
            return true;
        }
        match (*ctx).kind {
            ContextKind::AllocSet => false,
            ContextKind::Bump => bump::is_empty(ctx.cast()),
            ContextKind::Generation => generation::is_empty(ctx.cast()),
            ContextKind::Slab => slab::is_empty(ctx.cast()),
        }
    }
}

/// Frees all chunks of `ctx` the kind's way (callbacks already run).
unsafe fn kind_reset(ctx: *mut ContextHeader) {
    // SAFETY: the kind tag tells the real type of the context.
    unsafe {
        before_kind_reset(ctx);
        match (*ctx).kind {
            ContextKind::AllocSet => aset::reset(ctx.cast()),
            ContextKind::Generation => generation::reset(ctx.cast()),
            ContextKind::Slab => slab::reset(ctx.cast()),
            ContextKind::Bump => bump::reset(ctx.cast()),
        }
    }
}

/// What the debugging layers do before a kind resets: `checking` verifies
/// the live chunks, the sanitizer hooks end them (first, so that what the
/// kind then rewinds stays accessible). Nothing without those features.
#[inline(always)]
unsafe fn before_kind_reset(ctx: *mut ContextHeader) {
    #[cfg(feature = "checking")]
    // SAFETY: `ctx` is live (callers).
    unsafe {
        crate::checking::before_reset(ctx)
    };
    crate::instrument::context_reset(ctx);
}

/// Frees `ctx` itself (unlinked, childless, callbacks run).
unsafe fn kind_delete(ctx: *mut ContextHeader) {
    // SAFETY: the kind tag tells the real type of the context.
    unsafe {
        #[cfg(feature = "checking")]
        {
            if !(*ctx).is_reset {
                crate::checking::before_reset(ctx);
            }
            crate::checking::unregister(ctx);
        }
        crate::instrument::context_deleted(ctx);
        match (*ctx).kind {
            ContextKind::AllocSet => aset::delete(ctx.cast()),
            ContextKind::Generation => generation::delete(ctx.cast()),
            ContextKind::Slab => slab::delete(ctx.cast()),
            ContextKind::Bump => bump::delete(ctx.cast()),
        }
    }
}
