/**
 * Chat lines as DOM nodes: badges, the user name, and the text with emotes
 * cut out at the server's positions (code-point indexes, end inclusive:
 * gateways/chat/emotes.py).  Everything a user typed goes in as a text node;
 * an emote becomes an <img> whose alt is its code, so copying a line copies
 * what was typed.  Nothing here uses innerHTML.
 */

import { el } from './dom.js';

const EMOTE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const NAME_COLOURS = 8;
const BADGES = {
  broadcaster: { label: 'HOST', title: 'Broadcaster' },
  moderator: { label: 'MOD', title: 'Moderator' },
  vip: { label: 'VIP', title: 'VIP' },
};

/** "45 s", "10 min", "1 h 30 min", "2 d". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  if (s < 86400) {
    const minutes = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ''}`;
  }
  const hours = Math.floor((s % 86400) / 3600);
  return `${Math.floor(s / 86400)} d${hours ? ` ${hours} h` : ''}`;
}

/** The room's modes as short labels: ["Slow mode 30 s", "Followers-only (10 min)", ...]. */
export function roomStateLabels(settings) {
  if (!settings || typeof settings !== 'object') return [];
  const labels = [];
  const slow = Number(settings.slow_mode_s);
  if (slow > 0) labels.push(`Slow mode ${formatDuration(slow)}`);
  const follow = settings.followers_only_min;
  if (follow !== null && follow !== undefined && Number.isFinite(Number(follow))) {
    labels.push(Number(follow) > 0 ? `Followers-only (${formatDuration(Number(follow) * 60)})` : 'Followers-only');
  }
  if (settings.subscribers_only) labels.push('Subscribers-only');
  if (settings.emote_only) labels.push('Emote-only');
  return labels;
}

function emoteImage(emote) {
  return el('img', {
    className: 'emote', src: `/static/emotes/${emote.id}.svg`, alt: emote.code, title: emote.code,
    width: 28, height: 28, draggable: false, decoding: 'async',
  });
}

/**
 * Text nodes and emote images for a message.  Positions that do not fit the
 * text (out of range, overlapping, or not spelling the emote's code) are
 * left as text, so a bad frame can never cut or hide what was said.
 */
export function textWithEmotes(text, emotes) {
  const chars = Array.from(String(text ?? ''));
  const spans = (Array.isArray(emotes) ? emotes : [])
    .filter((e) => e && Number.isInteger(e.start) && Number.isInteger(e.end) && e.start >= 0
      && e.start <= e.end && e.end < chars.length && typeof e.code === 'string'
      && typeof e.id === 'string' && EMOTE_ID.test(e.id))
    .sort((a, b) => a.start - b.start);
  const nodes = [];
  let at = 0;
  for (const emote of spans) {
    if (emote.start < at || chars.slice(emote.start, emote.end + 1).join('') !== emote.code) continue;
    if (emote.start > at) nodes.push(document.createTextNode(chars.slice(at, emote.start).join('')));
    nodes.push(emoteImage(emote));
    at = emote.end + 1;
  }
  if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join('')));
  return nodes;
}

/** A pill for a badge ("broadcaster", "moderator", "vip", "subscriber/2"), or null for one we do not know. */
export function badgeNode(badge) {
  const name = String(badge);
  const [kind, version] = name.split('/', 2);
  let label, title;
  if (kind === 'subscriber') {
    const tier = /^\d+$/.test(version || '') ? Number(version) : 1;
    label = tier > 1 ? `SUB ${tier}` : 'SUB';
    title = `Subscriber (tier ${tier})`;
  } else if (BADGES[kind]) {
    ({ label, title } = BADGES[kind]);
  } else {
    return null;
  }
  return el('span', { className: 'chat-badge', title, dataset: { badge: kind }, attrs: { 'aria-label': title } },
    label);
}

function colourOf(key) {
  let hash = 0;
  for (const ch of String(key)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return String(hash % NAME_COLOURS);
}

/** The user a MESSAGE frame is from: {id, name, badges}. */
export function senderOf(message) {
  const user = message.user && typeof message.user === 'object' ? message.user : {};
  const name = message.display_name ?? message.username ?? user.display_name ?? user.username ?? '';
  const badges = Array.isArray(user.badges) ? user.badges : Array.isArray(message.badges) ? message.badges : [];
  return { id: user.id === undefined || user.id === null ? '' : String(user.id), name: String(name), badges };
}

/**
 * A chat message line: <li class="chat-line" data-id data-user-id> with its
 * badges, name, text and (shown to moderators only, by CSS) a menu button.
 */
export function messageLine(message, { pending = false } = {}) {
  const sender = senderOf(message);
  const badges = sender.badges.map(badgeNode).filter(Boolean);
  const line = el('li', {
    className: pending ? 'chat-line pending' : 'chat-line',
    dataset: {
      id: message.id ?? '', userId: sender.id, user: sender.name, nonce: message.nonce ?? '',
      badges: sender.badges.join(' '),
    },
  },
  badges.length ? el('span', { className: 'chat-badges' }, badges) : null,
  sender.name ? el('span', { className: 'chat-name', dataset: { colour: colourOf(sender.id || sender.name) } },
    sender.name) : null,
  el('span', { className: 'chat-text' }, textWithEmotes(message.text ?? message.body, message.emotes)));
  if (Number(message.bits) > 0) {   // a cheer: its amount beside the text
    line.querySelector('.chat-text').before(el('span', { className: 'chat-bits' }, `${message.bits} bits`));
  }
  if (pending) line.append(el('span', { className: 'chat-pending', attrs: { 'aria-label': 'sending' } }, 'sending…'));
  if (!pending && message.id && sender.id) {
    line.append(el('button', {
      type: 'button', className: 'chat-mod-toggle', title: 'Moderate',
      attrs: { 'aria-label': `Moderate ${sender.name}'s message`, 'aria-haspopup': 'menu', 'aria-expanded': 'false' },
    }, '⋯'));
  }
  return line;
}

/** A line from the room or the server: kind is 'notice' (to you only), 'error', 'mod' or '' (room events). */
export function systemLine(text, kind = '') {
  return el('li', { className: `chat-line system${kind ? ` ${kind}` : ''}`, dataset: { kind } },
    el('span', { className: 'chat-text' }, String(text)));
}

/**
 * Show a line as deleted.  Moderators keep the text, struck through; for
 * everyone else it is taken out of the page and "message deleted" stands in.
 */
export function markDeleted(line, keepText = false) {
  if (line.classList.contains('deleted')) return;
  line.classList.add('deleted');
  const text = line.querySelector('.chat-text');
  if (!text) return;
  if (!keepText) text.replaceChildren();
  text.after(el('span', { className: 'chat-deleted' }, 'message deleted'));
}
