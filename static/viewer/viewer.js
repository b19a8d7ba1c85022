// The live view: frames from /ws/view/<token>/ under a drawn browser chrome, in a 1024x600
// window scaled to fit. With a control token, clicks and keys become send-message
// interactions in the contract's coordinates: x 0-1024, y = page y + 155 (spec decision 6).
(function () {
  "use strict";
  var win = document.getElementById("window");
  if (!win) return;
  var token = win.dataset.token;
  var control = win.dataset.control === "1";
  var width = Number(win.dataset.width), height = Number(win.dataset.height);
  var chrome = Number(win.dataset.chrome);
  var frame = document.getElementById("frame");
  var urlEl = document.getElementById("url");
  var titleEl = document.getElementById("title");
  var statusEl = document.getElementById("status");
  var takeoverBtn = document.getElementById("takeover");
  var scale = 1, ws = null, retry = 0, finished = false, humanControl = false;
  var typed = "", typeTimer = null;
  var NAMED_KEYS = ["Enter", "Escape", "Tab", "Backspace", "Delete", "ArrowUp", "ArrowDown",
    "ArrowLeft", "ArrowRight", "PageUp", "PageDown", "Home", "End", "Insert", "Space",
    "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "F10", "F11", "F12"];

  function fit() {
    scale = Math.min(window.innerWidth / width, window.innerHeight / height);
    win.style.transform = "scale(" + scale + ")";
  }
  window.addEventListener("resize", fit);
  fit();

  function setStatus(text, ok) {
    statusEl.textContent = text;
    statusEl.classList.toggle("off", !ok);
  }

  function setPage(url, title) {
    if (url) urlEl.textContent = url;
    if (title !== undefined && title !== null) {
      titleEl.textContent = title || url || "New tab";
      document.title = "Live view · " + (title || url || "Enigma");
    }
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function interact(action) {
    send({ actionType: "interaction", action: action });
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + "/ws/view/" + encodeURIComponent(token) + "/");
    ws.onopen = function () { retry = 0; };
    ws.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type === "frame") {
        frame.src = "data:image/jpeg;base64," + msg.data;
        setPage(msg.url, msg.title);
      } else if (msg.type === "hello") {
        setStatus("Live", true);
        setPage(msg.url, msg.title);
      } else if (msg.type === "event") {
        var data = msg.data || {};
        if (data.type === "takeover") {
          humanControl = data.control === "human";
          if (takeoverBtn) takeoverBtn.textContent = humanControl ? "Release control" : "Take over";
        }
      } else if (msg.type === "end_session") {
        finished = true;
        setStatus("Session ended (" + msg.reason + ")", false);
      } else if (msg.type === "error") {
        setStatus(msg.error, false);
        setTimeout(function () { if (!finished) setStatus("Live", true); }, 3000);
      }
    };
    ws.onclose = function (event) {
      if (finished || event.code === 4410) { finished = true; return; }
      if (event.code === 4403) { setStatus("This viewer link is invalid or has expired", false); return; }
      setStatus("Reconnecting…", false);
      retry = Math.min(retry + 1, 5);
      setTimeout(connect, 500 * retry);
    };
  }

  function pagePoint(event) {
    var rect = frame.getBoundingClientRect();
    var x = (event.clientX - rect.left) / scale;
    var y = (event.clientY - rect.top) / scale;
    if (x < 0 || y < 0 || x > width || y > height - chrome) return null;
    return { x: Math.round(x), y: Math.round(y) + chrome };
  }

  function flushTyped() {
    if (typed) interact({ type: "TYPE", text: typed });
    typed = "";
    typeTimer = null;
  }

  if (control) {
    frame.classList.add("control");
    frame.addEventListener("click", function (event) {
      var point = pagePoint(event);
      frame.focus();
      if (point && event.detail < 2) { flushTyped(); interact({ type: "CLICK", x: point.x, y: point.y }); }
    });
    frame.addEventListener("dblclick", function (event) {
      var point = pagePoint(event);
      if (point) interact({ type: "DOUBLE_CLICK", x: point.x, y: point.y });
    });
    frame.addEventListener("keydown", function (event) {
      var mods = [];
      if (event.ctrlKey) mods.push("Control");
      if (event.altKey) mods.push("Alt");
      if (event.metaKey) mods.push("Meta");
      if (event.key.length === 1 && !mods.length) {
        typed += event.key;  // coalesce a burst of characters into one TYPE
        if (typeTimer) clearTimeout(typeTimer);
        typeTimer = setTimeout(flushTyped, 150);
      } else if (event.key.length === 1 || NAMED_KEYS.indexOf(event.key) >= 0) {
        flushTyped();
        if (event.shiftKey && event.key.length !== 1) mods.push("Shift");
        interact({ type: "KEY_PRESS", key: mods.concat([event.key]).join("+") });
      } else {
        return;
      }
      event.preventDefault();
    });
    if (takeoverBtn) {
      takeoverBtn.addEventListener("click", function () {
        interact({ type: humanControl ? "releaseControl" : "takeOverControl" });
      });
    }
  }
  connect();
})();
