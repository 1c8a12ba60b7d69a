//! AllocSet: the general-purpose context kind.
//!
//! # Design
//!
//! An AllocSet carves chunks out of blocks it gets from the system. Small
//! requests (up to the context's *chunk limit*, at most 8192 bytes) are
//! rounded up to a size class (see [`crate::sizeclass`]) and carved from the
//! current block; when such a chunk is freed it goes on the free list of its
//! class, a LIFO stack threaded through the chunks themselves, and the next
//! request of that class takes it back. Small chunks are never returned to
//! the system one by one: their memory comes back when the context is reset
//! or deleted. That is the whole point of a memory context: freeing is
//! optional, and resetting a context that held a million chunks costs as
//! much as freeing its few blocks.
//!
//! Requests above the chunk limit get a *dedicated block* of their own
//! (an "external" chunk), which goes back to the system as soon as it is
//! freed and is resized with `realloc` in place when possible.
//!
//! **Blocks.** The first block, the *keeper*, is kept across resets, so a
//! per-tuple context that is reset millions of times never calls `malloc`.
//! Unlike PostgreSQL it is allocated with the first chunk, not with the
//! context, so a context that is never used holds only its header (unless
//! `min_context_size` asks for a reservation up front). Further blocks
//! start at `init_block_size` and double up to `max_block_size`, capped at
//! an eighth of what the context already holds (see
//! the growth note in `system.rs`), so a context holding little wastes
//! little, and one holding a lot makes few system calls. When the current block cannot hold
//! a request, its remaining space is carved into free chunks of the largest
//! classes that fit, so it is not lost, and a new block becomes current.
//!
//! **Layout.** Every chunk is preceded by the 8-byte header of
//! [`crate::chunk`]. A small chunk's header holds its class and, unlike
//! PostgreSQL's (which holds the distance back to the block header, whose
//! first word points to the context), the context's own address: `free`
//! reads the header and pushes the chunk on the free list, one dependent
//! load after the header instead of two. A `palloc`/`pfree` pair is a
//! chain of dependent loads, and this link was a sizeable part of it (7%
//! of the analytic trace's replay). Where the context's address does not
//! fit (pointer tags in the top byte), the context's chunks carry the
//! PostgreSQL-style far header instead; see [`small_header`].
//!
//! **Hot path.** `alloc` is: compare against the chunk limit, one table
//! load for the class, pop the free list or bump the current block's free
//! pointer and write one header word. Everything rarer (new blocks,
//! dedicated blocks, errors) is out of line and marked cold. The current
//! block's bounds live in the context, next to the free lists, so the hot
//! path touches no block header.
//!
//! **Recycling.** Deleted contexts created with the two standard parameter
//! sets (`DEFAULT` and `SMALL`, as PostgreSQL) are reset and kept on a
//! per-thread list (at most [`MAX_RECYCLED`] of each) instead of being
//! freed, so creating a per-query context costs a few stores, not a
//! `malloc` of 8 KiB.

use crate::check::{Checker, Problem};
use crate::chunk::{
    maxalign, read_header, write_header, Header, KindId, CHUNK_HDR_SIZE, OWNED_VALUE_BITS,
};
use crate::error::{check_size, AllocFlags, Error, ErrorKind};
use crate::sizeclass::{class_fitting, class_of, class_size, CLASS_LIMIT, NUM_CLASSES};
use crate::stats::Counters;
use crate::system;
use crate::tree::{self, ContextHeader};
use crate::ContextKind;
use core::mem::size_of;
use core::ptr::{self, NonNull};

/// Block-size parameters of AllocSet, Generation and Bump contexts
/// (PostgreSQL's `minContextSize`, `initBlockSize`, `maxBlockSize`).
///
/// ```
/// use mcxt::AllocSetSizes;
/// let custom = AllocSetSizes { min_context_size: 0, init_block_size: 4096, max_block_size: 65536 };
/// assert!(custom.init_block_size >= AllocSetSizes::SMALL.init_block_size);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockSizes {
    /// Bytes to reserve at creation (context header included), kept
    /// across resets; 0 means no reservation: the first block, of
    /// `init_block_size`, comes with the first allocation.
    pub min_context_size: usize,
    /// Size of the first blocks.
    pub init_block_size: usize,
    /// Largest block; block sizes double from `init_block_size` up to this.
    pub max_block_size: usize,
}

/// The name PostgreSQL's `ALLOCSET_*_SIZES` macros suggest.
pub type AllocSetSizes = BlockSizes;

impl BlockSizes {
    /// For contexts that may hold a lot: 8 KiB first block, blocks up to
    /// 8 MiB (`ALLOCSET_DEFAULT_SIZES`).
    pub const DEFAULT: AllocSetSizes = AllocSetSizes {
        min_context_size: 0,
        init_block_size: 8 * 1024,
        max_block_size: 8 * 1024 * 1024,
    };
    /// For contexts never expected to hold much: 1 KiB blocks up to 8 KiB
    /// (`ALLOCSET_SMALL_SIZES`).
    pub const SMALL: AllocSetSizes = AllocSetSizes {
        min_context_size: 0,
        init_block_size: 1024,
        max_block_size: 8 * 1024,
    };
    /// Start small but may grow: 1 KiB up to 8 MiB
    /// (`ALLOCSET_START_SMALL_SIZES`).
    pub const START_SMALL: AllocSetSizes = AllocSetSizes {
        min_context_size: 0,
        init_block_size: 1024,
        max_block_size: 8 * 1024 * 1024,
    };

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let Self {
            min_context_size: min,
            init_block_size: init,
            max_block_size: max,
        } = *self;
        if init < 1024 || init % 8 != 0 {
            return Err("init_block_size must be a multiple of 8 and at least 1024");
        }
        if max < init || max % 8 != 0 || max > MAX_BLOCK_SIZE {
            return Err(
                "max_block_size must be a multiple of 8, at least init_block_size and below 1 GiB",
            );
        }
        if min != 0 && (min < 1024 || min % 8 != 0 || min > max) {
            return Err(
                "min_context_size must be 0, or a multiple of 8 between 1024 and max_block_size",
            );
        }
        Ok(())
    }
}

/// Largest block size accepted (PostgreSQL's `MEMORYCHUNK_MAX_BLOCKOFFSET`).
pub(crate) const MAX_BLOCK_SIZE: usize = crate::chunk::MAX_BLOCK_OFFSET;

/// Most recycled contexts kept per parameter set and thread
/// (PostgreSQL's `MAX_FREE_CONTEXTS`).
pub const MAX_RECYCLED: usize = 100;

