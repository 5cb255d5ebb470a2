//! The newcomer's demo (`cargo run --release --example session_timeout`) runs whole
//! here, so that a change that breaks a step it narrates fails the tests. The demo
//! checks each step itself (the events it waits for, the deadlines the replicas show)
//! and fails, saying which, when one does not happen; its waits are bounds on real
//! time, not measurements.

// The example's `main` and its one-replica-per-process form are not called here.
#[allow(dead_code)]
#[path = "../examples/session_timeout/main.rs"]
mod example;

use example::demo;

#[test]
fn the_session_timeout_demo_runs_every_step_it_narrates() {
    let mut out = Vec::new();
    let result = demo::run(&mut out);
    let text = String::from_utf8_lossy(&out);
    if let Err(e) = result {
        panic!("the demo failed: {e}\nits output so far:\n{text}");
    }
    for step in [
        "reset by activity",
        "WARNING",
        "ignored: activity ignored during WARN",
        "extended (extend no. 1",
        "crashes",
        "took over (term",
        "kept the deadline",
        "EXPIRED",
        "refused: the session has expired",
        "Every step happened",
    ] {
        assert!(text.contains(step), "no {step:?} in:\n{text}");
    }
}
