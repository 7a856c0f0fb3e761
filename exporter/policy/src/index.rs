//! The compiled policy index that [`crate::explain`] reads: valid and
//! invalid policies, grouped by namespace, with the enforced set and the
//! pending set (staged policies applied) resolved once at build time.
//!
//! Built off the data path by whoever owns the policy watchers or the
//! manifests directory, then shared read-only. Building is pure; a rebuild
//! replaces the whole index (incremental updates come with the live
//! watchers).

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::policy::{InvalidPolicy, Policy, PolicyError, Stage, StagedAction, parse_policy};

/// A policy of a namespace's enforced or pending set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Index into [`PolicyIndex::policies`].
    Valid(u32),
    /// Index into [`PolicyIndex::invalid`].
    Invalid(u32),
}

#[derive(Debug, Default)]
pub(crate) struct NamespacePolicies {
    /// Enforced policies, ordered by name.
    pub(crate) enforced: Box<[Entry]>,
    /// The enforced set with this namespace's staged policies applied,
    /// ordered by name; `None` when the namespace has no staged policy.
    pub(crate) pending: Option<Box<[Entry]>>,
}

/// Policies compiled for [`crate::explain`].
#[derive(Debug, Default)]
pub struct PolicyIndex {
    policies: Vec<Policy>,
    invalid: Vec<InvalidPolicy>,
    namespaces: FxHashMap<Arc<str>, NamespacePolicies>,
}

impl PolicyIndex {
    /// Build from parsed policies, valid or not. When two enforced policies
    /// share a namespace and name (or two staged ones also share a kind),
    /// the later one wins.
    pub fn build(items: impl IntoIterator<Item = Result<Policy, InvalidPolicy>>) -> PolicyIndex {
        let mut index = PolicyIndex::default();
        // Per namespace: enforced by name, and staged by (kind, name) so that
        // applying them is deterministic whatever the input order.
        type Enforced = BTreeMap<Arc<str>, Entry>;
        type Staged = BTreeMap<(flowscribe_model::PolicyKind, Arc<str>), (StagedAction, Entry)>;
        let mut grouped: BTreeMap<Arc<str>, (Enforced, Staged)> = BTreeMap::new();
        for item in items {
            let (reference, stage, entry) = match item {
                Ok(p) => {
                    let entry = Entry::Valid(index.policies.len() as u32);
                    let r = p.reference.clone();
                    let stage = p.stage;
                    index.policies.push(p);
                    (r, stage, entry)
                }
                Err(inv) => {
                    let entry = Entry::Invalid(index.invalid.len() as u32);
                    let r = inv.reference.clone();
                    let stage = inv.stage;
                    index.invalid.push(inv);
                    // Without a name it cannot be placed; it is only reported.
                    let Some(r) = r else { continue };
                    (r, stage, entry)
                }
            };
            let Some(ns) = reference.namespace.clone() else {
                continue;
            };
            let (enforced, staged) = grouped.entry(ns).or_default();
            match stage {
                Stage::Enforced => {
                    enforced.insert(reference.name.clone(), entry);
                }
                Stage::Staged(action) => {
                    staged.insert((reference.kind, reference.name.clone()), (action, entry));
                }
            }
        }
        for (ns, (enforced, staged)) in grouped {
            let pending = (!staged.is_empty()).then(|| {
                let mut pending = enforced.clone();
                for ((_, name), (action, entry)) in staged {
                    match action {
                        StagedAction::Set => {
                            pending.insert(name, entry);
                        }
                        StagedAction::Delete => {
                            pending.remove(&name);
                        }
                    }
                }
                pending.into_values().collect()
            });
            index.namespaces.insert(
                ns,
                NamespacePolicies {
                    enforced: enforced.into_values().collect(),
                    pending,
                },
            );
        }
        index
    }

    /// Parse and build from JSON objects (a manifests directory, a list).
    /// Objects of other kinds are skipped; every invalid policy is returned
    /// once as a problem (and still flags the flows it may affect).
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
    ) -> (PolicyIndex, Vec<PolicyError>) {
        let index = PolicyIndex::build(objects.into_iter().filter_map(parse_policy));
        let problems = index.problems().cloned().collect();
        (index, problems)
    }

    /// Valid policies, enforced and staged, in input order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Invalid policies, in input order.
    pub fn invalid(&self) -> &[InvalidPolicy] {
        &self.invalid
    }

    /// Why each invalid policy is invalid.
    pub fn problems(&self) -> impl Iterator<Item = &PolicyError> {
        self.invalid.iter().map(|i| &*i.error)
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.invalid.is_empty()
    }

    pub(crate) fn namespace(&self, ns: &str) -> Option<&NamespacePolicies> {
        self.namespaces.get(ns)
    }

    pub(crate) fn valid(&self, i: u32) -> &Policy {
        &self.policies[i as usize]
    }

    pub(crate) fn invalid_at(&self, i: u32) -> &InvalidPolicy {
        &self.invalid[i as usize]
    }
}
