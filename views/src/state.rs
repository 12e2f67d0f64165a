//! What the user has chosen to look at, and how keys and clicks change it.
//! Plain state with no terminal: the app maps its input events onto
//! [`Key`] and carries out the [`Action`]s that need the engine.

use profiles::flametree::FlameTree;
use profiles::snapshot::Snapshot;
use profiles::toggles::Opt;
use ratatui::layout::Rect;

/// The screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Throughput, exits, threads, the guest's counters.
    Overview,
    /// Both Table-1-shaped tables.
    Overheads,
    /// Figure 5.
    Path,
    /// The flame graph.
    Flame,
    /// Guest serial output and the event log.
    Console,
    /// The optimization toggles.
    Optimizations,
}

impl Tab {
    /// Every tab, in order.
    pub const ALL: [Tab; 6] = [
        Tab::Overview,
        Tab::Overheads,
        Tab::Path,
        Tab::Flame,
        Tab::Console,
        Tab::Optimizations,
    ];

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Overheads => "Overheads",
            Tab::Path => "Transmit path",
            Tab::Flame => "Flame",
            Tab::Console => "Console",
            Tab::Optimizations => "Optimizations",
        }
    }

    /// Its title where space is short.
    pub fn short_title(self) -> &'static str {
        match self {
            Tab::Path => "Path",
            Tab::Optimizations => "Toggles",
            t => t.title(),
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|&t| t == self).unwrap_or(0)
    }
}

/// The columns the overhead table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Share of the denominator.
    Share,
    /// Events.
    Count,
    /// Mean time per event.
    Avg,
    /// 99th percentile per event.
    P99,
    /// Change in share since the baseline.
    Delta,
    /// The row's label.
    Name,
}

impl SortBy {
    const ORDER: [SortBy; 6] = [
        SortBy::Share,
        SortBy::Count,
        SortBy::Avg,
        SortBy::P99,
        SortBy::Delta,
        SortBy::Name,
    ];

    /// The column's heading.
    pub fn title(self) -> &'static str {
        match self {
            SortBy::Share => "share",
            SortBy::Count => "count",
            SortBy::Avg => "avg us",
            SortBy::P99 => "p99 us",
            SortBy::Delta => "delta",
            SortBy::Name => "row",
        }
    }

    fn next(self) -> SortBy {
        let i = SortBy::ORDER.iter().position(|&s| s == self).unwrap_or(0);
        SortBy::ORDER[(i + 1) % SortBy::ORDER.len()]
    }
}

/// A key, as the app reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Arrows.
    Up,
    /// Arrows.
    Down,
    /// Arrows.
    Left,
    /// Arrows.
    Right,
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Backspace.
    Backspace,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Ctrl-C.
    Interrupt,
}

/// What the app must do for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave.
    Quit,
    /// Pause or resume the guest.
    TogglePause,
    /// Reset the counters.
    Reset,
    /// Mark the current table as the baseline.
    MarkBaseline,
    /// Export the flame graph (SVG) and the tables (JSON).
    Export,
    /// Flip this optimization toggle.
    Toggle(Opt),
    /// Switch between a rolling window and the whole run.
    ToggleWindow,
}

/// The flame graph's view: where the cursor is, what is zoomed, what is
/// searched for. Paths of frame names, so they survive a refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlameView {
    /// The frame drawn full width (empty: the root).
    pub zoom: Vec<String>,
    /// The selected frame (empty: the root).
    pub cursor: Vec<String>,
    /// Frames whose name contains this are highlighted.
    pub search: String,
    /// Typing a search.
    pub typing: bool,
}

/// Everything the user has chosen.
#[derive(Debug, Clone)]
pub struct UiState {
    /// The screen shown.
    pub tab: Tab,
    /// The help overlay is open.
    pub help: bool,
    /// The overhead table's sort column.
    pub sort: SortBy,
    /// The overhead table shows microseconds of CPU per frame, not shares.
    pub per_frame: bool,
    /// The selected row of the overhead table.
    pub row: usize,
    /// The flame graph's view.
    pub flame: FlameView,
    /// A frozen picture (collection continues behind it).
    pub frozen: Option<Snapshot>,
    /// Console lines scrolled up from the bottom.
    pub console_scroll: usize,
    /// The selected toggle.
    pub toggle: usize,
    /// The last thing said to the user (an export's path, an error).
    pub message: Option<String>,
    /// Where the tabs were drawn, for clicks.
    pub tab_areas: Vec<(Rect, Tab)>,
    /// Where the overhead table's first row was drawn and how many rows
    /// were visible, for clicks.
    pub rows_area: Option<(Rect, usize)>,
}

