//! Faults injected on purpose, so tests can show what follows them: the
//! `WORLDSWITCH_FAULT` environment variable names one. `panic` makes the
//! main thread panic once the guest runs (in the workbench after its first
//! drawing, headless half a second in): the terminal must come back and no
//! TAP device, namespace or child process may be left. `perf-refused`
//! makes the answer EACCES for the sampler's events on every thread but
//! the vCPU's and for every enable of an emulation window, as when
//! perf_event_paranoid is raised mid-run for a user without CAP_PERFMON
//! (an open event is never revoked, so a running profiler meets a refusal
//! only for what it opens or enables later). The tracepoint counters and
//! the windows' event, opened at start, are not refused.

/// Panics if `WORLDSWITCH_FAULT=panic`; `place` says where.
pub fn panic_if_asked(place: &str) {
    if std::env::var_os("WORLDSWITCH_FAULT").is_some_and(|v| v == "panic") {
        panic!("WORLDSWITCH_FAULT=panic: a panic injected on purpose in {place}");
    }
}

/// Whether `WORLDSWITCH_FAULT=perf-refused`: then the error to return.
pub fn perf_refused() -> Option<std::io::Error> {
    std::env::var_os("WORLDSWITCH_FAULT")
        .is_some_and(|v| v == "perf-refused")
        .then(|| std::io::Error::from_raw_os_error(libc::EACCES))
}
