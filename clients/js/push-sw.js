/* ticker push service worker: breaking-news notifications from Web Push.
 *
 * Served by the hub at /push-sw.js, so its scope is the whole site. Each push carries the JSON the worker sends
 * ({type: "flash" | "update" | "withdraw", flash_id, collapse_id, headline, lang, dir, url, ...}). Before showing
 * a flash it asks the open pages (client messaging): a page that already shows the flash answers, and no
 * notification pops up for something the reader is looking at. The notification's tag is the collapse id (the
 * story, else the flash), so a correction or another version of the story replaces it; a withdrawal closes the
 * notification of that tag if it shows the withdrawn flash. Headlines go into the notification as text, never as
 * HTML.
 *
 * Time to screen: when it shows a notification, a sample of devices (1 in 10; register the worker as
 * /push-sw.js?receipt_rate=0.5 for another share, 0 for none) reports it to POST /v1/receipts as surface "webpush".
 * The sample is of devices, fixed by a hash of the push subscription's endpoint; nothing else is sent.
 */
'use strict';

const ASK_TIMEOUT_MS = 500;
const RECEIPT_RATE = receiptRate(new URL(self.location.href).searchParams.get('receipt_rate'));

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  event.waitUntil(handlePush(event));
});

async function handlePush(event) {
  let message = null;
  try {
    message = event.data ? event.data.json() : null;
  } catch (err) {
    message = null;
  }
  if (!message || typeof message.flash_id !== 'string') return;
  const tag = typeof message.collapse_id === 'string' && message.collapse_id ? message.collapse_id : message.flash_id;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  let shown = false;
  if (message.type === 'withdraw') {
    const open = await self.registration.getNotifications({ tag });
    open.filter((n) => !n.data || n.data.flash_id === message.flash_id).forEach((n) => n.close());
  } else {
    shown = await shownByAPage(windows, message.flash_id);
    if (!shown) {
      await self.registration.showNotification(String(message.headline || ''), {
        tag,
        renotify: false,
        lang: typeof message.lang === 'string' ? message.lang : '',
        dir: message.dir === 'rtl' ? 'rtl' : 'ltr',
        requireInteraction: Number(message.urgency) <= 2,
        data: { url: typeof message.url === 'string' ? message.url : '/', flash_id: message.flash_id },
      });
      await sendReceipt(message, new Date());
    }
  }
  for (const client of windows) {
    client.postMessage({ type: 'ticker:push-handled', flash_id: message.flash_id, kind: message.type, shown });
  }
}

function receiptRate(raw) {
  const value = raw === null ? 0.1 : Number(raw);
  if (!Number.isFinite(value) || value <= 0) return 0;
  return Math.min(1, Math.max(0.01, value));
}

/* FNV-1a of a string, as a number in [0, 1): the same device always falls on the same side of the rate. */
function share(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash / 2 ** 32;
}

async function sendReceipt(message, shownAt) {
  if (RECEIPT_RATE <= 0 || !message.version) return;
  try {
    const subscription = await self.registration.pushManager.getSubscription();
    if (share(subscription ? subscription.endpoint : self.registration.scope) >= RECEIPT_RATE) return;
    await fetch(new URL('/v1/receipts', self.location.origin).href, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: JSON.stringify({
        flash: message.flash_id,
        version: String(message.version),
        surface: 'webpush',
        shown_at: shownAt.toISOString(),
        sent_at: new Date().toISOString(),
        rate: RECEIPT_RATE,
      }),
    });
  } catch (err) {
    // a lost receipt only thins the sample
  }
}

/* Ask every open page whether it shows this flash; true as soon as one says yes, false after a short wait. */
function shownByAPage(windows, flashId) {
  if (windows.length === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    let pending = windows.length;
    const timer = setTimeout(() => resolve(false), ASK_TIMEOUT_MS);
    for (const client of windows) {
      const channel = new MessageChannel();
      channel.port1.onmessage = (reply) => {
        pending -= 1;
        if (reply.data && reply.data.shown === true) {
          clearTimeout(timer);
          resolve(true);
        } else if (pending === 0) {
          clearTimeout(timer);
          resolve(false);
        }
      };
      client.postMessage({ type: 'ticker:shows-flash?', flash_id: flashId }, [channel.port2]);
    }
  });
}

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const target = new URL((event.notification.data && event.notification.data.url) || '/', self.location.origin);
  if (target.protocol !== 'https:' && target.protocol !== 'http:') return;
  event.waitUntil(self.clients.openWindow(target.href));
});
