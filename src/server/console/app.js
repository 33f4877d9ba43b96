// busbar console: plain ES module, no build step. Every value from the broker or a message is put on the page as
// text (textContent / attribute values), never as HTML, so a message body or header cannot inject markup or script.
// Data comes from the gateway's REST API, polled every 2 s; a failed poll (gateway restarting) is retried with the
// history kept, so the charts continue where they stopped.

const POLL_MS = 2000;
const HISTORY = 150; // points: 5 minutes at 2 s
const LAG_UNREAD = 100;
const LAG_AGE_MS = 30_000;
const COLORS = ['#0b62c4', '#b3261e', '#1a7f37', '#8250df', '#bf8700', '#0a7ea4', '#cf222e', '#6e7781'];

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem('busbar-token') || '', history: [], failures: 0 };

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'className') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text, bad = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('bad', bad);
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  let body = options.body;
  if (body !== undefined && typeof body !== 'string') {
    body = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const response = await fetch(path, {
    method: options.method || (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (response.status === 401) $('token-form').hidden = false;
  if (!response.ok) {
    const error = new Error(json?.error?.message || json?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.code = json?.error?.code || json?.code;
    throw error;
  }
  return json;
}

function fmt(n) {
  if (n === undefined || n === null) return '–';
  if (n < 0) return 'unknown';
  if (!Number.isInteger(n)) return n.toFixed(n < 10 ? 2 : 1);
  return n.toLocaleString('en');
}

function bytes(n) {
  if (n < 0) return 'unknown';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function age(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.floor((ms % 60_000) / 1000)} s`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

const isDlq = (type) => type.endsWith('.dlq');

function renderTypes(types) {
  const byName = new Map(types.map((t) => [t.type, t]));
  const rows = types
    .filter((t) => !isDlq(t.type) || !byName.has(t.type.slice(0, -4)))
    .map((t) => {
      const dlq = byName.get(`${t.type}.dlq`);
      const grow = el(
        'button',
        { type: 'button', className: 'secondary', 'aria-label': `grow ${t.type}`, onclick: () => growType(t) },
        'Grow',
      );
      const del = el(
        'button',
        { type: 'button', className: 'danger', 'aria-label': `delete ${t.type}`, onclick: () => deleteType(t.type) },
        'Delete',
      );
      const browse = el(
        'button',
        { type: 'button', className: 'secondary', 'aria-label': `browse ${t.type}`, onclick: () => browseType(t.type) },
        'Browse',
      );
      // Dead letters are what the busbar-dlq group has not acked (a log keeps redriven ones: its depth would count them).
      const dlqGroup = dlq?.groups?.find((g) => g.group === 'busbar-dlq');
      const deadCount = dlq ? (dlqGroup ? Math.max(0, dlqGroup.unread) : dlq.depth) : 0;
      const dead =
        deadCount > 0
          ? el(
              'button',
              {
                type: 'button',
                className: 'secondary',
                'aria-label': `dead letters of ${t.type}`,
                onclick: () => listDead(t.type),
              },
              fmt(deadCount),
            )
          : fmt(deadCount);
      return el(
        'tr',
        { 'data-type': t.type },
        el('th', { scope: 'row' }, t.type),
        el('td', { className: 'num', 'data-col': 'depth' }, fmt(t.depth)),
        el('td', { className: 'num' }, bytes(t.bytes)),
        el('td', { className: 'num' }, fmt(t.partitions)),
        el('td', { className: 'num', 'data-col': 'rate' }, fmt(t.publishedPerSec ?? 0)),
        el('td', { className: 'num', 'data-col': 'dlq' }, dead),
        el('td', {}, browse, ' ', grow, ' ', del),
      );
    });
  $('types').tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 7 }, 'No message types yet.'))]),
  );
}

function renderGroups(types) {
  const rows = [];
  for (const t of types) {
    for (const g of t.groups || []) {
      const lagging = g.unread >= LAG_UNREAD || (g.oldestAgeMs ?? 0) >= LAG_AGE_MS;
      rows.push(
        el(
          'tr',
          { className: lagging ? 'lagging' : '', 'data-group': `${t.type}/${g.group}` },
          el('td', {}, t.type),
          el('th', { scope: 'row' }, g.group),
          el('td', { className: 'num', 'data-col': 'unread' }, fmt(g.unread)),
          el('td', { className: 'num' }, fmt(g.inflight)),
          el('td', { className: 'num' }, age(g.oldestAgeMs)),
          el('td', { className: 'num' }, fmt(g.consumers)),
          el('td', { className: 'num' }, fmt(g.leased ?? 0)),
          el('td', { className: 'num' }, fmt(g.deliveredPerSec ?? 0)),
          el('td', { className: 'num' }, fmt(g.ackedPerSec ?? 0)),
          el('td', { className: 'state' }, lagging ? 'falling behind' : 'ok'),
        ),
      );
    }
  }
  $('groups').tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 10 }, 'No consumer groups yet.'))]),
  );
}

function chart(svgId, legendId, series) {
  const svg = $(svgId);
  const ns = 'http://www.w3.org/2000/svg';
  const all = series.flatMap((s) => s.points);
  const max = Math.max(1, ...all);
  const lines = series.slice(0, COLORS.length).map((s, i) => {
    const line = document.createElementNS(ns, 'polyline');
    const n = s.points.length;
    // Lines start at the left and grow to the right until the window (HISTORY points) is full, then scroll.
    const slots = Math.max(n, 30) - 1;
    const points = s.points.map((v, x) => `${(x / slots) * 300},${80 - (v / max) * 76}`).join(' ');
    line.setAttribute('points', points);
    line.setAttribute('stroke', COLORS[i]);
    line.setAttribute('data-series', s.name);
    return line;
  });
  svg.replaceChildren(...lines);
  svg.setAttribute('data-max', String(max));
  const legend = series.slice(0, COLORS.length).map((s, i) => {
    const item = el('span', {}, `■ ${s.name} ${fmt(s.points.at(-1) ?? 0)}  `);
    item.style.color = COLORS[i]; // CSSOM, which the page's Content-Security-Policy allows (style attributes it does not)
    return item;
  });
  $(legendId).replaceChildren(...legend, series.length ? `max ${fmt(max)}` : 'no data yet');
}

function renderCharts() {
  const names = new Set();
  for (const h of state.history) for (const name of Object.keys(h.depth)) names.add(name);
  const top = [...names].sort().slice(0, COLORS.length);
  const series = (field) => top.map((name) => ({ name, points: state.history.map((h) => h[field][name] ?? 0) }));
  chart('chart-depth', 'legend-depth', series('depth'));
  chart('chart-unread', 'legend-unread', series('unread'));
  chart('chart-rate', 'legend-rate', series('rate'));
}

async function poll() {
  try {
    const { types } = await api('/v1/stats');
    state.failures = 0;
    const point = { at: Date.now(), depth: {}, unread: {}, rate: {} };
    for (const t of types) {
      point.depth[t.type] = t.depth;
      point.unread[t.type] = (t.groups || []).reduce((sum, g) => sum + Math.max(0, g.unread), 0);
      point.rate[t.type] = t.publishedPerSec ?? 0;
    }
    state.history.push(point);
    if (state.history.length > HISTORY) state.history.shift();
    renderTypes(types);
    renderGroups(types);
    renderCharts();
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    if ($('status').classList.contains('bad')) say('connected again');
  } catch (error) {
    state.failures++;
    say(
      error.status === 401 || error.status === 403
        ? `not allowed: ${error.message}`
        : `gateway unreachable, retrying (${error.message})`,
      true,
    );
  } finally {
    setTimeout(poll, state.failures ? Math.min(POLL_MS * state.failures, 10_000) : POLL_MS);
  }
}

/** A message (peeked or dead) as a list item: attributes and headers in a list, the body as text. */
function messageItem(m, extra) {
  const headers = Object.entries(m.headers || {});
  const body =
    m.encoding === 'base64'
      ? `binary, ${m.size ?? '?'} bytes (base64): ${m.body}`
      : typeof m.body === 'string'
        ? m.body
        : JSON.stringify(m.body, null, 2);
  return el(
    'li',
    { 'data-id': m.id },
    extra || null,
    el(
      'div',
      { className: 'meta' },
      `${m.position !== undefined ? `#${m.position} · ` : ''}${m.id} · ${m.contentType}${m.key !== undefined ? ` · key ${m.key}` : ''} · ${m.time}`,
    ),
    headers.length
      ? el(
          'dl',
          {},
          headers.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]),
        )
      : null,
    el('pre', { className: 'body' }, body),
  );
}

async function browseType(type, from) {
  $('browse-type').value = type;
  const count = $('browse-count').value || '20';
  const query = new URLSearchParams({ count });
  if (from) query.set(/^\d{4}-\d{2}-\d{2}/.test(from) ? 'fromTime' : 'from', from);
  try {
    const { messages } = await api(`/v1/types/${encodeURIComponent(type)}/peek?${query}`);
    $('browse-list').replaceChildren(...messages.map((m) => messageItem(m)));
    $('browse-note').textContent = `${messages.length} message(s) of ${type}, oldest first; nothing was consumed.`;
  } catch (error) {
    $('browse-list').replaceChildren();
    $('browse-note').textContent =
      error.code === 'BUSBAR_ERR_UNSUPPORTED'
        ? `This broker cannot browse messages without consuming them: ${error.message}`
        : `Could not browse ${type}: ${error.message}`;
  }
}

async function listDead(type) {
  $('dlq-type').value = type;
  $('dlq-note').textContent = `Listing dead letters of ${type}…`;
  try {
    const { deadLetters } = await api(`/v1/types/${encodeURIComponent(type)}/dead-letters`);
    $('dlq-list').replaceChildren(
      ...deadLetters.map((d) => {
        const box = el('input', { type: 'checkbox', id: `dlq-${d.id}`, value: d.id });
        const label = el(
          'label',
          { for: `dlq-${d.id}` },
          ` select · ${d.attempts ?? '?'} attempt(s) · group ${d.group ?? '?'} · ${d.deadLetteredAt ?? ''} · ${d.reason ?? ''}`,
        );
        return messageItem(d, el('div', {}, box, label));
      }),
    );
    $('dlq-note').textContent = `${deadLetters.length} dead letter(s) of ${type}.`;
  } catch (error) {
    $('dlq-note').textContent = `Could not list dead letters of ${type}: ${error.message}`;
  }
}

async function redrive(all) {
  const type = $('dlq-type').value.trim();
  if (!type) return;
  const ids = [...$('dlq-list').querySelectorAll('input[type=checkbox]:checked')].map((b) => b.value);
  if (!all && ids.length === 0) {
    $('dlq-note').textContent = 'Select dead letters first, or redrive all.';
    return;
  }
  try {
    const result = await api(`/v1/types/${encodeURIComponent(type)}/dead-letters/redrive`, {
      body: all ? {} : { ids },
    });
    say(`redrove ${result.redriven.length} dead letter(s) to ${type}`);
    await listDead(type);
  } catch (error) {
    $('dlq-note').textContent = `Redrive failed: ${error.message}`;
  }
}

async function purgeDead() {
  const type = $('dlq-type').value.trim();
  if (!type || !confirm(`Remove every dead letter of ${type}?`)) return;
  try {
    await api(`/v1/types/${encodeURIComponent(type)}/dead-letters/purge`, { body: {} });
    say(`purged the dead letters of ${type}`);
    await listDead(type);
  } catch (error) {
    $('dlq-note').textContent = `Purge failed: ${error.message}`;
  }
}

async function growType(t) {
  const answer = prompt(`Partitions for ${t.type} (now ${t.partitions}; they only grow)`, String(t.partitions + 1));
  if (!answer) return;
  try {
    await api(`/v1/types/${encodeURIComponent(t.type)}`, { method: 'PUT', body: { partitions: Number(answer) } });
    say(`${t.type} has ${answer} partitions`);
  } catch (error) {
    say(`could not grow ${t.type}: ${error.message}`, true);
  }
}

async function deleteType(type) {
  if (!confirm(`Delete ${type} with its messages and groups?`)) return;
  try {
    await api(`/v1/types/${encodeURIComponent(type)}`, { method: 'DELETE' });
    say(`deleted ${type}`);
  } catch (error) {
    say(`could not delete ${type}: ${error.message}`, true);
  }
}

function wire() {
  $('token').value = state.token;
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem('busbar-token', state.token);
    $('token-form').hidden = true;
    say('token set');
  });
  $('create-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const type = $('create-type').value.trim();
    try {
      const info = await api(`/v1/types/${encodeURIComponent(type)}`, {
        method: 'PUT',
        body: { partitions: Number($('create-partitions').value || 1) },
      });
      say(`${info.type}: ${info.partitions} partition(s)`);
    } catch (error) {
      say(`could not create ${type}: ${error.message}`, true);
    }
  });
  $('send-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const type = $('send-type').value.trim();
    const contentType = $('send-ct').value;
    const text = $('send-body').value;
    let body = text;
    if (contentType === 'application/json') {
      try {
        body = JSON.parse(text);
      } catch {
        say('the body is not JSON: fix it or send it as text/plain', true);
        return;
      }
    }
    try {
      const { ids } = await api(`/v1/types/${encodeURIComponent(type)}/messages`, {
        body: { messages: [{ body, contentType }] },
      });
      say(`sent ${ids[0]} to ${type}`);
    } catch (error) {
      say(`could not send to ${type}: ${error.message}`, true);
    }
  });
  $('browse-form').addEventListener('submit', (event) => {
    event.preventDefault();
    browseType($('browse-type').value.trim(), $('browse-from').value.trim());
  });
  $('dlq-form').addEventListener('submit', (event) => {
    event.preventDefault();
    listDead($('dlq-type').value.trim());
  });
  $('dlq-redrive-selected').addEventListener('click', () => redrive(false));
  $('dlq-redrive-all').addEventListener('click', () => redrive(true));
  $('dlq-purge').addEventListener('click', purgeDead);
  api('/readyz').then(
    (r) => {
      $('broker').textContent = `transport: ${r.transport}`;
    },
    () => {},
  );
  poll();
}

wire();
