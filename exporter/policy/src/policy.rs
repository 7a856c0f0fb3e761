//! Policy objects as the index holds them: a reference (kind, namespace,
//! name, uid, version), whether it is enforced or staged, and a compiled
//! spec; or, when the object is invalid, what is known of it and why.
//!
//! [`parse_policy`] is the one entry point from untyped JSON for policies,
//! [`parse_tier`] for Calico Tier objects. Policy kinds form a closed set:
//! [`PolicySpec`] has one variant per spec language (Kubernetes
//! NetworkPolicy, the cluster-wide `policy.networking.k8s.io` kinds,
//! Calico), and an exhaustive `match` shows every place a new one must be
//! handled. No IO here.

use std::sync::Arc;

use flowscribe_model::{PolicyKind, PolicyRef};
use serde_json::Value;

use crate::admin::{AdminPolicySpec, AdminSubject, AdminTier, parse_admin_spec};
use crate::calico::{CalicoPolicySpec, CalicoTier, parse_calico_spec, tier_of};
use crate::calico_selector::CalicoSelector;
use crate::json::{Ctx, present, type_of};
use crate::kubernetes::{KubernetesPolicySpec, parse_spec};
use crate::selector::{LabelSelector, parse_selector};

/// The tier name of Admin-tier AdminNetworkPolicies and
/// ClusterNetworkPolicies in traces.
pub const ADMIN_TIER: &str = "admin";
/// The tier name of BaselineAdminNetworkPolicy and Baseline-tier
/// ClusterNetworkPolicies in traces.
pub const BASELINE_TIER: &str = "baseline";

/// Why a policy object could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {field}: {problem}")]
pub struct PolicyError {
    pub kind: String,
    /// `namespace/name`, or `?` when the name itself is missing.
    pub name: String,
    /// The field path, as `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    pub problem: String,
}

/// What a staged policy does to the enforced set when applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StagedAction {
    /// Add the policy, replacing an enforced policy of the same namespace
    /// and name (Calico `stagedAction: Set`, the default).
    Set,
    /// Remove the enforced policy of the same namespace and name.
    Delete,
}

/// Enforced by the dataplane, or only evaluated as pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Enforced,
    Staged(StagedAction),
}

/// The compiled rules of a policy, one variant per spec language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySpec {
    /// networking.k8s.io/v1 NetworkPolicy semantics (also our
    /// StagedNetworkPolicy and Calico's StagedKubernetesNetworkPolicy).
    Kubernetes(KubernetesPolicySpec),
    /// AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy.
    Admin(AdminPolicySpec),
    /// Calico NetworkPolicy and GlobalNetworkPolicy (staged or not).
    Calico(CalicoPolicySpec),
}

/// What is known, from its valid parts, of whom an invalid policy may
/// select and where it sits in the evaluation order.
#[derive(Debug, Clone, PartialEq)]
pub enum InvalidScope {
    /// A NetworkPolicy-spec kind: pods of its namespace
    /// ([`InvalidPolicy::pod_selector`] says which).
    Kubernetes,
    /// A cluster-wide `policy.networking.k8s.io` kind.
    Admin {
        tier: AdminTier,
        /// `None` when unreadable: it may come first in its tier.
        priority: Option<u32>,
        /// `None` when unreadable: it may select any pod.
        subject: Option<AdminSubject>,
    },
    /// A Calico policy.
    Calico {
        tier: Arc<str>,
        /// `None` when unreadable: it may come first in its tier.
        order: Option<f64>,
        /// `None` when unreadable: it may select any endpoint (of its
        /// namespace, for a namespaced kind).
        selector: Option<CalicoSelector>,
    },
}

// Orders are finite (unreadable ones are `None`), so equality is total.
impl Eq for InvalidScope {}

/// A valid policy object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub reference: Arc<PolicyRef>,
    pub stage: Stage,
    pub spec: PolicySpec,
}

/// A policy object that failed validation. It still takes part in explain:
/// flows whose endpoints it may select are flagged, and a side it may
/// isolate is `indeterminate` unless a valid rule allows the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPolicy {
    /// `None` when even the name is missing: then it is only reported.
    pub reference: Option<Arc<PolicyRef>>,
    /// The pods it selects, when its pod selector itself is valid; `None`
    /// means "may select any pod of its namespace".
    pub pod_selector: Option<LabelSelector>,
    pub stage: Stage,
    /// Boxed: it is the rare case, and keeps `Result<Policy, InvalidPolicy>` small.
    pub error: Box<PolicyError>,
    /// Placement and selection for the tiered kinds.
    pub scope: Box<InvalidScope>,
}

