//! Which cluster-scoped policies of a tier a pod identity seen for the
//! first time must evaluate its selectors against.
//!
//! A cluster has hundreds of cluster-scoped policies (Admin, Baseline and
//! Cluster network policies, Calico GlobalNetworkPolicies) and a new
//! identity is selected by few of them. Most of their selectors require a
//! label value: a `matchLabels` entry or `In` expression, or a top-level
//! `key == 'value'` / `key in {…}` term of a Calico selector (a term of a
//! top-level `&&` is enough: when it is false, the whole selector is).
//! Such a policy is filed under that label and value, and an identity
//! evaluates only the policies filed under its own values, plus those with
//! no such term. The label is read through the same lookup the selector
//! uses (pod labels, namespace labels with the implied name label, or
//! Calico's endpoint and namespace labels), so skipping a policy is exactly
//! a selector that answers `No`.
//!
//! Built with the views (pure, no IO); read by `explain`'s selection.

use flowscribe_model::PodIdentity;
use rustc_hash::FxHashMap;

use crate::admin::AdminSubject;
use crate::calico::{endpoint_lookup, namespace_lookup};
use crate::calico_selector::Label;
use crate::index::{Entry, Slot};
use crate::matching::namespace_label;
use crate::policy::{Policy, PolicySpec};
use crate::selector::{LabelSelector, Requirement};

/// How a filed label is read from a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    /// The pod's own labels (Kubernetes selectors).
    Pod,
    /// The namespace's labels, with `kubernetes.io/metadata.name` implied.
    Namespace,
    /// The labels of a Calico workload endpoint (pod labels, then
    /// Calico's own, `pcns.`, `pcsa.`).
    CalicoEndpoint,
    /// The labels of a Calico namespace profile.
    CalicoNamespace,
}

/// A label a selector requires, with the values it accepts.
struct Required<'a> {
    space: Space,
    key: &'a str,
    values: Vec<&'a str>,
}

#[derive(Debug, Clone)]
struct FiledKey {
    space: Space,
    key: Box<str>,
    by_value: FxHashMap<Box<str>, Vec<u32>>,
    /// Every position filed under this key: the candidates when the
    /// label's value is unknown.
    all: Vec<u32>,
}

/// The cluster-scoped policies of a tier, filed by a label they require.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidates {
    /// Positions (in the tier's cluster-scoped slots) with no requirement
    /// that can be filed: always evaluated.
    always: Vec<u32>,
    keys: Vec<FiledKey>,
}

impl Candidates {
    /// File the slots; `valid` resolves a valid entry's policy. A policy
    /// whose selectors require several labels is filed under the one with
    /// the most distinct values among the tier's policies (the most
    /// selective, as far as the policies tell).
    pub(crate) fn build<'p>(slots: &[Slot], valid: impl Fn(u32) -> &'p Policy) -> Candidates {
        let terms: Vec<Vec<Required>> = slots
            .iter()
            .map(|slot| match slot.entry {
                Entry::Valid(i) => required_of(valid(i)),
                // What an invalid policy may select is decided by what
                // could be read of it: always a candidate.
                Entry::Invalid(_) => Vec::new(),
            })
            .collect();
        let mut distinct: FxHashMap<(Space, &str), rustc_hash::FxHashSet<&str>> =
            FxHashMap::default();
        for r in terms.iter().flatten() {
            distinct
                .entry((r.space, r.key))
                .or_default()
                .extend(r.values.iter().copied());
        }
        let spread = |r: &Required| distinct.get(&(r.space, r.key)).map_or(0, |d| d.len());
        let mut out = Candidates::default();
        for (position, policy_terms) in terms.iter().enumerate() {
            // Positions are u32 throughout the views.
            let position = position as u32;
            // The first of the most spread, so ties keep written order.
            let Some(required) = policy_terms.iter().rev().max_by_key(|r| spread(r)) else {
                out.always.push(position);
                continue;
            };
            let at = match out
                .keys
                .iter()
                .position(|k| k.space == required.space && &*k.key == required.key)
            {
                Some(at) => at,
                None => {
                    out.keys.push(FiledKey {
                        space: required.space,
                        key: required.key.into(),
                        by_value: FxHashMap::default(),
                        all: Vec::new(),
                    });
                    out.keys.len() - 1
                }
            };
            let filed = &mut out.keys[at];
            filed.all.push(position);
            for value in &required.values {
                let list = filed.by_value.entry((*value).into()).or_default();
                // `in {'a', 'a'}` names a value twice.
                if list.last() != Some(&position) {
                    list.push(position);
                }
            }
        }
        out
    }

    /// The positions whose selectors may select `pod`, ascending (a
    /// superset: each is still evaluated).
    pub(crate) fn for_pod(&self, pod: &PodIdentity) -> Vec<u32> {
        let mut out = self.always.clone();
        for filed in &self.keys {
            let value = match filed.space {
                Space::Pod => Label::from(pod.labels.get(&*filed.key).map(String::as_str)),
                Space::Namespace => Label::from(namespace_label(pod, &filed.key)),
                Space::CalicoEndpoint => endpoint_lookup(pod, &filed.key),
                Space::CalicoNamespace => namespace_lookup(pod, &filed.key),
            };
            match value {
                Label::Value(v) => {
                    if let Some(list) = filed.by_value.get(v) {
                        out.extend_from_slice(list);
                    }
                }
                // No value: every selector filed here answers No.
                Label::Absent => {}
                // A label whose value is unknown (a service account's):
                // every selector filed here must be evaluated.
                Label::Unknown => out.extend_from_slice(&filed.all),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl<'a> From<Option<&'a str>> for Label<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Label::Absent, Label::Value)
    }
}

