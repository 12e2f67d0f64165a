//! `worldswitch bench ui`: what the workbench costs to look at. The real
//! engine runs nettest; the real drawing code renders into a crossterm
//! backend writing to nowhere (escape sequences are encoded, only the
//! terminal's own work is missing) at the refresh rate, as the UI loop does.
//! Prints the UI thread's and the engine thread's CPU as a share of one core,
//! and the render time of every screen.

use crate::cli::{RunArgs, UiBenchArgs};
use crate::frontends::engine::{Engine, Feed};
use crate::frontends::printer::print_json;
use crate::profiler::threads::ThreadMeter;
use profiles::snapshot::Snapshot;
use profiles::stats::Summary;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use views::state::{Tab, UiState};

/// Renders of each screen timed after the run.
const RENDERS: usize = 100;

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct UiBench {
    /// The refresh interval, ms.
    pub refresh_ms: u64,
    /// The terminal size drawn, columns x rows.
    pub size: (u16, u16),
    /// Seconds the UI loop ran.
    pub seconds: f64,
    /// Frames drawn in that time.
    pub draws: u64,
    /// The UI thread's CPU, percent of one core.
    pub ui_cpu_pct: f64,
    /// The engine thread's CPU (building snapshots), percent of one core.
    pub engine_cpu_pct: f64,
    /// Render time per screen, microseconds.
    pub render_us: Vec<(String, Summary)>,
    /// The screen slowest to render.
    pub busiest: String,
}

fn terminal(w: u16, h: u16) -> anyhow::Result<Terminal<CrosstermBackend<std::io::Sink>>> {
    Ok(Terminal::with_options(
        CrosstermBackend::new(std::io::sink()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, w, h)),
        },
    )?)
}

/// Runs the benchmark.
pub fn measure(args: &UiBenchArgs) -> anyhow::Result<UiBench> {
    let run = RunArgs {
        net: Some(args.net),
        ..RunArgs::for_guest("nettest")
    };
    let refresh = run.refresh;
    let (w, h) = (args.width, args.height);
    let engine = Engine::start(&run)?;
    let mut term = terminal(w, h)?;
    let mut ui = UiState::default();
    let mut meter = ThreadMeter::default();
    meter.sample();
    let cpu0 = crate::profiler::thread_cpu_seconds();
    let started = Instant::now();
    let mut shown: Option<Arc<Snapshot>> = None;
    let mut last_draw = Instant::now();
    let mut draws = 0u64;
    // The UI loop's shape: look for news, draw on news or each refresh,
    // wait for input (here: none) 50 ms at a time. Screens rotate, so every
    // one is drawn live.
    while started.elapsed() < args.duration {
        let news = match engine.latest() {
            Some(s) if shown.as_ref().is_none_or(|o| !Arc::ptr_eq(o, &s)) => {
                shown = Some(s);
                true
            }
            _ => false,
        };
        if let Some(s) = &shown {
            if news || last_draw.elapsed() >= refresh {
                ui.tab = Tab::ALL[draws as usize % Tab::ALL.len()];
                term.draw(|f| views::draw(f, s, &mut ui))?;
                last_draw = Instant::now();
                draws += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    let ui_cpu = crate::profiler::thread_cpu_seconds() - cpu0;
    let engine_cpu = meter
        .sample()
        .into_iter()
        .find(|t| t.name == "engine")
        .map_or(0.0, |t| t.cpu_pct);
    let last = engine.latest();
    engine.finish()?;
    let snap = last.ok_or_else(|| anyhow::anyhow!("the engine published nothing"))?;
    let mut render_us = Vec::new();
    for tab in Tab::ALL {
        let mut ui = UiState {
            tab,
            ..UiState::default()
        };
        let mut times = Vec::with_capacity(RENDERS);
        for _ in 0..RENDERS {
            // A fresh terminal each time: a full redraw, the worst case.
            let mut term = terminal(w, h)?;
            let t = Instant::now();
            term.draw(|f| views::draw(f, &snap, &mut ui))?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if let Some(s) = Summary::of(&times) {
            render_us.push((tab.title().to_string(), s));
        }
    }
    let busiest = render_us
        .iter()
        .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    Ok(UiBench {
        refresh_ms: refresh.as_millis() as u64,
        size: (w, h),
        seconds,
        draws,
        ui_cpu_pct: ui_cpu / seconds * 100.0,
        engine_cpu_pct: engine_cpu,
        render_us,
        busiest,
    })
}

/// `worldswitch bench ui`.
pub fn command(args: &UiBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let r = measure(args)?;
    if args.json {
        print_json(&r, out)?;
        return Ok(());
    }
    writeln!(
        out,
        "UI at {} ms refresh, {}x{}, {:.1} s, {} frames drawn: UI thread {:.2}% of one core, engine thread {:.2}% (building snapshots)",
        r.refresh_ms, r.size.0, r.size.1, r.seconds, r.draws, r.ui_cpu_pct, r.engine_cpu_pct
    )?;
    writeln!(
        out,
        "full redraw of each screen, {RENDERS} times (us): median [p25, p75]"
    )?;
    for (name, s) in &r.render_us {
        writeln!(
            out,
            "  {name:<14} {:>8.1} [{:.1}, {:.1}]{}",
            s.median,
            s.p25,
            s.p75,
            if *name == r.busiest {
                "  <- busiest"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
