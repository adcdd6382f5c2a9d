// pixseek web page: the collections view (GET/POST/DELETE /collections), apart from the search in
// app.js. A table of the collections (model, state with build progress, size, OCR, the active one),
// activate and delete per collection, and a form that builds one beside the active one, which keeps
// answering meanwhile. Untrusted strings (names, model paths, API messages) only ever reach the page
// through textContent.
"use strict";

(() => {
  // Elements are built with app.js's h() (loaded first): properties, attributes, events, text.
  const POLL_MS = 1000;  // GET /collections while a build runs
  const KEY_STORAGE = "pixseek-api-key";  // this tab's API key, for servers that need one for changes
  const view = { open: false, timer: null, loading: false, again: false, running: new Set() };
  const byId = (id) => document.getElementById(id);

  // ---- API -------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  function describe(body, response) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {  // FastAPI validation errors: [{loc, msg}]
      return detail.map((d) => [(d.loc || []).filter((p) => p !== "body").join("."), d.msg]
        .filter(Boolean).join(": ")).join("; ");
    }
    return `The server answered ${response.status} ${response.statusText}`.trim();
  }

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch { /* storage off: the field still holds it */ }
  }

  /** GET, or a change (with the API key in X-API-Key when one was given): the JSON body or null. */
  async function request(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    if (options.method && options.method !== "GET") {
      const key = byId("collections-key").value.trim();
      if (/[^\x20-\x7e]/.test(key)) throw new ApiError("The API key can only hold printable ASCII characters.");
      if (key) headers["X-API-Key"] = key;
    }
    let response;
    try {
      response = await fetch(new URL(path, document.baseURI), { ...options, headers });
    } catch {
      throw new ApiError("Cannot reach the pixseek server.");
    }
    let body = null;
    try { body = await response.json(); } catch { /* 204, or not JSON */ }
    if (!response.ok) throw new ApiError(describe(body, response), response.status);
    return body;
  }

  // ---- messages: progress and outcomes (status), refusals (alert) -------------------------------
  function note(text) {
    byId("collections-note").textContent = text || "";
  }

  function fail(prefix, error) {
    const box = byId("collections-error");
    box.hidden = !error;
    box.replaceChildren(...(error ? [h("strong", {}, prefix), h("p", {}, error.message)] : []));
    if (error && error.status === 401) {  // the server wants its key for changes: ask for it here
      byId("collections-key-field").hidden = false;
      box.append(h("p", {}, "Enter the server's API key below, then try again."));
      byId("collections-key").focus();
    }
  }

  // ---- the table --------------------------------------------------------------------------------
  function stateCell(item) {
    const build = item.build;
    if (build && build.state === "running") {
      const progress = build.total == null ? `${build.done} files so far` : `${build.done}/${build.total}`;
      return h("td", { className: "coll-state building" },
        h("label", {}, `Building: ${progress}`,
          h("progress", { max: build.total || 1, value: build.total ? build.done : undefined })));
    }
    if (build && build.state === "failed") {
      return h("td", { className: "coll-state failed" }, `Build failed: ${build.error || "unknown error"}`);
    }
    if (item.state === "building") {  // left half-built (a crash, a restart, another server)
      return h("td", { className: "coll-state building" }, "Building, not running on this server",
        h("span", { className: "muted" }, " (build it again with its model to resume)"));
    }
    return h("td", { className: "coll-state ready" }, "Ready");
  }

  function ocrText(ocr) {
    return ocr ? `${ocr.engine} (${ocr.languages.join(", ")})` : "none";
  }

  function row(item) {
    const running = item.build && item.build.state === "running";
    const actions = h("td", { className: "coll-actions" },
      item.state === "ready" && !item.active
        ? h("button", { type: "button", "data-action": "activate", "data-name": item.name,
          "aria-label": `Activate ${item.name}` }, "Activate")
        : null,
      !item.active && !running
        ? h("button", { type: "button", "data-action": "delete", "data-name": item.name,
          "aria-label": `Delete ${item.name}` }, "Delete")
        : null);
    const images = `${item.indexed.toLocaleString()}${item.failed ? ` (${item.failed.toLocaleString()} failed)` : ""}`;
    return h("tr", { className: item.active ? "active" : "", "data-name": item.name },
      h("th", { scope: "row", className: "coll-name" }, item.name),
      h("td", { className: "coll-model" }, item.model,
        h("span", { className: "muted" }, ` · ${item.dim}-d · ${item.precision}`)),
      stateCell(item),
      h("td", { className: "coll-images" }, images),
      h("td", { className: "coll-ocr" }, ocrText(item.ocr)),
      h("td", { className: "coll-active" }, item.active ? h("span", { className: "badge" }, "Active") : null),
      actions);
  }

  /** The table again, the focus back on the button it was on (the polling re-draws it every second). */
  function render(items) {
    const focused = document.activeElement;
    const focus = focused && byId("collection-rows").contains(focused)
      ? [focused.getAttribute("data-action"), focused.getAttribute("data-name")] : null;
    byId("collection-rows").replaceChildren(...items.map(row));
    if (focus) {
      const again = [...byId("collection-rows").querySelectorAll("button")]
        .find((b) => b.getAttribute("data-action") === focus[0] && b.getAttribute("data-name") === focus[1]);
      if (again) again.focus();
    }
    const active = items.find((item) => item.active);
    byId("collections-summary").textContent = items.length === 0
      ? "No collections yet: index a folder first."
      : `${items.length} collection${items.length === 1 ? "" : "s"}` +
        (active ? `; searches use “${active.name}” (${active.model}).` : "; none is active.");
    const models = [...new Set(items.map((item) => item.model))];
    byId("collection-models").replaceChildren(...models.map((model) => h("option", { value: model })));
  }

  /** Builds that ended since the last look, told once. */
  function announce(items) {
    for (const item of items) {
      const build = item.build;
      if (!build) continue;
      if (build.state === "running") { view.running.add(item.name); continue; }
      if (!view.running.delete(item.name)) continue;
      if (build.state === "done") note(`“${item.name}” is built (${item.indexed.toLocaleString()} images): activate it to search it.`);
      else fail(`Building “${item.name}” failed`, new ApiError(build.error || "unknown error"));
    }
  }

  async function load() {
    if (view.loading) { view.again = true; return; }  // once this one is done
    clearTimeout(view.timer);
    view.loading = true;
    let polling = false;
    try {
      const items = await request("collections");
      render(items);
      announce(items);
      polling = items.some((item) => item.build && item.build.state === "running");
    } catch (error) {
      fail("Cannot list the collections", error);
      polling = view.running.size > 0;  // a blip while building: try again
    } finally {
      view.loading = false;
    }
    if (view.again) { view.again = false; load(); return; }
    if (polling && view.open) view.timer = setTimeout(load, POLL_MS);
  }

  // ---- changes ----------------------------------------------------------------------------------
  async function build(event) {
    event.preventDefault();
    const name = byId("coll-name").value.trim();
    const model = byId("coll-model").value.trim();
    const paths = byId("coll-paths").value.split("\n").map((p) => p.trim()).filter(Boolean);
    const submit = byId("collection-build");
    submit.disabled = true;
    fail("", null);
    note(`Starting the build of “${name}” (loading ${model})…`);
    try {
      const item = await request("collections", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name, model, ...(paths.length ? { paths } : {}) }),
      });
      view.running.add(item.name);
      note(`Building “${item.name}” beside the active collection, which keeps answering searches.`);
      byId("coll-name").value = "";
    } catch (error) {
      note("");
      fail(`Cannot build “${name}”`, error);
    } finally {
      submit.disabled = false;
    }
    load();
  }

  async function activate(name, button) {
    button.disabled = true;
    fail("", null);
    note(`Activating “${name}” (loading its model and index)…`);
    try {
      const item = await request(`collections/${encodeURIComponent(name)}/activate`, { method: "POST" });
      note(`“${item.name}” is active: searches use it (${item.model}).`);
      // app.js shows it in the header and searches again on it
      document.dispatchEvent(new CustomEvent("pixseek:collection-activated", { detail: item }));
    } catch (error) {
      note("");
      fail(`Cannot activate “${name}”`, error);
      button.disabled = false;
    }
    load();
  }

  async function remove(name, button) {
    if (!window.confirm(`Delete the collection “${name}” and its index? The image files stay.`)) return;
    button.disabled = true;
    fail("", null);
    try {
      await request(`collections/${encodeURIComponent(name)}`, { method: "DELETE" });
      note(`Deleted “${name}”.`);
    } catch (error) {
      note("");
      fail(`Cannot delete “${name}”`, error);
      button.disabled = false;
    }
    load();
  }

  function clicked(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const name = button.getAttribute("data-name");
    if (button.getAttribute("data-action") === "activate") activate(name, button);
    else remove(name, button);
  }

  function toggle() {
    const section = byId("collections");
    const button = byId("collections-open");
    view.open = section.hidden;
    section.hidden = !view.open;
    button.setAttribute("aria-expanded", String(view.open));
    button.textContent = view.open ? "Hide collections" : "Collections";
    clearTimeout(view.timer);
    if (view.open) {  // every opening asks again: another process may have changed them
      load();
      section.scrollIntoView({ block: "start" });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const key = storedKey();
    byId("collections-key").value = key;
    byId("collections-key-field").hidden = !key;
    byId("collections-key").addEventListener("change", (event) => storeKey(event.target.value.trim()));
    byId("collections-open").addEventListener("click", toggle);
    byId("collection-rows").addEventListener("click", clicked);
    byId("collection-form").addEventListener("submit", build);
  });
})();
