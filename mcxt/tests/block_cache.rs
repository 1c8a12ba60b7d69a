//! The per-thread cache of freed blocks, watched through counting block
//! sources: it serves repeated requests, never raises the peak memory
//! held from the source, keeps its bounds, and gives everything back.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use mcxt::raw::{self, MemoryContext};
use mcxt::system::{
    block_cache_limit, cached_block_bytes, set_block_cache_limit, set_block_source, BlockSource,
    SystemSource,
};
use mcxt::{BlockSizes, ContextSpec};

/// Forwards to the global allocator, counting requests (and among them
/// the shrinking `realloc`s) and the bytes out (and their highest).
struct Counting {
    requests: AtomicUsize,
    shrinks: AtomicUsize,
    bytes: AtomicUsize,
    peak: AtomicUsize,
}

impl Counting {
    const fn new() -> Counting {
        Counting {
            requests: AtomicUsize::new(0),
            shrinks: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn grew(&self, by: usize) {
        let now = self.bytes.fetch_add(by, Relaxed) + by;
        self.peak.fetch_max(now, Relaxed);
    }

    /// Starts a measurement: the peak from the current bytes out.
    fn restart(&self) {
        self.requests.store(0, Relaxed);
        self.shrinks.store(0, Relaxed);
        self.peak.store(self.bytes.load(Relaxed), Relaxed);
    }
}

// SAFETY: forwards every call to the system source unchanged.
unsafe impl BlockSource for Counting {
    fn alloc(&self, size: usize) -> *mut u8 {
        self.requests.fetch_add(1, Relaxed);
        let p = SystemSource.alloc(size);
        if !p.is_null() {
            self.grew(size);
        }
        p
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize) {
        self.bytes.fetch_sub(size, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { SystemSource.free(ptr, size) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        self.requests.fetch_add(1, Relaxed);
        if new < old {
            self.shrinks.fetch_add(1, Relaxed);
        }
        // SAFETY: forwarded contract.
        let p = unsafe { SystemSource.realloc(ptr, old, new) };
        if !p.is_null() {
            self.bytes.fetch_sub(old, Relaxed);
            self.grew(new);
        }
        p
    }
}

/// Runs `f` on a new thread with `source` installed (so that nothing
/// else of the test process shares the thread's caches).
fn on_thread(source: &'static Counting, f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: no context exists yet on this new thread.
            unsafe { set_block_source(Some(source)) };
            f();
            mcxt::release_recycled();
            assert_eq!(source.bytes.load(Relaxed), 0, "everything went back");
            // SAFETY: every context of this thread was deleted.
            unsafe { set_block_source(None) };
        });
    });
}

fn create(parent: Option<MemoryContext>, spec: ContextSpec) -> MemoryContext {
    // SAFETY: `parent`, if any, is alive (callers).
    unsafe { MemoryContext::create(parent, "cached", spec).unwrap() }
}

const SMALL: BlockSizes = BlockSizes {
    min_context_size: 0,
    init_block_size: 1024,
    max_block_size: 64 * 1024,
};

/// Query-like rounds, the same every time for a seed: a context per
/// round with children of every kind, chunks small and large (dedicated
/// blocks), reallocs that grow and shrink, frees, per-row resets, and
/// the round's context deleted at its end.
fn workload(seed: u64, rounds: usize) {
    let mut x = seed | 1;
    let mut rand = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let rows = if cfg!(miri) { 20 } else { 400 };
    for _ in 0..rounds {
        let query = create(None, ContextSpec::AllocSet(BlockSizes::DEFAULT));
        let kids = [
            create(Some(query), ContextSpec::AllocSet(SMALL)),
            create(Some(query), ContextSpec::Generation(SMALL)),
            create(
                Some(query),
                ContextSpec::Slab {
                    block_size: 8192,
                    chunk_size: 96,
                },
            ),
            create(Some(query), ContextSpec::Bump(SMALL)),
        ];
        let per_row = create(Some(query), ContextSpec::AllocSet(BlockSizes::DEFAULT));
        let mut live = Vec::new();
        // SAFETY: every chunk is used while its context is alive and
        // freed at most once; bump chunks are never freed.
        unsafe {
            for row in 0..rows {
                let kid = kids[rand(kids.len())];
                let size = match kid.kind() {
                    mcxt::ContextKind::Slab => 96,
                    _ if rand(50) == 0 => 9000 + rand(60_000),
                    _ => 8 + rand(600),
                };
                let p = kid.alloc(size).unwrap();
                p.as_ptr().write_bytes(row as u8, size);
                if kid.kind() != mcxt::ContextKind::Bump {
                    live.push((p, size));
                }
                for _ in 0..1 + rand(8) {
                    per_row.alloc(16 + rand(2000)).unwrap();
                }
                per_row.reset();
                if !live.is_empty() && rand(3) == 0 {
                    let i = rand(live.len());
                    let (p, size) = live.swap_remove(i);
                    if rand(2) == 0 {
                        raw::free(p).unwrap();
                    } else if raw::chunk_context(p).unwrap().kind() != mcxt::ContextKind::Slab {
                        let new = if rand(2) == 0 { size * 3 } else { size / 2 + 1 };
                        live.push((raw::realloc(p, new).unwrap(), new));
                    } else {
                        live.push((p, size));
                    }
                }
            }
            query.delete();
        }
    }
}

