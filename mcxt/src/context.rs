//! The safe API: owned context handles whose lifetimes the borrow checker
//! enforces.
//!
//! * Allocation takes `&self` and returns references that borrow the
//!   context; [`Context::reset`] takes `&mut self` and dropping the handle
//!   deletes the context, so no reference can outlive its memory.
//! * A child handle borrows its parent, so the parent cannot be reset or
//!   dropped (both would delete the child) while the child handle lives.
//! * [`PBox`] owns one value and frees its chunk when dropped; values given
//!   to [`Context::alloc_with_drop`] are dropped when the context is reset
//!   or deleted.

use crate::aset::AllocSetSizes;
use crate::error::{AllocFlags, Error};
use crate::raw::{self, MemoryContext};
use crate::stats::{Counters, StatsSnapshot};
use crate::tree::ResetCallback;
use crate::{BlockSizes, ContextKind, ContextSpec};
use alloc::boxed::Box;
use alloc::string::String;
use core::alloc::Layout;
use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{self, ManuallyDrop};
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};

/// An owned memory context (AllocSet kind).
///
/// `'parent` is the borrow of the parent's handle; roots are
/// `Context<'static>`. Dropping the handle deletes the context and its
/// whole subtree.
///
/// ```
/// use mcxt::Context;
/// let mut per_query = Context::new("per-query");
/// for row in 0..3 {
///     let name = per_query.alloc_str(&format!("row {row}"));
///     let nums = per_query.alloc_slice_copy(&[row; 16]);
///     assert_eq!(name.len() + nums.len(), 5 + 16);
///     per_query.reset(); // `name` and `nums` can no longer be used
/// }
/// ```
///
/// References cannot outlive a reset:
///
/// ```compile_fail
/// let mut ctx = mcxt::Context::new("c");
/// let x = ctx.alloc(1u32);
/// ctx.reset();
/// *x += 1; // error: `ctx` is borrowed mutably while `x` lives
/// ```
pub struct Context<'parent> {
    raw: MemoryContext,
    /// The kind never changes: kept here so allocation loops dispatch on
    /// a value in the handle rather than reloading it from the context.
    kind: ContextKind,
    _parent: PhantomData<&'parent ()>,
    /// Contexts share per-thread state (current context, recycling cache)
    /// and their tree is unsynchronised: neither `Send` nor `Sync`.
    _not_send: PhantomData<*mut ()>,
}

#[cold]
fn oom(e: Error) -> ! {
    panic!("{e}")
}

/// Moves `value` into `chunk`, or gives it back with the error.
///
/// # Safety
/// `chunk`, if `Ok`, is a fresh chunk with `T`'s layout that stays valid
/// and unaliased for `'a`.
#[inline(always)]
unsafe fn emplace<'a, T>(
    chunk: Result<NonNull<u8>, Error>,
    value: T,
) -> Result<&'a mut T, (T, Error)> {
    match chunk {
        Ok(p) => {
            let p = p.cast::<T>().as_ptr();
            // SAFETY: caller contract.
            unsafe {
                p.write(value);
                Ok(&mut *p)
            }
        }
        Err(e) => Err((value, e)),
    }
}

/// Copies `src` into `chunk`.
///
/// # Safety
/// `chunk` is a fresh chunk with `src`'s layout that stays valid and
/// unaliased for `'a`.
#[inline]
unsafe fn copy_slice<'a, T: Copy>(chunk: NonNull<u8>, src: &[T]) -> &'a mut [T] {
    let p = chunk.cast::<T>().as_ptr();
    // SAFETY: caller contract; `T: Copy`, so the copy needs no drop.
    unsafe {
        ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
        core::slice::from_raw_parts_mut(p, src.len())
    }
}

