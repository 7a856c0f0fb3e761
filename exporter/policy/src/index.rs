//! The compiled policy index that [`crate::explain`] reads: valid and
//! invalid policies and Calico tiers, resolved once into two views — the
//! enforced set, and the pending set (staged policies applied) — each an
//! ordered list of tiers with their policies in evaluation order.
//!
//! Tiers (ascending order): Calico tiers by their `order`; `admin` (order
//! 1,000: AdminNetworkPolicy, Admin-tier ClusterNetworkPolicy); `default`
//! (order 1,000,000: Calico policies without a tier, and Kubernetes
//! NetworkPolicies as one group at policy order 1,000, as Calico places
//! them); `baseline` (order 10,000,000: BaselineAdminNetworkPolicy,
//! Baseline-tier ClusterNetworkPolicy). Within a tier: by order (priority),
//! then name.
//!
//! Built off the data path by whoever owns the policy watchers or the
//! manifests directory, then shared read-only. Building is pure; a change
//! to one policy ([`PolicyIndex::upsert`], [`PolicyIndex::remove`])
//! recompiles the views from the already parsed policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowscribe_model::{PolicyAction, PolicyKind, PolicyRef};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::admin::AdminTier;
use crate::calico::{CalicoTier, DEFAULT_TIER, DEFAULT_TIER_ORDER, KUBERNETES_POLICY_ORDER};
use crate::policy::{
    ADMIN_TIER, BASELINE_TIER, InvalidPolicy, InvalidScope, InvalidTier, Policy, PolicyError,
    PolicySpec, Stage, StagedAction, parse_policy, parse_tier,
};

/// A policy of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Index into [`PolicyIndex::policies`].
    Valid(u32),
    /// Index into [`PolicyIndex::invalid`].
    Invalid(u32),
}

/// Built-in tiers and Calico tiers differ in what the end of the tier
/// means and how a fall-through is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierKind {
    /// Admin network policies: a policy that matches nothing passes.
    Admin,
    /// Calico tiers, including `default` (Kubernetes NetworkPolicies).
    Calico,
    /// Baseline admin network policies: nothing matched means allowed.
    Baseline,
}

/// A policy in its tier, with its sort key.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) order: f64,
    pub(crate) name: Arc<str>,
    pub(crate) entry: Entry,
}

#[derive(Debug)]
pub(crate) struct Tier {
    pub(crate) name: Arc<str>,
    pub(crate) kind: TierKind,
    pub(crate) default_action: PolicyAction,
    /// The tier object is invalid or missing: a policy of it that selects
    /// the endpoint makes the side indeterminate.
    pub(crate) broken: bool,
    /// Cluster-scoped policies, in evaluation order.
    pub(crate) global: Box<[Slot]>,
    /// Namespaced Calico policies per namespace, in evaluation order.
    pub(crate) namespaced: FxHashMap<Arc<str>, Box<[Slot]>>,
    /// This is the tier Kubernetes NetworkPolicies are evaluated in.
    pub(crate) kubernetes: bool,
}

/// The enforced or the pending set, compiled.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub(crate) tiers: Box<[Tier]>,
    /// Kubernetes NetworkPolicies per namespace, ordered by name.
    pub(crate) kubernetes: FxHashMap<Arc<str>, Box<[Entry]>>,
}

/// Policies compiled for [`crate::explain`].
#[derive(Debug, Default)]
pub struct PolicyIndex {
    policies: Vec<Policy>,
    invalid: Vec<InvalidPolicy>,
    tiers: Vec<Result<CalicoTier, InvalidTier>>,
    /// Problems found while compiling: invalid tiers, policies in a tier
    /// that does not exist.
    compile_problems: Vec<PolicyError>,
    enforced: View,
    pending: Option<View>,
    /// Namespaces with a namespaced staged policy.
    staged_namespaces: FxHashSet<Arc<str>>,
    /// A cluster-scoped staged policy exists: every flow gets a pending
    /// evaluation.
    staged_global: bool,
    /// Calico objects are present: an endpoint no policy applies to is
    /// allowed by its profile (`profile-allow`).
    calico_present: bool,
}

/// Which enforced policy a staged one replaces or deletes: same family,
/// namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Family(u8, Option<Arc<str>>, Arc<str>);

fn family_of(kind: PolicyKind) -> u8 {
    match kind {
        PolicyKind::NetworkPolicy
        | PolicyKind::StagedNetworkPolicy
        | PolicyKind::CalicoStagedKubernetesNetworkPolicy => 0,
        PolicyKind::CalicoNetworkPolicy | PolicyKind::CalicoStagedNetworkPolicy => 1,
        PolicyKind::CalicoGlobalNetworkPolicy | PolicyKind::CalicoStagedGlobalNetworkPolicy => 2,
        PolicyKind::AdminNetworkPolicy => 3,
        PolicyKind::BaselineAdminNetworkPolicy => 4,
        PolicyKind::ClusterNetworkPolicy => 5,
    }
}

