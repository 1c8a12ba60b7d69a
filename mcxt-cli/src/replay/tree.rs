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

use super::table::IdTable;

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
/// # Contract of the `unsafe` methods
///
/// The tables are indexed without bounds checks (see [`IdTable`]), so the
/// per-operation methods take the ids of a valid trace: every context id
/// below the `n_contexts` given to [`Tree::new`] and every chunk id below
/// its `n_chunks`, a context created (and not deleted) before it is used,
/// a chunk added (and not removed or dropped) before it is used. Given
/// that, every link the tree stores is `NONE` or a valid index, which is
/// what the methods without ids (`delete_all`, `roots`) rely on.
#[derive(Debug)]
pub struct Tree<P> {
    ctxs: IdTable<CtxNode>,
    chunks: IdTable<ChunkNode<P>>,
    /// Index of the virtual context whose children are the roots.
    top: u32,
}

impl<P: Copy> Tree<P> {
    /// Tables for `n_contexts` contexts and `n_chunks` chunks; `fill` is
    /// the initial payload of every chunk slot.
    pub fn new(n_contexts: u32, n_chunks: u32, fill: P) -> Tree<P> {
        let top = n_contexts;
        let ctxs = IdTable::new(n_contexts as usize + 1, EMPTY_CTX);
        let chunks = IdTable::new(
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

    /// A context node.
    ///
    /// # Safety
    /// `i` is a context index (a context id of the trace, or `top`).
    #[inline(always)]
    unsafe fn ctx(&mut self, i: u32) -> &mut CtxNode {
        // SAFETY: caller contract.
        unsafe { self.ctxs.at_mut(i) }
    }

    /// A chunk node.
    ///
    /// # Safety
    /// `i` is a chunk id of the trace.
    #[inline(always)]
    unsafe fn chunk(&mut self, i: u32) -> &mut ChunkNode<P> {
        // SAFETY: caller contract.
        unsafe { self.chunks.at_mut(i) }
    }

    #[inline(always)]
    fn parent_index(&self, parent: Option<CtxId>) -> u32 {
        parent.unwrap_or(self.top)
    }

    /// Links `ctx` as the first child of `parent`.
    ///
    /// # Safety
    /// Both are context indices; `parent`'s child list is valid.
    #[inline(always)]
    unsafe fn link(&mut self, ctx: u32, parent: u32) {
        // SAFETY: caller contract; `first` is `NONE` or a live child.
        unsafe {
            let first = self.ctx(parent).first_child;
            {
                let n = self.ctx(ctx);
                n.parent = parent;
                n.prev_sibling = NONE;
                n.next_sibling = first;
            }
            if first != NONE {
                self.ctx(first).prev_sibling = ctx;
            }
            self.ctx(parent).first_child = ctx;
        }
    }

    /// Unlinks `ctx` from its parent's child list.
    ///
    /// # Safety
    /// `ctx` is a linked context index.
    #[inline(always)]
    unsafe fn unlink(&mut self, ctx: u32) {
        // SAFETY: caller contract; a linked node's links are `NONE` or
        // valid indices.
        unsafe {
            let CtxNode {
                parent,
                next_sibling: next,
                prev_sibling: prev,
                ..
            } = *self.ctx(ctx);
            if prev == NONE {
                self.ctx(parent).first_child = next;
            } else {
                self.ctx(prev).next_sibling = next;
            }
            if next != NONE {
                self.ctx(next).prev_sibling = prev;
            }
        }
    }

    /// Records the creation of `ctx` under `parent` (`None`: a root).
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline]
    pub unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        let p = self.parent_index(parent);
        // SAFETY: caller contract.
        unsafe {
            *self.ctx(ctx) = EMPTY_CTX;
            self.link(ctx, p);
        }
    }

    /// Records a new live chunk of `ctx`.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline(always)]
    pub unsafe fn add_chunk(&mut self, chunk: ChunkId, ctx: CtxId, payload: P) {
        // SAFETY: caller contract; `first` is `NONE` or a live chunk.
        unsafe {
            let first = self.ctx(ctx).first_chunk;
            *self.chunk(chunk) = ChunkNode {
                payload,
                next: first,
                prev: NONE,
                ctx,
            };
            if first != NONE {
                self.chunk(first).prev = chunk;
            }
            self.ctx(ctx).first_chunk = chunk;
        }
    }

    /// The payload of a live chunk.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline(always)]
    pub unsafe fn payload(&self, chunk: ChunkId) -> P {
        // SAFETY: caller contract.
        unsafe { self.chunks.at(chunk).payload }
    }

    /// The payload of slot `chunk` (whatever it last held), or `None` past
    /// the table: the checked lookup of untimed paths.
    pub fn slot_payload(&self, chunk: ChunkId) -> Option<P> {
        self.chunks.get(chunk).map(|n| n.payload)
    }

    /// Replaces the payload of a live chunk.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline(always)]
    pub unsafe fn set_payload(&mut self, chunk: ChunkId, payload: P) {
        // SAFETY: caller contract.
        unsafe { self.chunk(chunk).payload = payload }
    }

    /// Forgets a chunk freed on its own (`F`); returns its payload.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline(always)]
    pub unsafe fn remove_chunk(&mut self, chunk: ChunkId) -> P {
        // SAFETY: caller contract; a live chunk's links are `NONE` or
        // live chunks, its context a live context.
        unsafe {
            let ChunkNode {
                payload,
                next,
                prev,
                ctx,
            } = *self.chunk(chunk);
            if prev == NONE {
                self.ctx(ctx).first_chunk = next;
            } else {
                self.chunk(prev).next = next;
            }
            if next != NONE {
                self.chunk(next).prev = prev;
            }
            payload
        }
    }

