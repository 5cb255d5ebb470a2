//! # replisync-session
//!
//! A session idle-timeout service, kept in step across replicas (browser tabs,
//! processes, hosts) by [replisync]: the library's first consumer.
//!
//! A session is `IDLE` for a grace period after the last activity, then a countdown
//! runs (`COUNTDOWN`), warns near its end (`WARN`) and runs out (`EXPIRED`). Activity
//! anywhere resets it everywhere; extend, expire, pause, resume and a config change
//! made anywhere apply everywhere.
//!
//! ## How it is built
//!
//! - The shared state, [`SessionState`], is a bundle of last-writer-wins registers
//!   holding **absolute deadlines** (idle start, countdown end, paused at and time
//!   left, the phase as last written) and the [`SessionConfig`]. Every replica computes
//!   its own phase and time left from them ([`SessionState::view`], a pure function of
//!   the state and the time), so a replica whose timers ran late, that was frozen, or
//!   that joined mid-countdown shows the same deadline as the others.
//! - Each [`Operation`] is decided on the state ([`Operation::check`]) and turned into
//!   one write ([`Operation::apply`], the body of `replica.write(now, |s, d, w| ...)`).
//!   It is also the replica's request type: in leader mode a follower's operation goes
//!   to the leader as a request.
//! - In leader mode the leader runs the timers: it records each phase transition as it
//!   falls due ([`SessionState::write_transition`]); a successor after a handover finds
//!   the same deadlines and carries on. In distributed mode every replica writes, and
//!   concurrent activity and extends converge by stamp order.
//! - [`SessionWatch`] derives the [`SessionEvent`]s by comparing what a replica saw
//!   before and after an input or a phase boundary.
//! - [`Session`] puts it all on a sans-IO [`replisync::Replica`], and is a
//!   [`replisync::Machine`] itself: the native driver runs it as it runs a bare
//!   replica (`Driver::new(session, transport)`), with the operations through
//!   `Handle::call` and its events as [`Notice`]s (the `session_timeout` example
//!   shows how).
//!
//! Everything here is pure: no threads, no clocks (time comes in as a
//! [`replisync::Now`]; deadlines use its wall-clock part, the time every replica shares),
//! no I/O. It builds for `wasm32-unknown-unknown`, where the browser form of the service
//! reuses it.
//!
//! ## In browser tabs
//!
//! The browser form is the `replisync-session-web` crate (`session/web/`): the same
//! pieces over the web transport's driver, a JavaScript API (`openSession`) and a page
//! that shows the phase, the live countdown, the role and the term, with a button for
//! each operation. `session/web/build-page` builds the page into `session/web/dist/`;
//! serve that folder on `127.0.0.1` and open it in two tabs (its `README.md` has the
//! details).
//!
//! ```
//! use replisync::{Config, Now, SourceId};
//! use replisync_session::{Phase, Session, SessionConfig};
//!
//! let mut session = Session::new(Config::distributed(), SourceId::from_u128(1))?;
//! let now = Now::new(1_700_000_000_000, 0);
//! let mut config = SessionConfig::default();
//! config.idle_grace_ms = 60_000;
//! config.countdown_ms = 600_000;
//! config.warn_before_ms = 60_000;
//! session.set_config(now, config)?;
//! session.start(now)?;
//!
//! let later = now.after(60_000 + 540_000);
//! session.handle_timeout(later);
//! let view = session.view(later);
//! assert_eq!(view.phase, Phase::Warn);
//! assert_eq!(view.remaining_ms, Some(60_000));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The `session_timeout` example
//!
//! `cargo run --release --example session_timeout`, with no arguments, is the narrated
//! demo: three replicas in one process on the in-process hub. With arguments it runs
//! **one replica per process** on the file transport (`replisync-files`), the group
//! being a directory that every process opens:
//!
//! ```text
//! session_timeout --dir DIR --id NAME [--mode leader|distributed]
//!                 [--idle-grace-ms N] [--countdown-ms N] [--warn-before-ms N]
//! ```
//!
//! - `--id NAME`, 1 to 16 of `A-Z a-z 0-9 . _ -`, is the replica: its `SourceId` is the
//!   name's bytes, big-endian in the 128 bits and padded with zeros. A process restarted
//!   with the same name is the same replica, and every process can name any other.
//! - `--mode leader` (the default) uses the directory's `flock` lease authority: exactly
//!   one process leads and runs the timers; after its `kill -9` the OS frees its lock and
//!   another takes over with a higher term, without moving a deadline. `--mode
//!   distributed`: every process writes, and concurrent writes converge by stamp order.
//! - A process that finds no session running starts one with the durations of its
//!   command line (the service's defaults otherwise); one that finds a session joins it
//!   and shows its deadlines as they are.
//! - Commands on stdin, one a line: `activity`, `extend`, `expire`, `pause`, `resume`,
//!   `start`, `stop`, `config KEY=VALUE ...` (the [`SessionConfig`] fields), `status`,
//!   `quit` (also the end of input). Output: one JSON object a line, for every event
//!   (`started`, `reset`, `countdown`, `warn`, `expired`, `extended`, `paused`,
//!   `resumed`, `stopped`, `leader_gained`, `leader_lost`, `config_changed`, `refused`)
//!   and every `status`, each with `id`, `event`, `phase`, `role` (`leader`, `follower`;
//!   `peer` in distributed mode), `leader` (a name or null), `term`, `remaining_ms`,
//!   `countdown_end_at`, `idle_start_at` (ms since the Unix epoch), `paused`, `extends`
//!   and `at`. An unknown command or a bad value prints a line with an `error` field and
//!   changes nothing; so does an operation the service refuses (`"event": "refused"`).
//!   Bad arguments: a message on stderr and exit code 2.
//!
//! Two terminals on one directory; `bob`'s activity resets `alice`, the leader (lines
//! cut after `idle_start_at`):
//!
//! ```text
//! $ session_timeout --dir /tmp/s --id alice --idle-grace-ms 1000 --countdown-ms 60000 --warn-before-ms 10000
//! {"id":"alice","event":"leader_gained","phase":"STOPPED","role":"leader","leader":"alice","term":1,"remaining_ms":null,"countdown_end_at":null,"idle_start_at":null, ...}
//! {"id":"alice","event":"started","phase":"IDLE","role":"leader","leader":"alice","term":1,"remaining_ms":60999,"countdown_end_at":1796074011711,"idle_start_at":1796073950711, ...}
//! {"id":"alice","event":"reset","phase":"IDLE","role":"leader","leader":"alice","term":1,"remaining_ms":61000,"countdown_end_at":1796074012410,"idle_start_at":1796073951410, ...,"cause":"activity"}
//! {"id":"alice","event":"countdown","phase":"COUNTDOWN","role":"leader","leader":"alice","term":1,"remaining_ms":60000,"countdown_end_at":1796074012410,"idle_start_at":1796073951410, ...}
//!
//! $ session_timeout --dir /tmp/s --id bob
//! {"id":"bob","event":"started","phase":"IDLE","role":"follower","leader":"alice","term":1,"remaining_ms":60801,"countdown_end_at":1796074011711,"idle_start_at":1796073950711, ...}
//! activity
//! {"id":"bob","event":"reset","phase":"IDLE","role":"follower","leader":"alice","term":1,"remaining_ms":60999,"countdown_end_at":1796074012410,"idle_start_at":1796073951410, ...,"cause":"activity"}
//! config countdown_ms=soon
//! {"id":"bob","event":"error","phase":"IDLE", ...,"error":"countdown_ms needs a whole number of milliseconds, not \"soon\"","input":"config countdown_ms=soon"}
//! ```
//!
//! Both forms share the glue between the service and the native driver
//! (`examples/session_timeout/glue.rs`). `tests/processes.rs` runs the second form as
//! real processes: activity in a follower resets all three, `kill -9` of the leader
//! keeps the deadlines and a successor leads with a higher term, a process started
//! mid-countdown shows the same deadline, distributed mode converges after concurrent
//! activity, and bad input changes nothing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod operation;
mod session;
mod state;
mod watch;

