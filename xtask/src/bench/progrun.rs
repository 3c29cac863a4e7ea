//! BPF_PROG_TEST_RUN micro-benchmark of the datapath's paths, without
//! traffic: the agent's eBPF object is loaded privately (unpinned maps) in a
//! namespace of the run holding the interfaces, routes and neighbour the
//! programs look up, the maps are filled so that each path is taken, and
//! each path is run many times with a crafted frame. Every run's verdict is
//! checked (and the output frame of the first one): a broken path is
//! reported as broken, never timed.
//!
//! The programs rewrite the frame in place, and BPF_PROG_TEST_RUN's
//! `repeat` runs the program again on the rewritten frame (a delivered
//! frame carries the peer's MACs and is then a spoofed one), so each run is
//! one syscall with `repeat = 1` and the kernel's per-run time is taken.
//! That time includes one `ktime_get_ns()` of the test-run timer; the
//! idempotent denied path, which can use `repeat`, calibrates it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader, TestRun as _, TestRunOptions,
};
use dataplane_common::{
    endpoint_net_flags, map_names, prog_names, Config, DropReason, EndpointInfo, EndpointKey,
    EndpointStats, NetworkInfo, PortKey, PortTarget,
};

use super::progrun_pkt::{checksums_ok, frame, seen, Flow, PROTO_TCP, PROTO_UDP};

const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_DROP: u32 = 1;

const UPLINK: &str = "up0";
const UPLINK_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 2];
const UPLINK_IP: [u8; 4] = [10, 77, 0, 2];
const NEXT_HOP: &str = "10.77.0.1";
const NEXT_HOP_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];
/// A client beyond the uplink (default route).
const FAR: [u8; 4] = [198, 51, 100, 7];
const NAT_MIN: u16 = 61000;
const NAT_MAX: u16 = 61999;
/// Published host port (0.0.0.0, UDP) -> E2:CTR_PORT.
const PUB_PORT: u16 = 8080;
const CTR_PORT: u16 = 80;

struct Ep {
    host: &'static str,
    ctr: &'static str,
    net: u32,
    ip: [u8; 4],
    mac: [u8; 6],
    host_mac: [u8; 6],
}

const fn ep(n: u8, net: u32, ip: [u8; 4], host: &'static str, ctr: &'static str) -> Ep {
    Ep {
        host,
        ctr,
        net,
        ip,
        mac: [0x02, 0xc0, 0, 0, n, 2],
        host_mac: [0x02, 0x40, 0, 0, n, 1],
    }
}

/// E1, E2 on network 1, E3 on network 2.
const E1: Ep = ep(1, 1, [172, 20, 0, 2], "h1", "c1");
const E2: Ep = ep(2, 1, [172, 20, 0, 3], "h2", "c2");
const E3: Ep = ep(3, 2, [172, 21, 0, 2], "h3", "c3");
const EPS: [&Ep; 3] = [&E1, &E2, &E3];
const NETS: [(u32, [u8; 4], [u8; 4]); 2] = [
    (1, [172, 20, 0, 1], [172, 20, 0, 0]),
    (2, [172, 21, 0, 1], [172, 21, 0, 0]),
];

/// One measured path.
#[derive(Clone, Debug)]
pub(super) struct PathRun {
    pub name: &'static str,
    pub program: &'static str,
    pub frame_len: usize,
    /// Runs timed (all with the expected verdict), 0 when broken.
    pub runs: u32,
    /// Median and mean kernel-reported ns per run (timer call included).
    pub median_ns: f64,
    pub mean_ns: f64,
    /// Why the path is not timed.
    pub broken: Option<String>,
}

