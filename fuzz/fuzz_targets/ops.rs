//! Fuzz target: random operation sequences on the raw API, checked against a
//! model after every step.
//!
//! The input is decoded with `arbitrary` into at most [`MAX_OPS`] operations:
//! create (all four kinds, preset, custom and invalid parameters), alloc
//! (plain, zeroed, extended flags, aligned 1..=65536 and invalid
//! alignments), free, realloc, reset, reset-only, reset-children,
//! delete-children, delete, reparent (cycles included), limits, critical
//! sections, identifiers, stats. Sizes are mostly small, sometimes past the
//! 8 KiB dedicated-block threshold and now and then enormous (errors).
//!
//! After every operation: the result is the one the model allows (an error
//! of the expected kind, nothing changed by a refused request), every live
//! chunk keeps its fill pattern (its first and last [`EDGE`] bytes after
//! every operation; all of it every [`FULL_CHECK_EVERY`] operations, just
//! before it is freed, reallocated, reset or deleted, and at the end),
//! chunks other than bump chunks know their context, the tree is the
//! model's, and every context's accounting adds up (`mem_allocated(true)`
//! = own + the children's, `counters().total_bytes` =
//! `mem_allocated(false)`, stats totals = `mem_allocated(true)`). At the end
//! every root is deleted and the recycled contexts released, so
//! LeakSanitizer sees any block the library lost. Bump chunks are never
//! freed, reallocated or asked for their context (they have no header).
//!
//! Valid requests that would really take more than [`BIG`] bytes from the
//! system are made only where a limit refuses them, so the run stays within
//! libFuzzer's memory limits.
//!
//! Run from the repository root: `cargo +nightly fuzz run --fuzz-dir fuzz ops`
//! (or `fuzz/run.sh`).
#![no_main]

use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use mcxt::raw::{self, MemoryContext};
use mcxt::{
    AllocFlags, BlockSizes, ContextKind, ContextSpec, CriticalSection, Error, ErrorKind,
    MAX_ALIGNMENT, MAX_ALLOC_HUGE_SIZE, MAX_ALLOC_SIZE,
};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::OnceLock;

/// Most operations decoded from one input.
const MAX_OPS: usize = 200;
/// Most live contexts (creates beyond are skipped).
const MAX_CONTEXTS: usize = 64;
/// Most live chunks (allocations beyond are skipped).
const MAX_CHUNKS: usize = 1024;
/// Valid requests taking more than this from the system are made only where
/// a limit refuses them.
const BIG: usize = 16 << 20;
/// Largest block size the library accepts (`MAX_BLOCK_OFFSET`, 2^30 - 1).
const MAX_BLOCK: usize = (1 << 30) - 1;
/// Largest slab chunk size (a header value: 2^29 - 1).
const MAX_SLAB_CHUNK: usize = (1 << 29) - 1;

// ---------------------------------------------------------------------------
// Input decoding
// ---------------------------------------------------------------------------

/// The decoded input: the operations to run.
#[derive(Debug)]
struct Input {
    ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let mut ops = Vec::new();
        while ops.len() < MAX_OPS && !u.is_empty() {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(Input { ops })
    }
}

#[derive(Debug)]
enum Op {
    Create {
        parent: Option<u8>,
        spec: Spec,
    },
    Alloc {
        ctx: u8,
        size: Size,
        how: How,
    },
    Free {
        chunk: u16,
    },
    Realloc {
        chunk: u16,
        size: Size,
        flags: Option<Flags>,
    },
    Reset {
        ctx: u8,
    },
    ResetOnly {
        ctx: u8,
    },
    ResetChildren {
        ctx: u8,
    },
    DeleteChildren {
        ctx: u8,
    },
    Delete {
        ctx: u8,
    },
    SetParent {
        ctx: u8,
        parent: NewParent,
    },
    Limit {
        ctx: u8,
        limit: LimitChoice,
    },
    /// Enter (true) or leave a critical section.
    Critical(bool),
    AllowCritical {
        ctx: u8,
        allow: bool,
    },
    SetIdent {
        ctx: u8,
        ident: Option<u8>,
    },
    Stats {
        ctx: u8,
        max_level: u8,
        max_children: u8,
    },
    /// `retain_on_reset(bytes * 1024)` (an error for kinds but Bump).
    Retain {
        ctx: u8,
        kib: u16,
    },
    ReleaseRecycled,
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(match sel {
            0..=19 => Op::Create {
                parent: u.arbitrary()?,
                spec: u.arbitrary()?,
            },
            20..=109 => Op::Alloc {
                ctx: u.arbitrary()?,
                size: u.arbitrary()?,
                how: u.arbitrary()?,
            },
            110..=144 => Op::Free {
                chunk: u.arbitrary()?,
            },
            145..=174 => Op::Realloc {
                chunk: u.arbitrary()?,
                size: u.arbitrary()?,
                flags: u.arbitrary()?,
            },
            175..=182 => Op::Reset {
                ctx: u.arbitrary()?,
            },
            183..=187 => Op::ResetOnly {
                ctx: u.arbitrary()?,
            },
            188..=191 => Op::ResetChildren {
                ctx: u.arbitrary()?,
            },
            192..=195 => Op::DeleteChildren {
                ctx: u.arbitrary()?,
            },
            196..=203 => Op::Delete {
                ctx: u.arbitrary()?,
            },
            204..=219 => Op::SetParent {
                ctx: u.arbitrary()?,
                parent: u.arbitrary()?,
            },
            220..=233 => Op::Limit {
                ctx: u.arbitrary()?,
                limit: u.arbitrary()?,
            },
            234..=239 => Op::Critical(u.arbitrary()?),
            240..=243 => Op::AllowCritical {
                ctx: u.arbitrary()?,
                allow: u.arbitrary()?,
            },
            244..=247 => Op::SetIdent {
                ctx: u.arbitrary()?,
                ident: u.arbitrary()?,
            },
            248..=253 => Op::Stats {
                ctx: u.arbitrary()?,
                max_level: u.arbitrary()?,
                max_children: u.arbitrary()?,
            },
            254 => Op::Retain {
                ctx: u.arbitrary()?,
                kib: u.arbitrary()?,
            },
            _ => Op::ReleaseRecycled,
        })
    }
}

