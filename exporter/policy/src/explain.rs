//! Stage ③ proper: for one enriched flow, which policies select each side,
//! which rule (if any) matched first, the verdict and its reason — for the
//! enforced set and, when staged policies touch the flow, the pending set —
//! joined with what the dataplane was seen to do.
//!
//! Pure: reads a [`PolicyIndex`] and a flow, allocates only the trace. No
//! IO, no clocks, no logging per flow.
//!
//! Per side, tiers are walked in order (see [`crate::index`]): Admin →
//! Calico tiers → `default` (Calico policies and the Kubernetes
//! NetworkPolicy group) → Baseline. In a tiered policy the first matching
//! rule decides (Allow/Deny), passes to the next tier (Pass) or is recorded
//! (Log). Kubernetes NetworkPolicies keep their own semantics inside the
//! default tier: a pod is isolated for a direction when some policy selects
//! it and governs that direction; an isolated pod's traffic is allowed when
//! any rule of any of those policies matches (the union), else denied. A
//! pod no policy selects is not isolated. docs/policy.md has the whole
//! list, including what is `indeterminate`.

use std::sync::Arc;

use flowscribe_model::{
    EndpointKind, EnrichedFlow, Evaluation, Flow, Mismatch, Observed, PodIdentity, PolicyAction,
    PolicyDirection, PolicyHit, PolicyRef, PolicyTrace, SideVerdict, Verdict, VerdictReason,
    VerdictSource,
};

