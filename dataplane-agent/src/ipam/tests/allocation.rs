//! Unit tests of IPAM: allocation, static addresses, capacity, names, MTUs, messages.
use super::super::*;
// The fixtures of the parent test module.
use super::{assert_one_line, ip, net, pool, set};

// ---------- allocation ----------

#[test]
fn allocate_skips_network_and_gateway() {
    let p = pool("10.0.0.0/24", None, None);
    let used = BTreeSet::new();
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.2"));
}

#[test]
fn allocate_lowest_free_in_order() {
    let p = pool("10.0.0.0/24", None, None);
    let mut used = BTreeSet::new();
    let mut got = Vec::new();
    for _ in 0..5 {
        let a = p.allocate(&used, None).unwrap();
        used.insert(a);
        got.push(a);
    }
    assert_eq!(
        got,
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip)
    );
    // a hole is filled first when last is None
    used.remove(&ip("10.0.0.3"));
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.3"));
}

#[test]
fn allocate_skips_gateway_in_middle() {
    let p = pool("10.0.0.0/24", None, Some("10.0.0.5"));
    let used = set(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.6"));
    // with a custom gateway the first host is allocatable
    assert_eq!(p.allocate(&BTreeSet::new(), None).unwrap(), ip("10.0.0.1"));
}

#[test]
fn allocate_never_broadcast() {
    let p = pool("10.0.0.0/24", None, None);
    let used = BTreeSet::new();
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.253"))).unwrap(),
        ip("10.0.0.254")
    );
    // after .254 it wraps instead of returning .255
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.254"))).unwrap(),
        ip("10.0.0.2")
    );
}

#[test]
fn allocate_round_robin_after_last() {
    let p = pool("10.0.0.0/24", None, None);
    // .3 was released, but round-robin continues after last (.10)
    let used = set(&["10.0.0.2", "10.0.0.4", "10.0.0.11", "10.0.0.12"]);
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.10"))).unwrap(),
        ip("10.0.0.13")
    );
    // last itself may be free again; still pick strictly greater
    let used = BTreeSet::new();
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.7"))).unwrap(),
        ip("10.0.0.8")
    );
}

#[test]
fn allocate_round_robin_sequence() {
    let p = pool("10.0.0.0/29", None, None); // hosts .2..=.6
    let mut used = BTreeSet::new();
    let mut last = None;
    let mut got = Vec::new();
    for _ in 0..5 {
        let a = p.allocate(&used, last).unwrap();
        used.insert(a);
        last = Some(a);
        got.push(a);
    }
    assert_eq!(
        got,
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip)
    );
    assert_eq!(
        p.allocate(&used, last),
        Err(IpamError::Exhausted(net("10.0.0.0/29")))
    );
    // release .3 and .5: next after last (.6) wraps to lowest free (.3)
    used.remove(&ip("10.0.0.3"));
    used.remove(&ip("10.0.0.5"));
    let a = p.allocate(&used, last).unwrap();
    assert_eq!(a, ip("10.0.0.3"));
    used.insert(a);
    // then continues after .3 to .5, not back to the lowest
    assert_eq!(p.allocate(&used, Some(a)).unwrap(), ip("10.0.0.5"));
}

#[test]
fn allocate_wraps_when_nothing_above_last() {
    let p = pool("10.0.0.0/24", None, None);
    let mut used: BTreeSet<Ipv4Addr> = (200u32..=254)
        .map(|i| Ipv4Addr::from(u32::from(ip("10.0.0.0")) + i))
        .collect();
    used.insert(ip("10.0.0.2"));
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.199"))).unwrap(),
        ip("10.0.0.3")
    );
}

#[test]
fn allocate_last_outside_pool() {
    let p = pool("10.0.0.0/24", Some("10.0.0.128/25"), None);
    let used = BTreeSet::new();
    // last below the range: start at the range's lowest
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.5"))).unwrap(),
        ip("10.0.0.128")
    );
    // last above the subnet entirely: wrap
    assert_eq!(
        p.allocate(&used, Some(ip("192.168.0.1"))).unwrap(),
        ip("10.0.0.128")
    );
    // last at the maximum address must not overflow
    assert_eq!(
        p.allocate(&used, Some(Ipv4Addr::BROADCAST)).unwrap(),
        ip("10.0.0.128")
    );
}

#[test]
fn allocate_ignores_used_outside_pool() {
    let p = pool("10.0.0.0/24", Some("10.0.0.16/28"), None);
    let used = set(&["10.0.0.2", "10.0.0.3", "10.0.1.16", "9.0.0.1"]);
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.16"));
}

