//! The serve loop: the data client's `net-api` requests (and other
//! callers' `Info`, `Stats`, `SetMode`), the device's
//! interrupts, and the transmit slots' strict unmaps. Frames move between
//! the client's grant and the driver's slots with `GrantCopy`; the client's
//! memory is never mapped for the device, so its death notice is answered
//! at once.
//!
//! It owns the client-facing state (the edge-triggered `RX_READY`
//! notification, the refusal counter). It never panics on a message: a
//! malformed or refused request is answered with a `NetError`, counted,
//! and changes nothing; a `Send` is checked whole before any frame is
//! staged. Waiting is bounded while frames are on the device.

use abi::syscall::FOREVER;
use iommu_api::policy::InvalidationPolicy;
use iommu_client::Iommu;
use net_api::{
    FRAME_STRIDE, Frame, Frames, Handler, Info, MAX_FRAME, MAX_FRAMES, MSG_MAX, NetError, NetMode,
    NetStats, RX_READY, Request, Response,
};
use userlib::{RecvKind, log};
use virtio_net_core::rings::{SLOT_BYTES, TxError};

use crate::device::{Nic, RX_SLOTS, TX_SLOTS};

/// While frames are on the device, look for their return at least this
/// often even if an interrupt is lost.
const TX_POLL_US: u64 = 2_000;
/// ... but only this long after the last transmit progress (a post or a
/// slot freed): a device that keeps its slots (quarantined, broken) has
/// them stay reserved, and the loop waits for interrupts and requests
/// only.
const TX_DEADLINE_US: u64 = 5_000_000;

/// How long a mode switch waits for transmissions already handed to the
/// device before it answers `Busy`.
const MODE_SWITCH_WAIT_US: u64 = 100_000;

/// Who the loop serves, and how.
pub struct Config {
    /// The serve capability of its endpoint.
    pub endpoint: u32,
    /// The badge of its one data client (`Send`, `Receive`).
    pub client: u32,
    /// The notification capability towards the data client (`RX_READY`).
    pub notify: Option<u32>,
    /// Accept `SetMode` (benchmark systems only).
    pub bench: bool,
}

struct Loop<'a> {
    /// `None` only while a mode switch restarts the device.
    nic: Option<Nic>,
    iommu: &'a Iommu,
    cfg: Config,
    /// Notify the client when the next frame arrives (its last `Receive`
    /// came back short).
    armed: bool,
    refused: u64,
    tx_rejected: u64,
    notifications: u64,
    /// Counter value of the last transmit progress.
    tx_progress_at: u64,
    /// [`TX_DEADLINE_US`] in counter ticks.
    tx_deadline: u64,
    /// The deadline passed with slots still on the device (logged once per
    /// stall).
    tx_stalled: bool,
}

/// Serves `net-api` for `nic` forever.
pub fn serve(nic: Nic, iommu: &Iommu, cfg: Config) -> ! {
    let hz = userlib::time().map_or(1, |(_, hz)| hz);
    let mut l = Loop {
        nic: Some(nic),
        iommu,
        cfg,
        armed: false,
        refused: 0,
        tx_rejected: 0,
        notifications: 0,
        tx_progress_at: 0,
        tx_deadline: userlib::Counter::new(hz).ticks(TX_DEADLINE_US),
        tx_stalled: false,
    };
    let mut buf = [0u8; MSG_MAX];
    loop {
        let timeout = if l.tx_waiting() { TX_POLL_US } else { FOREVER };
        let got = match userlib::recv(l.cfg.endpoint, &mut buf, &mut [], timeout) {
            Ok(g) => g,
            Err(e) => {
                log!("virtio-net: recv refused: {e}");
                continue;
            }
        };
        match userlib::ipc::kind(&got) {
            Some(RecvKind::Call) => {
                let msg = &buf[..(got.len as usize).min(MSG_MAX)];
                l.call(got.badge, msg, got.reply, got.grant_len);
            }
            Some(RecvKind::Notification) => {
                let irq = l.nic.as_ref().and_then(Nic::irq);
                if let Some((cap, bit)) = irq
                    && got.notification & bit != 0
                {
                    if let Some(n) = l.nic.as_mut() {
                        n.on_interrupt();
                    }
                    l.service();
                    let _ = userlib::irq_ack(cap);
                }
            }
            Some(RecvKind::ClientDied) => {
                // Nothing of the client is mapped or held here: its frames
                // were copies.
                l.armed = false;
                let _ = userlib::reply(got.reply, &[]);
            }
            Some(RecvKind::Timeout) => l.service(),
            None => {}
        }
    }
}

fn reply(token: u64, r: Result<Response<'_>, NetError>) {
    let mut out = [0u8; MSG_MAX];
    let n = Response::encode_result(r, &mut out);
    // A caller that died meanwhile makes this fail; its death notice follows.
    let _ = userlib::reply(token, &out[..n]);
}

