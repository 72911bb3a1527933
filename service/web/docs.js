// /docs and /redoc with API keys on: the OpenAPI document is fetched with the key the page was given (kept in
// sessionStorage, shared with the page at /), and Swagger UI sends it with every "Try it out".
"use strict";

const KEY = "initserve.apiKey";
const box = document.getElementById("key-form");

function auth() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function load() {
  const response = await fetch(box.dataset.openapi, { headers: auth() });
  if (response.status === 401) {
    box.hidden = false;
    document.getElementById("key-status").textContent = "this server needs an API key";
    return;
  }
  box.hidden = true;
  const spec = await response.json();
  const target = document.getElementById("api");
  if (window.SwaggerUIBundle) {
    window.ui = SwaggerUIBundle({
      spec,
      domNode: target,
      layout: "BaseLayout",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      requestInterceptor: (request) => Object.assign(request, { headers: { ...request.headers, ...auth() } }),
    });
  } else {
    Redoc.init(spec, {}, target);
  }
}

box.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("api-key").value.trim());
  load();
});
load();
