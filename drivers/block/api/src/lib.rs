//! The block service: the one protocol every block driver task (NVMe,
//! virtio-blk) serves and every client (the benchmark, tests, demos)
//! speaks, so that clients read and write sectors without knowing the
//! device. It is asynchronous so that one client can keep many I/Os in
//! flight over synchronous IPC: `Submit` hands the driver a batch of I/Os
//! on a buffer the client grants (the driver has the IOMMU server map that
//! very memory for the device: zero copy) and returns at once; `Reap`
//! waits for completions. Encoding only: no I/O, no allocation, never
//! panics on any input.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use abi::syscall::MSG_MAX;

/// Bytes in a sector, the unit of `lba` and `sectors`.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes in a message header.
pub const HEADER_BYTES: usize = 8;
/// Bytes in one I/O descriptor.
pub const IO_BYTES: usize = 24;
/// Bytes in one completion.
pub const COMPLETION_BYTES: usize = 8;
/// Most I/Os one `Submit` carries.
pub const MAX_IOS: usize = (MSG_MAX - HEADER_BYTES) / IO_BYTES;
/// Most completions one `Reap` answer carries.
pub const MAX_COMPLETIONS: usize = (MSG_MAX - HEADER_BYTES) / COMPLETION_BYTES;
/// Bytes of the `Info` answer body.
const INFO_BYTES: usize = 24;

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
    }
}

/// Operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Op {
    /// Device geometry and limits.
    Info = 1,
    /// Start a batch of I/Os; answered once they are submitted.
    Submit = 2,
    /// Wait for completions.
    Reap = 3,
    /// The driver's counters since the last `SetMode`.
    Stats = 4,
    /// Benchmark only: switch the driver's IOMMU policy (the driver
    /// quiesces its device, the IOMMU server changes the policy, the device
    /// comes back up) and reset the counters.
    SetMode = 5,
}

impl Op {
    fn from_code(v: u16) -> Option<Op> {
        match v {
            1 => Some(Op::Info),
            2 => Some(Op::Submit),
            3 => Some(Op::Reap),
            4 => Some(Op::Stats),
            5 => Some(Op::SetMode),
            _ => None,
        }
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

    const fn code(self) -> u32 {
        match self {
            BenchMode::Bypass => 1,
            BenchMode::StrictPerUnmap => 2,
            BenchMode::Strict => 3,
            BenchMode::Deferred { .. } => 4,
        }
    }
}

/// A driver's counters (answer to `Stats`): its own work and the IOMMU
/// server's work for it, since the last `SetMode`. 13 little-endian `u64`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// I/Os completed.
    pub ios: u64,
    /// `Submit` requests handled.
    pub submits: u64,
    /// `Reap` requests answered.
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
}

impl BlockStats {
    const FIELDS: usize = 13;

    fn to_array(self) -> [u64; Self::FIELDS] {
        [
            self.ios,
            self.submits,
            self.reaps,
            self.iommu_map_calls,
            self.iommu_unmap_calls,
            self.iommu_fault_calls,
            self.dma_faults,
            self.unmapped_ranges,
            self.tlbi_commands,
            self.cmd_syncs,
            self.doorbells,
            self.server_ticks,
            self.max_stale_window_us,
        ]
    }

    fn from_array(a: [u64; Self::FIELDS]) -> Self {
        let [
            ios,
            submits,
            reaps,
            iommu_map_calls,
            iommu_unmap_calls,
            iommu_fault_calls,
            dma_faults,
            unmapped_ranges,
            tlbi_commands,
            cmd_syncs,
            doorbells,
            server_ticks,
            max_stale_window_us,
        ] = a;
        Self {
            ios,
            submits,
            reaps,
            iommu_map_calls,
            iommu_unmap_calls,
            iommu_fault_calls,
            dma_faults,
            unmapped_ranges,
            tlbi_commands,
            cmd_syncs,
            doorbells,
            server_ticks,
            max_stale_window_us,
        }
    }
}

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

