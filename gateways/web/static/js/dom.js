/**
 * Small DOM helpers.  Every piece of text goes in through textContent or a
 * text node, never through innerHTML, so nothing a user typed becomes markup.
 */

/**
 * el('a', {className: 'card', href: '/c/x', dataset: {id: 1}}, 'text', child)
 * Props are set as properties (so `text` and `className` work); `attrs` sets
 * attributes; null and false children are skipped; strings become text nodes.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'attrs') for (const [name, v] of Object.entries(value)) node.setAttribute(name, v);
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The element with this id (throws when a page lacks it: a bug, not a state). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

/** Show a status line: kind is '', 'error', 'ok' or 'busy'; empty text hides it. */
export function setStatus(node, text, kind = '') {
  node.textContent = text || '';
  node.hidden = !text;
  node.dataset.kind = kind;
}

/** "1 viewer", "1,234 viewers", "12.3K viewers". */
export function formatViewers(count) {
  const n = Number.isFinite(count) ? count : 0;
  const shown = n >= 10000 ? `${(n / 1000).toFixed(n >= 100000 ? 0 : 1)}K` : n.toLocaleString('en');
  return `${shown} ${n === 1 ? 'viewer' : 'viewers'}`;
}

/** "1h 02m" / "12m" since a start time in epoch ms. */
export function formatUptime(startedAtMs, nowMs = Date.now()) {
  if (!Number.isFinite(startedAtMs)) return '';
  const minutes = Math.max(0, Math.floor((nowMs - startedAtMs) / 60000));
  const hours = Math.floor(minutes / 60);
  return hours ? `${hours}h ${String(minutes % 60).padStart(2, '0')}m` : `${minutes}m`;
}

/** "2.9 Mbps" / "640 kbps". */
export function formatBitrate(bitsPerSecond) {
  if (!Number.isFinite(bitsPerSecond) || bitsPerSecond <= 0) return '';
  return bitsPerSecond >= 1e6 ? `${(bitsPerSecond / 1e6).toFixed(1)} Mbps` : `${Math.round(bitsPerSecond / 1e3)} kbps`;
}

/** Tags from a comma- or space-separated field, without empties or duplicates. */
export function parseTags(text) {
  return [...new Set(String(text || '').split(/[\s,]+/).map((t) => t.trim()).filter(Boolean))];
}

/** Copy text to the clipboard; falls back to a hidden textarea where the API is refused. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el('textarea', { value: text, readOnly: true, className: 'offscreen' });
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}
