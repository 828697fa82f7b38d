//! Feeds measured benchmark points to the `projection` crate's latency
//! model: per-I/O counts in, projected IOPS and ratio to the projected
//! bypass out. Owns only the mapping of field names; the model and its
//! sources live in tools/projection (MODEL.md).

use projection::{Counts, Key, Model, project_all};

use crate::bench::Point;

/// `(projected IOPS, ratio to the projected bypass)` per point; `None` for
/// a point whose mode the model does not know or whose group lacks bypass.
pub fn project(points: &[Point]) -> Vec<Option<(f64, f64)>> {
    let model = Model::default();
    let mut keep = Vec::new();
    let mut input = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let Ok(mode) = p.s("mode").parse() else {
            continue;
        };
        let key = Key::new(
            &format!("{}/{}", p.run, p.s("dev")),
            p.s("wl"),
            p.f("qd") as u32,
            p.s("mode"),
        );
        let counts = Counts {
            mode,
            ios: p.f("ios") as u64,
            queue_depth: p.f("qd") as u32,
            ipc_round_trips: p.f("ipc"),
            tlbi_commands: p.f("tlbi"),
            cmd_syncs: p.f("sync"),
            doorbells: p.f("doorbells"),
            map_requests: p.f("maps"),
            unmap_requests: p.f("unmaps"),
            // Each I/O maps and unmaps one 4 KiB page, however many I/Os a
            // request carries.
            pages_per_request: if p.f("maps") > 0.0 {
                1.0 / p.f("maps")
            } else {
                1.0
            },
        };
        keep.push(i);
        input.push((key, counts));
    }
    let mut out = vec![None; points.len()];
    for (i, (_, pr)) in keep.into_iter().zip(project_all(&model, &input)) {
        out[i] = pr.ratio_to_bypass.map(|r| (pr.iops, r));
    }
    out
}
