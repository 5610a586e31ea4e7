/**
 * The notification menu in the top bar of every page, for a signed-in user: a bell with the unread
 * count, the feed (GET /v1/me/notifications, paged by next_cursor), "mark all read" and mark-read on
 * open (POST /v1/me/notifications/read), and live pushes over WS /v1/me/notifications/ws (signed in
 * with a first {"type": "auth", "token"} frame, never the URL; NOTIFICATION frames; reconnect with
 * back-off as the chat panel does).  A push also shows a toast and is announced to the page as a
 * `glasscast:notification` event (the followed-channels rail refreshes on it).
 */

import { api } from './api.js';
import { el } from './dom.js';
import { SESSION_KEY, currentSession } from './session.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
const PING_EVERY_MS = 25_000;
const TOAST_MS = 8000;
const PAGE_SIZE = 20;
const SESSION_CHECK_MS = 2000;
const CLOSE_FINAL = new Set([4400, 4401]);   // bad request / refused token: retrying the same token cannot help
export const NOTIFICATION_EVENT = 'glasscast:notification';

/** The socket URL on this page's origin (the page's CSP allows only connect-src 'self'). */
export function notificationsUrl(page = location) {
  return `${page.protocol === 'https:' ? 'wss:' : 'ws:'}//${page.host}/v1/me/notifications/ws`;
}

