/**
 * Form plumbing shared by the dashboard: read a form, run its API call with
 * the submit button disabled, and show the server's problem detail next to
 * the form (marking the field the problem names).
 */

import { setStatus } from './dom.js';

/** The form's fields as an object of trimmed strings (password fields untrimmed). */
export function readForm(form) {
  const values = {};
  for (const input of form.querySelectorAll('input, textarea, select')) {
    if (!input.name) continue;
    values[input.name] = input.type === 'password' ? input.value : input.value.trim();
  }
  return values;
}

function clearInvalid(form) {
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/**
 * Submit handler: `action(values)` runs with the button disabled; its error's
 * message (the API's detail) is shown in the form's .form-status line.
 */
export function onSubmit(form, action) {
  const status = form.querySelector('.form-status');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    clearInvalid(form);
    if (status) setStatus(status, '');
    button.disabled = true;
    try {
      await action(readForm(form));
    } catch (err) {
      const field = err?.problem?.field;
      const input = field ? form.querySelector(`[name="${CSS.escape(field)}"]`) : null;
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
      if (status) setStatus(status, err.message || String(err), 'error');
    } finally {
      button.disabled = false;
    }
  });
}