/// A request size: mostly small, sometimes past the dedicated-block
/// threshold, now and then enormous.
#[derive(Clone, Copy, Debug)]
struct Size(usize);

impl<'a> Arbitrary<'a> for Size {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let sel: u8 = u.arbitrary()?;
        let n = match sel {
            0..=119 => usize::from(u.arbitrary::<u8>()?),
            120..=169 => usize::from(u.arbitrary::<u16>()? % 2048),
            170..=199 => {
                // Around a size-class or threshold boundary.
                let k = u.arbitrary::<u8>()? % 12;
                let d = isize::from(u.arbitrary::<i8>()? % 9);
                ((8isize << k) + d).max(0) as usize
            }
            200..=229 => 4096 + usize::from(u.arbitrary::<u16>()? % 32768),
            230..=241 => 8193 + (u.arbitrary::<u32>()? as usize % (256 << 10)),
            242..=245 => u.arbitrary::<u32>()? as usize % (1 << 20),
            _ => {
                let extreme = [
                    MAX_ALLOC_SIZE,
                    MAX_ALLOC_SIZE + 1,
                    MAX_ALLOC_SIZE - 7,
                    BIG + 1,
                    256 << 20,
                    1 << 31,
                    1 << 32,
                    1 << 40,
                    MAX_ALLOC_HUGE_SIZE - 64,
                    MAX_ALLOC_HUGE_SIZE,
                    MAX_ALLOC_HUGE_SIZE + 1,
                    usize::MAX - 65536,
                    usize::MAX - 7,
                    usize::MAX,
                ];
                let i = usize::from(u.arbitrary::<u8>()?);
                if i < extreme.len() {
                    extreme[i]
                } else {
                    MAX_ALLOC_SIZE + 1 + u.arbitrary::<u32>()? as usize
                }
            }
        };
        Ok(Size(n))
    }
}

/// `AllocFlags` from its low three bits (HUGE, NO_OOM, ZERO).
#[derive(Clone, Copy, Debug)]
struct Flags(AllocFlags);

impl<'a> Arbitrary<'a> for Flags {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(Flags(AllocFlags::from_bits_truncate(
            u32::from(u.arbitrary::<u8>()?) & 7,
        )))
    }
}

/// Which allocation function to call.
#[derive(Clone, Copy, Debug)]
enum How {
    Plain,
    Zero,
    Extended(Flags),
    Aligned(Align, Flags),
}

impl<'a> Arbitrary<'a> for How {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(match u.arbitrary::<u8>()? % 8 {
            0..=2 => How::Plain,
            3 => How::Zero,
            4 => How::Extended(u.arbitrary()?),
            _ => How::Aligned(u.arbitrary()?, u.arbitrary()?),
        })
    }
}

/// An alignment: a power of two in 1..=65536, sometimes an invalid one.
#[derive(Clone, Copy, Debug)]
struct Align(usize);

impl<'a> Arbitrary<'a> for Align {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(Align(match sel {
            0..=239 => 1 << (sel % 17),
            240 => 0,
            241 => 3,
            242 => 24,
            243 => 65535,
            244 => MAX_ALIGNMENT,
            245 => MAX_ALIGNMENT * 2,
            246 => usize::MAX,
            _ => usize::from(u.arbitrary::<u16>()?),
        }))
    }
}

/// Creation parameters, valid and invalid.
#[derive(Clone, Copy, Debug)]
struct Spec(ContextSpec);

fn block_sizes(u: &mut Unstructured<'_>) -> ArbResult<BlockSizes> {
    Ok(match u.arbitrary::<u8>()? % 8 {
        0..=2 => BlockSizes::DEFAULT,
        3 => BlockSizes::SMALL,
        4 => BlockSizes::START_SMALL,
        _ => {
            let init = match u.arbitrary::<u8>()? % 12 {
                0 => 0,
                1 => 8,
                2 => 1000,
                3 => 1024,
                4 => 1028,
                5 => 2048,
                6 => 4096,
                7 => 8192,
                8 => 65536,
                9 => 1 << 20,
                10 => MAX_BLOCK & !7,
                _ => 1 + usize::from(u.arbitrary::<u16>()?),
            };
            let max = match u.arbitrary::<u8>()? % 10 {
                0 => init,
                1 => 1024,
                2 => 8192,
                3 => 8196,
                4 => 65536,
                5 => 8 << 20,
                6 => MAX_BLOCK & !7,
                7 => 1 << 30,
                8 => usize::MAX,
                _ => init.saturating_mul(2),
            };
            let min = match u.arbitrary::<u8>()? % 10 {
                0..=3 => 0,
                4 => 512,
                5 => 1024,
                6 => 1028,
                7 => 16384,
                8 => init,
                _ => max,
            };
            BlockSizes {
                min_context_size: min,
                init_block_size: init,
                max_block_size: max,
            }
        }
    })
}

