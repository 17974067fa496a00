"use strict";
// The search page: a sound, a picture or words in; ranked results out (over /api/search).
const $ = (id) => document.getElementById(id);
const form = $("search"), fileInput = $("file"), words = $("words"), among = $("among");
const drop = $("drop"), statusLine = $("status"), errorLine = $("error"), results = $("results");
const EXT = {
  ogg: "audio", wav: "audio", flac: "audio", mp3: "audio",
  png: "image", jpg: "image", jpeg: "image", webp: "image", gif: "image", bmp: "image",
};
const KIND = { image: "picture", audio: "sound", text: "text" };
let last = null; // the last query, re-run when "Search among" changes

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

function render(hits) {
  results.replaceChildren();
  hits.forEach((hit, i) => {
    const label = hit.caption || hit.path || hit.id;
    const li = el("li", { "data-id": hit.id, "data-modality": hit.modality, "data-path": hit.path });
    li.append(el("p", {}, ""));
    li.firstChild.append(el("span", { class: "rank" }, `#${i + 1} `), `${KIND[hit.modality]}`);
    if (hit.modality === "image" && hit.url) {
      li.append(el("img", { src: hit.url, alt: label, loading: "lazy" }));
    } else if (hit.modality === "audio" && hit.url) {
      li.append(el("audio", { controls: "", preload: "none", src: hit.url, "aria-label": `play: ${label}` }));
    }
    li.append(el("p", { class: hit.modality === "text" ? "words" : "caption" }, label));
    if (hit.path) li.append(el("p", { class: "path" }, hit.path));
    li.append(el("p", { class: "score" }, `score ${hit.score.toFixed(3)}`));
    results.append(li);
  });
}

async function search(input, body, label) {
  last = { input, body, label };
  errorLine.hidden = true;
  results.setAttribute("aria-busy", "true");
  statusLine.textContent = `Searching with ${label} …`;
  const t0 = performance.now();
  const params = new URLSearchParams({ input, among: among.value, k: "12" });
  try {
    const reply = await fetch(`/api/search?${params}`, { method: "POST", body });
    const data = await reply.json();
    if (!reply.ok) {
      results.replaceChildren();
      statusLine.textContent = "";
      showError(`Could not search with ${label}: ${data.error}`);
      return;
    }
    render(data.hits);
    const what = among.options[among.selectedIndex].text;
    const ms = Math.round(performance.now() - t0);
    statusLine.textContent = `${data.hits.length} results for ${label} among ${what} (${ms} ms)`;
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
among.addEventListener("change", () => {
  if (last) search(last.input, last.body, last.label);
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

fetch("/api/info").then(async (reply) => {
  const data = await reply.json();
  if (!reply.ok) throw new Error(data.error);
  $("info").textContent = `Collection “${data.collection}”: ${data.count.toLocaleString("en")} items · ` +
    `model ${data.model_id || "(any)"}, ${data.dim}-d vectors`;
}).catch((err) => { $("info").textContent = `The search service is not answering: ${err.message}`; });
