//! The resolver files of a container (`hosts`, `resolv.conf`, `hostname`
//! under `<run-dir>/containers/<name>/`), the validation of the flags that
//! shape them (`--dns`, `--dns-search`, `--dns-option`, `--add-host`,
//! `--network-alias`, `--hostname`), the host's resolv.conf as upstream
//! default, and the mounts `container exec` makes so that ordinary tools
//! read these files as /etc/hosts, /etc/resolv.conf and /etc/hostname.

use std::{
    ffi::CString,
    fmt::Write as _,
    io::Write,
    net::{IpAddr, Ipv4Addr},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use nix::{
    errno::Errno,
    mount::{mount, MsFlags},
    sched::{unshare, CloneFlags},
};
use serde::{Deserialize, Serialize};

use super::{forward::Upstream, server::RESOLVER_IP};

/// The lines every hosts file starts with (Docker's).
pub const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Resolvers a container gets when neither `--dns` nor the host has one
/// it can reach (Docker's fallback).
pub const FALLBACK_NAMESERVERS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// Longest domain name (RFC 1035, without the final dot).
pub const MAX_NAME_LEN: usize = 253;

/// `--add-host` target: an address, or `host-gateway` (the network's gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostAddr {
    Ip(IpAddr),
    HostGateway,
}

/// One `--add-host NAME:ADDR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub addr: HostAddr,
}

/// A container's validated DNS flags, as stored with the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// `--dns`
    #[serde(default)]
    pub servers: Vec<IpAddr>,
    /// `--dns-search`
    #[serde(default)]
    pub search: Vec<String>,
    /// `--dns-option`
    #[serde(default)]
    pub options: Vec<String>,
    /// `--add-host`
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
}

impl DnsConfig {
    /// Validate the flags; the first bad one is a one-line error.
    pub fn parse(
        servers: &[String],
        search: &[String],
        options: &[String],
        add_hosts: &[String],
    ) -> Result<DnsConfig> {
        let servers = servers
            .iter()
            .map(|s| parse_dns_server(s))
            .collect::<Result<_>>()?;
        for s in search {
            validate_search_domain(s)?;
        }
        for o in options {
            validate_dns_option(o)?;
        }
        let extra_hosts = add_hosts
            .iter()
            .map(|s| parse_add_host(s))
            .collect::<Result<_>>()?;
        Ok(DnsConfig {
            servers,
            search: search.to_vec(),
            options: options.to_vec(),
            extra_hosts,
        })
    }
}

/// `--dns ADDR`: an IPv4 or IPv6 address.
pub fn parse_dns_server(s: &str) -> Result<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| anyhow!("invalid --dns {s:?}: not an IP address"))
}

/// `--add-host NAME:ADDR` (also `NAME=ADDR`); ADDR is an IPv4/IPv6 address
/// (IPv6 optionally in brackets) or `host-gateway`.
pub fn parse_add_host(s: &str) -> Result<ExtraHost> {
    let split = s.find(['=', ':']);
    let Some(i) = split else {
        bail!("invalid --add-host {s:?}: expected NAME:ADDRESS");
    };
    let (name, addr) = (&s[..i], &s[i + 1..]);
    if addr.is_empty() {
        bail!("invalid --add-host {s:?}: no address");
    }
    validate_name(name).map_err(|e| anyhow!("invalid --add-host {s:?}: {e}"))?;
    let addr = if addr == "host-gateway" {
        HostAddr::HostGateway
    } else {
        let bare = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        HostAddr::Ip(
            bare.parse()
                .map_err(|_| anyhow!("invalid --add-host {s:?}: {addr:?} is not an IP address"))?,
        )
    };
    Ok(ExtraHost {
        name: name.to_string(),
        addr,
    })
}

/// One DNS label as container names and aliases use them: 1-63 of
/// `[A-Za-z0-9_-]`, not starting or ending with `-`.
pub fn validate_label(l: &str) -> Result<()> {
    if l.is_empty() || l.len() > 63 {
        bail!("{l:?} is not a DNS label (1 to 63 characters)");
    }
    if !l
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("{l:?} is not a DNS label (letters, digits, '-' and '_' only)");
    }
    if l.starts_with('-') || l.ends_with('-') {
        bail!("{l:?} is not a DNS label (starts or ends with '-')");
    }
    Ok(())
}

/// A domain name: dot-separated labels, at most 253 characters.
pub fn validate_name(n: &str) -> Result<()> {
    let n = n.strip_suffix('.').unwrap_or(n);
    if n.len() > MAX_NAME_LEN {
        bail!("name {n:?} is longer than {MAX_NAME_LEN} characters");
    }
    if n.is_empty() {
        bail!("empty name");
    }
    n.split('.').try_for_each(validate_label)
}

