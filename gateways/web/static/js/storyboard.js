/**
 * Scrubbing previews: the video's WebVTT thumbnails track (one cue per 10 s of playhead time whose
 * payload is `<sprite url>#xywh=x,y,w,h`, a tile of the sprite sheet) and a seek bar that shows the
 * tile for the time under the pointer.  The tile is drawn as the sprite sheet in a background with
 * an offset, set through the CSSOM (the page's CSP allows no inline style attribute).
 */

import { el } from './dom.js';
import { formatClock } from './vod_format.js';

const TIMING = /^(?:(\d+):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?$/;
const XYWH = /#xywh=(\d+),(\d+),(\d+),(\d+)$/;

/** "01:02:03.500" or "02:03.5" as seconds, or NaN. */
export function parseVttTime(text) {
  const m = TIMING.exec(String(text).trim());
  if (!m) return NaN;
  const [, h, min, s, frac] = m;
  return Number(h || 0) * 3600 + Number(min) * 60 + Number(s) + (frac ? Number(frac.padEnd(3, '0')) / 1000 : 0);
}

/**
 * The cues of a thumbnails track, in time order: [{start, end, url, x, y, w, h}], each URL resolved
 * against the track's own.  Cues that do not parse are skipped.
 */
export function parseStoryboard(text, trackUrl) {
  const cues = [];
  const blocks = String(text).replace(/\r\n?/g, '\n').split(/\n{2,}/);
  for (const block of blocks) {
    const lines = block.split('\n').map((l) => l.trim()).filter(Boolean);
    const at = lines.findIndex((l) => l.includes('-->'));
    if (at < 0 || !lines[at + 1]) continue;
    const [from, to] = lines[at].split('-->').map((part) => parseVttTime(part.trim().split(/\s+/)[0]));
    const tile = XYWH.exec(lines[at + 1]);
    if (!Number.isFinite(from) || !Number.isFinite(to) || !tile) continue;
    const url = new URL(lines[at + 1].slice(0, tile.index), new URL(trackUrl, location.href)).toString();
    cues.push({ start: from, end: to, url, x: Number(tile[1]), y: Number(tile[2]), w: Number(tile[3]), h: Number(tile[4]) });
  }
  return cues.sort((a, b) => a.start - b.start);
}

/** The cue showing time `t` (seconds): start <= t < end; past the last cue, the last one. */
export function cueAt(cues, t) {
  let lo = 0;
  let hi = cues.length - 1;
  let found = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cues[mid].start <= t) {
      found = cues[mid];
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found && t >= found.end && found !== cues[cues.length - 1]) return null;
  return found;
}

/**
 * The custom seek bar: the played part, a click (or arrow keys) to seek, and on hover the storyboard
 * tile and the time under the pointer.  `duration()` is the video's length in seconds.
 */
export class SeekBar {
  constructor(root, video, duration) {
    this.root = root;
    this.video = video;
    this.duration = duration;
    this.cues = [];
    this.played = el('div', { className: 'seek-played' });
    this.tile = el('div', { className: 'seek-tile', attrs: { 'aria-hidden': 'true' } });
    this.time = el('span', { className: 'seek-time' });
    this.preview = el('div', { className: 'seek-preview', hidden: true }, this.tile, this.time);
    root.replaceChildren(el('div', { className: 'seek-track' }, this.played), this.preview);
    root.tabIndex = 0;
    root.setAttribute('role', 'slider');
    root.setAttribute('aria-label', 'Seek');
    root.addEventListener('pointermove', (e) => this.hover(e));
    root.addEventListener('pointerleave', () => { this.preview.hidden = true; });
    root.addEventListener('click', (e) => this.seekTo(this.timeAt(e)));
    root.addEventListener('keydown', (e) => {
      const step = { ArrowLeft: -10, ArrowRight: 10 }[e.key];
      if (step) {
        e.preventDefault();
        this.seekTo(this.video.currentTime + step);
      }
    });
    video.addEventListener('timeupdate', () => this.render());
    video.addEventListener('durationchange', () => this.render());
  }

  /** Use a storyboard's cues (parseStoryboard). */
  setStoryboard(cues) {
    this.cues = cues;
  }

  length() {
    const d = Number(this.duration());
    return Number.isFinite(d) && d > 0 ? d : 0;
  }

  timeAt(event) {
    const box = this.root.getBoundingClientRect();
    const fraction = box.width > 0 ? Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) : 0;
    return fraction * this.length();
  }

  seekTo(t) {
    const length = this.length();
    if (!length) return;
    this.video.currentTime = Math.min(Math.max(0, t), Math.max(0, length - 0.1));
  }

  hover(event) {
    const length = this.length();
    if (!length) return;
    const t = this.timeAt(event);
    const cue = cueAt(this.cues, t);
    const { style } = this.tile;
    this.tile.hidden = !cue;
    if (cue) {
      style.width = `${cue.w}px`;
      style.height = `${cue.h}px`;
      style.backgroundImage = `url("${cue.url.replace(/["\\]/g, '\\$&')}")`;
      style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      this.tile.dataset.url = cue.url;
      this.tile.dataset.xywh = `${cue.x},${cue.y},${cue.w},${cue.h}`;
    }
    this.time.textContent = formatClock(t);
    this.preview.hidden = false;
    const box = this.root.getBoundingClientRect();
    const half = (cue ? cue.w : 60) / 2;
    const x = Math.min(Math.max(event.clientX - box.left, half), Math.max(half, box.width - half));
    this.preview.style.left = `${x}px`;
  }

  render() {
    const length = this.length();
    const fraction = length ? Math.min(1, this.video.currentTime / length) : 0;
    this.played.style.width = `${(fraction * 100).toFixed(3)}%`;
    this.root.setAttribute('aria-valuemin', '0');
    this.root.setAttribute('aria-valuemax', String(Math.round(length)));
    this.root.setAttribute('aria-valuenow', String(Math.round(this.video.currentTime)));
    this.root.setAttribute('aria-valuetext', `${formatClock(this.video.currentTime)} of ${formatClock(length)}`);
  }
}
