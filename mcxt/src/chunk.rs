//! The 8-byte chunk header that lets `free(ptr)` work without a context.
//!
//! Every chunk handed out by a context kind that supports `free` is
//! immediately preceded by one `u64`, PostgreSQL 16's `MemoryChunk` idea:
//!
//! ```text
//!  63                         34 33                     5  4  3    0
//! +-----------------------------+------------------------+---+------+
//! | block offset (30 bits)      | value (29 bits)        |ext| kind |
//! +-----------------------------+------------------------+---+------+
//! ```
//!
//! * `kind` selects the context kind's routines (see [`KindId`]).
//! * `ext` marks an *external* chunk: one that lives alone on a dedicated
//!   block. Its other bits hold a magic pattern instead of value and offset,
//!   since the block header sits at a fixed distance before the chunk.
//! * `value` is the kind's own: AllocSet stores the size-class index,
//!   Generation the chunk size, the aligned redirect the alignment.
//! * `block offset` is the distance in bytes from the header back to the
//!   block header. Blocks with chunks of their own are smaller than 1 GiB
//!   (larger chunks live alone on external blocks), so 30 bits suffice and
//!   reading the offset is a single shift.
//!
//! Unlike PostgreSQL, which gives AllocSet the id 3, every live id here has
//! bit 3 set (8..=14). glibc's malloc keeps flag bits 0..2 of its own chunk
//! header in that position and bit 3 is always clear (sizes are multiples of
//! 16), so a pointer from `malloc` never decodes as one of ours, whatever
//! arena it came from. Ids 0..=7 (zeroed memory, glibc headers) and 15
//! (memory clobbered with `0x7F`) are refused as bogus.

/// Bytes of the header before every chunk.
#[cfg(not(feature = "checking"))]
pub(crate) const CHUNK_HDR_SIZE: usize = 8;

/// Bytes of the header before every chunk: with the `checking` feature a
/// second word, the *check word* (see [`crate::checking`]), precedes the
/// header word, which stays right before the chunk.
#[cfg(feature = "checking")]
pub(crate) const CHUNK_HDR_SIZE: usize = 16;

/// The header word is always the one right before the chunk.
const HEADER_WORD: usize = 8;

/// Extra bytes each chunk reserves past the request: one sentinel byte
/// with the `checking` feature, none without.
#[cfg(feature = "checking")]
pub(crate) const SENTINEL_ROOM: usize = crate::checking::SENTINEL_ROOM;
/// Extra bytes each chunk reserves past the request: one sentinel byte
/// with the `checking` feature, none without.
#[cfg(not(feature = "checking"))]
pub(crate) const SENTINEL_ROOM: usize = 0;

/// Alignment of every chunk and block (PostgreSQL's MAXALIGN).
pub(crate) const MAXALIGN: usize = 8;

const KIND_BITS: u32 = 4;
const KIND_MASK: u64 = (1 << KIND_BITS) - 1;
const EXTERNAL_BIT: u64 = 1 << 4;
const VALUE_SHIFT: u32 = 5;
const VALUE_BITS: u32 = 29;
/// Largest value a header can carry.
pub(crate) const MAX_VALUE: usize = (1 << VALUE_BITS) - 1;
const OFFSET_SHIFT: u32 = VALUE_SHIFT + VALUE_BITS;
/// Largest distance from a chunk header back to its block header.
pub(crate) const MAX_BLOCK_OFFSET: usize = (1usize << (64 - OFFSET_SHIFT)) - 1;
/// Pattern stored in the value and offset bits of external chunks, so a
/// corrupted external header is noticed.
const EXTERNAL_MAGIC: u64 = 0xB1A8_DB85_8EB6_EFBA & !((1 << VALUE_SHIFT) - 1);

/// The 4-bit id in every header. Values not listed are bogus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum KindId {
    AllocSet = 9,
    Generation = 10,
    Slab = 11,
    AlignedRedirect = 12,
    Bump = 13,
}

impl KindId {
    #[inline(always)]
    pub(crate) fn from_bits(bits: u64) -> Option<KindId> {
        match bits & KIND_MASK {
            9 => Some(KindId::AllocSet),
            10 => Some(KindId::Generation),
            11 => Some(KindId::Slab),
            12 => Some(KindId::AlignedRedirect),
            13 => Some(KindId::Bump),
            _ => None,
        }
    }
}

/// A decoded header word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header(pub(crate) u64);

