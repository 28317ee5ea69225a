// Docket's UI script: the query form (JSON to the API's `q`, field errors from its `clause`),
// live refresh of the jobs table and the job page (polling the JSON API), copy buttons.
// Every URL is relative to the page's root (data-root), so the UI works under any prefix.
"use strict";

(function () {
  const root = document.body.dataset.root || "./";
  // URLs for fetch(): resolved against origin + path, never the page's address as typed, which
  // may carry user:password@ (fetch refuses URLs with credentials).
  const api = (rel) => new URL(root + rel, location.origin + location.pathname).href;

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  function list(v) {
    return v.split(/[\s,]+/).filter((x) => x.length > 0);
  }

  // ---- query form ----
  const form = document.getElementById("query");
  if (form) {
    const modeRel = document.getElementById("mode-relative");
    const showMode = () => {
      const rel = modeRel.checked;
      document.getElementById("field-after-ago").hidden = !rel;
      document.getElementById("field-after").hidden = rel;
      document.getElementById("field-before").hidden = rel;
    };
    for (const r of form.querySelectorAll("input[name=timemode]")) {
      r.addEventListener("change", showMode);
    }
    showMode();

    const clearErrors = () => {
      for (const e of form.querySelectorAll(".err")) e.textContent = "";
      for (const f of form.querySelectorAll(".field.bad")) f.classList.remove("bad");
    };
    const showError = (clause, message) => {
      const slot = document.getElementById("err-" + clause);
      if (slot) {
        slot.textContent = message;
        const f = document.getElementById("field-" + clause);
        if (f) f.classList.add("bad");
      } else {
        document.getElementById("err-form").textContent = message;
      }
    };

    // The form as the API's JSON; `complain(clause, message)` for what the browser can tell
    // is wrong before asking (null is returned then).
    const buildQuery = (complain) => {
      const v = (id) => document.getElementById(id).value.trim();
      const q = {};
      if (modeRel.checked) {
        if (v("f-after-ago")) q["after-ago"] = v("f-after-ago") + v("f-after-ago-unit");
      } else {
        // datetime-local has no zone: it is the browser's local time.
        for (const k of ["after", "before"]) {
          const t = v("f-" + k);
          if (t) {
            const d = new Date(t);
            if (isNaN(d.getTime())) { complain(k, "not a date and time"); return null; }
            q[k] = d.toISOString();
          }
        }
        if (!q.after) { complain("after", "give a start time"); return null; }
      }
      for (const k of ["host", "net", "port"]) {
        const items = list(v("f-" + k));
        if (items.length) q[k] = items;
      }
      for (const k of ["proto-name", "bpf", "limit-packets", "limit-bytes", "format"]) {
        if (v("f-" + k)) q[k] = v("f-" + k);
      }
      const sensors = [...form.querySelectorAll("input[name=sensor]:checked")].map((c) => c.value);
      if (sensors.length) q.sensor = sensors;
      if (document.getElementById("f-ignore-weight").checked) q["ignore-weight"] = true;
      return q;
    };

    // The estimate under the form, asked (debounced) whenever a field changes: what the
    // indexes say the answer will be, before anything is fetched.
    const estimateSlot = document.getElementById("estimate");
    const size = (n) => n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB"
      : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB"
      : n >= 1 << 10 ? (n / (1 << 10)).toFixed(1) + " KiB" : n + " bytes";
    let asked = 0;
    let timer = null;
    const estimate = async () => {
      const q = buildQuery(() => {});
      const mine = ++asked;
      if (!q) { estimateSlot.textContent = ""; return; }
      let r, body;
      try {
        r = await fetch(api("q/estimate"), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(q),
        });
        body = await r.json();
      } catch (e) { return; }
      if (mine !== asked) return; // a newer question is on its way
      if (!r.ok) { estimateSlot.textContent = body.error ? "Cannot estimate: " + body.error : ""; return; }
      const e = body.estimate;
      let t = "Estimate: about " + e.packets.toLocaleString() + " packets, " + size(e.bytes) +
        " (" + e.indexed_files + " indexed files";
      if (e.scanned_files) t += ", " + e.scanned_files + " counted whole";
      t += ")";
      if (e.not_estimated.length) t += "; not estimated: " + e.not_estimated.join(", ");
      if (body.over_limit) {
        t += " — over the limit of " + size(e.limit) +
          (q["ignore-weight"] ? "; fetched anyway" : ": narrow the query, or tick “fetch even if”");
      }
      estimateSlot.textContent = t;
      estimateSlot.classList.toggle("over", !!body.over_limit);
    };
    const soon = () => { clearTimeout(timer); timer = setTimeout(estimate, 300); };
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
    estimate();

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors();
      const q = buildQuery(showError);
      if (!q) return;
      let r;
      try {
        r = await fetch(api("q"), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(q),
        });
      } catch (e) {
        showError("form", "cannot reach Docket: " + e);
        return;
      }
      const body = await r.json().catch(() => ({}));
      if (r.ok && body.id) {
        location.href = root + "ui/job/" + body.id;
      } else {
        showError(body.clause || "form", body.error || ("HTTP " + r.status));
      }
    });
  }

  // ---- jobs table ----
  // One row, as the server renders it (ui.rs `job_row`): the state highlighted, a running
  // job's progress against its estimate, the query clamped (all of it on hover).
  function jobRow(j) {
    const empty = ["Completed", "Partial", "Failed", "Cancelled"].includes(j.state) && j.packets === 0;
    const est = j.estimate && j.estimate.bytes;
    const running = j.state === "Running" || j.state === "Queued";
    const progress = running && est > 0
      ? " <progress max=\"" + esc(est) + "\" value=\"" + esc(Math.min(j.bytes, est)) + "\"></progress>" : "";
    return "<tr class=\"state-" + esc(j.state) + (empty ? " empty" : "") + "\"><td>" + esc(j.time) +
      "</td><td><a href=\"" + root + "ui/job/" + esc(j.id) + "\">" + esc(j.id.slice(0, 8)) + "</a></td><td>" +
      esc(j.user) + "</td><td class=\"q\"><code title=\"" + esc(j.query) + "\">" + esc(j.query) +
      "</code></td><td class=\"state\">" + esc(j.state) + (empty ? " (no packets)" : "") + progress +
      "</td><td>" + esc(j.bytes) + "</td><td>" +
      (j.capture ? "<a class=\"button\" href=\"" + root + esc(j.id) + "/merged.pcap\">Get PCAP</a>" : "") +
      "</td></tr>";
  }
  const jobs = document.getElementById("jobs");
  if (jobs) {
    const tbody = jobs.querySelector("tbody");
    const refresh = async () => {
      try {
        const r = await fetch(api("ui/jobs.json"));
        if (!r.ok) return;
        const rows = await r.json();
        tbody.innerHTML = rows.map(jobRow).join("");
      } catch (e) { /* the next tick retries */ }
    };
    setInterval(refresh, 1000);
  }

  // ---- job page ----
  const job = document.getElementById("job");
  if (job) {
    const id = job.dataset.id;
    // Absolute command lines from this page's own address (whatever proxy is in front).
    const abs = api(job.dataset.pcap);
    const user = job.dataset.user ? "-u '" + job.dataset.user.replace(/'/g, "'\\''") + "' " : "";
    document.getElementById("curl").textContent = "curl -N " + user + "-o " + id + ".pcap '" + abs + "'";
    document.getElementById("wireshark").textContent = "curl -fsSN " + user + "'" + abs + "' | wireshark -k -i -";
    const finalStates = ["Completed", "Partial", "Failed", "Cancelled"];
    // The indexes' estimate of the answer (when there was one) sizes the progress bar and
    // gives an ETA.
    const estimate = job.dataset.estimate ? { bytes: Number(job.dataset.estimate) } : null;
    let last = null;
    const human = (n) => n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
    const progress = (s) => {
      const bar = document.getElementById("progress");
      const now = Date.now();
      let rate = null;
      if (last && now > last.t) rate = (s.bytes - last.bytes) * 1000 / (now - last.t);
      last = { t: now, bytes: s.bytes };
      const running = !finalStates.includes(s.state);
      document.getElementById("rate").textContent = running && rate !== null ? human(Math.max(0, Math.round(rate))) + "/s" : "";
      const est = estimate && estimate.bytes;
      if (running && est > 0) {
        bar.hidden = false;
        bar.max = est;
        bar.value = Math.min(s.bytes, est);
        document.getElementById("eta").textContent = rate > 0 && est > s.bytes
          ? "about " + Math.ceil((est - s.bytes) / rate) + " s left (estimate " + human(est) + ")" : "";
      } else {
        bar.hidden = true;
        document.getElementById("eta").textContent = "";
      }
    };
    const tick = async () => {
      let s;
      try {
        const r = await fetch(api("status/" + id));
        if (!r.ok) return setTimeout(tick, 1000);
        s = (await r.json())[id];
      } catch (e) {
        return setTimeout(tick, 1000);
      }
      if (!s) return;
      document.getElementById("state").textContent = s.state;
      document.getElementById("packets").textContent = s.packets;
      document.getElementById("bytes").textContent = s.bytes;
      progress(s);
      document.querySelector("#upstreams tbody").innerHTML = s.upstreams.map((u) =>
        "<tr><td>" + esc(u.name) + "</td><td>" + esc(u.state) + "</td><td>" + esc(u.packets) +
        "</td><td>" + esc(u.bytes) + "</td><td>" + esc(u.error) + "</td></tr>").join("");
      document.querySelector("#events tbody").innerHTML = s.events.map((e) =>
        "<tr><td>" + esc(e.datetime) + "</td><td>" + esc(e.name) + "</td><td>" + esc(e.msg) +
        "</td><td>" + esc(e.state) + "</td></tr>").join("");
      if (!finalStates.includes(s.state)) setTimeout(tick, 1000);
    };
    tick();
  }

  // ---- copy buttons ----
  for (const b of document.querySelectorAll(".copy-button")) {
    b.addEventListener("click", () => {
      const t = document.getElementById(b.dataset.target).textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(t);
    });
  }
})();
