"use strict";
// The search page: a sound, a picture or words in; ranked results out (over /api/search);
// "more like this" on every result, "load more", and "which of these labels?" (/api/classify).
const $ = (id) => document.getElementById(id);
const form = $("search"), fileInput = $("file"), words = $("words"), among = $("among");
const kSelect = $("k"), more = $("more"), queryView = $("query");
const drop = $("drop"), statusLine = $("status"), errorLine = $("error"), results = $("results");
const classifyForm = $("classify"), labelsInput = $("labels"), labelsOut = $("labels-out");
const EXT = {
  ogg: "audio", wav: "audio", flac: "audio", mp3: "audio",
  png: "image", jpg: "image", jpeg: "image", webp: "image", gif: "image", bmp: "image",
};
const KIND = { image: "picture", audio: "sound", text: "text" };
let last = null; // the last query {input, body, label}, re-run when "Search among" or k changes
let shown = 0; // results on the page ("load more" asks for the next ones)
let queryUrl = null; // object URL of the query's picture or sound

function kindOf(file) {
  if (file.type.startsWith("audio/")) return "audio";
  if (file.type.startsWith("image/")) return "image";
  return EXT[(file.name.split(".").pop() || "").toLowerCase()] || null;
}

function showError(message) {
  errorLine.textContent = message;
  errorLine.hidden = false;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function showQuery(input, body, label) {
  // The query shown back: its picture, a player for its sound, or its words.
  if (queryUrl) URL.revokeObjectURL(queryUrl);
  queryUrl = null;
  queryView.replaceChildren(el("span", { class: "hint" }, "Searching with: "));
  if ((input === "image" || input === "audio") && body instanceof Blob) {
    queryUrl = URL.createObjectURL(body);
    if (input === "image") queryView.append(el("img", { src: queryUrl, alt: label }));
    else queryView.append(el("audio", { controls: "", preload: "metadata", src: queryUrl, "aria-label": `play: ${label}` }));
  }
  queryView.append(el("span", { class: "query-label" }, label));
  queryView.hidden = false;
}

function card(hit, rank) {
  const label = hit.caption || hit.path || hit.id;
  const li = el("li", { "data-id": hit.id, "data-modality": hit.modality, "data-path": hit.path });
  li.append(el("p", {}, ""));
  li.firstChild.append(el("span", { class: "rank" }, `#${rank} `), `${KIND[hit.modality]}`);
  if (hit.modality === "image" && hit.url) {
    li.append(el("img", { src: hit.url, alt: label, loading: "lazy" }));
  } else if (hit.modality === "audio" && hit.url) {
    // preload="metadata": the player shows the sound's duration before it is played
    li.append(el("audio", { controls: "", preload: "metadata", src: hit.url, "aria-label": `play: ${label}` }));
  }
  li.append(el("p", { class: hit.modality === "text" ? "words" : "caption" }, label));
  if (hit.path) li.append(el("p", { class: "path" }, hit.path));
  li.append(el("p", { class: "score" }, `score ${hit.score.toFixed(3)}`));
  const like = el("button", { type: "button", class: "like" }, "More like this");
  like.addEventListener("click", () => search("id", hit.id, `more like “${label}”`));
  li.append(like);
  return li;
}

async function search(input, body, label, append = false) {
  if (!append) {
    last = { input, body, label };
    shown = 0;
    showQuery(input, body, label);
  }
  errorLine.hidden = true;
  results.setAttribute("aria-busy", "true");
  statusLine.textContent = `Searching with ${label} …`;
  const t0 = performance.now();
  const k = Number(kSelect.value);
  const params = new URLSearchParams({ input, among: among.value, k: String(k), offset: String(shown) });
  try {
    const reply = await fetch(`/api/search?${params}`, { method: "POST", body });
    const data = await reply.json();
    if (!reply.ok) {
      if (!append) results.replaceChildren();
      statusLine.textContent = "";
      more.hidden = true;
      showError(reply.status === 400 ? data.error : `Could not search with ${label}: ${data.error}`);
      return;
    }
    if (!append) results.replaceChildren();
    data.hits.forEach((hit, i) => results.append(card(hit, shown + i + 1)));
    shown += data.hits.length;
    more.hidden = data.hits.length < k;
    const what = among.options[among.selectedIndex].text;
    const ms = Math.round(performance.now() - t0);
    statusLine.textContent = `${shown} results for ${label} among ${what} (${ms} ms)`;
  } catch (err) {
    statusLine.textContent = "";
    showError(`The page could not reach its server: ${err}`);
  } finally {
    results.setAttribute("aria-busy", "false");
  }
}

function searchFile(file) {
  const kind = kindOf(file);
  if (!kind) {
    showError(`${file.name} is neither a picture nor a sound (use PNG, JPEG, WebP, GIF, BMP, WAV, FLAC, OGG or MP3).`);
    return;
  }
  words.value = "";
  search(kind, file, `the ${KIND[kind]} ${file.name}`);
}

fileInput.addEventListener("change", () => {
  if (fileInput.files.length) searchFile(fileInput.files[0]);
});
words.addEventListener("input", () => {
  if (words.value.trim()) fileInput.value = "";
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = words.value.trim();
  if (text) search("text", text, `the words “${text}”`);
  else if (fileInput.files.length) searchFile(fileInput.files[0]);
  else showError("Choose a sound or a picture, or type some words.");
});
for (const control of [among, kSelect]) {
  control.addEventListener("change", () => {
    if (last) search(last.input, last.body, last.label);
  });
}
more.addEventListener("click", () => {
  if (last) search(last.input, last.body, last.label, true);
});
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (!file) return;
  const transfer = new DataTransfer();
  transfer.items.add(file);
  fileInput.files = transfer.files;
  searchFile(file);
});

classifyForm.addEventListener("submit", async (event) => {
  // "Which of these labels?": the current picture, sound or words against the typed labels.
  event.preventDefault();
  errorLine.hidden = true;
  const text = words.value.trim();
  const file = fileInput.files.length ? fileInput.files[0] : null;
  const input = text ? "text" : file ? kindOf(file) : null;
  if (!input) {
    showError("Choose a sound or a picture, or type some words, then the labels to choose from.");
    return;
  }
  const params = new URLSearchParams({ input, labels: labelsInput.value, template: $("template").value });
  labelsOut.replaceChildren();
  labelsOut.setAttribute("aria-busy", "true");
  try {
    const reply = await fetch(`/api/classify?${params}`, { method: "POST", body: text || file });
    const data = await reply.json();
    if (!reply.ok) {
      showError(data.error);
      return;
    }
    for (const x of data.labels) {
      const li = el("li", { "data-label": x.label });
      li.append(el("span", { class: "label" }, x.label), " ",
        el("span", { class: "prob" }, `${(100 * x.probability).toFixed(1)} %`));
      labelsOut.append(li);
    }
  } catch (err) {
    showError(`The page could not reach its server: ${err}`);
  } finally {
    labelsOut.setAttribute("aria-busy", "false");
  }
});

fetch("/api/info").then(async (reply) => {
  const data = await reply.json();
  if (!reply.ok) throw new Error(data.error);
  $("info").textContent = `Collection “${data.collection}”: ${data.count.toLocaleString("en")} items · ` +
    `model ${data.model_id || "(any)"}, ${data.dim}-d vectors`;
}).catch((err) => { $("info").textContent = `The search service is not answering: ${err.message}`; });