use crate::calico::selector_selects;
use crate::index::{
    Entry, KUBERNETES_GROUP_ORDER, PairFacts, PolicyIndex, SELECTED_UNKNOWN, Selection, Slot, Tier,
    TierKind, TierSelection, View,
};
use crate::kubernetes::{KubernetesPolicySpec, Peer, PortMatch, PortRange, Rule};
use crate::matching::{EndpointView, FlowCtx, Tri, namespace_label};
use crate::policy::{InvalidPolicy, InvalidScope, Policy, PolicySpec};

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
    // Pod to pod, the evaluation depends only on what it reads of the two
    // identities, the addresses' classes, the protocol and port: memoised
    // per such identity pair, so the replicas of one Deployment share it.
    let (enforced, pending, invalid) = match pods_of(flow) {
        Some(pods) => match index.pair_lookup(pods, pair_facts(flow)) {
            Ok(found) => found,
            Err(key) => {
                let computed = evaluate_flow(index, flow);
                if let Some(key) = key {
                    index.pair_insert(key, &computed);
                }
                computed
            }
        },
        None => evaluate_flow(index, flow),
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

/// What [`explain`] memoises: the enforced evaluation, the pending one,
/// and the invalid policies that touched the flow.
pub(crate) type Evaluated = (Evaluation, Option<Evaluation>, Vec<Arc<PolicyRef>>);

/// Both pods of a pod-to-pod flow (the destination may be a Service's
/// known backend); `None` for any other flow.
fn pods_of(flow: &EnrichedFlow) -> Option<(&Arc<PodIdentity>, &Arc<PodIdentity>)> {
    let Subject::Pod(src) = subject_of(flow, Side::Source) else {
        return None;
    };
    let Subject::Pod(dst) = subject_of(flow, Side::Destination) else {
        return None;
    };
    Some((src, dst))
}

/// What the pair memo keys on besides the identities: the addresses (by
/// class), protocol, ports, degraded identity, and whether the destination
/// is a Service's backend.
fn pair_facts(flow: &EnrichedFlow) -> PairFacts {
    let key = flow.flow.key;
    PairFacts {
        src_addr: key.src_addr,
        dst_addr: key.dst_addr,
        protocol: key.protocol,
        dst_port: key.dst_port,
        src_port: key.src_port,
        degraded: flow.identity_degraded,
        via_service: flow.destination.kind == EndpointKind::Service,
    }
}

fn evaluate_flow(index: &PolicyIndex, flow: &EnrichedFlow) -> Evaluated {
    let key = flow.flow.key;
    let degraded = flow.identity_degraded;
    let source = subject_of(flow, Side::Source);
    let destination = subject_of(flow, Side::Destination);
    let ctx = FlowCtx {
        protocol: key.protocol,
        dst_port: key.dst_port,
        src_port: key.src_port,
        source: endpoint_view(&flow.source, key.src_addr, degraded),
        destination: endpoint_view(&flow.destination, key.dst_addr, degraded),
    };

    let mut invalid = Vec::new();
    let enforced = evaluate(
        index,
        index.view(false),
        &ctx,
        &source,
        &destination,
        &mut invalid,
    );
    let pending = if index.has_staged_for(source.namespace())
        || index.has_staged_for(destination.namespace())
    {
        let pending = evaluate(
            index,
            index.view(true),
            &ctx,
            &source,
            &destination,
            &mut invalid,
        );
        // Staged policies that neither select an endpoint nor remove a
        // policy that does leave every hit, and so the evaluation, as it was.
        (!same_evaluation(&pending, &enforced)).then_some(pending)
    } else {
        None
    };
    (enforced, pending, invalid)
}

/// `a == b`, comparing policy references by address first (the index
/// hands out one `Arc` per policy object, so equal addresses are the
/// common case and spare comparing their strings).
fn same_evaluation(a: &Evaluation, b: &Evaluation) -> bool {
    let same_side = |x: &SideVerdict, y: &SideVerdict| {
        x.verdict == y.verdict
            && x.reason == y.reason
            && x.hits.len() == y.hits.len()
            && x.hits.iter().zip(y.hits.iter()).all(|(h, k)| {
                (Arc::ptr_eq(&h.policy, &k.policy) || h.policy == k.policy)
                    && h.rule_index == k.rule_index
                    && h.rule_name == k.rule_name
                    && h.action == k.action
            })
    };
    a.verdict == b.verdict && same_side(&a.egress, &b.egress) && same_side(&a.ingress, &b.ingress)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// Whose policies decide a side.
enum Subject<'a> {
    /// A pod of the cluster's pod network.
    Pod(&'a Arc<PodIdentity>),
    /// A Service whose backend pod is not known: its namespace is, and that
    /// is enough when the namespace has no ingress policy at all.
    UnresolvedService { namespace: Option<&'a str> },
    /// Outside policy's reach: not a pod, or a host-network pod.
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
    match (endpoint.kind, endpoint.pod.as_ref()) {
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

/// The other end as rules see it. Host-network pods use their node's
/// address and are not matched by pod selectors (as on most CNIs); a
/// Service counts as its backend pod when known.
fn endpoint_view(
    endpoint: &flowscribe_model::Endpoint,
    addr: std::net::IpAddr,
    degraded: bool,
) -> EndpointView<'_> {
    let pod = match endpoint.kind {
        EndpointKind::Pod | EndpointKind::Service => endpoint.pod.as_deref(),
        _ => None,
    };
    EndpointView {
        pod,
        addr,
        kind: endpoint.kind,
        node: endpoint
            .node
            .as_deref()
            .or_else(|| endpoint.pod.as_deref().and_then(|p| p.node.as_deref())),
        unresolved_service: endpoint.kind == EndpointKind::Service && endpoint.pod.is_none(),
        degraded,
    }
}

fn evaluate(
    index: &PolicyIndex,
    view: &View,
    ctx: &FlowCtx,
    source: &Subject,
    destination: &Subject,
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> Evaluation {
    let egress = side(
        index,
        view,
        ctx,
        PolicyDirection::Egress,
        source,
        &ctx.destination,
        invalid,
    );
    let ingress = side(
        index,
        view,
        ctx,
        PolicyDirection::Ingress,
        destination,
        &ctx.source,
        invalid,
    );
    Evaluation::new(egress, ingress)
}

fn rules_for(spec: &KubernetesPolicySpec, direction: PolicyDirection) -> Option<&[Rule]> {
    match direction {
        PolicyDirection::Ingress => spec.ingress.as_deref(),
        PolicyDirection::Egress => spec.egress.as_deref(),
    }
}

/// Whether a valid policy has anything to say about a direction.
fn governs(policy: &Policy, direction: PolicyDirection) -> bool {
    match &policy.spec {
        PolicySpec::Kubernetes(k) => rules_for(k, direction).is_some(),
        PolicySpec::Admin(a) => !a.rules(direction).is_empty(),
        PolicySpec::Calico(c) => c.rules(direction).is_some(),
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
        hits: hits.into(),
        verdict,
        reason,
    }
}

fn side(
    index: &PolicyIndex,
    view: &View,
    ctx: &FlowCtx,
    direction: PolicyDirection,
    subject: &Subject,
    peer: &EndpointView,
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> SideVerdict {
    match subject {
        Subject::Outside => verdict_of(direction, Vec::new(), VerdictReason::NotSubject),
        Subject::UnresolvedService { namespace } => {
            let reason = if could_isolate_unknown_pod(index, view, direction, *namespace, invalid) {
                VerdictReason::Indeterminate
            } else {
                VerdictReason::NotIsolatedDefaultAllow
            };
            verdict_of(direction, Vec::new(), reason)
        }
        Subject::Pod(pod_arc) => {
            let pod: &PodIdentity = pod_arc;
            let pending = !std::ptr::eq(view, index.view(false));
            let selection = index.selection(pending, pod_arc, || select(index, view, pod));
            let mut hits = Vec::new();
            let mut passed_calico = false;
            for (tier, selected) in view.tiers.iter().zip(selection.tiers.iter()) {
                match walk_tier(
                    index,
                    view,
                    tier,
                    selected,
                    &selection.kubernetes,
                    ctx,
                    direction,
                    pod,
                    peer,
                    &mut hits,
                    invalid,
                ) {
                    TierOutcome::NotApplied => {}
                    TierOutcome::Passed => passed_calico |= tier.kind == TierKind::Calico,
                    TierOutcome::Decided(reason) => return verdict_of(direction, hits, reason),
                    TierOutcome::Unknown => {
                        return verdict_of(direction, hits, VerdictReason::Indeterminate);
                    }
                }
            }
            // Past every tier: Calico hands the endpoint to its profiles
            // (allow in Kubernetes); otherwise nothing isolates it.
            let reason = if passed_calico || index.calico_present() {
                VerdictReason::ProfileAllow
            } else {
                VerdictReason::NotIsolatedDefaultAllow
            };
            verdict_of(direction, hits, reason)
        }
    }
}

/// Whether a policy in a tier slot may select the pod.
pub(crate) fn slot_selects(index: &PolicyIndex, entry: Entry, pod: &PodIdentity) -> Tri {
    match entry {
        Entry::Invalid(i) => Tri::from_bool(invalid_may_select(index.invalid_at(i), pod)),
        Entry::Valid(i) => {
            let policy = index.valid(i);
            match &policy.spec {
                PolicySpec::Admin(a) => Tri::from_bool(a.subject.selects(pod)),
                PolicySpec::Calico(c) => c.selects(policy.reference.namespace.as_deref(), pod),
                PolicySpec::Kubernetes(k) => Tri::from_bool(k.pod_selector.matches(&pod.labels)),
            }
        }
    }
}

/// The positions of the entries that may select the pod.
fn positions<T>(items: &[T], selects: impl Fn(&T) -> Tri) -> Box<[u32]> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let i = u32::try_from(i).ok()?;
            match selects(item) {
                Tri::No => None,
                Tri::Yes => Some(i),
                Tri::Unknown => Some(i | SELECTED_UNKNOWN),
            }
        })
        .collect()
}

/// Everything of a view that may select the pod, once per pod.
fn select(index: &PolicyIndex, view: &View, pod: &PodIdentity) -> Selection {
    fn namespaced<'t>(tier: &'t Tier, pod: &PodIdentity) -> &'t [Slot] {
        tier.namespaced.get(&*pod.namespace).map_or(&[][..], |s| s)
    }
    Selection {
        tiers: view
            .tiers
            .iter()
            .map(|tier| {
                let select = |slot: &Slot| slot_selects(index, slot.entry, pod);
                // Of the cluster-scoped policies, only those whose
                // selectors' required label the pod has.
                let global: Box<[u32]> = tier
                    .candidates
                    .for_pod(pod)
                    .into_iter()
                    .filter_map(|p| {
                        let slot = tier.global.get(p as usize)?;
                        match select(slot) {
                            Tri::No => None,
                            Tri::Yes => Some(p),
                            Tri::Unknown => Some(p | SELECTED_UNKNOWN),
                        }
                    })
                    .collect();
                (global, positions(namespaced(tier, pod), select))
            })
            .collect(),
        kubernetes: positions(
            view.kubernetes.get(&*pod.namespace).map_or(&[][..], |e| e),
            |entry| slot_selects(index, *entry, pod),
        ),
    }
}

/// A Service without a known backend: no selector can be evaluated, so the
/// one certain case is a namespace where nothing could select any pod for
/// this direction.
fn could_isolate_unknown_pod(
    index: &PolicyIndex,
    view: &View,
    direction: PolicyDirection,
    namespace: Option<&str>,
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> bool {
    let mut could = namespace.is_none() && !index.is_empty();
    let mut consider = |entry: Entry, could: &mut bool| match entry {
        Entry::Valid(i) => *could |= governs(index.valid(i), direction),
        Entry::Invalid(i) => {
            *could = true;
            if let Some(r) = &index.invalid_at(i).reference {
                flag(invalid, r);
            }
        }
    };
    if let Some(ns) = namespace {
        for entry in view.kubernetes.get(ns).map_or(&[][..], |e| e) {
            consider(*entry, &mut could);
        }
    }
    for tier in view.tiers.iter() {
        let namespaced = namespace
            .and_then(|ns| tier.namespaced.get(ns))
            .map_or(&[][..], |s| s);
        for slot in tier.global.iter().chain(namespaced) {
            consider(slot.entry, &mut could);
        }
    }
    could
}

enum TierOutcome {
    /// No policy of the tier applies to the endpoint for this direction.
    NotApplied,
    /// A Pass rule, or the end of a tier whose default action is Pass.
    Passed,
    Decided(VerdictReason),
    /// An invalid policy, or an identity the index does not know, decides.
    Unknown,
}

/// The next policy of a tier in evaluation order (and whether its
/// selector's answer was unknown).
enum Next<'a> {
    Slot(&'a Slot, bool),
    KubernetesGroup,
}

fn key_less(a: (f64, &str), b: (f64, &str)) -> bool {
    a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)).is_lt()
}

