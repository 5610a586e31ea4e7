/**
 * The dashboard's video retention setting for a channel: how many days its past broadcasts are
 * kept before they are deleted (PATCH /v1/channels/{id} {vod_retention_days}: 1 to 3650).  Clips
 * made from a video outlive it.
 */

import { api, ApiError, seg } from './api.js';
import { el, setStatus } from './dom.js';
import { onSubmit } from './forms.js';

export const MAX_RETENTION_DAYS = 3650;

export class RetentionSettings {
  /** ctx: {token(), onAuthLost()}. */
  constructor(channel, ctx) {
    this.channel = channel;
    this.input = el('input', {
      name: 'vod_retention_days', type: 'number', min: 1, max: MAX_RETENTION_DAYS, step: 1, inputMode: 'numeric',
      required: true, className: 'retention-days',
    });
    this.status = el('p', { className: 'status form-status', role: 'alert', hidden: true });
    const form = el('form', { className: 'retention-form', noValidate: true },
      el('label', {}, 'Keep past broadcasts for (days)', this.input,
        el('small', {}, 'Older videos are deleted; clips made from them stay.')),
      el('button', { type: 'submit' }, 'Save'),
      this.status);
    onSubmit(form, async (values) => {
      const days = Number(values.vod_retention_days);
      try {
        const updated = await api(`/v1/channels/${seg(this.channel.id)}`, {
          method: 'PATCH', token: ctx.token(), body: { vod_retention_days: Number.isInteger(days) ? days : values.vod_retention_days },
        });
        this.update(updated);
        setStatus(this.status, `Videos are kept for ${this.input.value} days.`, 'ok');
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) ctx.onAuthLost();
        throw err;
      }
    });
    this.node = el('section', { className: 'retention' }, el('h3', {}, 'Videos'), form);
    this.update(channel);
  }

  /** Show a channel answer's setting (unless the creator is editing it). */
  update(channel) {
    this.channel = channel;
    const days = channel.vod_retention_days;
    if (Number.isFinite(days) && document.activeElement !== this.input) this.input.value = String(days);
  }
}
