//! The context tree through the raw API: reset, delete, reparenting,
//! callbacks, accounting and limits, deep chains.

use core::ffi::c_void;
use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocSetSizes, ErrorKind, ResetCallback};
use std::cell::RefCell;
use std::ptr::NonNull;

fn root(name: &'static str) -> MemoryContext {
    // SAFETY: no parent.
    unsafe { MemoryContext::new_alloc_set(None, name, AllocSetSizes::DEFAULT).unwrap() }
}

fn child(parent: MemoryContext, name: &'static str, sizes: AllocSetSizes) -> MemoryContext {
    // SAFETY: tests keep parents alive while creating children.
    unsafe { MemoryContext::new_alloc_set(Some(parent), name, sizes).unwrap() }
}

fn names(ctx: MemoryContext) -> Vec<&'static str> {
    // SAFETY: alive during the call.
    unsafe { ctx.children().map(|c| c.name()).collect() }
}

#[test]
fn children_are_listed_newest_first_and_reset_deletes_them() {
    let top = root("top");
    let a = child(top, "a", AllocSetSizes::SMALL);
    let _b = child(top, "b", AllocSetSizes::SMALL);
    let _a1 = child(a, "a1", AllocSetSizes::SMALL);
    assert_eq!(names(top), ["b", "a"]);
    // SAFETY: contexts alive until deleted; no use of deleted ones follows.
    unsafe {
        assert_eq!(a.parent(), Some(top));
        assert!(!top.is_empty());
        top.reset();
        assert!(names(top).is_empty());
        assert!(top.is_empty());
        assert_eq!(top.mem_allocated(true), top.mem_allocated(false));
        top.delete();
    }
}

#[test]
fn reset_only_keeps_children_and_reset_children_keeps_self() {
    let top = root("top");
    let c = child(top, "c", AllocSetSizes::SMALL);
    // SAFETY: contexts alive; chunks not used after their context's reset.
    unsafe {
        let p = top.alloc(100).unwrap();
        let q = c.alloc(100).unwrap();
        p.as_ptr().write_bytes(1, 100);
        q.as_ptr().write_bytes(2, 100);
        top.reset_only();
        assert_eq!(names(top), ["c"]);
        assert_eq!(*q.as_ptr().add(99), 2, "child chunk survives reset_only");
        let p = top.alloc(100).unwrap();
        p.as_ptr().write_bytes(3, 100);
        top.reset_children();
        assert!(c.is_empty());
        assert_eq!(*p.as_ptr().add(99), 3, "own chunk survives reset_children");
        top.delete_children();
        assert!(names(top).is_empty());
        top.delete();
    }
}

thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C" fn log_cb(arg: *mut c_void) {
    // SAFETY: `arg` is a &'static str box leaked by `register`.
    let s = unsafe { &*arg.cast::<&'static str>() };
    LOG.with(|l| l.borrow_mut().push(s.to_string()));
}