static PEAK_SOURCE: Counting = Counting::new();

#[test]
fn the_cache_never_raises_the_peak_and_saves_requests() {
    let rounds = if cfg!(miri) { 3 } else { 30 };
    on_thread(&PEAK_SOURCE, || {
        let mut runs = Vec::new();
        // Off, a bound the workload overflows (blocks are evicted for
        // room), and the default (which holds all of it).
        for limit in [0, 128 * 1024, mcxt::system::DEFAULT_BLOCK_CACHE_LIMIT] {
            mcxt::release_recycled();
            set_block_cache_limit(limit);
            PEAK_SOURCE.restart();
            workload(42, rounds);
            // Out: exactly what the caches hold.
            assert_eq!(PEAK_SOURCE.bytes.load(Relaxed), mcxt::cached_bytes());
            assert!(cached_block_bytes() <= limit);
            runs.push((
                limit,
                PEAK_SOURCE.peak.load(Relaxed),
                PEAK_SOURCE.requests.load(Relaxed),
            ));
        }
        mcxt::release_recycled();
        set_block_cache_limit(mcxt::system::DEFAULT_BLOCK_CACHE_LIMIT);
        let (_, peak_off, requests_off) = runs[0];
        for &(limit, peak_on, requests_on) in &runs[1..] {
            assert!(
                peak_on <= peak_off,
                "a cache of {limit} bytes raised the peak: {peak_on} > {peak_off} bytes"
            );
            assert!(
                requests_on * 4 < requests_off * 3,
                "a cache of {limit} bytes served few requests: {requests_on} of {requests_off}"
            );
            eprintln!(
                "block cache of {limit} bytes: {requests_on} of {requests_off} requests \
                 reached the source, peak {peak_on} against {peak_off} bytes"
            );
        }
    });
}

static REUSE_SOURCE: Counting = Counting::new();

#[test]
fn the_blocks_of_a_deleted_context_serve_the_next_one() {
    let chunks = if cfg!(miri) { 40 } else { 200 };
    on_thread(&REUSE_SOURCE, || {
        let grow = || {
            let c = create(None, ContextSpec::AllocSet(BlockSizes::DEFAULT));
            for _ in 0..chunks {
                // SAFETY: the chunks die with `c`, unused.
                unsafe { c.alloc(1000).unwrap() };
            }
            // SAFETY: alive, deleted once.
            unsafe {
                let held = c.mem_allocated(false);
                c.delete();
                held
            }
        };
        let held = grow();
        let cached = cached_block_bytes();
        assert!(cached > 0, "the grown blocks were kept");
        // (Less, where the context was recycled with its first block.)
        assert!(cached <= held, "{cached} > {held}");
        assert_eq!(REUSE_SOURCE.bytes.load(Relaxed), mcxt::cached_bytes());
        REUSE_SOURCE.restart();
        assert_eq!(grow(), held);
        assert_eq!(
            REUSE_SOURCE.requests.load(Relaxed),
            0,
            "every block came from the caches"
        );
        assert_eq!(cached_block_bytes(), cached);
    });
}

static LIMIT_SOURCE: Counting = Counting::new();

#[test]
fn the_limit_bounds_the_cache_and_zero_turns_it_off() {
    on_thread(&LIMIT_SOURCE, || {
        assert_eq!(block_cache_limit(), mcxt::system::DEFAULT_BLOCK_CACHE_LIMIT);
        let c = create(None, ContextSpec::AllocSet(BlockSizes::DEFAULT));
        // SAFETY: chunks freed once, while `c` is alive.
        unsafe {
            let big = c.alloc(100_000).unwrap();
            // Over the limit (the chunk alone fills it; the block adds a
            // header).
            let huge = c.alloc(mcxt::system::DEFAULT_BLOCK_CACHE_LIMIT).unwrap();
            raw::free(big).unwrap();
            let with_big = cached_block_bytes();
            assert!(with_big > 100_000, "a dedicated block is cached");
            raw::free(huge).unwrap();
            assert_eq!(
                cached_block_bytes(),
                with_big,
                "a block over the limit goes back"
            );
            // A lower limit evicts at once; blocks above it are refused.
            assert_eq!(
                set_block_cache_limit(50_000),
                mcxt::system::DEFAULT_BLOCK_CACHE_LIMIT
            );
            assert_eq!(cached_block_bytes(), 0);
            let big = c.alloc(100_000).unwrap();
            raw::free(big).unwrap();
            assert_eq!(cached_block_bytes(), 0);
            let mid = c.alloc(40_000).unwrap();
            let mid2 = c.alloc(30_000).unwrap();
            raw::free(mid).unwrap();
            let with_mid = cached_block_bytes();
            assert!(with_mid > 40_000);
            // Full: the oldest goes back to make room.
            let before = LIMIT_SOURCE.bytes.load(Relaxed);
            raw::free(mid2).unwrap();
            let with_mid2 = cached_block_bytes();
            assert!(with_mid2 > 30_000 && with_mid2 < with_mid, "{with_mid2}");
            assert_eq!(LIMIT_SOURCE.bytes.load(Relaxed), before - with_mid);
            // A miss returns cached bytes first, at least its size.
            let other = c.alloc(35_000).unwrap();
            assert_eq!(cached_block_bytes(), 0);
            raw::free(other).unwrap();
            // Zero: nothing is kept.
            set_block_cache_limit(0);
            assert_eq!(cached_block_bytes(), 0);
            let small = c.alloc(20_000).unwrap();
            raw::free(small).unwrap();
            assert_eq!(cached_block_bytes(), 0);
            c.delete();
        }
        mcxt::release_recycled();
        assert_eq!(LIMIT_SOURCE.bytes.load(Relaxed), 0);
        set_block_cache_limit(mcxt::system::DEFAULT_BLOCK_CACHE_LIMIT);
    });
}

