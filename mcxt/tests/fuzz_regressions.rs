//! Reproducers of bugs found with the `ops` fuzz target (`fuzz/`), as plain
//! tests. A test still marked `#[ignore]` reproduces an open bug: it fails
//! until the bug is fixed (run it with `cargo test -p mcxt --test
//! fuzz_regressions -- --ignored`); remove the `ignore` with the fix.

use mcxt::raw::MemoryContext;
use mcxt::{BlockSizes, ContextSpec};

/// `set_parent` moves a context between two children of a context whose
/// limit is already below its usage: the limited ancestor holds exactly as
/// much after the move as before, so the move takes no ancestor past a
/// limit and must succeed ("a limit below current usage only stops
/// growth"). `tree::set_parent` discharges the subtree from the whole old
/// chain and then charges it to the whole new chain with the limit check,
/// so the common ancestor's unchanged total is compared with its limit and
/// the move is refused with `LimitExceeded`.
///
/// Fuzz input (`fuzz/seeds/ops/reparent-under-limit`, 23 bytes): create
/// c1 and c2 under the root c0, set c0's limit to 0, move c1 under c2.
#[test]
#[ignore = "reproducer of bug: set_parent refuses a move inside a subtree whose common ancestor is over its limit (mcxt/src/tree.rs, set_parent)"]
fn reparent_inside_a_subtree_over_its_limit() {
    // SAFETY: every handle is used while its context lives; the root is
    // deleted once at the end, which deletes the rest.
    unsafe {
        let root = MemoryContext::create(None, "root", ContextSpec::AllocSet(BlockSizes::DEFAULT))
            .unwrap();
        let a = MemoryContext::create(Some(root), "a", ContextSpec::AllocSet(BlockSizes::DEFAULT))
            .unwrap();
        let b = MemoryContext::create(Some(root), "b", ContextSpec::AllocSet(BlockSizes::DEFAULT))
            .unwrap();
        let held = root.mem_allocated(true);
        root.set_limit(Some(0));
        let r = a.set_parent(Some(b));
        let after = (root.mem_allocated(true), a.parent());
        root.delete();
        assert_eq!(r, Ok(()), "a move inside the limited subtree was refused");
        assert_eq!(after, (held, Some(b)));
    }
}
