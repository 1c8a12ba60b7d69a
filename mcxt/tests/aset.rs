//! AllocSet through the raw API: every allocation flag and path.

use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocFlags, AllocSetSizes, ErrorKind, MAX_ALLOC_SIZE};
use std::ptr::NonNull;

fn root(sizes: AllocSetSizes) -> MemoryContext {
    // SAFETY: no parent.
    unsafe { MemoryContext::new_alloc_set(None, "test", sizes).unwrap() }
}

fn fill(p: NonNull<u8>, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: callers pass live chunks of at least n bytes.
        unsafe { *p.as_ptr().add(i) = seed.wrapping_add(i as u8) };
    }
}

fn check(p: NonNull<u8>, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: callers pass live chunks of at least n bytes.
        assert_eq!(
            unsafe { *p.as_ptr().add(i) },
            seed.wrapping_add(i as u8),
            "byte {i}"
        );
    }
}

#[test]
fn chunks_are_aligned_distinct_and_keep_contents() {
    let ctx = root(AllocSetSizes::DEFAULT);
    let sizes = [
        0usize, 1, 7, 8, 9, 16, 17, 100, 1000, 4096, 8191, 8192, 8193, 20_000,
    ];
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        let chunks: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let p = ctx.alloc(s).unwrap();
                assert_eq!(p.as_ptr() as usize % 8, 0);
                fill(p, s, i as u8);
                assert!(raw::chunk_space(p).unwrap() >= s + 8);
                assert_eq!(raw::chunk_context(p).unwrap(), ctx);
                p
            })
            .collect();
        for (i, (&p, &s)) in chunks.iter().zip(&sizes).enumerate() {
            check(p, s, i as u8);
            raw::free(p).unwrap();
        }
        ctx.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "exact layout: checking adds a check word and a sentinel byte per chunk"
)]
fn freed_chunks_are_reused_lifo_within_their_class() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        let a = ctx.alloc(40).unwrap();
        let b = ctx.alloc(40).unwrap();
        raw::free(a).unwrap();
        raw::free(b).unwrap();
        assert_eq!(ctx.alloc(33).unwrap(), b, "same class, newest first");
        assert_eq!(ctx.alloc(40).unwrap(), a);
        let c = ctx.alloc(40).unwrap();
        assert!(c != a && c != b);
        ctx.delete();
    }
}

#[test]
fn zero_flags_and_alloc_zero_zero_the_memory() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive.
    unsafe {
        // Dirty a chunk, free it, and get it back zeroed.
        let p = ctx.alloc(64).unwrap();
        fill(p, 64, 0xAA);
        raw::free(p).unwrap();
        let z = ctx.alloc_zero(64).unwrap();
        assert_eq!(z, p);
        assert!((0..64).all(|i| *z.as_ptr().add(i) == 0));
        fill(z, 64, 1);
        raw::free(z).unwrap();
        let z = ctx.alloc_extended(64, AllocFlags::ZERO).unwrap().unwrap();
        assert!((0..64).all(|i| *z.as_ptr().add(i) == 0));
        let big = ctx
            .alloc_extended(50_000, AllocFlags::ZERO)
            .unwrap()
            .unwrap();
        assert!((0..50_000).all(|i| *big.as_ptr().add(i) == 0));
        ctx.delete();
    }
}

#[test]
fn oversize_requests_are_refused_unless_huge() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: alive.
    unsafe {
        let before = ctx.mem_allocated(false);
        let err = ctx.alloc(MAX_ALLOC_SIZE + 1).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidSize);
        assert_eq!(err.size, MAX_ALLOC_SIZE + 1);
        assert_eq!(err.context, "test");
        assert!(err
            .to_string()
            .contains("invalid memory alloc request size 1073741824"));
        // NO_OOM does not hide an invalid size.
        assert!(ctx
            .alloc_extended(MAX_ALLOC_SIZE + 1, AllocFlags::NO_OOM)
            .is_err());
        assert!(ctx.alloc_extended(usize::MAX, AllocFlags::HUGE).is_err());
        assert_eq!(ctx.mem_allocated(false), before);
        // realloc checks the new size too, and leaves the chunk alone.
        let p = ctx.alloc(16).unwrap();
        fill(p, 16, 3);
        assert_eq!(
            raw::realloc(p, MAX_ALLOC_SIZE + 1).unwrap_err().kind,
            ErrorKind::InvalidSize
        );
        check(p, 16, 3);
        ctx.delete();
    }
}

