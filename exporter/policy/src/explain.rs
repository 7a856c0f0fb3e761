//! Stage ③ proper: for one enriched flow, which policies select each side,
//! which rule (if any) matched first, the verdict and its reason — for the
//! enforced set and, when staged policies touch the flow, the pending set —
//! joined with what the dataplane was seen to do.
//!
//! Pure: reads a [`PolicyIndex`] and a flow, allocates only the trace. No
//! IO, no clocks, no logging per flow.
//!
//! Semantics (networking.k8s.io/v1): a pod is isolated for a direction when
//! some policy selects it and governs that direction; an isolated pod's
//! traffic is allowed when any rule of any of those policies matches (the
//! union), else denied. A pod no policy selects is not isolated. docs/policy.md
//! has the whole list, including what is `indeterminate`.

use std::net::IpAddr;
use std::sync::Arc;

use flowscribe_model::{
    EndpointKind, EnrichedFlow, Evaluation, Flow, Mismatch, Observed, PodIdentity, PolicyAction,
    PolicyDirection, PolicyHit, PolicyRef, PolicyTrace, SideVerdict, Verdict, VerdictReason,
    VerdictSource,
};

use crate::index::{Entry, PolicyIndex};
use crate::kubernetes::{KubernetesPolicySpec, Peer, PortMatch, PortRange, Rule};
use crate::policy::PolicySpec;

/// The label the API server puts on every namespace; manifests often lack
/// it, so it is implied.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What the dataplane did, from the flow's own counters: a reply means the
/// traffic got through (even if some packets were dropped on the way); no
/// reply but kernel drops means dropped; neither tells nothing.
pub fn observe(flow: &Flow) -> Observed {
    if flow.reverse.packets > 0 {
        Observed::Delivered
    } else if let Some(drops) = &flow.drops {
        Observed::Dropped {
            reason: Arc::from(drops.last_reason.as_str()),
        }
    } else {
        Observed::Unknown
    }
}

/// Explain one flow. `observed` is usually [`observe`]`(&flow.flow)`; it is
/// a parameter so that a caller with better evidence (a CNI's verdict
/// stream, a later window) can supply it.
pub fn explain(index: &PolicyIndex, flow: &EnrichedFlow, observed: Observed) -> PolicyTrace {
    let key = flow.flow.key;
    let source = subject_of(flow, Side::Source);
    let destination = subject_of(flow, Side::Destination);
    let ctx = FlowCtx {
        protocol: key.protocol,
        dst_port: key.dst_port,
        degraded: flow.identity_degraded,
        // Named ports in both directions resolve against the pod that
        // receives the traffic: the subject for ingress, the peer for egress.
        dst_pod: peer_pod(&flow.destination),
    };
    let egress_peer = PeerView {
        pod: peer_pod(&flow.destination),
        addr: key.dst_addr,
        unresolved_service: is_unresolved_service(&flow.destination),
    };
    let ingress_peer = PeerView {
        pod: peer_pod(&flow.source),
        addr: key.src_addr,
        unresolved_service: is_unresolved_service(&flow.source),
    };

    let mut invalid = Vec::new();
    let enforced = evaluate(
        index,
        View::Enforced,
        &ctx,
        (&source, &egress_peer),
        (&destination, &ingress_peer),
        &mut invalid,
    );
    let has_staged = |s: &Subject| {
        s.namespace()
            .and_then(|ns| index.namespace(ns))
            .is_some_and(|n| n.pending.is_some())
    };
    let pending = if has_staged(&source) || has_staged(&destination) {
        let pending = evaluate(
            index,
            View::Pending,
            &ctx,
            (&source, &egress_peer),
            (&destination, &ingress_peer),
            &mut invalid,
        );
        // Staged policies that neither select an endpoint nor remove a
        // policy that does leave every hit, and so the evaluation, as it was.
        (pending != enforced).then_some(pending)
    } else {
        None
    };

    let indeterminate = enforced.egress.reason == VerdictReason::Indeterminate
        || enforced.ingress.reason == VerdictReason::Indeterminate;
    let mismatch = match (&observed, enforced.verdict) {
        // An indeterminate deny is "not proven allowed", not a claim the
        // dataplane failed to enforce.
        (Observed::Delivered, Verdict::Deny) if !indeterminate => Some(Mismatch::PolicyNotEnforced),
        (Observed::Dropped { .. }, Verdict::Allow) => Some(Mismatch::UnexplainedDrop),
        _ => None,
    };
    PolicyTrace {
        enforced,
        pending,
        observed,
        verdict_source: VerdictSource::Evaluated,
        mismatch,
        invalid_policies: invalid,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Enforced,
    Pending,
}

/// Whose policies decide a side.
enum Subject<'a> {
    /// A pod of the cluster's pod network.
    Pod(&'a PodIdentity),
    /// A Service whose backend pod is not known: its namespace is, and that
    /// is enough when the namespace has no ingress policy at all.
    UnresolvedService { namespace: Option<&'a str> },
    /// Outside NetworkPolicy's reach: not a pod, or a host-network pod.
    Outside,
}

impl Subject<'_> {
    fn namespace(&self) -> Option<&str> {
        match self {
            Subject::Pod(p) => Some(&p.namespace),
            Subject::UnresolvedService { namespace } => *namespace,
            Subject::Outside => None,
        }
    }
}

fn subject_of(flow: &EnrichedFlow, side: Side) -> Subject<'_> {
    let endpoint = match side {
        Side::Source => &flow.source,
        Side::Destination => &flow.destination,
    };
    match (endpoint.kind, endpoint.pod.as_deref()) {
        (EndpointKind::Pod, Some(pod)) => Subject::Pod(pod),
        // The backend of a Service decides ingress; only the destination is
        // reached through a Service.
        (EndpointKind::Service, Some(pod)) if side == Side::Destination => Subject::Pod(pod),
        (EndpointKind::Service, None) if side == Side::Destination => Subject::UnresolvedService {
            namespace: endpoint.service.as_ref().map(|s| &*s.namespace),
        },
        _ => Subject::Outside,
    }
}

