//! Flame: the sampled stacks as an icicle graph (root at the top), drawn
//! cell by cell: move with the arrows, zoom with Enter and Esc, search with
//! `/` (matches highlighted, their share shown). Frames are coloured by
//! world (the second frame of every stack).

use crate::state::UiState;
use crate::style;
use profiles::flametree::FlameTree;
use profiles::snapshot::Snapshot;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Block;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, s: &Snapshot, ui: &mut UiState) {
    let tree = FlameTree::from_folded(&s.folded);
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    if tree.is_empty() {
        frame.render_widget(
            crate::note(format!(
                "No stack samples yet ({}). Samples arrive every half second while the guest runs.",
                s.info.sampling
            )),
            body,
        );
        return;
    }
    // The view's paths may name frames a refresh no longer has.
    let zoom = tree.find(&ui.flame.zoom).unwrap_or_else(|| {
        ui.flame.zoom.clear();
        0
    });
    let cursor = tree
        .find(&ui.flame.cursor)
        .filter(|&c| is_under(&tree, c, zoom))
        .unwrap_or_else(|| {
            ui.flame.cursor = ui.flame.zoom.clone();
            zoom
        });
    let total = tree.node(0).total;
    let stitched = s.folded.keys().any(|k| k.contains(";guest:"));
    let mut head_spans = vec![Span::styled(
        format!(
            " {} samples{} · zoom: {} ",
            total,
            if stitched {
                " (guest: frames stitched from the guest's stack at exits)"
            } else {
                ""
            },
            if ui.flame.zoom.is_empty() {
                "all".to_string()
            } else {
                ui.flame.zoom.join(";")
            }
        ),
        style::DIM,
    )];
    if ui.flame.typing || !ui.flame.search.is_empty() {
        let matched = tree.matching(&ui.flame.search);
        head_spans.push(Span::styled(
            format!(
                " search: {}{} ({:.1}% of samples) ",
                ui.flame.search,
                if ui.flame.typing { "_" } else { "" },
                matched as f64 / total as f64 * 100.0
            ),
            style::KEY,
        ));
    }
    frame.render_widget(Line::from(head_spans), head);
    let block = Block::bordered();
    let inner = block.inner(body);
    frame.render_widget(block, body);
    let buf = frame.buffer_mut();
    let depth0 = tree.node(zoom).depth;
    let view = View {
        tree: &tree,
        area: inner,
        search: &ui.flame.search,
        cursor,
        depth0,
    };
    view.draw_node(buf, zoom, 0, tree.node(zoom).total);
    let n = tree.node(cursor);
    let foot_text = format!(
        " {} · {} samples, {:.1}% of all, {:.1}% of the zoomed frame · arrows move, Enter zooms, Esc out, / search",
        n.name,
        n.total,
        n.total as f64 / total as f64 * 100.0,
        n.total as f64 / tree.node(zoom).total.max(1) as f64 * 100.0
    );
    frame.render_widget(Line::from(Span::styled(foot_text, style::DIM)), foot);
}

fn is_under(tree: &FlameTree, mut i: usize, ancestor: usize) -> bool {
    loop {
        if i == ancestor {
            return true;
        }
        match tree.node(i).parent {
            Some(p) => i = p,
            None => return false,
        }
    }
}

struct View<'a> {
    tree: &'a FlameTree,
    area: Rect,
    search: &'a str,
    cursor: usize,
    depth0: usize,
}

impl View<'_> {
    /// Draws node `i`, which starts `start` samples from the zoomed frame's
    /// left edge (the zoomed frame's samples span the full width), then its
    /// children side by side.
    fn draw_node(&self, buf: &mut Buffer, i: usize, start: u64, scale: u64) {
        let node = self.tree.node(i);
        let row = node.depth - self.depth0;
        let x0 = cols(start, scale, self.area.width);
        let x1 = cols(start + node.total, scale, self.area.width);
        if row >= self.area.height as usize || x1 <= x0 {
            return;
        }
        let (x, y, width) = (self.area.x + x0, self.area.y + row as u16, x1 - x0);
        let path = self.tree.path(i);
        let world = path.get(1).copied().unwrap_or("");
        let mut st = Style::new().fg(Color::Black).bg(style::world(world));
        if !self.search.is_empty() && node.name.contains(self.search) {
            st = Style::new()
                .fg(Color::Black)
                .bg(Color::Magenta)
                .add_modifier(Modifier::BOLD);
        }
        if node.name.starts_with("guest:") {
            // Stitched from the guest's own stack at the exit.
            st = st.bg(Color::LightGreen).add_modifier(Modifier::ITALIC);
        }
        if i == self.cursor {
            st = st.add_modifier(Modifier::REVERSED);
        }
        // A gap closes each frame, when there is room for one.
        let inside = if width > 2 { width - 1 } else { width };
        let label: String = format!(" {}", node.name)
            .chars()
            .chain(std::iter::repeat(' '))
            .take(inside as usize)
            .collect();
        buf.set_string(x, y, label, st);
        let mut offset = start;
        for &c in &node.children {
            self.draw_node(buf, c, offset, scale);
            offset += self.tree.node(c).total;
        }
    }
}

/// Columns for `samples` of `scale` across `width`.
fn cols(samples: u64, scale: u64, width: u16) -> u16 {
    (samples as u128 * width as u128 / scale.max(1) as u128) as u16
}
