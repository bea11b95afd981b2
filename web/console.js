/* The newsroom console: sign in, post, correct and withdraw alerts, and watch them live.
 *
 * It talks to the publisher's HTTP API with an editor token kept in sessionStorage (never in
 * a URL), and follows the hub through the widget's own Ticker.connect, so the console and
 * the readers' tickers see the same thing. Everything from the API goes in as text.
 * Its words come from console-i18n.js; the other pages (console-pages.js) use the desk
 * through `window.ConsoleDesk`, which is all they may touch of it.
 */
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "ticker.token";
  const FIELDS = [
    "edition",
    "headline",
    "source",
    "link",
    "urgency",
    "expires",
    "publish_at",
    "pinned",
    "regions",
    "categories",
  ];
  const FIELD_OF = { expires_in: "expires" }; // API field -> form field
  const BADGES = [1, 2]; // the urgencies the bar tags; 3 to 9 are plain there
  const { t } = ConsoleI18n;
  /** "English (en)" for a code, in the console's language: editors read names, the API
   * reads codes. */
  const editionName = (code) => {
    const name = ConsoleI18n.languageName(code);
    return name === code ? code : `${name} (${code})`;
  };

  const form = $("item-form");
  const submit = $("submit");
  let config = null;
  let token = sessionStorage.getItem(TOKEN_KEY);
  let busy = false;
  let editing = null; // the item being corrected
  let pending = null; // {text, key}: a post not yet confirmed, retried with the same key
  let preview = null;
  let connection = null;
  let listEdition = null;
  let offline = false; // the last post failed for want of a connection
  let shown = null; // the live list's items, drawn again when the language changes
  let me = null; // whoami: {name, roles, editions, expires} of the signed-in token
  const sessionListeners = [];
  // What the console last said in its notice, its error box and under the token field, as
  // functions that say it again in the language the editor switches to.
  const said = { notice: null, error: null, token: null };

  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  };
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const dirOf = (edition) => config.editions.find((e) => e.code === edition)?.dir || "ltr";
  /** Characters as the publisher counts them: code points, trimmed, NFC. */
  const length = (text) => [...text.trim().normalize("NFC")].length;

  /** An Idempotency-Key: crypto.randomUUID needs a secure context, this does not. */
  const newKey = () =>
    [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");

  async function api(method, path, body, headers = {}) {
    const response = await fetch(path, {
      method,
      cache: "no-store",
      credentials: "omit",
      headers: {
        ...(body ? { "Content-Type": "application/json" } : {}),
        Authorization: `Bearer ${token}`,
        ...headers,
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = {};
    try {
      data = await response.json();
    } catch {}
    return { status: response.status, data, headers: response.headers };
  }

  // --- signing in ---------------------------------------------------------------------------

  async function signIn(candidate) {
    token = candidate;
    let result;
    try {
      result = await api("GET", "/api/whoami");
    } catch {
      // A network failure says nothing about the token: keep it for the next try.
      $("sign-in").hidden = false;
      tokenError("signIn.unreachable");
      return;
    }
    if (result.status !== 200) {
      return result.status === 401 ? signedOut("signIn.refused") : signedOut(null, result.data.message);
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    me = { roles: ["editor"], editions: null, ...result.data, name: result.data.editor };
    $("who-name").textContent = me.name;
    $("who").hidden = false;
    $("sign-in").hidden = true;
    $("compose").hidden = !canPost();
    document.body.classList.add("signed-in");
    document.body.classList.toggle("can-post", canPost());
    $("token").value = "";
    scope();
    const name = me.name;
    notice(() => t(canPost() ? "signIn.done" : "signIn.doneNoPost", { name }));
    if (shown) renderList(shown); // with the actions this token may take
    for (const listener of sessionListeners) listener(me);
  }

  const hasRole = (...roles) => Boolean(me?.roles.some((role) => roles.includes(role)));
  /** Editors and chiefs post; an admin alone manages tokens and reads the audit trail. */
  const canPost = () => hasRole("editor", "chief");
  const canAudit = () => hasRole("chief", "admin");
  const inScope = (edition) => !me?.editions || hasRole("chief") || me.editions.includes(edition);

  /** The form offers only the editions this token may post in. */
  function scope() {
    const select = form.elements.edition;
    for (const option of select.options) option.disabled = !inScope(option.value);
    if (select.selectedOptions[0]?.disabled) {
      const first = [...select.options].find((option) => !option.disabled);
      if (first) {
        select.value = first.value;
        directions();
        updatePreview();
        follow(first.value);
      }
    }
  }

  /** Why the token was not taken: a message key, or the publisher's own words. */
  function tokenError(key, text = "") {
    said.token = () => (key ? t(key) : text || "");
    $("token-error").textContent = said.token();
    $("token").setAttribute("aria-invalid", String(Boolean(key || text)));
  }

  function signedOut(key, text) {
    token = null;
    me = null;
    document.body.classList.remove("can-post");
    sessionStorage.removeItem(TOKEN_KEY);
    $("who").hidden = true;
    $("compose").hidden = true;
    $("sign-in").hidden = false;
    document.body.classList.remove("signed-in");
    tokenError(key, text);
    for (const listener of sessionListeners) listener(null);
  }

  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (value) signIn(value);
    else signedOut("signIn.empty");
  });
  $("sign-out").addEventListener("click", () => signedOut(null));

  // --- the form -----------------------------------------------------------------------------

  function choices(container, name, values) {
    container.replaceChildren(
      ...values.map((value) => {
        const label = el("label", "choice");
        const box = el("input");
        box.type = "checkbox";
        box.name = name;
        box.value = value;
        label.append(box, ` ${value}`);
        return label;
      }),
    );
  }

  const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((b) => b.value);

  /** The request body the form stands for. */
  function collect() {
    const f = form.elements;
    const body = {
      headline: f.headline.value.trim(),
      source: f.source.value.trim() || null,
      link: f.link.value.trim() || null,
      urgency: Number(f.urgency.value),
      regions: checked("regions"),
      categories: checked("categories"),
    };
    const when = f.publish_at.value;
    if (!editing) {
      body.edition = f.edition.value;
      if (!body.source) delete body.source;
      if (!body.link) delete body.link;
      if (when) body.publish_at = new Date(when).toISOString();
      if (f.pinned.checked) body.pinned = true;
    } else {
      body.pinned = f.pinned.checked;
      // The field holds minutes: an unchanged one leaves the time as it was, to the second.
      if (editing.status === "scheduled" && when && when !== localInput(editing.publish_at))
        body.publish_at = new Date(when).toISOString();
    }
    // "default": the publisher's default for the urgency; "": never; "keep": as it is.
    const expiry = f.expires.value;
    if (expiry === "") body.expires_in = null;
    else if (expiry !== "keep" && expiry !== "default") body.expires_in = Number(expiry);
    return body;
  }

  /** "2026-11-26T03:00" on the editor's own clock, as a datetime-local field shows it. */
  function localInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
  }

  function counts() {
    for (const name of ["headline", "source"]) {
      const max = config.limits[name];
      const n = length(form.elements[name].value);
      const out = $(`c-${name}`);
      out.textContent = t("compose.count", { n, max });
      out.classList.toggle("over", n > max);
    }
  }

  function updatePreview() {
    const body = collect();
    const edition = editing ? editing.edition : body.edition;
    if (!preview || preview.edition !== edition) {
      const host = el("div");
      $("preview").replaceChildren(host);
      preview = Ticker.view(host, { edition, dir: dirOf(edition), still: true });
      preview.edition = edition;
    }
    const headline = body.headline.trim() || t("compose.previewHeadline");
    preview.render([
      {
        id: "preview",
        version: Date.now(),
        status: "live",
        created: "",
        headline,
        source: body.source?.trim() || null,
        link: body.link,
        urgency: body.urgency,
      },
    ]);
  }

  function directions() {
    const edition = editing ? editing.edition : form.elements.edition.value;
    // Arabic is typed right to left; dir=auto still isolates a Latin name inside it.
    for (const name of ["headline", "source"]) form.elements[name].dir = dirOf(edition) === "rtl" ? "rtl" : "auto";
  }

  // A headline is one line: Enter posts instead of breaking it, and a pasted line break
  // becomes a space. Ctrl+Enter (or Cmd+Enter) posts from any field.
  form.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.isComposing) return;
    if (e.ctrlKey || e.metaKey || (e.target.name === "headline" && !e.shiftKey)) {
      e.preventDefault();
      form.requestSubmit();
    } else if (e.target.name === "headline") e.preventDefault();
  });
  form.elements.headline.addEventListener("input", (e) => {
    const t = e.target;
    if (/[\r\n]/.test(t.value)) t.value = t.value.replace(/\s*[\r\n]+\s*/g, " ");
  });

  form.addEventListener("input", (e) => {
    counts();
    tagsChosen();
    updatePreview();
    const field = e.target.closest("[data-field]");
    if (field) clearError(field.dataset.field);
  });
  form.elements.edition.addEventListener("change", () => {
    directions();
    follow(form.elements.edition.value);
  });

  function tagsChosen() {
    const chosen = [...checked("regions"), ...checked("categories")];
    $("tags-chosen").textContent = chosen.length
      ? t("compose.tagsChosen", { list: chosen.join(", ") })
      : t("compose.tagsNone");
  }

  function clearError(name) {
    const out = $(`e-${name}`);
    if (out) out.textContent = "";
    const input = form.elements[name];
    if (input?.setAttribute) input.setAttribute("aria-invalid", "false");
    form.querySelector(`[data-field="${name}"]`)?.classList.remove("invalid");
  }

  function clearErrors() {
    FIELDS.forEach(clearError);
    formError(null);
  }

  /** API errors go next to the field they name; whatever names no field goes on top. */
  function showErrors(result) {
    const fields = result.data.fields || {};
    const general = [];
    let first = null;
    for (const [apiName, message] of Object.entries(fields)) {
      const name = FIELD_OF[apiName] || apiName;
      const out = $(`e-${name}`);
      if (!out || !FIELDS.includes(name)) {
        general.push(`${apiName}: ${message}`);
        continue;
      }
      out.textContent = message;
      form.querySelector(`[data-field="${name}"]`).classList.add("invalid");
      const input = form.elements[name];
      if (input?.setAttribute) input.setAttribute("aria-invalid", "true");
      if (name === "regions" || name === "categories") $("tags").open = true;
      first ||= name === "regions" || name === "categories" ? form.querySelector(`input[name="${name}"]`) : input;
    }
    const summary = Object.keys(fields).length && !general.length;
    formError(() => [
      el("p", null, [problem(result), ...(result.notTwice ? [t("errors.notTwice")] : [])].join(" ")),
      ...(summary ? [el("p", null, t("errors.fixFields"))] : []),
      ...general.map((line) => el("p", null, line)),
    ]);
    first?.focus();
  }

  /** What went wrong, in the publisher's words when it gave some, else in the console's. */
  function problem(result) {
    if (result.key) return t(result.key);
    if (result.data.message) return result.data.message;
    if (result.status === 0) return t(result.notTwice ? "errors.unreachable" : "errors.unreachableRetry");
    if (result.status >= 500) return t("errors.failed");
    return t("errors.answered", { status: result.status });
  }

  /** The error box above the buttons: `render` gives its content, null clears it. */
  function formError(render) {
    said.error = render;
    $("form-error").replaceChildren(...(render ? render() : []));
  }

  function setBusy(on, label) {
    busy = on;
    submit.disabled = on;
    submit.textContent = on ? label : t(editing ? "compose.save" : "compose.post");
    form.setAttribute("aria-busy", String(on));
  }

  /** A notice, with buttons for what may come next; it takes the focus, so a screen
   * reader hears it and the next Tab reaches its buttons, then the form. */
  function notice(text, ...actions) {
    said.notice = () => {
      const nodes = [el("span", null, text())];
      for (const action of actions) {
        const button = el("button", "link-button", t(action.label));
        button.type = "button";
        button.addEventListener("click", action.run);
        nodes.push(" ", button);
      }
      return nodes;
    };
    $("notice").replaceChildren(...said.notice());
    $("notice").focus();
  }

  /** After a post or a correction: correct it, withdraw it, or undo a post (withdraw it at
   * once, without asking, since it was posted a moment ago). */
  function done(text, item, undo) {
    const actions = [
      { label: "action.correct", run: () => startCorrection(item) },
      { label: "action.withdraw", run: (e) => confirmWithdraw(item, e.target) },
    ];
    if (undo) actions.push({ label: "action.undo", run: (e) => withdraw(item, e.target, "done.undone") });
    notice(text, ...actions);
  }

  /** A scheduled item saved: when it goes live, and how to change or cancel it. */
  function scheduledDone(item, key) {
    const edition = editionName(item.edition);
    notice(
      () => t(key, { edition, time: when(item.publish_at) }),
      { label: "action.edit", run: () => startCorrection(item) },
      { label: "scheduled.cancel", run: (e) => withdraw(item, e.target, "done.cancelled") },
    );
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy) return; // a double-click never posts twice: the button is disabled at once too
    clearErrors();
    $("notice").replaceChildren();
    said.notice = null;
    const body = collect();
    setBusy(true, t(editing ? "compose.saving" : "compose.posting"));
    try {
      if (editing) await correct(editing, body);
      else await post(body);
    } finally {
      setBusy(false);
    }
  });

  async function post(body) {
    const text = JSON.stringify(body);
    // One key per submission; a retry of the same content reuses it, so it cannot post twice.
    if (!pending || pending.text !== text) pending = { text, key: newKey() };
    for (let attempt = 0; ; attempt++) {
      let result;
      try {
        result = await api("POST", "/api/items", body, { "Idempotency-Key": pending.key });
      } catch {
        result = { status: 0, data: {} };
      }
      if (result.status === 201) {
        pending = null;
        const again = result.headers.get("Idempotent-Replayed") ? "done.postedOnce" : "done.posted";
        resetForm(body.edition);
        const edition = result.data.edition;
        if (result.data.status === "scheduled") scheduledDone(result.data, "done.scheduled");
        else done(() => t(again, { edition: editionName(edition) }), result.data, true);
        return;
      }
      if (result.status === 401) return signedOut("signIn.expired");
      if ((result.status === 0 || result.status === 503) && attempt < 2) {
        await sleep((Number(result.headers?.get("Retry-After")) || attempt + 1) * 1000);
        continue;
      }
      if (result.status === 0 || result.status >= 500) {
        offline = true;
        result.notTwice = true;
      } else {
        pending = null;
      }
      return showErrors(result);
    }
  }

  /** Only what the editor changed goes out: every correction reaches every reader. */
  function changes(item, body) {
    const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
    const now = (name) => (name === "pinned" ? Boolean(item.pinned) : item[name]);
    return Object.fromEntries(
      Object.entries(body).filter(([name, value]) => name === "expires_in" || !same(value, now(name))),
    );
  }

  async function correct(item, body) {
    body = changes(item, body);
    if (!Object.keys(body).length) {
      return showErrors({ status: 422, data: {}, key: "errors.unchanged" });
    }
    let result;
    try {
      result = await api("PATCH", `/api/items/${encodeURIComponent(item.id)}`, { ...body, version: item.version });
    } catch {
      result = { status: 0, data: {} };
    }
    if (result.status === 200) {
      resetForm(item.edition);
      if (result.data.status === "scheduled") return scheduledDone(result.data, "done.rescheduled");
      const version = result.data.version;
      return done(() => t("done.corrected", { version }), result.data, false);
    }
    if (result.status === 401) return signedOut("signIn.expired");
    if (result.status === 409 || result.data.fields?.version) return conflict(item);
    showErrors(result);
  }

  /** Someone else corrected the item meanwhile: one message, and a way to their version. */
  function conflict(item) {
    const reload = async () => {
      const result = await api("GET", `/api/items/${encodeURIComponent(item.id)}`).catch(() => ({}));
      if (result.status === 200) startCorrection(result.data);
      else formError(() => [el("p", null, t("errors.gone"))]);
    };
    formError(() => {
      const load = el("button", "link-button", t("errors.loadCurrent"));
      load.type = "button";
      load.id = "load-current";
      load.addEventListener("click", reload);
      const line = el("p", null, `${t("errors.conflict")} `);
      line.append(load);
      return [line];
    });
    $("load-current").focus();
  }

  function resetForm(edition) {
    editing = null;
    form.reset();
    form.elements.edition.disabled = false;
    form.elements.edition.value = edition;
    $("f-expires").querySelector('option[value="keep"]')?.remove();
    $("publish-field").hidden = false;
    $("compose-title").textContent = t("compose.title");
    $("cancel").hidden = true;
    submit.textContent = t("compose.post");
    clearErrors();
    tagsChosen();
    directions();
    counts();
    updatePreview();
  }

  /** The form's content fields, as an item has them. */
  function fillFrom(item) {
    const f = form.elements;
    f.headline.value = item.headline;
    f.source.value = item.source || "";
    f.link.value = item.link || "";
    f.urgency.value = String(item.urgency);
    for (const box of form.querySelectorAll('.tags input[type="checkbox"]'))
      box.checked = (box.name === "regions" ? item.regions : item.categories).includes(box.value);
    return f;
  }

  function startCorrection(item) {
    editing = item;
    const f = fillFrom(item);
    clearErrors();
    f.edition.value = item.edition;
    f.edition.disabled = true; // an item keeps its edition: withdraw it and post it again
    const keep = el("option");
    keep.value = "keep";
    $("f-expires").querySelector('option[value="keep"]')?.remove();
    $("f-expires").prepend(keep);
    f.expires.value = "keep";
    f.pinned.checked = Boolean(item.pinned);
    // Only a scheduled item's time may move; a live item has gone out.
    $("publish-field").hidden = item.status !== "scheduled";
    f.publish_at.value = item.status === "scheduled" ? localInput(item.publish_at) : "";
    correctionLabels();
    $("tags").open ||= item.regions.length + item.categories.length > 0;
    tagsChosen();
    $("cancel").hidden = false;
    directions();
    counts();
    updatePreview();
    f.headline.focus();
  }
  $("cancel").addEventListener("click", () => resetForm(editing.edition));

  /** The words of a correction in progress, in the console's language. */
  function correctionLabels() {
    const item = editing;
    const title = item.status === "scheduled" ? "compose.editScheduledTitle" : "compose.correctTitle";
    $("compose-title").textContent = t(title, { headline: item.headline, version: item.version });
    const keep = $("f-expires").querySelector('option[value="keep"]');
    if (keep) keep.textContent = item.expires ? t("compose.keepUntil", { time: time(item.expires) }) : t("compose.keepNever");
    if (!busy) submit.textContent = t(item.status === "scheduled" ? "compose.saveScheduled" : "compose.save");
  }

  /** After a withdrawal, the same content can go out again with one click. */
  function repost(item) {
    resetForm(item.edition);
    const f = fillFrom(item);
    counts();
    updatePreview();
    f.headline.focus();
  }

  // --- withdrawing --------------------------------------------------------------------------

  const dialog = $("confirm");
  /** Ask before something that cannot be taken back; resolves true if confirmed. The
   * button that asked gets the focus back either way. */
  function ask({ title, explain, confirm, quote, dir = "auto", button }) {
    $("confirm-title").dataset.i18n = title;
    $("confirm-explain").dataset.i18n = explain;
    $("confirm-withdraw").dataset.i18n = confirm;
    ConsoleI18n.apply(dialog);
    $("confirm-text").replaceChildren(...quote);
    $("confirm-text").dir = dir;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.onclose = () => {
        // The close of an earlier question may be announced after this one opened (Escape,
        // then Enter at once): it is not this question's answer.
        if (dialog.open) return;
        dialog.onclose = null;
        const yes = dialog.returnValue === "withdraw";
        if (!yes || button.isConnected) button.focus();
        resolve(yes);
      };
      dialog.showModal();
    });
  }

  const quoteOf = (item) => [...(item.source ? [el("bdi", null, item.source), ": "] : []), el("bdi", null, item.headline)];

  async function confirmWithdraw(item, button) {
    const scheduled = item.status === "scheduled";
    const yes = await ask({
      title: scheduled ? "cancel.title" : "withdraw.title",
      explain: scheduled ? "cancel.explain" : "withdraw.explain",
      confirm: scheduled ? "cancel.confirm" : "withdraw.confirm",
      quote: quoteOf(item),
      dir: dirOf(item.edition),
      button,
    });
    if (yes) return withdraw(item, button, scheduled ? "done.cancelled" : "done.withdrawn");
    return false;
  }

  async function withdraw(item, button, saying = "done.withdrawn") {
    button.disabled = true;
    let result;
    try {
      result = await api("DELETE", `/api/items/${encodeURIComponent(item.id)}`);
    } catch {
      result = { status: 0, data: {} };
    }
    button.disabled = false;
    if (result.status === 200 || result.status === 404) {
      const key = result.status === 200 ? saying : "done.alreadyGone";
      notice(() => t(key), { label: "done.postAgain", run: () => repost(item) });
      return true;
    }
    if (result.status === 401) return signedOut("signIn.expired");
    notice(() => t("done.notWithdrawn", { reason: problem(result) }));
  }

  // --- the live list ------------------------------------------------------------------------

  /** 20:20:45 UTC: a 24-hour clock with the time zone, as newsrooms read the time. */
  const CLOCK = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" };
  const time = (iso) => ConsoleI18n.formatDate(iso, CLOCK);
  /** 26 Nov 2026, 03:00 UTC: a moment that may be another day. */
  const WHEN = { dateStyle: "medium", timeStyle: "long", hourCycle: "h23" };
  const when = (iso) => ConsoleI18n.formatDate(iso, WHEN);

  function row(item) {
    const li = el("li", `item u${item.urgency}`);
    li.dataset.id = item.id;
    li.dataset.version = item.version;
    li.dataset.lang = rowKey();
    const main = el("p", "item-text");
    main.dir = dirOf(item.edition);
    if (item.pinned) main.append(el("span", "badge pinned", t("badge.pinned")), " ");
    if (BADGES.includes(item.urgency)) main.append(el("span", "badge", t(`badge.${item.urgency}`)), " ");
    if (item.source) main.append(el("bdi", "item-source", item.source), ": ");
    main.append(el("bdi", "item-headline", item.headline));
    const meta = el("p", "item-meta");
    const parts = [
      t("live.version", { version: item.version }),
      t("live.by", { time: time(item.updated), editor: item.editor }),
      [...item.regions, ...item.categories].join(", "),
      item.expires ? t("live.expires", { time: time(item.expires) }) : "",
    ];
    meta.textContent = parts.filter(Boolean).join(" · ");
    const href = Ticker.safeLink(item.link);
    if (href) {
      const a = el("a", null, t("live.link"));
      a.href = href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      meta.append(" · ", a);
    }
    const actions = el("div", "item-actions");
    const fix = el("button", "correct", t("action.correct"));
    fix.type = "button";
    fix.addEventListener("click", () => startCorrection(item));
    const pull = el("button", "withdraw danger", t("action.withdraw"));
    pull.type = "button";
    pull.addEventListener("click", () => confirmWithdraw(item, pull));
    actions.append(fix, pull);
    if (canAudit()) actions.append(historyLink(item));
    li.append(main, meta, actions);
    return li;
  }

  /** What a row's words depend on: the language, and whether the history may be read. */
  const rowKey = () => `${ConsoleI18n.lang()}${canAudit() ? "+audit" : ""}`;

  function historyLink(item) {
    const a = el("a", "history-link", t("action.history"));
    a.href = `#/history/${encodeURIComponent(item.id)}`;
    return a;
  }

  function renderList(items) {
    shown = items;
    const list = $("items");
    const old = new Map([...list.children].map((li) => [li.dataset.id, li]));
    list.replaceChildren(
      ...items.map((item) => {
        const li = old.get(item.id);
        const same = li?.dataset.version === String(item.version) && li.dataset.lang === rowKey();
        return same ? li : row(item);
      }),
    );
    $("items-empty").hidden = items.length > 0;
    // A correction in progress of an item that was withdrawn or changed by someone else.
    if (editing && !items.some((i) => i.id === editing.id) && editing.edition === listEdition) {
      formError(() => [el("p", null, t("errors.goneMeanwhile"))]);
    }
  }

  const connState = (state) => (["connecting", "live", "reconnecting", "failed"].includes(state) ? t(`conn.${state}`) : state);

  function follow(edition) {
    if (edition === listEdition) return;
    listEdition = edition;
    for (const tab of $("tabs").children) tab.setAttribute("aria-pressed", String(tab.value === edition));
    connection?.close();
    shown = null;
    $("items").replaceChildren();
    $("items-empty").hidden = true;
    connection = Ticker.connect({
      hub: config.hub_url,
      edition,
      onChange: renderList,
      onStatus: (state) => {
        // The connection is back: a post that failed for want of it may be tried again.
        if (state === "live" && offline) {
          offline = false;
          formError(null);
        }
        $("conn").dataset.state = state;
        $("conn").textContent = connState(state);
      },
    });
  }

  window.addEventListener("online", () => {
    if (offline) formError(null);
    offline = false;
  });

  // --- the console's language ------------------------------------------------------------

  function editionLabels() {
    for (const option of form.elements.edition.options) {
      const name = editionName(option.value);
      option.textContent = dirOf(option.value) === "rtl" ? t("compose.editionRtl", { name }) : name;
    }
    for (const tab of $("tabs").children) tab.textContent = editionName(tab.value);
  }

  /** What the console wrote itself, written again in the language just chosen. The notice
   * and errors on screen stay as they are until the next action replaces them. */
  function relabel() {
    $("lang").value = ConsoleI18n.lang();
    $("conn").textContent = connState($("conn").dataset.state);
    if (!config) return;
    editionLabels();
    counts();
    tagsChosen();
    updatePreview();
    if (editing) correctionLabels();
    else if (!busy) submit.textContent = t("compose.post");
    if (shown) renderList(shown);
    if (said.notice) $("notice").replaceChildren(...said.notice());
    if (said.token) $("token-error").textContent = said.token();
    if (said.error) $("form-error").replaceChildren(...said.error());
  }
  ConsoleI18n.onChange(relabel);

  /** Hints that carry the editor's time zone and the publisher's limits. */
  function hints() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    $("h-publish_at").textContent = t("compose.publishAtHint", { zone });
    $("h-pinned").textContent = t("compose.pinHint", { n: config.limits.pinned_items ?? 3 });
  }
  ConsoleI18n.onChange(() => config && hints());

  // What the other pages (console-pages.js) use of the desk.
  window.ConsoleDesk = {
    api,
    el,
    time,
    when,
    editionName,
    dirOf: (edition) => dirOf(edition),
    config: () => config,
    me: () => me,
    canAudit,
    canPost,
    hasRole,
    ask,
    quoteOf,
    signedOut: (key) => signedOut(key),
    onSession: (listener) => sessionListeners.push(listener),
    /** The compose form filled with an old item's content, to post it as a new one. */
    repost: (item) => {
      repost(item);
      notice(() => t("archive.reposting"));
      $("f-headline").focus();
    },
    edit: (item) => startCorrection(item),
  };
  $("lang").addEventListener("change", (e) => ConsoleI18n.use(e.target.value));

  // --- start --------------------------------------------------------------------------------

  async function start() {
    ConsoleI18n.apply();
    relabel();
    for (;;) {
      try {
        config = await Ticker.config();
        break;
      } catch {
        $("conn").textContent = t("conn.retrying");
        await sleep(2000);
      }
    }
    const editions = form.elements.edition;
    for (const { code } of config.editions) {
      const option = el("option");
      option.value = code;
      editions.append(option);
      const tab = el("button", "tab");
      tab.type = "button";
      tab.value = code;
      tab.addEventListener("click", () => follow(code));
      $("tabs").append(tab);
    }
    editionLabels();
    hints();
    choices($("f-regions"), "regions", config.regions);
    choices($("f-categories"), "categories", config.categories);
    directions();
    counts();
    updatePreview();
    tagsChosen();
    follow(config.editions[0].code);
    if (token) await signIn(token);
    else signedOut(null);
  }
  start();
})();
