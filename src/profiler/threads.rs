//! The CPU use of worldswitch's own threads, from /proc/self/task: each
//! thread's scheduler run time (schedstat, in ns) over the interval since
//! the last reading, and the CPU it last ran on.

use profiles::snapshot::ThreadCpu;
use std::collections::BTreeMap;
use std::time::Instant;

/// Readings of the previous call, by thread ID.
#[derive(Debug, Default)]
pub struct ThreadMeter {
    last: BTreeMap<u32, (u64, Instant)>,
}

impl ThreadMeter {
    /// Every thread's CPU since the previous call (since it started, on the
    /// first), named as the thread names itself.
    pub fn sample(&mut self) -> Vec<ThreadCpu> {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
            let Some(ns) = read("schedstat")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let name = read("comm").trim().to_string();
            let cpu_pct = match self.last.get(&tid) {
                Some(&(prev, at)) => {
                    let dt = now.duration_since(at).as_secs_f64();
                    if dt > 0.0 {
                        ns.saturating_sub(prev) as f64 / 1e9 / dt * 100.0
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            };
            seen.insert(tid, (ns, now));
            out.push(ThreadCpu {
                name,
                cpu_pct,
                last_cpu: last_cpu(&read("stat")),
            });
        }
        self.last = seen;
        out.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct).then(a.name.cmp(&b.name)));
        out
    }
}

/// Field 39 of /proc/*/stat (the CPU last run on), counted after the
/// command name, which may itself contain spaces and parentheses.
pub fn last_cpu(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(36)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_processor_field_after_odd_names() {
        let tail = (3..=52)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let stat = format!("1234 (a (b) c) {}", tail.replacen("3 ", "S ", 1));
        assert_eq!(last_cpu(&stat), Some(39));
        assert_eq!(last_cpu("garbage"), None);
    }

    #[test]
    fn measures_a_busy_thread() {
        let mut m = ThreadMeter::default();
        m.sample();
        let t = Instant::now();
        while t.elapsed().as_millis() < 60 {}
        let me = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        let rows = m.sample();
        assert!(
            rows.iter()
                .any(|r| r.name == me.trim() && r.cpu_pct > 30.0 && r.last_cpu.is_some()),
            "{rows:?}"
        );
    }
}
