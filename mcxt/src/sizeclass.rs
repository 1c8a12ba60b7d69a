//! Size classes of AllocSet's small chunks.
//!
//! PostgreSQL rounds every small request up to a power of two (8 .. 8192
//! bytes): 11 classes, on average about 25% of each chunk wasted. We keep
//! the same range and limit (8192, PostgreSQL's `ALLOCSET_SEPARATE_THRESHOLD`,
//! which callers rely on: anything larger certainly gets a dedicated block)
//! but split every power-of-two interval into `1 << SUB_BITS` classes, the
//! spacing never finer than 8 bytes (MAXALIGN):
//!
//! ```text
//! SUB_BITS = 2: 8 16 24 32 40 48 56 64 80 96 112 128 160 192 224 256 320 ... 7168 8192
//! ```
//!
//! Finer classes waste less per chunk but make a freed chunk reusable by
//! fewer later requests. The replay of real PostgreSQL traces decides
//! (see the README's figures).
//!
//! The request-to-class map is one byte table indexed by `(size + 7) / 8`,
//! 1025 bytes: one load on the hot path, no branches, no `lzcnt`.

/// log2 of the number of classes per power-of-two interval.
pub(crate) const SUB_BITS: u32 = 2;

/// Largest small chunk; larger requests get a dedicated block.
pub(crate) const CLASS_LIMIT: usize = 8192;

const fn class_count() -> usize {
    let mut n = 0;
    let mut s = 8;
    while s <= CLASS_LIMIT {
        n += 1;
        s += step_after(s);
    }
    n
}

const fn step_after(s: usize) -> usize {
    if s < 16 {
        return 8;
    }
    let pow2_floor = 1usize << (usize::BITS - 1 - s.leading_zeros());
    let step = pow2_floor >> SUB_BITS;
    if step < 8 {
        8
    } else {
        step
    }
}

/// Number of size classes.
pub(crate) const NUM_CLASSES: usize = class_count();

const fn build_sizes() -> [u32; NUM_CLASSES] {
    let mut sizes = [0u32; NUM_CLASSES];
    let mut i = 0;
    let mut s = 8;
    while s <= CLASS_LIMIT {
        sizes[i] = s as u32;
        i += 1;
        s += step_after(s);
    }
    sizes
}

/// Chunk size of each class.
pub(crate) static CLASS_SIZE: [u32; NUM_CLASSES] = build_sizes();

const INDEX_LEN: usize = CLASS_LIMIT / 8 + 1;

const fn build_index() -> [u8; INDEX_LEN] {
    let sizes = build_sizes();
    let mut index = [0u8; INDEX_LEN];
    let mut slot = 0;
    let mut class = 0;
    while slot < INDEX_LEN {
        // Smallest class holding `slot * 8` bytes.
        while (sizes[class] as usize) < slot * 8 {
            class += 1;
        }
        index[slot] = class as u8;
        slot += 1;
    }
    index
}

static CLASS_OF: [u8; INDEX_LEN] = build_index();

/// Class of a request of `size` bytes, `size <= CLASS_LIMIT`.
#[inline(always)]
pub(crate) fn class_of(size: usize) -> usize {
    debug_assert!(size <= CLASS_LIMIT);
    // SAFETY: (size + 7) / 8 <= CLASS_LIMIT / 8 < INDEX_LEN for the
    // allowed sizes, which every caller checks against its chunk limit
    // (itself at most CLASS_LIMIT) first.
    unsafe { *CLASS_OF.get_unchecked((size + 7) >> 3) as usize }
}

/// Size of class `class`.
#[inline(always)]
pub(crate) fn class_size(class: usize) -> usize {
    debug_assert!(class < NUM_CLASSES);
    // SAFETY: class indices come from `class_of` or headers written by
    // AllocSet, always < NUM_CLASSES.
    unsafe { *CLASS_SIZE.get_unchecked(class) as usize }
}

/// Largest class whose chunk fits in `space` bytes, if any.
pub(crate) fn class_fitting(space: usize) -> Option<usize> {
    CLASS_SIZE.iter().rposition(|&s| s as usize <= space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_tightly() {
        assert_eq!(CLASS_SIZE[0], 8);
        assert_eq!(CLASS_SIZE[NUM_CLASSES - 1] as usize, CLASS_LIMIT);
        for w in CLASS_SIZE.windows(2) {
            assert!(w[0] < w[1] && w[1] % 8 == 0);
        }
        for size in 0..=CLASS_LIMIT {
            let c = class_of(size);
            assert!(class_size(c) >= size, "size {size}");
            assert!(c == 0 || class_size(c - 1) < size, "size {size} not tight");
        }
        const { assert!(NUM_CLASSES < 256) };
    }

    #[test]
    fn class_fitting_is_the_floor() {
        assert_eq!(class_fitting(7), None);
        assert_eq!(class_fitting(8), Some(0));
        assert_eq!(class_fitting(100_000), Some(NUM_CLASSES - 1));
        let c = class_fitting(100).unwrap();
        assert!(class_size(c) <= 100 && class_size(c + 1) > 100);
    }
}
