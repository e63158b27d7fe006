// Sign-in form.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { field, session, adoptSession, loadSession, navigate, errorText } from '../ui.js';

export async function mount(root, params, query) {
  const name = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const nameF = field(t('login.username'), name);
  const passF = field(t('login.password'), pass);
  const msg = h('p', { class: 'error-box', role: 'alert', hidden: true, id: 'login-error' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, t('login.submit'));
  const form = h(
    'form',
    { class: 'login-form card', novalidate: true },
    h('div', { class: 'login-brand' }, icon('bolt', { size: 32 }), h('span', null, 'stask')),
    h('h1', { id: 'page-title', tabindex: '-1' }, t('login.title')),
    msg,
    nameF.wrap,
    passF.wrap,
    submit,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.hidden = true;
    nameF.setError(null);
    passF.setError(null);
    if (!name.value.trim()) {
      nameF.setError(t('login.username_required'));
      name.focus();
      return;
    }
    if (!pass.value) {
      passF.setError(t('login.password_required'));
      pass.focus();
      return;
    }
    submit.disabled = true;
    try {
      const res = await api.post(api.routes.login(), { name: name.value.trim(), password: pass.value });
      adoptSession(res);
      if (!session.user) await loadSession();
      const next = query.get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/');
    } catch (e) {
      msg.textContent = e.status === 401 || e.status === 400 ? t('login.failed') : errorText(e);
      if (e.status === 429) msg.textContent = errorText(e);
      msg.hidden = false;
      pass.value = '';
      pass.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h('div', { class: 'login-wrap' }, form));
  name.focus();
  return {};
}
