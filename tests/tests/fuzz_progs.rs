//! Packet fuzzing through BPF_PROG_TEST_RUN: seeded random and mutated
//! packets into each program of the datapath (the harness of
//! `tests/src/prog_run/`, maps filled like the agent fills them). Checked
//! for every packet: the verdict is one the program documents, the output
//! length is sane, and a small reference model of the policy says nothing
//! passed that the policy drops (spoofed sources, other ethertypes, other
//! networks, direct access from outside to a container).
//!
//! `DP_SOAK_SCALE` scales the count (full: 100,000 per program; CI 5,000).

mod soak_support;

use std::collections::BTreeMap;

use dataplane_tests::prog_run::{harness::*, pkt::*};
use soak_support::{count, Figures, Rng};

const ETH_IP: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const TC_VERDICTS: [u32; 3] = [TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT];
/// XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT.
const XDP_VERDICTS: [u32; 4] = [XDP_DROP, XDP_PASS, 3, 4];

const BROADCAST: [u8; 6] = [0xff; 6];

/// Addresses of the fixture's endpoints (addresses of a container subnet
/// that no endpoint has lead nowhere: the host's stack drops them).
fn is_container_ip(ip: [u8; 4]) -> bool {
    ENDPOINTS.iter().any(|e| e.ip == ip)
}

/// The network of a fixture address (172.20-23/16).
fn net_of(ip: [u8; 4]) -> Option<u8> {
    (ip[0] == 172 && (20..=23).contains(&ip[1])).then_some(ip[1])
}

fn pick<T: Copy>(rng: &mut Rng, v: &[T]) -> T {
    v[rng.index(v.len())]
}

fn rand_ip(rng: &mut Rng) -> [u8; 4] {
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    b
}

fn rand_mac(rng: &mut Rng) -> [u8; 6] {
    let mut b = [0u8; 6];
    rng.fill(&mut b);
    b
}

/// A packet: mostly well-formed IPv4/ARP with chosen addresses, then
/// mutated (bytes flipped, truncated, extended); some purely random.
fn packet(rng: &mut Rng, srcs: &[[u8; 4]], dsts: &[[u8; 4]], macs: &[[u8; 6]]) -> Vec<u8> {
    if rng.chance(15) {
        let mut p = vec![0u8; 14 + rng.index(200)];
        rng.fill(&mut p);
        return p;
    }
    let (src, dst) = (
        if rng.chance(85) {
            pick(rng, srcs)
        } else {
            rand_ip(rng)
        },
        if rng.chance(85) {
            pick(rng, dsts)
        } else {
            rand_ip(rng)
        },
    );
    let smac = if rng.chance(85) {
        pick(rng, macs)
    } else {
        rand_mac(rng)
    };
    let dmac = if rng.chance(80) {
        pick(rng, macs)
    } else {
        BROADCAST
    };
    let ethertype = match rng.below(20) {
        0 => ETH_ARP,
        1 => 0x86dd,
        2 => 0x8100,
        3 => u16::try_from(rng.below(0x10000)).unwrap(),
        _ => ETH_IP,
    };
    let mut payload = vec![0u8; rng.index(64)];
    rng.fill(&mut payload);
    let sport = pick(rng, &[40000u16, 53, 80, NAT_MIN, 61005, 0]);
    let dport = pick(rng, &[80u16, 53, 8080, 40000, NAT_MIN, 0, 65535]);
    let body = if ethertype == ETH_ARP {
        arp(pick(rng, &[1u16, 2, 3]), smac, src, rand_mac(rng), dst)
    } else {
        let proto = pick(rng, &[6u8, 17, 1, 1, 47, 132]);
        let l4 = match proto {
            6 => tcp(
                src,
                dst,
                sport,
                dport,
                u8::try_from(rng.below(256)).unwrap(),
                &payload,
            ),
            17 => udp(src, dst, sport, dport, &payload, rng.chance(50)),
            1 => icmp(pick(rng, &[0u8, 8, 3, 11, 5]), 0, sport, dport, &payload),
            _ => payload.clone(),
        };
        let mut ip = Ip4::new(src, dst, proto).ttl(pick(rng, &[64u8, 1, 0]));
        if rng.chance(10) {
            ip = ip.frag(pick(rng, &[0x2000u16, 0x0001, 0x4000]));
        }
        if rng.chance(10) {
            let mut opt = vec![0u8; 4 * (1 + rng.index(10))];
            rng.fill(&mut opt);
            ip = ip.options(&opt);
        }
        ip.build(&l4)
    };
    let mut p = eth(dmac, smac, ethertype, &body);
    // Mutations.
    if rng.chance(30) {
        for _ in 0..=rng.index(4) {
            let i = rng.index(p.len());
            p[i] ^= u8::try_from(1 + rng.below(255)).unwrap();
        }
    }
    if rng.chance(10) {
        let keep = 14 + rng.index(p.len() - 13);
        p.truncate(keep);
    }
    if rng.chance(5) {
        let mut extra = vec![0u8; rng.index(64)];
        rng.fill(&mut extra);
        p.extend(extra);
    }
    p
}