/// A Calico Tier object that failed validation. Policies in it make the
/// flows they may select indeterminate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTier {
    /// `None` when even the name is missing.
    pub name: Option<Arc<str>>,
    pub error: PolicyError,
}

/// The kinds this crate reads, from `apiVersion` and `kind`.
pub fn policy_kind(api_version: &str, kind: &str) -> Option<PolicyKind> {
    Some(match (api_version, kind) {
        ("networking.k8s.io/v1", "NetworkPolicy") => PolicyKind::NetworkPolicy,
        ("flowscribe.dev/v1alpha1", "StagedNetworkPolicy") => PolicyKind::StagedNetworkPolicy,
        ("projectcalico.org/v3", "StagedKubernetesNetworkPolicy") => {
            PolicyKind::CalicoStagedKubernetesNetworkPolicy
        }
        ("projectcalico.org/v3", "NetworkPolicy") => PolicyKind::CalicoNetworkPolicy,
        ("projectcalico.org/v3", "GlobalNetworkPolicy") => PolicyKind::CalicoGlobalNetworkPolicy,
        ("projectcalico.org/v3", "StagedNetworkPolicy") => PolicyKind::CalicoStagedNetworkPolicy,
        ("projectcalico.org/v3", "StagedGlobalNetworkPolicy") => {
            PolicyKind::CalicoStagedGlobalNetworkPolicy
        }
        ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy") => {
            PolicyKind::AdminNetworkPolicy
        }
        ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy") => {
            PolicyKind::BaselineAdminNetworkPolicy
        }
        ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy") => {
            PolicyKind::ClusterNetworkPolicy
        }
        _ => return None,
    })
}

/// Cluster-scoped kinds have no namespace.
pub(crate) fn is_cluster_scoped(kind: PolicyKind) -> bool {
    matches!(
        kind,
        PolicyKind::ClusterNetworkPolicy
            | PolicyKind::AdminNetworkPolicy
            | PolicyKind::BaselineAdminNetworkPolicy
            | PolicyKind::CalicoGlobalNetworkPolicy
            | PolicyKind::CalicoStagedGlobalNetworkPolicy
    )
}

/// A Calico `Tier` (`projectcalico.org/v3`), or `None` for other objects.
/// An invalid tier is an error naming the field; policies in it are then
/// reported invalid too when the index is built.
pub fn parse_tier(v: &Value) -> Option<Result<CalicoTier, InvalidTier>> {
    if v.get("apiVersion").and_then(Value::as_str) != Some("projectcalico.org/v3")
        || v.get("kind").and_then(Value::as_str) != Some("Tier")
    {
        return None;
    }
    let name = field2(v, "metadata", "name").and_then(Value::as_str);
    let ctx = Ctx {
        kind: "Tier",
        namespace: None,
        name,
    };
    Some(match name {
        None => Err(InvalidTier {
            name: None,
            error: ctx.err("metadata.name", "missing"),
        }),
        Some(n) => crate::calico::parse_tier(&ctx, n, v).map_err(|error| InvalidTier {
            name: Some(Arc::from(n)),
            error,
        }),
    })
}

/// Parse one object. `None`: not a policy kind this crate reads (other
/// objects of a manifests directory pass through here too).
pub fn parse_policy(v: &Value) -> Option<Result<Policy, InvalidPolicy>> {
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let kind = policy_kind(api_version, kind_name)?;
    Some(parse_policy_as(kind, v))
}

/// Parse an object whose kind is known from context (a watch on one
/// resource).
pub fn parse_policy_as(kind: PolicyKind, v: &Value) -> Result<Policy, InvalidPolicy> {
    let ns = field2(v, "metadata", "namespace").and_then(Value::as_str);
    let name = field2(v, "metadata", "name").and_then(Value::as_str);
    let ctx = Ctx {
        kind: kind.as_str(),
        namespace: (!is_cluster_scoped(kind)).then(|| ns.unwrap_or("default")),
        name,
    };
    let invalid = |error: PolicyError, reference: Option<Arc<PolicyRef>>| {
        // Best effort: if the pod selector alone is valid, flag only the
        // pods it selects; otherwise any pod of the namespace.
        let pod_selector = field2(v, "spec", "podSelector")
            .map(|s| parse_selector(&ctx, s, "spec.podSelector").ok())
            .unwrap_or(Some(LabelSelector::everything()));
        InvalidPolicy {
            scope: Box::new(invalid_scope(&ctx, kind, v)),
            reference,
            pod_selector,
            // A staged object whose action cannot be read is treated as Set:
            // it may change the pending result, so it is flagged there.
            stage: if kind.is_staged() {
                Stage::Staged(StagedAction::Set)
            } else {
                Stage::Enforced
            },
            error: Box::new(error),
        }
    };
    let reference = match reference(&ctx, kind, v) {
        Ok(r) => r,
        Err(e) => return Err(invalid(e, None)),
    };
    match parse_body(&ctx, kind, v) {
        Ok((stage, spec)) => Ok(Policy {
            reference,
            stage,
            spec,
        }),
        Err(e) => Err(invalid(e, Some(reference))),
    }
}

