// The ticker's service worker: shows a push notification for each flash, replaces it when
// the item is corrected (one notification per item: tag = item id) and closes it when the
// item is withdrawn. A click opens the item's link, or the live page of its edition.
"use strict";

// Links without a host (the live page, /live/en) are the publisher's: the widget names its
// origin when it registers this worker (`?publisher=`); the publisher's own pages need not.
const PUBLISHER = new URL(self.location.href).searchParams.get("publisher") || self.registration.scope;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function readMessage(event) {
  if (!event.data) return null;
  try {
    return event.data.json();
  } catch (_) {
    return null;
  }
}

async function show(message) {
  const tag = String(message.id);
  if (message.kind === "withdrawn") {
    const shown = await self.registration.getNotifications({ tag });
    shown.forEach((notification) => notification.close());
    return;
  }
  const title = message.source ? String(message.source) : "Breaking news";
  await self.registration.showNotification(title, {
    body: String(message.headline || ""),
    tag,
    renotify: message.kind === "posted",
    data: { url: message.url || "/live/" + (message.edition || ""), version: message.version },
    lang: message.edition || "",
  });
}

self.addEventListener("push", (event) => {
  const message = readMessage(event);
  if (!message || !message.id) return;
  event.waitUntil(show(message));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(self.clients.openWindow(new URL(url, PUBLISHER).href));
});
