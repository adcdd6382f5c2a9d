// pixseek web page: plain DOM, no framework, no build step.
// Untrusted strings (paths, camera names, API messages) only ever reach the page through
// textContent / element properties, never innerHTML.
"use strict";

const PAGE_SIZE = 24;
const MAX_UPLOAD_BYTES = 20 * 1024 * 1024;
const BROWSER_FORMATS = new Set(["JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP"]);
const $ = (selector) => document.querySelector(selector);

// Build an element: props are properties (attributes when the name has a dash, like aria-label),
// children are nodes or plain text (never parsed as HTML).
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.includes("-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

// ---- API ---------------------------------------------------------------------------------------
class ApiError extends Error {}

function describeError(body, response) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {  // FastAPI validation errors: [{loc, msg}]
    return detail.map((d) => [(d.loc || []).filter((p) => p !== "body").join("."), d.msg]
      .filter(Boolean).join(": ")).join("; ");
  }
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("Cannot reach the pixseek server.");
  }
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new ApiError(describeError(body, response));
  return body;
}

function withParams(url, params) {
  const result = new URL(url, document.baseURI);
  for (const [key, value] of Object.entries(params)) result.searchParams.set(key, value);
  return result.href;
}

// ---- searches: each knows how to fetch one page ---------------------------------------------
const state = { search: null, next: null, shown: 0, loading: false, controller: null, rerankers: [] };

function readFilters() {
  const filters = {};
  const folder = $("#f-folder").value.trim().replace(/^\/+|\/+$/g, "");
  if (folder) filters.folders = [folder];
  if ($("#f-after").value) filters.taken_after = `${$("#f-after").value}T00:00:00`;
  if ($("#f-before").value) filters.taken_before = `${$("#f-before").value}T23:59:59`;
  if ($("#f-width").value) filters.min_width = Number($("#f-width").value);
  if ($("#f-height").value) filters.min_height = Number($("#f-height").value);
  if ($("#f-format").value) filters.formats = [$("#f-format").value];
  return filters;
}

function textSearch(query) {
  const filters = readFilters();
  const body = { query, k: PAGE_SIZE, filters };
  if (state.rerankers.length) body.rerank = $("#rerank").value;  // only sent when the server has re-rankers
  return {
    label: `for “${query}”`,
    filtered: Object.keys(filters).length > 0,
    params: { q: query },
    page: (offset, signal) => api("search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, offset }),
      signal,
    }),
  };
}

function imageSearch(file) {
  const name = file.name || "pasted image";
  const filters = readFilters();
  return {
    label: `for the image ${name}`,
    filtered: Object.keys(filters).length > 0,
    preview: URL.createObjectURL(file),
    params: {},
    file,
    page: (offset, signal) => {
      const form = new FormData();
      form.append("file", file, name);
      form.append("k", PAGE_SIZE);
      form.append("offset", offset);
      form.append("filters", JSON.stringify(filters));
      return api("search/image", { method: "POST", body: form, signal });
    },
  };
}

function similarSearch(image) {
  return {
    label: `like ${image.root}/${image.path}`,
    preview: image.thumbnail_url,
    params: { like: image.id },
    page: (offset, signal) => api(withParams(image.similar_url, { k: PAGE_SIZE, offset }), { signal }),
  };
}

function run(search) {
  if (state.controller) state.controller.abort();
  if (state.search && state.search.preview && state.search.preview.startsWith("blob:")) {
    URL.revokeObjectURL(state.search.preview);
  }
  Object.assign(state, { search, next: 0, shown: 0, loading: false, controller: null });
  const url = new URL(location.href);
  url.search = new URLSearchParams(search.params).toString();
  history.replaceState(null, "", url);
  $("#grid").replaceChildren();
  showMessage(null);
  renderSummary(null);
  return loadMore();
}

