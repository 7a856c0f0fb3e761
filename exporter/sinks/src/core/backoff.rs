//! Retry delays for stage ⑤ (deliver): exponential backoff with full jitter,
//! and `Retry-After` parsing.
//!
//! A sink's retry loop asks [`Backoff::next_delay`] how long to wait after a
//! [`Action::Retry`](super::classify::Action::Retry). When the classification
//! says to honour the server's hint and the response carried one
//! ([`parse_retry_after`], or a gRPC `RetryInfo` the sink converts), that
//! hint replaces the jittered delay, capped so a hostile or broken server
//! cannot park a sink for a day.
//!
//! Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
//! `delay = uniform(0, min(max, initial * multiplier^attempt))`. It spreads
//! the retries of many nodes that failed at the same moment, which a plain
//! exponential schedule would synchronise into waves.
//!
//! This module must not sleep, read clocks or keep a retry limit: time is
//! passed in, and there is deliberately no "give up after N attempts" —
//! in compliance mode data is only shed by the queue's documented policy.

use std::time::{Duration, SystemTime};

/// Backoff settings. Defaults follow the reliability note's B3 scenario:
/// base 1 s, cap 60 s, doubling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Upper bound of the first delay.
    pub initial: Duration,
    /// Upper bound of every delay.
    pub max: Duration,
    /// Growth of the upper bound per attempt; values below 1 are treated as 1.
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

/// SplitMix64: a tiny, seedable generator. Jitter needs spread, not
/// cryptographic quality, and a seed makes tests deterministic.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` from the top 53 bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The retry schedule of one sink (or one in-flight request).
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A schedule whose jitter is fully determined by `seed` (tests, replay).
    pub fn with_seed(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    /// A schedule seeded from the process's random hasher keys, so nodes
    /// and sinks started together do not retry in lockstep.
    pub fn new(config: BackoffConfig) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x666c_6f77_7363_7269);
        Self::with_seed(config, h.finish())
    }

    /// How many delays were handed out since the last [`reset`](Self::reset).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the delay for the current attempt.
    pub fn current_ceiling(&self) -> Duration {
        let mult = self.config.multiplier.max(1.0);
        let max = self.config.max.as_secs_f64();
        // powi saturates to inf for large attempts; min() brings it back.
        let ceiling = self.config.initial.as_secs_f64()
            * mult.powi(i32::try_from(self.attempt).unwrap_or(i32::MAX));
        Duration::from_secs_f64(ceiling.min(max).max(0.0))
    }

    /// The next jittered delay, uniform in `[0, ceiling]`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current_ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(self.rng.next_unit())
    }

    /// The next delay when the server may have said how long to wait: a
    /// `Some` hint replaces the jittered delay (still advancing the
    /// attempt, so a later hint-less retry keeps growing).
    pub fn next_delay_with_hint(&mut self, hint: Option<Duration>) -> Duration {
        let jittered = self.next_delay();
        hint.unwrap_or(jittered)
    }

    /// Back to the first attempt: call after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Parse a `Retry-After` header value (RFC 9110 §10.2.3): either
/// delta-seconds or an HTTP-date. Dates in the past mean "now" (zero).
/// The result is capped at `cap`. Returns `None` for values that are
/// neither, so the caller falls back to the jittered delay.
pub fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Any run of digits is valid delta-seconds; one too long for u64
        // is simply "longer than the cap".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(cap));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(initial_ms: u64, max_ms: u64, multiplier: f64) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            multiplier,
        }
    }

    #[test]
    fn ceilings_grow_geometrically_and_stop_at_max() {
        let mut b = Backoff::with_seed(cfg(100, 1_000, 2.0), 1);
        let mut ceilings = Vec::new();
        for _ in 0..7 {
            ceilings.push(b.current_ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.current_ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn every_delay_is_within_zero_and_its_ceiling() {
        let mut b = Backoff::with_seed(cfg(50, 3_000, 1.5), 42);
        for _ in 0..1_000 {
            let ceiling = b.current_ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
        }
        // Saturated attempts stay sane.
        for _ in 0..100_000 {
            b.next_delay();
        }
        assert_eq!(b.current_ceiling(), Duration::from_millis(3_000));
    }

    #[test]
    fn same_seed_same_schedule_different_seed_different_schedule() {
        let run = |seed| {
            let mut b = Backoff::with_seed(BackoffConfig::default(), seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        // Full jitter, not "ceiling plus a little": the mean of many draws
        // at a fixed ceiling is about half of it.
        let mut b = Backoff::with_seed(cfg(1_000, 1_000, 1.0), 3);
        let n = 10_000;
        let total: f64 = (0..n).map(|_| b.next_delay().as_secs_f64()).sum();
        let mean = total / f64::from(n);
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn multiplier_below_one_does_not_shrink() {
        let mut b = Backoff::with_seed(cfg(100, 1_000, 0.5), 1);
        b.next_delay();
        b.next_delay();
        assert_eq!(b.current_ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn a_hint_overrides_the_jittered_delay_and_still_advances() {
        let mut b = Backoff::with_seed(cfg(100, 10_000, 2.0), 9);
        let hint = Duration::from_secs(7);
        assert_eq!(b.next_delay_with_hint(Some(hint)), hint);
        assert_eq!(b.attempt(), 1);
        assert!(b.next_delay_with_hint(None) <= Duration::from_millis(200));
    }

    #[test]
    fn retry_after_table() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cap = Duration::from_secs(300);
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("120", Some(120)),
            (" 30 ", Some(30)),
            ("301", Some(300)),
            ("99999999999999999999999999", Some(300)),
            ("Sun, 06 Nov 1994 08:50:37 GMT", Some(60)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(0)),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(0)),
            ("Mon, 07 Nov 1994 08:49:37 GMT", Some(300)),
            // The obsolete RFC 850 and asctime forms are also valid HTTP-dates.
            ("Sunday, 06-Nov-94 08:49:47 GMT", Some(10)),
            ("Sun Nov  6 08:49:57 1994", Some(20)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value, now, cap),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }
}
