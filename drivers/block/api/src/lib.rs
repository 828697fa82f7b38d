//! The block service: the one protocol every block driver task (NVMe,
//! virtio-blk) serves and every client (the benchmark, tests, demos)
//! speaks, so that clients read and write sectors without knowing the
//! device. It is asynchronous so that one client can keep many I/Os in
//! flight over synchronous IPC: `Submit` hands the driver a batch of I/Os
//! on a buffer the client grants (the driver has the IOMMU server map that
//! very memory for the device: zero copy) and returns at once; `Reap`
//! waits for completions; `SubmitWait` does both in one call, so that a
//! client keeping its queue full makes one call per batch. Encoding only: no I/O, no allocation, never
//! panics on any input.
//!
//! Each request is declared once, in `protocol.rs`, with the
//! `ipc_proto::protocol!` macro the IOMMU protocol uses too: from that
//! entry come [`Op`], [`Request`], [`Response`] and their codecs, the
//! driver loop's [`Handler`] method with [`Request::dispatch`]
//! (`block-server`), and the [`Client`] stub that `block-client` wraps.
//! Field wire forms are written once per type (`field.rs`); the framing
//! is `ipc-proto`'s.
//!
//! # Wire format (little-endian, at most [`MSG_MAX`] bytes)
//!
//! Request: header `{op: u16, count: u16, arg: u32}`, then `count` entries.
//!
//! | op | arg | entries |
//! |---|---|---|
//! | 1 `Info`, 4 `Stats`, 6 `ResetStats` | 0 | none |
//! | 2 `Submit` | 0 | 1..=[`MAX_IOS`] 24-byte [`Io`]s `{tag: u16, kind: u8, flags: u8, sectors: u32, lba: u64, offset: u64}` |
//! | 3 `Reap` | `min` in bits 0..16, `max` in bits 16..32 (1 <= min <= max <= [`MAX_COMPLETIONS`]) | none |
//! | 7 `SubmitWait` | `min` in bits 0..16, `max` in bits 16..32, as `Reap`'s | 1..=[`MAX_IOS`] [`Io`]s, as `Submit`'s |
//! | 5 `SetMode` | mode: 1 bypass, 2 strict-per-unmap, 3 strict, 4 deferred | one 8-byte `{max_entries: u32, max_age_us: u32}` (non-zero for deferred, else 0) |
//!
//! Response: header `{status: u16 (0 = ok, else a [`BlockError`] code),
//! count: u16, 0: u32}`, then `count` entries: `Info` one 24-byte
//! `{sectors: u64, sector_size: u32, max_transfer: u32, queue_depth: u16,
//! device_kind: u16, 0: u32}`; `Accepted`, `ModeSet`, `StatsReset` none; `Completions`
//! and `Completed` 1..=[`MAX_COMPLETIONS`] 8-byte [`Completion`]s `{tag: u16, status: u16,
//! 0: u32}`; `Stats` thirteen 8-byte counters (see [`BlockStats`]). An
//! error response has no entries.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod field;
pub mod limits;
mod protocol;

pub use ipc_proto::{HEADER_BYTES, List, MSG_MAX, Transport, WireEntry};
pub use limits::{Account, Limits};
pub use protocol::{Client, Handler, Op, Request, Response};

/// I/O descriptors of a `Submit`.
pub type Ios<'a> = List<'a, Io>;
/// Completions of a `Reap` answer.
pub type Completions<'a> = List<'a, Completion>;

/// Bytes in a sector, the unit of `lba` and `sectors`.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes in one I/O descriptor.
pub const IO_BYTES: usize = 24;
/// Bytes in one completion.
pub const COMPLETION_BYTES: usize = 8;
/// Most I/Os one `Submit` carries.
pub const MAX_IOS: usize = (MSG_MAX - HEADER_BYTES) / IO_BYTES;
/// Most completions one `Reap` answer carries.
pub const MAX_COMPLETIONS: usize = (MSG_MAX - HEADER_BYTES) / COMPLETION_BYTES;
/// Bytes of the `Info` answer body.
pub(crate) const INFO_BYTES: usize = 24;

/// I/O flag, test only: the driver removes the buffer's IOMMU mapping
/// while the command is in flight, so the device's DMA faults. Honoured
/// only by a driver whose system description allows fault injection;
/// otherwise the I/O is refused with [`BlockError::NotPermitted`].
pub const FLAG_INJECT_UNMAP: u8 = 1 << 0;

