//! Races: many parallel creates of one container name, one static IP and one
//! host port. Exactly one wins each race, every loser gets a one-line
//! conflict error, and nothing half-made is left (namespaces, veths and map
//! entries are exactly the winners').

mod soak_support;

use std::{
    collections::BTreeSet,
    process::{Output, Stdio},
};

use dataplane_tests::*;
use soak_support::{count, Figures};

/// Run every command at once; their outputs.
fn all_at_once(h: &Host, cmds: &[Vec<String>]) -> Vec<Output> {
    let children: Vec<_> = cmds
        .iter()
        .map(|a| {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            h.cli_cmd(&a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn dir_names(p: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn host_veths(h: &Host) -> usize {
    h.run_ok(&Ns::Host, &["ip", "-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .filter(|n| {
            dataplane_agent::engine::is_endpoint_ifname(n.trim().split('@').next().unwrap_or(""))
        })
        .count()
}

#[test]
fn parallel_creates_of_one_name_ip_and_port_have_exactly_one_winner() {
    let n = count(100, 100);
    let mut fig = Figures::new("races");
    let h = Host::start();
    h.ok(&["network", "create", "--subnet", "10.76.0.0/22", "race"]);
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<String>>();
    let races: Vec<(&str, Vec<Vec<String>>, &str)> = vec![
        (
            "one_name",
            (0..n)
                .map(|_| s(&["container", "create", "--network", "race", "same"]))
                .collect(),
            "same",
        ),
        (
            "one_static_ip",
            (0..n)
                .map(|i| {
                    s(&[
                        "container",
                        "create",
                        "--network",
                        "race",
                        "--ip",
                        "10.76.1.77",
                        &format!("ip{i}"),
                    ])
                })
                .collect(),
            "10.76.1.77",
        ),
        (
            "one_host_port",
            (0..n)
                .map(|i| {
                    s(&[
                        "container",
                        "create",
                        "--network",
                        "race",
                        "-p",
                        "9090:80",
                        &format!("port{i}"),
                    ])
                })
                .collect(),
            "9090",
        ),
    ];
    let mut problems = Vec::new();
    for (race, cmds, what) in &races {
        let outs = all_at_once(&h, cmds);
        let winners = outs.iter().filter(|o| o.status.success()).count();
        let mut unclear = 0u64;
        for o in outs.iter().filter(|o| !o.status.success()) {
            let e = stderr(o);
            let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
            // Exit code 5: conflict.
            if lines.len() != 1 || !lines[0].contains(what) || o.status.code() != Some(5) {
                unclear += 1;
                if unclear == 1 {
                    problems.push(format!(
                        "{race}: unclear error ({:?}): {e:?}",
                        o.status.code()
                    ));
                }
            }
        }
        fig.set(&format!("{race}_attempts"), cmds.len() as u64);
        fig.set(&format!("{race}_winners"), winners as u64);
        fig.set(&format!("{race}_unclear_errors"), unclear);
        if winners != 1 {
            problems.push(format!("{race}: {winners} winners"));
        }
    }
    // Nothing half-made: the three winners, nothing else.
    let names: BTreeSet<String> = h
        .ls("container")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let netns = dir_names(&h.run_dir().join("netns"));
    let veths = host_veths(&h);
    let entries = h.map_entries("DP_ENDPOINTS").len();
    let ports = h.map_entries("DP_PORTS").len();
    let half_made = u64::from(netns != names)
        + u64::from(veths != names.len())
        + u64::from(entries != names.len())
        + u64::from(ports != 1);
    fig.set("half_made_objects", half_made);
    fig.write();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        half_made, 0,
        "netns {netns:?}, containers {names:?}, {veths} veths, {entries} endpoints, {ports} ports"
    );
}