impl<'a> Arbitrary<'a> for Spec {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(Spec(match u.arbitrary::<u8>()? % 4 {
            0 => ContextSpec::AllocSet(block_sizes(u)?),
            1 => ContextSpec::Generation(block_sizes(u)?),
            2 => {
                let chunk_size = match u.arbitrary::<u8>()? % 16 {
                    0 => 0,
                    1 => 1,
                    2 => 8,
                    3 => 24,
                    4 | 5 => 48,
                    6 => 50,
                    7 | 8 => 64,
                    9 => 100,
                    10 => 1000,
                    11 => 4096,
                    12 => 8192,
                    13 => 1 << 20,
                    14 => MAX_SLAB_CHUNK,
                    _ => MAX_SLAB_CHUNK + 1,
                };
                let block_size = match u.arbitrary::<u8>()? % 12 {
                    0 => 0,
                    1 => 64,
                    2 => 256,
                    3 => 1024,
                    4 => 4096,
                    5..=7 => 8192,
                    8 => 65536,
                    9 => 8 << 20,
                    10 => MAX_BLOCK,
                    _ => MAX_BLOCK + 1,
                };
                ContextSpec::Slab {
                    block_size,
                    chunk_size,
                }
            }
            _ => ContextSpec::Bump(block_sizes(u)?),
        }))
    }
}

/// The new parent of a reparenting.
#[derive(Clone, Copy, Debug, Arbitrary)]
enum NewParent {
    Root,
    Any(u8),
    /// A context of the same tree (the root's subtree): a move inside a
    /// tree, under common ancestors.
    SameTree(u8),
    /// The context itself or one of its descendants: a cycle.
    SelfOrDescendant(u8),
}

/// A byte limit, relative to the subtree's current usage.
#[derive(Clone, Copy, Debug, Arbitrary)]
enum LimitChoice {
    None,
    /// Usage + 0..64 KiB: allocations soon hit it.
    Slack(u16),
    /// Usage + 0..1 MiB.
    BigSlack(u32),
    Below(u16),
    Exact,
    Zero,
    Max,
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// Context names, one per model id (ids stay below `MAX_OPS + 1`).
fn name(id: usize) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..=MAX_OPS)
            .map(|i| &*Box::leak(format!("c{i}").into_boxed_str()))
            .collect()
    });
    names[id]
}

struct Ctx {
    h: MemoryContext,
    parent: Option<usize>,
    kind: ContextKind,
    /// Chunk and block size of a slab (0 otherwise).
    slab: (usize, usize),
    limit: Option<usize>,
    allow_critical: bool,
    ident: Option<String>,
    /// Bytes of blocks a reset keeps (Bump only).
    retain: usize,
}

struct Chunk {
    ptr: NonNull<u8>,
    ctx: usize,
    kind: ContextKind,
    size: usize,
    /// Requested alignment (1 if none).
    align: usize,
    seed: u8,
}

/// Bytes checked at each end of a chunk after every operation.
const EDGE: usize = 64;
/// Every chunk's whole contents are checked every this many operations
/// (and before it is freed, reallocated, reset or deleted, and at the end).
const FULL_CHECK_EVERY: usize = 8;

impl Chunk {
    fn check_full(&self, id: usize) {
        // SAFETY: a live chunk of `size` bytes.
        let ok = unsafe { intact(self.ptr, self.size, self.seed) };
        assert!(
            ok,
            "chunk {id} ({} bytes in {:?}) damaged",
            self.size, self.kind
        );
    }

    /// Checks the first and last [`EDGE`] bytes, where a neighbour's header
    /// or a free-list link would land.
    fn check_edges(&self, id: usize) {
        if self.size <= 2 * EDGE {
            return self.check_full(id);
        }
        let tail = self.size - EDGE;
        // The byte at offset `i` is `seed + i`: the tail's pattern starts
        // at `seed + tail`.
        // SAFETY: both ranges lie inside the live chunk.
        let ok = unsafe {
            intact(self.ptr, EDGE, self.seed)
                && intact(self.ptr.add(tail), EDGE, self.seed.wrapping_add(tail as u8))
        };
        assert!(
            ok,
            "chunk {id} ({} bytes in {:?}) damaged at an end",
            self.size, self.kind
        );
    }
}

#[derive(Default)]
struct Model {
    ctxs: BTreeMap<usize, Ctx>,
    chunks: BTreeMap<usize, Chunk>,
    next_ctx: usize,
    next_chunk: usize,
    critical: Vec<CriticalSection>,
}

/// Error classes the model reasons about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Unsupported,
    InvalidSize,
    Limit,
    Critical,
    Params,
    Cycle,
    /// Anything else (out of memory, bad pointer, ...): never expected.
    Other,
}

fn class(e: &Error) -> Class {
    match e.kind {
        ErrorKind::Unsupported(_) => Class::Unsupported,
        ErrorKind::InvalidSize => Class::InvalidSize,
        ErrorKind::LimitExceeded { .. } => Class::Limit,
        ErrorKind::CriticalSection => Class::Critical,
        ErrorKind::InvalidParameters(_) => Class::Params,
        ErrorKind::Cycle { .. } => Class::Cycle,
        _ => Class::Other,
    }
}

/// What the model expects of a fallible operation.
#[derive(Debug)]
enum Expect {
    /// Do not run it (a real allocation larger than [`BIG`]).
    Skip,
    /// Must succeed, or fail with one of these.
    MayFail(Vec<Class>),
    /// Must fail, with one of these.
    Fail(Vec<Class>),
}

const PATTERN: [u8; 512] = {
    let mut p = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        p[i] = i as u8;
        i += 1;
    }
    p
};

