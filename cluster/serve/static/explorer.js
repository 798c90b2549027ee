// varsearch explorer, the search page: a form for POST /v1/search, then the job's event stream
// drawn as a tree of scored candidates by scale, the NFEs spent, and the chosen vs rejected images.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const FIELDS = {
  // the API's error locations -> the inputs they name
  prompts: "prompts", method: "method", budget: "budget", verifier: "verifier", seed: "seed",
  beam_width: "beam-width", children: "children", prune_scales: "prune-scales", rollout_tau_scale: "rollout-tau-scale",
  diversity: "dv-enabled", "diversity.b": "dv-b", "diversity.b2": "dv-b2",
  "diversity.scales": "dv-scales",
};
const BEAM_METHODS = ["beam", "partial_beam"];
const ROLLOUT_METHODS = ["beam", "gto"]; // the methods whose candidates are rolled out to full images
const NUM_REJECTED = 3; // best rejected candidates shown beside the chosen image

let models = null; // GET /v1/models
let current = null; // the JobView being followed

async function loadModels() {
  try {
    models = await apiJSON("/v1/models");
  } catch (err) {
    $("model").textContent = "served model unknown";
    showFormError(err);
    return;
  }
  clearErrors();
  $("model").textContent = `${models.model} · ${models.num_scales} scales`;
  const { defaults } = models;
  $("method").replaceChildren(...models.methods.map((m) => el("option", { value: m, selected: m === defaults.method }, m)));
  $("verifier").replaceChildren(
    ...models.verifiers.map((v) =>
      el("option", { value: v.name, selected: v.name === defaults.verifier }, v.is_judge ? `${v.name} (held-out judge)` : v.name),
    ),
  );
  $("budget").value = defaults.budget;
  $("budget").max = models.limits.max_budget_nfe;
  syncForm();
}

function syncForm() {
  // Each knob is enabled only for the methods the API accepts it for; DiverseVAR's only with DiverseVAR on.
  const method = $("method").value;
  for (const id of ["beam-width", "children", "prune-scales"]) $(id).disabled = !BEAM_METHODS.includes(method);
  $("rollout-tau-scale").disabled = !ROLLOUT_METHODS.includes(method);
  for (const id of ["dv-b", "dv-b2", "dv-scales"]) $(id).disabled = !$("dv-enabled").checked;
}

