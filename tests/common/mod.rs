//! What the randomised tests share.

use proptest::test_runner::{Config, RngSeed, TestRunner};

/// A proptest runner with a printed, replayable seed: `PROPTEST_SEED` fixes it,
/// `PROPTEST_CASES` sets the case count (default 1,000).
pub fn runner(what: &str) -> TestRunner {
    let seed = std::env::var("PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    println!("{what}: seed {seed}, {cases} cases; replay with PROPTEST_SEED={seed}");
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}
