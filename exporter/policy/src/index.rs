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
use std::sync::{Arc, Mutex};

use flowscribe_model::{PodIdentity, PolicyAction, PolicyKind, PolicyRef};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::admin::AdminTier;
use crate::calico::{CalicoTier, DEFAULT_TIER, DEFAULT_TIER_ORDER, KUBERNETES_POLICY_ORDER};
use crate::candidates::Candidates;
use crate::explain::Evaluated;
use crate::memo::{AddressClasses, Memo, PairKey};
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

#[derive(Debug, Clone)]
pub(crate) struct Tier {
    pub(crate) name: Arc<str>,
    pub(crate) kind: TierKind,
    pub(crate) default_action: PolicyAction,
    /// The tier object is invalid or missing: a policy of it that selects
    /// the endpoint makes the side indeterminate.
    pub(crate) broken: bool,
    /// Cluster-scoped policies, in evaluation order.
    pub(crate) global: Box<[Slot]>,
    /// `global` filed by a label their selectors require, so that a new
    /// identity evaluates only the selectors it may satisfy.
    pub(crate) candidates: Candidates,
    /// Namespaced Calico policies per namespace, in evaluation order.
    pub(crate) namespaced: FxHashMap<Arc<str>, Box<[Slot]>>,
    /// This is the tier Kubernetes NetworkPolicies are evaluated in.
    pub(crate) kubernetes: bool,
}

/// The enforced or the pending set, compiled.
#[derive(Debug, Default, Clone)]
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
    /// Interned identities, their selections and evaluations per identity
    /// pair (see [`crate::memo`]).
    memo: Mutex<Memo>,
    /// The CIDRs rules name, as address classes for the pair memo's key.
    classes: AddressClasses,
    /// Some Calico rule matches source ports: they are part of the pair key.
    uses_source_ports: bool,
    /// The compiled state kept for incremental changes: tier definitions,
    /// the enforced set, staged policies, and the pending set.
    defs: FxHashMap<Arc<str>, TierDef>,
    /// Tiers that policies name but no Tier object defines.
    missing_tiers: FxHashSet<Arc<str>>,
    enforced_set: BTreeMap<Family, (Placement, Entry)>,
    staged_set: BTreeMap<StagedKey, (StagedAction, Family, Placement, Entry)>,
    pending_set: Option<BTreeMap<Family, (Placement, Entry)>>,
}

type StagedKey = (PolicyKind, Option<Arc<str>>, Arc<str>);

/// The policies of a view that may select one pod (selector `Yes` or
/// `Unknown`, or an invalid policy that may select it), so that a flow
/// walks only those and matches no subject selector again. Positions carry
/// [`SELECTED_UNKNOWN`] when the selector's answer was `Unknown`.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// Per tier of the view: positions in [`Tier::global`] and in the
    /// tier's slots of the pod's namespace.
    pub(crate) tiers: Box<[TierSelection]>,
    /// Positions in the view's Kubernetes NetworkPolicies of the pod's
    /// namespace.
    pub(crate) kubernetes: Box<[u32]>,
}

/// Positions in a tier's cluster-scoped policies, and in its policies of
/// the pod's namespace.
pub(crate) type TierSelection = (Box<[u32]>, Box<[u32]>);

/// Marks a selected position whose selector answered `Unknown`.
pub(crate) const SELECTED_UNKNOWN: u32 = 1 << 31;

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