#[test]
fn allocate_within_range() {
    let p = pool("10.0.0.0/16", Some("10.0.5.0/24"), None);
    let used = BTreeSet::new();
    // range network address 10.0.5.0 is not the subnet's, so allocatable
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.5.0"));
    let used = set(&["10.0.5.0", "10.0.5.1"]);
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.5.2"));
    // range's last address 10.0.5.255 is allocatable too (not the subnet broadcast)
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.5.254"))).unwrap(),
        ip("10.0.5.255")
    );
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.5.255"))).unwrap(),
        ip("10.0.5.2")
    );
}

#[test]
fn allocate_range_containing_network_and_gateway() {
    let p = pool("10.0.0.0/24", Some("10.0.0.0/28"), None);
    let used = BTreeSet::new();
    // .0 is the subnet network, .1 the gateway
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.2"));
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.15"))).unwrap(),
        ip("10.0.0.2")
    );
    assert_eq!(p.capacity(), 14);

    // gateway in the middle of the range
    let p = pool("10.0.0.0/24", Some("10.0.0.8/29"), Some("10.0.0.10"));
    let used = set(&["10.0.0.8", "10.0.0.9"]);
    assert_eq!(p.allocate(&used, None).unwrap(), ip("10.0.0.11"));
    assert_eq!(p.capacity(), 7);
}

#[test]
fn allocate_range_containing_broadcast() {
    let p = pool("10.0.0.0/24", Some("10.0.0.240/28"), None);
    let used = BTreeSet::new();
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.253"))).unwrap(),
        ip("10.0.0.254")
    );
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.254"))).unwrap(),
        ip("10.0.0.240")
    );
    assert_eq!(p.capacity(), 15);
}

#[test]
fn allocate_range_that_is_only_reserved() {
    // a /31 range holding just the network address and the gateway
    let p = pool("10.0.0.0/24", Some("10.0.0.0/31"), None);
    assert_eq!(p.capacity(), 0);
    assert_eq!(
        p.allocate(&BTreeSet::new(), None),
        Err(IpamError::Exhausted(net("10.0.0.0/31")))
    );
}

#[test]
fn exhausted_subnet() {
    let p = pool("10.0.0.0/24", None, None);
    let used: BTreeSet<Ipv4Addr> = (2u32..=254)
        .map(|i| Ipv4Addr::from(u32::from(ip("10.0.0.0")) + i))
        .collect();
    let e = p.allocate(&used, None).unwrap_err();
    assert_eq!(e, IpamError::Exhausted(net("10.0.0.0/24")));
    assert_eq!(e.to_string(), "no free IP address left in pool 10.0.0.0/24");
    assert_eq!(
        p.allocate(&used, Some(ip("10.0.0.100"))),
        Err(IpamError::Exhausted(net("10.0.0.0/24")))
    );
}

#[test]
fn exhausted_range() {
    let p = pool("10.0.0.0/16", Some("10.0.1.0/30"), None);
    let used = set(&["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3"]);
    let e = p.allocate(&used, Some(ip("10.0.1.1"))).unwrap_err();
    assert_eq!(e, IpamError::Exhausted(net("10.0.1.0/30")));
    // plenty of room elsewhere in the subnet does not matter
    assert!(p.check_static(ip("10.0.2.7"), &used).is_ok());
}

#[test]
fn allocate_large_subnet_many_used_is_fast() {
    let p = pool("10.0.0.0/8", None, None);
    let base = u32::from(ip("10.0.0.2"));
    let mut used: BTreeSet<Ipv4Addr> = (0..100_000u32).map(|i| Ipv4Addr::from(base + i)).collect();
    let after = Ipv4Addr::from(base + 100_000);
    assert_eq!(p.allocate(&used, None).unwrap(), after);
    assert_eq!(p.allocate(&used, Some(ip("10.0.0.50"))).unwrap(), after);

    // near the top of the /8: wrap around past the contiguous block
    assert_eq!(
        p.allocate(&used, Some(ip("10.255.255.254"))).unwrap(),
        after
    );

    // many successive round-robin allocations stay cheap
    let mut last = Some(after);
    used.insert(after);
    for _ in 0..10_000 {
        let a = p.allocate(&used, last).unwrap();
        assert!(used.insert(a));
        last = Some(a);
    }
    assert_eq!(last, Some(Ipv4Addr::from(base + 110_000)));

    // scattered used addresses (every other one) in a large pool
    let scattered: BTreeSet<Ipv4Addr> = (0..100_000u32)
        .map(|i| Ipv4Addr::from(base + 2 * i))
        .collect();
    assert_eq!(
        p.allocate(&scattered, None).unwrap(),
        Ipv4Addr::from(base + 1)
    );
}

