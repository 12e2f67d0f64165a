use worldswitch::vmm::events::VmEvent;
use worldswitch::vmm::vm::{start, VmConfig};

fn main() {
    let name = std::env::args().nth(1).unwrap_or("hello".into());
    let g = sample_guests::find(&name).unwrap();
    let vm = start(VmConfig {
        mem_mib: 64,
        image: g.elf.to_vec(),
        cmdline: std::env::args().nth(2).unwrap_or_default(),
        halt_poll_ns: 0,
        floor: None,
    })
    .unwrap();
    for e in vm.events().iter() {
        match e {
            VmEvent::Finished { finish, stats } => {
                println!("{finish:?} {:?}", stats);
                break;
            }
            other => println!("{other:?}"),
        }
    }
}
