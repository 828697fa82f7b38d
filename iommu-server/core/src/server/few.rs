//! A request's per-range bookkeeping without the heap for the usual few
//! ranges: [`Few`]. Owns no policy; it must never grow infallibly (its
//! heap part is reserved once, fallibly, and never grows after).

use alloc::vec::Vec;

use iommu_api::ApiError;

use super::spare::Pool;

/// Items a [`Few`] holds inline: a request's usual one range (one per
/// I/O) and a few more without touching the heap.
const FEW_INLINE: usize = 4;

/// A request's per-range bookkeeping: up to [`FEW_INLINE`] items inline (no
/// heap allocation, and a small value to build and move), more in a heap
/// vector reserved in full, fallibly, by [`Few::with_capacity`]. A `push`
/// past the room asked for is a bug of the caller, which sizes it from the
/// request first: a debug build (every host test) panics on it; a release
/// build ignores it past the heap vector's room, and inline past four.
pub(super) struct Few<T> {
    inline: [T; FEW_INLINE],
    len: usize,
    /// The room asked for (checked in debug builds only: the release
    /// server's hot paths push into a `Few` per range).
    #[cfg(debug_assertions)]
    room: usize,
    /// Used instead of `inline` when more than [`FEW_INLINE`] were asked
    /// for: reserved once, never grown.
    spill: Vec<T>,
}

impl<T> Few<T> {
    /// Room for `n` items, or `NoMemory` (never an infallible growth on
    /// client input); `fill` makes the unused inline slots.
    pub(super) fn with_capacity(n: usize, fill: impl Fn() -> T) -> Result<Self, ApiError> {
        Self::with_spare(n, fill, &mut Pool::new(0))
    }

    /// [`Few::with_capacity`], its heap part (if it needs one) taken from
    /// `pool`; [`Few::give_back`] returns it. (Inlined: built in place, not
    /// moved out of a call.)
    #[inline(always)]
    pub(super) fn with_spare(
        n: usize,
        fill: impl Fn() -> T,
        pool: &mut Pool<T>,
    ) -> Result<Self, ApiError> {
        let spill = if n > FEW_INLINE {
            pool.take(n)?
        } else {
            Vec::new()
        };
        Ok(Self::with_spill(n, fill, spill))
    }

    /// Gives its heap part, if it has one, back to `pool` (its items
    /// dropped).
    #[inline]
    pub(super) fn give_back(self, pool: &mut Pool<T>) {
        pool.put(self.spill);
    }

    /// Room for `n` items, at most [`FEW_INLINE`], inline: it cannot fail
    /// (a larger `n` is a bug of the caller, and panics in a debug build).
    pub(super) fn inline(n: usize, fill: impl Fn() -> T) -> Self {
        debug_assert!(n <= FEW_INLINE, "Few::inline past {FEW_INLINE}");
        Self::with_spill(n, fill, Vec::new())
    }

    /// Room for `n` items in `spill` (reserved for them) or, for a few,
    /// inline. (`n` is kept only in debug builds.)
    #[inline(always)]
    #[cfg_attr(not(debug_assertions), allow(unused_variables))]
    fn with_spill(n: usize, fill: impl Fn() -> T, spill: Vec<T>) -> Self {
        Self {
            inline: core::array::from_fn(|_| fill()),
            len: 0,
            #[cfg(debug_assertions)]
            room: n,
            spill,
        }
    }

    pub(super) fn push(&mut self, item: T) {
        #[cfg(debug_assertions)]
        assert!(self.len < self.room, "Few::push past its room");
        if self.spill.capacity() > 0 {
            if self.spill.len() < self.spill.capacity() {
                self.spill.push(item);
                self.len += 1;
            }
        } else if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = item;
            self.len += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn as_slice(&self) -> &[T] {
        if self.spill.capacity() > 0 {
            &self.spill
        } else {
            &self.inline[..self.len]
        }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        if self.spill.capacity() > 0 {
            &mut self.spill
        } else {
            &mut self.inline[..self.len]
        }
    }
}
