//! The mcxt backend: every trace context is an mcxt context created
//! through `mcxt::raw`, every chunk a chunk of it.
//!
//! Tables, all prepared (and faulted in) before timing: context handles
//! indexed by context id, chunk pointers indexed by chunk id, the creation
//! parameters of every `C` line (sizes and a `&'static` name: each distinct
//! name is leaked once per process), and the set of current roots (for the
//! final delete and for the peak measure).
//!
//! Each trace context kind becomes the mcxt kind of the same name; see
//! [`mcxt_create_params`].

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocFlags, BlockSizes, ContextSpec};
use mcxt_trace::{ChunkId, ContextKind, CreateSpec, CtxId, Flags};

use super::table::{prefaulted, IdTable};
use super::{Backend, ValidTrace};

/// How mcxt creates a context of the trace: the mcxt kind with its
/// parameters, and whether the trace's kind had to be replaced by another
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McxtCreate {
    /// What mcxt creates.
    pub spec: ContextSpec,
    /// The trace's kind is not implemented in mcxt and is replayed as
    /// another kind (reported in `substituted_kinds`). No kind is
    /// substituted since mcxt has all four; the field stays for kinds a
    /// future trace format may add.
    pub substituted: bool,
}

/// Whether `p1..p3` are valid block sizes for mcxt's AllocSet, Generation
/// and Bump (the rules of `AllocSetContextCreate`: initial block at least
/// 1 KiB, sizes multiples of 8, max at least init and below 1 GiB, min 0
/// or between 1 KiB and max).
pub fn valid_block_sizes(p1: u64, p2: u64, p3: u64) -> bool {
    const MAX_BLOCK: u64 = (1 << 30) - 1;
    p2 >= 1024
        && p2 % 8 == 0
        && p3 >= p2
        && p3 % 8 == 0
        && p3 <= MAX_BLOCK
        && (p1 == 0 || (p1 >= 1024 && p1 % 8 == 0 && p1 <= p3))
}

/// p1..p3 as block sizes, or [`BlockSizes::DEFAULT`] if they are not
/// valid (no trace seen so far has invalid ones: PostgreSQL checks the
/// same rules).
fn sizes_or_default(s: &CreateSpec) -> BlockSizes {
    if valid_block_sizes(s.p1, s.p2, s.p3) {
        BlockSizes {
            min_context_size: s.p1 as usize,
            init_block_size: s.p2 as usize,
            max_block_size: s.p3 as usize,
        }
    } else {
        BlockSizes::DEFAULT
    }
}

/// The one place that maps a trace context (`C` line) to what mcxt
/// creates: each trace kind to the mcxt kind of the same name, `aset`,
/// `generation` and `bump` with p1..p3 as min/init/max block sizes, `slab`
/// with p1 as block size and p2 as chunk size.
///
/// (When mcxt had only AllocSet, the other kinds were replayed as
/// AllocSet with `substituted: true`; the mechanism is kept.)
pub fn mcxt_create_params(spec: &CreateSpec) -> McxtCreate {
    let spec = match spec.kind {
        ContextKind::AllocSet => ContextSpec::AllocSet(sizes_or_default(spec)),
        ContextKind::Generation => ContextSpec::Generation(sizes_or_default(spec)),
        ContextKind::Bump => ContextSpec::Bump(sizes_or_default(spec)),
        ContextKind::Slab => ContextSpec::Slab {
            block_size: spec.p1 as usize,
            chunk_size: spec.p2 as usize,
        },
    };
    McxtCreate {
        spec,
        substituted: false,
    }
}

/// Returns a `&'static` copy of `name`, leaking each distinct name once
/// per process (mcxt context names are `&'static str`).
pub fn intern_name(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&s) = set.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(s);
    s
}

/// The trace's flags as mcxt's, by table lookup (trace bits: z=1, h=2, n=4).
const FLAG_MAP: [AllocFlags; 8] = {
    let mut m = [AllocFlags::empty(); 8];
    let mut i = 0;
    while i < 8 {
        let mut f = AllocFlags::empty();
        if i & 1 != 0 {
            f = f.union(AllocFlags::ZERO);
        }
        if i & 2 != 0 {
            f = f.union(AllocFlags::HUGE);
        }
        if i & 4 != 0 {
            f = f.union(AllocFlags::NO_OOM);
        }
        m[i] = f;
        i += 1;
    }
    m
};

