/**
 * A channel page's Videos and Clips tabs: GET /v1/channels/{id}/videos or /clips, sorted by time or
 * views, a page at a time ("Load more" follows the answer's cursor), each as a card with its
 * thumbnail, title, duration and view count, linking to its page.  Each tab starts with its own
 * usual order (videos newest first, clips most viewed first, as on Twitch) until the viewer picks one.
 */

import { api, seg } from './api.js';
import { byId, setStatus } from './dom.js';
import { mediaCard } from './vod_format.js';

const PAGE = 24;
const DEFAULT_SORT = { videos: 'time', clips: 'views' };
const EMPTY = { videos: 'No past broadcasts yet.', clips: 'No clips yet.' };

function cardOf(kind, item) {
  return mediaCard({
    kind, url: item.url, thumbnailUrl: item.thumbnail_url, title: item.title, durationMs: item.duration_ms,
    views: item.view_count, dateMs: kind === 'videos' ? item.started_at_ms : item.created_at_ms,
  });
}

export class ChannelLibrary {
  constructor() {
    this.channelId = null;
    this.kind = 'videos';
    this.sort = DEFAULT_SORT.videos;
    this.cursor = null;
    this.generation = 0;
    this.list = byId('library-list');
    this.status = byId('library-status');
    this.more = byId('library-more');
    this.sortMenu = byId('library-sort');
    this.tabs = [byId('tab-videos'), byId('tab-clips')];
    for (const tab of this.tabs) tab.addEventListener('click', () => this.choose(tab.dataset.kind));
    this.sortMenu.addEventListener('change', () => {
      this.sort = this.sortMenu.value;
      this.reload();
    });
    this.more.addEventListener('click', () => this.page());
  }

  /** Show the library of a channel (its id). */
  open(channelId) {
    this.channelId = channelId;
    this.reload();
  }

  choose(kind) {
    if (kind === this.kind) return;
    this.kind = kind;
    this.sort = DEFAULT_SORT[kind];
    this.reload();
  }

  /** Show the first page again (a clip just made shows up this way). */
  reload() {
    for (const tab of this.tabs) tab.setAttribute('aria-selected', String(tab.dataset.kind === this.kind));
    this.sortMenu.value = this.sort;
    this.list.dataset.kind = this.kind;
    this.list.replaceChildren();
    this.cursor = null;
    this.generation += 1;
    this.page();
  }

  async page() {
    if (!this.channelId) return;
    const generation = this.generation;
    const params = new URLSearchParams({ sort: this.sort, limit: String(PAGE) });
    if (this.cursor) params.set('cursor', this.cursor);
    this.more.disabled = true;
    try {
      const answer = await api(`/v1/channels/${seg(this.channelId)}/${this.kind}?${params}`);
      if (generation !== this.generation) return;
      this.list.append(...answer.data.map((item) => cardOf(this.kind, item)));
      this.cursor = answer.cursor;
      this.more.hidden = !answer.cursor;
      setStatus(this.status, this.list.childElementCount ? '' : EMPTY[this.kind]);
    } catch (err) {
      if (generation === this.generation) setStatus(this.status, err.message, 'error');
    } finally {
      this.more.disabled = false;
    }
  }
}