/// The allocation methods built on a type's `try_alloc_layout`, written
/// once for [`Context`] and [`BumpContext`] (each has its own
/// `try_alloc_layout`: the generic dispatch, or the bump with its kind
/// known).
macro_rules! alloc_methods {
    () => {
        /// Moves `value` into the context. Its destructor never runs (use
        /// [`Context::alloc_with_drop`] or [`Context::boxed`] for that).
        ///
        /// # Panics
        /// If out of memory or over a limit; see
        /// [`try_alloc`](Self::try_alloc).
        #[allow(clippy::mut_from_ref)] // each call returns a fresh, distinct chunk
        #[inline]
        pub fn alloc<T>(&self, value: T) -> &mut T {
            self.try_alloc(value).unwrap_or_else(|(_, e)| oom(e))
        }

        /// Moves `value` into the context, or gives it back with the error.
        #[allow(clippy::mut_from_ref)] // each call returns a fresh, distinct chunk
        #[inline]
        pub fn try_alloc<T>(&self, value: T) -> Result<&mut T, (T, Error)> {
            // SAFETY: a fresh chunk with T's layout, borrowed for as long as
            // `self` is, which reset/drop require ending.
            unsafe { emplace(self.try_alloc_layout(Layout::new::<T>()), value) }
        }

        /// Copies a slice into the context.
        #[allow(clippy::mut_from_ref)] // each call returns a fresh, distinct chunk
        pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> &mut [T] {
            let p = self
                .try_alloc_layout(Layout::for_value(src))
                .unwrap_or_else(|e| oom(e));
            // SAFETY: a fresh chunk of the slice's layout, borrowed as above.
            unsafe { copy_slice(p, src) }
        }

        /// Copies a string into the context (`MemoryContextStrdup`).
        #[allow(clippy::mut_from_ref)] // each call returns a fresh, distinct chunk
        pub fn alloc_str(&self, s: &str) -> &mut str {
            let bytes = self.alloc_slice_copy(s.as_bytes());
            // SAFETY: copied from a `str`.
            unsafe { core::str::from_utf8_unchecked_mut(bytes) }
        }
    };
}

