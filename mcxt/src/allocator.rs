//! Collections in contexts: `Allocator` for `&Context`.
//!
//! [`allocator_api2`]'s trait (what `hashbrown` and `allocator_api2::vec::Vec`
//! use on stable Rust) is implemented for `&Context`, so a collection
//! borrows its context and cannot outlive a reset. With the `nightly`
//! feature, core's unstable `Allocator` is implemented too.
//!
//! ```
//! use allocator_api2::vec::Vec;
//! let ctx = mcxt::Context::new("collections");
//! let mut v = Vec::new_in(&ctx);
//! v.extend(0..1000u64);
//! let mut map = hashbrown::HashMap::new_in(&ctx);
//! map.insert("answer", 42);
//! assert_eq!(v.iter().sum::<u64>(), 499_500);
//! assert_eq!(map["answer"], 42);
//! assert!(ctx.mem_allocated(false) > 8000);
//! ```
//!
//! With the `nightly` feature on a nightly compiler, std's own collections:
//!
#![cfg_attr(feature = "nightly", doc = "```")]
#![cfg_attr(not(feature = "nightly"), doc = "```ignore")]
//! #![feature(allocator_api)]
//! let ctx = mcxt::Context::new("std collections");
//! let mut v: Vec<u32, &mcxt::Context> = Vec::new_in(&ctx);
//! v.extend([1, 2, 3]);
//! let b = Box::new_in(7u64, &ctx);
//! assert_eq!(v.iter().sum::<u32>() as u64 + *b, 13);
//! ```

use crate::context::Context;
use crate::error::AllocFlags;
use crate::raw;
use crate::ContextKind;
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// Allocates for `layout`; the slice length is the requested size.
#[inline]
fn allocate(ctx: &Context<'_>, layout: Layout) -> Option<NonNull<[u8]>> {
    let p = ctx.try_alloc_layout(layout).ok()?;
    Some(NonNull::slice_from_raw_parts(p, layout.size()))
}

/// # Safety
/// `ptr` allocated by `ctx` with `old`; `new.size() >= old.size()`.
#[inline]
unsafe fn grow(
    ctx: &Context<'_>,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zero: bool,
) -> Option<NonNull<[u8]>> {
    // SAFETY: `ptr` is a live chunk of `ctx` (caller contract).
    unsafe {
        // Bump chunks have no header for `realloc` to read: always move.
        let p = if new.align() <= old.align().max(8) && ctx.kind() != ContextKind::Bump {
            // `realloc` keeps the chunk's alignment (aligned chunks keep theirs).
            raw::realloc_extended(ptr, new.size(), AllocFlags::NO_OOM).ok()??
        } else {
            let p = ctx.try_alloc_layout(new).ok()?;
            ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), old.size());
            ctx.free_chunk(ptr);
            p
        };
        if zero {
            p.as_ptr()
                .add(old.size())
                .write_bytes(0, new.size() - old.size());
        }
        Some(NonNull::slice_from_raw_parts(p, new.size()))
    }
}

/// # Safety
/// `ptr` allocated by `ctx` with `old`; `new.size() <= old.size()`.
#[inline]
unsafe fn shrink(
    ctx: &Context<'_>,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Option<NonNull<[u8]>> {
    if new.align() <= old.align().max(8) {
        // A chunk is never moved to shrink: the space comes back when the
        // context is reset (or at once for dedicated blocks on free).
        return Some(NonNull::slice_from_raw_parts(ptr, new.size()));
    }
    let p = ctx.try_alloc_layout(new).ok()?;
    // SAFETY: both chunks are live and at least `new.size()` long.
    unsafe {
        ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr(), new.size());
        ctx.free_chunk(ptr);
    }
    Some(NonNull::slice_from_raw_parts(p, new.size()))
}

/// Implements an `Allocator` trait (allocator-api2's or core's, which have
/// the same shape) for `&Context`.
macro_rules! impl_allocator {
    ($allocator:path, $alloc_error:path) => {
        // SAFETY: memory stays valid until deallocated or until the context
        // is reset or deleted, which needs `&mut Context` or its drop, both
        // impossible while this `&Context` (and so any collection using it)
        // lives. Copies of the `&Context` allocator share the same context,
        // so memory from one can be freed through another.
        unsafe impl $allocator for &Context<'_> {
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, $alloc_error> {
                allocate(self, layout).ok_or($alloc_error)
            }

            unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
                // SAFETY: `ptr` is a live chunk of this context (trait contract).
                unsafe { self.free_chunk(ptr) };
            }

            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $alloc_error> {
                // SAFETY: trait contract.
                unsafe { grow(self, ptr, old, new, false).ok_or($alloc_error) }
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $alloc_error> {
                // SAFETY: trait contract.
                unsafe { grow(self, ptr, old, new, true).ok_or($alloc_error) }
            }

            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, $alloc_error> {
                // SAFETY: trait contract.
                unsafe { shrink(self, ptr, old, new).ok_or($alloc_error) }
            }
        }
    };
}

impl_allocator!(
    allocator_api2::alloc::Allocator,
    allocator_api2::alloc::AllocError
);

#[cfg(feature = "nightly")]
impl_allocator!(core::alloc::Allocator, core::alloc::AllocError);
