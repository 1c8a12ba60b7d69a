//! The replay program: a trace's operations compiled, before any timing,
//! into one 8-byte word per operation, the form the timed loop reads.
//!
//! # Why
//!
//! The replay loop is part of every measured number, so it must cost as
//! little as possible next to the allocator (the `null` backend measures
//! it). Replaying the parsed [`Op`]s directly has two costs that a word
//! stream avoids:
//!
//! * **bandwidth**: an [`Op`] is 24 bytes, so a 7-million-operation trace
//!   streams 170 MB per replay, far more than the caches hold; a word is
//!   8 bytes (56 MB). Streaming the words alone costs about 0.3 ns per
//!   operation on the development machine, the `Op`s about 1 ns.
//! * **branch prediction**: a `match` on the 9-way enum tag compiles to an
//!   indirect jump through a table, which the sequence of operations
//!   (allocations, frees and resets interleaved almost at random) makes
//!   mispredict often. The word layout lets the loop test the frequent
//!   cases with two or three conditional branches, ordered by frequency
//!   (`A` first, then `F`, then `X`), and send everything else to an
//!   out-of-line function. This halves the loop's cost on its own.
//!
//! Together they took the `null` backend from 2.6-4.1 ns per operation
//! to 0.7-0.9 on the shipped and shared traces (in the same runs, mcxt,
//! malloc and mimalloc got 0.4-1.5 ns per operation faster). It now runs
//! about 14-17 instructions per operation instead of 11-12.5: more, but
//! cheap ones. Tried and rejected: prefetching, a few operations ahead,
//! the backend's table slot of the chunk an `F` or `R` names. It made
//! every backend slower (the null loop by 0.4 ns per operation): most
//! `F`s name one of the last thousand chunks allocated, whose slot is
//! still in cache.
//!
//! # Layout
//!
//! Bit 0 tells an allocation (`0`) from any other operation (`1`):
//!
//! ```text
//!   A   | size: 32 | ctx: 28 | flags: 3 | 0 |     chunk = the next chunk id
//!   F   | chunk: 32 |       0: 28       | 0001 |
//!   R   | chunk: 32 | size: 25 | flags: 3 | 0011 |
//!   X   | ctx: 32   |       0: 28       | 0101 |
//!   O   | ctx: 32   |       0: 28       | 0111 |
//!   H   | ctx: 32   |       0: 28       | 1001 |
//!   D   | ctx: 32   |       0: 28       | 1011 |
//!   C   | parent+1: 32 | ctx: 26 | kind: 2 | 1101 |   spec = ctx, parent+1 = 0: a root
//!   ESC |        index: 60              | 1111 |     the op is escaped[index]
//! ```
//!
//! (most significant bits first). An `A` does not store its chunk id:
//! chunk ids are handed out in order, so it is a running counter, one
//! more than the chunk of the previous `A`. Whatever does not fit goes to
//! a side table of full [`Op`]s ([`Program::escaped`]) and takes an
//! escape word: every `P` (rare), an `A` with an alignment, a size of
//! 4 GiB or more, a context id of 2^28 or more (or a chunk id out of
//! order, which a valid trace never has), an `R` of 32 MiB or more, a `C`
//! of a context id of 2^26 or more (or whose `spec` is not its context
//! id, which a parsed trace never has). In the shipped and shared traces
//! fewer than 0.1% of the operations are escaped.
//!
//! Compiling is exact for any sequence of [`Op`]s, valid or not:
//! [`Program::decode`] gives back exactly the operations compiled.

use std::fmt;

use mcxt_trace::{ChunkId, ContextKind, CtxId, Flags, Op};

/// One operation of a [`Program`] (see the [layout](self#layout)).
pub type Word = u64;

/// The low bits of a non-`A` word that tell the operation.
pub(crate) const TAG_MASK: Word = 0xF;
/// Tag of `F`.
pub(crate) const TAG_FREE: Word = 0b0001;
/// Tag of `R`.
pub(crate) const TAG_REALLOC: Word = 0b0011;
/// Tag of `X`.
pub(crate) const TAG_RESET: Word = 0b0101;
/// Tag of `O`.
pub(crate) const TAG_RESET_ONLY: Word = 0b0111;
/// Tag of `H`.
pub(crate) const TAG_DELETE_CHILDREN: Word = 0b1001;
/// Tag of `D`.
pub(crate) const TAG_DELETE: Word = 0b1011;
/// Tag of `C`.
pub(crate) const TAG_CREATE: Word = 0b1101;
/// Tag of an escaped operation.
pub(crate) const TAG_ESCAPE: Word = 0b1111;

/// `A`: context ids below this fit in the word.
const A_CTX_LIMIT: u32 = 1 << 28;
/// `A`: sizes below this fit in the word.
const A_SIZE_LIMIT: u64 = 1 << 32;
/// `R`: sizes below this fit in the word.
const R_SIZE_LIMIT: u64 = 1 << 25;
/// `C`: context ids below this fit in the word.
const C_CTX_LIMIT: u32 = 1 << 26;
/// Escape indices below this fit in the word.
const ESCAPE_LIMIT: u64 = 1 << 60;

