//! Errors on the way out to C: the per-thread pending error record and the
//! boundary guard that turns errors and panics into it.
//!
//! An exported Rust function never raises: it records a [`Failure`] in this
//! thread's slot and returns NULL or -1. The C wrapper that called it then
//! takes the record ([`mcxt__take_error`]) and calls the error handler from
//! its own frame, once no Rust frame is live.

use core::ffi::{c_char, c_int};
use core::fmt::{self, Write};
use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Error class for `mcxt__take_error`: anything else.
pub(crate) const ERROR_OTHER: c_int = 0;
/// Error class for `mcxt__take_error`: out of memory or a byte limit
/// reached (the C side prints the stats of `TopMemoryContext` first).
pub(crate) const ERROR_OUT_OF_MEMORY: c_int = 1;

/// Why an exported function failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An error of the allocator (names the context and the size).
    Mcxt(mcxt_core::Error),
    /// An allocation with no context: `CurrentMemoryContext` is NULL.
    NoContext {
        /// Requested size in bytes.
        size: usize,
    },
    /// A NULL argument where none is allowed.
    Null {
        /// The C function called.
        func: &'static str,
        /// The argument that was NULL.
        what: &'static str,
    },
    /// Any other invalid request.
    Invalid(&'static str),
    /// A Rust panic, caught at the boundary (a bug in the library).
    Panic(Box<str>),
}

impl From<mcxt_core::Error> for Failure {
    fn from(e: mcxt_core::Error) -> Failure {
        Failure::Mcxt(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Mcxt(e) => e.fmt(f),
            Failure::NoContext { size } => write!(
                f,
                "no current memory context for a request of size {size} \
                 (CurrentMemoryContext is NULL: call MemoryContextInit first)"
            ),
            Failure::Null { func, what } => write!(f, "{func} called with a NULL {what}"),
            Failure::Invalid(why) => f.write_str(why),
            Failure::Panic(msg) => write!(f, "internal error in mcxt: {msg}"),
        }
    }
}

impl Failure {
    /// The class reported to the C side.
    fn class(&self) -> c_int {
        match self {
            Failure::Mcxt(e) if e.is_out_of_memory() => ERROR_OUT_OF_MEMORY,
            _ => ERROR_OTHER,
        }
    }

    fn from_panic(payload: Box<dyn Any + Send>) -> Failure {
        let msg: Box<str> = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).into()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.as_str().into()
        } else {
            "panic".into()
        };
        // A payload whose destructor panics would unwind out of here: leak
        // it instead of dropping it.
        core::mem::forget(payload);
        Failure::Panic(msg)
    }
}

std::thread_local! {
    static PENDING: Cell<Option<Failure>> = const { Cell::new(None) };
}

fn set_pending(failure: Failure) {
    // `try_with` fails only while the thread is being torn down; the error
    // is then lost and the C side reports a failure without a record.
    let _ = PENDING.try_with(|p| p.set(Some(failure)));
}

/// Runs `f` at the FFI boundary: its value on success; `on_error` with the
/// failure recorded for the C side on error, or on panic (never unwinding
/// into C).
#[inline(always)]
pub(crate) fn ffi<T>(on_error: T, f: impl FnOnce() -> Result<T, Failure>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            set_pending(failure);
            on_error
        }
        Err(payload) => {
            set_pending(Failure::from_panic(payload));
            on_error
        }
    }
}

/// [`ffi`] for functions returning a status: 0 on success, -1 on failure.
#[inline(always)]
pub(crate) fn ffi_status(f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    ffi(-1, || f().map(|()| 0))
}

/// A `fmt::Write` into a fixed buffer that silently drops what does not
/// fit, cutting at a character boundary.
struct Truncating<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Takes this thread's pending error, if any: writes its message, cut to
/// `cap - 1` bytes and NUL-terminated, to `buf`, its class (0: other,
/// 1: out of memory) to `*kind`, and returns 1; returns 0 when no error is
/// pending.
///
/// # Safety
/// `buf` must be valid for writes of `cap` bytes (or `cap` be 0), and
/// `kind` valid for a write or NULL.
#[no_mangle]
pub unsafe extern "C" fn mcxt__take_error(buf: *mut c_char, cap: usize, kind: *mut c_int) -> c_int {
    ffi(0, || {
        let Some(failure) = PENDING.try_with(Cell::take).ok().flatten() else {
            return Ok(0);
        };
        if !kind.is_null() {
            // SAFETY: `kind` is valid for a write (caller contract).
            unsafe { kind.write(failure.class()) };
        }
        if cap > 0 && !buf.is_null() {
            // SAFETY: `buf` is valid for `cap` bytes (caller contract) and
            // nothing else refers to it during this call.
            let bytes = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
            let mut w = Truncating {
                buf: &mut bytes[..cap - 1],
                len: 0,
            };
            let _ = write!(w, "{failure}");
            let len = w.len;
            // Cut at an embedded NUL, if any, so the C string is the prefix.
            let end = bytes[..len].iter().position(|&b| b == 0).unwrap_or(len);
            bytes[end] = 0;
        }
        Ok(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take() -> Option<(String, c_int)> {
        let mut buf = [0 as c_char; 64];
        let mut kind = -1;
        // SAFETY: a 64-byte buffer and a local.
        let got = unsafe { mcxt__take_error(buf.as_mut_ptr(), buf.len(), &mut kind) };
        (got == 1).then(|| {
            // SAFETY: take_error NUL-terminates within the buffer.
            let s = unsafe { core::ffi::CStr::from_ptr(buf.as_ptr()) };
            (s.to_string_lossy().into_owned(), kind)
        })
    }

    #[test]
    fn failures_are_recorded_then_taken_once() {
        assert_eq!(take(), None);
        assert_eq!(ffi(7, || Err(Failure::NoContext { size: 10 })), 7);
        let (msg, kind) = take().unwrap();
        assert!(msg.starts_with("no current memory context for a request of size 10"));
        assert_eq!(kind, ERROR_OTHER);
        assert_eq!(take(), None);
    }

    #[test]
    fn panics_are_caught_and_reported() {
        // (The panic message printed by the default hook is expected.)
        let r = ffi_status(|| panic!("boom {}", 42));
        assert_eq!(r, -1);
        assert_eq!(take().unwrap().0, "internal error in mcxt: boom 42");
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        ffi((), || {
            Err(Failure::Invalid("ééééééééééééééééééééééééééééééééééééééé"))
        });
        let (msg, _) = take().unwrap();
        assert_eq!(msg, "é".repeat(31));
    }
}
