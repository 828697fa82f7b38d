//! The server on a software SMMU: the security contract's items, each
//! against the model's real caches.

mod common;

use abi::{Iova, PAGE_SIZE, PhysAddr, StreamId};
use common::*;
use iommu_api::{ApiError, Dir, Extent, List, Op, Request, Response};
use iommu_core::server::{Grant, Handled, Presented, ServerConfig, ServerError};
use iommu_core::{InvalidationPolicy, TrustLevel};
use smmu_model::Fault;
use smmuv3::ste::{Ste, StreamConfig};

const A: u32 = 1;
const B: u32 = 2;
const SID_A: u32 = 0x8;
const SID_B: u32 = 0x10;

#[test]
fn every_stream_aborts_until_attached() {
    let mut s = server(ServerConfig::default(), &[(A, STRICT, UNTRUSTED)]);
    let hw = s.hw_mut();
    for sid in [0u32, SID_A, 0xffff] {
        let r = hw
            .model
            .translate(&hw.mem, StreamId(sid), Iova::new(0x1000), false);
        assert!(r.is_err(), "sid {sid:#x}: {r:?}");
    }
    attach(&mut s, 0, A, SID_A, 28).unwrap();
    let hw = s.hw_mut();
    // Attached but nothing mapped: translation faults (not bypass).
    assert!(matches!(
        hw.model
            .translate(&hw.mem, StreamId(SID_A), Iova::new(0x10_0000), false),
        Err(Fault::Translation { .. })
    ));
    // Neighbours in the same level-2 table still abort.
    assert_eq!(
        hw.model
            .translate(&hw.mem, StreamId(SID_A + 1), Iova::new(0x10_0000), false),
        Err(Fault::Abort)
    );
    assert_eq!(
        hw.model.cached_ste(StreamId(SID_A)).map(|s: Ste| s.config),
        Some(StreamConfig::S1Translate)
    );
}

