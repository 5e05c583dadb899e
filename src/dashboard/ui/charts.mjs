// Charts drawn as SVG by hand (no library): throughput, failures, latency.
import { api, h, replace, s } from './dom.mjs';

const W = 720;
const H = 200;
const PAD = { l: 48, r: 12, t: 12, b: 28 };

/** One line chart: `series` is [{label, cls, values}] over the same x (epoch seconds). */
function lineChart(title, xs, series, unit) {
  const max = Math.max(1e-9, ...series.flatMap((x) => x.values.filter((v) => v !== undefined && v !== null)));
  const x0 = xs[0] ?? 0;
  const x1 = xs.at(-1) ?? 1;
  const px = (t) => PAD.l + ((t - x0) / Math.max(1, x1 - x0)) * (W - PAD.l - PAD.r);
  const py = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const grid = [0, 0.5, 1].map((f) => [
    s('line', { x1: PAD.l, x2: W - PAD.r, y1: py(max * f), y2: py(max * f), class: 'gridline' }),
    s('text', { x: PAD.l - 6, y: py(max * f) + 4, 'text-anchor': 'end', class: 'axis' }, `${+(max * f).toPrecision(3)}${unit}`),
  ]);
  const ticks = xs.length ? [x0, (x0 + x1) / 2, x1].map((t, i) => s('text', { x: px(t), y: H - 8, 'text-anchor': ['start', 'middle', 'end'][i], class: 'axis' }, new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }))) : [];
  const lines = series.map((ser) => {
    const pts = xs.map((t, i) => [t, ser.values[i]]).filter(([, v]) => v !== undefined && v !== null);
    return s('polyline', { points: pts.map(([t, v]) => `${px(t).toFixed(1)},${py(v).toFixed(1)}`).join(' '), class: `series ${ser.cls}` });
  });
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart' }, s('title', {}, title), ...grid.flat(), ...ticks, ...lines);
  return h('figure', {}, h('figcaption', {}, title, ' ', series.map((x) => h('span', { class: `legend ${x.cls}` }, x.label))), svg);
}

export async function chartsView(main, _me, params) {
  const range = Number(params.range ?? 3600);
  const bucket = range <= 3600 ? 60 : range <= 6 * 3600 ? 300 : 900;
  const { points } = await api(`/api/series?from=${Math.floor(Date.now() / 1000 - range)}&bucket=${bucket}`);
  const xs = points.map((p) => p.t);
  const perMin = (v) => (v * 60) / bucket;
  replace(main,
    h('h1', {}, 'Charts'),
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Range' },
      [[3600, 'Last hour'], [6 * 3600, '6 hours'], [24 * 3600, '24 hours']].map(([r, label]) =>
        h('button', { type: 'button', 'aria-pressed': String(r === range), onclick: () => chartsView(main, _me, { range: r }) }, label))),
    lineChart('Throughput (tasks/min)', xs, [
      { label: 'received', cls: 's1', values: points.map((p) => perMin(p.received)) },
      { label: 'succeeded', cls: 's2', values: points.map((p) => perMin(p.succeeded)) },
    ], ''),
    lineChart('Failures and retries (tasks/min)', xs, [
      { label: 'failed', cls: 's3', values: points.map((p) => perMin(p.failed)) },
      { label: 'retried', cls: 's4', values: points.map((p) => perMin(p.retried)) },
    ], ''),
    lineChart('Latency, received → finished', xs, [
      { label: 'p50', cls: 's1', values: points.map((p) => p.latencyP50) },
      { label: 'p95', cls: 's3', values: points.map((p) => p.latencyP95) },
    ], 's'),
  );
}
