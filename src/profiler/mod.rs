//! The profiler's collectors in the app: markers on the threads that do the
//! work (exact counts and durations per category). Sampling and tracepoint
//! collectors join them here.

pub mod kallsyms;
pub mod markers;
pub mod sampler;