/// Fills `n` bytes at `p` with the pattern of `seed`.
///
/// # Safety
/// `p` must be valid for `n` bytes of writes.
unsafe fn fill(p: NonNull<u8>, n: usize, seed: u8) {
    // SAFETY: caller contract.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) };
    let pat = &PATTERN[usize::from(seed)..usize::from(seed) + 256];
    for part in s.chunks_mut(256) {
        part.copy_from_slice(&pat[..part.len()]);
    }
}

/// True if the `n` bytes at `p` hold the pattern of `seed`.
///
/// # Safety
/// `p` must be valid for `n` bytes of reads.
unsafe fn intact(p: NonNull<u8>, n: usize, seed: u8) -> bool {
    // SAFETY: caller contract.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), n) };
    let pat = &PATTERN[usize::from(seed)..usize::from(seed) + 256];
    s.chunks(256).all(|part| part == &pat[..part.len()])
}

/// True if the `n` bytes at `p` are zero.
///
/// # Safety
/// `p` must be valid for `n` bytes of reads.
unsafe fn zeroed(p: NonNull<u8>, n: usize) -> bool {
    // SAFETY: caller contract.
    unsafe { std::slice::from_raw_parts(p.as_ptr(), n) }
        .iter()
        .all(|&b| b == 0)
}

/// What BlockSizes::validate accepts.
fn sizes_valid(s: &BlockSizes) -> bool {
    let (min, init, max) = (s.min_context_size, s.init_block_size, s.max_block_size);
    init >= 1024
        && init % 8 == 0
        && max >= init
        && max % 8 == 0
        && max <= MAX_BLOCK
        && (min == 0 || (min >= 1024 && min % 8 == 0 && min <= max))
}

fn descendants_in(map: &BTreeMap<usize, Vec<usize>>, id: usize) -> Vec<usize> {
    let mut out = vec![];
    let mut stack = vec![id];
    while let Some(c) = stack.pop() {
        for &k in map.get(&c).into_iter().flatten() {
            out.push(k);
            stack.push(k);
        }
    }
    out
}

fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

impl Model {
    fn pick_ctx(&self, i: u8) -> Option<usize> {
        let n = self.ctxs.len();
        (n > 0).then(|| *self.ctxs.keys().nth(usize::from(i) % n).unwrap())
    }

    /// A chunk that may be freed or reallocated (not a bump chunk).
    fn pick_chunk(&self, i: u16) -> Option<usize> {
        let ids: Vec<usize> = self
            .chunks
            .iter()
            .filter(|(_, c)| c.kind != ContextKind::Bump)
            .map(|(&k, _)| k)
            .collect();
        (!ids.is_empty()).then(|| ids[usize::from(i) % ids.len()])
    }

    fn h(&self, id: usize) -> MemoryContext {
        self.ctxs[&id].h
    }

    fn children(&self, id: usize) -> Vec<usize> {
        self.ctxs
            .iter()
            .filter(|(_, c)| c.parent == Some(id))
            .map(|(&k, _)| k)
            .collect()
    }

    /// Children of every context with children.
    fn child_map(&self) -> BTreeMap<usize, Vec<usize>> {
        let mut map: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (&k, c) in &self.ctxs {
            if let Some(p) = c.parent {
                map.entry(p).or_default().push(k);
            }
        }
        map
    }

    fn descendants(&self, id: usize) -> Vec<usize> {
        descendants_in(&self.child_map(), id)
    }

    /// `id` and its ancestors, nearest first.
    fn chain(&self, id: Option<usize>) -> Vec<usize> {
        let mut out = vec![];
        let mut cur = id;
        while let Some(c) = cur {
            out.push(c);
            cur = self.ctxs[&c].parent;
        }
        out
    }

    fn subtree_bytes(&self, id: usize) -> usize {
        // SAFETY: model contexts are alive.
        unsafe { self.h(id).mem_allocated(true) }
    }

    fn chain_has_limit(&self, id: Option<usize>) -> bool {
        self.chain(id).iter().any(|c| self.ctxs[c].limit.is_some())
    }

    /// True if taking `bytes` more into the subtree of `id` must pass some
    /// limit on its chain.
    fn refused(&self, id: Option<usize>, bytes: usize) -> bool {
        self.chain(id).iter().any(|&c| {
            self.ctxs[&c]
                .limit
                .is_some_and(|l| self.subtree_bytes(c).saturating_add(bytes) > l)
        })
    }

    fn in_critical(&self, id: Option<usize>) -> bool {
        !self.critical.is_empty() && !id.is_some_and(|c| self.ctxs[&c].allow_critical)
    }

    /// (own, subtree) bytes of every context, to check that a refused
    /// request changed nothing.
    fn accounting(&self) -> Vec<(usize, usize)> {
        self.ctxs
            .values()
            // SAFETY: model contexts are alive.
            .map(|c| unsafe { (c.h.mem_allocated(false), c.h.mem_allocated(true)) })
            .collect()
    }

    /// Checks the whole contents of the chunks of these contexts, before a
    /// reset or delete frees them.
    fn check_dying(&self, ids: &[usize]) {
        for (&id, c) in &self.chunks {
            if ids.contains(&c.ctx) {
                c.check_full(id);
            }
        }
    }

    fn kill_chunks_of(&mut self, ids: &[usize]) {
        self.chunks.retain(|_, c| !ids.contains(&c.ctx));
    }

    fn remove_ctxs(&mut self, ids: &[usize]) {
        self.kill_chunks_of(ids);
        for id in ids {
            self.ctxs.remove(id);
        }
    }

