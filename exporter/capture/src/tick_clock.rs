//! Calibration of the clock the classifiers stamp existing flows with.
//!
//! Per packet the programs read jiffies (`bpf_jiffies64()`, which the
//! verifier inlines into one load; a clock helper call costs about 17 ns per
//! packet under real traffic) and turn them into boot-clock ns with two
//! CONFIG values: `boot_ns = jiffies * tick_ns + jiffies_to_boot_ns`
//! (wrapping). The kernel's HZ, and so `tick_ns`, is not visible to
//! userspace, so it is measured: `fs_clock_probe` (run with
//! BPF_PROG_TEST_RUN) returns a (jiffies, boot ns) pair, and two pairs some
//! ticks apart give the tick length, snapped to the length of a real HZ.
//! The offset is the smallest `boot_ns - jiffies * tick_ns` seen, i.e. the
//! start of a tick, so stamps are never later than the packet (like the
//! coarse clock, they are up to one tick early). A jump of more than two
//! ticks (a suspend moves boot time away from jiffies) replaces it only when
//! samples a tick apart agree: one late tick interrupt (a stolen virtual
//! CPU) looks the same for a moment and must not make stamps late.
//!
//! Pure: the caller runs the probe and writes CONFIG. No IO here.

/// One reading of `fs_clock_probe`: jiffies, then the boot clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    pub jiffies: u64,
    pub boot_ns: u64,
}

/// CONFIG_HZ values the measured tick snaps to: what x86-64 and arm64 offer
/// (100, 250, 300, 1000) and the other round values some architectures use.
/// Odd values of 32-bit boards (24, 128, 256, 1024 ...) are left out on
/// purpose: 256 is within the measurement error of 250. A kernel whose HZ is
/// not here fails calibration with an error instead of being mis-timed.
const HZ_CHOICES: [u64; 6] = [100, 200, 250, 300, 500, 1000];

/// Jiffies the two calibration samples must be apart: with a reading
/// uncertain by one jiffy this bounds the error to 4 %, well under the 17 %
/// between the two closest choices that matter (250 and 300).
pub const MIN_CALIBRATION_JIFFIES: u64 = 25;

/// The tick length in ns from two samples, snapped to a real HZ; None when
/// they are too close together or match no HZ within 10 %.
pub fn tick_ns_from(first: ClockSample, later: ClockSample) -> Option<u32> {
    let jiffies = later.jiffies.checked_sub(first.jiffies)?;
    let ns = later.boot_ns.checked_sub(first.boot_ns)?;
    if jiffies < MIN_CALIBRATION_JIFFIES {
        return None;
    }
    let measured = ns as f64 / jiffies as f64;
    HZ_CHOICES
        .iter()
        .map(|hz| 1_000_000_000 / hz)
        .min_by(|a, b| {
            let da = (*a as f64 - measured).abs();
            let db = (*b as f64 - measured).abs();
            da.total_cmp(&db)
        })
        .filter(|tick| (*tick as f64 - measured).abs() <= 0.1 * *tick as f64)
        .map(|tick| tick as u32)
}

/// The jiffies -> boot ns offset one sample implies (wrapping: jiffies
/// start near 2^32 ticks, far ahead of boot time).
pub fn offset_of(sample: ClockSample, tick_ns: u32) -> u64 {
    sample
        .boot_ns
        .wrapping_sub(sample.jiffies.wrapping_mul(u64::from(tick_ns)))
}

/// The offset to keep after new samples: the earliest tick phase seen, or,
/// when every sample puts boot time more than two ticks further from
/// jiffies than `current`, the earliest of theirs (a suspend moved boot time
/// and the old offset is stale). One sample is not enough to move it up:
/// jiffies lag behind the boot clock while a tick interrupt is late (a
/// stolen virtual CPU), and a raised offset would stamp packets after they
/// were seen. The caller confirms a raise with samples a tick apart
/// ([`raise_needs_confirmation`]).
pub fn refine_offset(current: u64, samples: &[ClockSample], tick_ns: u32) -> u64 {
    let Some(min_delta) = samples.iter().map(|s| delta(current, *s, tick_ns)).min() else {
        return current;
    };
    if min_delta < 0 || min_delta > 2 * i64::from(tick_ns) {
        current.wrapping_add(min_delta as u64)
    } else {
        current
    }
}

/// Whether `sample` alone would move the offset up: the caller takes more
/// samples, a tick apart, before believing it (see [`refine_offset`]).
pub fn raise_needs_confirmation(current: u64, sample: ClockSample, tick_ns: u32) -> bool {
    delta(current, sample, tick_ns) > 2 * i64::from(tick_ns)
}

/// The offset `sample` implies, as a signed distance from `current` in
/// the wrapping space of the offsets.
fn delta(current: u64, sample: ClockSample, tick_ns: u32) -> i64 {
    offset_of(sample, tick_ns).wrapping_sub(current) as i64
}

