// diffuse studio: every action is a job, a `diffuse` command line the server runs; this page only gathers
// settings, streams the job's state and shows its files. No build step, no outside scripts.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
let runs = [];
let run = null; // the selected run

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// Tabs.
$$('#tabs button').forEach(b => b.addEventListener('click', () => {
  $$('#tabs button').forEach(x => x.classList.toggle('on', x === b));
  $$('.tab').forEach(t => t.classList.toggle('on', t.id === 'tab-' + b.dataset.tab));
}));

// Shared fieldsets.
$$('fieldset.sampler').forEach(f => f.append($('#sampler-fields').content.cloneNode(true)));
$$('fieldset.guide').forEach(f => f.append($('#guide-fields').content.cloneNode(true)));
$$('input[type=range]').forEach(r => {
  const out = r.parentElement.querySelector('output');
  const show = () => { if (out) out.textContent = r.value; };
  r.addEventListener('input', show);
  show();
});

async function loadRuns() {
  const cat = await api('/api/runs');
  runs = cat.runs;
  const list = $('#runs');
  list.replaceChildren(...runs.map(r => {
    const li = document.createElement('li');
    li.textContent = r.name;
    li.title = `${r.config.objective || ''} ${r.config.channels}×${r.config.height}×${r.config.width}`;
    li.addEventListener('click', () => selectRun(r, li));
    return li;
  }));
  $('#compares').replaceChildren(...cat.compares.map(c => {
    const li = document.createElement('li');
    li.textContent = c.name;
    li.addEventListener('click', () => showCompare(c));
    return li;
  }));
  if (runs.length && !run) selectRun(runs[0], list.firstChild);
}

function selectRun(r, li) {
  run = r;
  $$('#runs li').forEach(x => x.classList.toggle('on', x === li));
  $('#run-title').textContent = r.name;
  $('#run-samples').src = r.samples || '';
  $('#run-loss').src = r.loss || '';
  $('#run-config').textContent = JSON.stringify(r.config, null, 2);
  const names = r.config.class_names || [];
  $$('select[name=class]').forEach(s => {
    s.replaceChildren(new Option('none (unconditional)', ''), ...names.map((n, i) => new Option(`${i}: ${n}`, String(i))));
    if (names.length) s.append(new Option('all (a row each)', 'all'));
  });
  // Class-conditional runs take a class, text runs (Stable Diffusion imports, --text runs) a prompt.
  const text = Boolean(r.config.text);
  $$('fieldset.guide').forEach(f => f.disabled = names.length === 0 && !text);
  $$('.for-classes').forEach(l => l.hidden = text);
  $$('.for-text').forEach(l => { l.hidden = !text; if (!text) l.querySelector('input').value = ''; });
  const data = typeof r.config.data === 'string' ? r.config.data : '';
  $('#edit-form [name=data]').placeholder = /^[a-z-]+$/.test(data) ? data : 'digits';
  resetCanvas();
}

async function showCompare(c) {
  $('#compare-title').textContent = c.name;
  $('#compare-plot').src = c.plot || '';
  $('#compare-table').textContent = c.table ? await (await fetch(c.table)).text() : '';
  $('#tabs [data-tab=compare]').click();
}

// A form's settings as flag → value, leaving out empty fields and the page's own controls.
function settings(form, skip = []) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || skip.includes(el.name) || el.closest('fieldset:disabled') || el.type === 'file') continue;
    if (el.closest('fieldset[hidden]')) continue;
    if (el.type === 'checkbox') { if (el.checked) out[el.name] = true; continue; }
    if (el.value === '') continue;
    out[el.name] = el.type === 'number' || el.type === 'range' ? Number(el.value) : el.value;
  }
  if (out.class === undefined && out.prompt === undefined) {
    delete out.guidance; delete out['guidance-interval']; delete out['guidance-rescale']; delete out['negative-prompt'];
  }
  return out;
}

