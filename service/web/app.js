// The page's logic: the API key, the scheme editors built from GET /schemes, /stats and /init for one tensor,
// /diagnose for two schemes. Everything it fetches is this server's.
"use strict";

const KEY = "initserve.apiKey"; // sessionStorage, shared with /docs and /redoc
const $ = (selector) => document.querySelector(selector);
let catalogue = {};

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

class ApiError extends Error {}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? { headers: headers() } : {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  if (response.status === 401) {
    $("#key-status").textContent = "this server needs an API key";
    $("#api-key").focus();
  }
  if (!response.ok) {
    const detail = await response.json().catch(() => null);
    const text = detail && detail.detail ? detail.detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ") : response.statusText;
    throw new ApiError(`${response.status}: ${text}`);
  }
  return response;
}

// A scheme <select> and one input per parameter of the chosen scheme (from the catalogue).
function schemeEditor(root) {
  const select = document.createElement("select");
  select.name = "scheme";
  for (const name of Object.keys(catalogue)) select.add(new Option(name, name));
  select.value = root.dataset.default;
  const label = document.createElement("label");
  label.append("scheme", select);
  const params = document.createElement("span");
  params.className = "scheme";
  const preset = JSON.parse(root.dataset.params || "{}");
  function build() {
    params.replaceChildren();
    for (const p of catalogue[select.value].params) {
      const input = p.choices ? document.createElement("select") : document.createElement("input");
      if (p.choices) for (const c of p.choices) input.add(new Option(c, c));
      input.dataset.param = p.name;
      input.dataset.type = p.type;
      input.value = preset[p.name] ?? (p.default === undefined || p.default === null ? "" : p.default);
      if (!p.required) input.dataset.optional = String(p.default);
      const wrap = document.createElement("label");
      wrap.title = p.doc;
      wrap.append(p.name, input);
      params.append(wrap);
    }
  }
  select.addEventListener("change", build);
  root.replaceChildren(label, params);
  build();
  return () => {
    const spec = { scheme: select.value };
    for (const input of params.querySelectorAll("[data-param]")) {
      if (input.value === "" || input.value === input.dataset.optional) continue;
      spec[input.dataset.param] = ["number", "integer"].includes(input.dataset.type) ? Number(input.value) : input.value;
    }
    return spec;
  };
}

let tensorSpec, diagnoseA, diagnoseB;

function tensorRequest() {
  const form = $("#tensor-form");
  const body = {
    shape: form.shape.value.split(",").map((s) => s.trim()).filter(Boolean).map(Number),
    ...tensorSpec(),
    dtype: form.dtype.value,
    seed: Number(form.seed.value),
  };
  if (form.layout.value) body.layout = form.layout.value;
  return body;
}

function statsTable(stats) {
  const rows = [["", "theory", "tensor"]];
  for (const key of ["mean", "variance", "std"]) rows.push([key, stats.theoretical[key], stats.empirical[key]]);
  rows.push(["min / max", "", `${fmtNumber(stats.empirical.min)} / ${fmtNumber(stats.empirical.max)}`]);
  if (stats.ks) rows.push(["KS p-value", "", stats.ks.pvalue]);
  $("#stats-table").replaceChildren(...rows.map((row, i) => {
    const tr = document.createElement("tr");
    for (const cell of row) {
      const td = document.createElement(i === 0 ? "th" : "td");
      td.textContent = typeof cell === "number" ? fmtNumber(cell) : cell ?? "";
      tr.append(td);
    }
    return tr;
  }));
}

function fmtNumber(v) {
  return v === null ? "" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4) : v.toPrecision(5);
}

function curl(body) {
  const auth = sessionStorage.getItem(KEY) ? ` -H "Authorization: Bearer $INITSERVE_API_KEY"` : "";
  return `curl -s -X POST ${location.origin}/init${auth} -d '${JSON.stringify(body)}' -o weight.safetensors`;
}

// Each form's latest submission: an earlier answer that arrives after a later one is not drawn over it.
const latest = { tensor: 0, diagnose: 0 };

