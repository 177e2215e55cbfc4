/* Page behaviour for the project and job pages: live updates through JobSocket (static/js/jobsocket.js),
 * Cancel/Retry through the REST API. The pages are fully rendered by the server; this only keeps them fresh. */
(function () {
  "use strict";

  var TERMINAL = ["completed", "failed", "cancelled"];
  var UNFINISHED = ["queued", "processing"];
  var CONNECTION_TEXT = {
    open: "Live", reconnecting: "Reconnecting…", sse: "Live (event stream)", polling: "Live (polling)",
    closed: "Offline"
  };
  /* Job type -> label, rendered by the project page from the job plans (jobs/plans). */
  var TYPE_LABELS = (function () {
    var node = document.getElementById("job-type-labels");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  })();

  /* "Generating images (3/40)" -> "Generating images": the counter is progress, not a new stage. */
  // Per job type: how many artifacts each scene has (image, narration), from the project page's JSON.
  var SCENE_KINDS = (function () {
    var node = document.getElementById("scene-kinds");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }());

  function stageName(stage) { return String(stage || "").replace(/\s*\(\d+\s*\/\s*\d+\)\s*$/, ""); }

  function $(root, field) { return root.querySelector('[data-field="' + field + '"]'); }
  function isTerminal(status) { return TERMINAL.indexOf(status) !== -1; }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) { return meta.content; }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) { return "—"; }
    var total = Math.max(0, Math.round(seconds));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    function pad(n) { return n < 10 ? "0" + n : String(n); }
    if (h) { return h + " h " + pad(m) + " min"; }
    if (m) { return m + " min " + pad(s) + " s"; }
    return s + " s";
  }

  function parseTime(value) {
    if (!value) { return null; }
    var t = Date.parse(value);
    return isNaN(t) ? null : t;
  }

  /* A status message from the websocket or a job from the REST API, in the websocket's shape. */
  function normalise(msg) {
    return {
      job_id: String(msg.job_id || msg.id || ""),
      job_type: msg.job_type,
      status: msg.status,
      progress: Number(msg.progress) || 0,
      current_stage: msg.current_stage === undefined ? undefined : (msg.current_stage || ""),
      error_message: msg.error_message || null,
      seq: typeof msg.seq === "number" ? msg.seq : null,
      result: msg.result || null,
      attempts: msg.attempts,
      queue_position: typeof msg.queue_position === "number" ? msg.queue_position : null
    };
  }

  function setProgress(root, progress) {
    var value = Math.max(0, Math.min(100, Number(progress) || 0));
    var bar = $(root, "progressbar");
    var fill = $(root, "progress-fill");
    var percent = $(root, "percent");
    if (bar) { bar.setAttribute("aria-valuenow", value.toFixed(1)); }
    if (fill) { fill.style.width = value.toFixed(1) + "%"; }
    if (percent) {
      percent.textContent = (percent.closest(".progress-cell") ? value.toFixed(0) : value.toFixed(1)) + " %";
    }
  }

  function setStatus(root, status) {
    var badge = $(root, "status");
    if (badge) {
      badge.textContent = status;
      badge.className = "status status--" + status;
    }
    root.setAttribute("data-status", status);
  }

  function artifactUrl(jobId, item) {
    if (item.url) { return item.url; }
    return "/api/jobs/" + jobId + "/artifacts/" + String(item.path || "").split("/").map(encodeURIComponent).join("/");
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function formatBytes(n) {
    if (!n && n !== 0) { return ""; }
    if (n < 1024) { return n + " bytes"; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + " KB"; }
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  /* The completed job's media and download links, built like the server-rendered markup. */
  function renderResult(section, jobId, result) {
    var body = $(section, "result-body");
    var items = (result && result.artifacts) || [];
    var byKind = { video: [], image: [], audio: [], scenes: [] };
    items.forEach(function (item) {
      var url = artifactUrl(jobId, item);
      var name = String(item.path || url).split("/").pop();
      (byKind[item.kind] = byKind[item.kind] || []).push({ url: url, name: name, kind: item.kind, bytes: item.bytes });
    });
    body.textContent = "";
    byKind.video.forEach(function (item) {
      body.appendChild(el("video", { controls: "", preload: "metadata", src: item.url, "class": "video", "aria-label": "Generated video" }));
    });
    if (byKind.image.length) {
      body.appendChild(el("h3", {}, "Scene images"));
      var grid = el("ul", { "class": "image-grid" });
      byKind.image.forEach(function (item, i) {
        var li = el("li"), link = el("a", { href: item.url, download: "" });
        link.appendChild(el("img", { src: item.url, alt: "Scene image " + (i + 1), loading: "lazy" }));
        li.appendChild(link);
        grid.appendChild(li);
      });
      body.appendChild(grid);
    }
    if (byKind.audio.length) {
      body.appendChild(el("h3", {}, "Narration"));
      byKind.audio.forEach(function (item) {
        var row = el("div", { "class": "audio-item" });
        row.appendChild(el("span", { "class": "small mono" }, item.name));
        row.appendChild(el("audio", { controls: "", preload: "none", src: item.url, "aria-label": "Narration " + item.name }));
        body.appendChild(row);
      });
    }
    body.appendChild(el("h3", {}, "Downloads"));
    var list = el("ul", { "class": "downloads" });
    Object.keys(byKind).forEach(function (kind) {
      byKind[kind].forEach(function (item) {
        var li = el("li");
        li.appendChild(el("a", { href: item.url, download: "" }, item.name));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", { "class": "muted small" }, kind + " · " + formatBytes(item.bytes)));
        list.appendChild(li);
      });
    });
    body.appendChild(list);
    section.hidden = false;
  }

  function showConnection(state) {
    document.querySelectorAll('[data-field="connection"]').forEach(function (node) {
      node.textContent = CONNECTION_TEXT[state] || state;
      node.setAttribute("data-state", state);
    });
  }

  /* "3rd in line, starts in about 2 min": the same words as jobs/display.py's queue_text. */
  function ordinal(n) {
    var suffix = (n % 100 >= 10 && n % 100 <= 20) ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
    return n + suffix;
  }

  function about(seconds) {
    if (seconds < 60) { return "less than a minute"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) { return "about " + minutes + " min"; }
    var rest = minutes % 60;
    return "about " + Math.floor(minutes / 60) + " h " + (rest < 10 ? "0" : "") + rest + " min";
  }

  function queueText(position, startsIn) {
    if (position === null || position === undefined) { return "waiting for a worker"; }
    var text = position === 1 ? "next in line" : ordinal(position) + " in line";
    if (typeof startsIn === "number") { text += ", starts in " + about(startsIn); }
    return text;
  }

  /* Show a place in line in `node`. A status message carries the place but not the estimate (only "queue"
     messages and the server's page have both): the same place keeps the estimate already shown. */
  function showQueue(node, position, startsIn) {
    if (!node) { return; }
    var same = position !== null && position !== undefined && node.getAttribute("data-position") === String(position);
    if (same && typeof startsIn !== "number") { return; }
    node.setAttribute("data-position", position === null || position === undefined ? "" : String(position));
    node.textContent = queueText(position, startsIn);
  }
  function hideQueue(node) {
    node.setAttribute("data-position", "");
    node.textContent = "";
  }

  /* JobSocket when it loaded; otherwise a plain poller so the page still updates. */
  function subscribe(options, onStatus, onQueue, onArtifact) {
    if (typeof window.JobSocket === "function") {
      var socket = new window.JobSocket({ path: options.path, pollUrl: options.pollUrl });
      socket.onStatus(onStatus);
      if (onQueue && socket.onQueue) { socket.onQueue(onQueue); }
      if (onArtifact && socket.onArtifact) { socket.onArtifact(onArtifact); }
      if (socket.onConnection) { socket.onConnection(showConnection); }
      socket.start();
      return socket;
    }
    var delay = 2000;
    function poll() {
      fetch(options.pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) {
          (data.results || [data]).forEach(onStatus);
          showConnection("polling");
          delay = 2000;
        })
        .catch(function () { delay = Math.min(delay * 2, 30000); showConnection("reconnecting"); })
        .then(function () { setTimeout(poll, delay); });
    }
    poll();
    return null;
  }

  function postJson(url) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json", "Content-Type": "application/json" },
      body: "{}"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  // --- the job page ---------------------------------------------------------------------------------

  function jobPage() {
    var body = document.body;
    var jobId = body.dataset.jobId;
    var state = {
      status: body.dataset.status,
      progress: Number(body.dataset.progress) || 0,
      stage: ($(body, "stage").textContent || "").trim(),
      seq: Number(body.dataset.seq) || 0,
      startedAt: parseTime(body.dataset.startedAt),
      completedAt: parseTime(body.dataset.completedAt)
    };
    if (state.stage === "—") { state.stage = ""; }
    // Times are the server's; keep one clock by shifting the browser's by the offset seen at load.
    var serverNow = parseTime(body.dataset.serverNow);
    var offset = serverNow ? serverNow - Date.now() : 0;
    function now() { return Date.now() + offset; }

    var resultSection = $(body, "result");
    var errorBox = $(body, "error");
    var cancelButton = body.querySelector('[data-action="cancel"]');
    var retryButton = body.querySelector('[data-action="retry"]');
    var rerunForm = $(body, "rerun");  // "Re-run from": absent for an external job
    var actionMessage = $(body, "action-message");
    var timeline = document.getElementById("timeline");
    var seenStages = {};
    Array.prototype.forEach.call(timeline.querySelectorAll("[data-stage]"), function (node) {
      seenStages[node.getAttribute("data-stage")] = true;
    });

    function tick() {
      var elapsed = null, remaining = null;
      if (state.startedAt) {
        elapsed = ((state.completedAt || now()) - state.startedAt) / 1000;
        if (state.status === "processing" && state.progress > 0 && state.progress < 100) {
          remaining = elapsed * (100 - state.progress) / state.progress;
        }
      }
      $(body, "elapsed").textContent = formatDuration(elapsed);
      $(body, "remaining").textContent = state.status === "completed" ? "0 s" : formatDuration(remaining);
    }

    function appendTimeline(status, stage) {
      var li = el("li");
      var when = new Date(now());
      var time = el("time", { datetime: when.toISOString() }, when.toISOString().slice(11, 19));
      li.appendChild(time);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", { "class": "status status--" + status }, status));
      if (stage) { li.appendChild(document.createTextNode(" " + stage)); }
      timeline.appendChild(li);
    }

    function refreshJob() {
      return fetch("/api/jobs/" + jobId + "/", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) { if (job) { apply(normalise(job), true); } })
        .catch(function () {});
    }

    function apply(msg, authoritative) {
      if (msg.job_id && msg.job_id !== jobId) { return; }
      // Older than what the page shows: a late delivery (the socket dedupes, the API answers do not).
      if (msg.seq !== null && msg.seq < state.seq && !authoritative) { return; }
      if (msg.seq !== null) { state.seq = Math.max(state.seq, msg.seq); }
      var previous = state.status;
      var changedStatus = msg.status && msg.status !== previous;
      var newStage = msg.current_stage === undefined ? state.stage : msg.current_stage;
      if (changedStatus) {
        if (msg.status === "queued") {  // a retry: a new attempt starts from zero
          state.startedAt = null;
          state.completedAt = null;
          state.progress = 0;
          resultSection.hidden = true;
          if (isTerminal(previous)) {
            var attempt = $(body, "attempt");
            attempt.textContent = msg.attempts || (Number(attempt.textContent) || 0) + 1;
          }
        }
        if (msg.status === "processing" && !state.startedAt) { state.startedAt = now(); }
        if (isTerminal(msg.status) && !state.completedAt) { state.completedAt = now(); }
        state.status = msg.status;
        setStatus(body, msg.status);
        if (msg.status === "queued") { showQueue($(body, "status-detail"), msg.queue_position); }
        else { hideQueue($(body, "status-detail")); }
      }
      // A snapshot (connect, refresh) or a poll carries the place in line even when the status did not change.
      if (state.status === "queued" && msg.queue_position !== null) {
        showQueue($(body, "status-detail"), msg.queue_position);
      }
      // Like the server's timeline: every status change, and each stage once per attempt when it starts.
      if (changedStatus && msg.status === "queued") { seenStages = {}; }
      var stageKey = stageName(newStage);
      if (changedStatus || (stageKey && !seenStages[stageKey])) {
        appendTimeline(state.status, stageKey);
      }
      if (stageKey) { seenStages[stageKey] = true; }
      state.stage = newStage;
      $(body, "stage").textContent = newStage || "—";
      state.progress = msg.status === "queued" ? msg.progress : Math.max(state.progress, msg.progress);
      if (authoritative) { state.progress = msg.progress; }
      setProgress(body, state.progress);

      var failed = state.status === "failed" && msg.error_message;
      $(body, "error-text").textContent = failed ? msg.error_message : "";
      errorBox.hidden = !failed;
      cancelButton.hidden = isTerminal(state.status);
      retryButton.hidden = !(state.status === "failed" || state.status === "cancelled");
      if (rerunForm) { rerunForm.hidden = !isTerminal(state.status); }

      if (state.status === "completed" && resultSection.hidden) {
        if (msg.result && msg.result.artifacts) {
          renderResult(resultSection, jobId, msg.result);
        } else if (!authoritative) {
          refreshJob();
        }
      }
      tick();
    }

    function runAction(action, button) {
      button.disabled = true;
      actionMessage.textContent = action === "cancel" ? "Cancelling…" : "Retrying…";
      postJson("/api/jobs/" + jobId + "/" + action + "/").then(function (answer) {
        if (answer.ok) {
          actionMessage.textContent = action === "cancel" ? "Job cancelled." : "Job queued again.";
          apply(normalise(Object.assign({ id: jobId, progress: state.progress }, answer.data)), false);
        } else {
          actionMessage.textContent = (answer.data && answer.data.detail) || ("Could not " + action + " (HTTP " + answer.status + ").");
        }
        return refreshJob();
      }).catch(function () {
        actionMessage.textContent = "Could not reach the server; try again.";
      }).then(function () { button.disabled = false; });
    }

    document.getElementById("job-actions").addEventListener("submit", function (event) {
      var button = event.submitter || document.activeElement;
      var action = button && button.getAttribute("data-action");
      if (!action) { return; }
      event.preventDefault();
      runAction(action, button);
    });

    // Scene previews: each scene's image and narration as its artifact message arrives, before the video.
    var scenesSection = $(body, "scenes");
    var sceneList = document.getElementById("scene-previews");
    function showArtifact(msg) {
      if (msg.job_id !== jobId || typeof msg.scene !== "number" || (msg.kind !== "image" && msg.kind !== "audio")) { return; }
      var item = sceneList.querySelector('li[data-scene="' + msg.scene + '"]');
      if (!item) {
        item = el("li", { "data-scene": String(msg.scene) });
        item.appendChild(el("span", { "class": "small muted" }, "Scene " + msg.scene));
        var after = Array.prototype.find.call(sceneList.children, function (node) {
          return Number(node.getAttribute("data-scene")) > msg.scene;
        });
        sceneList.insertBefore(item, after || null);
      }
      var old = item.querySelector('[data-kind="' + msg.kind + '"]');
      var media = msg.kind === "image"
        ? el("img", { "data-kind": "image", src: msg.url, alt: "Scene " + msg.scene + " image" })
        : el("audio", { "data-kind": "audio", controls: "", preload: "none", src: msg.url,
                        "aria-label": "Scene " + msg.scene + " narration" });
      if (old) { item.replaceChild(media, old); } else if (msg.kind === "image") {
        item.insertBefore(media, item.querySelector('[data-kind="audio"]'));
      } else { item.appendChild(media); }
      scenesSection.hidden = false;
    }

    setInterval(tick, 1000);
    tick();
    subscribe({ path: "/ws/jobs/" + jobId + "/", pollUrl: "/api/jobs/" + jobId + "/" }, function (raw) {
      apply(normalise(raw), false);
    }, function (queue) {
      if (state.status === "queued") { showQueue($(body, "status-detail"), queue.queue_position, queue.starts_in_s); }
    }, showArtifact);
  }

  // --- the project page -----------------------------------------------------------------------------

  function projectPage() {
    var body = document.body;
    var projectId = body.dataset.projectId;
    var tbody = document.querySelector("#jobs-table tbody");
    var announcer = document.getElementById("live-announcer");
    var seqs = {};

    function newRow(msg) {
      var empty = tbody.querySelector(".empty-row");
      if (empty) { empty.remove(); }
      var row = el("tr", { "data-job-id": msg.job_id, "data-status": msg.status });
      var first = el("td");
      first.appendChild(el("a", { href: "/jobs/" + msg.job_id + "/" }, TYPE_LABELS[msg.job_type] || "Job"));
      first.appendChild(document.createTextNode(" "));
      first.appendChild(el("span", { "class": "muted small mono" }, msg.job_id.slice(0, 8)));
      row.appendChild(first);
      var statusCell = el("td");
      statusCell.appendChild(el("span", { "class": "status", "data-field": "status" }));
      statusCell.appendChild(document.createTextNode(" "));
      statusCell.appendChild(el("span", { "class": "muted small", "data-field": "queue" }));
      row.appendChild(statusCell);
      var progressCell = el("td", { "class": "progress-cell" });
      var bar = el("div", { "class": "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                            "aria-valuenow": "0", "aria-label": "Progress", "data-field": "progressbar" });
      bar.appendChild(el("div", { "class": "progress__fill", "data-field": "progress-fill" }));
      progressCell.appendChild(bar);
      progressCell.appendChild(el("span", { "class": "small", "data-field": "percent" }));
      row.appendChild(progressCell);
      row.appendChild(el("td", { "data-field": "stage" }));
      row.appendChild(el("td", { "data-field": "scenes", "data-done": "0", "data-total": "0" }, "—"));
      var when = new Date();
      row.appendChild(el("td", {}, "")).appendChild(el("time", { datetime: when.toISOString() }, "just now"));
      tbody.insertBefore(row, tbody.firstChild);
      // Status messages do not carry the job type; one read of the job names the row.
      fetch("/api/jobs/" + msg.job_id + "/", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (job && TYPE_LABELS[job.job_type]) { first.querySelector("a").textContent = TYPE_LABELS[job.job_type]; }
          if (job && SCENE_KINDS[job.job_type]) { $(row, "scenes").setAttribute("data-kinds", String(SCENE_KINDS[job.job_type])); }
        })
        .catch(function () {});
      return row;
    }

    // "Scenes done": scenes whose every artifact kind arrived in the current attempt (jobs_scenes_done).
    var sceneKinds = {};  // job id -> {scene: {kind: true}}
    function showScenes(row, done, total) {
      var cell = $(row, "scenes");
      if (!cell) { return; }
      cell.setAttribute("data-done", String(done));
      if (total) { cell.setAttribute("data-total", String(total)); }
      total = Number(cell.getAttribute("data-total")) || 0;
      cell.textContent = total ? done + " / " + total : (done ? done + " done" : "—");
    }
    function countScenes(jobId, row) {
      var kinds = {}, byScene = sceneKinds[jobId] || {}, done = 0;
      Object.keys(byScene).forEach(function (s) { Object.keys(byScene[s]).forEach(function (k) { kinds[k] = true; }); });
      var cell = $(row, "scenes");
      var wanted = Math.max(Object.keys(kinds).length, Number(cell && cell.getAttribute("data-kinds")) || 0);
      Object.keys(byScene).forEach(function (s) { if (Object.keys(byScene[s]).length === wanted) { done += 1; } });
      return done;
    }
    // What the server rendered: {scene: [kinds stored in the current attempt]}, so a reload mid-job counts on.
    function storedKinds(row) {
      var byScene = {}, cell = $(row, "scenes"), stored = {};
      try { stored = JSON.parse((cell && cell.getAttribute("data-stored")) || "{}"); } catch (e) { stored = {}; }
      Object.keys(stored).forEach(function (s) {
        byScene[s] = {};
        (stored[s] || []).forEach(function (k) { byScene[s][k] = true; });
      });
      return byScene;
    }
    function onArtifact(msg) {
      var row = tbody.querySelector('tr[data-job-id="' + msg.job_id + '"]');
      if (!row || typeof msg.scene !== "number") { return; }
      var byScene = sceneKinds[msg.job_id] = sceneKinds[msg.job_id] || storedKinds(row);
      (byScene[msg.scene] = byScene[msg.scene] || {})[msg.kind] = true;
      showScenes(row, countScenes(msg.job_id, row), 0);
    }

    subscribe({
      path: "/ws/projects/" + projectId + "/",
      pollUrl: "/api/jobs/?project_id=" + projectId + "&page_size=100"
    }, function (raw) {
      var msg = normalise(raw);
      if (!msg.job_id) { return; }
      if (msg.seq !== null) {
        if (seqs[msg.job_id] !== undefined && msg.seq < seqs[msg.job_id]) { return; }
        seqs[msg.job_id] = msg.seq;
      }
      var row = tbody.querySelector('tr[data-job-id="' + msg.job_id + '"]') || newRow(msg);
      var previous = row.getAttribute("data-status");
      setStatus(row, msg.status);
      var queueCell = $(row, "queue");
      if (queueCell && (msg.status !== "queued" || msg.queue_position !== null)) {
        if (msg.status === "queued") { showQueue(queueCell, msg.queue_position); }
        else { hideQueue(queueCell); }
      }
      setProgress(row, msg.progress);
      $(row, "stage").textContent = msg.current_stage || "—";
      if (previous !== msg.status) {
        var label = row.querySelector("a") ? row.querySelector("a").textContent : "Job";
        announcer.textContent = label + " " + msg.job_id.slice(0, 8) + ": " + msg.status;
        if (msg.status === "queued") { sceneKinds[msg.job_id] = {}; showScenes(row, 0, 0); }  // a new attempt
      }
      if (msg.status === "completed" && msg.result && typeof msg.result.scenes === "number") {
        showScenes(row, msg.result.scenes, msg.result.scenes);
      }
    }, function (queue) {
      var row = tbody.querySelector('tr[data-job-id="' + queue.job_id + '"]');
      if (row && row.getAttribute("data-status") === "queued") {
        showQueue($(row, "queue"), queue.queue_position, queue.starts_in_s);
      }
    }, onArtifact);
  }

  if (document.body.dataset.page === "job") { jobPage(); }
  if (document.body.dataset.page === "project") { projectPage(); }
}());
