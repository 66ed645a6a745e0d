// dunet label: one frame at a time on a canvas; every change is sent at once and saved by the server.
// A point's value: [x, y] (pixel centres at integers, as DeepLabCut's), "hidden" (not visible) or null (not yet).
"use strict";

const token = document.querySelector('meta[name="dunet-token"]').content;
const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
const S = {
  points: [], skeleton: [], frames: [], frame: 0, current: 0, undo: [], model: false,
  image: null, suggestions: {}, view: { scale: 1, x: 0, y: 0 }, drag: null, pending: 0, error: null,
};
let queue = Promise.resolve();  // saves go out one after another, in the order they were made

async function api(path, body) {
  const response = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: { "X-Dunet-Token": token, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

const frame = () => S.frames[S.frame];
const colour = (i) => `hsl(${(i * 360) / S.points.length}, 85%, 58%)`;

function save(name, value, undoable = true) {
  const f = frame();
  if (undoable) S.undo.push({ frame: S.frame, name, before: f.points[name] });
  f.points[name] = value;
  S.pending += 1;
  showStatus();
  queue = queue
    .then(() => api("/api/label", { frame: f.key, points: { [name]: value } }))
    .then(() => { S.error = null; })
    .catch((err) => { S.error = err.message; })
    .finally(() => { S.pending -= 1; showStatus(); });
  nextUndecided();
  draw();
}

function nextUndecided() {
  // After a point is placed, the next point not yet placed (or marked) becomes current.
  const f = frame();
  const names = S.points;
  for (let step = 1; step <= names.length; step++) {
    const j = (S.current + step) % names.length;
    if (f.points[names[j]] === null) { S.current = j; return; }
  }
}

function showStatus() {
  const status = document.getElementById("status");
  if (S.error) { status.dataset.state = "error"; status.textContent = `NOT SAVED: ${S.error}`; }
  else if (S.pending) { status.dataset.state = "saving"; status.textContent = "saving…"; }
  else { status.dataset.state = "saved"; status.textContent = "saved"; }
}

function showProgress() {
  let pointsLeft = 0, framesLeft = 0;
  for (const f of S.frames) {
    const left = S.points.filter((n) => f.points[n] === null).length;
    pointsLeft += left;
    if (left) framesLeft += 1;
  }
  document.getElementById("progress").textContent =
    `frame ${S.frame + 1} / ${S.frames.length} · left: ${framesLeft} frames, ${pointsLeft} points`;
  document.getElementById("frame-name").textContent = frame().key;
  const list = document.getElementById("points");
  list.replaceChildren(...S.points.map((name, j) => {
    const value = frame().points[name];
    const item = document.createElement("li");
    item.className = (j === S.current ? "current " : "") + (Array.isArray(value) ? "placed" : "");
    item.dataset.point = name;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = colour(j);
    const label = document.createElement("span");
    label.textContent = `${j + 1}. ${name}`;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = Array.isArray(value) ? "✓" : value === "hidden" ? "not visible"
      : S.suggestions[name] ? "model" : "";
    item.append(dot, label, state);
    item.onclick = () => { S.current = j; draw(); };
    return item;
  }));
  document.getElementById("accept").hidden = !S.points.some((n) => frame().points[n] === null && S.suggestions[n]);
}

// --- drawing and coordinates ------------------------------------------------------------------------

function fit() {
  if (!S.image) return;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  const scale = Math.min(w / S.image.naturalWidth, h / S.image.naturalHeight);
  S.view = { scale, x: (w - scale * S.image.naturalWidth) / 2, y: (h - scale * S.image.naturalHeight) / 2 };
}

// Image pixel i covers [i - 0.5, i + 0.5] in label coordinates, as in DeepLabCut.
const toScreen = ([x, y]) => [S.view.x + (x + 0.5) * S.view.scale, S.view.y + (y + 0.5) * S.view.scale];
const toImage = (sx, sy) => [(sx - S.view.x) / S.view.scale - 0.5, (sy - S.view.y) / S.view.scale - 0.5];

function shown(name) {
  // Where a point is drawn: its label, else the model's suggestion (drawn hollow), else nowhere.
  const value = frame().points[name];
  if (S.drag && S.drag.name === name) return { xy: S.drag.xy, suggested: false };
  if (Array.isArray(value)) return { xy: value, suggested: false };
  if (value === null && S.suggestions[name]) return { xy: S.suggestions[name], suggested: true };
  return null;
}

function draw() {
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(canvas.clientWidth * dpr) || canvas.height !== Math.round(canvas.clientHeight * dpr)) {
    canvas.width = Math.round(canvas.clientWidth * dpr);
    canvas.height = Math.round(canvas.clientHeight * dpr);
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!S.image) return;
  ctx.setTransform(dpr * S.view.scale, 0, 0, dpr * S.view.scale, dpr * S.view.x, dpr * S.view.y);
  ctx.imageSmoothingEnabled = S.view.scale < 2;
  ctx.drawImage(S.image, 0, 0);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.lineWidth = 2;
  ctx.strokeStyle = "rgba(255, 255, 255, 0.6)";
  for (const [a, b] of S.skeleton) {
    const pa = shown(a), pb = shown(b);
    if (!pa || !pb) continue;
    ctx.beginPath();
    ctx.moveTo(...toScreen(pa.xy));
    ctx.lineTo(...toScreen(pb.xy));
    ctx.stroke();
  }
  S.points.forEach((name, j) => {
    const p = shown(name);
    if (!p) return;
    const [sx, sy] = toScreen(p.xy);
    ctx.beginPath();
    ctx.arc(sx, sy, 6, 0, 2 * Math.PI);
    ctx.setLineDash(p.suggested ? [3, 3] : []);
    if (!p.suggested) { ctx.fillStyle = colour(j); ctx.fill(); }
    ctx.strokeStyle = p.suggested ? colour(j) : "black";
    ctx.stroke();
    ctx.setLineDash([]);
    if (j === S.current) {
      ctx.beginPath();
      ctx.arc(sx, sy, 10, 0, 2 * Math.PI);
      ctx.strokeStyle = "white";
      ctx.stroke();
    }
  });
  showProgress();
}

// --- frames -------------------------------------------------------------------------------------------

async function show(index) {
  S.frame = (index + S.frames.length) % S.frames.length;
  S.suggestions = {};
  const first = S.points.findIndex((n) => frame().points[n] === null);
  S.current = first >= 0 ? first : 0;
  const image = new Image();
  image.src = "/image/" + frame().key.split("/").map(encodeURIComponent).join("/");
  try {
    await image.decode();
  } catch {
    S.error = `cannot show ${frame().key}`;
    showStatus();
    return;
  }
  const sameSize = S.image && S.image.naturalWidth === image.naturalWidth && S.image.naturalHeight === image.naturalHeight;
  S.image = image;
  if (!sameSize) fit();  // keep the zoom while stepping through frames of one video
  draw();
  if (S.model) {
    const key = frame().key;
    const suggestions = await api("/api/suggest?frame=" + encodeURIComponent(key));
    if (frame().key === key) { S.suggestions = suggestions; draw(); }
  }
}

function nextUnfinished() {
  for (let step = 1; step <= S.frames.length; step++) {
    const i = (S.frame + step) % S.frames.length;
    if (S.points.some((n) => S.frames[i].points[n] === null)) return show(i);
  }
}

function acceptSuggestions() {
  for (const name of S.points) {
    if (frame().points[name] === null && S.suggestions[name]) save(name, S.suggestions[name]);
  }
}

async function undo() {
  const last = S.undo.pop();
  if (!last) return;
  if (last.frame !== S.frame) await show(last.frame);
  S.current = S.points.indexOf(last.name);
  save(last.name, last.before, false);
  S.current = S.points.indexOf(last.name);
  draw();
}

// --- mouse and keys -----------------------------------------------------------------------------------

function pointAt(sx, sy) {
  let best = null, bestDistance = 10;  // screen pixels
  for (const name of S.points) {
    const p = shown(name);
    if (!p) continue;
    const [px, py] = toScreen(p.xy);
    const distance = Math.hypot(px - sx, py - sy);
    if (distance < bestDistance) { best = name; bestDistance = distance; }
  }
  return best;
}

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("mousedown", (e) => {
  canvas.focus();
  const sx = e.offsetX, sy = e.offsetY;
  if (e.shiftKey || e.button !== 0) { S.drag = { pan: true, sx, sy, view: { ...S.view } }; return; }
  const name = pointAt(sx, sy);
  if (name) {
    S.current = S.points.indexOf(name);
    S.drag = { name, xy: shown(name).xy, moved: false };
  } else {
    save(S.points[S.current], toImage(sx, sy).map((v) => Math.round(v * 100) / 100));
  }
  draw();
});
canvas.addEventListener("mousemove", (e) => {
  if (!S.drag) return;
  if (S.drag.pan) {
    S.view.x = S.drag.view.x + e.offsetX - S.drag.sx;
    S.view.y = S.drag.view.y + e.offsetY - S.drag.sy;
  } else {
    S.drag.xy = toImage(e.offsetX, e.offsetY);
    S.drag.moved = true;
  }
  draw();
});
window.addEventListener("mouseup", () => {
  const drag = S.drag;
  S.drag = null;
  if (!drag || drag.pan) return;
  const value = frame().points[drag.name];
  // A drag moves the point; a click on the model's suggestion keeps it where it is.
  if (drag.moved || !Array.isArray(value)) {
    const current = S.current;
    save(drag.name, drag.xy.map((v) => Math.round(v * 100) / 100));
    if (Array.isArray(value)) S.current = current;
  }
  draw();
});
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const factor = Math.pow(1.2, -e.deltaY / 100);
  const [ix, iy] = toImage(e.offsetX, e.offsetY);
  S.view.scale = Math.min(40, Math.max(0.05, S.view.scale * factor));
  S.view.x = e.offsetX - (ix + 0.5) * S.view.scale;  // the pixel under the cursor stays under it
  S.view.y = e.offsetY - (iy + 0.5) * S.view.scale;
  draw();
}, { passive: false });

