//! Generation: for chunks freed in roughly the order they were allocated.
//!
//! # Design
//!
//! Chunks are carved from the current block with no rounding beyond
//! MAXALIGN and no free lists: each block only counts its chunks and how
//! many of them were freed. When the count of freed chunks reaches the
//! count of chunks, the whole block is empty and is reused or released, so
//! a FIFO workload (a queue of tuples, logical decoding's changes) keeps a
//! handful of blocks in use however long it runs, and freed memory really
//! goes back, unlike AllocSet's free lists which keep it for the same size
//! class.
//!
//! The cost: one long-lived chunk pins its whole block. PostgreSQL learnt
//! this with 8 MiB blocks in logical decoding; keep `max_block_size`
//! modest for long-running contexts.
//!
//! **Blocks** double from `init_block_size` to `max_block_size`, as in
//! AllocSet. The first block (keeper) shares the context's allocation and
//! is kept across resets. An emptied block is made current again if it is
//! the keeper or the current block; otherwise one emptied block is kept as
//! the *free block*, used before asking the system for a new one, and any
//! further emptied block is released. Requests above the chunk limit (an
//! eighth of the maximum block, 512 KiB with the default sizes) get a
//! dedicated block, released on free.
//!
//! **Header.** The 8-byte chunk header carries the chunk size (value) and
//! the distance to the block header, whose first word leads to the context.

use crate::aset::AllocSetSizes;
use crate::check::{Checker, Problem};
use crate::chunk::{maxalign, write_header, Header, KindId, CHUNK_HDR_SIZE, MAX_VALUE};
use crate::error::{check_size, AllocFlags, Error, ErrorKind};
use crate::stats::Counters;
use crate::system;
use crate::tree::{self, ContextHeader};
use crate::ContextKind;
use core::mem::size_of;
use core::ptr::{self, NonNull};

#[repr(C)]
struct Block {
    ctx: *mut Generation,
    prev: *mut Block,
    next: *mut Block,
    /// One past the block's last byte.
    end: *mut u8,
    freeptr: *mut u8,
    nchunks: usize,
    nfree: usize,
}

const BLOCK_HDR: usize = size_of::<Block>();

/// The Generation context.
#[repr(C)]
pub(crate) struct Generation {
    pub(crate) hdr: ContextHeader,
    /// Block new chunks are carved from; never null.
    current: *mut Block,
    /// An empty block kept for reuse, or null.
    freeblock: *mut Block,
    /// Head of the list of all blocks (dedicated ones included).
    blocks: *mut Block,
    chunk_limit: usize,
    init_block_size: usize,
    max_block_size: usize,
    next_block_size: usize,
    first_alloc_size: usize,
}

const CTX_HDR: usize = (size_of::<Generation>() + 15) & !15;

#[inline(always)]
fn keeper(g: *mut Generation) -> *mut Block {
    g.cast::<u8>().wrapping_add(CTX_HDR).cast()
}

#[inline(always)]
fn block_start(b: *mut Block) -> *mut u8 {
    b.cast::<u8>().wrapping_add(BLOCK_HDR)
}

fn chunk_limit_for(max_block_size: usize) -> usize {
    // An eighth of a maximal block (PostgreSQL's Generation_CHUNK_FRACTION).
    let mut limit = max_block_size.min(MAX_VALUE);
    while limit > 8 && limit + CHUNK_HDR_SIZE > (max_block_size - BLOCK_HDR) / 8 {
        limit >>= 1;
    }
    limit
}

/// Creates a Generation context.
///
/// # Safety
/// `parent` valid or null.
pub(crate) unsafe fn create(
    parent: *mut ContextHeader,
    name: &'static str,
    sizes: AllocSetSizes,
) -> Result<*mut Generation, Error> {
    sizes
        .validate()
        .map_err(|why| Error::new(ErrorKind::InvalidParameters(why), name, 0))?;
    // SAFETY: parent valid or null (caller contract); the new allocation is
    // private until linked.
    unsafe {
        crate::critical::check_create(parent, name)?;
        let wanted = if sizes.min_context_size != 0 {
            sizes.min_context_size
        } else {
            sizes.init_block_size
        };
        let first = wanted.max(CTX_HDR + BLOCK_HDR + CHUNK_HDR_SIZE + 8);
        tree::charge(parent, first, name, first)?;
        let mem = system::alloc_block(first);
        if mem.is_null() {
            tree::discharge(parent, first);
            return Err(Error::new(ErrorKind::OutOfMemory, name, first));
        }
        let g = mem.cast::<Generation>();
        let k = keeper(g);
        k.write(Block {
            ctx: g,
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            end: mem.add(first),
            freeptr: block_start(k),
            nchunks: 0,
            nfree: 0,
        });
        let mut hdr = ContextHeader::new(ContextKind::Generation, name);
        hdr.own_bytes = first;
        hdr.subtree_bytes = first;
        g.write(Generation {
            hdr,
            current: k,
            freeblock: ptr::null_mut(),
            blocks: k,
            chunk_limit: chunk_limit_for(sizes.max_block_size),
            init_block_size: sizes.init_block_size,
            max_block_size: sizes.max_block_size,
            next_block_size: sizes.init_block_size,
            first_alloc_size: first,
        });
        if !parent.is_null() {
            (*g).hdr.allow_in_critical = (*parent).allow_in_critical;
            tree::link(g.cast(), parent);
        }
        Ok(g)
    }
}

