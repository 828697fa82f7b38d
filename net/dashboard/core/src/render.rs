//! The two pages, from one [`Snapshot`] of the IOMMU server's figures:
//! [`html`] (`GET /`: a table of clients and the server's totals, which
//! reloads itself every [`REFRESH_S`] seconds) and [`json`]
//! (`GET /stats.json`, the same figures). Both are written by hand: the
//! JSON is small and flat, and no serializer is needed for it.
//!
//! It must never put text into a page unescaped (client names come from
//! the system description, but are escaped anyway), and never show a
//! figure it was not given.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use iommu_api::{ClientSummary, InvalidationPolicy, ServerTotals, TrustLevel};

/// Seconds between the page's reloads (`<meta http-equiv="refresh">`).
pub const REFRESH_S: u32 = 1;

/// The figures one answer shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The server's totals.
    pub totals: ServerTotals,
    /// Every client, in badge order.
    pub clients: Vec<ClientSummary>,
    /// Milliseconds since the dashboard started (for the page's footer).
    pub uptime_ms: u64,
    /// Requests the dashboard answered before this one.
    pub served: u64,
}

/// The system-description spelling of a trust level.
pub const fn trust_name(t: TrustLevel) -> &'static str {
    match t {
        TrustLevel::Untrusted => "untrusted",
        TrustLevel::Trusted => "trusted",
        TrustLevel::Bench => "bench",
    }
}

/// The policy family: `strict`, `strict-per-unmap`, `deferred` or `bypass`.
pub const fn policy_name(p: InvalidationPolicy) -> &'static str {
    match p {
        InvalidationPolicy::Strict => "strict",
        InvalidationPolicy::StrictPerUnmap => "strict-per-unmap",
        InvalidationPolicy::Deferred { .. } => "deferred",
        InvalidationPolicy::Bypass => "bypass",
    }
}

/// Appends `s` with `<`, `>`, `&`, `"` and `'` escaped.
fn html_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Appends `s` as a JSON string (RFC 8259 §7), quotes included.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `GET /`: the page.
pub fn html(s: &Snapshot) -> String {
    let mut o = String::new();
    let t = &s.totals;
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <title>IOMMU dashboard</title>\
         <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 8px;text-align:right}}\
         td.l,th.l{{text-align:left}}tr.q{{background:#fcc}}tr.d{{background:#ffc}}</style>\
         </head><body>\n<h1>IOMMU server</h1>\n"
    );
    o.push_str(
        "<table id=\"clients\"><tr><th>badge</th><th class=\"l\">client</th><th class=\"l\">trust</th>\
         <th class=\"l\">policy</th><th title=\"map requests accepted\">maps</th>\
         <th title=\"ranges unmapped\">unmaps</th><th>TLBI</th><th>syncs</th>\
         <th>faults</th><th class=\"l\">demoted</th><th class=\"l\">quarantined</th>\
         <th>IOVA bytes</th></tr>\n",
    );
    for c in &s.clients {
        let class = if c.quarantined {
            " class=\"q\""
        } else if c.demoted {
            " class=\"d\""
        } else {
            ""
        };
        let _ = write!(o, "<tr{class}><td>{}</td><td class=\"l\">", c.badge);
        html_escape(&mut o, c.name());
        let _ = writeln!(
            o,
            "</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td>{}</td></tr>",
            trust_name(c.trust),
            c.policy,
            c.maps,
            c.unmaps,
            c.tlbi_commands,
            c.syncs,
            c.faults,
            yes_no(c.demoted),
            yes_no(c.quarantined),
            c.iova_bytes_in_use
        );
    }
    o.push_str(
        "</table>\n<p>maps: map requests accepted (each maps one or more \
         ranges); unmaps: ranges unmapped; syncs: CMD_SYNCs the client's \
         unmaps took part in.</p>\n<h2>Totals</h2>\n<table id=\"totals\">\n",
    );
    for (name, v) in totals_fields(t) {
        let _ = writeln!(o, "<tr><th class=\"l\">{name}</th><td>{v}</td></tr>");
    }
    let _ = write!(
        o,
        "</table>\n<p>up {}.{:03} s, {} requests served; \
         <a href=\"/stats.json\">stats.json</a></p>\n</body></html>\n",
        s.uptime_ms / 1000,
        s.uptime_ms % 1000,
        s.served
    );
    o
}

/// The totals by name, in wire order.
fn totals_fields(t: &ServerTotals) -> [(&'static str, u64); ServerTotals::FIELDS] {
    let v = t.to_array();
    let names = [
        "clients",
        "maps",
        "unmaps",
        "iova_bytes_in_use",
        "doorbells",
        "syncs",
        "tlbi_commands",
        "cfgi_commands",
        "events",
        "unattributed_events",
        "hw_errors",
        "quarantines",
        "demotions",
        "pinned_frames",
        "unpinned_frames",
        "event_overflows",
    ];
    let mut out = [("", 0); ServerTotals::FIELDS];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = (names[i], v[i]);
    }
    out
}

/// `GET /stats.json`: `{"server": {totals}, "clients": [{...}],
/// "uptime_ms": n, "served": n}`.
pub fn json(s: &Snapshot) -> String {
    let mut o = String::from("{\"server\":{");
    for (i, (name, v)) in totals_fields(&s.totals).iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(o, "{sep}\"{name}\":{v}");
    }
    o.push_str("},\"clients\":[");
    for (i, c) in s.clients.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{{\"badge\":{},\"name\":", c.badge);
        json_string(&mut o, c.name());
        let _ = write!(
            o,
            ",\"trust\":\"{}\",\"policy\":\"{}\",\"policy_detail\":\"{}\",\"strict\":{},\
             \"attached\":{},\"demoted\":{},\"quarantined\":{},\"maps\":{},\"unmaps\":{},\
             \"tlbi\":{},\"syncs\":{},\"faults\":{},\"iova_bytes\":{},\"pending_unmaps\":{},\
             \"mappings\":{}}}",
            trust_name(c.trust),
            policy_name(c.policy),
            c.policy,
            c.policy.holds_reply(),
            c.attached,
            c.demoted,
            c.quarantined,
            c.maps,
            c.unmaps,
            c.tlbi_commands,
            c.syncs,
            c.faults,
            c.iova_bytes_in_use,
            c.pending_unmaps,
            c.mappings
        );
    }
    let _ = write!(
        o,
        "],\"uptime_ms\":{},\"served\":{}}}",
        s.uptime_ms, s.served
    );
    o
}
