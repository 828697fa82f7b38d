//! Validation of a user task's ELF64 image into a [`LoadPlan`]: which pages
//! to map, with which permissions, and which file bytes land where.
//!
//! It owns the ELF rules only (static AArch64 executables, W^X, segments in
//! [`layout::IMAGE_LIMIT`] above page 0, no shared pages, entry in code). It
//! never allocates, maps or copies memory (the kernel does that from the plan)
//! and never panics on any input: every malformed image is an [`ElfError`].

use core::fmt;

use ::elf::ElfBytes;
use ::elf::abi::{
    EI_CLASS, EI_DATA, EI_NIDENT, ELFCLASS64, ELFDATA2LSB, ELFMAGIC, EM_AARCH64, EM_X86_64,
    ET_EXEC, PF_R, PF_W, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD,
};
use ::elf::endian::LittleEndian;
use abi::syscall::layout;
use abi::{PAGE_SIZE, VirtAddr};

use crate::BoundedVec;

/// Most `PT_LOAD` segments an image may have.
pub const MAX_LOAD_SEGMENTS: usize = 16;

/// Lowest address a segment may touch: page 0 is never mapped.
pub const IMAGE_BASE: u64 = PAGE_SIZE;

/// Why an image was refused. Each variant has a stable code (its discriminant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ElfError {
    /// The file does not start with `\x7fELF`.
    BadMagic = 1,
    /// Not a 64-bit (ELFCLASS64) file.
    NotElf64 = 2,
    /// Not little-endian (ELFDATA2LSB).
    NotLittleEndian = 3,
    /// `e_machine` is not the machine asked for (EM_AARCH64 or EM_X86_64).
    WrongMachine = 4,
    /// `e_type` is not ET_EXEC.
    NotExecutable = 5,
    /// Truncated header or program-header table, or bad entry size.
    Malformed = 6,
    /// A PT_INTERP or PT_DYNAMIC header: only static executables load.
    Dynamic = 7,
    /// No non-empty PT_LOAD segment.
    NoLoadSegment = 8,
    /// More than [`MAX_LOAD_SEGMENTS`] PT_LOAD segments.
    TooManySegments = 9,
    /// A segment's `p_filesz` exceeds its `p_memsz`.
    FileSizeExceedsMemSize = 10,
    /// A segment's file bytes lie (partly) outside the file.
    FileRangeOutOfBounds = 11,
    /// `p_vaddr + p_memsz` overflows.
    AddressOverflow = 12,
    /// A segment's pages are not all inside `[IMAGE_BASE, IMAGE_LIMIT)`.
    OutsideImage = 13,
    /// A segment is both writable and executable.
    WritableAndExecutable = 14,
    /// Two segments share a 4 KiB page.
    OverlappingSegments = 15,
    /// The entry point is not a 4-byte-aligned address inside an executable
    /// segment.
    BadEntry = 16,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadMagic => "not an ELF file",
            Self::NotElf64 => "not ELF64",
            Self::NotLittleEndian => "not little-endian",
            Self::WrongMachine => "not an image for this architecture",
            Self::NotExecutable => "not an ET_EXEC executable",
            Self::Malformed => "malformed ELF header or program headers",
            Self::Dynamic => "dynamic executable (PT_INTERP or PT_DYNAMIC)",
            Self::NoLoadSegment => "no PT_LOAD segment",
            Self::TooManySegments => "too many PT_LOAD segments",
            Self::FileSizeExceedsMemSize => "segment file size exceeds memory size",
            Self::FileRangeOutOfBounds => "segment file range outside the file",
            Self::AddressOverflow => "segment address range overflows",
            Self::OutsideImage => "segment outside the task image area",
            Self::WritableAndExecutable => "segment both writable and executable",
            Self::OverlappingSegments => "segments share a page",
            Self::BadEntry => "entry point not in an executable segment",
        })
    }
}

/// Access permissions of a segment, from its `p_flags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Perms {
    /// PF_R.
    pub read: bool,
    /// PF_W.
    pub write: bool,
    /// PF_X.
    pub exec: bool,
}

impl Perms {
    fn from_flags(flags: u32) -> Self {
        Self {
            read: flags & PF_R != 0,
            write: flags & PF_W != 0,
            exec: flags & PF_X != 0,
        }
    }
}