#[allow(
    clippy::too_many_arguments,
    reason = "one flow's evaluation state, passed down"
)]
fn walk_tier(
    index: &PolicyIndex,
    view: &View,
    tier: &Tier,
    (selected_global, selected_namespaced): &TierSelection,
    selected_kubernetes: &[u32],
    ctx: &FlowCtx,
    direction: PolicyDirection,
    pod: &PodIdentity,
    peer: &EndpointView,
    hits: &mut Vec<PolicyHit>,
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> TierOutcome {
    let namespaced = tier.namespaced.get(&*pod.namespace).map_or(&[][..], |s| s);
    let (mut g, mut n) = (0, 0);
    let mut group_pending = tier.kubernetes;
    let mut applied = false;
    let mut kubernetes_only = true;
    // Policies that applied but decided nothing: recorded when the tier's
    // end decides.
    let mut undecided: Vec<PolicyHit> = Vec::new();
    fn at<'t>(slots: &'t [Slot], positions: &[u32], i: usize) -> Option<(&'t Slot, bool)> {
        positions.get(i).and_then(|p| {
            let unknown = p & SELECTED_UNKNOWN != 0;
            slots
                .get((p & !SELECTED_UNKNOWN) as usize)
                .map(|slot| (slot, unknown))
        })
    }
    loop {
        // Merge the three ordered streams: cluster-scoped policies, this
        // namespace's policies, and the Kubernetes group.
        let global = at(&tier.global, selected_global, g);
        let local = at(namespaced, selected_namespaced, n);
        let mut next: Option<(Next, (f64, &str))> = None;
        if let Some((s, unknown)) = global {
            next = Some((Next::Slot(s, unknown), (s.order, &s.name)));
        }
        if let Some((s, unknown)) = local
            && next
                .as_ref()
                .is_none_or(|(_, k)| key_less((s.order, &s.name), *k))
        {
            next = Some((Next::Slot(s, unknown), (s.order, &s.name)));
        }
        if group_pending
            && next
                .as_ref()
                .is_none_or(|(_, k)| key_less(KUBERNETES_GROUP_ORDER, *k))
        {
            next = Some((Next::KubernetesGroup, KUBERNETES_GROUP_ORDER));
        }
        let Some((item, _)) = next else { break };
        let (slot, unknown) = match item {
            Next::KubernetesGroup => {
                group_pending = false;
                let group = kubernetes_group(
                    index,
                    view,
                    selected_kubernetes,
                    ctx,
                    direction,
                    pod,
                    peer,
                    invalid,
                );
                if group.allowed {
                    hits.extend(group.hits);
                    return TierOutcome::Decided(VerdictReason::AllowedByRule);
                }
                if group.invalid_selects {
                    hits.extend(group.hits);
                    return TierOutcome::Unknown;
                }
                if group.isolated {
                    applied = true;
                    // The peer may be a pod the selectors would have
                    // allowed, had its identity been known.
                    if peer.unknown_pod() == Tri::Unknown {
                        hits.extend(group.hits);
                        return TierOutcome::Unknown;
                    }
                    undecided.extend(group.hits);
                }
                continue;
            }
            Next::Slot(slot, unknown) => (slot, unknown),
        };
        if global.is_some_and(|(s, _)| std::ptr::eq(s, slot)) {
            g += 1;
        } else {
            n += 1;
        }
        match slot.entry {
            Entry::Invalid(i) => {
                let inv = index.invalid_at(i);
                if invalid_may_select(inv, pod) {
                    if let Some(r) = &inv.reference {
                        flag(invalid, r);
                    }
                    return TierOutcome::Unknown;
                }
            }
            Entry::Valid(i) => {
                let policy = index.valid(i);
                // Only policies that may select the pod are here; one whose
                // selector could not be decided makes the side unknown, if
                // it governs the direction at all.
                if !governs(policy, direction) {
                    continue;
                }
                if unknown {
                    return TierOutcome::Unknown;
                }
                if tier.broken {
                    flag(invalid, &policy.reference);
                    return TierOutcome::Unknown;
                }
                applied = true;
                kubernetes_only = false;
                match tiered_rules(policy, direction, ctx, peer, hits) {
                    RulesOutcome::NoMatch => {
                        if tier.kind == TierKind::Calico {
                            undecided.push(PolicyHit {
                                policy: policy.reference.clone(),
                                rule_index: None,
                                rule_name: None,
                                action: tier.default_action,
                            });
                        }
                    }
                    RulesOutcome::Action(PolicyAction::Allow) => {
                        return TierOutcome::Decided(VerdictReason::AllowedByRule);
                    }
                    RulesOutcome::Action(PolicyAction::Deny) => {
                        return TierOutcome::Decided(VerdictReason::DeniedByRule);
                    }
                    RulesOutcome::Action(_) => return TierOutcome::Passed,
                    RulesOutcome::Unknown => return TierOutcome::Unknown,
                }
            }
        }
    }
    if !applied {
        return TierOutcome::NotApplied;
    }
    hits.extend(undecided);
    match tier.default_action {
        PolicyAction::Deny if kubernetes_only => {
            TierOutcome::Decided(VerdictReason::IsolatedNoMatch)
        }
        PolicyAction::Deny => TierOutcome::Decided(VerdictReason::EndOfTierDeny),
        _ => TierOutcome::Passed,
    }
}

