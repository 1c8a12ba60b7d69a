//! The data model of a parsed trace: context kinds, flags, operations,
//! creation parameters and errors.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// Dense, 0-based context index: the trace's context id `1` is `0`, id `2`
/// is `1`, and so on. Contexts are numbered in order of creation, so a
/// `CtxId` can index a `Vec` of per-context state of length
/// [`Trace::n_contexts`](crate::Trace::n_contexts).
pub type CtxId = u32;

/// Dense, 0-based chunk index: the trace's chunk id `1` is `0`. Chunks are
/// numbered in order of allocation (`A`), so a `ChunkId` can index a `Vec`
/// of length [`Trace::n_chunks`](crate::Trace::n_chunks).
pub type ChunkId = u32;

/// The four PostgreSQL memory-context implementations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextKind {
    /// `AllocSetContextCreate` (trace name `aset`): p1..p3 are
    /// minContextSize, initBlockSize, maxBlockSize.
    AllocSet,
    /// `GenerationContextCreate` (trace name `generation`): p1..p3 are
    /// minContextSize, initBlockSize, maxBlockSize.
    Generation,
    /// `SlabContextCreate` (trace name `slab`): p1 is blockSize, p2 is
    /// chunkSize, p3 is always 0. Every allocation has exactly chunkSize
    /// bytes.
    Slab,
    /// `BumpContextCreate` (trace name `bump`): p1..p3 are minContextSize,
    /// initBlockSize, maxBlockSize. Its chunks are never freed or
    /// reallocated individually.
    Bump,
}

impl ContextKind {
    /// All kinds, in declaration order (`ALL[k.index()] == k`).
    pub const ALL: [ContextKind; 4] = [
        ContextKind::AllocSet,
        ContextKind::Generation,
        ContextKind::Slab,
        ContextKind::Bump,
    ];

    /// The name used in trace files: `aset`, `generation`, `slab`, `bump`.
    pub const fn name(self) -> &'static str {
        match self {
            ContextKind::AllocSet => "aset",
            ContextKind::Generation => "generation",
            ContextKind::Slab => "slab",
            ContextKind::Bump => "bump",
        }
    }

    /// Parses a trace-file kind name (`aset`, `generation`, `slab`, `bump`).
    pub fn from_name(name: &str) -> Option<ContextKind> {
        Self::from_bytes(name.as_bytes())
    }

    pub(crate) fn from_bytes(name: &[u8]) -> Option<ContextKind> {
        match name {
            b"aset" => Some(ContextKind::AllocSet),
            b"generation" => Some(ContextKind::Generation),
            b"slab" => Some(ContextKind::Slab),
            b"bump" => Some(ContextKind::Bump),
            _ => None,
        }
    }

    /// Position of this kind in [`ContextKind::ALL`] (0..4).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ContextKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Allocation flags of an `A` or `R` line: a set of `z` (zero the memory,
