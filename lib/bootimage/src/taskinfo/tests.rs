use super::*;
use proptest::prelude::*;

fn sample() -> Vec<u8> {
    let mut b = TaskInfoBuilder::new("echo", 2, 3);
    b.cap("ping", 0)
        .cap("wake", 1)
        .arg("role", "echo-server")
        .arg("empty", "")
        .client(Client {
            endpoint: "ping",
            badge: 4,
            name: "client-a",
            trust: "strict",
        })
        .client(Client {
            endpoint: "ping",
            badge: 5,
            name: "client-b",
            trust: "deferred:32:500",
        });
    b.build().unwrap()
}

#[test]
fn round_trip_of_a_sample() {
    let bytes = sample();
    let info = TaskInfo::parse(&bytes).unwrap();
    assert_eq!(info.name(), "echo");
    assert_eq!(info.index(), 2);
    assert_eq!(info.badge(), 3);
    assert_eq!(info.cap("ping"), Some(0));
    assert_eq!(info.cap("wake"), Some(1));
    assert_eq!(info.cap("nope"), None);
    assert_eq!(info.caps().collect::<Vec<_>>(), [("ping", 0), ("wake", 1)]);
    assert_eq!(info.arg("role"), Some("echo-server"));
    assert_eq!(info.arg("empty"), Some(""));
    assert_eq!(info.arg("nope"), None);
    assert_eq!(info.args().count(), 2);
    let clients: Vec<_> = info.clients().collect();
    assert_eq!(clients.len(), 2);
    assert_eq!(clients[1].name, "client-b");
    assert_eq!(clients[1].trust, "deferred:32:500");
    assert_eq!(clients[1].badge, 5);
    assert_eq!(clients[1].endpoint, "ping");
}

#[test]
fn parses_from_a_whole_page() {
    let mut page = sample();
    page.resize(MAX_LEN, 0xAA);
    assert_eq!(TaskInfo::parse(&page).unwrap().name(), "echo");
}

#[test]
fn builder_refuses_bad_pages() {
    let mut b = TaskInfoBuilder::new("t", 0, 1);
    b.cap("x", 0).cap("x", 1);
    assert_eq!(b.build(), Err(Error::Duplicate));
    let mut b = TaskInfoBuilder::new("t", 0, 1);
    b.arg("k", "1").arg("k", "2");
    assert_eq!(b.build(), Err(Error::Duplicate));
    let mut b = TaskInfoBuilder::new("t", 0, 1);
    b.arg("big", &"v".repeat(MAX_LEN));
    assert_eq!(b.build(), Err(Error::TooLarge));
    assert_eq!(
        TaskInfoBuilder::new("", 0, 1).build(),
        Err(Error::BadString)
    );
    let mut b = TaskInfoBuilder::new("t", 0, 1);
    for i in 0..=MAX_CAPS {
        b.cap(&format!("c{i}"), 0);
    }
    assert_eq!(b.build(), Err(Error::TooMany));
}

#[test]
fn decoder_refuses_bad_headers() {
    let good = sample();
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert_eq!(TaskInfo::parse(&bad).unwrap_err(), Error::BadMagic);
    let mut bad = good.clone();
    bad[4] = 9;
    assert_eq!(TaskInfo::parse(&bad).unwrap_err(), Error::BadVersion);
    let mut bad = good.clone();
    bad[6..8].copy_from_slice(&4097u16.to_le_bytes());
    assert_eq!(TaskInfo::parse(&bad).unwrap_err(), Error::BadLength);
    let mut bad = good.clone();
    bad[6..8].copy_from_slice(&8u16.to_le_bytes());
    assert_eq!(TaskInfo::parse(&bad).unwrap_err(), Error::BadLength);
    // A string past the declared end.
    let mut bad = good.clone();
    bad[18..20].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(TaskInfo::parse(&bad).is_err());
}

/// Touches everything a task would read, so a bad view would show.
fn read_all(info: &TaskInfo<'_>) -> usize {
    let mut n = info.name().len() + info.index() as usize + info.badge() as usize;
    for (name, i) in info.caps() {
        n += name.len() + i as usize;
        assert!(info.cap(name).is_some());
    }
    for (k, v) in info.args() {
        n += k.len() + v.len();
        assert_eq!(info.arg(k), Some(v));
    }
    for c in info.clients() {
        n += c.endpoint.len() + c.name.len() + c.trust.len();
    }
    n
}

#[test]
fn every_corruption_and_truncation_is_handled() {
    let good = sample();
    for i in 0..good.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut bad = good.clone();
            bad[i] ^= x;
            if let Ok(info) = TaskInfo::parse(&bad) {
                read_all(&info);
            }
        }
    }
    for len in 0..good.len() {
        assert!(
            TaskInfo::parse(&good[..len]).is_err(),
            "prefix {len} accepted"
        );
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{1,12}"
}

proptest! {
    #[test]
    fn round_trip(
        task in name(),
        index in any::<u32>(),
        badge in any::<u32>(),
        caps in proptest::collection::btree_map(name(), any::<u32>(), 0..10),
        args in proptest::collection::btree_map(name(), "\\PC{0,20}", 0..10),
        clients in proptest::collection::vec((name(), any::<u32>(), name(), name()), 0..8),
    ) {
        let mut b = TaskInfoBuilder::new(&task, index, badge);
        for (n, i) in &caps {
            b.cap(n, *i);
        }
        for (k, v) in &args {
            b.arg(k, v);
        }
        for (e, bd, n, t) in &clients {
            b.client(Client { endpoint: e, badge: *bd, name: n, trust: t });
        }
        let bytes = b.build().unwrap();
        let info = TaskInfo::parse(&bytes).unwrap();
        prop_assert_eq!(info.name(), task.as_str());
        prop_assert_eq!(info.index(), index);
        prop_assert_eq!(info.badge(), badge);
        let got: Vec<(String, u32)> = info.caps().map(|(n, i)| (n.into(), i)).collect();
        let want: Vec<(String, u32)> = caps.clone().into_iter().collect();
        prop_assert_eq!(got, want);
        for (k, v) in &args {
            prop_assert_eq!(info.arg(k), Some(v.as_str()));
        }
        prop_assert_eq!(info.args().count(), args.len());
        let got: Vec<_> = info
            .clients()
            .map(|c| (c.endpoint.to_owned(), c.badge, c.name.to_owned(), c.trust.to_owned()))
            .collect();
        prop_assert_eq!(got, clients);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        // Mostly past the magic and version, so the tables get parsed.
        if bytes.len() >= 6 && bytes[5] != 0 {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4..6].copy_from_slice(&VERSION.to_le_bytes());
        }
        if let Ok(info) = TaskInfo::parse(&bytes) {
            read_all(&info);
        }
    }
}
