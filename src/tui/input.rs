//! The UI state of `meshtop attach` and its key handling; no terminal needed.
//!
//! What each key does is looked up in [`super::keys`], the one table of
//! bindings. [`UiState`] is everything the user chose (view, window, sort, filter,
//! selections, overlays) and nothing the sidecars sent: that lives in the
//! [`Model`]. [`UiState::handle_key`] reads the model only to know what is on
//! screen (how many rows, which upstream is under the cursor), so the same
//! key on the same model always gives the same state — which is what the
//! state-machine tests rely on.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::keys::{self, Command, Context, PlayerCommand};
use super::model::{
    EdgeRow, ErrorKey, GroupBy, GroupKey, GroupRow, Model, Scale, SidecarState, SortColumn,
    TapEntry, UpstreamKey, UpstreamRow, Window, sort_groups, sort_rows,
};
use crate::filter::FilterExpr;

/// The views, in the order of their number keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Upstreams,
    Detail,
    Errors,
    Tap,
    Sidecars,
    Edges,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Upstreams,
        Tab::Detail,
        Tab::Errors,
        Tab::Tap,
        Tab::Sidecars,
        Tab::Edges,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Upstreams => "Upstreams",
            Tab::Detail => "Detail",
            Tab::Errors => "Errors",
            Tab::Tap => "Tap",
            Tab::Sidecars => "Sidecars",
            Tab::Edges => "Edges",
        }
    }

    /// Position in [`Tab::ALL`], which is also its number key minus one.
    pub fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_digit(digit: char) -> Option<Tab> {
        let n = digit.to_digit(10)? as usize;
        Tab::ALL.get(n.checked_sub(1)?).copied()
    }

    fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    fn previous(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

/// What the app should do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The key changed nothing.
    None,
    /// The state changed: draw now rather than at the next tick.
    Redraw,
    /// Leave the UI (the app restores the terminal).
    Quit,
    /// A replay key: the app passes it to the player.
    Player(PlayerCommand),
}

/// The list a request was opened from: `n` and `p` step through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestList {
    /// The tap, as the filter shows it.
    Tap,
    /// The failing requests kept of one error group.
    Failures(ErrorKey),
}

/// The request inspector (`enter` on a request): one request, whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspector {
    pub list: RequestList,
    /// The request's tap sequence number ([`Model::tap_first_seq`]).
    pub seq: u64,
    /// A copy of the request: it stays on screen after the tap and its
    /// group let it go.
    pub entry: TapEntry,
    /// The equivalent `curl` or `grpcurl` command is shown (`c`).
    pub command: bool,
    /// Lines scrolled past, when the request does not fit the screen.
    pub scroll: usize,
}

/// Cursor positions, one per view that has a list. Positions are indexes
/// into what the view shows, clamped when the list shrinks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Row of the upstreams table (sorted as displayed).
    pub upstream: usize,
    /// The upstream under the cursor when it last moved: rows reorder as
    /// rates change, and the cursor should stay on the same upstream rather
    /// than on the same line.
    pub upstream_key: Option<UpstreamKey>,
    /// Row of the detail view's route table.
    pub route: usize,
    pub error: usize,
    /// Row of an error group's failing requests (oldest first).
    pub failure: usize,
    pub sidecar: usize,
    /// Row of the edges table (sorted as displayed).
    pub edge: usize,
    /// Row of the grouped upstreams table (`b`), and the group under the
    /// cursor when it last moved, kept as `upstream_key` is.
    pub group: usize,
    pub group_key: Option<GroupKey>,
}

/// Where `esc` returns after `enter` on a grouped row (see
/// [`UiState::group_back`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupBack {
    pub filter: FilterExpr,
    pub group_by: GroupBy,
    /// The row `enter` was pressed on, selected again.
    pub row: GroupKey,
}

