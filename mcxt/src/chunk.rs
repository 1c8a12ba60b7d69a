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
//! **AllocSet's owner form.** A small AllocSet chunk needs its block only
//! to find its context, so its header names the context directly:
//!
//! ```text
//!  63                                    11 10     5  4  3    0
//! +----------------------------------------+---------+---+------+
//! | context address / 8 (53 bits)          | class   | 0 | 1001 |
//! +----------------------------------------+---------+---+------+
//! ```
//!
//! `free` then reads the header and goes straight to the context's free
//! list: one dependent load fewer than through the block header, on the
//! path that a `palloc`/`pfree` pair runs as one chain of dependent loads
//! (the chunk's table slot, its header, the context's free list). On the
//! analytic trace that chain is most of a free's time; cutting one link
//! made the whole replay 7% faster. 53 bits hold every 8-aligned address
//! below 2^56, which is all of user space on x86-64 (even with 5-level
//! paging) and on untagged aarch64. Where the allocator tags pointers in
//! the top byte (Android's heap), an AllocSet whose address does not fit
//! uses [`KindId::AllocSetFar`] instead: the general layout, class as
//! value, through the block like the other kinds. It is slower and
//! otherwise identical.
//!
//! Unlike PostgreSQL, which gives AllocSet the id 3, every live id here has
//! bit 3 set (9..=14). glibc's malloc keeps flag bits 0..2 of its own chunk
//! header in that position and bit 3 is always clear (sizes are multiples of
//! 16), so a pointer from `malloc` never decodes as one of ours, whatever
//! arena it came from. Ids 0..=8 (zeroed memory, glibc headers) and 15
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
/// The value bits of a general-layout header, in place.
pub(crate) const GENERAL_VALUE_BITS: u64 = (MAX_VALUE as u64) << VALUE_SHIFT;
/// Largest distance from a chunk header back to its block header.
pub(crate) const MAX_BLOCK_OFFSET: usize = (1usize << (64 - OFFSET_SHIFT)) - 1;
/// Pattern stored in the value and offset bits of external chunks, so a
/// corrupted external header is noticed.
const EXTERNAL_MAGIC: u64 = 0xB1A8_DB85_8EB6_EFBA & !((1 << VALUE_SHIFT) - 1);

/// Where a small AllocSet chunk's owner-form header keeps its context's
/// address (divided by 8).
const OWNER_SHIFT: u32 = 11;
/// Bits of the value (the class) in an owner-form header.
const OWNER_VALUE_MASK: u64 = (1 << (OWNER_SHIFT - VALUE_SHIFT)) - 1;
/// Largest value an owner-form header can carry.
pub(crate) const MAX_OWNER_VALUE: usize = OWNER_VALUE_MASK as usize;
/// The value bits of an owner-form header, in place.
pub(crate) const OWNED_VALUE_BITS: u64 = OWNER_VALUE_MASK << VALUE_SHIFT;

/// The 4-bit id in every header. Values not listed are bogus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum KindId {
    /// AllocSet; a small chunk's header is in the owner form.
    AllocSet = 9,
    Generation = 10,
    Slab = 11,
    AlignedRedirect = 12,
    Bump = 13,
    /// AllocSet whose address does not fit the owner form: small chunks
    /// have the general layout (class as value, block offset).
    AllocSetFar = 14,
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
            14 => Some(KindId::AllocSetFar),
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

    /// The parts of an owner-form header that are the same for every
    /// small chunk of the context at `owner` (`or` the class shifted by
    /// [`Header::owned_value`]), or `None` if `owner` does not fit: not
    /// 8-aligned, or at 2^56 or above.
    ///
    /// With the `far-headers` feature it is always `None`: every AllocSet
    /// uses the far form, for testing it, and for Miri's strict provenance
    /// checks, which cannot follow an address back to a pointer.
    #[inline]
    pub(crate) fn owner_base(kind: KindId, owner: *mut u8) -> Option<u64> {
        if cfg!(feature = "far-headers") {
            return None;
        }
        let base = Self::encode_owner(kind, owner.addr())?;
        // Exposed, so that `owner` may turn the address back into a
        // pointer to the context.
        let _ = owner.expose_provenance();
        Some(base)
    }

    /// The owner-form base for an owner at address `addr`, if it fits.
    #[inline]
    fn encode_owner(kind: KindId, addr: usize) -> Option<u64> {
        let addr = addr as u64;
        if addr % 8 != 0 || addr >> (64 - OWNER_SHIFT + 3) != 0 {
            return None;
        }
        Some(((addr >> 3) << OWNER_SHIFT) | kind as u64)
    }

    /// The header bits of a block offset (general layout), to `or` in.
    #[inline(always)]
    pub(crate) const fn offset_bits(block_offset: usize) -> u64 {
        (block_offset as u64) << OFFSET_SHIFT
    }

    /// `value` placed for an owner-form header built on
    /// [`owner_base`](Header::owner_base).
    #[inline(always)]
    pub(crate) const fn owned_value(value: usize) -> u64 {
        debug_assert!(value <= MAX_OWNER_VALUE);
        (value as u64) << VALUE_SHIFT
    }

    /// The context address of an owner-form header.
    #[inline(always)]
    pub(crate) fn owner(self) -> *mut u8 {
        // The owner's provenance was exposed by `owner_base`.
        core::ptr::with_exposed_provenance_mut(((self.0 >> OWNER_SHIFT) << 3) as usize)
    }

    /// The value of an owner-form header; also right for a general-layout
    /// header whose value is at most [`MAX_OWNER_VALUE`].
    #[inline(always)]
    pub(crate) fn owned_value_of(self) -> usize {
        ((self.0 >> VALUE_SHIFT) & OWNER_VALUE_MASK) as usize
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
            KindId::AllocSetFar,
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
    #[cfg(target_pointer_width = "64")]
    fn owner_headers_round_trip() {
        for addr in [8usize, 0x5555_5555_5550, (1 << 47) - 8, (1 << 56) - 8] {
            let base = Header::encode_owner(KindId::AllocSet, addr).unwrap();
            for class in [0, 1, 35, MAX_OWNER_VALUE] {
                let h = Header(base | Header::owned_value(class));
                assert_eq!(h.kind(), Some(KindId::AllocSet));
                assert!(h.is_shared_chunk_of(KindId::AllocSet));
                assert_eq!(h.0 >> OWNER_SHIFT << 3, addr as u64);
                assert_eq!(h.owned_value_of(), class);
                assert_eq!(h.0 & !OWNED_VALUE_BITS, base);
            }
        }
        // Tagged (top byte) and misaligned addresses do not fit.
        for addr in [1usize << 56, 0xb400_0070_0000_0000, 0x1004] {
            assert_eq!(Header::encode_owner(KindId::AllocSet, addr), None);
        }
        // The far form keeps the class where the owner form has it.
        let far = Header::new(KindId::AllocSetFar, 35, 4096);
        assert_eq!(far.owned_value_of(), 35);
        assert_eq!(far.block_offset(), 4096);
    }

    #[test]
    fn bogus_ids_are_refused() {
        for id in (0..8).chain([8, 15]) {
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