#[test]
fn dma_lands_in_client_frames_then_faults_and_quarantine() {
    let cfg = ServerConfig {
        quarantine_after: 3,
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(A, STRICT, UNTRUSTED), (B, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 28).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let mut fa = Frames::new(A);
    let frames = fa.take(3, false);
    // An unaligned range: offset 0x300 into a grant starting 0x100 into
    // its first page crosses into the second frame.
    let iovas = map(
        &mut s,
        0,
        A,
        Dir::FromDevice,
        &[Extent::new(0x300, 0x1000)],
        &frames,
        0x100,
    )
    .unwrap();
    let iova = iovas[0];
    assert_eq!(iova.page_offset(), 0x400);
    assert!(iova.get() + 0x1000 < 1 << 28, "edu reaches only 28 bits");
    let hw = s.hw_mut();
    let data: Vec<u8> = (0..0x1000u32).map(|i| i as u8).collect();
    hw.model
        .dma_write(&mut hw.mem, StreamId(SID_A), iova, &data)
        .unwrap();
    let mut got = vec![0u8; 0xc00];
    hw.mem
        .read_bytes(PhysAddr::new(frames[0].get() + 0x400), &mut got);
    assert_eq!(got, data[..0xc00]);
    let mut got = vec![0u8; 0x400];
    hw.mem.read_bytes(frames[1], &mut got);
    assert_eq!(got, data[0xc00..]);

    // Strict unmap: held until poll's sync, then nothing translates it.
    assert_eq!(
        unmap(&mut s, 1, A, &[Extent::new(iova.get(), 0x1000)], 7),
        Ok(true)
    );
    let out = s.poll(2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 7);
    assert_eq!(
        Response::decode(Op::Unmap, &out[0].1),
        Ok(Response::Unmapped { faults_pending: 0 })
    );
    let hw = s.hw_mut();
    for p in [iova.get(), iova.get() + 0xfff] {
        assert_eq!(
            hw.model
                .would_translate(&hw.mem, StreamId(SID_A), Iova::new(p)),
            None
        );
    }
    let r = hw
        .model
        .dma_write(&mut hw.mem, StreamId(SID_A), iova, &data);
    assert!(matches!(r, Err(Fault::Translation { .. })), "{r:?}");
    assert_eq!(hw.model.stats().stale_hits, 0);

    // Attribution and coalescing: QEMU's ~1,025 records per 4 KiB.
    let events = s.hw_mut().model.take_events();
    assert_eq!(events.len(), 1);
    let rep = s.on_event(events[0]).unwrap();
    assert_eq!(
        (rep.badge, rep.sid, rep.write, rep.first),
        (A, StreamId(SID_A), true, true)
    );
    for _ in 0..1024 {
        let r = s.on_event(events[0]).unwrap();
        assert!(!r.first && !r.quarantined_now);
    }
    let f = simple(&mut s, 3, A, Request::Faults).unwrap();
    match Response::decode(Op::Faults, &f).unwrap() {
        Response::Faults { records } => {
            assert_eq!(records.len(), 1);
            let r = records.get(0).unwrap();
            assert_eq!(
                (r.sid, r.count, r.write, r.kind),
                (StreamId(SID_A), 1025, true, 0x10)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.stats(A).unwrap().faults, 1025);

    // B maps a page and its DMA works throughout.
    let mut fb = Frames::new(B);
    let fbf = fb.take(1, true);
    let ib = map_page(&mut s, 3, B, Dir::Bidirectional, &fbf);

    // Faults on three more distinct pages: past 3 distinct, quarantine.
    let mut quarantined = false;
    for k in 1..=3u64 {
        let hw = s.hw_mut();
        let bad = Iova::new(0x20_0000 + k * PAGE_SIZE);
        assert!(
            hw.model
                .dma_write(&mut hw.mem, StreamId(SID_A), bad, &[1])
                .is_err()
        );
        for e in s.hw_mut().model.take_events() {
            let r = s.on_event(e).unwrap();
            assert_eq!(r.badge, A);
            quarantined |= r.quarantined_now;
        }
    }
    assert!(quarantined);
    let hw = s.hw_mut();
    assert_eq!(
        hw.model
            .dma_write(&mut hw.mem, StreamId(SID_A), Iova::new(0x10_0000), &[1]),
        Err(Fault::Abort)
    );
    hw.model
        .dma_write(&mut hw.mem, StreamId(SID_B), ib, b"still fine")
        .unwrap();
    let mut got = [0u8; 10];
    hw.mem.read_bytes(fbf[0], &mut got);
    assert_eq!(&got, b"still fine");
    let frames = fa.take(1, true);
    assert_eq!(
        map(
            &mut s,
            4,
            A,
            Dir::ToDevice,
            &[Extent::new(0, 8)],
            &frames,
            0
        ),
        Err(ApiError::Quarantined)
    );
    assert!(s.clients().any(|c| c.badge == A && c.quarantined));
    assert!(s.clients().any(|c| c.badge == B && !c.quarantined));
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn read_only_mappings_refuse_device_writes() {
    let mut s = server(ServerConfig::default(), &[(A, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let f = Frames::new(A).take(1, true);
    let i = map_page(&mut s, 0, A, Dir::ToDevice, &f);
    let hw = s.hw_mut();
    let mut buf = [0u8; 4];
    hw.model
        .dma_read(&hw.mem, StreamId(SID_A), i, &mut buf)
        .unwrap();
    assert!(matches!(
        hw.model.dma_write(&mut hw.mem, StreamId(SID_A), i, &[1]),
        Err(Fault::Permission { .. })
    ));
}

/// More ranges than a request's bookkeeping holds inline (`Few`), and a
/// `Mapped` reply longer than `ReplyBytes` holds inline: each range gets
/// its own IOVA and reaches its own frame, one `Unmap` of them all is held
/// until its sync, and after it none translates.
#[test]
fn a_map_of_many_ranges_and_its_unmap() {
    const N: u64 = 9;
    let mut s = server(ServerConfig::default(), &[(A, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let f = Frames::new(A).take(N as usize, false);
    let ranges: Vec<Extent> = (0..N).map(|i| Extent::new(i * PAGE_SIZE + 8, 64)).collect();
    let iovas = map(&mut s, 0, A, Dir::Bidirectional, &ranges, &f, 0).unwrap();
    assert_eq!(iovas.len(), N as usize);
    let hw = s.hw();
    for (i, (iova, frame)) in iovas.iter().zip(&f).enumerate() {
        assert!(iovas[..i].iter().all(|o| o.get() >> 12 != iova.get() >> 12));
        let pa = hw.model.would_translate(&hw.mem, StreamId(SID_A), *iova);
        assert_eq!(pa, Some(PhysAddr::new(frame.get() + 8)));
    }
    let back: Vec<Extent> = iovas.iter().map(|i| Extent::new(i.get(), 64)).collect();
    assert_eq!(
        unmap(&mut s, 1, A, &back, 5),
        Ok(true),
        "held until its sync"
    );
    let out = s.poll(2);
    assert_eq!(out.len(), 1);
    assert_eq!(
        Response::decode(Op::Unmap, &out[0].1).map(|_| ()),
        Ok(()),
        "the held reply"
    );
    let hw = s.hw();
    for iova in &iovas {
        assert_eq!(
            hw.model.would_translate(&hw.mem, StreamId(SID_A), *iova),
            None
        );
    }
    assert_eq!(hw.model.stats().stale_hits, 0);
    assert_eq!(s.stats(A).unwrap().mappings, 0);
}

/// A map of several ranges shares one IOVA block: the block stays taken
/// while any of its ranges is mapped, so neither a later map nor the
/// partial unmaps' syncs can hand out an IOVA that a live range of it
/// still uses; each range keeps translating to its own frame until its
/// own unmap's sync, and the block is reusable once the last one went.
#[test]
fn a_shared_block_outlives_all_but_its_last_range() {
    let mut s = server(ServerConfig::default(), &[(A, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let f = Frames::new(A).take(8, false);
    let three: Vec<Extent> = (0..3)
        .map(|i| Extent::new(2 * i * PAGE_SIZE, PAGE_SIZE))
        .collect();
    let v = map(&mut s, 0, A, Dir::FromDevice, &three, &f, 0).unwrap();
    // One after the other in one block.
    assert_eq!(v[1].get(), v[0].get() + PAGE_SIZE);
    assert_eq!(v[2].get(), v[1].get() + PAGE_SIZE);
    let translates = |s: &mut Srv, iova: Iova| {
        let hw = s.hw();
        hw.model.would_translate(&hw.mem, StreamId(SID_A), iova)
    };
    // The middle one goes, and its sync completes.
    assert_eq!(
        unmap(&mut s, 1, A, &[Extent::new(v[1].get(), PAGE_SIZE)], 5),
        Ok(true)
    );
    assert_eq!(s.poll(2).len(), 1);
    assert_eq!(translates(&mut s, v[1]), None);
    for (i, k) in [(0, 0), (2, 4)] {
        assert_eq!(translates(&mut s, v[i]), Some(f[k]));
    }
    // New maps never land inside the block while its ranges live: not a
    // request of the same shape (the size class the block came from)...
    let again = map(&mut s, 2, A, Dir::FromDevice, &three, &f, 0).unwrap();
    assert!(
        again[0].get() >= v[2].get() + PAGE_SIZE || again[2].get() + PAGE_SIZE <= v[0].get(),
        "a live shared block handed out again"
    );
    let back: Vec<Extent> = again
        .iter()
        .map(|i| Extent::new(i.get(), PAGE_SIZE))
        .collect();
    assert_eq!(unmap(&mut s, 2, A, &back, 8), Ok(true));
    s.poll(2);
    // ...nor single pages.
    for t in 0..40 {
        let w = map(
            &mut s,
            3 + t,
            A,
            Dir::FromDevice,
            &[Extent::new(0, PAGE_SIZE)],
            &f[6..7],
            0,
        )
        .unwrap();
        assert!(
            w[0].get() + PAGE_SIZE <= v[0].get() || w[0].get() >= v[2].get() + PAGE_SIZE,
            "IOVA {:#x} handed out inside a live shared block",
            w[0].get()
        );
        assert_eq!(
            unmap(&mut s, 3 + t, A, &[Extent::new(w[0].get(), PAGE_SIZE)], 6),
            Ok(true)
        );
        s.poll(3 + t);
    }
    for (i, k) in [(0, 0), (2, 4)] {
        assert_eq!(translates(&mut s, v[i]), Some(f[k]));
    }
    // The last two go in one request (one walk: they no longer touch).
    let rest = [
        Extent::new(v[0].get(), PAGE_SIZE),
        Extent::new(v[2].get(), PAGE_SIZE),
    ];
    assert_eq!(unmap(&mut s, 50, A, &rest, 7), Ok(true));
    assert_eq!(s.poll(51).len(), 1);
    for iova in &v {
        assert_eq!(translates(&mut s, *iova), None);
    }
    assert_eq!(s.hw().model.stats().stale_hits, 0);
    assert_eq!(s.stats(A).unwrap().mappings, 0);
    // Everything is free again: the same three ranges map again.
    assert!(map(&mut s, 60, A, Dir::FromDevice, &three, &f, 0).is_ok());
}

#[test]
fn burst_of_unmaps_from_k_clients_shares_one_sync() {
    const K: u32 = 5;
    let clients: Vec<_> = (1..=K).map(|b| (b, STRICT, UNTRUSTED)).collect();
    let mut s = server(ServerConfig::default(), &clients);
    let mut iovas = Vec::new();
    for b in 1..=K {
        attach(&mut s, 0, b, 8 * b, 48).unwrap();
        let f = Frames::new(b).take(4, b % 2 == 0);
        let v = map(
            &mut s,
            0,
            b,
            Dir::FromDevice,
            &[Extent::new(0, 4096), Extent::new(4096, 3 * 4096)],
            &f,
            0,
        )
        .unwrap();
        let hw = s.hw_mut();
        for i in &v {
            hw.model
                .translate(&hw.mem, StreamId(8 * b), *i, true)
                .unwrap();
        }
        iovas.push(v);
    }
    let (syncs, bells) = (s.hw().syncs, s.hw().doorbells);
    let tlbis = s.hw().model.stats().tlbi_commands;
    for b in 1..=K {
        let v = &iovas[b as usize - 1];
        let held = unmap(
            &mut s,
            1,
            b,
            &[
                Extent::new(v[0].get(), 4096),
                Extent::new(v[1].get(), 3 * 4096),
            ],
            u64::from(b),
        )
        .unwrap();
        assert!(held);
    }
    assert_eq!(s.hw().syncs, syncs, "handle only queues");
    let out = s.poll(2);
    assert_eq!(out.len(), K as usize);
    assert_eq!(s.hw().syncs, syncs + 1, "one CMD_SYNC for the burst");
    assert_eq!(s.hw().doorbells, bells + 1, "one doorbell");
    // Range TLBIs (RIL): one per merged range, not one per page.
    assert!(s.hw().model.stats().tlbi_commands - tlbis <= 2 * u64::from(K));
    let hw = s.hw();
    for b in 1..=K {
        for i in &iovas[b as usize - 1] {
            assert_eq!(hw.model.would_translate(&hw.mem, StreamId(8 * b), *i), None);
        }
        assert_eq!(s.stats(b).unwrap().syncs, 1);
        assert_eq!(s.stats(b).unwrap().pending_unmaps, 0);
    }
    assert_eq!(hw.model.stats().stale_hits, 0);
}

#[test]
fn refused_requests_change_nothing() {
    let deferred = InvalidationPolicy::deferred(4, 100).unwrap();
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (B, deferred, TRUSTED)],
    );
    assert_eq!(
        s.add_client(3, "u", deferred, TrustLevel::Untrusted),
        Err(ServerError::NotPermitted)
    );
    assert_eq!(
        s.add_client(3, "u", InvalidationPolicy::Bypass, TrustLevel::Untrusted),
        Err(ServerError::NotPermitted)
    );
    assert_eq!(
        s.add_client(A, "dup", STRICT, UNTRUSTED),
        Err(ServerError::ClientExists)
    );
    let f = Frames::new(A).take(2, true);
    // Before attach.
    assert_eq!(
        map(&mut s, 0, A, Dir::ToDevice, &[Extent::new(0, 16)], &f, 0),
        Err(ApiError::NotAttached)
    );
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let live = map(
        &mut s,
        0,
        A,
        Dir::FromDevice,
        &[Extent::new(0, 0x1800)],
        &f,
        0,
    )
    .unwrap()[0];
    let snapshot = |s: &Srv| (s.hw().footprint(), s.stats(A), s.stats(B));
    let before = snapshot(&s);
    let map_err = |s: &mut Srv, ranges: &[Extent], frames: &[PhysAddr], grant: bool| {
        let m = bytes(&Request::Map {
            dir: Dir::Bidirectional,
            ranges: List::new(ranges),
        });
        let g = Grant {
            frames,
            va: 0x4000_0000,
            len: frames.len() as u64 * PAGE_SIZE,
        };
        match s.handle(1, A, &m, grant.then_some(g), None, 9) {
            Handled::Reply(9, r) => Response::decode(Op::Map, &r).err(),
            _ => panic!("map not answered"),
        }
    };
    assert_eq!(
        map_err(&mut s, &[Extent::new(0, 16)], &f, false),
        Some(ApiError::NotGranted)
    );
    assert_eq!(
        map_err(&mut s, &[Extent::new(0x1000, 0x1001)], &f, true),
        Some(ApiError::NotGranted)
    );
    assert_eq!(
        map_err(&mut s, &[Extent::new(u64::MAX, 2)], &f, true),
        Some(ApiError::NotGranted)
    );
    assert_eq!(
        map_err(&mut s, &[Extent::new(0, 0)], &f, true),
        Some(ApiError::ZeroLength)
    );
    assert_eq!(
        map_err(
            &mut s,
            &[Extent::new(0, 0x100), Extent::new(0x80, 0x100)],
            &f,
            true
        ),
        Some(ApiError::Overlap)
    );
    // A later good range does not make an earlier bad one pass.
    assert_eq!(
        map_err(
            &mut s,
            &[Extent::new(0, 0x10), Extent::new(0x2000, 1)],
            &f,
            true
        ),
        Some(ApiError::NotGranted)
    );
    let un = |s: &mut Srv, r: &[Extent]| unmap(s, 1, A, r, 5).err();
    assert_eq!(
        un(&mut s, &[Extent::new(live.get() + 4096, 4096)]),
        Some(ApiError::UnknownIova)
    );
    assert_eq!(
        un(&mut s, &[Extent::new(live.get(), 0x1000)]),
        Some(ApiError::LengthMismatch)
    );
    assert_eq!(
        un(&mut s, &[Extent::new(live.get(), 0)]),
        Some(ApiError::ZeroLength)
    );
    assert_eq!(
        un(
            &mut s,
            &[
                Extent::new(live.get(), 0x1800),
                Extent::new(live.get(), 0x1800)
            ]
        ),
        Some(ApiError::Overlap)
    );
    assert_eq!(
        un(
            &mut s,
            &[Extent::new(live.get(), 0x1800), Extent::new(0xdead_0000, 1)]
        ),
        Some(ApiError::UnknownIova)
    );
    // Another client's StreamID, no device, a bad width, garbage.
    assert_eq!(
        attach(&mut s, 1, A, SID_B, 48),
        Err(ApiError::AlreadyAttached)
    );
    let m = bytes(&Request::Attach { dma_bits: 48 });
    assert!(
        matches!(s.handle(1, A, &m, None, None, 0), Handled::Reply(_, r) if Response::decode(Op::Attach, &r) == Err(ApiError::NoDevice))
    );
    assert_eq!(attach(&mut s, 1, A, 0x20, 0), Err(ApiError::Malformed));
    assert!(matches!(
        s.handle(1, A, &[1, 2, 3], None, None, 0),
        Handled::Reply(..)
    ));
    let dev = Presented {
        rid: 0,
        sid: StreamId(0x18),
    };
    assert!(
        matches!(s.handle(1, 99, &m, None, Some(dev), 0), Handled::Reply(_, r) if Response::decode(Op::Attach, &r) == Err(ApiError::NotPermitted))
    );
    assert_eq!(snapshot(&s), before);
    assert!(s.poll(2).is_empty());
    assert_eq!(snapshot(&s), before, "nothing was queued either");
    // The live mapping still works.
    let hw = s.hw_mut();
    hw.model
        .dma_write(&mut hw.mem, StreamId(SID_A), live, &[5; 16])
        .unwrap();
}

#[test]
fn deferred_client_replies_at_once_and_flushes_by_age_or_count() {
    let deferred = InvalidationPolicy::deferred(3, 100).unwrap();
    let mut s = server(ServerConfig::default(), &[(B, deferred, TRUSTED)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let f = Frames::new(B).take(8, false);
    let ranges: Vec<_> = (0..4).map(|i| Extent::new(i * 4096, 4096)).collect();
    let v = map(&mut s, 0, B, Dir::FromDevice, &ranges, &f, 0).unwrap();
    let hw = s.hw_mut();
    for i in &v {
        hw.model
            .translate(&hw.mem, StreamId(SID_B), *i, true)
            .unwrap();
    }
    let syncs = s.hw().syncs;
    assert_eq!(
        unmap(&mut s, 10, B, &[Extent::new(v[0].get(), 4096)], 1),
        Ok(false)
    );
    assert!(s.poll(10).is_empty());
    assert_eq!(s.hw().syncs, syncs, "not due yet");
    // The stale window: the device may still reach the page.
    assert!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_B), v[0])
            .is_some()
    );
    // T = 100 µs less the flush's lead (half of T).
    assert_eq!(s.next_deadline(), Some(60));
    s.poll(60);
    assert_eq!(s.hw().syncs, syncs + 1);
    assert_eq!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_B), v[0]),
        None
    );
    assert_eq!(s.stats(B).unwrap().max_stale_window_us, 50);
    // N entries force a flush at the next poll.
    for (t, i) in [(200, 1), (201, 2), (202, 3)] {
        assert_eq!(
            unmap(&mut s, t, B, &[Extent::new(v[i].get(), 4096)], 1),
            Ok(false)
        );
    }
    s.poll(203);
    assert_eq!(s.hw().syncs, syncs + 2);
    assert_eq!(s.stats(B).unwrap().pending_unmaps, 0);
    assert_eq!(s.hw().model.stats().stale_hits, 0);
    // Flush with nothing pending answers at once.
    assert!(simple(&mut s, 204, B, Request::Flush).is_ok());
}

#[test]
fn flush_is_held_until_pending_work_completes() {
    let deferred = InvalidationPolicy::deferred(64, 10_000).unwrap();
    let mut s = server(ServerConfig::default(), &[(B, deferred, TRUSTED)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let f = Frames::new(B).take(1, true);
    let v = map_page(&mut s, 0, B, Dir::FromDevice, &f);
    assert_eq!(
        unmap(&mut s, 1, B, &[Extent::new(v.get(), 4096)], 1),
        Ok(false)
    );
    let m = bytes(&Request::Flush);
    assert_eq!(s.handle(2, B, &m, None, None, 42), Handled::Held);
    let out = s.poll(2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 42);
    assert_eq!(
        Response::decode(Op::Flush, &out[0].1),
        Ok(Response::Flushed)
    );
}

#[test]
fn client_death_tears_down_before_memory_is_reused() {
    let deferred = InvalidationPolicy::deferred(64, 10_000).unwrap();
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (B, deferred, TRUSTED)],
    );
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let fa = Frames::new(A).take(4, false);
    let fb = Frames::new(B).take(4, false);
    let va = map(
        &mut s,
        0,
        A,
        Dir::FromDevice,
        &[Extent::new(0, 4 * 4096)],
        &fa,
        0,
    )
    .unwrap();
    let vb = map(
        &mut s,
        0,
        B,
        Dir::FromDevice,
        &[Extent::new(0, 4096), Extent::new(4096, 4096)],
        &fb,
        0,
    )
    .unwrap();
    let hw = s.hw_mut();
    hw.model
        .translate(&hw.mem, StreamId(SID_A), va[0], true)
        .unwrap();
    for i in &vb {
        hw.model
            .translate(&hw.mem, StreamId(SID_B), *i, true)
            .unwrap();
    }
    // B has a deferred unmap queued, A a held strict unmap.
    assert_eq!(
        unmap(&mut s, 1, B, &[Extent::new(vb[0].get(), 4096)], 3),
        Ok(false)
    );
    let a2 = map_page(&mut s, 1, A, Dir::FromDevice, &fa);
    assert_eq!(
        unmap(&mut s, 1, A, &[Extent::new(a2.get(), 4096)], 11),
        Ok(true)
    );
    let live_before = s.hw().live.len();
    let dropped = s.client_died(B);
    assert!(dropped.is_empty());
    let hw = s.hw();
    for i in &vb {
        assert_eq!(hw.model.would_translate(&hw.mem, StreamId(SID_B), *i), None);
    }
    assert!(
        s.hw().live.len() < live_before,
        "B's tables and CD were freed"
    );
    assert!(!s.clients().any(|c| c.badge == B));
    // A's held reply was released by the same sync and comes from poll.
    let out = s.poll(2);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), vec![11]);
    // B's StreamID can now be attached by someone else (A).
    attach(&mut s, 3, A, SID_B, 48).unwrap();
    // A dies with a held reply: returned for dropping.
    let a3 = map_page(&mut s, 4, A, Dir::FromDevice, &fa);
    assert_eq!(
        unmap(&mut s, 4, A, &[Extent::new(a3.get(), 4096)], 12),
        Ok(true)
    );
    let dropped = s.client_died(A);
    assert_eq!(dropped.iter().map(|d| d.0).collect::<Vec<_>>(), vec![12]);
    let hw = s.hw_mut();
    for sid in [SID_A, SID_B] {
        assert_eq!(
            hw.model.translate(&hw.mem, StreamId(sid), va[0], false),
            Err(Fault::Abort)
        );
    }
    // Only the stream table remains allocated.
    assert_eq!(s.hw().live.len(), 1 + 1);
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

/// Security contract item 8: every frame a mapping reaches is pinned in
/// the kernel (one pin call per `Map`) before an entry maps it, and
/// unpinned (one call per completed sync batch) only after the sync that
/// covers its unmap. The harness checks each unpin against the live and
/// not-yet-synced entries.
#[test]
fn frames_are_pinned_per_map_and_unpinned_only_after_the_covering_sync() {
    let deferred = InvalidationPolicy::deferred(64, 10_000).unwrap();
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (B, deferred, TRUSTED)],
    );
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let fa = Frames::new(A).take(4, false);
    let v = map(
        &mut s,
        0,
        A,
        Dir::FromDevice,
        &[Extent::new(0, 2 * 4096), Extent::new(2 * 4096, 2 * 4096)],
        &fa,
        0,
    )
    .unwrap();
    assert_eq!(
        (s.hw().pin_calls, s.hw().pinned()),
        (1, 4),
        "one pin call per map"
    );
    // Strict: the unmap is held; nothing unpinned before the sync.
    assert_eq!(
        unmap(&mut s, 1, A, &[Extent::new(v[0].get(), 2 * 4096)], 7),
        Ok(true)
    );
    assert_eq!(s.hw().unpin_calls, 0);
    assert_eq!(s.hw().pinned(), 4);
    let syncs = s.hw().syncs;
    let out = s.poll(1);
    assert_eq!(out.len(), 1);
    assert_eq!(s.hw().syncs, syncs + 1);
    assert_eq!((s.hw().unpin_calls, s.hw().pinned()), (1, 2));
    // Deferred: answered at once, frames pinned until the queue's flush.
    let fb = Frames::new(B).take(3, true);
    let vb = map(
        &mut s,
        2,
        B,
        Dir::FromDevice,
        &[Extent::new(0, 3 * 4096)],
        &fb,
        0,
    )
    .unwrap();
    assert_eq!(
        unmap(&mut s, 3, B, &[Extent::new(vb[0].get(), 3 * 4096)], 8),
        Ok(false)
    );
    assert!(s.poll(4).is_empty());
    assert!(fb.iter().all(|f| s.hw().pins.contains_key(&f.get())));
    let unpins = s.hw().unpin_calls;
    s.poll(3 + 10_000);
    assert_eq!(s.hw().unpin_calls, unpins + 1);
    assert!(fb.iter().all(|f| !s.hw().pins.contains_key(&f.get())));
    // The same frame mapped twice is pinned twice.
    let w = map_page(&mut s, 5, A, Dir::FromDevice, &fa[2..]);
    assert_eq!(s.hw().pins.get(&fa[2].get()), Some(&2));
    // Death: every live mapping's frames, one unpin call after the sync.
    let unpins = s.hw().unpin_calls;
    s.client_died(A);
    assert_eq!(s.hw().unpin_calls, unpins + 1);
    assert_eq!(s.hw().pinned(), 0, "{w:?} and v[1] unpinned");
    let st = s.server_stats();
    assert_eq!((st.pin_calls, st.pinned_frames), (3, 8));
    assert_eq!((st.unpin_calls, st.unpinned_frames), (3, 8));
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn a_refused_pin_refuses_the_map_and_changes_nothing() {
    let mut s = server(ServerConfig::default(), &[(A, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let fa = Frames::new(A).take(2, true);
    let before = s.hw().footprint();
    s.hw_mut().refuse_pin = true;
    assert_eq!(
        map(
            &mut s,
            1,
            A,
            Dir::FromDevice,
            &[Extent::new(0, 8192)],
            &fa,
            0
        ),
        Err(ApiError::NotGranted)
    );
    assert_eq!(s.hw().footprint(), before);
    assert_eq!(s.hw().pinned(), 0);
    assert_eq!(s.server_stats().pin_refusals, 1);
    assert_eq!(s.stats(A).unwrap().iova_bytes_in_use, 0);
}

#[test]
fn a_map_that_fails_after_pinning_unpins_without_leaking() {
    // An IOVA window of one page: the second range of a map cannot get
    // IOVAs, nothing is written, the pins go at once. (A quota wider than
    // the window, so that the window refuses.)
    let wide = iommu_api::ClientQuota {
        mapped_bytes: 1 << 30,
        mappings: 1024,
        table_pages: 64,
        iova_bytes: 1 << 30,
    };
    let cfg = ServerConfig {
        quota_untrusted: wide,
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(A, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 25).unwrap();
    let fa = Frames::new(A).take(1, true);
    let big = 1u64 << 25;
    let many = Frames::new(B).take((big / PAGE_SIZE) as usize + 1, true);
    let r = map(
        &mut s,
        1,
        A,
        Dir::FromDevice,
        &[Extent::new(0, big + 4096)],
        &many,
        0,
    );
    assert_eq!(r, Err(ApiError::IovaExhausted));
    assert_eq!(s.hw().pinned(), 0);
    assert_eq!(s.hw().pin_calls, s.hw().unpin_calls);
    let _ = map_page(&mut s, 2, A, Dir::FromDevice, &fa);
    assert_eq!(s.hw().pinned(), 1);
}
