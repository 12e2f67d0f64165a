//! Every built-in guest's CPL0 code uses only instructions a host that
//! emulates guest kernel code can run: no SSE, AVX, x87 or other extensions.

use iced_x86::{CpuidFeature, Decoder, DecoderOptions, Instruction};
use worldswitch::machine::guest_image::GuestImage;

/// CPUID features CPL0 guest code may need.
const ALLOWED: &[CpuidFeature] = &[
    CpuidFeature::INTEL8086,
    CpuidFeature::INTEL8086_ONLY,
    CpuidFeature::INTEL186,
    CpuidFeature::INTEL286,
    CpuidFeature::INTEL386,
    CpuidFeature::INTEL486,
    CpuidFeature::X64,
    CpuidFeature::CPUID,
    CpuidFeature::MSR,
    CpuidFeature::TSC,
    CpuidFeature::CMOV,
    CpuidFeature::MULTIBYTENOP,
    // F3 90: a spin-wait hint, REP NOP to CPUs (and emulators) without it.
    CpuidFeature::PAUSE,
];

/// Instructions outside the allow-list in `code` at `addr`: (address, text).
fn violations(bitness: u32, code: &[u8], addr: u64) -> Vec<(u64, String)> {
    let mut decoder = Decoder::with_ip(bitness, code, addr, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut bad = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let ok = !insn.is_invalid() && insn.cpuid_features().iter().all(|f| ALLOWED.contains(f));
        if !ok {
            bad.push((insn.ip(), format!("{insn} {:?}", insn.cpuid_features())));
        }
    }
    bad
}

#[test]
fn cpl0_code_of_every_guest_is_on_the_allow_list() {
    for g in sample_guests::GUESTS {
        let image = GuestImage::from_bytes(g.name.into(), g.elf.to_vec());
        let sections = image.cpl0_code();
        for wanted in [".boot32", ".text"] {
            assert!(
                sections.iter().any(|s| s.0 == wanted),
                "{}: no {wanted}",
                g.name
            );
        }
        for (name, addr, code) in sections {
            // The PVH entry runs in 32-bit protected mode.
            let bitness = if name == ".boot32" { 32 } else { 64 };
            let bad = violations(bitness, &code, addr);
            if name == ".hostile" {
                // Deliberate faults: the check must see them.
                assert!(
                    bad.iter().any(|(_, text)| text.contains("addps")),
                    "{}: the deliberate SSE in .hostile went unseen: {bad:?}",
                    g.name
                );
                continue;
            }
            assert!(bad.is_empty(), "{} {name}: {bad:#x?}", g.name);
        }
    }
}

#[test]
fn the_check_rejects_sse_avx_and_x87() {
    // movaps xmm0, xmm1; vaddps ymm0, ymm1, ymm2; fld st(1); then a plain mov.
    let code = [
        0x0f, 0x28, 0xc1, 0xc5, 0xf4, 0x58, 0xc2, 0xd9, 0xc1, 0x48, 0x89, 0xc8,
    ];
    let bad = violations(64, &code, 0x1000);
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(violations(64, &[0x48, 0x89, 0xc8, 0x0f, 0x31, 0xe6, 0x80, 0xcf], 0).is_empty());
}
