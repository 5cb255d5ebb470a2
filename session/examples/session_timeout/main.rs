//! The session idle-timeout service on replisync, in two forms.
//!
//! - `cargo run --release --example session_timeout` (no arguments): the narrated demo,
//!   three replicas in one process on the in-process hub (`demo.rs`).
//! - `session_timeout --dir DIR --id NAME [--mode leader|distributed] [--idle-grace-ms N]
//!   [--countdown-ms N] [--warn-before-ms N]`: one replica in this process, on the file
//!   transport in `DIR`, driven by commands on stdin and printing one JSON object a line
//!   (`replica.rs`). Start one process per replica on the same directory.
//!
//! Both run the same glue between the service and the native driver (`glue.rs`).

pub mod demo;
pub mod glue;
#[cfg(unix)]
pub mod replica;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        if let Err(e) = demo::run(&mut std::io::stdout().lock()) {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
        return;
    }
    #[cfg(unix)]
    std::process::exit(replica::main(&args));
    #[cfg(not(unix))]
    {
        eprintln!("session_timeout: one replica per process needs the file transport, which runs on Unix only");
        std::process::exit(2);
    }
}