abi::stable_codes! {
    /// Why a request or an I/O failed. Stable codes; 0 is success.
    pub enum BlockError: u16 {
        /// The message does not decode.
        Malformed = 1,
        /// Unknown operation or I/O kind.
        UnknownOp = 2,
        /// The I/O reaches beyond the end of the disk.
        OutOfRange = 3,
        /// A buffer offset or length is not a whole number of sectors.
        Unaligned = 4,
        /// The I/O is larger than the driver's `max_transfer`.
        TooLarge = 5,
        /// More I/Os in flight than the queue depth, or a tag already in use.
        QueueFull = 6,
        /// A buffer range lies outside the call's grant, or there is no grant.
        NotGranted = 7,
        /// The device reported an error for the I/O, or is in an error state.
        DeviceError = 8,
        /// The IOMMU reported a DMA fault on the I/O's buffer: the data did not
        /// (entirely) reach memory, whatever the device said.
        DmaFault = 9,
        /// The device did not complete the I/O in time.
        Timeout = 10,
        /// The IOMMU server refused to map the buffer.
        Iommu = 11,
        /// `Reap` with nothing in flight, or `min` above what is in flight.
        NothingInFlight = 12,
        /// A flag the driver is not allowed to honour.
        NotPermitted = 13,
        /// This client has as many I/Os in flight plus completions not yet
        /// reaped as its per-client limit allows (or the driver serves as
        /// many clients as it can): reap first. Unlike `QueueFull` (the
        /// device's queue, shared), only this client's own `Reap` clears
        /// it. The refused request changed nothing.
        Busy = 14,
    }
}

/// The IOMMU modes the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchMode {
    /// No translation, no invalidation: the ceiling.
    Bypass,
    /// Strict, one CMD_SYNC per unmap: the classic baseline.
    StrictPerUnmap,
    /// Strict with syncs shared across unmaps and clients.
    Strict,
    /// Deferred: unmaps answered at once, invalidated by a flush queue of
    /// at most `max_entries` entries or `max_age_us` µs.
    Deferred {
        /// Flush-queue length bound.
        max_entries: u32,
        /// Flush-queue age bound in µs.
        max_age_us: u32,
    },
}

impl BenchMode {
    /// The mode's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            BenchMode::Bypass => "bypass",
            BenchMode::StrictPerUnmap => "strict-per-unmap",
            BenchMode::Strict => "strict",
            BenchMode::Deferred { .. } => "deferred",
        }
    }

    pub(crate) const fn code(self) -> u32 {
        match self {
            BenchMode::Bypass => 1,
            BenchMode::StrictPerUnmap => 2,
            BenchMode::Strict => 3,
            BenchMode::Deferred { .. } => 4,
        }
    }
}

ipc_proto::counters! {
    /// A driver's counters (answer to `Stats`): its own work and the IOMMU
    /// server's work for it, since the last `SetMode` or `ResetStats`. 17
    /// little-endian `u64`s (the four `server_*_ticks` appended last).
    pub struct BlockStats {
        /// I/Os completed.
        pub ios: u64,
        /// `Submit` and `SubmitWait` requests handled.
        pub submits: u64,
        /// `Reap` requests answered (a `SubmitWait`'s answer is not one:
        /// `submits + reaps` is the client's calls).
        pub reaps: u64,
        /// Map calls to the IOMMU server.
        pub iommu_map_calls: u64,
        /// Unmap calls to the IOMMU server.
        pub iommu_unmap_calls: u64,
        /// Fault queries to the IOMMU server.
        pub iommu_fault_calls: u64,
        /// I/Os failed with `DmaFault`.
        pub dma_faults: u64,
        /// Ranges the IOMMU server unmapped for the driver.
        pub unmapped_ranges: u64,
        /// TLBI commands issued for the driver's domain.
        pub tlbi_commands: u64,
        /// CMD_SYNCs the driver's unmaps took part in.
        pub cmd_syncs: u64,
        /// Command-queue doorbells those took.
        pub doorbells: u64,
        /// Counter ticks the IOMMU server spent on the driver.
        pub server_ticks: u64,
        /// Longest deferred stale window, µs.
        pub max_stale_window_us: u64,
        /// Of `server_ticks`: handling the driver's `Map`s, less pins.
        pub server_map_ticks: u64,
        /// Of `server_ticks`: handling its `Unmap`s, less unpins.
        pub server_unmap_ticks: u64,
        /// Of `server_ticks`: its share of flushes, less unpins.
        pub server_flush_ticks: u64,
        /// Of `server_ticks`: the kernel's pin and unpin calls.
        pub server_pin_ticks: u64,
    }
}