impl Default for UiState {
    fn default() -> Self {
        Self {
            tab: Tab::Overview,
            help: false,
            sort: SortBy::Share,
            per_frame: false,
            row: 0,
            flame: FlameView::default(),
            frozen: None,
            console_scroll: 0,
            toggle: 0,
            message: None,
            tab_areas: Vec::new(),
            rows_area: None,
        }
    }
}

impl UiState {
    /// The picture to draw: the frozen one, or `live`.
    pub fn shown<'a>(&'a self, live: &'a Snapshot) -> &'a Snapshot {
        self.frozen.as_ref().unwrap_or(live)
    }

    /// Handles a key; `live` is the newest picture (for freezing, and for
    /// moving in the flame graph).
    pub fn on_key(&mut self, key: Key, live: &Snapshot) -> Action {
        if key == Key::Interrupt {
            return Action::Quit;
        }
        if self.flame.typing {
            match key {
                Key::Char(c) => self.flame.search.push(c),
                Key::Backspace => {
                    self.flame.search.pop();
                }
                Key::Enter => self.flame.typing = false,
                Key::Esc => {
                    self.flame.typing = false;
                    self.flame.search.clear();
                }
                _ => {}
            }
            return Action::None;
        }
        if self.help {
            // Any key closes help; q still quits.
            self.help = false;
            return if key == Key::Char('q') {
                Action::Quit
            } else {
                Action::None
            };
        }
        match key {
            Key::Char('q') => return Action::Quit,
            Key::Char('?') => self.help = true,
            Key::Tab => self.tab = Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()],
            Key::BackTab => {
                self.tab = Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
            }
            Key::Char(c @ '1'..='6') => self.tab = Tab::ALL[c as usize - '1' as usize],
            Key::Char('p') => return Action::TogglePause,
            Key::Char('r') => return Action::Reset,
            Key::Char('b') => return Action::MarkBaseline,
            Key::Char('e') => return Action::Export,
            Key::Char('w') => return Action::ToggleWindow,
            Key::Char('f') => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some(live.clone()),
                };
                self.message = Some(
                    if self.frozen.is_some() {
                        "frozen: the picture stays still while collection continues (f to thaw)"
                    } else {
                        "live again"
                    }
                    .into(),
                );
            }
            Key::Char('s') if self.tab == Tab::Overheads => self.sort = self.sort.next(),
            Key::Char('u') if self.tab == Tab::Overheads => {
                if live.table.per_frame.is_some() {
                    self.per_frame = !self.per_frame;
                } else {
                    self.message =
                        Some("no frames have flowed yet: no cost per frame to show".into());
                }
            }
            Key::Char(c) if live.toggles.iter().any(|t| t.key == c) => {
                // Toggles flip from every screen, so their effect can be
                // watched on any of them.
                let t = live.toggles.iter().find(|t| t.key == c);
                match t.map(|t| (t.opt, t.blocked.as_deref())) {
                    Some((o, None)) => return Action::Toggle(o),
                    Some((o, Some(why))) => self.message = Some(format!("{}: {why}", o.name())),
                    None => {}
                }
            }
            Key::Char('/') if self.tab == Tab::Flame => {
                self.flame.typing = true;
                self.flame.search.clear();
            }
            _ => return self.on_screen_key(key, live),
        }
        Action::None
    }

    fn on_screen_key(&mut self, key: Key, live: &Snapshot) -> Action {
        let (up, down, left, right) = (
            matches!(key, Key::Up | Key::Char('k')),
            matches!(key, Key::Down | Key::Char('j')),
            matches!(key, Key::Left | Key::Char('h')),
            matches!(key, Key::Right | Key::Char('l')),
        );
        match self.tab {
            Tab::Overheads => {
                let rows = self.shown(live).table.rows.len();
                if up {
                    self.row = self.row.saturating_sub(1);
                } else if down {
                    self.row = (self.row + 1).min(rows.saturating_sub(1));
                } else if key == Key::PageDown {
                    self.row = (self.row + 10).min(rows.saturating_sub(1));
                } else if key == Key::PageUp {
                    self.row = self.row.saturating_sub(10);
                }
            }
            Tab::Flame => {
                let tree = FlameTree::from_folded(&self.shown(live).folded);
                self.flame_key(&tree, key, (up, down, left, right));
            }
            Tab::Console => {
                let n = self.shown(live).console.len();
                if up {
                    self.console_scroll = (self.console_scroll + 1).min(n);
                } else if down {
                    self.console_scroll = self.console_scroll.saturating_sub(1);
                } else if key == Key::PageUp {
                    self.console_scroll = (self.console_scroll + 10).min(n);
                } else if key == Key::PageDown {
                    self.console_scroll = self.console_scroll.saturating_sub(10);
                }
            }
            Tab::Optimizations => {
                let toggles = &self.shown(live).toggles;
                if up {
                    self.toggle = self.toggle.saturating_sub(1);
                } else if down {
                    self.toggle = (self.toggle + 1).min(toggles.len().saturating_sub(1));
                } else if key == Key::Enter || key == Key::Char(' ') {
                    if let Some(t) = toggles.get(self.toggle) {
                        return Action::Toggle(t.opt);
                    }
                } else if let Key::Char(c) = key {
                    if let Some(t) = toggles.iter().find(|t| t.key == c) {
                        return Action::Toggle(t.opt);
                    }
                }
            }
            Tab::Overview | Tab::Path => {}
        }
        Action::None
    }

    fn flame_key(&mut self, tree: &FlameTree, key: Key, dirs: (bool, bool, bool, bool)) {
        let (up, down, left, right) = dirs;
        let cursor = tree.find(&self.flame.cursor).unwrap_or(0);
        let node = tree.node(cursor);
        let path_of = |i: usize| tree.path(i).into_iter().map(String::from).collect();
        if up {
            // Towards the root, but not above the zoomed frame.
            if self.flame.cursor.len() > self.flame.zoom.len() {
                self.flame.cursor.pop();
            }
        } else if down {
            // Into the widest child.
            if let Some(&c) = node.children.iter().max_by_key(|&&c| tree.node(c).total) {
                self.flame.cursor = path_of(c);
            }
        } else if left || right {
            if let Some(p) = node.parent.filter(|_| cursor != 0) {
                let sibs = &tree.node(p).children;
                let i = sibs.iter().position(|&c| c == cursor).unwrap_or(0);
                let j = if right {
                    (i + 1).min(sibs.len() - 1)
                } else {
                    i.saturating_sub(1)
                };
                // Siblings only inside the zoomed frame.
                if self.flame.cursor.len() > self.flame.zoom.len() {
                    self.flame.cursor = path_of(sibs[j]);
                }
            }
        } else if key == Key::Enter {
            self.flame.zoom = self.flame.cursor.clone();
        } else if key == Key::Esc {
            if !self.flame.search.is_empty() {
                self.flame.search.clear();
            } else if !self.flame.zoom.is_empty() {
                self.flame.zoom.pop();
            }
        }
    }

    /// Handles a left click at column `x`, row `y`.
    pub fn on_click(&mut self, x: u16, y: u16) {
        let hit = |r: &Rect| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
        if let Some(&(_, tab)) = self.tab_areas.iter().find(|(r, _)| hit(r)) {
            self.tab = tab;
            self.help = false;
            return;
        }
        if self.tab == Tab::Overheads {
            if let Some((r, first)) = self.rows_area {
                if hit(&r) {
                    self.row = first + (y - r.y) as usize;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiles::snapshot::Snapshot;
    use std::collections::BTreeMap;

    fn snap() -> Snapshot {
        crate::fixtures::busy()
    }

    #[test]
    fn tabs_by_number_tab_and_backtab() {
        let (mut ui, s) = (UiState::default(), snap());
        ui.on_key(Key::Char('3'), &s);
        assert_eq!(ui.tab, Tab::Path);
        ui.on_key(Key::Tab, &s);
        assert_eq!(ui.tab, Tab::Flame);
        ui.on_key(Key::BackTab, &s);
        ui.on_key(Key::BackTab, &s);
        ui.on_key(Key::BackTab, &s);
        assert_eq!(ui.tab, Tab::Overview);
        ui.on_key(Key::BackTab, &s);
        assert_eq!(ui.tab, Tab::Optimizations, "wraps");
        ui.on_key(Key::Char('9'), &s);
        assert_eq!(ui.tab, Tab::Optimizations, "no tab 9");
    }

    #[test]
    fn actions_and_help() {
        let (mut ui, s) = (UiState::default(), snap());
        assert_eq!(ui.on_key(Key::Char('p'), &s), Action::TogglePause);
        assert_eq!(ui.on_key(Key::Char('e'), &s), Action::Export);
        assert_eq!(ui.on_key(Key::Char('b'), &s), Action::MarkBaseline);
        assert_eq!(ui.on_key(Key::Char('r'), &s), Action::Reset);
        assert_eq!(ui.on_key(Key::Char('w'), &s), Action::ToggleWindow);
        assert_eq!(ui.on_key(Key::Interrupt, &s), Action::Quit);
        assert_eq!(
            ui.on_key(Key::Char('c'), &s),
            Action::Toggle(Opt::SendCombining),
            "toggle keys work from every screen"
        );
        assert_eq!(
            ui.on_key(Key::Char('i'), &s),
            Action::Toggle(Opt::KernelIrqchip)
        );
        let mut ended = s.clone();
        for t in &mut ended.toggles {
            t.blocked = Some("the run has ended".into());
        }
        assert_eq!(ui.on_key(Key::Char('i'), &ended), Action::None);
        assert_eq!(
            ui.message.as_deref(),
            Some("kernel-irqchip: the run has ended")
        );
        ui.on_key(Key::Char('6'), &s);
        ui.on_key(Key::Down, &s);
        assert_eq!(
            ui.on_key(Key::Enter, &s),
            Action::Toggle(Opt::SendCombining)
        );
        ui.on_key(Key::Char('1'), &s);
        ui.on_key(Key::Char('?'), &s);
        assert!(ui.help);
        assert_eq!(ui.on_key(Key::Char('2'), &s), Action::None);
        assert!(
            !ui.help && ui.tab == Tab::Overview,
            "a key closes help only"
        );
        ui.on_key(Key::Char('?'), &s);
        assert_eq!(ui.on_key(Key::Char('q'), &s), Action::Quit);
    }

    #[test]
    fn freeze_keeps_the_picture() {
        let (mut ui, s) = (UiState::default(), snap());
        ui.on_key(Key::Char('f'), &s);
        let mut newer = s.clone();
        newer.info.elapsed_seconds += 10.0;
        assert_eq!(
            ui.shown(&newer).info.elapsed_seconds,
            s.info.elapsed_seconds
        );
        ui.on_key(Key::Char('f'), &newer);
        assert_eq!(
            ui.shown(&newer).info.elapsed_seconds,
            newer.info.elapsed_seconds
        );
    }

    #[test]
    fn sort_cycles_and_rows_stay_in_range() {
        let (mut ui, s) = (UiState::default(), snap());
        ui.on_key(Key::Char('2'), &s);
        ui.on_key(Key::Char('s'), &s);
        assert_eq!(ui.sort, SortBy::Count);
        for _ in 0..5 {
            ui.on_key(Key::Char('s'), &s);
        }
        assert_eq!(ui.sort, SortBy::Share, "wraps");
        for _ in 0..100 {
            ui.on_key(Key::Down, &s);
        }
        assert_eq!(ui.row, s.table.rows.len() - 1);
        ui.on_key(Key::PageUp, &s);
        ui.on_key(Key::Char('k'), &s);
        assert_eq!(ui.row, s.table.rows.len() - 12);
    }

    #[test]
    fn flame_moves_zooms_and_searches() {
        let (mut ui, s) = (UiState::default(), snap());
        ui.on_key(Key::Char('4'), &s);
        ui.on_key(Key::Down, &s);
        assert_eq!(ui.flame.cursor, ["vcpu"], "widest child of the root");
        ui.on_key(Key::Char('j'), &s);
        assert_eq!(ui.flame.cursor, ["vcpu", "vmm"]);
        ui.on_key(Key::Right, &s);
        assert_eq!(ui.flame.cursor, ["vcpu", "vmm"], "vmm is the last sibling");
        ui.on_key(Key::Left, &s);
        assert_eq!(ui.flame.cursor, ["vcpu", "vmapp"]);
        ui.on_key(Key::Enter, &s);
        assert_eq!(ui.flame.zoom, ["vcpu", "vmapp"]);
        ui.on_key(Key::Up, &s);
        assert_eq!(ui.flame.cursor, ["vcpu", "vmapp"], "not above the zoom");
        ui.on_key(Key::Char('/'), &s);
        for c in "tun".chars() {
            ui.on_key(Key::Char(c), &s);
        }
        assert_eq!(ui.on_key(Key::Char('q'), &s), Action::None, "typing");
        ui.on_key(Key::Backspace, &s);
        ui.on_key(Key::Enter, &s);
        assert_eq!(ui.flame.search, "tun");
        ui.on_key(Key::Esc, &s);
        assert!(ui.flame.search.is_empty(), "Esc clears the search first");
        ui.on_key(Key::Esc, &s);
        assert_eq!(ui.flame.zoom, ["vcpu"], "then zooms out");
        // A refresh without the cursor's frame does not break anything.
        let mut empty = s.clone();
        empty.folded = BTreeMap::new();
        ui.on_key(Key::Down, &empty);
        ui.on_key(Key::Left, &empty);
    }

    #[test]
    fn clicks_pick_tabs_and_rows() {
        let (mut ui, s) = (UiState::default(), snap());
        ui.tab_areas = vec![
            (Rect::new(0, 0, 10, 1), Tab::Overview),
            (Rect::new(10, 0, 10, 1), Tab::Overheads),
        ];
        ui.on_click(12, 0);
        assert_eq!(ui.tab, Tab::Overheads);
        ui.rows_area = Some((Rect::new(0, 5, 80, 10), 3));
        ui.on_click(4, 7);
        assert_eq!(ui.row, 5);
        let _ = s;
    }
}
