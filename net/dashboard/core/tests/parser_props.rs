//! The request parser on any bytes: it never panics, never accepts a head
//! over `MAX_HEAD` bytes, and accepts only `GET` heads that end in CRLF
//! CRLF; valid requests of any shape parse to their path.

use dashboard_core::Status;
use dashboard_core::http::{MAX_HEAD, Parsed, parse};
use dashboard_core::serve::{Answer, answer};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_and_never_accepts_past_the_limit(bytes in proptest::collection::vec(any::<u8>(), 0..3 * MAX_HEAD)) {
        match parse(&bytes) {
            Parsed::Get(r) => {
                prop_assert!(r.head_len <= MAX_HEAD);
                prop_assert!(bytes[..r.head_len].ends_with(b"\r\n\r\n"));
                prop_assert!(bytes.starts_with(b"GET /"));
            }
            Parsed::Incomplete => prop_assert!(bytes.len() < MAX_HEAD),
            Parsed::Bad(_) => {}
        }
        let _ = answer(&bytes);
    }

    #[test]
    fn any_prefix_of_a_valid_request_reads_more_then_parses(
        path in "/[a-z0-9._-]{0,40}",
        headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,60}"), 0..10),
    ) {
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        for (n, v) in &headers {
            if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let b = req.as_bytes();
        for cut in 0..b.len() {
            prop_assert_eq!(parse(&b[..cut]), Parsed::Incomplete);
        }
        match parse(b) {
            Parsed::Get(r) => {
                prop_assert_eq!(r.path, path.as_str());
                prop_assert_eq!(r.head_len, b.len());
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn an_oversized_head_is_400(fill in 0usize..2000, extra in 1usize..3000) {
        let mut req = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        req.resize(req.len() + fill, b'a');
        // Push it past the limit before the end of the head.
        while req.len() + 4 < MAX_HEAD + extra {
            req.push(b'b');
        }
        req.extend_from_slice(b"\r\n\r\n");
        prop_assert_eq!(parse(&req), Parsed::Bad(Status::BadRequest));
        prop_assert_eq!(answer(&req), Answer::Refuse(Status::BadRequest));
    }
}

mod conn {
    use super::*;
    use dashboard_core::Snapshot;
    use dashboard_core::conn::{Conn, Outcome, serve_one};

    struct Chunks(Vec<Vec<u8>>, Vec<u8>);

    impl Conn for Chunks {
        type Error = ();
        fn recv(&mut self, buf: &mut [u8], _wait_ms: u64) -> Result<usize, ()> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let c = self.0.remove(0);
            let k = c.len().min(buf.len());
            buf[..k].copy_from_slice(&c[..k]);
            Ok(k)
        }
        fn timed_out(_: &()) -> bool {
            false
        }
        fn send(&mut self, b: &[u8]) -> Result<usize, ()> {
            self.1.extend_from_slice(b);
            Ok(b.len())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever a peer sends, in whatever pieces: no panic, and either
        /// the peer closed first or one whole HTTP answer went out.
        #[test]
        fn any_peer_gets_one_answer_or_nothing(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..600), 0..12),
        ) {
            let mut c = Chunks(chunks, Vec::new());
            match serve_one(&mut c, || 0, 1, || Some(Snapshot::default())) {
                Outcome::Answered(s) => {
                    let line = format!("HTTP/1.1 {} ", s.code());
                    prop_assert!(c.1.starts_with(line.as_bytes()));
                }
                Outcome::PeerClosed => prop_assert!(c.1.is_empty()),
                Outcome::SocketError => prop_assert!(false),
            }
        }
    }
}
