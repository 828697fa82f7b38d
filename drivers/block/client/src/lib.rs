//! The block service's client side: what a task calls to read and write
//! sectors through any block driver, without knowing the device. Its
//! methods wrap the stubs `block-api` generates from the one declaration
//! of the protocol (encode, one call, decode) over `userlib::ipc::Call`
//! (the transport every protocol client shares), choosing the grant a
//! request needs, and copy decoded completions out. Buffers are the client's own
//! DMA memory, granted with each `submit` (the driver has the IOMMU server
//! map exactly that memory for the device while the I/O is in flight).
//! Never touches a device.
#![no_std]
#![forbid(unsafe_code)]

use block_api::{BenchMode, BlockError, BlockStats, Client, Completion, Info, Io, Ios, MSG_MAX};
use userlib::DmaBuffer;
use userlib::ipc::{Call, Grant};

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

    /// The generated stubs, calling with `grant`.
    fn with(&self, grant: Option<Grant>) -> Client<Call<ClientError>> {
        Client(Call::new(self.cap, grant, None))
    }

    /// Geometry and limits.
    pub fn info(&self) -> Result<Info, ClientError> {
        self.with(None).info(&mut [0; MSG_MAX])
    }

    /// Starts `ios` on `buf` (their `offset`s are into `buf`), all or
    /// nothing; returns once the driver has handed them to the device.
    pub fn submit(&self, buf: &DmaBuffer, ios: &[Io]) -> Result<(), ClientError> {
        self.with(Some(buf.grant()))
            .submit(&mut [0; MSG_MAX], Ios::new(ios))
    }

    /// Waits for at least `min` completions; writes up to `out.len()` into
    /// `out` and returns how many.
    pub fn reap(&self, min: u16, out: &mut [Completion]) -> Result<usize, ClientError> {
        let max = out.len().min(block_api::MAX_COMPLETIONS) as u16;
        let mut reply = [0; MSG_MAX];
        let got = self.with(None).reap(&mut reply, min, max)?;
        Ok(got.copy_to(out))
    }

    /// Starts `ios` on `buf` as [`submit`](Self::submit) does, then waits
    /// as [`reap`](Self::reap) does (the I/Os just started count), in one
    /// call: writes up to `out.len()` completions into `out` and returns
    /// how many. A refusal started nothing.
    pub fn submit_wait(
        &self,
        buf: &DmaBuffer,
        ios: &[Io],
        min: u16,
        out: &mut [Completion],
    ) -> Result<usize, ClientError> {
        let max = out.len().min(block_api::MAX_COMPLETIONS) as u16;
        let mut reply = [0; MSG_MAX];
        let got = self
            .with(Some(buf.grant()))
            .submit_wait(&mut reply, min, max, Ios::new(ios))?;
        Ok(got.copy_to(out))
    }

    /// The driver's counters since its last mode switch or reset.
    pub fn stats(&self) -> Result<BlockStats, ClientError> {
        self.with(None).stats(&mut [0; MSG_MAX])
    }

    /// Benchmark systems only: switches the driver's IOMMU mode (nothing of
    /// this client may be in flight) and resets its counters.
    pub fn set_mode(&self, mode: BenchMode) -> Result<(), ClientError> {
        self.with(None).set_mode(&mut [0; MSG_MAX], mode)
    }

    /// Benchmark systems only: starts the counters afresh (nothing of this
    /// client may be in flight), without a mode switch.
    pub fn reset_stats(&self) -> Result<(), ClientError> {
        self.with(None).reset_stats(&mut [0; MSG_MAX])
    }

    /// One I/O, waited for in one call (with nothing else of this
    /// client's in flight, the completion is its own).
    pub fn io(&self, buf: &DmaBuffer, io: Io) -> Result<(), ClientError> {
        let mut c = [Completion {
            tag: 0,
            status: Ok(()),
        }];
        self.submit_wait(buf, &[io], 1, &mut c)?;
        c[0].status.map_err(ClientError::Block)
    }
}
