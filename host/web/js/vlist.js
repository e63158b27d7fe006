// A virtualized list: of any number of rows only those in view (and a few around them)
// exist as elements. Rows may differ in height: each is measured once drawn, the others
// count with the average so far, and the row at the top of the view stays where it is
// when heights above it change or rows are added above it.

const OVERSCAN = 6;

export class VirtualList {
  /**
   * `scroller`: the element that scrolls; `list`: the element the rows go in (inside the
   * scroller, between two spacers this class adds); `render(index)`: a new element for a
   * row; `key(index)`: a stable key of the row (rows keep their element while in view);
   * `onRange(first, last)`: called after each update with the rows drawn;
   * `onStick(atEnd)`: called when the view reaches the end or leaves it (while at the
   * end, rows added at the end scroll into view).
   */
  constructor({ scroller, list, render, key, estimate = 48, onRange = null, onStick = null }) {
    Object.assign(this, { scroller, list, render, key, estimate, onRange, onStick });
    this.heights = [];
    this.prefix = new Float64Array(1);
    this.dirty = false;
    this.measured = 0;
    this.measuredSum = 0;
    this.els = new Map();
    this.stick = true;
    // Where the last update left the view while stuck (see refreshStick).
    this.endTop = null;
    this.frame = 0;
    this.before = document.createElement('div');
    this.after = document.createElement('div');
    this.before.className = 'vlist-spacer';
    this.after.className = 'vlist-spacer';
    this.before.setAttribute('aria-hidden', 'true');
    this.after.setAttribute('aria-hidden', 'true');
    list.before(this.before);
    list.after(this.after);
    this.onScroll = () => {
      this.setStick(this.atBottom());
      this.schedule();
    };
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
    this.resize = typeof ResizeObserver === 'function' ? new ResizeObserver(() => this.schedule()) : null;
    if (this.resize) this.resize.observe(scroller);
  }

  setStick(stick) {
    if (stick === this.stick) return;
    this.stick = stick;
    // Where the end is is read again at the next update.
    this.endTop = null;
    if (this.onStick) this.onStick(stick);
  }

  /** Whether the view is at the end (and follows rows added there). */
  get atEnd() {
    return this.stick;
  }

  get count() {
    return this.heights.length;
  }

  guess() {
    return this.measured ? this.measuredSum / this.measured : this.estimate;
  }

  /**
   * Reads whether the view is still at the end. A scroll reports itself a frame later,
   * and an update in between (rows added, a frame's redraw) would otherwise take the
   * view back to the end the reader (or a script) just left. While stuck, every update
   * leaves the view at the end and notes where that was: a view above it has been
   * scrolled up (a taller list or window alone moves nothing up).
   */
  refreshStick() {
    if (this.stick) {
      if (this.endTop !== null && this.scroller.scrollTop < this.endTop - 1) this.setStick(false);
    } else if (this.heights.length && this.atBottom()) {
      // Scrolled to the end (rows added before the report would leave it short of it).
      this.setStick(true);
    }
  }

  atBottom() {
    const sc = this.scroller;
    return sc.scrollTop + sc.clientHeight >= sc.scrollHeight - 8;
  }

  /** `n` rows added at the end. */
  append(n) {
    if (n <= 0) return;
    this.refreshStick();
    const g = this.guess();
    for (let i = 0; i < n; i++) this.heights.push(-g);
    this.dirty = true;
    this.update();
  }

  /** `n` rows added at the start; what is in view stays in view. */
  prepend(n) {
    if (n <= 0) return;
    const anchor = this.anchor();
    const g = this.guess();
    this.heights = new Array(n).fill(-g).concat(this.heights);
    this.dirty = true;
    if (anchor) anchor.index += n;
    this.update(anchor);
  }

  /** Every row gone. */
  clear() {
    this.heights = [];
    this.measured = 0;
    this.measuredSum = 0;
    this.dirty = true;
    this.els.clear();
    this.list.replaceChildren();
    this.setStick(true);
    this.update();
  }

  scrollToEnd() {
    this.setStick(true);
    this.update();
  }