/// Most bytes held by the recycled contexts of one thread. PostgreSQL
/// bounds only the count (100 per parameter set, up to 800 KiB of
/// DEFAULT contexts); the replay of the shared traces showed the cache
/// holding 3% of the peak memory with no gain in speed beyond a few
/// contexts, so the bytes are bounded too.
pub const MAX_RECYCLED_BYTES: usize = 64 * 1024;

/// Header of every block.
#[repr(C)]
struct Block {
    set: *mut AllocSet,
    prev: *mut Block,
    next: *mut Block,
    /// One past the last byte of the block.
    end: *mut u8,
}

const BLOCK_HDR: usize = size_of::<Block>();

/// A free chunk's first word links it to the next free chunk of its class.
struct FreeChunk {
    next: *mut FreeChunk,
}

/// The AllocSet context.
#[repr(C)]
pub(crate) struct AllocSet {
    pub(crate) hdr: ContextHeader,
    /// Free space of the current block (both null before the first block).
    freeptr: *mut u8,
    endptr: *mut u8,
    /// Block chunks are carved from, or null before the first allocation.
    current: *mut Block,
    /// Largest small request (at most [`CLASS_LIMIT`]); 32 bits so that it
    /// shares a word with `recycle_slot`.
    chunk_limit: u32,
    /// 0: not recyclable; 1: DEFAULT; 2: SMALL / START_SMALL.
    recycle_slot: u8,
    /// Bit `c` is set when free list `c` may be non-empty: set by every
    /// push, cleared only by reset, which then clears just those lists
    /// (most resets find none or a few, not all 36).
    maybe_free: u64,
    freelist: [*mut FreeChunk; NUM_CLASSES],
    /// Head of the list of all blocks (dedicated ones included).
    blocks: *mut Block,
    /// The first block, kept across resets; null until first needed.
    keeper: *mut Block,
    init_block_size: usize,
    max_block_size: usize,
    next_block_size: usize,
    /// What every small chunk's header has but its class and block
    /// offset: the owner form naming this set, or the far form's kind
    /// alone (see [`small_header`]).
    header_base: u64,
}

const _: () = assert!(NUM_CLASSES <= u64::BITS as usize, "maybe_free is a u64");

/// Bytes of the context header allocation.
const SET_HDR: usize = (size_of::<AllocSet>() + 15) & !15;

#[inline(always)]
fn block_data(block: *mut Block) -> *mut u8 {
    block.cast::<u8>().wrapping_add(BLOCK_HDR)
}

#[inline(always)]
unsafe fn block_bytes(block: *mut Block) -> usize {
    // SAFETY: caller passes a valid block.
    unsafe { (*block).end as usize - block as usize }
}

/// Largest chunk kept small for a given maximum block size: at most a
/// quarter of a maximal block, so that one huge chunk does not strand most
/// of a block (PostgreSQL's `ALLOC_CHUNK_FRACTION`).
fn chunk_limit_for(max_block_size: usize) -> u32 {
    let mut limit = CLASS_LIMIT;
    while limit > 8 && limit + CHUNK_HDR_SIZE > (max_block_size - BLOCK_HDR) / 4 {
        limit >>= 1;
    }
    const { assert!(CLASS_LIMIT <= u32::MAX as usize) };
    limit as u32
}

fn recycle_slot_for(sizes: &AllocSetSizes) -> u8 {
    match (sizes.min_context_size, sizes.init_block_size) {
        (0, 8192) => 1,
        (0, 1024) => 2,
        _ => 0,
    }
}

/// Creates an AllocSet under `parent` (or as a root).
///
/// The header is allocated alone; the first block comes with the first
/// allocation, so a context that is never used holds only its header.
/// With `min_context_size` the first block is allocated at once: that is
/// a reservation (PostgreSQL's ErrorContext relies on it to report
/// out-of-memory errors).
///
/// # Safety
/// `parent` must be a valid context or null.
pub(crate) unsafe fn create(
    parent: *mut ContextHeader,
    name: &'static str,
    sizes: AllocSetSizes,
) -> Result<*mut AllocSet, Error> {
    let slot = recycle_slot_for(&sizes);
    #[cfg(feature = "std")]
    if slot != 0 {
        if let Some(set) = recycle::pop(slot) {
            // SAFETY: a popped set is valid, unlinked and ours alone;
            // parent valid or null (caller contract).
            return unsafe { reuse(set, parent, name, sizes) };
        }
    }
    sizes
        .validate()
        .map_err(|why| Error::new(ErrorKind::InvalidParameters(why), name, 0))?;
    // SAFETY: parent is valid or null (caller contract).
    unsafe {
        crate::critical::check_create(parent, name)?;
        tree::charge(parent, SET_HDR, name, SET_HDR)?;
        let set = system::alloc_block(SET_HDR).cast::<AllocSet>();
        if set.is_null() {
            tree::discharge(parent, SET_HDR);
            return Err(Error::new(ErrorKind::OutOfMemory, name, SET_HDR));
        }
        let mut hdr = ContextHeader::new(ContextKind::AllocSet, name);
        hdr.own_bytes = SET_HDR;
        hdr.subtree_bytes = SET_HDR;
        set.write(AllocSet {
            hdr,
            freeptr: ptr::null_mut(),
            endptr: ptr::null_mut(),
            current: ptr::null_mut(),
            chunk_limit: chunk_limit_for(sizes.max_block_size),
            maybe_free: 0,
            freelist: [ptr::null_mut(); NUM_CLASSES],
            blocks: ptr::null_mut(),
            keeper: ptr::null_mut(),
            init_block_size: sizes.init_block_size,
            max_block_size: sizes.max_block_size,
            next_block_size: sizes.init_block_size,
            recycle_slot: slot,
            header_base: 0,
        });
        choose_header_form(set);
        if sizes.min_context_size != 0 {
            // The reservation: the header counts towards it, as in PostgreSQL.
            let first = (sizes.min_context_size - SET_HDR.min(sizes.min_context_size))
                .max(BLOCK_HDR + CHUNK_HDR_SIZE + 8);
            // Charged to the parent's chain before linking (limits apply).
            if let Err(e) = tree::charge(parent, first, name, first) {
                destroy(set);
                tree::discharge(parent, SET_HDR);
                return Err(e);
            }
            let block = system::alloc_block(first).cast::<Block>();
            if block.is_null() {
                tree::discharge(parent, first);
                destroy(set);
                tree::discharge(parent, SET_HDR);
                return Err(Error::new(ErrorKind::OutOfMemory, name, first));
            }
            (*set).hdr.own_bytes += first;
            (*set).hdr.subtree_bytes += first;
            install_block(set, block, first);
        }
        finish_create(set, parent);
        Ok(set)
    }
}