#[test]
#[cfg_attr(miri, ignore = "allocates over 1 GiB")]
fn huge_flag_allows_more_than_a_gibibyte() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: alive; the chunk is freed once.
    unsafe {
        let n = MAX_ALLOC_SIZE + 4096;
        let p = ctx.alloc_extended(n, AllocFlags::HUGE).unwrap().unwrap();
        *p.as_ptr() = 1;
        *p.as_ptr().add(n - 1) = 2;
        assert!(ctx.mem_allocated(false) > n);
        let p = raw::realloc_extended(p, n + 4096, AllocFlags::HUGE)
            .unwrap()
            .unwrap();
        assert_eq!(*p.as_ptr().add(n - 1), 2);
        raw::free(p).unwrap();
        ctx.delete();
    }
}

#[test]
#[cfg_attr(miri, ignore = "asks the system for an impossible amount")]
fn no_oom_returns_none_when_the_system_refuses() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: alive.
    unsafe {
        let before = ctx.mem_allocated(false);
        let huge = mcxt::MAX_ALLOC_HUGE_SIZE;
        assert_eq!(
            ctx.alloc_extended(huge, AllocFlags::HUGE | AllocFlags::NO_OOM)
                .unwrap(),
            None
        );
        let err = ctx.alloc_extended(huge, AllocFlags::HUGE).unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutOfMemory);
        assert!(err.to_string().contains("out of memory"));
        assert_eq!(ctx.mem_allocated(false), before, "nothing charged");
        ctx.delete();
    }
}

#[test]
fn alloc_zero_bytes_gives_a_freeable_chunk() {
    let ctx = root(AllocSetSizes::SMALL);
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        let a = ctx.alloc(0).unwrap();
        let b = ctx.alloc(0).unwrap();
        assert_ne!(a, b);
        let a = raw::realloc(a, 100).unwrap();
        fill(a, 100, 9);
        let a = raw::realloc(a, 0).unwrap();
        raw::free(a).unwrap();
        raw::free(b).unwrap();
        ctx.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "exact layout: checking adds a check word and a sentinel byte per chunk"
)]
fn realloc_in_place_within_class_and_moves_beyond() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive.
    unsafe {
        let p = ctx.alloc(100).unwrap();
        let cap = raw::chunk_capacity(p).unwrap();
        assert!(cap >= 100);
        fill(p, 100, 5);
        assert_eq!(raw::realloc(p, cap).unwrap(), p, "same class: in place");
        assert_eq!(raw::realloc(p, 10).unwrap(), p, "shrink: in place");
        let q = raw::realloc(p, cap + 1).unwrap();
        assert_ne!(q, p);
        check(q, 100, 5);
        // Growing into a dedicated block and back keeps contents.
        let r = raw::realloc(q, 100_000).unwrap();
        check(r, 100, 5);
        fill(r, 100_000, 6);
        let s = raw::realloc(r, 300_000).unwrap();
        check(s, 100_000, 6);
        let t = raw::realloc(s, 50).unwrap();
        check(t, 50, 6);
        // (With the sanitizer hooks a chunk that has room is resized in
        // place, so that every chunk comes and goes through the hooked
        // paths: the dedicated block keeps its size there.)
        if !cfg!(any(feature = "valgrind", feature = "asan")) {
            assert!(
                raw::chunk_space(t).unwrap() < 300_000,
                "a shrunk dedicated block gives memory back"
            );
        }
        raw::free(t).unwrap();
        ctx.delete();
    }
}

