//! mcxt's accounting after a full replay of the shipped trace: deleting
//! every root leaves nothing held but the recycled-context cache, and
//! releasing that leaves nothing at all, neither in mcxt's accounting nor
//! in glibc's heap.
//!
//! The exact check counts mcxt's blocks through a block source; glibc's
//! figure is a coarse second check. This file holds a single test:
//! glibc's statistics are process-wide.

mod common;

use mcxt::system::{set_block_source, BlockSource, SystemSource};
use mcxt_cli::replay::libc_malloc::glibc_in_use_bytes;
use mcxt_cli::replay::mcxt::McxtBackend;
use mcxt_cli::replay::{Backend, Replay, ValidTrace};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

/// Counts the bytes mcxt holds from the system, exactly: every block and
/// context header goes through the block source.
struct Counting(AtomicIsize);

// SAFETY: forwards to the system source.
unsafe impl BlockSource for Counting {
    fn alloc(&self, size: usize) -> *mut u8 {
        let p = SystemSource.alloc(size);
        if !p.is_null() {
            self.0.fetch_add(size as isize, Relaxed);
        }
        p
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize) {
        self.0.fetch_sub(size as isize, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { SystemSource.free(ptr, size) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { SystemSource.realloc(ptr, old, new) };
        if !p.is_null() {
            self.0.fetch_add(new as isize - old as isize, Relaxed);
        }
        p
    }
}

static HELD: Counting = Counting(AtomicIsize::new(0));

/// Replays the whole trace with mcxt in a thread of its own (glibc's
/// per-thread cache, which `mallinfo2` counts as in use, is flushed when
/// the thread ends) and checks mcxt's accounting on the way.
fn replay_in_thread(trace: &ValidTrace) {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: no context exists yet on this new thread.
            unsafe { set_block_source(Some(&HELD)) };
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
            assert_eq!(r.backend().held_bytes(), mcxt::cached_bytes() as u64);
            assert_eq!(
                HELD.0.load(Relaxed) as u64,
                r.backend().held_bytes(),
                "the caches hold what the source has out"
            );
            mcxt::release_recycled();
            assert_eq!(mcxt::cached_bytes(), 0);
            assert_eq!(r.backend().held_bytes(), 0);
            assert_eq!(
                HELD.0.load(Relaxed),
                0,
                "every block went back to the system"
            );
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
    // mcxt's own blocks are counted exactly above. glibc's process-wide
    // figure also moves with its per-thread arenas (up to ~18 KB between
    // two identical runs on separate threads), so it only bounds gross
    // leaks: a leak of the replay's tables or of contexts is far larger.
    assert!(
        diff < 64 * 1024,
        "glibc in-use bytes before {before}, after {after}: {diff} bytes leaked"
    );
}
