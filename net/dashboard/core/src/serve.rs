//! Routing: what to send back for the bytes a peer sent so far. `GET /`
//! is the page, `GET /stats.json` the figures, any other path 404, a bad
//! or oversized head 400, another method 405. Every answer closes the
//! connection.
//!
//! It must never answer before the head is complete (except to refuse
//! it), and never need the figures to refuse a request (the task asks the
//! IOMMU server only for a request it will answer with them).

use alloc::vec::Vec;

use crate::http::{self, Parsed};
use crate::render::{self, Snapshot};
use crate::response::{self, Status, content_type};

/// The pages the dashboard serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `GET /`.
    Html,
    /// `GET /stats.json`.
    Json,
}

/// What to do with the bytes read so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Read more (the head is incomplete and under the limit).
    ReadMore,
    /// Fetch the figures and answer with [`page`].
    Page(Page),
    /// Send these bytes and close.
    Refuse(Status),
}

/// Classifies what a peer sent so far.
pub fn answer(buf: &[u8]) -> Answer {
    match http::parse(buf) {
        Parsed::Incomplete => Answer::ReadMore,
        Parsed::Bad(s) => Answer::Refuse(s),
        Parsed::Get(r) => match r.path {
            "/" | "/index.html" => Answer::Page(Page::Html),
            "/stats.json" => Answer::Page(Page::Json),
            _ => Answer::Refuse(Status::NotFound),
        },
    }
}

/// The whole response for `page` with the figures `snapshot`, or 503 if
/// there are none.
pub fn page(page: Page, snapshot: Option<&Snapshot>) -> Vec<u8> {
    let Some(s) = snapshot else {
        return response::error(Status::Unavailable);
    };
    match page {
        Page::Html => response::build(Status::Ok, content_type::HTML, render::html(s).as_bytes()),
        Page::Json => response::build(Status::Ok, content_type::JSON, render::json(s).as_bytes()),
    }
}

/// The whole response refusing a request with `status`.
pub fn refuse(status: Status) -> Vec<u8> {
    response::error(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_api::{ClientSummary, InvalidationPolicy, ServerTotals, TrustLevel};

    fn snapshot() -> Snapshot {
        let mut net = ClientSummary::new(
            3,
            "net<&>\"'",
            TrustLevel::Untrusted,
            InvalidationPolicy::Strict,
        );
        net.maps = 10;
        net.unmaps = 9;
        net.syncs = 4;
        net.attached = true;
        let mut blk = ClientSummary::new(
            4,
            "nvme",
            TrustLevel::Trusted,
            InvalidationPolicy::deferred(32, 1000).unwrap(),
        );
        blk.demoted = true;
        blk.quarantined = true;
        Snapshot {
            totals: ServerTotals {
                clients: 2,
                syncs: 4,
                ..ServerTotals::default()
            },
            clients: alloc::vec![net, blk],
            uptime_ms: 1500,
            served: 7,
        }
    }

    fn status_of(resp: &[u8]) -> &str {
        core::str::from_utf8(&resp[9..12]).unwrap()
    }

    #[test]
    fn each_status_is_answered() {
        let s = snapshot();
        let cases: [(&[u8], &str); 8] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "200"),
            (b"GET /stats.json HTTP/1.1\r\n\r\n", "200"),
            (b"GET /nope HTTP/1.1\r\n\r\n", "404"),
            (b"GET /stats.json/ HTTP/1.1\r\n\r\n", "404"),
            (b"POST / HTTP/1.1\r\n\r\n", "405"),
            (b"GET / HTTP/9\r\n\r\n", "400"),
            (b"\x00\x01\x02", "400"),
            (b"GET / HTTP/1.1\r\nX: \x7f\r\n\r\n", "400"),
        ];
        for (req, want) in cases {
            let resp = match answer(req) {
                Answer::Page(p) => page(p, Some(&s)),
                Answer::Refuse(st) => refuse(st),
                Answer::ReadMore => panic!("{req:?} incomplete"),
            };
            assert_eq!(status_of(&resp), want, "{req:?}");
            let text = core::str::from_utf8(&resp).unwrap();
            assert!(text.contains("\r\nConnection: close\r\n"));
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len());
        }
        assert_eq!(status_of(&page(Page::Json, None)), "503");
        assert_eq!(status_of(&refuse(Status::RequestTimeout)), "408");
        assert_eq!(answer(b"GET / HT"), Answer::ReadMore);
    }

    #[test]
    fn the_page_refreshes_itself_and_escapes_names() {
        let h = render::html(&snapshot());
        assert!(h.contains("<meta http-equiv=\"refresh\" content=\"1\">"));
        assert!(h.contains("net&lt;&amp;&gt;&quot;&#39;"));
        assert!(!h.contains("net<&>"));
        for col in [
            "trust",
            "maps",
            "unmaps",
            "TLBI",
            "syncs",
            "faults",
            "demoted",
            "quarantined",
            "IOVA bytes",
        ] {
            assert!(
                h.contains(&alloc::format!("<th>{col}</th>"))
                    || h.contains(&alloc::format!(">{col}</th>")),
                "{col}"
            );
        }
        assert!(h.contains("deferred:32:1000"));
        assert!(h.contains("<tr class=\"q\">"));
    }

    #[test]
    fn the_json_parses_and_carries_every_figure() {
        let s = snapshot();
        let v: serde_json::Value = serde_json::from_str(&render::json(&s)).unwrap();
        assert_eq!(v["server"]["clients"], 2);
        assert_eq!(v["server"]["syncs"], 4);
        assert_eq!(v["uptime_ms"], 1500);
        let c = &v["clients"][0];
        assert_eq!(c["name"], "net<&>\"'");
        assert_eq!(c["trust"], "untrusted");
        assert_eq!(c["policy"], "strict");
        assert_eq!(c["strict"], true);
        assert_eq!(
            (
                c["maps"].as_u64(),
                c["unmaps"].as_u64(),
                c["syncs"].as_u64()
            ),
            (Some(10), Some(9), Some(4))
        );
        let d = &v["clients"][1];
        assert_eq!(d["policy"], "deferred");
        assert_eq!(d["policy_detail"], "deferred:32:1000");
        assert_eq!(
            (d["demoted"].as_bool(), d["quarantined"].as_bool()),
            (Some(true), Some(true))
        );
        let empty: serde_json::Value =
            serde_json::from_str(&render::json(&Snapshot::default())).unwrap();
        assert_eq!(empty["clients"].as_array().unwrap().len(), 0);
    }
}
