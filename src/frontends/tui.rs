//! The terminal workbench: the terminal itself (raw mode, the alternate
//! screen, the mouse, restored on every way out), input mapped onto the
//! views' keys, and the actions that need the engine or the disk.

use crate::cli::RunArgs;
use crate::frontends::engine::{Engine, Feed, Request};
use crate::session::RunResult;
use crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event, KeyCode, KeyEventKind, KeyModifiers,
    MouseButton, MouseEventKind,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use profiles::snapshot::{RunState, Snapshot};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use views::state::{Action, Key, UiState};

/// Whether the UI can run here: both standard input and output are
/// terminals.
pub fn have_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Puts the terminal back: on drop, and from the panic hook.
struct Restore;

impl Restore {
    fn enter() -> anyhow::Result<Self> {
        terminal::enable_raw_mode().map_err(|e| {
            anyhow::anyhow!("cannot put the terminal in raw mode ({e}); use --headless")
        })?;
        let guard = Restore;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(guard)
    }
}

fn restore() {
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// Where the pictures come from: a live feed or a saved profile.
enum Source<'a> {
    Live(&'a dyn Feed),
    Saved(Arc<Snapshot>),
}

impl Source<'_> {
    fn latest(&self) -> Option<Arc<Snapshot>> {
        match self {
            Source::Live(e) => e.latest(),
            Source::Saved(s) => Some(s.clone()),
        }
    }
}

/// Runs the workbench on a live guest until the user quits; returns what
/// the run measured.
pub fn run(args: &RunArgs) -> anyhow::Result<RunResult> {
    let engine = Engine::start(args)?;
    let outcome = watch(&engine, args.refresh, &args.export_dir);
    // Stop the guest whatever happened to the UI.
    let result = engine.finish();
    outcome?;
    result
}

/// Shows a live feed until the user quits.
pub fn watch(feed: &dyn Feed, refresh: Duration, export_dir: &Path) -> anyhow::Result<()> {
    ui_loop(&Source::Live(feed), refresh, export_dir)
}

/// Shows a saved profile in the same screens.
pub fn view(snapshot: Snapshot, export_dir: &Path) -> anyhow::Result<()> {
    ui_loop(
        &Source::Saved(Arc::new(snapshot)),
        Duration::from_millis(500),
        export_dir,
    )
}

fn ui_loop(source: &Source, refresh: Duration, export_dir: &Path) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let _restore = Restore::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    let mut ui = UiState::default();
    let mut shown: Option<Arc<Snapshot>> = None;
    let mut dirty = true;
    let mut last_draw = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(s) = source.latest() {
            if shown.as_ref().is_none_or(|old| !Arc::ptr_eq(old, &s)) {
                shown = Some(s);
                dirty = true;
            }
        }
        let Some(snap) = shown.clone() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        // Redraw on news, input or resize, and at least every refresh (the
        // clock in the status line moves).
        if dirty || last_draw.elapsed() >= refresh {
            term.draw(|f| views::draw(f, &snap, &mut ui))?;
            last_draw = Instant::now();
            dirty = false;
            crate::injected::panic_if_asked("the workbench");
        }
        if !event::poll(Duration::from_millis(50))? {
            continue;
        }
        dirty = true;
        let action = match event::read()? {
            Event::Key(k) if k.kind != KeyEventKind::Release => match key(k.code, k.modifiers) {
                Some(key) => ui.on_key(key, &snap),
                None => Action::None,
            },
            Event::Mouse(m) if m.kind == MouseEventKind::Down(MouseButton::Left) => {
                ui.on_click(m.column, m.row);
                Action::None
            }
            _ => Action::None,
        };
        match action {
            Action::None => {}
            Action::Quit => break,
            Action::Export => {
                let text = match export(&snap, export_dir) {
                    Ok((svg, json)) => {
                        format!("exported {} and {}", svg.display(), json.display())
                    }
                    Err(e) => format!("{e:#}"),
                };
                ui.message = Some(text.clone());
                request(source, &mut ui, Request::Note(text));
            }
            Action::TogglePause => {
                let pause = snap.state != RunState::Paused;
                request(source, &mut ui, Request::Pause(pause));
            }
            Action::Reset => request(source, &mut ui, Request::Reset),
            Action::MarkBaseline => request(source, &mut ui, Request::Baseline),
            Action::Toggle(o) => request(source, &mut ui, Request::Toggle(o)),
            Action::ToggleWindow => {
                let w = (!snap.info.rolling).then_some(crate::frontends::engine::ROLLING);
                request(source, &mut ui, Request::Window(w));
            }
        }
    }
    Ok(())
}

fn request(source: &Source, ui: &mut UiState, r: Request) {
    match source {
        Source::Live(e) => {
            // A note is the answer to what the user just did: keep it shown.
            if !matches!(r, Request::Note(_)) {
                ui.message = None;
            }
            if let Some(answer) = e.send(r) {
                ui.message = Some(answer);
            }
        }
        Source::Saved(_) if matches!(r, Request::Note(_)) => {}
        Source::Saved(_) => ui.message = Some("a saved profile cannot be changed".into()),
    }
}

/// The views' key for a terminal key, if it has one.
fn key(code: KeyCode, mods: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        _ => return None,
    })
}

/// Writes the picture's flame graph (SVG) and tables (JSON) into `dir`,
/// named by guest and time; returns both paths.
pub fn export(s: &Snapshot, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("worldswitch-{}-{stamp}", s.info.guest.replace('/', "_"));
    let (svg_path, json_path) = (
        dir.join(format!("{base}.svg")),
        dir.join(format!("{base}.json")),
    );
    let folded: Vec<String> = s.folded.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let title = format!(
        "{} on {} ({:.0} s, {} samples)",
        s.info.guest,
        s.info.host_kind,
        s.info.window_seconds,
        s.folded.values().sum::<u64>()
    );
    let svg = if folded.is_empty() {
        None
    } else {
        Some(profiles::flame::svg(&folded, &title, false)?)
    };
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "guest": s.info.guest,
        "host_kind": s.info.host_kind,
        "window_seconds": s.info.window_seconds,
        "table": s.table,
        "baseline": s.baseline,
        "transmit_path": s.transmit_path,
        "net": s.net,
        "series": s.series,
        "marks": s.marks,
    }))?;
    let write = |path: &Path, bytes: &[u8]| -> anyhow::Result<()> {
        let mut f = std::fs::File::create(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot write {} ({e}); start worldswitch with --export-dir set to a writable directory",
                path.display()
            )
        })?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| {
            // Leave no half-written file behind.
            let _ = std::fs::remove_file(path);
            anyhow::anyhow!(
                "cannot write {} ({e}); free some space or choose another --export-dir",
                path.display()
            )
        })
    };
    write(&json_path, &json)?;
    match svg {
        Some(svg) => write(&svg_path, &svg)?,
        None => anyhow::bail!(
            "wrote {} but no flame graph: there are no stack samples yet",
            json_path.display()
        ),
    }
    Ok((svg_path, json_path))
}
