// A dedicated, shared or service worker that tries the page's APIs from its own global scope.
importScripts("/p/egress.js");
const params = egressParams();
const ctx = params.get("ctx");
const run = () => egressAttempt(ctx, params.get("apis").split(","), params.get("target"));
if (ctx === "serviceworker") {
  self.addEventListener("install", (event) => event.waitUntil(run()));
} else {
  run();
}