/// Everything the user chose; see the module documentation.
#[derive(Clone, Debug)]
pub struct UiState {
    pub tab: Tab,
    pub window: Window,
    pub sort: SortColumn,
    pub reverse: bool,
    /// The screen is frozen; the app keeps ingesting into the live model and
    /// draws a snapshot taken when this turned on.
    pub paused: bool,
    pub failures_only: bool,
    /// The filter in force (only replaced by a valid expression).
    pub filter: FilterExpr,
    /// The filter being typed after `/`; while `Some`, keys edit it.
    pub filter_input: Option<String>,
    /// Why the last expression entered was rejected, shown under the input.
    pub filter_error: Option<String>,
    pub help: bool,
    pub selected: Selection,
    /// The upstream the detail view shows (set by `enter`).
    pub detail: Option<UpstreamKey>,
    /// Where `esc` returns to from the detail view.
    pub detail_from: Tab,
    /// The error group whose failing requests the Errors view lists (set
    /// by `enter` on a group, cleared by `esc`).
    pub failures_of: Option<ErrorKey>,
    /// The grouping and filter `enter` on a grouped row left (it adds a
    /// term and groups by authority); `esc` returns to them, until the
    /// filter or the grouping is changed otherwise.
    pub group_back: Option<GroupBack>,
    /// The request open in the inspector, over the view it was opened
    /// from; `esc` closes it.
    pub inspector: Option<Inspector>,
    /// Text `y` copied, for the app to hand to the terminal's clipboard
    /// (OSC 52) and clear.
    pub clipboard: Option<String>,
    /// The tap shows the newest requests as they arrive.
    pub tap_follow: bool,
    /// How latency histograms lay out their buckets (`h`).
    pub latency_scale: Scale,
    /// How the Upstreams table groups its rows (`b`).
    pub group_by: GroupBy,
    /// The highlighted tap request when not following, as a tap sequence
    /// number ([`Model::tap_first_seq`]): an index would drift as requests
    /// arrive and old ones are evicted, a sequence number stays on the same
    /// request.
    pub tap_cursor: u64,
    /// Rows PgUp/PgDn move; the app may set it from the terminal height.
    pub page_rows: usize,
    /// Columns of the screen, as the app last drew it: how far the
    /// inspector's wrapped lines scroll depends on it.
    pub page_width: u16,
    /// Requests are being recorded to a file (shows `● REC`).
    pub recording: bool,
    /// Where a replay is (shows the progress bar); `None` when live.
    pub replay: Option<crate::tui::replay::Progress>,
    /// A one-off message for the status line (e.g. why a key did nothing),
    /// cleared by the next key.
    pub hint: Option<String>,
    /// What the session is about, kept at the head of the status line
    /// (the demo: where emojivoto answers).
    pub note: Option<String>,
}

/// `n` or `p` in the inspector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Next,
    Previous,
}

/// How far a movement key moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Move {
    Up(usize),
    Down(usize),
    Top,
    Bottom,
}

impl Move {
    /// The new position in a list of `len` entries.
    fn apply(self, current: usize, len: usize) -> usize {
        let last = len.saturating_sub(1);
        match self {
            Move::Up(n) => current.min(last).saturating_sub(n),
            Move::Down(n) => current.saturating_add(n).min(last),
            Move::Top => 0,
            Move::Bottom => last,
        }
    }
}

impl UiState {
    pub fn new(filter: FilterExpr) -> Self {
        UiState {
            tab: Tab::Upstreams,
            window: Window::default(),
            sort: SortColumn::default(),
            reverse: false,
            paused: false,
            failures_only: false,
            filter,
            filter_input: None,
            filter_error: None,
            help: false,
            selected: Selection::default(),
            detail: None,
            detail_from: Tab::Upstreams,
            failures_of: None,
            group_back: None,
            inspector: None,
            clipboard: None,
            tap_follow: true,
            latency_scale: Scale::default(),
            group_by: GroupBy::default(),
            tap_cursor: 0,
            page_rows: 10,
            page_width: 80,
            replay: None,
            recording: false,
            hint: None,
            note: None,
        }
    }

