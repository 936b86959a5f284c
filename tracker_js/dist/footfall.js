(() => {
  // src/util.js
  var now = () => Date.now();
  var uuid = () => {
    const url = URL.createObjectURL(new Blob());
    URL.revokeObjectURL(url);
    return url.slice(-36);
  };
  var on = (target, types, listener) => {
    for (const type of types.split(" ")) target.addEventListener(type, listener, { capture: true, passive: true });
  };
  var ignored = (element) => element.closest("[data-ff-ignore]");
  var round2 = (number) => +number.toFixed(2);
  var CLICKABLE = "a,button,[role=button],input[type=submit],[data-ff-track]";
  var visibleText = (element) => element.textContent.replace(/\s+/g, " ").trim().slice(0, 100);
  var selectorOf = (element) => {
    const parts = [];
    for (; element && element.localName != "body" && parts.length < 5; element = element.parentElement) {
      const id = element.getAttribute("id");
      if (id) {
        parts.unshift("#" + CSS.escape(id));
        break;
      }
      let part = element.localName;
      for (const className of [...element.classList].slice(0, 2)) part += "." + CSS.escape(className);
      const position = [...element.parentNode.children].indexOf(element);
      parts.unshift(position ? part + ":nth-child(" + (position + 1) + ")" : part);
    }
    return parts.join(">");
  };
  var describe = (element) => ({
    selector: selectorOf(element),
    tag: element.localName,
    id: element.id,
    classes: [...element.classList],
    text: visibleText(element)
  });
  var watchDom = (onChange) => new MutationObserver(onChange).observe(document, { childList: true, subtree: true, attributes: true, characterData: true });

  // src/store.js
  var PREFIX = "ff_";
  var writable;
  var attempt = (operation) => {
    try {
      return operation();
    } catch (error) {
    }
  };
  var enable = (allowed2) => {
    writable = allowed2;
  };
  var get = (key) => attempt(() => JSON.parse(localStorage[PREFIX + key]));
  var putJson = (key, json, force) => (writable || force) && attempt(() => {
    localStorage[PREFIX + key] = json;
  });
  var set = (key, value, force) => putJson(key, JSON.stringify(value), force);
  var remove = (key) => attempt(() => delete localStorage[PREFIX + key]);
  var keys = (prefix) => attempt(
    () => Object.keys(localStorage).filter((key) => key.startsWith(PREFIX + prefix)).map((key) => key.slice(PREFIX.length))
  ) || [];

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
    views: true,
    viewSelector: "[data-ff-view]",
    viewMs: 1e3,
    viewThreshold: 0.5,
    forms: true,
    frustration: true,
    sensitiveParams: [],
    sessionTimeout: 18e5,
    sessionMaxAge: 864e5
  };
  var script = document.currentScript;
  var options;
  var configure = (given) => {
    options = { ...DEFAULTS, ...given };
    options.endpoint = (options.endpoint || new URL(script?.src || location).origin).replace(/\/$/, "");
  };
  var debugLog = (...details) => options.debug && console.warn("footfall:", ...details);

  // src/identity.js
  var anonymousId;
  var userId;
  var idCookie = () => document.cookie.match(/(?:^|; )ff_id=([\w-]+)/)?.[1];
  var load = () => {
    anonymousId = get("a") || idCookie() || uuid();
    userId = get("u");
  };
  var save = () => {
    set("a", anonymousId);
    userId ? set("u", userId) : remove("u");
  };
  var setUser = (id) => {
    userId = "" + id;
    save();
  };
  var reset = () => {
    anonymousId = uuid();
    userId = null;
    save();
  };

  // src/consent.js
  var decision;
  var loadConsent = () => {
    decision = get("c");
  };
  var allowed = () => {
    if (decision) return !!decision.analytics;
    if (options.respectGPC && navigator.globalPrivacyControl || options.respectDNT && navigator.doNotTrack == "1") return false;
    return options.requireConsent ? null : true;
  };
  var decide = (preferences) => {
    const properties = {};
    decision = {};
    for (const purpose in preferences) {
      if (purpose == "policy_version") properties[purpose] = "" + preferences[purpose];
      else decision[purpose] = properties[purpose] = !!preferences[purpose];
    }
    return properties;
  };

  // src/segments.js
  var knownSegments;
  var receiveSegments = (segments2) => {
    if (!segments2 || "" + segments2 == knownSegments) return;
    knownSegments = segments2;
    dispatchEvent(new CustomEvent("footfall:segments", { detail: { segments: segments2 } }));
  };
  var segments = (callback) => {
    if (knownSegments) return callback(knownSegments);
    if (allowed() !== true) return callback([]);
    fetch(options.endpoint + "/v1/segments?writeKey=" + options.writeKey + "&anonymousId=" + anonymousId, {
      credentials: options.credentials
    }).then((response) => response.json()).then((answer) => receiveSegments(answer.segments)).catch(() => {
    }).then(() => callback(knownSegments || []));
  };

  // src/transport.js
  var MAX_REQUEST_BYTES = 6e4;
  var storageKey = "q" + uuid();
  var queue = [];
  var inFlight = /* @__PURE__ */ new Set();
  var timer;
  var attempt2 = 0;
  var stoppedByStatus;
  var counts = { dropped: 0, refused: {}, failed: {}, errors: {} };
  var count = (kind, reason, number, ...details) => {
    const table = counts[kind];
    table[reason] = (table[reason] || 0) + number;
    debugLog(kind, reason, ...details);
  };
  var save2 = () => {
    let json;
    while ((json = "[" + queue.join() + "]").length > 5e5 || queue.length > 1e3) {
      queue.shift();
      counts.dropped++;
    }
    queue.length ? putJson(storageKey, json) : remove(storageKey);
  };
  var schedule = (delay) => {
    timer = timer || setTimeout(() => {
      timer = 0;
      flush(true);
    }, delay);
  };
  var retryLater = (retryAfterSeconds) => {
    clearTimeout(timer);
    timer = 0;
    schedule(
      retryAfterSeconds >= 0 ? retryAfterSeconds * 1e3 : Math.min(options.retryDelay * 2 ** attempt2, 6e4) * (0.5 + Math.random() / 2)
    );
    attempt2++;
  };
  var readAnswer = (status, answer) => {
    if (true) receiveSegments(answer.segments);
    if (false) return;
    if (status > 399) count("errors", answer.error || status, 1, status, answer.detail);
    for (const reason in answer.refused) count("refused", reason, answer.refused[reason], answer.refused[reason]);
    for (const failure of answer.failed || []) count("failed", failure.reason, 1, failure.messageId, failure.errors);
  };
  var send = (batch, bytes) => {
    for (const message2 of batch) inFlight.add(message2);
    const body = '{"batch":[' + batch.join() + '],"sentAt":"' + (/* @__PURE__ */ new Date()).toISOString() + '","writeKey":' + JSON.stringify(options.writeKey) + "}";
    fetch(options.endpoint + options.apiPath, {
      method: "POST",
      // A string body goes as text/plain;charset=UTF-8: a CORS "simple" request, no preflight.
      body,
      keepalive: bytes < MAX_REQUEST_BYTES,
      credentials: options.credentials
    }).finally(() => {
      for (const message2 of batch) inFlight.delete(message2);
    }).then((response) => {
      const status = response.status;
      if (status == 429 || status > 499) return retryLater(parseFloat(response.headers.get("Retry-After")));
      attempt2 = 0;
      queue = queue.filter((message2) => !batch.includes(message2));
      if (status > 399) counts.dropped += batch.length;
      if (status == 401 || status == 403) {
        stoppedByStatus = 1;
        counts.dropped += queue.length;
        queue = [];
      }
      save2();
      flush();
      if (true)
        response.json().catch(() => ({})).then((answer) => readAnswer(status, answer));
    }, () => retryLater());
  };
  var adopt = () => {
    for (const key of keys("q"))
      if (key != storageKey) {
        queue = (get(key) || []).map((message2) => JSON.stringify(message2)).concat(queue);
        remove(key);
      }
    save2();
    schedule(0);
  };
  var push = (message2) => {
    if (stoppedByStatus) {
      counts.dropped++;
      return;
    }
    queue.push(JSON.stringify(message2));
    save2();
    queue.length < options.batchSize ? schedule(options.flushInterval) : flush();
  };
  var stats = () => ({ queued: queue.length, ...counts });
  var flush = (retry, leaving) => {
    if (document.prerendering || stoppedByStatus) return;
    if (!leaving && (inFlight.size || attempt2 && !retry)) return;
    clearTimeout(timer);
    timer = 0;
    let batch = [];
    let bytes = 200;
    for (const message2 of queue) {
      if (inFlight.has(message2)) continue;
      const size = new Blob([message2]).size + 1;
      if (batch.length == options.batchSize || batch.length && bytes + size > MAX_REQUEST_BYTES) {
        send(batch, bytes);
        if (!leaving) return;
        batch = [];
        bytes = 200;
      }
      batch.push(message2);
      bytes += size;
    }
    if (batch.length) send(batch, bytes);
  };

  // src/session.js
  var inMemory;
  var touch = (context) => {
    const time = now();
    let session = get("s") || inMemory;
    if (!session || time - session.l > options.sessionTimeout || time - session.s > options.sessionMaxAge) {
      session = { i: uuid(), s: time };
      context.sessionStart = true;
    }
    context.sessionId = session.i;
    session.l = time;
    inMemory = session;
    set("s", session);
  };
  var endSession = () => {
    inMemory = 0;
    remove("s");
  };

  // src/privacy.js
  var SENSITIVE_WORD = /^(e?mail|phone|tel|mobile|(access|refresh|id)?token|pass(wd|word)?|pwd|secret|(api)?key|session(id)?|sid|auth(orization)?|code|otp|pin|ssn|sig(nature)?|jwt|credentials?)$/;
  var isSensitive = (name) => [name, ...name.match(/[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])/g) || []].some((word) => {
    word = word.toLowerCase();
    return SENSITIVE_WORD.test(word) || options.sensitiveParams.includes(word);
  });
  var scrubUrl = (url) => false ? url : url.replace(/\?([^#]*)/, (query, parameters) => {
    const kept = parameters.split("&").filter((part) => !isSensitive(part.split("=")[0]));
    return kept.length ? "?" + kept.join("&") : "";
  });

  // src/page.js
  var currentKey;
  var pageReferrer;
  var pageInfo;
  var pageKey = () => options.hashRouting ? location.href : location.href.split("#")[0];
  var isNewPage = () => currentKey != pageKey();
  var enterPage = (force) => {
    if (force || isNewPage()) {
      pageReferrer = pageInfo ? pageInfo.url : scrubUrl(document.referrer);
      currentKey = pageKey();
    }
    pageInfo = {
      url: scrubUrl(location.href),
      path: location.pathname,
      referrer: pageReferrer,
      title: document.title,
      search: scrubUrl(location.search)
    };
  };
  var watchHistory = (onNavigation) => {
    const later = () => setTimeout(onNavigation);
    for (const method of ["pushState", "replaceState"]) {
      const original = history[method];
      history[method] = (...args) => {
        later();
        return original.apply(history, args);
      };
    }
    on(window, "popstate", later);
    if (options.hashRouting) on(window, "hashchange", later);
  };

  // src/events.js
  var TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var held = [];
  var message = (type, fields) => ({
    type,
    messageId: uuid(),
    timestamp: (/* @__PURE__ */ new Date()).toISOString(),
    userId: userId || void 0,
    context: {
      library: { name: "footfall.js", version: "0.1.0" },
      page: pageInfo,
      userAgent: navigator.userAgent,
      locale: navigator.language,
      timezone: TIME_ZONE,
      screen: { width: screen.width, height: screen.height }
    },
    ...fields
  });
  var stamp = (built) => {
    built.anonymousId = anonymousId;
    touch(built.context);
    if (decision) built.context.consent = { categoryPreferences: decision };
    push(built);
  };
  var release = (granted) => {
    if (granted) held.forEach(stamp);
    held = [];
  };
  var emit = (built) => {
    const decided = allowed();
    if (decided) stamp(built);
    else if (decided == null) held.push(built);
  };
  var track = (event, properties) => emit(message("track", { event: "" + event, properties: properties || {} }));

  // src/clicks.js
  var DOWNLOADS = /\.(pdf|xls[xm]?|docx?|txt|rtf|csv|exe|key|pp(s|tx?)|7z|pkg|rar|gz|zip|avi|mov|mp[34]|mpe?g|wmv|midi?|wav|wma)$/i;
  var clicks = () => on(document, "click", (event) => {
    const element = event.target.closest(CLICKABLE);
    if (!element || ignored(element)) return;
    const properties = describe(element);
    const href = element.href;
    if (/^http/.test(href)) {
      const download = DOWNLOADS.exec(element.pathname);
      properties.href = scrubUrl(href);
      properties.outbound = element.hostname != location.hostname;
      properties.file_download = !!download;
      if (download) properties.file_extension = download[1].toLowerCase();
    }
    track("Element Clicked", properties);
  });

  // src/scroll.js
  var maxScroll;
  var resetScroll = () => {
    maxScroll = 0;
    setTimeout(checkScroll, 1e3);
  };
  var checkScroll = () => {
    const pageHeight = document.documentElement.scrollHeight;
    const viewportHeight = innerHeight;
    const percent = Math.min(100, Math.round((scrollY + viewportHeight) / pageHeight * 100));
    if (options.scroll) {
      for (const mark of options.scrollMarks)
        if (percent >= mark && mark > maxScroll)
          track("Scroll Depth Reached", { depth_percent: mark, page_height: pageHeight, viewport_height: viewportHeight });
    }
    if (percent > maxScroll) maxScroll = percent;
  };
  var scroll = () => {
    maxScroll = 0;
    let pending;
    on(window, "scroll resize", () => {
      pending = pending || setTimeout(() => {
        pending = 0;
        checkScroll();
      }, 100);
    });
    document.readyState == "complete" ? checkScroll() : on(window, "load", checkScroll);
  };

  // src/hover.js
  var hovered;
  var hoveredSince;
  var endHover = () => {
    const dwell = now() - hoveredSince;
    if (hovered && dwell >= options.hoverMs) track("Element Hovered", { ...describe(hovered), dwell_ms: dwell });
    hovered = 0;
  };
  var hover = () => {
    on(document, "mouseover", (event) => {
      const element = event.target.closest(options.hoverSelector);
      if (element == hovered) return;
      endHover();
      if (element && !ignored(element)) {
        hovered = element;
        hoveredSince = now();
      }
    });
    on(document, "mouseleave", (event) => {
      if (event.target == hovered) endHover();
    });
  };

  // src/video.js
  var video = () => {
    const stateOf2 = /* @__PURE__ */ new WeakMap();
    on(document, "playing pause seeked timeupdate ended", ({ target: media, type }) => {
      if (!(media instanceof HTMLMediaElement) || ignored(media)) return;
      const { duration, currentTime } = media;
      const length = isFinite(duration) ? round2(duration) : null;
      const percent = length ? Math.min(100, Math.floor(currentTime / duration * 100)) : 0;
      const state = stateOf2.get(media) || {};
      stateOf2.set(media, state);
      const send3 = (name, reportedPercent = percent) => track("Video " + name, {
        video_id: media.id || media.currentSrc,
        src: media.currentSrc,
        title: media.title || media.ariaLabel || "",
        media_type: media.localName,
        position: round2(currentTime),
        total_length: length,
        percent: reportedPercent
      });
      if (type == "playing") {
        if (!state.a) send3(state.d ? "Playback Resumed" : "Playback Started");
        state.d = state.a = 1;
      } else if (type == "pause") {
        state.a = 0;
        if (!media.ended) send3("Playback Paused");
      } else if (type == "seeked") send3("Playback Seek Completed");
      else {
        for (const mark of [10, 25, 50, 75, 90])
          if (percent >= mark && !state[mark]) {
            state[mark] = 1;
            send3("Progress", mark);
          }
        if (type == "ended") {
          send3("Playback Completed", 100);
          stateOf2.delete(media);
        }
      }
    });
  };

  // src/engage.js
  var IDLE_MS = 3e4;
  var engagedMs = 0;
  var countedUntil = now();
  var lastInput = countedUntil;
  var countUntilNow = () => {
    const time = now();
    engagedMs += Math.max(0, Math.min(time, lastInput + IDLE_MS) - countedUntil);
    countedUntil = time;
  };
  var engage = () => {
    on(document, "mousemove keydown scroll pointerdown touchstart", () => {
      countUntilNow();
      lastInput = countedUntil;
    });
  };
  var resumeEngagement = () => {
    countedUntil = lastInput = now();
  };
  var reportEngaged = (stop) => {
    if (!options.engagement) return;
    countUntilNow();
    if (stop) countedUntil = 1 / 0;
    const reported = engagedMs;
    engagedMs = 0;
    if (reported) track("Page Engaged", { engaged_ms: reported, max_scroll_percent: maxScroll });
  };

  // src/datalayer.js
  var dataLayer = (eventNames) => {
    const layer = window.dataLayer = window.dataLayer || [];
    const originalPush = layer.push;
    const forward = (entry) => {
      if (!eventNames.includes(entry?.event)) return;
      const properties = {};
      for (const key in entry) if (key != "event" && !key.startsWith("gtm.")) properties[key] = entry[key];
      track(entry.event, properties);
    };
    layer.forEach(forward);
    layer.push = (...entries) => {
      entries.forEach(forward);
      return originalPush.apply(layer, entries);
    };
  };

  // src/views.js
  var viewed = /* @__PURE__ */ new WeakSet();
  var observeAll;
  var views = () => {
    const pending = /* @__PURE__ */ new Map();
    const observer = new IntersectionObserver(
      (entries) => {
        for (const { target: element, isIntersecting } of entries) {
          clearTimeout(pending.get(element));
          if (isIntersecting) {
            const since = now();
            pending.set(
              element,
              setTimeout(() => {
                observer.unobserve(element);
                viewed.add(element);
                track("Element Viewed", { ...describe(element), visible_ms: now() - since });
              }, options.viewMs)
            );
          }
        }
      },
      { threshold: options.viewThreshold }
    );
    observeAll = () => {
      for (const element of document.querySelectorAll(options.viewSelector))
        if (!viewed.has(element) && !ignored(element)) observer.observe(element);
    };
    observeAll();
    watchDom(observeAll);
  };
  var resetViews = () => {
    viewed = /* @__PURE__ */ new WeakSet();
    observeAll?.();
  };

  // src/forms.js
  var forms = /* @__PURE__ */ new Map();
  var send2 = (event, form, state = forms.get(form)) => track(event, {
    form_id: form.getAttribute("id") || "",
    form_name: form.getAttribute("name") || "",
    selector: selectorOf(form),
    fields_touched: state.b.size,
    last_field: state.e || "",
    ms_since_start: now() - state.f
  });
  var stateOf = (form) => forms.get(form) || forms.set(form, { f: now(), b: /* @__PURE__ */ new Set() }).get(form);
  var formTracking = () => {
    on(document, "input change", ({ target: field }) => {
      const form = field.form;
      if (!form || ignored(form)) return;
      const started = forms.has(form);
      const state = stateOf(form);
      state.b.add(field);
      if (field.type != "password" && !ignored(field)) state.e = field.name || field.getAttribute("id");
      if (!started) send2("Form Started", form);
    });
    on(document, "submit", ({ target: form }) => {
      if (ignored(form)) return;
      stateOf(form).c = 1;
      send2("Form Submitted", form);
    });
  };
  var abandonForms = () => forms.forEach((state, form) => {
    if (!state.c) send2("Form Abandoned", form, state);
    state.c = 1;
  });

  // src/frustration.js
  var WINDOW_MS = 1e3;
  var burstElement;
  var burstX;
  var burstY;
  var burstClicks = 0;
  var burstTimer;
  var lastChange = 0;
  var endBurst = () => {
    clearTimeout(burstTimer);
    if (burstClicks > 2) track("Rage Click", { ...describe(burstElement), clicks: burstClicks });
    burstElement = burstClicks = 0;
  };
  var frustration = () => {
    const changed = () => {
      lastChange = now();
    };
    watchDom(changed);
    on(document, "submit", changed);
    on(document, "click", (event) => {
      const { target, clientX: x, clientY: y } = event;
      if (ignored(target)) return;
      if (target != burstElement || Math.hypot(x - burstX, y - burstY) > 30) {
        endBurst();
        burstElement = target;
        burstX = x;
        burstY = y;
      }
      burstClicks++;
      clearTimeout(burstTimer);
      burstTimer = setTimeout(endBurst, WINDOW_MS);
      const clickable = target.closest(CLICKABLE);
      if (!clickable) return;
      const clickedAt = now();
      const urlBefore = location.href;
      setTimeout(() => {
        const href = clickable.href;
        const navigates = /^http/.test(href) && href.split("#")[0] != urlBefore.split("#")[0] && !event.defaultPrevented;
        if (!navigates && lastChange < clickedAt && location.href == urlBefore) track("Dead Click", describe(clickable));
      }, WINDOW_MS);
    });
  };
  var endFrustration = endBurst;

  // src/main.js
  var beforeInit = [];
  var page = (name, properties) => {
    if (typeof name == "object") {
      properties = name;
      name = 0;
    }
    enterPage();
    emit(message("page", { name: name ? "" + name : void 0, properties: { ...pageInfo, ...properties } }));
  };
  var navigate = (force) => {
    if (!force && !isNewPage()) return;
    if (true) reportEngaged();
    enterPage(force);
    if (true) resetScroll();
    if (true) resetViews();
    if (options.pageviews) page();
  };
  var leave = (pageLeft) => {
    if (true) endHover();
    if (true) reportEngaged(1);
    if (true) endFrustration();
    if (pageLeft) abandonForms();
    flush(0, 1);
  };
  var startFeatures = () => {
    watchHistory(navigate);
    if (options.pageviews) page();
    if (options.clicks) clicks();
    if (options.scroll || options.engagement) scroll();
    if (options.hover) hover();
    if (options.video) video();
    if (options.engagement) engage();
    if (options.dataLayerEvents) dataLayer(options.dataLayerEvents);
    if (options.views) views();
    if (options.forms) formTracking();
    if (options.frustration) frustration();
    on(window, "online", () => flush(true));
    on(window, "pagehide", () => leave(1));
    on(document, "visibilitychange", () => document.hidden ? leave() : resumeEngagement());
    if (true) on(window, "pageshow", (event) => event.persisted && navigate(1));
  };
  var useStorage = (granted) => {
    enable(granted);
    if (granted) {
      save();
      adopt();
    }
  };
  var api = {
    init(given) {
      configure(given);
      loadConsent();
      load();
      useStorage(allowed());
      enterPage();
      if (document.prerendering)
        on(document, "prerenderingchange", () => {
          startFeatures();
          flush();
        });
      else setTimeout(startFeatures);
    },
    track,
    page,
    identify(userId2, traits) {
      if (typeof userId2 == "object" && userId2) {
        traits = userId2;
        userId2 = 0;
      }
      if (userId2) setUser(userId2);
      emit(message("identify", { traits: traits || {} }));
    },
    alias(newUserId) {
      const previousId = userId || anonymousId;
      setUser(newUserId);
      emit(message("alias", { previousId }));
    },
    reset() {
      reset();
      endSession();
    },
    consent(preferences) {
      const properties = decide(preferences);
      const granted = allowed();
      set("c", decision, 1);
      useStorage(granted);
      if (!granted) {
        for (const key of keys("")) if (key != "c") remove(key);
      }
      stamp(message("track", { event: "Consent Updated", properties }));
      release(granted);
      flush();
    },
    flush,
    stats,
    anonymousId: () => anonymousId,
    segments: true ? segments : () => {
    }
  };
  var run = (commandLine) => {
    const [command, ...args] = commandLine;
    if (command == "init") {
      if (options) return;
      api.init(args[0]);
      beforeInit.forEach(run);
      beforeInit = [];
    } else if (!options) beforeInit.push(commandLine);
    else return api[command]?.(...args);
  };
  var stub = window.footfall || {};
  if (!stub.v) {
    const footfall = window.footfall = (...commandLine) => run(commandLine);
    footfall.v = "0.1.0";
    for (const commandLine of stub.q || []) run([...commandLine]);
  }
})();
