/**
 * The channel page's Follow button, its bell (go-live notifications on or off) and the follower
 * count: POST / DELETE /v1/users/{me}/follows[/{channel}], PATCH the same for the bell, the count
 * from the channel answer's `followers` and, after a change, GET /v1/channels/{id}/followers.
 * Signed out, the button leads to the dashboard to log in; a channel's owner sees only the count.
 */

import { api, ApiError, seg } from './api.js';
import { byId, el } from './dom.js';
import { currentSession } from './session.js';

const FOLLOW_PAGE = 100;
const FOLLOW_PAGES_MAX = 10;   // the follow state is looked up in the viewer's newest 1,000 follows

/** "1 follower", "1,234 followers". */
export function formatFollowers(count) {
  const n = Number.isFinite(count) ? count : 0;
  return `${n.toLocaleString('en')} ${n === 1 ? 'follower' : 'followers'}`;
}

/** The viewer's follow of this channel ({notifications}) or null, read from their follows list. */
async function findFollow(session, channelId) {
  let cursor = null;
  for (let pages = 0; pages < FOLLOW_PAGES_MAX; pages += 1) {
    const params = new URLSearchParams({ limit: String(FOLLOW_PAGE) });
    if (cursor) params.set('cursor', cursor);
    const page = await api(`/v1/users/${seg(session.user.id)}/follows?${params}`, { token: session.token });
    const found = (page.follows || []).find((f) => f.channel_id === channelId);
    if (found) return found;
    cursor = page.next_cursor;
    if (!cursor) return null;
  }
  return null;
}

export class FollowControls {
  constructor() {
    this.channel = null;
    this.following = false;
    this.notifications = false;
    this.busy = false;
    this.count = byId('follower-count');
    this.button = byId('follow-button');
    this.bell = byId('follow-bell');
    this.status = byId('follow-status');
    this.button.addEventListener('click', () => this.toggleFollow());
    this.bell.addEventListener('click', () => this.toggleBell());
  }

  async show(channel) {
    this.channel = channel;
    this.setCount(channel.followers);
    const session = currentSession();
    if (!session?.user?.id) {
      this.button.hidden = false;
      this.button.textContent = 'Follow';
      this.button.title = 'Log in to follow this channel';
      this.bell.hidden = true;
      return;
    }
    if (String(session.user.id) === String(channel.owner_user_id)) {   // your own channel: only the count
      this.button.hidden = true;
      this.bell.hidden = true;
      return;
    }
    try {
      const follow = await findFollow(session, channel.id);
      this.render(Boolean(follow), Boolean(follow?.notifications));
    } catch (err) {
      this.render(false, false);
      this.say(`Could not read your follows: ${err.message}`, 'error');
    }
  }

  setCount(count) {
    if (Number.isFinite(count)) {
      this.count.textContent = formatFollowers(count);
      this.count.dataset.count = String(count);
    }
  }

  render(following, notifications) {
    this.following = following;
    this.notifications = following && notifications;
    this.button.hidden = false;
    this.button.textContent = following ? 'Following' : 'Follow';
    this.button.title = following ? 'Unfollow this channel' : 'Follow this channel';
    this.button.setAttribute('aria-pressed', String(following));
    this.button.dataset.following = String(following);
    this.bell.hidden = !following;
    this.bell.setAttribute('aria-pressed', String(this.notifications));
    this.bell.title = this.notifications
      ? 'Go-live notifications are on: click to turn them off'
      : 'Go-live notifications are off: click to turn them on';
    this.bell.replaceChildren(el('span', { className: this.notifications ? 'bell-icon' : 'bell-icon off', attrs: { 'aria-hidden': 'true' } }),
      el('span', { className: 'offscreen' }, this.notifications ? 'Notifications on' : 'Notifications off'));
  }

  say(text, kind = '') {
    this.status.textContent = text || '';
    this.status.hidden = !text;
    this.status.dataset.kind = kind;
  }

  async run(change) {
    const session = currentSession();
    if (!session?.user?.id) {
      location.assign('/dashboard');
      return;
    }
    if (this.busy || !this.channel) return;
    this.busy = true;
    this.button.disabled = true;
    this.bell.disabled = true;
    this.say('');
    try {
      await change(session, `/v1/users/${seg(session.user.id)}/follows`);
      const followers = await api(`/v1/channels/${seg(this.channel.id)}/followers?limit=1`, { token: session.token });
      this.setCount(followers.total);
    } catch (err) {
      const expired = err instanceof ApiError && err.status === 401;
      this.say(expired ? 'Your session has expired: log in again on the dashboard.' : err.message, 'error');
    } finally {
      this.busy = false;
      this.button.disabled = false;
      this.bell.disabled = false;
    }
  }

  toggleFollow() {
    return this.run(async (session, base) => {
      if (this.following) {
        await api(`${base}/${seg(this.channel.id)}`, { method: 'DELETE', token: session.token });
        this.render(false, false);
      } else {
        const follow = await api(base, { method: 'POST', token: session.token,
                                         body: { channel_id: this.channel.id, notifications: true } });
        this.render(true, Boolean(follow?.notifications));
      }
    });
  }

  toggleBell() {
    if (!this.following) return Promise.resolve();
    return this.run(async (session, base) => {
      const follow = await api(`${base}/${seg(this.channel.id)}`, {
        method: 'PATCH', token: session.token, body: { notifications: !this.notifications } });
      this.render(true, Boolean(follow?.notifications));
    });
  }
}
