// Nodes done over time as an SVG line chart, for bench results that record when each node finished.
// Self-contained (no fonts, scripts or styles from elsewhere) so it can be committed or attached as is.

export interface NodesOverTimeSeries {
  name: string;
  points: { seconds: number; done: number }[];
}

export interface ChartOptions {
  title?: string;
  width?: number;
  height?: number;
}

/** Tableau 10: colours told apart in print and by most colour-blind readers. */
const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];
const FONT = 'font-family="sans-serif" font-size="12"';
const LEGEND_ROW = 18;
/** From the plot's bottom edge to the first legend row's top: the tick labels and the axis label fit in it. */
const LEGEND_OFFSET = 40;
const TICK = 5;

export function nodesOverTimeSvg(series: NodesOverTimeSeries[], options: ChartOptions = {}): string {
  const width = options.width ?? 640;
  const height = options.height ?? 360;
  const plotted = series.map((one) => ({
    name: one.name,
    // A point without a finite position would write NaN into the SVG and blank the whole line.
    points: one.points
      .filter((point) => Number.isFinite(point.seconds) && Number.isFinite(point.done))
      .sort((a, b) => a.seconds - b.seconds),
  }));
  const all = plotted.flatMap((one) => one.points);
  const xAxis = axis(Math.max(0, ...all.map((point) => point.seconds)));
  const yAxis = axis(Math.max(0, ...all.map((point) => point.done)));

  const left = 56;
  const right = 16;
  const top = options.title === undefined ? 12 : 36;
  const bottom = LEGEND_OFFSET + plotted.length * LEGEND_ROW + 4;
  const plotWidth = Math.max(1, width - left - right);
  const plotHeight = Math.max(1, height - top - bottom);
  const x = (seconds: number) => coordinate(left + (seconds / xAxis.max) * plotWidth);
  const y = (done: number) => coordinate(top + plotHeight - (done / yAxis.max) * plotHeight);
  const baseline = top + plotHeight;

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  if (options.title !== undefined)
    parts.push(
      `<text x="${coordinate(width / 2)}" y="22" text-anchor="middle" ${FONT} font-weight="bold">${escapeXml(options.title)}</text>`,
    );
  for (const tick of xAxis.ticks) {
    parts.push(
      `<line x1="${x(tick)}" y1="${baseline}" x2="${x(tick)}" y2="${baseline + TICK}" stroke="#333333"/>`,
      `<text x="${x(tick)}" y="${baseline + TICK + 13}" text-anchor="middle" ${FONT}>${label(tick, xAxis.step)}</text>`,
    );
  }
  for (const tick of yAxis.ticks) {
    parts.push(
      `<line x1="${left}" y1="${y(tick)}" x2="${left + plotWidth}" y2="${y(tick)}" stroke="#e6e6e6"/>`,
      `<line x1="${left - TICK}" y1="${y(tick)}" x2="${left}" y2="${y(tick)}" stroke="#333333"/>`,
      `<text x="${left - TICK - 3}" y="${y(tick) + 4}" text-anchor="end" ${FONT}>${label(tick, yAxis.step)}</text>`,
    );
  }
  parts.push(
    `<line x1="${left}" y1="${baseline}" x2="${left + plotWidth}" y2="${baseline}" stroke="#333333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${baseline}" stroke="#333333"/>`,
    `<text x="${coordinate(left + plotWidth / 2)}" y="${baseline + 32}" text-anchor="middle" ${FONT}>seconds</text>`,
    `<text x="14" y="${coordinate(top + plotHeight / 2)}" text-anchor="middle" transform="rotate(-90 14 ${coordinate(top + plotHeight / 2)})" ${FONT}>nodes done</text>`,
  );
  plotted.forEach((one, index) => {
    const colour = colourOf(index);
    const points = one.points.map((point) => `${x(point.seconds)},${y(point.done)}`);
    // A lone point is drawn as a zero-length segment: with round caps it shows as a dot.
    const drawn = points.length === 1 ? [points[0]!, points[0]!] : points;
    parts.push(
      `<polyline data-series="${index}" fill="none" stroke="${colour}" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" points="${drawn.join(' ')}"/>`,
    );
    const rowY = baseline + LEGEND_OFFSET + (index + 1) * LEGEND_ROW - 4;
    parts.push(
      `<g data-legend="${index}"><line x1="${left}" y1="${rowY - 4}" x2="${left + 20}" y2="${rowY - 4}" stroke="${colour}" stroke-width="2"/><text x="${left + 26}" y="${rowY}" ${FONT}>${escapeXml(one.name)}</text></g>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (character) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[character] ?? character,
  );
}

/** Past the palette, hues a golden angle apart: each new one as far as it can be from those before. */
function colourOf(index: number): string {
  return PALETTE[index] ?? `hsl(${Math.round((index * 137.508) % 360)}, 65%, 42%)`;
}

/** An axis from 0 to a round number at or above `maximum`, with ticks at 1, 2 or 5 times a power of ten. */
function axis(maximum: number): { max: number; step: number; ticks: number[] } {
  const wanted = maximum > 0 ? maximum : 1;
  const rough = wanted / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = ([1, 2, 5, 10].find((factor) => factor * power >= rough) ?? 10) * power;
  const count = Math.ceil(wanted / step - 1e-9);
  const ticks = Array.from({ length: count + 1 }, (_, index) => index * step);
  return { max: count * step, step, ticks };
}

function label(value: number, step: number): string {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  return value.toFixed(decimals);
}

function coordinate(value: number): number {
  return Number(value.toFixed(2));
}
