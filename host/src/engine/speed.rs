//! How long each kind of task takes: decides which tasks may be pipelined.

use std::collections::HashMap;

/// Tasks with a recent average run time under this many milliseconds are pipelined.
pub const FAST_TASK_MS: f64 = 5.0;

/// Exponentially weighted run time of one kind of task.
#[derive(Clone, Copy, Default)]
struct Speed {
    avg_ms: f64,
    samples: u32,
}

impl Speed {
    fn record(&mut self, ms: f64) {
        self.avg_ms = if self.samples == 0 {
            ms
        } else {
            self.avg_ms * 0.8 + ms * 0.2
        };
        self.samples = self.samples.saturating_add(1);
    }

    /// Short enough that queueing it behind others delays nothing noticeably.
    fn is_fast(&self) -> bool {
        self.samples >= 3 && self.avg_ms < FAST_TASK_MS
    }
}

/// Run times per worker and action (nested, so lookups take borrowed names).
#[derive(Default)]
pub struct Speeds {
    by_worker: HashMap<String, HashMap<String, Speed>>,
}

impl Speeds {
    /// Records a run of `ms` milliseconds.
    pub fn record(&mut self, worker: &str, action: &str, ms: f64) {
        let actions = match self.by_worker.get_mut(worker) {
            Some(a) => a,
            None => self.by_worker.entry(worker.to_owned()).or_default(),
        };
        match actions.get_mut(action) {
            Some(s) => s.record(ms),
            None => actions.entry(action.to_owned()).or_default().record(ms),
        }
    }

    /// Whether tasks of this kind are known to be fast.
    pub fn is_fast(&self, worker: &str, action: &str) -> bool {
        self.by_worker
            .get(worker)
            .and_then(|a| a.get(action))
            .is_some_and(Speed::is_fast)
    }

    /// Whether any kind of task is known to be fast (pipelines are worth filling).
    pub fn any_fast(&self) -> bool {
        self.by_worker
            .values()
            .flat_map(HashMap::values)
            .any(Speed::is_fast)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_fast_after_three_short_runs() {
        let mut s = Speeds::default();
        assert!(!s.any_fast());
        for _ in 0..2 {
            s.record("w", "a", 1.0);
        }
        assert!(!s.is_fast("w", "a"), "two runs are not enough");
        s.record("w", "a", 1.0);
        assert!(s.is_fast("w", "a") && s.any_fast());
        assert!(!s.is_fast("w", "b"));
        for _ in 0..20 {
            s.record("w", "a", 50.0);
        }
        assert!(!s.is_fast("w", "a"), "slow runs make it slow again");
    }
}