static SHRINK_SOURCE: Counting = Counting::new();

#[test]
fn a_large_miss_shrinks_a_larger_cached_block_a_small_one_does_not() {
    on_thread(&SHRINK_SOURCE, || {
        let c = create(None, ContextSpec::AllocSet(BlockSizes::DEFAULT));
        // SAFETY: chunks used and freed once, while `c` is alive.
        unsafe {
            // Two dedicated blocks cached: about 300 KiB and 120 KiB.
            let big = c.alloc(300 * 1024).unwrap();
            let mid = c.alloc(120 * 1024).unwrap();
            raw::free(big).unwrap();
            raw::free(mid).unwrap();
            let cached = cached_block_bytes();
            assert!(cached > 420 * 1024, "{cached}");
            let out = SHRINK_SOURCE.bytes.load(Relaxed);
            SHRINK_SOURCE.restart();

            // 100 KiB: the 120 KiB block is the smallest that covers it,
            // shrunk in place of a new request.
            let p = c.alloc(100 * 1024).unwrap();
            p.as_ptr().write_bytes(7, 100 * 1024);
            assert_eq!(SHRINK_SOURCE.requests.load(Relaxed), 1);
            assert_eq!(SHRINK_SOURCE.shrinks.load(Relaxed), 1, "shrunk");
            let taken = cached - cached_block_bytes();
            assert!(
                taken > 120 * 1024 && taken < 130 * 1024,
                "the 120 KiB block was taken: {taken}"
            );
            let freed = out - SHRINK_SOURCE.bytes.load(Relaxed);
            assert!(
                freed > 15 * 1024 && freed < 25 * 1024,
                "only its tail went back: {freed} bytes"
            );

            // 40 KiB (below the threshold): the 300 KiB block goes back
            // and the source is asked afresh.
            SHRINK_SOURCE.restart();
            let q = c.alloc(40 * 1024).unwrap();
            q.as_ptr().write_bytes(9, 40 * 1024);
            assert_eq!(SHRINK_SOURCE.shrinks.load(Relaxed), 0, "not shrunk");
            assert_eq!(SHRINK_SOURCE.requests.load(Relaxed), 1);
            assert_eq!(cached_block_bytes(), 0);
            assert_eq!(*p.as_ptr().add(100 * 1024 - 1), 7);
            c.delete();
        }
        assert_eq!(SHRINK_SOURCE.bytes.load(Relaxed), mcxt::cached_bytes());
    });
}

static OLD_SOURCE: Counting = Counting::new();
static EXIT_SOURCE: Counting = Counting::new();

#[test]
fn cached_blocks_go_back_to_their_source_on_switch_and_at_thread_exit() {
    fn fill() {
        let c = create(None, ContextSpec::Generation(SMALL));
        for _ in 0..100 {
            // SAFETY: the chunks die with `c`, unused.
            unsafe { c.alloc(500).unwrap() };
        }
        // SAFETY: alive, deleted once.
        unsafe { c.delete() };
        assert!(cached_block_bytes() > 0);
    }
    // Not a scoped thread: `join` waits for the thread-local destructors,
    // a scope only for the closure.
    std::thread::spawn(|| {
        // SAFETY: no context exists yet on this new thread.
        unsafe { set_block_source(Some(&OLD_SOURCE)) };
        fill();
        assert!(OLD_SOURCE.bytes.load(Relaxed) > 0);
        // SAFETY: every context of this thread was deleted.
        unsafe { set_block_source(Some(&EXIT_SOURCE)) };
        assert_eq!(OLD_SOURCE.bytes.load(Relaxed), 0, "returned on switch");
        assert_eq!(cached_block_bytes(), 0);
        fill();
        assert!(EXIT_SOURCE.bytes.load(Relaxed) > 0);
        // The thread ends with blocks cached.
    })
    .join()
    .unwrap();
    assert_eq!(
        EXIT_SOURCE.bytes.load(Relaxed),
        0,
        "returned at thread exit"
    );
}
