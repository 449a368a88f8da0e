// cleftscore pages: forms that call the JSON API, uploads, live job progress, the heat-map viewer.
// Plain JavaScript, no libraries; every request goes to this server only.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

function flash(message) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.hidden = !message;
}

function detailText(body, status) {
  if (!body || body.detail === undefined) return "request failed (" + status + ")";
  if (typeof body.detail === "string") return body.detail;
  return body.detail.map((d) => (typeof d === "string" ? d : (d.loc || []).slice(1).join(".") + ": " + d.msg)).join("\n");
}

async function call(url, options) {
  const opts = Object.assign({ method: "POST", credentials: "same-origin" }, options || {});
  opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
  const resp = await fetch(url, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new Error(detailText(body, resp.status));
  return body;
}

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(values[k]));
}

for (const form of document.querySelectorAll("form.api-form")) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = {};
    for (const el of form.elements) {
      if (!el.name || el.value === "") continue;
      data[el.name] = el.type === "number" ? Number(el.value) : el.value;
    }
    try {
      const out = await call(form.dataset.url, { headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
      window.location.href = fill(form.dataset.next, out);
    } catch (e) { flash(e.message); }
  });
}

// ---- upload: drag and drop or the file picker
const uploadForm = document.getElementById("upload-form");
if (uploadForm) {
  let chosen = [];
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const shown = document.getElementById("chosen");
  const show = () => { shown.textContent = chosen.length ? chosen.map((f) => f.name).join(", ") : "no photo chosen"; };
  input.addEventListener("change", () => { chosen = Array.from(input.files); show(); });
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    chosen = chosen.concat(Array.from(ev.dataTransfer.files));
    show();
  });
  uploadForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!chosen.length) { flash("choose or drop at least one photo"); return; }
    const fd = new FormData();
    for (const f of chosen) fd.append("files", f, f.name);
    fd.append("method", document.getElementById("method").value);
    fd.append("roi", document.getElementById("roi").value);
    document.getElementById("upload-button").disabled = true;
    try {
      await call(uploadForm.dataset.url, { body: fd });
      window.location.reload();
    } catch (e) {
      flash(e.message);
      document.getElementById("upload-button").disabled = false;
    }
  });
}

// ---- jobs: live progress over Server-Sent Events, cancel, re-run
function showJob(box, job) {
  const status = box.querySelector(".job-status");
  const steps = job.steps && job.steps.total ? " (GAN step " + job.steps.done + " of " + job.steps.total + ")" : "";
  status.textContent = job.status + steps;
  status.className = "job-status status-" + job.status;
  box.querySelector(".job-message").textContent = job.message;
  job.photos.forEach((p, i) => {
    const li = box.querySelector('li[data-pos="' + i + '"]');
    if (!li) return;
    const st = li.querySelector(".status");
    st.textContent = p.status + (p.score !== null ? " score = " + p.score.toFixed(3) : "");
    st.className = "status status-" + p.status;
  });
  box.querySelector(".cancel").hidden = job.finished;
  box.querySelector(".rerun").hidden = !job.rerunnable;
}

for (const box of document.querySelectorAll(".job")) {
  for (const b of box.querySelectorAll("button.cancel, button.rerun")) {
    b.addEventListener("click", async () => {
      try { await call(b.dataset.url); window.location.reload(); } catch (e) { flash(e.message); }
    });
  }
  if (box.dataset.finished === "yes") continue;
  const source = new EventSource("/api/jobs/" + box.dataset.job + "/events");
  source.addEventListener("job", (ev) => {
    const job = JSON.parse(ev.data);
    showJob(box, job);
    if (job.finished) { source.close(); window.location.reload(); }
  });
}

// ---- the panel viewer: aligned or normalized under the heat map, opacity from the slider
for (const fig of document.querySelectorAll("figure.viewer")) {
  const base = fig.querySelector("img.base");
  const overlay = fig.querySelector("img.overlay");
  const slider = fig.querySelector("input.opacity");
  const out = fig.querySelector("output");
  const apply = () => { overlay.style.opacity = String(slider.value / 100); out.textContent = slider.value + " %"; };
  slider.addEventListener("input", apply);
  apply();
  for (const r of fig.querySelectorAll('input[type="radio"]')) {
    r.addEventListener("change", () => { base.src = base.dataset[r.value]; });
  }
}
