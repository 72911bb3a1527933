// SVG charts drawn by the page itself: a histogram with a curve over it, and lines over layers on a log scale.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { left: 56, right: 24, top: 12, bottom: 30 };

function el(parent, name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node);
  return node;
}

function frame(svg) {
  svg.replaceChildren();
  const [, , width, height] = svg.getAttribute("viewBox").split(" ").map(Number);
  return { x0: MARGIN.left, x1: width - MARGIN.right, y0: height - MARGIN.bottom, y1: MARGIN.top };
}

function scale(from0, from1, to0, to1) {
  const span = from1 - from0 || 1;
  return (v) => to0 + ((v - from0) / span) * (to1 - to0);
}

function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-2 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

function axes(svg, box, xTicks, yTicks) {
  el(svg, "line", { class: "axis", x1: box.x0, y1: box.y0, x2: box.x1, y2: box.y0 });
  el(svg, "line", { class: "axis", x1: box.x0, y1: box.y0, x2: box.x0, y2: box.y1 });
  xTicks.forEach(([x, label], i) => {
    const anchor = i === 0 ? "start" : i === xTicks.length - 1 ? "end" : "middle";
    el(svg, "text", { x, y: box.y0 + 16, "text-anchor": anchor }, label);
  });
  for (const [y, label] of yTicks) el(svg, "text", { x: box.x0 - 6, y: y + 4, "text-anchor": "end" }, label);
}

// counts over edges as bars (of class `cls`); `expected` (optional) as a line through the bin centres.
function histogram(svg, edges, counts, expected, cls = "bar") {
  const box = frame(svg);
  const top = Math.max(...counts, ...(expected || [0])) || 1;
  const x = scale(edges[0], edges[edges.length - 1], box.x0, box.x1);
  const y = scale(0, top, box.y0, box.y1);
  counts.forEach((count, i) => {
    const left = x(edges[i]);
    el(svg, "rect", { class: cls, x: left, y: y(count), width: Math.max(x(edges[i + 1]) - left - 1, 0.5), height: box.y0 - y(count) });
  });
  if (expected) {
    const points = expected.map((e, i) => `${x((edges[i] + edges[i + 1]) / 2)},${y(e)}`);
    el(svg, "polyline", { class: "theory", points: points.join(" ") });
  }
  const ends = [edges[0], (edges[0] + edges[edges.length - 1]) / 2, edges[edges.length - 1]];
  axes(svg, box, ends.map((e) => [x(e), fmt(e)]), [0, top / 2, top].map((c) => [y(c), fmt(c)]));
}

// series: [{values: [per layer, null where none], cls: "a" | "b", dashed: bool}], drawn over layers 1..n, log y.
function layerLines(svg, series) {
  const box = frame(svg);
  const positive = series.flatMap((s) => s.values).filter((v) => v !== null && v > 0);
  if (!positive.length) return;
  const lo = Math.floor(Math.log10(Math.min(...positive)));
  const hi = Math.max(Math.ceil(Math.log10(Math.max(...positive))), lo + 1);
  const layers = Math.max(...series.map((s) => s.values.length));
  const x = scale(1, Math.max(layers, 2), box.x0, box.x1);
  const y = scale(lo, hi, box.y0, box.y1);
  for (const s of series) {
    const points = s.values.map((v, i) => (v > 0 ? `${x(i + 1)},${y(Math.log10(v))}` : null)).filter(Boolean);
    el(svg, "polyline", { class: `series ${s.cls}${s.dashed ? " dashed" : ""}`, points: points.join(" ") });
  }
  const step = Math.max(1, Math.ceil((hi - lo) / 6));
  const yTicks = [];
  for (let p = lo; p <= hi; p += step) yTicks.push([y(p), `1e${p}`]);
  const xTicks = [1, Math.ceil(layers / 2), layers].map((l) => [x(l), `layer ${l}`]);
  axes(svg, box, xTicks, yTicks);
}

window.charts = { histogram, layerLines };