/// One validated PT_LOAD segment: `memsz` bytes at `vaddr`, the first
/// `file.len()` of them from the file, the rest zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment<'a> {
    vaddr: VirtAddr,
    memsz: u64,
    file: &'a [u8],
    perms: Perms,
    first_page: VirtAddr,
    page_count: u64,
}

impl<'a> Segment<'a> {
    /// Where the segment starts (not necessarily page-aligned).
    pub fn vaddr(&self) -> VirtAddr {
        self.vaddr
    }

    /// Size in memory, in bytes (never zero).
    pub fn memsz(&self) -> u64 {
        self.memsz
    }

    /// The `p_filesz` bytes copied to `vaddr`.
    pub fn file(&self) -> &'a [u8] {
        self.file
    }

    /// Access permissions.
    pub fn perms(&self) -> Perms {
        self.perms
    }

    /// The first page's address and the number of 4 KiB pages the segment
    /// touches (no page is shared with another segment of the plan).
    pub fn pages(&self) -> (VirtAddr, u64) {
        (self.first_page, self.page_count)
    }

    /// For the page containing `page` (rounded down to 4 KiB): the offset in
    /// the page where file bytes start, and those bytes. The rest of the page
    /// is zero. A page with no file bytes (bss, or outside the segment) gives
    /// `(0, &[])`.
    pub fn page_bytes(&self, page: VirtAddr) -> (usize, &'a [u8]) {
        const NONE: (usize, &[u8]) = (0, &[]);
        let page = page.align_down(PAGE_SIZE).get();
        let start = self.vaddr.get();
        let (Some(page_end), Some(file_end)) = (
            page.checked_add(PAGE_SIZE),
            start.checked_add(self.file.len() as u64),
        ) else {
            return NONE;
        };
        let lo = page.max(start);
        let hi = page_end.min(file_end);
        if lo >= hi {
            return NONE;
        }
        // `lo - page < PAGE_SIZE` and `lo - start < hi - start <= file.len()`.
        let bytes = usize::try_from(lo - start)
            .ok()
            .zip(usize::try_from(hi - start).ok())
            .and_then(|(from, to)| self.file.get(from..to));
        match (usize::try_from(lo - page), bytes) {
            (Ok(offset), Some(bytes)) => (offset, bytes),
            _ => NONE,
        }
    }
}

/// The machine an executable must be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// EM_AARCH64.
    Aarch64,
    /// EM_X86_64.
    X86_64,
}

impl Machine {
    const fn e_machine(self) -> u16 {
        match self {
            Self::Aarch64 => EM_AARCH64,
            Self::X86_64 => EM_X86_64,
        }
    }
}

/// A validated static executable: where to start and what to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadPlan<'a> {
    entry: VirtAddr,
    segments: BoundedVec<Segment<'a>, MAX_LOAD_SEGMENTS>,
}

