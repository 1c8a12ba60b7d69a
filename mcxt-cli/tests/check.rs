//! Checked replays: every allocator keeps every chunk intact, on the tiny
//! trace (every operation) and on the shipped trace.

mod common;

use mcxt_cli::bench::check;
use mcxt_cli::replay::Allocator;

const ALL: [Allocator; 4] = [
    Allocator::Mcxt,
    Allocator::Malloc,
    Allocator::Mimalloc,
    Allocator::Null,
];

#[test]
fn tiny_trace_checks_clean_with_every_allocator() {
    let t = common::tiny_trace();
    for a in ALL {
        let r = check(&t, a);
        assert!(r.ok(), "{a}: {}", r.display(&t));
        if a != Allocator::Null {
            // 14 allocations + 4 reallocs (before and after) + frees and
            // deaths: every chunk was verified at least once
            assert!(r.chunks_verified >= 14, "{a}: {}", r.chunks_verified);
        }
    }
}

#[test]
fn shipped_trace_checks_clean_with_every_allocator() {
    let t = common::shipped_trace();
    for a in ALL {
        let r = check(&t, a);
        assert_eq!(r.errors, 0, "{a}: {}", r.display(&t));
        if a != Allocator::Null {
            // every chunk allocated is verified when it dies (or at the end)
            assert!(r.chunks_verified >= u64::from(t.n_chunks), "{a}");
        }
    }
}

/// The checker must notice corruption: a trace where two chunks would
/// overlap cannot be made with a real allocator, so corrupt a chunk by
/// hand through the pattern functions instead.
#[test]
fn patterns_detect_changes() {
    let mut buf = vec![0u8; 64];
    mcxt_cli::check::fill(3, &mut buf);
    assert_eq!(mcxt_cli::check::first_mismatch(3, &buf), None);
    buf[10] = buf[10].wrapping_add(1);
    assert_eq!(mcxt_cli::check::first_mismatch(3, &buf).unwrap().0, 10);
}

/// A backend that misbehaves: it forwards everything to glibc malloc, but
/// loses the first byte of every reallocated chunk, and leaves one dirty
/// byte in one zeroed allocation in a thousand.
mod sabotage {
    use std::ptr::NonNull;

    use mcxt_cli::replay::libc_malloc::MallocBackend;
    use mcxt_cli::replay::{Backend, ValidTrace};
    use mcxt_trace::{ChunkId, CtxId, Flags};

    pub struct Sabotage(MallocBackend);

    impl Backend for Sabotage {
        const NAME: &'static str = "sabotage";
        const EXACT_PEAK: bool = false;
        fn new(trace: &ValidTrace) -> Self {
            Sabotage(MallocBackend::new(trace))
        }
        /// # Safety
        /// The trait contract.
        unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>, spec: u32) {
            // SAFETY: forwarded contract.
            unsafe { self.0.create(ctx, parent, spec) }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn alloc(
            &mut self,
            chunk: ChunkId,
            ctx: CtxId,
            size: usize,
            flags: Flags,
            align: u32,
        ) {
            // SAFETY: forwarded contract.
            unsafe { self.0.alloc(chunk, ctx, size, flags, align) };
            if flags.zero() && size > 0 && chunk % 1000 == 7 {
                let p = self.0.chunk_ptr(chunk).unwrap();
                // SAFETY: a fresh chunk of `size` > 0 bytes.
                unsafe { *p.as_ptr() = 1 };
            }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, flags: Flags) {
            // SAFETY: forwarded contract.
            unsafe { self.0.realloc(chunk, size, flags) };
            let p = self.0.chunk_ptr(chunk).unwrap();
            // SAFETY: the chunk is live with at least 1 byte (the backend
            // reallocates size 0 as 1 byte): the deliberate corruption.
            unsafe { *p.as_ptr() ^= 0xff };
        }
        /// # Safety
        /// The trait contract.
        unsafe fn free(&mut self, chunk: ChunkId) {
            // SAFETY: forwarded contract.
            unsafe { self.0.free(chunk) }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn reset(&mut self, ctx: CtxId) {
            // SAFETY: forwarded contract.
            unsafe { self.0.reset(ctx) }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn reset_only(&mut self, ctx: CtxId) {
            // SAFETY: forwarded contract.
            unsafe { self.0.reset_only(ctx) }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn delete_children(&mut self, ctx: CtxId) {
            // SAFETY: forwarded contract.
            unsafe { self.0.delete_children(ctx) }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn delete(&mut self, ctx: CtxId) {
            // SAFETY: forwarded contract.
            unsafe { self.0.delete(ctx) }
        }
        /// # Safety
        /// The trait contract.
        unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
            // SAFETY: forwarded contract.
            unsafe { self.0.set_parent(ctx, parent) }
        }
        fn finish(&mut self) {
            self.0.finish()
        }
        fn held_bytes(&self) -> u64 {
            self.0.held_bytes()
        }
        fn chunk_ptr(&self, chunk: ChunkId) -> Option<NonNull<u8>> {
            self.0.chunk_ptr(chunk)
        }
    }
}

#[test]
fn checker_reports_corruption_with_the_operation() {
    use mcxt_cli::replay::checked::Checked;
    use mcxt_cli::replay::Replay;

    let t = common::shipped_trace();
    let mut r = Replay::<Checked<sabotage::Sabotage>>::new(&t);
    r.run_all();
    r.finish();
    let rep = r.backend().report().clone();
    let text = rep.display(&t).to_string();
    eprintln!("{text}");
    assert!(rep.errors >= 2, "{text}");
    assert!(text.contains("corrupted by repalloc"), "{text}");
    assert!(text.contains("is not zeroed"), "{text}");
    // errors name the operation and its trace line
    assert!(text.contains("\n  op "), "{text}");
}