/// mcxt's [`AllocFlags`] for a trace's [`Flags`].
#[inline(always)]
pub fn alloc_flags(f: Flags) -> AllocFlags {
    FLAG_MAP[(f.bits() & 7) as usize]
}

/// The set of current root contexts: a list plus each context's position
/// in it, for O(1) insert and remove.
#[derive(Debug)]
struct Roots {
    list: Vec<CtxId>,
    pos: Vec<u32>,
}

const NOT_ROOT: u32 = u32::MAX;

impl Roots {
    #[inline]
    fn insert(&mut self, ctx: CtxId) {
        if self.pos[ctx as usize] == NOT_ROOT {
            self.pos[ctx as usize] = self.list.len() as u32;
            self.list.push(ctx);
        }
    }

    #[inline]
    fn remove(&mut self, ctx: CtxId) {
        let p = self.pos[ctx as usize];
        if p != NOT_ROOT {
            self.pos[ctx as usize] = NOT_ROOT;
            self.list.swap_remove(p as usize);
            if let Some(&moved) = self.list.get(p as usize) {
                self.pos[moved as usize] = p;
            }
        }
    }
}

#[cold]
#[inline(never)]
fn failed(what: &str, e: Option<mcxt::Error>) -> ! {
    match e {
        Some(e) => panic!("mcxt replay: {what} failed: {e}"),
        None => panic!("mcxt replay: {what} failed: out of memory (no-OOM request returned null)"),
    }
}

/// The mcxt backend (see the [module docs](self)).
#[derive(Debug)]
pub struct McxtBackend {
    ctxs: IdTable<Option<MemoryContext>>,
    chunks: IdTable<Option<NonNull<u8>>>,
    /// Per `C` line (indexed by `spec`): what to create, and the name.
    specs: Vec<(ContextSpec, &'static str)>,
    roots: Roots,
    substituted: Vec<&'static str>,
}

impl McxtBackend {
    /// The handle of a live context, looked up without checks.
    ///
    /// # Safety
    /// `ctx` is a context of the trace that was created and not deleted
    /// (the [backend contract](Backend#contract-of-the-unsafe-methods)).
    #[inline(always)]
    unsafe fn context(&self, ctx: CtxId) -> MemoryContext {
        // SAFETY: caller contract: in the table, and created, so `Some`.
        unsafe { self.ctxs.at(ctx).unwrap_unchecked() }
    }

    /// The handle of a root context (untimed paths; checked).
    fn root_context(&self, ctx: CtxId) -> MemoryContext {
        match self.ctxs.get(ctx) {
            Some(Some(c)) => *c,
            _ => failed("root context lookup", None),
        }
    }

    /// The pointer of a live chunk, looked up without checks.
    ///
    /// # Safety
    /// `chunk` is a live chunk of the trace (the backend contract).
    #[inline(always)]
    unsafe fn chunk(&self, chunk: ChunkId) -> NonNull<u8> {
        // SAFETY: caller contract: in the table, and allocated, so `Some`.
        unsafe { self.chunks.at(chunk).unwrap_unchecked() }
    }

    /// Records the pointer of chunk `chunk`.
    ///
    /// # Safety
    /// `chunk` is a chunk id of the trace (below its chunk count).
    #[inline(always)]
    unsafe fn set_chunk(&mut self, chunk: ChunkId, p: NonNull<u8>) {
        // SAFETY: caller contract.
        unsafe { *self.chunks.at_mut(chunk) = Some(p) }
    }

    /// The live root contexts, in no particular order.
    pub fn roots(&self) -> impl Iterator<Item = MemoryContext> + '_ {
        self.roots.list.iter().map(|&r| self.root_context(r))
    }

    /// Bytes held by the root contexts' subtrees, without the thread's
    /// caches: Σ `mem_allocated(true)` over the roots.
    pub fn held_by_contexts(&self) -> u64 {
        self.roots
            .list
            .iter()
            .map(|&r| {
                // SAFETY: a context in the root set is alive (it was created
                // and not deleted, per the backend contract).
                unsafe { self.root_context(r).mem_allocated(true) as u64 }
            })
            .sum()
    }

