//! Benchmarks per context kind, each against the allocator that fits its
//! workload, in the same run:
//!
//! * **Bump** against bumpalo: many small allocations on a warm context,
//!   then a reset (`bump/u64`, `bump/24`, `bump/48`). `mcxt_bump` frees
//!   its blocks at reset as PostgreSQL does, so every iteration pays
//!   `malloc`/`free` for them; `mcxt_bump_retained` and
//!   `mcxt_bump_safe_retained` keep them
//!   ([`retain_on_reset`](mcxt::Context::retain_on_reset)), as bumpalo
//!   keeps its largest chunk: the same policy, so the per-allocation cost
//!   is compared. `mcxt_bump_typed` is the same through
//!   [`BumpContext`](mcxt::BumpContext), whose kind is known at compile
//!   time, as bumpalo's is.
//! * **Slab** against glibc and mimalloc: fixed-size churn over a large
//!   live set (`slab_churn/48`, `slab_churn/128`) and fill-then-free-all
//!   (`slab_fill_free/48`, `slab_fill_free/128`).
//! * **Generation** against glibc and mimalloc: a FIFO queue of chunks of
//!   varying sizes (`generation_fifo/1000`, `generation_fifo/100000`).
//!
//! Every group also has `mcxt_aset`, the general-purpose AllocSet kind
//! doing the same work, for reference. Function names carry the allocator
//! (`mcxt_bump`, `mcxt_bump_retained`, `mcxt_bump_safe_retained`,
//! `mcxt_bump_typed`, `bumpalo`, `mcxt_slab`, `glibc`,
//! `mimalloc`, `mcxt_generation`, `mcxt_aset`), and every group sets
//! `Throughput::Elements` to the operations of one iteration, so the time
//! per op is criterion's time per iteration divided by that count.
//!
//! glibc is `std::alloc::System` (plain `malloc`/`free` for alignments up
//! to 16); mimalloc is `mimalloc::MiMalloc` called through `GlobalAlloc`,
//! not installed as the global allocator, so mcxt's blocks come from glibc.
//!
//! ```text
//! cargo bench -p mcxt --bench kinds -- --warm-up-time 1 --measurement-time 3
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcxt::raw::{self, MemoryContext};
use mcxt::{BlockSizes, BumpContext, Context, ContextSpec, SLAB_DEFAULT_BLOCK_SIZE};
use mimalloc::MiMalloc;

/// Allocations per iteration of the `bump` groups (not a power of two, so
/// the last block is not exactly full).
const BUMP_ALLOCS: usize = 10_007;
/// Live objects of the `slab_churn` and `slab_fill_free` groups.
const SLAB_LIVE: usize = 10_000;
/// Free+alloc pairs per iteration of `slab_churn` and `generation_fifo`.
const CHURN_OPS: usize = 10_000;
/// Request sizes of the `generation_fifo` queue, drawn from this range.
const FIFO_MIN: usize = 40;
const FIFO_MAX: usize = 200;
/// Length of the precomputed size table of `generation_fifo` (a power of
/// two, indexed with a mask).
const FIFO_SIZES: usize = 4096;

/// 8-byte alignment: what mcxt guarantees, and what malloc callers get.
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Marsaglia's xorshift64: deterministic and cheap, the same stream for
/// every allocator.
#[inline(always)]
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// A uniform index below `n` without a division (Lemire's reduction).
#[inline(always)]
fn below(state: &mut u64, n: usize) -> usize {
    (((xorshift(state) >> 32) * n as u64) >> 32) as usize
}

/// The allocators compared on churn and FIFO workloads: `alloc(size)` and
/// `free(ptr, size)`, where `free` gets the size the block was allocated
/// with (mcxt ignores it: the chunk header knows).
trait Heap {
    /// # Safety
    /// `size` non-zero; for a Slab context, exactly its chunk size.
    unsafe fn alloc(&self, size: usize) -> *mut u8;
    /// # Safety
    /// `p` a live block of this heap allocated with `size`, not used after.
    unsafe fn free(&self, p: *mut u8, size: usize);
}

