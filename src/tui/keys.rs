//! Every key binding of the terminal UI in one table: the keys, the
//! context they work in, what they do, and how help and the status line
//! describe them.
//!
//! [`UiState::handle_key`](super::input::UiState::handle_key) looks keys up
//! here, the `?` overlay lists [`help`] and the status line shows [`hints`],
//! so the three cannot disagree: a key that is not in the table does nothing,
//! and a binding in the table is listed wherever it works.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::input::Tab;

/// Where the keyboard is: what a key means depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// Browsing live data (`attach`, `demo`).
    Live,
    /// Browsing a recording (`replay`): some keys drive the player instead.
    Replay,
    /// The `?` overlay is open.
    Help,
    /// A filter is being typed after `/`.
    FilterInput,
    /// One request is open in the inspector (`enter` on a request).
    Inspector,
}

impl Context {
    pub const ALL: [Context; 5] = [
        Context::Live,
        Context::Replay,
        Context::Help,
        Context::FilterInput,
        Context::Inspector,
    ];
}

/// What a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Quit,
    OpenHelp,
    CloseHelp,
    EditFilter,
    /// Freeze the screen while data keeps arriving (live only).
    Pause,
    FailuresOnly,
    NextWindow,
    NextSort,
    ReverseSort,
    /// Tap only: follow the newest requests, or stop following.
    Follow,
    /// Detail only: the latency histogram on a log or a linear scale.
    LatencyScale,
    /// Upstreams only: the next grouping of the rows.
    GroupBy,
    /// The view of the digit pressed (`1` … `6`).
    View,
    NextView,
    PreviousView,
    DrillIn,
    Back,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Player(PlayerCommand),
    ApplyFilter,
    CancelFilter,
    ClearFilter,
    DeleteChar,
    /// Inspector: the request as JSON to the clipboard (OSC 52).
    CopyRequest,
    /// Inspector: the equivalent `curl` / `grpcurl` command, or the fields.
    ShowCommand,
    /// Inspector: the next (newer) request of the list it came from.
    NextRequest,
    /// Inspector: the previous (older) request of that list.
    PreviousRequest,
}

/// What the replay keys ask of the player; the app carries them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlayerCommand {
    PlayPause,
    Faster,
    Slower,
    SeekBack,
    SeekForward,
    SeekStart,
    SeekEnd,
}

/// One key chord: a key code and the modifiers that must be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chord {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

const fn key(code: KeyCode) -> Chord {
    Chord {
        code,
        modifiers: KeyModifiers::NONE,
    }
}

const fn ch(c: char) -> Chord {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Chord {
    Chord {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::CONTROL,
    }
}

/// How the status line names a binding: its keys, then a word or two. Some
/// words follow the state (`pause` / `resume`); see [`hints`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    pub keys: &'static str,
    pub text: &'static str,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub chords: &'static [Chord],
    pub contexts: &'static [Context],
    /// Only in this view (e.g. `f` in Tap); `None`: in every view.
    pub tab: Option<Tab>,
    pub command: Command,
    /// The keys as help lists them.
    pub keys: &'static str,
    pub help: &'static str,
    pub hint: Option<Hint>,
}

const BROWSE: &[Context] = &[Context::Live, Context::Replay];
const LIVE: &[Context] = &[Context::Live];
const REPLAY: &[Context] = &[Context::Replay];
const HELP: &[Context] = &[Context::Help];
const FILTER: &[Context] = &[Context::FilterInput];
const INSPECTOR: &[Context] = &[Context::Inspector];
/// Where `g` and `G` mean something else, Home and End still move.
const REPLAY_AND_INSPECT: &[Context] = &[Context::Replay, Context::Inspector];
/// Browsing, and scrolling the inspector.
const BROWSE_AND_INSPECT: &[Context] = &[Context::Live, Context::Replay, Context::Inspector];
const EVERYWHERE: &[Context] = &Context::ALL;

const fn hint(keys: &'static str, text: &'static str) -> Option<Hint> {
    Some(Hint { keys, text })
}

