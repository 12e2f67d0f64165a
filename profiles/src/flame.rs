//! Flamegraph SVGs of folded stacks through inferno: a title, the count
//! name, an inverted (icicle) option, and each frame filled with its
//! world's colour ([`PALETTE`], the Flame screen's), named in a subtitle.

use inferno::differential;
use inferno::flamegraph::color::PaletteMap;
use inferno::flamegraph::{self, Direction, Options};
use std::collections::BTreeMap;

/// A world's colour.
pub struct WorldColour {
    /// The world's key in folded stacks.
    pub key: &'static str,
    /// Its name in the legend.
    pub label: &'static str,
    /// The terminal colour's name.
    pub name: &'static str,
    /// Its RGB.
    pub rgb: (u8, u8, u8),
}

const fn world(
    key: &'static str,
    label: &'static str,
    name: &'static str,
    rgb: (u8, u8, u8),
) -> WorldColour {
    WorldColour {
        key,
        label,
        name,
        rgb,
    }
}

/// The worlds' colours, for the Flame screen and SVG flame graphs alike.
pub const PALETTE: [WorldColour; 5] = [
    world("guest", "guest", "green", (76, 187, 76)),
    world("vmm", "VMM (KVM)", "light red", (255, 123, 123)),
    world(
        "vmapp",
        "VMApp (worldswitch)",
        "light blue",
        (127, 168, 255),
    ),
    world("host", "host", "magenta", (211, 106, 211)),
    world("workbench", "profiler", "gray", (180, 180, 180)),
];

/// A world's palette entry (colour name, RGB), if `key` names one.
pub fn colour(key: &str) -> Option<(&'static str, (u8, u8, u8))> {
    PALETTE
        .iter()
        .find(|w| w.key == key)
        .map(|w| (w.name, w.rgb))
}

/// Each frame name's fill: the colour of the world it has the most
/// samples under (stacks are `thread;world;category;frames...`: the
/// world's frame and all below it are that world's; the thread's frame is
/// left to inferno). A name drawn under two worlds takes the larger one's.
/// inferno colours by name, through a palette map filled in advance.
fn world_fills(folded: &[String]) -> PaletteMap {
    let mut weight: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for line in folded {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let n = count.trim().parse::<u64>().unwrap_or(0);
        let mut frames = stack.split(';').skip(1);
        let Some(world) = frames.next().filter(|w| colour(w).is_some()) else {
            continue;
        };
        for f in std::iter::once(world).chain(frames) {
            *weight.entry(f).or_default().entry(world).or_default() += n;
        }
    }
    let mut text = String::new();
    for (frame, worlds) in &weight {
        let (world, _) = worlds
            .iter()
            .max_by_key(|(_, n)| **n)
            .expect("every frame has a world");
        let (_, (r, g, b)) = colour(world).expect("a world of the palette");
        // The map's lines are `name->rgb(r, g, b)`: a name with an arrow
        // of its own keeps inferno's colour.
        if !frame.contains("->") && !frame.contains('\n') {
            text.push_str(&format!("{frame}->rgb({r}, {g}, {b})\n"));
        }
    }
    PaletteMap::from_reader(&mut text.as_bytes()).unwrap_or_default()
}

/// The subtitle that says which colour is which world.
fn legend() -> String {
    let parts: Vec<String> = PALETTE
        .iter()
        .map(|w| format!("{} {}", w.label, w.name))
        .collect();
    format!("colours by world: {}", parts.join(", "))
}

/// Renders `folded` (`stack count` lines) as an SVG, each frame in its
/// world's colour.
pub fn svg(folded: &[String], title: &str, inverted: bool) -> std::io::Result<Vec<u8>> {
    let mut options = Options::default();
    options.title = title.to_string();
    options.subtitle = Some(legend());
    options.count_name = "samples".into();
    options.hash = true;
    options.deterministic = true;
    let mut fills = world_fills(folded);
    options.palette_map = Some(&mut fills);
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
        // Each world's frames in its colour, and the legend says so.
        assert!(text.contains("colours by world: guest green"), "{text}");
        // A frame's rect follows its title.
        let fill_of = |frame: &str| {
            let at = text.find(&format!(">{frame} (")).expect(frame);
            let rect = &text[at..][text[at..].find("<rect").unwrap()..];
            let fill = rect.split("fill=\"").nth(1).unwrap();
            fill[..fill.find('"').unwrap()].to_string()
        };
        let rgb = |world| {
            let (r, g, b) = colour(world).unwrap().1;
            format!("rgb({r},{g},{b})")
        };
        assert_eq!(fill_of("vcpu_load"), rgb("vmm"));
        assert_eq!(fill_of("world_switch"), rgb("vmm"));
        assert_eq!(fill_of("guest_native"), rgb("guest"));
        assert_ne!(
            svg(&lines, "t", true).unwrap(),
            svg(&lines, "t", false).unwrap()
        );
    }
}