impl Record for Io {
    const BYTES: usize = IO_BYTES;

    fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&self.tag.to_le_bytes());
        b[2] = self.kind as u8;
        b[3] = self.flags;
        b[4..8].copy_from_slice(&self.sectors.to_le_bytes());
        b[8..16].copy_from_slice(&self.lba.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
    }

    fn read(b: &[u8]) -> Result<Io, BlockError> {
        let kind = match b[2] {
            1 => IoKind::Read,
            2 => IoKind::Write,
            3 => IoKind::Flush,
            _ => return Err(BlockError::UnknownOp),
        };
        Ok(Io {
            tag: u16_at(b, 0),
            kind,
            flags: b[3],
            sectors: u32_at(b, 4),
            lba: u64_at(b, 8),
            offset: u64_at(b, 16),
        })
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

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn header(buf: &mut [u8], a: u16, count: usize, arg: u32) {
    buf[0..2].copy_from_slice(&a.to_le_bytes());
    buf[2..4].copy_from_slice(&(count as u16).to_le_bytes());
    buf[4..8].copy_from_slice(&arg.to_le_bytes());
}

/// A request, client to driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Geometry and limits.
    Info,
    /// Start these I/Os (1..=[`MAX_IOS`]), all or nothing: each is checked
    /// (range, alignment, size, grant, tag) before any is started.
    Submit(Ios<'a>),
    /// Wait until at least `min` of the client's I/Os completed, and return
    /// up to `max` completions (oldest first).
    Reap {
        /// At least this many (1..=in flight).
        min: u16,
        /// At most this many (1..=[`MAX_COMPLETIONS`]).
        max: u16,
    },
    /// The driver's counters.
    Stats,
    /// Switch the driver's IOMMU mode (benchmark systems only).
    SetMode(BenchMode),
}

/// A fixed-size entry of a message body: an [`Io`] of a `Submit`, a
/// [`Completion`] of a `Reap` answer.
pub trait Record: Copy {
    /// Bytes on the wire.
    const BYTES: usize;
    /// Encodes into `b`, exactly [`Self::BYTES`] long.
    fn write(&self, b: &mut [u8]);
    /// Decodes `b`, exactly [`Self::BYTES`] long; never panics.
    fn read(b: &[u8]) -> Result<Self, BlockError>;
}

/// Entries of a message body: a slice to encode, or validated wire bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records<'a, T> {
    /// For encoding.
    Slice(&'a [T]),
    /// Decoded from a message (every entry was checked).
    Wire(&'a [u8]),
}

/// I/O descriptors of a `Submit`.
pub type Ios<'a> = Records<'a, Io>;
/// Completions of a `Reap` answer.
pub type Completions<'a> = Records<'a, Completion>;

impl<'a, T: Record> Records<'a, T> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Records::Slice(s) => s.len(),
            Records::Wire(b) => b.len() / T::BYTES,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let this = *self;
        (0..this.len()).filter_map(move |i| match this {
            Records::Slice(s) => s.get(i).copied(),
            Records::Wire(b) => T::read(&b[i * T::BYTES..(i + 1) * T::BYTES]).ok(),
        })
    }

    /// Writes a header with the entry count, then the entries (1..=`max`);
    /// returns the message length.
    fn encode(
        &self,
        buf: &mut [u8; MSG_MAX],
        status: u16,
        max: usize,
    ) -> Result<usize, BlockError> {
        let n = self.len();
        if n == 0 || n > max {
            return Err(BlockError::Malformed);
        }
        header(buf, status, n, 0);
        let body = &mut buf[HEADER_BYTES..HEADER_BYTES + n * T::BYTES];
        for (e, b) in self.iter().zip(body.chunks_exact_mut(T::BYTES)) {
            e.write(b);
        }
        Ok(HEADER_BYTES + n * T::BYTES)
    }

    /// Checks a body announced to hold `count` entries (1..=`max`), every
    /// one of them; `None` if the count or the length is wrong.
    fn decode(count: usize, max: usize, body: &'a [u8]) -> Option<Result<Self, BlockError>> {
        if !(1..=max).contains(&count) || body.len() != count * T::BYTES {
            return None;
        }
        for chunk in body.chunks_exact(T::BYTES) {
            if let Err(e) = T::read(chunk) {
                return Some(Err(e));
            }
        }
        Some(Ok(Records::Wire(body)))
    }
}

