"""The HTTP kit of the edge: what every route needs and no wire format owns.

Dependencies (the gateway, the admin guard and unit of work, an authenticated caller's POST),
body reading, error rendering, the request-id middleware, the `/api/v1` aliases and the
disconnect watcher. The caller contract (routes and wire formats) lives in `app.api`, the admin
API in `app.admin`; both import this kit, which imports neither.
"""
