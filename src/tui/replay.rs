//! Replay: feeds the entries of a recording to the model at the recorded
//! pace (or as fast as possible), with pause, speed and seeking controlled
//! from the UI. Replay is just another source: the views never know.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::source::{FeedItem, FeedKind, FeedSender};

pub use crate::recording::Entry as ReplayEntry;

/// Playback speed: a factor, or as fast as possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    Factor(f64),
    Max,
}

impl Speed {
    pub const MIN: f64 = 0.25;
    pub const MAX: f64 = 64.0;

    /// Twice as fast, up to 64×.
    pub fn faster(self) -> Speed {
        match self {
            Speed::Factor(f) => Speed::Factor((f * 2.0).min(Speed::MAX)),
            Speed::Max => Speed::Max,
        }
    }

    /// Half as fast, down to 0.25×.
    pub fn slower(self) -> Speed {
        match self {
            Speed::Factor(f) => Speed::Factor((f / 2.0).max(Speed::MIN)),
            Speed::Max => Speed::Factor(Speed::MAX),
        }
    }

    pub fn label(self) -> String {
        match self {
            Speed::Factor(f) => format!("{f}×"),
            Speed::Max => "max".into(),
        }
    }
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        let factor: f64 = s.trim_end_matches(['x', '×']).parse().map_err(|_| {
            format!("invalid speed '{s}': expected a factor such as 0.5, 2 or 'max'")
        })?;
        if !(Speed::MIN..=Speed::MAX).contains(&factor) {
            return Err(format!(
                "invalid speed '{s}': between 0.25 and 64, or 'max'"
            ));
        }
        Ok(Speed::Factor(factor))
    }
}

/// What the UI asks of the player.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Control {
    pub paused: bool,
    pub speed: Speed,
    /// Bumped on every seek, with the position to go to.
    pub seek: Option<(u64, Duration)>,
}

/// Where the player is, for the progress bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub position: Duration,
    pub length: Duration,
    pub speed: Speed,
    pub paused: bool,
    pub finished: bool,
    /// The id of the last seek taken (see [`Control::seek`]): a later one
    /// is still on its way, and the next seek goes on from its target.
    pub seeked: Option<u64>,
}

/// What part of a recording to play, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Playback {
    /// Start this far in: what came before is fed at once.
    pub from: Duration,
    /// Stop this far in.
    pub to: Option<Duration>,
    /// Return (closing the feed) at the end, rather than wait for a seek.
    pub exit_when_done: bool,
    /// When recording started (the header's `created_at`): each message is
    /// fed as received at this plus its `t`, so the UI's clock runs as it
    /// did live. `None` leaves messages to their own timestamps.
    pub origin: Option<SystemTime>,
}

