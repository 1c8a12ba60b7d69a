//! Statistics: per-context counters, a structured snapshot of a tree, and
//! the text dump in PostgreSQL's `MemoryContextStats` format.
//!
//! All walks are iterative: a chain a million contexts deep is measured
//! and printed with a constant amount of stack.

use crate::tree::{next_preorder, ContextHeader};
use crate::ContextKind;
use crate::{aset, bump, generation, slab};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Memory counters of one context (or a sum of several).
///
/// * `total_bytes`: bytes held from the system (header, blocks, dedicated
///   chunks); equals [`mem_allocated`](crate::Context::mem_allocated).
/// * `free_bytes`: of those, bytes not in any live chunk: unused block tails
///   plus chunks on free lists (with their headers).
/// * `used_bytes()`: the rest: live chunks, their headers and rounding, and
///   the context's own bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Counters {
    /// Bytes held from the system.
    pub total_bytes: usize,
    /// Number of blocks (the keeper and dedicated blocks included).
    pub blocks: usize,
    /// Free bytes inside the blocks.
    pub free_bytes: usize,
    /// Chunks on free lists.
    pub free_chunks: usize,
}

impl Counters {
    /// `total_bytes - free_bytes`.
    pub fn used_bytes(&self) -> usize {
        self.total_bytes - self.free_bytes
    }

    fn add(&mut self, o: &Counters) {
        self.total_bytes += o.total_bytes;
        self.blocks += o.blocks;
        self.free_bytes += o.free_bytes;
        self.free_chunks += o.free_chunks;
    }
}

/// Counters of one context.
///
/// # Safety
/// `ctx` alive.
pub(crate) unsafe fn counters(ctx: *mut ContextHeader) -> Counters {
    // SAFETY: caller contract.
    unsafe { kind_counters(ctx).0 }
}

/// Counters plus the kind's extra figure for its stats line (Generation:
/// live chunks; Slab: empty blocks).
///
/// # Safety
/// `ctx` alive.
unsafe fn kind_counters(ctx: *mut ContextHeader) -> (Counters, usize) {
    // SAFETY: the kind tag names the real type.
    unsafe {
        match (*ctx).kind {
            ContextKind::AllocSet => (aset::stats(ctx.cast()), 0),
            ContextKind::Generation => generation::stats(ctx.cast()),
            ContextKind::Slab => slab::stats(ctx.cast()),
            ContextKind::Bump => (bump::stats(ctx.cast()), 0),
        }
    }
}

/// One context in a [`StatsSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ContextStats {
    /// The context's name.
    pub name: &'static str,
    /// Its identifier, if set.
    pub ident: Option<String>,
    /// Its kind.
    pub kind: ContextKind,
    /// Depth below the snapshot's root (the root is 0).
    pub depth: usize,
    /// Index of the parent in [`StatsSnapshot::contexts`] (`None` for the root).
    pub parent: Option<usize>,
    /// Bytes held from the system by this context.
    pub total_bytes: usize,
    /// Blocks of this context.
    pub blocks: usize,
    /// Free bytes inside its blocks.
    pub free_bytes: usize,
    /// Chunks on its free lists.
    pub free_chunks: usize,
    /// `total_bytes - free_bytes`.
    pub used_bytes: usize,
    /// Bytes held by this context and all its descendants.
    pub subtree_bytes: usize,
    /// Its byte limit, if any.
    pub limit: Option<usize>,
}

/// A structured snapshot of a context tree, in pre-order (a parent before
/// its children, children newest first, as PostgreSQL lists them).
///
/// ```
/// use mcxt::Context;
/// let top = Context::new("top");
/// let child = top.new_child("child");
/// child.alloc_slice_copy(&[1u8; 100]);
/// let snap = top.stats();
/// assert_eq!(snap.contexts.len(), 2);
/// assert_eq!(snap.contexts[1].name, "child");
/// assert_eq!(snap.contexts[1].parent, Some(0));
/// assert_eq!(snap.total().total_bytes, top.mem_allocated(true));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatsSnapshot {
    /// Every context of the tree, root first.
    pub contexts: Vec<ContextStats>,
}

impl StatsSnapshot {
    /// Sum over all contexts.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for c in &self.contexts {
            t.add(&Counters {
                total_bytes: c.total_bytes,
                blocks: c.blocks,
                free_bytes: c.free_bytes,
                free_chunks: c.free_chunks,
            });
        }
        t
    }
}

/// Snapshot of the subtree of `root`.
///
/// # Safety
/// `root` alive; the tree must not change meanwhile.
pub(crate) unsafe fn snapshot(root: *mut ContextHeader) -> StatsSnapshot {
    let mut contexts = Vec::new();
    // Stack of (context, index) of the current ancestors, to find parents.
    let mut ancestors: Vec<(*mut ContextHeader, usize)> = Vec::new();
    let mut cur = root;
    // SAFETY: walks live contexts of the subtree (caller contract).
    unsafe {
        while !cur.is_null() {
            while let Some(&(a, _)) = ancestors.last() {
                if a == (*cur).parent {
                    break;
                }
                ancestors.pop();
            }
            let c = counters(cur);
            let h = &*cur;
            let index = contexts.len();
            contexts.push(ContextStats {
                name: h.name,
                ident: h.ident.as_deref().map(String::from),
                kind: h.kind,
                depth: ancestors.len(),
                parent: if cur == root {
                    None
                } else {
                    ancestors.last().map(|&(_, i)| i)
                },
                total_bytes: c.total_bytes,
                blocks: c.blocks,
                free_bytes: c.free_bytes,
                free_chunks: c.free_chunks,
                used_bytes: c.used_bytes(),
                subtree_bytes: h.subtree_bytes,
                limit: (h.limit != usize::MAX).then_some(h.limit),
            });
            ancestors.push((cur, index));
            cur = next_preorder(cur, root);
        }
    }
    StatsSnapshot { contexts }
}

