//! # mcxt: PostgreSQL's memory contexts, in Rust
//!
//! A **memory context** is a region allocator with a place in a tree. Every
//! allocation belongs to one context. Freeing single chunks is allowed but
//! optional: **resetting** a context frees all its chunks at once (and
//! deletes its children), **deleting** it frees it and its whole subtree.
//! A database creates a context per query and per tuple, allocates freely
//! and resets: leaks are impossible and freeing costs a few block frees,
//! not a million `free` calls. This is the model of PostgreSQL's `palloc`,
//! rebuilt here with the same semantics, an 8-byte chunk header, exact
//! O(1) accounting, byte limits and a safe Rust API.
//!
//! ## The model in a page
//!
//! * **Tree.** [`Context::new`] makes a root; [`Context::new_child`] a child
//!   that borrows its parent. [`Context::reset`] frees every chunk and
//!   deletes every descendant, keeping the first block so reset loops never
//!   call the system allocator; dropping a handle deletes the context.
//! * **Chunks know their context.** Each chunk is preceded by an 8-byte
//!   header (kind, size class, and its context or block), so
//!   [`raw::free`]`(ptr)`, [`raw::realloc`]`(ptr, n)`, [`raw::chunk_context`]
//!   and [`raw::chunk_space`] need no context argument.
//! * **AllocSet** ([`AllocSetSizes`]) is the general-purpose kind: size
//!   classes with free lists, growing blocks, a kept first block, dedicated
//!   blocks for requests above 8 KiB that return to the system on free,
//!   and recycling of deleted contexts. The other kinds ([`ContextSpec`]):
//!   Generation, Slab, and Bump (no chunk header; [`BumpContext`] is a
//!   handle whose allocation skips the kind test, and
//!   [`Context::retain_on_reset`] keeps its blocks across resets).
//! * **Accounting and limits.** [`Context::mem_allocated`] gives the bytes
//!   held by a context or its subtree in O(1): block-level changes are
//!   propagated up the tree. [`Context::set_limit`] bounds a subtree; the
//!   limit is checked only when a block is acquired, so the chunk hot path
//!   pays nothing, and a refused request changes nothing.
//! * **Callbacks** ([`Context::on_reset`], [`Context::alloc_with_drop`]) run
//!   at reset or delete, newest first, children's before their parent's.
//! * **Current context** (`std` feature): [`Context::switch_to`] returns a
//!   guard; [`palloc`] and friends allocate in the current context.
//! * **Critical sections** ([`CriticalSection`]): allocating is an error in
//!   contexts not allowed there.
//! * **Stats**: [`Context::stats`] (structured, serde behind the `serde`
//!   feature) and [`Context::stats_text`] (PostgreSQL's text format).
//! * **Three ways in**: the safe [`Context`] API, where the borrow checker
//!   rules out use after reset and double free; the raw, PostgreSQL-shaped
//!   [`raw`] API (`unsafe`, pointer in, pointer out) used by the C ABI and
//!   the trace replayer; and `allocator_api2`'s `Allocator` for `&Context`
//!   so `Vec` and `hashbrown::HashMap` live in a context.
//! * **Errors, not panics**: every fallible operation has a `try_` form
//!   returning [`Error`], which names the context and the size. Only the
//!   convenience forms (`alloc`, `new_child`, ...) panic, on out-of-memory,
//!   like `Box::new`.
//!
//! ```
//! use mcxt::Context;
//!
//! let top = Context::new("TopMemoryContext");
//! let mut per_tuple = top.new_child("per-tuple");
//! for i in 0..1000 {
//!     let row = per_tuple.alloc_slice_fill_with(8, |c| i * 8 + c);
//!     assert_eq!(row[7], i * 8 + 7);
//!     per_tuple.reset(); // frees the row; `row` cannot be used past here
//! }
//! // Only the header and the kept first block remain: 8 KiB together.
//! let kept = per_tuple.mem_allocated(false);
//! assert_eq!(kept, 8192);
//! // `top` never allocated: it holds just its header.
//! assert_eq!(top.mem_allocated(true), top.mem_allocated(false) + kept);
//! ```
//!
//! ## Threads
//!
//! Contexts are neither `Send` nor `Sync`: like PostgreSQL's, a tree
//! belongs to one thread, which keeps every operation free of atomics.
//! The current context, critical-section depth, context recycling cache
//! and cache of freed blocks ([`system::set_block_cache_limit`]) are per
//! thread; [`cached_bytes`] is what this thread's caches hold and
//! [`release_recycled`] empties them.
//!
//! ## Features
//!
//! * `std` (default): current context, `palloc`, critical sections,
//!   context recycling, the block cache. Without it the crate is
//!   `no_std` + `alloc`.
//! * `serde`: `Serialize` for stats.
//! * `nightly`: core's unstable `Allocator` for `&Context`.
//! * `checking`: debug checking, PostgreSQL's `MEMORY_CONTEXT_CHECKING` and
//!   more: sentinels past every chunk, freed memory clobbered, fresh memory
//!   randomised, double frees, foreign pointers, bump-chunk frees and
//!   deleted contexts detected and reported (see the `checking` module).
//! * `valgrind`, `asan`: describe chunks to Valgrind memcheck (memory-pool
//!   client requests) or AddressSanitizer (poisoning), so a read of a freed
//!   chunk is reported by the tool.
//!
//! [`raw::MemoryContext::check`] (PostgreSQL's `MemoryContextCheck`) walks
//! a subtree and verifies every block, chunk header and byte count, in any
//! build; see [`CheckSummary`].