#[derive(Debug, Clone)]
enum Placement {
    Kubernetes(Arc<str>),
    Tier {
        tier: Arc<str>,
        order: f64,
        namespace: Option<Arc<str>>,
    },
}

#[derive(Debug, Clone)]
struct TierDef {
    order: f64,
    kind: TierKind,
    default_action: PolicyAction,
    broken: bool,
}

fn admin_tier_name(tier: AdminTier) -> &'static str {
    match tier {
        AdminTier::Admin => ADMIN_TIER,
        AdminTier::Baseline => BASELINE_TIER,
    }
}

impl PolicyIndex {
    /// Build from parsed policies, valid or not. When two enforced policies
    /// share a kind family, namespace and name (or two staged ones also
    /// share a kind), the later one wins.
    pub fn build(items: impl IntoIterator<Item = Result<Policy, InvalidPolicy>>) -> PolicyIndex {
        PolicyIndex::build_with_tiers(items, Vec::new())
    }

    /// Build with Calico Tier objects ([`crate::parse_tier`]). Without a
    /// Tier object the tiers `default`, `admin` and `baseline` exist; a
    /// Calico policy naming any other tier that is missing or invalid is
    /// reported and makes the flows it may select indeterminate.
    pub fn build_with_tiers(
        items: impl IntoIterator<Item = Result<Policy, InvalidPolicy>>,
        tiers: Vec<Result<CalicoTier, InvalidTier>>,
    ) -> PolicyIndex {
        let mut index = PolicyIndex {
            tiers,
            ..PolicyIndex::default()
        };
        for item in items {
            match item {
                Ok(p) => index.policies.push(p),
                Err(i) => index.invalid.push(i),
            }
        }
        index.compile();
        index
    }

