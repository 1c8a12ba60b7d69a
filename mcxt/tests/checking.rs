//! The `checking` feature: one test per detection. Each test makes the
//! mistake a caller can make through the raw API and asserts that it is
//! reported (context, chunk, sizes), refused when going on would be unsafe,
//! and that the context stays consistent afterwards.
//!
//! Run with `cargo test -p mcxt --features checking --test checking`.
#![cfg(feature = "checking")]

use mcxt::checking::{set_report_handler, CLOBBER_BYTE, SENTINEL_BYTE};
use mcxt::raw::{self, MemoryContext};
use mcxt::{AllocFlags, AllocSetSizes, BlockSizes, ContextSpec, ErrorKind, Problem, Report};
use std::cell::RefCell;
use std::ptr::NonNull;

thread_local! {
    static SEEN: RefCell<Vec<Report>> = const { RefCell::new(Vec::new()) };
}

fn record(r: &Report) {
    SEEN.with(|s| s.borrow_mut().push(*r));
}

/// Runs `f` with the recording handler and returns what it reported.
/// (The handler is process-wide; reports land in the calling thread's
/// list, so tests running in parallel do not see each other's.)
fn reports_of(f: impl FnOnce()) -> Vec<Report> {
    set_report_handler(Some(record));
    SEEN.with(|s| s.borrow_mut().clear());
    f();
    SEEN.with(|s| s.borrow_mut().drain(..).collect())
}

fn ctx(name: &'static str, spec: ContextSpec) -> MemoryContext {
    // SAFETY: a new root.
    unsafe { MemoryContext::create(None, name, spec).unwrap() }
}

fn aset(name: &'static str) -> MemoryContext {
    ctx(name, ContextSpec::AllocSet(AllocSetSizes::DEFAULT))
}

/// The kinds with chunk headers, as `free` sees them.
fn freeable_kinds() -> Vec<(ContextSpec, usize)> {
    vec![
        (ContextSpec::AllocSet(AllocSetSizes::DEFAULT), 40),
        (ContextSpec::AllocSet(AllocSetSizes::DEFAULT), 100_000),
        (ContextSpec::Generation(BlockSizes::DEFAULT), 40),
        (ContextSpec::Generation(BlockSizes::DEFAULT), 1 << 20),
        (
            ContextSpec::Slab {
                block_size: 8192,
                chunk_size: 40,
            },
            40,
        ),
    ]
}

#[test]
fn a_write_past_the_end_is_reported_on_free_in_every_kind() {
    for (spec, size) in freeable_kinds() {
        let c = ctx("overrun", spec);
        // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
        let r = reports_of(|| unsafe {
            let p = c.alloc(size).unwrap();
            assert_eq!(*p.as_ptr().add(size), SENTINEL_BYTE);
            *p.as_ptr().add(size) = 0;
            raw::free(p).unwrap(); // reported, and freed all the same
            assert!(c.check().is_ok());
            c.delete();
        });
        assert_eq!(r.len(), 1, "{spec:?}: {r:?}");
        assert_eq!(r[0].problem, Problem::SentinelOverwritten { offset: size });
        assert_eq!(r[0].context, "overrun");
        assert_eq!(r[0].requested, Some(size));
        assert!(r[0].capacity.unwrap() > size);
        assert!(r[0].to_string().contains("detected write past chunk end"));
    }
}

#[test]
fn a_write_past_the_end_is_reported_on_realloc_reset_delete_and_check() {
    let c = aset("overrun");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let p = c.alloc(10).unwrap();
        *p.as_ptr().add(11) = 1;
        let p = raw::realloc(p, 20).unwrap(); // reported; contents kept
        let q = c.alloc(24).unwrap();
        *q.as_ptr().add(24) = 2;
        let summary = c.check();
        assert_eq!(summary.problems.len(), 1);
        assert_eq!(
            summary.problems[0].problem,
            Problem::SentinelOverwritten { offset: 24 }
        );
        c.reset(); // reported again: the reset verifies live chunks
        let child = MemoryContext::new_alloc_set(Some(c), "child", AllocSetSizes::SMALL).unwrap();
        let s = child.alloc(3).unwrap();
        *s.as_ptr().add(5) = 3;
        child.delete(); // and so does a delete
        let _ = p;
        c.delete();
    });
    let offsets: Vec<_> = r
        .iter()
        .map(|r| match r.problem {
            Problem::SentinelOverwritten { offset } => (r.context, offset),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        offsets,
        [("overrun", 11), ("overrun", 24), ("child", 5)],
        "{r:?}"
    );
}

