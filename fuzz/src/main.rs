//! A fuzzer for the device models (PCnet, PCI configuration space, serial,
//! mailbox) that builds on stable Rust. cargo-fuzz and AFL need nightly or
//! their own toolchains, so this one is written by hand: inputs decode into
//! register accesses, DMA memory pokes, transmits and received frames;
//! mutations (bit flips, byte sets, chunk copies, splices) start from the
//! seeds in `fuzz/corpus`; an input that reaches a device state not seen
//! before (faults, drops, CSR0, the interrupt line) joins the pool, a
//! cheap stand-in for coverage. A panic or an input that runs for more than
//! a second is a failure: the input is saved and the exit status is 1.
//!
//! Usage: `worldswitch-fuzz [--seconds N] [--seed S] [CORPUS_DIR]`, or
//! `worldswitch-fuzz --write-seeds DIR` to regenerate the seeds.

mod ops;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use worldswitch::rng::Rng;

/// Longest an input may run.
const HANG: Duration = Duration::from_secs(1);
/// Inputs kept in the pool, at most.
const POOL: usize = 4096;
/// Longest input.
const MAX_LEN: usize = 8192;

fn mutate(input: &mut Vec<u8>, pool: &[Vec<u8>], rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        if input.is_empty() {
            input.push(rng.next_u64() as u8);
        }
        let i = rng.below(input.len());
        match rng.below(6) {
            0 => input[i] ^= 1 << rng.below(8),
            1 => input[i] = [0, 1, 0x7f, 0x80, 0xff, rng.next_u64() as u8][rng.below(6)],
            2 => {
                // Copy a chunk within the input.
                let j = rng.below(input.len());
                let n = rng.below(32).min(input.len() - i.max(j));
                input.copy_within(j..j + n, i);
            }
            3 if input.len() < MAX_LEN => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                input.splice(i..i, bytes);
            }
            4 if input.len() > 2 => {
                let n = rng.below(16).min(input.len() - i);
                input.drain(i..i + n);
            }
            _ => {
                // Splice the tail of another input (same target byte kept).
                let other = &pool[rng.below(pool.len())];
                if other.len() > 1 {
                    let j = 1 + rng.below(other.len() - 1);
                    input.truncate(i.max(1));
                    input.extend_from_slice(&other[j..]);
                }
            }
        }
    }
    input.truncate(MAX_LEN);
}

fn save(dir: &Path, input: &[u8], why: &str) -> PathBuf {
    let mut h = DefaultHasher::new();
    input.hash(&mut h);
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{why}-{:016x}.bin", h.finish()));
    if std::fs::write(&path, input).is_err() {
        let tmp = std::env::temp_dir().join(path.file_name().unwrap());
        let _ = std::fs::write(&tmp, input);
        return tmp;
    }
    path
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60u64;
    let mut seed = None;
    let mut corpus = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(60),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()),
            "--write-seeds" => {
                let dir = PathBuf::from(args.next().unwrap_or_else(|| "fuzz/corpus".into()));
                return match ops::write_seeds(&dir) {
                    Ok(n) => {
                        println!("wrote {n} seeds to {}", dir.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!(
                            "worldswitch-fuzz: cannot write seeds to {}: {e}",
                            dir.display()
                        );
                        ExitCode::FAILURE
                    }
                };
            }
            "-h" | "--help" => {
                println!("usage: worldswitch-fuzz [--seconds N] [--seed S] [CORPUS_DIR] | --write-seeds DIR");
                return ExitCode::SUCCESS;
            }
            dir => corpus = PathBuf::from(dir),
        }
    }
    let mut pool: Vec<Vec<u8>> = match std::fs::read_dir(&corpus) {
        Ok(d) => d
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter(|b| !b.is_empty())
            .collect(),
        Err(e) => {
            eprintln!(
                "worldswitch-fuzz: cannot read the corpus {}: {e}; give a directory of seed inputs",
                corpus.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if pool.is_empty() {
        eprintln!(
            "worldswitch-fuzz: {} holds no seeds; write some with --write-seeds",
            corpus.display()
        );
        return ExitCode::FAILURE;
    }
    let seed = seed.unwrap_or_else(Rng::clock_seed);
    let crashes = corpus.parent().unwrap_or(Path::new(".")).join("crashes");
    let mut rng = Rng::new(seed);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut target = ops::Targets::new();
    // Seeds first, unmutated.
    for input in &pool {
        seen.insert(target.run(input));
    }
    let seeds = pool.len();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut execs = 0u64;
    std::panic::set_hook(Box::new(|_| {})); // reported below, with the input
    while Instant::now() < deadline {
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut input, &pool, &mut rng);
        let t = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(&input)));
        execs += 1;
        match result {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let path = save(&crashes, &input, "crash");
                eprintln!(
                    "worldswitch-fuzz: a device model panicked ({what}); the input is in {}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            Ok(_) if t.elapsed() > HANG => {
                let path = save(&crashes, &input, "hang");
                eprintln!(
                    "worldswitch-fuzz: an input ran {:?}; it is in {}",
                    t.elapsed(),
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            Ok(sig) => {
                if seen.insert(sig) {
                    if pool.len() < POOL {
                        pool.push(input);
                    } else {
                        // Full: a new state replaces an old find, never a seed.
                        let i = seeds + rng.below(POOL - seeds);
                        pool[i] = input;
                    }
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "worldswitch-fuzz: {execs} inputs in {secs:.0} s ({:.0}/s), seed {seed}: {} device states seen, pool {} ({} seeds), no panics or hangs",
        execs as f64 / secs,
        seen.len(),
        pool.len(),
        seeds
    );
    ExitCode::SUCCESS
}
