// The landmark editor: draggable points over the aligned face, named points added by a click, save.
// Plain JavaScript, no libraries; every request goes to this server only.
"use strict";

(function () {
  const root = document.getElementById("lm-editor");
  if (!root) return;
  const api = root.dataset.api;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const svg = document.getElementById("lm-svg");
  const face = document.getElementById("lm-face");
  const addSelect = document.getElementById("lm-add");
  const saveButton = document.getElementById("lm-save");
  const undoButton = document.getElementById("lm-undo");
  const pending = document.getElementById("lm-pending");
  const status = document.getElementById("lm-status");
  const scoresBox = document.getElementById("lm-scores");
  const NS = svg.namespaceURI; // the SVG namespace, taken from the page's own <svg>
  let state = null;
  let changes = {};
  let dragging = null;

  function nameOf(key) {
    for (const [name, index] of Object.entries(state.named)) if (String(index) === key) return name;
    return null;
  }

  function toImage(ev) {
    const box = svg.getBoundingClientRect();
    return [((ev.clientX - box.left) * state.size) / box.width, ((ev.clientY - box.top) * state.size) / box.height];
  }

  function circle(key, xy, kind) {
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", xy[0]);
    c.setAttribute("cy", xy[1]);
    c.setAttribute("r", kind === "plain" ? 2.5 : 4);
    c.setAttribute("fill", kind === "plain" ? "#30ff60" : "#40c0ff");
    c.setAttribute("class", kind + (changes[key] ? (state.points[key] ? " moved" : " added") : ""));
    c.dataset.point = key;
    const title = document.createElementNS(NS, "title");
    title.textContent = (nameOf(key) || (state.points[key] ? "point " + key : key)).replaceAll("_", " ");
    c.appendChild(title);
    c.addEventListener("pointerdown", (ev) => {
      ev.preventDefault();
      ev.stopPropagation();
      dragging = key;
      svg.setPointerCapture(ev.pointerId);
    });
    return c;
  }

  function draw() {
    svg.replaceChildren();
    const all = Object.assign({}, state.points, state.added, changes);
    for (const [key, xy] of Object.entries(all)) {
      const kind = state.points[key] === undefined ? "named added" : nameOf(key) ? "named" : "plain";
      svg.appendChild(circle(key, xy, kind));
      if (state.points[key] === undefined) {
        const label = document.createElementNS(NS, "text");
        label.setAttribute("x", xy[0] + 5);
        label.setAttribute("y", xy[1] - 5);
        label.textContent = key.replaceAll("_", " ");
        svg.appendChild(label);
      }
    }
    const n = Object.keys(changes).length;
    pending.textContent = n ? n + " point(s) changed, not saved yet" : "no change yet";
    saveButton.disabled = undoButton.disabled = n === 0;
  }

  function fmt(v) {
    return typeof v === "number" ? v.toFixed(3) : "";
  }

  function showScores() {
    scoresBox.replaceChildren();
    for (const sc of state.scores) {
      const section = document.createElement("section");
      const h = document.createElement("h2");
      h.textContent = sc.method + " score ";
      const value = document.createElement("span");
      value.className = "lm-score";
      value.id = "lm-score-" + sc.id;
      value.textContent = fmt(sc.score);
      h.appendChild(value);
      section.appendChild(h);
      const heat = document.createElement("img");
      heat.className = "lm-heat";
      heat.id = "lm-heat-" + sc.id;
      heat.src = sc.heatmap;
      heat.alt = "heat map";
      section.appendChild(heat);
      const table = document.createElement("table");
      for (const [name, v] of Object.entries(sc.measures)) {
        if (!name.endsWith("_icd") && name !== "landmarks_corrected_points" && name !== "nl_alar_height_ratio") continue;
        const row = table.insertRow();
        row.id = "m-" + sc.id + "-" + name;
        row.insertCell().textContent = name.replace(/^nl_/, "").replaceAll("_", " ");
        const cell = row.insertCell();
        cell.textContent = fmt(v);
        cell.className = "value";
        const pct = sc.measures[name.replace(/_icd$/, "_pct")];
        row.insertCell().textContent = name.endsWith("_icd") && pct !== undefined ? "p" + pct.toFixed(0) : "";
      }
      section.appendChild(table);
      scoresBox.appendChild(section);
    }
  }

  function load(newState) {
    state = newState;
    changes = {};
    face.src = state.image;
    draw();
    showScores();
    status.textContent = state.edits + " saved edit(s)";
  }

  svg.addEventListener("pointermove", (ev) => {
    if (dragging === null) return;
    changes[dragging] = toImage(ev).map((v) => Math.round(v * 100) / 100);
    draw();
  });
  svg.addEventListener("pointerup", () => {
    dragging = null;
  });
  svg.addEventListener("click", (ev) => {
    const name = addSelect.value;
    if (!name || dragging !== null || ev.target.tagName === "circle") return;
    changes[name] = toImage(ev).map((v) => Math.round(v * 100) / 100);
    addSelect.value = "";
    draw();
  });
  undoButton.addEventListener("click", () => {
    changes = {};
    draw();
  });
  saveButton.addEventListener("click", async () => {
    saveButton.disabled = true;
    status.textContent = "scoring again on the corrected points...";
    try {
      const resp = await fetch(api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
        body: JSON.stringify({ points: changes }),
      });
      const body = await resp.json();
      if (!resp.ok) throw new Error(typeof body.detail === "string" ? body.detail : "saving failed (" + resp.status + ")");
      load(body);
      const failed = (body.lines || []).filter((l) => l.status !== "updated");
      status.textContent = failed.length ? failed.map((l) => l.message).join("; ") : "saved; scored again";
    } catch (err) {
      status.textContent = String(err.message || err);
      saveButton.disabled = false;
    }
  });

  fetch(api, { credentials: "same-origin" })
    .then((r) => r.json())
    .then(load)
    .catch((err) => {
      status.textContent = String(err);
    });
})();
