//! The stack's side of the network driver: smoltcp's [`Device`] over
//! `net-api`. Received frames come in batches (`Receive`, the driver
//! copying them into this task's receive buffer, which the call grants)
//! and wait in a queue until smoltcp takes them; frames smoltcp sends are
//! staged in this task's transmit buffer and handed over in batches
//! (`Send`, the driver copying them out of the grant) when the stack
//! flushes, the ones the driver had no room for staying staged.
//!
//! It owns the two buffers and the queues. It never reads a frame from
//! memory the driver or a device can still write while smoltcp looks at
//! it (each frame is copied out first), and never gives smoltcp more than
//! one frame's room.

use alloc::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use net_api::{FRAME_STRIDE, Frame, Frames, MAX_FRAME, MAX_FRAMES, NetError};
use userlib::DmaBuffer;
use userlib::ipc::Call;

/// What a driver call can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The kernel refused the call (the driver died, a bad capability).
    Sys(abi::Error),
    /// The driver refused the request.
    Net(NetError),
}

impl From<abi::Error> for LinkError {
    fn from(e: abi::Error) -> Self {
        LinkError::Sys(e)
    }
}

impl From<NetError> for LinkError {
    fn from(e: NetError) -> Self {
        LinkError::Net(e)
    }
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkError::Sys(e) => write!(f, "kernel: {e}"),
            LinkError::Net(e) => write!(f, "driver: {e}"),
        }
    }
}

/// Frames per batch in each direction.
const BATCH: usize = if MAX_FRAMES < 32 { MAX_FRAMES } else { 32 };

/// The network driver behind the call capability `cap`, with this task's
/// receive and transmit buffers.
pub struct Link {
    cap: u32,
    rx: DmaBuffer,
    tx: DmaBuffer,
    /// Received frames (offset, length in `rx`) smoltcp has not taken.
    rx_queue: VecDeque<Frame>,
    /// Frames staged in `tx` slots `0..tx_staged.len()`, in order.
    tx_staged: VecDeque<Frame>,
    /// Whether the last `Receive` came back full (more may be waiting).
    more: bool,
    mtu: usize,
    /// Frames received from the driver.
    pub rx_frames: u64,
    /// Frames handed to the driver.
    pub tx_frames: u64,
    /// Times the driver had no room for a staged frame.
    pub tx_deferred: u64,
}

impl Link {
    /// The driver behind `cap`: its interface description and a link with
    /// fresh buffers.
    pub fn open(cap: u32) -> Result<(Link, net_api::Info), LinkError> {
        let pages = ((BATCH * FRAME_STRIDE) as u64).div_ceil(4096);
        let rx = DmaBuffer::alloc(pages)?;
        let tx = DmaBuffer::alloc(pages)?;
        let info = net_api::Client(Call::<LinkError>::new(cap, None, None))
            .info(&mut [0u8; net_api::MSG_MAX])?;
        let mut rx_queue = VecDeque::new();
        let mut tx_staged = VecDeque::new();
        rx_queue
            .try_reserve_exact(BATCH)
            .map_err(|_| abi::Error::NoMemory)?;
        tx_staged
            .try_reserve_exact(BATCH)
            .map_err(|_| abi::Error::NoMemory)?;
        let link = Link {
            cap,
            rx,
            tx,
            rx_queue,
            tx_staged,
            more: true,
            mtu: usize::from(info.mtu) + 14,
            rx_frames: 0,
            tx_frames: 0,
            tx_deferred: 0,
        };
        Ok((link, info))
    }

    /// The driver said frames arrived.
    pub fn notified(&mut self) {
        self.more = true;
    }

    /// Fetches a batch of received frames if smoltcp has taken the last
    /// one and the driver may hold more. Returns whether frames came.
    pub fn fill(&mut self) -> Result<bool, LinkError> {
        if !self.rx_queue.is_empty() || !self.more {
            return Ok(false);
        }
        let client = net_api::Client(Call::<LinkError>::new(
            self.cap,
            Some(self.rx.grant()),
            None,
        ));
        let mut reply = [0u8; net_api::MSG_MAX];
        let frames = client.receive(&mut reply, BATCH as u16)?;
        self.more = frames.len() == BATCH;
        for f in frames.iter() {
            // The driver says where each frame is; believe it only inside
            // the buffer.
            let end = u64::from(f.offset) + u64::from(f.len);
            if usize::from(f.len) <= MAX_FRAME && end <= self.rx.len() {
                self.rx_queue.push_back(f);
            }
        }
        self.rx_frames += frames.len() as u64;
        Ok(!frames.is_empty())
    }

    /// Hands staged frames to the driver; those it has no room for stay
    /// staged (they go with the next flush).
    pub fn flush(&mut self) -> Result<(), LinkError> {
        if self.tx_staged.is_empty() {
            return Ok(());
        }
        let client = net_api::Client(Call::<LinkError>::new(
            self.cap,
            Some(self.tx.grant()),
            None,
        ));
        let accepted = usize::from(client.send(
            &mut [0u8; net_api::MSG_MAX],
            Frames::new(self.tx_staged.make_contiguous()),
        )?);
        let accepted = accepted.min(self.tx_staged.len());
        self.tx_frames += accepted as u64;
        if accepted < self.tx_staged.len() {
            self.tx_deferred += 1;
        }
        // The frames not taken move to the front slots, in order.
        self.tx_staged.drain(..accepted);
        for (slot, f) in self.tx_staged.iter_mut().enumerate() {
            let offset = (slot * FRAME_STRIDE) as u64;
            if u64::from(f.offset) != offset {
                let mut frame = [0u8; MAX_FRAME];
                let frame = &mut frame[..usize::from(f.len)];
                self.tx.copy_out(u64::from(f.offset), frame);
                self.tx.copy_in(offset, frame);
                f.offset = offset as u32;
            }
        }
        Ok(())
    }

    /// Whether a transmit slot is free.
    pub fn tx_room(&self) -> bool {
        self.tx_staged.len() < BATCH
    }
}

/// One received frame, copied out of the receive buffer.
pub struct RxToken {
    frame: [u8; MAX_FRAME],
    len: usize,
}

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.frame[..self.len])
    }
}

/// Room for one frame in the next free transmit slot.
pub struct TxToken<'a> {
    link: &'a mut Link,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = [0u8; MAX_FRAME];
        let len = len.min(frame.len());
        let r = f(&mut frame[..len]);
        let slot = self.link.tx_staged.len();
        if slot < BATCH {
            let offset = (slot * FRAME_STRIDE) as u64;
            self.link.tx.copy_in(offset, &frame[..len]);
            self.link.tx_staged.push_back(Frame {
                offset: offset as u32,
                len: len as u16,
            });
        }
        r
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if !self.tx_room() {
            return None;
        }
        let f = self.rx_queue.pop_front()?;
        let mut token = RxToken {
            frame: [0u8; MAX_FRAME],
            len: usize::from(f.len),
        };
        self.rx
            .copy_out(u64::from(f.offset), &mut token.frame[..token.len]);
        Some((token, TxToken { link: self }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        self.tx_room().then_some(TxToken { link: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(BATCH);
        caps
    }
}