async function showTensor(event) {
  event?.preventDefault();
  $("#tensor-error").textContent = "";
  const body = tensorRequest();
  $("#curl").textContent = curl(body);
  const ticket = ++latest.tensor;
  try {
    const stats = await (await api("/stats", { ...body, bins: 48 })).json();
    if (ticket !== latest.tensor) return;
    const h = stats.histogram;
    charts.histogram($("#histogram"), h.edges, h.counts, h.expected);
    statsTable(stats);
    $("#histogram").dataset.shows = JSON.stringify(body); // which request is drawn, as answers may come late
  } catch (error) {
    if (ticket === latest.tensor) $("#tensor-error").textContent = error.message;
  }
}

async function download(format) {
  $("#tensor-error").textContent = "";
  try {
    const response = await api("/init", { ...tensorRequest(), format });
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name ? name[1] : `weight.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    $("#tensor-error").textContent = error.message;
  }
}

async function copyCurl() {
  const text = curl(tensorRequest());
  $("#curl").textContent = text;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    getSelection().selectAllChildren($("#curl")); // no clipboard outside a secure context: selected to copy
  }
}

// The two /diagnose bodies, A and B: the same stack, inputs and seed, each with its scheme.
function diagnoseRequests() {
  const form = $("#diagnose-form");
  const depth = Number(form.depth.value);
  const common = {
    widths: Array(depth + 1).fill(Number(form.width.value)),
    activation: form.activation.value,
    norm: form.norm.value,
    batch: Number(form.batch.value),
    seed: Number(form.seed.value),
    bins: 40,
  };
  return [diagnoseA(), diagnoseB()].map((init) => ({ ...common, init }));
}

async function runDiagnose(event) {
  event?.preventDefault();
  $("#diagnose-error").textContent = "";
  const ticket = ++latest.diagnose;
  try {
    const [a, b] = await Promise.all(diagnoseRequests().map(async (body) => (await api("/diagnose", body)).json()));
    if (ticket !== latest.diagnose) return;
    const pick = (result, f) => result.layers.map(f);
    $("#legend-a").textContent = `A: ${a.layers[0].weight.scheme}`;
    $("#legend-b").textContent = `B: ${b.layers[0].weight.scheme}`;
    charts.layerLines($("#activation-chart"), [
      { values: pick(a, (l) => l.output.variance), cls: "a" },
      { values: pick(b, (l) => l.output.variance), cls: "b" },
      { values: pick(a, (l) => l.theory.activation_variance), cls: "a", dashed: true },
      { values: pick(b, (l) => l.theory.activation_variance), cls: "b", dashed: true },
    ]);
    charts.layerLines($("#gradient-chart"), [
      { values: pick(a, (l) => l.gradient.variance), cls: "a" },
      { values: pick(b, (l) => l.gradient.variance), cls: "b" },
      { values: pick(a, (l) => l.theory.gradient_variance), cls: "a", dashed: true },
      { values: pick(b, (l) => l.theory.gradient_variance), cls: "b", dashed: true },
    ]);
    for (const [id, result, cls] of [["#last-a", a, "a"], ["#last-b", b, "b"]]) {
      const last = result.layers[result.layers.length - 1].output.histogram;
      charts.histogram($(id), last.edges, last.counts, null, cls);
    }
  } catch (error) {
    if (ticket === latest.diagnose) $("#diagnose-error").textContent = error.message;
  }
}

async function start() {
  try {
    const schemes = (await (await api("/schemes")).json()).schemes;
    catalogue = Object.fromEntries(schemes.map((s) => [s.name, s]));
  } catch (error) {
    $("#tensor-error").textContent = error.message;
    return;
  }
  $("#key-status").textContent = sessionStorage.getItem(KEY) ? "key in use" : "";
  const [tensorRoot, aRoot, bRoot] = document.querySelectorAll(".scheme[data-default]");
  tensorSpec = schemeEditor(tensorRoot);
  diagnoseA = schemeEditor(aRoot);
  diagnoseB = schemeEditor(bRoot);
  document.body.dataset.ready = "true";
  await showTensor();
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  $("#api-key").value = "";
  start();
});
$("#tensor-form").addEventListener("submit", showTensor);
$("#diagnose-form").addEventListener("submit", runDiagnose);
for (const button of document.querySelectorAll("[data-format]")) {
  button.addEventListener("click", () => download(button.dataset.format));
}
$("#copy-curl").addEventListener("click", copyCurl);
start();