#[test]
fn aligned_chunks_are_guarded_too() {
    let c = aset("aligned");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let p = c
            .alloc_aligned(100, 256, AllocFlags::empty())
            .unwrap()
            .unwrap();
        assert_eq!(p.as_ptr() as usize % 256, 0);
        assert_eq!(raw::chunk_capacity(p).unwrap(), 100);
        *p.as_ptr().add(100) = 0;
        raw::free(p).unwrap();
        c.delete();
    });
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(matches!(r[0].problem, Problem::SentinelOverwritten { .. }));
}

#[test]
fn a_write_to_a_freed_chunk_is_reported_when_it_is_reused_and_by_check() {
    for spec in [
        ContextSpec::AllocSet(AllocSetSizes::DEFAULT),
        ContextSpec::Slab {
            block_size: 8192,
            chunk_size: 64,
        },
    ] {
        let c = ctx("uaf", spec);
        // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
        let r = reports_of(|| unsafe {
            // A neighbour keeps the block in use (an empty slab block
            // leaves the walk's lists until it is reused).
            let neighbour = c.alloc(64).unwrap();
            let p = c.alloc(64).unwrap();
            raw::free(p).unwrap();
            // Freed memory is clobbered (past the free-list link).
            assert_eq!(*p.as_ptr().add(8), CLOBBER_BYTE);
            assert_eq!(*p.as_ptr().add(63), CLOBBER_BYTE);
            *p.as_ptr().add(40) = 1; // the stale write
            let summary = c.check();
            assert_eq!(
                summary
                    .problems
                    .iter()
                    .map(|r| r.problem)
                    .collect::<Vec<_>>(),
                [Problem::WriteAfterFree { offset: 40 }]
            );
            let q = c.alloc(64).unwrap(); // the same chunk, handed out again
            assert_eq!(q, p);
            raw::free(neighbour).unwrap();
            c.delete();
        });
        assert_eq!(r.len(), 1, "{spec:?}: {r:?}");
        assert_eq!(r[0].problem, Problem::WriteAfterFree { offset: 40 });
        assert_eq!(r[0].chunk, r[0].chunk & !7);
    }
}

#[test]
fn a_double_free_is_reported_and_refused() {
    // Chunks on shared blocks: their memory stays the context's after a
    // free, so freeing again reads memory that is still allocated. (A
    // dedicated block goes back to the system at once; a second free of
    // it reads freed memory, which only Valgrind or ASan can catch.)
    for (spec, size) in freeable_kinds().into_iter().filter(|&(_, n)| n < 1000) {
        let c = ctx("twice", spec);
        // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
        let r = reports_of(|| unsafe {
            let keep = c.alloc(size).unwrap();
            let p = c.alloc(size).unwrap();
            raw::free(p).unwrap();
            let e = raw::free(p).unwrap_err();
            assert_eq!(e.kind, ErrorKind::DoubleFree);
            let e = raw::realloc(p, 8).unwrap_err();
            assert_eq!(e.kind, ErrorKind::DoubleFree);
            // Refused, so nothing changed: the free lists are sound.
            let summary = c.check();
            assert!(summary.is_ok(), "{:?}", summary.problems);
            let again = c.alloc(size).unwrap();
            let other = c.alloc(size).unwrap();
            assert_ne!(again, other);
            raw::free(keep).unwrap();
            c.delete();
        });
        assert_eq!(
            r.iter().map(|r| r.problem).collect::<Vec<_>>(),
            [Problem::DoubleFree, Problem::DoubleFree],
            "{spec:?}"
        );
    }
}