fn reference(ctx: &Ctx, kind: PolicyKind, v: &Value) -> Result<Arc<PolicyRef>, PolicyError> {
    // Metadata carries many server-set fields; only the ones read are checked.
    let meta = match v.get("metadata") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ctx.err(
                "metadata",
                format!("expected an object, found {}", type_of(other)),
            ));
        }
        None => return Err(ctx.err("metadata", "missing")),
    };
    let name = ctx
        .opt_str(meta, "name", "metadata")?
        .ok_or_else(|| ctx.err("metadata.name", "missing"))?;
    let namespace = ctx
        .opt_str(meta, "namespace", "metadata")?
        .unwrap_or("default");
    let generation = match present(meta, "generation") {
        None => None,
        Some(g) => Some(g.as_i64().ok_or_else(|| {
            ctx.err(
                "metadata.generation",
                format!("expected an integer, found {}", type_of(g)),
            )
        })?),
    };
    let tier: Arc<str> = match kind {
        // Kubernetes NetworkPolicy has no tiers; Calico names the tier it
        // evaluates them in `default`, and so do we.
        PolicyKind::NetworkPolicy
        | PolicyKind::StagedNetworkPolicy
        | PolicyKind::CalicoStagedKubernetesNetworkPolicy => Arc::from(crate::calico::DEFAULT_TIER),
        PolicyKind::AdminNetworkPolicy => Arc::from(ADMIN_TIER),
        PolicyKind::BaselineAdminNetworkPolicy => Arc::from(BASELINE_TIER),
        PolicyKind::ClusterNetworkPolicy => match field2(v, "spec", "tier").and_then(Value::as_str)
        {
            Some("Baseline") => Arc::from(BASELINE_TIER),
            _ => Arc::from(ADMIN_TIER),
        },
        PolicyKind::CalicoNetworkPolicy
        | PolicyKind::CalicoGlobalNetworkPolicy
        | PolicyKind::CalicoStagedNetworkPolicy
        | PolicyKind::CalicoStagedGlobalNetworkPolicy => v
            .get("spec")
            .map_or_else(|| Arc::from(crate::calico::DEFAULT_TIER), tier_of),
    };
    Ok(Arc::new(PolicyRef {
        kind,
        tier,
        namespace: (!is_cluster_scoped(kind)).then(|| Arc::from(namespace)),
        name: Arc::from(name),
        uid: Arc::from(ctx.opt_str(meta, "uid", "metadata")?.unwrap_or("")),
        resource_version: Arc::from(
            ctx.opt_str(meta, "resourceVersion", "metadata")?
                .unwrap_or(""),
        ),
        generation,
    }))
}

fn parse_body(ctx: &Ctx, kind: PolicyKind, v: &Value) -> Result<(Stage, PolicySpec), PolicyError> {
    // `status` existed on NetworkPolicy in some releases; it says nothing
    // about semantics.
    ctx.object(v, "", &["apiVersion", "kind", "metadata", "spec", "status"])?;
    let empty = Value::Object(serde_json::Map::new());
    let spec = present_value(v, "spec").unwrap_or(&empty);
    match kind {
        PolicyKind::NetworkPolicy => Ok((
            Stage::Enforced,
            PolicySpec::Kubernetes(parse_spec(ctx, spec, &[])?),
        )),
        PolicyKind::StagedNetworkPolicy => Ok((
            Stage::Staged(StagedAction::Set),
            PolicySpec::Kubernetes(parse_spec(ctx, spec, &[])?),
        )),
        PolicyKind::CalicoStagedKubernetesNetworkPolicy => {
            let action = match spec.get("stagedAction") {
                None | Some(Value::Null) => StagedAction::Set,
                Some(Value::String(s)) if s == "Set" => StagedAction::Set,
                Some(Value::String(s)) if s == "Delete" => StagedAction::Delete,
                Some(other) => {
                    return Err(ctx.err(
                        "spec.stagedAction",
                        format!("{other} is not a staged action (Set, Delete)"),
                    ));
                }
            };
            let spec = match action {
                // A Delete only names the policy to remove; its rules, if
                // any, are never evaluated.
                StagedAction::Delete => KubernetesPolicySpec::governs_nothing(),
                StagedAction::Set => parse_spec(ctx, spec, &["stagedAction"])?,
            };
            Ok((Stage::Staged(action), PolicySpec::Kubernetes(spec)))
        }
        PolicyKind::AdminNetworkPolicy
        | PolicyKind::BaselineAdminNetworkPolicy
        | PolicyKind::ClusterNetworkPolicy => {
            let name = field2(v, "metadata", "name")
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok((
                Stage::Enforced,
                PolicySpec::Admin(parse_admin_spec(ctx, kind, name, spec)?),
            ))
        }
        PolicyKind::CalicoNetworkPolicy | PolicyKind::CalicoGlobalNetworkPolicy => Ok((
            Stage::Enforced,
            PolicySpec::Calico(parse_calico_spec(ctx, kind, spec, &[])?),
        )),
        PolicyKind::CalicoStagedNetworkPolicy | PolicyKind::CalicoStagedGlobalNetworkPolicy => {
            let action = staged_action(ctx, spec)?;
            let spec = match action {
                // A Delete only names the policy to remove.
                StagedAction::Delete => CalicoPolicySpec::governs_nothing(),
                StagedAction::Set => parse_calico_spec(ctx, kind, spec, &["stagedAction"])?,
            };
            Ok((Stage::Staged(action), PolicySpec::Calico(spec)))
        }
    }
}

