//! Statistics gathered while validating a trace (the numbers
//! `trace-check.py` prints).

use std::fmt;

use crate::types::ContextKind;

/// Number of operation lines per operation letter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpCounts {
    /// `C` lines (context creations).
    pub create: u64,
    /// `A` lines (allocations).
    pub alloc: u64,
    /// `R` lines (reallocations).
    pub realloc: u64,
    /// `F` lines (frees).
    pub free: u64,
    /// `X` lines (`MemoryContextReset`).
    pub reset: u64,
    /// `O` lines (`MemoryContextResetOnly`).
    pub reset_only: u64,
    /// `H` lines (`MemoryContextDeleteChildren`).
    pub delete_children: u64,
    /// `D` lines (`MemoryContextDelete`).
    pub delete: u64,
    /// `P` lines (`MemoryContextSetParent`).
    pub set_parent: u64,
}

impl OpCounts {
    /// All operation lines.
    pub fn total(&self) -> u64 {
        self.create
            + self.alloc
            + self.realloc
            + self.free
            + self.reset
            + self.reset_only
            + self.delete_children
            + self.delete
            + self.set_parent
    }

    /// The count for an operation letter (`'C'`, `'A'`, ...); 0 for any
    /// other character.
    pub fn get(&self, letter: char) -> u64 {
        match letter {
            'C' => self.create,
            'A' => self.alloc,
            'R' => self.realloc,
            'F' => self.free,
            'X' => self.reset,
            'O' => self.reset_only,
            'H' => self.delete_children,
            'D' => self.delete,
            'P' => self.set_parent,
            _ => 0,
        }
    }
}

/// A count per context kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KindCounts {
    /// `aset` contexts.
    pub aset: u64,
    /// `generation` contexts.
    pub generation: u64,
    /// `slab` contexts.
    pub slab: u64,
    /// `bump` contexts.
    pub bump: u64,
}

impl KindCounts {
    /// The count for one kind.
    pub fn get(&self, kind: ContextKind) -> u64 {
        match kind {
            ContextKind::AllocSet => self.aset,
            ContextKind::Generation => self.generation,
            ContextKind::Slab => self.slab,
            ContextKind::Bump => self.bump,
        }
    }

    /// Mutable access to the count for one kind.
    pub fn get_mut(&mut self, kind: ContextKind) -> &mut u64 {
        match kind {
            ContextKind::AllocSet => &mut self.aset,
            ContextKind::Generation => &mut self.generation,
            ContextKind::Slab => &mut self.slab,
            ContextKind::Bump => &mut self.bump,
        }
    }

    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.aset + self.generation + self.slab + self.bump
    }
}

/// Number of buckets of [`TraceStats::size_histogram`].
pub const SIZE_BUCKETS: usize = 66;

/// Statistics of a valid trace, as printed by `trace-check.py`.
///
/// Byte totals are `u128` so that no input can overflow them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceStats {
    /// Operation lines per letter.
    pub ops: OpCounts,
    /// Comment lines (`#`), not counting the header.
    pub comments: u64,
    /// Contexts created (`C` lines).
    pub contexts_created: u64,
    /// Largest number of live contexts at any point.
    pub max_live_contexts: u64,
    /// Contexts still live after the last line.
    pub live_contexts_at_end: u64,
    /// Largest depth of the context forest at any point (a root has depth
    /// 1).
    pub max_depth: u32,
    /// Contexts created, per kind.
    pub contexts_by_kind: KindCounts,
    /// `A` lines, per kind of the context allocated in.
    pub allocs_by_kind: KindCounts,
    /// Chunks allocated (`A` lines).
    pub chunks_allocated: u64,
    /// Chunks freed explicitly (`F` lines).
    pub chunks_freed: u64,
    /// Chunks that died with a reset or delete of their context (or of an
    /// ancestor).
    pub chunks_died_with_context: u64,
    /// Chunks still live after the last line.
    pub live_chunks_at_end: u64,
    /// Largest number of live chunks at any point.
    pub max_live_chunks: u64,
    /// `A` lines with the `z` flag.
    pub flag_zero: u64,
    /// `A` lines with the `h` flag.
    pub flag_huge: u64,
    /// `A` lines with the `n` flag.
    pub flag_no_oom: u64,
    /// `A` lines with an `align` field.
    pub aligned_allocs: u64,
    /// Sum of the sizes of all `A` lines.
    pub bytes_requested: u128,
    /// Sum of the new sizes of all `R` lines.
    pub bytes_repalloc: u128,
    /// Largest sum of the requested sizes of the live chunks at any point.
    pub max_live_bytes: u128,
    /// Sum of the requested sizes of the chunks live after the last line.
    pub live_bytes_at_end: u128,
    /// `A` sizes rounded up to a power of two: index 0 counts size 0, index
    /// `1 + b` counts the sizes in `(2^(b-1), 2^b]` (index 1 counts size
    /// 1). See [`TraceStats::size_histogram_entries`].
    pub size_histogram: [u64; SIZE_BUCKETS],
}