/// PostgreSQL's per-kind stats string.
fn write_counters(
    out: &mut impl Write,
    kind: ContextKind,
    c: &Counters,
    extra: usize,
) -> fmt::Result {
    let (total, blocks, free, chunks, used) = (
        c.total_bytes,
        c.blocks,
        c.free_bytes,
        c.free_chunks,
        c.used_bytes(),
    );
    match kind {
        ContextKind::AllocSet => {
            write!(out, "{total} total in {blocks} blocks; {free} free ({chunks} chunks); {used} used")
        }
        ContextKind::Generation => write!(
            out,
            "{total} total in {blocks} blocks ({extra} chunks); {free} free ({chunks} chunks); {used} used"
        ),
        ContextKind::Slab => write!(
            out,
            "{total} total in {blocks} blocks; {extra} empty blocks; {free} free ({chunks} chunks); {used} used"
        ),
        ContextKind::Bump => write!(out, "{total} total in {blocks} blocks; {free} free; {used} used"),
    }
}

/// Writes `ident` as PostgreSQL does: at most 100 bytes (cut at a character
/// boundary, then "..."), control characters as spaces.
fn write_ident(out: &mut impl Write, ident: &str) -> fmt::Result {
    const MAX: usize = 100;
    let mut cut = ident.len().min(MAX);
    while !ident.is_char_boundary(cut) {
        cut -= 1;
    }
    for ch in ident[..cut].chars() {
        out.write_char(if ch.is_control() { ' ' } else { ch })?;
    }
    if cut < ident.len() {
        out.write_str("...")?;
    }
    Ok(())
}

fn indent(out: &mut impl Write, n: usize) -> fmt::Result {
    for _ in 0..n {
        out.write_str("  ")?;
    }
    Ok(())
}

/// Writes the tree under `root` in `MemoryContextStats` format: one line
/// per context, at most `max_children` children per parent and `max_level`
/// levels, the rest summarised per parent as "N more child contexts
/// containing ...", then the "Grand total" line.
///
/// # Safety
/// `root` alive; the tree must not change meanwhile.
pub(crate) unsafe fn write_pg_text(
    out: &mut impl Write,
    root: *mut ContextHeader,
    max_level: usize,
    max_children: usize,
) -> fmt::Result {
    /// A context being listed, with the cursor over its children.
    struct Frame {
        ctx: *mut ContextHeader,
        level: usize,
        next_child: *mut ContextHeader,
        shown: usize,
    }
    let mut grand = Counters::default();
    let mut stack: Vec<Frame> = Vec::new();
    // SAFETY: walks live contexts of the subtree (caller contract).
    unsafe {
        /// Prints one context line and pushes its frame.
        unsafe fn visit<W: Write>(
            out: &mut W,
            grand: &mut Counters,
            ctx: *mut ContextHeader,
            level: usize,
            stack: &mut Vec<Frame>,
        ) -> fmt::Result {
            // SAFETY: `ctx` is alive (caller contract).
            unsafe {
                let (c, extra) = kind_counters(ctx);
                grand.add(&c);
                indent(out, level - 1)?;
                write!(out, "{}: ", (*ctx).name)?;
                write_counters(out, (*ctx).kind, &c, extra)?;
                if let Some(id) = (*ctx).ident.as_deref() {
                    out.write_str(": ")?;
                    write_ident(out, id)?;
                }
                out.write_char('\n')?;
                stack.push(Frame {
                    ctx,
                    level,
                    next_child: (*ctx).first_child,
                    shown: 0,
                });
            }
            Ok(())
        }
        visit(out, &mut grand, root, 1, &mut stack)?;
        while let Some(top) = stack.last_mut() {
            let child = top.next_child;
            if child.is_null() {
                stack.pop();
                continue;
            }
            if top.level < max_level && top.shown < max_children {
                top.next_child = (*child).next_sibling;
                top.shown += 1;
                let level = top.level + 1;
                visit(out, &mut grand, child, level, &mut stack)?;
                continue;
            }
            // Summarise every remaining child subtree of `top`.
            let (parent, level) = (top.ctx, top.level);
            let mut sum = Counters::default();
            let mut n = 0usize;
            let mut c = child;
            while !c.is_null() {
                sum.add(&counters(c));
                n += 1;
                c = next_preorder(c, parent);
            }
            grand.add(&sum);
            indent(out, level)?;
            writeln!(
                out,
                "{n} more child contexts containing {} total in {} blocks; {} free ({} chunks); {} used",
                sum.total_bytes,
                sum.blocks,
                sum.free_bytes,
                sum.free_chunks,
                sum.used_bytes()
            )?;
            stack.pop();
        }
    }
    writeln!(
        out,
        "Grand total: {} bytes in {} blocks; {} free ({} chunks); {} used",
        grand.total_bytes,
        grand.blocks,
        grand.free_bytes,
        grand.free_chunks,
        grand.used_bytes()
    )
}