impl Context<'static> {
    /// A new root context with [`AllocSetSizes::DEFAULT`].
    ///
    /// # Panics
    /// If the system is out of memory; see [`try_new`](Self::try_new).
    pub fn new(name: &'static str) -> Context<'static> {
        Self::try_new(name, AllocSetSizes::DEFAULT).unwrap_or_else(|e| oom(e))
    }

    /// A new root AllocSet context with the given block sizes.
    pub fn try_new(name: &'static str, sizes: AllocSetSizes) -> Result<Context<'static>, Error> {
        Self::try_new_with(name, ContextSpec::AllocSet(sizes))
    }

    /// A new root context of any kind.
    pub fn try_new_with(name: &'static str, spec: ContextSpec) -> Result<Context<'static>, Error> {
        // SAFETY: no parent.
        unsafe { MemoryContext::create(None, name, spec).map(Self::from_raw_unchecked) }
    }
}

impl<'parent> Context<'parent> {
    fn from_raw_unchecked<'p>(raw: MemoryContext) -> Context<'p> {
        Context {
            raw,
            // SAFETY: `raw` is a live context (every caller just created or
            // owns it).
            kind: unsafe { raw.kind() },
            _parent: PhantomData,
            _not_send: PhantomData,
        }
    }

    /// A child context with [`AllocSetSizes::DEFAULT`]; it borrows `self`.
    ///
    /// # Panics
    /// If out of memory or if the new context would exceed a limit; see
    /// [`try_new_child`](Self::try_new_child).
    pub fn new_child(&self, name: &'static str) -> Context<'_> {
        self.try_new_child(name, AllocSetSizes::DEFAULT)
            .unwrap_or_else(|e| oom(e))
    }

    /// A child AllocSet context with the given block sizes.
    pub fn try_new_child(
        &self,
        name: &'static str,
        sizes: AllocSetSizes,
    ) -> Result<Context<'_>, Error> {
        self.try_new_child_with(name, ContextSpec::AllocSet(sizes))
    }

    /// A child context of any kind.
    pub fn try_new_child_with(
        &self,
        name: &'static str,
        spec: ContextSpec,
    ) -> Result<Context<'_>, Error> {
        // SAFETY: `self` is alive.
        unsafe { MemoryContext::create(Some(self.raw), name, spec).map(Self::from_raw_unchecked) }
    }

    /// The context's kind.
    pub fn kind(&self) -> ContextKind {
        self.kind
    }

    /// Frees a chunk of this context, unless the kind cannot (Bump).
    ///
    /// # Safety
    /// `ptr` must be a live chunk of this context, not used afterwards.
    pub(crate) unsafe fn free_chunk(&self, ptr: NonNull<u8>) {
        if self.kind() != ContextKind::Bump {
            // SAFETY: caller contract.
            let _ = unsafe { raw::free(ptr) };
        }
    }

    /// The raw handle, for the raw API. It stays valid while `self` lives.
    pub fn as_raw(&self) -> MemoryContext {
        self.raw
    }

    /// Raw memory for `layout`. The chunk is freed at reset or delete, or
    /// earlier with [`raw::free`].
    #[inline]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, Error> {
        // SAFETY: `self` is alive and of kind `self.kind`.
        unsafe {
            if matches!(layout.align(), 1 | 2 | 4 | 8) {
                crate::raw::alloc_known(
                    self.raw.header(),
                    self.kind,
                    layout.size(),
                    AllocFlags::empty(),
                )
            } else {
                crate::aligned::alloc(
                    self.raw.header(),
                    layout.size(),
                    layout.align(),
                    AllocFlags::empty(),
                )
            }
        }
    }

    /// `size` raw bytes (8-aligned).
    #[inline]
    pub fn try_alloc_bytes(&self, size: usize) -> Result<NonNull<u8>, Error> {
        // SAFETY: `self` is alive.
        unsafe { self.raw.alloc(size) }
    }

    alloc_methods!();

    /// A slice of `len` elements made by `f(index)`.
    #[allow(clippy::mut_from_ref)] // each call returns a fresh, distinct chunk
    pub fn alloc_slice_fill_with<T>(&self, len: usize, mut f: impl FnMut(usize) -> T) -> &mut [T] {
        let layout = Layout::array::<T>(len).unwrap_or_else(|_| {
            oom(Error::new(
                crate::ErrorKind::InvalidSize,
                self.name(),
                usize::MAX,
            ))
        });
        let p = self
            .try_alloc_layout(layout)
            .unwrap_or_else(|e| oom(e))
            .cast::<T>()
            .as_ptr();
        for i in 0..len {
            // SAFETY: index within the fresh chunk; if `f` panics the
            // written elements are leaked, not dropped twice.
            unsafe { p.add(i).write(f(i)) };
        }
        // SAFETY: all `len` elements are initialised.
        unsafe { core::slice::from_raw_parts_mut(p, len) }
    }

    /// Moves `value` into the context and drops it when the context is
    /// reset or deleted (newest first, children's before the parent's).
    ///
    /// `T: 'static` because the drop happens at an unknown later time,
    /// when borrowed data could be gone. A panic in `T`'s destructor aborts.
    ///
    /// ```
    /// use std::rc::Rc;
    /// let counter = Rc::new(());
    /// let mut ctx = mcxt::Context::new("c");
    /// ctx.alloc_with_drop(Rc::clone(&counter));
    /// assert_eq!(Rc::strong_count(&counter), 2);
    /// ctx.reset();
    /// assert_eq!(Rc::strong_count(&counter), 1);
    /// ```
    #[allow(clippy::mut_from_ref)] // each call returns a fresh, distinct chunk
    pub fn alloc_with_drop<T: 'static>(&self, value: T) -> &mut T {
        unsafe extern "C" fn drop_value<T>(arg: *mut c_void) {
            // SAFETY: `arg` is the live value, dropped once: the callback
            // is unlinked before it runs, and the chunk is freed after.
            unsafe { ptr::drop_in_place(arg.cast::<T>()) }
        }
        let p = self
            .try_alloc_layout(Layout::new::<T>())
            .unwrap_or_else(|e| oom(e))
            .cast::<T>()
            .as_ptr();
        // The callback keeps the chunk's own pointer and the reference is
        // derived from it, so the reference (dead when the callback runs: a
        // reset needs `&mut self`) does not invalidate the pointer.
        // SAFETY: a fresh chunk with T's layout; see above.
        unsafe {
            p.write(value);
            if mem::needs_drop::<T>() {
                self.register_callback(drop_value::<T>, p.cast());
            }
            &mut *p
        }
    }

    /// Runs `f` at the next reset or at delete (a reset callback). A panic
    /// in `f` aborts.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// let hits = Rc::new(Cell::new(0));
    /// let mut ctx = mcxt::Context::new("c");
    /// let h = hits.clone();
    /// ctx.on_reset(move || h.set(h.get() + 1));
    /// ctx.reset();
    /// ctx.reset(); // callbacks run once
    /// assert_eq!(hits.get(), 1);
    /// ```
    pub fn on_reset<F: FnOnce() + 'static>(&self, f: F) {
        unsafe extern "C" fn call<F: FnOnce()>(arg: *mut c_void) {
            // SAFETY: `arg` is the boxed closure, taken once (the callback
            // is unlinked before it runs).
            let f = unsafe { Box::from_raw(arg.cast::<F>()) };
            f();
        }
        self.register_callback(call::<F>, Box::into_raw(Box::new(f)).cast());
    }

    /// Registers `func(arg)` to run at the next reset or at delete. The
    /// callback record is a chunk of this context, as in PostgreSQL, except
    /// in Slab contexts (whose chunks have one size), where it is boxed and
    /// freed by its own call.
    fn register_callback(&self, func: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) {
        #[repr(C)]
        struct Boxed {
            cb: ResetCallback,
            func: unsafe extern "C" fn(*mut c_void),
            arg: *mut c_void,
        }
        unsafe extern "C" fn call_boxed(rec: *mut c_void) {
            // SAFETY: `rec` is the record boxed below; the tree reads
            // nothing of it once the call has begun.
            let rec = unsafe { Box::from_raw(rec.cast::<Boxed>()) };
            // SAFETY: the registered callback, called once.
            unsafe { (rec.func)(rec.arg) };
        }
        let cb = if self.kind() == ContextKind::Slab {
            let rec = Box::into_raw(Box::new(Boxed {
                cb: ResetCallback {
                    func: call_boxed,
                    arg: ptr::null_mut(),
                    next: ptr::null_mut(),
                },
                func,
                arg,
            }));
            // SAFETY: `rec` is a fresh, exclusively owned box.
            unsafe {
                (*rec).cb.arg = rec.cast();
                ptr::addr_of_mut!((*rec).cb)
            }
        } else {
            let p = self
                .try_alloc_layout(Layout::new::<ResetCallback>())
                .unwrap_or_else(|e| oom(e))
                .cast::<ResetCallback>()
                .as_ptr();
            // SAFETY: a fresh chunk for the record, freed only after the
            // callbacks of the reset that runs it.
            unsafe {
                p.write(ResetCallback {
                    func,
                    arg,
                    next: ptr::null_mut(),
                })
            };
            p
        };
        // SAFETY: the record stays valid until its callback ran.
        unsafe { self.raw.register_reset_callback(NonNull::new_unchecked(cb)) };
    }

    /// Moves `value` into a [`PBox`], which drops it and frees its chunk
    /// when dropped.
    pub fn boxed<T>(&self, value: T) -> PBox<'_, T> {
        self.try_boxed(value).unwrap_or_else(|(_, e)| oom(e))
    }

    /// As [`boxed`](Self::boxed), giving the value back on failure.
    pub fn try_boxed<T>(&self, value: T) -> Result<PBox<'_, T>, (T, Error)> {
        match self.try_alloc_layout(Layout::new::<T>()) {
            Ok(p) => {
                // The box keeps the chunk's own pointer: `free` reads the
                // header before the value, outside what a `&mut T` covers.
                let ptr = p.cast::<T>();
                // SAFETY: a fresh chunk with T's layout.
                unsafe { ptr.as_ptr().write(value) };
                Ok(PBox {
                    ptr,
                    free_chunk: self.kind() != ContextKind::Bump,
                    _ctx: PhantomData,
                })
            }
            Err(e) => Err((value, e)),
        }
    }

    /// Frees every chunk and deletes every child (`MemoryContextReset`).
    /// Keeps the first block, so a reset loop does not call the system
    /// allocator; costs nothing if nothing was allocated since the last
    /// reset.
    pub fn reset(&mut self) {
        // SAFETY: `&mut self` proves no reference into the context and no
        // child handle (children borrow `self`) is alive.
        unsafe { self.raw.reset() }
    }

    /// Deletes every child context (`MemoryContextDeleteChildren`); this
    /// context's chunks stay.
    pub fn delete_children(&mut self) {
        // SAFETY: no child handle can be alive (they borrow `self`).
        unsafe { self.raw.delete_children() }
    }

    /// Bytes held from the system by this context, or with `recurse` by
    /// its whole subtree (O(1)).
    pub fn mem_allocated(&self, recurse: bool) -> usize {
        // SAFETY: alive.
        unsafe { self.raw.mem_allocated(recurse) }
    }

    /// Sets or removes a byte limit over this context's subtree, checked
    /// whenever a block is acquired.
    ///
    /// ```
    /// let ctx = mcxt::Context::new("bounded");
    /// ctx.set_limit(Some(64 * 1024));
    /// let err = ctx.try_alloc_bytes(100_000).unwrap_err();
    /// assert!(matches!(err.kind, mcxt::ErrorKind::LimitExceeded { limit: 65536, .. }));
    /// assert!(err.to_string().contains("bounded"));
    /// ```
    pub fn set_limit(&self, limit: Option<usize>) {
        // SAFETY: alive.
        unsafe { self.raw.set_limit(limit) }
    }

    /// The byte limit, if any.
    pub fn limit(&self) -> Option<usize> {
        // SAFETY: alive.
        unsafe { self.raw.limit() }
    }

    /// The name given at creation.
    pub fn name(&self) -> &'static str {
        // SAFETY: alive.
        unsafe { self.raw.name() }
    }

    /// The identifier, if set.
    pub fn ident(&self) -> Option<&str> {
        // SAFETY: alive; `set_ident` takes `&mut self`, so the string
        // outlives this borrow.
        unsafe { self.raw.ident() }
    }

    /// Sets or clears the identifier shown after the name in stats.
    pub fn set_ident(&mut self, ident: Option<&str>) {
        // SAFETY: alive.
        unsafe { self.raw.set_ident(ident) }
    }

    /// No children and nothing allocated since the last reset.
    pub fn is_empty(&self) -> bool {
        // SAFETY: alive.
        unsafe { self.raw.is_empty() }
    }

    /// Allows allocation in this context inside a
    /// [`CriticalSection`](crate::CriticalSection).
    pub fn allow_in_critical_section(&self, allow: bool) {
        // SAFETY: alive.
        unsafe { self.raw.allow_in_critical_section(allow) }
    }

    /// Bump contexts: lets a reset keep up to `max_bytes` of blocks for
    /// reuse (bumpalo keeps its largest chunk); 0, the default, returns
    /// every block but the first to the system at reset, as PostgreSQL
    /// does. See
    /// [`raw::MemoryContext::retain_on_reset`](crate::raw::MemoryContext::retain_on_reset).
    ///
    /// ```
    /// use mcxt::{BlockSizes, Context, ContextSpec};
    /// let mut ctx = Context::try_new_with("rows", ContextSpec::Bump(BlockSizes::DEFAULT))?;
    /// ctx.retain_on_reset(1 << 20)?;
    /// let mut held = Vec::new();
    /// for _ in 0..4 {
    ///     for i in 0..10_000u64 {
    ///         ctx.alloc(i);
    ///     }
    ///     ctx.reset();
    ///     held.push(ctx.mem_allocated(false));
    /// }
    /// // Blocks stay: after the first cycle, no block comes or goes.
    /// assert!(held[0] > BlockSizes::DEFAULT.init_block_size);
    /// assert_eq!(held[1], held[3]);
    /// // Other kinds refuse.
    /// assert!(Context::new("general").retain_on_reset(1 << 20).is_err());
    /// # Ok::<(), mcxt::Error>(())
    /// ```
    pub fn retain_on_reset(&self, max_bytes: usize) -> Result<(), Error> {
        // SAFETY: alive.
        unsafe { self.raw.retain_on_reset(max_bytes) }
    }

    /// Counters of this context alone.
    pub fn counters(&self) -> Counters {
        // SAFETY: alive.
        unsafe { self.raw.counters() }
    }

    /// A structured snapshot of the subtree.
    pub fn stats(&self) -> StatsSnapshot {
        // SAFETY: alive; `&self` keeps the tree from changing.
        unsafe { self.raw.stats() }
    }

    /// The subtree in PostgreSQL's `MemoryContextStats` text format (100
    /// levels and 100 children per parent at most, the rest summarised).
    ///
    /// ```
    /// let top = mcxt::Context::new("TopMemoryContext");
    /// let _child = top.new_child("MessageContext");
    /// let text = top.stats_text();
    /// // Unused contexts hold their header only, and no block yet.
    /// assert!(text.starts_with("TopMemoryContext: "));
    /// assert!(text.contains(" total in 0 blocks; 0 free (0 chunks); "));
    /// assert!(text.contains("\n  MessageContext: "));
    /// let total = top.mem_allocated(true);
    /// assert!(text.ends_with(&format!("Grand total: {total} bytes in 0 blocks; 0 free (0 chunks); {total} used\n")));
    /// ```
    pub fn stats_text(&self) -> String {
        self.stats_text_limited(100, 100)
    }

    /// As [`stats_text`](Self::stats_text) with explicit limits.
    pub fn stats_text_limited(&self, max_level: usize, max_children: usize) -> String {
        let mut s = String::new();
        // SAFETY: alive; writing to a String does not touch the tree.
        let _ = unsafe { self.raw.write_stats(&mut s, max_level, max_children) };
        s
    }

    /// Prints [`stats_text`](Self::stats_text) to stderr
    /// (`MemoryContextStats`).
    #[cfg(feature = "std")]
    pub fn print_stats(&self) {
        std::eprint!("{}", self.stats_text());
    }

    /// Makes this the thread's current context until the guard is dropped,
    /// so [`palloc`](crate::palloc) and friends allocate here.
    #[cfg(feature = "std")]
    pub fn switch_to(&self) -> crate::current::SwitchGuard<'_> {
        // SAFETY: the guard borrows `self`, so the context outlives it.
        unsafe { crate::current::SwitchGuard::new(self.raw) }
    }

    /// Moves this context under `new_parent` (`MemoryContextSetParent`).
    /// On error (a limit of the new ancestors) the handle comes back
    /// unchanged.
    pub fn reparent<'q>(self, new_parent: &'q Context<'_>) -> Result<Context<'q>, (Self, Error)> {
        // SAFETY: both alive; `self` has no borrowers (it is moved), so it
        // cannot be an ancestor of `new_parent` held through a handle... and
        // the raw call refuses cycles anyway.
        match unsafe { self.raw.set_parent(Some(new_parent.raw)) } {
            Ok(()) => {
                let raw = self.raw;
                mem::forget(self);
                Ok(Self::from_raw_unchecked(raw))
            }
            Err(e) => Err((self, e)),
        }
    }

    /// Makes this context a root, independent of its former parent.
    pub fn detach(self) -> Context<'static> {
        // SAFETY: alive; detaching only discharges, which cannot fail.
        let _ = unsafe { self.raw.set_parent(None) };
        let raw = self.raw;
        mem::forget(self);
        Self::from_raw_unchecked(raw)
    }

    /// Gives up the handle: the context lives on as a child of its parent
    /// and is deleted with it (PostgreSQL's pattern of moving a filled
    /// context under a longer-lived one). A root would be leaked.
    pub fn leak_into_parent(self) {
        mem::forget(self);
    }
}