  /** Drops the element of the row with key `k`, so the next update draws it anew. */
  forget(k) {
    const el = this.els.get(k);
    if (el) el.remove();
    this.els.delete(k);
  }

  /** Row `index` at the top of the view (the view leaves the end unless it is there). */
  scrollToIndex(index) {
    if (index < 0 || index >= this.heights.length) return;
    this.setStick(false);
    this.update({ index, delta: 0 });
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.scroller.removeEventListener('scroll', this.onScroll);
    if (this.resize) this.resize.disconnect();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.update();
    });
  }

  offsets() {
    if (!this.dirty) return this.prefix;
    const n = this.heights.length;
    if (this.prefix.length !== n + 1) this.prefix = new Float64Array(n + 1);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      this.prefix[i] = sum;
      sum += Math.abs(this.heights[i]);
    }
    this.prefix[n] = sum;
    this.dirty = false;
    return this.prefix;
  }

  /** The first row whose bottom is below `y` (content coordinates). */
  indexAt(y) {
    const p = this.offsets();
    let lo = 0;
    let hi = this.heights.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (p[mid + 1] <= y) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  top() {
    return this.before.offsetTop;
  }

  /** The row at the top of the view and how far the view starts below its top. */
  anchor() {
    if (!this.heights.length || this.stick) return null;
    const y = this.scroller.scrollTop - this.top();
    const index = Math.min(this.indexAt(Math.max(0, y)), this.heights.length - 1);
    return { index, delta: y - this.offsets()[index] };
  }

  update(anchor = null) {
    // Only away from the end here: a jump to a row (scrollToIndex) starts from anywhere.
    if (this.stick) this.refreshStick();
    const n = this.heights.length;
    const sc = this.scroller;
    if (!anchor && !this.stick) anchor = this.anchor();
    for (let pass = 0; pass < 3; pass++) {
      const p = this.offsets();
      let first = 0;
      let last = 0;
      if (n) {
        const view = this.stick ? Math.max(0, p[n] - sc.clientHeight) : anchor ? p[anchor.index] + anchor.delta : sc.scrollTop - this.top();
        first = Math.max(0, this.indexAt(view) - OVERSCAN);
        last = Math.min(n, this.indexAt(view + sc.clientHeight) + 1 + OVERSCAN);
      }
      this.draw(first, last);
      this.before.style.height = `${p[first]}px`;
      this.after.style.height = `${p[n] - p[last]}px`;
      // Measure what was drawn; heights that changed move what follows.
      let changed = false;
      let i = first;
      for (const el of this.list.children) {
        const h = el.offsetHeight;
        const old = this.heights[i];
        if (old < 0) {
          this.measured += 1;
          this.measuredSum += h;
        } else {
          this.measuredSum += h - old;
        }
        if (old !== h) {
          this.heights[i] = h;
          changed = true;
        }
        i += 1;
      }
      if (changed) {
        this.dirty = true;
        const q = this.offsets();
        this.before.style.height = `${q[first]}px`;
        this.after.style.height = `${q[n] - q[last]}px`;
      }
      const q = this.offsets();
      if (this.stick) sc.scrollTop = sc.scrollHeight;
      else if (anchor) sc.scrollTop = this.top() + q[anchor.index] + anchor.delta;
      if (!changed) break;
    }
    if (this.stick) this.endTop = sc.scrollTop;
    if (this.onRange) this.onRange(this.range[0], this.range[1]);
  }

  /** Keeps the elements of rows [first, last) in the list, in order, reusing those drawn. */
  draw(first, last) {
    const want = [];
    const keep = new Map();
    for (let i = first; i < last; i++) {
      const k = this.key(i);
      let el = this.els.get(k);
      if (!el) el = this.render(i);
      keep.set(k, el);
      want.push(el);
    }
    for (const [k, el] of this.els) if (!keep.has(k)) el.remove();
    this.els = keep;
    const kids = this.list.children;
    want.forEach((el, pos) => {
      if (kids[pos] !== el) this.list.insertBefore(el, kids[pos] || null);
    });
    while (kids.length > want.length) kids[kids.length - 1].remove();
    this.range = [first, last];
  }
}
