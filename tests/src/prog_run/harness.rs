//! Per-test environment: a private network namespace with the interfaces the
//! programs look up, a freshly loaded (unpinned) copy of the eBPF object with
//! its maps filled like the agent fills them, and BPF_PROG_TEST_RUN helpers.

use std::{
    collections::HashMap as StdHashMap,
    ffi::CString,
    fs::File,
    io::Write,
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader, TestRun as _, TestRunOptions,
};
use dataplane_common::{
    endpoint_net_flags, frag_map_names, host_if_map_names, map_names, prog_names, Config, CtEntry,
    DropReason, EndpointInfo, EndpointKey, EndpointStats, FlowKey, FragEntry, FragKey, HostIf,
    LinkKey, NatEntry, NetworkInfo, PortKey, PortTarget, EP_STATS_SLOTS, NET_F_INTERNAL,
    NET_F_NO_ICC,
};

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Networks of the fixture.
pub const NET_A: u32 = 1;
pub const NET_B: u32 = 2;
pub const NET_NOICC: u32 = 3;
pub const NET_INTERNAL: u32 = 4;

pub struct NetDef {
    pub id: u32,
    pub gateway: [u8; 4],
    pub subnet: [u8; 4],
    pub prefix_len: u32,
    pub flags: u32,
}

pub const NETWORKS: [NetDef; 4] = [
    NetDef {
        id: NET_A,
        gateway: [172, 20, 0, 1],
        subnet: [172, 20, 0, 0],
        prefix_len: 16,
        flags: 0,
    },
    NetDef {
        id: NET_B,
        gateway: [172, 21, 0, 1],
        subnet: [172, 21, 0, 0],
        prefix_len: 16,
        flags: 0,
    },
    NetDef {
        id: NET_NOICC,
        gateway: [172, 22, 0, 1],
        subnet: [172, 22, 0, 0],
        prefix_len: 16,
        flags: NET_F_NO_ICC,
    },
    NetDef {
        id: NET_INTERNAL,
        gateway: [172, 23, 0, 1],
        subnet: [172, 23, 0, 0],
        prefix_len: 16,
        flags: NET_F_INTERNAL,
    },
];

/// An endpoint of the fixture: host veth `host` (the programs' ifindex),
/// container side `ctr`.
#[derive(Clone, Copy, Debug)]
pub struct EpDef {
    pub host: &'static str,
    pub ctr: &'static str,
    pub net: u32,
    pub ip: [u8; 4],
    pub mac: [u8; 6],
    pub host_mac: [u8; 6],
}

const fn ep(n: u8, net: u32, ip: [u8; 4], host: &'static str, ctr: &'static str) -> EpDef {
    EpDef {
        host,
        ctr,
        net,
        ip,
        mac: [0x02, 0xc0, 0, 0, n, 0x02],
        host_mac: [0x02, 0x40, 0, 0, n, 0x01],
    }
}

/// Sender on network A.
pub const E1: EpDef = ep(1, NET_A, [172, 20, 0, 2], "h1", "c1");
/// Peer on network A.
pub const E2: EpDef = ep(2, NET_A, [172, 20, 0, 3], "h2", "c2");
/// On network B.
pub const E3: EpDef = ep(3, NET_B, [172, 21, 0, 2], "h3", "c3");
/// Two endpoints on the icc-disabled network.
pub const E4: EpDef = ep(4, NET_NOICC, [172, 22, 0, 2], "h4", "c4");
pub const E5: EpDef = ep(5, NET_NOICC, [172, 22, 0, 3], "h5", "c5");
/// On the internal network.
pub const E6: EpDef = ep(6, NET_INTERNAL, [172, 23, 0, 2], "h6", "c6");
pub const ENDPOINTS: [EpDef; 6] = [E1, E2, E3, E4, E5, E6];

/// A veth in the namespace that is not registered as an endpoint.
pub const STRAY_IF: &str = "h7";