async function loadMore() {
  const search = state.search;
  if (!search || state.next === null || state.loading) return;
  const controller = new AbortController();
  Object.assign(state, { controller, loading: true });
  setBusy(true);
  try {
    const page = await search.page(state.next, controller.signal);
    if (search !== state.search) return;
    $("#grid").append(...page.results.map(card));
    state.shown += page.results.length;
    state.next = page.next_offset;
    renderSummary(page);
    if (state.shown === 0) {
      showMessage("empty", `No images ${search.label}.`,
        search.filtered ? "Try removing a filter." : "Try other words, or index more folders.");
    }
  } catch (error) {
    if (error.name === "AbortError") return;
    if (search === state.search) {
      state.next = null;
      $("#summary").replaceChildren();
      showMessage("error", "The search failed", error.message);
    }
  } finally {
    if (state.controller === controller) {
      Object.assign(state, { controller: null, loading: false });
      setBusy(false);
    }
  }
}

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  $("#grid").setAttribute("aria-busy", String(busy));
  const more = $("#more");
  more.hidden = busy || state.next === null || state.shown === 0;
  if (!more.hidden && state.scrollObserver) {
    state.scrollObserver.unobserve(more);
    state.scrollObserver.observe(more);
  }
}

function renderSummary(page) {
  const summary = $("#summary");
  if (!page) { summary.replaceChildren(state.search ? "Searching…" : ""); return; }
  const search = state.search;
  summary.replaceChildren(
    search.preview ? h("img", { src: search.preview, alt: "", className: "query-thumb" }) : "",
    h("span", {}, `${state.shown} ${state.shown === 1 ? "image" : "images"} ${search.label}`,
      h("span", { className: "muted" }, `${state.next !== null ? " · more below" : ""} · ${Math.round(page.took_ms)} ms`)),
  );
}

function showMessage(kind, title, text) {
  const box = $("#message");
  box.hidden = !kind;
  box.className = `message ${kind || ""}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.replaceChildren(...(kind ? [h("strong", {}, title), h("p", {}, text || "")] : []));
}

// ---- results and the viewer ------------------------------------------------------------------
const baseName = (path) => path.split("/").pop();
const fullName = (image) => `${image.root}/${image.path}`;

// A card shows a number only when it means something on its own: a re-ranked result's match
// probability, as a percentage. A first-stage cosine (0.21, or -0.04) only ranks the results of one
// search, so it is left to the tooltip, which keeps every raw score.
function matchLabel(result) {
  return result.final_score == null ? null : `${Math.round(result.final_score * 100)}% match`;
}

function scoreTitle(result) {
  const similarity = `similarity ${result.score.toFixed(3)} (cosine: it ranks this search's results)`;
  if (result.final_score == null) {
    return result.rerank_error ? `Not re-ranked (${result.rerank_error}); ${similarity}` : `Ranked by ${similarity}`;
  }
  const parts = Object.entries(result.rerank_scores).map(([name, p]) => `${name} ${p.toFixed(3)}`);
  return `Match probability ${result.final_score.toFixed(3)} (${parts.join(", ")}); ${similarity}`;
}

function card(result) {
  const image = result.image;
  return h("li", { className: "card" },
    h("button", { type: "button", className: "thumb", title: fullName(image), onclick: () => openViewer(image) },
      h("img", {
        src: image.thumbnail_url,
        srcset: `${withParams(image.thumbnail_url, { size: 256 })} 1x, ${withParams(image.thumbnail_url, { size: 512 })} 2x`,
        alt: fullName(image), loading: "lazy", decoding: "async", width: 256, height: 256,
      })),
    h("div", { className: "caption", title: scoreTitle(result) },
      h("span", { className: "name" }, baseName(image.path)),
      matchLabel(result) && h("span", { className: "score" }, matchLabel(result))),
    h("button", {
      type: "button", className: "like", "aria-label": `More like ${baseName(image.path)}`,
      onclick: () => run(similarSearch(image)),
    }, "More like this"));
}

function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function metadataRows(image) {
  const rows = [["Path", fullName(image)]];
  if (image.width && image.height) rows.push(["Dimensions", `${image.width} × ${image.height} px`]);
  rows.push(["File size", formatBytes(image.size_bytes)]);
  if (image.format) rows.push(["Format", image.format]);
  if (image.taken_at) rows.push(["Taken", image.taken_at.slice(0, 19).replace("T", " ")]);
  if (image.camera) rows.push(["Camera", image.camera]);
  if (image.gps_lat !== null && image.gps_lon !== null) {
    rows.push(["GPS", `${image.gps_lat.toFixed(5)}, ${image.gps_lon.toFixed(5)}`]);
  }
  return rows;
}

function openViewer(image) {
  const viewer = $("#viewer");
  const img = $("#viewer-img");
  img.alt = fullName(image);
  img.src = withParams(image.thumbnail_url, { size: 512 });  // fast preview, any format
  if (BROWSER_FORMATS.has(image.format)) {  // then the original, when the browser can show it
    const original = new Image();
    original.onload = () => { if (img.alt === fullName(image)) img.src = original.src; };
    original.src = new URL(image.file_url, document.baseURI).href;
  }
  $("#viewer-title").textContent = baseName(image.path);
  $("#viewer-meta").replaceChildren(...metadataRows(image).flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  $("#viewer-file").href = image.file_url;
  $("#viewer-like").onclick = () => { viewer.close(); run(similarSearch(image)); };
  viewer.showModal();
  $("#viewer-close").focus();
}

// ---- input: form, file, drop, paste ----------------------------------------------------------
function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showMessage("error", "Not an image", `${file.name || "The file"} is ${file.type}; choose an image file.`);
    return;
  }
  if (file.size > MAX_UPLOAD_BYTES) {
    showMessage("error", "Image too large", `The limit is ${formatBytes(MAX_UPLOAD_BYTES)}.`);
    return;
  }
  run(imageSearch(file));
}

