/* JobSocket: live job status over the /ws/jobs/<id>/ and /ws/projects/<id>/ websockets (CONTRACT.md).
 *
 * Vanilla ES5, no build step. Usage (docs/jobsocket.md):
 *   var socket = new JobSocket({path: "/ws/jobs/" + id + "/", pollUrl: "/api/jobs/" + id + "/"});
 *   socket.onStatus(function (msg) { ... msg.status, msg.progress, msg.seq ... });
 *   socket.onArtifact(function (msg) { ... msg.kind, msg.url, msg.scene ... });  // a scene's image or narration
 *   socket.onConnection(function (state) { ... "open" | "reconnecting" | "sse" | "polling" | "closed" ... });
 *   socket.start();
 *
 * Guarantees to onStatus and onArtifact callbacks: messages of one job arrive with rising seq, never twice. After a
 * reconnect the client sends {"type":"resume","after_seq":lastSeq} per job it has seen, so the events it
 * missed are replayed in order. After repeated websocket failures it follows the same messages as
 * Server-Sent Events (EventSource on /api/jobs/<id>/stream/ or /api/projects/<id>/stream/, resuming after
 * the last seq), and when that fails too it polls pollUrl (converting the REST job JSON to the same
 * message shape); meanwhile it retries the websocket now and then.
 */