/// [`create`] with a recycled set: the same checks, in the same order,
/// and a header brought to the state of a fresh one.
///
/// A cached set is already reset (empty free lists, the keeper if any as
/// current block, `next_block_size` back at its start) and unlinked, with
/// no child, callback or identifier: only what the creator chooses or
/// what a previous life may have changed is written here. Most creates
/// come here, so this is where stores are saved.
///
/// # Safety
/// `set` just popped from the cache; `parent` valid or null.
#[cfg(feature = "std")]
unsafe fn reuse(
    set: *mut AllocSet,
    parent: *mut ContextHeader,
    name: &'static str,
    sizes: AllocSetSizes,
) -> Result<*mut AllocSet, Error> {
    // SAFETY: caller contract; on every error the set goes back to the
    // cache untouched.
    unsafe {
        debug_assert_cached(set);
        // The slot fixes the first two sizes, and the set's maximum was
        // validated when it was set: only a different maximum needs a look.
        if (*set).max_block_size != sizes.max_block_size {
            if let Err(why) = sizes.validate() {
                recycle::give_back(set);
                return Err(Error::new(ErrorKind::InvalidParameters(why), name, 0));
            }
            (*set).max_block_size = sizes.max_block_size;
            (*set).chunk_limit = chunk_limit_for(sizes.max_block_size);
        }
        debug_assert_eq!((*set).init_block_size, sizes.init_block_size);
        if let Err(e) = crate::critical::check_create(parent, name) {
            recycle::give_back(set);
            return Err(e);
        }
        let bytes = (*set).hdr.own_bytes;
        if let Err(e) = tree::charge(parent, bytes, name, bytes) {
            recycle::give_back(set);
            return Err(e);
        }
        let hdr = ptr::addr_of_mut!((*set).hdr);
        (*hdr).name = name;
        (*hdr).limit = usize::MAX;
        // Deleted as the root of a subtree, it kept the subtree's total.
        (*hdr).subtree_bytes = bytes;
        (*hdr).allow_in_critical = false;
        finish_create(set, parent);
        Ok(set)
    }
}

/// What [`reuse`] relies on: a cached set looks like a fresh context but
/// for its name, limit, subtree total and critical-section permission.
#[cfg(feature = "std")]
#[inline(always)]
unsafe fn debug_assert_cached(set: *mut AllocSet) {
    // SAFETY: `set` valid (caller contract); reads only.
    #[cfg(debug_assertions)]
    unsafe {
        let h = &(*set).hdr;
        debug_assert!(h.kind == ContextKind::AllocSet && h.is_reset);
        debug_assert!(h.parent.is_null() && h.first_child.is_null());
        debug_assert!(h.prev_sibling.is_null() && h.next_sibling.is_null());
        debug_assert!(h.callbacks.is_null() && h.ident.is_none());
        debug_assert!((*set).maybe_free == 0 && (*set).freelist.iter().all(|f| f.is_null()));
        debug_assert!((*set).current == (*set).keeper && (*set).blocks == (*set).keeper);
        let keeper = (*set).keeper;
        if keeper.is_null() {
            debug_assert!((*set).freeptr.is_null() && (*set).endptr.is_null());
            debug_assert_eq!(h.own_bytes, SET_HDR);
        } else {
            debug_assert!((*set).freeptr == block_data(keeper) && (*set).endptr == (*keeper).end);
            debug_assert_eq!(h.own_bytes, SET_HDR + block_bytes(keeper));
        }
        debug_assert_eq!((*set).next_block_size, (*set).init_block_size);
    }
    let _ = set;
}

unsafe fn finish_create(set: *mut AllocSet, parent: *mut ContextHeader) {
    // SAFETY: `set` is fully initialised and unlinked; parent valid or null.
    unsafe {
        if !parent.is_null() {
            (*set).hdr.allow_in_critical = (*parent).allow_in_critical;
            tree::link(set.cast(), parent);
        }
    }
}

/// Sets the form of the set's small-chunk headers: the owner form if its
/// address fits, else the far form (see [`crate::chunk`]).
unsafe fn choose_header_form(set: *mut AllocSet) {
    // SAFETY: `set` is a valid, private AllocSet (caller contract).
    unsafe {
        (*set).header_base =
            Header::owner_base(KindId::AllocSet, set.cast()).unwrap_or(KindId::AllocSetFar as u64);
    }
}

/// `!0` if `header_base` is of the far form (whose headers carry the
/// block offset), 0 if of the owner form: bit 1 of the kind id, spread by
/// an arithmetic shift, so the carve path needs no branch and the set no
/// second field.
#[inline(always)]
fn offset_mask(header_base: u64) -> u64 {
    const FORM_BIT: u32 = 1;
    const {
        assert!((KindId::AllocSetFar as u64 >> FORM_BIT) & 1 == 1);
        assert!((KindId::AllocSet as u64 >> FORM_BIT) & 1 == 0);
    };
    (((header_base << (63 - FORM_BIT)) as i64) >> 63) as u64
}

/// The header of a small chunk of `class` carved `offset` bytes into its
/// block. Without a branch for the form: in the owner form the offset is
/// masked away, in the far form the base is just the kind.
#[inline(always)]
unsafe fn small_header(set: *mut AllocSet, class: usize, offset: usize) -> Header {
    // SAFETY: `set` valid (caller contract).
    unsafe {
        let base = (*set).header_base;
        Header(
            base | Header::owned_value(class) | (Header::offset_bits(offset) & offset_mask(base)),
        )
    }
}

/// The set of a small chunk, in either header form.
///
/// # Safety
/// `ptr` a live small chunk of an AllocSet, `hdr` its header.
#[inline(always)]
unsafe fn small_chunk_set(ptr: *mut u8, hdr: Header) -> *mut AllocSet {
    // SAFETY: caller contract: the owner form names the set; the far
    // form's offset leads to the block, whose first word is the set.
    unsafe {
        if hdr.is_shared_chunk_of(KindId::AllocSet) {
            hdr.owner().cast()
        } else {
            (*block_of(ptr, hdr)).set
        }
    }
}

/// Links a fresh block of `size` bytes at the head of the list and makes
/// it the current block (and the keeper if there is none yet).
unsafe fn install_block(set: *mut AllocSet, block: *mut Block, size: usize) {
    // SAFETY: `block` is a fresh, private allocation of `size` bytes.
    unsafe {
        let end = block.cast::<u8>().add(size);
        block.write(Block {
            set,
            prev: ptr::null_mut(),
            next: (*set).blocks,
            end,
        });
        if !(*set).blocks.is_null() {
            (*(*set).blocks).prev = block;
        }
        (*set).blocks = block;
        (*set).current = block;
        (*set).freeptr = block_data(block);
        (*set).endptr = end;
        if (*set).keeper.is_null() {
            (*set).keeper = block;
        }
    }
}

