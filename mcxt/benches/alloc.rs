//! Allocation benchmarks: mcxt (AllocSet contexts) against glibc malloc
//! (`std::alloc::System`, which calls `malloc`/`free`/`realloc` directly for
//! alignments up to 16), mimalloc (`mimalloc::MiMalloc` called through
//! `GlobalAlloc`, not installed as the global allocator) and bumpalo.
//!
//! Group names carry the scenario (`small_pair/64`, `reset_many/mixed`, ...)
//! and function names the allocator (`mcxt`, `glibc`, `mimalloc`,
//! `bumpalo`), so the ratios can be read off one group. Every group sets
//! `Throughput::Elements` to the number of operations of one iteration:
//! criterion's time per iteration divided by that count is the time per op.
//!
//! The bench binary has no `#[global_allocator]`: the global allocator, and
//! so the allocator behind mcxt's blocks and `std::vec::Vec`, is glibc.
//!
//! ```text
//! cargo bench -p mcxt --bench alloc -- --warm-up-time 1 --measurement-time 3
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use bumpalo::Bump;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocSetSizes, Context};
use mimalloc::MiMalloc;

/// Alloc+free pairs per iteration of the `small_pair` groups.
const PAIRS: usize = 1000;
/// Objects allocated per iteration of the `reset_many` groups.
const MANY: usize = 10_000;
/// Allocations inside a short-lived context in `child_10_allocs`.
const CHILD_ALLOCS: usize = 10;
/// Contexts created and deleted per iteration of `context_create_delete`.
const CONTEXTS: usize = 100;
/// Elements pushed in the `vec_push` group (not a power of two, so the
/// last growth step is not exactly full).
const PUSHES: usize = 10_007;
/// Mixed small request sizes, cycled through.
const MIXED: [usize; 8] = [8, 24, 48, 96, 200, 16, 64, 128];

/// `n` sizes cycling through `pattern`.
fn cycle_sizes(pattern: &[usize], n: usize) -> Vec<usize> {
    pattern.iter().copied().cycle().take(n).collect()
}

/// 8-byte alignment: what mcxt guarantees, and what malloc callers get.
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// `n` alloc+free pairs through a `GlobalAlloc` (glibc or mimalloc).
#[inline(always)]
fn pairs_global<A: GlobalAlloc>(a: &A, sizes: &[usize]) {
    for &size in sizes {
        let l = layout(size);
        // SAFETY: non-zero size; the block is freed at once with its layout.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            a.dealloc(black_box(p), l);
        }
    }
}

/// `n` alloc+free pairs in an mcxt context.
#[inline(always)]
fn pairs_mcxt(ctx: MemoryContext, sizes: &[usize]) {
    for &size in sizes {
        // SAFETY: `ctx` is alive for the whole benchmark; the chunk is freed
        // once, right away.
        unsafe {
            let p = ctx.alloc(size).unwrap();
            raw::free(black_box(p)).unwrap();
        }
    }
}

fn small_pair(c: &mut Criterion) {
    let ctx = Context::new("small_pair");
    let raw_ctx = ctx.as_raw();
    let cases: [(&str, &[usize]); 4] = [
        ("16", &[16]),
        ("64", &[64]),
        ("256", &[256]),
        ("mixed", &MIXED),
    ];
    for (name, pattern) in cases {
        // Opaque sizes: the class lookup is not constant-folded for mcxt.
        let sizes = black_box(cycle_sizes(pattern, PAIRS));
        let mut g = c.benchmark_group(format!("small_pair/{name}"));
        g.throughput(Throughput::Elements(PAIRS as u64));
        g.bench_function("mcxt", |b| b.iter(|| pairs_mcxt(raw_ctx, &sizes)));
        g.bench_function("glibc", |b| b.iter(|| pairs_global(&System, &sizes)));
        g.bench_function("mimalloc", |b| b.iter(|| pairs_global(&MiMalloc, &sizes)));
        g.finish();
    }
}

/// Slots of the `small_ring` working set.
const RING: usize = 256;