/// Every binding, in the order help lists them and the status line shows
/// their hints. Typing text into the filter is the one input not listed
/// here: any other character is inserted (see
/// [`UiState::handle_key`](super::input::UiState::handle_key)).
pub static BINDINGS: &[Binding] = &[
    Binding {
        chords: &[ch('?')],
        contexts: BROWSE_AND_INSPECT,
        tab: None,
        command: Command::OpenHelp,
        keys: "?",
        help: "this help (esc or ? closes it)",
        hint: hint("?", "help"),
    },
    Binding {
        chords: &[key(KeyCode::Esc), ch('?')],
        contexts: HELP,
        tab: None,
        command: Command::CloseHelp,
        keys: "esc, ?",
        help: "close this help",
        hint: None,
    },
    Binding {
        chords: &[ch('q')],
        contexts: &[
            Context::Live,
            Context::Replay,
            Context::Help,
            Context::Inspector,
        ],
        tab: None,
        command: Command::Quit,
        keys: "q, ctrl-c",
        help: "quit",
        hint: hint("q", "quit"),
    },
    Binding {
        chords: &[ctrl('c')],
        contexts: EVERYWHERE,
        tab: None,
        command: Command::Quit,
        keys: "ctrl-c",
        help: "quit, even while typing a filter",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Tab)],
        contexts: BROWSE,
        tab: None,
        command: Command::NextView,
        keys: "tab, shift-tab",
        help: "next / previous view",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::BackTab)],
        contexts: BROWSE,
        tab: None,
        command: Command::PreviousView,
        keys: "shift-tab",
        help: "previous view",
        hint: None,
    },
    Binding {
        chords: &[ch('1'), ch('2'), ch('3'), ch('4'), ch('5'), ch('6')],
        contexts: BROWSE,
        tab: None,
        command: Command::View,
        keys: "1 … 6",
        help: "Upstreams, Detail, Errors, Tap, Sidecars, Edges",
        hint: hint("1-6", "views"),
    },
    Binding {
        chords: &[key(KeyCode::Up), ch('k')],
        contexts: BROWSE_AND_INSPECT,
        tab: None,
        command: Command::Up,
        keys: "↑ ↓, k j",
        help: "move the selection",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Down), ch('j')],
        contexts: BROWSE_AND_INSPECT,
        tab: None,
        command: Command::Down,
        keys: "↓, j",
        help: "move the selection down",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Home), ch('g')],
        contexts: LIVE,
        tab: None,
        command: Command::Top,
        keys: "g G, Home End",
        help: "first / last row",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Home)],
        contexts: REPLAY_AND_INSPECT,
        tab: None,
        command: Command::Top,
        keys: "Home End",
        help: "first / last row",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::End), ch('G')],
        contexts: LIVE,
        tab: None,
        command: Command::Bottom,
        keys: "G, End",
        help: "last row",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::End)],
        contexts: REPLAY_AND_INSPECT,
        tab: None,
        command: Command::Bottom,
        keys: "End",
        help: "last row",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::PageUp)],
        contexts: BROWSE_AND_INSPECT,
        tab: None,
        command: Command::PageUp,
        keys: "PgUp PgDn",
        help: "a page up / down",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::PageDown)],
        contexts: BROWSE_AND_INSPECT,
        tab: None,
        command: Command::PageDown,
        keys: "PgDn",
        help: "a page down",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Enter)],
        contexts: BROWSE,
        tab: None,
        command: Command::DrillIn,
        keys: "enter",
        help: "open the row: upstream, edge, request, error group",
        hint: hint("enter", "open"),
    },
    Binding {
        chords: &[ch('f')],
        contexts: BROWSE,
        tab: Some(Tab::Tap),
        command: Command::Follow,
        keys: "f",
        help: "tap: follow the newest requests",
        hint: hint("f", "follow"),
    },
    Binding {
        chords: &[ch('h')],
        contexts: BROWSE,
        tab: Some(Tab::Detail),
        command: Command::LatencyScale,
        keys: "h",
        help: "detail: latency on a log or a linear scale (p1–p99.9)",
        hint: hint("h", "linear"),
    },
    Binding {
        chords: &[ch('b')],
        contexts: BROWSE,
        tab: Some(Tab::Upstreams),
        command: Command::GroupBy,
        keys: "b",
        help: "upstreams: by authority → route → sidecar → caller → status",
        hint: hint("b", "group"),
    },
    Binding {
        chords: &[key(KeyCode::Esc)],
        contexts: BROWSE,
        tab: None,
        command: Command::Back,
        keys: "esc",
        help: "back to where enter was pressed; closes help; cancels a filter",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Esc)],
        contexts: INSPECTOR,
        tab: None,
        command: Command::Back,
        keys: "esc",
        help: "close the request, back to its list",
        hint: hint("esc", "back"),
    },
    Binding {
        chords: &[ch('n')],
        contexts: INSPECTOR,
        tab: None,
        command: Command::NextRequest,
        keys: "n p",
        help: "request: the next (newer) / previous (older) of its list",
        hint: hint("n/p", "next/prev"),
    },
    Binding {
        chords: &[ch('p')],
        contexts: INSPECTOR,
        tab: None,
        command: Command::PreviousRequest,
        keys: "p",
        help: "request: the previous (older) of its list",
        hint: None,
    },
    Binding {
        chords: &[ch('c')],
        contexts: INSPECTOR,
        tab: None,
        command: Command::ShowCommand,
        keys: "c",
        help: "request: an equivalent curl / grpcurl command, or its fields",
        hint: hint("c", "curl"),
    },
    Binding {
        chords: &[ch('y')],
        contexts: INSPECTOR,
        tab: None,
        command: Command::CopyRequest,
        keys: "y",
        help: "request: copy it as JSON (OSC 52; in tmux: set-clipboard on)",
        hint: hint("y", "copy"),
    },
    Binding {
        chords: &[ch('/')],
        contexts: BROWSE,
        tab: None,
        command: Command::EditFilter,
        keys: "/",
        help: "edit the filter: enter applies, esc cancels, ctrl-u clears",
        hint: hint("/", "filter"),
    },
    Binding {
        chords: &[ch(' ')],
        contexts: LIVE,
        tab: None,
        command: Command::Pause,
        keys: "space",
        help: "pause the screen (data keeps arriving)",
        hint: hint("space", "pause"),
    },
    Binding {
        chords: &[ch(' ')],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::PlayPause),
        keys: "space",
        help: "play / pause the replay",
        hint: hint("space", "play/pause"),
    },
    Binding {
        chords: &[ch('e')],
        contexts: BROWSE,
        tab: None,
        command: Command::FailuresOnly,
        keys: "e",
        help: "failures only",
        hint: hint("e", "failures"),
    },
    Binding {
        chords: &[ch('w')],
        contexts: BROWSE,
        tab: None,
        command: Command::NextWindow,
        keys: "w",
        help: "window: 10s → 1m → 5m",
        hint: hint("w", "window"),
    },
    Binding {
        chords: &[ch('s')],
        contexts: BROWSE,
        tab: None,
        command: Command::NextSort,
        keys: "s",
        help: "next sort column",
        hint: hint("s/S", "sort"),
    },
    Binding {
        chords: &[ch('S')],
        contexts: BROWSE,
        tab: None,
        command: Command::ReverseSort,
        keys: "S",
        help: "reverse the sort",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Left)],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::SeekBack),
        keys: "← →",
        help: "seek 10 s back / forward",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Right)],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::SeekForward),
        keys: "→",
        help: "seek 10 s forward",
        hint: None,
    },
    Binding {
        chords: &[ch('+')],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::Faster),
        keys: "+ -",
        help: "play faster / slower",
        hint: None,
    },
    Binding {
        chords: &[ch('-')],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::Slower),
        keys: "-",
        help: "play slower",
        hint: None,
    },
    Binding {
        chords: &[ch('g')],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::SeekStart),
        keys: "g G",
        help: "start / end of the recording",
        hint: None,
    },
    Binding {
        chords: &[ch('G')],
        contexts: REPLAY,
        tab: None,
        command: Command::Player(PlayerCommand::SeekEnd),
        keys: "G",
        help: "end of the recording",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Enter)],
        contexts: FILTER,
        tab: None,
        command: Command::ApplyFilter,
        keys: "enter",
        help: "apply the filter",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Esc)],
        contexts: FILTER,
        tab: None,
        command: Command::CancelFilter,
        keys: "esc",
        help: "cancel editing; the filter in force stays",
        hint: None,
    },
    Binding {
        chords: &[ctrl('u')],
        contexts: FILTER,
        tab: None,
        command: Command::ClearFilter,
        keys: "ctrl-u",
        help: "clear the input",
        hint: None,
    },
    Binding {
        chords: &[key(KeyCode::Backspace)],
        contexts: FILTER,
        tab: None,
        command: Command::DeleteChar,
        keys: "backspace",
        help: "delete the last character",
        hint: None,
    },
];

