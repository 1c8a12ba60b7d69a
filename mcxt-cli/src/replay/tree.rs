//! Context-tree bookkeeping for replays without memory contexts.
//!
//! A program that uses plain `malloc`/`free` instead of memory contexts
//! must itself remember which allocations belong to which "context" and
//! which contexts hang below which, so that it can free everything when a
//! context is reset or deleted. [`Tree`] is that bookkeeping, kept as lean
//! as possible: per context a parent, a child list and a chunk list; per
//! chunk a payload (the backend's pointer and alignment, or the checker's
//! size) and intrusive links, so that no operation allocates, hashes or
//! searches. Lists are doubly linked through `u32` indices; `NONE` ends
//! them.
//!
//! Roots hang below a virtual context (index `n_contexts`), so that deleting
//! a root, moving a context to the top and deleting everything at the end
//! are ordinary list operations.
//!
//! The same structure serves as the shadow model of the `--check` mode
//! ([`super::checked`]), which needs to know every chunk that dies with a
//! reset or delete.

use mcxt_trace::{ChunkId, CtxId};

/// End of a list / no such node.
const NONE: u32 = u32::MAX;

/// One context: its place in the tree and the head of its chunk list.
#[derive(Clone, Copy, Debug)]
struct CtxNode {
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    prev_sibling: u32,
    first_chunk: u32,
}

const EMPTY_CTX: CtxNode = CtxNode {
    parent: NONE,
    first_child: NONE,
    next_sibling: NONE,
    prev_sibling: NONE,
    first_chunk: NONE,
};

/// One live chunk: the caller's payload and its links in its context's
/// chunk list.
#[derive(Clone, Copy, Debug)]
struct ChunkNode<P> {
    payload: P,
    next: u32,
    prev: u32,
    ctx: u32,
}

/// Contexts, their tree and their live chunks, indexed by the trace's
/// dense ids. `P` is the per-chunk payload.
///
/// Every method expects the ids of a valid trace (a context or chunk that
/// is alive where the trace says so); with other ids it may panic on an
/// index or corrupt its own lists, but never causes undefined behaviour.
#[derive(Debug)]
pub struct Tree<P> {
    ctxs: Vec<CtxNode>,
    chunks: Vec<ChunkNode<P>>,
    /// Index of the virtual context whose children are the roots.
    top: u32,
}

/// Makes a table of `n` copies of `v`, writing every element so that its
/// pages are faulted in now rather than during a timed replay.
pub(crate) fn prefaulted<T: Clone>(n: usize, v: T) -> Vec<T> {
    let mut t = Vec::with_capacity(n);
    t.resize(n, v);
    t
}

impl<P: Copy> Tree<P> {
    /// Tables for `n_contexts` contexts and `n_chunks` chunks; `fill` is
    /// the initial payload of every chunk slot.
    pub fn new(n_contexts: u32, n_chunks: u32, fill: P) -> Tree<P> {
        let top = n_contexts;
        let ctxs = prefaulted(n_contexts as usize + 1, EMPTY_CTX);
        let chunks = prefaulted(
            n_chunks as usize,
            ChunkNode {
                payload: fill,
                next: NONE,
                prev: NONE,
                ctx: NONE,
            },
        );
        Tree { ctxs, chunks, top }
    }

    #[inline(always)]
    fn parent_index(&self, parent: Option<CtxId>) -> u32 {
        parent.unwrap_or(self.top)
    }

    /// Links `ctx` as the first child of `parent`.
    #[inline(always)]
    fn link(&mut self, ctx: u32, parent: u32) {
        let first = self.ctxs[parent as usize].first_child;
        {
            let n = &mut self.ctxs[ctx as usize];
            n.parent = parent;
            n.prev_sibling = NONE;
            n.next_sibling = first;
        }
        if first != NONE {
            self.ctxs[first as usize].prev_sibling = ctx;
        }
        self.ctxs[parent as usize].first_child = ctx;
    }

    /// Unlinks `ctx` from its parent's child list.
    #[inline(always)]
    fn unlink(&mut self, ctx: u32) {
        let CtxNode {
            parent,
            next_sibling: next,
            prev_sibling: prev,
            ..
        } = self.ctxs[ctx as usize];
        if prev == NONE {
            self.ctxs[parent as usize].first_child = next;
        } else {
            self.ctxs[prev as usize].next_sibling = next;
        }
        if next != NONE {
            self.ctxs[next as usize].prev_sibling = prev;
        }
    }

    /// Records the creation of `ctx` under `parent` (`None`: a root).
    #[inline]
    pub fn create(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        let p = self.parent_index(parent);
        self.ctxs[ctx as usize] = EMPTY_CTX;
        self.link(ctx, p);
    }

    /// Records a new live chunk of `ctx`.
    #[inline(always)]
    pub fn add_chunk(&mut self, chunk: ChunkId, ctx: CtxId, payload: P) {
        let first = self.ctxs[ctx as usize].first_chunk;
        self.chunks[chunk as usize] = ChunkNode {
            payload,
            next: first,
            prev: NONE,
            ctx,
        };
        if first != NONE {
            self.chunks[first as usize].prev = chunk;
        }
        self.ctxs[ctx as usize].first_chunk = chunk;
    }

    /// The payload of a live chunk.
    #[inline(always)]
    pub fn payload(&self, chunk: ChunkId) -> P {
        self.chunks[chunk as usize].payload
    }

