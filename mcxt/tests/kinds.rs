//! Generation, Slab and Bump contexts.

use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocFlags, BlockSizes, Context, ContextKind, ContextSpec, ErrorKind};
use std::ptr::NonNull;

fn create(spec: ContextSpec) -> MemoryContext {
    // SAFETY: no parent.
    unsafe { MemoryContext::create(None, "kind", spec).unwrap() }
}

fn text(ctx: MemoryContext) -> String {
    let mut s = String::new();
    // SAFETY: alive.
    unsafe { ctx.write_stats(&mut s, 100, 100).unwrap() };
    s
}

const SMALL_BLOCKS: BlockSizes = BlockSizes {
    min_context_size: 0,
    init_block_size: 1024,
    max_block_size: 4096,
};

#[test]
fn generation_releases_blocks_when_all_their_chunks_are_freed() {
    let g = create(ContextSpec::Generation(SMALL_BLOCKS));
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        assert_eq!(g.kind(), ContextKind::Generation);
        let base = g.mem_allocated(false);
        // A FIFO queue: allocate ahead, free behind.
        let mut queue = std::collections::VecDeque::new();
        let mut peak = 0;
        for i in 0..5000usize {
            let p = g.alloc(40 + i % 50).unwrap();
            p.as_ptr().write_bytes(i as u8, 40);
            queue.push_back((p, i as u8));
            if queue.len() > 100 {
                let (q, v) = queue.pop_front().unwrap();
                assert_eq!(*q.as_ptr().add(39), v);
                raw::free(q).unwrap();
            }
            peak = peak.max(g.mem_allocated(false));
        }
        assert!(peak < base + 20 * 4096, "FIFO use keeps few blocks: {peak}");
        assert!(!g.is_empty());
        while let Some((q, _)) = queue.pop_front() {
            raw::free(q).unwrap();
        }
        assert!(g.is_empty(), "all chunks freed");
        // At most the keeper, the current block and one kept free block.
        assert!(g.counters().blocks <= 3, "{}", text(g));
        g.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "exact layout: checking adds a check word and a sentinel byte per chunk"
)]
fn generation_realloc_dedicated_blocks_and_stats() {
    let g = create(ContextSpec::Generation(BlockSizes::DEFAULT));
    // SAFETY: chunks used while alive.
    unsafe {
        let p = g.alloc(100).unwrap();
        assert_eq!(
            raw::chunk_space(p).unwrap(),
            104 + 8,
            "no rounding beyond 8"
        );
        assert_eq!(raw::chunk_context(p).unwrap(), g);
        p.as_ptr().write_bytes(3, 100);
        assert_eq!(raw::realloc(p, 104).unwrap(), p, "fits: in place");
        let q = raw::realloc(p, 1000).unwrap();
        assert_eq!(*q.as_ptr().add(99), 3);
        let base = g.mem_allocated(false);
        let big = g.alloc(600_000).unwrap(); // above 512 KiB: dedicated
        assert!(g.mem_allocated(false) >= base + 600_000);
        let big = raw::realloc(big, 700_000).unwrap();
        raw::free(big).unwrap();
        assert_eq!(g.mem_allocated(false), base);
        let s = text(g);
        assert!(
            s.starts_with("kind: 8192 total in 1 blocks (1 chunks); "),
            "{s}"
        );
        assert!(s.contains(" free (1 chunks); "), "{s}");
        assert_eq!(
            g.alloc_extended(usize::MAX, AllocFlags::HUGE)
                .unwrap_err()
                .kind,
            ErrorKind::InvalidSize
        );
        g.reset();
        assert!(g.is_empty());
        g.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "exact layout: checking adds a check word and a sentinel byte per chunk"
)]
fn slab_fills_fullest_blocks_first_and_keeps_few_empty_ones() {
    let s = create(ContextSpec::Slab {
        block_size: 1024,
        chunk_size: 40,
    });
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        assert_eq!(s.kind(), ContextKind::Slab);
        // Chunks per block, measured: fill until a second block appears.
        let mut chunks: Vec<NonNull<u8>> = vec![];
        while s.counters().blocks < 2 {
            chunks.push(s.alloc(40).unwrap());
        }
        let per_block = chunks.len() - 1;
        assert!(
            (15..=20).contains(&per_block),
            "{per_block} chunks of 48 bytes in 1 KiB"
        );
        while chunks.len() < per_block * 30 {
            chunks.push(s.alloc(40).unwrap());
        }
        assert_eq!(s.counters().blocks, 30);
        assert_eq!(raw::chunk_space(chunks[0]).unwrap(), 48);
        assert_eq!(raw::chunk_context(chunks[5]).unwrap(), s);
        // Free every chunk of blocks 0..20 and one chunk of block 29.
        for &c in &chunks[..per_block * 20] {
            raw::free(c).unwrap();
        }
        raw::free(chunks[per_block * 29]).unwrap();
        // 20 empty blocks: 10 kept, 10 released.
        let (_, empty_line) = (0, text(s));
        assert!(empty_line.contains("; 10 empty blocks; "), "{empty_line}");
        assert_eq!(s.counters().blocks, 20);
        // The next allocation fills the hole in the fullest block.
        let again = s.alloc(40).unwrap();
        assert_eq!(again, chunks[per_block * 29]);
        // Wrong sizes and growth are refused.
        assert!(matches!(
            s.alloc(41).unwrap_err().kind,
            ErrorKind::Unsupported(_)
        ));
        assert!(matches!(
            s.alloc(8).unwrap_err().kind,
            ErrorKind::Unsupported(_)
        ));
        assert!(matches!(
            raw::realloc(again, 100).unwrap_err().kind,
            ErrorKind::Unsupported(_)
        ));
        assert_eq!(raw::realloc(again, 10).unwrap(), again);
        assert!(!s.is_empty());
        s.reset();
        assert!(s.is_empty());
        assert_eq!(s.counters().blocks, 0, "reset frees every block");
        s.delete();
    }
}