#[derive(Debug, Clone, PartialEq)]
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

    /// Add or replace one policy (same kind, namespace and name). Parsing is
    /// the caller's (off the data path). A valid policy that replaces a
    /// valid one, or is new, updates only the policy lists it sits in;
    /// anything else (a policy turning invalid or back, a tier that does
    /// not exist) recompiles the whole index.
    pub fn upsert(&mut self, item: Result<Policy, InvalidPolicy>) {
        let item = match item {
            Ok(policy) => match self.upsert_in_place(policy) {
                Ok(()) => return,
                Err(policy) => Ok(*policy),
            },
            Err(invalid) => Err(invalid),
        };
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

    /// The incremental path of [`PolicyIndex::upsert`]; gives the policy
    /// back when the whole index must be recompiled instead.
    fn upsert_in_place(&mut self, policy: Policy) -> Result<(), Box<Policy>> {
        let new_placement = placement_of(&policy);
        let tier_ok = |p: &Placement,
                       defs: &FxHashMap<Arc<str>, TierDef>,
                       missing: &FxHashSet<Arc<str>>| match p {
            Placement::Kubernetes(_) => true,
            Placement::Tier { tier, .. } => defs.contains_key(tier) && !missing.contains(tier),
        };
        let r = policy.reference.clone();
        let same =
            |x: &PolicyRef| x.kind == r.kind && x.namespace == r.namespace && x.name == r.name;
        if !tier_ok(&new_placement, &self.defs, &self.missing_tiers)
            || self
                .invalid
                .iter()
                .any(|i| i.reference.as_deref().is_some_and(same))
            || (matches!(policy.stage, Stage::Staged(_)) && self.pending_set.is_none())
        {
            return Err(Box::new(policy));
        }
        let existing = self.policies.iter().position(|p| same(&p.reference));
        let old_placement = existing.map(|k| placement_of(&self.policies[k]));
        if old_placement
            .as_ref()
            .is_some_and(|p| !tier_ok(p, &self.defs, &self.missing_tiers))
        {
            return Err(Box::new(policy));
        }
        let stage = policy.stage;
        let k = match existing {
            Some(k) => {
                self.policies[k] = policy;
                k
            }
            None => {
                self.policies.push(policy);
                self.policies.len() - 1
            }
        };
        let entry = Entry::Valid(k as u32);
        let family = Family(family_of(r.kind), r.namespace.clone(), r.name.clone());
        match stage {
            Stage::Enforced => {
                self.enforced_set
                    .insert(family.clone(), (new_placement.clone(), entry));
            }
            Stage::Staged(action) => {
                self.staged_set.insert(
                    (r.kind, r.namespace.clone(), r.name.clone()),
                    (action, family.clone(), new_placement.clone(), entry),
                );
            }
        }
        // The pending set's entry for this family: the enforced one with
        // the staged ones of the family applied, in key order.
        if let Some(pending) = &mut self.pending_set {
            let mut value = self.enforced_set.get(&family).cloned();
            for (action, f, placement, e) in self.staged_set.values() {
                if *f == family {
                    value = match action {
                        StagedAction::Set => Some((placement.clone(), *e)),
                        StagedAction::Delete => None,
                    };
                }
            }
            match value {
                Some(v) => pending.insert(family, v),
                None => pending.remove(&family),
            };
        }
        let mut groups = vec![new_placement];
        if let Some(old) = old_placement
            && !groups.contains(&old)
        {
            groups.push(old);
        }
        for group in &groups {
            let rebuilt = rebuild_group(&mut self.enforced, &self.enforced_set, group)
                && match (&mut self.pending, &self.pending_set) {
                    (Some(view), Some(set)) => rebuild_group(view, set, group),
                    _ => true,
                };
            if !rebuilt {
                // A tier the views do not have yet: start over.
                self.compile();
                return Ok(());
            }
            if let Placement::Tier {
                tier,
                namespace: None,
                ..
            } = group
            {
                file_globals(&mut self.enforced, &self.policies, Some(tier));
                if let Some(view) = &mut self.pending {
                    file_globals(view, &self.policies, Some(tier));
                }
            }
        }
        self.staged_namespaces = self
            .staged_set
            .keys()
            .filter_map(|(_, ns, _)| ns.clone())
            .collect();
        self.staged_global = self.staged_set.keys().any(|(_, ns, _)| ns.is_none());
        self.calico_present |= matches!(self.policies[k].spec, PolicySpec::Calico(_));
        if let Ok(memo) = self.memo.get_mut() {
            memo.policies_changed();
        }
        for_each_net(&self.policies[k], |net| self.classes.add(net));
        if let PolicySpec::Calico(c) = &self.policies[k].spec {
            self.uses_source_ports |= c.uses_source_ports();
        }
        Ok(())
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
        self.memo = Mutex::default();
        self.classes = AddressClasses::default();
        for p in &self.policies {
            for_each_net(p, |net| self.classes.add(net));
        }
        self.uses_source_ports = self.policies.iter().any(|p| match &p.spec {
            PolicySpec::Calico(c) => c.uses_source_ports(),
            _ => false,
        });
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
        let mut staged: BTreeMap<StagedKey, (StagedAction, Family, Placement, Entry)> =
            BTreeMap::new();
        let mut placed: Vec<(Arc<PolicyRef>, Stage, Placement, Entry)> = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            let entry = Entry::Valid(i as u32);
            placed.push((p.reference.clone(), p.stage, placement_of(p), entry));
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
        let pending_set = (!staged.is_empty()).then(|| {
            let mut pending = enforced.clone();
            for (action, family, placement, entry) in staged.values() {
                match action {
                    StagedAction::Set => {
                        pending.insert(family.clone(), (placement.clone(), *entry));
                    }
                    StagedAction::Delete => {
                        pending.remove(family);
                    }
                }
            }
            pending
        });
        self.enforced = compile_view(&defs, &enforced);
        file_globals(&mut self.enforced, &self.policies, None);
        // The pending view differs from the enforced one only in the lists
        // staged policies touch: copy the enforced view and rebuild those.
        self.pending = pending_set.as_ref().map(|pending| {
            let mut view = self.enforced.clone();
            let mut groups: Vec<&Placement> = Vec::new();
            for (_, family, placement, _) in staged.values() {
                groups.push(placement);
                if let Some((target, _)) = enforced.get(family) {
                    groups.push(target);
                }
            }
            let mut done: Vec<&Placement> = Vec::new();
            for group in groups {
                if done.contains(&group) {
                    continue;
                }
                done.push(group);
                if !rebuild_group(&mut view, pending, group) {
                    // A tier only staged policies use: compile it whole.
                    return compile_view(&defs, pending);
                }
            }
            view
        });
        if let Some(view) = &mut self.pending {
            file_globals(view, &self.policies, None);
        }
        self.missing_tiers =
            defs.iter()
                .filter(|(name, d)| {
                    d.broken
                        && !self.tiers.iter().any(
                            |t| matches!(t, Err(InvalidTier { name: Some(n), .. }) if n == *name),
                        )
                })
                .map(|(name, _)| name.clone())
                .collect();
        self.defs = defs;
        self.enforced_set = enforced;
        self.staged_set = staged;
        self.pending_set = pending_set;
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

    /// The policies of each tier of a view that may select `pod`, memoised
    /// per identity and computed with `compute` on a miss.
    pub(crate) fn selection(
        &self,
        pending: bool,
        pod: &Arc<PodIdentity>,
        compute: impl FnOnce() -> Selection,
    ) -> Arc<Selection> {
        let view = usize::from(pending && self.pending.is_some());
        // A poisoned lock only loses the memo, never the answer.
        let Ok(mut memo) = self.memo.lock() else {
            return Arc::new(compute());
        };
        let id = memo.identity(pod);
        if let Some(found) = memo.selection(id, view) {
            return found;
        }
        let epoch = memo.epoch();
        drop(memo);
        let computed = Arc::new(compute());
        if let Ok(mut memo) = self.memo.lock()
            && memo.epoch() == epoch
        {
            memo.set_selection(id, view, computed.clone());
        }
        computed
    }

    /// The memoised evaluation of a pod-to-pod flow, cloned; or the key and
    /// epoch to store it under once evaluated.
    pub(crate) fn pair_lookup(
        &self,
        (source, destination): (&Arc<PodIdentity>, &Arc<PodIdentity>),
        key: PairFacts,
    ) -> Result<Evaluated, Option<(u64, PairKey)>> {
        let Ok(mut memo) = self.memo.lock() else {
            return Err(None);
        };
        let (source, source_class) = memo.identity_and_class(source, key.src_addr, &self.classes);
        let (destination, destination_class) =
            memo.identity_and_class(destination, key.dst_addr, &self.classes);
        let key = PairKey {
            source,
            destination,
            source_class,
            destination_class,
            protocol: key.protocol,
            dst_port: key.dst_port,
            src_port: if self.uses_source_ports {
                key.src_port
            } else {
                0
            },
            degraded: key.degraded,
            via_service: key.via_service,
        };
        match memo.pair(&key) {
            Some(found) => Ok(found.clone()),
            None => Err(Some((memo.epoch(), key))),
        }
    }

    pub(crate) fn pair_insert(&self, (epoch, key): (u64, PairKey), evaluated: &Evaluated) {
        // A poisoned lock only loses the memo, never the answer.
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert_pair(epoch, key, evaluated.clone());
        }
    }

    /// How many distinct identities explain has seen since the last
    /// rebuild (pods that agree on everything policy reads are one).
    pub fn interned_identities(&self) -> usize {
        self.memo.lock().map_or(0, |m| m.identity_count())
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

/// What the pair memo's key takes from a flow besides the two pods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairFacts {
    pub(crate) src_addr: std::net::IpAddr,
    pub(crate) dst_addr: std::net::IpAddr,
    pub(crate) protocol: u8,
    pub(crate) dst_port: u16,
    pub(crate) src_port: u16,
    pub(crate) degraded: bool,
    pub(crate) via_service: bool,
}

/// Every CIDR a policy's rules name (the addresses rules can tell apart).
fn for_each_net(policy: &Policy, mut f: impl FnMut(&ipnet::IpNet)) {
    match &policy.spec {
        PolicySpec::Kubernetes(k) => {
            for rule in [&k.ingress, &k.egress]
                .into_iter()
                .flatten()
                .flat_map(|r| r.iter())
            {
                for peer in rule.peers.iter().flat_map(|p| p.iter()) {
                    if let crate::kubernetes::Peer::IpBlock(block) = peer {
                        f(&block.cidr);
                        block.except.iter().for_each(&mut f);
                    }
                }
            }
        }
        PolicySpec::Admin(a) => {
            for rule in a.ingress.iter().chain(a.egress.iter()) {
                for peer in rule.peers.iter() {
                    if let crate::admin::AdminPeer::Networks(nets) = peer {
                        nets.iter().for_each(&mut f);
                    }
                }
            }
        }
        PolicySpec::Calico(c) => {
            for rule in [&c.ingress, &c.egress]
                .into_iter()
                .flatten()
                .flat_map(|r| r.iter())
            {
                for entity in [&rule.source, &rule.destination] {
                    entity
                        .nets
                        .iter()
                        .chain(entity.not_nets.iter())
                        .for_each(&mut f);
                }
            }
        }
    }
}

/// File the cluster-scoped policies of a view's tiers (of one tier when
/// `only` names it) by the labels their selectors require.
fn file_globals(view: &mut View, policies: &[Policy], only: Option<&str>) {
    for tier in view.tiers.iter_mut() {
        if only.is_none_or(|name| *tier.name == *name) {
            tier.candidates = Candidates::build(&tier.global, |i| &policies[i as usize]);
        }
    }
}

/// Where a valid policy sits.
fn placement_of(p: &Policy) -> Placement {
    let r = &p.reference;
    match &p.spec {
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
    }
}

fn sort_slots(slots: &mut [Slot]) {
    slots.sort_by(|a, b| {
        a.order
            .total_cmp(&b.order)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Recompute one policy list of a view (a namespace's NetworkPolicies, or
/// a tier's cluster-scoped or per-namespace policies) from the set. False
/// when the view has no such tier.
fn rebuild_group(
    view: &mut View,
    set: &BTreeMap<Family, (Placement, Entry)>,
    group: &Placement,
) -> bool {
    let empty: Arc<str> = Arc::from("");
    match group {
        Placement::Kubernetes(ns) => {
            let entries: Box<[Entry]> = set
                .range(Family(0, Some(ns.clone()), empty)..)
                .take_while(|(f, _)| f.0 == 0 && f.1.as_ref() == Some(ns))
                .filter(|(_, (p, _))| p == group)
                .map(|(_, (_, e))| *e)
                .collect();
            view.kubernetes.insert(ns.clone(), entries);
            true
        }
        Placement::Tier {
            tier, namespace, ..
        } => {
            let in_tier = |p: &Placement| matches!(p, Placement::Tier { tier: t, .. } if t == tier);
            let slot = |f: &Family, p: &Placement, e: &Entry| match p {
                Placement::Tier { order, .. } => Some(Slot {
                    order: *order,
                    name: f.2.clone(),
                    entry: *e,
                }),
                Placement::Kubernetes(_) => None,
            };
            let mut slots: Vec<Slot> = match namespace {
                Some(ns) => set
                    .range(Family(1, Some(ns.clone()), empty)..)
                    .take_while(|(f, _)| f.0 == 1 && f.1.as_ref() == Some(ns))
                    .filter(|(_, (p, _))| in_tier(p))
                    .filter_map(|(f, (p, e))| slot(f, p, e))
                    .collect(),
                // Cluster-scoped families are 2..=5, all without namespace.
                None => set
                    .range(Family(2, None, empty)..)
                    .filter(|(f, (p, _))| f.1.is_none() && in_tier(p))
                    .filter_map(|(f, (p, e))| slot(f, p, e))
                    .collect(),
            };
            sort_slots(&mut slots);
            let Some(t) = view.tiers.iter_mut().find(|t| &t.name == tier) else {
                return false;
            };
            match namespace {
                Some(ns) => {
                    t.namespaced.insert(ns.clone(), slots.into());
                }
                None => t.global = slots.into(),
            }
            true
        }
    }
}

fn compile_view(
    defs: &FxHashMap<Arc<str>, TierDef>,
    set: &BTreeMap<Family, (Placement, Entry)>,
) -> View {
    let mut kubernetes: FxHashMap<Arc<str>, Vec<Entry>> = FxHashMap::default();
    type Slots = (Vec<Slot>, FxHashMap<Arc<str>, Vec<Slot>>);
    let mut by_tier: FxHashMap<Arc<str>, Slots> = FxHashMap::default();
    // BTreeMap order is (family, namespace, name): Kubernetes policies of a
    // namespace come out ordered by name.
    for (Family(_, _, name), (placement, entry)) in set {
        match placement {
            Placement::Kubernetes(ns) => kubernetes.entry(ns.clone()).or_default().push(*entry),
            Placement::Tier {
                tier,
                order,
                namespace,
            } => {
                let (global, namespaced) = by_tier.entry(tier.clone()).or_default();
                let slot = Slot {
                    order: *order,
                    name: name.clone(),
                    entry: *entry,
                };
                match namespace {
                    None => global.push(slot),
                    Some(ns) => namespaced.entry(ns.clone()).or_default().push(slot),
                }
            }
        }
    }
    let sort = |slots: &mut Vec<Slot>| sort_slots(slots);
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
                candidates: Candidates::default(),
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