impl Header {
    /// Header of a chunk on a shared block.
    #[inline(always)]
    pub(crate) const fn new(kind: KindId, value: usize, block_offset: usize) -> Header {
        debug_assert!(value <= MAX_VALUE);
        debug_assert!(block_offset <= MAX_BLOCK_OFFSET && block_offset % 8 == 0);
        Header(
            ((block_offset as u64) << OFFSET_SHIFT) | ((value as u64) << VALUE_SHIFT) | kind as u64,
        )
    }

    /// Header of a chunk alone on a dedicated block.
    #[inline(always)]
    pub(crate) const fn external(kind: KindId) -> Header {
        Header(EXTERNAL_MAGIC | EXTERNAL_BIT | kind as u64)
    }

    #[inline(always)]
    pub(crate) fn kind(self) -> Option<KindId> {
        KindId::from_bits(self.0)
    }

    #[inline(always)]
    pub(crate) fn is_external(self) -> bool {
        self.0 & EXTERNAL_BIT != 0
    }

    /// True when an external header still carries its magic.
    #[inline]
    pub(crate) fn external_magic_ok(self) -> bool {
        self.0 & !(EXTERNAL_BIT | KIND_MASK) == EXTERNAL_MAGIC
    }

    #[inline(always)]
    pub(crate) fn value(self) -> usize {
        ((self.0 >> VALUE_SHIFT) as usize) & MAX_VALUE
    }

    #[inline(always)]
    pub(crate) fn block_offset(self) -> usize {
        (self.0 >> OFFSET_SHIFT) as usize
    }

    /// True for a chunk of `kind` on a shared block: the common case of
    /// every dispatch, tested with one mask and one compare.
    #[inline(always)]
    pub(crate) fn is_shared_chunk_of(self, kind: KindId) -> bool {
        self.0 & (KIND_MASK | EXTERNAL_BIT) == kind as u64
    }
}

impl core::fmt::Debug for Header {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

/// Reads the header word before `ptr`.
///
/// # Safety
/// `ptr - 8` must be readable; that is all. The value may be garbage when
/// `ptr` did not come from a context, which callers detect via
/// [`Header::kind`].
#[inline(always)]
pub(crate) unsafe fn read_header(ptr: *const u8) -> Header {
    // SAFETY: the caller guarantees the 8 bytes before `ptr` are readable;
    // chunk pointers are 8-aligned, but bogus ones may not be, hence unaligned.
    unsafe { Header(ptr.sub(HEADER_WORD).cast::<u64>().read_unaligned()) }
}

/// Writes the header word before `ptr`.
///
/// # Safety
/// `ptr - 8 .. ptr` must be writable memory owned by the caller's chunk.
#[inline(always)]
pub(crate) unsafe fn write_header(ptr: *mut u8, header: Header) {
    // The whole chunk header (check word included) may lie in a region a
    // reset closed to the sanitizers.
    crate::instrument::make_accessible(ptr.wrapping_sub(CHUNK_HDR_SIZE), CHUNK_HDR_SIZE);
    // SAFETY: guaranteed by the caller; chunk pointers are 8-aligned.
    unsafe { ptr.sub(HEADER_WORD).cast::<u64>().write(header.0) }
}

/// Rounds `n` up to a multiple of [`MAXALIGN`]; `None` on overflow.
#[inline(always)]
pub(crate) const fn maxalign(n: usize) -> usize {
    (n + (MAXALIGN - 1)) & !(MAXALIGN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        for kind in [
            KindId::AllocSet,
            KindId::Generation,
            KindId::Slab,
            KindId::Bump,
        ] {
            for value in [0, 1, 35, MAX_VALUE] {
                for off in [0, 8, 4096, MAX_BLOCK_OFFSET & !7] {
                    let h = Header::new(kind, value, off);
                    assert_eq!(h.kind(), Some(kind));
                    assert!(!h.is_external());
                    assert_eq!(h.value(), value);
                    assert_eq!(h.block_offset(), off);
                }
            }
            let e = Header::external(kind);
            assert!(e.is_external() && e.external_magic_ok());
            assert_eq!(e.kind(), Some(kind));
        }
    }

    #[test]
    fn bogus_ids_are_refused() {
        for id in (0..8).chain([8, 14, 15]) {
            assert_eq!(KindId::from_bits(id), None, "id {id}");
        }
        // glibc chunk headers (size multiple of 16 plus flag bits 0..2).
        for flags in 0..8u64 {
            assert_eq!(Header(0x40 | flags).kind(), None);
        }
        assert_eq!(Header(0x7F7F_7F7F_7F7F_7F7F).kind(), None);
        const { assert!(MAX_BLOCK_OFFSET == (1 << 30) - 1) };
    }
}
