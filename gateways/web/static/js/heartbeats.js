/**
 * Viewer heartbeats: POST /v1/streams/{id}/heartbeat every heartbeat_interval_s
 * of the playback answer (10 s by default) while the video plays (answered 204).
 * Each beat carries the session the playback endpoint issued and the current
 * playback token, which the gateway checks; one beat per interval counts.  The
 * processors count distinct sessions from them, so a paused or
 * hidden-and-stalled player simply stops beating.
 */

import { api, seg } from './api.js';

const DEFAULT_INTERVAL_MS = 10_000;

export class Heartbeats {
  /**
   * playback(): the current playback answer ({session_id, token, heartbeat_interval_s});
   * report(): the player's {rendition, buffer_health_s, bitrate_kbps, latency_ms, dropped_frames}.
   */
  constructor(video, streamId, playback, report) {
    this.video = video;
    this.path = `/v1/streams/${seg(streamId)}/heartbeat`;
    this.playback = playback;
    this.report = report;
    this.timer = null;
    this.lastError = null;
    this.sentAtMs = -Infinity;
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
    const intervalS = Number(this.playback()?.heartbeat_interval_s);
    const intervalMs = intervalS > 0 ? intervalS * 1000 : DEFAULT_INTERVAL_MS;
    // Resumed right after a beat: the next tick reports (the gateway takes one beat per interval).
    if (!(Date.now() - this.sentAtMs < intervalMs)) this.beat();
    this.timer = setInterval(() => this.beat(), intervalMs);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async beat() {
    const playback = this.playback();
    if (this.video.paused || this.video.ended || !playback) return;
    const body = { session_id: playback.session_id, token: playback.token, ...this.report() };
    this.sentAtMs = Date.now();
    try {
      await api(this.path, { method: 'POST', body, keepalive: true });
      this.lastError = null;
    } catch (err) {
      this.lastError = err.message;   // a missed beat costs one viewer for a moment, not playback
    }
  }
}
