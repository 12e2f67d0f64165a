//! A guest driver that does what no driver should: the host survives each
//! case, reports it plainly, and counts it with its reason.

use crate::{kvm_or_skip, run_json};
use serde_json::Value;

fn hostile(mode: u32) -> Value {
    hostile_for(mode, "60s").1
}

/// Runs hostile `mode` for `duration` at most, without the profiler.
fn hostile_for(mode: u32, duration: &str) -> (std::process::Output, Value) {
    hostile_with(mode, duration, &[])
}

/// Runs hostile `mode` for `duration` at most, without the profiler, with
/// `extra` arguments.
fn hostile_with(mode: u32, duration: &str, extra: &[&str]) -> (std::process::Output, Value) {
    let mode = format!("mode={mode}");
    let mut args = vec![
        "--guest",
        "hostile",
        "--net",
        "sink",
        "--sample-hz",
        "0",
        "--emulation-windows",
        "off",
        "--duration",
        duration,
        "--guest-arg",
        &mode,
    ];
    args.extend(extra);
    run_json(&args)
}

fn survived(r: &Value) {
    assert_eq!(r["outcome"]["kind"], "guest_exit", "{}", r["outcome"]);
    assert_eq!(r["outcome"]["status"], 0, "{}", r["outcome"]);
    assert!(r["console"].as_str().unwrap().contains("hostile: survived"));
}

#[test]
fn wild_init_block_is_a_memory_error() {
    if !kvm_or_skip("hostile init block") {
        return;
    }
    let r = hostile(1);
    survived(&r);
    assert_eq!(
        r["nic_faults"]["init_block_out_of_range"], 1,
        "{}",
        r["nic_faults"]
    );
    let csr0 = r["guest_counters"]["csr0_after"].as_u64().unwrap();
    assert_ne!(csr0 & 0x0800, 0, "MERR: {csr0:#x}");
}

#[test]
fn a_ring_that_never_ends_a_frame_underflows_every_time() {
    if !kvm_or_skip("hostile ring") {
        return;
    }
    let r = hostile(2);
    survived(&r);
    assert_eq!(
        r["frames_dropped"]["nic tx_underflow"], 100,
        "{}",
        r["frames_dropped"]
    );
    assert_eq!(r["frames_received_by_host"], 0);
}

#[test]
fn zero_and_absurd_counts_and_wild_buffers_are_counted() {
    if !kvm_or_skip("hostile counts") {
        return;
    }
    let r = hostile(3);
    survived(&r);
    let d = &r["frames_dropped"];
    assert_eq!(d["nic tx_zero_bcnt"], 1, "{d}");
    assert!(d["nic tx_babble"].as_u64().unwrap() >= 1, "{d}");
    let r = hostile(4);
    survived(&r);
    assert_eq!(
        r["frames_dropped"]["nic tx_dma_error"], 8,
        "{}",
        r["frames_dropped"]
    );
}

#[test]
fn an_interrupt_storm_and_a_port_scan_leave_the_host_standing() {
    if !kvm_or_skip("hostile storm") {
        return;
    }
    let r = hostile(5);
    survived(&r);
    assert!(
        r["irq_edges"].as_u64().unwrap() >= 10_000,
        "{}",
        r["irq_edges"]
    );
    let r = hostile(6);
    survived(&r);
    assert!(r["exits"]["unclaimed_port_accesses"].as_u64().unwrap() > 20_000);
}