#[test]
fn allocate_whole_ipv4_space_no_overflow() {
    let p = pool("0.0.0.0/0", None, None);
    assert_eq!(p.gateway, ip("0.0.0.1"));
    let used = BTreeSet::new();
    assert_eq!(p.allocate(&used, None).unwrap(), ip("0.0.0.2"));
    assert_eq!(
        p.allocate(&used, Some(ip("255.255.255.253"))).unwrap(),
        ip("255.255.255.254")
    );
    assert_eq!(
        p.allocate(&used, Some(ip("255.255.255.254"))).unwrap(),
        ip("0.0.0.2")
    );
    assert_eq!(p.capacity(), (1u64 << 32) - 3);
}

// ---------- static addresses ----------

#[test]
fn static_ok_including_outside_range() {
    let p = pool("10.0.0.0/24", Some("10.0.0.128/25"), None);
    let used = set(&["10.0.0.129"]);
    assert_eq!(p.check_static(ip("10.0.0.5"), &used), Ok(()));
    assert_eq!(p.check_static(ip("10.0.0.130"), &used), Ok(()));
    assert_eq!(p.check_static(ip("10.0.0.254"), &used), Ok(()));
}

#[test]
fn static_outside_subnet() {
    let p = pool("10.0.0.0/24", None, None);
    let e = p
        .check_static(ip("10.0.1.5"), &BTreeSet::new())
        .unwrap_err();
    assert_eq!(
        e,
        IpamError::IpOutsideSubnet {
            ip: ip("10.0.1.5"),
            subnet: net("10.0.0.0/24")
        }
    );
    assert_eq!(
        e.to_string(),
        "IP address 10.0.1.5 is outside subnet 10.0.0.0/24"
    );
}

#[test]
fn static_reserved() {
    let p = pool("10.0.0.0/24", None, None);
    for a in ["10.0.0.0", "10.0.0.255"] {
        let e = p.check_static(ip(a), &BTreeSet::new()).unwrap_err();
        assert_eq!(e, IpamError::IpReserved(ip(a)));
        assert!(e.to_string().contains(a));
    }
}

#[test]
fn static_gateway() {
    let p = pool("10.0.0.0/24", None, Some("10.0.0.254"));
    let e = p
        .check_static(ip("10.0.0.254"), &BTreeSet::new())
        .unwrap_err();
    assert_eq!(e, IpamError::IpIsGateway(ip("10.0.0.254")));
    assert!(e.to_string().contains("10.0.0.254"));
    // the default first host is free when the gateway is elsewhere
    assert_eq!(p.check_static(ip("10.0.0.1"), &BTreeSet::new()), Ok(()));
}

#[test]
fn static_in_use() {
    let p = pool("10.0.0.0/24", None, None);
    let used = set(&["10.0.0.7"]);
    let e = p.check_static(ip("10.0.0.7"), &used).unwrap_err();
    assert_eq!(e, IpamError::IpInUse(ip("10.0.0.7")));
    assert_eq!(e.to_string(), "IP address 10.0.0.7 is already in use");
}

// ---------- capacity ----------

#[test]
fn capacity_subnets() {
    assert_eq!(pool("10.0.0.0/24", None, None).capacity(), 253);
    assert_eq!(pool("10.0.0.0/30", None, None).capacity(), 1);
    assert_eq!(pool("10.0.0.0/29", None, None).capacity(), 5);
    assert_eq!(pool("172.17.0.0/16", None, None).capacity(), 65533);
    assert_eq!(pool("10.0.0.0/8", None, None).capacity(), (1 << 24) - 3);
}

#[test]
fn capacity_ranges() {
    // range away from all reserved addresses
    assert_eq!(
        pool("10.0.0.0/16", Some("10.0.5.0/24"), None).capacity(),
        256
    );
    // range holding the gateway only
    assert_eq!(
        pool("10.0.0.0/16", Some("10.0.5.0/24"), Some("10.0.5.1")).capacity(),
        255
    );
    // range holding network + gateway
    assert_eq!(pool("10.0.0.0/24", Some("10.0.0.0/30"), None).capacity(), 2);
    // range holding the broadcast only
    assert_eq!(
        pool("10.0.0.0/24", Some("10.0.0.252/30"), None).capacity(),
        3
    );
    // single-address range
    assert_eq!(pool("10.0.0.0/24", Some("10.0.0.9/32"), None).capacity(), 1);
}

