//! Conversion from the kernel's `CLOCK_MONOTONIC` timestamps to wall time.

/// Maps monotonic nanoseconds to Unix nanoseconds. Re-sampled periodically so
/// that NTP adjustments of the wall clock are followed.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; the clocks used always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    /// Samples the offset between the two clocks now.
    pub fn sample() -> Self {
        // Bracket the wall-clock read with two monotonic reads and use their mean.
        let m0 = now(libc::CLOCK_MONOTONIC);
        let wall = now(libc::CLOCK_REALTIME);
        let m1 = now(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: wall - (m0 + m1) / 2,
        }
    }

    /// Unix nanoseconds for a `CLOCK_MONOTONIC` value.
    pub fn to_unix_ns(self, mono_ns: u64) -> i128 {
        i128::from(mono_ns) + self.offset_ns
    }

    /// Current `CLOCK_MONOTONIC` in nanoseconds.
    pub fn mono_now() -> u64 {
        u64::try_from(now(libc::CLOCK_MONOTONIC)).unwrap_or(0)
    }

    /// Current Unix time in nanoseconds.
    pub fn unix_now() -> i128 {
        now(libc::CLOCK_REALTIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_now_maps_to_wall_now() {
        let c = Clock::sample();
        let diff = c.to_unix_ns(Clock::mono_now()) - Clock::unix_now();
        assert!(diff.abs() < 50_000_000, "{diff} ns apart");
    }
}