/// The pod a rule's selectors see at the other end. Host-network pods use
/// their node's address and are not matched by pod selectors (as on most
/// CNIs); a Service counts as its backend pod when known.
fn peer_pod(endpoint: &flowscribe_model::Endpoint) -> Option<&PodIdentity> {
    match endpoint.kind {
        EndpointKind::Pod | EndpointKind::Service => endpoint.pod.as_deref(),
        _ => None,
    }
}

fn is_unresolved_service(endpoint: &flowscribe_model::Endpoint) -> bool {
    endpoint.kind == EndpointKind::Service && endpoint.pod.is_none()
}

struct FlowCtx<'a> {
    protocol: u8,
    dst_port: u16,
    degraded: bool,
    dst_pod: Option<&'a PodIdentity>,
}

/// The other end of the flow as rules see it.
struct PeerView<'a> {
    pod: Option<&'a PodIdentity>,
    addr: IpAddr,
    unresolved_service: bool,
}

fn evaluate(
    index: &PolicyIndex,
    view: View,
    ctx: &FlowCtx,
    egress: (&Subject, &PeerView),
    ingress: (&Subject, &PeerView),
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> Evaluation {
    let egress = side(
        index,
        view,
        ctx,
        PolicyDirection::Egress,
        egress.0,
        egress.1,
        invalid,
    );
    let ingress = side(
        index,
        view,
        ctx,
        PolicyDirection::Ingress,
        ingress.0,
        ingress.1,
        invalid,
    );
    Evaluation::new(egress, ingress)
}

fn entries<'i>(index: &'i PolicyIndex, view: View, ns: &str) -> &'i [Entry] {
    match index.namespace(ns) {
        None => &[],
        Some(n) => match (view, &n.pending) {
            (View::Pending, Some(p)) => p,
            _ => &n.enforced,
        },
    }
}

fn rules_for(spec: &KubernetesPolicySpec, direction: PolicyDirection) -> Option<&[Rule]> {
    match direction {
        PolicyDirection::Ingress => spec.ingress.as_deref(),
        PolicyDirection::Egress => spec.egress.as_deref(),
    }
}

fn flag(invalid: &mut Vec<Arc<PolicyRef>>, r: &Arc<PolicyRef>) {
    if !invalid.iter().any(|x| Arc::ptr_eq(x, r)) {
        invalid.push(r.clone());
    }
}

fn verdict_of(
    direction: PolicyDirection,
    hits: Vec<PolicyHit>,
    reason: VerdictReason,
) -> SideVerdict {
    let verdict = match reason {
        VerdictReason::AllowedByRule
        | VerdictReason::NotIsolatedDefaultAllow
        | VerdictReason::ProfileAllow
        | VerdictReason::NotSubject => Verdict::Allow,
        // Indeterminate is "not proven allowed": an audit trail must not
        // claim an allow it could not show.
        VerdictReason::DeniedByRule
        | VerdictReason::EndOfTierDeny
        | VerdictReason::IsolatedNoMatch
        | VerdictReason::Indeterminate => Verdict::Deny,
    };
    SideVerdict {
        direction,
        hits,
        verdict,
        reason,
    }
}