/// The requirements of a Kubernetes selector that name values.
fn required_values(selector: &LabelSelector) -> impl Iterator<Item = (&str, Vec<&str>)> {
    selector.requirements().iter().filter_map(|r| match r {
        Requirement::Equals { key, value } => Some((key.as_str(), vec![value.as_str()])),
        Requirement::In { key, values } => {
            Some((key.as_str(), values.iter().map(String::as_str).collect()))
        }
        _ => None,
    })
}

/// The labels the policy's subject selectors require, each enough to
/// file it by.
fn required_of(policy: &Policy) -> Vec<Required<'_>> {
    let in_space = |space| move |(key, values)| Required { space, key, values };
    match &policy.spec {
        PolicySpec::Admin(a) => match &a.subject {
            AdminSubject::Namespaces(ns) => required_values(ns)
                .map(in_space(Space::Namespace))
                .collect(),
            AdminSubject::Pods { namespaces, pods } => required_values(pods)
                .map(in_space(Space::Pod))
                .chain(required_values(namespaces).map(in_space(Space::Namespace)))
                .collect(),
        },
        // A namespaced Calico policy selects only in its namespace, and
        // is never cluster-scoped; keep any such entry a candidate.
        PolicySpec::Calico(c) if policy.reference.namespace.is_none() => c
            .selector
            .required()
            .into_iter()
            .map(in_space(Space::CalicoEndpoint))
            .chain(
                c.namespace_selector
                    .iter()
                    .flat_map(|s| s.required())
                    .map(in_space(Space::CalicoNamespace)),
            )
            .collect(),
        PolicySpec::Calico(_) | PolicySpec::Kubernetes(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use flowscribe_model::PodIdentity;
    use serde_json::{Value, json};

    use crate::PolicyIndex;
    use crate::explain::slot_selects;
    use crate::matching::Tri;

    fn gnp(name: &str, selector: &str, namespace_selector: Option<&str>) -> Value {
        let mut spec = json!({"selector": selector, "ingress": [{"action": "Allow"}]});
        if let Some(ns) = namespace_selector {
            spec["namespaceSelector"] = json!(ns);
        }
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
               "metadata": {"name": name}, "spec": spec})
    }

    fn anp(name: &str, subject: Value) -> Value {
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
               "metadata": {"name": name},
               "spec": {"priority": 1, "subject": subject,
                        "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}})
    }

    fn pod(
        ns: &str,
        labels: &[(&str, &str)],
        ns_labels: &[(&str, &str)],
        sa: Option<&str>,
    ) -> Arc<PodIdentity> {
        let map = |l: &[(&str, &str)]| {
            Arc::new(
                l.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        Arc::new(PodIdentity {
            name: Arc::from("p"),
            uid: Arc::from("u"),
            namespace: Arc::from(ns),
            labels: map(labels),
            service_account: sa.map(Arc::from),
            node: None,
            workload: None,
            namespace_labels: map(ns_labels),
            ports: Arc::from(Vec::new()),
        })
    }

    /// Filing prunes only selectors that answer `No`: for every pod, the
    /// candidates that select it are exactly the slots that select it when
    /// all are evaluated; and it does prune.
    #[test]
    fn candidates_lose_no_selected_policy() {
        let objects = vec![
            gnp("web", "app == 'web'", None),
            gnp(
                "web-or-api-of-a",
                "app in {'web', 'api'} && pcns.team == 'a'",
                None,
            ),
            gnp("team-a", "pcns.team == 'a'", None),
            gnp("any-app-of-b", "has(app)", Some("team == 'b'")),
            gnp("b-by-in", "all()", Some("team in {'b', 'c'}")),
            gnp(
                "sa-label",
                "projectcalico.org/serviceaccount == 'sa1'",
                None,
            ),
            gnp("sa-profile", "pcsa.projectcalico.org/name == 'sa1'", None),
            gnp("sa-unknown", "pcsa.env == 'x' && app == 'web'", None),
            gnp("either", "app == 'web' || app == 'db'", None),
            gnp("nothing", "app in {} && has(app)", None),
            gnp("namespace-x", "projectcalico.org/namespace == 'x'", None),
            gnp(
                "implied-name",
                "pcns.kubernetes.io/metadata.name == 'y'",
                None,
            ),
            gnp("not-web", "app != 'web'", None),
            anp(
                "ns-team-a",
                json!({"namespaces": {"matchLabels": {"team": "a"}}}),
            ),
            anp(
                "ns-in",
                json!({"namespaces": {"matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["b", "c"]}]}}),
            ),
            anp(
                "ns-by-name",
                json!({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}),
            ),
            anp(
                "pods-web-in-a",
                json!({"pods": {"namespaceSelector": {"matchLabels": {"team": "a"}},
                                "podSelector": {"matchLabels": {"app": "web"}}}}),
            ),
            anp(
                "pods-any-in-b",
                json!({"pods": {"namespaceSelector": {"matchLabels": {"team": "b"}},
                                "podSelector": {"matchExpressions": [
                                    {"key": "app", "operator": "Exists"}]}}}),
            ),
            anp("everyone", json!({"namespaces": {}})),
        ];
        let (index, problems) = PolicyIndex::from_objects(&objects);
        assert!(problems.is_empty(), "{problems:?}");
        let pods = [
            pod("x", &[("app", "web")], &[("team", "a")], Some("sa1")),
            pod("x", &[("app", "api")], &[("team", "a")], None),
            pod("y", &[("app", "db")], &[("team", "b")], Some("sa2")),
            pod("y", &[], &[("team", "c")], None),
            // A pod label shadows Calico's inherited `pcns.` label.
            pod(
                "z",
                &[("pcns.team", "a"), ("app", "web")],
                &[("team", "b")],
                None,
            ),
            pod("z", &[("app", "web")], &[], Some("sa1")),
        ];
        let view = index.view(false);
        let mut pruned = 0;
        let mut selected = 0;
        for (n, pod) in pods.iter().enumerate() {
            for tier in view.tiers.iter() {
                let selects =
                    |p: u32| slot_selects(&index, tier.global[p as usize].entry, pod) != Tri::No;
                let every: Vec<u32> = (0..tier.global.len() as u32)
                    .filter(|p| selects(*p))
                    .collect();
                let candidates = tier.candidates.for_pod(pod);
                let fast: Vec<u32> = candidates.iter().copied().filter(|p| selects(*p)).collect();
                assert_eq!(fast, every, "pod {n}, tier {}", tier.name);
                pruned += tier.global.len() - candidates.len();
                selected += every.len();
            }
        }
        // 6 pods × 19 policies = 114 pairs: 54 select (or may), 53 are
        // never evaluated, 7 are evaluated and answer No.
        assert_eq!((selected, pruned), (54, 53));
    }
}
