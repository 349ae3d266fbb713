# Production settings for a flask-fal-proxy app; copy and adjust.
# The figures behind each choice are in docs/PERFORMANCE.md (bench/run).
import multiprocessing
import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")

# A proxied fal call mostly waits on the network, sometimes for minutes (a
# synchronous fal.run call, a status stream): a thread per in-flight call is
# cheap, whereas a sync worker serves one call at a time and is killed by its
# timeout. gthread needs no extra package and no monkey-patching of the rest
# of your app. GUNICORN_WORKER_CLASS=gevent (pip install gevent) measured
# about 0.2 ms less per call and the same throughput, and holds up to
# worker_connections calls per process instead of `threads`: prefer it when
# many browsers keep long calls or streams open at once.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")

# One process per core: the per-call work is Python under the GIL, so more
# processes than cores only add switching, and fewer leave a core idle.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))

# Calls in flight per process. Waiting threads cost no CPU; size this to the
# long calls you expect at once. Keep it at or below the outbound pool size
# (default_session's pool_maxsize, 64): above it, connections to fal are
# opened and thrown away instead of kept alive.
threads = int(os.environ.get("GUNICORN_THREADS", "16"))

# gthread: idle browser connections each worker keeps open (they wait in the
# poller, not in a thread). gevent: calls in flight per process; above 64,
# give create_blueprint a default_session(pool_maxsize=...) as large.
worker_connections = 1000

# For gthread this is a worker heartbeat, not a per-request limit, so long
# streams are not killed; the proxy's read_timeout bounds a silent fal.
timeout = 60
graceful_timeout = 30

# Browser keep-alive; behind a load balancer make it longer than the
# balancer's idle timeout so it never reuses a connection being closed.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# No access log by default: formatting and writing a line costs about a tenth
# of a proxied call's CPU (py-spy profile in docs/PERFORMANCE.md), and the
# load balancer in front usually logs the same requests. Set
# GUNICORN_ACCESSLOG=- to log to stdout. Rejections are always logged by the
# flask_fal_proxy logger.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None

# No preload_app: each worker must build its own requests session after the
# fork, since a connection pool cannot be shared between processes.
