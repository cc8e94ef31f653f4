//! The order in which keys were last used, for evicting the least recently
//! used in O(log n) rather than scanning a table for it.

use std::collections::BTreeMap;

/// Keys by the tick of their last use. Each key is at one tick, and each
/// tick names one key: the model's counters only go up, and each count is
/// given to one upstream (or error group) at a time.
#[derive(Clone, Debug)]
pub(super) struct Recency<K> {
    by_tick: BTreeMap<u64, K>,
}

impl<K: Clone> Recency<K> {
    pub(super) fn new() -> Self {
        Recency {
            by_tick: BTreeMap::new(),
        }
    }

    /// `key`, last used at `previous` (`None`: new), is used now, at `tick`.
    pub(super) fn touch(&mut self, key: &K, previous: Option<u64>, tick: u64) {
        let key = previous
            .and_then(|previous| self.by_tick.remove(&previous))
            .unwrap_or_else(|| key.clone());
        self.by_tick.insert(tick, key);
    }

    /// Removes and returns the least recently used key.
    pub(super) fn pop_oldest(&mut self) -> Option<K> {
        self.by_tick.pop_first().map(|(_, key)| key)
    }

    pub(super) fn len(&self) -> usize {
        self.by_tick.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_key_goes_first() {
        let mut recency = Recency::new();
        recency.touch(&"a", None, 1);
        recency.touch(&"b", None, 2);
        recency.touch(&"c", None, 3);
        recency.touch(&"a", Some(1), 4);
        assert_eq!(recency.len(), 3);
        assert_eq!(recency.pop_oldest(), Some("b"));
        assert_eq!(recency.pop_oldest(), Some("c"));
        assert_eq!(recency.pop_oldest(), Some("a"));
        assert_eq!(recency.pop_oldest(), None);
    }
}
