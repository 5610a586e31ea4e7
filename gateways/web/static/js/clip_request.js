/**
 * Making a clip: POST /v1/clips with the signed-in user's token, either the last seconds of a live
 * broadcast ({broadcaster_id, duration_s}) or a range of a video ({video_id, offset_s, duration_s}).
 * The answer is the clip; its page (/clips/{id}) plays it at once, and its MP4 follows.
 */

import { api, ApiError } from './api.js';
import { el, setStatus } from './dom.js';
import { currentSession } from './session.js';

export const CLIP_S = 30;
export const MIN_CLIP_S = 5;

/** The 30 s (or what there is, at least 5 s) of a video ending at the playhead, as a POST /v1/clips body. */
export function vodClipBody(videoId, playheadS) {
  const end = Math.max(MIN_CLIP_S, Number(playheadS) || 0);
  const duration = Math.min(CLIP_S, end);
  return { video_id: videoId, offset_s: Math.round((end - duration) * 1000) / 1000, duration_s: duration };
}

/**
 * A "Clip" button with its status line: `bodyFor()` says what to clip when pressed (null: nothing to
 * clip now); a made clip is linked from the status line and handed to `onMade(clip)`.
 */
export class ClipButton {
  constructor(button, status, bodyFor, onMade = () => {}) {
    this.button = button;
    this.status = status;
    this.bodyFor = bodyFor;
    this.onMade = onMade;
    this.lastClip = null;
    button.addEventListener('click', () => this.make());
  }

  async make() {
    const session = currentSession();
    if (!session) {
      setStatus(this.status, 'Log in on the dashboard to make clips.', 'error');
      return;
    }
    const body = this.bodyFor();
    if (!body) return;
    this.button.disabled = true;
    setStatus(this.status, 'Clipping…', 'busy');
    try {
      const clip = await api('/v1/clips', { method: 'POST', body, token: session.token });
      this.lastClip = clip;
      this.status.replaceChildren('Clip made: ', el('a', { href: clip.url, className: 'clip-link' }, clip.title || 'watch it'));
      this.status.hidden = false;
      this.status.dataset.kind = 'ok';
      this.onMade(clip);
    } catch (err) {
      const text = err instanceof ApiError && err.status === 401 ? 'Log in again to make clips.' : err.message;
      setStatus(this.status, `No clip: ${text}`, 'error');
    } finally {
      this.button.disabled = false;
    }
  }
}
