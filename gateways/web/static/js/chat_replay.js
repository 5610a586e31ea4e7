/**
 * Chat replay beside a video: the channel's archived chat shown in time with the playhead.
 *
 * The playhead's wall-clock time is the program date-time of the frame on screen (hls.js's
 * `playingDate`, from the playlist's EXT-X-PROGRAM-DATE-TIME): the moment that frame reached the
 * platform, the same clock a chat message's `sent_at_ms` is on.  A message is shown once the
 * playhead reaches it.  A seek (or a jump back) reloads the window around the new moment from
 * GET /v1/chat/{room}/messages?around_timestamp= (a few messages before it for context, the next
 * ones queued), and the queue is topped up from the answer's `next_cursor` while the video plays,
 * so a long video never loads its whole chat at once.  An answer for a moment the viewer has
 * already left is dropped.
 */

import { api, seg } from './api.js';
import { messageLine, systemLine } from './chat_render.js';

const CONTEXT_BEFORE = 30;     // messages shown from before the moment a window is loaded at
const WINDOW_AFTER = 100;      // messages queued after it
const PAGE = 100;              // messages per cursor page
const LOW_WATER = 20;          // queue length that asks for the next page
const MAX_LINES = 300;         // lines kept on screen
const JUMP_BACK_MS = 1500;     // a playhead this far behind the last update was moved: reload

/** A replay message as a chat line's message: emotes cut at the archived positions (end inclusive). */
export function replayMessage(m) {
  const chars = Array.from(String(m.text ?? ''));
  const emotes = (m.emotes || []).map((e) => ({
    id: String(e.emote_id), start: e.start, end: e.end, code: chars.slice(e.start, e.end + 1).join(''),
  }));
  return { id: m.message_id, text: m.text, emotes, user: { id: m.user_id, username: m.username, badges: m.badges || [] } };
}

export class ChatReplay {
  /** list: the <ol> lines go in; room: the channel id; onState(text|null): a status line. */
  constructor(list, room, onState = () => {}) {
    this.list = list;
    this.room = room;
    this.onState = onState;
    this.queue = [];           // fetched, not yet shown; oldest first
    this.nextCursor = null;
    this.generation = 0;       // bumped by each reload: older answers are dropped
    this.loading = false;      // a window is being loaded: nothing to show until it is
    this.paging = false;       // the next page is being fetched
    this.lastMs = null;
    this.shown = 0;
  }

  url(params) {
    return `/v1/chat/${seg(this.room)}/messages?${new URLSearchParams(params)}`;
  }

  /** Show the chat as it was at `atMs` (epoch ms): the messages before it, and queue the ones after. */
  async seek(atMs) {
    const generation = ++this.generation;
    this.lastMs = atMs;
    this.queue = [];
    this.nextCursor = null;
    this.loading = true;
    this.onState('Loading chat…');
    let page;
    try {
      page = await api(this.url({ around_timestamp: Math.floor(atMs), before: CONTEXT_BEFORE, after: WINDOW_AFTER }));
    } catch (err) {
      if (generation === this.generation) {
        this.loading = false;
        this.onState(`Chat replay unavailable: ${err.message}`);
      }
      return;
    }
    if (generation !== this.generation) return;
    this.loading = false;
    this.list.replaceChildren();
    this.shown = 0;
    this.queue = page.messages.filter((m) => m.sent_at_ms > atMs);
    for (const m of page.messages) if (m.sent_at_ms <= atMs) this.show(m);
    this.nextCursor = page.next_cursor;
    this.onState(page.messages.length ? null : 'No chat around this moment.');
    this.update(this.lastMs);
  }

  /** The playhead is at `nowMs`: show what it has reached, and keep the queue filled. */
  update(nowMs) {
    if (!Number.isFinite(nowMs)) return;
    if (this.lastMs !== null && nowMs < this.lastMs - JUMP_BACK_MS) {
      this.seek(nowMs);
      return;
    }
    this.lastMs = nowMs;
    if (this.loading) return;
    let reached = 0;
    while (reached < this.queue.length && this.queue[reached].sent_at_ms <= nowMs) reached += 1;
    for (const m of this.queue.splice(0, reached)) this.show(m);
    if (this.queue.length < LOW_WATER && this.nextCursor && !this.paging) this.more();
  }

  async more() {
    const generation = this.generation;
    this.paging = true;
    let page = null;
    try {
      page = await api(this.url({ cursor: this.nextCursor, limit: PAGE }));
    } catch (err) {
      if (generation === this.generation) this.onState(`Chat replay paused: ${err.message}`);
    }
    this.paging = false;
    if (generation !== this.generation || !page) return;
    this.queue.push(...page.messages);
    this.nextCursor = page.next_cursor;
    this.update(this.lastMs);
  }

  show(m) {
    const line = messageLine(replayMessage(m));
    line.dataset.sentAtMs = String(m.sent_at_ms);
    line.dataset.shownAtMs = String(this.lastMs ?? '');
    const stuck = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(line);
    this.shown += 1;
    while (this.list.childElementCount > MAX_LINES) this.list.firstElementChild.remove();
    if (stuck) this.list.scrollTop = this.list.scrollHeight;
  }

  /** A line that is not a message (the video ended, it was deleted). */
  note(text) {
    this.list.append(systemLine(text));
  }
}