#[test]
fn a_foreign_pointer_is_reported_and_refused() {
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        // Zeroed memory and a pointer from the global allocator.
        let zeroed = [0u64; 4];
        let p = NonNull::new(zeroed.as_ptr().add(2) as *mut u8).unwrap();
        let e = raw::free(p).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadPointer { header: 0 }));
        // A pointer into another allocator's memory: as with glibc's own
        // chunk header, the 16 bytes before it are readable.
        let mut other = Box::new([0x0707_0707_0707_0707u64; 8]);
        let q = NonNull::new(other.as_mut_ptr().add(2).cast::<u8>()).unwrap();
        assert!(raw::realloc(q, 100).is_err());
        assert!(raw::chunk_context(q).is_err());
        assert_eq!(other[2], 0x0707_0707_0707_0707, "untouched");
    });
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r
        .iter()
        .all(|r| matches!(r.problem, Problem::ForeignPointer { .. })
            || matches!(r.problem, Problem::CorruptChunk { .. })));
    assert_eq!(r[0].problem, Problem::ForeignPointer { header: 0 });
}

#[test]
fn a_write_before_the_chunk_is_caught_before_its_header_is_trusted() {
    let c = aset("underrun");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let p = c.alloc(32).unwrap();
        // One byte before the chunk: the top byte of its header word (the
        // context's address, or the block offset). Trusting it would send
        // `free` to a wrong context or block.
        *p.as_ptr().sub(1) ^= 0x40;
        let e = raw::free(p).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadPointer { .. }));
        let summary = c.check();
        assert!(!summary.is_ok());
        *p.as_ptr().sub(1) ^= 0x40; // repair, then free for real
        raw::free(p).unwrap();
        c.delete();
    });
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(matches!(r[0].problem, Problem::CorruptChunk { .. }));
}

#[test]
fn free_realloc_and_chunk_queries_on_a_bump_chunk_are_reported_and_refused() {
    let c = ctx("bump", ContextSpec::Bump(BlockSizes::DEFAULT));
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let p = c.alloc(24).unwrap();
        assert!(raw::free(p).is_err());
        assert!(raw::realloc(p, 48).is_err());
        assert!(raw::chunk_context(p).is_err());
        assert!(raw::chunk_space(p).is_err());
        // The chunk is untouched and still the context's.
        *p.as_ptr().add(23) = 1;
        // Aligned bump chunks carry a redirect header with checking.
        let a = c
            .alloc_aligned(10, 64, AllocFlags::empty())
            .unwrap()
            .unwrap();
        assert_eq!(a.as_ptr() as usize % 64, 0);
        let summary = c.check();
        assert!(summary.is_ok(), "{:?}", summary.problems);
        assert_eq!(summary.chunks, 2);
        c.delete();
    });
    let ops: Vec<_> = r
        .iter()
        .map(|r| match r.problem {
            Problem::BumpChunk { operation } => operation,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ops, ["free", "realloc", "chunk_context", "chunk_space"]);
}

#[test]
fn a_deleted_context_is_reported_and_left_alone() {
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let top = aset("top");
        let gone = MemoryContext::new_alloc_set(Some(top), "gone", AllocSetSizes::SMALL).unwrap();
        gone.delete();
        // Nothing below touches the deleted context's memory: the
        // registry is consulted first.
        assert_eq!(gone.alloc(8).unwrap_err().kind, ErrorKind::DeletedContext);
        gone.reset();
        gone.delete();
        assert_eq!(
            gone.set_parent(Some(top)).unwrap_err().kind,
            ErrorKind::DeletedContext
        );
        assert!(MemoryContext::new_alloc_set(Some(gone), "x", AllocSetSizes::SMALL).is_err());
        assert!(!gone.check().is_ok());
        assert!(top.check().is_ok());
        top.delete();
    });
    let ops: Vec<_> = r
        .iter()
        .map(|r| match r.problem {
            Problem::DeletedContext { operation } => operation,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        [
            "alloc",
            "reset",
            "delete",
            "set_parent",
            "create a child of"
        ]
    );
}

