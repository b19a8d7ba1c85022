// The live view: the page under a drawn browser chrome, in a 1024x600 window scaled to fit.
// Video comes over WebRTC from the session's WHEP endpoint (/whep/<token>) when the browser can;
// until it plays, or when it fails, the JPEG frames of /ws/view/<token>/ are shown. The socket
// always carries the page's URL and title, the session's events and, with a control token, the
// clicks and keys: send-message interactions in the contract's coordinates, x 0-1024,
// y = page y + 155 (spec decision 6).
(function () {
  "use strict";
  var win = document.getElementById("window");
  if (!win) return;
  var token = win.dataset.token;
  var control = win.dataset.control === "1";
  var width = Number(win.dataset.width), height = Number(win.dataset.height);
  var chrome = Number(win.dataset.chrome);
  var frame = document.getElementById("frame");
  var video = document.getElementById("video");
  var surface = document.getElementById("page");
  var whepUrl = win.dataset.whep;
  var urlEl = document.getElementById("url");
  var titleEl = document.getElementById("title");
  var statusEl = document.getElementById("status");
  var takeoverBtn = document.getElementById("takeover");
  var scale = 1, ws = null, retry = 0, finished = false, humanControl = false;
  var typed = "", typeTimer = null;
  var rtc = null;  // {pc, location, playing} while WebRTC is tried or plays
  var videoRetry = 0, videoTimer = null;  // the next WebRTC try after a failed one
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

  function setHumanControl(on) {
    humanControl = on;
    if (takeoverBtn) takeoverBtn.textContent = on ? "Release control" : "Take over";
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
        if (!(rtc && rtc.playing)) frame.src = "data:image/jpeg;base64," + msg.data;
        setPage(msg.url, msg.title);
      } else if (msg.type === "hello") {  // also after a reconnect: the state, events missed or not
        setStatus("Live", true);
        setPage(msg.url, msg.title);
        setHumanControl(!!msg.humanControl);
      } else if (msg.type === "event") {
        var data = msg.data || {};
        if (data.type === "takeover") setHumanControl(data.control === "human");
      } else if (msg.type === "end_session") {
        finished = true;
        stopVideo();
        setStatus("Session ended (" + msg.reason + ")", false);
      } else if (msg.type === "error") {
        setStatus(msg.error, false);
        setTimeout(function () { if (!finished) setStatus("Live", true); }, 3000);
      }
    };
    ws.onclose = function (event) {
      console.info("Live view: socket closed (" + event.code + ")");
      if (finished || event.code === 4410) { finished = true; return; }
      if (event.code === 4403) { setStatus("This viewer link is invalid or has expired", false); return; }
      setStatus("Reconnecting…", false);
      retry = Math.min(retry + 1, 5);
      setTimeout(connect, 500 * retry);
    };
  }

  // ----- WebRTC (WHEP): recvonly video and audio, the offer posted after ICE gathering -----

  function showVideo(on) {
    video.classList.toggle("shown", on);
    frame.hidden = on;
    win.dataset.media = on ? "webrtc" : "frames";
  }

  function stopVideo() {
    if (videoTimer) { clearTimeout(videoTimer); videoTimer = null; }
    if (!rtc) return;
    var ended = rtc;
    rtc = null;
    showVideo(false);
    ended.pc.close();
    if (ended.location) fetch(ended.location, { method: "DELETE", keepalive: true }).catch(function () {});
  }

  // A try that failed for a passing reason (no picture in time, a dropped connection, a 5xx or
  // 429, the network) is tried again after 2, 4, 8, 16, then every 30 s, the frames shown
  // meanwhile; a refusal (another 4xx: the link expired, the session ended) is final.
  function videoFailed(attempt, why, final) {
    if (rtc !== attempt) return;
    stopVideo();
    if (finished || final) { console.warn("Live view: frames only (" + why + ")"); return; }
    videoRetry = Math.min(videoRetry + 1, 5);
    var delay = Math.min(1000 * Math.pow(2, videoRetry), 30000);
    console.warn("Live view: video " + why + "; frames until it is tried again in " + delay / 1000 + " s");
    videoTimer = setTimeout(function () { videoTimer = null; startVideo(); }, delay);
  }

  function gathered(pc) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      var timer = setTimeout(resolve, 2000);  // send what was gathered so far
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  // What a try received, for the console line of a try that showed nothing.
  function receivedSoFar(pc) {
    return pc.getStats().then(function (report) {
      var seen = [];
      report.forEach(function (s) {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          seen.push("packets " + s.packetsReceived + ", lost " + s.packetsLost + ", frames received " +
                    s.framesReceived + ", decoded " + s.framesDecoded + ", keyframes " + s.keyFramesDecoded +
                    ", PLI " + s.pliCount + ", NACK " + s.nackCount + ", codec " + s.decoderImplementation);
        } else if (s.type === "candidate-pair" && s.nominated) {
          seen.push("pair " + s.state + ", bytes in " + s.bytesReceived);
        } else if (s.type === "transport") {
          seen.push("dtls " + s.dtlsState + ", ice " + s.iceState);
        }
      });
      return seen.join("; ") || "no stats";
    }).catch(function (error) { return "no stats: " + error; });
  }

  function startVideo() {
    if (!whepUrl || typeof window.RTCPeerConnection !== "function" || finished) return;
    var pc;
    try {
      pc = new RTCPeerConnection({ iceServers: [] });
    } catch (e) {
      return;  // WebRTC disabled: frames only
    }
    var attempt = rtc = { pc: pc, location: null, playing: false };
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = function (event) {
      if (event.track.kind !== "video") return;
      video.srcObject = new MediaStream([event.track]);
      var started = video.play();  // played by script: not paused for being out of sight
      if (started && started.catch) started.catch(function () {});
    };
    pc.onconnectionstatechange = function () {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        videoFailed(attempt, "connection " + pc.connectionState, false);
      }
    };
    var playing = function () {
      if (rtc !== attempt || !video.videoWidth) return;
      attempt.playing = true;
      videoRetry = 0;
      showVideo(true);
    };
    video.onresize = playing;
    video.onloadeddata = playing;
    // No picture within 10 s (blocked UDP, a proxy, a loaded server): frames until the next try.
    setTimeout(function () {
      if (attempt.playing || rtc !== attempt) return;
      receivedSoFar(pc).then(function (seen) { videoFailed(attempt, "showed no picture in 10 s (" + seen + ")", false); });
    }, 10000);
    pc.createOffer().then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return gathered(pc); })
      .then(function () {
        return fetch(whepUrl, { method: "POST", headers: { "Content-Type": "application/sdp" },
                                body: pc.localDescription.sdp });
      })
      .then(function (response) {
        if (response.status !== 201) {
          var passing = response.status >= 500 || response.status === 429 || response.status === 408;
          videoFailed(attempt, "refused: WHEP answered " + response.status, !passing);
          return null;
        }
        var location = response.headers.get("Location");
        if (location) attempt.location = new URL(location, window.location.href).href;
        return response.text();
      })
      .then(function (answer) {
        if (answer === null || rtc !== attempt) return null;
        return pc.setRemoteDescription({ type: "answer", sdp: answer });
      })
      .catch(function (error) { videoFailed(attempt, "failed: " + error, false); });
  }
  window.addEventListener("pagehide", stopVideo);
  window.addEventListener("pageshow", function (event) { if (event.persisted && !rtc) startVideo(); });

  function pagePoint(event) {
    var rect = surface.getBoundingClientRect();
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
    surface.classList.add("control");
    surface.addEventListener("click", function (event) {
      var point = pagePoint(event);
      surface.focus();
      if (point && event.detail < 2) { flushTyped(); interact({ type: "CLICK", x: point.x, y: point.y }); }
    });
    surface.addEventListener("dblclick", function (event) {
      var point = pagePoint(event);
      if (point) interact({ type: "DOUBLE_CLICK", x: point.x, y: point.y });
    });
    surface.addEventListener("keydown", function (event) {
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
  startVideo();
})();