/// `--network-alias`: a DNS name made of valid labels.
pub fn validate_alias(a: &str) -> Result<()> {
    validate_name(a).map_err(|e| anyhow!("invalid --network-alias {a:?}: {e}"))
}

/// `--hostname`: a DNS name (Docker allows up to 64 characters).
pub fn validate_hostname(h: &str) -> Result<()> {
    if h.len() > 64 {
        bail!("invalid --hostname {h:?}: longer than 64 characters");
    }
    validate_name(h).map_err(|e| anyhow!("invalid --hostname {h:?}: {e}"))
}

/// `--dns-search`: a domain name of at most 253 characters (or `.`).
pub fn validate_search_domain(s: &str) -> Result<()> {
    if s == "." {
        return Ok(());
    }
    validate_name(s).map_err(|e| anyhow!("invalid --dns-search {s:?}: {e}"))
}

/// resolv.conf options glibc knows, and whether they take `:N`.
const OPTIONS: &[(&str, bool)] = &[
    ("ndots", true),
    ("timeout", true),
    ("attempts", true),
    ("rotate", false),
    ("no-check-names", false),
    ("inet6", false),
    ("edns0", false),
    ("single-request", false),
    ("single-request-reopen", false),
    ("no-tld-query", false),
    ("use-vc", false),
    ("no-reload", false),
    ("trust-ad", false),
    ("no-aaaa", false),
];

/// `--dns-option`: `NAME` or `NAME:N` for an option resolv.conf knows.
pub fn validate_dns_option(o: &str) -> Result<()> {
    let (name, value) = match o.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (o, None),
    };
    let Some((_, numeric)) = OPTIONS.iter().find(|(n, _)| *n == name) else {
        bail!("invalid --dns-option {o:?}: unknown option {name:?}");
    };
    match (numeric, value) {
        (true, Some(v)) if v.parse::<u8>().is_ok() => Ok(()),
        (true, _) => bail!("invalid --dns-option {o:?}: {name} needs a number, as {name}:N"),
        (false, None) => Ok(()),
        (false, Some(_)) => bail!("invalid --dns-option {o:?}: {name} takes no value"),
    }
}

/// The host's resolver settings (its resolv.conf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostResolv {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Parse resolv.conf text; unknown lines and bad addresses are skipped.
pub fn parse_resolv_conf(text: &str) -> HostResolv {
    let mut r = HostResolv::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    r.nameservers.push(ip);
                }
            }
            // The last search/domain line wins, as in glibc.
            Some("search" | "domain") => r.search = words.map(str::to_string).collect(),
            Some("options") => r.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    r
}

/// Read the host's resolv.conf (a missing file means no settings).
pub fn read_host_resolv(path: &Path) -> Result<HostResolv> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_resolv_conf(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostResolv::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The embedded resolver's upstreams: `--dns` servers if given, else the
/// host's (loopback ones are asked from the host namespace).
pub fn upstreams(cfg: &DnsConfig, host: &HostResolv) -> Vec<Upstream> {
    let servers = if cfg.servers.is_empty() {
        &host.nameservers
    } else {
        &cfg.servers
    };
    servers.iter().map(|ip| Upstream::new(*ip)).collect()
}

/// How a container resolves names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvMode {
    /// On a user-defined network: the embedded resolver at 127.0.0.11.
    Embedded,
    /// Default `bridge` (and `none`): the servers themselves, as Docker.
    Direct,
}