/// Whether the word is an in-word `A`.
#[inline(always)]
pub(crate) const fn is_alloc(w: Word) -> bool {
    w & 1 == 0
}

/// `A`: the context.
#[inline(always)]
pub(crate) const fn alloc_ctx(w: Word) -> CtxId {
    (w as u32) >> 4
}

/// `A`: the flags.
#[inline(always)]
pub(crate) const fn alloc_flags(w: Word) -> Flags {
    Flags::from_bits_truncate((w >> 1) as u8)
}

/// `A`: the size.
#[inline(always)]
pub(crate) const fn alloc_size(w: Word) -> u64 {
    w >> 32
}

/// `F`, `R`: the chunk; `X`, `O`, `H`, `D`: the context.
#[inline(always)]
pub(crate) const fn high(w: Word) -> u32 {
    (w >> 32) as u32
}

/// `R`: the flags.
#[inline(always)]
pub(crate) const fn realloc_flags(w: Word) -> Flags {
    Flags::from_bits_truncate((w >> 4) as u8)
}

/// `R`: the size.
#[inline(always)]
pub(crate) const fn realloc_size(w: Word) -> u64 {
    (w >> 7) & (R_SIZE_LIMIT - 1)
}

/// `C`: the new context (its `spec` too).
#[inline(always)]
pub(crate) const fn create_ctx(w: Word) -> CtxId {
    (w as u32) >> 6
}

/// `C`: the parent.
#[inline(always)]
pub(crate) const fn create_parent(w: Word) -> Option<CtxId> {
    high(w).checked_sub(1)
}

/// `C`: the kind.
#[inline(always)]
pub(crate) const fn create_kind(w: Word) -> ContextKind {
    ContextKind::ALL[(w >> 4) as usize & 3]
}

/// Escape: the index into [`Program::escaped`].
#[inline(always)]
pub(crate) const fn escape_index(w: Word) -> usize {
    (w >> 4) as usize
}

/// The chunk id an `A` gets after an `A` of chunk `chunk` (ids wrap, so
/// that compiling is exact for any sequence of operations).
#[inline(always)]
pub(crate) const fn after_alloc(chunk: ChunkId) -> ChunkId {
    chunk.wrapping_add(1)
}

/// A trace's operations compiled for replay (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq)]
pub struct Program {
    words: Vec<Word>,
    escaped: Vec<Op>,
}

impl Program {
    /// Compiles `ops`. Any sequence of operations compiles, and
    /// [`Program::decode`] gives it back exactly.
    pub fn compile(ops: &[Op]) -> Program {
        let mut words = Vec::with_capacity(ops.len());
        let mut escaped = Vec::new();
        let mut next_chunk: ChunkId = 0;
        for op in ops {
            let w = match *op {
                Op::Alloc {
                    chunk,
                    ctx,
                    size,
                    flags,
                    align,
                } => {
                    let fits = chunk == next_chunk
                        && align == 0
                        && ctx < A_CTX_LIMIT
                        && size < A_SIZE_LIMIT;
                    next_chunk = after_alloc(chunk);
                    fits.then(|| size << 32 | Word::from(ctx) << 4 | Word::from(flags.bits()) << 1)
                }
                Op::Free { chunk } => Some(Word::from(chunk) << 32 | TAG_FREE),
                Op::Realloc { chunk, size, flags } => (size < R_SIZE_LIMIT).then(|| {
                    Word::from(chunk) << 32
                        | size << 7
                        | Word::from(flags.bits()) << 4
                        | TAG_REALLOC
                }),
                Op::Reset { ctx } => Some(Word::from(ctx) << 32 | TAG_RESET),
                Op::ResetOnly { ctx } => Some(Word::from(ctx) << 32 | TAG_RESET_ONLY),
                Op::DeleteChildren { ctx } => Some(Word::from(ctx) << 32 | TAG_DELETE_CHILDREN),
                Op::Delete { ctx } => Some(Word::from(ctx) << 32 | TAG_DELETE),
                Op::Create {
                    ctx,
                    parent,
                    kind,
                    spec,
                } => {
                    let parent = match parent {
                        None => Some(0),
                        Some(p) => p.checked_add(1),
                    };
                    parent
                        .filter(|_| spec == ctx && ctx < C_CTX_LIMIT)
                        .map(|p| {
                            Word::from(p) << 32
                                | Word::from(ctx) << 6
                                | (kind.index() as Word) << 4
                                | TAG_CREATE
                        })
                }
                Op::SetParent { .. } => None,
            };
            words.push(w.unwrap_or_else(|| {
                let index = escaped.len() as u64;
                assert!(index < ESCAPE_LIMIT, "too many escaped operations");
                escaped.push(*op);
                index << 4 | TAG_ESCAPE
            }));
        }
        Program { words, escaped }
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there is no operation.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// One word per operation, in order.
    pub fn words(&self) -> &[Word] {
        &self.words
    }

    /// The escaped operations, in order (see the [layout](self#layout)).
    pub fn escaped(&self) -> &[Op] {
        &self.escaped
    }

    /// Bytes of memory the program takes (words and escaped operations).
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * size_of::<Word>() + self.escaped.capacity() * size_of::<Op>()
    }

