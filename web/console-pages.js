/* The console's other pages, one hash route each, beside the desk (console.js):
 *
 *   #/              the desk: post, correct, withdraw, the live list
 *   #/archive       search every item ever posted, page by page; post an old one again
 *   #/scheduled     the edition's scheduled items: edit or cancel them before they go live
 *   #/history/ID    an item's audit trail, field by field (chiefs and admins)
 *   #/tokens        tokens: list, create, rotate, revoke (admins)
 *   #/webhooks      webhooks: their state, why one was disabled, enable it again (admins)
 *
 * Hash routes keep the console one page that the publisher serves at `/`. The server
 * enforces every role; the console only leaves out what a token may not use. Everything
 * from the API goes in as text.
 */
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const D = window.ConsoleDesk;
  const { t } = ConsoleI18n;
  const { el } = D;
  const VIEWS = ["desk", "archive", "scheduled", "history", "tokens", "webhooks", "refused"];
  const PAGE_SIZE = 20;
  let me = null;
  let current = { page: "desk", arg: "" };
  const redraw = {}; // page -> a function that draws its words again in another language

  /** Numbers a page's requests: `ask()` gives a check that holds until the page asks
   * again, so an answer that arrives after a newer question was asked is dropped. */
  function latestOnly() {
    let asked = 0;
    return () => {
      const mine = ++asked;
      return () => mine === asked;
    };
  }

  /** "#/history/en-abc" -> {page: "history", arg: "en-abc"}; anything else is the desk. */
  function parse(hash) {
    const [, page = "", ...rest] = (hash || "").replace(/^#/, "").split("/");
    let arg = rest.join("/");
    try {
      arg = decodeURIComponent(arg);
    } catch {}
    return { page: PAGES[page] ? page : "desk", arg };
  }

  function show(view, focus = true) {
    for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
    for (const link of $("pages").querySelectorAll("a")) {
      if (link.dataset.page === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    // A new page is announced by its heading, and the keyboard starts from there.
    const heading = $(`view-${view}`).querySelector("h1");
    if (focus && view !== "desk" && heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }

  function route() {
    current = parse(location.hash);
    if (!me) return show("desk", false);
    PAGES[current.page](current.arg);
  }

  /** A page the token may not use: a plain message; the server refuses it anyway. */
  function refused(key) {
    $("refused-text").textContent = t(key);
    redraw.refused = () => ($("refused-text").textContent = t(key));
    show("refused");
  }

  /** An API answer's problem, in the publisher's words with the console's around them. */
  function failed(box, result, key) {
    if (result.status === 401) return D.signedOut("signIn.expired");
    const reason =
      result.data?.message ||
      (result.status === 0 ? t("errors.unreachableRetry") : t("errors.answered", { status: result.status }));
    box.replaceChildren(el("p", null, t(key, { reason })));
  }

  async function call(method, path, body) {
    try {
      return await D.api(method, path, body);
    } catch {
      return { status: 0, data: {} };
    }
  }

  function editionChoices(select) {
    if (select.options.length) {
      for (const option of select.options) option.textContent = D.editionName(option.value);
      return;
    }
    for (const { code } of D.config().editions) {
      const option = el("option", null, D.editionName(code));
      option.value = code;
      select.append(option);
    }
  }

  function statusBadge(status) {
    return el("span", `status status-${status}`, t(`status.${status}`));
  }

  function itemText(item) {
    const text = el("p", "item-text");
    text.dir = D.dirOf(item.edition);
    if (item.source) text.append(el("bdi", "item-source", item.source), ": ");
    text.append(el("bdi", "item-headline", item.headline));
    return text;
  }

  function historyLink(item) {
    const a = el("a", "history-link", t("action.history"));
    a.href = `#/history/${encodeURIComponent(item.id)}`;
    return a;
  }

  // --- the archive --------------------------------------------------------------------------

  const archive = { query: null, cursor: null, next: null, items: [], ask: latestOnly() };

  /** The search as the API takes it; `to` is a whole day, so the day after is sent. */
  function archiveQuery() {
    const f = $("archive-form").elements;
    const query = new URLSearchParams({ edition: f.edition.value, status: f.status.value });
    if (f.q.value.trim()) query.set("q", f.q.value.trim());
    if (f.editor.value.trim()) query.set("editor", f.editor.value.trim());
    if (f.from.value) query.set("from", f.from.value);
    if (f.to.value) {
      const next = new Date(`${f.to.value}T00:00:00Z`);
      next.setUTCDate(next.getUTCDate() + 1);
      query.set("to", next.toISOString().slice(0, 10));
    }
    query.set("limit", String(PAGE_SIZE));
    return query;
  }

  async function archiveLoad(cursor) {
    const query = new URLSearchParams(archive.query);
    if (cursor) query.set("cursor", cursor);
    $("archive-error").replaceChildren();
    const latest = archive.ask();
    const result = await call("GET", `/api/items?${query}`);
    if (!latest()) return;
    if (result.status !== 200) {
      archive.items = [];
      $("archive-results").replaceChildren();
      $("archive-summary").textContent = "";
      $("archive-next").hidden = true;
      return failed($("archive-error"), result, "archive.failed");
    }
    archive.cursor = cursor;
    archive.next = result.data.next;
    archive.items = result.data.items;
    archiveDraw();
    const summary = $("archive-summary");
    summary.tabIndex = -1;
    if (cursor) summary.focus();
  }

  function archiveDraw() {
    $("archive-results").replaceChildren(...archive.items.map(archiveRow));
    $("archive-summary").textContent = archive.items.length
      ? t("archive.count", { n: archive.items.length })
      : t("archive.none");
    $("archive-next").hidden = !archive.next;
    $("archive-first").hidden = !archive.cursor;
  }

  function archiveRow(item) {
    const li = el("li", `item u${item.urgency}`);
    li.dataset.id = item.id;
    const text = itemText(item);
    text.prepend(statusBadge(item.status), " ");
    const meta = el(
      "p",
      "item-meta",
      t("archive.meta", { time: D.when(item.created), editor: item.editor, version: item.version }),
    );
    const actions = el("div", "item-actions");
    const again = el("button", "repost", t("archive.repost"));
    again.type = "button";
    again.addEventListener("click", () => {
      location.hash = "#/";
      show("desk", false); // at once: the form takes the focus now
      D.repost(item);
    });
    if (D.canPost()) actions.append(again);
    if (D.canAudit()) actions.append(historyLink(item));
    li.append(text, meta, actions);
    return li;
  }

  $("archive-form").addEventListener("submit", (e) => {
    e.preventDefault();
    archive.query = archiveQuery().toString();
    archiveLoad(null);
  });
  $("archive-next").addEventListener("click", () => archiveLoad(archive.next));
  $("archive-first").addEventListener("click", () => archiveLoad(null));
  redraw.archive = () => {
    editionChoices($("archive-form").elements.edition);
    if (archive.query) archiveDraw();
  };

  function archivePage() {
    editionChoices($("archive-form").elements.edition);
    show("archive");
    if (!archive.query) {
      archive.query = archiveQuery().toString();
      archiveLoad(null);
    }
  }

  // --- scheduled items ----------------------------------------------------------------------

  const scheduled = { edition: null, items: [], timer: null, said: null, ask: latestOnly() };

  function scheduledTabs() {
    const tabs = $("scheduled-tabs");
    if (!tabs.children.length) {
      for (const { code } of D.config().editions) {
        const tab = el("button", "tab");
        tab.type = "button";
        tab.value = code;
        tab.addEventListener("click", () => scheduledLoad(code));
        tabs.append(tab);
      }
    }
    for (const tab of tabs.children) {
      tab.textContent = D.editionName(tab.value);
      tab.setAttribute("aria-pressed", String(tab.value === scheduled.edition));
    }
  }

  async function scheduledLoad(edition) {
    scheduled.edition = edition;
    scheduledTabs();
    clearTimeout(scheduled.timer);
    $("scheduled-error").replaceChildren();
    const latest = scheduled.ask();
    const result = await call("GET", `/api/scheduled?edition=${encodeURIComponent(edition)}`);
    if (!latest()) return;
    if (result.status !== 200) {
      scheduled.items = [];
      scheduledDraw();
      $("scheduled-empty").hidden = true;
      return failed($("scheduled-error"), result, "scheduled.failed");
    }
    scheduled.items = result.data.items;
    scheduledDraw();
    // The soonest item goes live at its time: the list follows it there.
    const soonest = Math.min(...scheduled.items.map((item) => Date.parse(item.publish_at)));
    if (Number.isFinite(soonest)) {
      const wait = Math.min(Math.max(soonest - Date.now() + 1500, 1000), 2 ** 31 - 1);
      scheduled.timer = setTimeout(() => {
        if (current.page === "scheduled" && me) scheduledLoad(scheduled.edition);
      }, wait);
    }
  }

  function scheduledDraw() {
    $("scheduled-items").replaceChildren(...scheduled.items.map(scheduledRow));
    $("scheduled-empty").hidden = scheduled.items.length > 0;
    if (scheduled.said) $("scheduled-notice").textContent = scheduled.said();
  }

  function scheduledRow(item) {
    const li = el("li", `item u${item.urgency}`);
    li.dataset.id = item.id;
    const text = itemText(item);
    if (item.pinned) text.prepend(el("span", "badge pinned", t("badge.pinned")), " ");
    const at = el("p", "publish-at");
    at.append(el("strong", null, t("scheduled.at", { time: D.when(item.publish_at) })));
    const meta = el("p", "item-meta", t("scheduled.meta", { editor: item.editor, version: item.version }));
    const actions = el("div", "item-actions");
    const edit = el("button", "edit", t("action.edit"));
    edit.type = "button";
    edit.addEventListener("click", () => {
      location.hash = "#/";
      show("desk", false); // at once: the form takes the focus now
      D.edit(item);
    });
    const cancel = el("button", "cancel danger", t("scheduled.cancel"));
    cancel.type = "button";
    cancel.addEventListener("click", () => scheduledCancel(item, cancel));
    if (D.canPost()) actions.append(edit, cancel);
    li.append(at, text, meta, actions);
    return li;
  }

  async function scheduledCancel(item, button) {
    const yes = await D.ask({
      title: "cancel.title",
      explain: "cancel.explain",
      confirm: "cancel.confirm",
      quote: D.quoteOf(item),
      dir: D.dirOf(item.edition),
      button,
    });
    if (!yes) return;
    const result = await call("DELETE", `/api/items/${encodeURIComponent(item.id)}`);
    if (result.status !== 200 && result.status !== 404) {
      return failed($("scheduled-error"), result, "scheduled.notCancelled");
    }
    const headline = item.headline;
    scheduled.said = () => t(result.status === 200 ? "scheduled.cancelled" : "done.alreadyGone", { headline });
    await scheduledLoad(scheduled.edition);
    $("scheduled-notice").focus();
  }

  redraw.scheduled = () => {
    if (scheduled.edition) {
      scheduledTabs();
      scheduledDraw();
    }
  };

  function scheduledPage() {
    show("scheduled");
    scheduled.said = null;
    $("scheduled-notice").textContent = "";
    scheduledLoad(scheduled.edition || D.config().editions[0].code);
  }

  // --- an item's history --------------------------------------------------------------------

  const history = { item: null, entries: [], cursor: null, ask: latestOnly() };

  async function historyLoad(cursor) {
    const query = new URLSearchParams({ item: history.item, limit: "50" });
    if (cursor) query.set("cursor", cursor);
    $("history-error").replaceChildren();
    const latest = history.ask();
    const result = await call("GET", `/api/audit?${query}`);
    if (!latest()) return;
    if (result.status === 403) return refused("refused.history");
    if (result.status !== 200) return failed($("history-error"), result, "history.failed");
    history.entries = cursor ? [...history.entries, ...result.data.entries] : result.data.entries;
    history.cursor = result.data.cursor;
    historyDraw();
  }

  function historyDraw() {
    $("history-item").textContent = history.item;
    $("history-entries").replaceChildren(...history.entries.map(entryRow));
    $("history-empty").hidden = history.entries.length > 0;
    $("history-more").hidden = !history.cursor;
  }

  const shown = (value) =>
    value == null || value === "" ? "—" : Array.isArray(value) ? value.join(", ") || "—" : String(value);

  function entryRow(entry) {
    const li = el("li", "entry");
    const head = el("h2", "entry-head");
    const action = ConsoleI18n.MESSAGES.en[`audit.${entry.action}`] ? t(`audit.${entry.action}`) : entry.action;
    head.append(el("span", "entry-action", action), " ");
    const who = entry.role ? t("history.byRole", { actor: entry.actor, role: roleName(entry.role) }) : entry.actor;
    head.append(el("span", "entry-who", t("history.by", { who })));
    const meta = el("p", "item-meta");
    const time = el("time", null, D.when(entry.at));
    time.dateTime = entry.at;
    meta.append(time);
    if (entry.address || entry.user_agent) {
      meta.append(" · ", t("history.from", { address: entry.address || "—" }));
      if (entry.user_agent) meta.append(" · ", el("bdi", "agent", entry.user_agent));
    }
    li.append(head, meta);
    const fields = Object.entries(entry.changes || {});
    if (fields.length) {
      const table = el("table", "changes");
      const caption = el("caption", "visually-hidden", t("history.changes"));
      const headRow = el("tr");
      for (const key of ["history.field", "history.before", "history.after"]) {
        const th = el("th", null, t(key));
        th.scope = "col";
        headRow.append(th);
      }
      const body = el("tbody");
      for (const [field, [before, after]] of fields) {
        const tr = el("tr");
        const th = el("th", null, fieldName(field));
        th.scope = "row";
        const was = el("td", "before");
        was.append(el("bdi", null, valueOf(field, before)));
        const now = el("td", "after");
        now.append(el("bdi", null, valueOf(field, after)));
        tr.append(th, was, now);
        body.append(tr);
      }
      const thead = el("thead");
      thead.append(headRow);
      table.append(caption, thead, body);
      li.append(table);
    }
    return li;
  }

  /** A value as the desk reads it: a status or a role in its words, a time in its clock. */
  function valueOf(field, value) {
    if (field === "status" && ConsoleI18n.MESSAGES.en[`status.${value}`]) return t(`status.${value}`);
    if (field === "roles" && Array.isArray(value)) return value.map(roleName).join(", ") || "—";
    if (typeof value === "string" && /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(value)) return D.when(value);
    return shown(value);
  }

  const fieldName = (field) => (ConsoleI18n.MESSAGES.en[`field.${field}`] ? t(`field.${field}`) : field);
  const roleName = (role) => (ConsoleI18n.MESSAGES.en[`role.${role}`] ? t(`role.${role}`) : role);

  $("history-more").addEventListener("click", () => historyLoad(history.cursor));
  redraw.history = () => history.item && historyDraw();

  function historyPage(id) {
    if (!D.canAudit()) return refused("refused.history");
    history.item = id;
    history.entries = [];
    history.cursor = null;
    historyDraw();
    $("history-empty").hidden = true;
    show("history");
    historyLoad(null);
  }

  // --- tokens -------------------------------------------------------------------------------

  const tokens = { list: [], secret: null };

  async function tokensLoad() {
    const result = await call("GET", "/api/tokens");
    if (result.status === 403) return refused("refused.tokens");
    if (result.status !== 200) return failed($("tokens-error"), result, "tokens.failed");
    tokens.list = result.data.tokens;
    tokensDraw();
  }

  function tokensDraw() {
    $("tokens-list").replaceChildren(...tokens.list.map(tokenRow));
    const editions = $("t-editions");
    if (!editions.children.length) {
      for (const { code } of D.config().editions) {
        const label = el("label", "choice");
        const box = el("input");
        box.type = "checkbox";
        box.name = "editions";
        box.value = code;
        label.append(box, " ", el("span", null, D.editionName(code)));
        editions.append(label);
      }
    } else {
      for (const box of editions.querySelectorAll("input")) box.nextElementSibling.textContent = D.editionName(box.value);
    }
    if (tokens.secret) $("secret-title").textContent = tokens.secret();
  }

  function tokenRow(record) {
    const tr = el("tr");
    tr.dataset.name = record.name;
    const name = el("th", null);
    name.scope = "row";
    name.append(el("bdi", null, record.name));
    const cells = [
      record.roles.map(roleName).join(", "),
      record.editions ? record.editions.map(D.editionName).join(", ") : t("tokens.allEditions"),
      record.expires ? D.when(record.expires) : t("tokens.never"),
      record.last_used ? D.when(record.last_used) : t("tokens.neverUsed"),
    ].map((text) => el("td", null, text));
    const actions = el("td", "token-actions");
    const rotate = el("button", "rotate", t("tokens.rotate"));
    rotate.type = "button";
    rotate.setAttribute("aria-label", t("tokens.rotateNamed", { name: record.name }));
    rotate.addEventListener("click", () => tokenRotate(record, rotate));
    const revoke = el("button", "revoke danger", t("tokens.revoke"));
    revoke.type = "button";
    revoke.setAttribute("aria-label", t("tokens.revokeNamed", { name: record.name }));
    revoke.addEventListener("click", () => tokenRevoke(record, revoke));
    actions.append(rotate, " ", revoke);
    tr.append(name, ...cells, actions);
    return tr;
  }

  /** A secret is shown once: in a field to select or copy, until the admin is done. */
  function showSecret(titleKey, name, secret) {
    tokens.secret = () => t(titleKey, { name });
    $("secret-title").textContent = tokens.secret();
    $("secret-value").value = secret;
    $("secret-copied").textContent = "";
    $("secret").hidden = false;
    $("secret-value").focus();
    $("secret-value").select();
  }

  $("secret-copy").addEventListener("click", async () => {
    const field = $("secret-value");
    try {
      await navigator.clipboard.writeText(field.value);
    } catch {
      field.select();
      document.execCommand("copy");
    }
    $("secret-copied").textContent = t("tokens.copied");
  });
  $("secret-done").addEventListener("click", () => {
    $("secret-value").value = "";
    $("secret").hidden = true;
    tokens.secret = null;
    $("t-name").focus();
  });

  const tokenFields = ["name", "roles", "editions", "expires"];

  function tokenErrors(result) {
    const fields = result.data?.fields || {};
    let first = null;
    for (const name of tokenFields) {
      const out = $(`te-${name}`);
      out.textContent = fields[name] || "";
      const field = $("token-form").querySelector(`[data-field="${name}"]`);
      field.classList.toggle("invalid", Boolean(fields[name]));
      if (fields[name] && !first) first = field.querySelector("input, select");
    }
    if (result.status === 409 && !fields.name) {
      $("te-name").textContent = result.data.message;
      first = $("t-name");
    }
    $("t-name").setAttribute("aria-invalid", String(Boolean($("te-name").textContent)));
    if (!first && result.status !== 201) failed($("tokens-error"), result, "tokens.notCreated");
    first?.focus();
  }

  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    const ticked = (name) => [...f.querySelectorAll(`input[name="${name}"]:checked`)].map((box) => box.value);
    const editions = ticked("editions");
    const body = {
      name: f.elements.name.value.trim(),
      roles: ticked("roles"),
      editions: editions.length ? editions : null,
      expires: f.elements.expires.value || null,
    };
    $("tokens-error").replaceChildren();
    const result = await call("POST", "/api/tokens", body);
    tokenErrors(result);
    if (result.status !== 201) return;
    f.elements.name.value = "";
    await tokensLoad();
    showSecret("tokens.created", result.data.name, result.data.token);
  });

  async function tokenRotate(record, button) {
    const yes = await D.ask({
      title: "rotate.title",
      explain: "rotate.explain",
      confirm: "rotate.confirm",
      quote: [el("bdi", null, record.name)],
      button,
    });
    if (!yes) return;
    const result = await call("POST", `/api/tokens/${encodeURIComponent(record.name)}/rotate`);
    if (result.status !== 200) return failed($("tokens-error"), result, "tokens.notRotated");
    showSecret("tokens.rotated", record.name, result.data.token);
  }

  async function tokenRevoke(record, button) {
    const yes = await D.ask({
      title: "revoke.title",
      explain: "revoke.explain",
      confirm: "revoke.confirm",
      quote: [el("bdi", null, record.name)],
      button,
    });
    if (!yes) return;
    const result = await call("DELETE", `/api/tokens/${encodeURIComponent(record.name)}`);
    if (result.status !== 200 && result.status !== 404) return failed($("tokens-error"), result, "tokens.notRevoked");
    await tokensLoad();
    $("tokens-title").focus();
  }

  redraw.tokens = () => D.hasRole("admin") && tokensDraw();

  function tokensPage() {
    if (!D.hasRole("admin")) return refused("refused.tokens");
    $("tokens-error").replaceChildren();
    show("tokens");
    tokensLoad();
  }

  // --- webhooks -----------------------------------------------------------------------------

  const webhooks = { list: [] };

  async function webhooksLoad() {
    const result = await call("GET", "/api/webhooks");
    if (result.status === 403) return refused("refused.webhooks");
    if (result.status !== 200) return failed($("webhooks-error"), result, "webhooks.failed");
    webhooks.list = result.data.webhooks;
    webhooksDraw();
  }

  function webhooksDraw() {
    $("webhooks-list").replaceChildren(...webhooks.list.map(webhookRow));
    $("webhooks-empty").hidden = webhooks.list.length > 0;
  }

  function webhookRow(hook) {
    const tr = el("tr");
    tr.dataset.id = hook.id;
    const url = el("th", null);
    url.scope = "row";
    const address = el("bdi", null, hook.url);
    address.dir = "ltr";
    url.append(address);
    const state = el("td", hook.enabled ? "state-on" : "state-off");
    state.textContent = hook.enabled
      ? t("webhooks.enabled")
      : t("webhooks.disabled", { reason: hook.disabled_reason || "" });
    const actions = el("td", "token-actions");
    if (!hook.enabled) {
      const enable = el("button", "enable", t("webhooks.enable"));
      enable.type = "button";
      enable.setAttribute("aria-label", t("webhooks.enableNamed", { url: hook.url }));
      enable.addEventListener("click", () => webhookEnable(hook, tr));
      actions.append(enable);
    }
    tr.append(url, el("td", null, D.editionName(hook.filters.edition)), el("td", null, String(hook.queued ?? 0)), state, actions);
    return tr;
  }

  async function webhookEnable(hook, row) {
    const result = await call("POST", `/api/webhooks/${encodeURIComponent(hook.id)}/enable`);
    if (result.status !== 200) return failed($("webhooks-error"), result, "webhooks.notEnabled");
    webhooks.list = webhooks.list.map((h) => (h.id === hook.id ? result.data : h));
    webhooksDraw();
    $("webhooks-title").focus();
  }

  redraw.webhooks = () => D.hasRole("admin") && webhooksDraw();

  function webhooksPage() {
    if (!D.hasRole("admin")) return refused("refused.webhooks");
    $("webhooks-error").replaceChildren();
    show("webhooks");
    webhooksLoad();
  }

  // --- routing ------------------------------------------------------------------------------

  const PAGES = {
    desk: () => show("desk", false),
    archive: archivePage,
    scheduled: scheduledPage,
    history: historyPage,
    tokens: tokensPage,
    webhooks: webhooksPage,
  };

  window.addEventListener("hashchange", route);
  D.onSession((who) => {
    me = who;
    $("pages").hidden = !who;
    $("nav-tokens").hidden = !D.hasRole("admin");
    $("nav-webhooks").hidden = !D.hasRole("admin");
    if (!who) {
      archive.query = null;
      tokens.list = [];
      $("secret").hidden = true;
      $("secret-value").value = "";
    }
    route();
  });
  ConsoleI18n.onChange(() => {
    if (me && redraw[current.page]) redraw[current.page]();
    if (redraw.refused && !$("view-refused").hidden) redraw.refused();
  });
  show("desk", false);
})();
