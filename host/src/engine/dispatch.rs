//! The dispatcher: the engine's slots, how many tasks to claim for them, and which
//! slot takes each claimed task.
//!
//! A slot is idle, or runs a queue of tasks of one library in its runner. Slow tasks
//! (or tasks of unknown speed) get an idle slot each; tasks known to be fast are
//! pipelined, up to [`PIPELINE_DEPTH`] per slot, behind other fast tasks of the same
//! library. Tasks no slot can take wait here, in claim order.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;

use super::slot::{Assignment, Inbox};
use super::speed::Speeds;

/// How many fast tasks one slot may have queued in its runner at once. A high-priority
/// task claimed later waits at most about `PIPELINE_DEPTH * FAST_TASK_MS` behind them.
pub const PIPELINE_DEPTH: usize = 128;

/// The coordinator's view of a slot.
struct SlotInfo {
    tx: Sender<Inbox>,
    /// Tasks queued on it (the first one running).
    queued: usize,
    /// Library hash of its queue.
    sha256: Option<String>,
    /// Whether everything queued is known to be fast (so more fast tasks may queue).
    fast_only: bool,
}

/// Slots, the waiting queue and run times.
pub struct Dispatcher {
    slots: Vec<SlotInfo>,
    /// Claimed tasks that no slot can take yet, in claim order.
    waiting: VecDeque<Assignment>,
    /// Assignments per slot, sent together by [`Dispatcher::flush`].
    outbox: Vec<Vec<Assignment>>,
    /// Run times per kind of task.
    pub speeds: Speeds,
}

impl Dispatcher {
    /// A dispatcher over slots reached through `senders`.
    pub fn new(senders: Vec<Sender<Inbox>>) -> Self {
        let n = senders.len();
        Dispatcher {
            slots: senders
                .into_iter()
                .map(|tx| SlotInfo {
                    tx,
                    queued: 0,
                    sha256: None,
                    fast_only: true,
                })
                .collect(),
            waiting: VecDeque::new(),
            outbox: (0..n).map(|_| Vec::new()).collect(),
            speeds: Speeds::default(),
        }
    }

    /// How many tasks to claim now: one per idle slot, plus room in the pipelines of
    /// slots running fast tasks (only when some kind of task is known to be fast);
    /// none while tasks wait for a slot.
    pub fn capacity(&self) -> usize {
        if !self.waiting.is_empty() {
            return 0;
        }
        let idle = self.slots.iter().filter(|s| s.queued == 0).count();
        if !self.speeds.any_fast() {
            return idle;
        }
        idle * PIPELINE_DEPTH
            + self
                .slots
                .iter()
                .filter(|s| s.queued > 0 && s.fast_only)
                .map(|s| PIPELINE_DEPTH.saturating_sub(s.queued))
                .sum::<usize>()
    }