function hideCurrent() { save(S.points[S.current], "hidden"); }

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") return;
  const key = e.key;
  const n = S.points.length;
  if (key === "ArrowRight" || key === "d") show(S.frame + 1);
  else if (key === "ArrowLeft" || key === "a") show(S.frame - 1);
  else if (key === "n") nextUnfinished();
  else if (key === "ArrowDown" || key === "s") S.current = (S.current + 1) % n;
  else if (key === "ArrowUp" || key === "w") S.current = (S.current + n - 1) % n;
  else if (/^[1-9]$/.test(key) && Number(key) <= n) S.current = Number(key) - 1;
  else if (key === "h") hideCurrent();
  else if (key === "Delete" || key === "Backspace") {
    const current = S.current;
    save(S.points[current], null);
    S.current = current;  // cleared to be placed again: it stays current
  }
  else if (key === "z" || (key === "Z" && e.ctrlKey)) undo();
  else if (key === "Enter") acceptSuggestions();
  else if (key === "0" || key === "f") fit();
  else return;
  e.preventDefault();
  draw();
});
window.addEventListener("resize", () => { fit(); draw(); });
window.addEventListener("beforeunload", (e) => { if (S.pending) e.preventDefault(); });
document.getElementById("prev").onclick = () => show(S.frame - 1);
document.getElementById("next").onclick = () => show(S.frame + 1);
document.getElementById("hide").onclick = hideCurrent;
document.getElementById("undo").onclick = undo;
document.getElementById("accept").onclick = acceptSuggestions;

async function start() {
  const state = await api("/api/state");
  Object.assign(S, { points: state.points, skeleton: state.skeleton, frames: state.frames, model: state.model });
  if (state.missing.length) {
    const note = document.getElementById("missing");
    note.hidden = false;
    note.textContent = `${state.missing.length} labelled frames have no image; their labels are kept: ` +
      state.missing.slice(0, 5).join(", ") + (state.missing.length > 5 ? " …" : "");
  }
  const first = S.frames.findIndex((f) => S.points.some((n) => f.points[n] === null));
  await show(Math.max(first, 0));
  document.body.dataset.ready = "yes";
}

// For tests and the curious: the page's state, and whether every change has been saved.
window.labeller = { state: S, saved: () => S.pending === 0 && !S.error };
start().catch((err) => { S.error = err.message; showStatus(); });
