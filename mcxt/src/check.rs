//! Consistency checks of a context tree (PostgreSQL's `MemoryContextCheck`).
//!
//! [`MemoryContext::check`](crate::raw::MemoryContext::check) walks a
//! subtree without recursion and, for each context, every block and every
//! chunk the kind has carved: each chunk header must name the kind and
//! lead back to its block, the blocks must add up to the bytes the context
//! accounts for, the subtree totals must add up, and parent and child
//! links must agree. With the `checking` feature it also verifies each
//! chunk's check word: sentinels of live chunks, the clobber pattern of
//! freed ones, and the kinds' counts of free chunks.
//!
//! The kinds walk their own blocks (`check` in each kind module) and
//! report what they find to a [`Checker`]; this module turns that into
//! [`Report`]s.

use crate::chunk::{read_header, Header, KindId, GENERAL_VALUE_BITS};
use crate::tree::ContextHeader;
use crate::ContextKind;
use alloc::vec::Vec;
use core::fmt;

/// A problem found by a check, or detected by the `checking` feature
/// during an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Bytes past the requested size were written (a sentinel was
    /// overwritten); `offset` is the first bad byte from the chunk start.
    SentinelOverwritten {
        /// First damaged byte, from the start of the chunk.
        offset: usize,
    },
    /// A freed chunk was written to; `offset` is the first changed byte.
    WriteAfterFree {
        /// First changed byte, from the start of the chunk.
        offset: usize,
    },
    /// A chunk was freed (or resized) after it had been freed.
    DoubleFree,
    /// A pointer whose header is not an mcxt chunk header.
    ForeignPointer {
        /// The word found before the pointer.
        header: u64,
    },
    /// `free`, `realloc`, `chunk_context` or `chunk_space` on a bump chunk.
    BumpChunk {
        /// The refused operation.
        operation: &'static str,
    },
    /// An operation on a context that was deleted (or never created).
    DeletedContext {
        /// The refused operation.
        operation: &'static str,
    },
    /// A chunk or block header that does not hold what it should.
    CorruptChunk {
        /// What is wrong.
        what: &'static str,
    },
    /// Two figures that should agree do not.
    Accounting {
        /// Which figures.
        what: &'static str,
        /// What the structure says.
        expected: usize,
        /// What was found.
        found: usize,
    },
    /// Tree links that do not agree (a child not pointing back to its parent).
    BrokenLink {
        /// What is wrong.
        what: &'static str,
    },
}

