// pixseek web page: the duplicates view (GET /duplicates), apart from the search in app.js.
// Groups of exact copies and near-duplicates, a page at a time, each with its suggested keeper.
// Untrusted strings (paths, API messages) only ever reach the page through textContent.
"use strict";

(() => {
  // Elements are built with app.js's h() (loaded first): properties, attributes, events, text.
  const GROUPS_PER_PAGE = 12;
  const view = { next: 0, loading: false, total: null };
  const byId = (id) => document.getElementById(id);

  function bytes(size) {
    const units = ["B", "KB", "MB", "GB"];
    let value = size;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function why(group) {
    if (group.kind === "exact") return "the same content";
    return `near-duplicates (cosine ≥ ${group.similarity.toFixed(3)}, hash distance ≤ ${group.distance})`;
  }

  function member(image, keeper) {
    const name = image.path.split("/").pop();
    const facts = [
      image.width ? `${image.width}×${image.height}` : null,
      bytes(image.size_bytes),
      image.taken_at ? image.taken_at.slice(0, 10) : null,
    ].filter(Boolean).join(" · ");
    return h("li", { className: keeper ? "dup-member keeper" : "dup-member" },
      h("a", { href: image.file_url, target: "_blank", rel: "noopener", title: `${image.root}/${image.path}` },
        h("img", { src: `${image.thumbnail_url}?size=256`, alt: name, loading: "lazy", width: 160, height: 160 })),
      keeper ? h("span", { className: "badge" }, "Keep") : null,
      h("span", { className: "dup-name", title: `${image.root}/${image.path}` }, name),
      h("span", { className: "dup-facts" }, facts));
  }

  function group(entry, number) {
    const members = entry.members.map((image) => member(image, image.id === entry.keeper_id));
    return h("li", { className: `dup-group ${entry.kind}` },
      h("p", { className: "dup-why" },
        h("strong", {}, `${number}. ${entry.members.length} images`), `: ${why(entry)}`),
      h("ul", { className: "dup-members" }, ...members));
  }

  function say(text, isError = false) {
    const message = byId("duplicates-message");
    message.hidden = !text;
    message.className = isError ? "message error" : "message";
    message.textContent = text || "";
  }

  async function load() {
    if (view.loading || view.next === null) return;
    view.loading = true;
    byId("duplicates-more").hidden = true;
    if (view.next === 0) say("Comparing the images… (a large collection takes a while the first time)");
    try {
      const url = new URL("duplicates", document.baseURI);
      url.searchParams.set("offset", view.next);
      url.searchParams.set("limit", GROUPS_PER_PAGE);
      const response = await fetch(url);
      let body = null;
      try { body = await response.json(); } catch { /* not JSON */ }
      if (!response.ok) {
        const detail = body && typeof body.detail === "string" ? body.detail : `the server answered ${response.status}`;
        throw new Error(detail);
      }
      const shown = byId("duplicate-groups").children.length;
      byId("duplicate-groups").append(...body.groups.map((entry, i) => group(entry, shown + i + 1)));
      view.next = body.next_offset;
      view.total = body.total;
      byId("duplicates-summary").textContent = body.total === 0
        ? `No duplicates among ${body.images} images.`
        : `${body.total} group${body.total === 1 ? "" : "s"} of duplicates among ${body.images} images ` +
          `(near-duplicates: cosine ≥ ${body.threshold} and perceptual hashes at most ${body.max_distance} ` +
          "bits apart). The suggested keeper has the most pixels, then the largest file, then the oldest date.";
      say("");
    } catch (error) {
      say(error instanceof TypeError ? "Cannot reach the pixseek server." : error.message, true);
    } finally {
      view.loading = false;
      byId("duplicates-more").hidden = view.next === null;
    }
  }

  function toggle() {
    const section = byId("duplicates");
    const button = byId("duplicates-open");
    const opening = section.hidden;
    section.hidden = !opening;
    button.setAttribute("aria-expanded", String(opening));
    button.textContent = opening ? "Hide duplicates" : "Duplicates";
    if (opening) {  // every opening asks again: the collection may have changed since
      view.next = 0;
      byId("duplicate-groups").replaceChildren();
      byId("duplicates-summary").textContent = "";
      load();
      section.scrollIntoView({ block: "start" });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("duplicates-open").addEventListener("click", toggle);
    byId("duplicates-more").addEventListener("click", load);
  });
})();
