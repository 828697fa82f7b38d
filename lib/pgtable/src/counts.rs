//! Valid-descriptor counts per linked table page ([`Counts`]): whether a
//! table became empty is known without a scan of its 512 entries. It owns
//! only that arithmetic; it must never grow infallibly (callers reserve
//! room before the first store of an operation).

use abi::PhysAddr;

/// Valid-descriptor count per linked table page (see `PageTable::counts`):
/// a hash table by page address, in front of which the count of one
/// last-level table is held (and written back when another is held):
/// consecutive one-table maps and unmaps in it, as a run of one-page I/O
/// makes, change it with no hash lookup.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    map: hashbrown::HashMap<u64, u16>,
    /// The table changed last and its count; its entry in `map` (there is
    /// always one) lags until written back.
    last: Option<(u64, u16)>,
}

impl Counts {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Room for `n` more tables, or `Err` (nothing changed).
    pub(crate) fn try_reserve(&mut self, n: usize) -> Result<(), hashbrown::TryReserveError> {
        self.map.try_reserve(n)
    }

    /// The count of `table`, if it has one.
    pub(crate) fn get(&self, table: PhysAddr) -> Option<u16> {
        match self.last {
            Some((t, c)) if t == table.get() => Some(c),
            _ => self.map.get(&table.get()).copied(),
        }
    }

    /// Forgets `table` (it was unlinked).
    pub(crate) fn remove(&mut self, table: PhysAddr) {
        if self.last.is_some_and(|(t, _)| t == table.get()) {
            self.last = None;
        }
        self.map.remove(&table.get());
    }

    /// The pages that have a count (for the tests' scans).
    #[cfg(test)]
    pub(crate) fn tables(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.keys().copied()
    }

    /// Writes the held count back into its entry.
    fn write_back(&mut self) {
        if let Some((t, c)) = self.last.take()
            && let Some(e) = self.map.get_mut(&t)
        {
            *e = c;
        }
    }

    /// The held count of `table`, loading it (an entry of 0 made if
    /// `make` and it has none) unless it is held already; `None` if it has
    /// no entry and none was made.
    #[inline]
    fn held(&mut self, table: PhysAddr, make: bool) -> Option<&mut u16> {
        let key = table.get();
        if self.last.is_none_or(|(t, _)| t != key) {
            self.write_back();
            let c = if make {
                *self.map.entry(key).or_insert(0)
            } else {
                *self.map.get(&key)?
            };
            self.last = Some((key, c));
        }
        self.last.as_mut().map(|(_, c)| c)
    }
}

/// `n` more valid descriptors in `table` (room for a new entry was
/// reserved by the operation before its first store). The held count is
/// used if it is `table`'s, and not moved otherwise: a walk that fills and
/// links several tables pays one lookup per change, as without it.
pub(crate) fn count_add(counts: &mut Counts, table: PhysAddr, n: u16) {
    match &mut counts.last {
        Some((t, c)) if *t == table.get() => *c += n,
        _ => *counts.map.entry(table.get()).or_insert(0) += n,
    }
}

/// One more valid descriptor in `table`.
pub(crate) fn count_up(counts: &mut Counts, table: PhysAddr) {
    count_add(counts, table, 1);
}

/// `n` fewer valid descriptors in `table`; returns how many are left. As
/// [`count_add`], the held count is not moved.
pub(crate) fn count_down(counts: &mut Counts, table: PhysAddr, n: u16) -> u16 {
    let c = match &mut counts.last {
        Some((t, c)) if *t == table.get() => c,
        _ => match counts.map.get_mut(&table.get()) {
            Some(c) => c,
            None => return 0,
        },
    };
    *c = c.saturating_sub(n);
    *c
}

/// [`count_add`] that holds `table`'s count from now on: for the changes
/// inside one last-level table that the next map or unmap likely repeats.
pub(crate) fn count_add_held(counts: &mut Counts, table: PhysAddr, n: u16) {
    if let Some(c) = counts.held(table, true) {
        *c += n;
    }
}

/// [`count_down`] that holds `table`'s count from now on (see
/// [`count_add_held`]).
pub(crate) fn count_down_held(counts: &mut Counts, table: PhysAddr, n: u16) -> u16 {
    match counts.held(table, false) {
        Some(c) => {
            *c = c.saturating_sub(n);
            *c
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_count_is_written_back_and_forgotten_with_its_table() {
        let (a, b) = (PhysAddr::new(0x1000), PhysAddr::new(0x2000));
        let mut c = Counts::new();
        c.try_reserve(2).unwrap();
        count_add_held(&mut c, a, 3);
        count_up(&mut c, a);
        assert_eq!(c.get(a), Some(4));
        // Plain changes to another table leave `a` held.
        count_add(&mut c, b, 2);
        assert_eq!(count_down(&mut c, b, 1), 1);
        assert_eq!(c.last, Some((a.get(), 4)));
        // Holding another table writes `a`'s count back.
        count_add_held(&mut c, b, 1);
        assert_eq!(c.map.get(&a.get()), Some(&4));
        assert_eq!(count_down_held(&mut c, a, 1), 3);
        assert_eq!(c.get(b), Some(2));
        // A table with no count stays without one.
        assert_eq!(count_down_held(&mut c, PhysAddr::new(0x3000), 1), 0);
        assert_eq!(count_down(&mut c, PhysAddr::new(0x3000), 1), 0);
        assert_eq!(c.get(PhysAddr::new(0x3000)), None);
        c.remove(a);
        assert_eq!(c.get(a), None);
        assert_eq!(c.tables().collect::<Vec<_>>(), [b.get()]);
    }
}