impl Loop<'_> {
    /// Whether to look for transmitted slots on a timer: some are on the
    /// device and the last progress is younger than [`TX_DEADLINE_US`].
    fn tx_waiting(&mut self) -> bool {
        let busy = self.nic.as_ref().map_or(0, Nic::tx_busy);
        if busy == 0 {
            self.tx_stalled = false;
            return false;
        }
        let now = userlib::counter();
        if now.saturating_sub(self.tx_progress_at) < self.tx_deadline {
            return true;
        }
        if !self.tx_stalled {
            self.tx_stalled = true;
            log!(
                "virtio-net: {busy} transmit slots not back from the device in {} ms: they stay reserved (never reused)",
                TX_DEADLINE_US / 1000
            );
        }
        false
    }

    /// Transmit slots back from the device are unmapped and freed; new
    /// frames queued; the client notified if it asked.
    fn service(&mut self) {
        let Some(nic) = self.nic.as_mut() else {
            return;
        };
        if nic.tx_reclaim(self.iommu) > 0 {
            self.tx_progress_at = userlib::counter();
        }
        nic.rx_poll();
        if self.armed && nic.rx_ready() > 0 {
            self.armed = false;
            if let Some(cap) = self.cfg.notify {
                match userlib::notify(cap, RX_READY) {
                    Ok(()) => self.notifications += 1,
                    Err(e) => log!("virtio-net: notifying the client failed: {e}"),
                }
            }
        }
    }

    fn call(&mut self, badge: u32, msg: &[u8], token: u64, grant_len: u64) {
        match Request::decode(msg) {
            Err(e) => {
                self.refused += 1;
                reply(token, Err(e));
            }
            // Frames are the data client's only; any caller of the
            // endpoint may ask Info, Stats and (bench) SetMode.
            Ok(Request::Send(_) | Request::Receive { .. }) if badge != self.cfg.client => {
                self.refused += 1;
                reply(token, Err(NetError::NotClient));
            }
            Ok(r) => r.dispatch(Call {
                l: self,
                token,
                grant_len,
            }),
        }
    }

    /// A working device, or `DeviceError`.
    fn nic(&mut self) -> Result<&mut Nic, NetError> {
        match self.nic.as_mut() {
            Some(n) if !n.is_broken() => Ok(n),
            _ => Err(NetError::DeviceError),
        }
    }

    fn info(&mut self) -> Result<Info, NetError> {
        let nic = self.nic.as_ref().ok_or(NetError::DeviceError)?;
        Ok(Info {
            mac: nic.mac(),
            mtu: nic.mtu(),
            link_up: nic.link_up(),
            rx_slots: RX_SLOTS,
            tx_slots: TX_SLOTS,
        })
    }

    /// Checks every frame, then stages as many as there are free slots,
    /// maps and posts them; returns how many.
    fn send(&mut self, token: u64, grant_len: u64, frames: Frames<'_>) -> Result<u16, NetError> {
        for f in frames.iter() {
            f.check(grant_len)?;
        }
        let iommu = self.iommu;
        let nic = self.nic()?;
        nic.tx_reclaim(iommu);
        // Transmit progress: a post now, or slots freed just above.
        self.tx_progress_at = userlib::counter();
        let nic = self.nic()?;
        let mut staged: [u16; MAX_FRAMES] = [0; MAX_FRAMES];
        let mut n = 0usize;
        let mut frame = [0u8; MAX_FRAME];
        for f in frames.iter() {
            let bytes = &mut frame[..usize::from(f.len)];
            if let Err(e) = userlib::grant_read(token, u64::from(f.offset), bytes) {
                log!("virtio-net: reading a frame from the grant failed: {e}");
                nic.tx_unstage(&staged[..n]);
                return Err(NetError::NotGranted);
            }
            match nic.tx_stage(bytes) {
                Ok(slot) => {
                    staged[n] = slot;
                    n += 1;
                }
                Err(TxError::Full) => break,
                Err(_) => {
                    nic.tx_unstage(&staged[..n]);
                    return Err(NetError::BadLength);
                }
            }
        }
        if n > 0
            && let Err(e) = nic.tx_post(iommu, &staged[..n])
        {
            log!("virtio-net: mapping a transmit batch failed: {e}");
            return Err(NetError::Iommu);
        }
        self.tx_rejected += (frames.len() - n) as u64;
        // At most MAX_FRAMES (127).
        Ok(n as u16)
    }

    /// Copies up to `max` received frames into the grant, one per
    /// `FRAME_STRIDE`; arms the notification when it came back short.
    fn receive(
        &mut self,
        token: u64,
        grant_len: u64,
        max: u16,
        out: &mut [Frame; MAX_FRAMES],
    ) -> Result<usize, NetError> {
        if grant_len < u64::from(max) * FRAME_STRIDE as u64 {
            return Err(NetError::NotGranted);
        }
        let nic = self.nic()?;
        nic.rx_poll();
        let mut n = 0usize;
        let mut frame = [0u8; SLOT_BYTES as usize];
        while n < usize::from(max) {
            let Some(len) = nic.rx_peek(&mut frame) else {
                break;
            };
            let at = (n * FRAME_STRIDE) as u64;
            if let Err(e) = userlib::grant_write(token, at, &frame[..len]) {
                log!("virtio-net: writing a frame into the grant failed: {e}");
                if n == 0 {
                    return Err(NetError::NotGranted);
                }
                break;
            }
            nic.rx_done();
            out[n] = Frame {
                offset: at as u32,
                len: len as u16,
            };
            n += 1;
        }
        nic.rx_repost();
        if n < usize::from(max) {
            self.armed = true;
        }
        Ok(n)
    }

    fn stats(&mut self) -> Result<NetStats, NetError> {
        let s = self.iommu.stats().map_err(|e| {
            log!("virtio-net: IOMMU stats refused: {e}");
            NetError::Iommu
        })?;
        let c = self
            .nic
            .as_ref()
            .map(|n| n.counters)
            .ok_or(NetError::DeviceError)?;
        Ok(NetStats {
            rx_frames: c.rx_frames,
            rx_bytes: c.rx_bytes,
            rx_dropped: c.rx_dropped,
            tx_frames: c.tx_frames,
            tx_bytes: c.tx_bytes,
            tx_rejected: self.tx_rejected,
            irqs: c.irqs,
            iommu_maps: c.iommu_maps,
            iommu_unmaps: c.iommu_unmaps,
            iommu_syncs: s.syncs,
            refused: self.refused,
            notifications: self.notifications,
        })
    }

    /// Benchmark mode switch: with nothing on the device for transmission,
    /// stop it, have the IOMMU server switch this driver's policy, bring
    /// the device back up.
    fn set_mode(&mut self, mode: NetMode) -> Result<(), NetError> {
        if !self.cfg.bench {
            return Err(NetError::NotPermitted);
        }
        let iommu = self.iommu;
        let nic = self.nic()?;
        // Frames handed to the device just before (the acknowledgement of
        // the very request that asked for the switch, say) are given a
        // moment to complete: `Busy` only if some are still out after it.
        let clock = userlib::Counter::from_kernel();
        let until = userlib::counter().saturating_add(clock.ticks(MODE_SWITCH_WAIT_US));
        loop {
            nic.tx_reclaim(iommu);
            if nic.tx_busy() == 0 {
                break;
            }
            if userlib::counter() >= until {
                return Err(NetError::Busy);
            }
            let _ = userlib::sleep(TX_POLL_US / 10);
        }
        if let Err(e) = nic.stop(iommu) {
            log!("virtio-net: unmapping before a mode switch failed: {e}");
            return Err(NetError::Iommu);
        }
        let policy = match mode {
            NetMode::Bypass => InvalidationPolicy::Bypass,
            NetMode::Strict => InvalidationPolicy::Strict,
        };
        let switched = iommu.set_policy(policy).and_then(|()| iommu.reset_stats());
        let Some(nic) = self.nic.take() else {
            return Err(NetError::DeviceError);
        };
        match nic.restart(iommu) {
            Ok(n) => self.nic = Some(n),
            Err(e) => {
                log!("virtio-net: the device did not come back after a mode switch: {e}");
                userlib::exit(1);
            }
        }
        switched.map_err(|e| {
            log!(
                "virtio-net: the IOMMU server refused mode {}: {e}",
                mode.name()
            );
            NetError::Iommu
        })?;
        log!("virtio-net: IOMMU mode now {}", mode.name());
        Ok(())
    }

    /// Answers `r`, counting a refusal.
    fn answer(&mut self, token: u64, r: Result<Response<'_>, NetError>) {
        if r.is_err() {
            self.refused += 1;
        }
        reply(token, r);
    }
}

