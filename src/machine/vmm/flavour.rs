//! Which kind of virtualization KVM uses on this host: VT-x, AMD-V or PVM
//! (the paravirtual nested KVM, where guest CPL0 code is emulated).

/// The kind of virtualization KVM uses here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Intel VT-x (the `vmx` CPU flag).
    VtX,
    /// AMD-V (the `svm` CPU flag).
    AmdV,
    /// PVM: no hardware flag, the `kvm_pvm` module loaded.
    Pvm,
    /// None that worldswitch can see.
    Unknown,
}

impl Flavour {
    /// Looks at `/proc/cpuinfo` and the loaded modules.
    pub fn detect() -> Flavour {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let has = |f: &str| {
            cpuinfo
                .lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|w| w == f))
        };
        if has("vmx") {
            Flavour::VtX
        } else if has("svm") {
            Flavour::AmdV
        } else if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            Flavour::Pvm
        } else {
            Flavour::Unknown
        }
    }

    /// Its short name, as profiles record it.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::VtX => "Intel",
            Flavour::AmdV => "AMD-V",
            Flavour::Pvm => "PVM",
            Flavour::Unknown => "no",
        }
    }
}