/// Unlinks `block` from the block list.
unsafe fn unlink_block(set: *mut AllocSet, block: *mut Block) {
    // SAFETY: `block` is on `set`'s list.
    unsafe {
        let (prev, next) = ((*block).prev, (*block).next);
        if prev.is_null() {
            (*set).blocks = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
    }
}

/// Allocates `size` bytes.
///
/// # Safety
/// `set` must be a valid AllocSet.
#[inline(always)]
pub(crate) unsafe fn alloc(
    set: *mut AllocSet,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `set` is valid (caller contract); the free list holds chunks
    // of this class; the carve stays within [freeptr, endptr).
    unsafe {
        if size > (*set).chunk_limit as usize {
            return alloc_large(set, size, flags);
        }
        let class = class_of(size);
        let slot = (*set).freelist.get_unchecked_mut(class);
        let head = *slot;
        if !head.is_null() {
            crate::instrument::make_accessible(head.cast(), size_of::<FreeChunk>());
            *slot = (*head).next;
            return Ok(NonNull::new_unchecked(head.cast()));
        }
        let need = class_size(class) + CHUNK_HDR_SIZE;
        let p = (*set).freeptr;
        if (*set).endptr as usize - p as usize >= need {
            (*set).freeptr = p.add(need);
            (*set).hdr.is_reset = false;
            let chunk = p.add(CHUNK_HDR_SIZE);
            let offset = p as usize - (*set).current as usize;
            write_header(chunk, small_header(set, class, offset));
            return Ok(NonNull::new_unchecked(chunk));
        }
        alloc_from_new_block(set, class)
    }
}

/// The current block is full (or there is none yet): file its remainder
/// on the free lists, get a new block and carve the chunk from it.
#[cold]
#[inline(never)]
unsafe fn alloc_from_new_block(set: *mut AllocSet, class: usize) -> Result<NonNull<u8>, Error> {
    // SAFETY: `set` valid (caller contract); all pointers stay inside the
    // current block or the new one.
    unsafe {
        let need = class_size(class) + CHUNK_HDR_SIZE;
        let required = BLOCK_HDR + need;
        // The first block and the header together take `init_block_size`,
        // as PostgreSQL's header-in-the-first-block layout does.
        let mut size = if (*set).keeper.is_null() {
            (*set).init_block_size - SET_HDR.min((*set).init_block_size / 2)
        } else {
            next_block_size(set)
        };
        while size < required {
            size *= 2;
        }
        let block = loop {
            tree::acquire(set.cast(), size, class_size(class))?;
            let mem = system::alloc_block(size);
            if !mem.is_null() {
                break mem.cast::<Block>();
            }
            tree::release(set.cast(), size);
            // Short of memory: try smaller blocks, down to what is needed,
            // while the blocks are large (PostgreSQL does the same).
            if size > 1024 * 1024 && size / 2 >= required {
                size /= 2;
                continue;
            }
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                (*set).hdr.name,
                class_size(class),
            ));
        };
        if !(*set).current.is_null() {
            carve_remainder(set);
            if (*set).next_block_size < (*set).max_block_size {
                (*set).next_block_size = ((*set).next_block_size * 2).min((*set).max_block_size);
            }
        }
        install_block(set, block, size);
        (*set).hdr.is_reset = false;
        let p = (*set).freeptr;
        (*set).freeptr = p.add(need);
        let chunk = p.add(CHUNK_HDR_SIZE);
        write_header(chunk, small_header(set, class, BLOCK_HDR));
        Ok(NonNull::new_unchecked(chunk))
    }
}

#[inline]
unsafe fn next_block_size(set: *mut AllocSet) -> usize {
    // SAFETY: `set` valid (caller contract).
    unsafe {
        system::capped_block_size(
            (*set).next_block_size,
            (*set).init_block_size,
            (*set).hdr.own_bytes,
        )
    }
}

/// Turns the free space of the current block into free chunks of the
/// largest classes that fit (at most the chunk limit).
unsafe fn carve_remainder(set: *mut AllocSet) {
    // SAFETY: carving stays inside [freeptr, endptr) of the current block.
    unsafe {
        let block = (*set).current as usize;
        loop {
            let avail = (*set).endptr as usize - (*set).freeptr as usize;
            if avail < CHUNK_HDR_SIZE + 8 {
                break;
            }
            let Some(mut class) =
                class_fitting((avail - CHUNK_HDR_SIZE).min((*set).chunk_limit as usize))
            else {
                break;
            };
            if class_size(class) > (*set).chunk_limit as usize {
                class -= 1;
            }
            let p = (*set).freeptr;
            let chunk = p.add(CHUNK_HDR_SIZE);
            write_header(chunk, small_header(set, class, p as usize - block));
            #[cfg(feature = "checking")]
            crate::checking::carved_free(chunk, class_size(class));
            let fc = chunk.cast::<FreeChunk>();
            crate::instrument::make_accessible(chunk, size_of::<FreeChunk>());
            (*fc).next = (*set).freelist[class];
            (*set).freelist[class] = fc;
            (*set).maybe_free |= 1 << class;
            (*set).freeptr = p.add(CHUNK_HDR_SIZE + class_size(class));
        }
    }
}

/// A chunk above the chunk limit: a dedicated block, linked into the
/// block list without becoming current.
#[cold]
#[inline(never)]
unsafe fn alloc_large(
    set: *mut AllocSet,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: `set` valid (caller contract); the new block is private.
    unsafe {
        let name = (*set).hdr.name;
        check_size(size, flags, name)?;
        let bytes = BLOCK_HDR + CHUNK_HDR_SIZE + maxalign(size);
        tree::acquire(set.cast(), bytes, size)?;
        let block = system::alloc_block(bytes).cast::<Block>();
        if block.is_null() {
            tree::release(set.cast(), bytes);
            return Err(Error::new(ErrorKind::OutOfMemory, name, size));
        }
        block.write(Block {
            set,
            prev: ptr::null_mut(),
            next: (*set).blocks,
            end: block.cast::<u8>().add(bytes),
        });
        if !(*set).blocks.is_null() {
            (*(*set).blocks).prev = block;
        }
        (*set).blocks = block;
        (*set).hdr.is_reset = false;
        let chunk = block_data(block).add(CHUNK_HDR_SIZE);
        write_header(chunk, Header::external(KindId::AllocSet));
        Ok(NonNull::new_unchecked(chunk))
    }
}

/// Block of a small chunk.
#[inline(always)]
unsafe fn block_of(ptr: *mut u8, hdr: Header) -> *mut Block {
    ptr.wrapping_sub(CHUNK_HDR_SIZE + hdr.block_offset()).cast()
}

/// Block of an external chunk.
#[inline(always)]
fn large_block_of(ptr: *mut u8) -> *mut Block {
    ptr.wrapping_sub(CHUNK_HDR_SIZE + BLOCK_HDR).cast()
}

