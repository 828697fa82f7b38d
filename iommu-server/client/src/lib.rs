//! The IOMMU server's client side: what a driver task calls to attach its
//! device, map the DMA buffers it owns and unmap them, in batches. Its
//! methods wrap the stubs `iommu-api` generates from the one declaration
//! of the protocol (encode, one call, decode) over `userlib::ipc::Call`
//! (the transport every protocol client shares), choosing the grant or
//! presented capability a request needs, and copies decoded lists out. Never touches the
//! SMMU and never learns a physical address.
#![no_std]
#![forbid(unsafe_code)]

use abi::{Iova, StreamId};
use iommu_api::{
    ApiError, Client, Dir, Extent, FaultRecord, InvalidationPolicy, List, MSG_MAX, Stats,
};
use userlib::ipc::{Call, Grant};

/// What a call to the server can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The kernel refused the call (bad capability, memory not owned, ...).
    Sys(abi::Error),
    /// The server refused the request.
    Api(ApiError),
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Sys(e) => write!(f, "kernel: {e}"),
            ClientError::Api(e) => write!(f, "iommu: {}", e.name()),
        }
    }
}

impl ClientError {
    /// Whether the server this client knew is gone: it died under the
    /// call (`PeerDead`), or a restarted instance does not know this
    /// client's attachment (`NotAttached`). The client then attaches
    /// again, turns bus mastering on again and maps again: a restarted
    /// server starts from nothing, and the kernel turned bus mastering off
    /// when the old one died.
    pub fn server_lost(&self) -> bool {
        matches!(
            self,
            ClientError::Sys(abi::Error::PeerDead) | ClientError::Api(ApiError::NotAttached)
        )
    }
}

impl From<abi::Error> for ClientError {
    fn from(e: abi::Error) -> Self {
        ClientError::Sys(e)
    }
}
impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(e)
    }
}

/// What a driver needs to give its own DMA memory (queues, descriptor
/// pages) a device address: [`Iommu`], the IOMMU server over IPC, for
/// every driver task; an in-process implementation only in a task that is
/// itself the SMMU owner (the ceiling benchmark, benches/ceiling).
pub trait DmaMapper {
    /// Attaches the PCI device `device_cap` names to this task's domain.
    fn attach_device(&self, device_cap: u32, dma_bits: u8) -> Result<StreamId, ClientError>;
    /// Maps the whole of `mem` for the device; returns its IOVA.
    fn map_buffer(&self, mem: &userlib::DmaBuffer, dir: Dir) -> Result<Iova, ClientError>;
    /// Unmaps `len` bytes at `iova`, exactly as [`DmaMapper::map_buffer`]
    /// mapped them (a driver giving up on a device it could not open);
    /// returns once the unmap is complete for the client's policy.
    fn unmap_buffer(&self, iova: Iova, len: u64) -> Result<(), ClientError>;
}

impl DmaMapper for Iommu {
    fn attach_device(&self, device_cap: u32, dma_bits: u8) -> Result<StreamId, ClientError> {
        self.attach(device_cap, dma_bits)
    }
    fn map_buffer(&self, mem: &userlib::DmaBuffer, dir: Dir) -> Result<Iova, ClientError> {
        self.map_one(mem.grant(), dir, 0, mem.len())
    }
    fn unmap_buffer(&self, iova: Iova, len: u64) -> Result<(), ClientError> {
        self.unmap(&[Extent::new(iova.get(), len)]).map(|_| ())
    }
}

/// A connection to the IOMMU server through an endpoint capability.
#[derive(Clone, Copy, Debug)]
pub struct Iommu {
    cap: u32,
}

impl Iommu {
    /// The server reached through the call capability `cap`.
    pub const fn new(cap: u32) -> Self {
        Self { cap }
    }

    /// The generated stubs, calling with `grant` and `present`.
    fn with(&self, grant: Option<Grant>, present: Option<u32>) -> Client<Call<ClientError>> {
        Client(Call::new(self.cap, grant, present))
    }

    /// Attaches the PCI device that `device_cap` names (the capability is
    /// shown to the server, not given) to this task's domain. Returns its
    /// StreamID.
    pub fn attach(&self, device_cap: u32, dma_bits: u8) -> Result<StreamId, ClientError> {
        self.with(None, Some(device_cap))
            .attach(&mut [0; MSG_MAX], dma_bits)
    }

