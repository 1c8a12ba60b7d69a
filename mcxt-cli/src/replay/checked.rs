//! [`Checked`]: a backend wrapping another one and verifying the memory of
//! every chunk (the `--check` mode; patterns and report in
//! [`crate::check`]).
//!
//! It keeps its own shadow of the contexts and live chunks (a [`Tree`]
//! whose payload is the chunk's requested size and alignment) to know
//! which chunks die with a reset or delete, and verifies them before
//! forwarding the operation to the wrapped backend.

use std::ptr::NonNull;

use mcxt_trace::{ChunkId, CtxId, Flags};

use super::tree::Tree;
use super::{Backend, ValidTrace};
use crate::check::{self, CheckReport};

/// What the checker knows of a live chunk.
#[derive(Clone, Copy, Debug)]
struct Meta {
    size: usize,
    align: u32,
}

/// A backend that verifies the memory of backend `B` (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct Checked<B> {
    inner: B,
    shadow: Tree<Meta>,
    /// Operations applied since the start of the replay.
    ops: usize,
    report: CheckReport,
}

impl<B: Backend> Checked<B> {
    /// The report so far.
    pub fn report(&self) -> &CheckReport {
        &self.report
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Index of the operation being applied (for error reports).
    fn op(&self) -> Option<usize> {
        self.ops.checked_sub(1)
    }

    /// Starts an operation.
    #[inline(always)]
    fn tick(&mut self) {
        self.ops += 1;
    }

    /// Runs `f` on the first `len` bytes of a live chunk of `B`; `None`
    /// if `B` has no memory.
    fn with_bytes<R>(
        inner: &B,
        chunk: ChunkId,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Option<R> {
        let p = inner.chunk_ptr(chunk)?;
        // `Checked` asks only for chunks live in `inner` (the shadow mirrors
        // the trace, which `inner` follows), for at most their requested size.
        // SAFETY: see above; nothing else touches the chunk while `f` runs.
        let buf = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) };
        Some(f(buf))
    }

    fn check_align(
        report: &mut CheckReport,
        op: Option<usize>,
        p: NonNull<u8>,
        chunk: ChunkId,
        align: u32,
    ) {
        if align != 0 && (p.as_ptr() as usize) % align as usize != 0 {
            report.error(op, || {
                format!("chunk {} at {p:p} is not aligned to {align}", chunk + 1)
            });
        }
    }

    /// Verifies the pattern of a live chunk (all of its `len` first bytes).
    fn verify(
        inner: &B,
        report: &mut CheckReport,
        op: Option<usize>,
        chunk: ChunkId,
        len: usize,
        when: &str,
    ) {
        let mismatch = Self::with_bytes(inner, chunk, len, |buf| check::first_mismatch(chunk, buf));
        if let Some(m) = mismatch {
            report.chunks_verified += 1;
            report.bytes_verified += len as u64;
            if let Some((at, found, expected)) = m {
                report.error(op, || {
                    format!(
                        "chunk {} ({len} bytes) corrupted {when}: byte {at} is {found:#04x}, expected {expected:#04x}",
                        chunk + 1
                    )
                });
            }
        }
    }

    /// The callback verifying each chunk that dies with a context.
    fn dying<'a>(
        inner: &'a B,
        report: &'a mut CheckReport,
        op: Option<usize>,
    ) -> impl FnMut(ChunkId, Meta) + 'a {
        move |chunk, meta| {
            Self::verify(inner, report, op, chunk, meta.size, "when its context died")
        }
    }
}

impl<B: Backend> Backend for Checked<B> {
    const NAME: &'static str = B::NAME;
    const EXACT_PEAK: bool = B::EXACT_PEAK;

    fn new(trace: &ValidTrace) -> Self {
        Checked {
            inner: B::new(trace),
            shadow: Tree::new(trace.n_contexts, trace.n_chunks, Meta { size: 0, align: 0 }),
            ops: 0,
            report: CheckReport::default(),
        }
    }