impl BlockStats {}

/// What an I/O does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IoKind {
    /// Device → the granted buffer.
    Read = 1,
    /// The granted buffer → device.
    Write = 2,
    /// Make earlier writes durable (no buffer; `lba`, `sectors` 0).
    Flush = 3,
}

/// One I/O of a `Submit`: 24 bytes on the wire,
/// `{tag: u16, kind: u8, flags: u8, sectors: u32, lba: u64, offset: u64}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Io {
    /// The client's name for it, echoed in its completion; unique among
    /// the client's I/Os in flight.
    pub tag: u16,
    /// What to do.
    pub kind: IoKind,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Length in sectors.
    pub sectors: u32,
    /// First sector.
    pub lba: u64,
    /// Byte offset of the data in the call's grant.
    pub offset: u64,
}

impl Io {
    /// Bytes moved.
    pub const fn bytes(&self) -> u64 {
        self.sectors as u64 * SECTOR_SIZE
    }
}

/// One completion: 8 bytes, `{tag: u16, status: u16, 0: u32}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The I/O's tag.
    pub tag: u16,
    /// How it ended.
    pub status: Result<(), BlockError>,
}

/// Device geometry and limits, the answer to `Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Info {
    /// Capacity in sectors.
    pub sectors: u64,
    /// Sector size the device uses (a multiple of [`SECTOR_SIZE`]).
    pub sector_size: u32,
    /// Largest I/O in bytes.
    pub max_transfer: u32,
    /// Most I/Os a client may have in flight.
    pub queue_depth: u16,
    /// Tells the client which driver this is: 1 NVMe, 2 virtio-blk.
    pub device_kind: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn io() -> impl Strategy<Value = Io> {
        (
            any::<u16>(),
            1u8..=3,
            any::<u8>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(tag, k, flags, sectors, lba, offset)| Io {
                tag,
                kind: match k {
                    1 => IoKind::Read,
                    2 => IoKind::Write,
                    _ => IoKind::Flush,
                },
                flags,
                sectors,
                lba,
                offset,
            })
    }

    proptest! {
        #[test]
        fn submit_round_trips(ios in proptest::collection::vec(io(), 1..=MAX_IOS)) {
            let mut buf = [0u8; MSG_MAX];
            let n = Request::Submit(Ios::new(&ios)).encode(&mut buf).unwrap();
            let Request::Submit(got) = Request::decode(&buf[..n]).unwrap() else { panic!("not a submit") };
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), ios);
        }

        #[test]
        fn submit_wait_round_trips(
            ios in proptest::collection::vec(io(), 1..=MAX_IOS),
            min in 1u16..=MAX_COMPLETIONS as u16,
            extra in 0u16..=MAX_COMPLETIONS as u16,
        ) {
            let max = (min + extra).min(MAX_COMPLETIONS as u16);
            let mut buf = [0u8; MSG_MAX];
            let n = Request::SubmitWait { min, max, ios: Ios::new(&ios) }.encode(&mut buf).unwrap();
            let Request::SubmitWait { min: m, max: x, ios: got } = Request::decode(&buf[..n]).unwrap() else { panic!("not a submit-wait") };
            prop_assert_eq!((m, x), (min, max));
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), ios);
        }

        #[test]
        fn completions_round_trip(c in proptest::collection::vec((any::<u16>(), 0u16..=BlockError::ALL.len() as u16), 1..=MAX_COMPLETIONS)) {
            let comps: Vec<Completion> = c.iter().map(|&(tag, code)| Completion {
                tag,
                status: match code { 0 => Ok(()), c => Err(BlockError::from_code(c).unwrap()) },
            }).collect();
            let mut buf = [0u8; MSG_MAX];
            let n = Response::Completions(Completions::new(&comps)).encode(&mut buf).unwrap();
            let Response::Completions(got) = Response::decode(Op::Reap, &buf[..n]).unwrap() else { panic!("not completions") };
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), comps);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&bytes);
            for op in [Op::Info, Op::Submit, Op::Reap, Op::SubmitWait] {
                if let Ok(Response::Completions(c) | Response::Completed(c)) = Response::decode(op, &bytes) {
                    prop_assert_eq!(c.iter().count(), c.len());
                }
            }
        }
    }

    #[test]
    fn stats_and_set_mode_round_trip() {
        let mut buf = [0u8; MSG_MAX];
        let s = BlockStats {
            ios: 1,
            submits: 2,
            reaps: 3,
            cmd_syncs: 9,
            max_stale_window_us: 13,
            ..Default::default()
        };
        let n = Response::Stats(s).encode(&mut buf).unwrap();
        assert_eq!(
            Response::decode(Op::Stats, &buf[..n]),
            Ok(Response::Stats(s))
        );
        for m in [
            BenchMode::Bypass,
            BenchMode::StrictPerUnmap,
            BenchMode::Strict,
            BenchMode::Deferred {
                max_entries: 256,
                max_age_us: 1000,
            },
        ] {
            let n = Request::SetMode(m).encode(&mut buf).unwrap();
            assert_eq!(Request::decode(&buf[..n]), Ok(Request::SetMode(m)));
        }
        let n = Request::SetMode(BenchMode::Deferred {
            max_entries: 0,
            max_age_us: 5,
        })
        .encode(&mut buf)
        .unwrap();
        assert_eq!(Request::decode(&buf[..n]), Err(BlockError::Malformed));
    }

    #[test]
    fn info_and_reap_round_trip() {
        let mut buf = [0u8; MSG_MAX];
        let info = Info {
            sectors: 131072,
            sector_size: 512,
            max_transfer: 131072,
            queue_depth: 64,
            device_kind: 1,
        };
        let n = Response::Info(info).encode(&mut buf).unwrap();
        assert_eq!(
            Response::decode(Op::Info, &buf[..n]),
            Ok(Response::Info(info))
        );
        let n = Request::Reap { min: 1, max: 8 }.encode(&mut buf).unwrap();
        assert_eq!(
            Request::decode(&buf[..n]),
            Ok(Request::Reap { min: 1, max: 8 })
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut buf = [0u8; MSG_MAX];
        assert_eq!(
            Request::Submit(Ios::new(&[])).encode(&mut buf),
            Err(BlockError::Malformed)
        );
        assert_eq!(
            Request::Reap { min: 3, max: 2 }.encode(&mut buf),
            Err(BlockError::Malformed)
        );
        // SubmitWait: Reap's window, and at least one I/O.
        let io = Io {
            tag: 1,
            kind: IoKind::Read,
            flags: 0,
            sectors: 8,
            lba: 0,
            offset: 0,
        };
        let one = [io];
        for (min, max) in [(0, 1), (2, 1), (1, MAX_COMPLETIONS as u16 + 1)] {
            assert_eq!(
                Request::SubmitWait {
                    min,
                    max,
                    ios: Ios::new(&one)
                }
                .encode(&mut buf),
                Err(BlockError::Malformed)
            );
        }
        assert_eq!(
            Request::SubmitWait {
                min: 1,
                max: 1,
                ios: Ios::new(&[])
            }
            .encode(&mut buf),
            Err(BlockError::Malformed)
        );
        // A window the encoder refuses is refused by the decoder too.
        let n = Request::SubmitWait {
            min: 1,
            max: 1,
            ios: Ios::new(&one),
        }
        .encode(&mut buf)
        .unwrap();
        buf[4] = 0;
        assert_eq!(Request::decode(&buf[..n]), Err(BlockError::Malformed));
        let n = Request::Reap { min: 1, max: 2 }.encode(&mut buf).unwrap();
        buf[0] = 9;
        assert_eq!(Request::decode(&buf[..n]), Err(BlockError::UnknownOp));
        let n = Response::encode_error(BlockError::OutOfRange, &mut buf);
        assert_eq!(
            Response::decode(Op::Submit, &buf[..n]),
            Err(BlockError::OutOfRange)
        );
        // A bad entry refuses the whole message, with the entry's error.
        let n = Request::Submit(Ios::new(&[io, io]))
            .encode(&mut buf)
            .unwrap();
        buf[HEADER_BYTES + IO_BYTES + 2] = 4;
        assert_eq!(Request::decode(&buf[..n]), Err(BlockError::UnknownOp));
        assert_eq!(Request::decode(&buf[..n - 1]), Err(BlockError::Malformed));
        let done = [Completion {
            tag: 1,
            status: Ok(()),
        }];
        let n = Response::Completions(Completions::new(&done))
            .encode(&mut buf)
            .unwrap();
        buf[HEADER_BYTES + 4] = 1;
        assert_eq!(
            Response::decode(Op::Reap, &buf[..n]),
            Err(BlockError::Malformed)
        );
        assert_eq!(
            Response::Completions(Completions::new(&[])).encode(&mut buf),
            Err(BlockError::Malformed)
        );
    }
}

