//! Policy objects as the index holds them: a reference (kind, namespace,
//! name, uid, version), whether it is enforced or staged, and a compiled
//! spec; or, when the object is invalid, what is known of it and why.
//!
//! [`parse_policy`] is the one entry point from untyped JSON. Policy kinds
//! form a closed set: [`PolicySpec`] has one variant per spec language, and
//! an exhaustive `match` shows every place a new kind (Calico, Admin
//! network policy) must be handled. No IO here.

use std::sync::Arc;

use flowscribe_model::{PolicyKind, PolicyRef};
use serde_json::Value;

use crate::json::{Ctx, present, type_of};
use crate::kubernetes::{KubernetesPolicySpec, parse_spec};
use crate::selector::{LabelSelector, parse_selector};

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
}

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
}

/// The kinds this crate reads, from `apiVersion` and `kind`.
pub fn policy_kind(api_version: &str, kind: &str) -> Option<PolicyKind> {
    Some(match (api_version, kind) {
        ("networking.k8s.io/v1", "NetworkPolicy") => PolicyKind::NetworkPolicy,
        ("flowscribe.dev/v1alpha1", "StagedNetworkPolicy") => PolicyKind::StagedNetworkPolicy,
        ("projectcalico.org/v3", "StagedKubernetesNetworkPolicy") => {
            PolicyKind::CalicoStagedKubernetesNetworkPolicy
        }
        _ => return None,
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
    let ns = v.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = v.pointer("/metadata/name").and_then(Value::as_str);
    let ctx = Ctx {
        kind: kind.as_str(),
        name: match name {
            Some(n) => format!("{}/{n}", ns.unwrap_or("default")),
            None => "?".to_string(),
        },
    };
    let invalid = |error: PolicyError, reference: Option<Arc<PolicyRef>>| {
        // Best effort: if the pod selector alone is valid, flag only the
        // pods it selects; otherwise any pod of the namespace.
        let pod_selector = v
            .pointer("/spec/podSelector")
            .map(|s| parse_selector(&ctx, s, "spec.podSelector").ok())
            .unwrap_or(Some(LabelSelector::everything()));
        InvalidPolicy {
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
    Ok(Arc::new(PolicyRef {
        kind,
        // Kubernetes NetworkPolicy has no tiers; Calico names the tier it
        // evaluates them in `default`, and so do we.
        tier: Arc::from("default"),
        namespace: Some(Arc::from(namespace)),
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
        // The remaining kinds are not implemented yet (issue 4); `policy_kind`
        // never returns them, so reaching here is a caller passing a kind
        // explicitly.
        PolicyKind::ClusterNetworkPolicy
        | PolicyKind::AdminNetworkPolicy
        | PolicyKind::BaselineAdminNetworkPolicy
        | PolicyKind::CalicoNetworkPolicy
        | PolicyKind::CalicoGlobalNetworkPolicy
        | PolicyKind::CalicoStagedNetworkPolicy
        | PolicyKind::CalicoStagedGlobalNetworkPolicy => {
            Err(ctx.err("kind", "this policy kind is not supported yet"))
        }
    }
}

fn present_value<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}