enum RulesOutcome {
    NoMatch,
    /// Allow, Deny or Pass (Log rules are recorded and evaluation goes on).
    Action(PolicyAction),
    Unknown,
}

/// A tiered policy's rules for a direction, first match wins; Log rules
/// record a hit and go on.
fn tiered_rules(
    policy: &Policy,
    direction: PolicyDirection,
    ctx: &FlowCtx,
    peer: &EndpointView,
    hits: &mut Vec<PolicyHit>,
) -> RulesOutcome {
    let namespace = policy.reference.namespace.as_deref();
    let mut hit = |index: usize, name: Option<Arc<str>>, action: PolicyAction| {
        hits.push(PolicyHit {
            policy: policy.reference.clone(),
            rule_index: u32::try_from(index).ok(),
            rule_name: name,
            action,
        });
    };
    match &policy.spec {
        PolicySpec::Admin(a) => {
            for (i, rule) in a.rules(direction).iter().enumerate() {
                match rule.matches(ctx, peer) {
                    Tri::No => {}
                    Tri::Unknown => return RulesOutcome::Unknown,
                    Tri::Yes => {
                        hit(i, rule.name.clone(), rule.action);
                        return RulesOutcome::Action(rule.action);
                    }
                }
            }
        }
        PolicySpec::Calico(c) => {
            for (i, rule) in c.rules(direction).unwrap_or_default().iter().enumerate() {
                match rule.matches(namespace, ctx) {
                    Tri::No => {}
                    Tri::Unknown => return RulesOutcome::Unknown,
                    Tri::Yes => {
                        hit(i, None, rule.action);
                        if rule.action != PolicyAction::Log {
                            return RulesOutcome::Action(rule.action);
                        }
                    }
                }
            }
        }
        PolicySpec::Kubernetes(_) => {}
    }
    RulesOutcome::NoMatch
}

