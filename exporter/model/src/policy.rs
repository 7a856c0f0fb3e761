//! Why a flow was allowed or denied: the policy trace stage ③ (explain)
//! attaches to an enriched flow.
//!
//! A trace has one side per direction that policy governs (the source's
//! egress, the destination's ingress), each with the ordered policy hits
//! that decided it, the enforced verdict and a reason code; the same again
//! with staged policies applied as if enforced (pending); what the dataplane
//! was seen to do; and whether evaluation and observation agree.

use std::sync::Arc;

use crate::EnrichedFlow;

/// Which kind of policy object a hit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy.
    ClusterNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy.
    AdminNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy,
    /// projectcalico.org/v3 NetworkPolicy.
    CalicoNetworkPolicy,
    /// projectcalico.org/v3 GlobalNetworkPolicy.
    CalicoGlobalNetworkPolicy,
    /// projectcalico.org/v3 StagedNetworkPolicy.
    CalicoStagedNetworkPolicy,
    /// projectcalico.org/v3 StagedGlobalNetworkPolicy.
    CalicoStagedGlobalNetworkPolicy,
    /// projectcalico.org/v3 StagedKubernetesNetworkPolicy.
    CalicoStagedKubernetesNetworkPolicy,
    /// flowscribe.dev/v1alpha1 StagedNetworkPolicy: a NetworkPolicy spec
    /// that is evaluated, never enforced.
    StagedNetworkPolicy,
}

impl PolicyKind {
    /// The Kubernetes `kind` of the object.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            PolicyKind::CalicoNetworkPolicy => "NetworkPolicy",
            PolicyKind::CalicoGlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::CalicoStagedNetworkPolicy => "StagedNetworkPolicy",
            PolicyKind::CalicoStagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            PolicyKind::CalicoStagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
            PolicyKind::StagedNetworkPolicy => "StagedNetworkPolicy",
        }
    }

    /// The API group/version of the object.
    pub fn api_version(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "networking.k8s.io/v1",
            PolicyKind::ClusterNetworkPolicy => "policy.networking.k8s.io/v1alpha2",
            PolicyKind::AdminNetworkPolicy | PolicyKind::BaselineAdminNetworkPolicy => {
                "policy.networking.k8s.io/v1alpha1"
            }
            PolicyKind::CalicoNetworkPolicy
            | PolicyKind::CalicoGlobalNetworkPolicy
            | PolicyKind::CalicoStagedNetworkPolicy
            | PolicyKind::CalicoStagedGlobalNetworkPolicy
            | PolicyKind::CalicoStagedKubernetesNetworkPolicy => "projectcalico.org/v3",
            PolicyKind::StagedNetworkPolicy => "flowscribe.dev/v1alpha1",
        }
    }

    /// Staged kinds are evaluated (pending verdict), never enforced.
    pub fn is_staged(self) -> bool {
        matches!(
            self,
            PolicyKind::CalicoStagedNetworkPolicy
                | PolicyKind::CalicoStagedGlobalNetworkPolicy
                | PolicyKind::CalicoStagedKubernetesNetworkPolicy
                | PolicyKind::StagedNetworkPolicy
        )
    }
}

/// A policy object, as of the version that decided the flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRef {
    pub kind: PolicyKind,
    /// Tier: Calico tier name, `admin`/`baseline` for cluster network
    /// policies, `default` for Kubernetes NetworkPolicy.
    pub tier: Arc<str>,
    /// None for cluster-scoped policies.
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
    pub uid: Arc<str>,
    pub resource_version: Arc<str>,
    pub generation: Option<i64>,
}

/// What a rule (or a policy's or tier's default) does with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    Allow,
    Deny,
    /// Skip the rest of this tier (Calico Pass; ClusterNetworkPolicy Pass).
    Pass,
    /// Calico Log: recorded, evaluation goes on.
    Log,
}

impl PolicyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Allow => "allow",
            PolicyAction::Deny => "deny",
            PolicyAction::Pass => "pass",
            PolicyAction::Log => "log",
        }
    }
}

