/**
 * The dashboard's revenue section for one channel: subscriptions by tier with Twitch's sub points and, beside
 * them, a bar chart of the bits cheered in the channel on each UTC day of the last 30
 * (GET /v1/channels/{id}/subscriptions, the owner's: `bits_by_day`), bits cheered by the top cheerers today, this week,
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

const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART_W = 480;
const CHART_H = 120;

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** Bits by day as SVG bars, oldest day first; each bar names its day and bits (its tooltip and data-*). */
export function bitsChart(days) {
  const most = Math.max(1, ...days.map((d) => Number(d.bits) || 0));
  const step = CHART_W / Math.max(1, days.length);
  const bars = days.map((d, i) => {
    const bits = Number(d.bits) || 0;
    const h = Math.round((bits / most) * (CHART_H - 14));
    return svg('rect', {
      class: 'bits-bar', x: (i * step + 1).toFixed(1), y: CHART_H - h, width: Math.max(1, step - 2).toFixed(1),
      height: h, fill: 'currentColor', 'data-day': d.day, 'data-bits': bits,
    }, svg('title', {}, `${d.day}: ${bits} bits`));
  });
  const total = days.reduce((sum, d) => sum + (Number(d.bits) || 0), 0);
  const chart = svg('svg', {
    class: 'bits-chart', viewBox: `0 0 ${CHART_W} ${CHART_H}`, width: CHART_W, height: CHART_H, role: 'img',
    'aria-label': `Bits cheered per day, last ${days.length} days: ${total} in all`,
  }, svg('text', { x: 0, y: 10, 'font-size': 10, fill: 'currentColor' }, `most in a day: ${most}`), ...bars);
  return el('figure', { className: 'bits-by-day' }, el('h4', {}, `Bits by day (last ${days.length} days: ${total})`),
    chart, el('figcaption', {}, days.length ? `${days[0].day} to ${days[days.length - 1].day}, UTC` : ''));
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
      const tiers = el('div', {}, el('h4', {}, `Subscriptions: ${subs.total} (${subs.points} sub points)`),
        table(['Tier', 'Subscribers'], TIERS.map(([tier, name]) => [name, subs.by_tier?.[tier] ?? 0])));
      parts.push(el('div', { className: 'revenue-row' },
        tiers, bitsChart(subs.bits_by_day || [])));
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