/// The test pattern the block tests write and the host checks in the disk
/// image afterwards: byte `i` of sector `lba` for test `seed`. One
/// definition for the guest (writer, reader) and the host (image check).
pub const fn pattern_byte(seed: u32, lba: u64, i: u32) -> u8 {
    let x = (lba.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((seed as u64) << 32) ^ i as u64)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 56) as u8
}

/// The regions the pattern test writes on a disk of `capacity` sectors:
/// `count` runs of `sectors` sectors spread evenly from the first sector to
/// the last, so the start, the middle and the end of the disk are all
/// touched. Each yields `(lba, sectors)`.
pub fn pattern_regions(
    capacity: u64,
    count: u64,
    sectors: u32,
) -> impl Iterator<Item = (u64, u32)> {
    let span = capacity.saturating_sub(u64::from(sectors));
    let count = if span == 0 { 1 } else { count.max(2) };
    (0..count).map(move |k| {
        let lba = if count == 1 {
            0
        } else {
            span * k / (count - 1)
        };
        (lba - lba % 8, sectors)
    })
}

#[cfg(test)]
mod error_tests {
    use super::*;

    /// The protocol as shipped: every error's code (its name is the
    /// variant's). A renumbering, a reordering, a variant missing from `ALL`
    /// or one added without an entry here fails.
    const GOLDEN: [(BlockError, u16); 14] = [
        (BlockError::Malformed, 1),
        (BlockError::UnknownOp, 2),
        (BlockError::OutOfRange, 3),
        (BlockError::Unaligned, 4),
        (BlockError::TooLarge, 5),
        (BlockError::QueueFull, 6),
        (BlockError::NotGranted, 7),
        (BlockError::DeviceError, 8),
        (BlockError::DmaFault, 9),
        (BlockError::Timeout, 10),
        (BlockError::Iommu, 11),
        (BlockError::NothingInFlight, 12),
        (BlockError::NotPermitted, 13),
        (BlockError::Busy, 14),
    ];

