(() => {
  // src/util.js
  var W = window;
  var D = document;
  var N = navigator;
  var now = () => Date.now();
  var uuid = () => ("10000000-1000-4000-8000" + -1e11).replace(/[018]/g, (c) => (c ^ crypto.getRandomValues(new Uint8Array(1))[0] & 15 >> c / 4).toString(16));
  var on = (target, types, fn) => types.split(" ").map((t) => target.addEventListener(t, fn, { capture: true, passive: true }));
  var ignored = (el) => el.closest("[data-ff-ignore]");
  var round2 = (x) => +x.toFixed(2);
  var text = (el) => el.textContent.replace(/\s+/g, " ").trim().slice(0, 100);
  var selector = (el) => {
    let parts = [], s, i;
    for (; el && el.localName != "body" && parts.length < 5; el = el.parentElement) {
      if (el.id) {
        parts.unshift("#" + CSS.escape(el.id));
        break;
      }
      s = el.localName;
      for (i of [...el.classList].slice(0, 2)) s += "." + CSS.escape(i);
      i = [...el.parentNode.children].indexOf(el);
      parts.unshift(i ? s + ":nth-child(" + (i + 1) + ")" : s);
    }
    return parts.join(">");
  };
  var describe = (el) => ({
    selector: selector(el),
    tag: el.localName,
    id: el.id,
    classes: [...el.classList],
    text: text(el)
  });

  // src/store.js
  var enabled;
  var P = "ff_";
  var enable = (b) => enabled = b;
  var get = (k) => {
    try {
      return JSON.parse(localStorage.getItem(P + k));
    } catch (e) {
    }
  };
  var set = (k, v, force) => {
    try {
      ;
      (enabled || force) && localStorage.setItem(P + k, JSON.stringify(v));
    } catch (e) {
    }
  };
  var del = (k) => {
    try {
      localStorage.removeItem(P + k);
    } catch (e) {
    }
  };
  var keys = (p) => {
    try {
      return Object.keys(localStorage).filter((k) => !k.indexOf(P + p)).map((k) => k.slice(3));
    } catch (e) {
      return [];
    }
  };

  // src/options.js
  var DEFAULTS = {
    apiPath: "/v1/batch",
    batchSize: 20,
    flushInterval: 1e3,
    retryDelay: 1e3,
    respectGPC: true,
    pageviews: true,
    clicks: true,
    scroll: true,
    scrollMarks: [25, 50, 75, 90, 100],
    hover: true,
    hoverSelector: "[data-ff-hover]",
    hoverMs: 500,
    video: true,
    engagement: true,
    sessionTimeout: 18e5,
    sessionMaxAge: 864e5
  };
  var script = D.currentScript;
  var o;
  var configure = (opts) => {
    o = { ...DEFAULTS, ...opts };
    o.endpoint = (o.endpoint || new URL(script && script.src || location).origin).replace(/\/$/, "");
  };

  // src/transport.js
  var Q = [];
  var busy;
  var timer;
  var attempt = 0;
  var key = "q" + Math.random().toString(36).slice(2);
  var dropped = 0;
  var later = (ms) => timer || (timer = setTimeout(() => (timer = 0, flush(1)), ms));
  var save = () => {
    while (Q.length > 1e3 || JSON.stringify(Q).length > 5e5) Q.shift(), dropped++;
    Q.length ? set(key, Q) : del(key);
  };
  var start = () => on(W, "online", () => flush(1));
  var adopt = () => {
    let old = [];
    keys("q").map((k) => k != key && (old = old.concat(get(k) || []), del(k)));
    Q = old.concat(Q);
    save();
    later(0);
  };
  var push = (m) => {
    Q.push(m);
    save();
    Q.length < o.batchSize ? later(o.flushInterval) : flush();
  };
  var stats = () => ({ queued: Q.length, dropped });
  var flush = (retry) => {
    if (busy || attempt && !retry || !Q.length) return;
    clearTimeout(timer);
    timer = 0;
    busy = 1;
    let batch = Q.slice(0, o.batchSize), body;
    while ((body = JSON.stringify({ batch, sentAt: (/* @__PURE__ */ new Date()).toISOString(), writeKey: o.writeKey })).length > 6e4 && batch[1])
      batch.pop();
    const fail = (after) => {
      busy = 0;
      clearTimeout(timer);
      timer = 0;
      later(after >= 0 ? after * 1e3 : Math.min(o.retryDelay * 2 ** attempt, 6e4) * (0.5 + Math.random() / 2));
      attempt++;
    };
    fetch(o.endpoint + o.apiPath, {
      method: "POST",
      body,
      headers: { "Content-Type": "text/plain" },
      keepalive: body.length < 65e3,
      credentials: "omit"
    }).then((r) => {
      const s = r.status;
      if (s == 429 || s > 499) return fail(parseFloat(r.headers.get("Retry-After")));
      if (s > 399) dropped += batch.length;
      busy = attempt = 0;
      Q = Q.filter((m) => !batch.includes(m));
      save();
      flush();
    }, fail);
  };

  // src/identity.js
  var anonymousId;
  var userId;
  var load = () => {
    anonymousId = get("a") || uuid();
    userId = get("u");
  };
  var save2 = () => {
    set("a", anonymousId);
    userId ? set("u", userId) : del("u");
  };
  var setUser = (id) => {
    userId = "" + id;
    save2();
  };
  var reset = () => {
    anonymousId = uuid();
    userId = null;
    save2();
  };

  // src/session.js
  var mem;
  var touch = () => {
    let t = now(), s = get("s") || mem, fresh;
    if (!s || t - s.l > o.sessionTimeout || t - s.s > o.sessionMaxAge) s = { i: uuid(), s: t }, fresh = 1;
    s.l = t;
    set("s", mem = s);
    return [s.i, fresh];
  };
  var endSession = () => {
    mem = 0;
    del("s");
  };

  // src/consent.js
  var decision;
  var loadConsent = () => decision = get("c");
  var allowed = () => decision ? !!decision.analytics : o.respectGPC && N.globalPrivacyControl || o.respectDNT && N.doNotTrack == "1" ? false : o.requireConsent ? null : true;
  var decide = (prefs) => {
    let k, props = {};
    decision = {};
    for (k in prefs) k == "policy_version" ? props[k] = "" + prefs[k] : decision[k] = props[k] = !!prefs[k];
    return props;
  };

  // src/page.js
  var L = location;
  var lastKey;
  var pageInfo;
  var key2 = () => L.href.split("#")[0];
  var isNewPage = () => lastKey != key2();
  var enterPage = () => {
    if (!isNewPage()) return;
    pageInfo = { url: L.href, path: L.pathname, referrer: lastKey || D.referrer, title: D.title, search: L.search };
    lastKey = key2();
  };
  var watchHistory = (onNav) => {
    const H = history, later2 = () => setTimeout(onNav);
    for (const f of ["pushState", "replaceState"]) {
      const orig = H[f];
      H[f] = function() {
        later2();
        return orig.apply(this, arguments);
      };
    }
    on(W, "popstate", later2);
  };

  // src/events.js
  var TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var held = [];
  var message = (type, fields) => {
    const m = {
      type,
      messageId: uuid(),
      timestamp: (/* @__PURE__ */ new Date()).toISOString(),
      context: {
        library: { name: "footfall.js", version: "0.1.0" },
        page: pageInfo,
        userAgent: N.userAgent,
        locale: N.language,
        timezone: TZ,
        screen: { width: screen.width, height: screen.height }
      },
      ...fields
    };
    if (userId) m.userId = userId;
    return m;
  };
  var stamp = (m) => {
    const [sid, first] = touch();
    m.anonymousId = anonymousId;
    m.context.sessionId = sid;
    if (first) m.context.sessionStart = true;
    if (decision) m.context.consent = { categoryPreferences: decision };
    push(m);
  };
  var release = (granted) => {
    granted && held.map(stamp);
    held = [];
  };
  var emit = (m) => {
    const a = allowed();
    a ? stamp(m) : a == null && held.push(m);
  };
  var track = (event, properties) => emit(message("track", { event: "" + event, properties: properties || {} }));

  // src/clicks.js
  var FILES = /\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pp[st]|xlsm|7z|pkg|rar|gz|zip|avi|mov|mp4|mpe?g|wmv|midi?|mp3|wav|wma)$/i;
  var clicks = () => on(D, "click", (e) => {
    const el = e.target.closest("a,button,[role=button],input[type=submit],[data-ff-track]");
    if (!el || ignored(el)) return;
    const p = describe(el), href = el.href, u = href && /^http/.test(href) && new URL(href), ext = u && FILES.exec(u.pathname);
    if (u) {
      p.href = href;
      p.outbound = u.hostname != location.hostname;
      p.file_download = !!ext;
      if (ext) p.file_extension = ext[1].toLowerCase();
    }
    track("Element Clicked", p);
  });

  // src/scroll.js
  var done;
  var enabled2;
  var maxScroll;
  var resetScroll = () => {
    done = {};
    maxScroll = 0;
  };
  var checkScroll = () => {
    const h = D.documentElement.scrollHeight, v = W.innerHeight, pct = h <= v ? 100 : Math.min(100, Math.round((W.scrollY + v) / h * 100));
    if (pct > maxScroll) maxScroll = pct;
    if (enabled2) {
      for (const m of o.scrollMarks)
        if (pct >= m && !done[m]) {
          done[m] = 1;
          track("Scroll Depth Reached", { depth_percent: m, page_height: h, viewport_height: v });
        }
    }
  };
  var scroll = (send) => {
    enabled2 = send;
    resetScroll();
    let pending;
    on(W, "scroll resize", () => pending || (pending = setTimeout(() => (pending = 0, checkScroll()), 100)));
    D.readyState == "complete" ? checkScroll() : on(W, "load", checkScroll);
  };

  // src/hover.js
  var cur;
  var since;
  var endHover = () => {
    const dwell = now() - since;
    if (cur && dwell >= o.hoverMs) track("Element Hovered", { ...describe(cur), dwell_ms: dwell });
    cur = 0;
  };
  var hover = () => {
    on(D, "mouseover", (e) => {
      const el = e.target.closest(o.hoverSelector);
      if (el == cur) return;
      endHover();
      if (el && !ignored(el)) cur = el, since = now();
    });
    on(D, "mouseout", (e) => cur && !cur.contains(e.relatedTarget) && endHover());
  };

  // src/video.js
  var video = () => {
    const state = /* @__PURE__ */ new WeakMap();
    on(D, "playing pause seeked timeupdate ended", ({ target: el, type: t }) => {
      if (!(el instanceof HTMLMediaElement) || ignored(el)) return;
      const d = el.duration, len = isFinite(d) ? round2(d) : null, pct = len ? Math.min(100, Math.floor(el.currentTime / d * 100)) : 0, st = state.get(el) || {};
      const send = (name, percent = pct) => track("Video " + name, {
        video_id: el.id || el.currentSrc,
        src: el.currentSrc,
        title: el.title || el.ariaLabel || "",
        media_type: el.localName,
        position: round2(el.currentTime),
        total_length: len,
        percent
      });
      state.set(el, st);
      if (t == "playing") st.p || send(st.s ? "Playback Resumed" : "Playback Started"), st.s = st.p = 1;
      else if (t == "pause") st.p = 0, el.ended || send("Playback Paused");
      else if (t == "seeked") send("Playback Seek Completed");
      else {
        for (const m of [10, 25, 50, 75, 90]) pct < m || st[m] || send("Progress", st[m] = m);
        if (t == "ended") send("Playback Completed", 100), state.delete(el);
      }
    });
  };

  // src/engage.js
  var IDLE = 3e4;
  var started;
  var total = 0;
  var since2 = now();
  var last = since2;
  var fold = (t) => {
    total += Math.max(0, Math.min(t, last + IDLE) - since2);
    since2 = t;
  };
  var engage = () => {
    started = 1;
    on(D, "mousemove keydown scroll pointerdown touchstart", () => (fold(now()), last = since2));
    on(D, "visibilitychange", () => D.hidden || (since2 = last = now()));
  };
  var reportEngaged = (stop) => {
    if (!started) return;
    fold(now());
    if (stop) since2 = 1 / 0;
    const ms = total;
    total = 0;
    ms && track("Page Engaged", { engaged_ms: ms, max_scroll_percent: maxScroll });
  };

  // src/datalayer.js
  var dataLayer = (names) => {
    const dl = W.dataLayer = W.dataLayer || [], push2 = dl.push;
    const fwd = (e) => {
      if (e && names.includes(e.event)) {
        const p = {};
        for (const k in e) k == "event" || !k.indexOf("gtm.") || (p[k] = e[k]);
        track(e.event, p);
      }
    };
    dl.map(fwd);
    dl.push = function() {
      [...arguments].map(fwd);
      return push2.apply(dl, arguments);
    };
  };

  // src/main.js
  var pre = [];
  var page = (name, properties) => {
    if (typeof name == "object") properties = name, name = 0;
    enterPage();
    const m = message("page", { properties: { ...pageInfo, ...properties } });
    if (name) m.name = "" + name;
    emit(m);
  };
  var navigate = () => {
    if (!isNewPage()) return;
    if (true) reportEngaged();
    enterPage();
    if (true) resetScroll(), setTimeout(checkScroll, 1e3);
    if (o.pageviews) page();
  };
  var leave = () => {
    if (true) endHover();
    if (true) reportEngaged(1);
    flush();
  };
  var api = {
    init(opts) {
      configure(opts);
      loadConsent();
      enable(allowed() === true);
      load();
      start();
      if (allowed()) save2(), adopt();
      enterPage();
      setTimeout(() => {
        watchHistory(navigate);
        if (o.pageviews) page();
        if (o.clicks) clicks();
        if (o.scroll || o.engagement) scroll(o.scroll);
        if (o.hover) hover();
        if (o.video) video();
        if (o.engagement) engage();
        if (o.dataLayerEvents) dataLayer(o.dataLayerEvents);
        on(W, "pagehide", leave);
        on(D, "visibilitychange", () => D.hidden && leave());
      });
    },
    track,
    page,
    identify(userId2, traits) {
      if (typeof userId2 == "object" && userId2) traits = userId2, userId2 = 0;
      if (userId2) setUser(userId2);
      emit(message("identify", { traits: traits || {} }));
    },
    alias(newId) {
      const previousId = userId || anonymousId;
      setUser(newId);
      emit(message("alias", { previousId }));
    },
    reset() {
      reset();
      endSession();
    },
    consent(prefs) {
      const props = decide(prefs || {}), a = allowed();
      set("c", decision, 1);
      enable(a);
      if (a) save2(), adopt();
      else keys("").map((k) => k == "c" || del(k));
      stamp(message("track", { event: "Consent Updated", properties: props }));
      release(a);
      flush();
    },
    flush,
    stats
  };
  var run = (args) => {
    const [c, ...a] = args;
    if (c == "init") {
      if (!o) api.init(a[0]), pre.map(run), pre = [];
    } else if (!o) pre.push(args);
    else if (api[c]) return api[c](...a);
  };
  if (!(W.footfall && W.footfall.v)) {
    const queued = W.footfall && W.footfall.q || [];
    W.footfall = function() {
      return run([...arguments]);
    };
    W.footfall.v = "0.1.0";
    queued.map((args) => run([...args]));
  }
})();
