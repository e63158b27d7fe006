// Live updates: adaptive polling and the server-sent-events log stream. Both start
// over at once when the service answers again after a lost connection.

import { connection } from './api.js';

/**
 * Calls `tick()` (async, resolves to true when something changed) again and again:
 * after a change it waits `min` ms, and each unchanged poll doubles the wait up to
 * `max`. Polling pauses while the tab is hidden and resumes with an immediate poll.
 */
export class Poller {
  constructor(tick, { min = 25, max = 25000 } = {}) {
    this.tick = tick;
    this.min = min;
    this.max = max;
    this.delay = min;
    this.timer = null;
    this.running = false;
    this.busy = false;
    this.stopped = true;
    this.onVisibility = () => {
      if (document.hidden) {
        clearTimeout(this.timer);
        this.timer = null;
      } else if (!this.stopped) {
        this.now();
      }
    };
  }

  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    document.addEventListener('visibilitychange', this.onVisibility);
    this.unsubscribe = connection.subscribe((state) => {
      if (state === 'live' && !this.stopped) this.now();
    });
    this.delay = this.min;
    this.schedule(this.min);
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener('visibilitychange', this.onVisibility);
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
  }

  /** Polls now and resets the interval to its minimum (after a user action). */
  now() {
    this.delay = this.min;
    clearTimeout(this.timer);
    this.timer = null;
    this.run();
  }

  schedule(ms) {
    clearTimeout(this.timer);
    if (this.stopped || document.hidden) return;
    this.timer = setTimeout(() => this.run(), ms);
  }

  async run() {
    if (this.stopped || this.busy) return;
    this.busy = true;
    let changed = false;
    try {
      changed = await this.tick();
    } catch {
      changed = false;
    }
    this.busy = false;
    if (this.stopped) return;
    this.delay = changed ? this.min : Math.min(this.max, this.delay * 2);
    this.schedule(this.delay);
  }
}

/**
 * Follows a task's log: an EventSource on `sseUrl(offset)` (event `line`: one parsed
 * log line, its id the byte offset after it; event `end`: the task is final and every
 * line was sent) and, when the stream is not available or keeps failing, polling of
 * `pollFn(offset)` (GET /tasks/{id}/logs: `lines`, `next_offset`, `status`,
 * `finished`) with the adaptive Poller: 25 ms while lines arrive, doubling to 25 s.
 * `onLines(lines)` gets each batch, `onState({status})` the status seen by a poll,
 * `onEnd()` the end of a finished task's log, `onMode('sse' | 'poll')` the transport.
 */
export class LogFollower {
  constructor({ sseUrl, pollFn, onLines, onState, onEnd, onMode }) {
    Object.assign(this, { sseUrl, pollFn, onLines, onState, onEnd, onMode });
    this.offset = 0;
    this.es = null;
    this.poller = null;
    this.closed = false;
    this.sseFailures = 0;
    this.pending = [];
    this.flushQueued = false;
  }

  start(offset = 0) {
    this.offset = offset;
    if (typeof EventSource === 'function' && this.sseUrl) this.openSse();
    else this.startPolling();
    // Back from a lost connection: the stream again (polling was the fallback).
    this.unsubscribe = connection.subscribe((state) => {
      if (state !== 'live' || this.closed || this.es || typeof EventSource !== 'function' || !this.sseUrl) return;
      if (this.poller) this.poller.stop();
      this.poller = null;
      this.sseFailures = 0;
      this.openSse();
    });
    return this;
  }

  openSse() {
    const es = new EventSource(this.sseUrl(this.offset));
    this.es = es;
    let opened = false;
    es.onopen = () => {
      opened = true;
      connection.ok();
      this.onMode && this.onMode('sse');
    };
    es.addEventListener('line', (ev) => {
      // The event id is the byte offset to resume from (also after a fallback to polling).
      if (ev.lastEventId && /^\d+$/.test(ev.lastEventId)) this.offset = Number(ev.lastEventId);
      try {
        this.queue(JSON.parse(ev.data));
      } catch {
        /* a malformed event is skipped */
      }
    });
    es.addEventListener('end', () => {
      this.flush();
      this.finish();
    });
    es.onerror = (ev) => {
      if (this.closed) return;
      // The stream dropped: the service may be gone (the monitor finds out).
      if (es.readyState !== EventSource.OPEN && !ev.data) connection.fail();
      // An `error` event sent by the service, a dropped connection (the browser
      // reconnects by itself with Last-Event-ID), or a stream that never opened. The
      // last, or repeated failures, fall back to polling from the last offset.
      if (!opened || es.readyState === EventSource.CLOSED || ++this.sseFailures > 3 || ev.data) {
        es.close();
        this.es = null;
        this.flush();
        this.startPolling();
      }
    };
  }

  /** Lines arriving as separate events are handed over in one batch per frame. */
  queue(line) {
    this.pending.push(line);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  flush() {
    this.flushQueued = false;
    if (!this.pending.length || this.closed) return;
    const batch = this.pending;
    this.pending = [];
    this.onLines && this.onLines(batch);
  }

  startPolling() {
    if (this.closed || this.poller) return;
    this.onMode && this.onMode('poll');
    this.poller = new Poller(
      async () => {
        const res = await this.pollFn(this.offset);
        if (this.closed) return false;
        const lines = res.lines || [];
        if (lines.length && this.onLines) this.onLines(lines);
        if (typeof res.next_offset === 'number') this.offset = res.next_offset;
        let changed = lines.length > 0;
        if (res.status && this.onState) changed = this.onState({ status: res.status }) || changed;
        if (res.finished) {
          this.finish();
          return false;
        }
        return changed;
      },
      { min: 25, max: 25000 },
    ).start();
  }

  finish() {
    if (this.closed) return;
    this.close();
    this.onEnd && this.onEnd();
  }

  close() {
    this.closed = true;
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
    if (this.es) this.es.close();
    this.es = null;
    if (this.poller) this.poller.stop();
    this.poller = null;
  }
}
