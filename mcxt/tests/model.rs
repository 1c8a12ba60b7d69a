//! Model-based property test: random sequences of create / alloc / free /
//! realloc / reset / reset-only / delete-children / delete / reparent /
//! limits against a simple model of the tree. After every step: every live
//! chunk keeps its contents and its owner, subtree accounting adds up, and
//! the stats agree with the accounting.

use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocFlags, AllocSetSizes, ContextKind, ContextSpec, ErrorKind};

/// Chunk size of the model's slab contexts.
const SLAB_CHUNK: usize = 64;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ptr::NonNull;

#[derive(Clone, Debug)]
enum Op {
    Create {
        parent: usize,
        small: bool,
        kind: u8,
    },
    Alloc {
        ctx: usize,
        size: usize,
        align: usize,
    },
    Free {
        chunk: usize,
    },
    Realloc {
        chunk: usize,
        size: usize,
    },
    Reset {
        ctx: usize,
    },
    ResetOnly {
        ctx: usize,
    },
    DeleteChildren {
        ctx: usize,
    },
    Delete {
        ctx: usize,
    },
    SetParent {
        ctx: usize,
        parent: Option<usize>,
    },
    Limit {
        ctx: usize,
        slack: Option<usize>,
    },
    Retain {
        ctx: usize,
        bytes: usize,
    },
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..300,
        2 => 300usize..9000,
        1 => 9000usize..40_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..64;
    prop_oneof![
        3 => (i.clone(), any::<bool>(), 0u8..4).prop_map(|(parent, small, kind)| Op::Create { parent, small, kind }),
        12 => (i.clone(), size(), prop_oneof![6 => Just(0usize), 1 => Just(64usize), 1 => Just(4096usize)])
            .prop_map(|(ctx, size, align)| Op::Alloc { ctx, size, align }),
        6 => i.clone().prop_map(|chunk| Op::Free { chunk }),
        3 => (i.clone(), size()).prop_map(|(chunk, size)| Op::Realloc { chunk, size }),
        2 => i.clone().prop_map(|ctx| Op::Reset { ctx }),
        1 => i.clone().prop_map(|ctx| Op::ResetOnly { ctx }),
        1 => i.clone().prop_map(|ctx| Op::DeleteChildren { ctx }),
        1 => i.clone().prop_map(|ctx| Op::Delete { ctx }),
        2 => (i.clone(), proptest::option::of(i.clone())).prop_map(|(ctx, parent)| Op::SetParent { ctx, parent }),
        1 => (i.clone(), proptest::option::of(0usize..20_000)).prop_map(|(ctx, slack)| Op::Limit { ctx, slack }),
        1 => (i, prop_oneof![Just(0usize), 0usize..100_000, Just(usize::MAX)])
            .prop_map(|(ctx, bytes)| Op::Retain { ctx, bytes }),
    ]
}

struct Chunk {
    kind: ContextKind,
    ptr: NonNull<u8>,
    ctx: usize,
    size: usize,
    align: usize,
    seed: u8,
}

#[derive(Default)]
struct Model {
    /// Live contexts by model id: (handle, parent id).
    ctxs: BTreeMap<usize, (MemoryContext, Option<usize>)>,
    chunks: BTreeMap<usize, Chunk>,
    next_ctx: usize,
    next_chunk: usize,
}

impl Model {
    fn pick_ctx(&self, i: usize) -> Option<usize> {
        let n = self.ctxs.len();
        (n > 0).then(|| *self.ctxs.keys().nth(i % n).unwrap())
    }

    /// A chunk that may be freed or reallocated (not a bump chunk).
    fn pick_chunk(&self, i: usize) -> Option<usize> {
        let ids: Vec<usize> = self
            .chunks
            .iter()
            .filter(|(_, c)| c.kind != ContextKind::Bump)
            .map(|(&k, _)| k)
            .collect();
        (!ids.is_empty()).then(|| ids[i % ids.len()])
    }