pub use config::{ConfigError, SessionConfig, MAX_DURATION_MS};
pub use operation::{Operation, Refusal};
pub use session::{Notice, Outcome, Session, SessionError};
pub use state::{Cause, Phase, SessionState, View};
pub use watch::{ResetCause, SessionEvent, SessionWatch};

#[cfg(test)]
mod test_support {
    use replisync::{Hlc, Merge, Now, SourceId};

    use crate::{Operation, Refusal, SessionConfig, SessionState};

    pub const EPOCH: u64 = 1_700_000_000_000;

    /// `t` ms after the epoch of the tests, on both clocks.
    pub fn at(t: u64) -> Now {
        Now::new(EPOCH + t, t)
    }

    pub fn config(idle_grace_ms: u64, countdown_ms: u64, warn_before_ms: u64) -> SessionConfig {
        SessionConfig {
            idle_grace_ms,
            countdown_ms,
            warn_before_ms,
            ..SessionConfig::default()
        }
        .validated()
        .unwrap()
    }

    /// Applies `op` at `t` as one replica would: decide, write, merge.
    pub fn apply(state: &mut SessionState, op: Operation, t: u64) -> Result<(), Refusal> {
        let mut hlc = Hlc::default();
        hlc.restore(state.record_stamp().updated_at);
        let mut w = hlc.writer(SourceId::from_u128(1), at(t).wall_ms);
        let mut delta = SessionState::default();
        op.apply(state, at(t), &mut delta, &mut w)?;
        if delta == SessionState::default() {
            // A refusal writes nothing; an accepted operation always writes.
            panic!("{op:?} was accepted but wrote nothing");
        }
        assert!(state.merge(&delta).changed());
        Ok(())
    }

    /// A session with `config`, started at 0.
    pub fn started(config: &SessionConfig) -> SessionState {
        let mut s = SessionState::default();
        apply(&mut s, Operation::SetConfig(*config), 0).unwrap();
        apply(&mut s, Operation::Start, 0).unwrap();
        s
    }
}
