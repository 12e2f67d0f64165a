//! Builds every sample guest from C and assembly with the machine's gcc and
//! ld, and writes `guests.rs`, which embeds the ELF files in this crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The built-in guests: name, the runtime modules it links besides the core,
/// and one-line summary. A guest's sources are the files in `guests/` whose
/// names start with `NAME.`; files named `*.user.c` hold its CPL3 code.
const GUESTS: &[(&str, &[&str], &str)] = &[
    (
        "hello",
        &[],
        "prints from CPL0 and CPL3 on the serial console, then exits",
    ),
    (
        "nettest",
        NET,
        "the paper's workload: send() of write_size bytes (4096) in a loop to the host peer over UDP; megabytes=N to stop",
    ),
    (
        "nettest-rx",
        NET,
        "receives a stream from the host peer: datagrams=N of size=B at rate=R/s, with sequence checks",
    ),
    (
        "pingpong",
        NET,
        "request/response latency: rounds=N small datagrams to the peer's echo port, RTT in guest TSC cycles",
    ),
    (
        "hostile",
        &[],
        "a driver that does what no driver should: wild DMA, looping rings, bad counts, interrupt storms, port scans (mode=1..7)",
    ),
    (
        "faults",
        &[],
        "ends in a chosen failure (mode=1 triple fault, 2 SSE at CPL0, 3 dead halt, else #UD)",
    ),
    (
        "exitbench",
        &[],
        "tight OUT and IN loops on the benchmark port from CPL0 and CPL3, with counts and guest TSC cycles",
    ),
];

/// The runtime every guest links: the PVH entry and the CPL0 kernel.
const CORE: &[&str] = &["entry.S", "kernel.c"];
/// The network stack (the PCnet and paravirtual NIC drivers, ARP, UDP),
/// for guests that use it.
const NET: &[&str] = &["net.c"];

/// Flags for code that runs at CPL0: no SSE/AVX (PVM cannot emulate SSE
/// arithmetic), no red zone (interrupts arrive on the same stack), frame
/// pointers for the profiler's stack walks.
const KERNEL_FLAGS: &[&str] = &["-mgeneral-regs-only", "-mno-red-zone"];
const COMMON_FLAGS: &[&str] = &[
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-omit-frame-pointer",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-nostdlib",
    "-Wall",
    "-Werror",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let runtime = root.join("runtime");
    println!("cargo:rerun-if-changed=runtime");
    println!("cargo:rerun-if-changed=guests");

    let runtime_sources =
        |files: &[&str]| -> Vec<PathBuf> { files.iter().map(|f| runtime.join(f)).collect() };
    let core_objs = compile(&out.join("runtime"), &runtime, &runtime_sources(CORE));
    // Each runtime module is compiled once, by the first guest that links it.
    let mut module_objs: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    let mut table = String::from("/// Every built-in guest, in the order `worldswitch guests` lists them.\npub static GUESTS: &[Guest] = &[\n");
    for (name, modules, summary) in GUESTS {
        let sources = guest_sources(&root.join("guests"), name);
        assert!(
            !sources.is_empty(),
            "guest {name} has no sources in guests/"
        );
        let mut objs = core_objs.clone();
        for module in *modules {
            objs.extend(
                module_objs
                    .entry(module)
                    .or_insert_with(|| {
                        compile(&out.join("runtime"), &runtime, &runtime_sources(&[module]))
                    })
                    .iter()
                    .cloned(),
            );
        }
        objs.extend(compile(&out.join(name), &runtime, &sources));
        let elf = out.join(format!("{name}.elf"));
        link(&runtime.join("guest.ld"), &objs, &elf);
        writeln!(
            table,
            "    Guest {{ name: {name:?}, summary: {summary:?}, elf: include_bytes!({:?}) }},",
            elf.display().to_string()
        )
        .unwrap();
    }
    table.push_str("];\n");
    std::fs::write(out.join("guests.rs"), table).unwrap();
}

fn guest_sources(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            file.starts_with(&format!("{name}.")) && (file.ends_with(".c") || file.ends_with(".S"))
        })
        .collect();
    files.sort();
    files
}

/// Compiles sources to objects in `dir`, CPL3 files (`*.user.c`) without
/// the CPL0 restrictions.
fn compile(dir: &Path, include: &Path, sources: &[PathBuf]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut objs = Vec::new();
    for user in [false, true] {
        let files: Vec<&PathBuf> = sources
            .iter()
            .filter(|s| s.to_string_lossy().ends_with(".user.c") == user)
            .collect();
        if files.is_empty() {
            continue;
        }
        let mut build = cc::Build::new();
        build
            .compiler("gcc")
            .out_dir(dir)
            .include(include)
            .pic(false)
            .debug(false)
            .opt_level(2)
            .cargo_metadata(false)
            .files(files);
        for flag in COMMON_FLAGS {
            build.flag(flag);
        }
        if !user {
            for flag in KERNEL_FLAGS {
                build.flag(flag);
            }
        }
        objs.extend(build.compile_intermediates());
    }
    objs
}

fn link(script: &Path, objs: &[PathBuf], elf: &Path) {
    let status = Command::new("ld")
        .arg("-T")
        .arg(script)
        .args([
            "-nostdlib",
            "-static",
            "-z",
            "max-page-size=4096",
            "-z",
            "noexecstack",
            "--build-id=sha1",
        ])
        .arg("-o")
        .arg(elf)
        .args(objs)
        .status()
        .expect("running ld (install binutils)");
    assert!(status.success(), "linking {} failed", elf.display());
}
