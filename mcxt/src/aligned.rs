//! Aligned chunks (PostgreSQL's `palloc_aligned`): not a context kind but a
//! *redirect* header.
//!
//! An aligned request of `size` bytes aligned to `align` takes an ordinary
//! chunk of `size + align` bytes from the context, picks the first address
//! inside it that is aligned and leaves 8 bytes before it, and writes there
//! a header of kind `AlignedRedirect` whose value is `log2(align)` and whose
//! offset leads back to the ordinary chunk. `free`, `chunk_context` and
//! `chunk_space` follow the redirect; `realloc` keeps the alignment and
//! reuses the chunk in place when it is big enough.

use crate::chunk::{write_header, Header, KindId, CHUNK_HDR_SIZE, MAXALIGN};
use crate::error::{AllocFlags, Error, ErrorKind};
use crate::raw::{self, alloc_in};
use crate::tree::ContextHeader;
use core::ptr::{self, NonNull};

/// Largest alignment accepted (PostgreSQL: below 128 MiB).
pub const MAX_ALIGNMENT: usize = 64 * 1024 * 1024;

/// The ordinary chunk behind an aligned pointer.
#[inline(always)]
pub(crate) fn unaligned(p: *mut u8, hdr: Header) -> *mut u8 {
    p.wrapping_sub(CHUNK_HDR_SIZE + hdr.block_offset())
}

/// Allocates `size` bytes aligned to `align`.
///
/// # Safety
/// `ctx` alive.
#[inline(always)]
pub(crate) unsafe fn alloc(
    ctx: *mut ContextHeader,
    size: usize,
    align: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    if matches!(align, 1 | 2 | 4 | 8) {
        // SAFETY: caller contract; alignments up to MAXALIGN are served by
        // every chunk (other values are checked out of line).
        return unsafe { alloc_in(ctx, size, flags) };
    }
    // SAFETY: caller contract.
    unsafe { alloc_over_aligned(ctx, size, align, flags) }
}

/// Alignment above MAXALIGN (or invalid), out of line.
#[inline(never)]
unsafe fn alloc_over_aligned(
    ctx: *mut ContextHeader,
    size: usize,
    align: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract.
    let name = unsafe { (*ctx).name };
    if !align.is_power_of_two() || align > MAX_ALIGNMENT {
        return Err(Error::new(
            ErrorKind::Unsupported("alignment must be a power of two no larger than 64 MiB"),
            name,
            size,
        ));
    }
    if align <= MAXALIGN {
        // SAFETY: caller contract.
        return unsafe { alloc_in(ctx, size, flags) };
    }
    // SAFETY: caller contract. Bump chunks have no header to redirect,
    // and need none: the bump pointer is simply aligned.
    #[cfg(not(feature = "checking"))]
    if unsafe { (*ctx).kind } == crate::ContextKind::Bump {
        // SAFETY: the kind tag names the real type.
        return unsafe {
            crate::critical::check(ctx, size)?;
            let p = crate::bump::alloc_aligned(ctx.cast(), size, align, flags)?;
            // Not through the allocation dispatch: describe it here.
            #[cfg(any(feature = "valgrind", feature = "asan"))]
            if size != 0 {
                crate::instrument::chunk_allocated(ctx, p.as_ptr(), size);
            }
            Ok(p)
        };
    }
    // Room for the redirect header (and, with `checking`, its check word)
    // before the first aligned address past the chunk's start.
    let total = size
        .checked_add(align + (CHUNK_HDR_SIZE - MAXALIGN))
        .ok_or(Error::new(ErrorKind::InvalidSize, name, size))?;
    // SAFETY: caller contract; the aligned pointer and its header lie
    // inside the ordinary chunk of `size + align` bytes.
    unsafe {
        let base = alloc_in(ctx, total, flags)?.as_ptr();
        let addr = (base as usize + CHUNK_HDR_SIZE + align - 1) & !(align - 1);
        // Keep the provenance of the chunk: derive the pointer from `base`.
        let aligned = base.add(addr - base as usize);
        let offset = addr - CHUNK_HDR_SIZE - base as usize;
        write_header(
            aligned,
            Header::new(
                KindId::AlignedRedirect,
                align.trailing_zeros() as usize,
                offset,
            ),
        );
        #[cfg(feature = "checking")]
        crate::checking::place_aligned(base, aligned, size);
        Ok(NonNull::new_unchecked(aligned))
    }
}

/// Resizes an aligned chunk, keeping its alignment.
///
/// # Safety
/// `p` must be a live aligned chunk with header `hdr`.
// With `checking`, the checking layer resizes chunks itself.
#[cfg_attr(feature = "checking", allow(dead_code))]
pub(crate) unsafe fn realloc(
    p: *mut u8,
    hdr: Header,
    size: usize,
    flags: AllocFlags,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: caller contract; copies stay inside both chunks.
    unsafe {
        let base = unaligned(p, hdr);
        let base_nn = NonNull::new_unchecked(base);
        let capacity = raw::chunk_capacity(base_nn)? - (p as usize - base as usize);
        if size <= capacity {
            // The base chunk now ends where the aligned one does.
            #[cfg(any(feature = "valgrind", feature = "asan"))]
            crate::instrument::chunk_resized(
                raw::chunk_context_raw(base)?,
                base,
                p as usize - base as usize + size,
            );
            return Ok(NonNull::new_unchecked(p));
        }
        let ctx = raw::chunk_context_raw(base)?;
        let align = 1usize << hdr.value();
        let new = alloc(ctx, size, align, flags)?;
        // The whole old chunk is copied, past what was asked for: tell the
        // sanitizers (a no-op without them).
        crate::instrument::make_accessible(p, capacity.min(size));
        ptr::copy_nonoverlapping(p, new.as_ptr(), capacity.min(size));
        raw::free(base_nn)?;
        Ok(new)
    }
}
