// singleshot's page: images, clipboard or webcam -> POST detect (the server's own endpoint, with
// the per-call options conf, iou, max_det, classes, agnostic) -> boxes on a canvas and a table. Every URL
// is relative, so the page works under a reverse proxy's path prefix; the API key lives in this
// tab's session storage and goes only in the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "singleshot-api-key";
const state = { model: null, images: [], current: -1, hot: -1, camera: null,
                stats: { inFlight: 0, maxInFlight: 0, frames: 0, answered: 0 } };
window.singleshotStats = state.stats;  // read by the browser tests

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function showError(text) {
  const el = $("error");
  el.textContent = text || "";
  el.hidden = !text;
}

async function call(path, init) {
  const res = await fetch(path, Object.assign({}, init, { headers: headers((init || {}).headers) }));
  if (res.ok) return res.json();
  let message = res.statusText;
  try { message = (await res.json()).error || message; } catch (e) { /* not JSON */ }
  const retry = res.headers.get("Retry-After");
  throw new Error(`${res.status}: ${message}` + (retry ? ` (retry after ${retry} s)` : ""));
}

// ---- the model and its classes --------------------------------------------------------------

async function loadModels() {
  try {
    const index = await call("v2/repository/index", { method: "POST", body: "{}" });
    const ready = index.filter((m) => m.state === "READY");
    const names = [...new Set(ready.map((m) => m.name))];
    const select = $("model");
    select.innerHTML = "";
    for (const n of names) select.append(new Option(n, n));
    if (!names.length) throw new Error("the server has no model ready");
    await chooseModel(names[0]);
    showError("");
  } catch (err) {
    $("model-info").textContent = "not connected";
    showError(err.message);
  }
}

async function chooseModel(name) {
  const meta = await call("v2/models/" + encodeURIComponent(name));
  state.model = meta;
  const p = meta.parameters || {};
  const size = p.input_size ? p.input_size.join("x") : "?";
  $("model-info").textContent =
    `${meta.name} v${meta.versions.slice(-1)[0]}: input ${size}, ${p.backend || "?"} ${p.precision || ""}`;
  const box = $("classes");
  box.innerHTML = "";
  (p.class_names || []).forEach((c, i) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = c;
    input.id = "class-" + i;
    input.addEventListener("change", rerun);
    label.append(input, " " + c);
    box.append(label);
  });
}

function options() {
  const picked = [...document.querySelectorAll("#classes input:checked")].map((i) => i.value);
  const q = new URLSearchParams({ conf: $("conf").value, iou: $("iou").value,
                                  max_det: $("max-det").value });
  if (state.model) q.set("model", state.model.name);
  if (picked.length) q.set("classes", picked.join(","));
  if ($("agnostic").checked) q.set("agnostic", "true");
  return q.toString();
}

async function detect(blob) {
  state.stats.inFlight += 1;
  state.stats.maxInFlight = Math.max(state.stats.maxInFlight, state.stats.inFlight);
  try {
    return await call("detect?" + options(), {
      method: "POST", body: blob,
      headers: { "Content-Type": blob.type || "application/octet-stream" } });
  } finally {
    state.stats.inFlight -= 1;
  }
}

// ---- images ---------------------------------------------------------------------------------

function addImages(files) {
  const start = state.images.length;
  for (const f of files) {
    state.images.push({ name: f.name || "pasted image", blob: f, url: URL.createObjectURL(f),
                        result: null, bitmap: null });
  }
  if (state.images.length > start) {
    stopCamera();
    drawStrip();
    show(start);
  }
}

function drawStrip() {
  const strip = $("strip");
  strip.innerHTML = "";
  state.images.forEach((im, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "listitem");
    b.setAttribute("aria-label", `image ${i + 1}: ${im.name}`);
    b.setAttribute("aria-current", String(i === state.current));
    const img = document.createElement("img");
    img.src = im.url;
    img.alt = "";
    b.append(img);
    b.addEventListener("click", () => show(i));
    strip.append(b);
  });
}