(function (root) {
  "use strict";

  var TERMINAL = { completed: true, failed: true, cancelled: true };
  var FATAL_CLOSE_CODES = { 4401: true, 4404: true }; // not signed in / not yours: retrying cannot help
  // 4413: the client read too slowly; 4429: it sent too much, or its user has too many sockets open. The
  // server accepted before closing, so onopen reset the backoff: wait the longest backoff instead.
  var SLOW_DOWN_CLOSE_CODES = { 4413: true, 4429: true };
  var DEFAULTS = {
    token: null,
    pingIntervalMs: 30000,   // keep-alive through proxies that drop idle connections
    pongTimeoutMs: 10000,    // no answer to a ping in this time: the connection is dead, reconnect
    backoffBaseMs: 1000,
    backoffMaxMs: 30000,
    failuresBeforePolling: 3,
    pollIntervalMs: 2000,
    pollMaxIntervalMs: 15000,
    wsRetryWhilePollingMs: 30000,
    sseUrl: undefined,       // derived from path; null turns the Server-Sent Events fallback off
    sseMaxErrors: 3,         // EventSource reconnects that fail in a row before falling back to polling
    resumeWaitMs: 5000       // how long to hold back messages that skip seqs while a resume replays
  };

  /* 50-100 % of a delay, so many clients do not reconnect or poll in lockstep. */
  function jitter(ms) {
    return Math.round(ms * (0.5 + Math.random() * 0.5));
  }

  function JobSocket(options) {
    if (!(this instanceof JobSocket)) { return new JobSocket(options); }
    options = options || {};
    if (!options.path) { throw new Error("JobSocket needs options.path, e.g. \"/ws/jobs/<id>/\""); }
    this.options = {};
    for (var key in DEFAULTS) {
      if (Object.prototype.hasOwnProperty.call(DEFAULTS, key)) {
        this.options[key] = options[key] !== undefined ? options[key] : DEFAULTS[key];
      }
    }
    this.path = options.path;
    this.pollUrl = options.pollUrl || null;
    this.isProjectStream = /\/ws\/projects\//.test(this.path);
    this.sseUrl = this.options.sseUrl === undefined ? JobSocket.streamUrl(this.path) : this.options.sseUrl;
    this.lastSeq = {};        // job_id -> highest seq delivered
    this.state = "idle";
    this._statusCallbacks = [];
    this._queueCallbacks = [];
    this._artifactCallbacks = [];
    this._connectionCallbacks = [];
    this._ws = null;
    this._sse = null;
    this._sseErrors = 0;
    this._sseFailed = false;
    this._failures = 0;
    this._timers = {};
    this._resuming = {};      // job_id -> time until which seq-skipping messages wait for the replay
    this._pollDelay = this.options.pollIntervalMs;
    this._stopped = true;
  }

  /* --- public API ------------------------------------------------------------------------------------ */

  JobSocket.prototype.onStatus = function (callback) {
    this._statusCallbacks.push(callback);
    return this;
  };

  /* {type: "queue", job_id, queue_position, starts_in_s}: a waiting job moved up in line (no seq). */
  JobSocket.prototype.onQueue = function (callback) {
    this._queueCallbacks.push(callback);
    return this;
  };

  JobSocket.prototype._deliverQueue = function (message) {
    for (var i = 0; i < this._queueCallbacks.length; i++) {
      try { this._queueCallbacks[i](message); } catch (e) { if (root.console) { root.console.error(e); } }
    }
  };

  /* Artifact messages ({"type":"artifact","job_id","seq","kind","name","url","scene","reused"}): a scene's
   * image or narration as soon as it is stored. They share the job's seq order with status messages. */
  JobSocket.prototype.onArtifact = function (callback) {
    this._artifactCallbacks.push(callback);
    return this;
  };

  JobSocket.prototype.onConnection = function (callback) {
    this._connectionCallbacks.push(callback);
    return this;
  };

  JobSocket.prototype.start = function () {
    if (!this._stopped) { return this; }
    this._stopped = false;
    this._failures = 0;
    this._connect();
    return this;
  };

  JobSocket.prototype.close = function () {
    this._stopped = true;
    this._clearTimers();
    this._stopSse();
    if (this._ws) {
      var ws = this._ws;
      this._ws = null;
      try { ws.close(1000); } catch (e) { /* already closing */ }
    }
    this._setState("closed");
    return this;
  };

  /* Ask for the current state now (a fresh snapshot over the socket, else one poll). */
  JobSocket.prototype.refresh = function () {
    if (this._isOpen()) {
      this._ws.send("refresh");
    } else if (this.pollUrl && !this._stopped) {
      this._poll(true);
    }
    return this;
  };

  /* --- websocket ------------------------------------------------------------------------------------- */

  JobSocket.prototype._url = function () {
    var loc = root.location || { protocol: "http:", host: "127.0.0.1" };
    var scheme = loc.protocol === "https:" ? "wss://" : "ws://";
    var url = /^wss?:\/\//.test(this.path) ? this.path : scheme + loc.host + this.path;
    if (this.options.token) {
      url += (url.indexOf("?") === -1 ? "?" : "&") + "token=" + encodeURIComponent(this.options.token);
    }
    return url;
  };

  JobSocket.prototype._isOpen = function () {
    return !!this._ws && this._ws.readyState === 1;
  };

  JobSocket.prototype._connect = function () {
    var self = this;
    var ws;
    this._clearTimer("connect");
    if (this._stopped || this._ws) { return; }
    try {
      ws = new root.WebSocket(this._url());
    } catch (e) {
      this._onFailure(null);
      return;
    }
    this._ws = ws;
    ws.onopen = function () {
      if (self._ws !== ws) { return; }
      self._failures = 0;
      self._sseFailed = false;  // the next outage may be one the stream gets through
      self._stopSse();
      self._stopPolling();
      self._setState("open");
      self._sendResumes();
      self._schedulePing();
    };
    ws.onmessage = function (event) {
      if (self._ws !== ws) { return; }
      self._clearTimer("pongTimeout");  // any message proves the connection is alive
      self._onMessage(event.data);
    };
    ws.onclose = function (event) {
      if (self._ws !== ws) { return; }
      self._ws = null;
      self._clearTimer("ping");
      self._clearTimer("pongTimeout");
      if (self._stopped) { return; }
      if (event && FATAL_CLOSE_CODES[event.code]) {
        self._stopped = true;
        self._clearTimers();
        self._setState("closed");
        return;
      }
      if (event && SLOW_DOWN_CLOSE_CODES[event.code]) {
        self._setState("reconnecting");
        self._schedule("connect", jitter(self.options.backoffMaxMs), self._connect);
        return;
      }
      self._onFailure(event);
    };
    ws.onerror = function () { /* onclose follows and decides */ };
  };

  JobSocket.prototype._onFailure = function () {
    this._ws = null;
    this._failures += 1;
    if (this._failures >= this.options.failuresBeforePolling && (this._canUseSse() || this.pollUrl)) {
      if (this._canUseSse()) {
        this._startSse();
      } else {
        this._startPolling();
      }
      this._schedule("connect", jitter(this.options.wsRetryWhilePollingMs), this._connect);
    } else {
      this._setState("reconnecting");
      var step = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * Math.pow(2, this._failures - 1));
      this._schedule("connect", jitter(step), this._connect);
    }
  };

  JobSocket.prototype._sendResumes = function () {
    var now = Date.now();
    for (var jobId in this.lastSeq) {
      if (!Object.prototype.hasOwnProperty.call(this.lastSeq, jobId)) { continue; }
      var frame = { type: "resume", after_seq: this.lastSeq[jobId] };
      if (this.isProjectStream) { frame.job_id = jobId; }
      this._resuming[jobId] = now + this.options.resumeWaitMs;
      this._ws.send(JSON.stringify(frame));
    }
  };

  JobSocket.prototype._schedulePing = function () {
    var self = this;
    this._schedule("ping", this.options.pingIntervalMs, function () {
      if (!self._isOpen()) { return; }
      self._ws.send("ping");
      self._schedule("pongTimeout", self.options.pongTimeoutMs, function () {
        if (self._ws) { try { self._ws.close(4000); } catch (e) { /* closing */ } }
      });
      self._schedulePing();
    });
  };

  JobSocket.prototype._onMessage = function (data) {
    if (data === "pong") { return; }
    var message;
    try { message = JSON.parse(data); } catch (e) { return; }
    if (message && message.type === "queue") { this._deliverQueue(message); return; }
    if (!message || (message.type !== "status" && message.type !== "artifact")) {
      if (message && message.type === "error" && root.console) { root.console.warn("JobSocket:", message.message); }
      return;
    }
    this._deliver(message, true);
  };

  /* Deliver a status message unless the client already has its seq; while a resume replays, a message
   * that skips seqs (the snapshot sent on connect) waits for the replay, which covers it in order. */
  JobSocket.prototype._deliver = function (message, fromSocket) {
    var jobId = message.job_id;
    var last = this.lastSeq[jobId];
    if (typeof message.seq !== "number" || !jobId) { return; }
    if (last !== undefined && message.seq <= last) { return; }
    if (fromSocket && last !== undefined && message.seq > last + 1 && this._resuming[jobId]) {
      if (Date.now() < this._resuming[jobId]) { return; }
    }
    if (last !== undefined && message.seq === last + 1) { delete this._resuming[jobId]; }
    this.lastSeq[jobId] = message.seq;
    var callbacks = message.type === "artifact" ? this._artifactCallbacks : this._statusCallbacks;
    for (var i = 0; i < callbacks.length; i++) {
      try { callbacks[i](message); } catch (e) { if (root.console) { root.console.error(e); } }
    }
  };

  /* --- Server-Sent Events fallback ------------------------------------------------------------------ */

  /* EventSource sends cookies but no Authorization header, so token clients go straight to polling. */
  JobSocket.prototype._canUseSse = function () {
    return !!this.sseUrl && !this.options.token && !this._sseFailed && typeof root.EventSource === "function";
  };

  JobSocket.prototype._startSse = function () {
    var self = this;
    if (this._sse || this._stopped) { return; }
    var url = this.sseUrl;
    var jobId = this.isProjectStream ? null : Object.keys(this.lastSeq)[0];
    if (jobId !== undefined && jobId !== null) {  // a job stream replays what this client has not seen
      url += (url.indexOf("?") === -1 ? "?" : "&") + "after_seq=" + this.lastSeq[jobId];
    }
    var source;
    try {
      source = new root.EventSource(url, { withCredentials: true });
    } catch (e) {
      this._sseFailed = true;
      this._startPolling();
      return;
    }
    this._sse = source;
    this._sseErrors = 0;
    source.onopen = function () {
      if (self._sse !== source) { return; }
      self._sseErrors = 0;
      self._stopPolling();
      self._setState("sse");
    };
    source.addEventListener("status", function (event) {
      if (self._sse !== source) { return; }
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      self._deliver(message, false);
      // A job's stream ends after its terminal status; without this EventSource would reconnect.
      if (!self.isProjectStream && TERMINAL[message.status]) { self._stopSse(); }
    });
    source.addEventListener("queue", function (event) {
      if (self._sse !== source) { return; }
      try { self._deliverQueue(JSON.parse(event.data)); } catch (e) { /* not JSON: ignore */ }
    });
    source.addEventListener("artifact", function (event) {
      if (self._sse !== source) { return; }
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      self._deliver(message, false);
    });
    source.onerror = function () {
      if (self._sse !== source) { return; }
      self._sseErrors += 1;
      // CLOSED: refused (401/404, not an event stream): no use retrying it. Otherwise EventSource
      // reconnects by itself (with Last-Event-ID) until it failed sseMaxErrors times in a row.
      if (source.readyState === 2 || self._sseErrors >= self.options.sseMaxErrors) {
        self._sseFailed = true;
        self._stopSse();
        if (self.pollUrl) { self._startPolling(); }
      }
    };
  };

  JobSocket.prototype._stopSse = function () {
    if (!this._sse) { return; }
    var source = this._sse;
    this._sse = null;
    try { source.close(); } catch (e) { /* already closed */ }
  };

  /* The SSE URL for a websocket path: /ws/jobs/<id>/ -> /api/jobs/<id>/stream/ (null for other paths). */
  JobSocket.streamUrl = function (path) {
    var match = /^\/ws\/(jobs|projects)\/([^/?#]+)\/?$/.exec(path || "");
    return match ? "/api/" + match[1] + "/" + match[2] + "/stream/" : null;
  };

  /* --- polling fallback ------------------------------------------------------------------------------ */

  JobSocket.prototype._startPolling = function () {
    if (this._polling) { return; }
    this._polling = true;
    this._pollDelay = this.options.pollIntervalMs;
    this._setState("polling");
    this._poll(false);
  };

  JobSocket.prototype._stopPolling = function () {
    this._polling = false;
    this._clearTimer("poll");
  };

  JobSocket.prototype._poll = function (once) {
    var self = this;
    if (!this.pollUrl || typeof root.fetch !== "function") { return; }
    var headers = { Accept: "application/json" };
    if (this.options.token) { headers.Authorization = "Token " + this.options.token; }
    root.fetch(this.pollUrl, { credentials: "same-origin", headers: headers })
      .then(function (response) {
        if (response.status === 401 || response.status === 404) {
          self.close();  // the same answer the socket gives as 4401 / 4404
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (body) {
        if (!body) { return; }
        var jobs = Array.isArray(body.results) ? body.results : [body];
        var changed = false;
        for (var i = 0; i < jobs.length; i++) {
          var message = JobSocket.fromJob(jobs[i]);
          if (self.lastSeq[message.job_id] === undefined || message.seq > self.lastSeq[message.job_id]) { changed = true; }
          self._deliver(message, false);
        }
        // Poll briskly while things change, back off while they do not.
        self._pollDelay = changed ? self.options.pollIntervalMs
          : Math.min(self.options.pollMaxIntervalMs, Math.round(self._pollDelay * 1.5));
      })
      .catch(function () {
        self._pollDelay = Math.min(self.options.pollMaxIntervalMs, self._pollDelay * 2);
      })
      .then(function () {
        if (!once && self._polling && !self._stopped) {
          self._schedule("poll", jitter(self._pollDelay * 1.33), function () { self._poll(false); });
        }
      });
  };

  /* The REST job JSON (CONTRACT.md "Resources") as a websocket status message. */
  JobSocket.fromJob = function (job) {
    return {
      type: "status",
      job_id: String(job.id),
      status: job.status,
      progress: Number(job.progress) || 0,
      current_stage: job.current_stage || "",
      error_message: job.error_message === undefined ? null : job.error_message,
      seq: Number(job.seq) || 0,
      result: job.result === undefined ? null : job.result
    };
  };

  JobSocket.isTerminal = function (status) { return !!TERMINAL[status]; };

  /* --- small helpers --------------------------------------------------------------------------------- */

  JobSocket.prototype._setState = function (state) {
    if (this.state === state) { return; }
    this.state = state;
    for (var i = 0; i < this._connectionCallbacks.length; i++) {
      try { this._connectionCallbacks[i](state); } catch (e) { if (root.console) { root.console.error(e); } }
    }
  };

  JobSocket.prototype._schedule = function (name, delayMs, fn) {
    this._clearTimer(name);
    this._timers[name] = root.setTimeout(fn.bind(this), delayMs);
  };

  JobSocket.prototype._clearTimer = function (name) {
    if (this._timers[name]) { root.clearTimeout(this._timers[name]); delete this._timers[name]; }
  };

  JobSocket.prototype._clearTimers = function () {
    for (var name in this._timers) {
      if (Object.prototype.hasOwnProperty.call(this._timers, name)) { root.clearTimeout(this._timers[name]); }
    }
    this._timers = {};
  };

  root.JobSocket = JobSocket;
  if (typeof module === "object" && module.exports) { module.exports = JobSocket; }
})(typeof window !== "undefined" ? window : globalThis);