/// A callback record allocated in `ctx` itself, as PostgreSQL callers do,
/// whose argument is its label.
fn record(ctx: MemoryContext, label: &'static str) -> NonNull<ResetCallback> {
    type Rec = (ResetCallback, &'static str);
    // SAFETY: a fresh chunk of the record's size in a live context; it
    // lives until the context is reset or deleted, after the callback ran.
    unsafe {
        let p = ctx
            .alloc(std::mem::size_of::<Rec>())
            .unwrap()
            .cast::<Rec>()
            .as_ptr();
        let label_ptr = std::ptr::addr_of_mut!((*p).1);
        label_ptr.write(label);
        std::ptr::addr_of_mut!((*p).0).write(ResetCallback {
            func: log_cb,
            arg: label_ptr.cast(),
            next: std::ptr::null_mut(),
        });
        NonNull::new_unchecked(std::ptr::addr_of_mut!((*p).0))
    }
}

fn register(ctx: MemoryContext, label: &'static str) {
    // SAFETY: the record lives in the context it is registered on.
    unsafe { ctx.register_reset_callback(record(ctx, label)) };
}

fn take_log() -> Vec<String> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

#[test]
fn callbacks_run_newest_first_children_before_parent_and_once() {
    let top = root("top");
    let c = child(top, "c", AllocSetSizes::SMALL);
    let g = child(c, "g", AllocSetSizes::SMALL);
    register(top, "top1");
    register(top, "top2");
    register(c, "c1");
    register(g, "g1");
    // SAFETY: alive until deleted.
    unsafe {
        top.reset();
        assert_eq!(take_log(), ["g1", "c1", "top2", "top1"]);
        top.reset();
        assert!(take_log().is_empty(), "callbacks run once");
        // Registering makes an empty context non-empty: the reset runs it.
        register(top, "again");
        assert!(!top.is_empty());
        top.reset();
        assert_eq!(take_log(), ["again"]);
        register(top, "at delete");
        top.delete();
        assert_eq!(take_log(), ["at delete"]);
    }
}

#[test]
fn unregistered_callback_does_not_run() {
    let top = root("top");
    let cb = record(top, "never");
    register(top, "kept");
    // SAFETY: alive; the record outlives the context.
    unsafe {
        top.register_reset_callback(cb);
        assert!(top.unregister_reset_callback(cb));
        assert!(!top.unregister_reset_callback(cb));
        top.delete();
    }
    assert_eq!(take_log(), ["kept"]);
}

#[test]
fn set_parent_moves_subtrees_and_refuses_cycles() {
    let a = root("a");
    let b = root("b");
    let a1 = child(a, "a1", AllocSetSizes::SMALL);
    let a11 = child(a1, "a11", AllocSetSizes::SMALL);
    // SAFETY: all alive until the final deletes.
    unsafe {
        let moved = a1.mem_allocated(true);
        let (a_before, b_before) = (a.mem_allocated(true), b.mem_allocated(true));
        a1.set_parent(Some(b)).unwrap();
        assert_eq!(a.mem_allocated(true), a_before - moved);
        assert_eq!(b.mem_allocated(true), b_before + moved);
        assert_eq!(names(b), ["a1"]);
        // Cycles: onto itself, onto a descendant.
        for target in [a1, a11] {
            let err = a1.set_parent(Some(target)).unwrap_err();
            assert!(matches!(err.kind, ErrorKind::Cycle { .. }));
            assert_eq!(err.context, "a1");
        }
        assert_eq!(a1.parent(), Some(b), "a refused move changes nothing");
        assert_eq!(b.mem_allocated(true), b_before + moved);
        // Detach.
        a1.set_parent(None).unwrap();
        assert_eq!(a1.parent(), None);
        assert_eq!(b.mem_allocated(true), b_before);
        a1.delete();
        a.delete();
        b.delete();
    }
}

#[test]
fn subtree_accounting_is_exact() {
    let top = root("top");
    let c = child(top, "c", AllocSetSizes::SMALL);
    // SAFETY: alive; chunks freed before resets.
    unsafe {
        let base_top = top.mem_allocated(false);
        let base_c = c.mem_allocated(false);
        assert_eq!(top.mem_allocated(true), base_top + base_c);
        let big = c.alloc(100_000).unwrap();
        let grown = c.mem_allocated(false);
        assert!(grown >= base_c + 100_000);
        assert_eq!(top.mem_allocated(true), base_top + grown);
        assert_eq!(c.counters().total_bytes, grown);
        raw::free(big).unwrap();
        assert_eq!(c.mem_allocated(false), base_c, "dedicated block returned");
        for _ in 0..1000 {
            c.alloc(200).unwrap();
        }
        assert!(c.mem_allocated(false) > base_c);
        assert_eq!(
            top.mem_allocated(true),
            top.mem_allocated(false) + c.mem_allocated(false)
        );
        c.reset();
        // The header and the first block stay: 1 KiB together (SMALL).
        assert_eq!(
            c.mem_allocated(false),
            1024,
            "reset keeps only the first block"
        );
        top.delete();
    }
}

#[test]
fn limits_refuse_block_acquisition_and_change_nothing() {
    let top = root("top");
    let c = child(top, "worker", AllocSetSizes::SMALL);
    // SAFETY: alive.
    unsafe {
        top.set_limit(Some(top.mem_allocated(true) + 4096));
        assert_eq!(top.limit(), Some(top.mem_allocated(true) + 4096));
        let before = (top.mem_allocated(true), c.mem_allocated(false));
        let err = c.alloc(50_000).unwrap_err();
        match err.kind {
            ErrorKind::LimitExceeded {
                limit_context,
                held,
                ..
            } => {
                assert_eq!(limit_context, "top");
                assert_eq!(held, before.0);
            }
            k => panic!("unexpected {k:?}"),
        }
        assert_eq!(err.context, "worker");
        assert_eq!(err.size, 50_000);
        assert!(err.is_out_of_memory());
        let msg = err.to_string();
        assert!(
            msg.contains("worker") && msg.contains("top") && msg.contains("50000"),
            "{msg}"
        );
        assert_eq!((top.mem_allocated(true), c.mem_allocated(false)), before);
        // NO_OOM turns it into None.
        assert_eq!(
            c.alloc_extended(50_000, mcxt::AllocFlags::NO_OOM).unwrap(),
            None
        );
        // Small chunks still fit within the limit.
        for _ in 0..8 {
            c.alloc(64).unwrap();
        }
        // Child creation is charged too: a reserved first block of 64 KiB
        // does not fit.
        let reserving = AllocSetSizes {
            min_context_size: 64 * 1024,
            init_block_size: 8192,
            max_block_size: 1 << 20,
        };
        let e = MemoryContext::new_alloc_set(Some(c), "grandchild", reserving).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::LimitExceeded { .. }));
        // Moving a big context under a limited one is refused.
        let big = root("big");
        big.alloc(100_000).unwrap();
        let e = big.set_parent(Some(c)).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::LimitExceeded { .. }));
        assert_eq!(big.parent(), None);
        big.delete();
        top.set_limit(None);
        c.alloc(50_000).unwrap();
        top.delete();
    }
}