    /// Parse and build from JSON objects (a manifests directory, a list).
    /// Objects of other kinds are skipped; every invalid policy or tier is
    /// returned once as a problem (and still flags the flows it may
    /// affect).
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
    ) -> (PolicyIndex, Vec<PolicyError>) {
        let mut items = Vec::new();
        let mut tiers = Vec::new();
        for v in objects {
            if let Some(p) = parse_policy(v) {
                items.push(p);
            } else if let Some(t) = parse_tier(v) {
                tiers.push(t);
            }
        }
        let index = PolicyIndex::build_with_tiers(items, tiers);
        let problems = index.problems().cloned().collect();
        (index, problems)
    }

    /// Add or replace one policy (same kind, namespace and name) and
    /// recompile. Parsing is the caller's (off the data path).
    pub fn upsert(&mut self, item: Result<Policy, InvalidPolicy>) {
        let reference = match &item {
            Ok(p) => Some(p.reference.clone()),
            Err(i) => i.reference.clone(),
        };
        if let Some(r) = &reference {
            self.forget(r.kind, r.namespace.as_deref(), &r.name);
        }
        match item {
            Ok(p) => self.policies.push(p),
            Err(i) => self.invalid.push(i),
        }
        self.compile();
    }

    /// Remove one policy and recompile. Returns whether it was there.
    pub fn remove(&mut self, kind: PolicyKind, namespace: Option<&str>, name: &str) -> bool {
        let found = self.forget(kind, namespace, name);
        if found {
            self.compile();
        }
        found
    }

    fn forget(&mut self, kind: PolicyKind, namespace: Option<&str>, name: &str) -> bool {
        let same = |r: &PolicyRef| {
            r.kind == kind && r.namespace.as_deref() == namespace && &*r.name == name
        };
        let before = self.policies.len() + self.invalid.len();
        self.policies.retain(|p| !same(&p.reference));
        self.invalid
            .retain(|i| !i.reference.as_deref().is_some_and(same));
        before != self.policies.len() + self.invalid.len()
    }

    /// Resolve the enforced and pending views from the parsed policies.
    fn compile(&mut self) {
        self.compile_problems.clear();
        let mut defs: FxHashMap<Arc<str>, TierDef> = FxHashMap::default();
        defs.insert(
            Arc::from(ADMIN_TIER),
            TierDef {
                order: 1000.0,
                kind: TierKind::Admin,
                default_action: PolicyAction::Pass,
                broken: false,
            },
        );
        defs.insert(
            Arc::from(DEFAULT_TIER),
            TierDef {
                order: DEFAULT_TIER_ORDER,
                kind: TierKind::Calico,
                default_action: PolicyAction::Deny,
                broken: false,
            },
        );
        defs.insert(
            Arc::from(BASELINE_TIER),
            TierDef {
                order: 10_000_000.0,
                kind: TierKind::Baseline,
                default_action: PolicyAction::Pass,
                broken: false,
            },
        );
        for t in &self.tiers {
            match t {
                Ok(t) => {
                    defs.insert(
                        t.name.clone(),
                        TierDef {
                            order: t.order.unwrap_or(f64::INFINITY),
                            kind: TierKind::Calico,
                            default_action: t.default_action,
                            broken: false,
                        },
                    );
                }
                Err(InvalidTier { name, error }) => {
                    self.compile_problems.push(error.clone());
                    if let Some(name) = name {
                        // Where an unreadable tier sits is unknown: first.
                        defs.insert(
                            name.clone(),
                            TierDef {
                                order: f64::NEG_INFINITY,
                                kind: TierKind::Calico,
                                default_action: PolicyAction::Deny,
                                broken: true,
                            },
                        );
                    }
                }
            }
        }

        let mut enforced: BTreeMap<Family, (Placement, Entry)> = BTreeMap::new();
        type StagedKey = (PolicyKind, Option<Arc<str>>, Arc<str>);
        let mut staged: BTreeMap<StagedKey, (StagedAction, Family, Placement, Entry)> =
            BTreeMap::new();
        let mut placed: Vec<(Arc<PolicyRef>, Stage, Placement, Entry)> = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            let entry = Entry::Valid(i as u32);
            let r = &p.reference;
            let placement = match &p.spec {
                PolicySpec::Kubernetes(_) => {
                    Placement::Kubernetes(r.namespace.clone().unwrap_or_else(|| Arc::from("")))
                }
                PolicySpec::Admin(a) => Placement::Tier {
                    tier: Arc::from(admin_tier_name(a.tier)),
                    order: f64::from(a.priority),
                    namespace: None,
                },
                PolicySpec::Calico(c) => Placement::Tier {
                    tier: c.tier.clone(),
                    order: c.order.unwrap_or(f64::INFINITY),
                    namespace: r.namespace.clone(),
                },
            };
            placed.push((r.clone(), p.stage, placement, entry));
        }
        for (i, inv) in self.invalid.iter().enumerate() {
            // Without a name it cannot be placed; it is only reported.
            let Some(r) = &inv.reference else { continue };
            let entry = Entry::Invalid(i as u32);
            let placement = match &*inv.scope {
                InvalidScope::Kubernetes => {
                    Placement::Kubernetes(r.namespace.clone().unwrap_or_else(|| Arc::from("")))
                }
                InvalidScope::Admin { tier, priority, .. } => Placement::Tier {
                    tier: Arc::from(admin_tier_name(*tier)),
                    order: priority.map_or(f64::NEG_INFINITY, f64::from),
                    namespace: None,
                },
                InvalidScope::Calico { tier, order, .. } => Placement::Tier {
                    tier: tier.clone(),
                    order: order.unwrap_or(f64::NEG_INFINITY),
                    namespace: r.namespace.clone(),
                },
            };
            placed.push((r.clone(), inv.stage, placement, entry));
        }

        self.staged_namespaces.clear();
        self.staged_global = false;
        self.calico_present = !self.tiers.is_empty()
            || self
                .policies
                .iter()
                .any(|p| matches!(p.spec, PolicySpec::Calico(_)))
            || self
                .invalid
                .iter()
                .any(|i| matches!(*i.scope, InvalidScope::Calico { .. }));
        for (r, stage, placement, entry) in placed {
            if let Placement::Tier { tier, .. } = &placement
                && !defs.contains_key(tier)
            {
                self.compile_problems.push(PolicyError {
                    kind: r.kind.as_str().to_string(),
                    name: match &r.namespace {
                        Some(ns) => format!("{ns}/{}", r.name),
                        None => r.name.to_string(),
                    },
                    field: "spec.tier".to_string(),
                    problem: format!("tier {tier:?} is not defined (no Tier object)"),
                });
                defs.insert(
                    tier.clone(),
                    TierDef {
                        order: f64::NEG_INFINITY,
                        kind: TierKind::Calico,
                        default_action: PolicyAction::Deny,
                        broken: true,
                    },
                );
            }
            let family = Family(family_of(r.kind), r.namespace.clone(), r.name.clone());
            match stage {
                Stage::Enforced => {
                    enforced.insert(family, (placement, entry));
                }
                Stage::Staged(action) => {
                    match &r.namespace {
                        Some(ns) => {
                            self.staged_namespaces.insert(ns.clone());
                        }
                        None => self.staged_global = true,
                    }
                    staged.insert(
                        (r.kind, r.namespace.clone(), r.name.clone()),
                        (action, family, placement, entry),
                    );
                }
            }
        }
        let pending = (!staged.is_empty()).then(|| {
            let mut pending = enforced.clone();
            for (action, family, placement, entry) in staged.into_values() {
                match action {
                    StagedAction::Set => {
                        pending.insert(family, (placement, entry));
                    }
                    StagedAction::Delete => {
                        pending.remove(&family);
                    }
                }
            }
            compile_view(&defs, pending)
        });
        self.enforced = compile_view(&defs, enforced);
        self.pending = pending;
    }

    /// Valid policies, enforced and staged, in input order (after
    /// [`PolicyIndex::upsert`], changed ones last).
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Invalid policies, in input order.
    pub fn invalid(&self) -> &[InvalidPolicy] {
        &self.invalid
    }

    /// Calico tiers read, valid or not.
    pub fn tiers(&self) -> &[Result<CalicoTier, InvalidTier>] {
        &self.tiers
    }

    /// Every problem once: why each invalid policy is invalid, then invalid
    /// tiers and policies in tiers that do not exist.
    pub fn problems(&self) -> impl Iterator<Item = &PolicyError> {
        self.invalid
            .iter()
            .map(|i| &*i.error)
            .chain(self.compile_problems.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.invalid.is_empty()
    }

    pub(crate) fn view(&self, pending: bool) -> &View {
        match (&self.pending, pending) {
            (Some(p), true) => p,
            _ => &self.enforced,
        }
    }

    /// Whether staged policies may change anything for an endpoint of this
    /// namespace (`None`: not a pod).
    pub(crate) fn has_staged_for(&self, namespace: Option<&str>) -> bool {
        self.pending.is_some()
            && (self.staged_global
                || namespace.is_some_and(|ns| self.staged_namespaces.contains(ns)))
    }

    pub(crate) fn calico_present(&self) -> bool {
        self.calico_present
    }

    pub(crate) fn valid(&self, i: u32) -> &Policy {
        &self.policies[i as usize]
    }

    pub(crate) fn invalid_at(&self, i: u32) -> &InvalidPolicy {
        &self.invalid[i as usize]
    }
}

