// The console's behaviour: live fleet rows, power buttons, the exec console, file transfers and
// the budget form. Everything goes through the admin API with the session cookie; the API refuses
// what the session's key may not do, and its words are shown as they are.
"use strict";

function show(id, text, problem) {
  const el = document.getElementById(id);
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("problem", Boolean(problem));
}

async function problemText(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(url, init);
}

// The fleet table follows the server's event stream.
function followFleet() {
  const table = document.getElementById("fleet");
  if (!table) return;
  const events = new EventSource(table.dataset.live);
  events.addEventListener("fleet", (e) => {
    document.getElementById("fleet-rows").innerHTML = e.data;
    table.dataset.updated = String(Date.now());
  });
}

// Start and stop, for rooms (data-room="ns/name") and instances (data-instance="id").
async function power(button) {
  const action = button.dataset.action;
  let url;
  if (button.dataset.room) {
    const [ns, name] = button.dataset.room.split("/");
    url = `/api/fleet/rooms/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${action}`;
  } else {
    url = `/api/ec2/instances/${encodeURIComponent(button.dataset.instance)}/${action}`;
  }
  button.disabled = true;
  try {
    const response = await call("POST", url);
    if (response.ok) {
      show("notice", `${action === "start" ? "Starting" : "Stopping"}: the controller is on it.`);
    } else {
      show("notice", await problemText(response), true);
    }
  } finally {
    button.disabled = false;
  }
}

function decode(chunk) {
  if (chunk.encoding === "base64") {
    return new TextDecoder().decode(Uint8Array.from(atob(chunk.data), (c) => c.charCodeAt(0)));
  }
  return chunk.data;
}

// One server-sent event of the exec stream.
function execEvent(raw, output) {
  let name = "message";
  const data = [];
  for (const line of raw.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  if (data.length === 0) return;
  const value = JSON.parse(data.join("\n"));
  if (name === "stdout" || name === "stderr") {
    const span = document.createElement("span");
    span.className = name;
    span.textContent = decode(value);
    output.appendChild(span);
  } else if (name === "exit") {
    const cut = value.stdout_truncated || value.stderr_truncated ? "; output was cut at the cap" : "";
    const how = value.exit_code !== null && value.exit_code !== undefined
      ? `exit ${value.exit_code}` : (value.timed_out ? "timed out" : value.exit);
    show("exec-result", `${how} after ${value.duration_ms} ms${cut}`, value.exit_code !== 0);
  } else if (name === "error") {
    show("exec-result", value.detail, true);
  }
}

async function exec(form) {
  const output = document.getElementById("exec-output");
  output.textContent = "";
  show("exec-result", "running…");
  const command = form.elements.command.value;
  const url = `/api/ec2/instances/${encodeURIComponent(form.dataset.instance)}/exec/stream`;
  const response = await call("POST", url, { command });
  if (!response.ok) {
    show("exec-result", await problemText(response), true);
    return;
  }
  const reader = response.body.getReader();
  const text = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += text.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      execEvent(buffered.slice(0, end), output);
      buffered = buffered.slice(end + 2);
    }
  }
}

function upload(form) {
  const file = form.elements.file.files[0];
  if (!file) return;
  let path = form.elements.destination_path.value;
  if (path.endsWith("/")) path += file.name;
  const body = new FormData();
  body.append("file", file);
  const progress = document.getElementById("upload-progress");
  progress.value = 0;
  const request = new XMLHttpRequest();
  const id = encodeURIComponent(form.dataset.instance);
  request.open("POST", `/api/ec2/instances/${id}/files?destination_path=${encodeURIComponent(path)}`);
  request.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) {
      progress.value = Math.round((e.loaded / e.total) * 100);
      progress.dataset.moves = String(Number(progress.dataset.moves || 0) + 1);
    }
  });
  request.addEventListener("load", () => {
    let answer = {};
    try { answer = JSON.parse(request.responseText); } catch (_) { /* not JSON */ }
    if (request.status === 201) {
      progress.value = 100;
      show("upload-result", `Uploaded ${answer.bytes} bytes to ${answer.path}, SHA-256 ${answer.sha256}`);
    } else {
      show("upload-result", answer.detail || `upload failed: ${request.status}`, true);
    }
  });
  request.addEventListener("error", () => show("upload-result", "the upload was cut off", true));
  show("upload-result", "uploading…");
  request.send(body);
}

function download(form) {
  const path = form.elements.path.value.replace(/^\/+/, "");
  const id = encodeURIComponent(form.dataset.instance);
  window.location.href = `/api/ec2/instances/${id}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

async function saveBudget(form) {
  const change = {};
  for (const input of form.querySelectorAll("input")) {
    const value = input.value.trim();
    if (value === "") continue;
    change[input.name] = input.name === "maxInstanceType" ? value : Number(value);
  }
  const response = await call("PUT", "/api/ec2/budget", change);
  show("budget-result", response.ok ? "Saved." : await problemText(response), !response.ok);
}

document.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  if (button) power(button);
});

document.addEventListener("submit", (e) => {
  const handlers = { exec, upload, download, budget: saveBudget };
  const handler = handlers[e.target.id];
  if (!handler) return;
  e.preventDefault();
  handler(e.target);
});

document.addEventListener("DOMContentLoaded", followFleet);