#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(feature = "nightly", feature(allocator_api))]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod aligned;
mod allocator;
mod aset;
#[cfg(feature = "std")]
mod block_cache;
mod bump;
mod check;
#[cfg(feature = "checking")]
pub mod checking;
mod chunk;
mod context;
mod critical;
#[cfg(feature = "std")]
mod current;
mod error;
mod generation;
mod instrument;
pub mod raw;
mod sizeclass;
mod slab;
mod stats;
pub mod system;
mod tree;

pub use aligned::MAX_ALIGNMENT;
pub use aset::{
    cached_bytes, recycled_bytes, release_recycled, AllocSetSizes, BlockSizes, MAX_RECYCLED,
    MAX_RECYCLED_BYTES,
};
pub use check::{CheckSummary, Problem, Report};
pub use context::{BumpContext, Context, PBox};
#[cfg(feature = "std")]
pub use critical::CriticalSection;
#[cfg(feature = "std")]
pub use current::{
    current, palloc, palloc0, palloc_aligned, palloc_extended, switch_to, SwitchGuard,
};
pub use error::{AllocFlags, Error, ErrorKind, MAX_ALLOC_HUGE_SIZE, MAX_ALLOC_SIZE};
pub use slab::{MAX_EMPTY_BLOCKS, SLAB_DEFAULT_BLOCK_SIZE, SLAB_LARGE_BLOCK_SIZE};
pub use stats::{ContextStats, Counters, StatsSnapshot};
pub use tree::ResetCallback;

/// What kind of context to create, with its parameters.
///
/// ```
/// use mcxt::{BlockSizes, Context, ContextSpec};
/// let top = Context::new("top");
/// let tuples = top.try_new_child_with("tuples", ContextSpec::Generation(BlockSizes::DEFAULT)).unwrap();
/// let nodes = top.try_new_child_with("nodes", ContextSpec::Slab { block_size: 8192, chunk_size: 48 }).unwrap();
/// let scratch = top.try_new_child_with("scratch", ContextSpec::Bump(BlockSizes::DEFAULT)).unwrap();
/// assert_eq!(nodes.kind(), mcxt::ContextKind::Slab);
/// # let _ = (tuples, scratch);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextSpec {
    /// [`ContextKind::AllocSet`] with these block sizes.
    AllocSet(BlockSizes),
    /// [`ContextKind::Generation`] with these block sizes.
    Generation(BlockSizes),
    /// [`ContextKind::Slab`]: every chunk exactly `chunk_size` bytes, in
    /// blocks of `block_size` bytes (see [`SLAB_DEFAULT_BLOCK_SIZE`]).
    Slab {
        /// Size of every block.
        block_size: usize,
        /// Size of every chunk.
        chunk_size: usize,
    },
    /// [`ContextKind::Bump`] with these block sizes.
    Bump(BlockSizes),
}

/// The kind of a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum ContextKind {
    /// General purpose: size classes with free lists ([`AllocSetSizes`]).
    AllocSet,
    /// Chunks freed in roughly allocation order; blocks released when
    /// all their chunks are freed.
    Generation,
    /// One fixed chunk size; fullest blocks filled first.
    Slab,
    /// Pointer bump, no chunk header, no individual free.
    Bump,
}

impl ContextKind {
    /// PostgreSQL's name of the kind, as in `pg_backend_memory_contexts.type`.
    pub fn name(self) -> &'static str {
        match self {
            ContextKind::AllocSet => "AllocSet",
            ContextKind::Generation => "Generation",
            ContextKind::Slab => "Slab",
            ContextKind::Bump => "Bump",
        }
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
