//! Physical Region Page entries and lists [NVMe-2.0 §4.1.1]: how a command
//! describes a buffer that is contiguous in IOVA space. PRP1 holds the
//! first address (any dword-aligned offset); the rest of the transfer is
//! whole memory pages, named by PRP2 directly when there is one more page,
//! or through a PRP list when there are more. Owns that arithmetic; never
//! writes device-visible memory (the driver copies the list entries into
//! its list page) and never accepts a transfer above the controller's
//! limit (MDTS).

use abi::Iova;

/// The data pointer of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prps {
    /// PRP Entry 1: the first byte.
    pub prp1: u64,
    /// PRP Entry 2: 0, the second page, or the PRP list's IOVA.
    pub prp2: u64,
    /// Entries written at the start of the caller's list (0 unless PRP2
    /// points to the list).
    pub list_len: usize,
}

/// Why a buffer cannot be described.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpError {
    /// Zero bytes.
    Empty,
    /// The IOVA is not dword aligned [NVMe-2.0 §4.1.1: bits 1:0 are 0].
    Misaligned,
    /// Longer than the largest transfer (MDTS).
    TooLarge,
    /// The list would not fit the caller's list (or one page: this driver
    /// never chains lists).
    ListTooLong,
    /// The range wraps the address space.
    Overflow,
    /// The memory page size is not a power of two of at least 4 KiB.
    BadPageSize,
    /// The list page's IOVA is not aligned to the memory page size.
    BadListPage,
}

