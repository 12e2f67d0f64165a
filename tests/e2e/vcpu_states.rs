//! The vCPU state machine: start paused, resume, pause, stop.

use crate::kvm_or_skip;
use std::time::Duration;
use worldswitch::machine::devices::host::GuestSays;
use worldswitch::machine::vmm::events::{Finish, VcpuState, VmEvent};
use worldswitch::machine::vmm::vcpu::Command;
use worldswitch::machine::vmm::vm::{start, VmConfig};

fn next_state(vm: &worldswitch::machine::vmm::vm::VmHandle) -> VcpuState {
    loop {
        match vm.events().recv_timeout(Duration::from_secs(20)).unwrap() {
            VmEvent::State(s) => return s,
            VmEvent::Finished { finish, .. } => panic!("finished early: {finish:?}"),
            _ => {}
        }
    }
}

#[test]
fn paused_resumed_and_stopped_by_command() {
    if !kvm_or_skip("vcpu states") {
        return;
    }
    let vm = start(VmConfig {
        opts: Default::default(),
        stitch: false,
        mem_mib: 16,
        image: sample_guests::find("exitbench").unwrap().elf.to_vec(),
        cmdline: "iterations=100000000".into(),
        halt_poll_ns: 0,
        floor: None,
        start_paused: true,
        nic: None,
    })
    .unwrap();
    assert_eq!(next_state(&vm), VcpuState::Paused);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        vm.events().try_iter().all(|e| !matches!(
            e,
            VmEvent::Guest(GuestSays::Console(_) | GuestSays::Phase { .. })
        )),
        "a paused guest ran"
    );
    vm.command(Command::Resume);
    assert_eq!(next_state(&vm), VcpuState::Running);
    vm.command(Command::Pause);
    assert_eq!(next_state(&vm), VcpuState::Paused);
    vm.command(Command::Resume);
    assert_eq!(next_state(&vm), VcpuState::Running);
    vm.command(Command::Stop);
    let (finish, stats) = loop {
        if let VmEvent::Finished { finish, stats, .. } =
            vm.events().recv_timeout(Duration::from_secs(20)).unwrap()
        {
            break (finish, stats);
        }
    };
    assert_eq!(finish, Finish::HostStop);
    assert!(stats.kvm_run_returns > 0);
}