/// An mcxt context through the raw API.
struct Mcxt(MemoryContext);

impl Heap for Mcxt {
    #[inline(always)]
    unsafe fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: the context outlives the benchmark (caller contract).
        unsafe { self.0.alloc(size).unwrap().as_ptr() }
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8, _size: usize) {
        // SAFETY: a live chunk of this context, freed once (caller contract).
        unsafe { raw::free(NonNull::new_unchecked(p)).unwrap() }
    }
}

/// A `GlobalAlloc` (glibc's `System` or `MiMalloc`).
struct Global<A>(A);

impl<A: GlobalAlloc> Heap for Global<A> {
    #[inline(always)]
    unsafe fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: non-zero size (caller contract).
        let p = unsafe { self.0.alloc(layout(size)) };
        assert!(!p.is_null());
        p
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: allocated here with this layout, freed once (caller
        // contract).
        unsafe { self.0.dealloc(p, layout(size)) }
    }
}

/// A raw context of `spec` for the benchmarks; deleted when dropped.
struct RawCtx(MemoryContext);

impl RawCtx {
    fn new(name: &'static str, spec: ContextSpec) -> RawCtx {
        // SAFETY: a new root; it is deleted once, in `drop`.
        RawCtx(unsafe { MemoryContext::create(None, name, spec).unwrap() })
    }
}

impl Drop for RawCtx {
    fn drop(&mut self) {
        // SAFETY: the context is alive; the benchmarks using its chunks
        // have finished.
        unsafe { self.0.delete() }
    }
}

// ---------------------------------------------------------------------------
// Bump vs bumpalo
// ---------------------------------------------------------------------------

/// `BUMP_ALLOCS` u64 values written into a raw context, then a reset.
#[inline(always)]
fn raw_u64s(ctx: MemoryContext) {
    for i in 0..BUMP_ALLOCS as u64 {
        // SAFETY: the context is alive; the chunk holds 8 MAXALIGNed bytes
        // and is not used after the reset below.
        unsafe {
            let p = ctx.alloc(8).unwrap().cast::<u64>();
            p.write(i);
            black_box(p);
        }
    }
    // SAFETY: no chunk of the context is used past here.
    unsafe { ctx.reset() };
}

/// `BUMP_ALLOCS` blocks of `size` bytes from a raw context, then a reset.
#[inline(always)]
fn raw_bytes(ctx: MemoryContext, size: usize) {
    for _ in 0..BUMP_ALLOCS {
        // SAFETY: the context is alive; the chunk is not used after the
        // reset below.
        black_box(unsafe { ctx.alloc(size).unwrap() });
    }
    // SAFETY: no chunk of the context is used past here.
    unsafe { ctx.reset() };
}

