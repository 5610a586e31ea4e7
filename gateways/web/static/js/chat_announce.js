/**
 * Room announcements in chat: new subscriptions, resubs and gifts (SUBSCRIPTION), donations (DONATION) and raids
 * (RAID), each a highlighted line.  A RAID frame of kind "outgoing" is this room's raid going ahead: the channel
 * page (channel.js) moves its viewers to the target when the chat panel's root dispatches "glasscast:raid".
 */

import { el } from './dom.js';

const TIER_NAMES = { 1000: 'Tier 1', 2000: 'Tier 2', 3000: 'Tier 3' };

function who(user) {
  return (user && typeof user === 'object' && (user.username || user.name)) || 'Someone';
}

function money(minor, currency) {
  const amount = Number(minor) / 100;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: String(currency || 'USD') }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${currency || ''}`.trim();
  }
}

function viewers(n) {
  const count = Number(n) || 0;
  return `${count} viewer${count === 1 ? '' : 's'}`;
}

/** The text of an announcement frame, or null for one this page does not show. */
export function announcementText(frame) {
  if (frame.type === 'SUBSCRIPTION') {
    const tier = TIER_NAMES[frame.tier] || 'Tier 1';
    switch (frame.kind) {
      case 'sub': return `${who(frame.user)} subscribed at ${tier}!`;
      case 'resub': return `${who(frame.user)} subscribed at ${tier} for ${frame.months || 1} months!`
        + (frame.message ? ` “${frame.message}”` : '');
      case 'subgift': return `${who(frame.user)} gifted a ${tier} sub to ${who((frame.recipients || [])[0])}!`;
      case 'submysterygift': return `${who(frame.user)} gifted ${frame.count || 0} ${tier} subs to the community!`;
      default: return `${who(frame.user)} subscribed!`;
    }
  }
  if (frame.type === 'DONATION') {
    return `${who(frame.user)} donated ${money(frame.amount_minor, frame.currency)}`
      + (frame.message ? `: “${frame.message}”` : '') + (frame.sandbox ? ' (sandbox)' : '');
  }
  if (frame.type === 'RAID') {
    const target = who(frame.target);
    const raider = who(frame.raider);
    switch (frame.kind) {
      case 'countdown': return `Raiding ${target}: this channel's viewers will be sent there shortly.`;
      case 'cancelled': return `The raid on ${target} was cancelled.`;
      case 'outgoing': return `Raiding ${target} with ${viewers(frame.viewers)}!`;
      case 'incoming': return `${raider} is raiding with ${viewers(frame.viewers)}!`;
      default: return null;
    }
  }
  return null;
}

/** The chat line of an announcement frame, or null. */
export function announcementLine(frame) {
  const text = announcementText(frame);
  if (text === null) return null;
  const kind = frame.type.toLowerCase();
  return el('li', { className: `chat-line system announcement ${kind}`, dataset: { kind, id: frame.id ?? '' } },
    el('span', { className: 'chat-text' }, text));
}
