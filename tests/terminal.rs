//! The terminal UI in a real terminal: `meshtop replay` of the shipped
//! recording runs in tmux, keys are sent as a user types them, the screen
//! is read back with `capture-pane`, and what `y` copies reaches tmux's
//! clipboard through OSC 52. Skipped where tmux is not installed (`.ci/run`
//! installs it).

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use meshtop::schema::{Message, decode};

/// A tmux server of its own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "ui"]).stdout).into_owned()
    }

    /// Types `keys` in order. (Escape must be typed alone and its effect
    /// waited for: followed by a key, it reads as Alt and that key.)
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            assert!(self.run(&["send-keys", "-t", "ui", key]).status.success());
        }
    }

    /// Polls the screen until `ready` holds, for at most 20 s.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn a_request_inspected_in_a_real_terminal_is_copied_to_its_clipboard() {
    if !support::have("tmux") {
        eprintln!("skipped: tmux is not installed (.ci/run installs it)");
        return;
    }
    let recording = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/emojivoto.ndjson.zst");
    let command = format!(
        "{} replay {recording} --speed max",
        env!("CARGO_BIN_EXE_meshtop")
    );
    let tmux = Tmux {
        socket: format!("meshtop-test-{}", std::process::id()),
    };
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "ui",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    assert!(
        tmux.run(&["set", "-g", "set-clipboard", "on"])
            .status
            .success()
    );
    tmux.wait_for("the replay ends", |s| s.contains(" end "));
    tmux.keys(&["4", "Up", "Enter"]);
    let inspector = tmux.wait_for("the inspector", |s| s.contains("in the tap"));
    assert!(inspector.contains("duration"), "{inspector}");
    tmux.keys(&["y"]);
    tmux.wait_for("the copy is confirmed", |s| {
        s.contains("copied the request")
    });
    let buffer = tmux.run(&["show-buffer"]);
    let json = String::from_utf8_lossy(&buffer.stdout);
    let Ok(Message::Request(request)) = decode(&json) else {
        panic!("not a request: {json}");
    };
    assert!(
        inspector.contains(&request.ts),
        "the request copied is the one shown: {}\n{inspector}",
        request.ts
    );
    tmux.keys(&["Escape"]);
    tmux.wait_for("back in the tap", |s| s.contains("scrolled up"));
    tmux.keys(&["q"]);
}