// A job: submit, follow its events, show previews and files; one panel per tab, one stream per panel (the
// browser allows few connections to one server, and a stream left open holds one).
const streams = new Map();
async function runJob(panel, request) {
  streams.get(panel)?.close();
  panel.replaceChildren();
  const status = el('p', 'status', 'sending…');
  const preview = el('img', 'preview', null, { hidden: true });
  const cancel = el('button', '', 'cancel');
  const files = el('div', 'files');
  panel.append(status, cancel, preview, files);
  let job;
  try {
    job = await api('/api/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
  } catch (e) {
    status.textContent = 'refused: ' + e.message;
    status.classList.add('error');
    cancel.remove();
    return;
  }
  cancel.addEventListener('click', () => api(`/api/jobs/${job.id}`, { method: 'DELETE' }));
  const events = new EventSource(`/api/jobs/${job.id}/events`);
  streams.set(panel, events);
  events.onerror = () => {
    // EventSource reconnects by itself; say so only when it has given up.
    if (events.readyState === EventSource.CLOSED) status.textContent += ' (lost the connection to the studio)';
  };
  events.addEventListener('update', e => {
    const s = JSON.parse(e.data);
    status.textContent = describe(s);
    status.classList.toggle('error', s.state === 'failed');
    if (s.preview) { preview.src = s.preview; preview.hidden = false; }
    if (s.state === 'done' || s.state === 'failed' || s.state === 'cancelled') {
      events.close();
      cancel.remove();
      // The final pictures replace the last preview; a stopped job keeps it.
      if (s.state === 'done') preview.remove();
      showFiles(files, s);
    }
  });
}

function describe(s) {
  const t = `${s.seconds.toFixed(1)} s`;
  switch (s.state) {
    case 'queued': return `job ${s.id}: queued` + (s.position ? `, ${s.position} in line` : '');
    case 'running': {
      if (!s.step) return `job ${s.id}: running, ${t}`;
      // An adaptive solver takes as many steps as it needs, not the grid's count.
      const of = s.step <= s.steps ? ` of ${s.steps}` : '';
      return `job ${s.id}: step ${s.step}${of}` + (s.walk > 1 ? ` (walk ${s.walk})` : '') + `, NFE ${s.nfe}, ${t}`;
    }
    case 'done': return `job ${s.id}: done in ${t}`;
    case 'cancelled': return `job ${s.id}: cancelled after ${t}`;
    default: return `job ${s.id} failed: ${s.error}`;
  }
}

function showFiles(box, s) {
  const url = f => '/files/jobs/' + f;
  const pictures = s.files.filter(f => /(grid|lab|scatter|strip)\.png$/.test(f));
  const images = s.files.filter(f => f.includes('/images/') && f.endsWith('.png'));
  box.replaceChildren(
    ...pictures.map(f => {
      // Whole-number upscaling keeps pixels square and sharp; small grids grow, large ones stay as drawn.
      const img = el('img', 'result', null, { src: url(f), alt: f });
      img.onload = () => {
        const k = Math.max(1, Math.floor(Math.min(640 / img.naturalWidth, 400 / img.naturalHeight)));
        img.style.width = img.naturalWidth * k + 'px';
      };
      return img;
    }),
    el('pre', 'command', 'diffuse ' + s.command.map(w => /^[\w.,:=\/+-]+$/.test(w) ? w : `'${w}'`).join(' ')),
  );
  const links = el('p', 'links');
  for (const f of s.files.filter(f => !images.includes(f))) links.append(el('a', '', f.split('/').pop(), { href: url(f), download: '' }), ' ');
  if (images.length) links.append(`${images.length} images: `, ...images.slice(0, 64).flatMap(f => [el('a', '', f.split('/').pop(), { href: url(f), download: '' }), ' ']));
  box.append(links);
  const table = s.files.find(f => f.endsWith('lab.md') || f.endsWith('lab.json'));
  if (table) fetch(url(table)).then(r => r.text()).then(t => box.append(el('pre', 'table', t)));
}

function el(tag, cls, text, attrs = {}) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  Object.assign(e, attrs);
  return e;
}

$('#sample-form').addEventListener('submit', e => {
  e.preventDefault();
  if (!run) return;
  runJob($('[data-job=sample]'), { kind: 'sample', run: run.name, settings: settings(e.target) });
});

$('#lab-form').addEventListener('submit', e => {
  e.preventDefault();
  const s = settings(e.target);
  if (!s.sweep) delete s['sweep-steps'];
  if (s.target !== 'mixture') { delete s.means; delete s.weights; }
  if (s.target !== 'ring' && s.target !== 'grid') delete s.components;
  runJob($('[data-job=lab]'), { kind: 'lab', settings: s });
});

// Editing: the kind's own fields, an uploaded image scaled to the run's size, and a painted mask.
const editForm = $('#edit-form');
const paint = $('#paint');
const ctx = paint.getContext('2d');
let background = null; // the uploaded image at the run's size, as a canvas
let painted = false;

