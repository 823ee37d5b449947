import { describe, expect, it } from 'vitest';
import { nodesOverTimeSvg } from '../../bench/chart';

const ramp = (secondsPerNode: number, nodes: number) =>
  Array.from({ length: nodes + 1 }, (_, done) => ({ seconds: done * secondsPerNode, done }));

/** Every element's tag in document order; throws when one closes out of order or is left open. */
function balancedTags(svg: string): string[] {
  const open: string[] = [];
  const seen: string[] = [];
  for (const [tag, closing, name, selfClosing] of svg.matchAll(/<(\/?)([a-z]+)\b[^>]*?(\/?)>/g)) {
    if (closing) {
      expect(open.pop(), `${tag} closes what was open`).toBe(name);
    } else {
      seen.push(name!);
      if (!selfClosing) open.push(name!);
    }
  }
  expect(open).toEqual([]);
  return seen;
}

const attribute = (element: string, name: string) => new RegExp(`\\b${name}="([^"]*)"`).exec(element)?.[1];

describe('nodesOverTimeSvg', () => {
  const series = [
    { name: 'batched <installs> & "waves"', points: ramp(2, 15) },
    { name: "per-node's", points: ramp(4.5, 15) },
    { name: 'one point', points: [{ seconds: 10, done: 3 }] },
  ];
  const svg = nodesOverTimeSvg(series, { title: 'Rotation <50 nodes> & more', width: 800, height: 400 });

  it('is one well-formed svg element with no NaN or Infinity in it', () => {
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expect(svg).not.toMatch(/NaN|Infinity|undefined/);
    const tags = balancedTags(svg);
    expect(tags[0]).toBe('svg');
    expect(tags.filter((tag) => tag === 'svg')).toHaveLength(1);
    expect(attribute(svg, 'viewBox')).toBe('0 0 800 400');
  });

  it('draws one line per series, each in its own colour and inside the picture', () => {
    const lines = svg.match(/<polyline\b[^>]*>/g) ?? [];
    expect(lines).toHaveLength(series.length);
    expect(new Set(lines.map((line) => attribute(line, 'stroke'))).size).toBe(series.length);
    for (const line of lines) {
      const points = attribute(line, 'points')!
        .split(' ')
        .map((pair) => pair.split(',').map(Number));
      expect(points.length).toBeGreaterThanOrEqual(2);
      for (const [x, y] of points) {
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(800);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(400);
      }
    }
    expect(attribute(lines[0]!, 'points')!.split(' ')).toHaveLength(16);
  });

  it('names every series in the legend, in its line colour, with the text escaped for XML', () => {
    const legends = svg.match(/<g data-legend="\d+">.*?<\/g>/g) ?? [];
    expect(legends).toHaveLength(series.length);
    expect(legends[0]).toContain('batched &lt;installs&gt; &amp; &quot;waves&quot;');
    expect(legends[1]).toContain('per-node&apos;s');
    const lines = svg.match(/<polyline\b[^>]*>/g)!;
    legends.forEach((legend, index) => {
      expect(attribute(legend, 'stroke')).toBe(attribute(lines[index]!, 'stroke'));
    });
    expect(svg).toContain('Rotation &lt;50 nodes&gt; &amp; more');
    expect(svg).not.toContain('<installs>');
  });

  it('labels both axes and puts round ticks from 0 past the largest value', () => {
    const labels = [...svg.matchAll(/<text\b[^>]*>([^<]*)<\/text>/g)].map((match) => match[1]);
    expect(labels).toContain('seconds');
    expect(labels).toContain('nodes done');
    // x runs to 67.5 s (15 nodes at 4.5 s), y to 15 nodes.
    expect(labels).toEqual(expect.arrayContaining(['0', '20', '40', '60', '80']));
    expect(labels).toEqual(expect.arrayContaining(['5', '10', '15']));
    expect(labels).not.toContain('100');
  });

  it('gives a dozen series a dozen different colours', () => {
    const many = Array.from({ length: 12 }, (_, index) => ({
      name: `s${index}`,
      points: ramp(index + 1, 3),
    }));
    const lines = nodesOverTimeSvg(many).match(/<polyline\b[^>]*>/g)!;
    expect(new Set(lines.map((line) => attribute(line, 'stroke'))).size).toBe(12);
  });

  it('leaves out points it cannot place and still draws a chart with no data at all', () => {
    const withBad = nodesOverTimeSvg([
      { name: 'bad', points: [{ seconds: Number.NaN, done: 1 }, ...ramp(1, 2)] },
    ]);
    expect(withBad).not.toMatch(/NaN|Infinity/);
    expect(attribute(withBad.match(/<polyline\b[^>]*>/)![0], 'points')!.split(' ')).toHaveLength(3);
    const empty = nodesOverTimeSvg([]);
    expect(empty).not.toMatch(/NaN|Infinity/);
    expect(empty.match(/<polyline\b/g)).toBeNull();
    balancedTags(empty);
  });
});
