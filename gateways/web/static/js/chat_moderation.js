/**
 * The moderator's menu on a chat line: delete the message, time its author
 * out for ten minutes, or ban them, through POST /v1/chat/{channel}/moderate
 * (gateways/chat/moderate.py) with the signed-in user's bearer token.  What
 * the chat shows changes when the room's CLEARMSG / CLEARCHAT frames arrive,
 * for everyone at once, not when this request answers.
 */

import { api, ApiError, seg } from './api.js';
import { el } from './dom.js';

export const TIMEOUT_S = 600;
const LABELS = { delete: 'Delete message', timeout: 'Timeout 10 min', ban: 'Ban' };
const VERBS = { delete: 'delete the message', timeout: 'time out', ban: 'ban' };

/**
 * The actions `me` ({id, badges}) may take on a line ({userId, badges,
 * deleted}): the server's rules (nobody acts on the broadcaster, moderators
 * not on moderators), so the menu offers nothing that would be refused.
 */
export function allowedActions(me, target) {
  const mine = new Set(me?.badges || []);
  const isBroadcaster = mine.has('broadcaster');
  if (!isBroadcaster && !mine.has('moderator')) return [];
  const actions = target.deleted ? [] : ['delete'];
  const theirs = new Set(target.badges || []);
  if (target.userId && target.userId !== me.id && !theirs.has('broadcaster')
      && (isBroadcaster || !theirs.has('moderator'))) {
    actions.push('timeout', 'ban');
  }
  return actions;
}

/** The request body for an action on a message by a user. */
export function moderationBody(action, { messageId, userId }) {
  if (action === 'delete') return { action: 'delete_message', message_id: messageId };
  if (action === 'timeout') return { action: 'timeout', user: userId, duration_s: TIMEOUT_S };
  return { action: 'ban', user: userId };
}

function targetOf(line) {
  return {
    messageId: line.dataset.id, userId: line.dataset.userId, name: line.dataset.user || 'this user',
    badges: (line.dataset.badges || '').split(' ').filter(Boolean), deleted: line.classList.contains('deleted'),
  };
}

/** One menu for the whole list, moved to the line whose ⋯ button was pressed. */
export class ModMenu {
  /**
   * list: the <ol> of lines; me(): the CONNECTED user; token(): the bearer
   * token; channelId(): the room; report(text): show an error in the chat.
   */
  constructor({ list, me, token, channelId, report }) {
    Object.assign(this, { list, me, token, channelId, report });
    this.line = null;
    this.buttons = {};
    for (const action of Object.keys(LABELS)) {
      this.buttons[action] = el('button', {
        type: 'button', className: action === 'delete' ? '' : 'danger', dataset: { action },
        attrs: { role: 'menuitem' }, onclick: () => this.run(action),
      }, LABELS[action]);
    }
    this.node = el('div', { className: 'chat-menu', hidden: true, attrs: { role: 'menu' } },
      Object.values(this.buttons));
    list.addEventListener('click', (event) => {
      const toggle = event.target.closest?.('.chat-mod-toggle');
      if (!toggle) return;
      const line = toggle.closest('.chat-line');
      if (this.line === line) this.close(); else this.open(line, toggle);
    });
    document.addEventListener('pointerdown', (event) => {
      if (this.line && !this.line.contains(event.target)) this.close();
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.line) this.close(true);
    });
  }

  open(line, toggle) {
    this.close();
    const target = targetOf(line);
    const actions = allowedActions(this.me(), target);
    if (!actions.length) return;
    for (const [action, button] of Object.entries(this.buttons)) {
      button.hidden = !actions.includes(action);
      button.disabled = false;
      if (action === 'ban') button.textContent = `Ban ${target.name}`;
    }
    this.line = line;
    this.toggle = toggle;
    toggle.setAttribute('aria-expanded', 'true');
    line.classList.add('menu-open');
    line.append(this.node);
    this.node.hidden = false;
    this.node.classList.remove('up');   // open upwards where the list would cut it off below
    if (this.node.getBoundingClientRect().bottom > this.list.getBoundingClientRect().bottom) {
      this.node.classList.add('up');
    }
    this.buttons[actions[0]].focus();
  }

  close(refocus = false) {
    if (!this.line) return;
    this.node.hidden = true;
    this.node.remove();
    this.line.classList.remove('menu-open');
    this.toggle?.setAttribute('aria-expanded', 'false');
    if (refocus) this.toggle?.focus();
    this.line = null;
    this.toggle = null;
  }

  async run(action) {
    const line = this.line;
    if (!line) return;
    const target = targetOf(line);
    for (const button of Object.values(this.buttons)) button.disabled = true;
    try {
      await api(`/v1/chat/${seg(this.channelId())}/moderate`, {
        method: 'POST', body: moderationBody(action, target), token: this.token(),
      });
      if (this.line === line) this.close();
    } catch (err) {
      if (this.line === line) this.close();
      const expired = err instanceof ApiError && err.status === 401;
      const detail = expired ? 'your session has expired; log in again' : err.message;
      const who = action === 'delete' ? '' : ` ${target.name}`;
      this.report(`Could not ${VERBS[action]}${who}: ${detail}`);
    }
  }
}