/// One detected problem: what, in which context, at which chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// What is wrong.
    pub problem: Problem,
    /// Name of the context, or `"?"` when it cannot be known safely (a
    /// deleted context, a foreign pointer).
    pub context: &'static str,
    /// Address of the chunk concerned, 0 when none.
    pub chunk: usize,
    /// Size the chunk was asked for, when known.
    pub requested: Option<usize>,
    /// Usable bytes of the chunk, when known.
    pub capacity: Option<usize>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "problem in memory context \"{}\": ", self.context)?;
        match self.problem {
            Problem::SentinelOverwritten { offset } => {
                write!(f, "detected write past chunk end at offset {offset}")?
            }
            Problem::WriteAfterFree { offset } => {
                write!(f, "detected write to a freed chunk at offset {offset}")?
            }
            Problem::DoubleFree => f.write_str("chunk freed twice (or resized after free)")?,
            Problem::ForeignPointer { header } => write!(
                f,
                "pointer not allocated by mcxt (or its header overwritten): header word 0x{header:016x}"
            )?,
            Problem::BumpChunk { operation } => {
                write!(f, "{operation} is not supported on a bump chunk")?
            }
            Problem::DeletedContext { operation } => {
                write!(f, "{operation} on a deleted context")?
            }
            Problem::CorruptChunk { what } => f.write_str(what)?,
            Problem::Accounting {
                what,
                expected,
                found,
            } => write!(f, "{what}: expected {expected}, found {found}")?,
            Problem::BrokenLink { what } => f.write_str(what)?,
        }
        if self.chunk != 0 {
            write!(f, " (chunk 0x{:x}", self.chunk)?;
            if let Some(r) = self.requested {
                write!(f, ", requested {r}")?;
            }
            if let Some(c) = self.capacity {
                write!(f, ", capacity {c}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// What a check walked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Contexts checked.
    pub contexts: usize,
    /// Blocks walked.
    pub blocks: usize,
    /// Chunks walked (live and free; bump chunks only with `checking`).
    pub chunks: usize,
    /// Chunks found live (known only with the `checking` feature).
    pub live_chunks: usize,
    /// Chunks found freed (known only with the `checking` feature).
    pub free_chunks: usize,
    /// Every problem found.
    pub problems: Vec<Report>,
}

impl CheckSummary {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a kind's walk reports to.
pub(crate) struct Checker<'a> {
    summary: &'a mut CheckSummary,
    context: &'static str,
    /// Chunks walked in the current context.
    pub(crate) chunks_here: usize,
    /// Chunks found freed in the current context.
    pub(crate) freed_here: usize,
}

impl Checker<'_> {
    /// Records a problem of the current context.
    #[cold]
    pub(crate) fn problem(&mut self, problem: Problem, chunk: *const u8) {
        self.summary.problems.push(Report {
            problem,
            context: self.context,
            chunk: chunk as usize,
            requested: None,
            capacity: None,
        });
    }

    /// Records a mismatch of two figures (nothing if they agree).
    pub(crate) fn agree(&mut self, what: &'static str, expected: usize, found: usize) {
        if expected != found {
            self.problem(
                Problem::Accounting {
                    what,
                    expected,
                    found,
                },
                core::ptr::null(),
            );
        }
    }

    /// Counts a block.
    pub(crate) fn block(&mut self) {
        self.summary.blocks += 1;
    }

    /// The header of a chunk on a shared block, if it names `kind` and
    /// leads back to `block_offset`; else reports and returns `None` (the
    /// walk of that block cannot go on).
    ///
    /// # Safety
    /// `p - 8 .. p` readable.
    pub(crate) unsafe fn shared_header(
        &mut self,
        p: *mut u8,
        kind: KindId,
        block_offset: usize,
    ) -> Option<Header> {
        // Everything but the value: kind, external bit (clear), offset.
        // SAFETY: caller contract.
        unsafe { self.header_like(p, Header::new(kind, 0, block_offset), GENERAL_VALUE_BITS) }
    }

    /// The header of the chunk at `p` if it equals `expected` in every bit
    /// but those of `free_bits`; else reports and returns `None` (the walk
    /// of that block cannot go on).
    ///
    /// # Safety
    /// `p - 8 .. p` readable.
    pub(crate) unsafe fn header_like(
        &mut self,
        p: *mut u8,
        expected: Header,
        free_bits: u64,
    ) -> Option<Header> {
        // SAFETY: caller contract.
        let hdr = unsafe { read_header(p) };
        if (hdr.0 ^ expected.0) & !free_bits != 0 {
            self.problem(
                Problem::CorruptChunk {
                    what: "chunk header overwritten (wrong kind, context or block offset)",
                },
                p,
            );
            return None;
        }
        Some(hdr)
    }

    /// True when the chunk at `p` carries the external header of `kind`.
    ///
    /// # Safety
    /// `p - 8 .. p` readable.
    pub(crate) unsafe fn is_external(&mut self, p: *mut u8, kind: KindId) -> bool {
        // SAFETY: caller contract.
        let hdr = unsafe { read_header(p) };
        hdr.is_external() && hdr.kind() == Some(kind)
    }

    /// Verifies an external chunk's header and contents.
    ///
    /// # Safety
    /// `p - 16 .. p + capacity` readable.
    pub(crate) unsafe fn external_chunk(&mut self, p: *mut u8, kind: KindId, capacity: usize) {
        // SAFETY: caller contract.
        let hdr = unsafe { read_header(p) };
        if hdr != Header::external(kind) {
            self.problem(
                Problem::CorruptChunk {
                    what: "header of a dedicated-block chunk overwritten",
                },
                p,
            );
            return;
        }
        // SAFETY: caller contract.
        unsafe { self.contents(p, capacity) };
    }

    /// Counts a chunk whose header was verified and, with the `checking`
    /// feature, verifies its check word, sentinels or clobber pattern.
    ///
    /// # Safety
    /// `p - 16 .. p + capacity` readable.
    pub(crate) unsafe fn contents(&mut self, p: *mut u8, capacity: usize) {
        self.summary.chunks += 1;
        self.chunks_here += 1;
        #[cfg(feature = "checking")]
        // SAFETY: caller contract.
        unsafe {
            use crate::checking::{
                first_mismatch, read_word, CheckWord, CLOBBER_BYTE, SENTINEL_BYTE,
            };
            match read_word(p) {
                CheckWord::Live(requested) if requested < capacity => {
                    self.summary.live_chunks += 1;
                    if let Some(offset) = first_mismatch(p, requested, capacity, SENTINEL_BYTE) {
                        self.chunk_problem(
                            Problem::SentinelOverwritten { offset },
                            p,
                            Some(requested),
                            capacity,
                        );
                    }
                }
                CheckWord::Freed(c) if c == capacity => {
                    self.summary.free_chunks += 1;
                    self.freed_here += 1;
                    if let Some(offset) = first_mismatch(p, 8.min(capacity), capacity, CLOBBER_BYTE)
                    {
                        self.chunk_problem(Problem::WriteAfterFree { offset }, p, None, capacity);
                    }
                }
                _ => self.chunk_problem(
                    Problem::CorruptChunk {
                        what: "check word overwritten",
                    },
                    p,
                    None,
                    capacity,
                ),
            }
        }
        #[cfg(not(feature = "checking"))]
        let _ = (p, capacity);
    }

    #[cfg(feature = "checking")]
    #[cold]
    fn chunk_problem(
        &mut self,
        problem: Problem,
        p: *mut u8,
        requested: Option<usize>,
        capacity: usize,
    ) {
        self.summary.problems.push(Report {
            problem,
            context: self.context,
            chunk: p as usize,
            requested,
            capacity: Some(capacity),
        });
    }
}

/// Checks one context's blocks and chunks (not its links or children).
///
/// # Safety
/// `ctx` alive.
unsafe fn check_context(ctx: *mut ContextHeader, summary: &mut CheckSummary) {
    // SAFETY: caller contract; the kind tag names the real type.
    unsafe {
        let mut checker = Checker {
            summary,
            context: (*ctx).name,
            chunks_here: 0,
            freed_here: 0,
        };
        let held = match (*ctx).kind {
            ContextKind::AllocSet => crate::aset::check(ctx.cast(), &mut checker),
            ContextKind::Generation => crate::generation::check(ctx.cast(), &mut checker),
            ContextKind::Slab => crate::slab::check(ctx.cast(), &mut checker),
            ContextKind::Bump => crate::bump::check(ctx.cast(), &mut checker),
        };
        checker.agree(
            "bytes of the context's blocks vs. its accounted bytes",
            (*ctx).own_bytes,
            held,
        );
    }
}

/// The problems of one context alone (used before a reset).
///
/// # Safety
/// `ctx` alive.
#[cfg(feature = "checking")]
pub(crate) unsafe fn check_one(ctx: *mut ContextHeader) -> Vec<Report> {
    let mut summary = CheckSummary::default();
    // SAFETY: caller contract.
    unsafe { check_context(ctx, &mut summary) };
    summary.problems
}

/// Checks the subtree under `root`, iteratively.
///
/// # Safety
/// `root` alive; the tree does not change meanwhile.
pub(crate) unsafe fn check_tree(root: *mut ContextHeader) -> CheckSummary {
    let mut summary = CheckSummary::default();
    let mut stack = alloc::vec![root];
    while let Some(ctx) = stack.pop() {
        summary.contexts += 1;
        // SAFETY: `ctx` is `root` or a child of a checked context.
        unsafe {
            #[cfg(feature = "checking")]
            if !crate::checking::is_registered(ctx) {
                summary.problems.push(Report {
                    problem: Problem::DeletedContext { operation: "check" },
                    context: "?",
                    chunk: 0,
                    requested: None,
                    capacity: None,
                });
                continue;
            }
            check_context(ctx, &mut summary);
            let name = (*ctx).name;
            let mut children = 0usize;
            let mut child = (*ctx).first_child;
            while !child.is_null() {
                if (*child).parent != ctx {
                    summary.problems.push(Report {
                        problem: Problem::BrokenLink {
                            what: "a child does not point back to its parent",
                        },
                        context: name,
                        chunk: 0,
                        requested: None,
                        capacity: None,
                    });
                }
                children = children.saturating_add((*child).subtree_bytes);
                stack.push(child);
                child = (*child).next_sibling;
            }
            let expected = (*ctx).own_bytes.saturating_add(children);
            if expected != (*ctx).subtree_bytes {
                summary.problems.push(Report {
                    problem: Problem::Accounting {
                        what: "subtree bytes vs. own bytes plus the children's subtrees",
                        expected,
                        found: (*ctx).subtree_bytes,
                    },
                    context: name,
                    chunk: 0,
                    requested: None,
                    capacity: None,
                });
            }
        }
    }
    summary
}
