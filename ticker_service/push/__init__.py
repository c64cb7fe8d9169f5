"""The hub side of mobile and browser push: the device model, its store, the push settings and VAPID keys.

The sending side (FCM, APNs, Web Push) is the worker's: ``workers/push/``."""