/// Boot ns of a jiffies value as the programs compute it.
pub fn stamp_ns(jiffies: u64, tick_ns: u32, offset: u64) -> u64 {
    jiffies
        .wrapping_mul(u64::from(tick_ns))
        .wrapping_add(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples of a kernel with `hz` whose jiffies were `j0` at boot ns
    /// `b0`, taken `after_ns` later and `phase_ns` into a tick.
    fn sample(hz: u64, j0: u64, b0: u64, after_ns: u64, phase_ns: u64) -> ClockSample {
        let tick = 1_000_000_000 / hz;
        let t = after_ns - after_ns % tick;
        ClockSample {
            jiffies: j0 + t / tick,
            boot_ns: b0 + t + phase_ns,
        }
    }

    #[test]
    fn tick_length_snaps_to_the_kernels_hz() {
        // (hz, ms between the samples, phases of the two samples in ns)
        let cases = [
            (250, 100, (0, 3_999_999)),
            (250, 100, (3_999_999, 0)),
            (300, 100, (0, 3_333_000)),
            (1000, 25, (999_999, 0)),
            (100, 250, (0, 9_999_999)),
            (1000, 1000, (0, 0)),
        ];
        for (hz, ms, (p0, p1)) in cases {
            let j0 = 4_294_892_296; // INITIAL_JIFFIES at HZ=250, plus some
            let a = sample(hz, j0, 5_000_000_000, 0, p0);
            let b = sample(hz, j0, 5_000_000_000, ms * 1_000_000, p1);
            assert_eq!(
                tick_ns_from(a, b),
                Some((1_000_000_000 / hz) as u32),
                "hz {hz}, {ms} ms apart, phases {p0}/{p1}"
            );
        }
    }

    #[test]
    fn too_close_or_backwards_samples_give_no_tick() {
        let a = ClockSample {
            jiffies: 1000,
            boot_ns: 1_000_000_000,
        };
        let close = ClockSample {
            jiffies: 1000 + MIN_CALIBRATION_JIFFIES - 1,
            boot_ns: 1_096_000_000,
        };
        assert_eq!(tick_ns_from(a, close), None);
        assert_eq!(tick_ns_from(close, a), None);
        // 7 ms per jiffy matches no HZ within 10 %.
        let odd = ClockSample {
            jiffies: 1100,
            boot_ns: 1_700_000_000,
        };
        assert_eq!(tick_ns_from(a, odd), None);
    }

    #[test]
    fn stamps_are_tick_starts_in_boot_time() {
        let tick = 4_000_000u32;
        let j0 = 4_294_892_296u64;
        // Boot ns at the start of jiffy j0: 7 s.
        let start = 7_000_000_000u64;
        let late = ClockSample {
            jiffies: j0,
            boot_ns: start + 3_000_000,
        };
        let early = ClockSample {
            jiffies: j0 + 10,
            boot_ns: start + 40_000_000 + 500,
        };
        let mut offset = offset_of(late, tick);
        offset = refine_offset(offset, &[early], tick);
        // The earliest phase wins: stamps are at most 500 ns after the tick
        // start and never after the true time of a sample.
        assert_eq!(stamp_ns(j0 + 10, tick, offset), start + 40_000_000 + 500);
        assert_eq!(stamp_ns(j0, tick, offset), start + 500);
        // A later, worse sample keeps the offset.
        assert_eq!(refine_offset(offset, &[late], tick), offset);
        assert_eq!(refine_offset(offset, &[], tick), offset);
    }

    #[test]
    fn a_suspend_moves_the_offset() {
        let tick = 4_000_000u32;
        let before = ClockSample {
            jiffies: 5000,
            boot_ns: 20_000_000_000,
        };
        let offset = offset_of(before, tick);
        // 60 s asleep: boot time ran on, jiffies did not.
        let after = ClockSample {
            jiffies: 5250,
            boot_ns: 20_000_000_000 + 1_000_000_000 + 60_000_000_000,
        };
        assert!(raise_needs_confirmation(offset, after, tick));
        // Confirmed a tick later (and one of the two sampled late in its
        // tick): the earliest phase of the two.
        let next = ClockSample {
            jiffies: 5251,
            boot_ns: after.boot_ns + 4_000_000 + 700_000,
        };
        let moved = refine_offset(offset, &[after, next], tick);
        assert_eq!(stamp_ns(5250, tick, moved), after.boot_ns);
    }

    /// A tick interrupt that came late (the virtual CPU was not running)
    /// leaves jiffies behind the boot clock for a while. One such sample
    /// must not move stamps later; a sample a tick after it that is back
    /// in phase keeps the offset where it was.
    #[test]
    fn a_late_tick_does_not_move_the_offset() {
        let tick = 1_000_000u32;
        let good = ClockSample {
            jiffies: 90_000,
            boot_ns: 90_000_000_000 + 100,
        };
        let offset = offset_of(good, tick);
        // Three ticks late: jiffies still say 91_000 at 91_003_400_000.
        let lagging = ClockSample {
            jiffies: 91_000,
            boot_ns: 91_000_000_000 + 3_400_000,
        };
        assert!(raise_needs_confirmation(offset, lagging, tick));
        let caught_up = ClockSample {
            jiffies: 91_005,
            boot_ns: 91_005_000_000 + 200,
        };
        assert!(!raise_needs_confirmation(offset, caught_up, tick));
        assert_eq!(refine_offset(offset, &[lagging, caught_up], tick), offset);
        // Lags of up to two ticks are kept out by the same rule on a
        // single sample.
        let slightly = ClockSample {
            jiffies: 92_000,
            boot_ns: 92_000_000_000 + 1_900_000,
        };
        assert!(!raise_needs_confirmation(offset, slightly, tick));
        assert_eq!(refine_offset(offset, &[slightly], tick), offset);
    }
}