    fn descendants(&self, id: usize) -> Vec<usize> {
        let mut out = vec![];
        let mut stack = vec![id];
        while let Some(c) = stack.pop() {
            for (&k, &(_, p)) in &self.ctxs {
                if p == Some(c) {
                    out.push(k);
                    stack.push(k);
                }
            }
        }
        out
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

    fn handle(&self, id: usize) -> MemoryContext {
        self.ctxs[&id].0
    }
}

fn fill(p: NonNull<u8>, n: usize, seed: u8) {
    // SAFETY: live chunk of at least n bytes.
    unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) }
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = seed ^ (i as u8));
}

fn intact(p: NonNull<u8>, n: usize, seed: u8) -> bool {
    // SAFETY: live chunk of at least n bytes.
    unsafe { std::slice::from_raw_parts(p.as_ptr(), n) }
        .iter()
        .enumerate()
        .all(|(i, &b)| b == seed ^ (i as u8))
}

fn apply(m: &mut Model, op: &Op) {
    // SAFETY: the model only uses handles of live contexts and live chunks.
    unsafe {
        match *op {
            Op::Create {
                parent,
                small,
                kind,
            } => {
                let parent = m.pick_ctx(parent);
                let sizes = if small {
                    AllocSetSizes::SMALL
                } else {
                    AllocSetSizes::DEFAULT
                };
                let spec = match kind {
                    0 => ContextSpec::AllocSet(sizes),
                    1 => ContextSpec::Generation(sizes),
                    2 => ContextSpec::Slab {
                        block_size: 4096,
                        chunk_size: SLAB_CHUNK,
                    },
                    _ => ContextSpec::Bump(sizes),
                };
                match MemoryContext::create(parent.map(|p| m.handle(p)), "ctx", spec) {
                    Ok(h) => {
                        m.ctxs.insert(m.next_ctx, (h, parent));
                        m.next_ctx += 1;
                    }
                    Err(e) => assert!(e.is_out_of_memory(), "{e}"),
                }
            }
            Op::Alloc { ctx, size, align } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let h = m.handle(id);
                let kind = h.kind();
                let (size, align) = if kind == ContextKind::Slab {
                    (SLAB_CHUNK, 0)
                } else {
                    (size, align)
                };
                let r = if align == 0 {
                    h.alloc(size).map(Some)
                } else {
                    h.alloc_aligned(size, align, AllocFlags::empty())
                };
                match r {
                    Ok(Some(p)) => {
                        assert_eq!(p.as_ptr() as usize % align.max(8), 0);
                        let seed = m.next_chunk as u8;
                        fill(p, size, seed);
                        m.chunks.insert(
                            m.next_chunk,
                            Chunk {
                                kind,
                                ptr: p,
                                ctx: id,
                                size,
                                align,
                                seed,
                            },
                        );
                        m.next_chunk += 1;
                    }
                    Ok(None) => unreachable!(),
                    Err(e) => assert!(e.is_out_of_memory(), "{e}"),
                }
            }
            Op::Free { chunk } => {
                let Some(id) = m.pick_chunk(chunk) else {
                    return;
                };
                let c = m.chunks.remove(&id).unwrap();
                raw::free(c.ptr).unwrap();
            }
            Op::Realloc { chunk, size } => {
                let Some(id) = m.pick_chunk(chunk) else {
                    return;
                };
                let c = m.chunks.get_mut(&id).unwrap();
                match raw::realloc(c.ptr, size) {
                    Ok(p) => {
                        assert!(intact(p, c.size.min(size), c.seed), "realloc lost contents");
                        assert_eq!(
                            p.as_ptr() as usize % c.align.max(8),
                            0,
                            "realloc lost alignment"
                        );
                        c.ptr = p;
                        c.size = size;
                        fill(p, size, c.seed);
                    }
                    Err(e) => {
                        let slab_growth = c.kind == ContextKind::Slab && size > SLAB_CHUNK;
                        assert!(
                            e.is_out_of_memory()
                                || slab_growth && matches!(e.kind, ErrorKind::Unsupported(_)),
                            "{e}"
                        );
                        assert!(
                            intact(c.ptr, c.size, c.seed),
                            "a failed realloc changed the chunk"
                        );
                    }
                }
            }
            Op::Reset { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                m.handle(id).reset();
                let d = m.descendants(id);
                m.remove_ctxs(&d);
                m.kill_chunks_of(&[id]);
            }
            Op::ResetOnly { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                m.handle(id).reset_only();
                m.kill_chunks_of(&[id]);
            }
            Op::DeleteChildren { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                m.handle(id).delete_children();
                let d = m.descendants(id);
                m.remove_ctxs(&d);
            }
            Op::Delete { ctx } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                m.handle(id).delete();
                let mut d = m.descendants(id);
                d.push(id);
                m.remove_ctxs(&d);
            }
            Op::SetParent { ctx, parent } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let new_parent = parent.and_then(|p| m.pick_ctx(p));
                let cycle = new_parent.is_some_and(|p| p == id || m.descendants(id).contains(&p));
                let r = m.handle(id).set_parent(new_parent.map(|p| m.handle(p)));
                match r {
                    Ok(()) => {
                        assert!(!cycle);
                        m.ctxs.get_mut(&id).unwrap().1 = new_parent;
                    }
                    Err(e) => assert!(cycle || e.is_out_of_memory(), "{e}"),
                }
            }
            Op::Limit { ctx, slack } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let h = m.handle(id);
                h.set_limit(slack.map(|s| h.mem_allocated(true) + s));
            }
            Op::Retain { ctx, bytes } => {
                let Some(id) = m.pick_ctx(ctx) else { return };
                let h = m.handle(id);
                let r = h.retain_on_reset(bytes);
                assert_eq!(r.is_ok(), h.kind() == ContextKind::Bump, "{r:?}");
                if r.is_ok() {
                    assert_eq!(h.retained_on_reset(), bytes);
                }
            }
        }
    }
}

