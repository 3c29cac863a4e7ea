//! Unit tests of IPAM: parsing, pools, allocation, names and MTUs.
use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn set(ips: &[&str]) -> BTreeSet<Ipv4Addr> {
    ips.iter().map(|s| ip(s)).collect()
}

fn pool(subnet: &str, range: Option<&str>, gw: Option<&str>) -> Pool {
    Pool::new(net(subnet), range.map(net), gw.map(ip)).unwrap()
}

fn assert_one_line(e: &impl fmt::Display) {
    let s = e.to_string();
    assert!(!s.is_empty());
    assert!(!s.contains('\n'), "multi-line message: {s}");
}

// ---------- parsing ----------

#[test]
fn parse_subnet_accepts_valid() {
    assert_eq!(parse_subnet("10.0.0.0/24").unwrap(), net("10.0.0.0/24"));
    assert_eq!(parse_subnet("172.17.0.0/16").unwrap(), net("172.17.0.0/16"));
    assert_eq!(parse_subnet("0.0.0.0/0").unwrap(), net("0.0.0.0/0"));
    assert_eq!(parse_subnet("10.1.2.3/32").unwrap(), net("10.1.2.3/32"));
    assert_eq!(parse_subnet("10.0.0.0/8").unwrap(), net("10.0.0.0/8"));
}

#[test]
fn parse_subnet_rejects_garbage() {
    for bad in [
        "",
        "10.0.0.0",
        "10.0.0.0/",
        "/24",
        "10.0.0/24",
        "10.0.0.0.0/24",
        "256.0.0.0/24",
        "10.0.0.0/33",
        "10.0.0.0/100",
        "10.0.0.0/-1",
        "10.0.0.0/+24",
        "10.0.0.0/024",
        "010.0.0.0/24",
        "10.0.0.0/24/24",
        " 10.0.0.0/24",
        "10.0.0.0/24 ",
        "10.0.0.0 /24",
        "abc",
        "fe80::/64",
        "10.0.0.0/2a",
    ] {
        assert_eq!(
            parse_subnet(bad),
            Err(IpamError::InvalidCidr(bad.to_string())),
            "input {bad:?}"
        );
    }
}

#[test]
fn parse_subnet_host_bits() {
    let e = parse_subnet("10.0.0.1/24").unwrap_err();
    assert_eq!(e, IpamError::HostBitsSet("10.0.0.1/24".into()));
    assert_eq!(
        e.to_string(),
        "subnet 10.0.0.1/24 has host bits set (did you mean 10.0.0.0/24?)"
    );
    assert_eq!(
        parse_subnet("172.17.5.0/16"),
        Err(IpamError::HostBitsSet("172.17.5.0/16".into()))
    );
    assert_eq!(
        parse_subnet("1.0.0.0/0"),
        Err(IpamError::HostBitsSet("1.0.0.0/0".into()))
    );
}