function updateFilterCount() {
  const count = Object.keys(readFilters()).length;
  $("#filter-count").hidden = count === 0;
  $("#filter-count").textContent = `${count} active`;
}

function bindInputs() {
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("#q").value.trim();
    if (query) run(textSearch(query));
    else showMessage("error", "Nothing to search", "Type a few words, or drop, paste or choose an image.");
  });
  $("#file").addEventListener("change", (event) => { searchFile(event.target.files[0]); event.target.value = ""; });
  $("#filter-fields").addEventListener("change", () => {
    updateFilterCount();
    if (state.search && state.search.params.q) run(textSearch(state.search.params.q));
    else if (state.search && state.search.file) run(imageSearch(state.search.file));
  });
  $("#clear-filters").addEventListener("click", () => {
    for (const field of $("#filter-fields").querySelectorAll("input, select:not(#rerank)")) field.value = "";
    $("#filter-fields").dispatchEvent(new Event("change"));
  });
  $("#more").addEventListener("click", loadMore);
  // Infinite scroll: setBusy re-observes the button after each page, which reports at once whether
  // it is near the viewport; scrolling to it later reports again. "Load more" is the keyboard path.
  state.scrollObserver = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: "600px" });
  state.scrollObserver.observe($("#more"));

  const drop = $("#drop");
  const hasFiles = (event) => Array.from(event.dataTransfer.types).includes("Files");
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    drop.hidden = false;
  });
  drop.addEventListener("dragleave", () => { drop.hidden = true; });
  document.addEventListener("drop", (event) => {
    drop.hidden = true;
    if (!hasFiles(event)) return;
    event.preventDefault();
    searchFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData.items).find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;  // plain text pastes into the search box as usual
    event.preventDefault();
    searchFile(item.getAsFile());
  });

  const viewer = $("#viewer");
  $("#viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (event) => { if (event.target === viewer) viewer.close(); });  // backdrop
  viewer.addEventListener("close", () => { $("#viewer-img").removeAttribute("src"); });
}