/// `palloc0`), `h` (huge allocation allowed) and `n` (no OOM error: return
/// NULL instead). Written as `-` when empty.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flag (`-`).
    pub const EMPTY: Flags = Flags(0);
    /// `z`: zero the memory (`palloc0`, `MCXT_ALLOC_ZERO`).
    pub const ZERO: Flags = Flags(1);
    /// `h`: allocations over 1 GiB - 1 are allowed (`MCXT_ALLOC_HUGE`).
    pub const HUGE: Flags = Flags(2);
    /// `n`: return NULL instead of raising an out-of-memory error
    /// (`MCXT_ALLOC_NO_OOM`).
    pub const NO_OOM: Flags = Flags(4);

    const ALL_BITS: u8 = 7;

    /// Flags from raw bits; `None` if a bit other than 1, 2, 4 is set.
    pub const fn from_bits(bits: u8) -> Option<Flags> {
        if bits & !Self::ALL_BITS == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// Flags from raw bits, dropping unknown bits.
    pub const fn from_bits_truncate(bits: u8) -> Flags {
        Flags(bits & Self::ALL_BITS)
    }

    /// The raw bits: `ZERO` = 1, `HUGE` = 2, `NO_OOM` = 4.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// `z` is set: the memory must be zeroed.
    pub const fn zero(self) -> bool {
        self.0 & Self::ZERO.0 != 0
    }

    /// `h` is set: the request may exceed 1 GiB - 1.
    pub const fn huge(self) -> bool {
        self.0 & Self::HUGE.0 != 0
    }

    /// `n` is set: failure returns NULL instead of an error.
    pub const fn no_oom(self) -> bool {
        self.0 & Self::NO_OOM.0 != 0
    }

    /// No flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Parses a flags field: `-`, or distinct letters from `z`, `h`, `n`.
    pub(crate) fn parse(s: &[u8]) -> Option<Flags> {
        if s == b"-" {
            return Some(Flags::EMPTY);
        }
        if s.is_empty() {
            return None;
        }
        let mut bits = 0u8;
        for &c in s {
            let bit = match c {
                b'z' => Self::ZERO.0,
                b'h' => Self::HUGE.0,
                b'n' => Self::NO_OOM.0,
                _ => return None,
            };
            if bits & bit != 0 {
                return None;
            }
            bits |= bit;
        }
        Some(Flags(bits))
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// Writes the trace form: `-` when empty, else the letters in the order
/// `z`, `h`, `n`.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        if self.zero() {
            f.write_str("z")?;
        }
        if self.huge() {
            f.write_str("h")?;
        }
        if self.no_oom() {
            f.write_str("n")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

/// One operation (one non-comment line of the trace), with dense 0-based
/// ids.
///
/// Parents are `Option<CtxId>`: `None` is the trace's `-` (a root
/// context). The enum is `Copy` and 24 bytes, so a 7-million-operation
/// trace takes about 170 MB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `C ctx parent kind p1 p2 p3 name`: create context `ctx` under
    /// `parent` (`None` = a root). Its parameters and name are
    /// `Trace::creates[spec]`; in a parsed trace `spec == ctx`.
    Create {
        /// The new context (always the next unused id).
        ctx: CtxId,
        /// Its parent, `None` for a root context.
        parent: Option<CtxId>,
        /// Its implementation.
        kind: ContextKind,
        /// Index into [`Trace::creates`](crate::Trace::creates).
        spec: u32,
    },
    /// `A chunk ctx size flags [align]`: allocate `size` bytes in `ctx`;
    /// the result is the new chunk `chunk`.
    Alloc {
        /// The new chunk (always the next unused id).
        chunk: ChunkId,
        /// The context allocated in.
        ctx: CtxId,
        /// Requested size in bytes (may be 0).
        size: u64,
        /// `z`, `h`, `n` flags.
        flags: Flags,
        /// Requested alignment in bytes (a power of two, at most 2^31), or
        /// 0 when the line has no align field (the default, 8).
        align: u32,
    },
    /// `R chunk size [flags]`: `repalloc` the chunk to `size` bytes. The
    /// chunk keeps its id, its context and its alignment.
    Realloc {
        /// The chunk reallocated.
        chunk: ChunkId,
        /// New requested size in bytes.
        size: u64,
        /// Flags (empty when the field is absent or `-`).
        flags: Flags,
    },
    /// `F chunk`: `pfree` the chunk.
    Free {
        /// The chunk freed.
        chunk: ChunkId,
    },
    /// `X ctx`: `MemoryContextReset`: delete every descendant, then free
    /// every chunk of `ctx`.
    Reset {
        /// The context reset.
        ctx: CtxId,
    },
    /// `O ctx`: `MemoryContextResetOnly`: free every chunk of `ctx`;
    /// children are untouched.
    ResetOnly {
        /// The context reset.
        ctx: CtxId,
    },
    /// `H ctx`: `MemoryContextDeleteChildren`: delete every descendant of
    /// `ctx`.
    DeleteChildren {
        /// The context whose descendants are deleted.
        ctx: CtxId,
    },
    /// `D ctx`: `MemoryContextDelete`: delete `ctx` and every descendant.
    Delete {
        /// The context deleted.
        ctx: CtxId,
    },
    /// `P ctx parent`: `MemoryContextSetParent` (`None` = detach, make it a
    /// root).
    SetParent {
        /// The context moved.
        ctx: CtxId,
        /// Its new parent, `None` for a root.
        parent: Option<CtxId>,
    },
}

impl Op {
    /// The operation letter of the trace line: `C`, `A`, `R`, `F`, `X`,
    /// `O`, `H`, `D` or `P`.
    pub const fn letter(&self) -> char {
        match self {
            Op::Create { .. } => 'C',
            Op::Alloc { .. } => 'A',
            Op::Realloc { .. } => 'R',
            Op::Free { .. } => 'F',
            Op::Reset { .. } => 'X',
            Op::ResetOnly { .. } => 'O',
            Op::DeleteChildren { .. } => 'H',
            Op::Delete { .. } => 'D',
            Op::SetParent { .. } => 'P',
        }
    }

    /// The context the operation names first (`ctx` field), if any.
    pub const fn ctx(&self) -> Option<CtxId> {
        match *self {
            Op::Create { ctx, .. }
            | Op::Alloc { ctx, .. }
            | Op::Reset { ctx }
            | Op::ResetOnly { ctx }
            | Op::DeleteChildren { ctx }
            | Op::Delete { ctx }
            | Op::SetParent { ctx, .. } => Some(ctx),
            Op::Realloc { .. } | Op::Free { .. } => None,
        }
    }

    /// The chunk the operation names (`A`, `R`, `F`), if any.
    pub const fn chunk(&self) -> Option<ChunkId> {
        match *self {
            Op::Alloc { chunk, .. } | Op::Realloc { chunk, .. } | Op::Free { chunk } => Some(chunk),
            _ => None,
        }
    }
}

/// Parameters of one context creation (`C` line).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CreateSpec {
    /// The context's implementation.
    pub kind: ContextKind,
    /// `aset`/`generation`/`bump`: minContextSize (usually 0 = no
    /// minimum); `slab`: blockSize.
    pub p1: u64,
    /// `aset`/`generation`/`bump`: initBlockSize; `slab`: chunkSize.
    pub p2: u64,
    /// `aset`/`generation`/`bump`: maxBlockSize; `slab`: always 0.
    pub p3: u64,
    /// The context name (informational; names repeat). Never empty.
    pub name: String,
}

/// A parse or validation error: where and why.
///
/// `Display` writes `file:line: reason` (or `file: reason` when `line` is
/// 0, for errors not tied to a line, such as failing to open the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// The file: the path given to [`parse_file`](crate::parse_file), or the
    /// name given to [`parse_reader`](crate::parse_reader) /
    /// [`parse_str`](crate::parse_str).
    pub file: String,
    /// 1-based line number of the offending line; 0 if the error is not
    /// about a line (e.g. the file cannot be opened).
    pub line: u64,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for TraceError {}
