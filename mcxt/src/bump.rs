//! Bump: the fastest kind, for chunks that are never freed one by one.
//!
//! # Design
//!
//! Allocation advances a pointer in the current block: no size classes,
//! no free lists and **no chunk header**, so a 16-byte request takes 16
//! bytes. The price, as in PostgreSQL: `free`, `realloc`, `chunk_context`
//! and `chunk_space` cannot work on a bump chunk (there is nothing before
//! it to tell its owner), and the raw API documents calling them as
//! undefined behaviour; the safe API never does. Memory comes back only
//! when the context is reset or deleted.
//!
//! Blocks double from `init_block_size` to `max_block_size`; when the
//! current block cannot hold a request its remainder is abandoned and a
//! new block becomes current. Requests above an eighth of the maximum
//! block get a dedicated block, linked behind the current one so the
//! current block keeps filling. The first block shares the context's
//! allocation and is kept across resets.
//!
//! # Keeping a block across resets
//!
//! By default a reset returns every block but the first to the system,
//! as PostgreSQL does: a context that once grew large holds little after
//! its reset. A context filled and reset in a loop then pays a `malloc`
//! and a `free` per block and cycle, and glibc may hand large blocks back
//! to the kernel each time (page faults on every refill). bumpalo avoids
//! that by keeping its largest chunk at reset.
//! [`retain_on_reset`](crate::raw::MemoryContext::retain_on_reset) gives a
//! Bump context such a policy, bounded in bytes: a reset keeps blocks,
//! newest first, as long as their total stays within the bound, in a list
//! of *spare* blocks; when the current block is full the next spare is
//! taken before any new block is asked for. (Keeping only the largest
//! block, as bumpalo does, is not enough here: block growth is capped by
//! what the context holds, see `system::GROWTH_DIVISOR`, so a cycle
//! spans many blocks of similar size.) A cycle that fits in the bound
//! then makes no system call at all. Spare blocks stay accounted to the
//! context (they are memory held), show in the stats as free blocks, and
//! are released by delete.

use crate::aset::AllocSetSizes;
use crate::chunk::maxalign;
use crate::error::{check_size, AllocFlags, Error, ErrorKind};
use crate::stats::Counters;
use crate::system;
use crate::tree::{self, ContextHeader};
use crate::ContextKind;
use core::mem::size_of;
use core::ptr::{self, NonNull};

#[repr(C)]
struct Block {
    next: *mut Block,
    end: *mut u8,
    /// Free pointer, kept up to date for blocks that are not current.
    freeptr: *mut u8,
    /// The owning context (used by `chunk_context` with `checking`).
    ctx: *mut Bump,
}

const BLOCK_HDR: usize = size_of::<Block>();

/// The Bump context.
#[repr(C)]
pub(crate) struct Bump {
    pub(crate) hdr: ContextHeader,
    freeptr: *mut u8,
    endptr: *mut u8,
    /// Current block, head of the block list; never null.
    head: *mut Block,
    chunk_limit: usize,
    init_block_size: usize,
    max_block_size: usize,
    next_block_size: usize,
    first_alloc_size: usize,
    /// Blocks kept by resets for reuse, linked by `next` in the order
    /// they will be taken (see `take_spare`); not in the block list, their
    /// contents dead. See the module docs.
    spare: *mut Block,
    /// Bytes of the spare blocks.
    spare_bytes: usize,
    /// Most bytes of blocks a reset keeps as spares (0: none, the
    /// default).
    retain_limit: usize,
}

const CTX_HDR: usize = (size_of::<Bump>() + 15) & !15;

#[inline(always)]
fn keeper(b: *mut Bump) -> *mut Block {
    b.cast::<u8>().wrapping_add(CTX_HDR).cast()
}

#[inline(always)]
fn block_start(b: *mut Block) -> *mut u8 {
    b.cast::<u8>().wrapping_add(BLOCK_HDR)
}

/// How far `blk`, one of `b`'s blocks, is carved: the context holds the
/// free pointer of the current block, each other block its own.
///
/// # Safety
/// `b` valid, `blk` one of its blocks (linked or being unlinked).
#[inline(always)]
unsafe fn carved_end(b: *mut Bump, blk: *mut Block) -> *mut u8 {
    // SAFETY: caller contract.
    unsafe {
        if blk == (*b).head {
            (*b).freeptr
        } else {
            (*blk).freeptr
        }
    }
}

