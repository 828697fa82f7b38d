//! The IOMMU server's logic in-process: `iommu_core`'s `Server` over the
//! SMMU hardware layer (`iommu_hw`), called directly with the same
//! requests the server task decodes from IPC, for the clients this task
//! is (one per device, as each driver task is one client). It owns the
//! server state and turns the task's own DMA buffers into grants of
//! physical frames (this task is the SMMU owner, so the kernel tells it
//! their addresses). It must never answer an unmap before the
//! CMD_SYNC that covers it completed, and never wait without a deadline.
//!
//! One difference from the server task, in [`OwnedHw`]: no frame is pinned.
//! The kernel accounts every DMA page of the SMMU owner as IOMMU pool,
//! kept until the SMMU is stopped, and refuses to pin pool frames; the
//! buffers here are such pages, so they are already held as long as the
//! SMMU may reach them, and the real path's two FramePins calls per batch
//! (pin at map, unpin after the sync) are not part of the ceiling.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use abi::{Iova, PhysAddr, StreamId};
use iommu_api::{ApiError, Client, Dir, Extent, List, MSG_MAX, Op, Request, Response, Transport};
use iommu_client::{ClientError, DmaMapper};
use iommu_core::server::{Grant, Handled, HwError, Presented, ReplyBytes, Server, SmmuHw};
use iommu_hw::Smmu;
use userlib::{Counter, DmaBuffer, poll_until};

/// How long the covering sync of an unmap may take to be issued and
/// complete before the run fails.
const UNMAP_TIMEOUT_US: u64 = 1_000_000;

/// The SMMU hardware layer, with pinning left to the kernel's pool
/// accounting (see the module comment); everything else is [`Smmu`]'s.
pub struct OwnedHw(pub Smmu);

impl SmmuHw for OwnedHw {
    fn features(&self) -> &smmuv3::idr::Features {
        SmmuHw::features(&self.0)
    }
    fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr> {
        self.0.alloc_pages(count)
    }
    fn free_pages(&mut self, pa: PhysAddr, count: usize) {
        self.0.free_pages(pa, count);
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.0.read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.0.write_u64(pa, value);
    }
    fn publish(&mut self) {
        self.0.publish();
    }
    fn submit(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
        self.0.submit(cmds)
    }
    fn sync(&mut self) -> Result<(), HwError> {
        self.0.sync()
    }
    fn submit_and_sync(&mut self, cmds: &[[u64; 2]]) -> Result<u64, HwError> {
        self.0.submit_and_sync(cmds)
    }
    fn pin(&mut self, _frames: &[PhysAddr]) -> Result<(), HwError> {
        Ok(())
    }
    fn unpin(&mut self, _frames: &[PhysAddr]) {}
}

/// The server logic, owned by this task, shared by its in-process
/// clients (one per device, as each driver task is a client of its own).
pub struct InProcessServer {
    server: RefCell<Server<OwnedHw, u64>>,
    hz: u64,
    clock: Counter,
    token: Cell<u64>,
    /// Lists an unmap works in, kept from one to the next (emptied) so
    /// that the loop allocates no more than the server logic does: the
    /// held replies' tokens, and the replies a poll released.
    waiting: RefCell<Vec<u64>>,
    replies: RefCell<Vec<(u64, ReplyBytes)>>,
}

/// The physical frames of `buf`, one per page (a DMA buffer is one
/// physically contiguous run).
pub fn frames_of(buf: &DmaBuffer) -> Option<Vec<PhysAddr>> {
    let pa = buf.phys()?;
    Some(
        (0..buf.pages())
            .map(|i| PhysAddr::new(pa.get() + i * abi::PAGE_SIZE))
            .collect(),
    )
}

impl InProcessServer {
    /// `server`, with no client yet; `hz` is the counter's frequency.
    pub fn new(server: Server<OwnedHw, u64>, hz: u64) -> Self {
        Self {
            server: RefCell::new(server),
            hz,
            clock: Counter::new(hz),
            token: Cell::new(1),
            waiting: RefCell::new(Vec::new()),
            replies: RefCell::new(Vec::new()),
        }
    }

    /// Client `badge` (registered with the server logic), mapping for
    /// `device`.
    pub fn client(&self, badge: u32, device: Presented) -> InProcess<'_> {
        InProcess {
            ip: self,
            badge,
            device,
        }
    }

    fn now_us(&self) -> u64 {
        userlib::counter().saturating_mul(1_000_000) / self.hz
    }

    fn next_token(&self) -> u64 {
        let t = self.token.get();
        self.token.set(t.wrapping_add(1));
        t
    }

    /// The server logic, for its counters.
    pub fn server(&self) -> core::cell::Ref<'_, Server<OwnedHw, u64>> {
        self.server.borrow()
    }

    /// The server logic, to register a client.
    pub fn server_mut(&self) -> core::cell::RefMut<'_, Server<OwnedHw, u64>> {
        self.server.borrow_mut()
    }

    /// Reads the SMMU's event queue into the server logic (fault
    /// attribution); returns how many records there were.
    pub fn drain_events(&self) -> usize {
        let mut server = self.server.borrow_mut();
        let mut records = Vec::new();
        let n = server.hw_mut().0.drain_events(4096, |r| records.push(r));
        for r in records {
            let _ = server.on_event(r);
        }
        n
    }
}

/// One client of the in-process server logic: a device's mapper.
pub struct InProcess<'a> {
    ip: &'a InProcessServer,
    badge: u32,
    /// The PCI function presented at attach (its RID and StreamID).
    device: Presented,
}