pub const UPLINK_IF: &str = "up0";
pub const UPLINK_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x02];
pub const UPLINK_IP: [u8; 4] = [10, 77, 0, 2];
/// The next hop on the uplink (permanent neighbour entry).
pub const NEXT_HOP: [u8; 4] = [10, 77, 0, 1];
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x01];
/// On the uplink's subnet, without a neighbour entry.
pub const UNRESOLVED: [u8; 4] = [10, 77, 0, 5];
/// Reached through the default route (via NEXT_HOP).
pub const FAR: [u8; 4] = [198, 51, 100, 7];
/// Blackholed.
pub const BLACKHOLED: [u8; 4] = [203, 0, 113, 9];
/// Routed through another (non-uplink) interface of the host.
pub const OTHER_IF: &str = "oth0";
pub const OTHER_NET_HOST: [u8; 4] = [192, 0, 2, 9];
pub const OTHER_NEXT_HOP_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 0x09];

pub const NAT_MIN: u16 = 61000;
pub const NAT_MAX: u16 = 61010;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_str(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "dptr{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("running ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        Netns { name }
    }

    /// Run `ip -n <ns> -batch -` with these commands.
    fn batch(&self, cmds: &[String]) {
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ip -batch");
        {
            let mut stdin = child.stdin.take().unwrap();
            for c in cmds {
                writeln!(stdin, "{c}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ip -batch failed: {}\ncommands:\n{}",
            String::from_utf8_lossy(&out.stderr),
            cmds.join("\n")
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn topology() -> Vec<String> {
    let mut c = vec!["link set lo up".to_string()];
    c.push(format!(
        "link add {UPLINK_IF} address {} type veth peer name {UPLINK_IF}p address {}",
        mac_str(UPLINK_MAC),
        mac_str(NEXT_HOP_MAC)
    ));
    c.push(format!("addr add {}/24 dev {UPLINK_IF}", ip_str(UPLINK_IP)));
    c.push(format!("link set {UPLINK_IF} up"));
    c.push(format!("link set {UPLINK_IF}p up"));
    c.push(format!(
        "neigh add {} lladdr {} nud permanent dev {UPLINK_IF}",
        ip_str(NEXT_HOP),
        mac_str(NEXT_HOP_MAC)
    ));
    c.push(format!("route add default via {}", ip_str(NEXT_HOP)));
    c.push("route add blackhole 203.0.113.0/24".to_string());
    c.push(format!(
        "link add {OTHER_IF} type veth peer name {OTHER_IF}p address {}",
        mac_str(OTHER_NEXT_HOP_MAC)
    ));
    c.push(format!("addr add 192.0.2.1/24 dev {OTHER_IF}"));
    c.push(format!("link set {OTHER_IF} up"));
    c.push(format!("link set {OTHER_IF}p up"));
    c.push(format!(
        "neigh add {} lladdr {} nud permanent dev {OTHER_IF}",
        ip_str(OTHER_NET_HOST),
        mac_str(OTHER_NEXT_HOP_MAC)
    ));
    for e in ENDPOINTS {
        c.push(format!(
            "link add {} address {} type veth peer name {} address {}",
            e.host,
            mac_str(e.host_mac),
            e.ctr,
            mac_str(e.mac)
        ));
        c.push(format!("link set {} up", e.host));
        c.push(format!("link set {} up", e.ctr));
        // The host routes each container's /32 through its veth, like the agent.
        c.push(format!("route add {}/32 dev {}", ip_str(e.ip), e.host));
    }
    c.push(format!(
        "link add {STRAY_IF} type veth peer name {STRAY_IF}p"
    ));
    c.push(format!("link set {STRAY_IF} up"));
    c.push(format!("link set {STRAY_IF}p up"));
    c
}

/// Everything a test needs, living on a thread inside the test's namespace.
pub struct Env {
    ebpf: Ebpf,
    pub endpoints: HashMap<MapData, EndpointKey, EndpointInfo>,
    pub if_endpoints: HashMap<MapData, u32, EndpointInfo>,
    pub networks: HashMap<MapData, u32, NetworkInfo>,
    pub config: Array<MapData, Config>,
    pub nat_out: HashMap<MapData, FlowKey, NatEntry>,
    pub nat_in: HashMap<MapData, FlowKey, NatEntry>,
    pub ep_stats: PerCpuHashMap<MapData, u32, EndpointStats>,
    pub ep_stats_ix: PerCpuArray<MapData, EndpointStats>,
    pub drops: PerCpuArray<MapData, u64>,
    pub ports: HashMap<MapData, PortKey, PortTarget>,
    pub ct: HashMap<MapData, FlowKey, CtEntry>,
    pub host_ips: HashMap<MapData, EndpointKey, u32>,
    pub links: HashMap<MapData, LinkKey, u32>,
    pub policy_ct: HashMap<MapData, FlowKey, u64>,
    pub frags: HashMap<MapData, FragKey, FragEntry>,
    pub host_ifs: HashMap<MapData, u32, HostIf>,
    ifindex: StdHashMap<String, u32>,
}

/// Result of one BPF_PROG_TEST_RUN.
#[derive(Debug)]
pub struct Run {
    pub verdict: u32,
    pub out: Vec<u8>,
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> T
where
    T: TryFrom<aya::maps::Map>,
    <T as TryFrom<aya::maps::Map>>::Error: std::fmt::Debug,
{
    let m = ebpf
        .take_map(name)
        .unwrap_or_else(|| panic!("map {name} missing"));
    T::try_from(m).unwrap_or_else(|e| panic!("map {name}: {e:?}"))
}

fn load_prog(ebpf: &mut Ebpf, name: &str) {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("program {name} missing"))
        .try_into()
        .unwrap();
    prog.load()
        .unwrap_or_else(|e| panic!("loading {name}: {e:?}"));
}

pub fn ifindex_of(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "interface {name} not found in the test namespace");
    i
}

fn write_sysctl(path: &str, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    let back = std::fs::read_to_string(path).unwrap();
    assert_eq!(back.trim(), value, "{path}");
}

impl Env {
    fn new(netns: &str) -> Env {
        let f = File::open(format!("/run/netns/{netns}")).expect("opening the netns");
        // SAFETY: `f` is an open namespace file; setns acts on this thread only.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());

        // The sysctl tree under /proc/sys/net follows the calling thread's
        // namespace. bpf_fib_lookup() requires forwarding on the ingress device.
        for e in ENDPOINTS {
            write_sysctl(
                &format!("/proc/sys/net/ipv4/conf/{}/forwarding", e.host),
                "1",
            );
        }

        let mut ebpf = EbpfLoader::new()
            .load(dataplane_agent::datapath::object())
            .expect("loading the eBPF object");
        load_prog(&mut ebpf, prog_names::FROM_CONTAINER);
        load_prog(&mut ebpf, prog_names::TO_CONTAINER);
        load_prog(&mut ebpf, prog_names::FROM_UPLINK);
        load_prog(&mut ebpf, prog_names::TC_UPLINK);
        let xdp: &mut Xdp = ebpf
            .program_mut(prog_names::XDP_UPLINK)
            .unwrap_or_else(|| panic!("program {} missing", prog_names::XDP_UPLINK))
            .try_into()
            .unwrap();
        xdp.load()
            .unwrap_or_else(|e| panic!("loading {}: {e:?}", prog_names::XDP_UPLINK));
        let mut env = Env {
            endpoints: take(&mut ebpf, map_names::ENDPOINTS),
            if_endpoints: take(&mut ebpf, map_names::IF_ENDPOINTS),
            networks: take(&mut ebpf, map_names::NETWORKS),
            config: take(&mut ebpf, map_names::CONFIG),
            nat_out: take(&mut ebpf, map_names::NAT_OUT),
            nat_in: take(&mut ebpf, map_names::NAT_IN),
            ep_stats: take(&mut ebpf, map_names::EP_STATS),
            ep_stats_ix: take(&mut ebpf, map_names::EP_STATS_IX),
            drops: take(&mut ebpf, map_names::DROPS),
            ports: take(&mut ebpf, map_names::PORTS),
            ct: take(&mut ebpf, map_names::CT),
            host_ips: take(&mut ebpf, map_names::HOST_IPS),
            links: take(&mut ebpf, map_names::LINKS),
            policy_ct: take(&mut ebpf, map_names::POLICY_CT),
            frags: take(&mut ebpf, frag_map_names::FRAGS),
            host_ifs: take(&mut ebpf, host_if_map_names::HOST_IFS),
            ebpf,
            ifindex: StdHashMap::new(),
        };
        let mut names: Vec<&str> = ENDPOINTS.iter().map(|e| e.host).collect();
        names.extend([UPLINK_IF, OTHER_IF, STRAY_IF]);
        for n in names {
            env.ifindex.insert(n.to_string(), ifindex_of(n));
        }
        for n in NETWORKS {
            env.networks
                .insert(
                    n.id,
                    NetworkInfo {
                        gateway: n.gateway,
                        subnet: n.subnet,
                        prefix_len: n.prefix_len,
                        flags: n.flags,
                    },
                    0,
                )
                .unwrap();
        }
        for e in ENDPOINTS {
            env.add_endpoint(e);
        }
        let up = env.ifx(UPLINK_IF);
        env.set_config(Config {
            uplink_ifindex: up,
            uplink_ip: UPLINK_IP,
            nat_port_min: NAT_MIN,
            nat_port_max: NAT_MAX,
            _pad: 0,
        });
        env
    }

    pub fn ifx(&self, name: &str) -> u32 {
        self.ifindex[name]
    }

    /// The loaded object, for fixtures that load more of it (`ip6`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The entry the agent writes: the network's policy flags included.
    pub fn info(&self, e: EpDef) -> EndpointInfo {
        let net_flags = NETWORKS
            .iter()
            .find(|n| n.id == e.net)
            .map_or(0, |n| n.flags);
        EndpointInfo {
            flags: endpoint_net_flags(net_flags),
            ..self.info_without_policy(e)
        }
    }

    /// The entry an older agent wrote: no policy flags, the programs read
    /// the network.
    pub fn info_without_policy(&self, e: EpDef) -> EndpointInfo {
        EndpointInfo {
            ifindex: self.ifx(e.host),
            net_id: e.net,
            ip: e.ip,
            mac: e.mac,
            host_mac: e.host_mac,
            flags: 0,
            _pad: [0; 2],
        }
    }

    /// Register an endpoint like the agent does (zeroed stats entry first).
    pub fn add_endpoint(&mut self, e: EpDef) {
        let info = self.info(e);
        let ncpu = aya::util::nr_cpus().unwrap();
        let zero = PerCpuValues::try_from(vec![EndpointStats::default(); ncpu]).unwrap();
        self.ep_stats.insert(info.ifindex, zero, 0).unwrap();
        self.if_endpoints.insert(info.ifindex, info, 0).unwrap();
        self.endpoints
            .insert(EndpointKey { ip: info.ip }, info, 0)
            .unwrap();
    }

    /// Overwrite an endpoint's entries (both maps) with `info`.
    pub fn set_endpoint_info(&mut self, info: EndpointInfo) {
        self.if_endpoints.insert(info.ifindex, info, 0).unwrap();
        self.endpoints
            .insert(EndpointKey { ip: info.ip }, info, 0)
            .unwrap();
    }

    pub fn remove_endpoint(&mut self, e: EpDef) {
        let info = self.info(e);
        self.endpoints.remove(&EndpointKey { ip: info.ip }).unwrap();
        self.if_endpoints.remove(&info.ifindex).unwrap();
        self.ep_stats.remove(&info.ifindex).unwrap();
    }

    pub fn set_config(&mut self, cfg: Config) {
        self.config.set(0, cfg, 0).unwrap();
    }

    pub fn set_forwarding(&self, ifname: &str, on: bool) {
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding"),
            if on { "1" } else { "0" },
        );
    }

    fn run(&self, prog: &str, ifindex: u32, pkt: &[u8]) -> Result<Run, String> {
        self.run_skb(prog, ifindex, 0, pkt)
    }

    fn run_skb(&self, prog: &str, ifindex: u32, ingress: u32, pkt: &[u8]) -> Result<Run, String> {
        let prog: &SchedClassifier = self.ebpf.program(prog).unwrap().try_into().unwrap();
        // struct __sk_buff; BPF_PROG_TEST_RUN accepts only a few non-zero
        // fields (mark, priority, ingress_ifindex, ifindex, cb, tstamp,
        // wire_len, gso_*, hwtstamp: not the VLAN metadata). ifindex is at
        // offset 40 and selects the device (skb->dev) in the caller's
        // namespace; ingress_ifindex (offset 36) becomes skb->skb_iif.
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress.to_ne_bytes());
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; pkt.len() + 512];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat: 1,
                ..Default::default()
            })
            .map_err(|e| format!("{e:?}"))?;
        out.truncate(r.data_size_out as usize);
        Ok(Run {
            verdict: r.return_value,
            out,
        })
    }

    /// Run dp_from_container as if `pkt` arrived on the host veth `ifname`.
    pub fn run_container_on(&self, ifname: &str, pkt: &[u8]) -> Run {
        self.run(prog_names::FROM_CONTAINER, self.ifx(ifname), pkt)
            .expect("BPF_PROG_TEST_RUN dp_from_container")
    }

    pub fn run_container(&self, e: EpDef, pkt: &[u8]) -> Run {
        self.run_container_on(e.host, pkt)
    }

    pub fn try_run_container(&self, e: EpDef, pkt: &[u8]) -> Result<Run, String> {
        self.run(prog_names::FROM_CONTAINER, self.ifx(e.host), pkt)
    }

    /// Run dp_to_container (TC egress) as if the host's stack sent `pkt`
    /// out of `e`'s host veth, having received it on `ingress` (None: a
    /// packet the host made itself).
    pub fn run_to_container(&self, e: EpDef, ingress: Option<&str>, pkt: &[u8]) -> Run {
        let iif = ingress.map_or(0, |n| self.ifx(n));
        self.run_skb(prog_names::TO_CONTAINER, self.ifx(e.host), iif, pkt)
            .expect("BPF_PROG_TEST_RUN dp_to_container")
    }

    /// [`Env::run_to_container`], with the kernel's refusal as an error
    /// (the fuzzer feeds packets the kernel may reject).
    pub fn try_run_to_container(
        &self,
        e: EpDef,
        ingress: Option<&str>,
        pkt: &[u8],
    ) -> Result<Run, String> {
        let iif = ingress.map_or(0, |n| self.ifx(n));
        self.run_skb(prog_names::TO_CONTAINER, self.ifx(e.host), iif, pkt)
    }

    /// [`Env::run_uplink`], with the kernel's refusal as an error.
    pub fn try_run_uplink(&self, pkt: &[u8]) -> Result<Run, String> {
        self.run(prog_names::FROM_UPLINK, self.ifx(UPLINK_IF), pkt)
    }

    /// Run dp_from_uplink as if `pkt` arrived on the uplink.
    pub fn run_uplink(&self, pkt: &[u8]) -> Run {
        self.run_uplink_on(UPLINK_IF, pkt)
    }

    /// Run dp_from_uplink as if `pkt` arrived on `ifname` (the program is
    /// also attached to the parents of `lan` networks).
    pub fn run_uplink_on(&self, ifname: &str, pkt: &[u8]) -> Run {
        self.run(prog_names::FROM_UPLINK, self.ifx(ifname), pkt)
            .expect("BPF_PROG_TEST_RUN dp_from_uplink")
    }

    /// [`Env::run_tc_uplink_on`] on the uplink, with the kernel's refusal
    /// as an error.
    pub fn try_run_tc_uplink(&self, pkt: &[u8]) -> Result<Run, String> {
        self.run(prog_names::TC_UPLINK, self.ifx(UPLINK_IF), pkt)
    }

    /// Run dp_tc_uplink (the `tcx` uplink mode: dp_from_uplink with
    /// dp_xdp_uplink's early work) as if `pkt` arrived on `ifname`.
    pub fn run_tc_uplink_on(&self, ifname: &str, pkt: &[u8]) -> Run {
        self.run(prog_names::TC_UPLINK, self.ifx(ifname), pkt)
            .expect("BPF_PROG_TEST_RUN dp_tc_uplink")
    }

    /// Make network `net` a `lan` network whose parent is `ifname` (with
    /// `mac`): its `DP_NETWORKS` flags and `DP_LAN_PARENTS` entry; the
    /// endpoints of the network are rewritten with their new flags.
    pub fn make_lan(&mut self, net: u32, ifname: &str, mac: [u8; 6]) {
        let mut info = self.networks.get(&net, 0).unwrap();
        info.flags |= dataplane_common::NET_F_LAN;
        self.networks.insert(net, info, 0).unwrap();
        let parent = dataplane_common::LanParent {
            ifindex: self.ifx(ifname),
            mac,
            _pad: [0; 2],
        };
        let mut parents: HashMap<&mut MapData, u32, dataplane_common::LanParent> =
            HashMap::try_from(
                self.ebpf
                    .map_mut(dataplane_common::lan_map_names::PARENTS)
                    .unwrap(),
            )
            .unwrap();
        parents.insert(net, parent, 0).unwrap();
        for e in ENDPOINTS.iter().filter(|e| e.net == net) {
            let mut i = self.info(*e);
            i.flags = endpoint_net_flags(info.flags);
            self.set_endpoint_info(i);
        }
    }

    /// Run dp_xdp_uplink on `pkt`, as received on `ingress` (an interface
    /// of the test namespace, or None for no xdp_md context at all).
    pub fn try_run_xdp(&self, ingress: Option<&str>, pkt: &[u8]) -> Result<Run, String> {
        let prog: &Xdp = self
            .ebpf
            .program(prog_names::XDP_UPLINK)
            .unwrap()
            .try_into()
            .unwrap();
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex }: the kernel wants data_meta == 0,
        // data_end == the packet's length, egress_ifindex == 0, and resolves
        // ingress_ifindex in the caller's namespace (its rx queue 0 must have
        // registered XDP rx-queue info, which every netdev has).
        let ctx_buf;
        let ctx = match ingress {
            Some(name) => {
                let mut c = [0u8; 24];
                c[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
                c[12..16].copy_from_slice(&self.ifx(name).to_ne_bytes());
                ctx_buf = c;
                Some(&ctx_buf[..])
            }
            None => None,
        };
        let mut out = vec![0u8; pkt.len() + 512];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ctx_in: ctx,
                repeat: 1,
                ..Default::default()
            })
            .map_err(|e| format!("{e:?}"))?;
        out.truncate(r.data_size_out as usize);
        Ok(Run {
            verdict: r.return_value,
            out,
        })
    }

    /// Run dp_xdp_uplink as if `pkt` arrived on the uplink.
    pub fn run_xdp(&self, pkt: &[u8]) -> Run {
        self.try_run_xdp(Some(UPLINK_IF), pkt)
            .expect("BPF_PROG_TEST_RUN dp_xdp_uplink")
    }

    /// Global drop counter (summed over CPUs).
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.get(&(r as u32), 0).unwrap().iter().sum()
    }

    /// All global drop counters.
    pub fn all_drops(&self) -> Vec<u64> {
        DropReason::ALL
            .iter()
            .map(|r| self.drop_count(*r))
            .collect()
    }

    /// Assert that drops were counted globally for `r` and for no other reason.
    pub fn assert_only_drop(&self, r: DropReason) {
        for x in DropReason::ALL {
            let n = self.drop_count(x);
            if x == r {
                assert!(n > 0, "drop counter {} is 0", x.name());
            } else {
                assert_eq!(n, 0, "drop counter {}", x.name());
            }
        }
    }

    pub fn assert_no_drops(&self) {
        assert_eq!(
            self.all_drops(),
            vec![0; DropReason::ALL.len()],
            "no drop counted"
        );
    }

    /// Per-endpoint counters summed over CPUs, where the agent reads them:
    /// the array slot of the ifindex, or the hash entry beyond the array
    /// (which exists for every endpoint).
    pub fn stats(&self, e: EpDef) -> EndpointStats {
        let ifindex = self.ifx(e.host);
        let v = self.ep_stats.get(&ifindex, 0).unwrap();
        let v = if ifindex < EP_STATS_SLOTS {
            self.ep_stats_ix.get(&ifindex, 0).unwrap()
        } else {
            v
        };
        let mut s = EndpointStats::default();
        for c in v.iter() {
            s.tx_packets += c.tx_packets;
            s.tx_bytes += c.tx_bytes;
            s.rx_packets += c.rx_packets;
            s.rx_bytes += c.rx_bytes;
            for (a, b) in s.drops.iter_mut().zip(c.drops.iter()) {
                *a += b;
            }
        }
        s
    }

    pub fn nat_out_entries(&self) -> Vec<(FlowKey, NatEntry)> {
        self.nat_out.iter().map(Result::unwrap).collect()
    }

    pub fn nat_in_entries(&self) -> Vec<(FlowKey, NatEntry)> {
        self.nat_in.iter().map(Result::unwrap).collect()
    }
}

/// Run `f` on a dedicated thread inside a fresh network namespace with the
/// fixture topology and a freshly loaded datapath.
pub fn with_env<F>(f: F)
where
    F: FnOnce(&mut Env) + Send + 'static,
{
    let ns = Netns::new();
    ns.batch(&topology());
    let name = ns.name.clone();
    let res = std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            let mut env = Env::new(&name);
            f(&mut env);
        })
        .unwrap()
        .join();
    drop(ns);
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}