    /// Expected result of a valid request in the subtree of `id` that may
    /// take `upper` bytes (and then at least `lower`) from the system.
    fn expect_valid(&self, id: Option<usize>, upper: usize, lower: usize) -> Expect {
        if upper > BIG {
            if self.refused(id, lower) {
                return Expect::Fail(vec![Class::Limit]);
            }
            return Expect::Skip;
        }
        if self.chain_has_limit(id) {
            Expect::MayFail(vec![Class::Limit])
        } else {
            Expect::MayFail(vec![])
        }
    }

    fn expect_create(&self, parent: Option<usize>, spec: &ContextSpec) -> Expect {
        let (valid, bytes) = match *spec {
            // The first allocation takes a block of `init_block_size`: such
            // a context could not be used.
            ContextSpec::AllocSet(s) if sizes_valid(&s) && s.init_block_size > BIG => {
                return Expect::Skip
            }
            ContextSpec::AllocSet(s) => (sizes_valid(&s), s.min_context_size),
            ContextSpec::Generation(s) | ContextSpec::Bump(s) => (
                sizes_valid(&s),
                if s.min_context_size != 0 {
                    s.min_context_size
                } else {
                    s.init_block_size
                },
            ),
            ContextSpec::Slab {
                block_size,
                chunk_size,
            } => {
                if chunk_size > MAX_SLAB_CHUNK || block_size > MAX_BLOCK {
                    (false, 0)
                } else {
                    let full = 8 + maxalign(chunk_size.max(8));
                    if block_size < full {
                        (false, 0)
                    } else if block_size < full + 128 {
                        // Depends on the block header's size: either way.
                        return Expect::MayFail(vec![Class::Params, Class::Critical, Class::Limit]);
                    } else {
                        (true, 0)
                    }
                }
            }
        };
        if !valid {
            return Expect::Fail(vec![Class::Params]);
        }
        if self.in_critical(parent) {
            return Expect::Fail(vec![Class::Critical]);
        }
        self.expect_valid(parent, bytes, bytes)
    }

    /// Expected result of an allocation of `size` bytes aligned to `align`
    /// (None: not through `alloc_aligned`) in `id`.
    fn expect_alloc(
        &self,
        id: usize,
        size: usize,
        align: Option<usize>,
        flags: AllocFlags,
    ) -> Expect {
        let c = &self.ctxs[&id];
        let mut reasons = vec![];
        let mut extra = 0;
        if let Some(a) = align {
            if !matches!(a, 1 | 2 | 4 | 8) {
                if !a.is_power_of_two() || a > MAX_ALIGNMENT {
                    return Expect::Fail(vec![Class::Unsupported]);
                }
                extra = if c.kind == ContextKind::Bump {
                    a - 8
                } else {
                    a
                };
            }
        }
        let Some(total) = size.checked_add(extra) else {
            return Expect::Fail(vec![Class::InvalidSize, Class::Critical]);
        };
        if self.in_critical(Some(id)) {
            reasons.push(Class::Critical);
        }
        if c.kind == ContextKind::Slab {
            if total != c.slab.0 {
                reasons.push(Class::Unsupported);
            }
        } else {
            let max = if flags.contains(AllocFlags::HUGE) {
                MAX_ALLOC_HUGE_SIZE
            } else {
                MAX_ALLOC_SIZE
            };
            if total > max {
                reasons.push(Class::InvalidSize);
            }
        }
        if !reasons.is_empty() {
            return Expect::Fail(reasons);
        }
        let bytes = if c.kind == ContextKind::Slab {
            c.slab.1
        } else {
            total
        };
        match self.expect_valid(Some(id), bytes, bytes) {
            // A block kept by a reset may serve the request without taking
            // anything more from the system.
            Expect::Fail(r) if c.retain != 0 && r == [Class::Limit] => Expect::MayFail(r),
            e => e,
        }
    }