#[test]
fn dedicated_blocks_go_back_at_once_and_small_ones_at_reset() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive.
    unsafe {
        raw::free(ctx.alloc(8).unwrap()).unwrap(); // the first block
        let base = ctx.mem_allocated(false);
        let big: Vec<_> = (0..5)
            .map(|i| ctx.alloc(10_000 * (i + 1)).unwrap())
            .collect();
        assert_eq!(ctx.counters().blocks, 6);
        for (i, p) in big.into_iter().enumerate().rev() {
            assert!(raw::chunk_space(p).unwrap() >= 10_000 * (i + 1));
            raw::free(p).unwrap();
        }
        assert_eq!(ctx.mem_allocated(false), base);
        let small: Vec<_> = (0..2000).map(|_| ctx.alloc(100).unwrap()).collect();
        let grown = ctx.mem_allocated(false);
        assert!(grown > base);
        for p in small {
            raw::free(p).unwrap();
        }
        assert_eq!(
            ctx.mem_allocated(false),
            grown,
            "small chunks stay in the context"
        );
        let c = ctx.counters();
        assert!(c.free_chunks >= 2000);
        ctx.reset();
        assert_eq!(ctx.mem_allocated(false), base);
        assert_eq!(ctx.counters().blocks, 1);
        ctx.delete();
    }
}

#[test]
fn reset_frees_a_dedicated_block_taken_before_the_first_block() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive.
    unsafe {
        let header = ctx.mem_allocated(false);
        // The dedicated block comes first, so the keeper is linked in
        // front of it: the keeper is the list head but not alone.
        let _big = ctx.alloc(20_000).unwrap();
        let _small = ctx.alloc(8).unwrap();
        assert_eq!(ctx.counters().blocks, 2);
        let with_big = ctx.mem_allocated(false);
        ctx.reset();
        assert_eq!(ctx.counters().blocks, 1);
        assert!(ctx.mem_allocated(false) < with_big - 20_000);
        assert!(ctx.mem_allocated(false) > header);
        ctx.delete();
    }
}

#[test]
fn reset_empties_every_free_list() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        for round in 0..3 {
            // Chunks of many classes freed, so many lists are non-empty;
            // after the reset none may hand out a chunk again: the next
            // allocations come from the start of the keeper, in order.
            let sizes = [1usize, 16, 24, 100, 200, 1000, 3000, 8000];
            let chunks: Vec<_> = sizes.iter().map(|&s| ctx.alloc(s).unwrap()).collect();
            for &p in &chunks {
                raw::free(p).unwrap();
            }
            assert!(ctx.counters().free_chunks >= sizes.len(), "round {round}");
            ctx.reset();
            let c = ctx.counters();
            assert_eq!(c.free_chunks, 0, "round {round}");
            let a = ctx.alloc(8).unwrap();
            let b = ctx.alloc(8).unwrap();
            assert_eq!(
                b.as_ptr() as usize - a.as_ptr() as usize,
                raw::chunk_space(a).unwrap()
            );
            ctx.reset();
        }
        ctx.delete();
    }
}

#[test]
fn blocks_double_up_to_the_maximum() {
    let sizes = AllocSetSizes {
        min_context_size: 0,
        init_block_size: 1024,
        max_block_size: 16 * 1024,
    };
    let ctx = root(sizes);
    // SAFETY: alive.
    unsafe {
        let mut totals = vec![ctx.mem_allocated(false)];
        for _ in 0..3000 {
            ctx.alloc(64).unwrap();
            let t = ctx.mem_allocated(false);
            if t != *totals.last().unwrap() {
                totals.push(t);
            }
        }
        // Each new block is PostgreSQL's doubling step, capped at an eighth
        // of what the context holds (never below the initial size), and
        // never above the maximum.
        // First the header alone, then the first block: header and first
        // block together take init_block_size.
        assert_eq!(totals[1], 1024, "{totals:?}");
        let mut doubling = 1024;
        for w in totals[1..].windows(2) {
            let (held, step) = (w[0], w[1] - w[0]);
            let cap = (held / 8).max(1024).div_ceil(1024) * 1024;
            assert_eq!(step, doubling.min(cap), "held {held}: {totals:?}");
            doubling = (doubling * 2).min(16 * 1024);
        }
        assert_eq!(
            totals.windows(2).last().map(|w| w[1] - w[0]),
            Some(16 * 1024)
        );
        ctx.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "exact layout: checking adds a check word and a sentinel byte per chunk"
)]
fn chunk_limit_follows_the_maximum_block_size() {
    // SMALL (max 8 KiB): requests above 1 KiB get dedicated blocks.
    let ctx = root(AllocSetSizes::SMALL);
    // SAFETY: alive.
    unsafe {
        let base = ctx.mem_allocated(false);
        let q = ctx.alloc(1025).unwrap();
        assert_eq!(
            ctx.mem_allocated(false),
            base + 32 + 8 + 1032,
            "a dedicated block"
        );
        raw::free(q).unwrap();
        assert_eq!(ctx.mem_allocated(false), base);
        let p = ctx.alloc(1024).unwrap();
        let grown = ctx.mem_allocated(false);
        raw::free(p).unwrap();
        assert_eq!(ctx.mem_allocated(false), grown, "a small chunk stays");
        ctx.delete();
    }
    // DEFAULT: 8192 stays small, 8193 does not (ALLOCSET_SEPARATE_THRESHOLD).
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: alive.
    unsafe {
        ctx.alloc(8192).unwrap();
        let blocks = ctx.counters().blocks;
        ctx.alloc(8193).unwrap();
        assert_eq!(ctx.counters().blocks, blocks + 1);
        ctx.delete();
    }
}