fn side(
    index: &PolicyIndex,
    view: View,
    ctx: &FlowCtx,
    direction: PolicyDirection,
    subject: &Subject,
    peer: &PeerView,
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> SideVerdict {
    let pod = match subject {
        Subject::Outside => {
            return verdict_of(direction, Vec::new(), VerdictReason::NotSubject);
        }
        Subject::UnresolvedService { namespace } => {
            // Without the backend's labels no selector can be matched; the
            // one certain case is a namespace with nothing that could
            // isolate any pod for ingress.
            let mut could_isolate = namespace.is_none() && !index.is_empty();
            for entry in namespace.map_or(&[][..], |ns| entries(index, view, ns)) {
                match *entry {
                    Entry::Valid(i) => {
                        let PolicySpec::Kubernetes(spec) = &index.valid(i).spec;
                        could_isolate |= rules_for(spec, direction).is_some();
                    }
                    Entry::Invalid(i) => {
                        could_isolate = true;
                        if let Some(r) = &index.invalid_at(i).reference {
                            flag(invalid, r);
                        }
                    }
                }
            }
            let reason = if could_isolate {
                VerdictReason::Indeterminate
            } else {
                VerdictReason::NotIsolatedDefaultAllow
            };
            return verdict_of(direction, Vec::new(), reason);
        }
        Subject::Pod(pod) => *pod,
    };
    let mut hits = Vec::new();
    let mut allowed = false;
    let mut isolated = false;
    let mut invalid_selects = false;
    for entry in entries(index, view, &pod.namespace) {
        match *entry {
            Entry::Valid(i) => {
                let policy = index.valid(i);
                let PolicySpec::Kubernetes(spec) = &policy.spec;
                let Some(rules) = rules_for(spec, direction) else {
                    continue;
                };
                if !spec.pod_selector.matches(&pod.labels) {
                    continue;
                }
                isolated = true;
                let first = rules
                    .iter()
                    .position(|r| rule_matches(r, &pod.namespace, ctx, peer));
                allowed |= first.is_some();
                hits.push(PolicyHit {
                    policy: policy.reference.clone(),
                    rule_index: first.and_then(|i| u32::try_from(i).ok()),
                    // NetworkPolicy rules have no names.
                    rule_name: None,
                    action: if first.is_some() {
                        PolicyAction::Allow
                    } else {
                        PolicyAction::Deny
                    },
                });
            }
            Entry::Invalid(i) => {
                let inv = index.invalid_at(i);
                let selects = inv
                    .pod_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&pod.labels));
                if selects {
                    invalid_selects = true;
                    if let Some(r) = &inv.reference {
                        flag(invalid, r);
                    }
                }
            }
        }
    }
    let reason = if allowed {
        // NetworkPolicies only allow, so one valid allow is certain whatever
        // an invalid policy says.
        VerdictReason::AllowedByRule
    } else if invalid_selects {
        VerdictReason::Indeterminate
    } else if isolated {
        // The peer may be a pod the selectors would have allowed, had its
        // identity been known.
        if peer.unresolved_service || (ctx.degraded && peer.pod.is_none()) {
            VerdictReason::Indeterminate
        } else {
            VerdictReason::IsolatedNoMatch
        }
    } else {
        VerdictReason::NotIsolatedDefaultAllow
    };
    verdict_of(direction, hits, reason)
}

fn rule_matches(rule: &Rule, policy_ns: &str, ctx: &FlowCtx, peer: &PeerView) -> bool {
    ports_match(&rule.ports, ctx)
        && rule
            .peers
            .as_deref()
            .is_none_or(|peers| peers.iter().any(|p| peer_matches(p, policy_ns, peer)))
}

fn ports_match(ports: &[PortMatch], ctx: &FlowCtx) -> bool {
    ports.is_empty()
        || ports.iter().any(|p| {
            p.protocol == ctx.protocol
                && match &p.port {
                    PortRange::All => true,
                    PortRange::Range { start, end } => (*start..=*end).contains(&ctx.dst_port),
                    PortRange::Named(name) => ctx.dst_pod.is_some_and(|pod| {
                        pod.ports.iter().any(|(n, number, protocol)| {
                            n == name && *number == ctx.dst_port && *protocol == ctx.protocol
                        })
                    }),
                }
        })
}

fn peer_matches(peer: &Peer, policy_ns: &str, view: &PeerView) -> bool {
    match peer {
        Peer::IpBlock(block) => block.contains(view.addr),
        Peer::Pods { pods, namespaces } => {
            let Some(pod) = view.pod else {
                return false;
            };
            let namespace_ok = match namespaces {
                None => &*pod.namespace == policy_ns,
                Some(sel) => sel.matches_with(|k| {
                    pod.namespace_labels
                        .get(k)
                        .map(String::as_str)
                        .or_else(|| (k == NAMESPACE_NAME_LABEL).then_some(&*pod.namespace))
                }),
            };
            namespace_ok && pods.as_ref().is_none_or(|sel| sel.matches(&pod.labels))
        }
    }
}

#[cfg(test)]
mod tests;