/// Frees a chunk whose header names AllocSet (either form).
///
/// # Safety
/// `ptr` must be a live chunk of an AllocSet, `hdr` its header.
#[inline(always)]
pub(crate) unsafe fn free(ptr: *mut u8, hdr: Header) -> Result<(), Error> {
    // SAFETY: caller contract.
    unsafe {
        if hdr.is_external() {
            return free_large(ptr, hdr);
        }
        push_free(small_chunk_set(ptr, hdr), ptr, hdr.owned_value_of());
    }
    Ok(())
}

/// Frees a small chunk whose header is in the owner form (the hot path of
/// `free`, which tested the form).
///
/// # Safety
/// `ptr` must be a live small chunk of an AllocSet, `hdr` its owner-form
/// header.
#[inline(always)]
pub(crate) unsafe fn free_small(ptr: *mut u8, hdr: Header) {
    debug_assert!(hdr.is_shared_chunk_of(KindId::AllocSet));
    // SAFETY: caller contract: the header names the set.
    unsafe { push_free(hdr.owner().cast(), ptr, hdr.owned_value_of()) }
}

/// Pushes a freed small chunk of `class` on the set's free list.
///
/// # Safety
/// `ptr` a live small chunk of `set`, of class `class`.
#[inline(always)]
unsafe fn push_free(set: *mut AllocSet, ptr: *mut u8, class: usize) {
    // SAFETY: caller contract; the chunk's first word is ours once it is
    // free.
    unsafe {
        debug_assert!(class < NUM_CLASSES);
        let slot = (*set).freelist.get_unchecked_mut(class);
        let fc = ptr.cast::<FreeChunk>();
        crate::instrument::make_accessible(ptr, size_of::<FreeChunk>());
        (*fc).next = *slot;
        *slot = fc;
        (*set).maybe_free |= 1 << class;
    }
}

#[cold]
unsafe fn free_large(ptr: *mut u8, hdr: Header) -> Result<(), Error> {
    // SAFETY: an external chunk sits right after its block header (caller
    // contract); the magic is checked before the block is trusted.
    unsafe {
        if !hdr.external_magic_ok() {
            return Err(Error::new(ErrorKind::BadPointer { header: hdr.0 }, "?", 0));
        }
        let block = large_block_of(ptr);
        let set = (*block).set;
        let bytes = block_bytes(block);
        unlink_block(set, block);
        system::free_block(block.cast(), bytes);
        tree::release(set.cast(), bytes);
    }
    Ok(())
}

/// Resizes a chunk; on error the old chunk is untouched.
///
/// # Safety
/// `ptr` must be a live chunk of an AllocSet, `hdr` its header.
// With `checking`, the checking layer resizes chunks itself.
#[cfg_attr(feature = "checking", allow(dead_code))]
pub(crate) unsafe fn realloc(
    ptr: *mut u8,
    hdr: Header,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract; copies stay within both chunks.
    unsafe {
        if hdr.is_external() {
            return realloc_large(ptr, hdr, size, flags);
        }
        let old = class_size(hdr.owned_value_of());
        if size <= old {
            return Ok(NonNull::new_unchecked(ptr));
        }
        let set = small_chunk_set(ptr, hdr);
        crate::critical::check(set.cast(), size)?;
        let new = alloc(set, size, flags)?;
        // The whole old chunk is copied, past what was asked for: tell the
        // sanitizers (a no-op without them).
        crate::instrument::make_accessible(ptr, old);
        crate::instrument::make_accessible(new.as_ptr(), old);
        ptr::copy_nonoverlapping(ptr, new.as_ptr(), old);
        free(ptr, hdr)?;
        Ok(new)
    }
}

#[cold]
// With `checking`, the checking layer resizes chunks itself.
#[cfg_attr(feature = "checking", allow(dead_code))]
unsafe fn realloc_large(
    ptr: *mut u8,
    hdr: Header,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: an external chunk sits alone after its block header; the
    // block is relinked after the system realloc moved it.
    unsafe {
        if !hdr.external_magic_ok() {
            return Err(Error::new(
                ErrorKind::BadPointer { header: hdr.0 },
                "?",
                size,
            ));
        }
        let block = large_block_of(ptr);
        let set = (*block).set;
        let name = (*set).hdr.name;
        check_size(size, flags, name)?;
        crate::critical::check(set.cast(), size)?;
        let old_bytes = block_bytes(block);
        let new_bytes = BLOCK_HDR + CHUNK_HDR_SIZE + maxalign(size);
        if new_bytes > old_bytes {
            tree::acquire(set.cast(), new_bytes - old_bytes, size)?;
        }
        let moved = system::realloc_block(block.cast(), old_bytes, new_bytes).cast::<Block>();
        if moved.is_null() {
            if new_bytes > old_bytes {
                tree::release(set.cast(), new_bytes - old_bytes);
            }
            return Err(Error::new(ErrorKind::OutOfMemory, name, size));
        }
        if new_bytes < old_bytes {
            tree::release(set.cast(), old_bytes - new_bytes);
        }
        (*moved).end = moved.cast::<u8>().add(new_bytes);
        if (*moved).prev.is_null() {
            (*set).blocks = moved;
        } else {
            (*(*moved).prev).next = moved;
        }
        if !(*moved).next.is_null() {
            (*(*moved).next).prev = moved;
        }
        Ok(NonNull::new_unchecked(
            block_data(moved).add(CHUNK_HDR_SIZE),
        ))
    }
}

/// Context owning a chunk.
///
/// # Safety
/// `ptr` must be a live chunk of an AllocSet, `hdr` its header.
#[inline]
pub(crate) unsafe fn chunk_context(ptr: *mut u8, hdr: Header) -> *mut ContextHeader {
    // SAFETY: caller contract.
    unsafe {
        if hdr.is_external() {
            (*large_block_of(ptr)).set.cast()
        } else {
            small_chunk_set(ptr, hdr).cast()
        }
    }
}

/// Bytes the chunk occupies, header included.
///
/// # Safety
/// `ptr` must be a live chunk of an AllocSet, `hdr` its header.
#[inline]
pub(crate) unsafe fn chunk_space(ptr: *mut u8, hdr: Header) -> usize {
    // SAFETY: caller contract.
    unsafe {
        if hdr.is_external() {
            (*large_block_of(ptr)).end as usize - ptr as usize + CHUNK_HDR_SIZE
        } else {
            class_size(hdr.owned_value_of()) + CHUNK_HDR_SIZE
        }
    }
}

/// Usable bytes of a chunk (its capacity, without the header).
///
/// # Safety
/// As [`chunk_space`].
#[inline]
pub(crate) unsafe fn chunk_capacity(ptr: *mut u8, hdr: Header) -> usize {
    // SAFETY: caller contract.
    unsafe { chunk_space(ptr, hdr) - CHUNK_HDR_SIZE }
}

