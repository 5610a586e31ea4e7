/**
 * The chat panel: one WebSocket to the room (protocol: gateways/chat/frames.py).
 * The signed-in user's token goes in the socket's first frame ({type: 'auth'}),
 * never in its URL, which servers and proxies log; without one the socket
 * reads only.  The server answers AUTHENTICATED (the user, their badges, when
 * the token expires) after CONNECTED, and closes the socket with 4401 when
 * the token expires: the panel then falls back to reading only.  Logging in
 * again in another tab signs the open socket in with the fresh token.
 *
 * Sending: each message gets a fresh nonce and shows as "sending…" until the
 * server's ACK (or the MESSAGE carrying that nonce) confirms it; a NOTICE or
 * ERROR for it takes it out and says why, to the sender only.  Messages not
 * confirmed when the socket drops are sent again, with the same nonce, once
 * it is back, so the server never posts one twice.  CLEARMSG, CLEARCHAT and
 * ROOMSTATE change what everyone sees at once.  RECONNECT (the gateway is
 * going away for a deploy) makes the panel reconnect after the suggested
 * delay rather than back off, sending unconfirmed messages again the same
 * way.  Text only ever reaches the page as text nodes (chat_render.js).
 */

import { ModMenu } from './chat_moderation.js';
import { announcementLine } from './chat_announce.js';
import { formatDuration, markDeleted, messageLine, roomStateLabels, senderOf, systemLine } from './chat_render.js';
import { clearSession, currentSession, SESSION_KEY } from './session.js';

const MAX_MESSAGES = 200;
const MAX_NAMES = 2000;
const RETRY_MIN_MS = 2000;
const RETRY_MAX_MS = 30_000;
const PING_EVERY_MS = 25_000;
const SILENT_LIMIT_MS = 60_000;   // no frame for this long (pings included): the socket is dead
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FINAL = new Set([4400, 4404]);   // a bad request or no such room: retrying cannot help
const PRIVILEGED = ['broadcaster', 'moderator'];

/**
 * The JSON objects in one text frame: the server may coalesce several,
 * one per line (gateways/chat/frames.py).
 */
export function parseFrame(data) {
  const objects = [];
  for (const line of String(data).split('\n')) {
    if (!line.trim()) continue;
    try {
      objects.push(JSON.parse(line));
    } catch {
      // not JSON: nothing to show
    }
  }
  return objects;
}