    /// The ids of the live root contexts, in creation order.
    pub fn root_ids(&self) -> Vec<CtxId> {
        let mut v = self.roots.list.clone();
        v.sort_unstable();
        v
    }

    /// Writes every root's context tree in PostgreSQL's
    /// `MemoryContextStats` format (100 levels, 100 children per parent),
    /// roots in creation order.
    pub fn write_stats(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        for r in self.root_ids() {
            // SAFETY: roots are alive; writing to a String does not touch
            // the context tree.
            unsafe { self.root_context(r).write_stats(out, 100, 100)? };
        }
        Ok(())
    }

    /// Every live context as (depth, name, own bytes, subtree bytes), in
    /// depth-first order from each root (roots in creation order, children
    /// oldest first).
    pub fn context_tree(&self) -> Vec<ContextInfo> {
        let mut out = Vec::new();
        let mut stack: Vec<(MemoryContext, usize)> = Vec::new();
        for r in self.root_ids().into_iter().rev() {
            stack.push((self.root_context(r), 0));
        }
        while let Some((c, depth)) = stack.pop() {
            // SAFETY: `c` is a root or a child of a live context listed
            // while the tree does not change: alive.
            unsafe {
                out.push(ContextInfo {
                    depth,
                    name: c.name(),
                    own_bytes: c.mem_allocated(false) as u64,
                    subtree_bytes: c.mem_allocated(true) as u64,
                });
                // children() is newest first; push so the oldest pops first
                for child in c.children() {
                    stack.push((child, depth + 1));
                }
            }
        }
        out
    }
}

/// One context of [`McxtBackend::context_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextInfo {
    /// 0 for a root.
    pub depth: usize,
    /// The context's name.
    pub name: &'static str,
    /// Bytes held by the context itself (`mem_allocated(false)`).
    pub own_bytes: u64,
    /// Bytes held by its subtree (`mem_allocated(true)`).
    pub subtree_bytes: u64,
}

impl Backend for McxtBackend {
    const NAME: &'static str = "mcxt";
    const EXACT_PEAK: bool = true;

