//! Observability: `dataplane monitor` (drops and traces named in Docker's
//! terms, live), `dataplane flows` (the translation tables in words) and
//! `/metrics` (Prometheus text), with real packets through real namespaces;
//! and that the programs emit nothing while no monitor is attached.
#![expect(
    clippy::float_cmp,
    reason = "metric samples are integer counts read as f64: exact comparisons are meant"
)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use dataplane_tests::{wait_until, Host, Ns};
use serde_json::Value;

/// A running `dataplane monitor --format json`.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Monitor {
    /// Start it and wait until the agent attached it (it says so on stderr).
    fn start(h: &Host, args: &[&str]) -> Monitor {
        Monitor::start_as(h, "json", args)
    }

    fn start_as(h: &Host, format: &str, args: &[&str]) -> Monitor {
        let mut all = vec!["--format", format, "monitor"];
        all.extend_from_slice(args);
        let mut child = h
            .cli_cmd(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send((Instant::now(), l)).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let _ = etx.send(l);
            }
        });
        let line = erx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("monitor {args:?} did not attach within 10 s"));
        assert!(line.starts_with("Listening for"), "monitor said {line:?}");
        Monitor { child, lines: rx }
    }

    /// The first line (table format) containing every needle, within `timeout`.
    fn find_line(&self, timeout: Duration, needles: &[&str]) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, l) = self.lines.recv_timeout(left).ok()?;
            if needles.iter().all(|n| l.contains(n)) {
                return Some(l);
            }
        }
    }

    /// The first event `want` accepts within `timeout`, with the moment it
    /// was read.
    fn find(&self, timeout: Duration, want: impl Fn(&Value) -> bool) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, l) = self.lines.recv_timeout(left).ok()?;
            let v: Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("monitor printed {l:?}: {e}"));
            if want(&v) {
                return Some((at, v));
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Two containers on two networks.
fn two_networks(h: &Host) -> (String, String) {
    h.ok(&["network", "create", "--subnet", "10.151.1.0/24", "n1"]);
    h.ok(&["network", "create", "--subnet", "10.151.2.0/24", "n2"]);
    h.ok(&["container", "create", "--network", "n1", "a"]);
    h.ok(&["container", "create", "--network", "n2", "b"]);
    (h.ip_of("a"), h.ip_of("b"))
}

#[test]
fn monitor_shows_cross_network_drop_with_both_names_within_a_second() {
    let h = Host::start();
    let (ip_a, ip_b) = two_networks(&h);
    let mon = Monitor::start(&h, &["--type", "drop"]);
    let only_b = Monitor::start(&h, &["--container", "b"]);
    h.ok(&["container", "create", "--network", "n1", "other"]);
    let only_other = Monitor::start(&h, &["--container", "other"]);
    let table = Monitor::start_as(&h, "table", &[]);

    assert!(
        !h.ping_once(&Ns::c("a"), &ip_b),
        "a reached b across networks"
    );
    let is_it = |v: &Value| v["type"] == "drop" && v["what"] == "cross_network";
    let (read_at, ev) = mon
        .find(Duration::from_secs(10), is_it)
        .expect("no cross_network drop event");
    // Made by the kernel (its timestamp) and shown within a second.
    let lag = now_epoch() - read_at.elapsed().as_secs_f64() - ev["time"].as_f64().unwrap();
    assert!(lag < 1.0, "event shown {lag:.3} s after the drop: {ev}");
    assert_eq!(ev["proto"], "icmp", "{ev}");
    assert_eq!(ev["point"], "from_container", "{ev}");
    assert_eq!(ev["interface"], "a@n1", "{ev}");
    assert_eq!(ev["src"]["ip"], ip_a.as_str(), "{ev}");
    assert_eq!(ev["src"]["container"], "a", "{ev}");
    assert_eq!(ev["src"]["network"], "n1", "{ev}");
    assert_eq!(ev["dst"]["ip"], ip_b.as_str(), "{ev}");
    assert_eq!(ev["dst"]["container"], "b", "{ev}");
    assert_eq!(ev["dst"]["network"], "n2", "{ev}");

    // For people: one line with both names.
    let line = table.find_line(
        Duration::from_secs(5),
        &[
            "DROP",
            "cross_network",
            "icmp",
            "(a@n1)",
            "(b@n2)",
            "from_container",
        ],
    );
    assert!(line.is_some(), "no table line for the drop");

    // The container filter: b is involved, `other` is not.
    assert!(only_b.find(Duration::from_secs(5), is_it).is_some());
    assert!(only_other.find(Duration::from_secs(1), |_| true).is_none());

    // Bad input: one line, a clear kind.
    let err = h.fail(&["monitor", "--container", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    assert_eq!(
        h.cli(&["monitor", "--container", "nosuch"]).status.code(),
        Some(4)
    );
    assert_eq!(
        h.cli(&["monitor", "--type", "bogus"]).status.code(),
        Some(2)
    );
}

/// A UDP client in `ns` that sends a datagram to `ip:port` every 200 ms
/// from one socket (one flow) and prints `GOT` at the first answer.
const UDP_FLOW: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
said = False
for _ in range(300):
    s.sendto(b"x\n", (sys.argv[1], int(sys.argv[2])))
    try:
        s.recv(100)
        if not said:
            print("GOT", flush=True)
            said = True
    except socket.timeout:
        pass
    time.sleep(0.2)
"#;

#[test]
fn flows_show_masquerade_and_published_port_flows() {
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.152.1.0/24", "front"]);
    h.ok(&["container", "create", "--network", "front", "client"]);
    h.ok(&[
        "container",
        "create",
        "--network",
        "front",
        "-p",
        "5353:5300/udp",
        "web",
    ]);
    let (client_ip, web_ip) = (h.ip_of("client"), h.ip_of("web"));

    // Masquerade: the client talks to a server outside.
    let _out_srv = h.udp_server(&Ns::Outside, "0.0.0.0", 9001);
    let py = dataplane_tests::python();
    let mut masq = h.spawn_in(
        &Ns::c("client"),
        &[py, "-c", UDP_FLOW, &h.outside_ip, "9001"],
    );
    masq.wait_line("GOT", Duration::from_secs(20));
    // Published port: the outside talks to web through the host's 5353.
    let _web_srv = h.udp_server(&Ns::c("web"), "0.0.0.0", 5300);
    let mut publ = h.spawn_in(&Ns::Outside, &[py, "-c", UDP_FLOW, &h.uplink_ip, "5353"]);
    publ.wait_line("GOT", Duration::from_secs(20));

    let flows: Value = serde_json::from_str(&h.ok(&["--format", "json", "flows"])).unwrap();
    let list = flows.as_array().unwrap();
    let m = list
        .iter()
        .find(|f| f["kind"] == "masquerade" && f["container"] == "client")
        .unwrap_or_else(|| panic!("no masquerade flow of client: {flows:#}"));
    assert_eq!(m["network"], "front", "{m}");
    assert_eq!(m["proto"], "udp", "{m}");
    assert!(
        m["from"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{client_ip}:")),
        "{m}"
    );
    assert_eq!(m["to"], format!("{}:9001", h.outside_ip), "{m}");
    assert!(
        m["translated"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", h.uplink_ip)),
        "{m}"
    );
    assert_eq!(m["state"], "replied", "{m}");
    assert!(m["age_s"].as_u64().unwrap() < 5, "{m}");

    let p = list
        .iter()
        .find(|f| f["kind"] == "published" && f["container"] == "web")
        .unwrap_or_else(|| panic!("no published-port flow of web: {flows:#}"));
    assert_eq!(p["proto"], "udp", "{p}");
    assert!(
        p["from"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", h.outside_ip)),
        "{p}"
    );
    assert_eq!(p["to"], format!("{}:5353", h.uplink_ip), "{p}");
    assert_eq!(p["translated"], format!("{web_ip}:5300"), "{p}");
    assert_eq!(p["state"], "replied", "{p}");

    // --container keeps only that container's flows.
    let web_only: Value =
        serde_json::from_str(&h.ok(&["--format", "json", "flows", "--container", "web"])).unwrap();
    let kinds: Vec<&Value> = web_only
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["kind"])
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == "published"),
        "{web_only:#}"
    );
    // The table names them in words.
    let table = h.ok(&["flows"]);
    assert!(
        table.contains("masquerade") && table.contains("client@front"),
        "{table}"
    );
    assert!(
        table.contains("published") && table.contains("web@front"),
        "{table}"
    );
    assert_eq!(
        h.cli(&["flows", "--container", "nosuch"]).status.code(),
        Some(4)
    );

    // Traces: the masquerade as it happens, with the container's own tuple.
    let mon = Monitor::start(&h, &["--type", "trace", "--container", "client"]);
    let (_, ev) = mon
        .find(Duration::from_secs(10), |v| {
            v["type"] == "trace" && v["orig_src"]["container"] == "client"
        })
        .expect("no trace of the masqueraded flow");
    assert_eq!(ev["point"], "from_container", "{ev}");
    assert_eq!(ev["src"]["ip"], h.uplink_ip.as_str(), "{ev}");
    assert_eq!(ev["src"]["host"], true, "{ev}");
    assert_eq!(ev["dst"]["ip"], h.outside_ip.as_str(), "{ev}");
    assert_eq!(ev["orig_src"]["ip"], client_ip.as_str(), "{ev}");
}

/// `/metrics` as (series with labels, value); panics on a line that is not
/// a comment, a series or the final `# EOF`.
fn scrape(h: &Host, addr: &str) -> Vec<(String, f64)> {
    let url = format!("http://{addr}/metrics");
    let text = h.run_ok(&Ns::Host, &["curl", "-sf", "--max-time", "10", &url]);
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF: {text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {l:?}"));
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad metric name in {l:?}"
            );
            (series.to_string(), v)
        })
        .collect()
}

/// The value of the one series whose text contains every needle (a
/// needle ending in a space: the whole series, a metric without labels).
fn value(samples: &[(String, f64)], needles: &[&str]) -> f64 {
    let found: Vec<&(String, f64)> = samples
        .iter()
        .filter(|(s, _)| {
            needles.iter().all(|n| match n.strip_suffix(' ') {
                Some(exact) => s == exact,
                None => s.contains(n),
            })
        })
        .collect();
    assert_eq!(found.len(), 1, "series {needles:?}: {found:?}");
    found[0].1
}

const METRICS: &str = "127.0.0.1:19423";

#[test]
fn metrics_parse_and_move_with_traffic() {
    let h = Host::start_with(&["--metrics-addr", METRICS]);
    let (_, ip_b) = two_networks(&h);
    h.ok(&["container", "create", "--network", "n1", "a2"]);
    let ip_a2 = h.ip_of("a2");
    let before = scrape(&h, METRICS);
    let tx = |s: &[(String, f64)]| {
        value(
            s,
            &[
                "dataplane_endpoint_tx_packets_total{",
                "container=\"a\"",
                "network=\"n1\"",
            ],
        )
    };
    let tx0 = tx(&before);
    assert!(h.ping(&Ns::c("a"), &ip_a2), "a cannot reach a2");
    assert!(!h.ping_once(&Ns::c("a"), &ip_b));
    let after = scrape(&h, METRICS);
    assert!(
        tx(&after) >= tx0 + 2.0,
        "tx of a did not move: {tx0} -> {}",
        tx(&after)
    );
    let drops = value(
        &after,
        &[
            "dataplane_endpoint_drops_total{",
            "container=\"a\"",
            "reason=\"cross_network\"",
        ],
    );
    assert!(drops >= 1.0, "{drops}");
    assert!(
        value(
            &after,
            &["dataplane_drops_total{", "reason=\"cross_network\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            &["dataplane_network_packets_total{", "network=\"n1\""]
        ) > 0.0
    );
    assert_eq!(value(&after, &["dataplane_containers "]), 3.0);
    assert!(value(&after, &["dataplane_flow_table_capacity{", "DP_NAT_OUT"]) > 0.0);
    assert!(value(&after, &["dataplane_nat_ports "]) > 0.0);
    // The agent's own operations: the creates above, and reconcile passes.
    let creates = value(
        &after,
        &[
            "dataplane_api_requests_total{",
            "method=\"POST\"",
            "route=\"/v1/containers\"",
            "status=\"200\"",
        ],
    );
    assert!(creates >= 3.0, "{creates}");
    assert!(
        value(
            &after,
            &["dataplane_reconcile_passes_total{", "pass=\"start\""]
        ) >= 1.0
    );
    assert!(after
        .iter()
        .any(|(s, _)| s.starts_with("dataplane_api_request_duration_seconds_bucket{")));
}

#[test]
fn nothing_is_emitted_without_a_monitor() {
    let h = Host::start_with(&["--metrics-addr", METRICS]);
    let (ip_a, ip_b) = two_networks(&h);
    h.ok(&["container", "create", "--network", "n1", "a2"]);
    let emitted = |h: &Host| {
        value(
            &scrape(h, METRICS),
            &["dataplane_monitor_events_emitted_total "],
        )
    };
    let attached = |h: &Host| value(&scrape(h, METRICS), &["dataplane_monitor_attached "]);
    assert_eq!(attached(&h), 0.0);
    // Traffic of every kind the programs would report: forwarded, dropped.
    let a2 = h.ip_of("a2");
    assert!(h.ping(&Ns::c("a"), &a2));
    for _ in 0..3 {
        assert!(!h.ping_once(&Ns::c("a"), &ip_b));
    }
    assert!(!h.ping_once(&Ns::c("b"), &ip_a));
    assert_eq!(
        emitted(&h),
        0.0,
        "events were emitted with no monitor attached"
    );

    // The counter does count: attached, the same traffic emits.
    {
        let mon = Monitor::start(&h, &["--type", "all"]);
        assert_eq!(attached(&h), 1.0);
        assert!(!h.ping_once(&Ns::c("a"), &ip_b));
        assert!(mon
            .find(Duration::from_secs(10), |v| v["what"] == "cross_network")
            .is_some());
        assert!(emitted(&h) >= 1.0);
    }
    // Detached when the monitor goes away: nothing more.
    assert!(
        wait_until(Duration::from_secs(10), || attached(&h) == 0.0),
        "the monitor was not detached"
    );
    let n = emitted(&h);
    assert!(h.ping(&Ns::c("a"), &a2));
    assert!(!h.ping_once(&Ns::c("a"), &ip_b));
    assert_eq!(emitted(&h), n, "events were emitted after the monitor left");
}

/// Sends 1-byte UDP datagrams to argv[1]:argv[2] for argv[3] seconds as
/// fast as it can; prints how many.
const UDP_FLOOD: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst = (sys.argv[1], int(sys.argv[2]))
end = time.time() + float(sys.argv[3])
n = 0
while time.time() < end:
    for _ in range(200):
        s.sendto(b"x", dst)
    n += 200
print(n)
"#;

#[test]
fn a_flood_of_drops_is_rate_limited_per_cpu() {
    let h = Host::start_with(&["--metrics-addr", METRICS]);
    let (_, ip_b) = two_networks(&h);
    let stat = |h: &Host, name: &str| value(&scrape(h, METRICS), &[name]);
    let mon = Monitor::start(&h, &["--type", "drop"]);
    let attached_at = Instant::now();
    let py = dataplane_tests::python();
    let sent: u64 = h
        .exec_ok("a", &[py, "-c", UDP_FLOOD, &ip_b, "9", "2"])
        .trim()
        .parse()
        .unwrap();
    let emitted = stat(&h, "dataplane_monitor_events_emitted_total ");
    let limited = stat(&h, "dataplane_monitor_events_rate_limited_total ");
    let secs = attached_at.elapsed().as_secs_f64();
    // Per-CPU buckets exist for every possible CPU ("0-N").
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let last = possible.trim().rsplit(['-', ',']).next().unwrap();
    let cpus = last.parse::<f64>().unwrap() + 1.0;
    eprintln!("flood: {sent} sent, {emitted} emitted, {limited} rate-limited in {secs:.1} s");
    // Each CPU: at most the burst plus the rate over the time attached.
    let bound = cpus * (1_000.0 + 10_000.0 * secs);
    assert!(
        emitted <= bound,
        "{emitted} events emitted in {secs:.1} s on {cpus} CPUs (bound {bound})"
    );
    assert!(
        sent as f64 > bound,
        "the flood was too slow to test the limit: {sent} datagrams"
    );
    assert!(
        limited > 0.0,
        "nothing was rate-limited: {sent} sent, {emitted} emitted"
    );
    assert!(emitted > 0.0);
    // The monitor got (at most) what was emitted, and kept up.
    assert!(mon
        .find(Duration::from_secs(5), |v| v["what"] == "cross_network")
        .is_some());
}
