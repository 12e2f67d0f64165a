//! How fast worldswitch names the frames of its own samples, kernel and
//! user, with its own tables (`Kallsyms`, `UserSymbols`: a sorted vector
//! each) and with blazesym (which `attach` uses for other processes), so
//! the choice between them rests on figures measured here. Prints the
//! medians of 7 rounds: the load, and the time per frame when a drain
//! names each sample's 20 frames as it reads it (how the sampler works),
//! and when it names 1,000 at once.
//!
//! `cargo bench --bench symbols`

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolizer};
use blazesym::Pid;
use std::time::Instant;
use worldswitch::profiler::foreign::unwind::parse_maps;
use worldswitch::profiler::kallsyms::Kallsyms;
use worldswitch::profiler::user_symbols::UserSymbols;

const ROUNDS: usize = 7;
const STACK: usize = 20;
const BATCH: usize = 1000;

/// `n` addresses spread over `range` (a fixed multiplicative walk).
fn spread(range: (u64, u64), n: usize) -> Vec<u64> {
    let len = range.1 - range.0;
    (0..n as u64)
        .map(|i| range.0 + (i.wrapping_mul(2_654_435_761) % len))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `f` over the rounds.
fn time(mut f: impl FnMut()) -> f64 {
    median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_string_lossy();
    let text = parse_maps(&maps)
        .into_iter()
        .find(|m| m.exec && m.path.as_deref() == Some(&*exe))
        .map(|m| (m.range.start, m.range.end))
        .expect("our text mapping");
    let user = spread(text, BATCH);
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let mut ktext: Vec<u64> = kallsyms
        .lines()
        .filter(|l| l.contains(" t ") || l.contains(" T "))
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .filter(|&a| a != 0)
        .collect();
    ktext.sort_unstable();
    let kernel = spread((ktext[0], ktext[ktext.len() / 2]), BATCH);
    let pid = Pid::from(std::process::id());

    println!("naming frames, median of {ROUNDS} rounds:");
    println!(
        "{:<34} {:>10} {:>16} {:>16}",
        "", "load ms", "per frame, 20s", "per frame, 1000"
    );
    let row = |name: &str, load: f64, stacks: f64, batch: f64| {
        println!(
            "{name:<34} {:>10.2} {:>13.3} us {:>13.3} us",
            load * 1e3,
            stacks / BATCH as f64 * 1e6,
            batch / BATCH as f64 * 1e6
        );
    };

    // Ours: one load, then a binary search per frame.
    let load = time(|| drop(UserSymbols::load().unwrap()));
    let syms = UserSymbols::load().unwrap();
    let per = time(|| {
        for a in &user {
            std::hint::black_box(syms.name(*a));
        }
    });
    row("user, worldswitch's own table", load, per, per);
    let load = time(|| drop(Kallsyms::load().unwrap()));
    let ks = Kallsyms::load().unwrap();
    let per = time(|| {
        for a in &kernel {
            std::hint::black_box(ks.name(*a));
        }
    });
    row("kernel, worldswitch's own table", load, per, per);

    // blazesym: a symbolizer caches what it parsed; each call reads the
    // process's mappings (user) again.
    let process = || {
        let mut p = Process::new(pid);
        p.perf_map = false;
        Source::Process(p)
    };
    let load = time(|| {
        let s = Symbolizer::new();
        drop(s.symbolize(&process(), Input::AbsAddr(&user[..1])).unwrap());
    });
    let s = Symbolizer::new();
    let stacks = time(|| {
        for chunk in user.chunks(STACK) {
            std::hint::black_box(s.symbolize(&process(), Input::AbsAddr(chunk)).unwrap());
        }
    });
    let batch = time(|| {
        std::hint::black_box(s.symbolize(&process(), Input::AbsAddr(&user)).unwrap());
    });
    row("user, blazesym", load, stacks, batch);
    let kernel_source = || {
        Source::Kernel(Kernel {
            vmlinux: blazesym::MaybeDefault::None,
            ..Default::default()
        })
    };
    let load = time(|| {
        let s = Symbolizer::new();
        drop(
            s.symbolize(&kernel_source(), Input::AbsAddr(&kernel[..1]))
                .unwrap(),
        );
    });
    let stacks = time(|| {
        for chunk in kernel.chunks(STACK) {
            std::hint::black_box(
                s.symbolize(&kernel_source(), Input::AbsAddr(chunk))
                    .unwrap(),
            );
        }
    });
    let batch = time(|| {
        std::hint::black_box(
            s.symbolize(&kernel_source(), Input::AbsAddr(&kernel))
                .unwrap(),
        );
    });
    row("kernel, blazesym", load, stacks, batch);
}
