//! The block service's client side: what a task calls to read and write
//! sectors through any block driver, without knowing the device. Encodes
//! with `block-api` and calls with `userlib`. Buffers are the client's own
//! DMA memory, granted with each `submit` (the driver has the IOMMU server
//! map exactly that memory for the device while the I/O is in flight).
//! Never touches a device.
#![no_std]
#![forbid(unsafe_code)]

use block_api::{
    BenchMode, BlockError, BlockStats, Completion, Info, Io, Ios, MSG_MAX, Request, Response,
};
use userlib::DmaBuffer;

/// What a block call can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The kernel refused the call.
    Sys(abi::Error),
    /// The driver refused the request.
    Block(BlockError),
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Sys(e) => write!(f, "kernel: {e}"),
            ClientError::Block(e) => write!(f, "block: {e}"),
        }
    }
}

impl From<abi::Error> for ClientError {
    fn from(e: abi::Error) -> Self {
        ClientError::Sys(e)
    }
}
impl From<BlockError> for ClientError {
    fn from(e: BlockError) -> Self {
        ClientError::Block(e)
    }
}

/// A block device served through the endpoint capability `cap`.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    cap: u32,
}

impl Block {
    /// The block service behind the call capability `cap`.
    pub const fn new(cap: u32) -> Self {
        Self { cap }
    }

    fn call<T>(
        &self,
        req: &Request<'_>,
        grant: Option<userlib::ipc::Grant>,
        f: impl FnOnce(Response<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut msg = [0u8; MSG_MAX];
        let len = req.encode(&mut msg)?;
        let mut reply = [0u8; MSG_MAX];
        let got = userlib::call(self.cap, &msg[..len], &mut reply, grant, None)?;
        f(Response::decode(req.op(), &reply[..got])?)
    }

    /// Geometry and limits.
    pub fn info(&self) -> Result<Info, ClientError> {
        self.call(&Request::Info, None, |r| match r {
            Response::Info(i) => Ok(i),
            _ => Err(BlockError::Malformed.into()),
        })
    }

    /// Starts `ios` on `buf` (their `offset`s are into `buf`), all or
    /// nothing; returns once the driver has handed them to the device.
    pub fn submit(&self, buf: &DmaBuffer, ios: &[Io]) -> Result<(), ClientError> {
        self.call(
            &Request::Submit(Ios::Slice(ios)),
            Some(buf.grant()),
            |r| match r {
                Response::Accepted => Ok(()),
                _ => Err(BlockError::Malformed.into()),
            },
        )
    }

    /// Waits for at least `min` completions; writes up to `out.len()` into
    /// `out` and returns how many.
    pub fn reap(&self, min: u16, out: &mut [Completion]) -> Result<usize, ClientError> {
        let max = out.len().min(block_api::MAX_COMPLETIONS) as u16;
        self.call(&Request::Reap { min, max }, None, |r| match r {
            Response::Completions(c) => {
                let mut n = 0;
                for (slot, comp) in out.iter_mut().zip(c.iter()) {
                    *slot = comp;
                    n += 1;
                }
                Ok(n)
            }
            _ => Err(BlockError::Malformed.into()),
        })
    }

    /// The driver's counters since its last mode switch.
    pub fn stats(&self) -> Result<BlockStats, ClientError> {
        self.call(&Request::Stats, None, |r| match r {
            Response::Stats(s) => Ok(s),
            _ => Err(BlockError::Malformed.into()),
        })
    }

    /// Benchmark systems only: switches the driver's IOMMU mode (nothing of
    /// this client may be in flight) and resets its counters.
    pub fn set_mode(&self, mode: BenchMode) -> Result<(), ClientError> {
        self.call(&Request::SetMode(mode), None, |r| match r {
            Response::ModeSet => Ok(()),
            _ => Err(BlockError::Malformed.into()),
        })
    }

    /// One I/O, waited for: submit, then reap its completion.
    pub fn io(&self, buf: &DmaBuffer, io: Io) -> Result<(), ClientError> {
        self.submit(buf, &[io])?;
        let mut c = [Completion {
            tag: 0,
            status: Ok(()),
        }];
        self.reap(1, &mut c)?;
        c[0].status.map_err(ClientError::Block)
    }
}