/// Creates a Bump context.
///
/// # Safety
/// `parent` valid or null.
pub(crate) unsafe fn create(
    parent: *mut ContextHeader,
    name: &'static str,
    sizes: AllocSetSizes,
) -> Result<*mut Bump, Error> {
    sizes
        .validate()
        .map_err(|why| Error::new(ErrorKind::InvalidParameters(why), name, 0))?;
    // SAFETY: parent valid or null (caller contract).
    unsafe {
        crate::critical::check_create(parent, name)?;
        let wanted = if sizes.min_context_size != 0 {
            sizes.min_context_size
        } else {
            sizes.init_block_size
        };
        let first = wanted.max(CTX_HDR + BLOCK_HDR + 8);
        tree::charge(parent, first, name, first)?;
        let mem = system::alloc_block(first);
        if mem.is_null() {
            tree::discharge(parent, first);
            return Err(Error::new(ErrorKind::OutOfMemory, name, first));
        }
        let bump = mem.cast::<Bump>();
        let k = keeper(bump);
        k.write(Block {
            next: ptr::null_mut(),
            end: mem.add(first),
            freeptr: block_start(k),
            ctx: bump,
        });
        let mut hdr = ContextHeader::new(ContextKind::Bump, name);
        // Allocation does not track `is_reset`, so a Bump context never
        // claims to be reset: every reset rewinds it (cheaply).
        hdr.is_reset = false;
        hdr.own_bytes = first;
        hdr.subtree_bytes = first;
        let mut limit = sizes.max_block_size;
        while limit > 8 && limit > (sizes.max_block_size - BLOCK_HDR) / 8 {
            limit >>= 1;
        }
        bump.write(Bump {
            hdr,
            freeptr: block_start(k),
            endptr: mem.add(first),
            head: k,
            chunk_limit: limit,
            init_block_size: sizes.init_block_size,
            max_block_size: sizes.max_block_size,
            next_block_size: sizes.init_block_size,
            first_alloc_size: first,
            spare: ptr::null_mut(),
            spare_bytes: 0,
            retain_limit: 0,
        });
        if !parent.is_null() {
            (*bump).hdr.allow_in_critical = (*parent).allow_in_critical;
            tree::link(bump.cast(), parent);
        }
        Ok(bump)
    }
}

/// Allocates `size` bytes (MAXALIGNed, no header).
///
/// # Safety
/// `b` valid.
#[cfg(not(feature = "checking"))]
#[inline(always)]
pub(crate) unsafe fn alloc(
    b: *mut Bump,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `b` valid; the bump stays inside the current block.
    unsafe {
        // Whatever fits in the current block is bumped there; the chunk
        // limit only decides how to grow when it does not fit.
        let p = (*b).freeptr;
        let room = (*b).endptr as usize - p as usize;
        // One compare suffices: `freeptr` and `endptr` are both MAXALIGNed
        // (blocks start aligned, their sizes and every bump are multiples
        // of 8), so `room` is a multiple of 8 and `size <= room` implies
        // `maxalign(size) <= room`; and `size <= room` excludes the sizes
        // whose rounding would overflow.
        debug_assert!(room % crate::chunk::MAXALIGN == 0);
        if size <= room {
            // No `is_reset` store: a Bump context never claims to be
            // reset (see `is_empty`), which saves a store per chunk.
            (*b).freeptr = p.add(maxalign(size));
            return Ok(NonNull::new_unchecked(p));
        }
        alloc_slow(b, size, flags)
    }
}

/// Allocates `size` bytes behind a chunk header, as PostgreSQL's checking
/// builds do, so that `free` and friends can recognise a bump chunk and
/// refuse it, and `check` can walk the blocks.
///
/// # Safety
/// `b` valid.
#[cfg(feature = "checking")]
pub(crate) unsafe fn alloc(
    b: *mut Bump,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    use crate::chunk::{write_header, Header, KindId, CHUNK_HDR_SIZE, MAX_VALUE};
    // SAFETY: `b` valid; the slot stays inside the current block, a new
    // block or a dedicated one.
    unsafe {
        let capacity = maxalign(size);
        let need = CHUNK_HDR_SIZE + capacity;
        let p = (*b).freeptr;
        let slot = if need <= (*b).endptr as usize - p as usize && capacity <= MAX_VALUE {
            (*b).freeptr = p.add(need);
            p
        } else if size <= (*b).chunk_limit {
            alloc_from_new_block(b, need)?.as_ptr()
        } else {
            let chunk = alloc_large(b, size + CHUNK_HDR_SIZE, flags)?
                .as_ptr()
                .add(CHUNK_HDR_SIZE);
            write_header(chunk, Header::external(KindId::Bump));
            return Ok(NonNull::new_unchecked(chunk));
        };
        let chunk = slot.add(CHUNK_HDR_SIZE);
        let offset = slot as usize - (*b).head as usize;
        write_header(chunk, Header::new(KindId::Bump, capacity, offset));
        Ok(NonNull::new_unchecked(chunk))
    }
}

