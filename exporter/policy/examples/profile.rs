//! The explain_scale bench's cluster (10,000 policies, 150,000 pods), run
//! once under a mode, for instruction counts that do not depend on the
//! machine's load (this VM is shared and noisy):
//!
//!     cargo build --release -p flowscribe-policy --example profile
//!     valgrind --tool=callgrind --toggle-collect='*PolicyIndex*from_objects*' \
//!         target/release/examples/profile rebuild
//!     valgrind --tool=callgrind --toggle-collect='*flowscribe_policy*explain*explain*' \
//!         target/release/examples/profile MODE
//!
//! Modes, each doing what the one before did and more: `rebuild` (parse
//! and compile the policies once); `prewarm` (also the 10,000 flows below
//! reversed, so every identity of their pods is interned and its selection
//! memoised); `new-pairs` (also the 10,000 flows: new identity pairs of
//! known identities); `repeated` (also the same 10,000 flows again: the
//! pair memo answers); `replicas` (also the same flows between other
//! replicas of the same Deployments: other pods and addresses, the same
//! identity pairs). The cost per flow of a new pair is (`new-pairs` −
//! `prewarm`) / 10,000 instructions; of a repeated pair, (`repeated` −
//! `new-pairs`) / 10,000; of a seen identity pair between other (known)
//! pods, (`replicas` − `replicas-prewarm`) / 10,000.
//!
//! A new identity: `cold-base` explains one flow from every pod of the
//! second half of the namespaces; `cold` also explains 10,000 flows, each
//! from the first pod of a Deployment of the first half (a new identity)
//! to a pod of the second half. (`cold` − `cold-base`) / 10,000 is the
//! cost of a flow with one new identity (its selection computed, for both
//! views where staged policies are).
#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "example")]
#![allow(
    dead_code,
    reason = "the shared generator has parts a mode does not use"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use flowscribe_model::{
    DirectionCounters, Endpoint, EndpointKind, EnrichedFlow, Flow, FlowKey, FlowState,
    HookDirection, InterfaceRef, Observed, Orientation, PodIdentity,
};
use flowscribe_policy::{PolicyIndex, explain};
use serde_json::{Value, json};

include!("../benches/support/flows.rs");
include!("../benches/support/scale_data.rs");

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let objects = policies();
    let (index, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty());
    if mode == "rebuild" {
        println!("{} policies", index.policies().len());
        return;
    }
    let pods = all_pods();
    if mode.starts_with("cold") {
        for f in &second_half_flows(&pods) {
            black_box(explain(&index, f, Observed::Delivered));
        }
        if mode == "cold" {
            for f in &new_identity_flows(&pods, 11) {
                black_box(explain(&index, f, Observed::Delivered));
            }
        }
        println!("{} identities", index.interned_identities());
        return;
    }
    let new_pairs = flows(&pods, 10_000, 9);
    // The same pods the other way round: their identities get interned
    // and their selections memoised, while each pair (source,
    // destination) stays new.
    let reversed = reversed_flows(&new_pairs);
    let rounds = match mode.as_str() {
        "prewarm" => 0,
        "new-pairs" => 1,
        "repeated" | "replicas-prewarm" | "replicas" => 2,
        other => {
            println!(
                "unknown mode {other:?}: rebuild, prewarm, new-pairs, repeated, replicas-prewarm, replicas, cold-base, cold"
            );
            return;
        }
    };
    for f in &reversed {
        black_box(explain(&index, f, Observed::Delivered));
    }
    for _ in 0..rounds {
        for f in &new_pairs {
            black_box(explain(&index, f, Observed::Delivered));
        }
    }
    if mode.starts_with("replicas") {
        // The replicas' pods seen before (in the other direction: other
        // identity pairs), as on a node in its steady state.
        let replicas = replica_flows(&pods, &new_pairs);
        for f in &reversed_flows(&replicas) {
            black_box(explain(&index, f, Observed::Delivered));
        }
        if mode == "replicas" {
            for f in &replicas {
                black_box(explain(&index, f, Observed::Delivered));
            }
        }
    }
    println!("{} identities", index.interned_identities());
}
