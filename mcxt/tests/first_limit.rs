//! The first byte limit of a process. Until a limit is set, charges skip
//! the limit checks; the first limit must apply at once, to trees built
//! before it, and keep the totals exact. Alone in its test binary: the
//! switch is process-wide and never turns back.

use mcxt::{AllocSetSizes, BlockSizes, Context, ContextSpec, ErrorKind};

#[test]
fn the_first_limit_applies_at_once_to_existing_trees() {
    let top = Context::new("top");
    let mid = top.new_child("mid");
    let leaf = mid
        .try_new_child_with("leaf", ContextSpec::Generation(BlockSizes::DEFAULT))
        .unwrap();
    let small = mid.try_new_child("small", AllocSetSizes::SMALL).unwrap();
    // Blocks and dedicated chunks, charged without checks.
    for size in [100, 5000, 20_000, 100_000] {
        leaf.try_alloc_bytes(size).unwrap();
        small.try_alloc_bytes(size).unwrap();
    }
    let sum = |c: &[&Context<'_>]| c.iter().map(|c| c.mem_allocated(false)).sum::<usize>();
    let total = top.mem_allocated(true);
    assert_eq!(total, sum(&[&top, &mid, &leaf, &small]));
    assert_eq!(mid.mem_allocated(true), sum(&[&mid, &leaf, &small]));
    assert!(check_ok(&top));

    // The first limit, on an ancestor of contexts that already hold memory.
    top.set_limit(Some(total + 4096));
    let err = leaf.try_alloc_bytes(100_000).unwrap_err();
    assert!(
        matches!(
            err.kind,
            ErrorKind::LimitExceeded {
                limit_context: "top",
                ..
            }
        ),
        "{err}"
    );
    let err = small.try_alloc_bytes(100_000).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LimitExceeded { .. }), "{err}");
    assert_eq!(
        top.mem_allocated(true),
        total,
        "a refused charge changes nothing"
    );
    assert_eq!(mid.mem_allocated(true), sum(&[&mid, &leaf, &small]));
    // Below the limit, charges still go through.
    small.try_alloc_bytes(1000).unwrap();
    assert_eq!(top.mem_allocated(true), sum(&[&top, &mid, &leaf, &small]));
    assert!(top.mem_allocated(true) <= total + 4096);
    top.set_limit(None);
    leaf.try_alloc_bytes(100_000).unwrap();
    assert_eq!(top.mem_allocated(true), sum(&[&top, &mid, &leaf, &small]));
    assert!(check_ok(&top));
}

fn check_ok(c: &Context<'_>) -> bool {
    // SAFETY: the context is alive and the tree is not changed meanwhile.
    unsafe { c.as_raw().check().is_ok() }
}
