//! Stress: many contexts, many chunks, sizes from 0 to past 1 GiB,
//! alignments up to 64 KiB. The full sizes run with
//! `cargo test --release -p mcxt --test stress -- --ignored`; CI runs the
//! reduced form (the same code with smaller counts).

use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocFlags, BlockSizes, ContextSpec};

fn root() -> MemoryContext {
    // SAFETY: no parent.
    unsafe {
        MemoryContext::create(None, "stress", ContextSpec::AllocSet(BlockSizes::DEFAULT)).unwrap()
    }
}

fn many_contexts(n: usize) {
    let top = root();
    // SAFETY: children are alive until the top is deleted.
    unsafe {
        let kinds = [
            ContextSpec::AllocSet(BlockSizes::SMALL),
            ContextSpec::Generation(BlockSizes::SMALL),
            ContextSpec::Slab {
                block_size: 1024,
                chunk_size: 16,
            },
            ContextSpec::Bump(BlockSizes::SMALL),
        ];
        for i in 0..n {
            let c = MemoryContext::create(Some(top), "c", kinds[i % 4]).unwrap();
            if i % 3 == 0 {
                c.alloc(16).unwrap();
            }
        }
        assert_eq!(top.children().count(), n);
        let snap = top.stats();
        assert_eq!(snap.contexts.len(), n + 1);
        assert_eq!(snap.total().total_bytes, top.mem_allocated(true));
        let mut text = String::new();
        top.write_stats(&mut text, 100, 100).unwrap();
        assert!(text.contains(&format!("{} more child contexts", n - 100)));
        top.reset();
        assert_eq!(top.mem_allocated(true), top.mem_allocated(false));
        top.delete();
    }
}

fn many_chunks(n: usize) {
    let top = root();
    // SAFETY: chunks used while alive; every other one freed once.
    unsafe {
        let mut kept = Vec::with_capacity(n / 2);
        for i in 0..n {
            let size = 8 + (i * 7919) % 200;
            let p = top.alloc(size).unwrap();
            *p.as_ptr() = i as u8;
            if i % 2 == 0 {
                raw::free(p).unwrap();
            } else {
                kept.push((p, i as u8));
            }
        }
        for &(p, v) in kept.iter().step_by(97) {
            assert_eq!(*p.as_ptr(), v);
        }
        let held = top.mem_allocated(false);
        assert!(held > n * 50, "{held}");
        top.reset();
        top.delete();
    }
}

fn sizes_and_alignments(huge: bool) {
    let top = root();
    // SAFETY: chunks used while alive, freed once.
    unsafe {
        let mut size = 0usize;
        while size <= 64 << 20 {
            let p = top.alloc(size).unwrap();
            if size > 0 {
                *p.as_ptr().add(size - 1) = 1;
            }
            raw::free(p).unwrap();
            size = if size == 0 { 1 } else { size * 3 };
        }
        for shift in 0..=16 {
            let align = 1usize << shift;
            let p = top
                .alloc_aligned(1000, align, AllocFlags::empty())
                .unwrap()
                .unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0);
            raw::free(p).unwrap();
        }
        if huge {
            let n = mcxt::MAX_ALLOC_SIZE + (1 << 20);
            assert!(top.alloc(n).is_err(), "over 1 GiB needs the huge flag");
            let p = top.alloc_extended(n, AllocFlags::HUGE).unwrap().unwrap();
            *p.as_ptr().add(n - 1) = 7;
            raw::free(p).unwrap();
        }
        assert_eq!(top.mem_allocated(false), top.counters().total_bytes);
        top.delete();
    }
}

#[test]
fn reduced_stress() {
    let scale = if cfg!(miri) { 1 } else { 100 };
    many_contexts(1_000 * scale / 100 + 200);
    many_chunks(10_000 * scale);
    sizes_and_alignments(false);
}

#[test]
#[ignore = "full size: run with --release -- --ignored"]
fn a_million_contexts() {
    many_contexts(1_000_000);
}

#[test]
#[ignore = "full size: run with --release -- --ignored"]
fn ten_million_chunks() {
    many_chunks(10_000_000);
}

#[test]
#[ignore = "allocates over 1 GiB: run with --release -- --ignored"]
fn sizes_past_one_gibibyte() {
    sizes_and_alignments(true);
}
