//! Exponential backoff with deterministic jitter, shared by the readers.

use std::time::Duration;

/// Exponential backoff: each pause is drawn from [d/2, d], then d doubles up to a ceiling.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// A backoff from `initial` to `max`, its jitter seeded by `seed` (the shard id, so that
    /// shards backing off together spread out).
    pub(crate) fn seeded(seed: &str, initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
            jitter: Jitter::seeded(seed),
        }
    }

    /// The next pause; the one after it is twice as long (up to the ceiling).
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.jitter.apply(self.current);
        self.current = (self.current * 2).min(self.max);
        pause
    }

    /// Back to the first pause after a success.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }

    /// `d` stretched by up to a fifth, so that retries at a fixed interval spread out.
    pub(crate) fn stretch(&mut self, d: Duration) -> Duration {
        d + self.jitter.apply(d / 5)
    }
}

/// Deterministic jitter: a pause drawn from [d/2, d] by xorshift.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn seeded(seed: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in seed.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(hash | 1)
    }

    fn apply(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let fraction = (self.0 % 1_000) as f64 / 1_000.0;
        d.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut j = Jitter::seeded("shardId-000000000001");
        let d = Duration::from_millis(1_000);
        for _ in 0..1_000 {
            let p = j.apply(d);
            assert!(p >= d / 2 && p <= d, "{p:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_the_ceiling_and_resets() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        let mut b = Backoff::seeded("s", initial, max);
        let ceilings = [100, 200, 400, 800, 1_000, 1_000];
        for ceiling in ceilings {
            let ceiling = Duration::from_millis(ceiling);
            let p = b.next_pause();
            assert!(p >= ceiling / 2 && p <= ceiling, "{p:?} for {ceiling:?}");
        }
        b.reset();
        assert!(b.next_pause() <= initial);
    }

    #[test]
    fn stretch_adds_at_most_a_fifth() {
        let mut b = Backoff::seeded("s", Duration::from_millis(1), Duration::from_millis(1));
        let d = Duration::from_secs(5);
        for _ in 0..100 {
            let p = b.stretch(d);
            assert!(p >= d && p <= d + d / 5, "{p:?}");
        }
    }
}