#[test]
fn an_abused_interrupt_controller_and_timer_leave_the_host_standing() {
    if !kvm_or_skip("hostile 8259 and 8254") {
        return;
    }
    for irqchip in ["kernel-irqchip=on", "kernel-irqchip=off"] {
        let (_, r) = hostile_with(12, "60s", &["--opt", irqchip]);
        survived(&r);
        let storm_ticks = r["guest_counters"]["hostile_rounds"].as_u64().unwrap();
        let seconds = r["seconds"].as_f64().unwrap();
        let injected = r["exits"]["interrupts_injected"].as_u64().unwrap();
        eprintln!("{irqchip}: {storm_ticks} ticks in the storm, {injected} interrupts injected in {seconds:.2} s");
        assert!(storm_ticks > 0, "{irqchip}: the timer kept ticking");
        if irqchip.ends_with("off") {
            // Our 8254 interrupts at 5 kHz at most, whatever it is asked.
            assert!(injected >= storm_ticks, "{irqchip}");
            assert!(
                (injected as f64) < seconds * 5_000.0 + 1_000.0,
                "{irqchip}: {injected} interrupts in {seconds} s"
            );
        } else {
            assert_eq!(injected, 0, "KVM's irqchip injects by itself");
        }
    }
}

#[test]
fn destroyed_page_tables_end_in_a_reported_triple_fault() {
    if !kvm_or_skip("hostile page tables") {
        return;
    }
    let r = hostile(7);
    assert_eq!(r["outcome"]["kind"], "triple_fault", "{}", r["outcome"]);
    assert!(r["outcome"]["symbol"].is_string());
}

#[test]
fn scribbling_over_the_start_info_changes_nothing() {
    if !kvm_or_skip("hostile start info") {
        return;
    }
    let r = hostile(8);
    survived(&r);
    assert_eq!(r["frames_from_nic"], 8, "{r}");
    assert_eq!(r["guest_counters"]["hostile_rounds"], 8, "{r}");
}

#[test]
fn a_guest_that_never_halts_is_still_stopped() {
    if !kvm_or_skip("hostile spin") {
        return;
    }
    let (out, r) = hostile_for(9, "2s");
    assert!(out.status.success(), "{r}");
    assert_eq!(r["outcome"]["kind"], "host_stop", "{}", r["outcome"]);
    assert!(r["console"].as_str().unwrap().contains("spinning"));
    let secs = r["seconds"].as_f64().unwrap();
    assert!((1.5..10.0).contains(&secs), "ran {secs} s");
}

#[test]
fn a_guest_that_overwrites_all_its_memory_is_reported() {
    if !kvm_or_skip("hostile overwrite") {
        return;
    }
    let (out, r) = hostile_for(10, "60s");
    // The run fails (exit status 1) with the outcome in the report and one
    // plain sentence, never a crash of the host side.
    assert_eq!(out.status.code(), Some(1), "{r}");
    let kind = r["outcome"]["kind"].as_str().unwrap();
    assert!(
        ["triple_fault", "emulation_failure", "unexpected_exit"].contains(&kind),
        "{}",
        r["outcome"]
    );
    assert!(r["outcome"]["message"].as_str().unwrap().ends_with('.'));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(r["console"].as_str().unwrap().contains("overwriting"));
}

#[test]
fn an_abused_pv_ring_is_counted_and_never_followed() {
    if !kvm_or_skip("hostile pv-nic") {
        return;
    }
    let r = hostile(11);
    survived(&r);
    let pv = &r["pv_nic"];
    // Outside RAM and misaligned; a 16-bit write and an 8-bit read.
    assert_eq!(pv["bad_registrations"], 2, "{pv}");
    assert_eq!(pv["bad_accesses"], 2, "{pv}");
    // Outside RAM, a gigabyte long, empty: refused and counted as drops.
    assert_eq!(pv["bad_entries"], 3, "{pv}");
    assert_eq!(r["frames_dropped"]["pv bad entry"], 3, "{r}");
    // A producer 100,000 ahead is skipped to, once.
    assert_eq!(pv["overruns"], 1, "{pv}");
    assert_eq!(pv["frames"], 0, "{pv}");
    // A ring of entries that never ends a frame is left alone (the guest
    // saw all 64 still posted), and the host did not spin on it.
    assert_eq!(r["guest_counters"]["hostile_rounds"], 64, "{r}");
}
