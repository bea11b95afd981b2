/* The console's own words in English, Arabic and Spanish, and the language the editor chose.
 *
 * One catalogue, the same keys in every language (a browser test holds them to that), so a
 * string added in one language and forgotten in another fails a test rather than showing
 * English to an Arabic desk. `{name}` in a message is filled in by `t(key, {name: ...})`.
 * Elements carry their key in `data-i18n` (text), `data-i18n-placeholder` or
 * `data-i18n-aria-label`; `apply()` writes the chosen language into them. What the API says
 * (its error messages) stays as it came: the console's own words around it are translated.
 */
(() => {
  "use strict";
  const STORE_KEY = "ticker.console.lang";
  const RTL = new Set(["ar"]);
  // Dates read the way each desk reads them: a 24-hour clock in all three.
  const LOCALES = { en: "en-GB", ar: "ar", es: "es-ES" };

  const MESSAGES = {
    en: {
      "page.title": "ticker: newsroom console",
      "brand.newsroom": "newsroom",
      "who.signedInAs": "Signed in as",
      "who.signOut": "Sign out",
      "lang.label": "Language",
      "nav.demo": "Demo page",
      "signIn.title": "Sign in",
      "signIn.token": "Editor token",
      "signIn.hintMadeWith": "Made with",
      "signIn.hintStays": ". It stays in this browser tab only and is never put in a URL.",
      "signIn.submit": "Sign in",
      "signIn.unreachable": "The publisher cannot be reached; try again.",
      "signIn.refused": "This token is not accepted.",
      "signIn.empty": "Paste your editor token.",
      "signIn.expired": "Your token is no longer accepted. Sign in again.",
      "signIn.done": "Signed in as {name}. Tab to the form; Enter posts.",
      "compose.title": "Post an alert",
      "compose.correctTitle": "Correct “{headline}” (version {version})",
      "compose.edition": "Edition",
      "compose.editionRtl": "{name}, right to left",
      "compose.urgency": "Urgency",
      "compose.source": "Source",
      "compose.sourceOptional": "(optional, shown before the headline)",
      "compose.sourcePlaceholder": "Lebanese Presidency",
      "compose.headline": "Headline",
      "compose.headlineHint": "Enter posts (Ctrl+Enter from any field); a headline is one line.",
      "compose.link": "Link",
      "compose.linkOptional": "(optional, http:// or https://)",
      "compose.expires": "Expires",
      "compose.keepUntil": "Keep: {time}",
      "compose.keepNever": "Keep: never",
      "compose.tags": "Regions and categories",
      "compose.tagsNone": "(none)",
      "compose.tagsChosen": "({list})",
      "compose.regions": "Regions",
      "compose.categories": "Categories",
      "compose.preview": "Preview: as readers will see it",
      "compose.previewHeadline": "Your headline appears here",
      "compose.count": "{n} / {max}",
      "compose.post": "Post",
      "compose.posting": "Posting…",
      "compose.save": "Save correction",
      "compose.saving": "Saving…",
      "compose.cancel": "Cancel correction",
      "urgency.1": "1 · Flash: FLASH tag, highlighted (a few a year)",
      "urgency.2": "2 · Bulletin: BULLETIN tag",
      "urgency.3": "3 · Plain (no tag)",
      "urgency.4": "4 · Plain",
      "urgency.5": "5 · Plain",
      "urgency.6": "6 · Plain",
      "urgency.7": "7 · Plain",
      "urgency.8": "8 · Plain",
      "urgency.9": "9 · Plain, lowest",
      "expires.never": "Never (until withdrawn)",
      "expires.900": "in 15 minutes",
      "expires.1800": "in 30 minutes",
      "expires.3600": "in 1 hour",
      "expires.7200": "in 2 hours",
      "expires.21600": "in 6 hours",
      "expires.43200": "in 12 hours",
      "expires.86400": "in 24 hours",
      "expires.259200": "in 3 days",
      "expires.604800": "in 7 days",
      "errors.fixFields": "Fix the marked fields.",
      "errors.answered": "The publisher answered {status}.",
      "errors.unreachable": "The publisher cannot be reached.",
      "errors.unreachableRetry": "The publisher cannot be reached; try again.",
      "errors.failed": "The publisher failed.",
      "errors.notTwice": "Nothing was posted twice: press Post again to retry.",
      "errors.unchanged": "Nothing was changed: edit a field first.",
      "errors.conflict": "Someone else corrected this item meanwhile; your changes were not saved.",
      "errors.loadCurrent": "Load the current version",
      "errors.gone": "This item is gone: it was withdrawn or expired.",
      "errors.goneMeanwhile": "This item was withdrawn or expired meanwhile.",
      "done.posted": "Posted to {edition}.",
      "done.postedOnce": "Posted to {edition} (it had already arrived; posted once).",
      "done.corrected": "Corrected: version {version} is live.",
      "done.undone": "Undone: withdrawn from every ticker.",
      "done.withdrawn": "Withdrawn from every ticker.",
      "done.alreadyGone": "It was already gone.",
      "done.postAgain": "Post it again",
      "done.notWithdrawn": "Not withdrawn: {reason}",
      "action.correct": "Correct",
      "action.withdraw": "Withdraw",
      "action.undo": "Undo",
      "live.title": "Live now",
      "live.editions": "Edition",
      "live.empty": "No live items in this edition.",
      "live.version": "version {version}",
      "live.by": "{time} by {editor}",
      "live.expires": "expires {time}",
      "live.link": "link",
      "badge.1": "Flash",
      "badge.2": "Bulletin",
      "conn.connecting": "Connecting…",
      "conn.live": "Live",
      "conn.reconnecting": "Reconnecting…",
      "conn.failed": "Unavailable",
      "conn.retrying": "Cannot reach the publisher; retrying…",
      "withdraw.title": "Withdraw this item?",
      "withdraw.explain": "It disappears from every ticker at once. You can post it again afterwards.",
      "withdraw.keep": "Keep it",
      "withdraw.confirm": "Withdraw",
    },
    ar: {
      "page.title": "ticker: لوحة غرفة الأخبار",
      "brand.newsroom": "غرفة الأخبار",
      "who.signedInAs": "مسجَّل الدخول باسم",
      "who.signOut": "تسجيل الخروج",
      "lang.label": "اللغة",
      "nav.demo": "الصفحة التجريبية",
      "signIn.title": "تسجيل الدخول",
      "signIn.token": "رمز المحرّر",
      "signIn.hintMadeWith": "يُنشأ بالأمر",
      "signIn.hintStays": "، ويبقى في علامة التبويب هذه فقط ولا يوضع في أي رابط.",
      "signIn.submit": "دخول",
      "signIn.unreachable": "تعذّر الوصول إلى خادم النشر؛ حاول مرة أخرى.",
      "signIn.refused": "هذا الرمز غير مقبول.",
      "signIn.empty": "ألصق رمز المحرّر الخاص بك.",
      "signIn.expired": "لم يعد رمزك مقبولاً. سجّل الدخول من جديد.",
      "signIn.done": "تم تسجيل الدخول باسم {name}. انتقل إلى النموذج بمفتاح Tab؛ ومفتاح Enter ينشر.",
      "compose.title": "نشر خبر عاجل",
      "compose.correctTitle": "تصحيح «{headline}» (النسخة {version})",
      "compose.edition": "النسخة اللغوية",
      "compose.editionRtl": "{name}، من اليمين إلى اليسار",
      "compose.urgency": "الأهمية",
      "compose.source": "المصدر",
      "compose.sourceOptional": "(اختياري، يظهر قبل العنوان)",
      "compose.sourcePlaceholder": "الرئاسة اللبنانية",
      "compose.headline": "العنوان",
      "compose.headlineHint": "مفتاح Enter ينشر (وCtrl+Enter من أي حقل)؛ العنوان سطر واحد.",
      "compose.link": "الرابط",
      "compose.linkOptional": "(اختياري، يبدأ بـ http:// أو https://)",
      "compose.expires": "ينتهي",
      "compose.keepUntil": "إبقاء: {time}",
      "compose.keepNever": "إبقاء: بلا انتهاء",
      "compose.tags": "المناطق والتصنيفات",
      "compose.tagsNone": "(لا شيء)",
      "compose.tagsChosen": "({list})",
      "compose.regions": "المناطق",
      "compose.categories": "التصنيفات",
      "compose.preview": "معاينة: كما سيراه القرّاء",
      "compose.previewHeadline": "يظهر عنوانك هنا",
      "compose.count": "{n} / {max}",
      "compose.post": "نشر",
      "compose.posting": "جارٍ النشر…",
      "compose.save": "حفظ التصحيح",
      "compose.saving": "جارٍ الحفظ…",
      "compose.cancel": "إلغاء التصحيح",
      "urgency.1": "1 · عاجل جداً: وسم FLASH، مميّز (مرات قليلة في السنة)",
      "urgency.2": "2 · عاجل: وسم BULLETIN",
      "urgency.3": "3 · عادي (بلا وسم)",
      "urgency.4": "4 · عادي",
      "urgency.5": "5 · عادي",
      "urgency.6": "6 · عادي",
      "urgency.7": "7 · عادي",
      "urgency.8": "8 · عادي",
      "urgency.9": "9 · عادي، الأدنى",
      "expires.never": "أبداً (حتى السحب)",
      "expires.900": "بعد 15 دقيقة",
      "expires.1800": "بعد 30 دقيقة",
      "expires.3600": "بعد ساعة",
      "expires.7200": "بعد ساعتين",
      "expires.21600": "بعد 6 ساعات",
      "expires.43200": "بعد 12 ساعة",
      "expires.86400": "بعد 24 ساعة",
      "expires.259200": "بعد 3 أيام",
      "expires.604800": "بعد 7 أيام",
      "errors.fixFields": "صحّح الحقول المعلَّمة.",
      "errors.answered": "أجاب خادم النشر بالرمز {status}.",
      "errors.unreachable": "تعذّر الوصول إلى خادم النشر.",
      "errors.unreachableRetry": "تعذّر الوصول إلى خادم النشر؛ حاول مرة أخرى.",
      "errors.failed": "أخفق خادم النشر.",
      "errors.notTwice": "لم يُنشر شيء مرتين: اضغط «نشر» مجدداً لإعادة المحاولة.",
      "errors.unchanged": "لم يتغيّر شيء: عدّل حقلاً أولاً.",
      "errors.conflict": "صحّح شخص آخر هذا الخبر في الأثناء؛ لم تُحفظ تعديلاتك.",
      "errors.loadCurrent": "تحميل النسخة الحالية",
      "errors.gone": "لم يعد هذا الخبر موجوداً: سُحب أو انتهت مدته.",
      "errors.goneMeanwhile": "سُحب هذا الخبر أو انتهت مدته في الأثناء.",
      "done.posted": "نُشر في {edition}.",
      "done.postedOnce": "نُشر في {edition} (كان قد وصل من قبل؛ نُشر مرة واحدة).",
      "done.corrected": "صُحّح: النسخة {version} منشورة الآن.",
      "done.undone": "تم التراجع: سُحب من كل الأشرطة.",
      "done.withdrawn": "سُحب من كل الأشرطة.",
      "done.alreadyGone": "كان قد اختفى من قبل.",
      "done.postAgain": "انشره مجدداً",
      "done.notWithdrawn": "لم يُسحب: {reason}",
      "action.correct": "تصحيح",
      "action.withdraw": "سحب",
      "action.undo": "تراجع",
      "live.title": "المنشور الآن",
      "live.editions": "النسخة اللغوية",
      "live.empty": "لا أخبار منشورة في هذه النسخة.",
      "live.version": "النسخة {version}",
      "live.by": "{time} بقلم {editor}",
      "live.expires": "ينتهي {time}",
      "live.link": "الرابط",
      "badge.1": "عاجل جداً",
      "badge.2": "عاجل",
      "conn.connecting": "جارٍ الاتصال…",
      "conn.live": "مباشر",
      "conn.reconnecting": "جارٍ إعادة الاتصال…",
      "conn.failed": "غير متاح",
      "conn.retrying": "تعذّر الوصول إلى خادم النشر؛ جارٍ إعادة المحاولة…",
      "withdraw.title": "سحب هذا الخبر؟",
      "withdraw.explain": "يختفي من كل الأشرطة فوراً. يمكنك نشره مجدداً بعد ذلك.",
      "withdraw.keep": "إبقاؤه",
      "withdraw.confirm": "سحب",
    },
    es: {
      "page.title": "ticker: consola de la redacción",
      "brand.newsroom": "redacción",
      "who.signedInAs": "Sesión iniciada como",
      "who.signOut": "Cerrar sesión",
      "lang.label": "Idioma",
      "nav.demo": "Página de demostración",
      "signIn.title": "Iniciar sesión",
      "signIn.token": "Token de editor",
      "signIn.hintMadeWith": "Se crea con",
      "signIn.hintStays": ". Solo se guarda en esta pestaña y nunca va en una URL.",
      "signIn.submit": "Entrar",
      "signIn.unreachable": "No se puede contactar con el publicador; inténtalo de nuevo.",
      "signIn.refused": "Este token no se acepta.",
      "signIn.empty": "Pega tu token de editor.",
      "signIn.expired": "Tu token ya no se acepta. Vuelve a iniciar sesión.",
      "signIn.done": "Sesión iniciada como {name}. Tab lleva al formulario; Intro publica.",
      "compose.title": "Publicar una alerta",
      "compose.correctTitle": "Corregir «{headline}» (versión {version})",
      "compose.edition": "Edición",
      "compose.editionRtl": "{name}, de derecha a izquierda",
      "compose.urgency": "Urgencia",
      "compose.source": "Fuente",
      "compose.sourceOptional": "(opcional, aparece antes del titular)",
      "compose.sourcePlaceholder": "Presidencia libanesa",
      "compose.headline": "Titular",
      "compose.headlineHint": "Intro publica (Ctrl+Intro desde cualquier campo); un titular es una sola línea.",
      "compose.link": "Enlace",
      "compose.linkOptional": "(opcional, http:// o https://)",
      "compose.expires": "Caduca",
      "compose.keepUntil": "Mantener: {time}",
      "compose.keepNever": "Mantener: nunca",
      "compose.tags": "Regiones y categorías",
      "compose.tagsNone": "(ninguna)",
      "compose.tagsChosen": "({list})",
      "compose.regions": "Regiones",
      "compose.categories": "Categorías",
      "compose.preview": "Vista previa: como la verán los lectores",
      "compose.previewHeadline": "Aquí aparece tu titular",
      "compose.count": "{n} / {max}",
      "compose.post": "Publicar",
      "compose.posting": "Publicando…",
      "compose.save": "Guardar corrección",
      "compose.saving": "Guardando…",
      "compose.cancel": "Cancelar corrección",
      "urgency.1": "1 · Última hora: etiqueta FLASH, destacada (pocas al año)",
      "urgency.2": "2 · Boletín: etiqueta BULLETIN",
      "urgency.3": "3 · Normal (sin etiqueta)",
      "urgency.4": "4 · Normal",
      "urgency.5": "5 · Normal",
      "urgency.6": "6 · Normal",
      "urgency.7": "7 · Normal",
      "urgency.8": "8 · Normal",
      "urgency.9": "9 · Normal, la más baja",
      "expires.never": "Nunca (hasta retirarla)",
      "expires.900": "en 15 minutos",
      "expires.1800": "en 30 minutos",
      "expires.3600": "en 1 hora",
      "expires.7200": "en 2 horas",
      "expires.21600": "en 6 horas",
      "expires.43200": "en 12 horas",
      "expires.86400": "en 24 horas",
      "expires.259200": "en 3 días",
      "expires.604800": "en 7 días",
      "errors.fixFields": "Corrige los campos marcados.",
      "errors.answered": "El publicador respondió {status}.",
      "errors.unreachable": "No se puede contactar con el publicador.",
      "errors.unreachableRetry": "No se puede contactar con el publicador; inténtalo de nuevo.",
      "errors.failed": "El publicador falló.",
      "errors.notTwice": "Nada se publicó dos veces: pulsa Publicar otra vez para reintentar.",
      "errors.unchanged": "No cambió nada: edita primero un campo.",
      "errors.conflict": "Otra persona corrigió esta noticia mientras tanto; tus cambios no se guardaron.",
      "errors.loadCurrent": "Cargar la versión actual",
      "errors.gone": "Esta noticia ya no está: se retiró o caducó.",
      "errors.goneMeanwhile": "Esta noticia se retiró o caducó mientras tanto.",
      "done.posted": "Publicada en {edition}.",
      "done.postedOnce": "Publicada en {edition} (ya había llegado; se publicó una vez).",
      "done.corrected": "Corregida: la versión {version} está publicada.",
      "done.undone": "Deshecho: retirada de todos los tickers.",
      "done.withdrawn": "Retirada de todos los tickers.",
      "done.alreadyGone": "Ya no estaba.",
      "done.postAgain": "Publicarla de nuevo",
      "done.notWithdrawn": "No se retiró: {reason}",
      "action.correct": "Corregir",
      "action.withdraw": "Retirar",
      "action.undo": "Deshacer",
      "live.title": "Publicado ahora",
      "live.editions": "Edición",
      "live.empty": "No hay noticias publicadas en esta edición.",
      "live.version": "versión {version}",
      "live.by": "{time} por {editor}",
      "live.expires": "caduca {time}",
      "live.link": "enlace",
      "badge.1": "Última hora",
      "badge.2": "Boletín",
      "conn.connecting": "Conectando…",
      "conn.live": "En directo",
      "conn.reconnecting": "Reconectando…",
      "conn.failed": "No disponible",
      "conn.retrying": "No se puede contactar con el publicador; reintentando…",
      "withdraw.title": "¿Retirar esta noticia?",
      "withdraw.explain": "Desaparece de todos los tickers a la vez. Después puedes volver a publicarla.",
      "withdraw.keep": "Mantenerla",
      "withdraw.confirm": "Retirar",
    },
  };
  const LANGUAGES = Object.keys(MESSAGES);

  /** The first of the browser's languages the console speaks, else English. */
  function preferred(stored, browserLanguages) {
    if (LANGUAGES.includes(stored)) return stored;
    for (const tag of browserLanguages || []) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (LANGUAGES.includes(base)) return base;
    }
    return "en";
  }

  let stored = null;
  try {
    stored = localStorage.getItem(STORE_KEY);
  } catch {} // storage may be off: the language is then the browser's
  let lang = preferred(stored, navigator.languages?.length ? navigator.languages : [navigator.language]);
  const listeners = [];

  /** The message for `key` in the chosen language, with `{name}` filled in from `vars`. */
  function t(key, vars = {}) {
    const text = MESSAGES[lang][key] ?? MESSAGES.en[key];
    if (text == null) throw new Error(`no message ${key}`);
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  /** Write the chosen language into every element under `root` that names a key. */
  function apply(root = document) {
    const html = document.documentElement;
    html.lang = lang;
    html.dir = RTL.has(lang) ? "rtl" : "ltr";
    for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of root.querySelectorAll("[data-i18n-placeholder]"))
      node.placeholder = t(node.dataset.i18nPlaceholder);
    for (const node of root.querySelectorAll("[data-i18n-aria-label]"))
      node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }

  /** Switch the language, remember it, and tell whoever draws words of their own. */
  function use(code) {
    if (!LANGUAGES.includes(code)) return;
    lang = code;
    try {
      localStorage.setItem(STORE_KEY, code);
    } catch {}
    apply();
    for (const listener of listeners) listener(code);
  }

  const formats = new Map();
  /** A date and time in the chosen language: `{hour: "2-digit", ...}` as for Intl. */
  function formatDate(value, options) {
    const key = `${lang} ${JSON.stringify(options)}`;
    if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat(LOCALES[lang], options));
    return formats.get(key).format(value instanceof Date ? value : new Date(value));
  }

  /** A language's name in the chosen language: "Arabic" in English, "العربية" in Arabic. */
  function languageName(code) {
    try {
      return new Intl.DisplayNames([lang], { type: "language" }).of(code) || code;
    } catch {
      return code;
    }
  }

  window.ConsoleI18n = {
    MESSAGES,
    LANGUAGES,
    t,
    apply,
    use,
    preferred,
    formatDate,
    languageName,
    lang: () => lang,
    onChange: (listener) => listeners.push(listener),
  };
})();