fn bump(c: &mut Criterion) {
    // Blocks kept at reset: up to 1 MiB, enough for an iteration
    // (10_007 * 48 bytes).
    const KEEP: usize = 1024 * 1024;
    let bump_ctx = RawCtx::new("bump", ContextSpec::Bump(BlockSizes::DEFAULT));
    let bump_kept = RawCtx::new("bump_kept", ContextSpec::Bump(BlockSizes::DEFAULT));
    // SAFETY: the context is alive.
    unsafe { bump_kept.0.retain_on_reset(KEEP).expect("a bump context") };
    let aset_ctx = RawCtx::new("aset", ContextSpec::AllocSet(BlockSizes::DEFAULT));
    let mut safe = Context::try_new_with("bump_safe", ContextSpec::Bump(BlockSizes::DEFAULT))
        .expect("bump context");
    safe.retain_on_reset(KEEP).expect("a bump context");
    let mut typed = BumpContext::try_new("bump_typed", BlockSizes::DEFAULT).expect("bump context");
    typed.retain_on_reset(KEEP).expect("a bump context");
    let mut bumpalo = bumpalo::Bump::new();

    {
        let mut g = c.benchmark_group("bump/u64");
        g.throughput(Throughput::Elements(BUMP_ALLOCS as u64));
        g.bench_function("mcxt_bump", |b| b.iter(|| raw_u64s(bump_ctx.0)));
        g.bench_function("mcxt_bump_retained", |b| b.iter(|| raw_u64s(bump_kept.0)));
        g.bench_function("mcxt_bump_safe_retained", |b| {
            b.iter(|| {
                for i in 0..BUMP_ALLOCS as u64 {
                    black_box(safe.alloc(i));
                }
                safe.reset();
            })
        });
        g.bench_function("mcxt_bump_typed", |b| {
            b.iter(|| {
                for i in 0..BUMP_ALLOCS as u64 {
                    black_box(typed.alloc(i));
                }
                typed.reset();
            })
        });
        g.bench_function("bumpalo", |b| {
            b.iter(|| {
                for i in 0..BUMP_ALLOCS as u64 {
                    black_box(bumpalo.alloc(i));
                }
                bumpalo.reset();
            })
        });
        g.bench_function("mcxt_aset", |b| b.iter(|| raw_u64s(aset_ctx.0)));
        g.finish();
    }

    for size in [24usize, 48] {
        // Opaque size: the request is not constant-folded.
        let size = black_box(size);
        let l = layout(size);
        let mut g = c.benchmark_group(format!("bump/{size}"));
        g.throughput(Throughput::Elements(BUMP_ALLOCS as u64));
        g.bench_function("mcxt_bump", |b| b.iter(|| raw_bytes(bump_ctx.0, size)));
        g.bench_function("mcxt_bump_retained", |b| {
            b.iter(|| raw_bytes(bump_kept.0, size))
        });
        g.bench_function("mcxt_bump_safe_retained", |b| {
            b.iter(|| {
                for _ in 0..BUMP_ALLOCS {
                    black_box(safe.try_alloc_bytes(size).unwrap());
                }
                safe.reset();
            })
        });
        g.bench_function("mcxt_bump_typed", |b| {
            b.iter(|| {
                for _ in 0..BUMP_ALLOCS {
                    black_box(typed.try_alloc_layout(l).unwrap());
                }
                typed.reset();
            })
        });
        g.bench_function("bumpalo", |b| {
            b.iter(|| {
                for _ in 0..BUMP_ALLOCS {
                    black_box(bumpalo.alloc_layout(l));
                }
                bumpalo.reset();
            })
        });
        g.bench_function("mcxt_aset", |b| b.iter(|| raw_bytes(aset_ctx.0, size)));
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// Slab vs malloc: fixed-size churn and fill-then-free
// ---------------------------------------------------------------------------

/// `CHURN_OPS` times: free a pseudo-random live object and allocate its
/// replacement, writing its first word.
#[inline(always)]
fn churn<H: Heap>(h: &H, live: &mut [*mut u8], size: usize, rng: &mut u64) {
    for _ in 0..CHURN_OPS {
        let slot = &mut live[below(rng, SLAB_LIVE)];
        // SAFETY: the slot holds a live block of `h` of `size` bytes, freed
        // once and replaced by a fresh one of at least 8 bytes.
        unsafe {
            h.free(*slot, size);
            let p = h.alloc(size);
            p.cast::<u64>().write(size as u64);
            *slot = black_box(p);
        }
    }
}

/// A benchmark routine keeping `SLAB_LIVE` objects of `size` bytes in `h`
/// and churning them; the live set is freed when the routine ends.
fn churn_bench<H: Heap>(h: &H, size: usize) -> impl FnMut(&mut criterion::Bencher) + '_ {
    move |b| {
        let mut live: Vec<*mut u8> = (0..SLAB_LIVE)
            // SAFETY: non-zero size, the heap's own (Slab) size.
            .map(|_| unsafe { h.alloc(size) })
            .collect();
        let mut rng = 0x9E37_79B9_7F4A_7C15;
        b.iter(|| churn(h, &mut live, size, &mut rng));
        for p in live {
            // SAFETY: live block of `size` bytes, freed once.
            unsafe { h.free(p, size) };
        }
    }
}

/// Allocates `SLAB_LIVE` objects of `size` bytes, then frees them all in
/// allocation order.
#[inline(always)]
fn fill_free<H: Heap>(h: &H, ptrs: &mut Vec<*mut u8>, size: usize) {
    for _ in 0..SLAB_LIVE {
        // SAFETY: non-zero size, the heap's own (Slab) size; the object
        // holds at least 8 bytes.
        unsafe {
            let p = h.alloc(size);
            p.cast::<u64>().write(size as u64);
            ptrs.push(black_box(p));
        }
    }
    for p in ptrs.drain(..) {
        // SAFETY: each object is live, freed once with its size.
        unsafe { h.free(p, size) };
    }
}

fn slab(c: &mut Criterion) {
    for size in [48usize, 128] {
        let size = black_box(size);
        let slab_spec = ContextSpec::Slab {
            block_size: SLAB_DEFAULT_BLOCK_SIZE,
            chunk_size: size,
        };
        let slab_ctx = RawCtx::new("slab", slab_spec);
        let aset_ctx = RawCtx::new("aset", ContextSpec::AllocSet(BlockSizes::DEFAULT));
        let slab_heap = Mcxt(slab_ctx.0);
        let aset_heap = Mcxt(aset_ctx.0);

        let mut g = c.benchmark_group(format!("slab_churn/{size}"));
        g.throughput(Throughput::Elements(CHURN_OPS as u64));
        g.bench_function("mcxt_slab", churn_bench(&slab_heap, size));
        g.bench_function("glibc", churn_bench(&Global(System), size));
        g.bench_function("mimalloc", churn_bench(&Global(MiMalloc), size));
        g.bench_function("mcxt_aset", churn_bench(&aset_heap, size));
        g.finish();

        let mut ptrs = Vec::with_capacity(SLAB_LIVE);
        let mut g = c.benchmark_group(format!("slab_fill_free/{size}"));
        // One op = one allocation and its free.
        g.throughput(Throughput::Elements(SLAB_LIVE as u64));
        g.bench_function("mcxt_slab", |b| {
            b.iter(|| fill_free(&slab_heap, &mut ptrs, size))
        });
        g.bench_function("glibc", |b| {
            b.iter(|| fill_free(&Global(System), &mut ptrs, size))
        });
        g.bench_function("mimalloc", |b| {
            b.iter(|| fill_free(&Global(MiMalloc), &mut ptrs, size))
        });
        g.bench_function("mcxt_aset", |b| {
            b.iter(|| fill_free(&aset_heap, &mut ptrs, size))
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// Generation vs malloc: FIFO queue
// ---------------------------------------------------------------------------

/// A FIFO queue of blocks of varying sizes, as a ring: the slot at `head`
/// holds the oldest block.
struct Fifo {
    ring: Vec<(*mut u8, usize)>,
    head: usize,
    /// Next index into the size table.
    next: usize,
}

impl Fifo {
    fn new<H: Heap>(h: &H, len: usize, sizes: &[usize]) -> Fifo {
        let ring = (0..len)
            .map(|i| {
                let size = sizes[i & (FIFO_SIZES - 1)];
                // SAFETY: non-zero size.
                (unsafe { h.alloc(size) }, size)
            })
            .collect();
        Fifo {
            ring,
            head: 0,
            next: len,
        }
    }

    /// `CHURN_OPS` times: pop the oldest block and push a new one.
    #[inline(always)]
    fn run<H: Heap>(&mut self, h: &H, sizes: &[usize]) {
        let len = self.ring.len();
        for _ in 0..CHURN_OPS {
            let size = sizes[self.next & (FIFO_SIZES - 1)];
            self.next += 1;
            let slot = &mut self.ring[self.head];
            // SAFETY: the slot holds the oldest live block with its size,
            // freed once and replaced by a fresh one of at least 8 bytes.
            unsafe {
                h.free(slot.0, slot.1);
                let p = h.alloc(size);
                p.cast::<u64>().write(size as u64);
                *slot = (black_box(p), size);
            }
            self.head += 1;
            if self.head == len {
                self.head = 0;
            }
        }
    }

    fn free_all<H: Heap>(self, h: &H) {
        for (p, size) in self.ring {
            // SAFETY: live block with its size, freed once.
            unsafe { h.free(p, size) };
        }
    }
}

fn fifo_bench<'a, H: Heap>(
    h: &'a H,
    len: usize,
    sizes: &'a [usize],
) -> impl FnMut(&mut criterion::Bencher) + 'a {
    move |b| {
        let mut q = Fifo::new(h, len, sizes);
        b.iter(|| q.run(h, sizes));
        q.free_all(h);
    }
}

fn generation(c: &mut Criterion) {
    let mut rng = 0x2545_F491_4F6C_DD1D;
    let sizes: Vec<usize> = (0..FIFO_SIZES)
        .map(|_| FIFO_MIN + below(&mut rng, FIFO_MAX - FIFO_MIN + 1))
        .collect();
    let sizes = black_box(sizes);
    for len in [1000usize, 100_000] {
        let gen_ctx = RawCtx::new("generation", ContextSpec::Generation(BlockSizes::DEFAULT));
        let aset_ctx = RawCtx::new("aset", ContextSpec::AllocSet(BlockSizes::DEFAULT));
        let mut g = c.benchmark_group(format!("generation_fifo/{len}"));
        g.throughput(Throughput::Elements(CHURN_OPS as u64));
        g.bench_function("mcxt_generation", fifo_bench(&Mcxt(gen_ctx.0), len, &sizes));
        g.bench_function("glibc", fifo_bench(&Global(System), len, &sizes));
        g.bench_function("mimalloc", fifo_bench(&Global(MiMalloc), len, &sizes));
        g.bench_function("mcxt_aset", fifo_bench(&Mcxt(aset_ctx.0), len, &sizes));
        g.finish();
    }
}

/// Puts glibc's malloc in the state it reaches in any process that has
/// once freed a large block, so results do not depend on which benchmarks
/// ran before (or on the filter given on the command line).
///
/// glibc raises its mmap threshold to the size of the largest mmapped
/// block freed so far (up to 32 MiB) and its trim threshold to twice that.
/// In a fresh process both are 128 KiB: then every reset of an mcxt
/// context, which hands its non-keeper blocks back to malloc, lets glibc
/// shrink the heap with `brk` and the next iteration fault the pages in
/// again, which made `bump/48/mcxt_aset` 6 to 9 times slower when run alone
/// than after the bumpalo function of the same group had freed its large
/// chunks. Freeing one 16 MiB block first gives every function the adapted
/// thresholds.
fn settle_glibc_thresholds() {
    let l = Layout::from_size_align(16 << 20, 16).unwrap();
    // SAFETY: non-zero size; the block is freed at once with its layout.
    unsafe {
        let p = System.alloc(l);
        assert!(!p.is_null());
        System.dealloc(black_box(p), l);
    }
}

/// Criterion's defaults, with fewer bootstrap resamples (20k instead of
/// 100k) so the analysis does not dominate the run on a small machine;
/// command-line options still override.
fn config() -> Criterion {
    settle_glibc_thresholds();
    Criterion::default().nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bump, slab, generation
}
criterion_main!(benches);
