//! Errors: every failure names the context and the size involved.

use core::fmt;

/// Largest request accepted without [`AllocFlags::HUGE`] (1 GiB - 1), as in
/// PostgreSQL: any allocation fits a varlena and an `int` index, and twice a
/// valid size never overflows.
///
/// [`AllocFlags::HUGE`]: crate::AllocFlags::HUGE
pub const MAX_ALLOC_SIZE: usize = 0x3fff_ffff;

/// Largest request accepted with [`AllocFlags::HUGE`]: `SIZE_MAX / 2`, as
/// in PostgreSQL. (A request that large passes the size check and then
/// fails as out of memory; block sizes are computed without overflow up
/// to it.)
///
/// [`AllocFlags::HUGE`]: crate::AllocFlags::HUGE
pub const MAX_ALLOC_HUGE_SIZE: usize = usize::MAX / 2;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The system allocator refused a block.
    OutOfMemory,
    /// The request is larger than [`MAX_ALLOC_SIZE`] (without the huge flag)
    /// or [`MAX_ALLOC_HUGE_SIZE`].
    InvalidSize,
    /// Acquiring a block would take `limit_context` past its byte limit.
    LimitExceeded {
        /// Name of the context whose limit would be exceeded.
        limit_context: &'static str,
        /// Its limit in bytes.
        limit: usize,
        /// Bytes its subtree held before the request.
        held: usize,
    },
    /// Allocation inside a critical section in a context not allowed there.
    CriticalSection,
    /// Creation parameters that break the kind's rules (block sizes, ...).
    InvalidParameters(&'static str),
    /// A reparenting that would make a context its own ancestor.
    Cycle {
        /// Name of the requested new parent.
        new_parent: &'static str,
    },
    /// The operation is not supported by this context kind (for example
    /// `free` on a bump chunk, or a slab request of the wrong size).
    Unsupported(&'static str),
    /// A pointer that did not come from a context (bad header), detected by
    /// `free`, `realloc`, `chunk_context` or `chunk_space`.
    BadPointer {
        /// The raw header word found before the pointer.
        header: u64,
    },
    /// No current context is set for this thread.
    NoCurrentContext,
    /// A chunk freed (or resized) a second time; detected with the
    /// `checking` feature.
    DoubleFree,
    /// An operation on a context that was deleted; detected with the
    /// `checking` feature.
    DeletedContext,
}

/// An allocation or context-management failure.
///
/// `context` is the name of the context the operation was made in (for
/// PostgreSQL parity, the name and never the identifier), `size` the size
/// of the request in bytes (0 where no size is involved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Name of the context the operation was made in.
    pub context: &'static str,
    /// Requested size in bytes.
    pub size: usize,
}

impl Error {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, context: &'static str, size: usize) -> Error {
        Error {
            kind,
            context,
            size,
        }
    }

    /// True for failures that [`AllocFlags::NO_OOM`] turns into `None`:
    /// the system refused memory or a limit was reached.
    ///
    /// [`AllocFlags::NO_OOM`]: crate::AllocFlags::NO_OOM
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::OutOfMemory | ErrorKind::LimitExceeded { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ctx, size) = (self.context, self.size);
        match self.kind {
            ErrorKind::OutOfMemory => write!(
                f,
                "out of memory: failed on request of size {size} in memory context \"{ctx}\""
            ),
            ErrorKind::InvalidSize => write!(
                f,
                "invalid memory alloc request size {size} in memory context \"{ctx}\""
            ),
            ErrorKind::LimitExceeded {
                limit_context,
                limit,
                held,
            } => write!(
                f,
                "memory limit exceeded: request of size {size} in memory context \"{ctx}\" \
                 would take \"{limit_context}\" past its limit of {limit} bytes ({held} held)"
            ),
            ErrorKind::CriticalSection => write!(
                f,
                "allocation of size {size} in memory context \"{ctx}\" inside a critical section"
            ),
            ErrorKind::InvalidParameters(why) => {
                write!(f, "invalid parameters for memory context \"{ctx}\": {why}")
            }
            ErrorKind::Cycle { new_parent } => write!(
                f,
                "cannot make \"{new_parent}\" the parent of memory context \"{ctx}\": it is \"{ctx}\" or one of its descendants"
            ),
            ErrorKind::Unsupported(what) => {
                write!(f, "{what} (memory context \"{ctx}\", size {size})")
            }
            ErrorKind::BadPointer { header } => write!(
                f,
                "invalid pointer: chunk header 0x{header:016x} belongs to no memory context kind"
            ),
            ErrorKind::NoCurrentContext => {
                write!(f, "no current memory context (request of size {size})")
            }
            ErrorKind::DoubleFree => f.write_str("chunk freed twice (or resized after free)"),
            ErrorKind::DeletedContext => write!(
                f,
                "operation on a deleted memory context (request of size {size})"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

bitflags::bitflags! {
    /// Flags of [`MemoryContext::alloc_extended`](crate::raw::MemoryContext::alloc_extended),
    /// PostgreSQL's `MCXT_ALLOC_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AllocFlags: u32 {
        /// Allow sizes up to [`MAX_ALLOC_HUGE_SIZE`] instead of [`MAX_ALLOC_SIZE`].
        const HUGE = 0x01;
        /// Return `None` when memory (or a limit) runs out instead of an error.
        const NO_OOM = 0x02;
        /// Zero the returned memory.
        const ZERO = 0x04;
    }
}

/// Checks a request size against the limits; cold, called only where a
/// request can exceed the chunk limit.
#[inline]
pub(crate) fn check_size(
    size: usize,
    flags: AllocFlags,
    context: &'static str,
) -> Result<(), Error> {
    let max = if flags.contains(AllocFlags::HUGE) {
        MAX_ALLOC_HUGE_SIZE
    } else {
        MAX_ALLOC_SIZE
    };
    if size > max {
        return Err(Error::new(ErrorKind::InvalidSize, context, size));
    }
    Ok(())
}