    /// Calls `dying` on every chunk of `ctx` (newest first) and empties its
    /// chunk list.
    ///
    /// # Safety
    /// `ctx` is a live context index.
    #[inline(always)]
    unsafe fn drop_chunks(&mut self, ctx: u32, dying: &mut impl FnMut(ChunkId, P)) {
        // SAFETY: caller contract; the list holds live chunks.
        unsafe {
            let mut c = self.ctx(ctx).first_chunk;
            if c == NONE {
                return;
            }
            self.ctx(ctx).first_chunk = NONE;
            while c != NONE {
                let node = *self.chunk(c);
                dying(c, node.payload);
                c = node.next;
            }
        }
    }

    /// Deletes `root` and its subtree: calls `dying` on every chunk in it
    /// and unlinks `root` from its parent. Iterative, post-order, without
    /// a stack: a leaf is emptied and unlinked, which eventually makes its
    /// parent a leaf.
    ///
    /// # Safety
    /// `root` is a live, linked context index.
    unsafe fn kill_subtree(&mut self, root: u32, dying: &mut impl FnMut(ChunkId, P)) {
        let mut c = root;
        // SAFETY: caller contract; the walk follows the tree's own links.
        unsafe {
            loop {
                let first = self.ctx(c).first_child;
                if first != NONE {
                    c = first;
                    continue;
                }
                self.drop_chunks(c, dying);
                let parent = self.ctx(c).parent;
                self.unlink(c);
                if c == root {
                    return;
                }
                c = parent;
            }
        }
    }

    /// `X`: deletes every descendant of `ctx`, then drops its chunks;
    /// `dying` sees every chunk that dies.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline]
    pub unsafe fn reset(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        // SAFETY: caller contract.
        unsafe {
            self.delete_children_with(ctx, &mut dying);
            self.drop_chunks(ctx, &mut dying);
        }
    }

    /// `O`: drops the chunks of `ctx` only.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline]
    pub unsafe fn reset_only(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        // SAFETY: caller contract.
        unsafe { self.drop_chunks(ctx, &mut dying) }
    }

    /// `H`: deletes every descendant of `ctx`.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline]
    pub unsafe fn delete_children(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        // SAFETY: caller contract.
        unsafe { self.delete_children_with(ctx, &mut dying) }
    }

    /// # Safety
    /// `ctx` is a live context index.
    #[inline(always)]
    unsafe fn delete_children_with(&mut self, ctx: u32, dying: &mut impl FnMut(ChunkId, P)) {
        // SAFETY: caller contract; children are live and linked.
        unsafe {
            loop {
                let child = self.ctx(ctx).first_child;
                if child == NONE {
                    return;
                }
                self.kill_subtree(child, dying);
            }
        }
    }

    /// `D`: deletes `ctx` and its subtree.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline]
    pub unsafe fn delete(&mut self, ctx: CtxId, mut dying: impl FnMut(ChunkId, P)) {
        // SAFETY: caller contract.
        unsafe { self.kill_subtree(ctx, &mut dying) }
    }

    /// `P`: moves `ctx` (with its subtree) under `parent`, or to the top.
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    #[inline]
    pub unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        let p = self.parent_index(parent);
        // SAFETY: caller contract.
        unsafe {
            self.unlink(ctx);
            self.link(ctx, p);
        }
    }

    /// Deletes every remaining context (every root's subtree).
    pub fn delete_all(&mut self, mut dying: impl FnMut(ChunkId, P)) {
        // SAFETY: `top` is always a valid index, and the links below it are
        // valid (the contract held for every call that made them).
        unsafe { self.delete_children_with(self.top, &mut dying) }
    }

    /// The current roots, newest first.
    pub fn roots(&self) -> Vec<CtxId> {
        let mut out = Vec::new();
        // SAFETY: as in `delete_all`.
        unsafe {
            let mut c = self.ctxs.at(self.top).first_child;
            while c != NONE {
                out.push(c);
                c = self.ctxs.at(c).next_sibling;
            }
        }
        out
    }

    /// Number of live chunks of `ctx` (walks its list; for tests).
    ///
    /// # Safety
    /// The [contract](Tree#contract-of-the-unsafe-methods).
    pub unsafe fn live_chunks(&self, ctx: CtxId) -> usize {
        let mut n = 0;
        // SAFETY: caller contract; the list holds live chunks.
        unsafe {
            let mut c = self.ctxs.at(ctx).first_chunk;
            while c != NONE {
                n += 1;
                c = self.chunks.at(c).next;
            }
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
        let mut died = Vec::new();
        let mut dead = Vec::new();
        // SAFETY: ids below the table sizes, each used as a trace would:
        // created or added before use, never used after it died.
        unsafe {
            t.create(0, None);
            t.create(1, Some(0));
            t.create(2, Some(1));
            t.create(3, Some(0));
            for (chunk, ctx) in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3)] {
                t.add_chunk(chunk, ctx, chunk * 10);
            }
            assert_eq!(t.remove_chunk(1), 10);
            assert_eq!(t.live_chunks(0), 1);
            t.delete_children(1, |c, p| died.push((c, p)));
            assert_eq!(died, [(3, 30)]);
            t.create(4, None);
            t.set_parent(3, Some(4));
            t.reset(0, |c, _| dead.push(c));
        }
        dead.sort();
        assert_eq!(dead, [0, 2]);
        assert_eq!(t.roots(), [4, 0]);
        assert_eq!(t.slot_payload(4), Some(40));
        assert_eq!(t.slot_payload(6), None);
        dead.clear();
        t.delete_all(|c, _| dead.push(c));
        assert_eq!(dead, [4]);
        assert!(t.roots().is_empty());
    }
}
