//! The IOMMU server's client side: what a driver task calls to attach its
//! device, map the DMA buffers it owns and unmap them, in batches. Encodes
//! requests and decodes responses with `iommu-api` (the one definition of
//! the protocol) and makes the IPC calls with `userlib`. Never touches the
//! SMMU and never learns a physical address.
#![no_std]
#![forbid(unsafe_code)]

use abi::{Iova, StreamId};
use iommu_api::{
    ApiError, Dir, Extent, FaultRecord, InvalidationPolicy, MSG_MAX, Request, Response, Stats,
};
use userlib::ipc::Grant;

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

    /// One round trip: encodes `req`, calls with `grant` and `present`,
    /// hands the decoded response to `f` (it borrows the reply buffer).
    fn call<T>(
        &self,
        req: &Request<'_>,
        grant: Option<Grant>,
        present: Option<u32>,
        f: impl FnOnce(Response<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut msg = [0u8; MSG_MAX];
        let len = req.encode(&mut msg)?;
        let mut reply = [0u8; MSG_MAX];
        let got = userlib::call(self.cap, &msg[..len], &mut reply, grant, present)?;
        f(Response::decode(req.op(), &reply[..got])?)
    }

    /// Attaches the PCI device that `device_cap` names (the capability is
    /// shown to the server, not given) to this task's domain. Returns its
    /// StreamID.
    pub fn attach(&self, device_cap: u32, dma_bits: u8) -> Result<StreamId, ClientError> {
        self.call(
            &Request::Attach { dma_bits },
            None,
            Some(device_cap),
            |r| match r {
                Response::Attached { sid } => Ok(sid),
                _ => Err(ApiError::Malformed.into()),
            },
        )
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
        let req = Request::Map {
            dir,
            ranges: iommu_api::List::new(ranges),
        };
        self.call(&req, Some(grant), None, |r| match r {
            Response::Mapped { iovas: got } => {
                let mut n = 0;
                for (slot, iova) in iovas.iter_mut().zip(got.iter()) {
                    *slot = iova;
                    n += 1;
                }
                Ok(n)
            }
            _ => Err(ApiError::Malformed.into()),
        })
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
        let req = Request::Unmap {
            ranges: iommu_api::List::new(ranges),
        };
        self.call(&req, None, None, |r| match r {
            Response::Unmapped { faults_pending } => Ok(faults_pending),
            _ => Err(ApiError::Malformed.into()),
        })
    }

    /// Returns once every invalidation pending for this client completed.
    pub fn flush(&self) -> Result<(), ClientError> {
        self.call(&Request::Flush, None, None, |r| match r {
            Response::Flushed => Ok(()),
            _ => Err(ApiError::Malformed.into()),
        })
    }

    /// This client's counters.
    pub fn stats(&self) -> Result<Stats, ClientError> {
        self.call(&Request::Stats, None, None, |r| match r {
            Response::Stats(s) => Ok(s),
            _ => Err(ApiError::Malformed.into()),
        })
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
        self.call(&Request::SetPolicy { policy }, None, None, |r| match r {
            Response::PolicySet => Ok(()),
            _ => Err(ApiError::Malformed.into()),
        })
    }

    /// Zeroes this client's counters (benchmark client only), after its
    /// pending unmaps completed, so that the next [`Iommu::stats`] covers
    /// only what came after.
    pub fn reset_stats(&self) -> Result<(), ClientError> {
        self.call(&Request::ResetStats, None, None, |r| match r {
            Response::StatsReset => Ok(()),
            _ => Err(ApiError::Malformed.into()),
        })
    }

    /// Drains this client's coalesced fault records into `out`; returns
    /// how many were written.
    pub fn faults(&self, out: &mut [FaultRecord]) -> Result<usize, ClientError> {
        self.call(&Request::Faults, None, None, |r| match r {
            Response::Faults { records } => {
                let mut n = 0;
                for (slot, rec) in out.iter_mut().zip(records.iter()) {
                    *slot = rec;
                    n += 1;
                }
                Ok(n)
            }
            _ => Err(ApiError::Malformed.into()),
        })
    }
}