    /// Checks `r` against `e`; on failure, checks a limit error's details
    /// and that nothing changed. Returns the value on success.
    fn check<T>(
        &self,
        what: &str,
        r: Result<Option<T>, Error>,
        e: &Expect,
        before: &[(usize, usize)],
        chain: &[usize],
    ) -> Option<T> {
        let err_class = match &r {
            Ok(Some(_)) => None,
            // NO_OOM: a limit (or out of memory) turned into None.
            Ok(None) => Some(Class::Limit),
            Err(err) => {
                if let ErrorKind::LimitExceeded {
                    limit_context,
                    limit,
                    ..
                } = err.kind
                {
                    let c = chain
                        .iter()
                        .find(|&&c| name(c) == limit_context)
                        .unwrap_or_else(|| {
                            panic!("{what}: limit error names a context off the chain: {err}")
                        });
                    assert_eq!(self.ctxs[c].limit, Some(limit), "{what}: {err}");
                }
                Some(class(err))
            }
        };
        match (err_class, e) {
            (None, Expect::Fail(_)) => panic!("{what}: succeeded, expected {e:?}"),
            (None, _) => {}
            (Some(k), Expect::Fail(ok) | Expect::MayFail(ok)) => {
                assert!(
                    ok.contains(&k),
                    "{what}: got {r:?} ({k:?}), expected {e:?}",
                    r = r.as_ref().err()
                );
                assert_eq!(
                    before,
                    self.accounting(),
                    "{what}: a refused request changed the accounting"
                );
            }
            (Some(_), Expect::Skip) => unreachable!(),
        }
        r.ok().flatten()
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

fn apply(m: &mut Model, op: &Op) {
    // SAFETY: the model only hands out handles of live contexts and live,
    // non-bump chunks for free/realloc/chunk_context.
    unsafe {
        match *op {
            Op::Create { parent, spec } => {
                if m.ctxs.len() >= MAX_CONTEXTS {
                    return;
                }
                let parent = parent.and_then(|p| m.pick_ctx(p));
                let spec = spec.0;
                let e = m.expect_create(parent, &spec);
                if matches!(e, Expect::Skip) {
                    return;
                }
                let id = m.next_ctx;
                let before = m.accounting();
                let r = MemoryContext::create(parent.map(|p| m.h(p)), name(id), spec);
                let chain = m.chain(parent);
                let Some(h) = m.check("create", r.map(Some), &e, &before, &chain) else {
                    return;
                };
                let kind = match spec {
                    ContextSpec::AllocSet(_) => ContextKind::AllocSet,
                    ContextSpec::Generation(_) => ContextKind::Generation,
                    ContextSpec::Slab { .. } => ContextKind::Slab,
                    ContextSpec::Bump(_) => ContextKind::Bump,
                };
                let slab = match spec {
                    ContextSpec::Slab {
                        block_size,
                        chunk_size,
                    } => (chunk_size, block_size),
                    _ => (0, 0),
                };
                assert_eq!(h.kind(), kind);
                assert!(h.is_empty(), "a new context is not empty");
                assert_eq!(h.mem_allocated(true), h.mem_allocated(false));
                m.next_ctx += 1;
                m.ctxs.insert(
                    id,
                    Ctx {
                        h,
                        parent,
                        kind,
                        slab,
                        limit: None,
                        allow_critical: parent.is_some_and(|p| m.ctxs[&p].allow_critical),
                        retain: 0,
                        ident: None,
                    },
                );
            }
            Op::Alloc { ctx, size, how } => {
                if m.chunks.len() >= MAX_CHUNKS {
                    return;
                }
                let Some(id) = m.pick_ctx(ctx) else { return };
                let size = size.0;
                let (align, flags, zero) = match how {
                    How::Plain => (None, AllocFlags::empty(), false),
                    How::Zero => (None, AllocFlags::empty(), true),
                    How::Extended(f) => (None, f.0, f.0.contains(AllocFlags::ZERO)),
                    How::Aligned(a, f) => (Some(a.0), f.0, f.0.contains(AllocFlags::ZERO)),
                };
                let e = m.expect_alloc(id, size, align, flags);
                if matches!(e, Expect::Skip) {
                    return;
                }
                let h = m.h(id);
                let before = m.accounting();
                let r = match how {
                    How::Plain => h.alloc(size).map(Some),
                    How::Zero => h.alloc_zero(size).map(Some),
                    How::Extended(f) => h.alloc_extended(size, f.0),
                    How::Aligned(a, f) => h.alloc_aligned(size, a.0, f.0),
                };
                let chain = m.chain(Some(id));
                let what = format!("alloc({size}, {how:?}) in {:?}", m.ctxs[&id].kind);
                let Some(p) = m.check(&what, r, &e, &before, &chain) else {
                    return;
                };
                let align = align.unwrap_or(1);
                assert_eq!(p.as_ptr() as usize % align.max(8), 0, "{what}: misaligned");
                if zero {
                    assert!(zeroed(p, size), "{what}: not zeroed");
                }
                let seed = m.next_chunk as u8;
                fill(p, size, seed);
                let kind = m.ctxs[&id].kind;
                m.chunks.insert(
                    m.next_chunk,
                    Chunk {
                        ptr: p,
                        ctx: id,
                        kind,
                        size,
                        align,
                        seed,
                    },
                );
                m.next_chunk += 1;
            }
            Op::Free { chunk } => {
                let Some(id) = m.pick_chunk(chunk) else {
                    return;
                };
                let c = m.chunks.remove(&id).unwrap();
                c.check_full(id);
                raw::free(c.ptr).unwrap_or_else(|e| panic!("free: {e}"));
            }
            Op::Realloc { chunk, size, flags } => {
                let Some(cid) = m.pick_chunk(chunk) else {
                    return;
                };
                let s = size.0;
                let f = flags.map_or(AllocFlags::empty(), |f| f.0);
                let c = &m.chunks[&cid];
                let (ptr, old, seed, align, owner) = (c.ptr, c.size, c.seed, c.align, c.ctx);
                let kind = m.ctxs[&owner].kind;
                c.check_full(cid);
                let cap = raw::chunk_capacity(ptr).unwrap();
                let in_crit = m.in_critical(Some(owner));
                let e = if kind == ContextKind::Slab {
                    let in_place = if align > 8 {
                        s <= cap
                    } else {
                        s <= m.ctxs[&owner].slab.0
                    };
                    if in_place {
                        Expect::MayFail(vec![])
                    } else {
                        Expect::Fail(vec![
                            Class::Unsupported,
                            Class::InvalidSize,
                            Class::Critical,
                        ])
                    }
                } else if s <= cap {
                    // AllocSet's dedicated chunks check for critical sections
                    // even when shrinking.
                    if in_crit && kind == ContextKind::AllocSet {
                        Expect::MayFail(vec![Class::Critical])
                    } else {
                        Expect::MayFail(vec![])
                    }
                } else {
                    let max = if f.contains(AllocFlags::HUGE) {
                        MAX_ALLOC_HUGE_SIZE
                    } else {
                        MAX_ALLOC_SIZE
                    };
                    let extra = if align > 8 { align } else { 0 };
                    let mut reasons = vec![];
                    if in_crit {
                        reasons.push(Class::Critical);
                    }
                    match s.checked_add(extra) {
                        Some(total) if total <= max => {}
                        _ => reasons.push(Class::InvalidSize),
                    }
                    if reasons.is_empty() {
                        // A dedicated chunk grows in place: only the growth
                        // is charged.
                        let total = s + extra;
                        m.expect_valid(Some(owner), total, total.saturating_sub(cap + 64))
                    } else {
                        Expect::Fail(reasons)
                    }
                };
                if matches!(e, Expect::Skip) {
                    return;
                }
                let before = m.accounting();
                let r = match flags {
                    None => raw::realloc(ptr, s).map(Some),
                    Some(fl) => raw::realloc_extended(ptr, s, fl.0),
                };
                let chain = m.chain(Some(owner));
                let what = format!("realloc({old} -> {s}, {flags:?}, align {align}) in {kind:?}");
                match m.check(&what, r, &e, &before, &chain) {
                    Some(p) => {
                        assert!(intact(p, old.min(s), seed), "{what}: lost contents");
                        assert_eq!(
                            p.as_ptr() as usize % align.max(8),
                            0,
                            "{what}: lost alignment"
                        );
                        assert_eq!(raw::chunk_context(p).unwrap(), m.h(owner), "{what}");
                        fill(p, s, seed);
                        let c = m.chunks.get_mut(&cid).unwrap();
                        c.ptr = p;
                        c.size = s;
                    }
                    None => assert!(
                        intact(ptr, old, seed),
                        "{what}: failed and changed the chunk"
                    ),
                }
            }
            Op::Reset { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let d = m.descendants(id);
                m.check_dying(&d);
                m.check_dying(&[id]);
                m.h(id).reset();
                m.remove_ctxs(&d);
                m.kill_chunks_of(&[id]);
                assert!(m.h(id).is_empty(), "not empty after reset");
            }
            Op::ResetOnly { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                m.check_dying(&[id]);
                m.h(id).reset_only();
                m.kill_chunks_of(&[id]);
                let leaf = m.children(id).is_empty();
                assert_eq!(m.h(id).is_empty(), leaf, "is_empty after reset_only");
            }
            Op::ResetChildren { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let d = m.descendants(id);
                m.check_dying(&d);
                m.h(id).reset_children();
                m.kill_chunks_of(&d);
                for c in d {
                    let leaf = m.children(c).is_empty();
                    assert_eq!(m.h(c).is_empty(), leaf, "is_empty after reset_children");
                }
            }
            Op::DeleteChildren { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let d = m.descendants(id);
                m.check_dying(&d);
                m.h(id).delete_children();
                m.remove_ctxs(&d);
            }
            Op::Delete { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let mut d = m.descendants(id);
                d.push(id);
                m.check_dying(&d);
                m.h(id).delete();
                m.remove_ctxs(&d);
            }
            Op::SetParent { ctx, parent } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let new_parent = match parent {
                    NewParent::Root => None,
                    NewParent::Any(p) => m.pick_ctx(p),
                    NewParent::SameTree(i) => {
                        let top = *m.chain(Some(id)).last().unwrap();
                        let mut d = m.descendants(top);
                        d.push(top);
                        Some(d[usize::from(i) % d.len()])
                    }
                    NewParent::SelfOrDescendant(i) => {
                        let mut d = m.descendants(id);
                        d.push(id);
                        Some(d[usize::from(i) % d.len()])
                    }
                };
                let old_chain = m.chain(Some(id));
                let new_chain = m.chain(new_parent);
                let old_parent = m.ctxs[&id].parent;
                let bytes = m.subtree_bytes(id);
                let e = if new_parent == old_parent {
                    Expect::MayFail(vec![])
                } else if new_chain.contains(&id) {
                    Expect::Fail(vec![Class::Cycle])
                } else if new_chain.iter().any(|&a| {
                    // Past a limit: only ancestors that gain the subtree.
                    !old_chain.contains(&a)
                        && m.ctxs[&a]
                            .limit
                            .is_some_and(|l| m.subtree_bytes(a).saturating_add(bytes) > l)
                }) {
                    Expect::Fail(vec![Class::Limit])
                } else {
                    Expect::MayFail(vec![])
                };
                let before = m.accounting();
                let r = m.h(id).set_parent(new_parent.map(|p| m.h(p))).map(Some);
                let what = format!("set_parent({id} -> {new_parent:?})");
                if m.check(&what, r, &e, &before, &new_chain).is_some() {
                    m.ctxs.get_mut(&id).unwrap().parent = new_parent;
                }
            }
            Op::Limit { ctx, limit } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let used = m.subtree_bytes(id);
                let l = match limit {
                    LimitChoice::None => None,
                    LimitChoice::Slack(s) => Some(used + usize::from(s)),
                    LimitChoice::BigSlack(s) => Some(used + (s as usize % (1 << 20))),
                    LimitChoice::Below(b) => Some(used.saturating_sub(usize::from(b))),
                    LimitChoice::Exact => Some(used),
                    LimitChoice::Zero => Some(0),
                    LimitChoice::Max => Some(usize::MAX),
                };
                m.h(id).set_limit(l);
                // usize::MAX is no limit at all.
                m.ctxs.get_mut(&id).unwrap().limit = l.filter(|&l| l != usize::MAX);
            }
            Op::Critical(enter) => {
                if enter {
                    if m.critical.len() < 3 {
                        m.critical.push(CriticalSection::enter());
                    }
                } else {
                    m.critical.pop();
                }
                assert_eq!(CriticalSection::is_active(), !m.critical.is_empty());
            }
            Op::AllowCritical { ctx, allow } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                m.h(id).allow_in_critical_section(allow);
                m.ctxs.get_mut(&id).unwrap().allow_critical = allow;
            }
            Op::SetIdent { ctx, ident } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let ident = ident
                    .map(|i| format!("ident {i} \u{e9}\n\"{}\"", "x".repeat(usize::from(i % 40))));
                m.h(id).set_ident(ident.as_deref());
                m.ctxs.get_mut(&id).unwrap().ident = ident;
            }
            Op::Stats {
                ctx,
                max_level,
                max_children,
            } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let h = m.h(id);
                let snap = h.stats();
                assert_eq!(snap.contexts.len(), 1 + m.descendants(id).len());
                assert_eq!(snap.total().total_bytes, h.mem_allocated(true));
                assert_eq!(snap.contexts[0].subtree_bytes, h.mem_allocated(true));
                assert_eq!(snap.contexts[0].limit, m.ctxs[&id].limit);
                assert_eq!(snap.contexts[0].ident, m.ctxs[&id].ident);
                let mut text = String::new();
                h.write_stats(
                    &mut text,
                    usize::from(max_level % 8),
                    usize::from(max_children % 8),
                )
                .unwrap();
                let last = text.lines().last().unwrap();
                let want = format!("Grand total: {} bytes in ", h.mem_allocated(true));
                assert!(
                    last.starts_with(&want),
                    "{last:?} does not start with {want:?}\n{text}"
                );
            }
            Op::Retain { ctx, kib } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let bytes = usize::from(kib) * 1024;
                let r = m.h(id).retain_on_reset(bytes);
                let bump = m.ctxs[&id].kind == ContextKind::Bump;
                assert_eq!(r.is_ok(), bump, "retain_on_reset: {r:?}");
                if bump {
                    m.ctxs.get_mut(&id).unwrap().retain = bytes;
                    assert_eq!(m.h(id).retained_on_reset(), bytes);
                }
            }
            Op::ReleaseRecycled => mcxt::release_recycled(),
        }
    }
}

