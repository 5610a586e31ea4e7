/**
 * The channel page's money controls.
 *
 * Subscribe and Gift (POST /v1/subscriptions {channel_id, tier, gift_count?}):
 * a tier choice and a number of gifts; the answer says whether the payment
 * provider is the sandbox (which completes at once, and the page says so) or
 * gives a checkout URL to go to.  Bits (GET /v1/me/bits): the balance and a
 * cheer picker in the chat panel, which sends "cheer<N> <text>" as a chat
 * message; the chat charges it once (gateways/chat/cheers.py).
 */

import { api, ApiError } from './api.js';
import { el, setStatus } from './dom.js';
import { currentSession } from './session.js';

const CHEERS = [1, 100, 500, 1000];
const BITS_REFRESH_MS = 1500;

export class SubscribeControls {
  constructor({ tier, subscribe, gift, giftCount, status }) {
    Object.assign(this, { tier, subscribe, gift, giftCount, status });
    this.channel = null;
    subscribe.addEventListener('click', () => this.order({}));
    gift.addEventListener('click', () => this.order({ gift_count: Number(giftCount.value) || 1 }));
  }

  show(channel) {
    this.channel = channel;
    const session = currentSession();
    const mine = session && String(session.user?.id) === String(channel.owner_user_id);
    for (const node of [this.tier, this.subscribe, this.gift, this.giftCount]) node.hidden = Boolean(mine);
  }

  async order(extra) {
    const session = currentSession();
    if (!session) {
      setStatus(this.status, 'Log in to subscribe.', 'error');
      return;
    }
    this.subscribe.disabled = this.gift.disabled = true;
    try {
      const answer = await api('/v1/subscriptions', { method: 'POST', token: session.token,
        body: { channel_id: this.channel.id, tier: Number(this.tier.value), ...extra } });
      if (answer.checkout_url && answer.status !== 'completed') {
        location.assign(answer.checkout_url);
        return;
      }
      const what = extra.gift_count ? `Gifted ${extra.gift_count} subscription(s)` : 'Subscribed';
      setStatus(this.status, `${what}${answer.sandbox ? ' (sandbox payment: no money moved)' : ''}.`, 'ok');
    } catch (err) {
      setStatus(this.status, err instanceof ApiError ? err.message : String(err), 'error');
    } finally {
      this.subscribe.disabled = this.gift.disabled = false;
    }
  }
}

export class CheerPicker {
  /** input/form: the chat composer's; the picker adds "cheer<N> " in front of what is typed and sends it. */
  constructor({ root, balance, amount, button, input, form }) {
    Object.assign(this, { root, balance, amount, button, input, form });
    amount.replaceChildren(...CHEERS.map((n) => el('option', { value: String(n) }, `${n} bits`)));
    button.addEventListener('click', () => this.cheer());
    this.refresh();
  }

  async refresh() {
    const session = currentSession();
    this.root.hidden = !session;
    if (!session) return;
    try {
      const bits = await api('/v1/me/bits', { token: session.token });
      this.balance.textContent = `${bits.balance} bits${bits.sandbox ? ' (sandbox)' : ''}`;
      this.balance.dataset.balance = String(bits.balance);
    } catch {
      this.balance.textContent = 'bits unavailable';
    }
  }

  cheer() {
    const text = this.input.value.trim();
    this.input.value = `cheer${this.amount.value}${text ? ` ${text}` : ''}`;
    this.form.requestSubmit();
    setTimeout(() => this.refresh(), BITS_REFRESH_MS);
  }
}
