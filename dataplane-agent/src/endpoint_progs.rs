//! The programs on the host side of a container's veth, attached and
//! detached together: `dp_from_container` at TC ingress (everything the
//! container sends) and `dp_to_container` at TC egress (drops what the
//! host's stack would forward into the container from any host interface:
//! direct access is refused on every interface, present or future, without
//! attaching anything to them).

use aya::programs::TcAttachType;
use dataplane_common::prog_names;

use crate::datapath::Datapath;

const PROGS: [(&str, TcAttachType); 2] = [
    (prog_names::FROM_CONTAINER, TcAttachType::Ingress),
    (prog_names::TO_CONTAINER, TcAttachType::Egress),
];

/// Attach both programs to the host-side veth `ifname` (pinned links;
/// re-adopted if already pinned).
pub fn attach(dp: &mut Datapath, ifname: &str) -> anyhow::Result<()> {
    for (prog, at) in PROGS {
        dp.attach_tc(prog, ifname, at)?;
    }
    Ok(())
}

/// Where `prog` attaches on a host-side veth, if it is one of these programs.
pub fn attach_type(prog: &str) -> Option<TcAttachType> {
    PROGS.iter().find(|(p, _)| *p == prog).map(|(_, at)| *at)
}

/// Detach both programs from `ifname`.
pub fn detach(dp: &mut Datapath, ifname: &str) {
    for (prog, _) in PROGS {
        dp.detach(prog, ifname);
    }
}

/// The pinned links of `ifname`, as (program, ifname).
pub fn links(ifname: &str) -> impl Iterator<Item = (String, String)> + '_ {
    PROGS
        .into_iter()
        .map(move |(prog, _)| (prog.to_string(), ifname.to_string()))
}
