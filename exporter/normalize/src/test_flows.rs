//! Flows for unit tests: the golden fixtures of `tests/fixtures/` and
//! variations of them the goldens do not cover, shared by the tests that
//! compare the streaming encoders with their reference implementations.

#[path = "../tests/fixtures/mod.rs"]
pub(crate) mod fixtures;

use std::collections::BTreeMap;
use std::sync::Arc;

use flowscribe_model::{
    Endpoint, EndpointKind, ExplainedFlow, Mismatch, Name, PodIdentity, ServiceRef, Stale, Workload,
};

/// The golden flows and variations of them that the goldens do not
/// cover: label keys that de-dot alike or reorder, text that needs JSON
/// escaping, every Beats workload kind, services, stale and networked
/// endpoints, no cluster, no trace, mismatches, invalid policies.
pub(crate) fn variations() -> Vec<(crate::Context, ExplainedFlow)> {
    let mut out = Vec::new();
    let ctx = fixtures::context();
    for case in fixtures::CASES {
        let base = fixtures::case(case);
        out.push((ctx.clone(), base.clone()));

        let mut no_cluster = ctx.clone();
        no_cluster.cluster = None;
        no_cluster.node = "node \"2\"\t\\".into();
        out.push((no_cluster, base.clone()));

        let mut untraced = base.clone();
        untraced.trace = None;
        out.push((ctx.clone(), untraced));

        if let Some(t) = &base.trace {
            let mut odd = base.clone();
            let t2 = odd.trace.as_mut().unwrap_or_else(|| unreachable!());
            t2.mismatch = Some(Mismatch::PolicyNotEnforced);
            t2.invalid_policies = t
                .enforced
                .ingress
                .hits
                .iter()
                .chain(t.enforced.egress.hits.iter())
                .map(|h| h.policy.clone())
                .collect();
            out.push((ctx.clone(), odd));
        }

        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Rollout",
        ] {
            let mut f = base.clone();
            for e in [&mut f.flow.source, &mut f.flow.destination] {
                restyle(e, kind);
            }
            out.push((ctx.clone(), f));
        }
    }
    out
}