#[test]
fn invalid_parameters_are_refused() {
    for (min, init, max) in [
        (0, 1000, 8192),
        (0, 1024, 512),
        (0, 1024, 1 << 31),
        (512, 1024, 8192),
        (0, 1028, 8195),
    ] {
        let sizes = AllocSetSizes {
            min_context_size: min,
            init_block_size: init,
            max_block_size: max,
        };
        // SAFETY: no parent.
        let err = unsafe { MemoryContext::new_alloc_set(None, "bad", sizes) }.unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::InvalidParameters(_)),
            "{sizes:?}"
        );
        assert!(err.to_string().contains("\"bad\""));
    }
}

#[test]
fn min_context_size_sets_the_first_block() {
    let sizes = AllocSetSizes {
        min_context_size: 64 * 1024,
        init_block_size: 8192,
        max_block_size: 1024 * 1024,
    };
    let ctx = root(sizes);
    // SAFETY: alive.
    unsafe {
        assert_eq!(ctx.mem_allocated(false), 64 * 1024);
        for _ in 0..500 {
            ctx.alloc(100).unwrap();
        }
        assert_eq!(
            ctx.mem_allocated(false),
            64 * 1024,
            "fits in the first block"
        );
        ctx.reset();
        assert_eq!(ctx.mem_allocated(false), 64 * 1024);
        ctx.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "checking does not recycle contexts (stale handles must not find a live one)"
)]
fn deleted_standard_contexts_are_recycled() {
    mcxt::release_recycled();
    let top = root(AllocSetSizes::DEFAULT);
    // SAFETY: contexts alive until deleted; recycled ones are reinitialised.
    unsafe {
        let c = MemoryContext::new_alloc_set(Some(top), "first", AllocSetSizes::SMALL).unwrap();
        c.set_ident(Some("old ident"));
        c.alloc(100).unwrap();
        c.set_limit(Some(1 << 20));
        let held = c.mem_allocated(false);
        c.delete();
        assert_eq!(
            mcxt::recycled_bytes(),
            held,
            "header and first block are kept"
        );
        let d =
            MemoryContext::new_alloc_set(Some(top), "second", AllocSetSizes::START_SMALL).unwrap();
        assert_eq!(d, c, "the recycled context is reused");
        assert_eq!(mcxt::recycled_bytes(), 0);
        assert_eq!(d.name(), "second");
        assert_eq!(d.ident(), None);
        assert_eq!(d.limit(), None);
        assert!(d.is_empty());
        // START_SMALL may grow to 8 MiB blocks: its chunk limit is 8 KiB.
        let blocks = d.counters().blocks;
        d.alloc(8000).unwrap();
        assert!(d.counters().blocks <= blocks + 1);
        assert_eq!(
            top.mem_allocated(true),
            top.mem_allocated(false) + d.mem_allocated(false)
        );
        // Non-standard sizes are not recycled.
        let odd = AllocSetSizes {
            min_context_size: 0,
            init_block_size: 2048,
            max_block_size: 8192,
        };
        MemoryContext::new_alloc_set(Some(top), "odd", odd)
            .unwrap()
            .delete();
        assert_eq!(mcxt::recycled_bytes(), 0);
        d.reset(); // a deleted context is reset before it is kept: only its first block stays
        let (top_held, d_held) = (top.mem_allocated(false), d.mem_allocated(false));
        top.delete();
        assert_eq!(mcxt::recycled_bytes(), top_held + d_held);
    }
    mcxt::release_recycled();
    assert_eq!(mcxt::recycled_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "checking does not recycle contexts (stale handles must not find a live one)"
)]
fn recycled_contexts_that_kept_their_first_block_are_reused_first() {
    mcxt::release_recycled();
    // SAFETY: contexts used while alive, deleted once.
    unsafe {
        let header_only = {
            let c = root(AllocSetSizes::DEFAULT);
            let h = c.mem_allocated(false);
            c.delete();
            mcxt::release_recycled();
            h
        };
        // A small context takes part of the budget, so that it is not a
        // multiple of a default context's size ...
        let small = root(AllocSetSizes::SMALL);
        small.alloc(100).unwrap();
        small.delete();
        // ... and more used contexts than the budget keeps with their
        // first block: the last ones deleted keep only their header.
        let all: Vec<_> = (0..20)
            .map(|_| {
                let c = root(AllocSetSizes::DEFAULT);
                c.alloc(100).unwrap();
                c
            })
            .collect();
        for c in all {
            c.delete();
        }
        assert!(mcxt::recycled_bytes() <= mcxt::MAX_RECYCLED_BYTES);
        // Reusing a context that still has its block costs no block
        // allocation, and the cache's bytes go with it.
        let before = mcxt::recycled_bytes();
        let c = root(AllocSetSizes::DEFAULT);
        let held = c.mem_allocated(false);
        assert!(held > header_only, "a context with its first block");
        assert_eq!(mcxt::recycled_bytes(), before - held);
        c.delete();
        assert_eq!(mcxt::recycled_bytes(), before);
    }
    mcxt::release_recycled();
}