/// What the reference policy says of a packet that got through.
fn violation(prog: &str, p: &[u8], verdict: u32) -> Option<String> {
    if p.len() < 14 {
        return None;
    }
    let v = View(p);
    let ethertype = u16::from_be_bytes([p[12], p[13]]);
    let ipv4 = ethertype == ETH_IP && p.len() >= 34 && p[14] >> 4 == 4 && (p[14] & 0xf) >= 5;
    match prog {
        "dp_from_container" => {
            if verdict == TC_ACT_SHOT {
                return None;
            }
            // ARP it does not answer goes up the host's stack (documented):
            // the host keeps neighbours per veth, so a lie harms no one else.
            if ethertype != ETH_IP && ethertype != ETH_ARP {
                return Some(format!("ethertype {ethertype:#06x} passed ({verdict})"));
            }
            if ethertype == ETH_IP && v.src_mac() != E1.mac {
                return Some(format!("IPv4 from a spoofed source MAC passed ({verdict})"));
            }
            if ipv4 {
                if v.ip_src() != E1.ip {
                    return Some(format!(
                        "spoofed source IP {:?} passed ({verdict})",
                        v.ip_src()
                    ));
                }
                let dst = v.ip_dst();
                if is_container_ip(dst) && net_of(dst) != net_of(E1.ip) {
                    return Some(format!(
                        "to another network's container {dst:?} ({verdict})"
                    ));
                }
            }
            None
        }
        "dp_from_uplink" | "dp_tc_uplink" => {
            (ipv4 && is_container_ip(v.ip_dst()) && verdict != TC_ACT_SHOT && {
                // Only a tracked flow or a published port may enter; the
                // fixture has neither for these destinations.
                true
            })
            .then(|| format!("direct access from outside to {:?} ({verdict})", v.ip_dst()))
        }
        "dp_xdp_uplink" => (ipv4 && is_container_ip(v.ip_dst()) && (verdict == 3 || verdict == 4))
            .then(|| format!("XDP sent {:?} on ({verdict})", v.ip_dst())),
        _ => None,
    }
}

#[test]
fn fuzzed_packets_get_documented_verdicts_sane_output_and_nothing_policy_drops() {
    let n = count(5_000, 100_000);
    let mut fig = Figures::new("packet_fuzzing");
    let result = std::sync::Arc::new(std::sync::Mutex::new((
        BTreeMap::<String, u64>::new(),
        Vec::<String>::new(),
    )));
    let r2 = std::sync::Arc::clone(&result);
    with_env(move |env| {
        let (mut stats, mut bad) = (BTreeMap::new(), Vec::new());
        let srcs = [
            E1.ip,
            E2.ip,
            E3.ip,
            [172, 20, 0, 1],
            FAR,
            NEXT_HOP,
            UPLINK_IP,
            [0; 4],
        ];
        let dsts = [
            E2.ip,
            E3.ip,
            E4.ip,
            E6.ip,
            [172, 20, 0, 1],
            [172, 21, 0, 1],
            FAR,
            NEXT_HOP,
            UPLINK_IP,
            BLACKHOLED,
            OTHER_NET_HOST,
            [255; 4],
            [224, 0, 0, 1],
        ];
        let macs = [
            E1.mac,
            E1.host_mac,
            E2.mac,
            UPLINK_MAC,
            NEXT_HOP_MAC,
            BROADCAST,
        ];
        for prog in [
            "dp_from_container",
            "dp_to_container",
            "dp_from_uplink",
            "dp_xdp_uplink",
            "dp_tc_uplink",
        ] {
            let mut rng = Rng::stream(prog);
            // `n` packets the kernel ran (it refuses some, e.g. too short
            // for an skb): at most twice as many tries.
            let mut ran = 0;
            for i in 0..2 * n {
                if ran == n {
                    break;
                }
                let p = packet(&mut rng, &srcs, &dsts, &macs);
                let run = match prog {
                    "dp_from_container" => env.try_run_container(E1, &p),
                    "dp_to_container" => env.try_run_to_container(
                        E1,
                        if i % 2 == 0 { None } else { Some(UPLINK_IF) },
                        &p,
                    ),
                    "dp_from_uplink" => env.try_run_uplink(&p),
                    "dp_tc_uplink" => env.try_run_tc_uplink(&p),
                    _ => env.try_run_xdp(Some(UPLINK_IF), &p),
                };
                let Ok(run) = run else {
                    *stats
                        .entry(format!("{prog}_refused_by_kernel"))
                        .or_insert(0) += 1;
                    continue;
                };
                ran += 1;
                *stats.entry(format!("{prog}_packets")).or_insert(0) += 1;
                *stats
                    .entry(format!("{prog}_verdict_{}", run.verdict))
                    .or_insert(0) += 1;
                let allowed: &[u32] = if prog == "dp_xdp_uplink" {
                    &XDP_VERDICTS
                } else {
                    &TC_VERDICTS
                };
                let mut problem = None;
                if !allowed.contains(&run.verdict) {
                    problem = Some(format!("verdict {} outside {allowed:?}", run.verdict));
                } else if run.out.len() > p.len() + 64 {
                    problem = Some(format!("output {} bytes from {}", run.out.len(), p.len()));
                } else if let Some(v) = violation(prog, &p, run.verdict) {
                    problem = Some(v);
                }
                if let Some(what) = problem {
                    *stats.entry(format!("{prog}_violations")).or_insert(0) += 1;
                    if bad.len() < 10 {
                        bad.push(format!("{prog} packet {i}: {what}: {p:02x?}"));
                    }
                }
            }
        }
        *r2.lock().unwrap() = (stats, bad);
    });
    let (stats, bad) = result.lock().unwrap().clone();
    let mut violations = 0;
    for (k, v) in &stats {
        if k.ends_with("_violations") {
            violations += v;
        }
        fig.set(k, *v);
    }
    fig.set("packets_per_program", n);
    fig.set("violations", violations);
    fig.write();
    assert!(bad.is_empty(), "{bad:#?}");
}