    /// # Safety
    /// The [trait contract](Backend#contract-of-the-unsafe-methods), which
    /// is passed on to the wrapped backend.
    unsafe fn create(&mut self, ctx: CtxId, parent: Option<CtxId>, spec: u32) {
        self.tick();
        // SAFETY: the trace's ids (forwarded contract).
        unsafe { self.shadow.create(ctx, parent) };
        // SAFETY: forwarded contract.
        unsafe { self.inner.create(ctx, parent, spec) }
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn alloc(&mut self, chunk: ChunkId, ctx: CtxId, size: usize, flags: Flags, align: u32) {
        self.tick();
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc(chunk, ctx, size, flags, align) };
        let op = self.op();
        if let Some(p) = self.inner.chunk_ptr(chunk) {
            Self::check_align(&mut self.report, op, p, chunk, align);
        }
        let zero = flags.zero();
        let nonzero = Self::with_bytes(&self.inner, chunk, size, |buf| {
            let nz = if zero {
                check::first_nonzero(buf)
            } else {
                None
            };
            check::fill(chunk, buf);
            nz
        });
        if let Some(Some((at, found))) = nonzero {
            self.report.error(op, || {
                format!(
                    "chunk {} ({size} bytes, z) is not zeroed: byte {at} is {found:#04x}",
                    chunk + 1
                )
            });
        }
        // SAFETY: the trace's ids (forwarded contract).
        unsafe { self.shadow.add_chunk(chunk, ctx, Meta { size, align }) };
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn realloc(&mut self, chunk: ChunkId, size: usize, flags: Flags) {
        self.tick();
        let op = self.op();
        // SAFETY: a live chunk (forwarded contract).
        let meta = unsafe { self.shadow.payload(chunk) };
        Self::verify(
            &self.inner,
            &mut self.report,
            op,
            chunk,
            meta.size,
            "before repalloc",
        );
        // SAFETY: forwarded contract.
        unsafe { self.inner.realloc(chunk, size, flags) };
        if let Some(p) = self.inner.chunk_ptr(chunk) {
            Self::check_align(&mut self.report, op, p, chunk, meta.align);
        }
        let kept = meta.size.min(size);
        Self::verify(
            &self.inner,
            &mut self.report,
            op,
            chunk,
            kept,
            "by repalloc",
        );
        Self::with_bytes(&self.inner, chunk, size, |buf| check::fill(chunk, buf));
        // SAFETY: a live chunk (forwarded contract).
        unsafe { self.shadow.set_payload(chunk, Meta { size, ..meta }) };
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn free(&mut self, chunk: ChunkId) {
        self.tick();
        let op = self.op();
        // SAFETY: a live chunk (forwarded contract).
        let meta = unsafe { self.shadow.remove_chunk(chunk) };
        Self::verify(
            &self.inner,
            &mut self.report,
            op,
            chunk,
            meta.size,
            "before pfree",
        );
        // SAFETY: forwarded contract.
        unsafe { self.inner.free(chunk) }
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn reset(&mut self, ctx: CtxId) {
        self.tick();
        let op = self.op();
        // SAFETY: a live context (forwarded contract).
        unsafe {
            self.shadow
                .reset(ctx, Self::dying(&self.inner, &mut self.report, op))
        };
        // SAFETY: forwarded contract.
        unsafe { self.inner.reset(ctx) }
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn reset_only(&mut self, ctx: CtxId) {
        self.tick();
        let op = self.op();
        // SAFETY: a live context (forwarded contract).
        unsafe {
            self.shadow
                .reset_only(ctx, Self::dying(&self.inner, &mut self.report, op))
        };
        // SAFETY: forwarded contract.
        unsafe { self.inner.reset_only(ctx) }
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn delete_children(&mut self, ctx: CtxId) {
        self.tick();
        let op = self.op();
        // SAFETY: a live context (forwarded contract).
        unsafe {
            self.shadow
                .delete_children(ctx, Self::dying(&self.inner, &mut self.report, op))
        };
        // SAFETY: forwarded contract.
        unsafe { self.inner.delete_children(ctx) }
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn delete(&mut self, ctx: CtxId) {
        self.tick();
        let op = self.op();
        // SAFETY: a live context (forwarded contract).
        unsafe {
            self.shadow
                .delete(ctx, Self::dying(&self.inner, &mut self.report, op))
        };
        // SAFETY: forwarded contract.
        unsafe { self.inner.delete(ctx) }
    }

    /// # Safety
    /// As [`Checked::create`].
    unsafe fn set_parent(&mut self, ctx: CtxId, parent: Option<CtxId>) {
        self.tick();
        // SAFETY: live contexts (forwarded contract).
        unsafe { self.shadow.set_parent(ctx, parent) };
        // SAFETY: forwarded contract.
        unsafe { self.inner.set_parent(ctx, parent) }
    }

    fn finish(&mut self) {
        self.ops = 0; // errors of the final delete have no operation
        self.shadow
            .delete_all(Self::dying(&self.inner, &mut self.report, None));
        self.inner.finish();
    }

    fn held_bytes(&self) -> u64 {
        self.inner.held_bytes()
    }

    fn chunk_ptr(&self, chunk: ChunkId) -> Option<NonNull<u8>> {
        self.inner.chunk_ptr(chunk)
    }

    fn substituted_kinds(&self) -> Vec<&'static str> {
        self.inner.substituted_kinds()
    }
}
