//! The parts of the reliability suite: each is a test binary of
//! `dataplane-tests` that writes its figures to `$DP_SOAK_OUT/<part>.json`
//! (see `tests/tests/soak_support/mod.rs`), and the figures that must be 0.

/// One part of the suite.
pub(crate) struct Part {
    /// Test binary (`tests/tests/<test>.rs`).
    pub(crate) test: &'static str,
    /// What it proves, for the report.
    pub(crate) title: &'static str,
    /// Figure files it writes.
    pub(crate) figures: &'static [&'static str],
    /// Figures that count losses or leaks: any non-zero value fails the run.
    pub(crate) must_be_zero: &'static [&'static str],
}

pub(crate) const PARTS: [Part; 8] = [
    Part {
        test: "soak_restarts",
        title: "Restarts under load: SIGTERM/SIGKILL alternating, live TCP of four kinds, a prober",
        figures: &["restarts_under_load"],
        must_be_zero: &["failed_exchanges", "resets", "isolation_leaks"],
    },
    Part {
        test: "soak_crash",
        title: "Crash consistency: randomized SIGKILLs during create/rm/connect/disconnect/publish",
        figures: &["crash_consistency"],
        must_be_zero: &["disagreements", "leaked_after_cleanup", "broken_containers"],
    },
    Part {
        test: "soak_tamper",
        title: "Tamper repair within 5 s; foreign programs left alone",
        figures: &["tamper_repair"],
        must_be_zero: &["unrepaired"],
    },
    Part {
        test: "soak_races",
        title: "Races: parallel creates of one name, one static IP, one host port",
        figures: &["races"],
        must_be_zero: &[
            "half_made_objects",
            "one_name_unclear_errors",
            "one_static_ip_unclear_errors",
            "one_host_port_unclear_errors",
        ],
    },
    Part {
        test: "soak_security",
        title: "Security: API socket permissions, non-root users, reachability from containers",
        figures: &["security", "security_reachability"],
        must_be_zero: &[
            "nonroot_changes_applied",
            "forbidden_probes_answered",
            "agent_tcp_listeners",
        ],
    },
    Part {
        test: "fuzz_progs",
        title: "Packet fuzzing through BPF_PROG_TEST_RUN with a reference policy model",
        figures: &["packet_fuzzing"],
        must_be_zero: &["violations"],
    },
    Part {
        test: "bad_inputs_catalogue",
        title:
            "Bad-input catalogue: HTTP API, CLI, Docker plugin (one-line errors, nothing changed)",
        figures: &[
            "bad_inputs_api",
            "bad_inputs_cli",
            "bad_inputs_docker_plugin",
        ],
        must_be_zero: &[
            "api_cases_mishandled",
            "cli_cases_mishandled",
            "docker_plugin_cases_mishandled",
        ],
    },
    Part {
        test: "soak_store",
        title:
            "Store faults: etcd stopped, compacted while an agent is down, partitioned from a host",
        figures: &["store_faults"],
        must_be_zero: &["lost_flows", "convergence_failures"],
    },
];