#[test]
fn limit_on_a_moved_context_between_siblings_counts_once() {
    let top = root("top");
    let a = child(top, "a", AllocSetSizes::SMALL);
    let b = child(top, "b", AllocSetSizes::SMALL);
    // SAFETY: alive.
    unsafe {
        top.set_limit(Some(top.mem_allocated(true)));
        // Exactly at the limit; moving a between siblings must still work.
        a.set_parent(Some(b)).unwrap();
        assert_eq!(a.parent(), Some(b));
        top.delete();
    }
}

#[test]
fn deleting_the_current_context_clears_it() {
    let top = root("top");
    let c = child(top, "c", AllocSetSizes::SMALL);
    // SAFETY: c is current only until deleted, which clears it.
    unsafe {
        let prev = mcxt::switch_to(Some(c));
        assert_eq!(mcxt::current(), Some(c));
        top.reset();
        assert_eq!(mcxt::current(), None);
        assert_eq!(
            mcxt::palloc(8).unwrap_err().kind,
            ErrorKind::NoCurrentContext
        );
        mcxt::switch_to(prev);
        top.delete();
    }
}

/// Builds a chain `n` deep bottom-up: each context is attached under a
/// root, so building is O(n).
fn chain(n: usize) -> (MemoryContext, MemoryContext) {
    let sizes = AllocSetSizes {
        min_context_size: 1024,
        init_block_size: 1024,
        max_block_size: 8192,
    };
    // SAFETY: every context is alive until the test deletes the chain.
    unsafe {
        let deepest = MemoryContext::new_alloc_set(None, "link", sizes).unwrap();
        let mut top = deepest;
        for _ in 1..n {
            let up = MemoryContext::new_alloc_set(None, "link", sizes).unwrap();
            top.set_parent(Some(up)).unwrap();
            top = up;
        }
        (top, deepest)
    }
}

#[test]
#[cfg_attr(miri, ignore = "a million contexts is too slow under Miri")]
fn a_million_deep_chain_resets_deletes_and_prints_without_recursion() {
    const N: usize = 1_000_000;
    let (top, deepest) = chain(N);
    // SAFETY: the chain is alive until reset/delete below.
    unsafe {
        let per = top.mem_allocated(false);
        assert_eq!(top.mem_allocated(true), per * N);
        // Allocating at the bottom charges every ancestor.
        deepest.alloc(20_000).unwrap();
        assert!(top.mem_allocated(true) > per * N);
        // Printing: 100 levels, then one summary line for the rest.
        let mut text = String::new();
        top.write_stats(&mut text, 100, 100).unwrap();
        assert_eq!(text.lines().count(), 102);
        assert!(text.contains(&format!("{} more child contexts", N - 100)));
        let grand = text.lines().last().unwrap();
        assert!(
            grand.starts_with(&format!("Grand total: {} bytes", top.mem_allocated(true))),
            "{grand}"
        );
        // The structured snapshot walks all of it.
        let snap = top.stats();
        assert_eq!(snap.contexts.len(), N);
        assert_eq!(snap.contexts[N - 1].depth, N - 1);
        assert_eq!(snap.total().total_bytes, top.mem_allocated(true));
        // Reset deletes the 999,999 descendants.
        top.reset();
        assert_eq!(top.mem_allocated(true), top.mem_allocated(false));
        top.delete();
    }
    let (top, _) = chain(N);
    // SAFETY: alive.
    unsafe { top.delete() };
}

#[test]
fn delete_of_a_middle_context_updates_ancestors() {
    let (top, _) = chain(50);
    // SAFETY: alive; the middle context is deleted once.
    unsafe {
        let mut mid = top;
        for _ in 0..20 {
            mid = mid.children().next().unwrap();
        }
        let mid_parent = mid.parent().unwrap();
        mid.delete();
        assert!(names(mid_parent).is_empty());
        assert_eq!(top.mem_allocated(true), 20 * top.mem_allocated(false));
        top.delete();
    }
}
