/**
 * Playback access for one stream: GET /v1/streams/{id}/playback hands out the
 * signed HLS URLs, a token, the viewer session the heartbeats count under and
 * the chat socket; the token is renewed with POST .../playback/refresh-token a
 * minute before it expires, and tokenFor() re-signs any URL hls.js requests
 * with the newest one.  The tab keeps its last token per stream, so a reload
 * refreshes it and stays the same viewer session instead of asking for another.
 */

import { api, seg } from './api.js';

const RENEW_EARLY_S = 60;
const RENEW_RETRY_MS = 10_000;
const TOKEN_KEY = 'glasscast.playback.';   // + stream id, in sessionStorage

function savedToken(streamId) {
  try {
    return sessionStorage.getItem(TOKEN_KEY + streamId);
  } catch {
    return null;
  }
}

function saveToken(streamId, token) {
  try {
    sessionStorage.setItem(TOKEN_KEY + streamId, token);
  } catch {
    // storage full or disabled: a reload is then a new session, nothing worse
  }
}

export class Playback {
  constructor(streamId) {
    this.streamId = streamId;
    this.answer = null;
    this.timer = null;
  }

  /**
   * Fetch the playback answer ({live, status, session_id, heartbeat_interval_s, token, expires_in, hls,
   * chat_ws_url}): the tab's last token for the stream refreshed, else a new one.
   */
  async open() {
    const saved = savedToken(this.streamId);
    if (saved) {
      this.answer = await api(`/v1/streams/${seg(this.streamId)}/playback/refresh-token`,
        { method: 'POST', body: { token: saved } }).catch(() => null);
    }
    if (!this.answer) this.answer = await api(`/v1/streams/${seg(this.streamId)}/playback`);
    saveToken(this.streamId, this.answer.token);
    this.schedule();
    return this.answer;
  }

  /**
   * Use a playback grant another answer carried (a video's or a clip's `playback`: {token, session_id,
   * heartbeat_interval_s, expires_at_s}) and renew it as open() would.
   */
  adopt(grant) {
    const expiresIn = Number(grant.expires_at_s) - Date.now() / 1000;
    this.answer = { ...grant, expires_in: Number.isFinite(expiresIn) ? Math.max(0, expiresIn) : 0 };
    saveToken(this.streamId, this.answer.token);
    this.schedule();
    return this.answer;
  }

  schedule() {
    clearTimeout(this.timer);
    const lifetime = Number(this.answer?.expires_in) || 0;
    const delayS = Math.max(5, lifetime > 2 * RENEW_EARLY_S ? lifetime - RENEW_EARLY_S : lifetime / 2);
    this.timer = setTimeout(() => this.renew(), delayS * 1000);
  }

  async renew() {
    try {
      this.answer = await api(`/v1/streams/${seg(this.streamId)}/playback/refresh-token`,
        { method: 'POST', body: { token: this.answer.token } });
      saveToken(this.streamId, this.answer.token);
      this.schedule();
    } catch {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.renew(), RENEW_RETRY_MS);
    }
  }

  close() {
    clearTimeout(this.timer);
  }

  /** The URL with the current token in place of whichever one it carries. */
  tokenFor(url) {
    if (!this.answer) return url;
    const parsed = new URL(url, location.href);
    if (!parsed.searchParams.has('token')) return url;
    parsed.searchParams.set('token', this.answer.token);
    return parsed.toString();
  }
}