/// Every invariant of the model against the library.
fn verify(m: &Model, full: bool) {
    let map = m.child_map();
    let mut busy = std::collections::BTreeSet::new();
    // SAFETY: the model holds only live contexts and chunks.
    unsafe {
        for (&id, c) in &m.chunks {
            if full {
                c.check_full(id);
            } else {
                c.check_edges(id);
            }
            if c.size > 0 || c.kind != ContextKind::Bump {
                busy.insert(c.ctx);
            }
            assert_eq!(c.ptr.as_ptr() as usize % c.align.max(8), 0);
            if c.kind != ContextKind::Bump {
                assert_eq!(raw::chunk_context(c.ptr).unwrap(), m.h(c.ctx), "chunk {id}");
                assert!(raw::chunk_capacity(c.ptr).unwrap() >= c.size, "chunk {id}");
                assert!(raw::chunk_space(c.ptr).unwrap() >= c.size, "chunk {id}");
            }
        }
        for (&id, c) in &m.ctxs {
            let h = c.h;
            assert_eq!(h.parent(), c.parent.map(|p| m.h(p)), "parent of {id}");
            assert_eq!(h.kind(), c.kind);
            assert_eq!(h.limit(), c.limit, "limit of {id}");
            assert_eq!(h.ident(), c.ident.as_deref());
            let mut kids: Vec<MemoryContext> = h.children().collect();
            let mut want: Vec<MemoryContext> = map
                .get(&id)
                .into_iter()
                .flatten()
                .map(|&k| m.h(k))
                .collect();
            kids.sort_by_key(|k| k.as_ptr() as usize);
            want.sort_by_key(|k| k.as_ptr() as usize);
            assert_eq!(kids, want, "children of {id}");
            let children: usize = want.iter().map(|k| k.mem_allocated(true)).sum();
            assert_eq!(
                h.mem_allocated(true),
                h.mem_allocated(false) + children,
                "subtree accounting of {id}"
            );
            let counters = h.counters();
            assert_eq!(
                counters.total_bytes,
                h.mem_allocated(false),
                "counters of {id}"
            );
            assert!(counters.free_bytes <= counters.total_bytes);
            if !want.is_empty() || busy.contains(&id) {
                assert!(!h.is_empty(), "{id} holds chunks or children but is empty");
            }
            if c.parent.is_none() {
                let snap = h.stats();
                assert_eq!(snap.total().total_bytes, h.mem_allocated(true));
                assert_eq!(snap.contexts.len(), 1 + descendants_in(&map, id).len());
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let mut m = Model::default();
    let spec = ContextSpec::AllocSet(BlockSizes::DEFAULT);
    // SAFETY: a new root: no parent to keep alive.
    let root = unsafe { MemoryContext::create(None, name(0), spec) }.unwrap();
    m.ctxs.insert(
        0,
        Ctx {
            h: root,
            parent: None,
            kind: ContextKind::AllocSet,
            slab: (0, 0),
            limit: None,
            allow_critical: false,
            retain: 0,
            ident: None,
        },
    );
    m.next_ctx = 1;
    for (i, op) in input.ops.iter().enumerate() {
        apply(&mut m, op);
        verify(&m, i % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1);
    }
    verify(&m, true);
    m.critical.clear();
    // Tear down: deleting every root frees everything.
    let roots: Vec<MemoryContext> = m
        .ctxs
        .values()
        .filter(|c| c.parent.is_none())
        .map(|c| c.h)
        .collect();
    for h in roots {
        // SAFETY: roots are alive and deleted once.
        unsafe { h.delete() };
    }
    mcxt::release_recycled();
    assert_eq!(mcxt::recycled_bytes(), 0);
});