/// Usable bytes of a bump chunk (its header exists only with `checking`).
///
/// # Safety
/// `p` a live bump chunk, `hdr` its header.
#[cfg(feature = "checking")]
pub(crate) unsafe fn chunk_capacity(p: *mut u8, hdr: crate::chunk::Header) -> usize {
    if hdr.is_external() {
        let blk = p
            .wrapping_sub(crate::chunk::CHUNK_HDR_SIZE + BLOCK_HDR)
            .cast::<Block>();
        // SAFETY: an external chunk sits right after its block header.
        unsafe { (*blk).end as usize - p as usize }
    } else {
        hdr.value()
    }
}

/// The context of a bump chunk (its header exists only with `checking`).
///
/// # Safety
/// `p` a live bump chunk, `hdr` its header.
#[cfg(feature = "checking")]
pub(crate) unsafe fn chunk_context(
    p: *mut u8,
    hdr: crate::chunk::Header,
) -> *mut crate::tree::ContextHeader {
    use crate::chunk::CHUNK_HDR_SIZE;
    let offset = if hdr.is_external() {
        BLOCK_HDR
    } else {
        hdr.block_offset()
    };
    let blk = p.wrapping_sub(CHUNK_HDR_SIZE + offset).cast::<Block>();
    // SAFETY: the header leads back to the chunk's block (caller contract).
    unsafe { (*blk).ctx.cast() }
}

/// Walks every block (and, with `checking`, every chunk) for
/// [`crate::check`]; returns the bytes the context holds.
///
/// # Safety
/// `b` valid.
pub(crate) unsafe fn check(b: *mut Bump, checker: &mut crate::check::Checker<'_>) -> usize {
    // SAFETY: walks `b`'s own blocks; chunk extents come from verified
    // headers.
    unsafe {
        let k = keeper(b);
        let mut held = (*b).first_alloc_size;
        let mut spare = (*b).spare;
        while !spare.is_null() {
            checker.block();
            held += (*spare).end as usize - spare as usize;
            spare = (*spare).next;
        }
        let mut blk = (*b).head;
        while !blk.is_null() {
            checker.block();
            if blk != k {
                held += (*blk).end as usize - blk as usize;
            }
            #[cfg(feature = "checking")]
            {
                use crate::chunk::{KindId, CHUNK_HDR_SIZE};
                let freeptr = carved_end(b, blk) as usize;
                let first = block_start(blk).add(CHUNK_HDR_SIZE);
                if freeptr == block_start(blk) as usize {
                    // Nothing carved yet: no header to read.
                } else if checker.is_external(first, KindId::Bump) {
                    checker.external_chunk(
                        first,
                        KindId::Bump,
                        (*blk).end as usize - first as usize,
                    );
                } else {
                    let mut p = block_start(blk);
                    while (p as usize) < freeptr {
                        let chunk = p.add(CHUNK_HDR_SIZE);
                        let Some(hdr) =
                            checker.shared_header(chunk, KindId::Bump, p as usize - blk as usize)
                        else {
                            break;
                        };
                        if hdr.value() % 8 != 0 || chunk as usize + hdr.value() > freeptr {
                            checker.problem(
                                crate::check::Problem::CorruptChunk {
                                    what: "chunk header names a size past its block's used space",
                                },
                                chunk,
                            );
                            break;
                        }
                        checker.contents(chunk, hdr.value());
                        p = chunk.add(hdr.value());
                    }
                }
            }
            blk = (*blk).next;
        }
        held
    }
}

/// The request does not fit in the current block.
#[cold]
#[inline(never)]
// With `checking`, bump allocation has its own slow path.
#[cfg_attr(feature = "checking", allow(dead_code))]
unsafe fn alloc_slow(b: *mut Bump, size: usize, flags: AllocFlags) -> Result<NonNull<u8>, Error> {
    // SAFETY: `b` valid (caller contract).
    unsafe {
        if size <= (*b).chunk_limit {
            return alloc_from_new_block(b, maxalign(size));
        }
        alloc_large(b, size, flags)
    }
}

