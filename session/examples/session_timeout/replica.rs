//! One replica of the service in this process, on the file transport: the example's
//! form with arguments. Start one process per replica on the same directory.
//!
//! ```text
//! session_timeout --dir DIR --id NAME [--mode leader|distributed]
//!                 [--idle-grace-ms N] [--countdown-ms N] [--warn-before-ms N]
//! ```
//!
//! - `--id NAME` (1 to 16 of `A-Z a-z 0-9 . _ -`) is the replica's id: its
//!   `SourceId` is the name's bytes, big-endian in the id's 128 bits and padded with
//!   zeros. So a process restarted with the same name is the same replica (it finds
//!   its own store log), and every process can print the name of any other, such as
//!   the leader's.
//! - `--mode leader` (the default): the group's `FileAuthority` (a `flock` on the
//!   directory's `lease` file) makes exactly one process lead; it runs the timers, and
//!   the others forward their operations to it. `--mode distributed`: every process
//!   writes; concurrent operations converge by stamp order.
//! - The durations set up the session this process starts if it finds none running
//!   (the defaults are the service's, 2 min idle, 1 h countdown, a warning in the last
//!   5 min). A process that joins a running session takes the group's settings and
//!   deadlines as they are; `config` changes them.
//!
//! Commands on stdin, one a line: `activity`, `extend`, `expire`, `pause`, `resume`,
//! `start`, `stop`, `config KEY=VALUE ...` (the `SessionConfig` fields: `idle_grace_ms`,
//! `countdown_ms`, `warn_before_ms`, `activity_reset_cooldown_ms`,
//! `reset_on_warning_activity`, `allow_manual_extend_when_expired`,
//! `max_extend_per_session`), `status`, `quit`. End of input is `quit`.
//!
//! Output on stdout: one JSON object a line, for every event of the service and every
//! `status`; see [`Line`]. An unknown command or a bad value gives an `"event":
//! "error"` line and changes nothing; an operation the service refuses (`resume` when
//! not paused, say) gives a `"event": "refused"` line; both carry an `error` field.
//! Bad arguments: a message on stderr, exit code 2.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use replisync::{Clock, Config, SourceId, SyncMode, SystemClock};
use replisync_files::Options;
use replisync_session::{Operation, Phase, ResetCause, Session, SessionConfig, SessionEvent};
use serde_json::{json, Value};

use super::glue::{self, Status, Step};

const USAGE: &str = "usage: session_timeout --dir DIR --id NAME [--mode leader|distributed] \
                     [--idle-grace-ms N] [--countdown-ms N] [--warn-before-ms N]\n       \
                     session_timeout            (no arguments: the narrated demo)";

/// The arguments of one replica's process.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub dir: PathBuf,
    pub name: String,
    pub mode: SyncMode,
    /// The settings of a session this process starts.
    pub config: SessionConfig,
}

/// Reads the arguments; the message says what is wrong.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let (mut dir, mut name, mut mode) = (None, None, SyncMode::Leader);
    let mut config = SessionConfig::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let known = [
            "--dir",
            "--id",
            "--mode",
            "--idle-grace-ms",
            "--countdown-ms",
            "--warn-before-ms",
        ];
        if !known.contains(&flag) {
            return Err(format!("unknown argument {arg:?}"));
        }
        let value = match inline.or_else(|| args.next().cloned()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value")),
        };
        let ms = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} needs a whole number of milliseconds, not {value:?}"))
        };
        match flag {
            "--dir" if !value.is_empty() => dir = Some(PathBuf::from(&value)),
            "--dir" => return Err("--dir needs a directory".into()),
            "--id" => {
                source_of(&value)?;
                name = Some(value);
            }
            "--mode" => {
                mode = match value.as_str() {
                    "leader" => SyncMode::Leader,
                    "distributed" => SyncMode::Distributed,
                    _ => return Err(format!("--mode is leader or distributed, not {value:?}")),
                }
            }
            "--idle-grace-ms" => config.idle_grace_ms = ms()?,
            "--countdown-ms" => config.countdown_ms = ms()?,
            _ => config.warn_before_ms = ms()?,
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(Args {
        dir: dir.ok_or("--dir DIR is required")?,
        name: name.ok_or("--id NAME is required")?,
        mode,
        config,
    })
}