#[test]
fn capacity_matches_exhaustive_allocation() {
    for (subnet, range, gw) in [
        ("10.0.0.0/28", None, None),
        ("10.0.0.0/28", Some("10.0.0.0/29"), None),
        ("10.0.0.0/28", Some("10.0.0.8/29"), Some("10.0.0.14")),
        ("10.0.0.0/27", Some("10.0.0.16/28"), Some("10.0.0.20")),
    ] {
        let p = pool(subnet, range, gw);
        let mut used = BTreeSet::new();
        let mut last = None;
        while let Ok(a) = p.allocate(&used, last) {
            assert!(p.check_static(a, &BTreeSet::new()).is_ok());
            assert!(used.insert(a), "allocated {a} twice");
            last = Some(a);
        }
        assert_eq!(used.len() as u64, p.capacity(), "{p:?}");
    }
}

// ---------- names ----------

#[test]
fn name_valid() {
    for n in [
        "a",
        "A",
        "0",
        "web",
        "my-net",
        "my_net.v2",
        "a-",
        "x.y_z-1",
        "9abc",
    ] {
        assert_eq!(validate_name("network", n), Ok(()), "{n}");
    }
    assert_eq!(validate_name("container", &"a".repeat(64)), Ok(()));
}

#[test]
fn name_leading_dash_or_symbol() {
    let e = validate_name("network", "-x").unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid network name \"-x\": must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and be at most 64 characters"
    );
    for n in [".x", "_x"] {
        let e = validate_name("container", n).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("invalid container name \"{n}\"")),
            "{e}"
        );
    }
}

#[test]
fn name_too_long() {
    let long = "a".repeat(65);
    let e = validate_name("container", &long).unwrap_err().to_string();
    assert!(e.contains(&long) && e.contains("64"), "{e}");
}

#[test]
fn name_empty() {
    let e = validate_name("network", "").unwrap_err().to_string();
    assert!(e.starts_with("invalid network name \"\":"), "{e}");
}

#[test]
fn name_bad_chars() {
    for n in ["a b", "a/b", "a:b", "é", "a\nb", "a@b", "ab!", "a\u{0}"] {
        let e = validate_name("network", n).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("invalid network name "), "{e}");
    }
}

// ---------- MTU ----------

#[test]
fn mtu_bounds() {
    assert_eq!(validate_mtu(67), Err(IpamError::MtuOutOfRange(67)));
    assert_eq!(validate_mtu(68), Ok(()));
    assert_eq!(validate_mtu(1500), Ok(()));
    assert_eq!(validate_mtu(9000), Ok(()));
    assert_eq!(validate_mtu(65535), Ok(()));
    assert_eq!(validate_mtu(65536), Err(IpamError::MtuOutOfRange(65536)));
    assert_eq!(validate_mtu(12), Err(IpamError::MtuOutOfRange(12)));
    assert!(validate_mtu(0).is_err());
    assert!(validate_mtu(u32::MAX).is_err());
}

// ---------- messages ----------

#[test]
fn every_error_message_is_one_line_and_names_value() {
    let n = net("10.0.0.0/24");
    let a = ip("10.0.0.9");
    let cases: Vec<(IpamError, &str)> = vec![
        (IpamError::InvalidCidr("x/y".into()), "x/y"),
        (IpamError::HostBitsSet("10.0.0.1/24".into()), "10.0.0.1/24"),
        (IpamError::HostBitsSet("garbage".into()), "garbage"),
        (
            IpamError::GatewayOutsideSubnet {
                gateway: ip("10.9.9.9"),
                subnet: n,
            },
            "10.9.9.9",
        ),
        (
            IpamError::GatewayReserved {
                gateway: ip("10.0.0.0"),
                subnet: n,
            },
            "10.0.0.0",
        ),
        (
            IpamError::RangeOutsideSubnet {
                range: net("10.1.0.0/24"),
                subnet: n,
            },
            "10.1.0.0/24",
        ),
        (IpamError::SubnetTooSmall(net("10.0.0.0/31")), "10.0.0.0/31"),
        (
            IpamError::Overlap {
                subnet: n,
                other: net("10.0.0.0/8"),
                network: "bridge".into(),
            },
            "bridge",
        ),
        (IpamError::IpOutsideSubnet { ip: a, subnet: n }, "10.0.0.9"),
        (IpamError::IpIsGateway(a), "10.0.0.9"),
        (IpamError::IpReserved(a), "10.0.0.9"),
        (IpamError::IpInUse(a), "10.0.0.9"),
        (IpamError::Exhausted(n), "10.0.0.0/24"),
        (IpamError::InvalidIp("1.2.3".into()), "1.2.3"),
    ];
    for (e, needle) in cases {
        assert_one_line(&e);
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        // usable as a boxed std error
        let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
        assert_eq!(boxed.to_string(), e.to_string());
    }
    assert_eq!(
        IpamError::HostBitsSet("garbage".into()).to_string(),
        "subnet garbage has host bits set"
    );
}