    /// Puts a prepared task on a slot: an idle one, or (for fast tasks) the emptiest
    /// slot already running fast tasks of the same library. Returns the slot, or
    /// `None` when the task waits.
    pub fn assign(&mut self, a: Assignment) -> Option<usize> {
        let fast = self.speeds.is_fast(&a.worker, &a.action);
        let slot = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.queued == 0
                    || (fast
                        && s.fast_only
                        && s.queued < PIPELINE_DEPTH
                        && s.sha256.as_deref() == Some(a.library.sha256.as_str()))
            })
            .min_by_key(|(i, s)| (s.queued, *i))
            .map(|(i, _)| i);
        let Some(i) = slot else {
            self.waiting.push_back(a);
            return None;
        };
        let s = &mut self.slots[i];
        if s.queued == 0 {
            s.fast_only = true;
            s.sha256 = Some(a.library.sha256.clone());
        }
        s.queued += 1;
        s.fast_only &= fast;
        self.outbox[i].push(a);
        Some(i)
    }

    /// Assigns waiting tasks while slots take them, in order; calls `placed` with each
    /// task placed and its slot.
    pub fn assign_waiting(&mut self, mut placed: impl FnMut(i64, usize)) {
        while let Some(a) = self.waiting.pop_front() {
            let id = a.id;
            match self.assign(a) {
                Some(slot) => placed(id, slot),
                // It went back to the end of the queue: no slot is free.
                None => {
                    if let Some(a) = self.waiting.pop_back() {
                        self.waiting.push_front(a);
                    }
                    break;
                }
            }
        }
    }

    /// Sends what [`Dispatcher::assign`] queued, one message per slot.
    pub fn flush(&mut self) {
        for (i, batch) in self.outbox.iter_mut().enumerate() {
            if !batch.is_empty() {
                let _ = self.slots[i].tx.send(Inbox::Run(std::mem::take(batch)));
            }
        }
    }

    /// A task of slot `slot` ended.
    pub fn done(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.queued = s.queued.saturating_sub(1);
        }
    }

    /// Removes a task that waits for a slot; true if it was waiting.
    pub fn unwait(&mut self, id: i64) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|a| a.id != id);
        self.waiting.len() < before
    }

    /// Every waiting task, removed (the service is stopping).
    pub fn drain_waiting(&mut self) -> Vec<Assignment> {
        self.waiting.drain(..).collect()
    }

    /// Tells slot `slot` to cancel task `id`.
    pub fn cancel(&self, slot: usize, id: i64) {
        if let Some(s) = self.slots.get(slot) {
            let _ = s.tx.send(Inbox::Cancel(id));
        }
    }

    /// Interrupts every busy slot (the service stops and the grace period is over).
    pub fn interrupt_busy(&self) {
        for s in self.slots.iter().filter(|s| s.queued > 0) {
            let _ = s.tx.send(Inbox::Interrupt);
        }
    }

    /// Interrupts every slot, idle ones included: each kills its runner (ending every
    /// process below it) and ends its queued tasks as interrupted.
    pub fn interrupt_all(&self) {
        for s in &self.slots {
            let _ = s.tx.send(Inbox::Interrupt);
        }
    }

    /// Tells every slot to finish its queue and stop.
    pub fn shutdown(&self) {
        for s in &self.slots {
            let _ = s.tx.send(Inbox::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::engine::cache::CachedLibrary;

    fn assignment(id: i64, sha: &str) -> Assignment {
        Assignment {
            id,
            worker: "w".into(),
            action: "a".into(),
            data: "{}".into(),
            settings: "{}".into(),
            library: CachedLibrary {
                path: "/x.so".into(),
                sha256: sha.into(),
            },
            timeout: Duration::from_secs(1),
            result_dir: "/tmp/x".into(),
            max_result_bytes: 1024,
            limits: Default::default(),
            access: Default::default(),
            enqueues: Default::default(),
        }
    }

    fn dispatcher(n: usize) -> (Dispatcher, Vec<mpsc::Receiver<Inbox>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
        (Dispatcher::new(txs), rxs)
    }

    #[test]
    fn unknown_tasks_get_an_idle_slot_each_then_wait() {
        let (mut d, _rx) = dispatcher(2);
        assert_eq!(d.capacity(), 2);
        assert_eq!(d.assign(assignment(1, "a")), Some(0));
        assert_eq!(d.assign(assignment(2, "a")), Some(1));
        assert_eq!(d.assign(assignment(3, "a")), None);
        assert_eq!(d.capacity(), 0, "nothing is claimed while a task waits");
        d.done(0);
        let mut placed = Vec::new();
        d.assign_waiting(|id, slot| placed.push((id, slot)));
        assert_eq!(placed, [(3, 0)]);
    }

    #[test]
    fn fast_tasks_pipeline_behind_fast_tasks_of_the_same_library() {
        let (mut d, rx) = dispatcher(2);
        for _ in 0..3 {
            d.speeds.record("w", "a", 1.0);
        }
        assert_eq!(d.capacity(), 2 * PIPELINE_DEPTH);
        assert_eq!(d.assign(assignment(1, "a")), Some(0));
        assert_eq!(
            d.assign(assignment(2, "b")),
            Some(1),
            "another library: idle slot"
        );
        assert_eq!(
            d.assign(assignment(3, "a")),
            Some(0),
            "same library: pipelined"
        );
        assert_eq!(d.capacity(), 2 * PIPELINE_DEPTH - 3);
        d.flush();
        match rx[0].try_recv() {
            Ok(Inbox::Run(batch)) => {
                assert_eq!(batch.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 3])
            }
            _ => panic!("slot 0 got no batch"),
        }
    }

    #[test]
    fn a_slow_task_keeps_its_slot_to_itself() {
        let (mut d, _rx) = dispatcher(1);
        for _ in 0..3 {
            d.speeds.record("w", "a", 1.0);
        }
        let mut slow = assignment(1, "a");
        slow.action = "slow".into();
        assert_eq!(d.assign(slow), Some(0));
        assert_eq!(d.assign(assignment(2, "a")), None);
        assert!(d.unwait(2));
        assert!(!d.unwait(2));
    }
}