/// The binding of `key` in `context` and view `tab`, if any. Shift is
/// ignored: a character's case already says it (`G`), and terminals send
/// shift-tab as `BackTab` with or without it.
pub fn lookup(context: Context, tab: Tab, key: KeyEvent) -> Option<&'static Binding> {
    let modifiers = key.modifiers - KeyModifiers::SHIFT;
    BINDINGS.iter().find(|binding| {
        binding.contexts.contains(&context)
            && binding.tab.is_none_or(|only| only == tab)
            && binding
                .chords
                .iter()
                .any(|chord| chord.code == key.code && chord.modifiers == modifiers)
    })
}

/// What the `?` overlay lists in `context`: the keys and what they do.
/// Bindings that only complete another's line (`j` after `k`, the second
/// half of a pair) are folded into it: their `keys` appear in an earlier
/// binding's `keys`.
pub fn help(context: Context) -> Vec<(&'static str, &'static str)> {
    let in_context: Vec<&Binding> = BINDINGS
        .iter()
        .filter(|b| b.contexts.contains(&context))
        .collect();
    let mut lines: Vec<(&'static str, &'static str)> = Vec::new();
    for (i, binding) in in_context.iter().enumerate() {
        let folded = in_context[..i]
            .iter()
            .any(|earlier| covers(earlier.keys, binding.keys));
        if !folded {
            lines.push((binding.keys, binding.help));
        }
    }
    lines
}