fn compile_view(
    defs: &FxHashMap<Arc<str>, TierDef>,
    set: BTreeMap<Family, (Placement, Entry)>,
) -> View {
    let mut kubernetes: FxHashMap<Arc<str>, Vec<Entry>> = FxHashMap::default();
    type Slots = (Vec<Slot>, FxHashMap<Arc<str>, Vec<Slot>>);
    let mut by_tier: FxHashMap<Arc<str>, Slots> = FxHashMap::default();
    // BTreeMap order is (family, namespace, name): Kubernetes policies of a
    // namespace come out ordered by name.
    for (Family(_, _, name), (placement, entry)) in set {
        match placement {
            Placement::Kubernetes(ns) => kubernetes.entry(ns).or_default().push(entry),
            Placement::Tier {
                tier,
                order,
                namespace,
            } => {
                let (global, namespaced) = by_tier.entry(tier).or_default();
                let slot = Slot { order, name, entry };
                match namespace {
                    None => global.push(slot),
                    Some(ns) => namespaced.entry(ns).or_default().push(slot),
                }
            }
        }
    }
    let sort = |slots: &mut Vec<Slot>| {
        slots.sort_by(|a, b| {
            a.order
                .total_cmp(&b.order)
                .then_with(|| a.name.cmp(&b.name))
        });
    };
    let mut tiers: Vec<(f64, Tier)> = Vec::new();
    let default_tier: Arc<str> = Arc::from(DEFAULT_TIER);
    if !by_tier.contains_key(&default_tier) {
        by_tier.insert(default_tier.clone(), Slots::default());
    }
    for (name, (mut global, namespaced)) in by_tier {
        let Some(def) = defs.get(&name) else { continue };
        sort(&mut global);
        let namespaced = namespaced
            .into_iter()
            .map(|(ns, mut slots)| {
                sort(&mut slots);
                (ns, slots.into_boxed_slice())
            })
            .collect();
        tiers.push((
            def.order,
            Tier {
                kubernetes: name == default_tier,
                name,
                kind: def.kind,
                default_action: def.default_action,
                broken: def.broken,
                global: global.into(),
                namespaced,
            },
        ));
    }
    tiers.sort_by(|(a, ta), (b, tb)| a.total_cmp(b).then_with(|| ta.name.cmp(&tb.name)));
    View {
        tiers: tiers.into_iter().map(|(_, t)| t).collect(),
        kubernetes: kubernetes
            .into_iter()
            .map(|(ns, e)| (ns, e.into_boxed_slice()))
            .collect(),
    }
}

/// Where Kubernetes NetworkPolicies sit among the policies of the default
/// tier (Calico names them `knp.default.<name>` with order 1000).
pub(crate) const KUBERNETES_GROUP_ORDER: (f64, &str) = (KUBERNETES_POLICY_ORDER, "knp.default.");