/// A steadier pattern than immediate pairs: a ring of `RING` live objects,
/// each step frees the oldest and allocates a new one, so free lists are
/// popped in a different order than they were pushed.
fn small_ring(c: &mut Criterion) {
    let sizes = black_box(cycle_sizes(&MIXED, PAIRS));
    let mut g = c.benchmark_group("small_ring/mixed");
    g.throughput(Throughput::Elements(PAIRS as u64));

    let ctx = Context::new("small_ring");
    let raw_ctx = ctx.as_raw();
    g.bench_function("mcxt", |b| {
        let mut ring: Vec<NonNull<u8>> = (0..RING)
            // SAFETY: `ctx` is alive.
            .map(|i| unsafe { raw_ctx.alloc(sizes[i % 8]).unwrap() })
            .collect();
        b.iter(|| {
            for (i, &size) in sizes.iter().enumerate() {
                let slot = &mut ring[i % RING];
                // SAFETY: the slot holds a live chunk of `ctx`, freed once
                // and replaced by a fresh one.
                unsafe {
                    raw::free(*slot).unwrap();
                    *slot = black_box(raw_ctx.alloc(size).unwrap());
                }
            }
        });
        for p in ring {
            // SAFETY: live chunk, freed once.
            unsafe { raw::free(p).unwrap() };
        }
    });

    fn ring_global<'a, A: GlobalAlloc>(
        a: &'a A,
        sizes: &'a [usize],
    ) -> impl FnMut(&mut criterion::Bencher) + 'a {
        move |b| {
            let mut ring: Vec<(*mut u8, Layout)> = (0..RING)
                .map(|i| {
                    let l = layout(sizes[i % 8]);
                    // SAFETY: non-zero size.
                    (unsafe { a.alloc(l) }, l)
                })
                .collect();
            b.iter(|| {
                for (i, &size) in sizes.iter().enumerate() {
                    let slot = &mut ring[i % RING];
                    let l = layout(size);
                    // SAFETY: the slot holds a live block with its layout,
                    // freed once and replaced by a fresh one.
                    unsafe {
                        a.dealloc(slot.0, slot.1);
                        let p = a.alloc(l);
                        assert!(!p.is_null());
                        *slot = (black_box(p), l);
                    }
                }
            });
            for (p, l) in ring {
                // SAFETY: live block with its layout, freed once.
                unsafe { a.dealloc(p, l) };
            }
        }
    }
    g.bench_function("glibc", ring_global(&System, &sizes));
    g.bench_function("mimalloc", ring_global(&MiMalloc, &sizes));
    g.finish();
}

/// `sizes.len()` allocations through a `GlobalAlloc`, then as many frees.
#[inline(always)]
fn many_global<A: GlobalAlloc>(a: &A, sizes: &[usize], ptrs: &mut Vec<*mut u8>) {
    for &size in sizes {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(layout(size)) };
        assert!(!p.is_null());
        ptrs.push(black_box(p));
    }
    for (p, &size) in ptrs.drain(..).zip(sizes) {
        // SAFETY: each block is live, freed once with its layout.
        unsafe { a.dealloc(p, layout(size)) };
    }
}

fn reset_many(c: &mut Criterion) {
    let cases: [(&str, &[usize]); 2] = [("32", &[32]), ("mixed", &MIXED)];
    for (name, pattern) in cases {
        let sizes = black_box(cycle_sizes(pattern, MANY));
        let mut g = c.benchmark_group(format!("reset_many/{name}"));
        g.throughput(Throughput::Elements(MANY as u64));

        g.bench_function("mcxt", |b| {
            let mut ctx = Context::new("reset_many");
            b.iter(|| {
                for &size in &sizes {
                    black_box(ctx.try_alloc_bytes(size).unwrap());
                }
                ctx.reset();
            });
        });

        let mut ptrs = Vec::with_capacity(MANY);
        g.bench_function("glibc", |b| {
            b.iter(|| many_global(&System, &sizes, &mut ptrs))
        });
        g.bench_function("mimalloc", |b| {
            b.iter(|| many_global(&MiMalloc, &sizes, &mut ptrs))
        });

        g.bench_function("bumpalo", |b| {
            let mut bump = Bump::new();
            b.iter(|| {
                for &size in &sizes {
                    black_box(bump.alloc_layout(layout(size)));
                }
                bump.reset();
            });
        });
        g.finish();
    }
}