/// Everything a caller can see of a context, to compare a recycled one
/// with a fresh one.
#[derive(Debug, PartialEq)]
struct Observed {
    name: &'static str,
    ident: Option<String>,
    limit: Option<usize>,
    parent: Option<MemoryContext>,
    children: usize,
    is_empty: bool,
    own: usize,
    subtree: usize,
    counters: mcxt::Counters,
    check: mcxt::CheckSummary,
}

/// # Safety
/// `c` alive.
unsafe fn observe(c: MemoryContext) -> Observed {
    // SAFETY: caller contract.
    unsafe {
        Observed {
            name: c.name(),
            ident: c.ident().map(str::to_owned),
            limit: c.limit(),
            parent: c.parent(),
            children: c.children().count(),
            is_empty: c.is_empty(),
            own: c.mem_allocated(false),
            subtree: c.mem_allocated(true),
            counters: c.counters(),
            check: c.check(),
        }
    }
}

/// A workload touching every size-dependent part of a set: most classes,
/// frees (free lists), growth past the first block, dedicated blocks.
/// Returns what is seen after each step.
///
/// # Safety
/// `c` alive; its chunks are freed or reset by the caller.
unsafe fn workload(c: MemoryContext) -> Vec<Observed> {
    let mut seen = Vec::new();
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        let mut live = Vec::new();
        for (i, size) in (1..2000)
            .step_by(37)
            .chain([5000, 8000, 9000, 70_000])
            .enumerate()
        {
            let p = c.alloc(size).unwrap();
            fill(p, size, i as u8);
            live.push(p);
            if i % 3 == 2 {
                raw::free(live.swap_remove(i % live.len())).unwrap();
            }
            seen.push(observe(c));
        }
        for p in live.drain(..).step_by(2) {
            raw::free(p).unwrap();
        }
        seen.push(observe(c));
    }
    seen
}

