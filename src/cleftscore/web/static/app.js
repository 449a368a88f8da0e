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
// Percent and time left from the photos finished so far (timed from when this page first saw the job).
const FINISHED = ["scored", "done", "already", "failed", "cancelled", "interrupted"];
function progressText(box, job) {
  const total = job.photos.length;
  const done = job.photos.filter((p) => FINISHED.includes(p.status)).length;
  if (!total || job.finished) return "";
  if (!box.dataset.seen) box.dataset.seen = String(Date.now());
  if (!box.dataset.start && done > 0) box.dataset.start = box.dataset.seen;
  let text = " · " + Math.round((100 * done) / total) + " %";
  const start = Number(box.dataset.start || 0);
  const startDone = Number(box.dataset.startDone || 0);
  if (!box.dataset.startDone) box.dataset.startDone = String(done);
  if (start && done > startDone) {
    const perPhoto = (Date.now() - start) / (done - startDone);
    const left = Math.round((perPhoto * (total - done)) / 1000);
    text += ", about " + (left >= 90 ? Math.round(left / 60) + " min" : left + " s") + " left";
  }
  return text;
}

function showJob(box, job) {
  const status = box.querySelector(".job-status");
  const steps = job.steps && job.steps.total ? " (GAN step " + job.steps.done + " of " + job.steps.total + ")" : "";
  status.textContent = job.status + steps + progressText(box, job);
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
  let shownScored = null;
  source.addEventListener("job", (ev) => {
    const job = JSON.parse(ev.data);
    showJob(box, job);
    if (job.finished) { source.close(); window.location.reload(); return; }
    // A photo that has just been scored is shown at once: the page is reloaded to draw its viewer.
    const scored = job.photos.filter((p) => p.status === "scored" || p.status === "done").length;
    if (shownScored === null) shownScored = scored;
    else if (scored > shownScored) { source.close(); window.location.reload(); }
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

// ---- quick look: one photo scored and shown, nothing stored
const quickForm = document.getElementById("quicklook-form");
if (quickForm) {
  let chosen = null;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const shown = document.getElementById("chosen");
  const status = document.getElementById("quicklook-status");
  const button = document.getElementById("quicklook-button");
  const show = () => { shown.textContent = chosen ? chosen.name : "no photo chosen"; };
  input.addEventListener("change", () => { chosen = input.files[0] || null; show(); });
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    chosen = ev.dataTransfer.files[0] || null;
    show();
  });
  quickForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!chosen) { flash("choose or drop one photo"); return; }
    const fd = new FormData();
    fd.append("file", chosen, chosen.name);
    button.disabled = true;
    status.textContent = "scoring… (a few seconds)";
    flash("");
    try {
      const r = await call(quickForm.dataset.url, { body: fd });
      const box = document.getElementById("quicklook-result");
      if (!r.ok) { flash(r.message); box.hidden = true; return; }
      const reading = document.getElementById("ql-reading");
      reading.textContent = r.reading ? r.reading.charAt(0).toUpperCase() + r.reading.slice(1) : "score " + r.score.toFixed(3);
      reading.className = "reading reading-" + (r.reading ? r.reading.split(" ")[0] : "none");
      document.getElementById("ql-detail").textContent = r.reading
        ? "Less normal than " + Math.round(r.percentile) + " % of " + r.n + " normal faces (" + r.reference + "); z = " +
          (r.z >= 0 ? "+" : "") + r.z.toFixed(1) + "; score = " + r.score.toFixed(3)
        : "score = " + r.score.toFixed(3);
      document.getElementById("ql-panel").src = r.panel;
      document.getElementById("ql-notes").textContent = r.notes.length ? "Notes: " + r.notes.join("; ") : "";
      const q = document.getElementById("ql-quality");
      q.textContent = "";
      for (const line of r.quality) { const li = document.createElement("li"); li.textContent = line; q.appendChild(li); }
      document.getElementById("ql-explanation").textContent = r.explanation;
      box.hidden = false;
    } catch (e) {
      flash(e.message);
    } finally {
      button.disabled = false;
      status.textContent = "";
    }
  });
}