/// Plays `entries` into `tx` as `playback` says. Seeking backwards sends
/// [`FeedKind::Reset`] first: the model is rebuilt from the start, as fast
/// as possible, up to the new position.
pub async fn play(
    entries: Arc<Vec<ReplayEntry>>,
    playback: Playback,
    tx: FeedSender,
    mut control: watch::Receiver<Control>,
    progress: watch::Sender<Progress>,
) {
    let Playback {
        from,
        to,
        exit_when_done,
        origin,
    } = playback;
    let length = entries.last().map_or(Duration::ZERO, |e| e.t);
    let end = to.unwrap_or(length).min(length);
    let mut position = from.min(end);
    let mut next = entries.partition_point(|e| e.t < position);
    let mut last_seek = None;
    // Everything before `from` is fed at once, so the views show the state
    // at `from` as the live session did.
    let mut catch_up_to = Some(position);
    if next > 0 {
        for entry in &entries[..next] {
            if send(&tx, entry, origin).await.is_err() {
                return;
            }
        }
    }
    loop {
        let state = *control.borrow_and_update();
        if let Some((id, target)) = state.seek
            && last_seek != Some(id)
        {
            last_seek = Some(id);
            let target = target.min(end);
            if target < position {
                let reset = FeedItem {
                    source: 0,
                    kind: FeedKind::Reset,
                };
                if tx.send(reset).await.is_err() {
                    return;
                }
                next = 0;
            }
            position = target;
            catch_up_to = Some(target);
        }
        let _ = progress.send(Progress {
            position,
            length: end,
            speed: state.speed,
            paused: state.paused,
            finished: next >= entries.len() || entries[next].t > end,
            seeked: last_seek,
        });
        if let Some(up_to) = catch_up_to.take() {
            while next < entries.len() && entries[next].t <= up_to {
                if send(&tx, &entries[next], origin).await.is_err() {
                    return;
                }
                next += 1;
            }
            continue;
        }
        let Some(entry) = entries.get(next).filter(|e| e.t <= end) else {
            // Finished: wait for a seek (or for the UI to go away).
            if exit_when_done || control.changed().await.is_err() {
                return;
            }
            continue;
        };
        if state.paused {
            if control.changed().await.is_err() {
                return;
            }
            continue;
        }
        if let Speed::Factor(factor) = state.speed
            && entry.t > position
        {
            let wait = (entry.t - position).div_f64(factor);
            // Sleep in slices of at most 100 ms so the progress bar moves
            // and controls apply promptly.
            let slice = wait.min(Duration::from_millis(100));
            tokio::select! {
                _ = tokio::time::sleep(slice) => {
                    position += slice.mul_f64(factor);
                    if position < entry.t {
                        continue;
                    }
                }
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        position = position.max(entry.t);
        if send(&tx, entry, origin).await.is_err() {
            return;
        }
        next += 1;
    }
}

async fn send(tx: &FeedSender, entry: &ReplayEntry, origin: Option<SystemTime>) -> Result<(), ()> {
    let kind = match &entry.message {
        Ok(message) => FeedKind::Message {
            message: message.clone(),
            raw: entry.raw.clone(),
            received: origin.and_then(|origin| origin.checked_add(entry.t)),
        },
        Err(reason) => FeedKind::Invalid {
            reason: reason.clone(),
        },
    };
    tx.send(FeedItem {
        source: entry.src,
        kind,
    })
    .await
    .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Dropped, Message};

    fn entries(seconds: u64) -> Arc<Vec<ReplayEntry>> {
        let entries = (0..=seconds)
            .map(|s| ReplayEntry {
                t: Duration::from_secs(s),
                src: 0,
                raw: Arc::from(format!(
                    "{{\"type\":\"dropped\",\"count\":{s},\"total\":{s}}}"
                )),
                message: Ok(Message::Dropped(Dropped { count: s, total: s })),
            })
            .collect();
        Arc::new(entries)
    }

    fn control(speed: Speed) -> (watch::Sender<Control>, watch::Receiver<Control>) {
        watch::channel(Control {
            paused: false,
            speed,
            seek: None,
        })
    }

    fn count_of(item: &FeedItem) -> Option<u64> {
        match &item.kind {
            FeedKind::Message {
                message: Message::Dropped(d),
                ..
            } => Some(d.count),
            _ => None,
        }
    }

    #[tokio::test]
    async fn max_speed_plays_the_range_and_ends() {
        let (tx, mut rx) = crate::tui::source::feed();
        let (_control, control_rx) = control(Speed::Max);
        let (progress, _) = watch::channel(Progress {
            position: Duration::ZERO,
            length: Duration::ZERO,
            speed: Speed::Max,
            paused: false,
            finished: false,
            seeked: None,
        });
        let playback = Playback {
            from: Duration::from_secs(3),
            to: Some(Duration::from_secs(6)),
            exit_when_done: true,
            origin: None,
        };
        play(entries(10), playback, tx, control_rx, progress).await;
        let mut counts = Vec::new();
        while let Some(item) = rx.recv().await {
            counts.extend(count_of(&item));
        }
        // What came before --from is applied at once; nothing after --to.
        assert_eq!(counts, [0, 1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn seeking_back_resets_and_replays_from_the_start() {
        let (tx, mut rx) = crate::tui::source::feed();
        let (control_tx, control_rx) = control(Speed::Factor(1.0));
        let (progress_tx, progress_rx) = watch::channel(Progress {
            position: Duration::ZERO,
            length: Duration::ZERO,
            speed: Speed::Factor(1.0),
            paused: false,
            finished: false,
            seeked: None,
        });
        let player = tokio::spawn(play(
            entries(10),
            Playback::default(),
            tx,
            control_rx,
            progress_tx,
        ));
        // Played at the recorded pace (the clock is paused and auto-advances).
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let item = rx.recv().await.expect("playing");
            seen.extend(count_of(&item));
        }
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        assert!(progress_rx.borrow().position >= Duration::from_secs(4));
        control_tx.send_modify(|c| c.seek = Some((1, Duration::from_secs(2))));
        // A reset, then everything up to the new position at once.
        loop {
            let item = rx.recv().await.expect("playing");
            if matches!(item.kind, FeedKind::Reset) {
                break;
            }
        }
        let mut after = Vec::new();
        while after.len() < 3 {
            let item = rx.recv().await.expect("playing");
            after.extend(count_of(&item));
        }
        assert_eq!(after, [0, 1, 2]);
        // Pausing stops the feed until resumed.
        control_tx.send_modify(|c| c.paused = true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        while rx.try_recv().is_some() {}
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(rx.try_recv().is_none(), "nothing is fed while paused");
        control_tx.send_modify(|c| c.paused = false);
        assert!(rx.recv().await.is_some());
        player.abort();
    }

    #[test]
    fn speeds_parse_and_step_within_bounds() {
        assert_eq!("2".parse::<Speed>(), Ok(Speed::Factor(2.0)));
        assert_eq!("0.5x".parse::<Speed>(), Ok(Speed::Factor(0.5)));
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert!("0".parse::<Speed>().is_err());
        assert!("100".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
        assert_eq!(Speed::Factor(64.0).faster(), Speed::Factor(64.0));
        assert_eq!(Speed::Factor(0.25).slower(), Speed::Factor(0.25));
        assert_eq!(Speed::Factor(1.0).faster(), Speed::Factor(2.0));
    }
}