    #[test]
    fn codes_are_the_golden_ones() {
        assert_eq!(BlockError::ALL.len(), GOLDEN.len());
        for (e, (want, code)) in BlockError::ALL.iter().zip(GOLDEN) {
            assert_eq!((*e, e.code()), (want, code));
            assert_eq!(e.name(), format!("{e:?}"));
            assert_eq!(e.to_string(), format!("{e:?}"));
        }
    }

    #[test]
    fn codes_round_trip_and_are_unique() {
        for e in BlockError::ALL {
            assert_eq!(BlockError::from_code(e.code()), Some(e));
            assert_ne!(e.code(), 0, "0 is success");
        }
        let mut codes = BlockError::ALL.map(BlockError::code);
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "duplicate code");
    }

    #[test]
    fn all_lists_every_code_from_code_knows() {
        for e in (0..=u16::MAX).filter_map(BlockError::from_code) {
            assert!(BlockError::ALL.contains(&e), "{e:?} missing from ALL");
        }
        assert_eq!(BlockError::from_code(0), None);
        assert_eq!(BlockError::from_code(15), None);
    }
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    #[test]
    fn regions_cover_start_and_end_and_stay_inside() {
        let cap = 131_072;
        let r: Vec<_> = pattern_regions(cap, 16, 32).collect();
        assert_eq!(r.len(), 16);
        assert_eq!(r[0].0, 0);
        assert!(
            r.iter()
                .all(|&(lba, n)| lba + u64::from(n) <= cap && lba % 8 == 0)
        );
        assert!(r.last().unwrap().0 + 32 + 8 > cap);
        assert!(r.windows(2).all(|w| w[0].0 + 32 <= w[1].0));
    }

    #[test]
    fn pattern_depends_on_seed_sector_and_offset() {
        assert_ne!(pattern_byte(1, 0, 0), pattern_byte(2, 0, 0));
        let s: Vec<u8> = (0..512).map(|i| pattern_byte(7, 100, i)).collect();
        let t: Vec<u8> = (0..512).map(|i| pattern_byte(7, 101, i)).collect();
        assert_ne!(s, t);
        assert!(s.iter().any(|&b| b != s[0]));
    }
}