fn context_create_delete(c: &mut Criterion) {
    let parent = Context::new("parent");
    let raw_parent = parent.as_raw();

    let mut g = c.benchmark_group("context_create_delete/empty");
    g.throughput(Throughput::Elements(CONTEXTS as u64));
    g.bench_function("mcxt_raw", |b| {
        b.iter(|| {
            for _ in 0..CONTEXTS {
                // SAFETY: the parent is alive; the child is deleted once and
                // not used afterwards.
                unsafe {
                    let child = MemoryContext::new_alloc_set(
                        Some(raw_parent),
                        "child",
                        AllocSetSizes::DEFAULT,
                    )
                    .unwrap();
                    black_box(child).delete();
                }
            }
        })
    });
    g.bench_function("mcxt_raw_small_sizes", |b| {
        b.iter(|| {
            for _ in 0..CONTEXTS {
                // SAFETY: as above.
                unsafe {
                    let child = MemoryContext::new_alloc_set(
                        Some(raw_parent),
                        "child",
                        AllocSetSizes::SMALL,
                    )
                    .unwrap();
                    black_box(child).delete();
                }
            }
        })
    });
    g.bench_function("mcxt_safe", |b| {
        b.iter(|| {
            for _ in 0..CONTEXTS {
                drop(black_box(parent.new_child("child")));
            }
        })
    });
    g.bench_function("mcxt_safe_root", |b| {
        b.iter(|| {
            for _ in 0..CONTEXTS {
                drop(black_box(Context::new("root")));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("child_10_allocs");
    g.throughput(Throughput::Elements(1));
    let size = black_box(32);
    g.bench_function("mcxt_raw", |b| {
        b.iter(|| {
            // SAFETY: the parent is alive; the child and its chunks are not
            // used after the delete.
            unsafe {
                let child =
                    MemoryContext::new_alloc_set(Some(raw_parent), "child", AllocSetSizes::DEFAULT)
                        .unwrap();
                for _ in 0..CHILD_ALLOCS {
                    black_box(child.alloc(size).unwrap());
                }
                child.delete();
            }
        })
    });
    g.bench_function("mcxt_safe", |b| {
        b.iter(|| {
            let child = parent.new_child("child");
            for _ in 0..CHILD_ALLOCS {
                black_box(child.try_alloc_bytes(size).unwrap());
            }
        })
    });
    fn ten_global<A: GlobalAlloc>(a: &A, size: usize) {
        let l = layout(size);
        let mut ptrs = [std::ptr::null_mut(); CHILD_ALLOCS];
        for p in &mut ptrs {
            // SAFETY: non-zero size.
            *p = black_box(unsafe { a.alloc(l) });
            assert!(!p.is_null());
        }
        for p in ptrs {
            // SAFETY: each block is live, freed once with its layout.
            unsafe { a.dealloc(p, l) };
        }
    }
    g.bench_function("glibc", |b| b.iter(|| ten_global(&System, size)));
    g.bench_function("mimalloc", |b| b.iter(|| ten_global(&MiMalloc, size)));
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            let bump = Bump::new();
            for _ in 0..CHILD_ALLOCS {
                black_box(bump.alloc_layout(layout(size)));
            }
        })
    });
    g.finish();
}

/// Grows one buffer from 8 bytes to `max` with `next(size)`; returns the
/// number of reallocs.
/// One growth step: the next buffer size.
type Step = fn(usize) -> usize;

fn growth_steps(max: usize, next: Step) -> u64 {
    let mut n = 0;
    let mut size = 8;
    while size < max {
        size = next(size);
        n += 1;
    }
    n
}

fn double(size: usize) -> usize {
    size * 2
}

fn plus8(size: usize) -> usize {
    size + 8
}

fn realloc_growth(c: &mut Criterion) {
    let ctx = Context::new("realloc");
    let raw_ctx = ctx.as_raw();
    let cases: [(&str, usize, Step); 2] = [
        ("double_to_64k", 64 * 1024, double),
        ("plus8_to_4k", 4096, plus8),
    ];
    for (name, max, next) in cases {
        let max = black_box(max);
        let mut g = c.benchmark_group(format!("realloc/{name}"));
        g.throughput(Throughput::Elements(growth_steps(max, next)));
        g.bench_function("mcxt", |b| {
            b.iter(|| {
                // SAFETY: `ctx` is alive; only the latest pointer is used,
                // and it is freed once at the end.
                unsafe {
                    let mut size = 8;
                    let mut p = raw_ctx.alloc(size).unwrap();
                    while size < max {
                        size = next(size);
                        p = black_box(raw::realloc(p, size).unwrap());
                    }
                    raw::free(p).unwrap();
                }
            })
        });
        fn grow_global<A: GlobalAlloc>(a: &A, max: usize, next: Step) {
            // SAFETY: non-zero sizes; only the latest pointer is used, with
            // its current layout, and it is freed once at the end.
            unsafe {
                let mut size = 8;
                let mut p = a.alloc(layout(size));
                while size < max {
                    let new = next(size);
                    p = a.realloc(p, layout(size), new);
                    assert!(!p.is_null());
                    p = black_box(p);
                    size = new;
                }
                a.dealloc(p, layout(size));
            }
        }
        g.bench_function("glibc", |b| b.iter(|| grow_global(&System, max, next)));
        g.bench_function("mimalloc", |b| b.iter(|| grow_global(&MiMalloc, max, next)));
        g.finish();
    }
}

/// A `GlobalAlloc` (glibc's `System`, `MiMalloc`) as an `allocator_api2`
/// allocator, so the same `Vec` code runs over every allocator.
#[derive(Clone, Copy)]
struct Ga<A>(A);

// SAFETY: blocks come from the wrapped GlobalAlloc and stay valid until
// deallocated; the wrapped allocators are stateless, so any copy of the
// handle can free what another allocated.
unsafe impl<A: GlobalAlloc> Allocator for Ga<A> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let dangling = NonNull::new(std::ptr::without_provenance_mut(layout.align())).unwrap();
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        // SAFETY: non-zero size.
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated here with this layout (trait contract).
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 || old.align() != new.align() {
            let p = self.allocate(new)?;
            // SAFETY: both blocks are live, the new one at least as large;
            // the old one is freed once (trait contract).
            unsafe {
                std::ptr::copy_nonoverlapping(ptr.as_ptr(), p.as_ptr().cast(), old.size());
                self.deallocate(ptr, old);
            }
            return Ok(p);
        }
        // SAFETY: `ptr` was allocated with `old`, same alignment, non-zero
        // new size (trait contract).
        let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, new.size()))
            .ok_or(AllocError)
    }
}

