//! Alert stage: duplicate findings within a window become one alert with a
//! count. The first occurrence goes out at once (a SOC must not wait for a
//! window to close to learn of a leak); repeats are counted, and when the window
//! closes with repeats, one aggregate alert carries the count and the span.

use std::collections::HashMap;

/// What to do with an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The first occurrence in its window: emit it.
    Emit,
    /// A repeat inside the window: counted, not emitted.
    Suppress,
}

/// A window that closed with repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate<T> {
    /// The aggregation key.
    pub key: String,
    /// Occurrences in the window, the first included.
    pub count: u64,
    /// Time of the first occurrence (Unix ns).
    pub first_ns: i128,
    /// Time of the last occurrence (Unix ns).
    pub last_ns: i128,
    /// The last occurrence's payload.
    pub last: T,
}

struct Window<T> {
    count: u64,
    first_ns: i128,
    last_ns: i128,
    last: T,
}

/// Aggregates occurrences by key within a fixed window from the first one.
pub struct Aggregator<T> {
    window_ns: i128,
    max_keys: usize,
    open: HashMap<String, Window<T>>,
    suppressed: u64,
}

impl<T> Aggregator<T> {
    /// Windows of `window_ns`; at most `max_keys` open at once (the oldest closes
    /// early when full).
    pub fn new(window_ns: i128, max_keys: usize) -> Self {
        Self {
            window_ns,
            max_keys: max_keys.max(1),
            open: HashMap::new(),
            suppressed: 0,
        }
    }

    /// Repeats suppressed so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// An occurrence of `key` at `now_ns` with `payload`. Windows that had to
    /// close to make room are returned through `closed`.
    pub fn observe(
        &mut self,
        key: &str,
        now_ns: i128,
        payload: T,
        closed: &mut Vec<Aggregate<T>>,
    ) -> Decision {
        if let Some(w) = self.open.get_mut(key) {
            if now_ns - w.first_ns < self.window_ns {
                w.count += 1;
                w.last_ns = now_ns;
                w.last = payload;
                self.suppressed += 1;
                return Decision::Suppress;
            }
            if let Some(w) = self.open.remove(key) {
                push_closed(key.to_owned(), w, closed);
            }
        }
        if self.open.len() >= self.max_keys {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, w)| w.first_ns)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest
                && let Some(w) = self.open.remove(&k)
            {
                push_closed(k, w, closed);
            }
        }
        self.open.insert(
            key.to_owned(),
            Window {
                count: 1,
                first_ns: now_ns,
                last_ns: now_ns,
                last: payload,
            },
        );
        Decision::Emit
    }

    /// Closes the windows that ended by `now_ns` (all of them with `None`), and
    /// returns those that saw repeats.
    pub fn close(&mut self, now_ns: Option<i128>) -> Vec<Aggregate<T>> {
        let ended: Vec<String> = self
            .open
            .iter()
            .filter(|(_, w)| now_ns.is_none_or(|n| n - w.first_ns >= self.window_ns))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in ended {
            if let Some(w) = self.open.remove(&k) {
                push_closed(k, w, &mut out);
            }
        }
        out.sort_by_key(|a| a.first_ns);
        out
    }
}

fn push_closed<T>(key: String, w: Window<T>, out: &mut Vec<Aggregate<T>>) {
    if w.count > 1 {
        out.push(Aggregate {
            key,
            count: w.count,
            first_ns: w.first_ns,
            last_ns: w.last_ns,
            last: w.last,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn first_is_emitted_repeats_are_counted_and_summarised() {
        let mut a = Aggregator::new(60 * S, 100);
        let mut closed = Vec::new();
        assert_eq!(a.observe("k", 0, 1, &mut closed), Decision::Emit);
        assert_eq!(a.observe("k", 10 * S, 2, &mut closed), Decision::Suppress);
        assert_eq!(a.observe("other", 11 * S, 9, &mut closed), Decision::Emit);
        assert_eq!(a.observe("k", 20 * S, 3, &mut closed), Decision::Suppress);
        assert!(a.close(Some(59 * S)).is_empty());
        let done = a.close(Some(60 * S));
        assert_eq!(done.len(), 1, "a window without repeats closes silently");
        assert_eq!(
            (
                done[0].count,
                done[0].first_ns,
                done[0].last_ns,
                done[0].last
            ),
            (3, 0, 20 * S, 3)
        );
        assert_eq!(
            a.observe("k", 61 * S, 4, &mut closed),
            Decision::Emit,
            "a new window"
        );
        assert_eq!(a.suppressed(), 2);
    }

    #[test]
    fn a_full_table_closes_the_oldest_window() {
        let mut a = Aggregator::new(60 * S, 2);
        let mut closed = Vec::new();
        a.observe("a", 0, (), &mut closed);
        a.observe("a", 1, (), &mut closed);
        a.observe("b", 2, (), &mut closed);
        a.observe("c", 3, (), &mut closed);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].key.as_str(), closed[0].count), ("a", 2));
        assert_eq!(a.close(None).len(), 0);
    }
}
