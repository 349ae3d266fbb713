# Production settings for a flask-fal-proxy app; copy and adjust.
# The figures behind each choice are in docs/PERFORMANCE.md (bench/run).
import importlib.util
import multiprocessing
import os
import resource
import shutil
import tempfile

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")

# A proxied fal call mostly waits on the network, often for the whole
# generation (a synchronous fal.run call, a status stream, an upload). gevent
# waits for each call in a greenlet of a few KiB, so one process holds
# thousands (pip install "flask-fal-proxy[gevent]"); it monkey-patches the
# standard library in the worker, which requests and this package expect.
# GUNICORN_WORKER_CLASS=gthread is for apps that cannot be monkey-patched
# (a C driver that blocks, code that relies on real threads): it needs no
# extra package, but a thread serves one call from start to end, so calls
# held at once per process = threads, and a thread costs far more than a
# greenlet. Not sync: one call per process, and its timeout kills long calls.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")

# One process per core: the per-call work is Python under the GIL, so more
# processes than cores only add switching, and fewer leave a core idle.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))

# The one number: fal calls (and status streams) one worker holds at once.
# Every limit below that bounds concurrency follows from it, so raising it
# cannot leave a smaller limit behind to fail first. gevent: about 40 KiB of
# memory per held call (docs/PERFORMANCE.md), so 5,000 is about 200 MiB per
# process when full. Workers accept first come, first served, so one may get
# more than its share of a burst: the default lets each take the whole 5,000
# that two cores were measured to hold. gthread: one OS thread per call, so
# keep it to the calls you expect.
calls = int(
    os.environ.get("GUNICORN_CALLS_PER_WORKER", "5000" if worker_class == "gevent" else "16")
)

# A held call uses two descriptors (the browser's socket and the one to fal),
# plus a fixed margin for the listener, logs, pipes and the pool's spare
# sockets. The soft limit is raised up to the hard one; if the hard limit is
# lower, the calls are cut to fit rather than failing with EMFILE under load.
_FD_MARGIN = 256
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_wanted = 2 * calls + _FD_MARGIN
if _hard != resource.RLIM_INFINITY and _wanted > _hard:
    calls = max(1, (_hard - _FD_MARGIN) // 2)
    print(f"gunicorn.conf.py: RLIMIT_NOFILE hard limit {_hard}: {calls} calls per worker")
    _wanted = 2 * calls + _FD_MARGIN
if _wanted > _soft:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_wanted, _hard))

# gevent: calls in flight per process. gthread: a thread per call in flight
# (worker_connections then bounds the idle keep-alive connections it polls).
worker_connections = calls
threads = calls

# The outbound pool keeps one connection to fal per held call, so a call
# reuses a warm connection instead of opening one and dropping it afterwards
# (urllib3 discards sockets beyond the pool). default_session() reads this in
# each worker; an app that builds its own session passes pool_maxsize itself.
os.environ["FAL_PROXY_POOL_MAXSIZE"] = str(calls)

# Connections waiting to be accepted: a burst of browsers arriving together
# must queue, not be refused. The kernel caps it at net.core.somaxconn.
backlog = min(max(2048, workers * calls), 65535)

# For gthread and gevent this is a worker heartbeat, not a per-request limit,
# so long calls and streams are not killed; the proxy's read_timeout bounds a
# silent fal.
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
# fork (and, under gevent, after the monkey-patching), since a connection
# pool cannot be shared between processes.

# gunicorn 25.1+ opens a control socket for gunicornc at one path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl), so a second
# app started by the same user takes it over from the first, and gunicornc
# then commands the wrong one. Off, as in fal-openai-proxy; to use gunicornc,
# give each app its own path instead: control_socket = "/run/myapp/gunicorn.ctl".
# Older gunicorns ignore the setting.
control_socket_disable = True

# Prometheus metrics (flask_fal_proxy.usage, docs/METRICS.md). Each worker is
# its own process, so a scrape that reaches one of them would see only its
# share: in multiprocess mode every worker writes its values to one directory
# and the metrics route answers with their sum. The directory is set here,
# before any worker imports prometheus_client (which reads it on import),
# and emptied at start so that an earlier run's counts are not added in. A
# worker that exits takes its in-flight calls out of the live gauges.
if importlib.util.find_spec("prometheus_client") is not None:
    _METRICS_PREFIX = "flask-fal-proxy-metrics-"
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_PREFIX)
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

    from prometheus_client import multiprocess as _multiprocess

    def on_starting(server):
        os.makedirs(_metrics_dir, exist_ok=True)
        for name in os.listdir(_metrics_dir):
            if name.endswith(".db"):
                os.remove(os.path.join(_metrics_dir, name))

    def child_exit(server, worker):
        _multiprocess.mark_process_dead(worker.pid)

    def on_exit(server):
        if os.path.basename(_metrics_dir).startswith(_METRICS_PREFIX):
            shutil.rmtree(_metrics_dir, ignore_errors=True)