/// Allocates `size` bytes aligned to `align` (a power of two above 8).
/// (With `checking`, bump chunks have headers and take the aligned
/// redirect path of the other kinds.)
///
/// # Safety
/// `b` valid.
#[cfg(not(feature = "checking"))]
pub(crate) unsafe fn alloc_aligned(
    b: *mut Bump,
    size: usize,
    align: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `b` valid.
    unsafe {
        let total = size.checked_add(align - 8).ok_or(Error::new(
            ErrorKind::InvalidSize,
            (*b).hdr.name,
            size,
        ))?;
        let p = alloc(b, total, flags)?.as_ptr();
        let pad = p.align_offset(align);
        Ok(NonNull::new_unchecked(p.add(pad)))
    }
}

#[cold]
#[inline(never)]
unsafe fn alloc_from_new_block(b: *mut Bump, size: usize) -> Result<NonNull<u8>, Error> {
    // SAFETY: `b` valid; the new block is private until linked.
    unsafe {
        let required = BLOCK_HDR + size;
        let (blk, bytes) = match take_spare(b, required) {
            Some(spare) => spare,
            None => {
                let mut bytes = system::capped_block_size(
                    (*b).next_block_size,
                    (*b).init_block_size,
                    (*b).hdr.own_bytes,
                );
                if bytes < required {
                    bytes = required.next_power_of_two();
                }
                tree::acquire(b.cast(), bytes, size)?;
                let blk = system::alloc_block(bytes).cast::<Block>();
                if blk.is_null() {
                    tree::release(b.cast(), bytes);
                    return Err(Error::new(ErrorKind::OutOfMemory, (*b).hdr.name, size));
                }
                (blk, bytes)
            }
        };
        if (*b).next_block_size < (*b).max_block_size {
            (*b).next_block_size = ((*b).next_block_size * 2).min((*b).max_block_size);
        }
        (*(*b).head).freeptr = (*b).freeptr;
        let end = blk.cast::<u8>().add(bytes);
        blk.write(Block {
            next: (*b).head,
            end,
            freeptr: end,
            ctx: b,
        });
        (*b).head = blk;
        let p = block_start(blk);
        (*b).freeptr = p.add(size);
        (*b).endptr = end;
        (*b).hdr.is_reset = false;
        Ok(NonNull::new_unchecked(p))
    }
}

/// The next spare block, with its size, if it can hold `required` bytes
/// (block header included). Spares are reused in the order they were
/// first filled (a reset pushes the newest block first, so the oldest ends
/// up at the front): a cycle like the last one takes them one by one. A
/// request too large for the next spare gets a new block and leaves the
/// spares for later.
///
/// # Safety
/// `b` valid.
unsafe fn take_spare(b: *mut Bump, required: usize) -> Option<(*mut Block, usize)> {
    // SAFETY: `b` valid; spares are `b`'s own, unlinked blocks.
    unsafe {
        let spare = (*b).spare;
        if spare.is_null() {
            return None;
        }
        let bytes = (*spare).end as usize - spare as usize;
        if bytes < required {
            return None;
        }
        (*b).spare = (*spare).next;
        (*b).spare_bytes -= bytes;
        // Growth goes on from the spare's size, not from the start.
        (*b).next_block_size = (*b).next_block_size.max(bytes.min((*b).max_block_size));
        Some((spare, bytes))
    }
}

/// Frees spare blocks until at most `keep` bytes of them remain.
///
/// # Safety
/// `b` valid.
unsafe fn release_spares(b: *mut Bump, keep: usize) {
    // SAFETY: `b` valid; spares are `b`'s own, unlinked blocks.
    unsafe {
        let mut freed = 0;
        while (*b).spare_bytes > keep {
            let spare = (*b).spare;
            (*b).spare = (*spare).next;
            let bytes = (*spare).end as usize - spare as usize;
            (*b).spare_bytes -= bytes;
            freed += bytes;
            system::free_block(spare.cast(), bytes);
        }
        if freed != 0 {
            tree::release(b.cast(), freed);
        }
    }
}

/// Sets the most bytes of blocks a reset keeps for reuse (0: none); a
/// lower bound releases spare blocks above it.
///
/// # Safety
/// `b` valid.
pub(crate) unsafe fn set_retain_limit(b: *mut Bump, limit: usize) {
    // SAFETY: `b` valid.
    unsafe {
        (*b).retain_limit = limit;
        release_spares(b, limit);
    }
}

/// The most bytes of blocks a reset keeps for reuse (0: none).
///
/// # Safety
/// `b` valid.
pub(crate) unsafe fn retain_limit(b: *mut Bump) -> usize {
    // SAFETY: `b` valid.
    unsafe { (*b).retain_limit }
}