fn vec_push(c: &mut Criterion) {
    let mut g = c.benchmark_group("vec_push/10007_u64");
    g.throughput(Throughput::Elements(PUSHES as u64));
    let n = black_box(PUSHES as u64);

    let ctx = Context::new("vec_push");
    g.bench_function("mcxt", |b| {
        b.iter(|| {
            let mut v = allocator_api2::vec::Vec::new_in(&ctx);
            for i in 0..n {
                v.push(i);
            }
            black_box(&v);
        })
    });
    g.bench_function("glibc", |b| {
        b.iter(|| {
            let mut v = Vec::new();
            for i in 0..n {
                v.push(i);
            }
            black_box(&v);
        })
    });
    g.bench_function("glibc_a2vec", |b| {
        b.iter(|| {
            let mut v = allocator_api2::vec::Vec::new_in(Ga(System));
            for i in 0..n {
                v.push(i);
            }
            black_box(&v);
        })
    });
    g.bench_function("mimalloc", |b| {
        b.iter(|| {
            let mut v = allocator_api2::vec::Vec::new_in(Ga(MiMalloc));
            for i in 0..n {
                v.push(i);
            }
            black_box(&v);
        })
    });
    g.bench_function("bumpalo", |b| {
        let mut bump = Bump::new();
        b.iter(|| {
            {
                let mut v = bumpalo::collections::Vec::new_in(&bump);
                for i in 0..n {
                    v.push(i);
                }
                black_box(&v);
            }
            bump.reset();
        })
    });
    g.finish();
}

/// Criterion's defaults, with fewer bootstrap resamples (20k instead of
/// 100k) so the analysis of ~40 functions does not dominate the run on a
/// small machine; command-line options still override.
fn config() -> Criterion {
    Criterion::default().nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = small_pair, small_ring, reset_many, context_create_delete, realloc_growth, vec_push
}
criterion_main!(benches);
