//! Calico tiers and policies.