    /// Maps byte ranges (`{offset, len}` from the grant's first byte) of
    /// memory this task owns, all or nothing. Writes one IOVA per range
    /// into `iovas`; returns how many.
    pub fn map(
        &self,
        grant: Grant,
        dir: Dir,
        ranges: &[Extent],
        iovas: &mut [Iova],
    ) -> Result<usize, ClientError> {
        let mut reply = [0; MSG_MAX];
        let got = self
            .with(Some(grant), None)
            .map(&mut reply, dir, List::new(ranges))?;
        Ok(got.copy_to(iovas))
    }

    /// Maps one range and returns its IOVA.
    pub fn map_one(
        &self,
        grant: Grant,
        dir: Dir,
        offset: u64,
        len: u64,
    ) -> Result<Iova, ClientError> {
        let mut iova = [Iova::new(0)];
        self.map(grant, dir, &[Extent::new(offset, len)], &mut iova)?;
        Ok(iova[0])
    }

    /// Unmaps `{iova, len}` ranges exactly as they were mapped, all or
    /// nothing. For a strict client the call returns only once no IOTLB can
    /// hold a translation for any of them. Returns the number of fault
    /// records waiting for [`Iommu::faults`] (0 when no DMA of this client
    /// faulted since it last asked).
    pub fn unmap(&self, ranges: &[Extent]) -> Result<u32, ClientError> {
        self.with(None, None)
            .unmap(&mut [0; MSG_MAX], List::new(ranges))
    }

    /// Returns once every invalidation pending for this client completed.
    pub fn flush(&self) -> Result<(), ClientError> {
        self.with(None, None).flush(&mut [0; MSG_MAX])
    }

    /// This client's counters.
    pub fn stats(&self) -> Result<Stats, ClientError> {
        self.with(None, None).stats(&mut [0; MSG_MAX])
    }

    /// A monitor only (trust `monitor`): the badge and counters of the
    /// server's client at `index` (0-based, badge order); past the last
    /// one, `NoSuchClient`.
    pub fn client_stats(&self, index: u32) -> Result<(u32, Stats), ClientError> {
        self.with(None, None).client_stats(&mut [0; MSG_MAX], index)
    }

    /// A monitor only (trust `monitor`): the server's totals and the
    /// summaries of its clients from index `first` (0-based, badge order),
    /// copied into `out` (at most
    /// [`MAX_OVERVIEW_CLIENTS`](iommu_api::MAX_OVERVIEW_CLIENTS) per call);
    /// returns the totals and how many were copied. Ask again from
    /// `first + n` while that is below `totals.clients`.
    pub fn overview(
        &self,
        first: u32,
        out: &mut [iommu_api::ClientSummary],
    ) -> Result<(iommu_api::ServerTotals, usize), ClientError> {
        let mut reply = [0; MSG_MAX];
        let (totals, page) = self.with(None, None).overview(&mut reply, first)?;
        Ok((totals, page.copy_to(out)))
    }

    /// Switches this client's invalidation policy (the benchmark client
    /// only: trust `bench` in the system description; others get
    /// `NotPermitted`). Every mapping must be unmapped first (`Busy`
    /// otherwise); the server completes this client's pending unmaps
    /// before switching. In [`InvalidationPolicy::Bypass`], `map` returns
    /// bus addresses and the device is untranslated; attach again after a
    /// switch if the driver re-opens its device (a no-op for a device
    /// already attached).
    pub fn set_policy(&self, policy: InvalidationPolicy) -> Result<(), ClientError> {
        self.with(None, None).set_policy(&mut [0; MSG_MAX], policy)
    }

    /// Zeroes this client's counters (benchmark client only), after its
    /// pending unmaps completed, so that the next [`Iommu::stats`] covers
    /// only what came after.
    pub fn reset_stats(&self) -> Result<(), ClientError> {
        self.with(None, None).reset_stats(&mut [0; MSG_MAX])
    }

    /// Drains this client's coalesced fault records into `out`; returns
    /// how many were written.
    pub fn faults(&self, out: &mut [FaultRecord]) -> Result<usize, ClientError> {
        let mut reply = [0; MSG_MAX];
        let got = self.with(None, None).faults(&mut reply)?;
        Ok(got.copy_to(out))
    }
}