#[test]
fn slab_parameters_are_checked() {
    // SAFETY: no parent.
    unsafe {
        let e = MemoryContext::create(
            None,
            "tiny",
            ContextSpec::Slab {
                block_size: 64,
                chunk_size: 100,
            },
        )
        .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidParameters(_)));
        let s = MemoryContext::create(
            None,
            "zero",
            ContextSpec::Slab {
                block_size: 8192,
                chunk_size: 0,
            },
        )
        .unwrap();
        let p = s.alloc(0).unwrap();
        raw::free(p).unwrap();
        s.delete();
    }
}

#[test]
#[cfg_attr(
    feature = "checking",
    ignore = "exact layout: checking adds a check word and a sentinel byte per chunk"
)]
fn bump_has_no_header_and_frees_at_reset() {
    let b = create(ContextSpec::Bump(BlockSizes::DEFAULT));
    // SAFETY: chunks used while alive; never freed one by one.
    unsafe {
        assert_eq!(b.kind(), ContextKind::Bump);
        let base = b.mem_allocated(false);
        let p = b.alloc(16).unwrap();
        let q = b.alloc(16).unwrap();
        assert_eq!(
            q.as_ptr() as usize - p.as_ptr() as usize,
            16,
            "no header, no rounding"
        );
        let z = b.alloc(0).unwrap();
        let after = b.alloc(8).unwrap();
        assert_eq!(z, after, "a zero-size bump chunk shares the next address");
        let a = b
            .alloc_aligned(100, 4096, AllocFlags::ZERO)
            .unwrap()
            .unwrap();
        assert_eq!(a.as_ptr() as usize % 4096, 0);
        assert!((0..100).all(|i| *a.as_ptr().add(i) == 0));
        for _ in 0..10_000 {
            b.alloc(24).unwrap();
        }
        let big = b.alloc(1 << 20).unwrap();
        big.as_ptr().write_bytes(1, 1 << 20);
        assert!(b.mem_allocated(false) > base + (1 << 20));
        let s = text(b);
        let first = s.lines().next().unwrap();
        assert!(
            first.starts_with("kind: ") && first.contains(" free; ") && !first.contains("chunks"),
            "{s}"
        );
        b.reset();
        assert_eq!(b.mem_allocated(false), base);
        assert!(b.is_empty());
        b.delete();
    }
}