/// One call being handled: the protocol's generated dispatch calls one of
/// these; each answers at once.
struct Call<'l, 'i> {
    l: &'l mut Loop<'i>,
    token: u64,
    grant_len: u64,
}

impl<'a> Handler<'a> for Call<'_, '_> {
    type Out = ();

    fn info(self) {
        let r = self.l.info().map(Response::Info);
        self.l.answer(self.token, r);
    }

    fn send(self, frames: Frames<'a>) {
        let r = self
            .l
            .send(self.token, self.grant_len, frames)
            .map(|accepted| Response::Sent { accepted });
        self.l.answer(self.token, r);
    }

    fn receive(self, max: u16) {
        let mut out = [Frame { offset: 0, len: 0 }; MAX_FRAMES];
        let r = self.l.receive(self.token, self.grant_len, max, &mut out);
        match r {
            Ok(n) => {
                let frames = Frames::new(&out[..n]);
                self.l.answer(self.token, Ok(Response::Received(frames)));
            }
            Err(e) => self.l.answer(self.token, Err(e)),
        }
    }

    fn stats(self) {
        let r = self.l.stats().map(Response::Stats);
        self.l.answer(self.token, r);
    }

    fn set_mode(self, mode: NetMode) {
        let r = self.l.set_mode(mode).map(|()| Response::ModeSet);
        self.l.answer(self.token, r);
    }
}
