/* The newsroom console: sign in, post, correct and withdraw alerts, and watch them live.
 *
 * It talks to the publisher's HTTP API with an editor token kept in sessionStorage (never in
 * a URL), and follows the hub through the widget's own Ticker.connect, so the console and
 * the readers' tickers see the same thing. Everything from the API goes in as text.
 */
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "ticker.token";
  const FIELDS = ["edition", "headline", "source", "link", "urgency", "expires", "regions", "categories"];
  const FIELD_OF = { expires_in: "expires" }; // API field -> form field
  const LABELS = { 1: "Flash", 2: "Bulletin" }; // what the bar tags; 3 to 9 are plain there
  const LANGUAGES = new Intl.DisplayNames(["en"], { type: "language" });
  /** "English (en)" for a code: editors read names, the API reads codes. */
  const editionName = (code) => {
    let name = code;
    try {
      name = LANGUAGES.of(code) || code;
    } catch {}
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
      $("token-error").textContent = "The publisher cannot be reached; try again.";
      return;
    }
    if (result.status !== 200) {
      return signedOut(result.status === 401 ? "This token is not accepted." : result.data.message);
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("who-name").textContent = result.data.editor;
    $("who").hidden = false;
    $("sign-in").hidden = true;
    $("compose").hidden = false;
    document.body.classList.add("signed-in");
    $("token").value = "";
    notice(`Signed in as ${result.data.editor}. Tab to the form; Enter posts.`);
  }

  function signedOut(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("who").hidden = true;
    $("compose").hidden = true;
    $("sign-in").hidden = false;
    document.body.classList.remove("signed-in");
    $("token-error").textContent = message || "";
    $("token").setAttribute("aria-invalid", String(Boolean(message)));
  }

  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (value) signIn(value);
    else signedOut("Paste your editor token.");
  });
  $("sign-out").addEventListener("click", () => signedOut(""));

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
    if (!editing) {
      body.edition = f.edition.value;
      if (!body.source) delete body.source;
      if (!body.link) delete body.link;
    }
    const expiry = f.expires.value;
    if (expiry !== "keep" && (expiry || editing)) body.expires_in = expiry ? Number(expiry) : null;
    return body;
  }

  function counts() {
    for (const name of ["headline", "source"]) {
      const max = config.limits[name];
      const n = length(form.elements[name].value);
      const out = $(`c-${name}`);
      out.textContent = `${n} / ${max}`;
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
    const headline = body.headline.trim() || "Your headline appears here";
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
    $("tags-chosen").textContent = chosen.length ? `(${chosen.join(", ")})` : "(none)";
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
    $("form-error").replaceChildren();
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
    const box = $("form-error");
    const summary = Object.keys(fields).length && !general.length ? "Fix the marked fields." : "";
    box.replaceChildren(el("p", null, result.data.message || `The publisher answered ${result.status}.`));
    if (summary) box.append(el("p", null, summary));
    for (const line of general) box.append(el("p", null, line));
    first?.focus();
  }

  function setBusy(on, label) {
    busy = on;
    submit.disabled = on;
    submit.textContent = on ? label : editing ? "Save correction" : "Post";
    form.setAttribute("aria-busy", String(on));
  }

  /** A notice, with buttons for what may come next; it takes the focus, so a screen
   * reader hears it and the next Tab reaches its buttons, then the form. */
  function notice(text, ...actions) {
    const box = $("notice");
    box.replaceChildren(el("span", null, text));
    for (const action of actions) {
      const button = el("button", "link-button", action.label);
      button.type = "button";
      button.addEventListener("click", action.run);
      box.append(" ", button);
    }
    box.focus();
  }

  /** After a post or a correction: correct it, withdraw it, or undo a post (withdraw it at
   * once, without asking, since it was posted a moment ago). */
  function done(text, item, undo) {
    const actions = [
      { label: "Correct", run: () => startCorrection(item) },
      { label: "Withdraw", run: (e) => confirmWithdraw(item, e.target) },
    ];
    if (undo) actions.push({ label: "Undo", run: (e) => withdraw(item, e.target, "Undone: withdrawn from every ticker.") });
    notice(text, ...actions);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy) return; // a double-click never posts twice: the button is disabled at once too
    clearErrors();
    $("notice").replaceChildren();
    const body = collect();
    setBusy(true, editing ? "Saving…" : "Posting…");
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
        result = { status: 0, data: { message: "The publisher cannot be reached." } };
      }
      if (result.status === 201) {
        pending = null;
        const again = result.headers.get("Idempotent-Replayed") ? " (it had already arrived; posted once)" : "";
        resetForm(body.edition);
        done(`Posted to ${editionName(result.data.edition)}${again}.`, result.data, true);
        return;
      }
      if (result.status === 401) return signedOut("Your token is no longer accepted. Sign in again.");
      if ((result.status === 0 || result.status === 503) && attempt < 2) {
        await sleep((Number(result.headers?.get("Retry-After")) || attempt + 1) * 1000);
        continue;
      }
      if (result.status === 0 || result.status >= 500) {
        offline = true;
        result.data.message = `${result.data.message || "The publisher failed."} Nothing was posted twice: press Post again to retry.`;
      } else {
        pending = null;
      }
      return showErrors(result);
    }
  }

  /** Only what the editor changed goes out: every correction reaches every reader. */
  function changes(item, body) {
    const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
    return Object.fromEntries(
      Object.entries(body).filter(([name, value]) => name === "expires_in" || !same(value, item[name])),
    );
  }

  async function correct(item, body) {
    body = changes(item, body);
    if (!Object.keys(body).length) {
      return showErrors({ status: 422, data: { message: "Nothing was changed: edit a field first." } });
    }
    let result;
    try {
      result = await api("PATCH", `/api/items/${encodeURIComponent(item.id)}`, { ...body, version: item.version });
    } catch {
      result = { status: 0, data: { message: "The publisher cannot be reached; try again." } };
    }
    if (result.status === 200) {
      resetForm(item.edition);
      return done(`Corrected: version ${result.data.version} is live.`, result.data, false);
    }
    if (result.status === 401) return signedOut("Your token is no longer accepted. Sign in again.");
    if (result.status === 409 || result.data.fields?.version) return conflict(item);
    showErrors(result);
  }

  /** Someone else corrected the item meanwhile: one message, and a way to their version. */
  function conflict(item) {
    const load = el("button", "link-button", "Load the current version");
    load.type = "button";
    load.addEventListener("click", async () => {
      const result = await api("GET", `/api/items/${encodeURIComponent(item.id)}`).catch(() => ({}));
      if (result.status === 200) startCorrection(result.data);
      else $("form-error").replaceChildren(el("p", null, "This item is gone: it was withdrawn or expired."));
    });
    $("form-error").replaceChildren(
      el("p", null, "Someone else corrected this item meanwhile; your changes were not saved. "),
    );
    $("form-error").firstChild.append(load);
    load.focus();
  }

  function resetForm(edition) {
    editing = null;
    form.reset();
    form.elements.edition.disabled = false;
    form.elements.edition.value = edition;
    $("f-expires").querySelector('option[value="keep"]')?.remove();
    $("compose-title").textContent = "Post an alert";
    $("cancel").hidden = true;
    submit.textContent = "Post";
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
    for (const box of form.querySelectorAll('input[type="checkbox"]'))
      box.checked = (box.name === "regions" ? item.regions : item.categories).includes(box.value);
    return f;
  }

  function startCorrection(item) {
    editing = item;
    const f = fillFrom(item);
    clearErrors();
    f.edition.value = item.edition;
    f.edition.disabled = true; // an item keeps its edition: withdraw it and post it again
    const keep = el("option", null, item.expires ? `Keep: ${time(item.expires)}` : "Keep: never");
    keep.value = "keep";
    $("f-expires").querySelector('option[value="keep"]')?.remove();
    $("f-expires").prepend(keep);
    f.expires.value = "keep";
    $("compose-title").textContent = `Correct “${item.headline}” (version ${item.version})`;
    $("tags").open ||= item.regions.length + item.categories.length > 0;
    tagsChosen();
    $("cancel").hidden = false;
    submit.textContent = "Save correction";
    directions();
    counts();
    updatePreview();
    f.headline.focus();
  }
  $("cancel").addEventListener("click", () => resetForm(editing.edition));

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
  function confirmWithdraw(item, button) {
    $("confirm-text").replaceChildren(
      ...(item.source ? [el("bdi", null, item.source), ": "] : []),
      el("bdi", null, item.headline),
    );
    $("confirm-text").dir = dirOf(item.edition);
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue === "withdraw") withdraw(item, button);
      else button.focus();
    };
    dialog.showModal();
  }

  async function withdraw(item, button, said = "Withdrawn from every ticker.") {
    button.disabled = true;
    let result;
    try {
      result = await api("DELETE", `/api/items/${encodeURIComponent(item.id)}`);
    } catch {
      result = { status: 0, data: { message: "The publisher cannot be reached; try again." } };
    }
    button.disabled = false;
    if (result.status === 200 || result.status === 404) {
      const text = result.status === 200 ? said : "It was already gone.";
      return notice(text, { label: "Post it again", run: () => repost(item) });
    }
    if (result.status === 401) return signedOut("Your token is no longer accepted. Sign in again.");
    notice(`Not withdrawn: ${result.data.message || result.status}`);
  }

  // --- the live list ------------------------------------------------------------------------

  /** 20:20:45 UTC: a 24-hour clock with the time zone, as newsrooms read the time. */
  const time = (iso) =>
    new Date(iso).toLocaleTimeString("en-GB", {
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "short",
    });

  function row(item) {
    const li = el("li", `item u${item.urgency}`);
    li.dataset.id = item.id;
    li.dataset.version = item.version;
    const main = el("p", "item-text");
    main.dir = dirOf(item.edition);
    if (LABELS[item.urgency]) main.append(el("span", "badge", LABELS[item.urgency]), " ");
    if (item.source) main.append(el("bdi", "item-source", item.source), ": ");
    main.append(el("bdi", "item-headline", item.headline));
    const meta = el("p", "item-meta");
    const parts = [
      `version ${item.version}`,
      `${time(item.updated)} by ${item.editor}`,
      [...item.regions, ...item.categories].join(", "),
      item.expires ? `expires ${time(item.expires)}` : "",
    ];
    meta.textContent = parts.filter(Boolean).join(" · ");
    const href = Ticker.safeLink(item.link);
    if (href) {
      const a = el("a", null, "link");
      a.href = href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      meta.append(" · ", a);
    }
    const actions = el("div", "item-actions");
    const fix = el("button", "correct", "Correct");
    fix.type = "button";
    fix.addEventListener("click", () => startCorrection(item));
    const pull = el("button", "withdraw danger", "Withdraw");
    pull.type = "button";
    pull.addEventListener("click", () => confirmWithdraw(item, pull));
    actions.append(fix, pull);
    li.append(main, meta, actions);
    return li;
  }

  function renderList(items) {
    const list = $("items");
    const old = new Map([...list.children].map((li) => [li.dataset.id, li]));
    list.replaceChildren(
      ...items.map((item) => {
        const li = old.get(item.id);
        return li && li.dataset.version === String(item.version) ? li : row(item);
      }),
    );
    $("items-empty").hidden = items.length > 0;
    // A correction in progress of an item that was withdrawn or changed by someone else.
    if (editing && !items.some((i) => i.id === editing.id) && editing.edition === listEdition) {
      $("form-error").replaceChildren(el("p", null, "This item was withdrawn or expired meanwhile."));
    }
  }

  const STATES = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", failed: "Unavailable" };

  function follow(edition) {
    if (edition === listEdition) return;
    listEdition = edition;
    for (const tab of $("tabs").children) tab.setAttribute("aria-pressed", String(tab.value === edition));
    connection?.close();
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
          $("form-error").replaceChildren();
        }
        $("conn").dataset.state = state;
        $("conn").textContent = STATES[state] || state;
      },
    });
  }

  window.addEventListener("online", () => {
    if (offline) $("form-error").replaceChildren();
    offline = false;
  });

  // --- start --------------------------------------------------------------------------------

  async function start() {
    for (;;) {
      try {
        config = await Ticker.config();
        break;
      } catch {
        $("conn").textContent = "Cannot reach the publisher; retrying…";
        await sleep(2000);
      }
    }
    const editions = form.elements.edition;
    for (const { code, dir } of config.editions) {
      const option = el("option", null, `${editionName(code)}${dir === "rtl" ? ", right to left" : ""}`);
      option.value = code;
      editions.append(option);
      const tab = el("button", "tab", editionName(code));
      tab.type = "button";
      tab.value = code;
      tab.addEventListener("click", () => follow(code));
      $("tabs").append(tab);
    }
    choices($("f-regions"), "regions", config.regions);
    choices($("f-categories"), "categories", config.categories);
    directions();
    counts();
    updatePreview();
    tagsChosen();
    follow(config.editions[0].code);
    if (token) await signIn(token);
    else signedOut("");
  }
  start();
})();