/// The replica id of a name: its bytes, big-endian in the id's 128 bits, padded with
/// zeros (so [`name_of`] reads it back).
pub fn source_of(name: &str) -> Result<SourceId, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 16 || !name.chars().all(ok) {
        return Err(format!(
            "--id needs 1 to 16 of A-Z a-z 0-9 . _ -, not {name:?}"
        ));
    }
    let mut bytes = [0u8; 16];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    Ok(SourceId::from_u128(u128::from_be_bytes(bytes)))
}

/// The name of a replica id made by [`source_of`]; any other id as it displays.
pub fn name_of(source: SourceId) -> String {
    let bytes = source.as_u128().to_be_bytes();
    let len = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    match std::str::from_utf8(&bytes[..len]) {
        Ok(name) if source_of(name) == Ok(source) => name.to_string(),
        _ => source.to_string(),
    }
}

/// Runs one replica with `args` (the command line, without the program): the exit code.
pub fn main(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return 0;
    }
    let args = match parse(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("session_timeout: {why}\n{USAGE}");
            return 2;
        }
    };
    match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("session_timeout: {e}");
            1
        }
    }
}

/// Where the JSON lines go: stdout, one whole line at a time from any thread.
#[derive(Clone)]
struct Out {
    id: String,
    mode: SyncMode,
    stdout: Arc<Mutex<std::io::Stdout>>,
}

