// The console's own script (no inline script anywhere: the CSP forbids it).
"use strict";

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

// Copy buttons: <button data-copy="#selector">
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }
});

// Forms that ask first: <form data-confirm="question">
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// The playground: streams /v1/chat/completions with the session's short-lived key.
const keys = {};

async function playgroundKey(workspace) {
  const typed = document.getElementById("pg-key").value.trim();
  if (typed) return typed;
  const held = keys[workspace];
  if (held && new Date(held.expires_at) - Date.now() > 5 * 60 * 1000) return held.key;
  const response = await fetch("/console/api/playground-key", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()},
    body: JSON.stringify({workspace}),
    credentials: "same-origin",
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || response.statusText);
  keys[workspace] = body;
  return body.key;
}

function readSse(buffer, onEvent) {
  let cut;
  while ((cut = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    for (const line of block.split("\n")) {
      if (line.startsWith("data: ") && line !== "data: [DONE]") onEvent(JSON.parse(line.slice(6)));
    }
  }
  return buffer;
}

function setupPlayground(form) {
  const answer = document.getElementById("pg-answer");
  const usage = document.getElementById("pg-usage");
  const error = document.getElementById("pg-error");
  const send = document.getElementById("pg-send");
  const stop = document.getElementById("pg-stop");
  let controller = null;

  stop.addEventListener("click", () => controller && controller.abort());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const model = document.getElementById("pg-model");
    const option = model.selectedOptions[0];
    const messages = [];
    const system = document.getElementById("pg-system").value.trim();
    if (system) messages.push({role: "system", content: system});
    messages.push({role: "user", content: document.getElementById("pg-message").value});
    const request = {
      model: model.value, messages, stream: true,
      temperature: Number(document.getElementById("pg-temperature").value),
      max_tokens: Number(document.getElementById("pg-max-tokens").value),
    };
    if (document.getElementById("pg-json").checked) request.response_format = {type: "json_object"};
    answer.textContent = "";
    usage.textContent = "";
    error.hidden = true;
    send.disabled = true;
    stop.disabled = false;
    controller = new AbortController();
    try {
      const key = await playgroundKey(document.getElementById("pg-workspace").value);
      const response = await fetch("/v1/chat/completions", {
        method: "POST", signal: controller.signal,
        headers: {"Content-Type": "application/json", "Authorization": "Bearer " + key},
        body: JSON.stringify(request),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(`${response.status}: ${body.message || response.statusText}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer = readSse(buffer + decoder.decode(value, {stream: true}), (chunk) => {
          const choice = chunk.choices && chunk.choices[0];
          if (choice && choice.delta && choice.delta.content) answer.textContent += choice.delta.content;
          if (chunk.usage) {
            const u = chunk.usage;
            const cost = (u.prompt_tokens * Number(option.dataset.in) + u.completion_tokens * Number(option.dataset.out)) / 1000;
            usage.textContent = `${u.prompt_tokens} prompt + ${u.completion_tokens} completion tokens · €${cost.toFixed(6)}` +
              (choice && choice.finish_reason ? ` · finish: ${choice.finish_reason}` : "");
            usage.dataset.promptTokens = u.prompt_tokens;
            usage.dataset.completionTokens = u.completion_tokens;
          }
        });
      }
    } catch (problem) {
      if (problem.name !== "AbortError") {
        error.textContent = problem.message;
        error.hidden = false;
      }
    } finally {
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("playground");
  if (form) setupPlayground(form);
});