impl<'a> LoadPlan<'a> {
    /// [`LoadPlan::parse_for`] an AArch64 executable.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        Self::parse_for(bytes, Machine::Aarch64)
    }

    /// Validates `bytes` as a static ELF64 executable for `machine` whose
    /// segments all lie in `[IMAGE_BASE, IMAGE_LIMIT)`, pairwise share no
    /// page, are never writable and executable, and whose entry point is in
    /// code.
    pub fn parse_for(bytes: &'a [u8], machine: Machine) -> Result<Self, ElfError> {
        if bytes.get(..ELFMAGIC.len()) != Some(&ELFMAGIC[..]) {
            return Err(ElfError::BadMagic);
        }
        let ident = bytes.get(..EI_NIDENT).ok_or(ElfError::Malformed)?;
        if ident.get(EI_CLASS) != Some(&ELFCLASS64) {
            return Err(ElfError::NotElf64);
        }
        if ident.get(EI_DATA) != Some(&ELFDATA2LSB) {
            return Err(ElfError::NotLittleEndian);
        }
        let file =
            ElfBytes::<LittleEndian>::minimal_parse(bytes).map_err(|_| ElfError::Malformed)?;
        if file.ehdr.e_machine != machine.e_machine() {
            return Err(ElfError::WrongMachine);
        }
        if file.ehdr.e_type != ET_EXEC {
            return Err(ElfError::NotExecutable);
        }

        let mut segments = BoundedVec::<Segment<'a>, MAX_LOAD_SEGMENTS>::new();
        if let Some(table) = file.segments() {
            for index in 0..table.len() {
                let ph = table.get(index).map_err(|_| ElfError::Malformed)?;
                match ph.p_type {
                    PT_INTERP | PT_DYNAMIC => return Err(ElfError::Dynamic),
                    PT_LOAD => {
                        if let Some(segment) = load_segment(bytes, &ph)? {
                            segments
                                .push(segment)
                                .map_err(|_| ElfError::TooManySegments)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        if segments.is_empty() {
            return Err(ElfError::NoLoadSegment);
        }
        for (i, a) in segments.iter().enumerate() {
            for b in segments.iter().skip(i + 1) {
                if pages_overlap(a, b) {
                    return Err(ElfError::OverlappingSegments);
                }
            }
        }

        let entry = file.ehdr.e_entry;
        let in_code = segments
            .iter()
            .any(|s| s.perms.exec && entry >= s.vaddr.get() && entry - s.vaddr.get() < s.memsz);
        if !in_code || entry % 4 != 0 {
            return Err(ElfError::BadEntry);
        }
        Ok(Self {
            entry: VirtAddr::new(entry),
            segments,
        })
    }

    /// The entry point.
    pub fn entry(&self) -> VirtAddr {
        self.entry
    }

    /// The segments to load, in program-header order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment<'a>> {
        self.segments.iter()
    }

    /// Pages (hence frames) the whole image needs: the kernel checks its
    /// quota against this before allocating anything.
    pub fn total_pages(&self) -> u64 {
        self.segments
            .iter()
            .fold(0, |sum, s| sum.saturating_add(s.page_count))
    }
}

/// Checks one PT_LOAD header; `None` for an empty (`p_memsz == 0`) segment,
/// which maps nothing.
fn load_segment<'a>(
    bytes: &'a [u8],
    ph: &::elf::segment::ProgramHeader,
) -> Result<Option<Segment<'a>>, ElfError> {
    if ph.p_filesz > ph.p_memsz {
        return Err(ElfError::FileSizeExceedsMemSize);
    }
    let file = usize::try_from(ph.p_offset)
        .ok()
        .zip(usize::try_from(ph.p_filesz).ok())
        .and_then(|(offset, len)| bytes.get(offset..offset.checked_add(len)?))
        .ok_or(ElfError::FileRangeOutOfBounds)?;
    if ph.p_memsz == 0 {
        return Ok(None);
    }
    let vaddr = VirtAddr::new(ph.p_vaddr);
    let end = vaddr
        .checked_add(ph.p_memsz)
        .ok_or(ElfError::AddressOverflow)?;
    if vaddr.get() < IMAGE_BASE || end.get() > layout::IMAGE_LIMIT {
        return Err(ElfError::OutsideImage);
    }
    let first_page = vaddr.align_down(PAGE_SIZE);
    // `end <= IMAGE_LIMIT`, far below `u64::MAX`: rounding up cannot overflow.
    let end_page = end.align_up(PAGE_SIZE).ok_or(ElfError::AddressOverflow)?;
    let perms = Perms::from_flags(ph.p_flags);
    if perms.write && perms.exec {
        return Err(ElfError::WritableAndExecutable);
    }
    Ok(Some(Segment {
        vaddr,
        memsz: ph.p_memsz,
        file,
        perms,
        first_page,
        page_count: (end_page.get() - first_page.get()) / PAGE_SIZE,
    }))
}

fn pages_overlap(a: &Segment<'_>, b: &Segment<'_>) -> bool {
    let end = |s: &Segment<'_>| s.first_page.get() + s.page_count * PAGE_SIZE;
    a.first_page.get() < end(b) && b.first_page.get() < end(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PT_NOTE: u32 = 4;
    const ET_DYN: u16 = 3;
    const EM_X86_64: u16 = 62;
    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;
    const TEXT: u64 = 0x40_0000;
    const DATA: u64 = 0x40_1000;

    /// One program header; `offset`/`filesz` default to where the builder
    /// places `data` and its length.
    #[derive(Clone, Debug)]
    struct Ph {
        p_type: u32,
        flags: u32,
        vaddr: u64,
        memsz: u64,
        data: Vec<u8>,
        offset: Option<u64>,
        filesz: Option<u64>,
    }

    impl Ph {
        fn load(flags: u32, vaddr: u64, data: &[u8], memsz: u64) -> Self {
            Self {
                p_type: PT_LOAD,
                flags,
                vaddr,
                memsz,
                data: data.to_vec(),
                offset: None,
                filesz: None,
            }
        }

        fn other(p_type: u32) -> Self {
            Self {
                p_type,
                ..Self::load(PF_R, 0, &[], 0)
            }
        }
    }

    /// A tiny ELF64 writer: header, program headers, then segment data.
    #[derive(Clone, Debug)]
    struct Image {
        class: u8,
        data_enc: u8,
        e_type: u16,
        machine: u16,
        entry: u64,
        phentsize: u16,
        phs: Vec<Ph>,
    }

    impl Image {
        fn new(entry: u64, phs: Vec<Ph>) -> Self {
            Self {
                class: ELFCLASS64,
                data_enc: ELFDATA2LSB,
                e_type: ET_EXEC,
                machine: EM_AARCH64,
                entry,
                phentsize: 56,
                phs,
            }
        }

        /// Code at `TEXT` (entry), data plus bss at `DATA`.
        fn good() -> Self {
            Self::new(
                TEXT,
                vec![
                    Ph::load(RX, TEXT, &[0xd5; 16], 16),
                    Ph::load(RW, DATA + 0x10, &[1, 2, 3, 4, 5, 6, 7, 8], 0x2000),
                ],
            )
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&ELFMAGIC);
            out.extend_from_slice(&[self.class, self.data_enc, 1, 0]);
            out.resize(16, 0);
            out.extend_from_slice(&self.e_type.to_le_bytes());
            out.extend_from_slice(&self.machine.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&self.entry.to_le_bytes());
            out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
            out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
            out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
            out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
            out.extend_from_slice(&self.phentsize.to_le_bytes());
            out.extend_from_slice(&(self.phs.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
            let mut data_at = 64 + 56 * self.phs.len() as u64;
            for ph in &self.phs {
                let offset = ph.offset.unwrap_or(data_at);
                data_at += ph.data.len() as u64;
                out.extend_from_slice(&ph.p_type.to_le_bytes());
                out.extend_from_slice(&ph.flags.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&ph.vaddr.to_le_bytes());
                out.extend_from_slice(&ph.vaddr.to_le_bytes()); // p_paddr
                let filesz = ph.filesz.unwrap_or(ph.data.len() as u64);
                out.extend_from_slice(&filesz.to_le_bytes());
                out.extend_from_slice(&ph.memsz.to_le_bytes());
                out.extend_from_slice(&PAGE_SIZE.to_le_bytes()); // p_align
            }
            for ph in &self.phs {
                out.extend_from_slice(&ph.data);
            }
            out
        }
    }

    fn parse_with(f: impl FnOnce(&mut Image)) -> Result<(), ElfError> {
        let mut image = Image::good();
        f(&mut image);
        LoadPlan::parse(&image.build()).map(|_| ())
    }

    /// Every accepted plan satisfies the rules the kernel relies on.
    fn check_invariants(plan: &LoadPlan<'_>) {
        let segs: Vec<_> = plan.segments().collect();
        assert!(!segs.is_empty() && segs.len() <= MAX_LOAD_SEGMENTS);
        let mut total = 0;
        for s in &segs {
            let (first, count) = s.pages();
            assert!(first.get() >= IMAGE_BASE && first.is_page_aligned());
            assert!(first.get() + count * PAGE_SIZE <= layout::IMAGE_LIMIT);
            assert!(s.vaddr().get() + s.memsz() <= first.get() + count * PAGE_SIZE);
            assert!(s.file().len() as u64 <= s.memsz());
            assert!(!(s.perms().write && s.perms().exec));
            total += count;
        }
        assert_eq!(plan.total_pages(), total);
        for (i, a) in segs.iter().enumerate() {
            for b in &segs[i + 1..] {
                assert!(!pages_overlap(a, b));
            }
        }
        let e = plan.entry().get();
        assert!(
            segs.iter()
                .any(|s| s.perms().exec
                    && (s.vaddr().get()..s.vaddr().get() + s.memsz()).contains(&e))
        );
    }

    /// Largest segment (in pages) the tests rebuild in memory.
    const MAX_REASSEMBLE_PAGES: u64 = 4096;

    /// The segment's pages rebuilt from `page_bytes`, zeros elsewhere.
    fn reassemble(s: &Segment<'_>) -> Vec<u8> {
        let (first, count) = s.pages();
        let mut mem = vec![0u8; (count * PAGE_SIZE) as usize];
        for i in 0..count {
            let page = first.checked_add(i * PAGE_SIZE).unwrap();
            let (offset, bytes) = s.page_bytes(page);
            assert!(offset + bytes.len() <= PAGE_SIZE as usize);
            let at = (i * PAGE_SIZE) as usize + offset;
            mem[at..at + bytes.len()].copy_from_slice(bytes);
        }
        mem
    }

    fn expected_memory(s: &Segment<'_>) -> Vec<u8> {
        let (first, count) = s.pages();
        let mut mem = vec![0u8; (count * PAGE_SIZE) as usize];
        let at = (s.vaddr().get() - first.get()) as usize;
        mem[at..at + s.file().len()].copy_from_slice(s.file());
        mem
    }

    #[test]
    fn good_image_gives_plan() {
        let bytes = Image::good().build();
        let plan = LoadPlan::parse(&bytes).unwrap();
        check_invariants(&plan);
        assert_eq!(plan.entry(), VirtAddr::new(TEXT));
        let segs: Vec<_> = plan.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].vaddr(), VirtAddr::new(TEXT));
        assert_eq!(segs[0].file(), &[0xd5; 16]);
        assert_eq!(
            segs[0].perms(),
            Perms {
                read: true,
                write: false,
                exec: true
            }
        );
        assert_eq!(segs[0].pages(), (VirtAddr::new(TEXT), 1));
        // 0x40_1010 + 0x2000 ends in the third page.
        assert_eq!(segs[1].pages(), (VirtAddr::new(DATA), 3));
        assert_eq!(plan.total_pages(), 4);
        assert_eq!(
            segs[1].page_bytes(VirtAddr::new(DATA)),
            (0x10, &[1, 2, 3, 4, 5, 6, 7, 8][..])
        );
        // An unaligned address names its page.
        assert_eq!(segs[1].page_bytes(VirtAddr::new(DATA + 0x123)).0, 0x10);
        assert_eq!(
            segs[1].page_bytes(VirtAddr::new(DATA + PAGE_SIZE)),
            (0, &[][..])
        );
        assert_eq!(segs[1].page_bytes(VirtAddr::new(TEXT)), (0, &[][..]));
        assert_eq!(segs[1].page_bytes(VirtAddr::new(u64::MAX)), (0, &[][..]));
        for s in segs {
            assert_eq!(reassemble(s), expected_memory(s));
        }
    }

    #[test]
    fn adjacent_pages_and_other_headers_are_fine() {
        let ok = parse_with(|i| {
            i.phs[0].data = vec![0; PAGE_SIZE as usize];
            i.phs[0].memsz = PAGE_SIZE;
            i.phs[1].vaddr = DATA;
            i.phs.push(Ph::other(PT_NOTE));
            i.phs.push(Ph::load(RW, 0x50_0000, &[], 0)); // empty: ignored
        });
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn segment_crossing_pages_splits_file_bytes() {
        let data: Vec<u8> = (0..=255).cycle().take(0x1800).collect();
        let image = Image::new(TEXT, vec![Ph::load(RX, TEXT + 0xf00, &data, 0x3000)]);
        let image = Image {
            entry: TEXT + 0xf00,
            ..image
        };
        let bytes = image.build();
        let plan = LoadPlan::parse(&bytes).unwrap();
        let s = plan.segments().next().unwrap();
        assert_eq!(s.pages(), (VirtAddr::new(TEXT), 4));
        let (off, first) = s.page_bytes(VirtAddr::new(TEXT));
        assert_eq!((off, first.len()), (0xf00, 0x100));
        let (off, second) = s.page_bytes(VirtAddr::new(TEXT + PAGE_SIZE));
        assert_eq!((off, second.len()), (0, 0x1000));
        let (off, third) = s.page_bytes(VirtAddr::new(TEXT + 2 * PAGE_SIZE));
        assert_eq!((off, third.len()), (0, 0x700));
        assert_eq!(s.page_bytes(VirtAddr::new(TEXT + 3 * PAGE_SIZE)).1.len(), 0);
        assert_eq!(reassemble(s), expected_memory(s));
    }

    #[test]
    fn the_machine_asked_for_is_the_one_accepted() {
        let mut x86 = Image::good();
        x86.machine = EM_X86_64;
        let x86 = x86.build();
        assert!(LoadPlan::parse_for(&x86, Machine::X86_64).is_ok());
        assert_eq!(LoadPlan::parse(&x86), Err(ElfError::WrongMachine));
        let arm = Image::good().build();
        assert_eq!(
            LoadPlan::parse_for(&arm, Machine::X86_64),
            Err(ElfError::WrongMachine)
        );
    }

    #[test]
    fn header_errors() {
        let good = Image::good().build();
        let mut bad = good.clone();
        bad[1] = b'F';
        assert_eq!(LoadPlan::parse(&bad), Err(ElfError::BadMagic));
        assert_eq!(LoadPlan::parse(&[]), Err(ElfError::BadMagic));
        assert_eq!(LoadPlan::parse(&good[..4]), Err(ElfError::Malformed));
        assert_eq!(LoadPlan::parse(&good[..40]), Err(ElfError::Malformed));
        assert_eq!(
            LoadPlan::parse(&good[..100]),
            Err(ElfError::Malformed),
            "program-header table cut short"
        );
        assert_eq!(parse_with(|i| i.class = 1), Err(ElfError::NotElf64));
        assert_eq!(
            parse_with(|i| i.data_enc = 2),
            Err(ElfError::NotLittleEndian)
        );
        assert_eq!(
            parse_with(|i| i.machine = EM_X86_64),
            Err(ElfError::WrongMachine)
        );
        assert_eq!(
            parse_with(|i| i.e_type = ET_DYN),
            Err(ElfError::NotExecutable)
        );
        assert_eq!(parse_with(|i| i.phentsize = 32), Err(ElfError::Malformed));
    }

    #[test]
    fn program_header_errors() {
        use ElfError::*;
        type Case = (ElfError, fn(&mut Image));
        let cases: &[Case] = &[
            (Dynamic, |i| i.phs.push(Ph::other(PT_INTERP))),
            (Dynamic, |i| i.phs.insert(0, Ph::other(PT_DYNAMIC))),
            (NoLoadSegment, |i| i.phs.clear()),
            (NoLoadSegment, |i| i.phs = vec![Ph::other(PT_NOTE)]),
            (NoLoadSegment, |i| i.phs = vec![Ph::load(RX, TEXT, &[], 0)]),
            (TooManySegments, |i| {
                i.phs
                    .extend((0..15).map(|n| Ph::load(PF_R, 0x100_0000 + n * PAGE_SIZE, &[], 1)));
            }),
            (FileSizeExceedsMemSize, |i| i.phs[1].memsz = 4),
            (FileRangeOutOfBounds, |i| i.phs[1].offset = Some(1 << 20)),
            (FileRangeOutOfBounds, |i| {
                i.phs[1].offset = Some(u64::MAX - 2)
            }),
            (FileRangeOutOfBounds, |i| {
                i.phs[1].filesz = Some(1 << 40);
                i.phs[1].memsz = 1 << 40;
            }),
            (AddressOverflow, |i| i.phs[1].vaddr = u64::MAX - 0x100),
            (OutsideImage, |i| i.phs[1].vaddr = 0),
            (OutsideImage, |i| i.phs[1].vaddr = 0xff8),
            (OutsideImage, |i| {
                i.phs[1].vaddr = layout::IMAGE_LIMIT - 0x100
            }),
            (OutsideImage, |i| i.phs[1].vaddr = 0xffff_0000_4020_0000),
            (WritableAndExecutable, |i| i.phs[1].flags = RW | PF_X),
            (OverlappingSegments, |i| i.phs[1].vaddr = TEXT + 0x800),
            (OverlappingSegments, |i| i.phs[1].vaddr = TEXT - 0x10),
            (OverlappingSegments, |i| {
                i.phs
                    .push(Ph::load(PF_R, DATA + 2 * PAGE_SIZE + 0x20, &[], 8));
            }),
            (BadEntry, |i| i.entry = DATA + 0x10),
            (BadEntry, |i| i.entry = TEXT + 16),
            (BadEntry, |i| i.entry = TEXT + 2),
            (BadEntry, |i| i.entry = 0),
        ];
        for (n, (want, f)) in cases.iter().enumerate() {
            assert_eq!(parse_with(f), Err(*want), "case {n}");
        }
        // 16 PT_LOADs are still fine.
        let ok = parse_with(|i| {
            i.phs
                .extend((0..14).map(|n| Ph::load(PF_R, 0x100_0000 + n * PAGE_SIZE, &[], 1)));
        });
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(ElfError::BadMagic as u8, 1);
        assert_eq!(ElfError::BadEntry as u8, 16);
        assert_eq!(
            ElfError::OverlappingSegments.to_string(),
            "segments share a page"
        );
    }

    /// An image shaped like the kernel's own (`kernel/linker.ld`): entry at
    /// the physical load address, text, read-only data and data + bss
    /// linked at `LINEAR_BASE + physical` in the high half. It must be
    /// refused; the same image linked low loads, so the high half is what
    /// is refused.
    #[test]
    fn high_half_kernel_is_refused() {
        const LINEAR_BASE: u64 = 0xffff_0000_0000_0000;
        const KERNEL_PHYS: u64 = 0x4020_0000;
        let kernel_like = |base: u64| {
            let text = base + KERNEL_PHYS;
            Image::new(
                KERNEL_PHYS,
                vec![
                    Ph::load(RX, text, &[0xd5; 64], 0x3000),
                    Ph::load(PF_R, text + 0x3000, &[7; 32], 0x1000),
                    Ph::load(RW, text + 0x4000, &[1; 16], 0x4_2000),
                ],
            )
            .build()
        };
        assert_eq!(
            LoadPlan::parse(&kernel_like(LINEAR_BASE)),
            Err(ElfError::OutsideImage)
        );
        assert!(LoadPlan::parse(&kernel_like(0)).is_ok());
    }

    fn mutation() -> impl Strategy<Value = (usize, u8)> {
        (any::<usize>(), any::<u8>())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(plan) = LoadPlan::parse(&bytes) {
                check_invariants(&plan);
            }
        }

        #[test]
        fn mutated_images_never_panic(
            muts in proptest::collection::vec(mutation(), 1..8),
            cut in any::<Option<usize>>(),
        ) {
            let mut bytes = Image::good().build();
            for (at, v) in muts {
                let at = at % bytes.len();
                bytes[at] = v;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            if let Ok(plan) = LoadPlan::parse(&bytes) {
                check_invariants(&plan);
                // A mutated memsz may legally span up to a TiB: rebuild
                // only segments small enough to hold in memory here.
                for s in plan.segments().filter(|s| s.pages().1 <= MAX_REASSEMBLE_PAGES) {
                    prop_assert_eq!(reassemble(s), expected_memory(s));
                }
            }
        }

        #[test]
        fn page_bytes_reassemble_the_file(
            page in 1u64..0x1000,
            offset in 0u64..PAGE_SIZE,
            filesz in 0usize..0x3000,
            bss in 0u64..0x3000,
            seed in any::<u8>(),
        ) {
            let vaddr = page * PAGE_SIZE + offset;
            let data: Vec<u8> = (0..filesz).map(|n| (n as u8) ^ seed).collect();
            let memsz = filesz as u64 + bss + 4;
            let entry = vaddr.next_multiple_of(4);
            let image = Image::new(entry, vec![Ph::load(RX, vaddr, &data, memsz)]);
            let bytes = image.build();
            let plan = LoadPlan::parse(&bytes);
            prop_assert!(plan.is_ok());
            if let Ok(plan) = plan {
                check_invariants(&plan);
                prop_assert_eq!(plan.entry(), VirtAddr::new(entry));
                let s = plan.segments().next().unwrap();
                prop_assert_eq!(s.file(), &data[..]);
                let mem = reassemble(s);
                let at = offset as usize;
                prop_assert_eq!(&mem[at..at + filesz], &data[..]);
                prop_assert!(mem[..at].iter().all(|&b| b == 0));
                prop_assert!(mem[at + filesz..].iter().all(|&b| b == 0));
                let pages = (offset + memsz).div_ceil(PAGE_SIZE);
                prop_assert_eq!(s.pages(), (VirtAddr::new(page * PAGE_SIZE), pages));
            }
        }
    }
}
