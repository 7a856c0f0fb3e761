//! What rules of every policy language match against: the flow's protocol
//! and destination port, and each end of the flow as policy sees it; and
//! the three-valued answer (`Yes`, `No`, `Unknown`) that lets explain say
//! "indeterminate" instead of guessing when an identity is incomplete.
//!
//! Pure and allocation-free; used by the spec modules (`kubernetes`,
//! `admin`, `calico`) and by `explain`.

use std::net::IpAddr;

use flowscribe_model::{EndpointKind, PodIdentity};

use crate::kubernetes::PortRange;

/// The label the API server puts on every namespace; manifests often lack
/// it, so it is implied.
pub(crate) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The label every node carries with its name.
pub(crate) const NODE_HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Kleene's three-valued logic: `Unknown` when the answer depends on
/// something the identity index does not know (the backend of a Service,
/// a node's labels, a service account's labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    No,
    Yes,
    Unknown,
}

impl Tri {
    pub(crate) fn from_bool(b: bool) -> Tri {
        if b { Tri::Yes } else { Tri::No }
    }

    pub(crate) fn and(self, other: impl FnOnce() -> Tri) -> Tri {
        match self {
            Tri::No => Tri::No,
            Tri::Yes => other(),
            Tri::Unknown => match other() {
                Tri::No => Tri::No,
                _ => Tri::Unknown,
            },
        }
    }

    pub(crate) fn or(self, other: impl FnOnce() -> Tri) -> Tri {
        match self {
            Tri::Yes => Tri::Yes,
            Tri::No => other(),
            Tri::Unknown => match other() {
                Tri::Yes => Tri::Yes,
                _ => Tri::Unknown,
            },
        }
    }

    pub(crate) fn not(self) -> Tri {
        match self {
            Tri::No => Tri::Yes,
            Tri::Yes => Tri::No,
            Tri::Unknown => Tri::Unknown,
        }
    }

    /// `Yes` when any item is `Yes`; `Unknown` when none is but one is
    /// unknown; else `No`.
    pub(crate) fn any<T>(items: impl IntoIterator<Item = T>, f: impl Fn(T) -> Tri) -> Tri {
        let mut out = Tri::No;
        for item in items {
            match f(item) {
                Tri::Yes => return Tri::Yes,
                Tri::Unknown => out = Tri::Unknown,
                Tri::No => {}
            }
        }
        out
    }
}

/// One end of a flow as policy rules see it.
#[derive(Clone, Copy)]
pub(crate) struct EndpointView<'a> {
    /// The pod behind the address: a pod, or a Service's known backend.
    /// Host-network pods are not pods here (policy sees their node address).
    pub(crate) pod: Option<&'a PodIdentity>,
    pub(crate) addr: IpAddr,
    pub(crate) kind: EndpointKind,
    /// The node that owns a node address (or hosts a host-network pod).
    pub(crate) node: Option<&'a str>,
    /// A Service virtual IP whose backend is unknown: a selector may or may
    /// not have matched it.
    pub(crate) unresolved_service: bool,
    /// Identity sources were incomplete: an address without a pod may
    /// belong to a pod the index did not see.
    pub(crate) degraded: bool,
}

impl EndpointView<'_> {
    /// The answer for a pod or namespace selector when this end has no pod
    /// identity: `Unknown` if it might be a pod we could not see.
    pub(crate) fn unknown_pod(&self) -> Tri {
        if self.unresolved_service || (self.degraded && self.pod.is_none()) {
            Tri::Unknown
        } else {
            Tri::No
        }
    }

    /// Whether this end is a node address (a node, or a host-network pod
    /// which uses its node's address).
    pub(crate) fn is_node(&self) -> bool {
        matches!(self.kind, EndpointKind::Node | EndpointKind::HostNetworkPod)
    }
}

/// The flow facts that do not depend on the side.
pub(crate) struct FlowCtx<'a> {
    pub(crate) protocol: u8,
    pub(crate) dst_port: u16,
    pub(crate) src_port: u16,
    pub(crate) source: EndpointView<'a>,
    pub(crate) destination: EndpointView<'a>,
}

/// A namespace label of a pod, with the implied name label.
pub(crate) fn namespace_label<'a>(pod: &'a PodIdentity, key: &str) -> Option<&'a str> {
    pod.namespace_labels
        .get(key)
        .map(String::as_str)
        .or_else(|| (key == NAMESPACE_NAME_LABEL).then_some(&*pod.namespace))
}

/// Whether the destination's declared container port `name` is the flow's
/// destination port. `protocol`: the rule's protocol, or `None` to take the
/// container port's own (AdminNetworkPolicy `namedPort`).
pub(crate) fn named_port(ctx: &FlowCtx, name: &str, protocol: Option<u8>) -> Tri {
    match ctx.destination.pod {
        Some(pod) => Tri::from_bool(pod.ports.iter().any(|(n, number, proto)| {
            &**n == name
                && *number == ctx.dst_port
                && *proto == ctx.protocol
                && protocol.is_none_or(|p| p == ctx.protocol)
        })),
        None if ctx.destination.unresolved_service => Tri::Unknown,
        None => Tri::No,
    }
}

/// Whether an endpoint's declared container port `name` is `port` over
/// `protocol` (Calico named ports, on either side of a rule).
pub(crate) fn pod_named_port(e: &EndpointView, name: &str, port: u16, protocol: u8) -> Tri {
    match e.pod {
        Some(pod) => Tri::from_bool(
            pod.ports
                .iter()
                .any(|(n, number, proto)| &**n == name && *number == port && *proto == protocol),
        ),
        None => e.unknown_pod(),
    }
}

/// A port range of a given protocol against the flow.
pub(crate) fn port_range(ctx: &FlowCtx, protocol: Option<u8>, range: &PortRange) -> Tri {
    match range {
        PortRange::Named(name) => named_port(ctx, name, protocol),
        _ if protocol.is_some_and(|p| p != ctx.protocol) => Tri::No,
        PortRange::All => Tri::Yes,
        PortRange::Range { start, end } => Tri::from_bool((*start..=*end).contains(&ctx.dst_port)),
    }
}
