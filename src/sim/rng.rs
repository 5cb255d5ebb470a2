//! A small seeded random number generator for fault injection.
//!
//! SplitMix64 (Steele, Lea and Flood; Vigna's reference `splitmix64.c`): one `u64` of
//! state, no OS randomness, no allocation, the same sequence on every target. It drives
//! the simulated network, where what matters is that a seed replays exactly, not
//! cryptographic strength.

/// A SplitMix64 generator. The same seed gives the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose state starts at `seed` (every seed is fine, zero included).
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float uniformly drawn from `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (`p <= 0` never, `p >= 1` always). Always draws once,
    /// so the sequence does not depend on `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A value drawn from `min..=max` (`min` when `max < min`). Uses the high half of a
    /// 128-bit product (Lemire's multiply-shift without the rejection step): the bias is
    /// below 2^-64 times the span, far under what a fault test can observe.
    pub fn between(&mut self, min: u64, max: u64) -> u64 {
        let Some(span) = max.checked_sub(min) else {
            return min;
        };
        let r = self.next_u64();
        match span.checked_add(1) {
            Some(n) => min + ((u128::from(r) * u128::from(n)) >> 64) as u64,
            None => r, // the full u64 range
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_sequence() {
        // First outputs of Vigna's splitmix64.c with the state starting at 0.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
        assert_eq!(rng.next_u64(), 0xf88b_b8a8_724c_81ec);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
            let v = rng.between(10, 20);
            assert!((10..=20).contains(&v));
        }
        assert_eq!(rng.between(5, 5), 5);
        assert_eq!(rng.between(9, 3), 9);
        let _ = rng.between(0, u64::MAX);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }

    #[test]
    fn between_reaches_both_ends() {
        let mut rng = Rng::new(1);
        let draws: Vec<u64> = (0..1_000).map(|_| rng.between(0, 3)).collect();
        for v in 0..=3 {
            assert!(draws.contains(&v), "{v} never drawn");
        }
    }
}
