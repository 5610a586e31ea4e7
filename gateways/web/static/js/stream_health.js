/**
 * Live health on the dashboard: GET /v1/streams/{id}/health every 2 s (the
 * ingest reports every 2 s), shown as the numbers OBS users know, with a
 * warning where a setting will hurt viewers.
 */

import { api, ApiError, seg } from './api.js';
import { el, formatViewers, setStatus } from './dom.js';

const POLL_MS = 2000;
const KEYFRAME_TARGET_MS = 2000;   // segments are cut at keyframes: longer GOPs mean longer segments and latency

function row(label, value, warn = '') {
  return el('div', { className: 'metric', dataset: { metric: label } },
    el('dt', {}, label), el('dd', { className: warn ? 'warn' : '', title: warn }, value));
}

function fixed(value, digits, unit) {
  return Number.isFinite(value) && value > 0 ? `${value.toFixed(digits)}${unit}` : '–';
}

/** The rows for one health report (pure: no I/O). */
export function healthRows(h) {
  const keyframeWarn = Number.isFinite(h.keyframe_interval_ms) && h.keyframe_interval_ms > KEYFRAME_TARGET_MS * 1.25
    ? 'Set the keyframe interval to 2 s (OBS: Settings → Output → Keyframe Interval)' : '';
  const droppedWarn = h.dropped_frames > 0 ? 'Frames are being dropped: lower the bitrate or resolution' : '';
  return [
    row('Status', h.status || 'live'),
    row('Viewers', formatViewers(h.viewers)),
    row('Resolution', h.width && h.height ? `${h.width}×${h.height}` : '–'),
    row('Frame rate', fixed(h.fps, 1, ' fps')),
    row('Video bitrate', fixed(h.video_bitrate_kbps, 0, ' kbps')),
    row('Audio bitrate', fixed(h.audio_bitrate_kbps, 0, ' kbps')),
    row('Keyframe interval', fixed(h.keyframe_interval_ms / 1000, 1, ' s'), keyframeWarn),
    row('Codecs', [h.video_codec, h.audio_codec].filter(Boolean).join(' + ') || '–'),
    row('Dropped frames', Number.isFinite(h.dropped_frames) ? String(h.dropped_frames) : '–', droppedWarn),
  ];
}

export class StreamHealth {
  constructor(streamId, token, onAuthLost) {
    this.streamId = streamId;
    this.token = token;
    this.onAuthLost = onAuthLost;
    this.list = el('dl', { className: 'health' });
    this.status = el('p', { className: 'status', hidden: true });
    this.node = el('div', { className: 'health-panel' }, el('h4', {}, 'Stream health'), this.status, this.list);
    this.timer = null;
    this.stopped = false;
    this.poll();
  }

  async poll() {
    if (this.stopped) return;
    try {
      const health = await api(`/v1/streams/${seg(this.streamId)}/health`, { token: this.token() });
      this.list.replaceChildren(...healthRows(health));
      setStatus(this.status, health.at_ms === null ? 'Waiting for the first health report from your encoder…' : '',
        'busy');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.onAuthLost(err);
        return;
      }
      setStatus(this.status, err instanceof ApiError && err.status === 404
        ? 'Waiting for the first health report from your encoder…' : `Health unavailable: ${err.message}`,
      err.status === 404 ? 'busy' : 'error');
    }
    if (!this.stopped) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
