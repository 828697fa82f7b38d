//! Sanity of the projection: monotonic in every count, bypass the ceiling,
//! ratios within their group, model overrides checked.

use projection::{Counts, Key, Mode, Model, ModelError, project, project_all};
use proptest::prelude::*;

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Strict),
        Just(Mode::StrictPerUnmap),
        Just(Mode::Deferred {
            max_entries: 256,
            max_age_us: 10_000
        }),
        Just(Mode::Bypass),
    ]
}

fn counts() -> impl Strategy<Value = Counts> {
    (
        mode(),
        0u32..512,
        0.0..8.0f64,
        0.0..4.0f64,
        0.0..2.0f64,
        0.0..4.0f64,
        0.0..2.0f64,
        0.0..2.0f64,
        1.0..4.0f64,
    )
        .prop_map(
            |(mode, queue_depth, ipc, tlbi, syncs, doorbells, maps, unmaps, pages)| Counts {
                mode,
                ios: 1000,
                queue_depth,
                ipc_round_trips: ipc,
                tlbi_commands: tlbi,
                cmd_syncs: syncs,
                doorbells,
                map_requests: maps,
                unmap_requests: unmaps,
                pages_per_request: pages,
            },
        )
}

proptest! {
    /// More syncs per I/O never raise IOPS, in any mode.
    #[test]
    fn more_syncs_never_help(c in counts(), extra in 0.0..2.0f64) {
        let m = Model::default();
        let more = Counts { cmd_syncs: c.cmd_syncs + extra, ..c };
        prop_assert!(project(&m, &more).iops <= project(&m, &c).iops);
    }

    /// Nor does more of any other counted operation.
    #[test]
    fn more_of_anything_never_helps(c in counts(), extra in 0.0..2.0f64, which in 0usize..6) {
        let m = Model::default();
        let mut more = c;
        match which {
            0 => more.ipc_round_trips += extra,
            1 => more.tlbi_commands += extra,
            2 => more.doorbells += extra,
            3 => more.map_requests += extra,
            4 => more.unmap_requests += extra,
            _ => more.pages_per_request += extra,
        }
        prop_assert!(project(&m, &more).iops <= project(&m, &c).iops);
    }

    /// Bypass (the same client IPCs, no IOMMU work) is at least every other
    /// mode of its group: every ratio is ≤ 1.
    #[test]
    fn bypass_is_the_ceiling(c in counts(), client_ipc in 0.0..4.0f64) {
        let m = Model::default();
        let other = Counts { ipc_round_trips: c.ipc_round_trips + client_ipc, ..c };
        let bypass = Counts {
            mode: Mode::Bypass,
            ipc_round_trips: client_ipc,
            ..Counts { queue_depth: c.queue_depth, ios: c.ios, ..Counts::default() }
        };
        let qd = c.queue_depth;
        let out = project_all(&m, &[
            (Key::new("nvme", "w", qd, &other.mode.to_string()), other),
            (Key::new("nvme", "w", qd, "bypass"), bypass),
        ]);
        if let Some(r) = out[0].1.ratio_to_bypass {
            prop_assert!(r <= 1.0 + 1e-12, "ratio {}", r);
        } else {
            prop_assert_eq!(qd, 0, "no ratio only when bypass projects 0 IOPS");
        }
        prop_assert!(out[1].1.iops >= out[0].1.iops);
    }
}

#[test]
fn ratios_stay_within_their_group() {
    let m = Model::default();
    let strict = Counts {
        mode: Mode::Strict,
        queue_depth: 32,
        ipc_round_trips: 2.0,
        tlbi_commands: 1.0,
        cmd_syncs: 0.1,
        doorbells: 0.1,
        map_requests: 1.0,
        unmap_requests: 1.0,
        ..Counts::default()
    };
    let bypass = |qd| Counts {
        queue_depth: qd,
        ipc_round_trips: 1.0,
        ..Counts::default()
    };
    let out = project_all(
        &m,
        &[
            (Key::new("nvme", "rr", 32, "strict"), strict),
            (Key::new("nvme", "rr", 8, "bypass"), bypass(8)),
            (Key::new("virtio-blk", "rr", 32, "bypass"), bypass(32)),
            (Key::new("nvme", "rr", 32, "bypass"), bypass(32)),
            (
                Key::new("nvme", "rr", 1, "strict"),
                Counts {
                    queue_depth: 1,
                    ..strict
                },
            ),
        ],
    );
    let r = out[0].1.ratio_to_bypass.unwrap();
    assert!((r - out[0].1.iops / out[3].1.iops).abs() < 1e-12);
    assert_eq!(out[3].1.ratio_to_bypass, Some(1.0));
    assert_eq!(out[4].1.ratio_to_bypass, None, "no bypass at QD 1");
    assert_eq!(out[0].0, Key::new("nvme", "rr", 32, "strict"), "order kept");
}

