/**
 * The dashboard's raid and host controls for one channel.
 *
 * Raid: name a live channel and start the countdown (POST /v1/raids); while it
 * runs the panel counts down to the deadline the server gave, with "Raid Now"
 * (POST /v1/raids/{id}/go) and "Cancel" (DELETE /v1/raids?broadcaster_id=).
 * The countdown is the server's: a reloaded dashboard finds it again
 * (GET /v1/raids), and the raid goes ahead at the deadline whether or not this
 * page is open.  Host: an offline channel can host a live one
 * (POST/DELETE /v1/channels/{id}/host); its page then plays that stream.
 */

import { api, ApiError, seg } from './api.js';
import { el, setStatus } from './dom.js';
import { onSubmit } from './forms.js';

const TICK_MS = 250;

export class RaidPanel {
  /** ctx: {token(), onAuthLost()}. */
  constructor(channel, ctx) {
    this.channel = channel;
    this.ctx = ctx;
    this.raid = null;
    this.timer = null;
    this.target = el('input', { name: 'to_broadcaster_id', maxLength: 64, required: true, placeholder: 'channel name',
      className: 'raid-target' });
    this.countdown = el('p', { className: 'raid-countdown', role: 'status', hidden: true });
    this.now = el('button', { type: 'button', className: 'raid-now', hidden: true }, 'Raid Now');
    this.cancel = el('button', { type: 'button', className: 'raid-cancel link-button', hidden: true }, 'Cancel raid');
    this.status = el('p', { className: 'status form-status', role: 'alert', hidden: true });
    this.form = el('form', { className: 'raid-form', noValidate: true },
      el('label', {}, 'Raid a live channel', this.target,
        el('small', {}, 'After a 90 s countdown your viewers are sent to their stream.')),
      el('button', { type: 'submit', className: 'raid-button' }, 'Raid'), this.status);
    onSubmit(this.form, (values) => this.call(async () => {
      const answer = await api('/v1/raids', { method: 'POST', token: ctx.token(),
        body: { from_broadcaster_id: this.channel.id, to_broadcaster_id: values.to_broadcaster_id } });
      this.show(answer.data[0], values.to_broadcaster_id);
    }));
    this.now.addEventListener('click', () => this.act(async () => {
      const answer = await api(`/v1/raids/${seg(this.raid.id)}/go`, { method: 'POST', token: ctx.token() });
      this.finished(answer.data[0]);
    }));
    this.cancel.addEventListener('click', () => this.act(async () => {
      await api(`/v1/raids?broadcaster_id=${seg(this.channel.id)}`, { method: 'DELETE', token: ctx.token() });
      this.finished(null, 'Raid cancelled.');
    }));

    this.hostTarget = el('input', { name: 'target_channel_id', maxLength: 64, required: true,
      placeholder: 'channel name', className: 'host-target' });
    this.hostState = el('p', { className: 'host-state', role: 'status', hidden: true });
    this.stopHost = el('button', { type: 'button', className: 'host-stop link-button', hidden: true }, 'Stop hosting');
    const hostStatus = el('p', { className: 'status form-status', role: 'alert', hidden: true });
    const hostForm = el('form', { className: 'host-form', noValidate: true },
      el('label', {}, 'Host a live channel while you are offline', this.hostTarget),
      el('button', { type: 'submit', className: 'host-button' }, 'Host'), hostStatus);
    onSubmit(hostForm, (values) => this.call(async () => {
      const answer = await api(`/v1/channels/${seg(this.channel.id)}/host`, { method: 'POST', token: ctx.token(),
        body: { target_channel_id: values.target_channel_id } });
      this.showHost(answer.hosting);
    }));
    this.stopHost.addEventListener('click', () => this.act(async () => {
      await api(`/v1/channels/${seg(this.channel.id)}/host`, { method: 'DELETE', token: ctx.token() });
      this.showHost(null);
    }));

    this.node = el('section', { className: 'raids' }, el('h3', {}, 'Raid and host'),
      this.form, this.countdown, el('div', { className: 'raid-actions' }, this.now, this.cancel),
      hostForm, this.hostState, this.stopHost);
    this.load();
  }

  async call(action) {
    try {
      await action();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.ctx.onAuthLost();
      throw err;
    }
  }

  async act(action) {
    try {
      await this.call(action);
    } catch (err) {
      setStatus(this.status, err.message || String(err), 'error');
    }
  }

  async load() {
    try {
      const answer = await api(`/v1/raids?broadcaster_id=${seg(this.channel.id)}`, { token: this.ctx.token() });
      this.show(answer.data[0]);
    } catch {
      // no raid counting down
    }
    try {
      this.showHost((await api(`/v1/channels/${seg(this.channel.id)}/host`)).hosting);
    } catch {
      // shown once the API answers again
    }
  }

  show(raid, targetName = null) {
    this.raid = { ...raid, targetName: targetName || raid.to_broadcaster_id };
    this.form.hidden = true;
    this.now.hidden = false;
    this.cancel.hidden = false;
    this.countdown.hidden = false;
    clearInterval(this.timer);
    const tick = () => {
      const left = Math.max(0, Math.ceil((this.raid.deadline_at_ms - Date.now()) / 1000));
      this.countdown.textContent = left > 0 ? `Raiding ${this.raid.targetName} in ${left} s`
        : `Raiding ${this.raid.targetName}…`;
      if (left === 0) {
        clearInterval(this.timer);
        setTimeout(() => this.finished(null, `Raided ${this.raid?.targetName || ''}.`), 2000);
      }
    };
    tick();
    this.timer = setInterval(tick, TICK_MS);
  }

  finished(raid, message = null) {
    clearInterval(this.timer);
    const name = this.raid?.targetName || '';
    this.raid = null;
    this.form.hidden = false;
    this.now.hidden = true;
    this.cancel.hidden = true;
    this.countdown.hidden = false;
    this.countdown.textContent = message || (raid ? `Raided ${name} with ${raid.viewers ?? 0} viewers.` : '');
  }

  showHost(hosting) {
    this.hostState.hidden = !hosting;
    this.stopHost.hidden = !hosting;
    this.hostState.textContent = hosting ? `Hosting ${hosting.channel_name}` : '';
  }
}