fn restyle(e: &mut Endpoint, workload_kind: &str) {
    if let Some(p) = &mut e.pod {
        let p: &mut PodIdentity = Arc::make_mut(p);
        p.workload = Some(Workload {
            kind: workload_kind.into(),
            name: "w\u{1}\u{8}\u{c}é".into(),
        });
        let labels: BTreeMap<String, String> = [
            ("a.b", "dotted"),
            ("a_b", "underscored"),
            ("a/b", "slash"),
            ("a-b", "dash"),
            ("x\"y.z", "quote\n"),
            ("k8s.io/app", "v"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.labels = Arc::new(labels);
    } else {
        e.network = Some("corp \"vpn\"".into());
        e.service = Some(Arc::new(ServiceRef {
            name: "svc".into(),
            namespace: "ns".into(),
            port_name: Some("http".into()),
        }));
        e.kind = EndpointKind::Service;
    }
    e.stale = Some(Stale {
        deleted_at: fixtures::t(1),
    });
}

/// A small deterministic PRNG (xorshift64*), so that a failing sequence
/// can be replayed from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// An endless stream of flows for comparing a cached encoder with its
/// uncached writer: the [`variations`] with their endpoints and policies
/// swapped for ones from shared pools (so that flows share `Arc`s), for
/// fresh copies (equal text, new allocations), and for edited copies; pool
/// members are now and then replaced, dropping the pool's `Arc` so that
/// only a cache can still hold it while new objects are allocated.
pub(crate) struct RandomFlows {
    rng: Rng,
    bases: Vec<(crate::Context, ExplainedFlow)>,
    endpoints: Vec<Endpoint>,
    policies: Vec<Arc<flowscribe_model::PolicyRef>>,
    /// Replacements made so far (a counter for unique names).
    pub(crate) replaced: usize,
}

impl RandomFlows {
    pub(crate) fn new(seed: u64) -> RandomFlows {
        let bases = variations();
        let mut endpoints = Vec::new();
        let mut policies = Vec::new();
        for (_, f) in &bases {
            endpoints.push(f.flow.source.clone());
            endpoints.push(f.flow.destination.clone());
            if let Some(t) = &f.trace {
                for e in [Some(&t.enforced), t.pending.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    for h in e.egress.hits.iter().chain(e.ingress.hits.iter()) {
                        policies.push(h.policy.clone());
                    }
                }
            }
        }
        RandomFlows {
            rng: Rng::new(seed),
            bases,
            endpoints,
            policies,
            replaced: 0,
        }
    }

    /// A copy of `e` in new allocations, with its text edited when `edit`.
    fn fresh_endpoint(&mut self, e: &Endpoint, edit: bool) -> Endpoint {
        self.replaced += 1;
        let n = self.replaced;
        let text = |s: &str| -> Arc<str> {
            if edit {
                format!("{s}-{n}").into()
            } else {
                s.into()
            }
        };
        let mut e = e.clone();
        if let Some(p) = &e.pod {
            let mut p = PodIdentity::clone(p);
            p.name = text(&p.name);
            p.uid = text(&p.uid);
            p.labels = Arc::new(BTreeMap::clone(&p.labels));
            if edit {
                Arc::make_mut(&mut p.labels).insert(format!("gen.{n}"), format!("v\"{n}"));
            }
            p.service_account = p.service_account.as_deref().map(text);
            e.pod = Some(Arc::new(p));
        }
        // Node and network names are interned: equal text is one name, so
        // only an edit makes them new.
        e.node = e.node.map(|s| Name::new(&text(&s)));
        e.network = e.network.map(|s| Name::new(&text(&s)));
        if let Some(s) = e.service.take() {
            e.service = Some(Arc::new(ServiceRef {
                name: text(&s.name),
                namespace: s.namespace.clone(),
                port_name: s.port_name.as_deref().map(text),
            }));
        }
        e
    }

    fn fresh_policy(
        &mut self,
        p: &flowscribe_model::PolicyRef,
        edit: bool,
    ) -> Arc<flowscribe_model::PolicyRef> {
        self.replaced += 1;
        let mut p = p.clone();
        if edit {
            // A quote: the summary line, written per record, needs escaping.
            p.name = format!("{}-\"{}", p.name, self.replaced).into();
            p.resource_version = self.replaced.to_string().into();
            p.tier = format!("t\\{}", self.replaced).into();
        } else {
            p.name = p.name.to_string().into();
        }
        Arc::new(p)
    }

    fn pick_endpoint(&mut self) -> Endpoint {
        let i = self.rng.below(self.endpoints.len());
        let e = self.endpoints[i].clone();
        let e = match self.rng.below(20) {
            0 => self.fresh_endpoint(&e, false),
            1 => self.fresh_endpoint(&e, true),
            2 => {
                // Replace the pool's member: its old `Arc`s now live only
                // in flows already encoded (dropped) and in caches.
                let new = self.fresh_endpoint(&e, true);
                self.endpoints[i] = new.clone();
                new
            }
            _ => e,
        };
        // The same shared objects in another role: late (stale), or seen
        // as another kind (a Service's backend pod).
        let mut e = e;
        if self.rng.chance(10) {
            e.stale = match e.stale {
                Some(_) => None,
                None => Some(Stale {
                    deleted_at: fixtures::t(self.rng.next() % 100_000),
                }),
            };
        }
        if self.rng.chance(5) {
            e.kind = [
                EndpointKind::Pod,
                EndpointKind::Service,
                EndpointKind::HostNetworkPod,
                EndpointKind::PublicNetwork,
            ][self.rng.below(4)];
        }
        e
    }

    fn pick_policy(&mut self) -> Arc<flowscribe_model::PolicyRef> {
        let i = self.rng.below(self.policies.len());
        let p = self.policies[i].clone();
        match self.rng.below(20) {
            0 => self.fresh_policy(&p, false),
            1 => self.fresh_policy(&p, true),
            2 => {
                let new = self.fresh_policy(&p, true);
                self.policies[i] = new.clone();
                new
            }
            _ => p,
        }
    }

    pub(crate) fn next_flow(&mut self) -> (crate::Context, ExplainedFlow) {
        let (ctx, mut f) = self.bases[self.rng.below(self.bases.len())].clone();
        if self.rng.chance(90) {
            f.flow.source = self.pick_endpoint();
        }
        if self.rng.chance(90) {
            f.flow.destination = self.pick_endpoint();
        }
        let ff = &mut f.flow.flow;
        ff.key.src_port = self.rng.next() as u16;
        ff.forward.bytes = self.rng.next() >> self.rng.below(64);
        ff.reverse.packets = self.rng.next() >> 40;
        if self.rng.chance(5) {
            // Another day (the encoder keeps the last day's date).
            let days = std::time::Duration::from_secs(86_400 * (self.rng.next() % 3000));
            ff.window_end += days;
            ff.last_packet += days;
        }
        if let Some(t) = f.trace.take() {
            let mut t = t;
            fixtures::edit_hits(&mut t, |h| {
                if self.rng.chance(80) {
                    h.policy = self.pick_policy();
                }
                if self.rng.chance(10) {
                    h.rule_index = Some(self.rng.next() as u32);
                }
            });
            f.trace = Some(t);
        }
        (ctx, f)
    }
}

/// Records of a few long-lived connections, re-reported window after
/// window (for the connection templates of the cached encoders): most
/// records only move the window, the counters and the observed time on;
/// some change what a template holds constant (TCP flags, state, an
/// endpoint, the trace, the interface), some are a new connection
/// under a key already seen, and some a new connection between the same
/// peers (another source port and first packet).
pub(crate) struct Connections {
    flows: RandomFlows,
    rng: Rng,
    open: Vec<(crate::Context, ExplainedFlow)>,
    observed: std::time::SystemTime,
}

/// Runs 20,000 records of [`Connections::new`]`(seed)` through one encoder
/// per context (`make` with the context) and asserts each record equals
/// what `want` (the schema's plain writer) writes for it; returns the
/// encoders, for their counters.
pub(crate) fn encoders_equal_the_writer<E>(
    seed: u64,
    make: impl Fn(crate::Context) -> E,
    context: impl Fn(&E) -> &crate::Context,
    want: impl Fn(&crate::Context, &ExplainedFlow, std::time::SystemTime, &mut Vec<u8>),
    got: impl Fn(&mut E, &ExplainedFlow, std::time::SystemTime, &mut Vec<u8>),
) -> Vec<E> {
    let mut connections = Connections::new(seed);
    let mut encoders: Vec<E> = Vec::new();
    let (mut wanted, mut written) = (Vec::new(), Vec::new());
    for i in 0..20_000 {
        let (ctx, flow, observed) = connections.next_record();
        let at = match encoders.iter().position(|e| context(e) == &ctx) {
            Some(at) => at,
            None => {
                encoders.push(make(ctx.clone()));
                encoders.len() - 1
            }
        };
        wanted.clear();
        written.clear();
        want(&ctx, &flow, observed, &mut wanted);
        got(&mut encoders[at], &flow, observed, &mut written);
        assert!(
            wanted == written,
            "record {i} of seed {seed}:\nwant {}\ngot  {}",
            String::from_utf8_lossy(&wanted),
            String::from_utf8_lossy(&written)
        );
    }
    encoders
}

impl Connections {
    pub(crate) fn new(seed: u64) -> Connections {
        let mut flows = RandomFlows::new(seed);
        let open = (0..12).map(|_| flows.next_flow()).collect();
        Connections {
            flows,
            rng: Rng::new(seed ^ 0x5eed),
            open,
            observed: fixtures::observed(),
        }
    }

    /// The next record and its observed time.
    pub(crate) fn next_record(&mut self) -> (crate::Context, ExplainedFlow, std::time::SystemTime) {
        use std::time::Duration;
        let i = self.rng.below(self.open.len());
        let step = Duration::from_millis(1 + self.rng.next() % 20_000);
        let (ctx, f) = &mut self.open[i];
        let ff = &mut f.flow.flow;
        match self.rng.below(20) {
            0 => {
                // Something else under the same key.
                let key = ff.key;
                let (c, mut g) = self.flows.next_flow();
                g.flow.flow.key = key;
                *ctx = c;
                *f = g;
            }
            1 => ff.forward.tcp_flags ^= 1 << self.rng.below(8),
            2 => {
                ff.state = [
                    flowscribe_model::FlowState::Live,
                    flowscribe_model::FlowState::Completed,
                    flowscribe_model::FlowState::OneSided,
                    flowscribe_model::FlowState::Started,
                ][self.rng.below(4)];
            }
            3 => {
                let (_, g) = self.flows.next_flow();
                f.flow.destination = g.flow.destination;
            }
            4 => {
                let (_, g) = self.flows.next_flow();
                f.trace = g.trace;
            }
            5 => ff.interface.name = format!("if{}", self.rng.below(3)).into(),
            // Not a connection's own, but the record must still be right.
            6 => ff.first_packet += Duration::from_millis(1),
            // Another connection between the same peers (for ICMP: other
            // peers, the type is part of them).
            7 | 8 => {
                ff.key.src_port = self.rng.next() as u16;
                ff.first_packet = ff.window_end;
            }
            _ => {}
        }
        // The next window: everything per window moves on.
        let ff = &mut f.flow.flow;
        ff.window_start = ff.window_end;
        ff.window_end += step;
        ff.last_packet = ff.window_end - Duration::from_nanos(self.rng.next() % 1_000_000);
        ff.forward.bytes += self.rng.next() >> (24 + self.rng.below(40));
        ff.forward.packets += self.rng.next() % 1000;
        ff.reverse.bytes += self.rng.next() >> 20;
        ff.reverse.packets += self.rng.next() % 10_000;
        self.observed += step;
        (ctx.clone(), f.clone(), self.observed)
    }
}