/// The reference a recycled context is compared with: a fresh child of
/// `top` that took and reset its first block (what a recycled one holds),
/// its observed state, and what the workload sees on it.
///
/// # Safety
/// `top` alive.
unsafe fn reference(
    top: MemoryContext,
    name: &'static str,
    sizes: AllocSetSizes,
) -> (MemoryContext, Observed, Vec<Observed>) {
    // SAFETY: caller contract; the chunk dies at the reset.
    unsafe {
        let fresh = MemoryContext::new_alloc_set(Some(top), name, sizes).unwrap();
        fresh.alloc(100).unwrap();
        fresh.reset();
        let at_start = observe(fresh);
        (fresh, at_start, workload(fresh))
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "checking does not recycle contexts (stale handles must not find a live one)"
)]
fn recycled_contexts_come_back_as_fresh_ones() {
    mcxt::release_recycled();
    // SAFETY: contexts used while alive, deleted once; callbacks' records
    // outlive their contexts.
    unsafe {
        let top = root(AllocSetSizes::DEFAULT);
        // The reference: a fresh context that took and reset its first
        // block, which is what a recycled one holds.
        let (fresh, at_start, fresh_run) = reference(top, "ctx", AllocSetSizes::DEFAULT);

        // A context given every kind of state before it is deleted.
        let used = MemoryContext::new_alloc_set(Some(top), "used", AllocSetSizes::DEFAULT).unwrap();
        workload(used);
        for size in [8, 24, 100, 1000, 3000] {
            raw::free(used.alloc(size).unwrap()).unwrap();
        }
        used.set_ident(Some("ident"));
        used.set_limit(Some(1 << 30));
        used.allow_in_critical_section(true);
        unsafe extern "C" fn nothing(_: *mut std::ffi::c_void) {}
        let mut cb = mcxt::ResetCallback {
            func: nothing,
            arg: std::ptr::null_mut(),
            next: std::ptr::null_mut(),
        };
        used.register_reset_callback(NonNull::from(&mut cb));
        let child =
            MemoryContext::new_alloc_set(Some(used), "child", AllocSetSizes::DEFAULT).unwrap();
        child.alloc(5000).unwrap();
        used.delete();

        let again = MemoryContext::new_alloc_set(Some(top), "ctx", AllocSetSizes::DEFAULT).unwrap();
        assert_eq!(again, used, "the deleted context is recycled");
        assert_eq!(observe(again), at_start);
        {
            let _section = mcxt::CriticalSection::enter();
            let err = again.alloc(16).unwrap_err();
            assert_eq!(
                err.kind,
                ErrorKind::CriticalSection,
                "permission not inherited"
            );
        }
        assert_eq!(workload(again), fresh_run);
        assert_eq!(
            top.mem_allocated(true),
            top.mem_allocated(false) + fresh.mem_allocated(false) + again.mem_allocated(false)
        );
        assert!(top.check().is_ok());

        // The same slot serves SMALL and START_SMALL: a recycled SMALL
        // context created as START_SMALL takes its maximum (and so its
        // chunk limit) from the new sizes.
        let (_, at_start, fresh_run) = reference(top, "s", AllocSetSizes::START_SMALL);
        let small = MemoryContext::new_alloc_set(Some(top), "s", AllocSetSizes::SMALL).unwrap();
        workload(small);
        small.delete();
        let again =
            MemoryContext::new_alloc_set(Some(top), "s", AllocSetSizes::START_SMALL).unwrap();
        assert_eq!(again, small, "the deleted context is recycled");
        assert_eq!(observe(again), at_start);
        assert_eq!(workload(again), fresh_run);

        // A root has no parent to take the permission from.
        let r = root(AllocSetSizes::DEFAULT);
        r.alloc(100).unwrap();
        r.allow_in_critical_section(true);
        r.set_limit(Some(1 << 20));
        r.delete();
        let r2 = root(AllocSetSizes::DEFAULT);
        assert_eq!(r2, r);
        assert_eq!((r2.parent(), r2.limit()), (None, None));
        {
            let _section = mcxt::CriticalSection::enter();
            let err = r2.alloc(16).unwrap_err();
            assert_eq!(err.kind, ErrorKind::CriticalSection, "permission not kept");
        }
        r2.delete();
        top.delete();
    }
    mcxt::release_recycled();
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "checking does not recycle contexts (stale handles must not find a live one)"
)]
fn a_refused_create_leaves_the_recycled_context_cached() {
    mcxt::release_recycled();
    // SAFETY: contexts used while alive, deleted once.
    unsafe {
        let top = root(AllocSetSizes::DEFAULT);
        let c = MemoryContext::new_alloc_set(Some(top), "c", AllocSetSizes::DEFAULT).unwrap();
        c.alloc(100).unwrap();
        c.delete();
        let cached = mcxt::recycled_bytes();
        let top_total = top.mem_allocated(true);
        assert!(cached > 0);

        // Recyclable first sizes, but a maximum no context may have.
        let bad = AllocSetSizes {
            max_block_size: 4096,
            ..AllocSetSizes::DEFAULT
        };
        let err = MemoryContext::new_alloc_set(Some(top), "bad", bad).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::InvalidParameters(_)), "{err}");
        let err = MemoryContext::new_alloc_set(None, "bad", bad).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::InvalidParameters(_)), "{err}");

        top.set_limit(Some(top_total));
        let err =
            MemoryContext::new_alloc_set(Some(top), "over", AllocSetSizes::DEFAULT).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::LimitExceeded { .. }), "{err}");
        top.set_limit(None);

        {
            let _section = mcxt::CriticalSection::enter();
            let err = MemoryContext::new_alloc_set(Some(top), "crit", AllocSetSizes::DEFAULT)
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::CriticalSection);
        }

        assert_eq!(
            mcxt::recycled_bytes(),
            cached,
            "the cached context is still there"
        );
        assert_eq!(top.mem_allocated(true), top_total, "nothing charged");
        assert!(top.check().is_ok());
        let d = MemoryContext::new_alloc_set(Some(top), "d", AllocSetSizes::DEFAULT).unwrap();
        assert_eq!(d, c);
        assert_eq!(mcxt::recycled_bytes(), 0);
        top.delete();
    }
    mcxt::release_recycled();
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "checking does not recycle contexts (stale handles must not find a live one)"
)]
fn recycling_is_capped() {
    mcxt::release_recycled();
    let mut each = 0;
    // SAFETY: contexts deleted once.
    unsafe {
        let all: Vec<_> = (0..mcxt::MAX_RECYCLED + 10)
            .map(|_| MemoryContext::new_alloc_set(None, "r", AllocSetSizes::SMALL).unwrap())
            .collect();
        for c in all {
            each = c.mem_allocated(false);
            c.delete();
        }
    }
    assert_eq!(mcxt::recycled_bytes(), mcxt::MAX_RECYCLED * each);
    mcxt::release_recycled();
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "checking reports foreign pointers to the handler (tests/checking.rs)"
)]
fn foreign_pointers_are_refused_by_their_header() {
    // A malloc'd pointer and zeroed memory do not decode as chunks.
    let mut words = vec![0u64; 4];
    let p = NonNull::new(words.as_mut_ptr().wrapping_add(1).cast::<u8>()).unwrap();
    // SAFETY: the 8 bytes before `p` are readable (words[0]).
    unsafe {
        assert!(matches!(
            raw::free(p).unwrap_err().kind,
            ErrorKind::BadPointer { header: 0 }
        ));
        assert!(raw::chunk_context(p).is_err());
        assert!(raw::chunk_space(p).is_err());
        assert!(raw::realloc(p, 10).is_err());
    }
    let b = Box::new([0u8; 64]);
    let p = NonNull::new(Box::into_raw(b).cast::<u8>()).unwrap();
    // SAFETY: glibc keeps its chunk header in the 8 bytes before `p`.
    // (Miri, Valgrind and ASan see that read as out of bounds, which it
    // is for Rust: it is skipped under them.)
    unsafe {
        if cfg!(not(any(miri, feature = "valgrind", feature = "asan"))) {
            assert!(matches!(
                raw::free(p).unwrap_err().kind,
                ErrorKind::BadPointer { .. }
            ));
        }
        drop(Box::from_raw(p.as_ptr().cast::<[u8; 64]>()));
    }
}

