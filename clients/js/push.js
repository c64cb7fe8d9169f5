/* "Get breaking alerts": subscribe this browser to Web Push through the ticker's /v1/devices.
 *
 *   <button id="alerts"></button>
 *   <script src="/push.js"></script>
 *   <script>TickerPush.attach(document.getElementById('alerts'), { filter: { lang: 'en', max_urgency: 2 } });</script>
 *
 * The registration's id and secret stay in localStorage, so a second click updates it (PUT) rather than adding a
 * device. The page also answers the service worker's "do you show this flash?" (see push-sw.js): by default a page
 * shows a flash when an element has data-flash-id (or the demo's li[data-id]) equal to its id; set
 * TickerPush.isShown to decide otherwise.
 */
(function () {
  'use strict';

  const STORAGE_KEY = 'ticker-push-device';

  function b64urlToBytes(text) {
    const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function defaultIsShown(flashId) {
    const id = CSS.escape(flashId);
    return document.querySelector(`[data-flash-id="${id}"], li[data-id="${id}"]`) !== null;
  }

  const TickerPush = {
    isShown: defaultIsShown,

    supported() {
      return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
    },

    /* Register the service worker (scope: the whole site) and start answering its questions. */
    async register(swUrl = '/push-sw.js') {
      const registration = await navigator.serviceWorker.register(swUrl, { scope: '/' });
      await navigator.serviceWorker.ready;
      return registration;
    },

    /* Ask for permission, subscribe with the server's VAPID key, and register (or update) the device. */
    async subscribe({ server = '', filter = {}, swUrl = '/push-sw.js' } = {}) {
      if (!TickerPush.supported()) throw new Error('This browser cannot receive push notifications.');
      if ((await Notification.requestPermission()) !== 'granted') throw new Error('Notifications are blocked.');
      const registration = await TickerPush.register(swUrl);
      const keyResponse = await fetch(`${server}/v1/push/vapid-public-key`);
      if (!keyResponse.ok) throw new Error('This server does not send Web Push.');
      const { publicKey } = await keyResponse.json();
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: b64urlToBytes(publicKey),
      });
      const body = JSON.stringify({ platform: 'webpush', subscription: subscription.toJSON(), ...filter });
      const headers = { 'Content-Type': 'application/json' };
      const stored = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
      if (stored && stored.id && stored.secret) {
        const put = await fetch(`${server}/v1/devices/${encodeURIComponent(stored.id)}`, {
          method: 'PUT',
          headers: { ...headers, Authorization: `Bearer ${stored.secret}` },
          body,
        });
        if (put.ok) return stored.id;
      }
      const response = await fetch(`${server}/v1/devices`, { method: 'POST', headers, body });
      if (!response.ok) throw new Error(`Registration failed (${response.status}).`);
      const { id, secret } = await response.json();
      localStorage.setItem(STORAGE_KEY, JSON.stringify({ id, secret }));
      return id;
    },

    /* Make ``button`` a "Get breaking alerts" button. */
    attach(button, options = {}) {
      button.textContent = 'Get breaking alerts';
      button.hidden = !TickerPush.supported();
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          await TickerPush.subscribe(options);
          button.textContent = 'Breaking alerts on';
        } catch (err) {
          button.textContent = 'Get breaking alerts';
          button.disabled = false;
          button.title = String(err && err.message ? err.message : err);
        }
      });
    },
  };

  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.addEventListener('message', (event) => {
      const data = event.data || {};
      if (data.type === 'ticker:shows-flash?' && event.ports[0]) {
        let shown = false;
        try {
          shown = Boolean(TickerPush.isShown(String(data.flash_id)));
        } catch (err) {
          shown = false;
        }
        event.ports[0].postMessage({ shown });
      }
    });
  }

  window.TickerPush = TickerPush;
})();
