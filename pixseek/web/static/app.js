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

// ---- the query: the text box, plus more terms as chips ----------------------------------------
// A chip is one weighted term of a composed query (a negative weight pushes results away from it):
//   {kind: "text", text} | {kind: "indexed", image, crop?} (crop: a region, in fractions) |
//   {kind: "upload", file, name, preview} (at most one: the API takes one file, as its first term).
const MAX_TERMS = 15;  // terms a request may add to its main one (the API's limit)
const WEIGHTS = [0.5, 1, 2];  // what the weight button cycles through
const SORTS = new Set(["relevance", "taken", "-taken", "path"]);
const state = {
  search: null, next: null, shown: 0, loading: false, controller: null, rerankers: [],
  chips: [], chipKeys: 0, cutoff: null,  // cutoff: the user's choice, null until they make one
};

function chipLabel(chip) {
  if (chip.kind === "text") return `“${chip.text}”`;
  if (chip.kind === "upload") return `the image ${chip.name}`;
  return `${chip.crop ? "region of" : "image"} ${baseName(chip.image.path)}`;
}

const weightText = (weight) => `${Math.abs(weight)}`;

/** "“a cat” not “red” + 2× image rocket.jpg": the text box's text first, then the chips. */
function describeQuery(text, chips) {
  const parts = text ? [`“${text}”`] : [];
  for (const chip of chips) {
    const joiner = chip.weight < 0 ? "not " : parts.length ? "+ " : "";
    const weight = Math.abs(chip.weight) === 1 ? "" : `${weightText(chip.weight)}× `;
    parts.push(`${joiner}${weight}${chipLabel(chip)}`);
  }
  return parts.join(" ");
}

function apiTerm(chip) {
  if (chip.kind === "text") return { text: chip.text, weight: chip.weight };
  const term = { image_id: chip.image.id, weight: chip.weight };
  if (chip.crop) term.crop = { ...chip.crop, unit: "fraction" };
  return term;
}

const chipPreview = (chip) => chip.preview || (chip.image && chip.image.thumbnail_url) || null;
const hasQuery = () => Boolean($("#q").value.trim()) || state.chips.length > 0;

// ---- searches: each knows how to fetch one page ---------------------------------------------
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

/** Sort and cutoff as the request sends them (with a re-ranker, the cutoff thins the candidates
 * it scores). */
function readOrder() {
  const mode = $("#mode").value;  // "" leaves it to the server: hybrid once there is keyword text
  return { sort: $("#sort").value, cutoff: $("#cutoff").value, ...(mode ? { mode } : {}) };
}

const orderParams = (order) => (order.sort === "relevance" ? {} : { sort: order.sort });

/** Any order but relevance lists every match above the cutoff: auto unless the user chose none
 * (then every image, in that order: browsing by date). */
function syncOrderControls() {
  const sorted = $("#sort").value !== "relevance";
  const cutoff = $("#cutoff");
  cutoff.value = state.cutoff ?? (sorted ? "auto" : "none");
  cutoff.title = sorted && cutoff.value === "none" ? "No cutoff: every image, in this order" : "";
}

function jsonSearch(body, search) {
  if (state.rerankers.length) body.rerank = $("#rerank").value;  // only sent when the server has re-rankers
  return {
    ...search,
    filtered: Object.keys(body.filters).length > 0,
    usesFilters: true,
    page: (offset, signal) => api("search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, offset }),
      signal,
    }),
  };
}

function textSearch(query, order = readOrder()) {
  const body = { query, k: PAGE_SIZE, filters: readFilters(), ...order };
  return jsonSearch(body, { label: `for “${query}”`, params: { q: query, ...orderParams(order) } });
}

/** The text box's text (if any) with indexed-image and text terms: POST /search. */
function composedSearch(text, chips, order) {
  const body = { terms: chips.map(apiTerm), k: PAGE_SIZE, filters: readFilters(), ...order };
  if (text) body.query = text;
  const preview = chips.map(chipPreview).find(Boolean);
  return jsonSearch(body, { label: `for ${describeQuery(text, chips)}`, preview, params: orderParams(order) });
}

