"""Local stand-ins for FCM, APNs and a browser push service that speak their real wire protocols."""