impl<'a> Request<'a> {
    /// The request's op.
    pub fn op(&self) -> Op {
        match self {
            Request::Info => Op::Info,
            Request::Submit(_) => Op::Submit,
            Request::Reap { .. } => Op::Reap,
            Request::Stats => Op::Stats,
            Request::SetMode(_) => Op::SetMode,
        }
    }

    /// Encodes into `buf`; returns the length.
    pub fn encode(&self, buf: &mut [u8; MSG_MAX]) -> Result<usize, BlockError> {
        match self {
            Request::Info => {
                header(buf, Op::Info as u16, 0, 0);
                Ok(HEADER_BYTES)
            }
            Request::Submit(ios) => ios.encode(buf, Op::Submit as u16, MAX_IOS),
            Request::Reap { min, max } => {
                if *min == 0 || *max == 0 || *min > *max || usize::from(*max) > MAX_COMPLETIONS {
                    return Err(BlockError::Malformed);
                }
                header(
                    buf,
                    Op::Reap as u16,
                    0,
                    u32::from(*min) | (u32::from(*max) << 16),
                );
                Ok(HEADER_BYTES)
            }
            Request::Stats => {
                header(buf, Op::Stats as u16, 0, 0);
                Ok(HEADER_BYTES)
            }
            Request::SetMode(m) => {
                header(buf, Op::SetMode as u16, 1, m.code());
                let (n, t) = match m {
                    BenchMode::Deferred {
                        max_entries,
                        max_age_us,
                    } => (*max_entries, *max_age_us),
                    _ => (0, 0),
                };
                buf[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&n.to_le_bytes());
                buf[HEADER_BYTES + 4..HEADER_BYTES + 8].copy_from_slice(&t.to_le_bytes());
                Ok(HEADER_BYTES + 8)
            }
        }
    }

    /// Decodes a request; never panics.
    pub fn decode(msg: &'a [u8]) -> Result<Request<'a>, BlockError> {
        if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX {
            return Err(BlockError::Malformed);
        }
        let op = Op::from_code(u16_at(msg, 0)).ok_or(BlockError::UnknownOp)?;
        let count = usize::from(u16_at(msg, 2));
        let arg = u32_at(msg, 4);
        let body = &msg[HEADER_BYTES..];
        match op {
            Op::Info if count == 0 && arg == 0 && body.is_empty() => Ok(Request::Info),
            Op::Submit if arg == 0 => match Ios::decode(count, MAX_IOS, body) {
                Some(ios) => ios.map(Request::Submit),
                None => Err(BlockError::Malformed),
            },
            Op::Reap if count == 0 && body.is_empty() => {
                let (min, max) = (arg as u16, (arg >> 16) as u16);
                if min == 0 || min > max || usize::from(max) > MAX_COMPLETIONS {
                    return Err(BlockError::Malformed);
                }
                Ok(Request::Reap { min, max })
            }
            Op::Stats if count == 0 && arg == 0 && body.is_empty() => Ok(Request::Stats),
            Op::SetMode if count == 1 && body.len() == 8 => {
                let (n, t) = (u32_at(body, 0), u32_at(body, 4));
                let mode = match (arg, n, t) {
                    (1, 0, 0) => BenchMode::Bypass,
                    (2, 0, 0) => BenchMode::StrictPerUnmap,
                    (3, 0, 0) => BenchMode::Strict,
                    (4, n, t) if n > 0 && t > 0 => BenchMode::Deferred {
                        max_entries: n,
                        max_age_us: t,
                    },
                    _ => return Err(BlockError::Malformed),
                };
                Ok(Request::SetMode(mode))
            }
            _ => Err(BlockError::Malformed),
        }
    }
}

/// A successful answer, driver to client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// To `Info`.
    Info(Info),
    /// To `Submit`: every I/O was started.
    Accepted,
    /// To `Reap`.
    Completions(Completions<'a>),
    /// To `Stats`.
    Stats(BlockStats),
    /// To `SetMode`: the device is back up in the new mode.
    ModeSet,
}

impl Record for Completion {
    const BYTES: usize = COMPLETION_BYTES;

    fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&self.tag.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.err().map_or(0, BlockError::code).to_le_bytes());
        b[4..8].fill(0);
    }

    fn read(b: &[u8]) -> Result<Completion, BlockError> {
        if u32_at(b, 4) != 0 {
            return Err(BlockError::Malformed);
        }
        let status = match u16_at(b, 2) {
            0 => Ok(()),
            c => Err(BlockError::from_code(c).ok_or(BlockError::Malformed)?),
        };
        Ok(Completion {
            tag: u16_at(b, 0),
            status,
        })
    }
}

impl<'a> Response<'a> {
    /// Encodes a success into `buf`; returns the length.
    pub fn encode(&self, buf: &mut [u8; MSG_MAX]) -> Result<usize, BlockError> {
        match self {
            Response::Info(i) => {
                header(buf, 0, 1, 0);
                let b = &mut buf[HEADER_BYTES..HEADER_BYTES + INFO_BYTES];
                b[0..8].copy_from_slice(&i.sectors.to_le_bytes());
                b[8..12].copy_from_slice(&i.sector_size.to_le_bytes());
                b[12..16].copy_from_slice(&i.max_transfer.to_le_bytes());
                b[16..18].copy_from_slice(&i.queue_depth.to_le_bytes());
                b[18..20].copy_from_slice(&i.device_kind.to_le_bytes());
                b[20..24].fill(0);
                Ok(HEADER_BYTES + INFO_BYTES)
            }
            Response::Accepted | Response::ModeSet => {
                header(buf, 0, 0, 0);
                Ok(HEADER_BYTES)
            }
            Response::Stats(s) => {
                header(buf, 0, BlockStats::FIELDS, 0);
                for (i, v) in s.to_array().iter().enumerate() {
                    buf[HEADER_BYTES + 8 * i..HEADER_BYTES + 8 * (i + 1)]
                        .copy_from_slice(&v.to_le_bytes());
                }
                Ok(HEADER_BYTES + 8 * BlockStats::FIELDS)
            }
            Response::Completions(c) => c.encode(buf, 0, MAX_COMPLETIONS),
        }
    }

    /// Encodes a refusal of the whole request.
    pub fn encode_error(e: BlockError, buf: &mut [u8; MSG_MAX]) -> usize {
        header(buf, e.code(), 0, 0);
        HEADER_BYTES
    }

