// varsearch explorer, the study viewer: the studies under the server's --studies-dir, one study's
// score-vs-NFE plot (inline SVG, drawn here), its summary table and its grid of winners per prompt.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2458c6", "#d9480f", "#1f8a4c", "#7048e8", "#c2255c", "#0b7285", "#e67700", "#495057"];
const PLOT = { width: 430, height: 280, left: 52, right: 14, top: 28, bottom: 40, legend: 170 };

function showError(err) {
  $("error").textContent = err.message;
  $("error").hidden = false;
}

function lineName(row) {
  return row.method + (row.diversity ? " +DiverseVAR" : "");
}

function columnName(c) {
  const budget = c.budget_nfe === null ? "–" : Math.round(c.budget_nfe);
  return `${c.method}@${budget} ${c.verifier}${c.diversity ? " +DiverseVAR" : ""}`;
}

async function loadStudies() {
  let studies;
  try {
    ({ studies } = await apiJSON("/v1/studies"));
  } catch (err) {
    $("studies").replaceChildren();
    showError(err);
    return;
  }
  $("error").hidden = true;
  if (!studies.length) {
    $("studies").replaceChildren(
      el("span", { class: "note" }, "No studies yet: run `varsearch study shapes-study --out outputs/studies/NAME` " +
        "(or start the server with --studies-dir pointing at your study folders)."),
    );
    return;
  }
  const wanted = new URLSearchParams(location.search).get("name") || studies[0].name;
  $("studies").replaceChildren(
    ...studies.map((s) =>
      el("a", { href: `/studies?name=${encodeURIComponent(s.name)}`, "aria-current": s.name === wanted ? "true" : null },
        `${s.name} · ${s.searches} searches, ${s.prompts} prompts`),
    ),
  );
  await loadStudy(wanted);
}

async function loadStudy(name) {
  let study;
  try {
    study = await apiJSON(`/v1/studies/${encodeURIComponent(name)}`);
  } catch (err) {
    showError(err);
    return;
  }
  $("study").hidden = false;
  $("study-title").textContent = `Study ${study.name}`;
  $("study-facts").textContent =
    `${study.searches} searches over ${study.prompts} prompts, seeds ${study.seeds.join(", ")}.` +
    (study.winners.length < study.prompts ? ` The grid shows the first ${study.winners.length} prompts.` : "");
  drawPlots(study.summary);
  fillSummary(study.summary);
  fillWinners(study);
}