#[test]
fn aligned_allocations_free_realloc_and_report() {
    let ctx = root(AllocSetSizes::DEFAULT);
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        for align in [1, 8, 16, 64, 128, 4096, 65536] {
            let p = ctx
                .alloc_aligned(100, align, AllocFlags::empty())
                .unwrap()
                .unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0, "align {align}");
            assert_eq!(raw::chunk_context(p).unwrap(), ctx);
            assert!(raw::chunk_space(p).unwrap() >= 100);
            fill(p, 100, 4);
            let q = raw::realloc(p, 50).unwrap();
            check(q, 50, 4);
            let r = raw::realloc(q, 20_000).unwrap();
            assert_eq!(
                r.as_ptr() as usize % align,
                0,
                "realloc keeps align {align}"
            );
            check(r, 50, 4);
            raw::free(r).unwrap();
        }
        let z = ctx
            .alloc_aligned(256, 64, AllocFlags::ZERO)
            .unwrap()
            .unwrap();
        assert!((0..256).all(|i| *z.as_ptr().add(i) == 0));
        for bad in [3, 48, 1 << 30] {
            assert!(matches!(
                ctx.alloc_aligned(8, bad, AllocFlags::empty())
                    .unwrap_err()
                    .kind,
                ErrorKind::Unsupported(_)
            ));
        }
        ctx.delete();
    }
}

