//! Flamegraph SVGs of folded stacks through inferno: a title, the count
//! name, an inverted (icicle) option, and colours that depend only on a
//! frame's name, so a category has the same colour in every graph.

use inferno::differential;
use inferno::flamegraph::{self, Direction, Options};

/// Renders `folded` (`stack count` lines) as an SVG.
pub fn svg(folded: &[String], title: &str, inverted: bool) -> std::io::Result<Vec<u8>> {
    let mut options = Options::default();
    options.title = title.to_string();
    options.count_name = "samples".into();
    options.hash = true;
    options.deterministic = true;
    if inverted {
        options.direction = Direction::Inverted;
    }
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options, folded.iter().map(String::as_str), &mut out)
        .map_err(std::io::Error::other)?;
    Ok(out)
}

/// A differential flamegraph from `before` to `after` (both `stack count`
/// lines): frame widths follow `after`, colours show growth (red) and
/// shrinkage (blue), with `before` normalized to `after`'s total.
pub fn diff_svg(before: &[String], after: &[String], title: &str) -> std::io::Result<Vec<u8>> {
    let mut folded = Vec::new();
    let opts = differential::Options {
        normalize: true,
        ..Default::default()
    };
    differential::from_readers(
        opts,
        before.join("\n").as_bytes(),
        after.join("\n").as_bytes(),
        &mut folded,
    )?;
    let text = String::from_utf8_lossy(&folded);
    let mut options = Options::default();
    options.title = title.to_string();
    options.count_name = "samples".into();
    options.deterministic = true;
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options, text.lines(), &mut out).map_err(std::io::Error::other)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_titled_deterministic_svg() {
        let lines = vec![
            "vcpu;vmm;world_switch;vcpu_load 30".to_string(),
            "vcpu;guest;guest_native 10".to_string(),
        ];
        let a = svg(&lines, "nettest on PVM", false).unwrap();
        let b = svg(&lines, "nettest on PVM", false).unwrap();
        assert_eq!(a, b, "deterministic");
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with("<?xml"));
        assert!(text.contains("nettest on PVM"));
        assert!(text.contains("world_switch") && text.contains("vcpu_load"));
        assert_ne!(
            svg(&lines, "t", true).unwrap(),
            svg(&lines, "t", false).unwrap()
        );
    }
}
