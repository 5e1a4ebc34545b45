// The page of `pixelwise serve`: send a photo to POST /segment, draw its mask over it or blur its background.
"use strict";

const state = {
  model: null, photo: null, classes: null, counts: null, shown: new Set(), kept: new Set(), name: "", request: 0,
};
const $ = (id) => document.getElementById(id);

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

async function describeModel() {
  const response = await fetch("/model");
  state.model = await response.json();
  const { name, encoder, class_names: names, engine } = state.model;
  $("model").textContent = `${name} on ${encoder}, ${names.length} classes, run by ${engine}`;
  const colours = new Set(state.model.palette.map((colour) => colour.join()));
  if (colours.size < names.length) {
    say("this model's palette repeats colours: the page cannot tell those classes apart", true);
  }
  const background = names.indexOf("background");
  names.forEach((_, index) => {
    state.shown.add(index);
    if (index !== background) state.kept.add(index);
  });
}

// Class index of every pixel of the palette-PNG mask, read back through the palette's colours.
function classIndices(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const byColour = new Map(state.model.palette.map(([r, g, b], index) => [(r << 16) | (g << 8) | b, index]));
  const classes = new Uint8Array(bitmap.width * bitmap.height);
  const counts = new Array(state.model.class_names.length).fill(0);
  for (let pixel = 0; pixel < classes.length; pixel++) {
    const at = pixel * 4;
    const index = byColour.get((rgba[at] << 16) | (rgba[at + 1] << 8) | rgba[at + 2]) ?? 255;
    classes[pixel] = index;
    if (index < counts.length) counts[index]++;
  }
  return { classes, counts };
}

async function segment(file) {
  const request = ++state.request; // a later photo's answer wins over an earlier one still on its way
  say(`segmenting ${file.name}...`);
  $("result").hidden = true;
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("image", file);
  const response = await fetch("/segment?output=mask", { method: "POST", body: form });
  if (request !== state.request) return;
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ error: response.statusText }));
    return fail(`${response.status}: ${problem.error}`);
  }
  const maskBlob = await response.blob();
  const exact = { colorSpaceConversion: "none", premultiplyAlpha: "none" }; // mask colours read back as written
  let photo, mask;
  try {
    [photo, mask] = await Promise.all([createImageBitmap(file), createImageBitmap(maskBlob, exact)]);
  } catch {
    return fail(`${file.name}: segmented, but this browser cannot display its format`);
  }
  if (request !== state.request) return;
  if (photo.width !== mask.width || photo.height !== mask.height) {
    [photo, mask].forEach((bitmap) => bitmap.close());
    return fail(`the mask (${mask.width}x${mask.height}) does not match the photo (${photo.width}x${photo.height})`);
  }
  state.photo?.close();
  Object.assign(state, { photo, ...classIndices(mask), name: file.name.replace(/\.[^.]*$/, "") });
  mask.close();
  const download = $("download");
  if (download.href) URL.revokeObjectURL(download.href);
  download.href = URL.createObjectURL(maskBlob);
  download.download = `${state.name}_mask.png`;
  drawLegend();
  draw();
  $("result").hidden = false;
  say(`${file.name}: ${photo.width}x${photo.height}`);
  document.body.dataset.state = "ready";
}

function fail(message) {
  say(message, true);
  document.body.dataset.state = "error";
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function drawLegend() {
  const chosen = mode() === "blur" ? state.kept : state.shown;
  $("toggle-heading").textContent = mode() === "blur" ? "keep sharp" : "show";
  const total = state.classes.length;
  const rows = state.counts.flatMap((count, index) => {
    if (!count) return [];
    const row = document.createElement("tr");
    row.dataset.class = state.model.class_names[index];
    row.dataset.pixels = count;
    const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: chosen.has(index) });
    box.addEventListener("change", () => {
      box.checked ? chosen.add(index) : chosen.delete(index);
      draw();
    });
    const [r, g, b] = state.model.palette[index];
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = `rgb(${r}, ${g}, ${b})`;
    const cells = [box, [swatch, state.model.class_names[index]], `${((100 * count) / total).toFixed(1)}%`];
    for (const content of cells) {
      const cell = document.createElement("td");
      cell.append(...[content].flat());
      row.append(cell);
    }
    return [row];
  });
  $("legend").tBodies[0].replaceChildren(...rows);
}

// An RGBA layer over the photo: each chosen class's pixels set by `paint`, the rest transparent.
function layer(chosen, paint) {
  const { width, height } = state.photo;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  state.classes.forEach((index, pixel) => {
    if (chosen.has(index)) paint(image.data, pixel * 4, index);
  });
  context.putImageData(image, 0, 0);
  return canvas;
}

function draw() {
  const { width, height } = state.photo;
  const view = $("view");
  Object.assign(view, { width, height });
  const context = view.getContext("2d");
  if (mode() === "blur") {
    context.filter = `blur(${Math.max(2, Math.round(0.02 * Math.max(width, height)))}px)`;
    context.drawImage(state.photo, 0, 0);
    context.filter = "none";
    const sharp = layer(state.kept, (data, at) => { data[at + 3] = 255; });
    const sharpContext = sharp.getContext("2d");
    sharpContext.globalCompositeOperation = "source-in";
    sharpContext.drawImage(state.photo, 0, 0);
    context.drawImage(sharp, 0, 0);
  } else {
    context.drawImage(state.photo, 0, 0);
    const alpha = Math.round(2.55 * Number($("opacity").value));
    context.drawImage(layer(state.shown, (data, at, index) => {
      data.set([...state.model.palette[index], alpha], at);
    }), 0, 0);
  }
  view.dataset.mode = mode();
}

function choose(files) {
  if (files && files.length) segment(files[0]).catch((error) => fail(String(error)));
}

window.addEventListener("DOMContentLoaded", async () => {
  try {
    await describeModel();
  } catch (error) {
    say(`cannot reach the server: ${error}`, true);
    return;
  }
  $("file").addEventListener("change", (event) => choose(event.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files);
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      $("opacity-control").hidden = mode() === "blur";
      drawLegend();
      draw();
    });
  }
  $("opacity").addEventListener("input", draw);
  document.body.dataset.state = "idle";
});