#[test]
fn toml_overrides_and_refusals() {
    let m = Model::from_toml("sync_wait_us = 1.5\ncores = 2\n").unwrap();
    assert_eq!(m.sync_wait_us, 1.5);
    assert_eq!(m.cores, 2);
    assert_eq!(m.device_latency_us, Model::default().device_latency_us);
    assert_eq!(Model::from_toml("").unwrap(), Model::default());
    assert!(matches!(
        Model::from_toml("sync_wait = 1.0"),
        Err(ModelError::Toml(_))
    ));
    assert!(matches!(
        Model::from_toml("sync_wait_us = \"fast\""),
        Err(ModelError::Toml(_))
    ));
    assert_eq!(
        Model::from_toml("doorbell_us = -0.1"),
        Err(ModelError::Invalid {
            field: "doorbell_us",
            reason: "must be a finite number ≥ 0"
        })
    );
    assert!(matches!(
        Model::from_toml("cores = 0"),
        Err(ModelError::Invalid { field: "cores", .. })
    ));
    assert!(matches!(
        Model::from_toml("device_max_iops = 0.0"),
        Err(ModelError::Invalid { .. })
    ));
}

#[test]
fn counts_read_from_toml_with_mode_names() {
    let c: Counts = toml::from_str(
        "mode = \"deferred:128:500\"\nios = 10000\nqueue_depth = 32\nipc_round_trips = 2.1\n\
         tlbi_commands = 0.01\ncmd_syncs = 0.01\ndoorbells = 0.01\nmap_requests = 1.0\nunmap_requests = 1.0\n",
    )
    .unwrap();
    assert_eq!(
        c.mode,
        Mode::Deferred {
            max_entries: 128,
            max_age_us: 500
        }
    );
    assert_eq!(c.pages_per_request, 1.0);
    assert!(toml::from_str::<Counts>("mode = \"lazy\"\nios = 1\nqueue_depth = 1\nipc_round_trips = 0.0\ntlbi_commands = 0.0\ncmd_syncs = 0.0\ndoorbells = 0.0\nmap_requests = 0.0\nunmap_requests = 0.0\n").is_err());
    let back = toml::to_string(&c).unwrap();
    assert!(back.contains("mode = \"deferred:128:500\""), "{back}");
}

#[test]
fn a_sync_costs_its_wait_on_the_cpu_path() {
    let m = Model::default();
    let base = Counts {
        queue_depth: 256,
        ..Counts::default()
    };
    let one = Counts {
        mode: Mode::StrictPerUnmap,
        cmd_syncs: 1.0,
        ..base
    };
    let d = project(&m, &one).cpu.total_us() - project(&m, &base).cpu.total_us();
    assert!((d - (m.sync_wait_us + m.cmd_write_us)).abs() < 1e-12);
    // A strict I/O whose sync is shared still waits a whole sync.
    let shared = Counts {
        mode: Mode::Strict,
        cmd_syncs: 0.25,
        ..base
    };
    let p = project(&m, &shared);
    assert!((p.latency_added_us - p.cpu.total_us() - 0.75 * m.sync_wait_us).abs() < 1e-9);
    // A deferred I/O does not.
    let deferred = Counts {
        mode: "deferred".parse().unwrap(),
        ..shared
    };
    let p = project(&m, &deferred);
    assert_eq!(p.latency_added_us, p.cpu.total_us());
}
