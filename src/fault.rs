//! Faults injected on purpose, so tests can show what follows them: the
//! `WORLDSWITCH_FAULT` environment variable names one. `panic` makes the
//! main thread panic once the guest runs (in the workbench after its first
//! drawing, headless half a second in): the terminal must come back and no
//! TAP device, namespace or child process may be left.

/// Panics if `WORLDSWITCH_FAULT=panic`; `place` says where.
pub fn panic_if_asked(place: &str) {
    if std::env::var_os("WORLDSWITCH_FAULT").is_some_and(|v| v == "panic") {
        panic!("WORLDSWITCH_FAULT=panic: a panic injected on purpose in {place}");
    }
}
