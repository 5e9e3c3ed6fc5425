// jet_sqla console: try every action of a jet_sqla backend from a browser.
// Plain ES2020, no dependencies. Served from {prefix}/console/, talks to {prefix}/messages/.
'use strict';
(() => {
  const API_URL = new URL('../messages/', location.href);
  const TOKEN_KEY = 'jet_sqla.console.token';
  const PAGE_SIZE = 20;
  const DEBOUNCE_MS = 200;
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem(TOKEN_KEY), actions: [], entries: [], current: null, rec: null, uid: 0, running: false };

  // ---------- helpers ----------
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'checked') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    el.append(...kids.flat(Infinity).filter((c) => c != null && c !== false));
    return el;
  }
  const humanize = (s) => {
    const t = String(s).replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_\-.]+/g, ' ').trim().toLowerCase();
    return t.charAt(0).toUpperCase() + t.slice(1);
  };
  const labelOf = (x) => x.label || x.verbose_name || humanize(x.name);
  const valueKey = (v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
  const pretty = (v) => JSON.stringify(v, null, 2);
  function swatch(color) {
    const s = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    if (color) s.style.setProperty('--swatch', color); else s.classList.add('swatch-none');
    return s;
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.title)) || `Request failed (HTTP ${status})`);
      this.status = status;
      this.body = body || {};
    }
  }
  async function call(name, params) {
    let res;
    try {
      res = await fetch(API_URL, {
        method: 'POST',
        // Errors as RFC 9457 problem details: type, title, status, detail, code, and fields for a bad form.
        headers: { 'Content-Type': 'application/json', Accept: 'application/json, application/problem+json', Authorization: `Bearer ${state.token}` },
        body: JSON.stringify({ name, params: params || {} }),
        credentials: 'omit', cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, { title: 'Network error', detail: `Could not reach the server (${e.message}).` });
    }
    const text = await res.text();
    let body = null;
    if (text) { try { body = JSON.parse(text); } catch { body = { detail: text.slice(0, 300) }; } }
    // A rejected token stays in the box, so that a typo can be fixed rather than typed again.
    if (res.status === 401) signOut((body && body.detail) || 'The token was rejected. Please sign in again.', true);
    if (!res.ok) throw new ApiError(res.status, body);
    return body;
  }

  // ---------- sign in / out ----------
  function showLogin(message, keepTyped) {
    $('app').hidden = true;
    $('signout').hidden = true;
    $('history').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token-input').setAttribute('aria-invalid', message ? 'true' : 'false');
    if (!keepTyped) { $('token-input').value = ''; showToken(false); }
    $('token-input').focus();
    if (keepTyped) $('token-input').select();
  }
  function showToken(on) {
    $('token-input').type = on ? 'text' : 'password';
    $('token-show').setAttribute('aria-pressed', String(on));
    $('token-show').textContent = on ? 'Hide' : 'Show';
  }
  $('token-show').addEventListener('click', () => showToken($('token-input').type === 'password'));
  function signOut(message, keepTyped) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.current = state.rec = null;
    $('action-list').replaceChildren();
    $('pane').replaceChildren(h('p', { class: 'muted' }, 'Choose an action on the left to see its form.'));
    resetResult();
    showLogin(message, keepTyped);
  }
  async function connect() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('signout').hidden = false;
    $('history').hidden = false;
    try {
      state.actions = await call('get_action_list');
      if (!Array.isArray(state.actions)) throw new ApiError(500, { detail: 'get_action_list did not return a list.' });
    } catch (e) {
      if (e.status !== 401) showLogin(`Could not load actions: ${e.message}`, true);
      return;
    }
    renderActionList();
  }
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) { showLogin('Enter a token.'); return; }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    connect();
  });
  $('signout').addEventListener('click', () => signOut(''));
  $('history').addEventListener('click', () => showHistory());  // not the event as `after`

  // ---------- action list ----------
  function renderActionList() {
    const common = [];
    const byModel = new Map();
    state.entries = [];
    const seen = new Set();
    for (const action of state.actions) {
      const ma = action.model_action;
      const models = !ma ? [null] : Array.isArray(ma.model) ? ma.model : [ma.model];
      for (const model of models) {
        // The first button of an action is `action-<name>`; extra collections add `--<collection>`.
        const testid = seen.has(action.name) ? `action-${action.name}--${model}` : `action-${action.name}`;
        seen.add(action.name);
        const entry = { action, model, testid, record: !!(ma && ma.for_instance), bulk: !!(ma && ma.bulk) };
        state.entries.push(entry);
        if (model === null) { common.push(entry); continue; }
        if (!byModel.has(model)) byModel.set(model, { collection: [], record: [] });
        byModel.get(model)[entry.record ? 'record' : 'collection'].push(entry);
      }
    }
    const list = (entries) => h('ul', { class: 'action-items' }, entries.map((en) => h('li', null,
      h('button', { type: 'button', class: 'action-btn', 'data-testid': en.testid, 'data-model': en.model,
        'data-search': `${labelOf(en.action)} ${en.action.name} ${en.model || ''}`.toLowerCase(),
        onclick: () => selectAction(en, true) }, labelOf(en.action)))));
    const groups = [];
    if (common.length) groups.push(h('section', { class: 'group' }, h('h3', null, 'Common actions'), list(common)));
    for (const model of [...byModel.keys()].sort()) {
      const g = byModel.get(model);
      groups.push(h('section', { class: 'group' }, h('h3', null, h('span', { class: 'muted' }, 'Collection '), model),
        g.collection.length ? [h('h4', null, 'Collection actions'), list(g.collection)] : null,
        g.record.length ? [h('h4', null, 'Record actions'), list(g.record)] : null));
    }
    const box = $('action-list');
    box.replaceChildren(...(groups.length ? groups : [h('p', { class: 'muted' }, 'This backend registers no actions.')]));
    box.removeAttribute('aria-busy');
    filterActions();
    const hash = new URLSearchParams(location.hash.slice(1));
    const found = state.entries.find((en) => en.action.name === hash.get('action') && String(en.model) === String(hash.get('model') ?? null));
    if (found) selectAction(found, false);
  }
  function filterActions() {
    const q = $('action-filter').value.trim().toLowerCase();
    for (const group of $('action-list').querySelectorAll('.group')) {
      for (const li of group.querySelectorAll('li')) li.hidden = !!q && !li.firstChild.dataset.search.includes(q);
      for (const ul of group.querySelectorAll('ul')) {
        const empty = ![...ul.children].some((li) => !li.hidden);
        ul.hidden = empty;
        if (ul.previousElementSibling.tagName === 'H4') ul.previousElementSibling.hidden = empty;
      }
      group.hidden = !group.querySelector('li:not([hidden])');
    }
  }
  $('action-filter').addEventListener('input', filterActions);

  function selectAction(entry, focus) {
    state.current = entry;
    for (const b of document.querySelectorAll('.action-btn')) {
      if (b.dataset.testid === entry.testid) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
    }
    const hash = new URLSearchParams({ action: entry.action.name });
    if (entry.model !== null) hash.set('model', entry.model);
    history.replaceState(null, '', `#${hash}`);
    resetResult();
    renderPane(entry);
    if (focus) $('pane-title').focus();
  }

  // ---------- the action pane ----------
  function renderPane(entry) {
    const { action, model } = entry;
    const kind = model === null ? 'Common action' : entry.record ? 'Record action' : 'Collection action';
    const ctx = { entry, controls: [] };
    state.rec = null;
    ctx.formValues = () => collect(ctx, false).values;
    ctx.changed = (name) => {
      const form = ctx.formValues();
      for (const c of ctx.controls) if (c.name !== name && c.refresh) c.refresh(form);
    };
    const params = Array.isArray(action.params) ? action.params : [];
    ctx.controls = params.map((p) => makeField(p, ctx));
    const runBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'run-action' }, 'Run');
    ctx.runBtn = runBtn;
    // A dry run: the action runs and is rolled back; the server answers what it would change.
    const previewBtn = action.preview === false ? null : h('button', { type: 'button', class: 'btn', 'data-testid': 'preview-action',
      title: 'Run it, show what it would change, and roll it back', onclick: () => run(ctx, true) }, 'Preview');
    ctx.previewBtn = previewBtn;
    const form = h('form', { class: 'action-form', novalidate: true, 'aria-labelledby': 'pane-title',
      onsubmit: (e) => { e.preventDefault(); run(ctx); },
      onkeydown: (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); } } },
    ctx.controls.length
      ? [h('p', { class: 'muted small' }, 'Fields marked ', h('span', { class: 'req' }, '*'), ' are required.'), ctx.controls.map((c) => c.wrap)]
      : h('p', { class: 'muted' }, 'This action takes no parameters.'),
    h('div', { class: 'form-actions' }, runBtn, previewBtn,
      h('span', { class: 'muted small' }, entry.record ? (entry.bulk ? 'Runs once with all selected records.' : 'Runs once per selected record.') : '')));
    $('pane').replaceChildren(...[
      h('h2', { id: 'pane-title', tabindex: '-1' }, labelOf(action)),
      h('p', { class: 'meta' }, h('span', { class: 'badge' }, kind), model !== null ? h('span', { class: 'badge badge-outline' }, model) : null,
        entry.record ? h('span', { class: 'badge badge-outline' }, entry.bulk ? 'bulk' : 'one request per record') : null,
        h('code', { class: 'muted small' }, action.name)),
      action.description ? h('p', null, action.description) : null,
      entry.record ? recordsSection(model) : null,
      form].filter(Boolean));
    ctx.controls.forEach((c) => c.refresh && c.refresh(ctx.formValues()));
  }

  // ---------- records table ----------
  function recordsSection(model) {
    const rec = state.rec = { model, offset: 0, pk: 'id', selected: new Map(), seq: 0 };
    rec.wrap = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading records…'));
    rec.count = h('span', { class: 'small', 'aria-live': 'polite' });
    rec.clear = h('button', { type: 'button', class: 'btn btn-quiet btn-small', hidden: true, onclick: () => { rec.selected.clear(); if (rec.data) renderTable(rec.data); } }, 'Clear selection');
    rec.prev = h('button', { type: 'button', class: 'btn btn-small', onclick: () => loadRecords(Math.max(0, rec.offset - PAGE_SIZE)) }, '‹ Prev');
    rec.next = h('button', { type: 'button', class: 'btn btn-small', onclick: () => loadRecords(rec.offset + PAGE_SIZE) }, 'Next ›');
    rec.page = h('span', { class: 'small muted' });
    loadRecords(0);
    return h('section', { class: 'records', 'aria-labelledby': 'records-title' },
      h('div', { class: 'records-head' }, h('h3', { id: 'records-title' }, `Select records of ${model}`), rec.count, rec.clear),
      rec.wrap, h('div', { class: 'pager' }, rec.prev, rec.page, rec.next));
  }
  async function loadRecords(offset) {
    const rec = state.rec;
    const seq = ++rec.seq;
    rec.wrap.setAttribute('aria-busy', 'true');
    rec.prev.disabled = rec.next.disabled = true;
    try {
      const data = await call('list_records', { model: rec.model, limit: PAGE_SIZE, offset });
      if (rec !== state.rec || seq !== rec.seq) return;
      rec.offset = offset;
      rec.data = data || {};
      renderTable(rec.data);
    } catch (e) {
      if (rec !== state.rec || seq !== rec.seq) return;
      rec.wrap.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, `Could not load records: ${e.message}`));
      rec.prev.disabled = rec.offset === 0;
    } finally {
      rec.wrap.removeAttribute('aria-busy');
    }
  }
  function formatCell(v, labels) {
    if (v === null || v === undefined) return h('span', { class: 'null' }, 'null');
    const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
    // A foreign key shows the related row's label, and its key beside it.
    const label = labels && Object.prototype.hasOwnProperty.call(labels, s) ? String(labels[s]) : null;
    if (label !== null) {
      const shown = label.length > 60 ? `${label.slice(0, 59)}…` : label;
      return h('span', { class: 'fk', title: label }, shown, h('span', { class: 'fk-key' }, ` · ${s}`));
    }
    return s.length > 80 ? h('span', { title: s }, `${s.slice(0, 79)}…`) : s;
  }
  const numeric = (c) => /^(Integer|Float|Decimal)Field$/.test(c.field || '');
  function renderTable(data) {
    const rec = state.rec;
    const records = Array.isArray(data.records) ? data.records : [];
    const labels = data.labels && typeof data.labels === 'object' ? data.labels : {};
    const pk = rec.pk = data.pk || 'id';
    const cols = Array.isArray(data.columns) && data.columns.length ? data.columns
      : Object.keys(records[0] || { [pk]: null }).map((name) => ({ name }));
    const boxes = [];
    const all = h('input', { type: 'checkbox', 'data-testid': 'select-all', 'aria-label': 'Select all records on this page',
      onchange: () => {
        const on = all.checked;
        for (const b of boxes) if (b.checked !== on) { b.checked = on; b.dispatchEvent(new Event('change')); }
      } });
    const sync = () => {
      const n = boxes.filter((b) => b.checked).length;
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
      all.disabled = !boxes.length;
      const total = rec.selected.size;
      rec.count.textContent = total ? `${total} selected` : 'None selected';
      rec.clear.hidden = !total;
    };
    const rows = records.map((r) => {
      const id = r[pk];
      const box = h('input', { type: 'checkbox', 'data-testid': `select-${id}`, 'aria-label': `Select record ${id}`, checked: rec.selected.has(valueKey(id)) });
      const tr = h('tr', { class: box.checked ? 'selected' : null },
        h('td', { class: 'sel' }, box), cols.map((c) => {
          const fk = labels[c.name];
          return h('td', { class: numeric(c) && !fk ? 'num' : null, 'data-column': c.name }, formatCell(r[c.name], fk));
        }));
      box.addEventListener('change', () => {
        if (box.checked) rec.selected.set(valueKey(id), id); else rec.selected.delete(valueKey(id));
        tr.classList.toggle('selected', box.checked);
        sync();
      });
      boxes.push(box);
      return tr;
    });
    const table = h('table', { 'data-testid': 'records-table' },
      h('caption', { class: 'visually-hidden' }, `${rec.model} records, from ${rec.offset + 1}`),
      h('thead', null, h('tr', null, h('th', { scope: 'col', class: 'sel' }, all),
        cols.map((c) => h('th', { scope: 'col', title: c.field || null, class: numeric(c) && !labels[c.name] ? 'num' : null }, c.name,
          c.name === pk ? h('span', { class: 'muted small' }, ' (pk)') : null,
          c.related ? h('span', { class: 'fk-to' }, ` → ${c.related}`) : null)))),
      h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: cols.length + 1, class: 'muted empty' }, 'No records on this page.'))));
    rec.wrap.replaceChildren(table);
    rec.prev.disabled = rec.offset === 0;
    rec.next.disabled = !data.has_more;
    rec.page.textContent = records.length ? `Records ${rec.offset + 1}–${rec.offset + records.length}` : '';
    sync();
  }

  // ---------- form fields ----------
  function makeField(p, ctx) {
    const id = `f${++state.uid}`;
    const required = p.required !== false;
    const describedBy = [p.description ? `${id}-hint` : null, `${id}-err`].filter(Boolean).join(' ');
    const c = { name: p.name, param: p, required, id };
    const input = (attrs, read) => {
      c.el = h('input', { id, ...attrs });
      c.read = read || (() => (c.el.value === '' ? { empty: true } : { value: c.el.value }));
    };
    const number = (integer) => () => {
      if (c.el.validity.badInput) return { error: 'Enter a number.' };
      const v = c.el.value.trim();
      if (v === '') return { empty: true };
      const n = Number(v);
      if (integer && !Number.isInteger(n)) return { error: 'Enter a whole number.' };
      return { value: integer && !Number.isSafeInteger(n) ? v : n };
    };
    switch (p.field) {
      case 'BooleanField':
        input({ type: 'checkbox' }, () => ({ value: c.el.checked }));
        break;
      case 'IntegerField': input({ type: 'number', step: '1', inputmode: 'numeric' }, number(true)); break;
      case 'FloatField': input({ type: 'number', step: 'any' }, number(false)); break;
      case 'DecimalField':
        input({ type: 'text', inputmode: 'decimal', autocomplete: 'off', spellcheck: 'false' },
          () => (c.el.value.trim() === '' ? { empty: true } : { value: c.el.value.trim() }));
        break;
      case 'DateField': input({ type: 'date' }); break;
      case 'TimeField': input({ type: 'time', step: '1' }); break;
      case 'DateTimeField': case 'TimestampField':
        input({ type: 'datetime-local', step: '1' }, () => {
          const v = c.el.value;
          return v === '' ? { empty: true } : { value: v.length === 16 ? `${v}:00` : v };
        });
        break;
      case 'TextField': case 'TranslatableField':
        c.el = h('textarea', { id, rows: '4' });
        break;
      case 'CodeField': case 'SqlField': case 'JSONField':
        c.el = h('textarea', { id, rows: '6', class: 'code', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off' });
        if (p.field === 'JSONField') {
          c.read = () => {
            if (c.el.value.trim() === '') return { empty: true };
            try { return { value: JSON.parse(c.el.value) }; } catch (e) { return { error: `Invalid JSON: ${e.message}` }; }
          };
        }
        break;
      case 'SelectField': selectField(c, p, ctx); break;
      case 'ForeignKey': comboField(c, p, ctx); break;
      default: input({ type: 'text' });
    }
    c.read = c.read || (() => (c.el.value === '' ? { empty: true } : { value: c.el.value }));
    c.el.setAttribute('data-testid', `field-${p.name}`);
    c.el.setAttribute('aria-describedby', describedBy);
    if (required && p.field !== 'BooleanField') c.el.setAttribute('aria-required', 'true');
    c.err = h('p', { id: `${id}-err`, class: 'field-error', 'data-testid': `error-${p.name}` });
    c.setError = (msg) => {
      c.err.textContent = msg || '';
      if (msg) c.el.setAttribute('aria-invalid', 'true'); else c.el.removeAttribute('aria-invalid');
      c.wrap.classList.toggle('invalid', !!msg);
    };
    c.el.addEventListener('input', () => c.setError(''));
    if (!c.combo) c.el.addEventListener('change', () => ctx.changed(c.name));
    const label = h('label', { for: id }, labelOf(p), required && p.field !== 'BooleanField' ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null);
    const hint = p.description ? h('p', { id: `${id}-hint`, class: 'hint' }, p.description) : null;
    const type = h('span', { class: 'ftype', 'aria-hidden': 'true' }, p.field || 'CharField');
    c.wrap = p.field === 'BooleanField'
      ? h('div', { class: 'field field-check' }, h('div', { class: 'check-row' }, c.el, label, type), hint, c.err)
      : h('div', { class: 'field' }, h('div', { class: 'label-row' }, label, type), c.control || c.el, hint, c.err);
    return c;
  }
  const fetchOptions = (ctx, field, form, extra) =>
    call('get_field_options', { action: ctx.entry.action.name, field, form, ...extra });

  function selectField(c, p, ctx) {
    const staticOptions = (p.params && Array.isArray(p.params.options)) ? p.params.options : [];
    let options = [];
    let seq = 0;
    const sel = c.el = h('select', { id: c.id });
    const sw = swatch(null);
    c.control = h('div', { class: 'select-row' }, sel, sw);
    const paint = () => {
      const o = options.find((x) => valueKey(x.value) === sel.value);
      sw.style.setProperty('--swatch', (o && o.color) || 'transparent');
      sw.classList.toggle('swatch-none', !(o && o.color));
      sel.classList.toggle('has-swatch', !!(o && o.color));
    };
    const fill = (list) => {
      const current = sel.value;
      options = list;
      sel.replaceChildren(h('option', { value: '' }, c.required ? 'Choose…' : '(none)'),
        ...list.map((o) => h('option', { value: valueKey(o.value) }, swatch(o.color), h('span', null, String(o.name ?? o.value)))));
      sel.value = list.some((o) => valueKey(o.value) === current) ? current : '';
      paint();
    };
    sel.addEventListener('change', paint);
    c.read = () => {
      const o = options.find((x) => valueKey(x.value) === sel.value);
      return o ? { value: o.value } : { empty: true };
    };
    c.refresh = async (form) => {
      const s = ++seq;
      try {
        const list = await fetchOptions(ctx, p.name, form, {});
        // An empty answer keeps the static options (the server may have no options function).
        if (s === seq && Array.isArray(list) && (list.length || !staticOptions.length)) fill(list);
      } catch { /* keep the options we have */ }
    };
    fill(staticOptions);
  }

  function comboField(c, p, ctx) {
    const id = c.id;
    const input = c.el = h('input', { id, type: 'text', role: 'combobox', 'aria-autocomplete': 'list', 'aria-expanded': 'false',
      'aria-controls': `${id}-lb`, autocomplete: 'off', spellcheck: 'false', placeholder: 'Type to search…' });
    const related = p.params && p.params.related_model && p.params.related_model.model;
    const list = h('ul', { id: `${id}-lb`, role: 'listbox', 'aria-label': `${labelOf(p)} options` });
    const status = h('p', { class: 'combo-status small muted', role: 'status' });
    const more = h('button', { type: 'button', class: 'btn btn-small more', hidden: true }, 'Load more');
    const pop = h('div', { class: 'combo-pop', hidden: true }, list, status, more);
    c.control = h('div', { class: 'combo' }, input, pop);
    if (related) input.title = `A record of ${related}`;
    c.combo = true;
    let selected = null;
    let items = [];
    let active = -1;
    let hasMore = false;
    let seq = 0;
    let timer = 0;
    let stale = true;

    const query = () => (selected && input.value === String(selected.name ?? selected.value) ? '' : input.value.trim());
    async function load(append) {
      clearTimeout(timer);
      const s = ++seq;
      status.textContent = 'Loading…';
      more.hidden = true;
      try {
        const got = await fetchOptions(ctx, p.name, ctx.formValues(), { q: query(), limit: PAGE_SIZE, offset: append ? items.length : 0 });
        if (s !== seq) return;
        const page = Array.isArray(got) ? got : [];
        items = append ? items.concat(page) : page;
        if (!append) active = -1;
        hasMore = page.length === PAGE_SIZE;
        stale = false;
        render();
        status.textContent = items.length ? `${items.length} option${items.length === 1 ? '' : 's'}${hasMore ? ', more available' : ''}` : 'No matches.';
        more.hidden = !hasMore;
      } catch (e) {
        if (s === seq) status.textContent = `Could not load options: ${e.message}`;
      }
    }
    function render() {
      list.replaceChildren(...items.map((o, i) => {
        const chosen = selected && valueKey(selected.value) === valueKey(o.value);
        return h('li', { id: `${id}-o${i}`, role: 'option', 'data-value': valueKey(o.value), 'aria-selected': String(i === active),
          class: [i === active ? 'active' : '', chosen ? 'chosen' : ''].join(' ').trim() || null,
          onmousedown: (e) => e.preventDefault(), onclick: () => choose(i) },
        swatch(o.color), h('span', { class: 'opt-name' }, String(o.name ?? o.value)),
        String(o.name ?? '') !== String(o.value) ? h('span', { class: 'opt-value' }, valueKey(o.value)) : null);
      }));
      setActive(active);
    }
    function setActive(i) {
      active = i;
      [...list.children].forEach((li, j) => { li.classList.toggle('active', j === i); li.setAttribute('aria-selected', String(j === i)); });
      const li = list.children[i];
      if (li) { input.setAttribute('aria-activedescendant', li.id); li.scrollIntoView({ block: 'nearest' }); } else input.removeAttribute('aria-activedescendant');
    }
    const isOpen = () => !pop.hidden;
    function open() {
      if (!isOpen()) { pop.hidden = false; input.setAttribute('aria-expanded', 'true'); }
      if (stale) load(false);
    }
    function close() {
      pop.hidden = true;
      input.setAttribute('aria-expanded', 'false');
      setActive(-1);
    }
    function choose(i) {
      selected = items[i];
      input.value = String(selected.name ?? selected.value);
      input.dataset.value = valueKey(selected.value);
      stale = true;
      close();
      c.setError('');
      ctx.changed(c.name);
    }
    input.addEventListener('input', () => {
      const had = selected;
      selected = null;
      delete input.dataset.value;
      if (!isOpen()) { pop.hidden = false; input.setAttribute('aria-expanded', 'true'); }
      status.textContent = 'Searching…';
      clearTimeout(timer);
      timer = setTimeout(() => load(false), DEBOUNCE_MS);
      if (had) ctx.changed(c.name);
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        if (!isOpen()) { open(); return; }
        if (e.altKey) return;
        const down = e.key === 'ArrowDown';
        if (down && active === items.length - 1 && hasMore) { load(true); return; }
        if (items.length) setActive(down ? Math.min(active + 1, items.length - 1) : Math.max(active - 1, 0));
      } else if (e.key === 'Enter' && isOpen()) {
        e.preventDefault();
        if (active >= 0) choose(active); else close();
      } else if (e.key === 'Escape' && isOpen()) {
        e.preventDefault();
        e.stopPropagation();
        close();
      }
    });
    input.addEventListener('click', () => (isOpen() ? close() : open()));
    c.control.addEventListener('focusout', (e) => { if (!c.control.contains(e.relatedTarget)) close(); });
    more.addEventListener('mousedown', (e) => e.preventDefault());
    more.addEventListener('click', () => load(true));
    c.read = () => (selected ? { value: selected.value } : input.value.trim() ? { error: 'Choose an option from the list.' } : { empty: true });
    c.refresh = () => { stale = true; if (isOpen()) load(false); };
  }

  function collect(ctx, strict) {
    const values = {};
    const errors = {};
    for (const c of ctx.controls) {
      const r = c.read();
      if (r.error) { if (strict) errors[c.name] = r.error; } else if (r.empty) {
        if (strict && c.required) errors[c.name] = 'This field is required.';
      } else values[c.name] = r.value;
    }
    return { values, errors };
  }

  // ---------- run ----------
  async function run(ctx, dryRun) {
    if (state.running) return;
    const { entry } = ctx;
    ctx.controls.forEach((c) => c.setError(''));
    const { values, errors } = collect(ctx, true);
    const bad = ctx.controls.filter((c) => errors[c.name]);
    if (bad.length) {
      bad.forEach((c) => c.setError(errors[c.name]));
      showResult('error', 'Check the form', [h('p', null, `${bad.length} field${bad.length > 1 ? 's need' : ' needs'} attention.`)]);
      bad[0].el.focus();
      return;
    }
    const rec = state.rec;
    const ids = entry.record && rec ? [...rec.selected.values()] : [];
    if (entry.record && !ids.length) {
      showResult('error', 'No records selected', [h('p', null, 'Select at least one record in the table.')]);
      return;
    }
    const send = (extra) => {
      const params = { name: entry.action.name, params: { ...extra, ...values } };
      if (entry.model !== null) params.model = entry.model;
      if (dryRun) params.dry_run = true;
      return call('execute_action', params);
    };
    state.running = true;
    ctx.runBtn.disabled = true;
    if (ctx.previewBtn) ctx.previewBtn.disabled = true;
    ctx.runBtn.textContent = dryRun ? 'Previewing…' : 'Running…';
    showResult('busy', dryRun ? 'Previewing…' : 'Running…', []);
    try {
      if (dryRun) {
        // One preview per request the run would make; their changes are shown together.
        const batches = !entry.record || entry.bulk ? [entry.record ? { ids } : {}] : ids.map((id) => ({ ids: [id] }));
        const answers = [];
        try {
          for (const extra of batches) answers.push(await send(extra));
          showPreview(answers);
        } catch (e) {
          showError(e, ctx);
        }
      } else if (!entry.record || entry.bulk) {
        try {
          const res = await send(entry.record ? { ids } : {});
          if (res && typeof res.job === 'string') showJob(res, entry.record && rec); else showSuccess(res);
        } catch (e) {
          showError(e, ctx);
        }
      } else {
        const rows = [];
        let ok = 0;
        for (const id of ids) {
          try {
            const res = await send({ ids: [id] });
            ok += 1;
            rows.push(h('li', { class: 'ok' }, h('strong', null, `Record ${id}: done`), h('pre', null, pretty(res))));
          } catch (e) {
            rows.push(h('li', { class: 'fail' }, h('strong', null, `Record ${id}: failed`), errorDetails(e, ctx)));
            if (e.status === 401) break;
          }
        }
        showResult(ok === ids.length ? 'ok' : 'error', `${ok} of ${ids.length} succeeded`, [h('ul', { class: 'per-record' }, rows)]);
      }
      if (entry.record && state.rec === rec && !dryRun) loadRecords(rec.offset);
    } finally {
      state.running = false;
      ctx.runBtn.disabled = false;
      if (ctx.previewBtn) ctx.previewBtn.disabled = false;
      ctx.runBtn.textContent = 'Run';
    }
  }

  // ---------- results ----------
  function resetResult() {
    state.job = null;  // stops polling a background job shown before
    $('result').className = 'card result';
    $('result').replaceChildren(h('p', { class: 'muted' }, 'Results appear here after you run an action.'));
  }
  function showResult(kind, title, body) {
    if (!state.token) return;
    $('result').className = `card result result-${kind}`;
    $('result').replaceChildren(h('h2', null, kind === 'ok' ? '✓ ' : kind === 'error' ? '✕ ' : '', title), ...body);
  }
  // ---------- background jobs: progress, failures, cancel ----------
  const JOB_POLL_MS = 500;
  const JOB_DONE = ['succeeded', 'failed', 'cancelled'];
  function showJob(accepted, rec) {
    const job = { id: accepted.job };
    state.job = job;
    const bar = h('progress', { max: String(Math.max(1, accepted.total)), value: '0', 'data-testid': 'job-progress', 'aria-label': 'Progress of the job' });
    const status = h('span', { class: 'badge', 'data-testid': 'job-status' }, 'queued');
    const counts = h('p', { 'data-testid': 'job-counts' }, `0 of ${accepted.total} done · 0 failed`);
    const note = h('p', { class: 'small muted', 'data-testid': 'job-note' });
    const errors = h('ul', { class: 'job-errors', 'data-testid': 'job-errors' });
    const cancel = h('button', { type: 'button', class: 'btn', 'data-testid': 'job-cancel' }, 'Cancel');
    showResult('busy', 'Running in the background', [
      h('p', { class: 'meta' }, 'Job ', h('code', { 'data-testid': 'job-id' }, accepted.job), ' ', status,
        h('span', { class: 'small muted' }, ` ${accepted.chunks} chunk${accepted.chunks === 1 ? '' : 's'}`)),
      bar, counts, errors, note, h('div', { class: 'form-actions' }, cancel)]);
    const update = (s) => {
      bar.max = Math.max(1, s.total);
      bar.value = s.done + s.failed;
      status.textContent = s.status;
      counts.textContent = `${s.done} of ${s.total} done · ${s.failed} failed`;
      errors.replaceChildren(...(s.errors || []).map((e) => h('li', { class: 'fail' },
        h('code', null, e.first_id === e.last_id ? String(e.first_id) : `${e.first_id}–${e.last_id}`), `: ${e.message}`)));
      const finished = JOB_DONE.includes(s.status);
      if (finished) {
        cancel.disabled = true;
        $('result').className = `card result result-${s.status === 'succeeded' ? 'ok' : 'error'}`;
        const title = $('result').querySelector('h2');
        if (title) title.textContent = s.status === 'succeeded' ? '✓ Job succeeded' : s.status === 'failed' ? '✕ Job finished with failures' : '✕ Job cancelled';
      }
      return finished;
    };
    const poll = async () => {
      if (state.job !== job) return;
      try {
        const s = await call('get_job', { job: job.id });
        if (state.job !== job) return;
        note.textContent = '';
        if (update(s)) {
          if (rec && state.rec === rec) loadRecords(rec.offset);
          return;
        }
      } catch (e) {
        if (state.job !== job) return;
        note.textContent = `Could not read the job: ${e.message}`;
      }
      setTimeout(poll, JOB_POLL_MS);
    };
    cancel.addEventListener('click', async () => {
      cancel.disabled = true;
      try {
        update(await call('cancel_job', { job: job.id }));
      } catch (e) {
        note.textContent = `Could not cancel: ${e.message}`;
        cancel.disabled = false;
      }
    });
    poll();
  }
  function showSuccess(res) {
    showResult('ok', 'Action succeeded', [h('pre', { class: 'json' }, pretty(res))]);
  }
  function showError(e, ctx) {
    showResult('error', e.body.title || 'Action failed', [errorDetails(e, ctx)]);
  }
  function errorDetails(e, ctx) {
    const b = e.body;
    const out = h('div', { class: 'error-details' }, h('p', null, b.detail || e.message));
    const meta = [e.status ? `HTTP ${e.status}` : null, b.code ? `code: ${b.code}` : null].filter(Boolean).join(' · ');
    if (meta) out.append(h('p', { class: 'small muted' }, meta));
    if (Array.isArray(b.missing_ids) && b.missing_ids.length) {
      out.append(h('p', null, 'Records not found: ', h('code', null, b.missing_ids.map(String).join(', '))));
    }
    if (b.fields && typeof b.fields === 'object') {
      const other = [];
      for (const [name, reason] of Object.entries(b.fields)) {
        const msg = Array.isArray(reason) ? reason.join(' ') : typeof reason === 'string' ? reason : JSON.stringify(reason);
        const c = ctx && ctx.controls.find((x) => x.name === name);
        if (c) c.setError(msg); else other.push(h('li', null, h('code', null, name), `: ${msg}`));
      }
      if (other.length) out.append(h('ul', null, other));
    }
    return out;
  }

  // ---------- changes: previews, history, undo ----------
  const shown = (v) => (v === undefined ? '—' : v === null ? 'null' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  function changesTable(changes) {
    const rows = [];
    for (const c of changes) {
      const id = c.id === undefined ? '' : valueKey(c.id);
      if (c.op && c.op.startsWith('bulk_')) {
        rows.push(h('tr', { class: 'op-bulk' }, h('td', null, c.collection), h('td', null, '—'),
          h('td', { colspan: '2' }, `${c.op.replace('_', ' ')}: ${c.rows} row${c.rows === 1 ? '' : 's'} (not itemized)`)));
        continue;
      }
      for (const [column, value] of Object.entries(c.fields || {})) {
        const [before, after] = c.op === 'update' ? value : c.op === 'insert' ? [undefined, value] : [value, undefined];
        rows.push(h('tr', { class: `op-${c.op}` }, h('td', null, c.collection), h('td', null, h('code', null, id), ' ', h('span', { class: 'badge' }, c.op)),
          h('td', null, h('code', null, column)), h('td', null, h('span', { class: 'before' }, shown(before)), ' → ', h('span', { class: 'after' }, shown(after)))));
      }
    }
    if (!rows.length) return h('p', { class: 'muted' }, 'No rows changed.');
    return h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'changes-table' },
      h('thead', null, h('tr', null, h('th', null, 'Collection'), h('th', null, 'Id'), h('th', null, 'Column'), h('th', null, 'Before → after'))),
      h('tbody', null, rows)));
  }
  function countsList(counts) {
    const items = Object.entries(counts || {}).map(([collection, n]) => h('li', null, h('strong', null, collection), ': ',
      Object.entries(n).filter(([, k]) => k).map(([op, k]) => `${k} ${op.replace('_', ' ')}`).join(', ') || 'nothing'));
    return h('ul', { class: 'counts', 'data-testid': 'changes-counts' }, items);
  }
  function showPreview(answers) {
    const changes = answers.flatMap((a) => a.changes || []);
    const counts = {};
    for (const a of answers) {
      for (const [collection, n] of Object.entries(a.counts || {})) {
        const into = counts[collection] || (counts[collection] = {});
        for (const [op, k] of Object.entries(n)) into[op] = (into[op] || 0) + k;
      }
    }
    const truncated = answers.some((a) => a.truncated);
    showResult('ok', 'Preview: nothing was saved', [
      h('p', null, 'The action ran and was rolled back. It would change:'), countsList(counts), changesTable(changes),
      truncated ? h('p', { class: 'small muted' }, 'Only the first rows are listed; the counts are complete.') : null].filter(Boolean));
  }

  async function showHistory(after, keepResult) {
    state.current = state.rec = null;
    for (const b of document.querySelectorAll('.action-btn')) b.removeAttribute('aria-current');
    const list = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading runs…'));
    $('pane').replaceChildren(h('h2', { id: 'pane-title', tabindex: '-1' }, 'History'),
      h('p', { class: 'muted' }, 'Recent runs, newest first. Open one to see what it changed, and undo it.'), list);
    if (!keepResult) resetResult();
    let page;
    try {
      page = await call('list_runs', after ? { limit: PAGE_SIZE, after } : { limit: PAGE_SIZE });
    } catch (e) {
      list.replaceChildren(errorDetails(e));
      return;
    }
    if (!page.runs.length) { list.replaceChildren(h('p', { class: 'muted' }, 'No runs yet.')); return; }
    list.replaceChildren(h('table', { 'data-testid': 'runs-table' },
      h('thead', null, h('tr', null, ['Run', 'Time', 'Action', 'Collection', 'Outcome', ''].map((t) => h('th', null, t)))),
      h('tbody', null, page.runs.map((r) => h('tr', { 'data-run': String(r.run) },
        h('td', null, String(r.run)), h('td', null, r.time ? new Date(r.time).toLocaleString() : ''),
        h('td', null, h('code', null, r.action), r.undo_of ? h('span', { class: 'small muted' }, ` of run ${r.undo_of}`) : null),
        h('td', null, r.collection || '—'), h('td', null, h('span', { class: `badge outcome-${r.outcome}` }, r.outcome)),
        h('td', null, h('button', { type: 'button', class: 'btn btn-small', 'data-testid': `open-run-${r.run}`, onclick: () => openRun(r.run) }, 'Open')))))));
    if (page.has_more) list.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => showHistory(page.next) }, 'Older runs ›'));
    $('pane-title').focus();
  }
  async function openRun(id) {
    let run;
    try {
      run = await call('get_run', { run: id });
    } catch (e) {
      showError(e);
      return;
    }
    const undoable = run.outcome === 'success' && Array.isArray(run.changes) && run.undone_by == null;
    const undoBtn = undoable ? h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'undo-run', onclick: () => undo(run, undoBtn) }, 'Undo') : null;
    showResult(run.outcome === 'success' ? 'ok' : 'error', `Run ${run.run}: ${run.action}`, [
      h('p', { class: 'small muted' }, [run.time ? new Date(run.time).toLocaleString() : '', run.outcome,
        run.actor && run.actor.user != null ? `by user ${run.actor.user}` : 'by a shared token'].filter(Boolean).join(' · ')),
      run.undo_of ? h('p', null, `Undoes run ${run.undo_of}.`) : null,
      run.undone_by ? h('p', { 'data-testid': 'undone-by' }, `Undone by run ${run.undone_by}.`) : null,
      run.error ? h('p', null, run.error) : null,
      run.changes ? [countsList(run.counts), changesTable(run.changes)] : h('p', { class: 'muted' }, 'No change history was kept for this run.'),
      run.truncated ? h('p', { class: 'small muted' }, 'Only the first rows were kept; the counts are complete.') : null,
      undoBtn ? h('div', { class: 'form-actions' }, undoBtn) : null].flat().filter(Boolean));
  }
  async function undo(run, btn) {
    btn.disabled = true;
    btn.textContent = 'Undoing…';
    try {
      const res = await call('undo_run', { run: run.run });
      showResult('ok', `Run ${run.run} undone`, [h('p', { 'data-testid': 'undo-done' }, `Undone by run ${res.run}. The old values are back.`)]);
      showHistory(undefined, true);
    } catch (e) {
      const out = [errorDetails(e)];
      if (Array.isArray(e.body.conflicts)) {
        out.push(h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'undo-conflicts' },
          h('thead', null, h('tr', null, ['Collection', 'Id', 'Column', 'The run wrote', 'Now'].map((t) => h('th', null, t)))),
          h('tbody', null, e.body.conflicts.map((c) => h('tr', null, h('td', null, c.collection), h('td', null, h('code', null, valueKey(c.id))),
            h('td', null, c.column ? h('code', null, c.column) : '—'),
            h('td', { colspan: c.column ? null : '2' }, c.column ? shown(c.expected) : c.reason),
            c.column ? h('td', null, shown(c.actual)) : null))))));
      }
      showResult('error', e.status === 409 ? 'Not undone: rows changed since' : e.body.title || 'Not undone', out);
    }
  }

  // ---------- boot ----------
  if (state.token) connect(); else showLogin('');
})();