async function show(i) {
  state.current = i;
  drawStrip();
  await runCurrent();
}

async function runCurrent() {
  const im = state.images[state.current];
  if (!im) return;
  $("status").textContent = `detecting ${im.name}…`;
  const t0 = performance.now();
  try {
    if (!im.bitmap) im.bitmap = await loadBitmap(im.url);
  } catch (err) {
    im.bitmap = null;  // not an image the browser can show; the server says what it is
  }
  try {
    const doc = await detect(im.blob);
    im.result = doc;
    showError("");
    const n = doc.images[0].detections.length;
    $("status").textContent = `${im.name}: ${n} detection${n === 1 ? "" : "s"} in ${Math.round(performance.now() - t0)} ms`;
  } catch (err) {
    im.result = null;
    showError(err.message);
    $("status").textContent = " ";
  }
  draw(im.bitmap, im.result);
  fillTable(im.result);
}

function loadBitmap(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file"));
    img.src = url;
  });
}

// ---- drawing, the table, downloads ------------------------------------------------------------

const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
                "#9a6324", "#469990", "#800000"];

function draw(source, doc) {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  if (!source) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    setDownloads(false);
    return;
  }
  const w = source.videoWidth || source.naturalWidth || source.width;
  const h = source.videoHeight || source.naturalHeight || source.height;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx.drawImage(source, 0, 0, w, h);
  const dets = doc ? doc.images[0].detections : [];
  const line = Math.max(2, Math.round(Math.max(w, h) / 400));  // legible on large images
  ctx.font = `${Math.max(12, line * 7)}px system-ui, sans-serif`;
  dets.forEach((d, i) => {
    const [x1, y1, x2, y2] = d.box;
    const color = COLORS[d.category_id % COLORS.length];
    ctx.lineWidth = i === state.hot ? line * 2.5 : line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.category} ${d.score.toFixed(2)}`;
    const tw = ctx.measureText(text).width + line * 2;
    const th = line * 9;
    const lx = Math.max(0, Math.min(x1, w - tw));  // the label stays inside the image
    const ly = y1 - th >= 0 ? y1 - th : Math.min(y1, h - th);
    ctx.fillStyle = color;
    ctx.fillRect(lx, ly, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, lx + line, ly + th - line * 2);
  });
  setDownloads(Boolean(doc));
}

function fillTable(doc) {
  const body = $("table").tBodies[0];
  body.innerHTML = "";
  const dets = doc ? doc.images[0].detections : [];
  dets.forEach((d, i) => {
    const tr = body.insertRow();
    tr.dataset.index = i;
    for (const v of [i + 1, d.category, d.score.toFixed(5), d.box.map((x) => x.toFixed(2)).join(", ")]) {
      tr.insertCell().textContent = v;
    }
    tr.addEventListener("mouseenter", () => highlight(i));
    tr.addEventListener("mouseleave", () => highlight(-1));
  });
}

function highlight(i) {
  state.hot = i;
  for (const tr of $("table").tBodies[0].rows) tr.classList.toggle("hot", Number(tr.dataset.index) === i);
  const im = state.images[state.current];
  if (im && !state.camera) draw(im.bitmap, im.result);
}

function currentDoc() {
  const im = state.images[state.current];
  return im ? im.result : null;
}

function setDownloads(on) {
  for (const id of ["save-png", "save-json", "save-csv"]) $(id).disabled = !on;
}

function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function stem() {
  const im = state.images[state.current];
  return im ? im.name.replace(/\.[^.]+$/, "") : "frame";
}

// ---- webcam: one request in flight at most, frames at the pace the server answers -----------

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    state.camera = stream;
    $("camera").textContent = "Stop webcam";
    $("camera").setAttribute("aria-pressed", "true");
    showError("");
    cameraLoop(video);
  } catch (err) {
    showError("webcam: " + err.message);
  }
}

function stopCamera() {
  if (!state.camera) return;
  state.camera.getTracks().forEach((t) => t.stop());
  state.camera = null;
  $("camera").textContent = "Start webcam";
  $("camera").setAttribute("aria-pressed", "false");
}

async function cameraLoop(video) {
  const grab = document.createElement("canvas");
  let last = performance.now();
  while (state.camera) {
    grab.width = video.videoWidth || 640;
    grab.height = video.videoHeight || 480;
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    const blob = await new Promise((r) => grab.toBlob(r, "image/jpeg", 0.85));
    state.stats.frames += 1;
    const t0 = performance.now();
    let doc = null;
    try {
      doc = await detect(blob);  // awaited: the next frame waits for this answer
      state.stats.answered += 1;
      showError("");
    } catch (err) {
      showError(err.message);
      await new Promise((r) => setTimeout(r, 1000));
    }
    if (!state.camera) break;
    const now = performance.now();
    draw(grab, doc);
    fillTable(doc);
    $("status").textContent = `webcam: ${(1000 / (now - last)).toFixed(1)} frames/s, ${Math.round(now - t0)} ms a frame`;
    last = now;
  }
}

// ---- wiring ---------------------------------------------------------------------------------

let timer = null;
function rerun() {  // debounced: a slider's drag sends one request when it rests
  $("conf-value").textContent = Number($("conf").value).toFixed(2);
  $("iou-value").textContent = Number($("iou").value).toFixed(2);
  clearTimeout(timer);
  timer = setTimeout(() => { if (!state.camera) runCurrent(); }, 250);
}

function init() {
  $("api-key").value = sessionStorage.getItem(KEY) || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY, $("api-key").value);
    loadModels().then(runCurrent);
  });
  $("files").addEventListener("change", (e) => addImages(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addImages(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
  document.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData || {}).items || []].filter((i) => i.kind === "file")
      .map((i) => i.getAsFile());
    if (files.length) addImages(files);
  });
  for (const id of ["conf", "iou", "max-det"]) $(id).addEventListener("input", rerun);
  $("agnostic").addEventListener("change", rerun);
  $("class-search").addEventListener("input", () => {
    const q = $("class-search").value.toLowerCase();
    for (const label of $("classes").children) label.hidden = !label.textContent.toLowerCase().includes(q);
  });
  $("model").addEventListener("change", () => chooseModel($("model").value).then(runCurrent));
  $("camera").addEventListener("click", () => (state.camera ? stopCamera() : startCamera()));
  $("canvas").addEventListener("mousemove", (e) => {
    const doc = currentDoc();
    if (!doc || state.camera) return;
    const r = e.target.getBoundingClientRect();
    const c = e.target;
    const scale = Math.min(r.width / c.width, r.height / c.height);
    const x = (e.clientX - r.left - (r.width - c.width * scale) / 2) / scale;
    const y = (e.clientY - r.top - (r.height - c.height * scale) / 2) / scale;
    const i = doc.images[0].detections.findIndex(
      (d) => x >= d.box[0] && x <= d.box[2] && y >= d.box[1] && y <= d.box[3]);
    if (i !== state.hot) highlight(i);
  });
  $("save-png").addEventListener("click", () => $("canvas").toBlob((b) => download(stem() + ".png", b)));
  $("save-json").addEventListener("click", () => download(stem() + ".json",
    new Blob([JSON.stringify(currentDoc(), null, 2)], { type: "application/json" })));
  $("save-csv").addEventListener("click", () => {
    const doc = currentDoc();
    const rows = [["category", "score", "x1", "y1", "x2", "y2"]].concat(
      doc.images[0].detections.map((d) => [d.category, d.score, ...d.box]));
    download(stem() + ".csv", new Blob([rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n"],
      { type: "text/csv" }));
  });
  loadModels();
}

// RFC 4180 quoting, and a text that a spreadsheet would take as a formula (= + - @ tab CR
// first) made inert with a leading apostrophe (OWASP's CSV injection advice); numbers as they are
function csvCell(v) {
  if (typeof v === "number") return String(v);
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) || s !== String(v) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

init();