/// Frees every block but the keeper and empties the free lists.
///
/// Most resets find only the keeper and few non-empty free lists (a
/// per-tuple context that took a handful of chunks): that case costs a
/// few stores, the rest is out of line.
///
/// # Safety
/// `set` valid; its chunks are dead.
#[inline]
pub(crate) unsafe fn reset(set: *mut AllocSet) {
    // SAFETY: the keeper, if any, is the set's own block; `maybe_free`
    // names only valid class indices.
    unsafe {
        let keeper = (*set).keeper;
        // How far the keeper was carved (for the sanitizers and `checking`;
        // unused, and optimised away, without them).
        let keeper_used_end = if (*set).current == keeper {
            (*set).freeptr
        } else if keeper.is_null() {
            ptr::null_mut()
        } else {
            (*keeper).end
        };
        // The keeper is not always last: a dedicated block taken before
        // the first small chunk sits behind it.
        if (*set).blocks != keeper || (!keeper.is_null() && !(*keeper).next.is_null()) {
            free_blocks_but_keeper(set);
        }
        (*set).current = keeper;
        if keeper.is_null() {
            (*set).freeptr = ptr::null_mut();
            (*set).endptr = ptr::null_mut();
        } else {
            crate::instrument::rewound(
                block_data(keeper),
                keeper_used_end as usize - block_data(keeper) as usize,
            );
            (*set).freeptr = block_data(keeper);
            (*set).endptr = (*keeper).end;
        }
        let mut bits = (*set).maybe_free;
        while bits != 0 {
            *(*set)
                .freelist
                .get_unchecked_mut(bits.trailing_zeros() as usize) = ptr::null_mut();
            bits &= bits - 1;
        }
        (*set).maybe_free = 0;
        (*set).next_block_size = (*set).init_block_size;
    }
}

/// The part of [`reset`] for a set holding more than its keeper: frees
/// the other blocks and leaves the keeper alone on the list.
#[inline(never)]
unsafe fn free_blocks_but_keeper(set: *mut AllocSet) {
    // SAFETY: walks the set's own block list; the keeper is not freed.
    unsafe {
        let keeper = (*set).keeper;
        let mut freed = 0;
        let mut block = (*set).blocks;
        while !block.is_null() {
            let next = (*block).next;
            if block != keeper {
                let bytes = block_bytes(block);
                freed += bytes;
                system::free_block(block.cast(), bytes);
            }
            block = next;
        }
        (*set).blocks = keeper;
        if !keeper.is_null() {
            (*keeper).next = ptr::null_mut();
            (*keeper).prev = ptr::null_mut();
        }
        if freed != 0 {
            tree::release(set.cast(), freed);
        }
    }
}

/// Frees (or recycles) an unlinked, childless AllocSet.
///
/// # Safety
/// `set` valid, unlinked, callbacks run; nothing of it is used afterwards.
pub(crate) unsafe fn delete(set: *mut AllocSet) {
    // SAFETY: caller contract.
    unsafe {
        if !(*set).hdr.is_reset {
            reset(set);
            // A recycled set is taken as it is kept: reset in every way.
            (*set).hdr.is_reset = true;
        }
        // With `checking`, deleted contexts are not recycled: a stale
        // handle must not find a live context at its address.
        #[cfg(all(feature = "std", not(feature = "checking")))]
        if (*set).recycle_slot != 0 && recycle::push(set) {
            return;
        }
        destroy(set);
    }
}

#[cfg(feature = "std")]
/// Returns the first block of a reset, unlinked context to the system.
///
/// # Safety
/// `set` valid, reset (it holds at most its keeper) and unlinked.
unsafe fn drop_keeper(set: *mut AllocSet) {
    // SAFETY: caller contract: the keeper holds no live chunk.
    unsafe {
        let keeper = (*set).keeper;
        if keeper.is_null() {
            return;
        }
        let bytes = block_bytes(keeper);
        system::free_block(keeper.cast(), bytes);
        (*set).hdr.own_bytes -= bytes;
        (*set).hdr.subtree_bytes -= bytes;
        (*set).keeper = ptr::null_mut();
        (*set).blocks = ptr::null_mut();
        (*set).current = ptr::null_mut();
        (*set).freeptr = ptr::null_mut();
        (*set).endptr = ptr::null_mut();
    }
}

/// Returns the keeper (if any) and the header to the system.
unsafe fn destroy(set: *mut AllocSet) {
    // SAFETY: `set` holds at most its keeper (reset before); the header
    // is plain data (its identifier was dropped by `tree::delete`).
    unsafe {
        let keeper = (*set).keeper;
        if !keeper.is_null() {
            system::free_block(keeper.cast(), block_bytes(keeper));
        }
        system::free_block(set.cast(), SET_HDR);
    }
}

