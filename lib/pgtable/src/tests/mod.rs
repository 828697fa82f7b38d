//! Host tests of the whole crate: an arena implementing `TableMemory` with
//! an event log, checkers for the ordering and ownership rules, unit tests
//! and property tests against a reference model. Test-only; never built
//! into the kernel or the server.

use std::collections::{BTreeMap, HashMap};

use abi::PhysAddr;

use crate::config::InputAddress;
use crate::desc::{self, Attrs, Descriptor, ENTRIES, LAST_LEVEL, level_size};
use crate::{PageTable, TableMemory};

mod prop;
mod unit;
mod x86;

/// First table page the arena hands out: far above any data address the
/// tests map, so a descriptor whose address is an arena page is a table link.
const ARENA_BASE: u64 = 0x7f00_0000_0000;

/// One thing the walker did to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Write {
        table: u64,
        index: usize,
        value: u64,
    },
    Barrier,
}

/// Table memory on the host: pages in a map, a log of writes and barriers,
/// an optional allocation budget.
pub struct Arena {
    pages: HashMap<u64, Box<[u64; ENTRIES]>>,
    next: u64,
    /// Allocations still allowed; `None` is unlimited.
    pub budget: Option<usize>,
    pub log: Vec<Event>,
    /// A table whose reads are counted in `watched_reads` (to count walks
    /// from the root).
    pub watch: Option<u64>,
    pub watched_reads: std::cell::Cell<usize>,
}

impl Arena {
    pub fn new() -> Self {
        Self {
            pages: HashMap::new(),
            next: ARENA_BASE,
            budget: None,
            log: Vec::new(),
            watch: None,
            watched_reads: std::cell::Cell::new(0),
        }
    }

    /// Frees a page handed back by the table. Addresses are never reused,
    /// so a later read through a stale link panics.
    pub fn free(&mut self, page: PhysAddr) {
        assert!(
            self.pages.remove(&page.get()).is_some(),
            "free of unknown page {page:?}"
        );
    }

    pub fn allocated(&self) -> usize {
        self.pages.len()
    }

    pub fn contains(&self, page: PhysAddr) -> bool {
        self.pages.contains_key(&page.get())
    }

    pub fn is_zero(&self, page: PhysAddr) -> bool {
        self.pages[&page.get()].iter().all(|&d| d == 0)
    }

    pub fn snapshot(&self) -> BTreeMap<u64, Vec<u64>> {
        self.pages.iter().map(|(&k, v)| (k, v.to_vec())).collect()
    }

    /// Asserts that memory equals `before` except for pages allocated since,
    /// which must all be zero.
    pub fn assert_unchanged_since(&self, before: &BTreeMap<u64, Vec<u64>>) {
        for (page, contents) in before {
            assert_eq!(
                self.pages.get(page).map(|p| p.to_vec()).as_ref(),
                Some(contents),
                "page {page:#x} changed"
            );
        }
        for (page, contents) in &self.pages {
            if !before.contains_key(page) {
                assert!(
                    contents.iter().all(|&d| d == 0),
                    "new page {page:#x} written"
                );
            }
        }
    }

    fn is_table_page(&self, addr: u64) -> bool {
        addr >= ARENA_BASE && addr < self.next
    }

    /// Checks the ordering rule over the log of one operation: a table
    /// linked during it is linked once and never written after its link;
    /// a link into a table that walkers could already reach (one not itself
    /// linked during the operation) comes right after a barrier. Together:
    /// a walker never sees a table before it is complete.
    pub fn check_fill_before_link(&self) {
        let mut linked: HashMap<u64, usize> = HashMap::new();
        let mut links = Vec::new();
        for (i, event) in self.log.iter().enumerate() {
            if let Event::Write { table, value, .. } = *event {
                assert!(
                    !linked.contains_key(&table),
                    "write #{i} into table {table:#x} after it was linked"
                );
                let target = value & desc::ADDR_MASK;
                if value & 0b11 == 0b11 && self.is_table_page(target) {
                    assert!(
                        linked.insert(target, i).is_none(),
                        "table {target:#x} linked twice"
                    );
                    links.push((i, table, target));
                }
            }
        }
        for (i, into, target) in links {
            if !linked.contains_key(&into) {
                assert!(
                    i > 0 && self.log[i - 1] == Event::Barrier,
                    "table {target:#x} linked into live table {into:#x} at #{i} without a barrier"
                );
            }
        }
    }
}

