/**
 * Viewer heartbeats: POST /v1/streams/{id}/heartbeat every 10 s while the
 * video plays (answered 204).  The processors count distinct sessions from
 * them, so a paused or hidden-and-stalled player simply stops beating.
 */

import { api, seg } from './api.js';

const INTERVAL_MS = 10_000;

export class Heartbeats {
  /** report(): the player's {rendition, buffer_health_s, bitrate_kbps, latency_ms, dropped_frames}. */
  constructor(video, streamId, sessionId, report) {
    this.video = video;
    this.path = `/v1/streams/${seg(streamId)}/heartbeat`;
    this.sessionId = sessionId;
    this.report = report;
    this.timer = null;
    this.lastError = null;
    this.listeners = new AbortController();
    const { signal } = this.listeners;
    video.addEventListener('playing', () => this.start(), { signal });
    video.addEventListener('pause', () => this.stop(), { signal });
    video.addEventListener('ended', () => this.stop(), { signal });
  }

  /** Stop beating for good (the page moved on to another stream). */
  dispose() {
    this.stop();
    this.listeners.abort();
  }

  start() {
    if (this.timer) return;
    this.beat();
    this.timer = setInterval(() => this.beat(), INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async beat() {
    if (this.video.paused || this.video.ended) return;
    try {
      await api(this.path, { method: 'POST', body: { session_id: this.sessionId, ...this.report() }, keepalive: true });
      this.lastError = null;
    } catch (err) {
      this.lastError = err.message;   // a missed beat costs one viewer for a moment, not playback
    }
  }
}
