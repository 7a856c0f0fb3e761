//! Who is at one end of a flow: the identity stage ② (enrich) attaches to
//! each address, as it was at the time of the flow.
//!
//! Identities are shared (`Arc`) between the index and every flow that
//! resolves to them, so attaching one to a flow costs a reference count, not
//! a copy of labels and names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::{Flow, Name};

/// What kind of thing an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    /// A pod with its own (pod network) address.
    Pod,
    /// A pod that shares its node's network namespace (`hostNetwork: true`),
    /// identified by a declared container port on that node.
    HostNetworkPod,
    /// A node address (InternalIP, ExternalIP) of the cluster.
    Node,
    /// A Service's ClusterIP (or other virtual IP).
    Service,
    /// RFC 1918, 100.64/10 (CGNAT), fc00::/7, or a configured private range.
    PrivateNetwork,
    /// Any other unicast address.
    PublicNetwork,
    /// A cloud instance-metadata address (169.254.169.254, fd00:ec2::254).
    CloudMetadata,
    /// Other link-local addresses (169.254/16, fe80::/10).
    LinkLocal,
    /// 127/8, ::1.
    Loopback,
    /// Multicast and broadcast.
    Multicast,
    /// Nothing is known (unspecified address).
    Unknown,
}

impl EndpointKind {
    /// The name the outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Pod => "pod",
            EndpointKind::HostNetworkPod => "host-network-pod",
            EndpointKind::Node => "node",
            EndpointKind::Service => "service",
            EndpointKind::PrivateNetwork => "private-network",
            EndpointKind::PublicNetwork => "public-network",
            EndpointKind::CloudMetadata => "cloud-metadata",
            EndpointKind::LinkLocal => "link-local",
            EndpointKind::Loopback => "loopback",
            EndpointKind::Multicast => "multicast",
            EndpointKind::Unknown => "unknown",
        }
    }
}

/// The top controller of a pod (Deployment, CronJob, StatefulSet, ...), or
/// the pod's direct owner when the chain cannot be followed further.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

/// A pod as the index knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub name: Arc<str>,
    pub uid: Arc<str>,
    pub namespace: Arc<str>,
    pub labels: Arc<BTreeMap<String, String>>,
    pub service_account: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    pub workload: Option<Workload>,
    /// Labels of the pod's namespace, for policy namespace selectors.
    pub namespace_labels: Arc<BTreeMap<String, String>>,
    /// Declared container ports: (name, number, IANA protocol).
    pub ports: Arc<[(Arc<str>, u16, u8)]>,
}

/// A Service reached through its virtual IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    /// The name of the service port the flow used, when the port is named.
    pub port_name: Option<Arc<str>>,
}

/// The address belonged to an object that was deleted before the flow's
/// packets were seen (zombie traffic, or a late flow inside the grace period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub deleted_at: SystemTime,
}

/// One end of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: EndpointKind,
    /// The pod for `Pod` and `HostNetworkPod`; for `Service`, the backend pod
    /// when the post-DNAT flow was seen on this node.
    pub pod: Option<Arc<PodIdentity>>,
    /// Node name: the pod's node, or the node owning a node address.
    pub node: Option<Name>,
    /// Shared with the index (one per service port), so that resolving a
    /// service end costs a reference count, and an endpoint stays 72 bytes
    /// (every flow carries two, moved through each stage).
    pub service: Option<Arc<ServiceRef>>,
    /// The most specific configured network (CIDR) that contains the address.
    pub network: Option<Name>,
    pub stale: Option<Stale>,
}

impl Endpoint {
    /// An endpoint known only by its kind.
    pub fn of_kind(kind: EndpointKind) -> Self {
        Endpoint {
            kind,
            pod: None,
            node: None,
            service: None,
            network: None,
            stale: None,
        }
    }
}

/// A flow with both ends resolved (stage ② output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichedFlow {
    pub flow: Flow,
    pub source: Endpoint,
    pub destination: Endpoint,
    /// The identity sources were incomplete when this flow was resolved
    /// (a watch is failing or forbidden), so `Unknown`/network kinds may be
    /// wrong: an address may belong to a pod the index could not see.
    pub identity_degraded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_nine_words() {
        // Two per flow, moved through every stage: a field added inline
        // (rather than behind the shared identity or service) shows here.
        assert_eq!(std::mem::size_of::<Endpoint>(), 72);
    }
}