function showKindFields() {
  const kind = editForm.kind.value;
  for (const k of ['inpaint', 'outpaint', 'sdedit', 'invert', 'interpolate', 'restore']) $(`.for-${k}`, editForm).hidden = k !== kind;
  $('.inputs', editForm).hidden = kind === 'interpolate';
}
editForm.kind.addEventListener('change', showKindFields);
showKindFields();

function resetCanvas() {
  if (!run) return;
  paint.width = run.config.width;
  paint.height = run.config.height;
  background = null;
  editForm.upload.value = '';
  clearMask();
}

function clearMask() {
  painted = false;
  mask.width = paint.width;
  mask.height = paint.height;
  const m = mask.getContext('2d');
  m.fillStyle = '#000';
  m.fillRect(0, 0, mask.width, mask.height);
  redraw();
}
const mask = document.createElement('canvas');
$('#clear-mask').addEventListener('click', clearMask);

function redraw() {
  ctx.fillStyle = '#555';
  ctx.fillRect(0, 0, paint.width, paint.height);
  if (background) ctx.drawImage(background, 0, 0);
  ctx.globalAlpha = 0.6;
  ctx.globalCompositeOperation = 'lighter';
  const tinted = document.createElement('canvas');
  tinted.width = mask.width; tinted.height = mask.height;
  const t = tinted.getContext('2d');
  t.drawImage(mask, 0, 0);
  t.globalCompositeOperation = 'multiply';
  t.fillStyle = '#f40';
  t.fillRect(0, 0, tinted.width, tinted.height);
  ctx.drawImage(tinted, 0, 0);
  ctx.globalAlpha = 1;
  ctx.globalCompositeOperation = 'source-over';
}

// The brush paints whole pixels (no antialiasing, so the mask is exactly what is shown), along the segment
// from the last pointer position, so that a fast stroke leaves no gaps.
let last = null;
function brushAt(e) {
  const r = paint.getBoundingClientRect();
  const x = (e.clientX - r.left) / r.width * paint.width;
  const y = (e.clientY - r.top) / r.height * paint.height;
  const size = Number(editForm.brush.value);
  const m = mask.getContext('2d');
  m.fillStyle = '#fff';
  const from = last || { x, y };
  const n = Math.max(1, Math.ceil(Math.hypot(x - from.x, y - from.y) * 2));
  for (let i = 0; i <= n; i++) {
    const px = from.x + (x - from.x) * i / n, py = from.y + (y - from.y) * i / n;
    m.fillRect(Math.floor(px - size / 2 + 0.5), Math.floor(py - size / 2 + 0.5), size, size);
  }
  last = { x, y };
  painted = true;
  redraw();
}
let down = false;
paint.addEventListener('pointerdown', e => { down = true; last = null; paint.setPointerCapture(e.pointerId); brushAt(e); });
paint.addEventListener('pointermove', e => { if (down) brushAt(e); });
paint.addEventListener('pointerup', () => { down = false; last = null; });

// An image file drawn at the run's size, on a canvas.
async function atRunSize(file) {
  const img = await createImageBitmap(file);
  const c = document.createElement('canvas');
  c.width = run.config.width;
  c.height = run.config.height;
  const g = c.getContext('2d');
  g.imageSmoothingQuality = 'high';
  g.drawImage(img, 0, 0, c.width, c.height);
  return c;
}

editForm.upload.addEventListener('change', async () => {
  const file = editForm.upload.files[0];
  if (!file || !run) return;
  background = await atRunSize(file);
  redraw();
});

editForm.addEventListener('submit', async e => {
  e.preventDefault();
  if (!run) return;
  const kind = editForm.kind.value;
  const s = settings(editForm, ['kind', 'brush', 'upload', 'pair']);
  const request = { kind, run: run.name, settings: s };
  if (kind !== 'interpolate') {
    if (background) {
      request.image = background.toDataURL('image/png');
      delete s.data; delete s['of-class']; delete s.limit;
    } else {
      s.data = s.data || editForm.data.placeholder;
    }
  }
  const pair = editForm.pair.files;
  if (kind === 'interpolate' && pair.length) {
    if (pair.length !== 2) { alert('pick two images, or none to use the seeds'); return; }
    request.images = await Promise.all([...pair].map(async f => (await atRunSize(f)).toDataURL('image/png')));
    delete s.seeds;
  }
  if (kind === 'inpaint' && painted) {
    request.mask = mask.toDataURL('image/png');
    delete s.mask;
  }
  runJob($('[data-job=edit]'), request);
});

loadRuns().catch(e => { $('#run-title').textContent = 'could not list runs: ' + e.message; });
