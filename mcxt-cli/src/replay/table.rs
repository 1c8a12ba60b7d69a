//! [`IdTable`]: the per-id tables of the backends (chunk pointers, context
//! handles, tree nodes), indexed without bounds checks.
//!
//! Every backend looks up a table slot or two per operation. A checked
//! index costs a load of the length, a compare and a branch, about three
//! instructions, and the replay of a typical trace runs 40 to 75
//! instructions per operation in all, so bounds checks alone were some 10%
//! of what the loop measures. They can never fail: the parser validated
//! every id of the trace against the table sizes
//! ([`ValidTrace`](super::ValidTrace)), which is what the backends'
//! `unsafe` contract already relies on. So the tables take that contract
//! too, and every backend (mcxt, malloc, mimalloc, null, and the
//! checker's shadow) uses them alike: the comparison stays even.
//!
//! Debug builds still check every index (`debug_assert!`).

use std::fmt;

/// A fixed-size table of `T`, one slot per id, written in full when made
/// so its pages are faulted in before any timed replay.
pub struct IdTable<T> {
    slots: Box<[T]>,
}

impl<T: Clone> IdTable<T> {
    /// `n` slots holding `fill`, every one written now (not `vec![fill;
    /// n]`, which for a zero `fill` takes untouched pages from `calloc`).
    pub fn new(n: usize, fill: T) -> IdTable<T> {
        IdTable {
            slots: prefaulted(n, fill).into_boxed_slice(),
        }
    }
}

/// Makes a vector of `n` copies of `v`, writing every element so that its
/// pages are faulted in now rather than during a timed replay.
pub(crate) fn prefaulted<T: Clone>(n: usize, v: T) -> Vec<T> {
    let mut t = Vec::with_capacity(n);
    t.resize(n, v);
    t
}

impl<T> IdTable<T> {
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the table has no slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of `id`, or `None` past the end (for untimed reporting
    /// paths that take ids from outside the trace).
    pub fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize)
    }

    /// The slot of `id`.
    ///
    /// # Safety
    /// `id < self.len()`.
    #[inline(always)]
    pub unsafe fn at(&self, id: u32) -> &T {
        debug_assert!((id as usize) < self.slots.len(), "id {id} out of table");
        // SAFETY: in bounds (caller contract).
        unsafe { self.slots.get_unchecked(id as usize) }
    }

    /// The slot of `id`, to change it.
    ///
    /// # Safety
    /// `id < self.len()`.
    #[inline(always)]
    pub unsafe fn at_mut(&mut self, id: u32) -> &mut T {
        debug_assert!((id as usize) < self.slots.len(), "id {id} out of table");
        // SAFETY: in bounds (caller contract).
        unsafe { self.slots.get_unchecked_mut(id as usize) }
    }
}

impl<T> fmt::Debug for IdTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdTable({} slots)", self.slots.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_start_filled_and_keep_writes() {
        let mut t = IdTable::new(3, 7u32);
        assert_eq!(t.len(), 3);
        assert!(!t.is_empty());
        // SAFETY: ids below 3.
        unsafe {
            assert_eq!(*t.at(2), 7);
            *t.at_mut(1) = 9;
            assert_eq!(*t.at(1), 9);
            assert_eq!(*t.at(0), 7);
        }
        assert_eq!(t.get(1), Some(&9));
        assert_eq!(t.get(3), None);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of table")]
    fn debug_builds_check_the_index() {
        let t = IdTable::new(2, 0u8);
        // SAFETY: deliberately out of bounds: the debug check panics
        // before any read.
        let _ = unsafe { t.at(2) };
    }
}
