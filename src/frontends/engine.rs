//! The engine thread behind the terminal UI: it owns the [`Workbench`],
//! publishes a [`Snapshot`] every refresh and carries out the UI's requests,
//! so drawing never blocks the guest and the guest never waits on drawing.

use crate::cli::RunArgs;
use crate::machine::optimizations::Opt;
use crate::profiler::live::{Every, Published};
use crate::session::RunResult;
use crate::session::Workbench;
use profiles::snapshot::Snapshot;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The workbench's rolling window.
pub const ROLLING: Duration = Duration::from_secs(10);

/// What the UI asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Pause (true) or resume the guest.
    Pause(bool),
    /// Start the figures afresh.
    Reset,
    /// Keep the current table for the delta column.
    Baseline,
    /// Flip this optimization (with what it needs or what needs it).
    Toggle(Opt),
    /// Figures over a rolling window, or (None) since the start or reset.
    Window(Option<Duration>),
    /// Add a line to the event log.
    Note(String),
    /// Stop the guest and end the run.
    Stop,
}

/// What the live workbench draws from: the newest picture, and a way to
/// ask for things. A guest's [`Engine`] is one; `attach` has another.
pub trait Feed {
    /// The newest picture, once there is one.
    fn latest(&self) -> Option<Arc<Snapshot>>;
    /// Asks for something; returns what to tell the user when it cannot be
    /// done (ignored once the feed has ended).
    fn send(&self, r: Request) -> Option<String>;
}

/// The running engine.
pub struct Engine {
    requests: Sender<Request>,
    latest: Published<Arc<Snapshot>>,
    thread: JoinHandle<anyhow::Result<RunResult>>,
}

impl Engine {
    /// Boots the guest on the engine thread; errors in booting come back
    /// here, before any UI is drawn.
    pub fn start(args: &RunArgs) -> anyhow::Result<Self> {
        let (requests, rx) = mpsc::channel();
        let latest: Published<Arc<Snapshot>> = Published::default();
        let publish = latest.clone();
        let (started_tx, started_rx) = mpsc::sync_channel(1);
        let args = args.clone();
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let session = match Workbench::start(&args) {
                    Ok(mut s) => {
                        let _ = started_tx.send(Ok(()));
                        // The Optimizations screen shows the predictions.
                        s.forecast();
                        s
                    }
                    Err(e) => {
                        let text = format!("{e:#}");
                        let _ = started_tx.send(Err(e));
                        anyhow::bail!(text)
                    }
                };
                drive(session, &args, &rx, &publish)
            })?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                requests,
                latest,
                thread,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => anyhow::bail!("the engine thread ended while booting the guest"),
            },
        }
    }

    /// Stops the guest and returns what the run measured.
    pub fn finish(self) -> anyhow::Result<RunResult> {
        self.send(Request::Stop);
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => anyhow::bail!("the engine thread panicked"),
        }
    }
}

impl Feed for Engine {
    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.latest()
    }

    fn send(&self, r: Request) -> Option<String> {
        let _ = self.requests.send(r);
        None
    }
}

fn drive(
    mut session: Workbench,
    args: &RunArgs,
    rx: &Receiver<Request>,
    publish: &Published<Arc<Snapshot>>,
) -> anyhow::Result<RunResult> {
    let mut every = Every::new(args.refresh);
    let mut sink = std::io::sink();
    // A live view should follow what the guest does now.
    session.set_window(Some(ROLLING));
    publish.publish(Arc::new(session.snapshot()));
    let mut announced_end = false;
    loop {
        let finished = session.pump(Duration::from_millis(20), &mut sink)?;
        let mut changed = false;
        loop {
            match rx.try_recv() {
                Ok(Request::Stop) | Err(TryRecvError::Disconnected) => {
                    return session.finish(&mut sink);
                }
                Ok(Request::Pause(p)) => session.set_paused(p),
                Ok(Request::Reset) => session.reset(),
                Ok(Request::Baseline) => session.mark_baseline(),
                Ok(Request::Note(text)) => session.note(text),
                Ok(Request::Toggle(o)) => session.toggle(o),
                Ok(Request::Window(w)) => session.set_window(w),
                Err(TryRecvError::Empty) => break,
            }
            changed = true;
        }
        if args
            .duration
            .is_some_and(|d| session.elapsed() >= d.as_secs_f64())
        {
            session.stop();
        }
        // After the guest ends, one last picture; the UI stays up to read.
        let last = finished && !announced_end;
        announced_end |= finished;
        if changed || last || (!finished && every.due()) {
            publish.publish(Arc::new(session.snapshot()));
        }
        if finished {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