fn staged_action(ctx: &Ctx, spec: &Value) -> Result<StagedAction, PolicyError> {
    match spec.get("stagedAction") {
        None | Some(Value::Null) => Ok(StagedAction::Set),
        Some(Value::String(s)) if s == "Set" => Ok(StagedAction::Set),
        Some(Value::String(s)) if s == "Delete" => Ok(StagedAction::Delete),
        Some(other) => Err(ctx.err(
            "spec.stagedAction",
            format!("{other} is not a staged action (Set, Delete)"),
        )),
    }
}

/// Best-effort placement and selection of an invalid policy from whatever
/// parts of it are readable.
fn invalid_scope(ctx: &Ctx, kind: PolicyKind, v: &Value) -> InvalidScope {
    let spec = v.get("spec");
    match kind {
        PolicyKind::NetworkPolicy
        | PolicyKind::StagedNetworkPolicy
        | PolicyKind::CalicoStagedKubernetesNetworkPolicy => InvalidScope::Kubernetes,
        PolicyKind::AdminNetworkPolicy
        | PolicyKind::BaselineAdminNetworkPolicy
        | PolicyKind::ClusterNetworkPolicy => {
            let tier = match (
                kind,
                spec.and_then(|s| s.get("tier")).and_then(Value::as_str),
            ) {
                (PolicyKind::BaselineAdminNetworkPolicy, _) | (_, Some("Baseline")) => {
                    AdminTier::Baseline
                }
                _ => AdminTier::Admin,
            };
            let priority = spec
                .and_then(|s| s.get("priority"))
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok());
            // Reuse the spec parser on the subject alone.
            let subject = spec.and_then(|s| s.get("subject")).and_then(|subject| {
                let probe = serde_json::json!({"tier": "Admin", "priority": 0, "subject": subject});
                parse_admin_spec(ctx, PolicyKind::ClusterNetworkPolicy, "", &probe)
                    .ok()
                    .map(|s| s.subject)
            });
            InvalidScope::Admin {
                tier,
                priority: if tier == AdminTier::Baseline {
                    Some(0)
                } else {
                    priority
                },
                subject,
            }
        }
        PolicyKind::CalicoNetworkPolicy
        | PolicyKind::CalicoGlobalNetworkPolicy
        | PolicyKind::CalicoStagedNetworkPolicy
        | PolicyKind::CalicoStagedGlobalNetworkPolicy => {
            let field = |k: &str| spec.and_then(|s| s.get(k));
            let selector = match field("selector") {
                None | Some(Value::Null) => Some(CalicoSelector::all()),
                Some(Value::String(s)) => CalicoSelector::parse(s).ok(),
                Some(_) => None,
            };
            // A namespaceSelector narrows a global policy; if it cannot be
            // read the policy may select any namespace, so it is dropped.
            InvalidScope::Calico {
                tier: spec.map_or_else(|| Arc::from(crate::calico::DEFAULT_TIER), tier_of),
                order: field("order")
                    .and_then(Value::as_f64)
                    .filter(|f| f.is_finite()),
                selector,
            }
        }
    }
}

/// `v[a][b]`, without `Value::pointer`'s parsing of the path (it builds a
/// string per segment, and policies are read by the ten thousand).
fn field2<'v>(v: &'v Value, a: &str, b: &str) -> Option<&'v Value> {
    v.get(a).and_then(|x| x.get(b))
}

fn present_value<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}
