// Enigma dashboard: small progressive enhancements, no framework, no build step.
(function () {
  "use strict";

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function post(url, data) {
    return fetch(url, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, error: "Unexpected response (" + r.status + "). Reload the page and try again." }; });
    }, function () { return { ok: false, error: "Network error: check your connection and try again." }; });
  }

  function flash(text, kind) {
    var box = document.querySelector(".flashes");
    if (!box) {
      box = document.createElement("div");
      box.className = "flashes";
      var main = document.querySelector(".main") || document.body;
      main.insertBefore(box, main.firstChild);
    }
    var el = document.createElement("div");
    el.className = "flash flash-" + (kind || "success");
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.textContent = text;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, kind === "error" ? 8000 : 4000);
  }

  // Dismiss flashes, confirm destructive forms, auto-submit selects, copy buttons.
  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismiss.parentElement.remove();
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.dataset.copy);
      var text = source ? source.textContent : "";
      var done = function () { copy.textContent = "Copied"; setTimeout(function () { copy.textContent = "Copy"; }, 1600); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, done);
      else {
        var range = document.createRange(); range.selectNodeContents(source);
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        try { document.execCommand("copy"); } catch (e) { /* the text stays selected for Ctrl+C */ }
        done();
      }
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var message = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (message && !window.confirm(message)) { event.preventDefault(); return; }
    if (form.dataset.loading) {
      var btn = form.querySelector("[type=submit]");
      if (btn) { btn.disabled = true; btn.classList.add("loading"); btn.textContent = form.dataset.loading; }
    }
    if (!form.hasAttribute("data-ajax")) return;
    event.preventDefault();
    var data = new FormData(form);
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    post(form.getAttribute("action"), data).then(function (body) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (body.ok) {
        flash(body.message, "success");
        if (form.hasAttribute("data-reset")) form.reset();
        if (submitter && submitter.value === "terminate") submitter.textContent = "Terminating…";
        document.dispatchEvent(new CustomEvent("dashboard:changed"));
      } else flash(body.error, "error");
    });
  });
  document.querySelectorAll("[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Session list: refresh the rows, every 3 s while a session is live, else every 15 s.
  var rows = document.getElementById("session-rows");
  if (rows) {
    var pollRows = function () {
      fetch(rows.dataset.poll, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error(r.status);
        var live = r.headers.get("X-Any-Live") === "1";
        return r.text().then(function (html) {
          rows.innerHTML = html;
          var status = document.getElementById("poll-status");
          if (status) status.textContent = live ? "Updating live…" : "Up to date.";
          setTimeout(pollRows, live ? 3000 : 15000);
        });
      }).catch(function () { setTimeout(pollRows, 15000); });
    };
    setTimeout(pollRows, rows.dataset.live === "1" ? 3000 : 15000);
  }
  document.addEventListener("click", function (event) {
    var row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a,button")) location.href = row.dataset.href;
  });

  // Session page: poll state, tasks and new timeline events.
  var session = document.getElementById("session");
  if (session) {
    var after = 0, timer = null, live = session.dataset.live === "1";
    var timeline = document.getElementById("timeline");
    var $ = function (id) { return document.getElementById(id); };
    var iframe = $("viewer");
    if (iframe) iframe.addEventListener("load", function () { var l = $("viewer-loading"); if (l) l.remove(); });
    var addEvents = function (events) {
      if (!events.length) return;
      var empty = timeline.querySelector(".timeline-empty");
      if (empty) empty.remove();
      events.forEach(function (e) {
        var li = document.createElement("li");
        li.className = "ev ev-" + e.kind.replace(/[^a-z_:-]/gi, "");
        var time = document.createElement("time");
        time.dateTime = e.at;
        time.textContent = new Date(e.at).toLocaleTimeString();
        var kind = document.createElement("span");
        kind.className = "ev-kind";
        kind.textContent = e.kind.replace(/_/g, " ");
        var text = document.createElement("span");
        text.className = "ev-text";
        text.textContent = e.text;
        li.append(time, kind, text);
        timeline.insertBefore(li, timeline.firstChild);
        after = Math.max(after, e.id);
      });
    };
    var poll = function () {
      clearTimeout(timer);
      fetch(session.dataset.poll + "?after=" + after, { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (s) {
          $("s-state").textContent = s.stateLabel;
          $("s-state").className = "badge badge-lg badge-" + s.stateTone;
          $("s-cost").textContent = s.cost;
          $("s-duration").textContent = s.duration;
          $("s-tokens").textContent = s.tokens;
          if (s.url) $("s-url").textContent = s.url;
          $("tasks").innerHTML = s.tasksHtml;
          $("btn-pause").hidden = s.paused;
          $("btn-resume").hidden = !s.paused;
          $("guardrail").hidden = !s.guardrail;
          if (s.guardrail) $("guardrail-question").textContent = s.guardrail;
          addEvents(s.events);
          if (!timeline.children.length) timeline.innerHTML = '<li class="timeline-empty muted">No events yet.</li>';
          live = s.live;
          $("controls").hidden = !live;
          $("task-form").hidden = !live;
          $("s-ended").hidden = live;
          $("s-reason").textContent = s.endReason ? " (" + s.endReason + ")" : "";
          $("timeline-status").textContent = live ? "Live" : "";
          if (!live) {
            var card = document.querySelector(".viewer-card");
            if (card && !card.dataset.ended) { card.dataset.ended = "1"; card.classList.add("ended"); }
          }
          timer = setTimeout(poll, live ? 1500 : (s.events.length ? 1500 : 10000));
        })
        .catch(function () { $("timeline-status").textContent = "Reconnecting…"; timer = setTimeout(poll, 5000); });
    };
    document.addEventListener("dashboard:changed", function () { setTimeout(poll, 300); });
    poll();
    recordingPlayer(function () { return live; });
  }

  // Session page: once the session has ended, play its recording with the steps beside it
  // (signed links minted by the page; click a step and the video seeks there).
  function recordingPlayer(isLive) {
    var card = document.getElementById("recording");
    if (!card) return;
    var video = document.getElementById("rec-video");
    var list = document.getElementById("rec-steps");
    var status = document.getElementById("rec-status");
    var clock = function (t) {
      var s = Math.floor(t);
      return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
    };
    var render = function (steps) {
      list.textContent = "";
      steps.forEach(function (step) {
        var li = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.className = "rec-step";
        button.dataset.t = step.t;
        var at = document.createElement("span");
        at.className = "rec-t";
        at.textContent = clock(step.t);
        var kind = document.createElement("span");
        kind.className = "ev-kind";
        kind.textContent = String(step.type).replace(/_/g, " ");
        var text = document.createElement("span");
        text.className = "ev-text";
        text.textContent = [step.name, step.target, step.thought].filter(Boolean).join(" · ").slice(0, 300);
        button.append(at, kind, text);
        li.appendChild(button);
        list.appendChild(li);
      });
    };
    list.addEventListener("click", function (event) {
      var button = event.target.closest(".rec-step");
      if (!button) return;
      video.currentTime = Number(button.dataset.t);
    });
    video.addEventListener("timeupdate", function () {
      var current = null;
      list.querySelectorAll(".rec-step").forEach(function (b) {
        b.classList.remove("current");
        if (Number(b.dataset.t) <= video.currentTime + 0.05) current = b;
      });
      if (current) current.classList.add("current");
    });
    var load = function () {
      if (isLive()) { setTimeout(load, 3000); return; }
      fetch(card.dataset.steps, { credentials: "same-origin" }).then(function (r) {
        if (r.status === 404) { card.hidden = true; return null; }
        if (!r.ok) throw new Error(r.status);
        return r.json();
      }).then(function (body) {
        if (!body) return;
        card.hidden = false;
        var state = body.recording.state;
        if (state === "ready") {
          status.textContent = clock(body.recording.durationMs / 1000) + " · " + body.steps.length + " steps";
          if (!video.getAttribute("src")) video.src = card.dataset.src;
          render(body.steps);
        } else if (state === "failed") {
          status.textContent = "The recording could not be made.";
        } else {
          status.textContent = "Preparing the recording…";
          setTimeout(load, 2000);
        }
      }).catch(function () { status.textContent = "Could not load the recording."; setTimeout(load, 10000); });
    };
    load();
  }

  // Playground: keep the curl command in step with the form.
  var play = document.getElementById("playground-form");
  if (play) {
    var curl = document.getElementById("curl");
    var shellQuote = function (s) { return "'" + s.replace(/'/g, "'\\''") + "'"; };
    var render = function () {
      var body = {
        startingUrl: play.elements.starting_url.value.trim() || "https://example.com",
        taskDetails: play.elements.task.value.trim() || "Extract the title of the page",
        maxDuration: (parseInt(play.elements.max_duration_s.value, 10) || 300) * 1000,
        terminateOnCompletion: play.elements.terminate_on_completion.checked
      };
      curl.textContent = "curl -X POST " + curl.dataset.base + "/start/start-session \\\n" +
        "  -H \"Authorization: Bearer $ENIGMA_API_KEY\" \\\n" +
        "  -H \"Content-Type: application/json\" \\\n" +
        "  -d " + shellQuote(JSON.stringify(body));
    };
    play.addEventListener("input", render);
    play.addEventListener("change", render);
  }

  // Billing: Stripe.js card form; the PaymentIntent is created on the server, confirmed here.
  var topup = document.getElementById("topup-form");
  if (topup) {
    window.addEventListener("load", function () {
      var message = document.getElementById("topup-message");
      var button = document.getElementById("topup-btn");
      var amount = document.getElementById("topup-amount");
      var say = function (text, kind) {
        message.hidden = false;
        message.className = "alert alert-" + kind;
        message.textContent = text;
      };
      if (typeof window.Stripe !== "function") {
        document.getElementById("card-element").textContent = "";
        say("The payment form couldn’t load (Stripe.js was blocked or is unreachable). Disable blockers for this page and reload.", "error");
        return;
      }
      var stripe = window.Stripe(topup.dataset.stripeKey);
      var card = stripe.elements().create("card", { hidePostalCode: false });
      document.getElementById("card-element").textContent = "";
      card.mount("#card-element");
      button.disabled = false;
      var label = function () { button.textContent = "Pay $" + (parseFloat(amount.value) || 0).toFixed(2); };
      label();
      amount.addEventListener("input", function () {
        label();
        topup.querySelectorAll(".chip").forEach(function (c) { c.classList.toggle("active", c.dataset.amount === amount.value); });
      });
      topup.querySelectorAll(".chip").forEach(function (chip) {
        chip.addEventListener("click", function () { amount.value = chip.dataset.amount; amount.dispatchEvent(new Event("input")); });
      });
      var waitForCredit = function (intent, tries) {
        fetch(topup.dataset.balance + "?intent=" + encodeURIComponent(intent), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (b) {
            if (b.topup === "succeeded") {
              document.getElementById("balance").textContent = b.display;
              say("Payment received: your balance is now " + b.display + ".", "success");
              setTimeout(function () { location.reload(); }, 1200);
            } else if (tries > 40) {
              say("Payment succeeded; your balance updates as soon as Stripe confirms it (usually seconds). Reload in a moment.", "info");
              button.disabled = false;
            } else setTimeout(function () { waitForCredit(intent, tries + 1); }, 750);
          });
      };
      topup.addEventListener("submit", function (event) {
        event.preventDefault();
        button.disabled = true;
        say("Starting the payment…", "info");
        var data = new FormData(topup);
        post(topup.getAttribute("action"), data).then(function (body) {
          if (!body.ok) { say(body.error, "error"); button.disabled = false; return null; }
          say("Confirm the payment with your bank if asked…", "info");
          return stripe.confirmCardPayment(body.clientSecret, { payment_method: { card: card } }).then(function (result) {
            if (result.error) {
              say((result.error.message || "The card was declined.") + " Check the card details or try another card.", "error");
              button.disabled = false;
              return;
            }
            say("Payment authorised. Crediting your balance…", "info");
            waitForCredit(body.paymentIntent, 0);
          });
        });
      });
    });
  }
})();