#[test]
fn stats_text_follows_postgresql_format() {
    let top = root(AllocSetSizes::DEFAULT);
    // SAFETY: alive.
    unsafe {
        let c = MemoryContext::new_alloc_set(Some(top), "child", AllocSetSizes::SMALL).unwrap();
        c.set_ident(Some("SELECT 1;\nline two"));
        let p = c.alloc(100).unwrap();
        raw::free(p).unwrap();
        for i in 0..5 {
            let g = MemoryContext::new_alloc_set(Some(top), "many", AllocSetSizes::SMALL).unwrap();
            if i == 0 {
                MemoryContext::new_alloc_set(Some(g), "grandchild", AllocSetSizes::SMALL).unwrap();
            }
        }
        // Unused contexts hold only their header (no block yet).
        let h = top.mem_allocated(false);
        let mut s = String::new();
        top.write_stats(&mut s, 100, 3).unwrap();
        let lines: Vec<_> = s.lines().collect();
        assert_eq!(
            lines[0],
            format!("test: {h} total in 0 blocks; 0 free (0 chunks); {h} used"),
            "{s}"
        );
        assert_eq!(lines.len(), 6, "{s}");
        assert!(
            lines[1].starts_with(&format!("  many: {h} total in 0 blocks; ")),
            "{s}"
        );
        // Beyond 3 children: two "many" (one with its grandchild) and "child".
        // "child" holds its header and a first block, 1 KiB together.
        let more = 3 * h + 1024;
        assert!(
            lines[4].starts_with(&format!(
                "  4 more child contexts containing {more} total in 1 blocks; "
            )),
            "{s}"
        );
        let total = top.mem_allocated(true);
        assert!(
            lines[5].starts_with(&format!("Grand total: {total} bytes in 1 blocks; ")),
            "{s}"
        );
        // Identifier: control characters become spaces.
        let mut s = String::new();
        top.write_stats(&mut s, 100, 100).unwrap();
        assert!(s.contains("  child: 1024 total in 1 blocks; "), "{s}");
        assert!(s.contains("(1 chunks)"), "the freed chunk is counted: {s}");
        assert!(s.contains(" used: SELECT 1; line two\n"), "{s}");
        // Depth limit: with max_level 1 every child is summarised.
        let mut s = String::new();
        top.write_stats(&mut s, 1, 100).unwrap();
        assert_eq!(s.lines().count(), 3);
        assert!(s
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("  7 more child contexts containing"));
        top.delete();
    }
}

#[test]
fn long_identifiers_are_cut_at_a_char_boundary() {
    let ctx = root(AllocSetSizes::DEFAULT);
    let ident = "é".repeat(80); // 160 bytes
                                // SAFETY: alive.
    unsafe {
        ctx.set_ident(Some(&ident));
        let mut s = String::new();
        ctx.write_stats(&mut s, 100, 100).unwrap();
        let shown = s.lines().next().unwrap().rsplit(": ").next().unwrap();
        assert_eq!(shown, format!("{}...", "é".repeat(50)));
        ctx.delete();
    }
}