/// Describes `[iova, iova + len)` for a controller whose memory page size
/// is `page_size`, refusing more than `max_transfer` bytes. If a list is
/// needed its entries are written into `list` (which the driver then
/// copies to the page at `list_page`).
pub fn build(
    iova: Iova,
    len: u64,
    page_size: u64,
    max_transfer: u64,
    list_page: Iova,
    list: &mut [u64],
) -> Result<Prps, PrpError> {
    if !page_size.is_power_of_two() || page_size < 4096 {
        return Err(PrpError::BadPageSize);
    }
    if len == 0 {
        return Err(PrpError::Empty);
    }
    if len > max_transfer {
        return Err(PrpError::TooLarge);
    }
    if !iova.is_aligned(4) {
        return Err(PrpError::Misaligned);
    }
    let end = iova.checked_add(len).ok_or(PrpError::Overflow)?;
    let first_end = iova
        .align_down(page_size)
        .checked_add(page_size)
        .ok_or(PrpError::Overflow)?;
    if end <= first_end {
        return Ok(Prps {
            prp1: iova.get(),
            prp2: 0,
            list_len: 0,
        });
    }
    let rest = end.get() - first_end.get();
    let pages = rest.div_ceil(page_size);
    if pages == 1 {
        return Ok(Prps {
            prp1: iova.get(),
            prp2: first_end.get(),
            list_len: 0,
        });
    }
    let per_page = page_size / 8;
    if pages > per_page || pages > list.len() as u64 {
        return Err(PrpError::ListTooLong);
    }
    if !list_page.is_aligned(page_size) {
        return Err(PrpError::BadListPage);
    }
    for (i, entry) in list.iter_mut().take(pages as usize).enumerate() {
        *entry = first_end.get() + i as u64 * page_size;
    }
    Ok(Prps {
        prp1: iova.get(),
        prp2: list_page.get(),
        list_len: pages as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: u64 = 4096;
    const LIST: Iova = Iova::new(0x7700_0000);

    fn plan(iova: u64, len: u64) -> (Result<Prps, PrpError>, [u64; 64]) {
        let mut list = [0u64; 64];
        let r = build(Iova::new(iova), len, PAGE, 128 * 1024, LIST, &mut list);
        (r, list)
    }

    #[test]
    fn the_three_shapes() {
        assert_eq!(
            plan(0x1_0000, 4096).0,
            Ok(Prps {
                prp1: 0x1_0000,
                prp2: 0,
                list_len: 0
            })
        );
        assert_eq!(
            plan(0x1_0200, 4096).0,
            Ok(Prps {
                prp1: 0x1_0200,
                prp2: 0x1_1000,
                list_len: 0
            })
        );
        assert_eq!(
            plan(0x1_0000, 8192).0,
            Ok(Prps {
                prp1: 0x1_0000,
                prp2: 0x1_1000,
                list_len: 0
            })
        );
        let (r, list) = plan(0x1_0000, 12288);
        assert_eq!(
            r,
            Ok(Prps {
                prp1: 0x1_0000,
                prp2: LIST.get(),
                list_len: 2
            })
        );
        assert_eq!(&list[..2], &[0x1_1000, 0x1_2000]);
        // 128 KiB from an offset: 33 pages, a 32-entry list.
        let (r, list) = plan(0x1_0200, 128 * 1024);
        assert_eq!(r.unwrap().list_len, 32);
        assert_eq!(list[31], 0x1_0000 + 32 * PAGE);
    }

    #[test]
    fn refusals() {
        assert_eq!(plan(0x1000, 0).0, Err(PrpError::Empty));
        assert_eq!(plan(0x1002, 512).0, Err(PrpError::Misaligned));
        assert_eq!(plan(0x1000, 128 * 1024 + 512).0, Err(PrpError::TooLarge));
        assert_eq!(plan(u64::MAX - 511, 512).0, Err(PrpError::Overflow));
        let mut short = [0u64; 2];
        assert_eq!(
            build(Iova::new(0), 4 * PAGE, PAGE, 1 << 20, LIST, &mut short),
            Err(PrpError::ListTooLong)
        );
        let mut big = [0u64; 1024];
        assert_eq!(
            build(Iova::new(0), 600 * PAGE, PAGE, 1 << 30, LIST, &mut big),
            Err(PrpError::ListTooLong)
        );
        assert_eq!(
            build(
                Iova::new(0),
                3 * PAGE,
                PAGE,
                1 << 20,
                Iova::new(0x10),
                &mut big
            ),
            Err(PrpError::BadListPage)
        );
        assert_eq!(
            build(Iova::new(0), 512, 2048, 1 << 20, LIST, &mut big),
            Err(PrpError::BadPageSize)
        );
    }

    /// The byte ranges the controller will touch, page by page, following
    /// [NVMe-2.0 §4.1.1]: PRP1 to the end of its page, then whole pages
    /// (the last one cut at the transfer's length).
    fn walk(p: &Prps, len: u64, page: u64, list: &[u64]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let first = (page - p.prp1 % page).min(len);
        out.push((p.prp1, first));
        let mut left = len - first;
        let pages: Vec<u64> = match (p.list_len, p.prp2) {
            (0, 0) => vec![],
            (0, a) => vec![a],
            (n, _) => list[..n].to_vec(),
        };
        for a in pages {
            assert_eq!(a % page, 0, "a page entry with an offset");
            let n = left.min(page);
            assert!(n > 0, "an entry beyond the transfer");
            out.push((a, n));
            left -= n;
        }
        assert_eq!(left, 0, "the entries do not cover the transfer");
        out
    }

    proptest! {
        #[test]
        fn prps_cover_exactly_the_buffer(
            page_shift in 12u32..=14,
            start in (0u64..(1 << 40)).prop_map(|v| v & !3),
            len in 1u64..=256 * 1024,
        ) {
            let page = 1u64 << page_shift;
            let max = 256 * 1024;
            let mut list = vec![0u64; 1024];
            let p = build(Iova::new(start), len, page, max, Iova::new(0x9000_0000), &mut list).unwrap();
            let segs = walk(&p, len, page, &list);
            // Contiguous, in order, exactly [start, start + len).
            let mut at = start;
            for (a, n) in &segs {
                prop_assert_eq!(*a, at);
                at += n;
            }
            prop_assert_eq!(at, start + len);
            // The pointer shape is the one the spec requires.
            let pages = (start % page + len).div_ceil(page);
            match pages {
                1 => prop_assert_eq!((p.prp2, p.list_len), (0, 0)),
                2 => prop_assert_eq!(p.list_len, 0),
                n => {
                    prop_assert_eq!(p.list_len as u64, n - 1);
                    prop_assert_eq!(p.prp2, 0x9000_0000);
                }
            }
        }

        #[test]
        fn beyond_mdts_is_refused(len in 1u64..(1 << 22), max in 1u64..(1 << 21)) {
            let mut list = vec![0u64; 1024];
            let r = build(Iova::new(0x10_0000), len, PAGE, max, LIST, &mut list);
            if len > max {
                prop_assert_eq!(r, Err(PrpError::TooLarge));
            }
        }
    }
}