/// Whether help line `earlier` already names every key of `keys`.
fn covers(earlier: &str, keys: &str) -> bool {
    let named: Vec<&str> = earlier
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .collect();
    keys.split([' ', ','])
        .filter(|w| !w.is_empty())
        .all(|w| named.contains(&w))
}

/// What the status line's toggles depend on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Toggles {
    /// The screen is paused (live).
    pub paused: bool,
    /// The tap follows the newest requests.
    pub following: bool,
    /// The latency histogram is on the linear scale.
    pub linear: bool,
    /// The inspector shows the request's command line.
    pub command: bool,
}

/// The status line's hints in `context` and view `tab`, with the words of
/// toggles following the state.
pub fn hints(context: Context, tab: Tab, toggles: Toggles) -> Vec<Hint> {
    BINDINGS
        .iter()
        .filter(|b| b.contexts.contains(&context) && b.tab.is_none_or(|only| only == tab))
        .filter_map(|b| {
            let mut hint = b.hint?;
            match b.command {
                Command::Pause if toggles.paused => hint.text = "resume",
                Command::Follow if toggles.following => hint.text = "unfollow",
                Command::LatencyScale if toggles.linear => hint.text = "log",
                Command::ShowCommand if toggles.command => hint.text = "fields",
                _ => {}
            }
            Some(hint)
        })
        .collect()
}