/// One line of output, before it is printed.
///
/// Every line has, in this order, `id` (this replica's name), `event`, and what this
/// replica saw at that moment: `phase` (`STOPPED`, `IDLE`, `COUNTDOWN`, `WARN`,
/// `EXPIRED`), `role` (`leader` or `follower`; `peer` in distributed mode), `leader`
/// (the leader's name, or null), `term` (the latest lease term known, or null),
/// `remaining_ms`, `countdown_end_at` and `idle_start_at` (ms since the Unix epoch;
/// null when no session runs), `paused`, `extends`, and `at` (when, ms since the Unix
/// epoch). Some events add fields: `status` and `config_changed` the `config` (the
/// settings in force), `reset` its `cause`, `extended` its `count`, `leader_lost` the
/// `lost_term`, `refused` the `operation`, `from` and `error`, and `error` the `error`
/// and the `input`.
#[derive(Default)]
struct Line(Vec<(&'static str, Value)>);

impl Line {
    /// Sets `key` (in place if it is there, last otherwise).
    fn insert(&mut self, key: &'static str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The JSON object, its fields in the order they were set.
    fn to_json(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(key, value)| format!("{}:{value}", Value::from(*key)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

impl Out {
    fn line(&self, event: &str, status: Option<&Status>) -> Line {
        let mut line = Line::default();
        line.insert("id", json!(self.id));
        line.insert("event", json!(event));
        if let Some(s) = status {
            let view = &s.view;
            let role = match (self.mode, s.leading) {
                (SyncMode::Distributed, _) => "peer",
                (_, Some(_)) => "leader",
                (_, None) => "follower",
            };
            for (key, value) in [
                ("phase", json!(view.phase.as_str())),
                ("role", json!(role)),
                ("leader", json!(s.leader.map(name_of))),
                ("term", json!(s.term)),
                ("remaining_ms", json!(view.remaining_ms)),
                ("countdown_end_at", json!(view.countdown_end_at)),
                ("idle_start_at", json!(view.idle_start_at)),
                ("paused", json!(view.paused)),
                ("extends", json!(view.extends)),
                ("at", json!(s.now.wall_ms)),
            ] {
                line.insert(key, value);
            }
        }
        line
    }

    fn print(&self, line: Line) {
        let text = line.to_json();
        let mut out = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn event(&self, event: &SessionEvent, status: &Status) {
        let (name, extra): (&str, Vec<(&str, Value)>) = match event {
            SessionEvent::Started { .. } => ("started", vec![]),
            SessionEvent::Stopped => ("stopped", vec![]),
            SessionEvent::CountdownStarted { .. } => ("countdown", vec![]),
            SessionEvent::Warn { .. } => ("warn", vec![]),
            SessionEvent::Expired => ("expired", vec![]),
            SessionEvent::Reset { cause, .. } => {
                let cause = if *cause == ResetCause::Activity {
                    "activity"
                } else {
                    "extend"
                };
                ("reset", vec![("cause", json!(cause))])
            }
            SessionEvent::Extended { count } => ("extended", vec![("count", json!(count))]),
            SessionEvent::Paused { .. } => ("paused", vec![]),
            SessionEvent::Resumed { .. } => ("resumed", vec![]),
            SessionEvent::LeaderGained { .. } => ("leader_gained", vec![]),
            SessionEvent::LeaderLost { term } => ("leader_lost", vec![("lost_term", json!(term))]),
            SessionEvent::ConfigChanged { config } => (
                "config_changed",
                vec![(
                    "config",
                    serde_json::to_value(config).unwrap_or(Value::Null),
                )],
            ),
            SessionEvent::Refused {
                from,
                operation,
                refusal,
            } => (
                "refused",
                vec![
                    ("operation", json!(operation_name(operation))),
                    ("from", json!(name_of(*from))),
                    ("error", json!(refusal.to_string())),
                ],
            ),
            other => ("other", vec![("detail", json!(format!("{other:?}")))]),
        };
        let mut line = self.line(name, Some(status));
        for (key, value) in extra {
            line.insert(key, value);
        }
        self.print(line);
    }
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Start => "start",
        Operation::Stop => "stop",
        Operation::Activity => "activity",
        Operation::Extend => "extend",
        Operation::Expire => "expire",
        Operation::Pause => "pause",
        Operation::Resume => "resume",
        Operation::SetConfig(_) => "config",
        _ => "other",
    }
}

/// A command line read from stdin.
#[derive(Debug, PartialEq)]
enum Command {
    Operate(Operation),
    Status,
    Quit,
}

/// Reads one command; `config` pairs are applied to `current` (the settings in force)
/// and checked whole. The message says what is wrong.
fn command(line: &str, current: SessionConfig) -> Result<Command, String> {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else {
        return Err("empty command".into());
    };
    let rest: Vec<&str> = words.collect();
    let command = match first {
        "activity" => Command::Operate(Operation::Activity),
        "extend" => Command::Operate(Operation::Extend),
        "expire" => Command::Operate(Operation::Expire),
        "pause" => Command::Operate(Operation::Pause),
        "resume" => Command::Operate(Operation::Resume),
        "start" => Command::Operate(Operation::Start),
        "stop" => Command::Operate(Operation::Stop),
        "status" => Command::Status,
        "quit" => Command::Quit,
        "config" => return config_command(&rest, current),
        other => {
            return Err(format!(
                "unknown command {other:?}; the commands are activity, extend, expire, pause, \
                 resume, start, stop, config KEY=VALUE ..., status, quit"
            ))
        }
    };
    if !rest.is_empty() {
        return Err(format!("{first} takes no arguments"));
    }
    Ok(command)
}

fn config_command(pairs: &[&str], current: SessionConfig) -> Result<Command, String> {
    if pairs.is_empty() {
        return Err("config needs KEY=VALUE pairs, such as config countdown_ms=60000".into());
    }
    let mut config = current;
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not KEY=VALUE"));
        };
        let ms = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key} needs a whole number of milliseconds, not {value:?}"))
        };
        let flag = || {
            value
                .parse::<bool>()
                .map_err(|_| format!("{key} is true or false, not {value:?}"))
        };
        match key {
            "idle_grace_ms" => config.idle_grace_ms = ms()?,
            "countdown_ms" => config.countdown_ms = ms()?,
            "warn_before_ms" => config.warn_before_ms = ms()?,
            "activity_reset_cooldown_ms" => config.activity_reset_cooldown_ms = ms()?,
            "reset_on_warning_activity" => config.reset_on_warning_activity = flag()?,
            "allow_manual_extend_when_expired" => config.allow_manual_extend_when_expired = flag()?,
            "max_extend_per_session" => {
                config.max_extend_per_session = value
                    .parse()
                    .map_err(|_| format!("{key} needs a whole number, not {value:?}"))?
            }
            other => {
                return Err(format!(
                    "unknown setting {other:?}; the settings are idle_grace_ms, countdown_ms, \
                     warn_before_ms, activity_reset_cooldown_ms, reset_on_warning_activity, \
                     allow_manual_extend_when_expired, max_extend_per_session"
                ))
            }
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(Command::Operate(Operation::SetConfig(config)))
}

type Error = Box<dyn std::error::Error>;

fn run(args: &Args) -> Result<(), Error> {
    let source = source_of(&args.name)?;
    let config = match args.mode {
        SyncMode::Leader => Config::leader(),
        _ => Config::distributed(),
    };
    let session = Session::new(config.clone(), source)?;
    let clock = SystemClock::new();
    let mut driver =
        replisync_files::driver_for(&args.dir, Options::new(config), session)?.clock(clock);
    let events = driver.subscribe();
    let handle = driver.spawn()?;

    let out = Out {
        id: args.name.clone(),
        mode: args.mode,
        stdout: Arc::new(Mutex::new(std::io::stdout())),
    };
    let (report_tx, reports) = crossbeam_channel::unbounded();
    let service = {
        let handle = handle.clone();
        std::thread::Builder::new()
            .name("service".into())
            .spawn(move || glue::report(source.as_u128(), handle, events, report_tx))?
    };
    let printer = {
        let out = out.clone();
        std::thread::Builder::new()
            .name("printer".into())
            .spawn(move || {
                for report in reports {
                    out.event(&report.event, &report.status);
                }
            })?
    };
    let status =
        |event: &str| -> Result<Line, Error> { Ok(out.line(event, Some(&glue::status(&handle)?))) };
    out.print(status("ready")?);

    // No session running: start one with the settings of the command line.
    let state = glue::state(&handle)?;
    if state.view(clock.now()).phase == Phase::Stopped {
        let wanted = args.config;
        if !state.config_is_set() || state.config() != wanted {
            operate(&out, &handle, Operation::SetConfig(wanted), &status);
        }
        operate(&out, &handle, Operation::Start, &status);
    }

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let current = glue::state(&handle)?.config();
        match command(&line, current) {
            Ok(Command::Quit) => break,
            Ok(Command::Status) => {
                let mut l = status("status")?;
                l.insert("config", serde_json::to_value(current)?);
                out.print(l);
            }
            Ok(Command::Operate(op)) => {
                if !operate(&out, &handle, op, &status) {
                    break;
                }
            }
            Err(why) => {
                let mut l = status("error")?;
                l.insert("error", json!(why));
                l.insert("input", json!(line));
                out.print(l);
            }
        }
    }

    // End of input, or quit: leave (a leader hands over at once).
    let last = status("left")?;
    handle.leave()?;
    drop(handle);
    let _ = service.join();
    let _ = printer.join();
    out.print(last);
    Ok(())
}

/// A user's operation; a refusal is printed. False once the replica has stopped.
fn operate(
    out: &Out,
    handle: &replisync::Handle<Session>,
    op: Operation,
    status: &dyn Fn(&str) -> Result<Line, Error>,
) -> bool {
    let name = operation_name(&op);
    let (why, stopped) = match glue::operate(handle, op) {
        Ok(_) => return true,
        Err(Step::Refused(refusal)) => (refusal.to_string(), false),
        Err(e @ (Step::Failed(_) | Step::Stopped(_))) => (e.to_string(), true),
    };
    let mut line = status("refused").unwrap_or_else(|_| out.line("refused", None));
    line.insert("operation", json!(name));
    line.insert("error", json!(why));
    out.print(line);
    !stopped
}