    fn new(trace: &ValidTrace) -> Self {
        let mut substituted: Vec<&'static str> = Vec::new();
        let specs = trace
            .creates
            .iter()
            .map(|s| {
                let p = mcxt_create_params(s);
                if p.substituted && !substituted.contains(&s.kind.name()) {
                    substituted.push(s.kind.name());
                }
                (p.spec, intern_name(&s.name))
            })
            .collect();
        substituted.sort_unstable();
        let n_roots = trace
            .ops
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    mcxt_trace::Op::Create { parent: None, .. }
                        | mcxt_trace::Op::SetParent { parent: None, .. }
                )
            })
            .count();
        McxtBackend {
            ctxs: IdTable::new(trace.n_contexts as usize, None),
            chunks: IdTable::new(trace.n_chunks as usize, None),
            specs,
            roots: Roots {
                list: Vec::with_capacity(n_roots),
                pos: prefaulted(trace.n_contexts as usize, NOT_ROOT),
            },
            substituted,
        }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>, spec: u32) {
        let (what, name) = self.specs[spec as usize];
        // SAFETY: the parent is alive and `ctx` is a context id of the
        // trace (contract).
        unsafe {
            let parent_ctx = parent.map(|p| self.context(p));
            match MemoryContext::create(parent_ctx, name, what) {
                Ok(c) => *self.ctxs.at_mut(ctx) = Some(c),
                Err(e) => failed("context creation", Some(e)),
            }
        }
        if parent.is_none() {
            self.roots.insert(ctx);
        }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline(always)]
    unsafe fn alloc(&mut self, chunk: ChunkId, ctx: CtxId, size: usize, flags: Flags, align: u32) {
        // SAFETY: the context is alive (contract).
        let r = unsafe {
            let c = self.context(ctx);
            if align != 0 {
                c.alloc_aligned(size, align as usize, alloc_flags(flags))
            } else if flags.is_empty() {
                c.alloc(size).map(Some)
            } else {
                c.alloc_extended(size, alloc_flags(flags))
            }
        };
        let p = match r {
            Ok(Some(p)) => p,
            Ok(None) => failed("alloc", None),
            Err(e) => failed("alloc", Some(e)),
        };
        // SAFETY: a chunk id of the trace (contract).
        unsafe { self.set_chunk(chunk, p) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, flags: Flags) {
        // SAFETY: the chunk is live (contract); only the new pointer is
        // kept.
        let r = unsafe { raw::realloc_extended(self.chunk(chunk), size, alloc_flags(flags)) };
        let p = match r {
            Ok(Some(p)) => p,
            Ok(None) => failed("realloc", None),
            Err(e) => failed("realloc", Some(e)),
        };
        // SAFETY: a chunk id of the trace (contract).
        unsafe { self.set_chunk(chunk, p) }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline(always)]
    unsafe fn free(&mut self, chunk: ChunkId) {
        // SAFETY: the chunk is live and never used again (contract).
        if let Err(e) = unsafe { raw::free(self.chunk(chunk)) } {
            failed("free", Some(e));
        }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline(always)]
    unsafe fn reset(&mut self, ctx: CtxId) {
        // SAFETY: alive; the trace never uses the dead chunks and
        // descendants again (contract).
        unsafe { self.context(ctx).reset() }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn reset_only(&mut self, ctx: CtxId) {
        // SAFETY: as `reset`.
        unsafe { self.context(ctx).reset_only() }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn delete_children(&mut self, ctx: CtxId) {
        // SAFETY: as `reset`.
        unsafe { self.context(ctx).delete_children() }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn delete(&mut self, ctx: CtxId) {
        // SAFETY: alive; nothing of the subtree is used again (contract).
        unsafe { self.context(ctx).delete() };
        self.roots.remove(ctx);
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods).
    #[inline]
    unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        // SAFETY: both alive (contract).
        if let Err(e) = unsafe {
            self.context(ctx)
                .set_parent(parent.map(|p| self.context(p)))
        } {
            failed("set_parent", Some(e));
        }
        match parent {
            None => self.roots.insert(ctx),
            Some(_) => self.roots.remove(ctx),
        }
    }

    fn finish(&mut self) {
        while let Some(&r) = self.roots.list.last() {
            let c = self.root_context(r);
            // SAFETY: roots are alive; after this nothing of the trace's
            // replay is used again (the next replay starts from `C` lines).
            unsafe { c.delete() };
            self.roots.remove(r);
        }
    }

    /// Σ over the roots of `mem_allocated(true)`, plus the bytes of this
    /// thread's caches: recycled contexts and freed blocks kept for reuse
    /// ([`mcxt::cached_bytes`]).
    fn held_bytes(&self) -> u64 {
        self.held_by_contexts() + mcxt::cached_bytes() as u64
    }

    fn chunk_ptr(&self, chunk: ChunkId) -> Option<NonNull<u8>> {
        self.chunks.get(chunk).copied().flatten()
    }

    fn substituted_kinds(&self) -> Vec<&'static str> {
        self.substituted.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map() {
        assert_eq!(alloc_flags(Flags::EMPTY), AllocFlags::empty());
        assert_eq!(alloc_flags(Flags::ZERO), AllocFlags::ZERO);
        assert_eq!(
            alloc_flags(Flags::HUGE | Flags::NO_OOM),
            AllocFlags::HUGE | AllocFlags::NO_OOM
        );
    }

    #[test]
    fn kinds() {
        let spec = |kind, p1, p2, p3| CreateSpec {
            kind,
            p1,
            p2,
            p3,
            name: "x".into(),
        };
        let a = mcxt_create_params(&spec(ContextKind::AllocSet, 0, 1024, 8192));
        assert!(!a.substituted);
        assert_eq!(a.spec, ContextSpec::AllocSet(BlockSizes::SMALL));
        let s = mcxt_create_params(&spec(ContextKind::Slab, 8192, 64, 0));
        assert_eq!(
            s.spec,
            ContextSpec::Slab {
                block_size: 8192,
                chunk_size: 64
            }
        );
        let g = mcxt_create_params(&spec(ContextKind::Generation, 0, 8192, 8192));
        assert_eq!(
            g.spec,
            ContextSpec::Generation(BlockSizes {
                min_context_size: 0,
                init_block_size: 8192,
                max_block_size: 8192
            })
        );
        let bad = mcxt_create_params(&spec(ContextKind::Bump, 0, 100, 50));
        assert_eq!(bad.spec, ContextSpec::Bump(BlockSizes::DEFAULT));
        assert!(std::ptr::eq(intern_name("abc"), intern_name("abc")));
    }
}