    /// Applies one key. `model` is what is on screen (the frozen snapshot
    /// while paused), so that cursors move over the rows the user sees.
    /// What each key does is looked up in [`keys::BINDINGS`].
    pub fn handle_key(&mut self, key: KeyEvent, model: &Model) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let had_hint = self.hint.take().is_some();
        let context = self.context();
        let action = match keys::lookup(context, self.tab, key) {
            Some(binding) => self.run(binding.command, key, model),
            None => match key.code {
                KeyCode::Char(c)
                    if context == Context::FilterInput
                        && !key
                            .modifiers
                            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
                {
                    self.edit_filter(|input| input.push(c))
                }
                _ => Action::None,
            },
        };
        match action {
            Action::None if had_hint => Action::Redraw,
            action => action,
        }
    }

    /// Where the keyboard is: typing a filter, in help, else browsing a
    /// replay or live data.
    pub fn context(&self) -> Context {
        if self.filter_input.is_some() {
            Context::FilterInput
        } else if self.help {
            Context::Help
        } else {
            self.browse_context()
        }
    }

    /// What is under the help overlay and the filter input: the
    /// inspector, else browsing a replay or live data.
    pub fn browse_context(&self) -> Context {
        if self.inspector.is_some() {
            Context::Inspector
        } else if self.replay.is_some() {
            Context::Replay
        } else {
            Context::Live
        }
    }

    fn run(&mut self, command: Command, key: KeyEvent, model: &Model) -> Action {
        let page = self.page_rows.max(1);
        match command {
            Command::Quit => return Action::Quit,
            Command::Player(command) => return Action::Player(command),
            Command::OpenHelp => self.help = true,
            Command::CloseHelp => self.help = false,
            Command::EditFilter => {
                self.filter_input = Some(self.filter.as_str().to_owned());
                self.filter_error = None;
            }
            Command::ApplyFilter => self.apply_filter(),
            Command::CancelFilter => {
                self.filter_input = None;
                self.filter_error = None;
            }
            Command::ClearFilter => return self.edit_filter(String::clear),
            Command::DeleteChar => {
                return self.edit_filter(|input| {
                    input.pop();
                });
            }
            Command::Pause => self.paused = !self.paused,
            Command::FailuresOnly => self.failures_only = !self.failures_only,
            Command::NextWindow => self.window = self.window.next(),
            Command::NextSort => self.sort = self.sort.next(),
            Command::ReverseSort => self.reverse = !self.reverse,
            Command::Follow => self.toggle_follow(model),
            Command::LatencyScale => self.latency_scale = self.latency_scale.toggled(),
            Command::GroupBy => {
                self.group_back = None;
                self.group_by = self.group_by.next();
                self.selected.group = 0;
                self.selected.group_key = None;
            }
            Command::View => {
                let KeyCode::Char(digit) = key.code else {
                    return Action::None;
                };
                let Some(tab) = Tab::from_digit(digit) else {
                    return Action::None;
                };
                self.switch_to(tab, model);
            }
            Command::NextView => self.cycle_tab(model, Tab::next),
            Command::PreviousView => self.cycle_tab(model, Tab::previous),
            Command::DrillIn => self.drill_in(model),
            Command::Back => {
                if self.inspector.take().is_some() {
                } else if self.tab == Tab::Errors && self.failures_of.is_some() {
                    self.failures_of = None;
                } else if self.tab == Tab::Detail {
                    self.tab = self.detail_from;
                } else if self.tab == Tab::Upstreams
                    && let Some(back) = self.group_back.take()
                {
                    self.filter = back.filter;
                    self.group_by = back.group_by;
                    self.selected.group_key = Some(back.row);
                } else {
                    return Action::None;
                }
            }
            Command::CopyRequest => self.copy_request(),
            Command::ShowCommand => {
                if let Some(inspector) = &mut self.inspector {
                    inspector.command = !inspector.command;
                    inspector.scroll = 0;
                }
            }
            Command::NextRequest => return self.step_request(model, Step::Next),
            Command::PreviousRequest => return self.step_request(model, Step::Previous),
            Command::Up => self.move_cursor(Move::Up(1), model),
            Command::Down => self.move_cursor(Move::Down(1), model),
            Command::PageUp => self.move_cursor(Move::Up(page), model),
            Command::PageDown => self.move_cursor(Move::Down(page), model),
            Command::Top => self.move_cursor(Move::Top, model),
            Command::Bottom => self.move_cursor(Move::Bottom, model),
        }
        Action::Redraw
    }

    /// The rows of the upstreams table, in display order.
    pub fn upstream_rows(&self, model: &Model) -> Vec<UpstreamRow> {
        let mut rows = model.upstream_rows(self.window, &self.filter, self.failures_only);
        sort_rows(&mut rows, self.sort, self.reverse);
        rows
    }

    /// The rows of the grouped upstreams table, in display order; empty
    /// when grouped by authority (see [`UiState::upstream_rows`]). With
    /// failures only, the groups with failures in the window.
    pub fn group_rows(&self, model: &Model) -> Vec<GroupRow> {
        let Some(grouped) = model.grouped(self.group_by, self.window, &self.filter) else {
            return Vec::new();
        };
        let mut rows: Vec<GroupRow> = grouped
            .rows
            .iter()
            .filter(|r| !self.failures_only || r.success.is_some_and(|s| s < 1.0))
            .cloned()
            .collect();
        sort_groups(&mut rows, self.sort, self.reverse);
        rows
    }

    /// The cursor's row in `rows` (from [`UiState::group_rows`]), kept on
    /// its group as [`UiState::selected_upstream`] keeps it on its upstream.
    pub fn selected_group(&self, rows: &[GroupRow]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        let by_key = self
            .selected
            .group_key
            .as_ref()
            .and_then(|key| rows.iter().position(|r| &r.key == key));
        Some(by_key.unwrap_or(self.selected.group.min(rows.len() - 1)))
    }

    /// The cursor's row in `rows` (as returned by [`UiState::upstream_rows`]):
    /// the remembered upstream if it is still listed, else the remembered
    /// line, clamped.
    pub fn selected_upstream(&self, rows: &[UpstreamRow]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        let by_key = self
            .selected
            .upstream_key
            .as_ref()
            .and_then(|key| rows.iter().position(|r| &r.key == key));
        Some(by_key.unwrap_or(self.selected.upstream.min(rows.len() - 1)))
    }

    /// The rows of the edges table, in display order (caller, then
    /// callee); empty when the filter does not apply to edges; with
    /// failures-only, the edges with failures in the window.
    pub fn edge_rows(&self, model: &Model) -> Vec<EdgeRow> {
        let mut rows = match &*model.edges(self.window, &self.filter) {
            Ok(rows) => rows.clone(),
            Err(_) => Vec::new(),
        };
        if self.failures_only {
            rows.retain(|row| row.failures > 0);
        }
        rows.sort_by(|a, b| (&a.caller, &a.authority).cmp(&(&b.caller, &b.authority)));
        rows
    }

    /// Whether a tap request is shown under the filter and failures-only.
    pub fn tap_shows(&self, entry: &TapEntry) -> bool {
        (!self.failures_only || entry.event.is_failure())
            && self
                .filter
                .matches_request(&entry.event.sidecar, &entry.event)
    }

    /// The sidecars the Sidecars view lists: those whose name passes the
    /// filter's `sidecar` terms (every one without such terms).
    pub fn sidecar_rows<'m>(&self, model: &'m Model) -> Vec<&'m SidecarState> {
        model
            .sidecars()
            .iter()
            .filter(|s| self.filter.matches_sidecar(s.name()))
            .collect()
    }

    /// The tap requests shown, oldest first, each with its sequence number.
    pub fn tap_entries<'m>(&self, model: &'m Model) -> Vec<(u64, &'m TapEntry)> {
        let first = model.tap_first_seq();
        model
            .tap()
            .iter()
            .zip(first..)
            .filter(|(entry, _)| self.tap_shows(entry))
            .map(|(entry, seq)| (seq, entry))
            .collect()
    }

    /// The highlighted position in `entries` (from [`UiState::tap_entries`]):
    /// the newest when following, else the cursor's request or the newest
    /// shown request before it.
    pub fn tap_selected(&self, entries: &[(u64, &TapEntry)]) -> Option<usize> {
        if entries.is_empty() {
            return None;
        }
        if self.tap_follow {
            return Some(entries.len() - 1);
        }
        let after = entries.partition_point(|(seq, _)| *seq <= self.tap_cursor);
        Some(after.saturating_sub(1))
    }

    /// Changes the filter being typed; an edit clears the last error.
    fn edit_filter(&mut self, edit: impl FnOnce(&mut String)) -> Action {
        let Some(input) = self.filter_input.as_mut() else {
            return Action::None;
        };
        edit(input);
        self.filter_error = None;
        Action::Redraw
    }

    fn apply_filter(&mut self) {
        let Some(input) = self.filter_input.as_ref() else {
            return;
        };
        match input.parse::<FilterExpr>() {
            Ok(filter) => {
                self.group_back = None;
                self.filter = filter;
                self.filter_input = None;
                self.filter_error = None;
            }
            // The previous filter stays in force; the input stays open so
            // the user can fix the term the error names.
            Err(err) => self.filter_error = Some(err.to_string()),
        }
    }

    /// Switches view; the detail view needs an upstream to show, so without
    /// one it stays where it is and says why.
    fn switch_to(&mut self, tab: Tab, model: &Model) {
        if tab != Tab::Detail {
            self.tab = tab;
            return;
        }
        if self.tab == Tab::Detail {
            return;
        }
        let under_cursor = || {
            if self.group_by != GroupBy::Authority {
                return self.group_upstream(model);
            }
            let rows = self.upstream_rows(model);
            self.selected_upstream(&rows).map(|i| rows[i].key.clone())
        };
        // From the upstreams table, `2` means "this one" like `enter`;
        // elsewhere it returns to the upstream last drilled into.
        let target = if self.tab == Tab::Upstreams {
            under_cursor().or_else(|| self.detail.clone())
        } else {
            self.detail.clone().or_else(under_cursor)
        };
        match target {
            Some(key) => self.open_detail(key),
            None => {
                self.hint =
                    Some("no upstream selected: choose one in Upstreams (1) and press enter".into())
            }
        }
    }

    fn cycle_tab(&mut self, model: &Model, step: fn(Tab) -> Tab) {
        let mut tab = step(self.tab);
        if tab == Tab::Detail && self.detail.is_none() && self.upstream_rows(model).is_empty() {
            tab = step(tab);
        }
        self.switch_to(tab, model);
    }

    fn open_detail(&mut self, key: UpstreamKey) {
        if self.tab != Tab::Detail {
            self.detail_from = self.tab;
        }
        if self.detail.as_ref() != Some(&key) {
            self.selected.route = 0;
        }
        self.detail = Some(key);
        self.tab = Tab::Detail;
    }

    /// The upstream of the grouped row under the cursor: a route's; the
    /// other groups span upstreams.
    fn group_upstream(&self, model: &Model) -> Option<UpstreamKey> {
        let rows = self.group_rows(model);
        match self.selected_group(&rows).map(|i| &rows[i].key) {
            Some(GroupKey::Route { upstream, .. }) => Some(upstream.clone()),
            _ => None,
        }
    }

    /// Enter on a grouped row: a route opens its upstream's Detail; a
    /// sidecar, a caller or a status class becomes a term of the filter,
    /// and the table groups by authority again, showing the upstreams it
    /// selects: a calling sidecar's outbound ones, or those a client
    /// address called. `esc` returns to the grouping ([`GroupBack`]).
    fn drill_into_group(&mut self, model: &Model) {
        let rows = self.group_rows(model);
        let Some(row) = self.selected_group(&rows).map(|i| &rows[i]) else {
            self.hint = Some("nothing selected".into());
            return;
        };
        let term = match &row.key {
            GroupKey::Route { upstream, .. } => {
                self.open_detail(upstream.clone());
                return;
            }
            GroupKey::Sidecar(name) if !name.contains('"') => format!("sidecar=\"{name}\""),
            GroupKey::Caller {
                name,
                sidecar: true,
            } if !name.contains('"') => format!("sidecar=\"{name}\" direction=outbound"),
            GroupKey::Sidecar(_) | GroupKey::Caller { sidecar: true, .. } => {
                self.hint = Some("this sidecar's name cannot be written as a filter".into());
                return;
            }
            GroupKey::Caller {
                name,
                sidecar: false,
            } if name.parse::<std::net::IpAddr>().is_ok() => format!("client={name}"),
            GroupKey::Caller { .. } => {
                self.hint = Some(
                    "these callers are past the sidecar's bound on client addresses: no filter selects them"
                        .into(),
                );
                return;
            }
            GroupKey::Status(class) => match class.filter_terms() {
                Some(terms) => terms.to_owned(),
                None => {
                    self.hint = Some("no filter term selects requests without a status".into());
                    return;
                }
            },
        };
        let combined = if self.filter.is_empty() {
            term
        } else {
            format!("{} {term}", self.filter.as_str())
        };
        match combined.parse::<FilterExpr>() {
            Ok(filter) => {
                self.group_back = Some(GroupBack {
                    filter: std::mem::replace(&mut self.filter, filter),
                    group_by: self.group_by,
                    row: row.key.clone(),
                });
                self.group_by = GroupBy::Authority;
            }
            Err(err) => self.hint = Some(err.to_string()),
        }
    }

    /// `enter`: an upstream opens its detail, a request the inspector, an
    /// error group the list of its failing requests.
    fn drill_in(&mut self, model: &Model) {
        let nothing = |ui: &mut UiState| ui.hint = Some("nothing selected".into());
        match self.tab {
            Tab::Upstreams if self.group_by != GroupBy::Authority => {
                self.drill_into_group(model);
            }
            Tab::Upstreams => {
                let rows = self.upstream_rows(model);
                match self.selected_upstream(&rows) {
                    Some(i) => self.open_detail(rows[i].key.clone()),
                    None => nothing(self),
                }
            }
            Tab::Errors if self.failures_of.is_some() => {
                let entries = self.failure_entries(model);
                match entries.len().checked_sub(1) {
                    Some(last) => {
                        let (seq, entry) = entries[self.selected.failure.min(last)];
                        self.inspect(self.failures_list(), seq, entry);
                    }
                    None => nothing(self),
                }
            }
            Tab::Errors => {
                let errors = model.errors(&self.filter, None);
                let Some(last) = errors.len().checked_sub(1) else {
                    return nothing(self);
                };
                let group = errors[self.selected.error.min(last)].key.clone();
                self.failures_of = Some(group);
                // The newest first under the cursor, as in the tap.
                self.selected.failure = self.failure_entries(model).len().saturating_sub(1);
            }
            Tab::Tap => {
                let entries = self.tap_entries(model);
                match self.tap_selected(&entries) {
                    Some(i) => self.inspect(RequestList::Tap, entries[i].0, entries[i].1),
                    None => nothing(self),
                }
            }
            Tab::Edges => {
                let rows = self.edge_rows(model);
                match rows.len().checked_sub(1) {
                    Some(last) => self.open_detail(rows[self.selected.edge.min(last)].upstream()),
                    None => nothing(self),
                }
            }
            Tab::Detail | Tab::Sidecars => {}
        }
    }

    fn failures_list(&self) -> RequestList {
        match &self.failures_of {
            Some(group) => RequestList::Failures(group.clone()),
            None => RequestList::Tap,
        }
    }

    fn inspect(&mut self, list: RequestList, seq: u64, entry: &TapEntry) {
        self.inspector = Some(Inspector {
            list,
            seq,
            entry: entry.clone(),
            command: false,
            scroll: 0,
        });
    }

    /// The failing requests the Errors view lists for the group opened
    /// (`failures_of`), those of them that pass the filter, oldest first.
    pub fn failure_entries<'m>(&self, model: &'m Model) -> Vec<(u64, &'m TapEntry)> {
        match &self.failures_of {
            Some(group) => self.request_list(&RequestList::Failures(group.clone()), model),
            None => Vec::new(),
        }
    }

    /// The requests of a list, as the filter shows them, oldest first, each
    /// with its tap sequence number.
    pub fn request_list<'m>(
        &self,
        list: &RequestList,
        model: &'m Model,
    ) -> Vec<(u64, &'m TapEntry)> {
        match list {
            RequestList::Tap => self.tap_entries(model),
            RequestList::Failures(group) => model
                .failures(group)
                .into_iter()
                .filter(|(_, entry)| {
                    self.filter
                        .matches_request(&entry.event.sidecar, &entry.event)
                })
                .collect(),
        }
    }

    /// `n` / `p`: the next (newer) or previous (older) request of the list
    /// the inspector was opened from. The list's cursor follows, so `esc`
    /// returns to the request last shown.
    fn step_request(&mut self, model: &Model, step: Step) -> Action {
        let Some(inspector) = &self.inspector else {
            return Action::None;
        };
        let list = inspector.list.clone();
        let seq = inspector.seq;
        let entries = self.request_list(&list, model);
        // By sequence number, so a request the list let go meanwhile still
        // has a next and a previous.
        let found = match step {
            Step::Next => entries.iter().position(|(s, _)| *s > seq),
            Step::Previous => entries.iter().rposition(|(s, _)| *s < seq),
        };
        let Some(i) = found else {
            self.hint = Some(
                match step {
                    Step::Next => "no newer request in this list",
                    Step::Previous => "no older request in this list",
                }
                .into(),
            );
            return Action::Redraw;
        };
        let (seq, entry) = entries[i];
        let command = self.inspector.as_ref().is_some_and(|i| i.command);
        self.inspect(list.clone(), seq, entry);
        if let Some(inspector) = &mut self.inspector {
            inspector.command = command;
        }
        match list {
            RequestList::Tap => {
                self.tap_follow = false;
                self.tap_cursor = seq;
            }
            RequestList::Failures(_) => self.selected.failure = i,
        }
        Action::Redraw
    }

    /// `y`: the request as JSON, as the sidecar sent it, for the clipboard.
    fn copy_request(&mut self) {
        let Some(inspector) = &self.inspector else {
            return;
        };
        let message = crate::schema::Message::Request(inspector.entry.event.clone());
        match serde_json::to_string(&message) {
            Ok(json) => {
                self.hint = Some(format!(
                    "copied the request as JSON ({} bytes) to the clipboard (OSC 52)",
                    json.len()
                ));
                self.clipboard = Some(json);
            }
            Err(err) => self.hint = Some(format!("cannot copy the request: {err}")),
        }
    }

    fn move_cursor(&mut self, movement: Move, model: &Model) {
        if let Some(inspector) = &self.inspector {
            // The inspector scrolls, as far as its last line shows.
            let lines = super::views::inspector_lines(model, inspector, self.page_width);
            let last = lines.saturating_sub(self.page_rows.saturating_sub(1).max(1));
            let scroll = match movement {
                Move::Up(n) => inspector.scroll.min(last).saturating_sub(n),
                Move::Down(n) => inspector.scroll.saturating_add(n).min(last),
                Move::Top => 0,
                Move::Bottom => last,
            };
            if let Some(inspector) = &mut self.inspector {
                inspector.scroll = scroll;
            }
            return;
        }
        match self.tab {
            Tab::Upstreams if self.group_by != GroupBy::Authority => {
                let rows = self.group_rows(model);
                let current = self.selected_group(&rows).unwrap_or(0);
                let next = movement.apply(current, rows.len());
                self.selected.group = next;
                self.selected.group_key = rows.get(next).map(|r| r.key.clone());
            }
            Tab::Upstreams => {
                let rows = self.upstream_rows(model);
                let current = self.selected_upstream(&rows).unwrap_or(0);
                let next = movement.apply(current, rows.len());
                self.selected.upstream = next;
                self.selected.upstream_key = rows.get(next).map(|r| r.key.clone());
            }
            Tab::Detail => {
                let len = self
                    .detail
                    .as_ref()
                    .map_or(0, |key| model.route_figures(key, self.window).rows().len());
                self.selected.route = movement.apply(self.selected.route, len);
            }
            Tab::Errors if self.failures_of.is_some() => {
                let len = self.failure_entries(model).len();
                self.selected.failure = movement.apply(self.selected.failure, len);
            }
            Tab::Errors => {
                let len = model.errors(&self.filter, None).len();
                self.selected.error = movement.apply(self.selected.error, len);
            }
            Tab::Sidecars => {
                self.selected.sidecar =
                    movement.apply(self.selected.sidecar, self.sidecar_rows(model).len());
            }
            Tab::Tap => self.move_tap_cursor(movement, model),
            Tab::Edges => {
                self.selected.edge =
                    movement.apply(self.selected.edge, self.edge_rows(model).len());
            }
        }
    }

    /// Scrolling up leaves follow mode (the view then stays on the same
    /// requests while new ones arrive); reaching the newest again, by
    /// scrolling down or `G`, resumes it.
    fn move_tap_cursor(&mut self, movement: Move, model: &Model) {
        let entries = self.tap_entries(model);
        let Some(current) = self.tap_selected(&entries) else {
            self.tap_follow = true;
            return;
        };
        let next = movement.apply(current, entries.len());
        if next + 1 == entries.len() && matches!(movement, Move::Down(_) | Move::Bottom) {
            self.tap_follow = true;
        } else {
            self.tap_follow = false;
            self.tap_cursor = entries[next].0;
        }
    }

    fn toggle_follow(&mut self, model: &Model) {
        if self.tap_follow {
            // Stay on what is on screen now.
            let entries = self.tap_entries(model);
            self.tap_cursor = entries.last().map_or(0, |(seq, _)| *seq);
            self.tap_follow = false;
        } else {
            self.tap_follow = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn movements_stay_inside_the_list() {
        assert_eq!(Move::Up(1).apply(0, 3), 0);
        assert_eq!(Move::Down(5).apply(1, 3), 2);
        assert_eq!(Move::Bottom.apply(0, 0), 0);
        assert_eq!(Move::Up(1).apply(7, 3), 1);
    }

    #[test]
    fn key_releases_are_ignored() {
        let model = Model::new(Vec::new());
        let mut ui = UiState::new(FilterExpr::default());
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(ui.handle_key(release, &model), Action::None);
    }

    #[test]
    fn detail_without_any_upstream_stays_put_with_a_hint() {
        let model = Model::new(Vec::new());
        let mut ui = UiState::new(FilterExpr::default());
        assert_eq!(
            ui.handle_key(key(KeyCode::Char('2')), &model),
            Action::Redraw
        );
        assert_eq!(ui.tab, Tab::Upstreams);
        assert!(ui.hint.is_some());
        ui.handle_key(key(KeyCode::Tab), &model);
        assert_eq!(
            ui.tab,
            Tab::Errors,
            "tab skips the detail view without an upstream"
        );
    }
}