function numberOrNull(id) {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

function numberList(text) {
  return text.split(",").map((s) => Number(s.trim())); // the API names any entry that is not a number
}

function buildBody() {
  const body = { prompts: $("prompts").value.split("\n").map((p) => p.trim()).filter((p) => p) };
  if ($("method").value) body.method = $("method").value;
  if ($("verifier").value) body.verifier = $("verifier").value;
  const budget = numberOrNull("budget");
  if (budget !== null) body.budget = budget;
  const seed = numberOrNull("seed");
  if (seed !== null) body.seed = seed;
  for (const field of ["beam_width", "children", "rollout_tau_scale"]) {
    const value = numberOrNull(FIELDS[field]);
    if (value !== null && !$(FIELDS[field]).disabled) body[field] = value;
  }
  const pruneScales = $(FIELDS.prune_scales).value.trim();
  if (pruneScales && !$(FIELDS.prune_scales).disabled) body.prune_scales = numberList(pruneScales);
  body.diversity = { enabled: $("dv-enabled").checked };
  if (body.diversity.enabled) {
    for (const knob of ["b", "b2"]) {
      const value = numberOrNull(`dv-${knob}`);
      if (value !== null) body.diversity[knob] = value;
    }
    const scales = $("dv-scales").value.trim();
    if (scales) body.diversity.scales = numberList(scales);
  }
  return body;
}

function clearErrors() {
  $("form-error").hidden = true;
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showFormError(err) {
  $("form-error").textContent = err.message;
  $("form-error").hidden = false;
  for (const e of Array.isArray(err.detail) ? err.detail : []) {
    const loc = e.loc.filter((part) => part !== "body");
    const id = FIELDS[loc.slice(0, 2).join(".")] || FIELDS[loc[0]];
    if (id) $(id).setAttribute("aria-invalid", "true");
  }
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  let job;
  try {
    job = await apiJSON("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(buildBody()),
    });
  } catch (err) {
    showFormError(err);
    return;
  }
  follow(job);
}

async function follow(job) {
  if (current) current.stop();
  history.replaceState(null, "", `#job=${job.id}`);
  current = new JobView(job);
  $("cancel").disabled = false;
  await current.stream();
  $("cancel").disabled = true;
}

async function onCancel() {
  if (!current) return;
  try {
    await api(`/v1/search/${current.id}`, { method: "DELETE" });
  } catch (err) {
    current.fail(err.message);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function planText(request, plan) {
  const parts = Object.entries(plan).map(([key, value]) => `${key.replaceAll("_", " ")} ${value}`);
  return `${request.method} search, verifier ${request.verifier}, budget ${request.budget} NFEs per prompt; ` +
    `what the budget buys per prompt: ${parts.join(", ")}`;
}

class JobView {
  // One job: its prompts' views, the event stream (resumed after the last event if it drops).
  constructor(job) {
    this.id = job.id;
    this.after = 0;
    this.ended = false;
    this.controller = new AbortController();
    const { request } = job;
    this.prompts = request.prompts.map((p, i) => new PromptView(i, p, request.seed + i, request.budget, job.plan));
    this.budget = request.budget * request.prompts.length;
    $("job").hidden = false;
    $("job-id").textContent = job.id;
    $("job-error").hidden = true;
    $("plan").textContent = planText(request, job.plan);
    $("prompt-views").replaceChildren(...this.prompts.map((v) => v.root));
    this.setStatus(job.status);
    this.updateMeter();
  }

  stop() {
    this.controller.abort();
  }

  async stream() {
    let failures = 0;
    while (!this.ended && !this.controller.signal.aborted) {
      try {
        const response = await api(`/v1/search/${this.id}/events?after=${this.after}`, {
          signal: this.controller.signal,
        });
        for await (const event of sseEvents(response)) {
          this.after = event.id;
          failures = 0;
          this.handle(event);
        }
      } catch (err) {
        if (this.controller.signal.aborted) return;
        if (err instanceof ApiError || ++failures > 5) {
          this.fail(err.message);
          return;
        }
      }
      if (!this.ended) await sleep(1000); // the stream dropped: resume after the last event seen
    }
  }

  handle({ event, data }) {
    if (event === "status") {
      this.setStatus(data.status);
    } else if (event === "progress") {
      const view = this.prompts[data.index];
      if (data.event === "score") view.score(data);
      else if (data.event === "prune") view.prune(data);
      view.progress(data);
      this.updateMeter();
    } else if (event === "result") {
      this.prompts[data.index].result(data);
    } else if (event === "end") {
      this.ended = true;
      this.setStatus(data.status);
      if (data.error) this.fail(data.error);
      this.finish();
    }
  }

  async finish() {
    // The chosen images at full size come with the job (base64 PNG), once it has ended.
    try {
      const job = await apiJSON(`/v1/search/${this.id}`);
      for (const result of job.results) this.prompts[result.index].final(result);
      for (const view of this.prompts) if (!view.finished) view.unfinished(job.status);
    } catch (err) {
      this.fail(err.message);
    }
  }

  setStatus(status) {
    $("job-status").textContent = status;
    $("job-status").className = `status ${status}`;
  }

  updateMeter() {
    const spent = this.prompts.reduce((sum, v) => sum + v.nfe, 0);
    $("job-bar").style.width = `${Math.min(100, (100 * spent) / this.budget)}%`;
    $("job-nfe").textContent = `${spent} / ${this.budget} NFEs spent (all prompts)`;
  }

  fail(message) {
    $("job-error").textContent = message;
    $("job-error").hidden = false;
  }
}

class PromptView {
  // One prompt's search: a column per scale, a card per scored candidate, lines from parent to child.
  constructor(index, prompt, seed, budget, plan) {
    this.budget = budget;
    this.plan = plan;
    this.nfe = 0;
    this.calls = 0;
    this.nodes = new Map(); // "scale|path" -> {row, card, why}
    this.columns = new Map(); // scale -> column element
    this.chosen = null;
    this.finished = false;
    this.pending = 0; // the animation frame that will redraw the lines
    this.bar = el("div");
    this.meterText = el("span");
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("class", "edges");
    this.tree = el("div", { class: "tree" }, this.svg);
    this.finalBox = el("div", { class: "final" }, el("span", { class: "note" }, "waiting for the search to finish…"));
    this.root = el(
      "section",
      { class: "prompt", "data-index": index },
      el("h2", {}, `Prompt ${index}: “${prompt}” `, el("small", {}, `seed ${seed}`)),
      el("div", { class: "meter" }, el("div", { class: "bar" }, this.bar), this.meterText),
      el("h3", {}, "Search tree: one column per scale, one card per scored candidate"),
      this.tree,
      el("h3", {}, "Chosen image and the best rejected candidates"),
      this.finalBox,
    );
    this.updateMeter();
    new ResizeObserver(() => this.redraw()).observe(this.tree);
  }

  progress(row) {
    this.nfe = Math.max(this.nfe, row.nfe_so_far);
    this.calls = Math.max(this.calls, row.verifier_calls_so_far);
    this.updateMeter();
  }

  updateMeter() {
    this.bar.style.width = `${Math.min(100, (100 * this.nfe) / this.budget)}%`;
    this.meterText.textContent =
      `${this.nfe} / ${this.budget} NFEs spent (the plan uses ${this.plan.nfe}) · ` +
      `${this.calls} / ${this.plan.verifier_calls} verifier calls`;
  }

  column(scale) {
    if (!this.columns.has(scale)) {
      const last = models && scale === models.num_scales - 1 ? " (finest)" : "";
      const column = el("div", { class: "column", "data-scale": scale }, el("h3", {}, `scale ${scale}${scale === 0 ? " (coarsest)" : last}`));
      const after = [...this.columns.keys()].filter((k) => k > scale).sort((a, b) => a - b)[0];
      this.tree.insertBefore(column, after === undefined ? null : this.columns.get(after));
      this.columns.set(scale, column);
    }
    return this.columns.get(scale);
  }

  score(row) {
    const why = el("div", { class: "why" }, row.complete ? "" : "preview");
    const img = el("img", { alt: `candidate ${row.path}`, src: row.thumbnail ? `data:image/png;base64,${row.thumbnail}` : null });
    const card = el(
      "div",
      { class: "node", "data-path": row.path, "data-scale": row.branch_scale, title: this.tooltip(row) },
      img,
      el("div", {}, el("div", { class: "score" }, fmt(row.score)), el("div", { class: "path" }, `${row.path} · ${row.kind}`), why),
    );
    this.column(row.branch_scale).append(card);
    this.nodes.set(`${row.branch_scale}|${row.path}`, { row, card, why, img });
    this.redraw();
  }

  tooltip(row) {
    return `path ${row.path} (${row.kind}), score ${row.score}\n` +
      `scales decoded: ${row.scales_done}; NFEs so far: ${row.nfe_so_far}; verifier calls so far: ${row.verifier_calls_so_far}`;
  }

  prune(row) {
    const k = row.branch_scale;
    for (const path of row.kept) this.mark(k, path, "kept", `kept at scale ${k} (top ${row.kept.length})`);
    for (const path of row.dropped) {
      const node = this.nodes.get(`${k}|${path}`);
      const tied = node && node.row.score >= row.threshold;
      const reason = tied
        ? `pruned at scale ${k}: tied with threshold ${fmt(row.threshold)}, an earlier candidate kept`
        : `pruned: below threshold ${fmt(row.threshold)} at scale ${k}`;
      this.mark(k, path, "pruned", reason);
    }
    this.redraw();
  }

  mark(scale, path, status, reason) {
    const node = this.nodes.get(`${scale}|${path}`);
    if (!node) return;
    node.status = status;
    node.card.classList.add(status);
    node.why.textContent = reason;
  }

  result(result) {
    // The search's choice: the complete candidate with this path and score.
    this.chosen = [...this.nodes.values()].find((n) => n.row.complete && n.row.path === result.path && n.row.score === result.score);
    if (this.chosen) {
      this.chosen.card.classList.add("chosen");
      this.chosen.why.textContent = "chosen: the best complete image";
    }
    this.redraw();
  }

  final(result) {
    this.finished = true;
    const chosen = el(
      "figure",
      { class: "chosen" },
      el("img", { alt: `chosen image for prompt ${result.index}`, src: `data:image/png;base64,${result.image_png_base64}` }),
      el("figcaption", {}, el("strong", {}, `chosen · score ${fmt(result.score)}`), el("br"),
        `path ${result.path} · ${result.totals.nfe} NFEs · ${result.totals.verifier_calls} verifier calls · ${fmt(result.wall_s, 2)} s`),
    );
    const rejected = [...this.nodes.values()]
      .filter((n) => n.row.complete && n !== this.chosen)
      .sort((a, b) => b.row.score - a.row.score)
      .slice(0, NUM_REJECTED)
      .map((n) =>
        el(
          "figure",
          { class: "rejected" },
          el("img", { alt: `rejected candidate ${n.row.path}`, src: n.img.src }),
          el("figcaption", {}, `rejected · score ${fmt(n.row.score)}`, el("br"), `path ${n.row.path}`,
            n.status === "pruned" ? el("span", { class: "muted" }, el("br"), n.why.textContent) : null),
        ),
      );
    const none = el("span", { class: "note" }, "no other complete candidate was scored");
    this.finalBox.replaceChildren(chosen, ...(rejected.length ? rejected : [none]));
  }

  unfinished(status) {
    this.finalBox.replaceChildren(el("span", { class: "note" }, `no result: the job ${status} before this prompt finished`));
  }

  parentOf(node) {
    // The card this one branched from: the nearest earlier scale holding the parent path (or the
    // same path, when a finished beam is scored again at the last scale).
    const parent = node.row.path.split(".").slice(0, -1).join(".");
    for (let k = node.row.branch_scale - 1; k >= 0; k--) {
      const found = this.nodes.get(`${k}|${node.row.path}`) || this.nodes.get(`${k}|${parent}`);
      if (found) return found;
    }
    return null;
  }

  redraw() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.drawEdges();
    });
  }

  drawEdges() {
    const box = this.tree.getBoundingClientRect();
    const place = (card) => {
      const r = card.getBoundingClientRect();
      const top = r.top - box.top + this.tree.scrollTop;
      return { left: r.left - box.left + this.tree.scrollLeft, right: r.right - box.left + this.tree.scrollLeft, y: top + r.height / 2 };
    };
    const edges = [];
    for (const node of this.nodes.values()) {
      const parent = this.parentOf(node);
      if (!parent) continue;
      const a = place(parent.card);
      const b = place(node.card);
      const dx = (b.left - a.right) / 2;
      const edge = document.createElementNS(SVG, "path");
      edge.setAttribute("d", `M${a.right},${a.y} C${a.right + dx},${a.y} ${b.left - dx},${b.y} ${b.left},${b.y}`);
      if (node.status === "kept" || node === this.chosen) edge.setAttribute("class", "kept");
      edges.push(edge);
    }
    this.svg.setAttribute("width", this.tree.scrollWidth);
    this.svg.setAttribute("height", this.tree.scrollHeight);
    this.svg.replaceChildren(...edges);
  }
}

async function resumeFromHash() {
  // #job=ID (set while a job runs) follows that job again after a reload, replaying its events.
  const match = location.hash.match(/^#job=([0-9a-f]+)$/);
  if (!match) return;
  try {
    follow(await apiJSON(`/v1/search/${match[1]}?images=false`));
  } catch (err) {
    showFormError(err);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("token").value = getToken();
  $("token").addEventListener("change", () => {
    setToken($("token").value.trim());
    loadModels();
  });
  $("method").addEventListener("change", syncForm);
  $("dv-enabled").addEventListener("change", syncForm);
  $("search-form").addEventListener("submit", onSubmit);
  $("cancel").addEventListener("click", onCancel);
  await loadModels();
  await resumeFromHash();
});