/// Pushes `b` at the head of the block list.
unsafe fn push_block(g: *mut Generation, b: *mut Block) {
    // SAFETY: `g` and `b` valid; `b` unlinked.
    unsafe {
        (*b).prev = ptr::null_mut();
        (*b).next = (*g).blocks;
        if !(*g).blocks.is_null() {
            (*(*g).blocks).prev = b;
        }
        (*g).blocks = b;
    }
}

unsafe fn unlink_block(g: *mut Generation, b: *mut Block) {
    // SAFETY: `b` is on `g`'s list.
    unsafe {
        if (*b).prev.is_null() {
            (*g).blocks = (*b).next;
        } else {
            (*(*b).prev).next = (*b).next;
        }
        if !(*b).next.is_null() {
            (*(*b).next).prev = (*b).prev;
        }
    }
}

/// Allocates `size` bytes.
///
/// # Safety
/// `g` valid.
#[inline]
pub(crate) unsafe fn alloc(
    g: *mut Generation,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `g` valid; the carve stays inside the current block.
    unsafe {
        if size > (*g).chunk_limit {
            return alloc_large(g, size, flags);
        }
        let chunk_size = maxalign(size);
        let b = (*g).current;
        let p = (*b).freeptr;
        if (*b).end as usize - p as usize >= chunk_size + CHUNK_HDR_SIZE {
            return Ok(carve(g, b, chunk_size));
        }
        alloc_from_other_block(g, chunk_size)
    }
}

/// Carves a chunk from `b`, which has room.
#[inline(always)]
unsafe fn carve(g: *mut Generation, b: *mut Block, chunk_size: usize) -> NonNull<u8> {
    // SAFETY: the caller checked the room.
    unsafe {
        let p = (*b).freeptr;
        (*b).freeptr = p.add(CHUNK_HDR_SIZE + chunk_size);
        (*b).nchunks += 1;
        (*g).hdr.is_reset = false;
        let chunk = p.add(CHUNK_HDR_SIZE);
        write_header(
            chunk,
            Header::new(KindId::Generation, chunk_size, p as usize - b as usize),
        );
        NonNull::new_unchecked(chunk)
    }
}

#[cold]
#[inline(never)]
unsafe fn alloc_from_other_block(
    g: *mut Generation,
    chunk_size: usize,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `g` valid; blocks are ours.
    unsafe {
        let need = chunk_size + CHUNK_HDR_SIZE;
        let fb = (*g).freeblock;
        if !fb.is_null() && (*fb).end as usize - block_start(fb) as usize >= need {
            // The free block is empty: make it current (no ping-pong back
            // to older blocks, to keep allocation order = memory order).
            (*g).freeblock = ptr::null_mut();
            (*g).current = fb;
            return Ok(carve(g, fb, chunk_size));
        }
        let mut size = system::capped_block_size(
            (*g).next_block_size,
            (*g).init_block_size,
            (*g).hdr.own_bytes,
        );
        if (*g).next_block_size < (*g).max_block_size {
            (*g).next_block_size = ((*g).next_block_size * 2).min((*g).max_block_size);
        }
        let required = BLOCK_HDR + need;
        if size < required {
            size = required.next_power_of_two();
        }
        tree::acquire(g.cast(), size, chunk_size)?;
        let b = system::alloc_block(size).cast::<Block>();
        if b.is_null() {
            tree::release(g.cast(), size);
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                (*g).hdr.name,
                chunk_size,
            ));
        }
        b.write(Block {
            ctx: g,
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            end: b.cast::<u8>().add(size),
            freeptr: block_start(b),
            nchunks: 0,
            nfree: 0,
        });
        push_block(g, b);
        (*g).current = b;
        Ok(carve(g, b, chunk_size))
    }
}