/** "just now", "5 min ago", "3 h ago", or the date. */
export function ago(ms, nowMs = Date.now()) {
  const seconds = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (!Number.isFinite(seconds) || seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(ms).toLocaleDateString('en');
}

/**
 * A notification's link on this site: its url is absolute for e-mail (GLASSCAST_GATEWAY_PUBLIC_URL), so the
 * path is kept and followed on this page's origin; never a way off the site.
 */
export function localHref(url) {
  if (typeof url !== 'string' || !url) return null;
  let parsed;
  try {
    parsed = new URL(url, location.href);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return null;
  return `${parsed.pathname}${parsed.search}`;
}

class NotificationMenu {
  constructor(host) {
    this.session = currentSession();
    this.items = new Map();   // id -> {item, node}
    this.cursor = null;
    this.unread = 0;
    this.socket = null;
    this.retry = null;
    this.retryMs = RETRY_MIN_MS;
    this.pinger = null;
    this.toastTimer = null;
    this.count = el('span', { id: 'notif-count', className: 'notif-count', hidden: true });
    this.button = el('button', {
      id: 'notif-button', type: 'button', className: 'notif-button',
      attrs: { 'aria-haspopup': 'true', 'aria-expanded': 'false', 'aria-controls': 'notif-panel' },
      onclick: () => this.toggle(),
    }, el('span', { className: 'bell-icon', attrs: { 'aria-hidden': 'true' } }),
    el('span', { className: 'offscreen' }, 'Notifications'), this.count);
    this.list = el('ol', { id: 'notif-list', className: 'notif-list' });
    this.status = el('p', { id: 'notif-status', className: 'status', hidden: true });
    this.more = el('button', { type: 'button', className: 'link-button', hidden: true, onclick: () => this.load(true) },
      'Older notifications');
    this.markAll = el('button', { id: 'notif-mark-all', type: 'button', className: 'link-button',
                                  onclick: () => this.markRead(null) }, 'Mark all read');
    this.panel = el('div', { id: 'notif-panel', className: 'notif-panel', hidden: true,
                             attrs: { role: 'region', 'aria-label': 'Notifications' } },
      el('div', { className: 'notif-head' }, el('strong', {}, 'Notifications'), this.markAll),
      this.status, this.list, this.more);
    this.toast = el('div', { id: 'notif-toast', className: 'notif-toast', hidden: true,
                             attrs: { role: 'status', 'aria-live': 'polite' } });
    const profile = this.session.user?.username
      ? el('a', { id: 'profile-link', className: 'profile-link', href: `/u/${encodeURIComponent(this.session.user.username)}` },
        this.session.user.username)
      : null;
    this.root = el('div', { id: 'notif-menu', className: 'notif-menu' }, profile, this.button, this.panel);
    host.append(this.root);
    document.body.append(this.toast);
    document.addEventListener('click', (event) => {
      if (!this.panel.hidden && !this.root.contains(event.target)) this.toggle(false);
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !this.panel.hidden) this.toggle(false);
    });
  }

  start() {
    this.load(false);
    this.connect();
  }

  stop() {
    clearTimeout(this.retry);
    clearInterval(this.pinger);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
    this.root.remove();
    this.toast.remove();
  }

  setUnread(count) {
    this.unread = Math.max(0, Number(count) || 0);
    this.count.textContent = this.unread > 99 ? '99+' : String(this.unread);
    this.count.hidden = this.unread === 0;
    this.button.title = this.unread ? `${this.unread} unread notifications` : 'Notifications';
    this.root.dataset.unread = String(this.unread);
  }

  toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.button.setAttribute('aria-expanded', String(open));
  }

  row(item) {
    const href = localHref(item.url);
    const when = item.delivered_at_ms || item.queued_at_ms;
    const body = [el('strong', { className: 'notif-title' }, item.title || 'Notification'),
                  item.body ? el('span', { className: 'notif-body' }, item.body) : null,
                  el('time', { className: 'notif-time', dateTime: new Date(when).toISOString() }, ago(when))];
    const content = href
      ? el('a', { href, className: 'notif-link', onclick: () => this.markRead([item.id], false) }, body)
      : el('div', { className: 'notif-link' }, body);
    return el('li', { className: 'notif', dataset: { id: item.id, read: String(Boolean(item.read)) } }, content);
  }

  /** Add items; `front`: a push (newest), else a page (older, in order). */
  add(items, front) {
    const rows = [];
    for (const item of items) {
      if (!item || typeof item.id !== 'string' || this.items.has(item.id)) continue;
      const node = this.row(item);
      this.items.set(item.id, { item, node });
      rows.push(node);
    }
    if (front) this.list.prepend(...rows); else this.list.append(...rows);
    this.status.hidden = this.items.size > 0;
    if (!this.items.size) this.status.textContent = 'No notifications yet. Follow a channel to hear when it goes live.';
  }

  async load(older) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (older && this.cursor) params.set('cursor', this.cursor);
    try {
      const page = await api(`/v1/me/notifications?${params}`, { token: this.session.token });
      this.add(page.notifications || [], false);
      this.cursor = page.next_cursor || null;
      this.more.hidden = !this.cursor;
      this.setUnread(page.unread_count);
    } catch (err) {
      this.status.hidden = false;
      this.status.dataset.kind = 'error';
      this.status.textContent = `Notifications could not be loaded: ${err.message}`;
    }
  }

  /** Mark these ids read (null: all). */
  async markRead(ids, wait = true) {
    const body = ids ? { ids } : { all: true };
    const marked = ids ? ids.map((id) => this.items.get(id)).filter(Boolean) : [...this.items.values()];
    for (const { node } of marked) node.dataset.read = 'true';
    const request = api('/v1/me/notifications/read', { method: 'POST', body, token: this.session.token,
                                                        keepalive: !wait });
    try {
      const answer = await request;
      if (answer && Number.isFinite(answer.unread_count)) this.setUnread(answer.unread_count);
    } catch (err) {
      if (wait) {
        this.status.hidden = false;
        this.status.dataset.kind = 'error';
        this.status.textContent = `Could not mark read: ${err.message}`;
      }
    }
  }

  showToast(item) {
    const href = localHref(item.url);
    const text = [el('strong', {}, item.title || 'Notification'), item.body ? el('span', {}, item.body) : null];
    this.toast.replaceChildren(href ? el('a', { href, onclick: () => this.markRead([item.id], false) }, text)
      : el('div', {}, text));
    this.toast.dataset.id = item.id;
    this.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => { this.toast.hidden = true; }, TOAST_MS);
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === 'AUTHENTICATED') {
      this.retryMs = RETRY_MIN_MS;
      this.root.dataset.state = 'connected';
      if (Number.isFinite(frame.unread_count)) this.setUnread(frame.unread_count);
    } else if (frame.type === 'NOTIFICATION' && frame.notification) {
      this.add([frame.notification], true);
      this.setUnread(frame.unread_count);
      this.showToast(frame.notification);
      window.dispatchEvent(new CustomEvent(NOTIFICATION_EVENT, { detail: frame.notification }));
    }
  }

  connect() {
    clearTimeout(this.retry);
    let socket;
    try {
      socket = new WebSocket(notificationsUrl());
    } catch {
      this.closed(1006);
      return;
    }
    this.socket = socket;
    this.root.dataset.state = 'connecting';
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      socket.send(JSON.stringify({ type: 'auth', token: this.session.token }));
      clearInterval(this.pinger);
      this.pinger = setInterval(() => {
        if (this.socket === socket && socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
      }, PING_EVERY_MS);
    });
    socket.addEventListener('message', (event) => { if (this.socket === socket) this.receive(event.data); });
    socket.addEventListener('close', (event) => { if (this.socket === socket) this.closed(event.code); });
  }

  closed(code) {
    this.socket = null;
    clearInterval(this.pinger);
    this.root.dataset.state = 'offline';
    if (CLOSE_FINAL.has(code)) return;   // a new session (the storage event) starts a new menu
    const jitter = Math.random() * 500;
    this.retry = setTimeout(() => this.connect(), this.retryMs + jitter);
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }
}

let menu = null;

function mount() {
  const session = currentSession();
  if (menu && session && menu.session.token === session.token) return;
  menu?.stop();
  menu = null;
  const host = document.querySelector('header.topbar');
  if (!session || !host) return;
  menu = new NotificationMenu(host);
  menu.start();
}

window.addEventListener('storage', (event) => {   // signed in or out in another tab
  if (event.key === null || event.key === SESSION_KEY) mount();
});
// Signing in or out on this page (the dashboard), or the token expiring, shows up here within a moment.
setInterval(mount, SESSION_CHECK_MS);
mount();
