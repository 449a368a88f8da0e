// Survey pages: inviting raters shows each new link once; a rater may answer with the number keys.
// Plain JavaScript; requests go to this server only.
"use strict";

(function () {
  const rating = document.getElementById("rating-form");
  if (rating) {
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || !/^[0-9]$/.test(ev.key)) return;
      const button = rating.querySelector('button[value="' + ev.key + '"]');
      if (button) { ev.preventDefault(); button.click(); }
    });
  }
  const closer = document.getElementById("close-survey");
  if (closer) {
    closer.addEventListener("click", async () => {
      if (!window.confirm("Close the survey? Raters will no longer be able to rate or submit.")) return;
      const csrf = document.querySelector('meta[name="csrf-token"]').content;
      const resp = await fetch(closer.dataset.url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
      if (resp.ok) window.location.reload();
    });
  }
  const form = document.getElementById("invite-form");
  if (!form) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { codes: form.elements.codes.value, base_url: form.elements.base_url.value };
    const resp = await fetch(form.dataset.url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
    });
    let out = null;
    try { out = await resp.json(); } catch (e) { out = null; }
    const flash = document.getElementById("flash");
    if (!resp.ok) {
      flash.textContent = out && typeof out.detail === "string" ? out.detail : "request failed (" + resp.status + ")";
      flash.hidden = false;
      return;
    }
    flash.hidden = true;
    const list = document.getElementById("invite-links");
    for (const r of out.raters) {
      const li = document.createElement("li");
      li.textContent = r.code + ": " + r.link;
      list.appendChild(li);
    }
    document.getElementById("invite-result").hidden = false;
    form.elements.codes.value = "";
  });
})();