// ---- server status and indexing progress -----------------------------------------------------
const jobsSeenFinished = new Set();
let firstStatus = true;

function availableRerankers(value) {
  if (Array.isArray(value)) return value.map((r) => (typeof r === "string" ? r : r && r.name)).filter(Boolean);
  if (value && typeof value === "object") {
    return Object.entries(value).filter(([, v]) => v && v.available !== false).map(([name]) => name);
  }
  return [];
}

function renderRerank(status) {
  const names = availableRerankers(status.rerankers);
  if (names.join() === state.rerankers.join()) return;
  state.rerankers = names;
  const options = ["none", ...names];
  if (names.includes("bridgetower") && names.includes("blip2")) options.push("both");
  $("#rerank").replaceChildren(...options.map((name) => h("option", { value: name }, name)));
  $("#rerank-field").hidden = names.length === 0;
}

/** "/srv/photos/2021" -> "photos/2021" with the server's roots {name: absolute path}. */
function jobLine(job) {
  const where = job.paths.length ? job.paths.join(", ") : "all folders";
  if (job.state === "queued") return h("div", { className: "job" }, `Indexing ${where}: queued`);
  if (job.state === "running") {
    const total = job.total ?? 0;
    return h("div", { className: "job" },
      h("label", {}, `Indexing ${where}: ${job.done}${total ? ` / ${total}` : ""} files`,
        h("progress", { max: total || 1, value: total ? job.done : undefined })),
      h("span", { className: "muted" }, `${job.embedded} embedded · ${job.failed} failed`));
  }
  const outcome = job.state === "done"
    ? `Indexing ${where} finished: ${job.embedded} embedded, ${job.failed} failed.`
    : `Indexing ${where} failed: ${job.error || "unknown error"}`;
  return h("div", { className: `job ${job.state}` }, outcome,
    h("button", { type: "button", className: "link", onclick: (e) => { jobsSeenFinished.add(job.id); e.target.parentNode.remove(); } }, "Dismiss"));
}

function renderStatus(status) {
  const collection = status.collection;
  // The images a search here can return (under the served roots), not the whole collection's count.
  const searchable = collection ? collection.searchable ?? collection.indexed : 0;
  $("#status").textContent = collection
    ? [`${searchable.toLocaleString()} images`, baseName(collection.model), status.device].filter(Boolean).join(" · ")
    : "Nothing indexed yet";
  $("#status").title = status.served || "";
  $("#roots").replaceChildren(...Object.keys(status.roots || {}).map((name) => h("option", { value: name })));
  renderRerank(status);
  const jobs = status.jobs || [];
  if (firstStatus) {  // jobs that ended before the page opened are not news
    jobs.filter((job) => job.state === "done" || job.state === "failed").forEach((job) => jobsSeenFinished.add(job.id));
    firstStatus = false;
  }
  const visible = jobs.filter((job) => !jobsSeenFinished.has(job.id)).slice(-3);
  $("#jobs").replaceChildren(...visible.map((job) => jobLine(job)));
  return jobs.some((job) => job.state === "queued" || job.state === "running");
}

async function pollStatus() {
  let delay = 5000;
  try {
    if (!document.hidden && renderStatus(await api("status"))) delay = 1000;
  } catch {
    $("#status").textContent = "Server unreachable";
    delay = 10000;
  }
  setTimeout(pollStatus, delay);
}

// ---- start -------------------------------------------------------------------------------------
async function start() {
  bindInputs();
  pollStatus();
  const params = new URLSearchParams(location.search);
  if (params.get("q")) {
    $("#q").value = params.get("q");
    run(textSearch(params.get("q").trim()));
  } else if (/^\d+$/.test(params.get("like") || "")) {
    try {
      run(similarSearch(await api(`images/${params.get("like")}`)));
    } catch (error) {
      showMessage("error", "Cannot show similar images", error.message);
    }
  }
}

start();