impl TableMemory for Arena {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        if self.watch == Some(table.get()) {
            self.watched_reads.set(self.watched_reads.get() + 1);
        }
        match self.pages.get(&table.get()) {
            Some(page) => page[index],
            None => panic!("read of freed or unknown table page {table:?}"),
        }
    }

    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        match self.pages.get_mut(&table.get()) {
            Some(page) => page[index] = value,
            None => panic!("write to freed or unknown table page {table:?}"),
        }
        self.log.push(Event::Write {
            table: table.get(),
            index,
            value,
        });
    }

    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if let Some(budget) = &mut self.budget {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
        }
        let page = self.next;
        self.next += 4096;
        self.pages.insert(page, Box::new([0; ENTRIES]));
        Some(PhysAddr::new(page))
    }

    fn barrier(&mut self) {
        self.log.push(Event::Barrier);
    }
}

/// One leaf of a table: input address, size, output address, attributes,
/// level.
pub type Leaf = (u64, u64, u64, Attrs, u8);

/// Every leaf of `pt` in address order.
pub fn leaf_runs<A: InputAddress>(pt: &PageTable<A>, mem: &Arena) -> Vec<Leaf> {
    fn walk(mem: &Arena, table: PhysAddr, level: u8, base: u64, out: &mut Vec<Leaf>) {
        let size = level_size(level);
        for i in 0..ENTRIES {
            let va = base + i as u64 * size;
            match desc::decode(level, mem.read(table, i)) {
                Descriptor::Invalid => {}
                Descriptor::Table(next) => {
                    assert!(level < LAST_LEVEL);
                    walk(mem, next, level + 1, va, out);
                }
                Descriptor::Leaf { oa, attr_bits } => {
                    out.push((va, size, oa.get(), Attrs::from_bits(attr_bits), level));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(mem, pt.root(), pt.config().start_level(), 0, &mut out);
    out
}

/// Every mapped 4 KiB page of `pt`, blocks expanded: page address →
/// (output address, attributes, leaf level).
pub fn leaves<A: InputAddress>(pt: &PageTable<A>, mem: &Arena) -> BTreeMap<u64, (u64, Attrs, u8)> {
    let mut out = BTreeMap::new();
    for (va, size, pa, attrs, level) in leaf_runs(pt, mem) {
        for p in (0..size).step_by(4096) {
            out.insert(va + p, (pa + p, attrs, level));
        }
    }
    out
}

/// Asserts that no table below the root is empty (unmap prunes them) and
/// that every linked table is a live arena page.
pub fn assert_no_empty_tables<A: InputAddress>(pt: &PageTable<A>, mem: &Arena) {
    for table in pt.tables(mem).into_iter().skip(1) {
        assert!(mem.contains(table), "linked table {table:?} was freed");
        assert!(!mem.is_zero(table), "empty table {table:?} left linked");
    }
}

/// Asserts that the valid-descriptor count the table keeps for each linked
/// table page agrees with a full scan of that page, and that it keeps no
/// count for a page that is not linked.
pub fn assert_counts_match<A: InputAddress>(pt: &PageTable<A>, mem: &Arena) {
    let linked = pt.tables(mem);
    for &table in &linked {
        let scanned = (0..ENTRIES)
            .filter(|&i| mem.read(table, i) & desc::VALID != 0)
            .count();
        assert_eq!(
            usize::from(pt.valid_count(table)),
            scanned,
            "valid-entry count of {table:?}"
        );
    }
    for page in pt.counts.tables() {
        assert!(
            linked.contains(&PhysAddr::new(page)),
            "count kept for unlinked page {page:#x}"
        );
    }
    // The one-entry walk cache holds what a descent finds.
    if let Some((span, table)) = pt.leaf {
        let va = span << desc::level_shift(desc::LAST_LEVEL - 1);
        assert!(
            matches!(pt.descend(mem, va), crate::table::Descent::Found(t) if t == table),
            "walk cache for {va:#x} holds {table:?}"
        );
    }
}