    /// Replaces the payload of a live chunk.
    #[inline(always)]
    pub fn set_payload(&mut self, chunk: ChunkId, payload: P) {
        self.chunks[chunk as usize].payload = payload;
    }

    /// The context of a live chunk.
    #[inline(always)]
    pub fn chunk_context(&self, chunk: ChunkId) -> CtxId {
        self.chunks[chunk as usize].ctx
    }

    /// Forgets a chunk freed on its own (`F`); returns its payload.
    #[inline(always)]
    pub fn remove_chunk(&mut self, chunk: ChunkId) -> P {
        let ChunkNode {
            payload,
            next,
            prev,
            ctx,
        } = self.chunks[chunk as usize];
        if prev == NONE {
            self.ctxs[ctx as usize].first_chunk = next;
        } else {
            self.chunks[prev as usize].next = next;
        }
        if next != NONE {
            self.chunks[next as usize].prev = prev;
        }
        payload
    }

    /// Calls `dying` on every chunk of `ctx` (newest first) and empties its
    /// chunk list.
    #[inline(always)]
    fn drop_chunks(&mut self, ctx: u32, dying: &mut impl FnMut(ChunkId, P)) {
        let mut c = self.ctxs[ctx as usize].first_chunk;
        if c == NONE {
            return;
        }
        self.ctxs[ctx as usize].first_chunk = NONE;
        while c != NONE {
            let node = self.chunks[c as usize];
            dying(c, node.payload);
            c = node.next;
        }
    }

    /// Deletes `root` and its subtree: calls `dying` on every chunk in it
    /// and unlinks `root` from its parent. Iterative, post-order, without
    /// a stack: a leaf is emptied and unlinked, which eventually makes its
    /// parent a leaf.
    fn kill_subtree(&mut self, root: u32, dying: &mut impl FnMut(ChunkId, P)) {
        let mut c = root;
        loop {
            let first = self.ctxs[c as usize].first_child;
            if first != NONE {
                c = first;
                continue;
            }
            self.drop_chunks(c, dying);
            let parent = self.ctxs[c as usize].parent;
            self.unlink(c);
            if c == root {
                return;
            }
            c = parent;
        }
    }

    /// `X`: deletes every descendant of `ctx`, then drops its chunks;
    /// `dying` sees every chunk that dies.
    #[inline]
    pub fn reset(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        self.delete_children_with(ctx, &mut dying);
        self.drop_chunks(ctx, &mut dying);
    }

    /// `O`: drops the chunks of `ctx` only.
    #[inline]
    pub fn reset_only(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        self.drop_chunks(ctx, &mut dying);
    }

    /// `H`: deletes every descendant of `ctx`.
    #[inline]
    pub fn delete_children(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        self.delete_children_with(ctx, &mut dying);
    }

    #[inline(always)]
    fn delete_children_with(&mut self, ctx: u32, dying: &mut impl FnMut(ChunkId, P)) {
        loop {
            let child = self.ctxs[ctx as usize].first_child;
            if child == NONE {
                return;
            }
            self.kill_subtree(child, dying);
        }
    }

    /// `D`: deletes `ctx` and its subtree.
    #[inline]
    pub fn delete(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        self.kill_subtree(ctx, &mut dying);
    }

    /// `P`: moves `ctx` (with its subtree) under `parent`, or to the top.
    #[inline]
    pub fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        let p = self.parent_index(parent);
        self.unlink(ctx);
        self.link(ctx, p);
    }

    /// Deletes every remaining context (every root's subtree).
    pub fn delete_all(&mut self, mut dying: impl FnMut(ChunkId, P)) {
        self.delete_children_with(self.top, &mut dying);
    }

    /// The current roots, newest first.
    pub fn roots(&self) -> Vec<CtxId> {
        let mut out = Vec::new();
        let mut c = self.ctxs[self.top as usize].first_child;
        while c != NONE {
            out.push(c);
            c = self.ctxs[c as usize].next_sibling;
        }
        out
    }

    /// Number of live chunks of `ctx` (walks its list; for tests).
    pub fn live_chunks(&self, ctx: CtxId) -> usize {
        let mut n = 0;
        let mut c = self.ctxs[ctx as usize].first_chunk;
        while c != NONE {
            n += 1;
            c = self.chunks[c as usize].next;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_delete_and_move() {
        // 0 (root) -> 1 -> 2, 0 -> 3; chunks: 0,1 in 0; 2 in 1; 3 in 2; 4 in 3
        let mut t = Tree::new(5, 6, 0u32);
        t.create(0, None);
        t.create(1, Some(0));
        t.create(2, Some(1));
        t.create(3, Some(0));
        for (chunk, ctx) in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3)] {
            t.add_chunk(chunk, ctx, chunk * 10);
        }
        assert_eq!(t.remove_chunk(1), 10);
        assert_eq!(t.live_chunks(0), 1);
        let mut died = Vec::new();
        t.delete_children(1, |c, p| died.push((c, p)));
        assert_eq!(died, [(3, 30)]);
        let mut dead = Vec::new();
        t.create(4, None);
        t.set_parent(3, Some(4));
        t.reset(0, |c, _| dead.push(c));
        dead.sort();
        assert_eq!(dead, [0, 2]);
        assert_eq!(t.roots(), [4, 0]);
        dead.clear();
        t.delete_all(|c, _| dead.push(c));
        assert_eq!(dead, [4]);
        assert!(t.roots().is_empty());
    }
}
