//! `MemoryContextCheck`: a consistency walk over a context tree.
//!
//! PostgreSQL checks every chunk in `MEMORY_CONTEXT_CHECKING` builds. The
//! raw mcxt API does not expose chunks, so for now this walks the tree and
//! verifies what it can see: the parent links, and the byte accounting of
//! every context (its stats total equals its own bytes, its free bytes do
//! not exceed them, and its subtree total is its own bytes plus its
//! children's subtree totals).

use core::fmt::Write;
use mcxt_core::raw::MemoryContext;

/// Checks the tree under `root` iteratively; returns one
/// `WARNING:  problem in memory context "<name>": ...` line per problem
/// (empty when all is well).
///
/// # Safety
/// `root` must be alive, and the tree must not change meanwhile.
pub(crate) unsafe fn check_tree(root: MemoryContext) -> String {
    let mut report = String::new();
    let mut stack = vec![root];
    while let Some(ctx) = stack.pop() {
        // SAFETY: `ctx` is `root` or a child of a live context, so alive
        // (caller contract); nothing here changes the tree.
        unsafe {
            let name = ctx.name();
            let mut problem = |what: core::fmt::Arguments<'_>| {
                let _ = writeln!(
                    report,
                    "WARNING:  problem in memory context \"{name}\": {what}"
                );
            };
            let own = ctx.mem_allocated(false);
            let subtree = ctx.mem_allocated(true);
            let counters = ctx.counters();
            if counters.total_bytes != own {
                problem(format_args!(
                    "its blocks hold {} bytes but it accounts for {own}",
                    counters.total_bytes
                ));
            }
            if counters.free_bytes > counters.total_bytes {
                problem(format_args!(
                    "{} free bytes out of {} in total",
                    counters.free_bytes, counters.total_bytes
                ));
            }
            let mut children_bytes = 0usize;
            for child in ctx.children() {
                if child.parent() != Some(ctx) {
                    problem(format_args!(
                        "child \"{}\" does not point back to it",
                        child.name()
                    ));
                }
                children_bytes = children_bytes.saturating_add(child.mem_allocated(true));
                stack.push(child);
            }
            if own.checked_add(children_bytes) != Some(subtree) {
                problem(format_args!(
                    "its subtree accounts for {subtree} bytes, but it holds {own} \
                     and its children's subtrees {children_bytes}"
                ));
            }
        }
    }
    report
}
