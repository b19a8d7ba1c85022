// Shared by the hostile pages and their workers: try to reach a URL with one web API and
// report what happened. Reports go to a BroadcastChannel, which pages, dedicated, shared and
// service workers all have; a page prints them into <pre id="log"> for "extract the text".
// Shorter than the task's wait, so every outcome is on the page when the text is read.
const EGRESS_WAIT_MS = 700;
const egressChannel = new BroadcastChannel("egress");

function egressReport(line) {
  if (typeof document !== "undefined") egressShow(line);
  egressChannel.postMessage(line);
}

function egressShow(line) {
  let log = document.getElementById("log");
  if (!log) {
    log = document.createElement("pre");
    log.id = "log";
    document.body.appendChild(log);
  }
  log.textContent += line + "\n";
}

function egressParams() {
  return new URLSearchParams(self.location.search);
}

function egressTimeout(promise) {
  return Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve("timeout"), EGRESS_WAIT_MS))]);
}

function egressSocketUrl(url) {
  return url.replace(/^http/, "ws");
}

const EGRESS_APIS = {
  fetch: async (url) => {
    const response = await fetch(url, { method: "POST", body: "fetch-body", mode: "cors" });
    return "status " + response.status + " " + (await response.text()).slice(0, 60);
  },
  xhr: (url) => new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("GET", url);
    xhr.onload = () => resolve("status " + xhr.status + " " + xhr.responseText.slice(0, 60));
    xhr.onerror = () => resolve("error");
    xhr.send();
  }),
  beacon: async (url) => "queued " + navigator.sendBeacon(url, "beacon-body"),
  eventsource: (url) => new Promise((resolve) => {
    const source = new EventSource(url);
    source.onmessage = (event) => { source.close(); resolve("message " + event.data); };
    source.onerror = () => { source.close(); resolve("error"); };
  }),
  websocket: (url) => new Promise((resolve) => {
    const socket = new WebSocket(egressSocketUrl(url));
    socket.onmessage = (event) => { socket.close(); resolve("message " + event.data); };
    socket.onerror = () => resolve("error");
  }),
  img: (url) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve("loaded");
    img.onerror = () => resolve("error");
    img.src = url;
  }),
  iframe: (url) => new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.onload = () => resolve("loaded");
    frame.src = url;
    document.body.appendChild(frame);
  }),
};

// Try every api in `apis` at once against base + "/" + api; resolves when all have settled.
async function egressAttempt(where, apis, base) {
  await Promise.all(apis.map(async (api) => {
    let outcome;
    if (!(api in EGRESS_APIS)) outcome = "unknown api";
    else {
      try {
        outcome = await egressTimeout(EGRESS_APIS[api](base + "/" + api));
      } catch (error) {
        outcome = "threw " + error.name;
      }
    }
    egressReport("ran " + where + " " + api + ": " + outcome);
  }));
  egressReport("done " + where);
}