pub(super) struct ProgRun {
    pub paths: Vec<PathRun>,
    /// ns of the test-run timer per `repeat = 1` run (median per-run time
    /// minus the per-run time with a large `repeat`, on the denied path).
    pub timer_ns: Option<f64>,
    pub repeat: u32,
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip4(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// The namespace's interfaces, addresses, routes and neighbour.
fn topology(ns: &str) -> Result<()> {
    let mut c = vec![
        "link set lo up".to_string(),
        format!(
            "link add {UPLINK} address {} type veth peer name {UPLINK}p address {}",
            mac(UPLINK_MAC),
            mac(NEXT_HOP_MAC)
        ),
        format!("addr add {}/24 dev {UPLINK}", ip4(UPLINK_IP)),
        format!("link set {UPLINK} up"),
        format!("link set {UPLINK}p up"),
        format!(
            "neigh add {NEXT_HOP} lladdr {} nud permanent dev {UPLINK}",
            mac(NEXT_HOP_MAC)
        ),
        format!("route add default via {NEXT_HOP}"),
    ];
    for e in EPS {
        c.push(format!(
            "link add {} address {} type veth peer name {} address {}",
            e.host,
            mac(e.host_mac),
            e.ctr,
            mac(e.mac)
        ));
        c.push(format!("link set {} up", e.host));
        c.push(format!("link set {} up", e.ctr));
        c.push(format!("route add {}/32 dev {}", ip4(e.ip), e.host));
    }
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip -batch")?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(c.join("\n").as_bytes())?;
        stdin.write_all(b"\n")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ip -n {ns} -batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs the micro-benchmark with the eBPF object at `object` inside the
/// (empty, just created) namespace `ns`: `iters` timed runs per path, and
/// `repeat` for the timer calibration.
pub(super) fn run(object: &Path, ns: &str, iters: u32, repeat: u32) -> Result<ProgRun> {
    topology(ns)?;
    let bytes = std::fs::read(object).with_context(|| format!("reading {}", object.display()))?;
    let nsfile = format!("/run/netns/{ns}");
    // The programs see interfaces, routes and sysctls of the calling
    // thread's namespace: a thread of its own enters it and never leaves.
    std::thread::Builder::new()
        .name("progrun".into())
        .spawn(move || -> Result<ProgRun> {
            let f = File::open(&nsfile).with_context(|| format!("opening {nsfile}"))?;
            // SAFETY: setns on this thread only, with a valid netns fd.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {nsfile}: {}", std::io::Error::last_os_error());
            }
            // bpf_fib_lookup() needs forwarding on the ingress device.
            for e in EPS {
                let p = format!("/proc/sys/net/ipv4/conf/{}/forwarding", e.host);
                std::fs::write(&p, "1").with_context(|| format!("writing {p}"))?;
            }
            Bench::new(&bytes)?.all(iters, repeat)
        })
        .context("starting the progrun thread")?
        .join()
        .map_err(|_| anyhow!("the progrun thread panicked"))?
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("interface {name} not found");
    }
    Ok(i)
}

fn map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the eBPF object has no map {name}"))?;
    T::try_from(m).map_err(|e| anyhow!("map {name}: {e}"))
}

/// What a path must produce on every run.
#[derive(Clone, Copy)]
enum Want {
    /// Redirected/passed with this destination MAC and flow (src, dst); a
    /// source port of None is one allocated from the NAT range.
    Out(u32, Option<[u8; 6]>, ([u8; 4], Option<u16>), ([u8; 4], u16)),
    /// Dropped, counting this reason once per run.
    Drop(DropReason),
}

struct Bench {
    ebpf: Ebpf,
    drops: PerCpuArray<MapData, u64>,
    uplink: u32,
}

