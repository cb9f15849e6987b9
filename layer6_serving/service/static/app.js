// The page: three small forms over the service's JSON API (no build step, no libraries).
"use strict";

const $ = (id) => document.getElementById(id);

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  sessionStorage.setItem("dlstack-api-key", key);
  return key ? { ...extra, "X-API-Key": key } : extra;
}

async function failure(response) {
  // the service answers errors as JSON: {"detail": "..."} or {"detail": [{"loc", "msg"}]}
  try {
    const body = await response.json();
    const d = body.detail;
    if (Array.isArray(d)) return d.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
    return `${response.status}: ${d}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function show(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function status() {
  const r = await fetch("/readyz");
  const body = await r.json();
  const models = Object.entries(body.models || {}).map(([n, m]) => `${n} v${m.version}`);
  show($("status"), body.ready ? `ready: ${models.join(", ")} (${body.backend})`
    : `loading… ${JSON.stringify(body.errors || {})}`, !body.ready);
  if (!body.ready) setTimeout(status, 2000);
}

// Server-sent events read from a fetch body (EventSource cannot POST): events are separated
// by a blank line; each has "event: <name>" and "data: <json>" lines.
async function generate() {
  const story = $("story");
  show(story, "");
  show($("story-stats"), "");
  const body = { prompt: $("prompt").value, max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value), stream: true };
  const r = await fetch("/v1/generate", { method: "POST",
    headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  if (!r.ok) return show(story, await failure(r), true);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      handleEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
}

function handleEvent(block) {
  let name = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  const payload = JSON.parse(data || "{}");
  if (name === "token") $("story").textContent += payload.text;
  else if (name === "done") {
    show($("story-stats"), `${payload.tokens} tokens in ${payload.seconds} s`);
  } else if (name === "error") show($("story-stats"), payload.detail, true);
}

async function sample() {
  const box = $("samples-box");
  box.replaceChildren();
  const body = { class: Number($("digit").value), count: Number($("count").value),
    steps: Number($("steps").value), format: "png" };
  const t0 = performance.now();
  const r = await fetch("/v1/sample", { method: "POST",
    headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  if (!r.ok) return show($("sample-stats"), await failure(r), true);
  const img = document.createElement("img");
  img.id = "samples";
  img.alt = `DDPM samples of the digit ${body.class}`;
  img.src = URL.createObjectURL(await r.blob());
  box.appendChild(img);
  show($("sample-stats"), `${body.count} × digit ${body.class}, ${body.steps} steps, ` +
    `${Math.round(performance.now() - t0)} ms, model v${r.headers.get("X-Model-Version")}`);
}

async function classify() {
  const out = $("classify-result");
  const file = $("file").files[0];
  if (!file) return show(out, "choose a 32×32 PNG or JPEG first", true);
  const form = new FormData();
  form.append("file", file);
  const r = await fetch("/v1/classify", { method: "POST", headers: headers(), body: form });
  if (!r.ok) return show(out, await failure(r), true);
  const body = await r.json();
  const pct = (p) => `${(100 * p).toFixed(1)}%`;
  show(out, `${body.class_name} (label ${body.label}, ${pct(body.probabilities[body.label])})`);
  const top = body.probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  $("probabilities").replaceChildren(...top.map(([p, i]) => {
    const li = document.createElement("li");
    li.textContent = `${body.classes[i]}: ${pct(p)}`;
    return li;
  }));
}

for (let d = 0; d <= 9; d++) $("digit").add(new Option(String(d), String(d)));
$("api-key").value = sessionStorage.getItem("dlstack-api-key") || "";
$("generate").addEventListener("click", () => generate().catch((e) => show($("story"), e, true)));
$("sample").addEventListener("click", () => sample().catch((e) => show($("sample-stats"), e, true)));
$("classify").addEventListener("click", () => classify().catch((e) => show($("classify-result"), e, true)));
status();