#[test]
fn every_kind_works_through_the_safe_api() {
    let top = Context::new("top");
    let r#gen = top
        .try_new_child_with("gen", ContextSpec::Generation(BlockSizes::DEFAULT))
        .unwrap();
    let slab = top
        .try_new_child_with(
            "slab",
            ContextSpec::Slab {
                block_size: 8192,
                chunk_size: 8,
            },
        )
        .unwrap();
    let bump = top
        .try_new_child_with("bump", ContextSpec::Bump(BlockSizes::DEFAULT))
        .unwrap();
    let dropped = std::rc::Rc::new(std::cell::Cell::new(0));
    for ctx in [&r#gen, &slab, &bump] {
        let d = dropped.clone();
        ctx.on_reset(move || d.set(d.get() + 1));
        let b = ctx.boxed(7u64);
        assert_eq!(*b, 7);
        drop(b);
        let v = ctx.alloc(1u64);
        *v += 1;
        ctx.alloc_with_drop(std::rc::Rc::clone(&dropped));
    }
    // Collections: Generation and Bump grow (Bump by moving), Slab cannot.
    let mut v = allocator_api2::vec::Vec::new_in(&r#gen);
    v.extend(0..1000u32);
    let mut w = allocator_api2::vec::Vec::new_in(&bump);
    w.extend(0..1000u32);
    assert_eq!(v.iter().sum::<u32>(), w.iter().sum::<u32>());
    let mut x: allocator_api2::vec::Vec<u64, _> = allocator_api2::vec::Vec::new_in(&slab);
    x.try_reserve_exact(1).unwrap();
    x.push(1);
    assert!(x.try_reserve(10).is_err(), "a slab chunk cannot grow");
    assert!(slab.try_alloc([0u8; 9]).is_err());
    drop((v, w, x));
    let text = top.stats_text();
    assert!(
        text.contains("  bump: ") && text.contains("  slab: ") && text.contains("  gen: "),
        "{text}"
    );
    assert!(text.contains("empty blocks"), "{text}");
    drop((r#gen, slab, bump));
    assert_eq!(
        dropped.get(),
        3,
        "each context's callback ran at its delete"
    );
    assert_eq!(
        std::rc::Rc::strong_count(&dropped),
        1,
        "drop values ran at delete"
    );
}

/// Counts the block requests and the blocks outstanding of this thread's
/// contexts.
struct CountingSource {
    requests: std::sync::atomic::AtomicUsize,
    outstanding: std::sync::atomic::AtomicUsize,
}

// SAFETY: forwards every call to the system source.
unsafe impl mcxt::system::BlockSource for CountingSource {
    fn alloc(&self, size: usize) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(1, Relaxed);
        let p = mcxt::system::SystemSource.alloc(size);
        if !p.is_null() {
            self.outstanding.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize) {
        self.outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { mcxt::system::SystemSource.free(ptr, size) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { mcxt::system::SystemSource.realloc(ptr, old, new) }
    }
}

/// Fills a bump context with `n` 48-byte chunks and resets it.
///
/// # Safety
/// `b` alive; no chunk of it is used afterwards.
unsafe fn fill_and_reset(b: MemoryContext, n: usize) {
    // SAFETY: caller contract.
    unsafe {
        for i in 0..n {
            b.alloc(48).unwrap().as_ptr().write(i as u8);
        }
        b.reset();
    }
}

#[test]
fn bump_retains_blocks_across_resets_when_asked() {
    use std::sync::atomic::Ordering::Relaxed;
    static SOURCE: CountingSource = CountingSource {
        requests: std::sync::atomic::AtomicUsize::new(0),
        outstanding: std::sync::atomic::AtomicUsize::new(0),
    };
    // SAFETY: no context of this thread is alive across the switch (each
    // test runs on its own thread), and the source is restored at the end
    // after every context made here was deleted.
    let previous = unsafe { mcxt::system::set_block_source(Some(&SOURCE)) };
    // What the context itself asks for, without the thread's block cache
    // serving repeated requests in between.
    let cache_limit = mcxt::system::set_block_cache_limit(0);
    // SAFETY: every chunk is used only before the reset that kills it.
    unsafe {
        // PostgreSQL's policy (the default): every cycle gives back and
        // asks again for every block but the first.
        let pg = create(ContextSpec::Bump(BlockSizes::DEFAULT));
        assert_eq!(pg.retained_on_reset(), 0);
        let base = pg.mem_allocated(false);
        fill_and_reset(pg, 10_000);
        assert_eq!(pg.mem_allocated(false), base);
        let before = SOURCE.requests.load(Relaxed);
        fill_and_reset(pg, 10_000);
        let per_cycle = SOURCE.requests.load(Relaxed) - before;
        assert!(per_cycle >= 4, "{per_cycle} block requests per cycle");
        pg.delete();

        // Retained: the blocks stay, and no block is requested any more.
        let b = create(ContextSpec::Bump(BlockSizes::DEFAULT));
        b.retain_on_reset(1 << 20).unwrap();
        assert_eq!(b.retained_on_reset(), 1 << 20);
        fill_and_reset(b, 10_000);
        let kept = b.mem_allocated(false);
        assert!(kept > base + 10_000 * 48, "every block was kept");
        let counters = b.counters();
        assert_eq!(counters.blocks, 1 + per_cycle, "first block and the spares");
        assert_eq!(counters.total_bytes, kept);
        assert!(b.is_empty(), "kept blocks hold nothing");
        let summary = b.check();
        assert!(summary.is_ok(), "{:?}", summary.problems);
        assert_eq!(summary.blocks, 1 + per_cycle);
        let before = SOURCE.requests.load(Relaxed);
        for _ in 0..5 {
            fill_and_reset(b, 10_000);
        }
        assert_eq!(SOURCE.requests.load(Relaxed), before, "steady state");
        assert_eq!(b.mem_allocated(false), kept);
        // Chunks land in the kept blocks, which stay sound.
        for _ in 0..5_000 {
            b.alloc(48).unwrap().as_ptr().write(1);
        }
        let summary = b.check();
        assert!(summary.is_ok(), "{:?}", summary.problems);
        assert_eq!(SOURCE.requests.load(Relaxed), before);

        // A request larger than the next spare gets a new block and leaves
        // the spares alone.
        b.reset();
        let spares = b.counters().blocks;
        b.alloc(200_000).unwrap().as_ptr().write(2);
        assert_eq!(b.counters().blocks, spares + 1);
        b.reset();

        // A lower bound releases kept blocks above it; a reset then keeps
        // at most the bound, newest (largest) blocks first.
        b.retain_on_reset(100_000).unwrap();
        assert!(b.mem_allocated(false) <= base + 100_000);
        fill_and_reset(b, 10_000);
        let partial = b.mem_allocated(false);
        assert!(partial > base && partial <= base + 100_000, "{partial}");
        b.retain_on_reset(4096).unwrap();
        assert_eq!(b.mem_allocated(false), base, "every block is larger");
        fill_and_reset(b, 10_000);
        assert_eq!(b.mem_allocated(false), base);
        b.retain_on_reset(1 << 20).unwrap();
        fill_and_reset(b, 10_000);

        // Delete gives everything back, the kept block included.
        b.delete();
        assert_eq!(SOURCE.outstanding.load(Relaxed), 0);

        // Other kinds refuse, naming the context.
        let a = create(ContextSpec::AllocSet(BlockSizes::DEFAULT));
        let e = a.retain_on_reset(1 << 20).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidParameters(_)), "{e}");
        assert!(e.to_string().contains("kind"), "{e}");
        assert_eq!(a.retained_on_reset(), 0);
        a.delete();
        mcxt::release_recycled(); // deleted AllocSets may be cached
        assert_eq!(SOURCE.outstanding.load(Relaxed), 0);
        mcxt::system::set_block_source(previous);
        mcxt::system::set_block_cache_limit(cache_limit);
    }
}

#[test]
fn bump_kept_block_counts_against_limits_and_in_the_tree() {
    // SAFETY: chunks used only before the reset that kills them.
    unsafe {
        let root = create(ContextSpec::AllocSet(BlockSizes::DEFAULT));
        let b = MemoryContext::create(Some(root), "bump", ContextSpec::Bump(BlockSizes::DEFAULT))
            .unwrap();
        b.retain_on_reset(usize::MAX).unwrap();
        fill_and_reset(b, 10_000);
        let held = b.mem_allocated(false);
        assert_eq!(root.mem_allocated(true), root.mem_allocated(false) + held);
        // A limit below what the context holds refuses the next block,
        // and the kept block is still there, still accounted.
        root.set_limit(Some(root.mem_allocated(true)));
        let mut n = 0;
        while b.alloc(48).is_ok() {
            n += 1;
            assert!(n < 1_000_000);
        }
        assert_eq!(b.mem_allocated(false), held);
        let summary = root.check();
        assert!(summary.is_ok(), "{:?}", summary.problems);
        let mut s = String::new();
        root.write_stats(&mut s, 100, 100).unwrap();
        assert!(s.contains("bump: "), "{s}");
        root.delete();
    }
}
