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
/// growth"). `tree::set_parent` used to discharge the subtree from the
/// whole old chain and charge it to the whole new chain with the limit
/// check, so the common ancestor's unchanged total was compared with its
/// limit and the move refused with `LimitExceeded`. Fixed: only the chains
/// below the lowest common ancestor change.
///
/// Found by the `ops` target from an empty corpus after 340 000 runs;
/// minimised input (22 bytes, `fuzz/seeds/ops/reparent-under-limit`):
/// `0f0f2fbf300f9730bfebde0005eb00c3d9bf97979797`, that is: create c1
/// (Bump, default sizes) and c2 (Bump, small sizes) under the root c0, set
/// c0's limit to 0, move c2 under c1.
#[test]
fn reparent_inside_a_subtree_over_its_limit() {
    // SAFETY: every handle is used while its context lives; the root is
    // deleted once at the end, which deletes the rest.
    unsafe {
        let c0 =
            MemoryContext::create(None, "c0", ContextSpec::AllocSet(BlockSizes::DEFAULT)).unwrap();
        let c1 =
            MemoryContext::create(Some(c0), "c1", ContextSpec::Bump(BlockSizes::DEFAULT)).unwrap();
        let c2 =
            MemoryContext::create(Some(c0), "c2", ContextSpec::Bump(BlockSizes::SMALL)).unwrap();
        let held = c0.mem_allocated(true);
        c0.set_limit(Some(0));
        let r = c2.set_parent(Some(c1));
        let after = (c0.mem_allocated(true), c2.parent());
        c0.delete();
        assert_eq!(r, Ok(()), "a move inside the limited subtree was refused");
        assert_eq!(after, (held, Some(c1)));
    }
}