#[cold]
#[inline(never)]
unsafe fn alloc_large(b: *mut Bump, size: usize, flags: AllocFlags) -> Result<NonNull<u8>, Error> {
    // SAFETY: `b` valid; the new block is private until linked.
    unsafe {
        check_size(size, flags, (*b).hdr.name)?;
        let bytes = BLOCK_HDR + maxalign(size);
        tree::acquire(b.cast(), bytes, size)?;
        let blk = system::alloc_block(bytes).cast::<Block>();
        if blk.is_null() {
            tree::release(b.cast(), bytes);
            return Err(Error::new(ErrorKind::OutOfMemory, (*b).hdr.name, size));
        }
        let end = blk.cast::<u8>().add(bytes);
        blk.write(Block {
            next: (*(*b).head).next,
            end,
            freeptr: end,
            ctx: b,
        });
        (*(*b).head).next = blk;
        (*b).hdr.is_reset = false;
        Ok(NonNull::new_unchecked(block_start(blk)))
    }
}

/// True when nothing is allocated: only the first block, rewound.
///
/// # Safety
/// `b` valid.
pub(crate) unsafe fn is_empty(b: *mut Bump) -> bool {
    // SAFETY: caller contract.
    unsafe {
        let k = keeper(b);
        (*b).head == k
            && (*k).next.is_null()
            && (*b).freeptr == block_start(k)
            && (*b).hdr.callbacks.is_null()
    }
}

/// Frees every block but the keeper.
///
/// # Safety
/// `b` valid; its chunks are dead.
pub(crate) unsafe fn reset(b: *mut Bump) {
    // SAFETY: walks `b`'s own blocks.
    unsafe {
        let k = keeper(b);
        let keeper_used = carved_end(b, k);
        let mut freed = 0;
        let mut blk = (*b).head;
        while !blk.is_null() {
            let next = (*blk).next;
            if blk != k {
                let bytes = (*blk).end as usize - blk as usize;
                if (*b).spare_bytes + bytes <= (*b).retain_limit {
                    keep_spare(b, blk, bytes);
                } else {
                    freed += bytes;
                    system::free_block(blk.cast(), bytes);
                }
            }
            blk = next;
        }
        (*k).next = ptr::null_mut();
        crate::instrument::rewound(
            block_start(k),
            keeper_used as usize - block_start(k) as usize,
        );
        (*b).head = k;
        (*b).freeptr = block_start(k);
        (*b).endptr = (*k).end;
        (*b).next_block_size = (*b).init_block_size;
        if freed != 0 {
            tree::release(b.cast(), freed);
        }
    }
}

/// Moves a block of the list (being dismantled by `reset`) to the spares.
///
/// # Safety
/// `b` valid; `blk` one of its blocks, no longer linked, `bytes` long.
unsafe fn keep_spare(b: *mut Bump, blk: *mut Block, bytes: usize) {
    // SAFETY: caller contract.
    unsafe {
        let used = carved_end(b, blk);
        crate::instrument::rewound(block_start(blk), used as usize - block_start(blk) as usize);
        (*blk).next = (*b).spare;
        (*b).spare = blk;
        (*b).spare_bytes += bytes;
    }
}

/// Frees an unlinked, childless context.
///
/// # Safety
/// `b` valid; nothing of it is used afterwards.
pub(crate) unsafe fn delete(b: *mut Bump) {
    // SAFETY: caller contract.
    unsafe {
        (*b).retain_limit = 0;
        reset(b);
        release_spares(b, 0);
        let bytes = (*b).first_alloc_size;
        system::free_block(b.cast(), bytes);
    }
}

/// Counters (bump contexts have no free chunks).
///
/// # Safety
/// `b` valid.
pub(crate) unsafe fn stats(b: *mut Bump) -> Counters {
    let mut c = Counters::default();
    // SAFETY: walks `b`'s own blocks.
    unsafe {
        c.total_bytes = (*b).hdr.own_bytes;
        let mut blk = (*b).head;
        while !blk.is_null() {
            c.blocks += 1;
            let freeptr = carved_end(b, blk);
            c.free_bytes += (*blk).end as usize - freeptr as usize;
            blk = (*blk).next;
        }
        let mut spare = (*b).spare;
        while !spare.is_null() {
            c.blocks += 1;
            c.free_bytes += (*spare).end as usize - block_start(spare) as usize;
            spare = (*spare).next;
        }
    }
    c
}