fn verify(m: &Model) {
    // SAFETY: the model holds only live contexts and chunks.
    unsafe {
        for c in m.chunks.values() {
            assert!(intact(c.ptr, c.size, c.seed), "chunk contents damaged");
            if c.kind != ContextKind::Bump {
                assert_eq!(raw::chunk_context(c.ptr).unwrap(), m.handle(c.ctx));
                assert!(raw::chunk_space(c.ptr).unwrap() >= c.size);
            }
        }
        for (&id, &(h, parent)) in &m.ctxs {
            assert_eq!(h.parent(), parent.map(|p| m.handle(p)));
            let children: u64 = m
                .ctxs
                .values()
                .filter(|&&(_, p)| p == Some(id))
                .map(|&(c, _)| c.mem_allocated(true) as u64)
                .sum();
            assert_eq!(
                h.mem_allocated(true) as u64,
                h.mem_allocated(false) as u64 + children
            );
            let counters = h.counters();
            assert_eq!(counters.total_bytes, h.mem_allocated(false));
            assert!(counters.free_bytes <= counters.total_bytes);
            if parent.is_none() {
                let snap = h.stats();
                assert_eq!(snap.total().total_bytes, h.mem_allocated(true));
                assert_eq!(snap.contexts.len(), 1 + m.descendants(id).len());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 6 } else { 200 },
        // Miri isolates the file system: no failure files there.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 160 })) {
        let mut m = Model::default();
        // SAFETY: a fresh root.
        let root = unsafe { MemoryContext::new_alloc_set(None, "root", AllocSetSizes::DEFAULT).unwrap() };
        m.ctxs.insert(0, (root, None));
        m.next_ctx = 1;
        for op in &ops {
            apply(&mut m, op);
            verify(&m);
        }
        // Tear down: deleting every root frees everything.
        let roots: Vec<_> = m.ctxs.iter().filter(|(_, &(_, p))| p.is_none()).map(|(_, &(h, _))| h).collect();
        for h in roots {
            // SAFETY: roots are alive and deleted once.
            unsafe { h.delete() };
        }
        mcxt::release_recycled();
    }
}