/// Walks every block and chunk for [`crate::check`]; returns the bytes
/// the context holds (header and blocks).
///
/// # Safety
/// `set` valid.
pub(crate) unsafe fn check(set: *mut AllocSet, checker: &mut Checker<'_>) -> usize {
    // SAFETY: walks the set's own blocks; each chunk's extent comes from a
    // header verified first, and the walk of a block stops at the first bad
    // header.
    unsafe {
        let mut held = SET_HDR;
        let mut ranges = alloc::vec::Vec::new();
        let mut block = (*set).blocks;
        while !block.is_null() {
            checker.block();
            held += block_bytes(block);
            ranges.push((block_data(block) as usize, (*block).end as usize));
            let first = block_data(block).add(CHUNK_HDR_SIZE);
            let empty = block == (*set).current && (*set).freeptr == block_data(block);
            if empty {
                // Nothing carved yet: no header to read.
            } else if checker.is_external(first, KindId::AllocSet) {
                checker.external_chunk(
                    first,
                    KindId::AllocSet,
                    (*block).end as usize - first as usize,
                );
            } else {
                // The current block is carved up to the free pointer; the
                // others were carved until less than a chunk was left.
                let (limit, slack) = if block == (*set).current {
                    ((*set).freeptr as usize, 0)
                } else {
                    ((*block).end as usize, CHUNK_HDR_SIZE + 8 - 1)
                };
                let mut p = block_data(block);
                while (p as usize) + slack < limit {
                    let chunk = p.add(CHUNK_HDR_SIZE);
                    let expected = small_header(set, 0, p as usize - block as usize);
                    let Some(hdr) = checker.header_like(chunk, expected, OWNED_VALUE_BITS) else {
                        break;
                    };
                    let class = hdr.owned_value_of();
                    if class >= NUM_CLASSES
                        || (p as usize) + CHUNK_HDR_SIZE + class_size(class)
                            > limit.max((*block).end as usize)
                    {
                        checker.problem(
                            Problem::CorruptChunk {
                                what: "chunk header names a size past its block",
                            },
                            chunk,
                        );
                        break;
                    }
                    checker.contents(chunk, class_size(class));
                    p = chunk.add(class_size(class));
                }
            }
            block = (*block).next;
        }
        // A free chunk's link is its first word, which a write after free
        // may have changed: follow it only into the set's own blocks.
        ranges.sort_unstable();
        let inside = |p: usize| {
            let i = ranges.partition_point(|&(start, _)| start <= p);
            p % 8 == 0 && i > 0 && p >= ranges[i - 1].0 + CHUNK_HDR_SIZE && p < ranges[i - 1].1
        };
        let mut listed = 0;
        for (class, &head) in (*set).freelist.iter().enumerate() {
            let mut fc = head;
            while !fc.is_null() {
                if !inside(fc as usize) {
                    checker.problem(Problem::CorruptChunk { what: "free-list link points outside the context's blocks (written after free?)" }, fc.cast());
                    break;
                }
                // All of the header but the far form's block offset.
                let hdr = read_header(fc.cast());
                if hdr.0 & !(offset_mask((*set).header_base) & Header::offset_bits(MAX_BLOCK_SIZE))
                    != small_header(set, class, 0).0
                {
                    checker.problem(Problem::CorruptChunk { what: "free list holds a chunk of another class (free-list link overwritten?)" }, fc.cast());
                    break;
                }
                listed += 1;
                if listed > checker.chunks_here {
                    checker.problem(
                        Problem::CorruptChunk {
                            what: "free list loops",
                        },
                        fc.cast(),
                    );
                    break;
                }
                // The link lives in freed memory (Valgrind, ASan).
                crate::instrument::make_accessible(fc.cast(), size_of::<FreeChunk>());
                fc = (*fc).next;
            }
        }
        #[cfg(feature = "checking")]
        checker.agree(
            "chunks on the free lists vs. chunks marked freed",
            listed,
            checker.freed_here,
        );
        #[cfg(not(feature = "checking"))]
        let _ = listed;
        held
    }
}

/// Stats of this context alone.
///
/// # Safety
/// `set` valid.
pub(crate) unsafe fn stats(set: *mut AllocSet) -> Counters {
    // SAFETY: walks the set's own blocks and free lists.
    unsafe {
        let mut c = Counters::default();
        let mut block = (*set).blocks;
        while !block.is_null() {
            c.blocks += 1;
            block = (*block).next;
        }
        c.total_bytes = (*set).hdr.own_bytes;
        c.free_bytes = (*set).endptr as usize - (*set).freeptr as usize;
        for (class, &head) in (*set).freelist.iter().enumerate() {
            let mut fc = head;
            while !fc.is_null() {
                c.free_chunks += 1;
                c.free_bytes += class_size(class) + CHUNK_HDR_SIZE;
                // The link lives in freed memory (Valgrind, ASan).
                crate::instrument::make_accessible(fc.cast(), size_of::<FreeChunk>());
                fc = (*fc).next;
            }
        }
        c
    }
}

/// Bytes held by recycled contexts of this thread.
pub fn recycled_bytes() -> usize {
    #[cfg(feature = "std")]
    {
        recycle::bytes()
    }
    #[cfg(not(feature = "std"))]
    {
        0
    }
}

/// Frees every recycled context of this thread, and returns every block
/// of its block cache ([`system::cached_block_bytes`]),
/// theirs included, to the block source: afterwards this thread's caches
/// hold nothing.
///
/// ```
/// let c = mcxt::Context::new("short-lived");
/// c.alloc(100u64);
/// drop(c); // deleted: kept for reuse
/// mcxt::release_recycled();
/// assert_eq!(mcxt::recycled_bytes(), 0);
/// assert_eq!(mcxt::system::cached_block_bytes(), 0);
/// ```
pub fn release_recycled() {
    #[cfg(feature = "std")]
    {
        recycle::clear();
        crate::block_cache::release_cached_blocks();
    }
}

/// Bytes held by this thread's caches, which [`release_recycled`] empties:
/// [`recycled_bytes`] plus
/// [`system::cached_block_bytes`].
/// Memory mcxt holds from the system is this plus what the live contexts
/// hold ([`Context::mem_allocated`](crate::Context::mem_allocated)).
///
/// ```
/// let c = mcxt::Context::new("grown");
/// for _ in 0..100 {
///     c.alloc([0u8; 1000]);
/// }
/// drop(c);
/// assert!(mcxt::cached_bytes() > 0, "blocks kept for the next context");
/// mcxt::release_recycled();
/// assert_eq!(mcxt::cached_bytes(), 0);
/// ```
pub fn cached_bytes() -> usize {
    #[cfg(feature = "std")]
    {
        recycle::bytes() + crate::block_cache::cached_block_bytes()
    }
    #[cfg(not(feature = "std"))]
    {
        0
    }
}

#[cfg(feature = "std")]
mod recycle {
    //! Per-thread lists of deleted standard-size contexts, chained through
    //! `hdr.next_sibling`.
    //!
    //! Each parameter set has two lists: contexts that kept their first
    //! block and contexts that gave it back (over the byte budget). `pop`
    //! takes from the first list when it can. With a single list, a
    //! workload that creates and deletes contexts one after another, once
    //! the budget was full, always got a context without a block (the last
    //! pushed), allocated a block for its first chunk and gave it back at
    //! delete, while the blocks kept deeper in the list were never used.
    use super::{destroy, drop_keeper, AllocSet, MAX_RECYCLED, MAX_RECYCLED_BYTES};
    use core::cell::Cell;
    use core::ptr;

    struct Cache {
        /// Index `2 * (slot - 1) + kept`, `kept` 1 for contexts holding
        /// their first block.
        heads: [Cell<*mut AllocSet>; 4],
        /// Per slot, over both lists.
        counts: [Cell<usize>; 2],
        bytes: Cell<usize>,
    }

    impl Cache {
        fn clear(&self) {
            for head in &self.heads {
                let mut set = head.replace(ptr::null_mut());
                while !set.is_null() {
                    // SAFETY: cached sets are valid, unlinked and owned by
                    // this cache alone.
                    unsafe {
                        let next = (*set).hdr.next_sibling.cast::<AllocSet>();
                        destroy(set);
                        set = next;
                    }
                }
            }
            for count in &self.counts {
                count.set(0);
            }
            self.bytes.set(0);
        }
    }

    impl Drop for Cache {
        fn drop(&mut self) {
            self.clear();
        }
    }