impl InProcess<'_> {
    /// Handles one request answered at once (attach, map).
    fn call(
        &self,
        msg: &[u8],
        grant: Option<Grant<'_>>,
        presented: Option<Presented>,
        reply: &mut [u8; MSG_MAX],
    ) -> Result<usize, ClientError> {
        let token = self.ip.next_token();
        let handled = self.ip.server.borrow_mut().handle(
            self.ip.now_us(),
            self.badge,
            msg,
            grant,
            presented,
            token,
        );
        match handled {
            Handled::Reply(_, bytes) => {
                let out = reply
                    .get_mut(..bytes.len())
                    .ok_or(ClientError::Api(ApiError::Malformed))?;
                out.copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            // Only unmaps are held, and they go through `unmap`.
            Handled::Held => Err(ClientError::Api(ApiError::Malformed)),
        }
    }

    /// Maps `ranges` of `buf` (offsets into it) for the device in
    /// direction `dir`, one `Map` request per
    /// [`iommu_api::MAX_MAP_ENTRIES`]; writes one IOVA per range into
    /// `iovas`.
    pub fn map(
        &self,
        buf: &DmaBuffer,
        frames: &[PhysAddr],
        dir: Dir,
        ranges: &[Extent],
        iovas: &mut [Iova],
    ) -> Result<usize, ClientError> {
        let mut done = 0;
        for chunk in ranges.chunks(iommu_api::MAX_MAP_ENTRIES) {
            let grant = Grant {
                frames,
                va: buf.va(),
                len: buf.len(),
            };
            let mut reply = [0; MSG_MAX];
            let got = Client(Local {
                client: self,
                grant: Some(grant),
                presented: None,
            })
            .map(&mut reply, dir, List::new(chunk))?;
            done += got.copy_to(iovas.get_mut(done..).unwrap_or_default());
        }
        Ok(done)
    }

    /// Unmaps `ranges` (as mapped) and returns once the CMD_SYNC that
    /// covers all of them completed: every chunk's request is handled
    /// first, then one flush issues their invalidations and one sync.
    pub fn unmap(&self, ranges: &[Extent]) -> Result<(), ClientError> {
        let ip = self.ip;
        let mut waiting = ip.waiting.borrow_mut();
        let mut replies = ip.replies.borrow_mut();
        waiting.clear();
        let mut server = ip.server.borrow_mut();
        for chunk in ranges.chunks(iommu_api::MAX_UNMAP_ENTRIES) {
            let mut msg = [0u8; MSG_MAX];
            let n = Request::Unmap {
                ranges: List::new(chunk),
            }
            .encode(&mut msg)?;
            let token = ip.next_token();
            match server.handle(ip.now_us(), self.badge, &msg[..n], None, None, token) {
                Handled::Reply(_, bytes) => check_unmapped(&bytes)?,
                Handled::Held => waiting.push(token),
            }
        }
        let mut clock = ip.clock;
        let mut failed = None;
        let done = poll_until(&mut clock, UNMAP_TIMEOUT_US, || {
            server.poll_into(ip.now_us(), 0, &mut replies);
            for (token, bytes) in replies.drain(..) {
                if let Err(e) = check_unmapped(&bytes) {
                    failed = Some(e);
                }
                waiting.retain(|&t| t != token);
            }
            (waiting.is_empty() || failed.is_some()).then_some(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        done.map_err(|_| ClientError::Sys(abi::Error::TimedOut))
    }
}

fn check_unmapped(bytes: &[u8]) -> Result<(), ClientError> {
    match Response::decode(Op::Unmap, bytes)? {
        Response::Unmapped { .. } => Ok(()),
        _ => Err(ClientError::Api(ApiError::Malformed)),
    }
}

/// One in-process "call": the request goes straight to the server logic
/// with the grant or presented device an IPC call would carry.
struct Local<'a> {
    client: &'a InProcess<'a>,
    grant: Option<Grant<'a>>,
    presented: Option<Presented>,
}

impl Transport for Local<'_> {
    type Error = ClientError;
    fn call(&self, msg: &[u8], reply: &mut [u8; MSG_MAX]) -> Result<usize, ClientError> {
        self.client.call(msg, self.grant, self.presented, reply)
    }
}

impl DmaMapper for InProcess<'_> {
    fn attach_device(&self, _device_cap: u32, dma_bits: u8) -> Result<StreamId, ClientError> {
        Client(Local {
            client: self,
            grant: None,
            presented: Some(self.device),
        })
        .attach(&mut [0; MSG_MAX], dma_bits)
    }

    fn map_buffer(&self, mem: &DmaBuffer, dir: Dir) -> Result<Iova, ClientError> {
        let frames = frames_of(mem).ok_or(ClientError::Sys(abi::Error::Denied))?;
        let grant = Grant {
            frames: &frames,
            va: mem.va(),
            len: mem.len(),
        };
        let mut reply = [0; MSG_MAX];
        let whole = [Extent::new(0, mem.len())];
        let got = Client(Local {
            client: self,
            grant: Some(grant),
            presented: None,
        })
        .map(&mut reply, dir, List::new(&whole))?;
        let mut iova = [Iova::new(0)];
        got.copy_to(&mut iova);
        Ok(iova[0])
    }

    fn unmap_buffer(&self, iova: Iova, len: u64) -> Result<(), ClientError> {
        self.unmap(&[Extent::new(iova.get(), len)])
    }
}