/// Whether an invalid policy may select the pod, from what can be read.
fn invalid_may_select(inv: &InvalidPolicy, pod: &PodIdentity) -> bool {
    let namespace = inv.reference.as_ref().and_then(|r| r.namespace.as_deref());
    if namespace.is_some_and(|ns| ns != &*pod.namespace) {
        return false;
    }
    match &*inv.scope {
        InvalidScope::Kubernetes => inv
            .pod_selector
            .as_ref()
            .is_none_or(|s| s.matches(&pod.labels)),
        InvalidScope::Admin { subject, .. } => subject.as_ref().is_none_or(|s| s.selects(pod)),
        InvalidScope::Calico { selector, .. } => selector
            .as_ref()
            .is_none_or(|s| selector_selects(s, pod) != Tri::No),
    }
}

/// The Kubernetes NetworkPolicies of the pod's namespace, as one union.
struct GroupOutcome {
    hits: Vec<PolicyHit>,
    allowed: bool,
    isolated: bool,
    invalid_selects: bool,
}

#[allow(
    clippy::too_many_arguments,
    reason = "one flow's evaluation state, passed down"
)]
fn kubernetes_group(
    index: &PolicyIndex,
    view: &View,
    selected: &[u32],
    ctx: &FlowCtx,
    direction: PolicyDirection,
    pod: &PodIdentity,
    peer: &EndpointView,
    invalid: &mut Vec<Arc<PolicyRef>>,
) -> GroupOutcome {
    let mut out = GroupOutcome {
        hits: Vec::new(),
        allowed: false,
        isolated: false,
        invalid_selects: false,
    };
    let entries = view.kubernetes.get(&*pod.namespace).map_or(&[][..], |e| e);
    for entry in selected
        .iter()
        .filter_map(|p| entries.get((p & !SELECTED_UNKNOWN) as usize))
    {
        match *entry {
            Entry::Valid(i) => {
                let policy = index.valid(i);
                let PolicySpec::Kubernetes(spec) = &policy.spec else {
                    continue;
                };
                // Selected already (the pod selector matched).
                let Some(rules) = rules_for(spec, direction) else {
                    continue;
                };
                out.isolated = true;
                let first = rules
                    .iter()
                    .position(|r| rule_matches(r, &pod.namespace, ctx, peer));
                out.allowed |= first.is_some();
                out.hits.push(PolicyHit {
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
                // Selected already: it may select the pod.
                out.invalid_selects = true;
                if let Some(r) = &index.invalid_at(i).reference {
                    flag(invalid, r);
                }
            }
        }
    }
    out
}

fn rule_matches(rule: &Rule, policy_ns: &str, ctx: &FlowCtx, peer: &EndpointView) -> bool {
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
                    PortRange::Named(name) => ctx.destination.pod.is_some_and(|pod| {
                        pod.ports.iter().any(|(n, number, protocol)| {
                            n == name && *number == ctx.dst_port && *protocol == ctx.protocol
                        })
                    }),
                }
        })
}

fn peer_matches(peer: &Peer, policy_ns: &str, view: &EndpointView) -> bool {
    match peer {
        Peer::IpBlock(block) => block.contains(view.addr),
        Peer::Pods { pods, namespaces } => {
            let Some(pod) = view.pod else {
                return false;
            };
            let namespace_ok = match namespaces {
                None => &*pod.namespace == policy_ns,
                Some(sel) => sel.matches_with(|k| namespace_label(pod, k)),
            };
            namespace_ok && pods.as_ref().is_none_or(|sel| sel.matches(&pod.labels))
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod admin_tests;

#[cfg(test)]
mod calico_tests;

#[cfg(test)]
mod memo_tests;
