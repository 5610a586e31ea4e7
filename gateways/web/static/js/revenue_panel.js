/**
 * The dashboard's revenue section for one channel: subscriptions by tier with Twitch's sub points
 * (GET /v1/channels/{id}/subscriptions, the owner's), bits cheered by the top cheerers today, this week,
 * this month and ever (GET /v1/channels/{id}/bits/leaderboard?period=), and the last donations
 * (GET /v1/channels/{id}/donations).  Refreshed when the section is opened.
 */

import { api, seg } from './api.js';
import { el } from './dom.js';

const PERIODS = [['day', 'Today'], ['week', 'This week'], ['month', 'This month'], ['all', 'All time']];
const TIERS = [['1000', 'Tier 1'], ['2000', 'Tier 2'], ['3000', 'Tier 3']];

function table(head, rows) {
  return el('table', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, String(c)))))));
}

export class RevenuePanel {
  /** ctx: {token()}. */
  constructor(channel, ctx) {
    this.channel = channel;
    this.ctx = ctx;
    this.body = el('div', { className: 'revenue-body' }, 'Open to load.');
    this.node = el('details', { className: 'revenue' }, el('summary', {}, 'Revenue'), this.body);
    this.node.addEventListener('toggle', () => { if (this.node.open) this.load(); });
  }

  async load() {
    const id = seg(this.channel.id);
    const parts = [];
    try {
      const subs = await api(`/v1/channels/${id}/subscriptions`, { token: this.ctx.token() });
      parts.push(el('h4', {}, `Subscriptions: ${subs.total} (${subs.points} sub points)`),
        table(['Tier', 'Subscribers'], TIERS.map(([tier, name]) => [name, subs.by_tier?.[tier] ?? 0])));
    } catch (err) {
      parts.push(el('p', { className: 'status' }, `Subscriptions unavailable: ${err.message}`));
    }
    const bits = [];
    for (const [period, label] of PERIODS) {
      try {
        const board = await api(`/v1/channels/${id}/bits/leaderboard?period=${period}`);
        const total = board.entries.reduce((sum, e) => sum + Number(e.bits || 0), 0);
        bits.push([label, total, board.entries[0]?.username || '–']);
      } catch {
        bits.push([label, '–', '–']);
      }
    }
    parts.push(el('h4', {}, 'Bits (top cheerers)'), table(['Period', 'Bits', 'Top cheerer'], bits));
    try {
      const { donations } = await api(`/v1/channels/${id}/donations?limit=10`);
      parts.push(el('h4', {}, 'Last donations'), table(['From', 'Amount', 'Message'], (donations || []).map((d) => [
        d.username || d.user_id || '?', `${(Number(d.amount_minor) / 100).toFixed(2)} ${d.currency || ''}`,
        d.message || ''])));
    } catch {
      // no donations to show
    }
    this.body.replaceChildren(...parts);
  }
}