/// resolv.conf for a container.
pub fn resolv_conf_content(mode: ResolvMode, cfg: &DnsConfig, host: &HostResolv) -> String {
    let search = if cfg.search.is_empty() {
        &host.search
    } else {
        &cfg.search
    };
    let mut options = if cfg.options.is_empty() {
        host.options.clone()
    } else {
        cfg.options.clone()
    };
    let mut out = String::new();
    match mode {
        ResolvMode::Embedded => {
            let ups: Vec<String> = upstreams(cfg, host)
                .iter()
                .map(|u| u.addr.ip().to_string())
                .collect();
            let _ = writeln!(
                out,
                "# dataplane embedded DNS; other names go to: {}",
                if ups.is_empty() {
                    "(none)".to_string()
                } else {
                    ups.join(" ")
                }
            );
            let _ = writeln!(out, "nameserver {RESOLVER_IP}");
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
        }
        ResolvMode::Direct => {
            let mut servers: Vec<IpAddr> = if cfg.servers.is_empty() {
                // Loopback servers of the host are not reachable from a container.
                host.nameservers
                    .iter()
                    .copied()
                    .filter(|ip| !ip.is_loopback())
                    .collect()
            } else {
                cfg.servers.clone()
            };
            if servers.is_empty() {
                servers = FALLBACK_NAMESERVERS
                    .iter()
                    .map(|ip| IpAddr::V4(*ip))
                    .collect();
            }
            for s in servers {
                let _ = writeln!(out, "nameserver {s}");
            }
        }
    }
    let search: Vec<&str> = search
        .iter()
        .map(String::as_str)
        .filter(|s| *s != ".")
        .collect();
    if !search.is_empty() {
        let _ = writeln!(out, "search {}", search.join(" "));
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

/// A `--link` alias written to /etc/hosts on the default bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsLink {
    pub ip: Ipv4Addr,
    pub alias: String,
    pub target_name: String,
    pub target_id: String,
}

/// What a container's hosts file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsSpec<'a> {
    pub hostname: &'a str,
    /// The container's address on its first network (none: no line).
    pub ip: Option<Ipv4Addr>,
    pub extra_hosts: &'a [ExtraHost],
    /// What `host-gateway` means for this container (its network's gateway).
    pub gateway: Option<Ipv4Addr>,
    /// Link aliases (default bridge only; on user networks DNS answers them).
    pub links: &'a [HostsLink],
}

/// hosts file content; `host-gateway` without a gateway is an error.
pub fn hosts_content(spec: &HostsSpec<'_>) -> Result<String> {
    let mut out = String::from(DEFAULT_HOSTS);
    if let Some(ip) = spec.ip {
        let _ = writeln!(out, "{ip}\t{}", spec.hostname);
    }
    for h in spec.extra_hosts {
        let ip = match h.addr {
            HostAddr::Ip(ip) => ip,
            HostAddr::HostGateway => IpAddr::V4(spec.gateway.ok_or_else(|| {
                anyhow!(
                    "--add-host {}:host-gateway: the container has no gateway",
                    h.name
                )
            })?),
        };
        let _ = writeln!(out, "{ip}\t{}", h.name);
    }
    for l in spec.links {
        let short: String = l
            .target_id
            .chars()
            .take(super::zone::SHORT_ID_LEN)
            .collect();
        let mut names = vec![l.alias.as_str()];
        for n in [short.as_str(), l.target_name.as_str()] {
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        let _ = writeln!(out, "{}\t{}", l.ip, names.join(" "));
    }
    Ok(out)
}

/// hostname file content.
pub fn hostname_content(hostname: &str) -> String {
    format!("{hostname}\n")
}

pub const HOSTS: &str = "hosts";
pub const RESOLV_CONF: &str = "resolv.conf";
pub const HOSTNAME: &str = "hostname";

/// `<run-dir>/containers/<name>`: where a container's files live.
pub fn container_dir(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("containers").join(name)
}

/// Write `content` to `path` atomically (temporary file + rename): readers
/// see the old or the new file, never a part. A file that already holds
/// `content` is left alone (the engine rewrites every container's files
/// after each change; most are unchanged).
pub fn write_atomic(path: &Path, content: &str) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(());
    }
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
}

/// The three files of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFiles {
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: String,
}

impl ContainerFiles {
    /// Write them into `dir` (each atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(HOSTS), &self.hosts)?;
        write_atomic(&dir.join(RESOLV_CONF), &self.resolv_conf)?;
        write_atomic(&dir.join(HOSTNAME), &self.hostname)
    }
}

/// Remove a container's directory (missing is fine).
pub fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// The bind mounts `container exec` makes, prepared before any fork so that
/// [`ExecMounts::apply`] only makes system calls (safe between fork and exec).
#[derive(Debug, Clone)]
pub struct ExecMounts {
    binds: Vec<(CString, CString)>,
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| anyhow!("path {} has a NUL byte", p.display()))
}

impl ExecMounts {
    /// The files of `dir` that exist, over /etc targets that exist.
    pub fn prepare(dir: &Path) -> Result<ExecMounts> {
        ExecMounts::prepare_onto(dir, Path::new("/etc"))
    }

    /// Same with another target directory (tests).
    pub fn prepare_onto(dir: &Path, etc: &Path) -> Result<ExecMounts> {
        let mut binds = Vec::new();
        for f in [HOSTS, RESOLV_CONF, HOSTNAME] {
            let (src, dst) = (dir.join(f), etc.join(f));
            if src.is_file() && dst.exists() {
                binds.push((cpath(&src)?, cpath(&dst)?));
            }
        }
        Ok(ExecMounts { binds })
    }