#[test]
fn fresh_memory_is_filled_with_a_non_zero_pattern_unless_zeroing_is_asked() {
    let c = aset("fill");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let p = c.alloc(1000).unwrap();
        let bytes = std::slice::from_raw_parts(p.as_ptr(), 1000);
        assert!(bytes.iter().all(|&b| b != 0));
        let q = c.alloc(1000).unwrap();
        let other = std::slice::from_raw_parts(q.as_ptr(), 1000);
        assert_ne!(bytes, other, "each allocation gets its own pattern");
        let z = c.alloc_zero(1000).unwrap();
        assert!(std::slice::from_raw_parts(z.as_ptr(), 1000)
            .iter()
            .all(|&b| b == 0));
        // Growing in place fills the new part too, keeps the old.
        let g = c.alloc(10).unwrap();
        g.as_ptr().write_bytes(0, 10);
        let g = raw::realloc(g, 12).unwrap();
        let gb = std::slice::from_raw_parts(g.as_ptr(), 12);
        assert_eq!(&gb[..10], &[0; 10]);
        assert!(gb[10..].iter().all(|&b| b != 0));
        assert_eq!(raw::chunk_capacity(g).unwrap(), 12);
        c.delete();
    });
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn reset_clobbers_the_kept_block() {
    let c = aset("wipe");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let p = c.alloc(100).unwrap();
        c.reset();
        // The first block is kept: reading it is sound, and shows the wipe.
        let bytes = std::slice::from_raw_parts(p.as_ptr(), 100);
        assert!(bytes.iter().all(|&b| b == CLOBBER_BYTE));
        c.delete();
    });
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn check_walks_every_kind_and_counts_chunks() {
    let top = aset("top");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    let r = reports_of(|| unsafe {
        let mut live = 0;
        let mut freed = 0;
        for spec in [
            ContextSpec::AllocSet(AllocSetSizes::SMALL),
            ContextSpec::Generation(BlockSizes::SMALL),
            ContextSpec::Slab {
                block_size: 1024,
                chunk_size: 24,
            },
            ContextSpec::Bump(BlockSizes::SMALL),
        ] {
            let c = MemoryContext::create(Some(top), "kid", spec).unwrap();
            let mut ptrs = Vec::new();
            for _ in 0..200 {
                ptrs.push(c.alloc(24).unwrap());
            }
            live += 200;
            if spec != ContextSpec::Bump(BlockSizes::SMALL) {
                for p in ptrs.iter().step_by(3) {
                    raw::free(*p).unwrap();
                    freed += 1;
                    live -= 1;
                }
            }
        }
        let s = top.check();
        assert!(s.is_ok(), "{:?}", s.problems);
        assert_eq!(s.contexts, 5);
        assert_eq!(s.live_chunks, live);
        // Generation chunks freed in a block that emptied are gone with
        // it; the others are counted as freed (AllocSet's remainders too).
        assert!(s.free_chunks >= freed / 2, "{s:?}");
        assert!(s.blocks > 4);
        top.delete();
    });
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn a_deep_chain_is_checked_without_recursion() {
    const DEPTH: usize = if cfg!(miri) { 100 } else { 20_000 };
    let top = aset("top");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    unsafe {
        let mut c = top;
        for _ in 0..DEPTH {
            c = MemoryContext::new_alloc_set(Some(c), "link", AllocSetSizes::SMALL).unwrap();
        }
        let s = top.check();
        assert!(s.is_ok());
        assert_eq!(s.contexts, DEPTH + 1);
        top.delete();
    }
}

/// The default handler: the message on stderr, then abort. Run in a child
/// process (this test binary, filtered to the ignored helper below).
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn the_default_handler_prints_and_aborts() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "double_free_with_the_default_handler",
            "--ignored",
        ])
        .args(["--test-threads", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "SIGABRT");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mcxt: problem in memory context \"?\": chunk freed twice"),
        "{stderr}"
    );
}

#[test]
#[ignore = "helper of the_default_handler_prints_and_aborts (aborts)"]
fn double_free_with_the_default_handler() {
    set_report_handler(None);
    let c = aset("abort");
    // SAFETY: chunks are used while live; each deliberate mistake touches memory the context still owns.
    unsafe {
        let p = c.alloc(16).unwrap();
        raw::free(p).unwrap();
        let _ = raw::free(p);
    }
    unreachable!("the default handler aborts");
}
