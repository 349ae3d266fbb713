# Production settings for the example app; copy and adjust.
# Proxied fal calls spend most of their time waiting on the network (a
# synchronous fal.run call or a status stream can stay open for minutes), so
# a thread per in-flight call is cheap and a sync worker, one call at a time
# per process, would starve: use gthread.
import multiprocessing
import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
# gthread's timeout is a worker heartbeat, not a per-request limit, so long
# streams are not killed; the proxy's own read_timeout bounds a silent fal.
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
