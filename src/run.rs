//! Headless runs: boot a guest, follow its events, stop it on time or on a
//! signal, and hand back its result (which `frontends::printer` prints).

use crate::cli::RunArgs;
use crate::frontends::log::{top_rows, SecondLog, Style};
use crate::session::{RunResult, Workbench};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Whether SIGINT or SIGTERM has arrived since the first run began: a run
/// then stops its guest, and a command that makes several runs (`bench`)
/// makes no more. The handlers are installed once for the process.
pub fn interrupted() -> bool {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Without the handler the signal keeps its default: the
            // process ends, as it would have anyway.
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        flag
    })
    .load(Ordering::Relaxed)
}

/// Fails once SIGINT or SIGTERM has arrived, for commands that make
/// several runs: `what` says what was left undone.
pub fn ensure_not_interrupted(what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !interrupted(),
        "interrupted (SIGINT or SIGTERM): {what} was not finished"
    );
    Ok(())
}

/// Boots the guest `args` names and follows it to the end; console lines
/// go to `console` as they arrive, and a status line about the link goes to
/// `status` every second while frames flow. SIGINT and SIGTERM stop the
/// guest and end the run normally.
pub fn run(
    args: &RunArgs,
    console: &mut dyn Write,
    status: &mut dyn Write,
) -> anyhow::Result<RunResult> {
    run_noting(args, console, status, None)
}

/// [`run`], printing `notice` to stderr once the guest has booted (so a
/// failure to boot is the only thing said).
pub fn run_noting(
    args: &RunArgs,
    console: &mut dyn Write,
    status: &mut dyn Write,
    notice: Option<&str>,
) -> anyhow::Result<RunResult> {
    // Installs the handlers before the guest boots.
    interrupted();
    let mut session = Workbench::start(args)?;
    for notice in notice.into_iter().chain(session.notices()) {
        eprintln!("worldswitch: {notice}");
    }
    let mut last_status = (Instant::now(), (0u64, 0u64));
    let mut seconds = match (args.log, args.json_lines) {
        (true, _) => Some(SecondLog::new(Style::Text)),
        (_, true) => Some(SecondLog::new(Style::JsonLines)),
        _ => None,
    };
    while !session.pump(Duration::from_millis(50), console)? {
        if last_status.0.elapsed() < Duration::from_secs(1) {
            // Not yet a second since the last line.
        } else if let Some(log) = seconds.as_mut() {
            // The lines replace the status line; a picture a second.
            last_status.0 = Instant::now();
            let snap = session.snapshot();
            let _ = log.write(&snap.series, &top_rows(&snap.table), status);
        } else {
            let now = (Instant::now(), session.delivered());
            let dt = now.0.duration_since(last_status.0).as_secs_f64();
            let (frames, bytes) = (now.1 .0 - last_status.1 .0, now.1 .1 - last_status.1 .1);
            if frames > 0 {
                let _ = writeln!(
                    status,
                    "{:7.1} s  {:8.2} Mb/s  {:8.0} frames/s",
                    session.elapsed(),
                    bytes as f64 * 8.0 / dt / 1e6,
                    frames as f64 / dt
                );
            }
            last_status = now;
        }
        for w in session.take_warnings() {
            eprintln!("worldswitch: warning: {w}");
        }
        if session.elapsed() >= 0.5 {
            crate::injected::panic_if_asked("the headless run");
        }
        let timed_out = args
            .duration
            .is_some_and(|d| session.elapsed() >= d.as_secs_f64());
        if timed_out || interrupted() {
            session.stop();
        }
    }
    if let Some(log) = seconds.as_mut() {
        let snap = session.snapshot();
        let top = top_rows(&snap.table);
        let _ = log.write(&snap.series, &top, status);
        let _ = log.finish(&top, status);
    }
    session.finish(console)
}