    /// The operations, decoded in order: exactly those compiled.
    pub fn decode(&self) -> Decode<'_> {
        Decode {
            program: self,
            pos: 0,
            next_chunk: 0,
        }
    }

    /// The operation of word `w`, when the next in-word `A` gets chunk
    /// `next_chunk`.
    #[inline]
    pub(crate) fn decode_word(&self, w: Word, next_chunk: ChunkId) -> Op {
        if is_alloc(w) {
            return Op::Alloc {
                chunk: next_chunk,
                ctx: alloc_ctx(w),
                size: alloc_size(w),
                flags: alloc_flags(w),
                align: 0,
            };
        }
        match w & TAG_MASK {
            TAG_FREE => Op::Free { chunk: high(w) },
            TAG_REALLOC => Op::Realloc {
                chunk: high(w),
                size: realloc_size(w),
                flags: realloc_flags(w),
            },
            TAG_RESET => Op::Reset { ctx: high(w) },
            TAG_RESET_ONLY => Op::ResetOnly { ctx: high(w) },
            TAG_DELETE_CHILDREN => Op::DeleteChildren { ctx: high(w) },
            TAG_DELETE => Op::Delete { ctx: high(w) },
            TAG_CREATE => Op::Create {
                ctx: create_ctx(w),
                parent: create_parent(w),
                kind: create_kind(w),
                spec: create_ctx(w),
            },
            _ => self.escaped[escape_index(w)],
        }
    }
}

/// The chunk id the next in-word `A` gets after operation `op`.
#[inline(always)]
pub(crate) fn next_chunk_after(op: &Op, next_chunk: ChunkId) -> ChunkId {
    match *op {
        Op::Alloc { chunk, .. } => after_alloc(chunk),
        _ => next_chunk,
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("ops", &self.words.len())
            .field("escaped", &self.escaped.len())
            .finish_non_exhaustive()
    }
}

/// The operations of a [`Program`], in order; see [`Program::decode`].
#[derive(Clone, Debug)]
pub struct Decode<'p> {
    program: &'p Program,
    pos: usize,
    next_chunk: ChunkId,
}

impl Iterator for Decode<'_> {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let &w = self.program.words.get(self.pos)?;
        self.pos += 1;
        let op = self.program.decode_word(w, self.next_chunk);
        self.next_chunk = next_chunk_after(&op, self.next_chunk);
        Some(op)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.program.words.len() - self.pos;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Decode<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_round_trip() {
        let max = u32::MAX;
        let ops = vec![
            Op::Create {
                ctx: max,
                parent: Some(max),
                kind: ContextKind::Bump,
                spec: max,
            },
            Op::Create {
                ctx: C_CTX_LIMIT - 1,
                parent: Some(max - 1),
                kind: ContextKind::Slab,
                spec: C_CTX_LIMIT - 1,
            },
            Op::Create {
                ctx: 0,
                parent: None,
                kind: ContextKind::Generation,
                spec: 0,
            },
            Op::Create {
                ctx: 1,
                parent: Some(0),
                kind: ContextKind::AllocSet,
                spec: 2,
            },
            Op::Create {
                ctx: C_CTX_LIMIT,
                parent: Some(0),
                kind: ContextKind::AllocSet,
                spec: C_CTX_LIMIT,
            },
            Op::Alloc {
                chunk: 0,
                ctx: A_CTX_LIMIT - 1,
                size: A_SIZE_LIMIT - 1,
                flags: Flags::ZERO | Flags::HUGE | Flags::NO_OOM,
                align: 0,
            },
            Op::Alloc {
                chunk: 1,
                ctx: A_CTX_LIMIT,
                size: 0,
                flags: Flags::EMPTY,
                align: 0,
            },
            Op::Alloc {
                chunk: max,
                ctx: max,
                size: u64::MAX,
                flags: Flags::HUGE,
                align: 1 << 31,
            },
            // the counter wrapped: chunk 0 again fits in the word
            Op::Alloc {
                chunk: 0,
                ctx: 0,
                size: 1,
                flags: Flags::NO_OOM,
                align: 0,
            },
            Op::Realloc {
                chunk: max,
                size: R_SIZE_LIMIT - 1,
                flags: Flags::ZERO | Flags::HUGE | Flags::NO_OOM,
            },
            Op::Realloc {
                chunk: max,
                size: R_SIZE_LIMIT,
                flags: Flags::EMPTY,
            },
            Op::Free { chunk: max },
            Op::Reset { ctx: max },
            Op::ResetOnly { ctx: max },
            Op::DeleteChildren { ctx: max },
            Op::Delete { ctx: max },
            Op::SetParent {
                ctx: max,
                parent: None,
            },
        ];
        let p = Program::compile(&ops);
        assert_eq!(p.len(), ops.len());
        assert_eq!(p.decode().collect::<Vec<_>>(), ops);
        // three C, the two large A, the large R, P
        assert_eq!(p.escaped().len(), 7);
    }
}