/// One step of a trace: a policy that selected the endpoint, and which of
/// its rules matched (or none: the policy selected it but no rule matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyHit {
    pub policy: Arc<PolicyRef>,
    /// Index of the matching rule within the direction's rule list; `None`
    /// when no rule matched and the hit records the policy's default.
    pub rule_index: Option<u32>,
    pub rule_name: Option<Arc<str>>,
    pub action: PolicyAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// Why a side's verdict is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictReason {
    /// A rule with action Allow matched.
    AllowedByRule,
    /// A rule with action Deny matched.
    DeniedByRule,
    /// A Calico tier selected the endpoint but no rule decided: the tier's
    /// default action (Deny unless configured Pass).
    EndOfTierDeny,
    /// NetworkPolicies select the pod for this direction and none allows
    /// the flow.
    IsolatedNoMatch,
    /// No policy selects the endpoint for this direction.
    NotIsolatedDefaultAllow,
    /// A Calico profile (or the end of all tiers) allowed it.
    ProfileAllow,
    /// The endpoint is not subject to in-cluster policy (outside the cluster,
    /// host network without host endpoint policy, ...).
    NotSubject,
    /// Evaluation was not possible (an invalid policy selects the endpoint).
    Indeterminate,
}

impl VerdictReason {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictReason::AllowedByRule => "allowed-by-rule",
            VerdictReason::DeniedByRule => "denied-by-rule",
            VerdictReason::EndOfTierDeny => "end-of-tier-deny",
            VerdictReason::IsolatedNoMatch => "isolated-no-match",
            VerdictReason::NotIsolatedDefaultAllow => "not-isolated-default-allow",
            VerdictReason::ProfileAllow => "profile-allow",
            VerdictReason::NotSubject => "not-subject",
            VerdictReason::Indeterminate => "indeterminate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyDirection {
    /// The source endpoint's egress.
    Egress,
    /// The destination endpoint's ingress.
    Ingress,
}

impl PolicyDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyDirection::Egress => "egress",
            PolicyDirection::Ingress => "ingress",
        }
    }
}

/// The decision for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideVerdict {
    pub direction: PolicyDirection,
    /// Hits in evaluation order; the last one decided (when any did).
    pub hits: Arc<[PolicyHit]>,
    pub verdict: Verdict,
    pub reason: VerdictReason,
}

/// Both directions and the overall result (deny if either side denies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
    pub verdict: Verdict,
}

impl Evaluation {
    /// Both sides, with the overall verdict derived: deny if either side
    /// denies (traffic must pass the source's egress and the destination's
    /// ingress).
    pub fn new(egress: SideVerdict, ingress: SideVerdict) -> Self {
        let verdict = if egress.verdict == Verdict::Deny || ingress.verdict == Verdict::Deny {
            Verdict::Deny
        } else {
            Verdict::Allow
        };
        Evaluation {
            egress,
            ingress,
            verdict,
        }
    }
}

/// What the dataplane was seen to do with the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The responder answered: traffic got through.
    Delivered,
    /// The kernel dropped the flow's packets, with its drop reason.
    Dropped { reason: Arc<str> },
    /// Nothing tells: no reply yet and no drop.
    Unknown,
}

/// Where the record's overall verdict comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictSource {
    /// Our policy engine.
    Evaluated,
    /// The CNI reported its own verdict.
    Cni,
    /// Only what the dataplane did (no policy could be evaluated).
    Observed,
}

impl VerdictSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictSource::Evaluated => "evaluated",
            VerdictSource::Cni => "cni",
            VerdictSource::Observed => "observed",
        }
    }
}

/// Evaluation and observation disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Evaluated deny, yet the traffic was delivered (e.g. a CNI that
    /// ignores NetworkPolicy).
    PolicyNotEnforced,
    /// Evaluated allow, yet the kernel dropped it.
    UnexplainedDrop,
}

impl Mismatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::PolicyNotEnforced => "policy-not-enforced",
            Mismatch::UnexplainedDrop => "unexplained-drop",
        }
    }
}

/// Everything stage ③ says about one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTrace {
    /// Enforced policies.
    pub enforced: Evaluation,
    /// Staged policies applied as if enforced; `None` when no staged policy
    /// touches the flow.
    pub pending: Option<Evaluation>,
    pub observed: Observed,
    pub verdict_source: VerdictSource,
    pub mismatch: Option<Mismatch>,
    /// Invalid policies that select an endpoint of this flow (reported once
    /// elsewhere; flagged here so the flow's verdict is not over-trusted).
    pub invalid_policies: Vec<Arc<PolicyRef>>,
}

impl PolicyTrace {
    /// The pending verdict differs from the enforced one.
    pub fn would_change(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.verdict != self.enforced.verdict)
    }
}

/// A flow with identities and its policy trace (stage ③ output, the input
/// of every output schema). `trace` is `None` when explain is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedFlow {
    pub flow: EnrichedFlow,
    pub trace: Option<PolicyTrace>,
}