#[cold]
#[inline(never)]
unsafe fn alloc_large(
    g: *mut Generation,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `g` valid; the new block is private until linked.
    unsafe {
        let name = (*g).hdr.name;
        check_size(size, flags, name)?;
        let bytes = BLOCK_HDR + CHUNK_HDR_SIZE + maxalign(size);
        tree::acquire(g.cast(), bytes, size)?;
        let b = system::alloc_block(bytes).cast::<Block>();
        if b.is_null() {
            tree::release(g.cast(), bytes);
            return Err(Error::new(ErrorKind::OutOfMemory, name, size));
        }
        let end = b.cast::<u8>().add(bytes);
        b.write(Block {
            ctx: g,
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            end,
            freeptr: end,
            nchunks: 1,
            nfree: 0,
        });
        push_block(g, b);
        (*g).hdr.is_reset = false;
        let chunk = block_start(b).add(CHUNK_HDR_SIZE);
        write_header(chunk, Header::external(KindId::Generation));
        Ok(NonNull::new_unchecked(chunk))
    }
}

#[inline(always)]
fn block_of(ptr: *mut u8, hdr: Header) -> *mut Block {
    if hdr.is_external() {
        ptr.wrapping_sub(CHUNK_HDR_SIZE + BLOCK_HDR).cast()
    } else {
        ptr.wrapping_sub(CHUNK_HDR_SIZE + hdr.block_offset()).cast()
    }
}

/// Frees a chunk.
///
/// # Safety
/// `ptr` a live Generation chunk with header `hdr`.
pub(crate) unsafe fn free(ptr: *mut u8, hdr: Header) -> Result<(), Error> {
    // SAFETY: the header leads to the block and the block to the context.
    unsafe {
        if hdr.is_external() && !hdr.external_magic_ok() {
            return Err(Error::new(ErrorKind::BadPointer { header: hdr.0 }, "?", 0));
        }
        let b = block_of(ptr, hdr);
        let g = (*b).ctx;
        (*b).nfree += 1;
        if (*b).nfree < (*b).nchunks {
            return Ok(());
        }
        block_emptied(g, b);
    }
    Ok(())
}

/// All chunks of `b` are free: reuse it in place, keep it as the free
/// block, or release it.
#[cold]
unsafe fn block_emptied(g: *mut Generation, b: *mut Block) {
    // SAFETY: `b` is one of `g`'s blocks, with no live chunk.
    unsafe {
        // The block's freed chunks become the allocator's again (Valgrind,
        // ASan) and, with `checking`, are clobbered so that stale check
        // words of the old layout cannot pass for freed chunks of the next.
        crate::instrument::rewound(
            block_start(b),
            (*b).freeptr as usize - block_start(b) as usize,
        );
        if b == keeper(g) || b == (*g).current {
            (*b).freeptr = block_start(b);
            (*b).nchunks = 0;
            (*b).nfree = 0;
            return;
        }
        let dedicated = (*b).freeptr == (*b).end && (*b).nchunks == 1;
        if (*g).freeblock.is_null() && !dedicated {
            (*b).freeptr = block_start(b);
            (*b).nchunks = 0;
            (*b).nfree = 0;
            (*g).freeblock = b;
            return;
        }
        unlink_block(g, b);
        let bytes = (*b).end as usize - b as usize;
        system::free_block(b.cast(), bytes);
        tree::release(g.cast(), bytes);
    }
}

/// Resizes a chunk.
///
/// # Safety
/// `ptr` a live Generation chunk with header `hdr`.
// With `checking`, the checking layer resizes chunks itself.
#[cfg_attr(feature = "checking", allow(dead_code))]
pub(crate) unsafe fn realloc(
    ptr: *mut u8,
    hdr: Header,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract; copies stay inside both chunks.
    unsafe {
        let old = chunk_capacity(ptr, hdr);
        if size <= old {
            return Ok(NonNull::new_unchecked(ptr));
        }
        let g = (*block_of(ptr, hdr)).ctx;
        crate::critical::check(g.cast(), size)?;
        let new = alloc(g, size, flags)?;
        // The whole old chunk is copied, past what was asked for: tell the
        // sanitizers (a no-op without them).
        crate::instrument::make_accessible(ptr, old);
        crate::instrument::make_accessible(new.as_ptr(), old);
        ptr::copy_nonoverlapping(ptr, new.as_ptr(), old);
        free(ptr, hdr)?;
        Ok(new)
    }
}

/// Owner of a chunk.
///
/// # Safety
/// `ptr` a live Generation chunk with header `hdr`.
pub(crate) unsafe fn chunk_context(ptr: *mut u8, hdr: Header) -> *mut ContextHeader {
    // SAFETY: caller contract.
    unsafe { (*block_of(ptr, hdr)).ctx.cast() }
}

/// Usable bytes of a chunk.
///
/// # Safety
/// `ptr` a live Generation chunk with header `hdr`.
pub(crate) unsafe fn chunk_capacity(ptr: *mut u8, hdr: Header) -> usize {
    if hdr.is_external() {
        // SAFETY: caller contract.
        unsafe { (*block_of(ptr, hdr)).end as usize - ptr as usize }
    } else {
        hdr.value()
    }
}

