/* ticker widget: a live BREAKING bar for any page. How to embed it: docs/widget.md.
 *
 * One script, no framework, no build step. It works under a strict Content-Security-Policy:
 * no inline script or style, data goes into the page as text only (textContent, never
 * innerHTML), and motion is a CSS animation driven by custom properties set through CSSOM.
 */
(() => {
  "use strict";
  if (window.Ticker) return; // the script was included twice

  const script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  const BASE = script ? script.src : location.href;
  const RTL = ["ar", "fa", "he", "ur"];
  const UPSERT = ["posted", "corrected"];
  const REMOVE = ["withdrawn", "expired", "excluded"];
  const TEXT = {
    en: {
      breaking: "Breaking",
      region: "Breaking news",
      flash: "Flash",
      bulletin: "Bulletin",
      pause: "Pause ticker",
      play: "Play ticker",
      corrected: "Corrected",
      alerts: "new alerts",
      prev: "Previous headline",
      next: "Next headline",
      connecting: "Connecting…",
      reconnecting: "Reconnecting…",
      failed: "Ticker unavailable",
      empty: "No breaking news right now",
    },
    ar: {
      breaking: "عاجل",
      region: "أخبار عاجلة",
      flash: "عاجل جدًا",
      bulletin: "هام",
      pause: "إيقاف الشريط مؤقتًا",
      play: "تشغيل الشريط",
      corrected: "تصحيح",
      alerts: "تنبيهات جديدة",
      prev: "الخبر السابق",
      next: "الخبر التالي",
      connecting: "جارٍ الاتصال…",
      reconnecting: "جارٍ إعادة الاتصال…",
      failed: "الشريط غير متاح",
      empty: "لا أخبار عاجلة الآن",
    },
    es: {
      breaking: "Última hora",
      region: "Noticias de última hora",
      flash: "Urgente",
      bulletin: "Boletín",
      pause: "Pausar el teletipo",
      play: "Reanudar el teletipo",
      corrected: "Corregido",
      alerts: "alertas nuevas",
      prev: "Titular anterior",
      next: "Titular siguiente",
      connecting: "Conectando…",
      reconnecting: "Reconectando…",
      failed: "Teletipo no disponible",
      empty: "No hay noticias de última hora",
    },
  };

  // The stylesheet sits next to the script, so one <script> tag is all a page needs.
  const cssHref = new URL(/widget(\.\w+)?\.js/.test(BASE) ? BASE.replace(/\.js(?=[?#]|$)/, ".css") : "widget.css", BASE).href;
  let cssLink = [...document.querySelectorAll('link[rel="stylesheet"]')].find(
    (l) => l.href === cssHref,
  );
  if (!cssLink) {
    cssLink = document.createElement("link");
    cssLink.rel = "stylesheet";
    cssLink.href = cssHref;
    document.head.append(cssLink);
  }
  const cssReady = cssLink.sheet
    ? Promise.resolve()
    : new Promise((done) => {
        cssLink.addEventListener("load", done);
        cssLink.addEventListener("error", done);
        setTimeout(done, 3000); // never hide the ticker for good
      });

  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text; // always text, never markup
    return node;
  };

  /** An http(s) URL, or null: a `javascript:` or `data:` link never reaches an href. */
  const safeLink = (value) => {
    try {
      const url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  };

  /** The ticker's order, as the hub's snapshot has it: pinned items first, then newest first. */
  const newestFirst = (a, b) =>
    Number(!!b.pinned) - Number(!!a.pinned) ||
    (a.created < b.created ? 1 : a.created > b.created ? -1 : a.id < b.id ? 1 : -1);

  /** Jittered exponential backoff: half the cap plus a random half, so that a hub restart
   * does not bring every reader back in the same instant. */
  const backoff = (tries, most = 30000) => {
    const cap = Math.min(most, 500 * 2 ** tries);
    return cap / 2 + (Math.random() * cap) / 2;
  };

  let configPromise = null;
  /** The publisher's /api/config, from the origin this script was loaded from. */
  const config = () =>
    (configPromise ||= fetch(new URL("/api/config", BASE), { credentials: "omit" })
      .then((r) => {
        if (!r.ok) throw new Error(`config: HTTP ${r.status}`);
        return r.json();
      })
      .catch((err) => {
        configPromise = null;
        throw err;
      }));

  const hubUrl = (hub, tries = 0) =>
    hub
      ? Promise.resolve(hub)
      : config().then(
          (c) => c.hub_url,
          () => new Promise((ok) => setTimeout(ok, backoff(tries))).then(() => hubUrl(null, tries + 1)),
        );

  /**
   * A live copy of one edition (optionally filtered by region and category) from the hub.
   * It keeps the last cursor and resumes from it, so across reconnects it never misses an
   * event and never shows one twice. onChange(items newest first, added items) runs after
   * every change; onStatus(state) with "connecting", "live", "reconnecting" or "failed".
   */
  function connect(options) {
    const { hub, edition, region, category, onChange, onStatus } = options;
    let items = new Map();
    let gone = new Map(); // id -> version of removed items, so a late copy cannot return
    let cursor = null;
    let ws = null; // a WebSocket, or an EventSource once WebSockets proved blocked
    let useStream = false;
    let failedOpens = 0; // WebSockets that closed before they opened, in a row
    let tries = 0;
    let retry = null;
    let watchdog = null;
    let heartbeat = 25;
    let openedAt = 0;
    let restartUntil = 0; // after a clean close the hub is restarting: retry within a second
    let wasLive = false;
    let stopped = false;
    let state = "";

    const list = () => [...items.values()].sort(newestFirst);
    const status = (next) => {
      if (next !== state) onStatus?.((state = next));
    };

    const url = () => {
      const u = new URL(hub, BASE); // a path such as /ws: the page's own host
      if (!useStream && u.protocol.startsWith("http")) u.protocol = u.protocol.replace("http", "ws");
      if (useStream) {
        // The same hub serves Server-Sent Events beside its WebSocket.
        u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
        u.pathname = u.pathname.replace(/\/ws$/, "/sse");
      }
      u.searchParams.set("edition", edition);
      if (region) u.searchParams.set("region", region);
      if (category) u.searchParams.set("category", category);
      if (cursor) u.searchParams.set("since", cursor);
      return u.href;
    };

    const open = () => {
      retry = null;
      if (stopped) return;
      try {
        ws = useStream ? stream() : socket();
      } catch {
        return later();
      }
      openedAt = Date.now();
      watch(); // also bounds how long the handshake and the greeting may take
    };

    const socket = () => {
      const next = new WebSocket(url());
      let opened = false;
      next.onopen = () => {
        opened = true;
        failedOpens = 0;
      };
      next.onmessage = (e) => receive(e.data);
      next.onclose = (e) => {
        // Proxies and networks that break WebSockets fail them before they open: after
        // two such failures in a row, the same hub is read as Server-Sent Events.
        // A link that was live over WebSockets is down, not blocked: it stays a WebSocket.
        if (!opened && !wasLive && ++failedOpens >= 2) {
          useStream = true;
          console.info("ticker: WebSockets fail here; using Server-Sent Events");
        }
        closed(e.code);
      };
      return next;
    };

    const stream = () => {
      const next = new EventSource(url());
      let heard = false;
      for (const type of ["snapshot", "resumed", "event", "heartbeat"])
        next.addEventListener(type, (e) => {
          heard = true;
          receive(e.data);
        });
      next.addEventListener("close", (e) => {
        let code = 1000;
        try {
          code = JSON.parse(e.data).code;
        } catch {}
        drop();
        closed(code);
      });
      // EventSource would retry by itself with its own timing and URL; reconnect the same
      // way as a WebSocket instead, with the current cursor.
      next.onerror = () => {
        drop();
        if (!heard) {
          // The stream failed too: the hub itself is away, not just WebSockets. Try those
          // first again, so a hub restart does not leave the page on the fallback, and let
          // this trial cost no extra backoff step.
          useStream = false;
          failedOpens = 0;
          tries = Math.max(0, tries - 1);
        }
        closed(next.readyState === EventSource.CLOSED && !wasLive ? 4400 : 1006);
      };
      return next;
    };

    // Browsers cannot see WebSocket pings, so the hub sends heartbeats: silence for 1.5
    // heartbeats and a second means the link is dead even if the socket has not noticed.
    const watch = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        drop();
        later();
      }, Math.max(heartbeat * 1500 + 1000, 3000));
    };

    const drop = () => {
      clearTimeout(watchdog);
      if (!ws) return;
      ws.onclose = ws.onmessage = ws.onerror = null;
      try {
        ws.close();
      } catch {}
      ws = null;
    };

    const closed = (code) => {
      ws = null;
      clearTimeout(watchdog);
      if (stopped) return;
      if (code === 4400) {
        // A bad request is not retried as is: the cursor may be what the hub refused.
        if (!cursor) {
          console.warn("ticker: the hub refused this page (HTTP 403 or 400); is its origin in TICKER_ALLOWED_ORIGINS?");
          return status("failed");
        }
        cursor = null;
      }
      if (code === 1001 || code === 1012) restartUntil = Date.now() + 30000;
      if (Date.now() - openedAt > 10000) tries = 0; // it was up for a while: start again fast
      later();
    };

    const later = () => {
      status(wasLive ? "reconnecting" : "connecting");
      clearTimeout(retry);
      retry = setTimeout(open, backoff(tries++, Date.now() < restartUntil ? 1000 : 30000));
    };

    const receive = (data) => {
      let messages;
      try {
        messages = JSON.parse(data);
      } catch {
        return watch();
      }
      const added = [];
      const corrected = [];
      let changed = false;
      for (const m of Array.isArray(messages) ? messages : [messages]) {
        if (!m || typeof m !== "object") continue;
        if (m.cursor) cursor = m.cursor;
        if (m.heartbeat > 0) heartbeat = m.heartbeat;
        if (m.type === "snapshot") {
          const before = items;
          items = new Map();
          gone = new Map();
          for (const item of m.items || []) {
            if (!usable(item)) continue;
            items.set(item.id, item);
            if (wasLive && !before.has(item.id)) added.push(item);
          }
          changed = true;
          live();
        } else if (m.type === "resumed") {
          live();
        } else if (m.type === "event" && m.item) {
          const item = m.item;
          const held = items.get(item.id);
          if (UPSERT.includes(m.kind)) {
            if (!usable(item) || held?.version >= item.version || gone.get(item.id) >= item.version)
              continue;
            items.set(item.id, item);
            (held ? corrected : added).push(item);
            changed = true;
          } else if (REMOVE.includes(m.kind)) {
            changed = items.delete(item.id) || changed;
            gone.set(item.id, item.version ?? Infinity);
          }
        }
      }
      watch(); // after the greeting, so its heartbeat interval already counts
      if (changed) onChange?.(list(), added, corrected);
    };

    const usable = (item) =>
      typeof item.id === "string" && typeof item.headline === "string" && item.status === "live";

    const live = () => {
      wasLive = true;
      status("live");
    };

    const online = () => {
      if (retry) {
        clearTimeout(retry);
        tries = 0;
        retry = setTimeout(open, Math.random() * 1000);
      }
    };
    window.addEventListener("online", online);

    status("connecting");
    open();
    return {
      items: list,
      get cursor() {
        return cursor;
      },
      close() {
        stopped = true;
        clearTimeout(retry);
        window.removeEventListener("online", online);
        drop();
      },
    };
  }

  let serial = 0;

  /**
   * The bar itself, without a connection: render(items) shows a list, setState(state) the
   * connection state. The console uses it for its preview, so the preview is the widget.
   */
  class View {
    constructor(root, { edition = "en", dir, still = false, maxItems = 10, flashMinutes = 10 } = {}) {
      const t = (this.t = TEXT[edition] || TEXT.en);
      this.root = root;
      this.rtl = (dir || (RTL.includes(edition) ? "rtl" : "ltr")) === "rtl";
      this.nodes = new Map();
      this.current = 0;
      this.paused = false;
      this.max = maxItems;
      this.flashMs = flashMinutes * 60000;
      const id = `ticker-${++serial}`;

      root.classList.add("ticker");
      root.dir = this.rtl ? "rtl" : "ltr";
      root.lang ||= edition;
      if (!root.hasAttribute("role")) root.setAttribute("role", "region");
      if (!root.hasAttribute("aria-label")) root.setAttribute("aria-label", t.region);
      const label = el("span", "ticker-label");
      label.id = `${id}-label`;
      label.append(el("span", "ticker-dot"), el("span", "ticker-word", t.breaking));
      this.status = el("span", "ticker-status");
      label.append(this.status);
      this.viewport = el("div", "ticker-viewport");
      this.viewport.setAttribute("role", "marquee");
      this.viewport.setAttribute("aria-labelledby", label.id);
      // The reel moves: the list, then a copy of it, so the loop never leaves the bar empty.
      this.reel = el("div", "ticker-track");
      this.track = el("ul", "ticker-list");
      this.echo = el("div", "ticker-echo");
      this.echo.setAttribute("aria-hidden", "true");
      this.echo.inert = true;
      this.reel.append(this.track, this.echo);
      this.empty = el("p", "ticker-empty", t.empty);
      this.viewport.append(this.reel, this.empty);
      const button = (cls, text) => {
        const b = el("button", `ticker-button ${cls}`);
        b.type = "button";
        b.setAttribute("aria-label", text);
        b.title = text;
        return b;
      };
      this.prev = button("ticker-prev", t.prev);
      this.toggle = button("ticker-toggle", t.pause);
      this.next = button("ticker-next", t.next);
      const controls = el("div", "ticker-controls");
      controls.append(this.prev, this.toggle, this.next);
      // The marquee is aria-live=off by nature; new items are announced here.
      this.live = el("div", "ticker-sr");
      this.live.setAttribute("aria-live", "polite");
      root.replaceChildren(label, this.viewport, controls, this.live);

      this.toggle.addEventListener("click", () => this.pause(!this.paused));
      this.prev.addEventListener("click", () => this.show(this.current - 1));
      this.next.addEventListener("click", () => this.show(this.current + 1));
      this.viewport.addEventListener("focusin", (e) => this.reveal(e.target));
      // A finger has no hover: a tap on the bar (not on a link) pauses or plays, like the button.
      this.viewport.addEventListener("pointerdown", (e) =>
        root.classList.toggle("ticker--touch", e.pointerType !== "mouse"),
      );
      this.viewport.addEventListener("click", (e) => {
        if (this.touch() && this.moving && !e.target.closest("a")) this.pause(!this.paused);
      });
      // Focus would scroll the clipped viewport to the headline; the transform does that.
      this.viewport.addEventListener("scroll", () => this.viewport.scrollTo(0, 0));

      this.fixed = still; // a preview: always still, no controls
      root.classList.toggle("ticker--fixed", still);
      this.motion = matchMedia("(prefers-reduced-motion: reduce)");
      this.motion.addEventListener?.("change", () => this.mode());
      const resized = new ResizeObserver(() => this.layout(false));
      resized.observe(this.viewport);
      resized.observe(this.reel); // web fonts arriving change the length of the bar
      this.render([]);
      this.mode();
    }

    touch() {
      return this.root.classList.contains("ticker--touch");
    }

    items() {
      return [...this.track.children];
    }

    /** Scrolling, or one headline at a time when motion is reduced (or for a preview). */
    mode() {
      this.still = this.fixed || this.motion.matches;
      this.root.classList.toggle("ticker--still", this.still);
      clearInterval(this.rotation);
      if (this.still && !this.fixed) {
        const dwell = this.prop("--ticker-dwell", 7) * 1000;
        this.rotation = setInterval(() => this.held() || this.show(this.current + 1), dwell);
      }
      this.show(0);
      this.layout(true);
    }

    setState(state) {
      this.root.dataset.state = state;
      this.status.textContent = state === "live" ? "" : this.t[state] || "";
      this.track.setAttribute("aria-busy", String(state !== "live"));
    }

    /** Pinned items lead, then flashes younger than data-flash-minutes, then the rest newest
     * first; the first data-max-items are shown. */
    arrange(items) {
      const now = Date.now();
      const until = (i) =>
        i.urgency === 1 && !i.pinned ? Date.parse(i.created) + this.flashMs || 0 : 0;
      const flashes = items.filter((i) => until(i) > now);
      const lead = [...items.filter((i) => i.pinned), ...flashes];
      clearTimeout(this.regroup);
      if (flashes.length)
        this.regroup = setTimeout(() => this.render(this.all), Math.min(...flashes.map(until)) - now + 50);
      return [...lead, ...items.filter((i) => !lead.includes(i))].slice(0, this.max);
    }

    render(all) {
      this.all = all;
      const items = this.arrange(all);
      const nodes = new Map();
      const old = this.items();
      const first = old[0]?.dataset.id;
      // A reader looking at a headline keeps it; a moving bar keeps its place.
      const held = this.still && this.held() && old[this.current];
      const spot = (li) => (li.firstElementChild || li).getBoundingClientRect().left;
      const before = new Map(this.moving ? old.map((li) => [li, spot(li)]) : []);
      items.forEach((item, i) => {
        let li = this.nodes.get(item.id);
        if (!li) li = el("li");
        if (li.dataset.version !== String(item.version)) fill(li, item, this.t);
        nodes.set(item.id, li);
        const at = this.track.children[i];
        if (at !== li) this.track.insertBefore(li, at || null);
      });
      for (const [id, li] of this.nodes) if (!nodes.has(id)) li.remove();
      this.nodes = nodes;
      this.echo.replaceChildren(
        ...items.map((item) => {
          const li = nodes.get(item.id);
          const copy = el("div", li.className.replace("ticker-item", "ticker-dup"));
          copy.dataset.copy = item.id; // a copy of the item, not the item
          if (!this.fixed) copy.append(...li.cloneNode(true).childNodes);
          copy.querySelectorAll("a").forEach((a) => (a.tabIndex = -1));
          return copy;
        }),
      );
      this.root.classList.toggle("ticker--empty", !items.length);
      if (held?.isConnected) {
        this.show(this.items().indexOf(held));
        return this.layout(false);
      }
      const kept = [...before.keys()].find((li) => li.isConnected);
      if (kept) {
        this.show(0);
        return this.layout(false, this.position() + before.get(kept) - spot(kept));
      }
      const fresh = items.length > 0 && items[0].id !== first;
      if (fresh) this.current = 0;
      this.show(this.current);
      this.layout(fresh);
    }

    /** Tell screen readers about new and corrected alerts, politely, without re-reading the
     * bar: a burst is one summary, not three interruptions. */
    announce(added, corrected = []) {
      const t = this.t;
      const say = (text) => {
        this.live.append(el("p", null, text));
        while (this.live.childElementCount > 3) this.live.firstElementChild.remove();
      };
      const line = (item) => `${item.source ? `${item.source}: ` : ""}${item.headline}`;
      if (added.length === 1) say(`${added[0].urgency === 1 ? t.flash : t.breaking}: ${line(added[0])}`);
      else if (added.length) say(`${added.length} ${t.alerts}: ${added.map(line).join("; ")}`);
      for (const item of corrected) if (item.urgency <= 2) say(`${t.corrected}: ${line(item)}`);
    }

    /** The button always says what it will do: Pause while moving, Play while paused. */
    pause(paused) {
      this.paused = paused;
      this.root.classList.toggle("ticker--paused", paused);
      const text = paused ? this.t.play : this.t.pause;
      this.toggle.setAttribute("aria-label", text);
      this.toggle.title = text;
    }

    held() {
      const vp = this.viewport;
      return this.paused || (!this.touch() && vp.matches(":hover")) || !!vp.querySelector(":focus-visible");
    }

    show(index) {
      const items = this.items();
      this.current = items.length ? (index + items.length) % items.length : 0;
      items.forEach((li, i) => li.classList.toggle("is-current", i === this.current));
    }

    prop(name, fallback) {
      return parseFloat(getComputedStyle(this.root).getPropertyValue(name)) || fallback;
    }

    position() {
      const transform = getComputedStyle(this.reel).transform;
      return transform && transform !== "none" ? new DOMMatrixReadOnly(transform).m41 : 0;
    }

    /** Size the loop to one copy of the items; restart at the newest item, stand at `at`,
     * or keep the position. */
    layout(restart, at) {
      const width = this.viewport.clientWidth;
      const head = this.track.firstElementChild;
      const copy = this.echo.firstElementChild;
      const length = copy && !this.still ? Math.abs(copy.getBoundingClientRect().left - head.getBoundingClientRect().left) : 0;
      const moving = length > width + 1;
      const same = moving === this.moving && width === this.width && length === this.length;
      if (!restart && at === undefined && same) return;
      const x = restart || !this.moving ? 0 : (at ?? this.position());
      Object.assign(this, { moving, width, length });
      this.root.classList.toggle("ticker--moving", moving);
      if (!moving) return this.reel.classList.remove("ticker-run");
      const style = this.reel.style;
      style.setProperty("--tk-to", `${(this.rtl ? 1 : -1) * length}px`);
      style.setProperty("--tk-dur", `${length / this.prop("--ticker-speed", 60)}s`);
      this.seek(x);
    }

    /** Restart the animation so that it stands at x now: a resume continues where the bar
     * stood instead of jumping back to the start. */
    seek(x) {
      const style = this.reel.style;
      const to = parseFloat(style.getPropertyValue("--tk-to"));
      const duration = parseFloat(style.getPropertyValue("--tk-dur"));
      const progress = (((x / to) % 1) + 1) % 1;
      style.setProperty("--tk-delay", `${-progress * duration}s`);
      this.reel.classList.remove("ticker-run");
      void this.reel.offsetWidth; // restart the animation with the new delay
      this.reel.classList.add("ticker-run");
    }

    /** Keyboard focus on a headline brings it into view (the bar is paused meanwhile). */
    reveal(target) {
      const li = target.closest("li");
      this.viewport.scrollTo(0, 0);
      if (!li || !target.matches(":focus-visible")) return;
      if (this.still) return this.show(this.items().indexOf(li));
      if (!this.moving) return;
      this.seek(this.rtl ? this.reel.offsetWidth - li.offsetLeft - li.offsetWidth : -li.offsetLeft);
    }
  }

  function fill(li, item, t) {
    const urgency = Math.min(9, Math.max(1, item.urgency | 0 || 3));
    li.className = `ticker-item ticker-u${urgency}${item.pinned ? " ticker-pinned" : ""}`;
    li.dataset.id = item.id;
    li.dataset.version = item.version;
    li.dataset.urgency = urgency;
    const href = safeLink(item.link);
    const box = el(href ? "a" : "span", "ticker-link");
    if (href) box.href = href;
    if (urgency <= 2) box.append(el("span", "ticker-flag", urgency === 1 ? t.flash : t.bulletin));
    if (item.source) box.append(el("bdi", "ticker-source", item.source), el("span", "ticker-colon", ": "));
    box.append(el("bdi", "ticker-headline", item.headline));
    li.replaceChildren(box);
  }

  /** Turn an element with data-ticker (data-edition, data-region, data-category, data-hub,
   * data-dir, data-max-items, data-flash-minutes) into a live ticker. */
  function mount(root, options = {}) {
    if (root.ticker) return root.ticker;
    const data = root.dataset;
    const edition = options.edition || data.edition || "en";
    const num = (value, fallback) => (value > 0 ? +value : fallback);
    const view = new View(root, {
      edition,
      dir: options.dir || data.dir,
      maxItems: num(options.maxItems ?? data.maxItems, 10),
      flashMinutes: num(options.flashMinutes ?? data.flashMinutes, 10),
    });
    root.ticker = view;
    view.setState("connecting");
    // Hidden but in place until its stylesheet is in: a page that reserves the bar's height
    // (docs/widget.md) does not shift.
    root.style.visibility = "hidden";
    cssReady.then(() => (root.style.visibility = ""));
    hubUrl(options.hub || data.hub).then((hub) => {
      view.connection = connect({
        hub,
        edition,
        region: options.region || data.region,
        category: options.category || data.category,
        onStatus: (state) => view.setState(state),
        onChange: (items, added, corrected) => {
          view.render(items);
          view.announce(added, corrected);
        },
      });
    });
    return view;
  }

  const mountAll = () => document.querySelectorAll("[data-ticker]").forEach((root) => mount(root));
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();

  window.Ticker = {
    mount,
    connect,
    config,
    safeLink,
    view: (root, options) => new View(root, options),
    text: TEXT,
  };
})();
