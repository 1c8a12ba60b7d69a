//! mcxt's accounting after a full replay of the shipped trace: deleting
//! every root leaves nothing held but the recycled-context cache, and
//! releasing that leaves nothing at all, neither in mcxt's accounting nor
//! in glibc's heap.
//!
//! This file holds a single test: glibc's statistics are process-wide.

mod common;

use mcxt_cli::replay::libc_malloc::glibc_in_use_bytes;
use mcxt_cli::replay::mcxt::McxtBackend;
use mcxt_cli::replay::{Backend, Replay, ValidTrace};

/// Replays the whole trace with mcxt in a thread of its own (glibc's
/// per-thread cache, which `mallinfo2` counts as in use, is flushed when
/// the thread ends) and checks mcxt's accounting on the way.
fn replay_in_thread(trace: &ValidTrace) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let n = trace.ops.len();
            let mut r = Replay::<McxtBackend>::new(trace);
            mcxt::release_recycled();
            r.run_to(n / 2);
            assert!(r.backend().held_by_contexts() > 0);
            r.run_all();
            assert!(
                r.backend().held_by_contexts() > 0,
                "live contexts hold memory"
            );
            assert!(!r.backend().root_ids().is_empty());
            r.finish();
            assert!(r.backend().root_ids().is_empty());
            assert_eq!(r.backend().held_by_contexts(), 0);
            assert_eq!(r.backend().held_bytes(), mcxt::recycled_bytes() as u64);
            mcxt::release_recycled();
            assert_eq!(mcxt::recycled_bytes(), 0);
            assert_eq!(r.backend().held_bytes(), 0);
        });
    });
}

#[test]
fn mcxt_accounting_returns_to_zero_and_nothing_leaks() {
    let trace = common::shipped_trace();
    // The first run leaks, on purpose, each distinct context name once
    // (mcxt wants `&'static str` names).
    replay_in_thread(&trace);
    let before = glibc_in_use_bytes();
    replay_in_thread(&trace);
    let after = glibc_in_use_bytes();
    let diff = after as i64 - before as i64;
    assert!(
        diff < 512,
        "glibc in-use bytes before {before}, after {after}: {diff} bytes leaked"
    );
}