    std::thread_local! {
        static CACHE: Cache = const {
            Cache {
                heads: [
                    Cell::new(ptr::null_mut()),
                    Cell::new(ptr::null_mut()),
                    Cell::new(ptr::null_mut()),
                    Cell::new(ptr::null_mut()),
                ],
                counts: [Cell::new(0), Cell::new(0)],
                bytes: Cell::new(0),
            }
        };
    }

    pub(super) fn pop(slot: u8) -> Option<*mut AllocSet> {
        CACHE
            .try_with(|c| {
                let i = slot as usize - 1;
                let mut list = 2 * i + 1;
                let mut set = c.heads[list].get();
                if set.is_null() {
                    list = 2 * i;
                    set = c.heads[list].get();
                    if set.is_null() {
                        return None;
                    }
                }
                // SAFETY: cached sets are valid and owned by the cache.
                unsafe {
                    c.heads[list].set((*set).hdr.next_sibling.cast());
                    // Unchained, it is as unlinked as a fresh context.
                    (*set).hdr.next_sibling = ptr::null_mut();
                    c.counts[i].set(c.counts[i].get() - 1);
                    c.bytes.set(c.bytes.get() - (*set).hdr.own_bytes);
                }
                Some(set)
            })
            .ok()
            .flatten()
    }

    /// Takes `set` (reset, unlinked); false if the list is full.
    #[inline]
    pub(super) fn push(set: *mut AllocSet) -> bool {
        CACHE
            .try_with(|c| {
                // SAFETY: `set` is valid, reset and unlinked (caller).
                unsafe {
                    let i = (*set).recycle_slot as usize - 1;
                    if c.counts[i].get() >= MAX_RECYCLED {
                        return false;
                    }
                    if c.bytes.get() + (*set).hdr.own_bytes > MAX_RECYCLED_BYTES
                        && !fit_budget(c, set)
                    {
                        return false;
                    }
                    let list = 2 * i + usize::from(!(*set).keeper.is_null());
                    (*set).hdr.next_sibling = c.heads[list].get().cast();
                    c.heads[list].set(set);
                    c.counts[i].set(c.counts[i].get() + 1);
                    c.bytes.set(c.bytes.get() + (*set).hdr.own_bytes);
                }
                true
            })
            .unwrap_or(false)
    }

    /// Over the budget: keeps the header (creation stays free of malloc)
    /// but gives the first block back; false if even the header does not
    /// fit. Out of line, so that the usual push saves no registers for it.
    ///
    /// # Safety
    /// As [`push`].
    #[inline(never)]
    unsafe fn fit_budget(c: &Cache, set: *mut AllocSet) -> bool {
        // SAFETY: caller contract.
        unsafe {
            drop_keeper(set);
            c.bytes.get() + (*set).hdr.own_bytes <= MAX_RECYCLED_BYTES
        }
    }

    /// Puts back a set just popped (a create that failed); it fits, as
    /// it did before, and is freed if it does not.
    pub(super) fn give_back(set: *mut AllocSet) {
        if !push(set) {
            // SAFETY: `set` is valid, reset, unlinked and ours alone.
            unsafe { destroy(set) }
        }
    }

    pub(super) fn bytes() -> usize {
        CACHE.try_with(|c| c.bytes.get()).unwrap_or(0)
    }

    pub(super) fn clear() {
        let _ = CACHE.try_with(|c| c.clear());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{self, MemoryContext};

    /// Allocates, reallocates, queries, checks and frees small chunks of
    /// `ctx`, whose small-chunk headers must be of `form`.
    ///
    /// # Safety
    /// `ctx` an alive AllocSet with no chunk.
    unsafe fn exercise(ctx: MemoryContext, form: KindId) {
        // SAFETY: caller contract; every chunk is used while live.
        unsafe {
            let set = ctx.header().cast::<AllocSet>();
            let mut chunks = alloc::vec::Vec::new();
            for size in [1usize, 8, 24, 40, 100, 1000, 8000] {
                let p = ctx.alloc(size).unwrap();
                let hdr = read_header(p.as_ptr());
                assert_eq!(hdr.kind(), Some(form), "size {size}");
                assert!(!hdr.is_external());
                if form == KindId::AllocSet {
                    assert_eq!(hdr.owner(), set.cast::<u8>());
                }
                assert_eq!(small_chunk_set(p.as_ptr(), hdr), set);
                assert_eq!(raw::chunk_context(p).unwrap(), ctx);
                // (With `checking`, requests are padded for a sentinel.)
                #[cfg(not(feature = "checking"))]
                assert_eq!(
                    raw::chunk_space(p).unwrap(),
                    class_size(class_of(size)) + CHUNK_HDR_SIZE
                );
                p.as_ptr().write_bytes(0xA5, size);
                chunks.push((p, size));
            }
            // Growing moves to a bigger class and keeps the contents.
            let (p, size) = chunks.pop().unwrap();
            let q = raw::realloc(p, size * 2).unwrap();
            assert_eq!(*q.as_ptr().add(size - 1), 0xA5);
            assert_eq!(raw::chunk_context(q).unwrap(), ctx);
            chunks.push((q, size * 2));
            assert!(ctx.check().is_ok());
            // Freed chunks come back through the free lists.
            let (p, size) = chunks.swap_remove(2);
            raw::free(p).unwrap();
            assert_eq!(ctx.alloc(size).unwrap(), p);
            raw::free(p).unwrap();
            for (p, _) in chunks {
                raw::free(p).unwrap();
            }
            assert!(ctx.check().is_ok());
            // A header whose context bits (or block offset) are wrong is
            // found by the check.
            let p = ctx.alloc(40).unwrap();
            *p.as_ptr().sub(2) ^= 0x10;
            assert!(!ctx.check().is_ok());
            *p.as_ptr().sub(2) ^= 0x10;
            assert!(ctx.check().is_ok());
            raw::free(p).unwrap();
        }
    }

    #[test]
    fn small_chunks_name_their_context() {
        // SAFETY: a fresh root context, deleted at the end.
        unsafe {
            let ctx = MemoryContext::new_alloc_set(None, "owner", AllocSetSizes::DEFAULT).unwrap();
            let form = if cfg!(feature = "far-headers") {
                KindId::AllocSetFar
            } else {
                KindId::AllocSet
            };
            exercise(ctx, form);
            ctx.delete();
        }
    }

    #[test]
    fn the_far_form_works_alike() {
        // SAFETY: a fresh root context, switched to the far form before
        // its first chunk, deleted at the end.
        unsafe {
            let ctx = MemoryContext::new_alloc_set(None, "far", AllocSetSizes::DEFAULT).unwrap();
            let set = ctx.header().cast::<AllocSet>();
            (*set).header_base = KindId::AllocSetFar as u64;
            exercise(ctx, KindId::AllocSetFar);
            // Back to the context's own form before it is recycled.
            ctx.reset();
            choose_header_form(set);
            ctx.delete();
        }
    }
}