#[test]
fn parse_ip_strict() {
    assert_eq!(parse_ip("10.0.0.2").unwrap(), ip("10.0.0.2"));
    assert_eq!(parse_ip("0.0.0.0").unwrap(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(parse_ip("255.255.255.255").unwrap(), Ipv4Addr::BROADCAST);
    for bad in [
        "",
        "10.0.0",
        "10.0.0.256",
        "10.0.0.1/32",
        "010.0.0.1",
        " 10.0.0.1",
        "10.0.0.1 ",
        "::1",
        "x",
        "10.0.0.-1",
    ] {
        assert_eq!(
            parse_ip(bad),
            Err(IpamError::InvalidIp(bad.to_string())),
            "input {bad:?}"
        );
    }
}

#[test]
fn parse_error_messages() {
    let e = parse_subnet("nope").unwrap_err();
    assert!(e.to_string().starts_with("invalid CIDR \"nope\": "), "{e}");
    let e = parse_ip("1.2.3").unwrap_err();
    assert!(
        e.to_string().starts_with("invalid IP address \"1.2.3\""),
        "{e}"
    );
    // control characters are escaped so the message stays on one line
    let e = parse_subnet("10.0.0.0/24\nx").unwrap_err();
    assert_one_line(&e);
    let e = parse_ip("1.2.3.4\n").unwrap_err();
    assert_one_line(&e);
}

// ---------- Pool::new ----------

#[test]
fn pool_default_gateway_is_first_host() {
    let p = Pool::new(net("10.0.0.0/24"), None, None).unwrap();
    assert_eq!(p.gateway, ip("10.0.0.1"));
    assert_eq!(p.subnet, net("10.0.0.0/24"));
    assert_eq!(p.range, None);
    let p = Pool::new(net("172.20.0.0/16"), Some(net("172.20.5.0/24")), None).unwrap();
    assert_eq!(p.gateway, ip("172.20.0.1"));
}

#[test]
fn pool_explicit_gateway() {
    let p = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.0.254"))).unwrap();
    assert_eq!(p.gateway, ip("10.0.0.254"));
}

#[test]
fn pool_gateway_outside() {
    let e = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.1.1"))).unwrap_err();
    assert_eq!(
        e,
        IpamError::GatewayOutsideSubnet {
            gateway: ip("10.0.1.1"),
            subnet: net("10.0.0.0/24")
        }
    );
    assert_eq!(
        e.to_string(),
        "gateway 10.0.1.1 is outside subnet 10.0.0.0/24"
    );
}

#[test]
fn pool_gateway_reserved() {
    for gw in ["10.0.0.0", "10.0.0.255"] {
        let e = Pool::new(net("10.0.0.0/24"), None, Some(ip(gw))).unwrap_err();
        assert_eq!(
            e,
            IpamError::GatewayReserved {
                gateway: ip(gw),
                subnet: net("10.0.0.0/24")
            }
        );
        let msg = e.to_string();
        assert!(msg.contains(gw) && msg.contains("10.0.0.0/24"), "{msg}");
    }
    let e = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.0.255"))).unwrap_err();
    assert!(e.to_string().contains("broadcast"));
    let e = Pool::new(net("10.0.0.0/24"), None, Some(ip("10.0.0.0"))).unwrap_err();
    assert!(e.to_string().contains("network address"));
}

#[test]
fn pool_range_outside() {
    let e = Pool::new(net("10.0.0.0/24"), Some(net("10.0.1.0/28")), None).unwrap_err();
    assert_eq!(
        e,
        IpamError::RangeOutsideSubnet {
            range: net("10.0.1.0/28"),
            subnet: net("10.0.0.0/24")
        }
    );
    assert_eq!(
        e.to_string(),
        "ip-range 10.0.1.0/28 is outside subnet 10.0.0.0/24"
    );
    // a range larger than (containing) the subnet is also outside
    let e = Pool::new(net("10.0.0.0/24"), Some(net("10.0.0.0/16")), None).unwrap_err();
    assert!(matches!(e, IpamError::RangeOutsideSubnet { .. }));
}

#[test]
fn pool_range_equal_to_subnet_ok() {
    let p = Pool::new(net("10.0.0.0/24"), Some(net("10.0.0.0/24")), None).unwrap();
    assert_eq!(p.capacity(), 253);
}

#[test]
fn pool_range_host_bits() {
    let range = Ipv4Net::new(ip("10.0.0.5"), 28).unwrap();
    let e = Pool::new(net("10.0.0.0/24"), Some(range), None).unwrap_err();
    assert_eq!(e, IpamError::HostBitsSet("10.0.0.5/28".into()));
    assert_eq!(
        e.to_string(),
        "subnet 10.0.0.5/28 has host bits set (did you mean 10.0.0.0/28?)"
    );
}

#[test]
fn pool_subnet_host_bits() {
    let subnet = Ipv4Net::new(ip("10.0.0.7"), 24).unwrap();
    let e = Pool::new(subnet, None, None).unwrap_err();
    assert_eq!(e, IpamError::HostBitsSet("10.0.0.7/24".into()));
}

#[test]
fn pool_slash30_works() {
    let p = Pool::new(net("192.168.9.4/30"), None, None).unwrap();
    assert_eq!(p.gateway, ip("192.168.9.5"));
    assert_eq!(p.capacity(), 1);
    let used = BTreeSet::new();
    assert_eq!(p.allocate(&used, None).unwrap(), ip("192.168.9.6"));
    let used = set(&["192.168.9.6"]);
    assert_eq!(
        p.allocate(&used, None),
        Err(IpamError::Exhausted(net("192.168.9.4/30")))
    );
}

#[test]
fn pool_slash31_and_slash32_rejected() {
    for s in ["10.0.0.0/31", "10.0.0.0/32"] {
        let e = Pool::new(net(s), None, None).unwrap_err();
        assert_eq!(e, IpamError::SubnetTooSmall(net(s)));
        assert!(e.to_string().contains(s));
    }
    // even with an explicit gateway
    let e = Pool::new(net("10.0.0.0/31"), None, Some(ip("10.0.0.1"))).unwrap_err();
    assert_eq!(e, IpamError::SubnetTooSmall(net("10.0.0.0/31")));
}

#[test]
fn pool_is_serde_and_clone() {
    // Serialize/Deserialize are derived; check the bounds hold (no
    // serializer crate is a dependency of this module).
    fn assert_serde<T: serde::Serialize + for<'de> serde::Deserialize<'de>>() {}
    assert_serde::<Pool>();
    let p = pool("10.0.0.0/24", None, None);
    assert_eq!(p.clone(), p);
}

// ---------- overlap ----------

#[test]
fn overlap_disjoint_ok() {
    let others = [
        ("a", net("10.0.0.0/24")),
        ("b", net("10.0.2.0/24")),
        ("c", net("192.168.0.0/16")),
    ];
    assert_eq!(Pool::check_overlap(net("10.0.1.0/24"), others), Ok(()));
    assert_eq!(Pool::check_overlap(net("10.0.1.0/24"), []), Ok(()));
    // adjacent but not overlapping
    let others = [("a", net("10.0.0.0/25"))];
    assert_eq!(Pool::check_overlap(net("10.0.0.128/25"), others), Ok(()));
}

#[test]
fn overlap_new_contains_existing() {
    let others = [("ok", net("192.168.0.0/24")), ("db", net("10.0.5.0/24"))];
    let e = Pool::check_overlap(net("10.0.0.0/16"), others).unwrap_err();
    assert_eq!(
        e,
        IpamError::Overlap {
            subnet: net("10.0.0.0/16"),
            other: net("10.0.5.0/24"),
            network: "db".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "subnet 10.0.0.0/16 overlaps subnet 10.0.5.0/24 of network \"db\""
    );
}

#[test]
fn overlap_existing_contains_new() {
    let others = [("big", net("10.0.0.0/8"))];
    let e = Pool::check_overlap(net("10.200.3.0/24"), others).unwrap_err();
    assert_eq!(
        e,
        IpamError::Overlap {
            subnet: net("10.200.3.0/24"),
            other: net("10.0.0.0/8"),
            network: "big".into()
        }
    );
}

#[test]
fn overlap_identical_and_first_clash_reported() {
    let others = [
        ("x", net("172.16.0.0/24")),
        ("first", net("10.0.0.0/24")),
        ("second", net("10.0.0.0/16")),
    ];
    let e = Pool::check_overlap(net("10.0.0.0/24"), others).unwrap_err();
    match e {
        IpamError::Overlap { network, .. } => assert_eq!(network, "first"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn overlap_accepts_owned_names_iterator() {
    let names = [String::from("n1"), String::from("n2")];
    let nets = [net("10.1.0.0/16"), net("10.2.0.0/16")];
    let it = names.iter().map(String::as_str).zip(nets);
    let e = Pool::check_overlap(net("10.2.3.0/24"), it).unwrap_err();
    assert!(matches!(e, IpamError::Overlap { ref network, .. } if network == "n2"));
}

mod allocation;