/** A fresh nonce (crypto.getRandomValues works on plain http too, unlike randomUUID). */
export function newNonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** ws(s)://<this page's host>/v1/chat/ws?channel=<id>: the room's socket when no playback answer names one. */
export function chatUrlFor(channelId, page = location) {
  const scheme = page.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${page.host}/v1/chat/ws?channel=${encodeURIComponent(channelId)}`;
}

/** The socket URL without any `token` it carries: the token goes in the auth frame, never the URL. */
export function withoutToken(url) {
  const parsed = new URL(url, location.href);
  parsed.searchParams.delete('token');
  return parsed.toString();
}

export class ChatPanel {
  /** Elements: root (the panel), list, badge (state pill), form, input, login, roomState, standing. */
  constructor(elements) {
    Object.assign(this, elements);
    this.url = null;
    this.channelId = null;
    this.socket = null;
    this.ready = false;          // CONNECTED received on this socket (and AUTHENTICATED, when it signs in)
    this.token = null;           // the token this socket signs in with (its auth frame)
    this.me = null;              // AUTHENTICATED.user: {id, username, badges, banned, timed_out_until_ms}
    this.privileged = false;
    this.retryMs = RETRY_MIN_MS;
    this.retry = null;
    this.restartDelayMs = null;  // RECONNECT.delay_ms on this socket: reconnect after it when it closes
    this.pinger = null;
    this.standingTimer = null;
    this.lastFrameAt = 0;
    this.outbox = new Map();     // nonce -> {nonce, text, line}: sent (or to send), not yet confirmed
    this.awaiting = [];          // nonces sent on this socket, in order (answers come in this order)
    this.names = new Map();      // user id -> name, for "<name> was banned"
    this.menu = new ModMenu({
      list: this.list, me: () => this.me, token: () => currentSession()?.token, channelId: () => this.channelId,
      report: (text) => this.append(systemLine(text, 'error')),
    });
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    window.addEventListener('storage', (event) => {   // logged in or out in another tab
      if (!this.url || (event.key !== null && event.key !== SESSION_KEY)) return;
      const session = currentSession();
      const sameUser = Boolean(session && this.me && String(session.user?.id) === String(this.me.id));
      if (sameUser && this.ready && this.sendFrame({ type: 'auth', token: session.token })) {
        this.token = session.token;   // the same socket goes on, with the fresh token's expiry
        return;
      }
      this.reconnect();
    });
  }

  /** Join a room: `url` is the playback answer's chat_ws_url or chatUrlFor(channelId). */
  open(channelId, url) {
    this.channelId = channelId;
    this.url = url;
    this.reconnect();
  }

  /**
   * A socket URL from a playback answer: reconnect only if it is another socket than the open one, and
   * only to this page's host (the page's CSP, connect-src 'self', refuses any other).
   */
  useUrl(url) {
    if (!url || (this.url && withoutToken(url) === withoutToken(this.url))) return;
    try {
      if (new URL(url, location.href).host !== location.host) return;
    } catch {
      return;
    }
    this.url = withoutToken(url);
    this.reconnect();
  }

  reconnect() {
    this.retryMs = RETRY_MIN_MS;
    this.connect();
  }

  connect() {
    if (!this.url) return;
    this.close();
    this.token = currentSession()?.token || null;
    this.ready = false;
    this.awaiting = [];
    this.restartDelayMs = null;
    this.showComposer(this.token ? 'compose' : 'login');
    this.setState('connecting', 'connecting…');
    let socket;
    try {
      socket = new WebSocket(withoutToken(this.url));
    } catch {
      this.setState('unavailable', 'unavailable');
      return;
    }
    this.socket = socket;
    this.lastFrameAt = Date.now();
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      if (this.token) socket.send(JSON.stringify({ type: 'auth', token: this.token }));   // first, before any send
      this.setState('connected', 'connected');
      this.keepAlive(socket);
    });
    socket.addEventListener('message', (event) => {
      if (this.socket === socket) this.receive(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (this.socket === socket) this.closed(event.code);
    });
  }

  close() {
    clearTimeout(this.retry);
    clearInterval(this.pinger);
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    if (socket) socket.close();
  }

  closed(code) {
    this.socket = null;
    this.ready = false;
    clearInterval(this.pinger);
    if (code === CLOSE_UNAUTHORIZED && this.token) {
      clearSession();   // the token was refused (expired or signed by another secret): read only from now
      this.loginReason = 'Your session has expired.';
      this.connect();
      return;
    }
    this.setState('unavailable', 'unavailable');
    if (CLOSE_FINAL.has(code)) {
      this.showComposer('none');
      return;
    }
    if (this.restartDelayMs !== null) {   // told to reconnect (a deploy): no back-off, the server chose when
      const delay = this.restartDelayMs;
      this.restartDelayMs = null;
      this.retryMs = RETRY_MIN_MS;
      this.retry = setTimeout(() => this.connect(), delay);
      return;
    }
    const jitter = Math.random() * 500;
    this.retry = setTimeout(() => this.connect(), this.retryMs + jitter);
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  /** A ping every PING_EVERY_MS; a socket that has said nothing for SILENT_LIMIT_MS is replaced. */
  keepAlive(socket) {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      if (this.socket !== socket) return;
      if (Date.now() - this.lastFrameAt > SILENT_LIMIT_MS) {
        this.socket = null;
        socket.close();
        this.closed(1006);
      } else {
        this.sendFrame({ type: 'ping' });
      }
    }, PING_EVERY_MS);
  }

  sendFrame(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  setState(state, label) {
    this.badge.dataset.state = state;
    this.badge.textContent = label;
  }

  /** 'compose' (the input), 'login' (the log-in prompt) or 'none'. */
  showComposer(mode) {
    this.form.hidden = mode !== 'compose';
    this.login.hidden = mode !== 'login';
    const reason = this.login.querySelector('.chat-login-reason');
    if (reason) reason.textContent = mode === 'login' && this.loginReason ? `${this.loginReason} ` : '';
  }

  receive(data) {
    this.lastFrameAt = Date.now();
    for (const frame of parseFrame(data)) {
      if (!frame || typeof frame !== 'object') continue;
      switch (frame.type) {
        case 'CONNECTED': this.connected(frame); break;
        case 'AUTHENTICATED': this.authenticated(frame); break;
        case 'MESSAGE': this.message(frame); break;
        case 'ACK': this.acked(frame); break;
        case 'NOTICE': this.notice(frame); break;
        case 'ERROR': this.error(frame); break;
        case 'CLEARMSG': this.clearMessage(frame); break;
        case 'CLEARCHAT': this.clearChat(frame); break;
        case 'ROOMSTATE': this.showRoomState(frame.settings); break;
        case 'RECONNECT': this.restartSoon(frame); break;
        case 'SUBSCRIPTION': case 'DONATION': case 'RAID': this.announce(frame); break;
        default: break;   // PONG, and types this page does not know yet
      }
    }
  }

  /** A room announcement (a sub, a donation, a raid); a raid's frames also go to the page as "glasscast:raid". */
  announce(frame) {
    const line = announcementLine(frame);
    if (line) this.append(line);
    if (frame.type === 'RAID') this.root.dispatchEvent(new CustomEvent('glasscast:raid', { detail: frame }));
  }

  /** The gateway is going away: reconnect after its suggested delay once it closes this socket. */
  restartSoon(frame) {
    const delay = Number(frame.delay_ms);
    this.restartDelayMs = Number.isFinite(delay) ? Math.min(Math.max(delay, 0), RETRY_MAX_MS) : 0;
    this.setState('connecting', 'reconnecting…');
  }

  connected(frame) {
    this.retryMs = RETRY_MIN_MS;
    this.setState('connected', 'connected');
    const room = frame.room && typeof frame.room === 'object' ? frame.room : {};
    if (room.channel_id) this.channelId = String(room.channel_id);
    this.showRoomState(room.settings);
    for (const recent of Array.isArray(frame.recent) ? frame.recent : []) {
      this.message(typeof recent === 'string' ? parseFrame(recent)[0] : recent);
    }
    if (this.token) return;   // signing in: AUTHENTICATED (or a 4401 close) follows
    this.ready = true;
    this.signedIn(null);
  }

  /** The answer to an auth frame: who this socket chats as (again, after a fresh token: nothing to resend). */
  authenticated(frame) {
    const user = frame.user && typeof frame.user === 'object' ? frame.user : null;
    if (this.ready && this.me) {
      this.me = user || this.me;
      return;
    }
    this.ready = true;
    this.signedIn(user);
  }

  signedIn(user) {
    this.me = user;
    const badges = Array.isArray(this.me?.badges) ? this.me.badges : [];
    this.privileged = badges.some((b) => PRIVILEGED.includes(b));
    this.root.dataset.moderator = String(this.privileged);
    this.showComposer(this.me ? 'compose' : 'login');
    this.showStanding();
    this.flushOutbox();
  }

  /** Send what is waiting: typed while disconnected, or sent on a socket that dropped before the ACK. */
  flushOutbox() {
    for (const item of [...this.outbox.values()]) {
      if (!this.me) {
        this.refuse(item, 'Log in to chat.');
      } else if (this.sendFrame({ type: 'send', text: item.text, nonce: item.nonce })) {
        this.awaiting.push(item.nonce);
      }
    }
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    const session = currentSession();
    if (!session) {
      this.connect();   // signed out meanwhile: the log-in prompt
      return;
    }
    const nonce = newNonce();
    const me = this.me || { id: session.user?.id, username: session.user?.username, badges: [] };
    const line = messageLine({ user: me, text, nonce }, { pending: true });
    this.outbox.set(nonce, { nonce, text, line });
    this.append(line, true);
    this.input.value = '';
    if (this.ready && this.sendFrame({ type: 'send', text, nonce })) this.awaiting.push(nonce);
  }

  /** The outbox entry for a nonce, taken out: it is answered. */
  settle(nonce) {
    if (!nonce) return null;
    this.awaiting = this.awaiting.filter((n) => n !== nonce);
    const item = this.outbox.get(nonce) || null;
    this.outbox.delete(nonce);
    return item;
  }

  /** A refused message: its line goes, its text comes back to the input if that is empty, the reason shows. */
  refuse(item, reason, kind = 'notice') {
    if (item) {
      this.outbox.delete(item.nonce);
      item.line?.remove();
      if (!this.input.value) this.input.value = item.text;
    }
    this.append(systemLine(reason, kind));
  }

  lineById(id) {
    if (id === undefined || id === null || id === '') return null;
    return this.list.querySelector(`.chat-line[data-id="${CSS.escape(String(id))}"]`);
  }

  message(frame) {
    if (!frame || typeof frame !== 'object') return;
    const text = frame.text ?? frame.body;
    if (text === null || text === undefined) return;
    const sender = senderOf(frame);
    if (sender.id && sender.name) {
      if (this.names.size >= MAX_NAMES) this.names.clear();
      this.names.set(sender.id, sender.name);
    }
    const mine = Boolean(this.me && sender.id && sender.id === String(this.me.id));
    const item = mine && frame.nonce ? this.settle(frame.nonce) : null;
    const existing = this.lineById(frame.id);
    if (existing?.classList.contains('deleted')) {
      item?.line?.remove();
      return;
    }
    const line = messageLine(frame);
    const place = existing || (item?.line?.isConnected ? item.line : null);
    if (place) {
      if (existing && item?.line && item.line !== existing) item.line.remove();
      if (this.menu.line === place) this.menu.close();
      place.replaceWith(line);
    } else {
      this.append(line);
    }
  }

  acked(frame) {
    const item = this.settle(frame.nonce);
    if (!frame.duplicate) this.clearStanding();
    if (!item?.line?.isConnected) return;
    if (this.lineById(frame.id)) {   // its MESSAGE (or a replay of it) is already shown
      item.line.remove();
      return;
    }
    item.line.classList.remove('pending');
    item.line.querySelector('.chat-pending')?.remove();
    item.line.dataset.id = frame.id ?? '';
  }

  notice(frame) {
    const item = this.settle(frame.nonce);
    const reason = String(frame.reason || frame.code || 'Your message was not sent.');
    if (item && frame.code === 'unavailable') {   // posted, but perhaps missing from replays
      item.line?.classList.remove('pending');
      item.line?.querySelector('.chat-pending')?.remove();
      this.append(systemLine(reason, 'notice'));
      return;
    }
    if (frame.code === 'banned' && this.me) this.me.banned = true;
    this.refuse(item, reason);
    if (frame.code === 'banned') this.showStanding();
  }

  error(frame) {
    if (frame.code === 'unauthorized' || frame.code === 'token_expired') return;   // the 4401 close that follows says it
    // Frames are answered in order, and an ERROR carries no nonce: it answers the oldest send still waiting.
    const item = this.ready && this.awaiting.length ? this.settle(this.awaiting[0]) : null;
    const reason = String(frame.reason || frame.code || 'error');
    this.refuse(item, this.ready ? reason : `Chat is unavailable: ${reason}`, 'error');
  }

  clearMessage(frame) {
    const line = this.lineById(frame.message_id);
    if (!line) return;
    if (this.menu.line === line) this.menu.close();
    markDeleted(line, this.privileged);
  }

  clearChat(frame) {
    const userId = frame.user_id === null || frame.user_id === undefined ? null : String(frame.user_id);
    for (const line of this.list.querySelectorAll('.chat-line:not(.system):not(.pending)')) {
      if (userId && line.dataset.userId !== userId) continue;
      if (this.menu.line === line) this.menu.close();
      markDeleted(line, this.privileged);
    }
    if (!userId) {
      this.append(systemLine('Chat was cleared by a moderator.', 'mod'));
      return;
    }
    const isMe = Boolean(this.me && String(this.me.id) === userId);
    const name = this.names.get(userId) || 'A user';
    const seconds = Number(frame.duration_s);
    const timedOut = Number.isFinite(seconds) && seconds > 0;
    let text;
    if (isMe) {
      text = timedOut ? `You were timed out for ${formatDuration(seconds)}.` : 'You were banned from this chat.';
      if (timedOut) this.me.timed_out_until_ms = Date.now() + seconds * 1000; else this.me.banned = true;
    } else {
      text = timedOut ? `${name} was timed out for ${formatDuration(seconds)}.` : `${name} was banned.`;
    }
    if (frame.reason && (isMe || this.privileged)) text += ` Reason: ${frame.reason}`;
    this.append(systemLine(text, isMe ? 'notice' : 'mod'));
    if (isMe) this.showStanding();
  }

  showRoomState(settings) {
    const labels = roomStateLabels(settings);
    this.roomState.replaceChildren(...labels.map((label) => {
      const item = document.createElement('li');
      item.textContent = label;
      return item;
    }));
    this.roomState.hidden = labels.length === 0;
  }

  /** "You are banned" / "You are timed out for 9 min" above the input, while it holds. */
  showStanding() {
    clearTimeout(this.standingTimer);
    const me = this.me;
    let text = '';
    if (me?.banned) {
      text = 'You are banned from this chat.';
    } else if (Number(me?.timed_out_until_ms) > Date.now()) {
      const left = (Number(me.timed_out_until_ms) - Date.now()) / 1000;
      text = `You are timed out for ${formatDuration(Math.ceil(left))}.`;
      this.standingTimer = setTimeout(() => this.showStanding(), Math.min(left * 1000, 1000) + 50);
    }
    this.standing.textContent = text;
    this.standing.hidden = !text;
  }

  /** A message of ours went through: whatever ban or timeout we knew of is over. */
  clearStanding() {
    if (!this.me || (!this.me.banned && !this.me.timed_out_until_ms)) return;
    this.me.banned = false;
    this.me.timed_out_until_ms = null;
    this.showStanding();
  }

  append(line, scroll = false) {
    const list = this.list;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(line);
    while (list.children.length > MAX_MESSAGES) {
      if (this.menu.line === list.firstElementChild) this.menu.close();
      list.firstElementChild.remove();
    }
    if (atBottom || scroll) list.scrollTop = list.scrollHeight;
  }
}