    /// Decodes the answer to a request of kind `op`; a refusal decodes to
    /// `Err(that error)`. Never panics.
    pub fn decode(op: Op, msg: &'a [u8]) -> Result<Response<'a>, BlockError> {
        if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX || u32_at(msg, 4) != 0 {
            return Err(BlockError::Malformed);
        }
        let status = u16_at(msg, 0);
        let count = usize::from(u16_at(msg, 2));
        let body = &msg[HEADER_BYTES..];
        if status != 0 {
            let e = BlockError::from_code(status).ok_or(BlockError::Malformed)?;
            return if count == 0 && body.is_empty() {
                Err(e)
            } else {
                Err(BlockError::Malformed)
            };
        }
        match op {
            Op::Info if count == 1 && body.len() == INFO_BYTES && u32_at(body, 20) == 0 => {
                Ok(Response::Info(Info {
                    sectors: u64_at(body, 0),
                    sector_size: u32_at(body, 8),
                    max_transfer: u32_at(body, 12),
                    queue_depth: u16_at(body, 16),
                    device_kind: u16_at(body, 18),
                }))
            }
            Op::Submit if count == 0 && body.is_empty() => Ok(Response::Accepted),
            Op::SetMode if count == 0 && body.is_empty() => Ok(Response::ModeSet),
            Op::Stats if count == BlockStats::FIELDS && body.len() == 8 * BlockStats::FIELDS => {
                let mut a = [0u64; BlockStats::FIELDS];
                for (i, v) in a.iter_mut().enumerate() {
                    *v = u64_at(body, 8 * i);
                }
                Ok(Response::Stats(BlockStats::from_array(a)))
            }
            Op::Reap => match Completions::decode(count, MAX_COMPLETIONS, body) {
                Some(c) => c.map(Response::Completions),
                None => Err(BlockError::Malformed),
            },
            _ => Err(BlockError::Malformed),
        }
    }
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
            let n = Request::Submit(Ios::Slice(&ios)).encode(&mut buf).unwrap();
            let Request::Submit(got) = Request::decode(&buf[..n]).unwrap() else { panic!("not a submit") };
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), ios);
        }

        #[test]
        fn completions_round_trip(c in proptest::collection::vec((any::<u16>(), 0u16..=13), 1..=MAX_COMPLETIONS)) {
            let comps: Vec<Completion> = c.iter().map(|&(tag, code)| Completion {
                tag,
                status: match code { 0 => Ok(()), c => Err(BlockError::from_code(c).unwrap()) },
            }).collect();
            let mut buf = [0u8; MSG_MAX];
            let n = Response::Completions(Completions::Slice(&comps)).encode(&mut buf).unwrap();
            let Response::Completions(got) = Response::decode(Op::Reap, &buf[..n]).unwrap() else { panic!("not completions") };
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), comps);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&bytes);
            for op in [Op::Info, Op::Submit, Op::Reap] {
                if let Ok(Response::Completions(c)) = Response::decode(op, &bytes) {
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
            Request::Submit(Ios::Slice(&[])).encode(&mut buf),
            Err(BlockError::Malformed)
        );
        assert_eq!(
            Request::Reap { min: 3, max: 2 }.encode(&mut buf),
            Err(BlockError::Malformed)
        );
        let n = Request::Reap { min: 1, max: 2 }.encode(&mut buf).unwrap();
        buf[0] = 9;
        assert_eq!(Request::decode(&buf[..n]), Err(BlockError::UnknownOp));
        let n = Response::encode_error(BlockError::OutOfRange, &mut buf);
        assert_eq!(
            Response::decode(Op::Submit, &buf[..n]),
            Err(BlockError::OutOfRange)
        );
        // A bad entry refuses the whole message, with the entry's error.
        let io = Io {
            tag: 1,
            kind: IoKind::Read,
            flags: 0,
            sectors: 8,
            lba: 0,
            offset: 0,
        };
        let n = Request::Submit(Ios::Slice(&[io, io]))
            .encode(&mut buf)
            .unwrap();
        buf[HEADER_BYTES + IO_BYTES + 2] = 4;
        assert_eq!(Request::decode(&buf[..n]), Err(BlockError::UnknownOp));
        assert_eq!(Request::decode(&buf[..n - 1]), Err(BlockError::Malformed));
        let done = [Completion {
            tag: 1,
            status: Ok(()),
        }];
        let n = Response::Completions(Completions::Slice(&done))
            .encode(&mut buf)
            .unwrap();
        buf[HEADER_BYTES + 4] = 1;
        assert_eq!(
            Response::decode(Op::Reap, &buf[..n]),
            Err(BlockError::Malformed)
        );
        assert_eq!(
            Response::Completions(Completions::Slice(&[])).encode(&mut buf),
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
    const GOLDEN: [(BlockError, u16); 13] = [
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
        assert_eq!(BlockError::from_code(14), None);
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