function drawPlots(summary) {
  // One panel per verifier (mean score), plus accuracy when the evaluator judged any winner.
  const verifiers = [...new Set(summary.map((r) => r.verifier))].sort();
  const panels = verifiers.map((v) => plot(summary.filter((r) => r.verifier === v), "score", `mean ${v} score`));
  if (summary.some((r) => r.judged > 0)) {
    panels.push(plot(summary.filter((r) => r.accuracy !== null), "accuracy", "accuracy (held-out evaluator)"));
  }
  $("plots").replaceChildren(...panels);
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function niceTicks(lo, hi, count = 5) {
  // Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi].
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const mult = [1, 2, 2.5, 5, 10].find((m) => m * mag >= raw);
  const step = mult * mag;
  const values = [];
  for (let i = Math.ceil(lo / step); i * step <= hi; i++) values.push(i * step);
  return { values, digits: Math.max(0, -Math.round(Math.log10(mag))) + (mult === 2.5 ? 1 : 0) };
}

function plot(rows, metric, title) {
  // Lines of `metric` against mean NFEs (log2 x axis), one per method (and DiverseVAR setting).
  const w = PLOT.width - PLOT.left - PLOT.right;
  const h = PLOT.height - PLOT.top - PLOT.bottom;
  const xs = rows.map((r) => Math.log2(r.nfe));
  const ys = rows.map((r) => r[metric]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = metric === "accuracy" ? [0, 1] : [Math.min(...ys), Math.max(...ys)]; // a fraction: all of it
  [x0, x1] = [x0 - 0.25, x1 + 0.25]; // room for the end points
  const pad = (y1 - y0) * 0.06 || Math.abs(y0) * 0.05 || 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (r) => PLOT.left + ((Math.log2(r.nfe) - x0) / (x1 - x0)) * w;
  const Y = (v) => PLOT.top + (1 - (v - y0) / (y1 - y0)) * h;
  const root = svg("svg", { class: "plot", width: PLOT.width + PLOT.legend, height: PLOT.height, role: "img", "aria-label": title });
  root.append(svg("text", { x: PLOT.left, y: 16, "font-weight": 600 }, title));
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) {
    const x = PLOT.left + ((e - x0) / (x1 - x0)) * w;
    root.append(svg("line", { class: "grid", x1: x, x2: x, y1: PLOT.top, y2: PLOT.top + h }));
    root.append(svg("text", { x, y: PLOT.top + h + 15, "text-anchor": "middle" }, String(2 ** e)));
  }
  const { values, digits } = niceTicks(y0, y1);
  for (const v of values) {
    root.append(svg("line", { class: "grid", x1: PLOT.left, x2: PLOT.left + w, y1: Y(v), y2: Y(v) }));
    root.append(svg("text", { x: PLOT.left - 6, y: Y(v) + 4, "text-anchor": "end" }, v.toFixed(digits)));
  }
  root.append(svg("rect", { class: "axis", x: PLOT.left, y: PLOT.top, width: w, height: h, fill: "none" }));
  root.append(svg("text", { x: PLOT.left + w / 2, y: PLOT.height - 6, "text-anchor": "middle" }, "NFEs per search (mean, log scale)"));
  const lines = [...new Set(rows.map(lineName))].sort();
  lines.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    const points = rows.filter((r) => lineName(r) === name).sort((a, b) => a.nfe - b.nfe);
    root.append(svg("polyline", { points: points.map((r) => `${X(r)},${Y(r[metric])}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const r of points) {
      const dot = svg("circle", { cx: X(r), cy: Y(r[metric]), r: 4, fill: color });
      dot.append(svg("title", {}, `${name} @ budget ${r.budget_nfe}: ${metric} ${fmt(r[metric], 4)}, ${fmt(r.nfe, 1)} NFEs, ${r.searches} searches`));
      root.append(dot);
    }
    const ly = PLOT.top + 8 + i * 18;
    root.append(svg("line", { x1: PLOT.width + 4, x2: PLOT.width + 22, y1: ly, y2: ly, stroke: color, "stroke-width": 3 }));
    root.append(svg("text", { x: PLOT.width + 28, y: ly + 4 }, name));
  });
  return root;
}

function fillSummary(summary) {
  const head = ["method", "budget (NFEs)", "verifier", "DiverseVAR", "searches", "mean NFEs", "mean score", "accuracy (judged)", "wall s"];
  const rows = summary.map((r) =>
    el("tr", {},
      el("td", { class: "text" }, r.method),
      el("td", {}, r.budget_nfe === null ? "–" : String(Math.round(r.budget_nfe))),
      el("td", { class: "text" }, r.verifier),
      el("td", { class: "text" }, r.diversity ? "on" : "off"),
      el("td", {}, String(r.searches)),
      el("td", {}, fmt(r.nfe, 1)),
      el("td", {}, fmt(r.score, 4)),
      el("td", {}, r.judged ? `${fmt(r.accuracy)} (${r.judged})` : "–"),
      el("td", {}, fmt(r.wall_s, 2)),
    ),
  );
  $("summary").replaceChildren(el("tr", {}, ...head.map((h) => el("th", {}, h))), ...rows);
}

function fillWinners(study) {
  $("winners-title").textContent = `Winners per prompt (seed ${study.winners_seed}): each search's chosen image`;
  const head = el("tr", {}, el("th", { class: "text" }, "prompt"), ...study.columns.map((c) => el("th", {}, columnName(c))));
  const rows = study.winners.map((w) =>
    el("tr", {},
      el("td", { class: "text" }, w.prompt, w.category ? el("div", { class: "muted" }, w.category) : null),
      ...w.cells.map((cell) => (cell ? winnerCell(cell) : el("td", { class: "muted" }, "not run yet"))),
    ),
  );
  $("winners").replaceChildren(head, ...rows);
}

function winnerCell(cell) {
  const img = el("img", { alt: `winner ${cell.row_id}`, title: `${cell.row_id}: path ${cell.path}, ${cell.nfe} NFEs` });
  if (cell.image_url) showImage(img, cell.image_url).catch(showError);
  const verdict = cell.correct === null ? null : el("span", { class: cell.correct ? "correct" : "wrong" }, cell.correct ? " ✓" : " ✗");
  return el("td", {}, img, fmt(cell.score), verdict);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => event.preventDefault());
  $("token").value = getToken();
  $("token").addEventListener("change", () => {
    setToken($("token").value.trim());
    loadStudies();
  });
  loadStudies();
});