impl Bench {
    fn new(object: &[u8]) -> Result<Bench> {
        let mut ebpf = EbpfLoader::new()
            .load(object)
            .map_err(|e| anyhow!("loading the eBPF object: {e}"))?;
        for name in [
            prog_names::FROM_CONTAINER,
            prog_names::FROM_UPLINK,
            prog_names::TC_UPLINK,
        ] {
            let p: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            p.load().map_err(|e| anyhow!("loading {name}: {e}"))?;
        }
        let x: &mut Xdp = ebpf
            .program_mut(prog_names::XDP_UPLINK)
            .ok_or_else(|| anyhow!("program {} missing", prog_names::XDP_UPLINK))?
            .try_into()?;
        x.load()
            .map_err(|e| anyhow!("loading {}: {e}", prog_names::XDP_UPLINK))?;

        let uplink = ifindex(UPLINK)?;
        let mut nets: HashMap<MapData, u32, NetworkInfo> = map(&mut ebpf, map_names::NETWORKS)?;
        for (id, gateway, subnet) in NETS {
            let n = NetworkInfo {
                gateway,
                subnet,
                prefix_len: 16,
                ..Default::default()
            };
            nets.insert(id, n, 0)?;
        }
        let mut eps: HashMap<MapData, EndpointKey, EndpointInfo> =
            map(&mut ebpf, map_names::ENDPOINTS)?;
        let mut if_eps: HashMap<MapData, u32, EndpointInfo> =
            map(&mut ebpf, map_names::IF_ENDPOINTS)?;
        let mut stats: PerCpuHashMap<MapData, u32, EndpointStats> =
            map(&mut ebpf, map_names::EP_STATS)?;
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| anyhow!("nr_cpus: {e}"))?;
        for e in EPS {
            let info = EndpointInfo {
                ifindex: ifindex(e.host)?,
                net_id: e.net,
                ip: e.ip,
                mac: e.mac,
                host_mac: e.host_mac,
                // As the agent writes it: the network's policy (none here).
                flags: endpoint_net_flags(0),
                ..Default::default()
            };
            let zero = PerCpuValues::try_from(vec![EndpointStats::default(); ncpu])?;
            stats.insert(info.ifindex, zero, 0)?;
            if_eps.insert(info.ifindex, info, 0)?;
            eps.insert(EndpointKey { ip: e.ip }, info, 0)?;
        }
        let mut cfg: Array<MapData, Config> = map(&mut ebpf, map_names::CONFIG)?;
        let c = Config {
            uplink_ifindex: uplink,
            uplink_ip: UPLINK_IP,
            nat_port_min: NAT_MIN,
            nat_port_max: NAT_MAX,
            ..Default::default()
        };
        cfg.set(0, c, 0)?;
        let mut host_ips: HashMap<MapData, EndpointKey, u32> = map(&mut ebpf, map_names::HOST_IPS)?;
        host_ips.insert(EndpointKey { ip: UPLINK_IP }, 1, 0)?;
        let mut ports: HashMap<MapData, PortKey, PortTarget> = map(&mut ebpf, map_names::PORTS)?;
        let k = PortKey {
            ip: [0; 4],
            port: PUB_PORT,
            proto: PROTO_UDP,
            ..Default::default()
        };
        let t = PortTarget {
            ip: E2.ip,
            port: CTR_PORT,
            ..Default::default()
        };
        ports.insert(k, t, 0)?;
        let drops = map(&mut ebpf, map_names::DROPS)?;
        Ok(Bench {
            ebpf,
            drops,
            uplink,
        })
    }

    fn drop_count(&self, r: DropReason) -> Result<u64> {
        Ok(self.drops.get(&(r as u32), 0)?.iter().sum())
    }

    /// One `repeat`-times run: (verdict, output frame, ns per run).
    fn once(
        &self,
        prog: &str,
        ingress: u32,
        pkt: &[u8],
        repeat: u32,
    ) -> Result<(u32, Vec<u8>, u64)> {
        let mut out = vec![0u8; pkt.len() + 256];
        let xdp_ctx;
        let mut tc_ctx = [0u8; 192];
        let r = if prog == prog_names::XDP_UPLINK {
            // struct xdp_md: data_end = length, ingress_ifindex at 12.
            let mut c = [0u8; 24];
            c[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
            c[12..16].copy_from_slice(&ingress.to_ne_bytes());
            xdp_ctx = c;
            let p: &Xdp = self
                .ebpf
                .program(prog)
                .ok_or_else(|| anyhow!("no {prog}"))?
                .try_into()?;
            let o = TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ctx_in: Some(&xdp_ctx),
                repeat,
                ..Default::default()
            };
            p.test_run(o)
        } else {
            // struct __sk_buff: ifindex at 40 selects skb->dev.
            tc_ctx[40..44].copy_from_slice(&ingress.to_ne_bytes());
            let p: &SchedClassifier = self
                .ebpf
                .program(prog)
                .ok_or_else(|| anyhow!("no {prog}"))?
                .try_into()?;
            let o = TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ctx_in: Some(&tc_ctx),
                repeat,
                ..Default::default()
            };
            p.test_run(o)
        };
        let r = r.map_err(|e| anyhow!("BPF_PROG_TEST_RUN {prog}: {e}"))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out, r.duration.as_nanos() as u64))
    }

    /// Checks one run's result against `want`; Err(reason) when it differs.
    #[expect(
        clippy::unused_self,
        clippy::match_same_arms,
        reason = "a method of the bench like its siblings; one arm per outcome reads as a table"
    )]
    fn check(
        &self,
        want: Want,
        drop_verdict: u32,
        verdict: u32,
        out: &[u8],
        full: bool,
    ) -> Result<(), String> {
        match want {
            Want::Drop(_) if verdict != drop_verdict => {
                Err(format!("verdict {verdict}, want drop"))
            }
            Want::Drop(_) => Ok(()),
            Want::Out(v, _, _, _) if verdict != v => Err(format!("verdict {verdict}, want {v}")),
            Want::Out(_, m, src, dst) if full => {
                let s = seen(out).ok_or("output frame unreadable")?;
                if m.is_some_and(|m| m != s.dst_mac) {
                    return Err(format!("destination MAC {:02x?}", s.dst_mac));
                }
                let sport_ok = match src.1 {
                    Some(p) => s.flow.0 .1 == p,
                    None => (NAT_MIN..=NAT_MAX).contains(&s.flow.0 .1),
                };
                if s.flow.0 .0 != src.0 || !sport_ok || s.flow.1 != dst {
                    return Err(format!("output flow {:?}, want {:?}", s.flow, (src, dst)));
                }
                if !checksums_ok(out) {
                    return Err("bad checksum in the output".into());
                }
                Ok(())
            }
            Want::Out(..) => Ok(()),
        }
    }

    /// Warm-up run (creates the flow state), a checked steady-state run,
    /// then `iters` timed runs, each checked. Returns the first output.
    fn path(
        &self,
        name: &'static str,
        prog: &'static str,
        ingress: u32,
        pkt: &[u8],
        want: Want,
        iters: u32,
    ) -> Result<(PathRun, Vec<u8>)> {
        let mut pr = PathRun {
            name,
            program: prog,
            frame_len: pkt.len(),
            runs: 0,
            median_ns: 0.0,
            mean_ns: 0.0,
            broken: None,
        };
        let drops_before = match want {
            Want::Drop(r) => self.drop_count(r)?,
            Want::Out(..) => 0,
        };
        let mut first = Vec::new();
        let mut times = Vec::with_capacity(iters as usize);
        for i in 0..iters + 2 {
            let (v, out, ns) = self.once(prog, ingress, pkt, 1)?;
            let drop_verdict = if prog == prog_names::XDP_UPLINK {
                XDP_DROP
            } else {
                TC_ACT_SHOT
            };
            if let Err(e) = self.check(want, drop_verdict, v, &out, i < 2) {
                pr.broken = Some(format!("run {}: {e}", i + 1));
                return Ok((pr, first));
            }
            if i == 0 {
                first = out;
            }
            if i >= 2 {
                times.push(ns);
            }
        }
        if let Want::Drop(r) = want {
            let n = self.drop_count(r)? - drops_before;
            if n != u64::from(iters) + 2 {
                pr.broken = Some(format!(
                    "{} counted {n} drops for {} runs",
                    r.name(),
                    iters + 2
                ));
                return Ok((pr, first));
            }
        }
        times.sort_unstable();
        pr.runs = iters;
        pr.median_ns = times[times.len() / 2] as f64;
        pr.mean_ns = times.iter().sum::<u64>() as f64 / times.len().max(1) as f64;
        Ok((pr, first))
    }

    fn all(&mut self, iters: u32, repeat: u32) -> Result<ProgRun> {
        let fc = prog_names::FROM_CONTAINER;
        let fu = prog_names::FROM_UPLINK;
        let xdp = prog_names::XDP_UPLINK;
        let tcx = prog_names::TC_UPLINK;
        let (h1, h2) = (ifindex(E1.host)?, ifindex(E2.host)?);
        let up = self.uplink;
        let udp = |src, sport, dst, dport| Flow {
            src,
            dst,
            sport,
            dport,
            proto: PROTO_UDP,
        };
        let mut paths = Vec::new();

        // c2c, same network.
        let f = udp(E1.ip, 40000, E2.ip, 5000);
        let pkt = frame(E1.host_mac, E1.mac, f, 22);
        let want = Want::Out(
            TC_ACT_REDIRECT,
            Some(E2.mac),
            (E1.ip, Some(40000)),
            (E2.ip, 5000),
        );
        paths.push(
            self.path("c2c same network, UDP 64 B", fc, h1, &pkt, want, iters)?
                .0,
        );
        let tcp = Flow {
            proto: PROTO_TCP,
            ..f
        };
        let big = frame(E1.host_mac, E1.mac, tcp, 1460);
        paths.push(
            self.path("c2c same network, TCP 1514 B", fc, h1, &big, want, iters)?
                .0,
        );

        // c2c denied: another network.
        let pkt = frame(E1.host_mac, E1.mac, udp(E1.ip, 40000, E3.ip, 5000), 22);
        let denied = Want::Drop(DropReason::CrossNetwork);
        paths.push(
            self.path(
                "c2c denied (cross network), UDP 64 B",
                fc,
                h1,
                &pkt,
                denied,
                iters,
            )?
            .0,
        );
        // Timer calibration: the denied path leaves the frame as it is, so
        // `repeat` runs it again on the same input.
        let (v, _, ns_rep) = self.once(fc, h1, &pkt, repeat)?;
        let timer_ns = match paths.last() {
            Some(p) if p.broken.is_none() && v == TC_ACT_SHOT => {
                Some((p.median_ns - ns_rep as f64).max(0.0))
            }
            _ => None,
        };

        // Masquerade out, and the reply back in.
        let pkt = frame(E1.host_mac, E1.mac, udp(E1.ip, 40001, FAR, 53), 22);
        let w = Want::Out(
            TC_ACT_REDIRECT,
            Some(NEXT_HOP_MAC),
            (UPLINK_IP, None),
            (FAR, 53),
        );
        let (pr, out) = self.path("masquerade out, UDP 64 B", fc, h1, &pkt, w, iters)?;
        let nat_port = seen(&out).map(|s| s.flow.0 .1);
        paths.push(pr);
        match nat_port {
            Some(np) if paths.last().is_some_and(|p| p.broken.is_none()) => {
                let reply = frame(UPLINK_MAC, NEXT_HOP_MAC, udp(FAR, 53, UPLINK_IP, np), 22);
                let w = Want::Out(XDP_PASS, Some(UPLINK_MAC), (FAR, Some(53)), (UPLINK_IP, np));
                paths.push(
                    self.path(
                        "masquerade reply in (XDP, passed)",
                        xdp,
                        up,
                        &reply,
                        w,
                        iters,
                    )?
                    .0,
                );
                let w = Want::Out(
                    TC_ACT_REDIRECT,
                    Some(E1.mac),
                    (FAR, Some(53)),
                    (E1.ip, 40001),
                );
                paths.push(
                    self.path("masquerade reply in, UDP 64 B", fu, up, &reply, w, iters)?
                        .0,
                );
                paths.push(
                    self.path(
                        "masquerade reply in (tcx), UDP 64 B",
                        tcx,
                        up,
                        &reply,
                        w,
                        iters,
                    )?
                    .0,
                );
            }
            _ => paths.push(broken(
                "masquerade reply in, UDP 64 B",
                fu,
                "no masquerade flow to reply to",
            )),
        }

        // Published port from outside: XDP DNAT, TC delivery, reply.
        let pkt = frame(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            udp(FAR, 40002, UPLINK_IP, PUB_PORT),
            22,
        );
        let w = Want::Out(
            XDP_PASS,
            Some(UPLINK_MAC),
            (FAR, Some(40002)),
            (E2.ip, CTR_PORT),
        );
        let (pr, dnat) = self.path(
            "published port in (XDP DNAT), UDP 64 B",
            xdp,
            up,
            &pkt,
            w,
            iters,
        )?;
        let ok = pr.broken.is_none();
        paths.push(pr);
        if ok {
            let w = Want::Out(
                TC_ACT_REDIRECT,
                Some(E2.mac),
                (FAR, Some(40002)),
                (E2.ip, CTR_PORT),
            );
            paths.push(
                self.path("published port in (TC delivery)", fu, up, &dnat, w, iters)?
                    .0,
            );
            let reply = frame(E2.host_mac, E2.mac, udp(E2.ip, CTR_PORT, FAR, 40002), 22);
            let w = Want::Out(
                TC_ACT_REDIRECT,
                Some(NEXT_HOP_MAC),
                (UPLINK_IP, Some(PUB_PORT)),
                (FAR, 40002),
            );
            paths.push(
                self.path(
                    "published port reply out, UDP 64 B",
                    fc,
                    h2,
                    &reply,
                    w,
                    iters,
                )?
                .0,
            );
        } else {
            paths.push(broken(
                "published port reply out, UDP 64 B",
                fc,
                "the XDP DNAT path is broken",
            ));
        }

        // The same in the tcx uplink mode: DNAT and delivery in one program.
        let pkt = frame(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            udp(FAR, 40004, UPLINK_IP, PUB_PORT),
            22,
        );
        let w = Want::Out(
            TC_ACT_REDIRECT,
            Some(E2.mac),
            (FAR, Some(40004)),
            (E2.ip, CTR_PORT),
        );
        paths.push(
            self.path(
                "published port in (tcx: DNAT + delivery), UDP 64 B",
                tcx,
                up,
                &pkt,
                w,
                iters,
            )?
            .0,
        );
        // Early drop of direct access to a container, per uplink mode.
        let pkt = frame(
            UPLINK_MAC,
            NEXT_HOP_MAC,
            udp(FAR, 40005, E2.ip, CTR_PORT),
            22,
        );
        let w = Want::Drop(DropReason::DirectAccessFromOutside);
        for (name, prog) in [
            ("direct access drop (XDP), UDP 64 B", xdp),
            ("direct access drop (tcx), UDP 64 B", tcx),
        ] {
            paths.push(self.path(name, prog, up, &pkt, w, iters)?.0);
        }

        // Hairpin: a container to a published port of its host, and back.
        let gw = NETS[0].1;
        let pkt = frame(
            E1.host_mac,
            E1.mac,
            udp(E1.ip, 40003, UPLINK_IP, PUB_PORT),
            22,
        );
        let w = Want::Out(TC_ACT_REDIRECT, Some(E2.mac), (gw, None), (E2.ip, CTR_PORT));
        let (pr, out) = self.path("hairpin, UDP 64 B", fc, h1, &pkt, w, iters)?;
        let hp = seen(&out).map(|s| s.flow.0);
        let ok = pr.broken.is_none();
        paths.push(pr);
        match hp {
            Some((a, p)) if ok => {
                let reply = frame(E2.host_mac, E2.mac, udp(E2.ip, CTR_PORT, a, p), 22);
                let w = Want::Out(
                    TC_ACT_REDIRECT,
                    Some(E1.mac),
                    (UPLINK_IP, Some(PUB_PORT)),
                    (E1.ip, 40003),
                );
                paths.push(
                    self.path("hairpin reply, UDP 64 B", fc, h2, &reply, w, iters)?
                        .0,
                );
            }
            _ => paths.push(broken(
                "hairpin reply, UDP 64 B",
                fc,
                "the hairpin path is broken",
            )),
        }
        Ok(ProgRun {
            paths,
            timer_ns,
            repeat,
        })
    }
}

fn broken(name: &'static str, program: &'static str, why: &str) -> PathRun {
    PathRun {
        name,
        program,
        frame_len: 64,
        runs: 0,
        median_ns: 0.0,
        mean_ns: 0.0,
        broken: Some(why.into()),
    }
}