impl Default for TraceStats {
    fn default() -> Self {
        TraceStats {
            ops: OpCounts::default(),
            comments: 0,
            contexts_created: 0,
            max_live_contexts: 0,
            live_contexts_at_end: 0,
            max_depth: 0,
            contexts_by_kind: KindCounts::default(),
            allocs_by_kind: KindCounts::default(),
            chunks_allocated: 0,
            chunks_freed: 0,
            chunks_died_with_context: 0,
            live_chunks_at_end: 0,
            max_live_chunks: 0,
            flag_zero: 0,
            flag_huge: 0,
            flag_no_oom: 0,
            aligned_allocs: 0,
            bytes_requested: 0,
            bytes_repalloc: 0,
            max_live_bytes: 0,
            live_bytes_at_end: 0,
            size_histogram: [0; SIZE_BUCKETS],
        }
    }
}

/// The histogram bucket of an allocation size (see
/// [`TraceStats::size_histogram`]).
pub(crate) fn size_bucket(size: u64) -> usize {
    if size == 0 {
        0
    } else {
        // ceil(log2(size)) for size >= 1, in 0..=64
        1 + (64 - (size - 1).leading_zeros()) as usize
    }
}

/// Upper bound of a histogram bucket: 0, 1, 2, 4, ..., 2^64.
fn bucket_bound(index: usize) -> u128 {
    if index == 0 {
        0
    } else {
        1u128 << (index - 1)
    }
}

impl TraceStats {
    /// Non-empty buckets of the size histogram as `(bound, count)`, in
    /// increasing order: `count` `A` lines had a size `<= bound` and
    /// `> bound / 2` (`bound` is 0 or a power of two).
    pub fn size_histogram_entries(&self) -> impl Iterator<Item = (u128, u64)> + '_ {
        self.size_histogram
            .iter()
            .enumerate()
            .filter(|(_, &n)| n != 0)
            .map(|(i, &n)| (bucket_bound(i), n))
    }
}

/// Formats a byte count like `trace-check.py`: `512 B`, `1.5 KiB`, ...
fn human(n: u128) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    for unit in ["KiB", "MiB"] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} GiB")
}

/// Writes the report of `trace-check.py` (every line after its
/// `== FILE: PASS` line), two-space indented, one line per fact.
impl fmt::Display for TraceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.ops;
        writeln!(
            f,
            "  operations: {}  (C {}, A {}, R {}, F {}, X {}, O {}, H {}, D {}, P {})",
            o.total(),
            o.create,
            o.alloc,
            o.realloc,
            o.free,
            o.reset,
            o.reset_only,
            o.delete_children,
            o.delete,
            o.set_parent
        )?;
        writeln!(
            f,
            "  contexts: {} created, max live {}, live at end {}, max tree depth {}",
            self.contexts_created,
            self.max_live_contexts,
            self.live_contexts_at_end,
            self.max_depth
        )?;
        let k = &self.contexts_by_kind;
        writeln!(
            f,
            "  context kinds: aset {}, generation {}, bump {}, slab {}",
            k.aset, k.generation, k.bump, k.slab
        )?;
        let k = &self.allocs_by_kind;
        writeln!(
            f,
            "  allocations by context kind: aset {}, generation {}, bump {}, slab {}",
            k.aset, k.generation, k.bump, k.slab
        )?;
        writeln!(
            f,
            "  chunks: {} allocated, {} freed by F, {} died with a reset/delete, {} live at end, max live {}",
            self.chunks_allocated,
            self.chunks_freed,
            self.chunks_died_with_context,
            self.live_chunks_at_end,
            self.max_live_chunks
        )?;
        writeln!(
            f,
            "  flags: z {}, h {}, n {}; aligned allocations {}",
            self.flag_zero, self.flag_huge, self.flag_no_oom, self.aligned_allocs
        )?;
        writeln!(
            f,
            "  bytes requested by A: {} ({}); by R (new sizes): {} ({})",
            self.bytes_requested,
            human(self.bytes_requested),
            self.bytes_repalloc,
            human(self.bytes_repalloc)
        )?;
        writeln!(
            f,
            "  max live bytes requested: {} ({})",
            self.max_live_bytes,
            human(self.max_live_bytes)
        )?;
        writeln!(f, "  A size histogram (size rounded up to a power of two):")?;
        let total = o.alloc.max(1) as f64;
        for (bound, n) in self.size_histogram_entries() {
            writeln!(
                f,
                "    <= {:>10}: {:>9}  {:>5.1}%",
                bound,
                n,
                100.0 * n as f64 / total
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(1), 1);
        assert_eq!(size_bucket(2), 2);
        assert_eq!(size_bucket(3), 3);
        assert_eq!(size_bucket(4), 3);
        assert_eq!(size_bucket(5), 4);
        assert_eq!(size_bucket(1 << 63), 64);
        assert_eq!(size_bucket((1 << 63) + 1), 65);
        assert_eq!(size_bucket(u64::MAX), 65);
        assert_eq!(bucket_bound(0), 0);
        assert_eq!(bucket_bound(1), 1);
        assert_eq!(bucket_bound(3), 4);
        assert_eq!(bucket_bound(65), 1u128 << 64);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(11_010_733), "10.5 MiB");
        assert_eq!(human(3 << 40), "3072.0 GiB");
    }
}