/// A [`Context`] of kind Bump whose allocation knows its kind at compile
/// time: [`alloc`](Self::alloc), [`try_alloc`](Self::try_alloc),
/// [`try_alloc_layout`](Self::try_alloc_layout),
/// [`try_alloc_bytes`](Self::try_alloc_bytes),
/// [`alloc_slice_copy`](Self::alloc_slice_copy) and
/// [`alloc_str`](Self::alloc_str) go straight to the pointer bump, with no
/// test of the context's kind (what bumpalo's `Bump` does, its type being
/// fixed too). Every other method of [`Context`] is reached through
/// `Deref` (shared access only: a `&mut Context` could swap another kind
/// of context in).
///
/// ```
/// use mcxt::{BlockSizes, BumpContext};
/// let mut rows = BumpContext::try_new("rows", BlockSizes::DEFAULT)?;
/// rows.retain_on_reset(1 << 20)?; // a method of `Context`, through Deref
/// for batch in 0..3u64 {
///     let total: u64 = (0..1000).map(|i| *rows.alloc(batch * i)).sum();
///     assert_eq!(total, batch * 499_500);
///     assert_eq!(rows.alloc_str("done"), "done");
///     rows.reset();
/// }
/// # Ok::<(), mcxt::Error>(())
/// ```
pub struct BumpContext<'parent> {
    inner: Context<'parent>,
}

