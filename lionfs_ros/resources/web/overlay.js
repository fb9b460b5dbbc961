// The live overlay: a Foxglove WebSocket protocol client in plain JavaScript (no build step).
// It subscribes to the bridge's channels (see /bridge.json): the camera (foxglove.CompressedImage,
// protobuf), the assistant's answers and guidance events (JSON) and /diagnostics (JSON).
"use strict";

const SUBPROTOCOL = "foxglove.sdk.v1";   // what foxglove-sdk's server speaks
const OP_MESSAGE_DATA = 1;                // binary opcode of a message on a subscribed channel
const MESSAGE_DATA_HEADER = 13;           // opcode u8 + subscription id u32 + log time u64
const RECONNECT_MS = 1000;
const CAMERA_STALE_MS = 2000;             // no frame for this long: the camera pill turns red
const HISTORY_LENGTH = 8;
const $ = (id) => document.getElementById(id);

// --- protobuf, only what foxglove.CompressedImage needs -------------------------------------
function readVarint(bytes, pos) {
  let value = 0, scale = 1, byte;
  do {
    byte = bytes[pos++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte & 0x80);
  return [value, pos];
}

function protoFields(bytes) {  // field number -> value (varint number or Uint8Array)
  const fields = {};
  let pos = 0;
  while (pos < bytes.length) {
    let key, value;
    [key, pos] = readVarint(bytes, pos);
    const wire = key & 7, field = Math.floor(key / 8);
    if (wire === 0) { [value, pos] = readVarint(bytes, pos); }
    else if (wire === 2) { let n; [n, pos] = readVarint(bytes, pos); value = bytes.subarray(pos, pos + n); pos += n; }
    else if (wire === 1) { pos += 8; continue; }
    else if (wire === 5) { pos += 4; continue; }
    else { throw new Error("unsupported protobuf wire type " + wire); }
    fields[field] = value;
  }
  return fields;
}

function decodeCompressedImage(bytes) {
  const f = protoFields(bytes), stamp = f[1] ? protoFields(f[1]) : {};
  return { sec: stamp[1] || 0, nsec: stamp[2] || 0, data: f[2] || new Uint8Array(),
           format: f[3] ? new TextDecoder().decode(f[3]) : "jpeg" };
}

// --- what the page shows ---------------------------------------------------------------------
const state = { lastFrameMs: 0, frames: 0, imageUrl: null, turn: null };

function showFrame(image) {
  const url = URL.createObjectURL(new Blob([image.data], { type: "image/" + image.format }));
  const img = $("camera");
  img.onload = () => {
    $("stage").style.aspectRatio = img.naturalWidth + " / " + img.naturalHeight;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = url;
  };
  img.src = url;
  img.dataset.stamp = image.sec + "." + String(image.nsec).padStart(9, "0");
  $("no-camera").hidden = true;
  state.lastFrameMs = performance.now();
  state.frames += 1;
}

function showAnswer(msg) {
  const answer = $("answer");
  if (state.turn !== null && msg.turn_index < state.turn) return;  // a late message of an older turn
  if (msg.turn_index === state.turn && answer.dataset.final === "true" && !msg.is_final) return;
  state.turn = msg.turn_index;
  answer.textContent = msg.text;
  answer.dataset.turn = String(msg.turn_index);
  answer.dataset.final = String(msg.is_final);
  if (msg.is_final) {
    const item = document.createElement("li");
    item.textContent = msg.text;
    item.dataset.turn = String(msg.turn_index);
    $("history").prepend(item);
    while ($("history").children.length > HISTORY_LENGTH) $("history").lastChild.remove();
  }
}

function showRegions(event) {
  // The boxes of the latest response: a new response clears the previous one's, its own come with its events.
  const layer = $("regions");
  if (!event.regions.length && event.event !== "RESPONSE_TRIGGERED") return;
  layer.replaceChildren();
  layer.dataset.turn = String(event.turn_index);
  for (const r of event.regions) {
    const box = document.createElement("div");
    box.className = "region";
    Object.assign(box.style, { left: 100 * r.x_min + "%", top: 100 * r.y_min + "%",
                               width: 100 * (r.x_max - r.x_min) + "%", height: 100 * (r.y_max - r.y_min) + "%" });
    box.dataset.label = r.label;
    if (r.label) { const tag = document.createElement("span"); tag.textContent = r.label; box.append(tag); }
    layer.append(box);
  }
}

function pill(id, level, text) { const p = $(id); p.dataset.level = level; p.textContent = text; }

function showDiagnostics(msg) {
  for (const s of msg.status) {
    const v = s.values;
    if (s.name.endsWith(": assistant")) {
      pill("node-health", s.level, `assistant: ${Number(v.input_rate_hz || 0).toFixed(1)} Hz in, decision p50 ` +
           `${Number(v.latency_p50_ms || 0).toFixed(0)} ms, ${v.dropped || 0} dropped · ${s.message}`);
    } else if (s.name.endsWith(": websocket")) {
      pill("bridge-health", s.level, `bridge: ${v.clients} client(s), ${v.dropped_total} dropped · ${s.message}`);
    }
  }
}

setInterval(() => {
  if (!state.lastFrameMs) return;
  const age = performance.now() - state.lastFrameMs;
  pill("camera-health", age > CAMERA_STALE_MS ? "error" : "ok",
       age > CAMERA_STALE_MS ? `camera: no frame for ${(age / 1000).toFixed(1)} s` : `camera: ${state.frames} frames`);
}, 500);

// --- the Foxglove WebSocket protocol -----------------------------------------------------------
function connect(config) {
  const url = new URLSearchParams(location.search).get("ws") || `ws://${location.hostname}:${config.ws_port}`;
  const handlers = {
    [config.topics.camera]: (bytes) => showFrame(decodeCompressedImage(bytes)),
    [config.topics.assistant]: (bytes) => showAnswer(JSON.parse(new TextDecoder().decode(bytes))),
    [config.topics.guidance]: (bytes) => showRegions(JSON.parse(new TextDecoder().decode(bytes))),
    [config.topics.diagnostics]: (bytes) => showDiagnostics(JSON.parse(new TextDecoder().decode(bytes))),
  };
  const subscriptions = new Map();  // subscription id -> handler
  let nextId = 1;
  const ws = new WebSocket(url, [SUBPROTOCOL]);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => pill("link", "ok", "connected");
  ws.onmessage = (event) => {
    if (typeof event.data === "string") {
      const msg = JSON.parse(event.data);
      if (msg.op !== "advertise") return;
      const wanted = msg.channels.filter((c) => handlers[c.topic]);
      const subscribe = wanted.map((c) => {
        const id = nextId++;
        subscriptions.set(id, handlers[c.topic]);
        return { id, channelId: c.id };
      });
      if (subscribe.length) ws.send(JSON.stringify({ op: "subscribe", subscriptions: subscribe }));
      return;
    }
    const view = new DataView(event.data);
    if (view.getUint8(0) !== OP_MESSAGE_DATA) return;
    const handler = subscriptions.get(view.getUint32(1, true));
    if (!handler) return;
    try { handler(new Uint8Array(event.data, MESSAGE_DATA_HEADER)); }
    catch (err) { console.error("bad message", err); }
  };
  ws.onclose = () => {
    pill("link", "error", "disconnected, retrying");
    setTimeout(() => connect(config), RECONNECT_MS);
  };
}

fetch("bridge.json").then((r) => r.json()).then(connect)
  .catch((err) => pill("link", "error", "no bridge config: " + err));