/// Frees every block but the keeper.
///
/// # Safety
/// `g` valid; its chunks are dead.
pub(crate) unsafe fn reset(g: *mut Generation) {
    // SAFETY: walks `g`'s own blocks.
    unsafe {
        let k = keeper(g);
        let mut freed = 0;
        let mut b = (*g).blocks;
        while !b.is_null() {
            let next = (*b).next;
            if b != k {
                let bytes = (*b).end as usize - b as usize;
                freed += bytes;
                system::free_block(b.cast(), bytes);
            }
            b = next;
        }
        (*k).prev = ptr::null_mut();
        (*k).next = ptr::null_mut();
        crate::instrument::rewound(
            block_start(k),
            (*k).freeptr as usize - block_start(k) as usize,
        );
        (*k).freeptr = block_start(k);
        (*k).nchunks = 0;
        (*k).nfree = 0;
        (*g).blocks = k;
        (*g).current = k;
        (*g).freeblock = ptr::null_mut();
        (*g).next_block_size = (*g).init_block_size;
        if freed != 0 {
            tree::release(g.cast(), freed);
        }
    }
}

/// Frees an unlinked, childless context.
///
/// # Safety
/// `g` valid; nothing of it is used afterwards.
pub(crate) unsafe fn delete(g: *mut Generation) {
    // SAFETY: caller contract.
    unsafe {
        reset(g);
        let bytes = (*g).first_alloc_size;
        system::free_block(g.cast(), bytes);
    }
}

/// True when no block holds a live chunk.
///
/// # Safety
/// `g` valid.
pub(crate) unsafe fn is_empty(g: *mut Generation) -> bool {
    // SAFETY: walks `g`'s own blocks.
    unsafe {
        let mut b = (*g).blocks;
        while !b.is_null() {
            if (*b).nchunks > (*b).nfree {
                return false;
            }
            b = (*b).next;
        }
    }
    true
}

/// Walks every block and chunk for [`crate::check`]; returns the bytes
/// the context holds.
///
/// # Safety
/// `g` valid.
pub(crate) unsafe fn check(g: *mut Generation, checker: &mut Checker<'_>) -> usize {
    // SAFETY: walks `g`'s own blocks; each chunk's extent comes from a
    // header verified first, and a block's walk stops at a bad header.
    unsafe {
        let k = keeper(g);
        let mut held = (*g).first_alloc_size;
        let mut b = (*g).blocks;
        while !b.is_null() {
            checker.block();
            if b != k {
                held += (*b).end as usize - b as usize;
            }
            let first = block_start(b).add(CHUNK_HDR_SIZE);
            let freeptr = (*b).freeptr as usize;
            if freeptr == (*b).end as usize
                && (*b).nchunks == 1
                && checker.is_external(first, KindId::Generation)
            {
                checker.external_chunk(first, KindId::Generation, freeptr - first as usize);
            } else {
                let freed_before = checker.freed_here;
                let mut carved = 0;
                let mut p = block_start(b);
                while (p as usize) < freeptr {
                    let chunk = p.add(CHUNK_HDR_SIZE);
                    let Some(hdr) =
                        checker.shared_header(chunk, KindId::Generation, p as usize - b as usize)
                    else {
                        break;
                    };
                    let size = hdr.value();
                    if size % 8 != 0 || chunk as usize + size > freeptr {
                        checker.problem(
                            Problem::CorruptChunk {
                                what: "chunk header names a size past its block's used space",
                            },
                            chunk,
                        );
                        break;
                    }
                    checker.contents(chunk, size);
                    carved += 1;
                    p = chunk.add(size);
                }
                checker.agree(
                    "chunks in a block vs. its chunk count",
                    (*b).nchunks,
                    carved,
                );
                #[cfg(feature = "checking")]
                checker.agree(
                    "chunks of a block marked freed vs. its free count",
                    (*b).nfree,
                    checker.freed_here - freed_before,
                );
                #[cfg(not(feature = "checking"))]
                let _ = freed_before;
            }
            b = (*b).next;
        }
        held
    }
}

/// Counters; `chunks` counts live chunks (for the stats line).
///
/// # Safety
/// `g` valid.
pub(crate) unsafe fn stats(g: *mut Generation) -> (Counters, usize) {
    let mut c = Counters::default();
    let mut live = 0;
    // SAFETY: walks `g`'s own blocks.
    unsafe {
        c.total_bytes = (*g).hdr.own_bytes;
        let mut b = (*g).blocks;
        while !b.is_null() {
            c.blocks += 1;
            c.free_bytes += (*b).end as usize - (*b).freeptr as usize;
            c.free_chunks += (*b).nfree;
            live += (*b).nchunks - (*b).nfree;
            b = (*b).next;
        }
    }
    (c, live)
}

const _: () = assert!(BLOCK_HDR % 8 == 0, "chunks must stay MAXALIGNed");