impl BumpContext<'static> {
    /// A root Bump context.
    pub fn try_new(name: &'static str, sizes: BlockSizes) -> Result<BumpContext<'static>, Error> {
        Context::try_new_with(name, ContextSpec::Bump(sizes)).map(|inner| BumpContext { inner })
    }
}

impl<'parent> BumpContext<'parent> {
    /// A Bump child of `parent`, borrowing it like [`Context::new_child`].
    pub fn try_new_child(
        parent: &'parent Context<'_>,
        name: &'static str,
        sizes: BlockSizes,
    ) -> Result<BumpContext<'parent>, Error> {
        parent
            .try_new_child_with(name, ContextSpec::Bump(sizes))
            .map(|inner| BumpContext { inner })
    }

    /// Raw memory for `layout`, freed at reset or delete.
    #[inline]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, Error> {
        if !matches!(layout.align(), 1 | 2 | 4 | 8) {
            return self.inner.try_alloc_layout(layout);
        }
        self.try_alloc_bytes(layout.size())
    }

    /// `size` raw bytes (8-aligned).
    #[inline]
    pub fn try_alloc_bytes(&self, size: usize) -> Result<NonNull<u8>, Error> {
        // SAFETY: `inner` is alive and was created as a Bump context (the
        // only constructors), which no shared reference can change.
        unsafe {
            raw::alloc_known(
                self.inner.raw.header(),
                ContextKind::Bump,
                size,
                AllocFlags::empty(),
            )
        }
    }

    alloc_methods!();

    /// [`Context::reset`].
    pub fn reset(&mut self) {
        self.inner.reset()
    }

    /// [`Context::delete_children`].
    pub fn delete_children(&mut self) {
        self.inner.delete_children()
    }

    /// [`Context::set_ident`].
    pub fn set_ident(&mut self, ident: Option<&str>) {
        self.inner.set_ident(ident)
    }

    /// The context as a plain [`Context`].
    pub fn into_context(self) -> Context<'parent> {
        self.inner
    }
}