    pub fn is_empty(&self) -> bool {
        self.binds.is_empty()
    }

    /// In the calling (single-threaded) process: a private mount namespace
    /// whose mounts do not propagate back (`/` made rslave), with the files
    /// bind-mounted over their targets, as `ip netns exec` does with
    /// /etc/netns/NAME.
    pub fn apply(&self) -> Result<(), Errno> {
        if self.binds.is_empty() {
            return Ok(());
        }
        unshare(CloneFlags::CLONE_NEWNS)?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )?;
        for (src, dst) in &self.binds {
            mount(
                Some(src.as_c_str()),
                dst.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        let e = format!("{:#}", r.unwrap_err());
        assert!(!e.contains('\n'), "one-line error: {e}");
        e
    }

    #[test]
    fn add_host_forms() {
        let h = parse_add_host("db:10.0.0.5").unwrap();
        assert_eq!(h.name, "db");
        assert_eq!(h.addr, HostAddr::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(parse_add_host("db=10.0.0.5").unwrap(), h);
        assert_eq!(
            parse_add_host("v6:::1").unwrap().addr,
            HostAddr::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("v6:[2001:db8::1]").unwrap().addr,
            HostAddr::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("gw:host-gateway").unwrap().addr,
            HostAddr::HostGateway
        );
        assert!(err(parse_add_host("db")).contains("NAME:ADDRESS"));
        assert!(err(parse_add_host("db:")).contains("no address"));
        assert!(err(parse_add_host("db:10.0.0")).contains("not an IP address"));
        assert!(err(parse_add_host("bad name:10.0.0.1")).contains("not a DNS label"));
    }

    #[test]
    fn dns_server_alias_search_option_validation() {
        assert_eq!(
            parse_dns_server("10.0.0.53").unwrap(),
            IpAddr::from([10, 0, 0, 53])
        );
        assert!(parse_dns_server("2001:db8::53").is_ok());
        assert!(err(parse_dns_server("10.0.0.300")).contains("--dns"));
        assert!(err(parse_dns_server("ns.example.com")).contains("not an IP address"));

        for ok in ["db", "web_1", "my-alias", "a.b.c", "A1"] {
            validate_alias(ok).unwrap();
        }
        for bad in ["", "-x", "x-", "a b", "a..b", "ü", &"x".repeat(64)] {
            assert!(err(validate_alias(bad)).contains("--network-alias"));
        }

        validate_search_domain("example.com").unwrap();
        validate_search_domain(".").unwrap();
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(err(validate_search_domain(&long)).contains("longer than 253"));

        for ok in ["ndots:2", "timeout:1", "rotate", "edns0", "attempts:3"] {
            validate_dns_option(ok).unwrap();
        }
        assert!(err(validate_dns_option("ndots")).contains("needs a number"));
        assert!(err(validate_dns_option("ndots:x")).contains("needs a number"));
        assert!(err(validate_dns_option("rotate:1")).contains("takes no value"));
        assert!(err(validate_dns_option("bogus")).contains("unknown option"));

        validate_hostname("web.example").unwrap();
        assert!(err(validate_hostname(&"h".repeat(65))).contains("64"));
    }

    #[test]
    fn dns_config_rejects_the_first_bad_flag() {
        let s = |v: &[&str]| {
            v.iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
        };
        let cfg = DnsConfig::parse(
            &s(&["10.0.0.53"]),
            &s(&["corp.example"]),
            &s(&["ndots:2"]),
            &s(&["gw:host-gateway"]),
        )
        .unwrap();
        assert_eq!(cfg.servers, [IpAddr::from([10, 0, 0, 53])]);
        assert_eq!(cfg.extra_hosts[0].addr, HostAddr::HostGateway);
        assert!(err(DnsConfig::parse(&s(&["x"]), &[], &[], &[])).contains("--dns"));
        assert!(err(DnsConfig::parse(&[], &[], &[], &s(&["h"]))).contains("--add-host"));
    }

    #[test]
    fn resolv_conf_parsing_and_upstreams() {
        let host = parse_resolv_conf(
            "# comment\nnameserver 127.0.0.53\nnameserver 10.1.1.1 # x\nnameserver bogus\n\
             search a.example b.example\noptions edns0 trust-ad\n",
        );
        assert_eq!(
            host.nameservers,
            [IpAddr::from([127, 0, 0, 53]), IpAddr::from([10, 1, 1, 1])]
        );
        assert_eq!(host.search, ["a.example", "b.example"]);
        assert_eq!(host.options, ["edns0", "trust-ad"]);
        let ups = upstreams(&DnsConfig::default(), &host);
        assert_eq!(ups.len(), 2);
        assert!(ups[0].from_host, "loopback upstream is asked from the host");
        assert!(!ups[1].from_host);
        assert_eq!(ups[1].addr, "10.1.1.1:53".parse().unwrap());
        let cfg = DnsConfig {
            servers: vec![IpAddr::from([192, 0, 2, 1])],
            ..Default::default()
        };
        assert_eq!(
            upstreams(&cfg, &host),
            [Upstream::new(IpAddr::from([192, 0, 2, 1]))]
        );
        assert_eq!(
            read_host_resolv(Path::new("/nonexistent/resolv.conf")).unwrap(),
            HostResolv::default()
        );
    }

    #[test]
    fn resolv_conf_embedded_and_direct() {
        let host =
            parse_resolv_conf("nameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch h.example\n");
        let emb = resolv_conf_content(ResolvMode::Embedded, &DnsConfig::default(), &host);
        assert!(emb.contains("nameserver 127.0.0.11\n"), "{emb}");
        assert!(!emb.contains("nameserver 10.1.1.1"));
        assert!(emb.contains("search h.example\n"));
        assert!(emb.contains("options ndots:0\n"));
        let cfg = DnsConfig {
            search: vec!["c.example".into()],
            options: vec!["ndots:3".into(), "rotate".into()],
            ..Default::default()
        };
        let emb = resolv_conf_content(ResolvMode::Embedded, &cfg, &host);
        assert!(emb.contains("search c.example\n"));
        assert!(emb.contains("options ndots:3 rotate\n"), "{emb}");

        let direct = resolv_conf_content(ResolvMode::Direct, &DnsConfig::default(), &host);
        assert_eq!(direct, "nameserver 10.1.1.1\nsearch h.example\n");
        let only_loopback = parse_resolv_conf("nameserver 127.0.0.1\n");
        let direct = resolv_conf_content(ResolvMode::Direct, &DnsConfig::default(), &only_loopback);
        assert_eq!(direct, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn hosts_file_lines() {
        let extra = vec![
            parse_add_host("db.local:10.9.9.9").unwrap(),
            parse_add_host("gw:host-gateway").unwrap(),
        ];
        let links = vec![HostsLink {
            ip: Ipv4Addr::new(172, 17, 0, 3),
            alias: "database".into(),
            target_name: "db".into(),
            target_id: "0123456789abcdef".into(),
        }];
        let spec = HostsSpec {
            hostname: "web",
            ip: Some(Ipv4Addr::new(172, 17, 0, 2)),
            extra_hosts: &extra,
            gateway: Some(Ipv4Addr::new(172, 17, 0, 1)),
            links: &links,
        };
        let h = hosts_content(&spec).unwrap();
        assert!(h.starts_with(DEFAULT_HOSTS));
        let rest: Vec<&str> = h[DEFAULT_HOSTS.len()..].lines().collect();
        assert_eq!(
            rest,
            [
                "172.17.0.2\tweb",
                "10.9.9.9\tdb.local",
                "172.17.0.1\tgw",
                "172.17.0.3\tdatabase 0123456789ab db"
            ]
        );
        let no_gw = HostsSpec {
            gateway: None,
            ..spec
        };
        assert!(err(hosts_content(&no_gw)).contains("host-gateway"));
        assert_eq!(hostname_content("web"), "web\n");
    }

    #[test]
    fn files_are_written_atomically_and_removed() {
        let dir = std::env::temp_dir().join(format!("dp-dns-files-{}", std::process::id()));
        let cdir = container_dir(&dir, "web");
        let files = ContainerFiles {
            hosts: "h\n".into(),
            resolv_conf: "r\n".into(),
            hostname: "n\n".into(),
        };
        files.write(&cdir).unwrap();
        assert_eq!(std::fs::read_to_string(cdir.join(HOSTS)).unwrap(), "h\n");
        let again = ContainerFiles {
            hosts: "h2\n".into(),
            ..files
        };
        again.write(&cdir).unwrap();
        assert_eq!(std::fs::read_to_string(cdir.join(HOSTS)).unwrap(), "h2\n");
        let names: Vec<_> = std::fs::read_dir(&cdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
        let m = ExecMounts::prepare_onto(&cdir, &cdir).unwrap();
        assert!(!m.is_empty());
        assert!(ExecMounts::prepare_onto(&cdir, Path::new("/nonexistent"))
            .unwrap()
            .is_empty());
        remove_dir(&cdir).unwrap();
        remove_dir(&cdir).unwrap();
        assert!(!cdir.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