/** An upload, the first term, with the text box's text and the other chips as more terms. */
function imageSearch(upload, text, chips, order) {
  const filters = readFilters();
  const terms = [...(text ? [{ text, weight: 1 }] : []), ...chips.map(apiTerm)];
  return {
    label: `for ${describeQuery(text, [upload, ...chips])}`,
    filtered: Object.keys(filters).length > 0,
    usesFilters: true,
    preview: upload.preview,
    params: orderParams(order),
    page: (offset, signal) => {
      const form = new FormData();
      form.append("file", upload.file, upload.name);
      form.append("k", PAGE_SIZE);
      form.append("offset", offset);
      form.append("filters", JSON.stringify(filters));
      if (terms.length) form.append("terms", JSON.stringify(terms));
      form.append("sort", order.sort);
      if (order.cutoff) form.append("cutoff", order.cutoff);
      if (order.mode) form.append("mode", order.mode);
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

/** The search the text box and the chips make. One whole indexed image alone, best first, is
 * "more like this" (GET /images/{id}/similar, which leaves that image out). */
function querySearch() {
  const text = $("#q").value.trim();
  const upload = state.chips.find((chip) => chip.kind === "upload");
  const chips = state.chips.filter((chip) => chip !== upload);
  const order = readOrder();
  if (upload) return imageSearch(upload, text, chips, order);
  if (!chips.length) return textSearch(text, order);
  const [only] = chips;
  if (!text && chips.length === 1 && only.kind === "indexed" && !only.crop && only.weight === 1
      && order.sort === "relevance" && order.cutoff !== "auto") {
    return similarSearch(only.image);
  }
  return composedSearch(text, chips, order);
}

function searchQuery() {
  if (!hasQuery()) {
    showMessage("error", "Nothing to search", "Type a few words, or drop, paste or choose an image.");
    return undefined;
  }
  return run(querySearch());
}

function run(search) {
  if (state.controller) state.controller.abort();
  Object.assign(state, { search, next: 0, shown: 0, loading: false, controller: null });
  const url = new URL(location.href);
  url.search = new URLSearchParams(search.params).toString();
  history.replaceState(null, "", url);
  $("#grid").replaceChildren();
  showMessage(null);
  renderSummary(null);
  return loadMore();
}

/** No query left (its last term removed): no results either. */
function clearSearch() {
  if (state.controller) state.controller.abort();
  Object.assign(state, { search: null, next: null, shown: 0, loading: false, controller: null });
  const url = new URL(location.href);
  url.search = "";
  history.replaceState(null, "", url);
  $("#grid").replaceChildren();
  showMessage(null);
  renderSummary(null);
  setBusy(false);
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
  summary.title = "";
  if (!page) { summary.replaceChildren(state.search ? "Searching…" : ""); return; }
  const search = state.search;
  // total: how many results passed the cutoff, when the search counted them (a sorted or cut one).
  const total = page.total == null ? null : `${page.total.toLocaleString()} ${page.total === 1 ? "match" : "matches"}`;
  // What the re-rankers scored (the query's positive texts), when it is not the whole query.
  const reranked = page.reranked_text && page.reranked_text !== page.query ? page.reranked_text : null;
  summary.title = [
    page.query && `Searched: ${page.query}`,
    page.cutoff != null && `Cutoff: similarity ${page.cutoff.toFixed(3)}, from this query's own scores`,
  ].filter(Boolean).join("\n");
  summary.replaceChildren(
    search.preview ? h("img", { src: search.preview, alt: "", className: "query-thumb" }) : "",
    h("span", {}, `${state.shown} ${state.shown === 1 ? "image" : "images"} ${search.label}`,
      total && h("span", { className: "matches" }, ` · ${total}`),
      reranked && h("span", { className: "reranked" }, ` · re-ranked by: ${reranked}`),
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

// ---- chips: show, change, add, remove --------------------------------------------------------
/** Re-draws the chips; ``focus`` ([chip, selector]) puts the focus back where it was. */
function renderChips(focus) {
  $("#chips").replaceChildren(...state.chips.map(chipNode));
  if (focus) {
    const node = $(`#chips [data-key="${focus[0].key}"]`);
    const target = node && (focus[1] ? node.querySelector(focus[1]) : node);
    if (target) target.focus();
  }
}

function chipNode(chip) {
  const label = chipLabel(chip);
  const negative = chip.weight < 0;
  const weight = weightText(chip.weight);
  const next = WEIGHTS[(WEIGHTS.indexOf(Math.abs(chip.weight)) + 1) % WEIGHTS.length];
  const preview = chipPreview(chip);
  const fixed = chip.kind === "upload";  // the upload is the first term, weight 1
  return h("li", {
    className: `chip ${negative ? "minus" : "plus"}`, tabIndex: 0, "data-key": chip.key,
    "aria-label": `${negative ? "Not" : "Plus"} ${label}, weight ${weight} (Delete removes it)`,
    title: fixed ? "The uploaded image: a + term of weight 1" : null,
    onkeydown: (event) => {
      if (event.key !== "Delete" && event.key !== "Backspace") return;
      event.preventDefault();
      removeChip(chip);
    },
  },
  fixed
    ? h("span", { className: "sign", "aria-hidden": "true" }, "+")
    : h("button", {
      type: "button", className: "sign",
      "aria-label": negative ? `Include ${label} instead of excluding it` : `Exclude ${label} instead`,
      title: negative ? "Not: results are pushed away from this. Click to include it instead"
        : "Plus: results are like this. Click to exclude it instead",
      onclick: () => changeChip(chip, { weight: -chip.weight }, ".sign"),
    }, negative ? "−" : "+"),
  fixed
    ? h("span", { className: "weight", "aria-hidden": "true" }, weight)
    : h("button", {
      type: "button", className: "weight", "aria-label": `Weight ${weight} of ${label}: change to ${next}`,
      title: `Weight ${weight}: click for ${next}`,
      onclick: () => changeChip(chip, { weight: Math.sign(chip.weight) * next }, ".weight"),
    }, weight),
  preview && h("img", { src: preview, alt: "", className: "chip-thumb" }),
  h("span", { className: "chip-label", title: chip.image ? fullName(chip.image) : null }, label),
  h("button", {
    type: "button", className: "remove", "aria-label": `Remove ${label}`, title: "Remove this term",
    onclick: () => removeChip(chip),
  }, "×"));
}

function changeChip(chip, changes, focusSelector) {
  Object.assign(chip, changes);
  renderChips([chip, focusSelector]);
  searchQuery();
}

function forgetChip(chip) {
  if (chip.preview && chip.preview.startsWith("blob:")) URL.revokeObjectURL(chip.preview);
}

function removeChip(chip) {
  const index = state.chips.indexOf(chip);
  if (index < 0) return;
  state.chips.splice(index, 1);
  forgetChip(chip);
  const next = state.chips[Math.min(index, state.chips.length - 1)];
  renderChips(next ? [next] : null);
  if (!next) $("#q").focus();
  if (hasQuery()) searchQuery();
  else clearSearch();
}

/** A term for the query; an upload takes the place of an earlier one (the API takes one file). */
function addChip(chip) {
  const kept = state.chips.filter((other) => !(chip.kind === "upload" && other.kind === "upload"));
  if (kept.filter((other) => other.kind !== "upload").length >= MAX_TERMS && chip.kind !== "upload") {
    showMessage("error", "Too many terms", `A query holds at most ${MAX_TERMS} terms besides its text: remove one first.`);
    return false;
  }
  state.chips.filter((other) => !kept.includes(other)).forEach(forgetChip);
  state.chips = chip.kind === "upload" ? [chip, ...kept] : [...kept, chip];
  chip.key = ++state.chipKeys;
  renderChips();
  return true;
}

/** A new query of these terms alone (an upload, "more like this", a region): the text box empties. */
function replaceQuery(chips) {
  state.chips.forEach(forgetChip);
  state.chips = [];
  $("#q").value = "";
  chips.forEach(addChip);
  renderChips();
}

function addNotText() {
  const text = $("#not-text").value.trim();
  if (!text) return false;
  if (!addChip({ kind: "text", text, weight: -1 })) return false;
  $("#not-text").value = "";
  return true;
}

function uploadChip(file) {
  return { kind: "upload", file, name: file.name || "pasted image", preview: URL.createObjectURL(file), weight: 1 };
}

function likeImage(image) {
  replaceQuery([{ kind: "indexed", image, weight: 1 }]);
  searchQuery();
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

/** The words a hybrid or text search matched in the image's texts: "“lidl” (file name)". */
function matchedWords(result) {
  const seen = new Set((result.matches || []).map((m) => `“${m.text}” (${m.source})`));
  return seen.size ? `matched ${[...seen].join(", ")}` : null;
}

function scoreTitle(result) {
  const words = matchedWords(result);
  return words ? `${words}; ${rankedBy(result)}` : rankedBy(result);
}

function rankedBy(result) {
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
    h("button", { type: "button", className: "thumb", title: fullName(image), onclick: () => openViewer(image, result.matches) },
      h("img", {
        src: image.thumbnail_url,
        srcset: `${withParams(image.thumbnail_url, { size: 256 })} 1x, ${withParams(image.thumbnail_url, { size: 512 })} 2x`,
        alt: fullName(image), loading: "lazy", decoding: "async", width: 256, height: 256,
      })),
    h("div", { className: "caption", title: scoreTitle(result) },
      h("span", { className: "name" }, baseName(image.path)),
      matchLabel(result) && h("span", { className: "score" }, matchLabel(result)),
      matchedWords(result) && h("span", { className: "matched" }, matchedWords(result))),
    h("button", {
      type: "button", className: "like", "aria-label": `More like ${baseName(image.path)}`,
      onclick: () => likeImage(image),
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

/** The viewer on an image; ``matches``: what a search matched in its texts (OCR words are boxed). */
function openViewer(image, matches = []) {
  const viewer = $("#viewer");
  const img = $("#viewer-img");
  img.alt = fullName(image);
  img.src = withParams(image.thumbnail_url, { size: 512 });  // fast preview, any format
  if (BROWSER_FORMATS.has(image.format)) {  // then the original, when the browser can show it
    const original = new Image();
    original.onload = () => {
      if (img.alt !== fullName(image)) return;
      viewerState.natural = { width: original.naturalWidth, height: original.naturalHeight };
      img.src = original.src;
    };
    original.src = new URL(image.file_url, document.baseURI).href;
  }
  $("#viewer-title").textContent = baseName(image.path);
  $("#viewer-meta").replaceChildren(...metadataRows(image).flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  $("#viewer-file").href = image.file_url;
  viewerState.image = image;
  viewerState.matches = matches || [];
  viewerState.natural = null;
  setRegion(null);
  showWords();
  viewer.showModal();
  $("#viewer-close").focus();
}

// ---- the viewer's region: drag a box on the image, search by what is inside it ---------------
// The box is kept in fractions of the shown image, which the API reads against the upright
// original: how large the image is displayed does not matter.
const MIN_REGION = 0.02;  // of each side: a smaller box is taken for a click
const viewerState = { image: null, region: null, matches: [], natural: null };
const clamp01 = (value) => Math.min(1, Math.max(0, value));
const round4 = (value) => Math.round(value * 10000) / 10000;

function boxBetween(a, b) {
  const x = round4(Math.min(a.x, b.x)), y = round4(Math.min(a.y, b.y));
  return { x, y, width: round4(Math.max(a.x, b.x)) - x, height: round4(Math.max(a.y, b.y)) - y };
}

function showBox(region) {
  const box = $("#viewer-box");
  box.hidden = !region;
  if (!region) return;
  Object.assign(box.style, {  // CSSOM, which the page's CSP (no inline styles) allows
    left: `${region.x * 100}%`, top: `${region.y * 100}%`,
    width: `${region.width * 100}%`, height: `${region.height * 100}%`,
  });
}

/** The region the viewer's buttons act on (null: the whole image), and their labels to match. */
function setRegion(region) {
  viewerState.region = region;
  showBox(region);
  const part = region ? "this region" : "this";
  $("#viewer-like").textContent = region ? "Search this region" : "More like this";
  $("#viewer-plus").textContent = region ? "+ Add region to query" : "+ Add to query";
  $("#viewer-not").textContent = `− Not like ${part}`;
  $("#viewer-region-text").textContent = region
    ? `Region: ${Math.round(region.width * 100)}% × ${Math.round(region.height * 100)}% of the image.`
    : "Drag a box on the image to search by a region of it.";
  $("#viewer-whole").hidden = !region;
}

/** The viewer's image (or its region) as a chip of the given weight. */
function viewerChip(weight) {
  const chip = { kind: "indexed", image: viewerState.image, weight };
  if (viewerState.region) chip.crop = { ...viewerState.region };
  return chip;
}

function bindRegion() {
  const stage = $("#viewer-stage");
  const img = $("#viewer-img");
  let start = null;
  const at = (event) => {
    const rect = img.getBoundingClientRect();
    return { x: clamp01((event.clientX - rect.left) / rect.width), y: clamp01((event.clientY - rect.top) / rect.height) };
  };
  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !viewerState.image || !img.getAttribute("src")) return;
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    start = at(event);
    setRegion(null);
  });
  stage.addEventListener("pointermove", (event) => { if (start) showBox(boxBetween(start, at(event))); });
  stage.addEventListener("pointerup", (event) => {
    if (!start) return;
    const region = boxBetween(start, at(event));
    start = null;
    setRegion(region.width >= MIN_REGION && region.height >= MIN_REGION ? region : null);
  });
  stage.addEventListener("pointercancel", () => { start = null; setRegion(null); });
}

// ---- the viewer's word highlights: the OCR words a search matched, boxed on the image -----------
// The API gives each OCR word's box in pixels of the upright full-size image; as fractions of the
// image's width and height it is placed in percentages of the stage, as the region box is, so it
// stays on its word whatever size the image is shown at (a resized window, the preview swapped
// for the original). Other matches (file name, path, metadata) have no place on the image.
const percentOf = (value) => `${round4(value) * 100}%`;

function formatConfidence(confidence) {
  return confidence == null ? "confidence unknown" : `${Math.round(confidence * 100)}% confidence`;
}

/** The boxed OCR words of ``matches`` as {text, confidence, x, y, width, height} in fractions. */
function wordBoxes(matches, width, height) {
  if (!(width > 0 && height > 0)) return [];
  return matches.filter((m) => m.source === "ocr" && Array.isArray(m.box) && m.box.length === 4).map((m) => {
    const [left, top, right, bottom] = m.box.map(Number);
    const x = clamp01(left / width), y = clamp01(top / height);
    return { text: m.text, confidence: m.confidence, x, y, width: clamp01(right / width) - x, height: clamp01(bottom / height) - y };
  }).filter((box) => box.width > 0 && box.height > 0);
}

/** Draws the viewer's word boxes (once its image has loaded), lists the words, and hides the
 * boxes while the checkbox is off. */
function showWords() {
  const image = viewerState.image;
  const img = $("#viewer-img");
  const size = viewerState.natural || {};  // the original's own size, when the index lacks it
  const boxes = image ? wordBoxes(viewerState.matches, image.width || size.width, image.height || size.height) : [];
  const loaded = img.complete && img.naturalWidth > 0;
  $("#viewer-words").hidden = boxes.length === 0;
  $("#viewer-marks").hidden = !boxes.length || !loaded || !$("#viewer-words-toggle").checked;
  $("#viewer-words-list").replaceChildren(...boxes.map((box) =>
    h("li", {}, h("span", { className: "word" }, `“${box.text}”`), ` ${formatConfidence(box.confidence)}`)));
  $("#viewer-marks").replaceChildren(...boxes.map((box) => {
    const label = `Matched word “${box.text}”, ${formatConfidence(box.confidence)}`;
    const mark = h("div", { className: "word-mark", tabIndex: 0, title: label, "aria-label": label, "data-label": label });
    mark.setAttribute("role", "img");
    Object.assign(mark.style, {  // CSSOM, which the page's CSP (no inline styles) allows
      left: percentOf(box.x), top: percentOf(box.y), width: percentOf(box.width), height: percentOf(box.height),
    });
    return mark;
  }));
}

// ---- input: form, file, drop, paste ----------------------------------------------------------
function usableFile(file) {
  if (!file) return false;
  if (file.type && !file.type.startsWith("image/")) {
    showMessage("error", "Not an image", `${file.name || "The file"} is ${file.type}; choose an image file.`);
    return false;
  }
  if (file.size > MAX_UPLOAD_BYTES) {
    showMessage("error", "Image too large", `The limit is ${formatBytes(MAX_UPLOAD_BYTES)}.`);
    return false;
  }
  return true;
}

/** Search by an image alone: it replaces the query. */
function searchFile(file) {
  if (!usableFile(file)) return;
  replaceQuery([uploadChip(file)]);
  searchQuery();
}

/** An image as one more term of the query (in place of an earlier upload). */
function addFile(file) {
  if (!usableFile(file)) return;
  addChip(uploadChip(file));
  searchQuery();
}

/** The viewer's image or region as a term (weight 1, or -1: "not"), then the search. */
function addFromViewer(weight) {
  const chip = viewerChip(weight);
  $("#viewer").close();
  if (addChip(chip)) searchQuery();
}

function updateFilterCount() {
  const count = Object.keys(readFilters()).length;
  $("#filter-count").hidden = count === 0;
  $("#filter-count").textContent = `${count} active`;
}

function bindInputs() {
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    // Enter in the "not" box adds its text as a term, then searches (not when it could not be added)
    if ($("#not-text").value.trim() && !addNotText()) return;
    searchQuery();
  });
  $("#add-not").addEventListener("click", () => {
    if (addNotText()) searchQuery();
    else $("#not-text").focus();
  });
  $("#file").addEventListener("change", (event) => { searchFile(event.target.files[0]); event.target.value = ""; });
  $("#add-file").addEventListener("change", (event) => { addFile(event.target.files[0]); event.target.value = ""; });
  $("#filter-fields").addEventListener("change", () => {
    updateFilterCount();
    syncOrderControls();  // the re-rank choice is one of these fields
    if (state.search && state.search.usesFilters) searchQuery();
  });
  $("#sort").addEventListener("change", () => {
    syncOrderControls();
    if (state.search) searchQuery();
  });
  $("#cutoff").addEventListener("change", () => {
    state.cutoff = $("#cutoff").value;
    if (state.search) searchQuery();
  });
  $("#mode").addEventListener("change", () => {
    if (state.search) searchQuery();
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

  // Dropped anywhere, an image replaces the query; dropped on "add it to the query", it joins it.
  const drop = $("#drop");
  const hasFiles = (event) => Array.from(event.dataTransfer.types).includes("Files");
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    $("#drop-add").hidden = !hasQuery();
    drop.hidden = false;
  });
  drop.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget || !drop.contains(event.relatedTarget)) drop.hidden = true;
  });
  document.addEventListener("drop", (event) => {
    drop.hidden = true;
    if (!hasFiles(event)) return;
    event.preventDefault();
    const adding = event.target instanceof Element && event.target.closest("#drop-add");
    (adding ? addFile : searchFile)(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData.items).find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;  // plain text pastes into the search box as usual
    event.preventDefault();
    searchFile(item.getAsFile());
  });

  const viewer = $("#viewer");
  let downOnBackdrop = false;  // a drag on the image that ends over the backdrop closes nothing
  $("#viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("pointerdown", (event) => { downOnBackdrop = event.target === viewer; });
  viewer.addEventListener("click", (event) => { if (event.target === viewer && downOnBackdrop) viewer.close(); });
  viewer.addEventListener("close", () => {
    $("#viewer-img").removeAttribute("src");
    Object.assign(viewerState, { image: null, matches: [], natural: null });
    setRegion(null);
    showWords();
  });
  // The word boxes wait for the image (the preview, then the original, may load late).
  $("#viewer-img").addEventListener("load", showWords);
  $("#viewer-words-toggle").addEventListener("change", showWords);
  $("#viewer-like").addEventListener("click", () => {
    const chip = viewerChip(1);
    viewer.close();
    replaceQuery([chip]);
    searchQuery();
  });
  $("#viewer-plus").addEventListener("click", () => addFromViewer(1));
  $("#viewer-not").addEventListener("click", () => addFromViewer(-1));
  $("#viewer-whole").addEventListener("click", () => setRegion(null));
  bindRegion();
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
  syncOrderControls();
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
    ? [`${searchable.toLocaleString()} images in “${collection.name}”`, baseName(collection.model), status.device]
      .filter(Boolean).join(" · ")
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

/** Another collection became active (collections.js): the header says so at once, and the results
 * on show come again from it. Images in the query have ids of the old one: those searches end. */
async function collectionActivated() {
  try { renderStatus(await api("status")); } catch { /* the next poll tells */ }
  if (!state.search) return;
  if (state.chips.some((chip) => chip.kind === "indexed")) {
    clearSearch();
    showMessage("info", "Another collection is active", "Its images are not the ones in this query: search again.");
  } else {
    searchQuery();
  }
}

// ---- start -------------------------------------------------------------------------------------
async function start() {
  bindInputs();
  syncOrderControls();
  pollStatus();
  document.addEventListener("pixseek:collection-activated", collectionActivated);
  const params = new URLSearchParams(location.search);
  if (SORTS.has(params.get("sort"))) {
    $("#sort").value = params.get("sort");
    syncOrderControls();
  }
  if (params.get("q") && params.get("q").trim()) {
    $("#q").value = params.get("q").trim();
    searchQuery();
  } else if (/^\d+$/.test(params.get("like") || "")) {
    try {
      likeImage(await api(`images/${params.get("like")}`));
    } catch (error) {
      showMessage("error", "Cannot show similar images", error.message);
    }
  }
}

start();