impl<'parent> Deref for BumpContext<'parent> {
    type Target = Context<'parent>;

    fn deref(&self) -> &Context<'parent> {
        &self.inner
    }
}

impl fmt::Debug for BumpContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BumpContext").field(&self.inner).finish()
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle owns the context; every borrow of it has ended.
        unsafe { self.raw.delete() }
    }
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name())
            .field("ident", &self.ident())
            .field("mem_allocated", &self.mem_allocated(false))
            .finish()
    }
}

/// A value in a context chunk, dropped and freed when the box is dropped.
///
/// ```
/// let ctx = mcxt::Context::new("c");
/// let mut b = ctx.boxed(vec![1, 2, 3]);
/// b.push(4);
/// assert_eq!(*b, [1, 2, 3, 4]);
/// drop(b); // the Vec is dropped and the chunk goes back to the free list
/// ```
pub struct PBox<'c, T> {
    ptr: NonNull<T>,
    /// False for Bump chunks, which are only freed by a reset.
    free_chunk: bool,
    _ctx: PhantomData<(&'c (), T)>,
}

impl<'c, T> PBox<'c, T> {
    /// Moves the value out, freeing the chunk.
    pub fn into_inner(b: Self) -> T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the value is live; the chunk is freed once, here.
        unsafe {
            let v = b.ptr.as_ptr().read();
            if b.free_chunk {
                let _ = raw::free(b.ptr.cast());
            }
            v
        }
    }

    /// Leaks the box: the value stays until the context is reset (without
    /// being dropped).
    pub fn leak(b: Self) -> &'c mut T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the chunk lives as long as the context borrow 'c.
        unsafe { &mut *b.ptr.as_ptr() }
    }
}

impl<T> Deref for PBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box owns a live value.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns a live value, borrowed uniquely.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PBox<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the box owns the value and its chunk; both end here.
        unsafe {
            ptr::drop_in_place(self.ptr.as_ptr());
            if self.free_chunk {
                let _ = raw::free(self.ptr.cast());
            }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: fmt::Display> fmt::Display for PBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
