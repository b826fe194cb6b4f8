#!/usr/bin/env bash
# Checks /metrics against its consumers, on a fresh idle server: promtool accepts the exposition;
# a real Prometheus scraping the server answers every query of config/grafana-dashboard.json with
# at least one series (NaN counts: a quantile over no observations is still a series); every
# metric the server exports appears in some dashboard query, the standard process_* series too
# (memory, CPU and file descriptors are what a long-running media server exhausts). A series
# that only appears after its first event leaves its panels empty and its alerts silent until
# then, so the server registers every series at start-up and this fails on any that is missing.
#
#   AMPHI_BIN=target/debug/amphi ./scripts/check-metrics.sh
#
# Installs Debian's prometheus (promtool and the server) when run as root. Ports come from
# 7700-7749 on loopback, clear of a development server's 7880/7882.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

bin=${AMPHI_BIN:-target/debug/amphi}
dashboard=config/grafana-dashboard.json
# Prometheus's job for the scrape, as in config/prometheus.yml (the dashboard's default $job).
job=amphi

need_apt=()
{ command -v promtool && command -v prometheus; } >/dev/null || need_apt+=(prometheus)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        # Recommends would bring prometheus-node-exporter, a daemon this check has no use for.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
        # The package also starts a system-wide Prometheus on :9090, now and at every boot; this
        # check runs its own on loopback.
        if [[ " ${need_apt[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
            systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
    else
        echo "missing packages: ${need_apt[*]} (run as root or install them)" >&2
        exit 1
    fi
fi
if [ ! -x "$bin" ]; then
    echo "check-metrics: no server binary at $bin (cargo build, or set AMPHI_BIN)" >&2
    exit 1
fi

work=$(mktemp -d)
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || continue
        # A graceful stop takes well under a second; one that hangs must not hold CI.
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free on both TCP and UDP: the media port also carries ICE over TCP on the same number.
read -r http_port media_port prom_port < <(python3 - <<'PY'
import random, socket
ports = list(range(7700, 7750))
random.shuffle(ports)
free = []
for port in ports:
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        continue
    free.append(port)
    if len(free) == 3:
        break
print(*free)
PY
)
if [ -z "$prom_port" ]; then
    echo "check-metrics: fewer than three free ports in 7700-7749" >&2
    exit 1
fi

# Polls `$@` every 0.1 s for up to $1 seconds while process $2 lives; on failure prints log $3.
wait_for() {
    local seconds=$1 pid=$2 log=$3 what=$4
    shift 4
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "check-metrics: $what: the process exited; its log:" >&2
            tail -n 40 "$log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "check-metrics: $what: not ready after ${seconds} s; log:" >&2
            tail -n 40 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# The server reads every AMPHI_* variable as a configuration override and refuses unknown ones
# (AMPHI_BIN is one): it starts from none but the in-memory call log. --dev keeps its data under
# XDG_DATA_HOME, so the check leaves nothing behind.
clean_env=()
for var in $(compgen -e | grep '^AMPHI_' || true); do
    clean_env+=(-u "$var")
done
env "${clean_env[@]}" AMPHI_CALLS_DATABASE=:memory: XDG_DATA_HOME="$work/data" \
    "$bin" serve --dev --bind "127.0.0.1:$http_port" --udp-port "$media_port" \
    >"$work/amphi.log" 2>&1 &
pids+=($!)
amphi=http://127.0.0.1:$http_port
wait_for 15 "${pids[0]}" "$work/amphi.log" "server on $amphi" \
    curl -sf --noproxy '*' --max-time 2 "$amphi/healthz"

curl -sf --noproxy '*' --max-time 5 "$amphi/metrics" >"$work/metrics.txt"
if ! lint=$(promtool check metrics <"$work/metrics.txt" 2>&1) || [ -n "$lint" ]; then
    echo "check-metrics: promtool check metrics complains about $amphi/metrics:" >&2
    echo "$lint" >&2
    exit 1
fi

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: $job
    static_configs:
      - targets: ["127.0.0.1:$http_port"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn \
    >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom=http://127.0.0.1:$prom_port
wait_for 10 "${pids[1]}" "$work/prometheus.log" "prometheus on $prom" \
    curl -sf --noproxy '*' --max-time 2 "$prom/-/ready"

status=0
python3 - "$prom" "$dashboard" "$work/metrics.txt" "$job" <<'PY' || status=$?
import json, re, sys, time, urllib.error, urllib.parse, urllib.request

prom, dashboard_path, metrics_path, job = sys.argv[1:]
# Everything here is on loopback: a proxy from the environment must not carry it.
urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))
SCRAPE = 1  # seconds, as in the temporary prometheus.yml
# Grafana's built-in variables as Grafana derives them from a 1 s scrape interval (the data
# source's minimum step); the range is the dashboard's default, the last hour.
BUILTINS = {
    "__interval": f"{SCRAPE}s",
    "__interval_ms": str(SCRAPE * 1000),
    "__rate_interval": f"{max(SCRAPE + SCRAPE, 4 * SCRAPE)}s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}


# The whole part below, scrapes and queries, within this budget however Prometheus behaves.
DEADLINE = time.monotonic() + 30


def fetch(url):
    remaining = DEADLINE - time.monotonic()
    if remaining <= 0:
        fail("prometheus took longer than 30 s to answer the dashboard's queries")
    return urllib.request.urlopen(url, timeout=min(5, remaining))


def query(expr):
    """(series, error): a scalar or string result counts as one series."""
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with fetch(url) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    except OSError as e:
        fail(f"prometheus did not answer {expr}: {e}")
    if body.get("status") != "success":
        return [], body.get("error", "unknown error")
    data = body["data"]
    if data["resultType"] in ("vector", "matrix"):
        return data["result"], None
    return [data["result"]], None


def fail(message):
    print(f"check-metrics: {message}", file=sys.stderr)
    sys.exit(1)


# Rates need two samples inside $__rate_interval: wait for two successful scrapes. Prometheus
# sends a new target to its scrapers after up to 5 s, so the first scrape comes late.
deadline = time.monotonic() + 20
while True:
    result, _ = query(f'sum_over_time(up{{job="{job}"}}[1m])')
    if result and float(result[0]["value"][1]) >= 2:
        break
    if time.monotonic() > deadline:
        with fetch(f"{prom}/api/v1/targets") as r:
            targets = json.load(r)["data"]["activeTargets"]
        errors = "; ".join(f"{t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in targets)
        fail(f"prometheus did not scrape the server twice within 20 s ({errors})")
    time.sleep(0.1)

dashboard = json.load(open(dashboard_path))


def exprs(node, title=None):
    if isinstance(node, dict):
        if "title" in node:
            title = f"#{node.get('id', '?')} {node['title']}"
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield title, node.get("refId", "?"), value
            else:
                yield from exprs(value, title)
    elif isinstance(node, list):
        for value in node:
            yield from exprs(value, title)


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


def interpolate(text, values, unknown):
    def value(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            unknown.add(name)
            return m.group(0)
        return values[name]

    return VARIABLE.sub(value, text)


def regex_value(values):
    # Grafana's escaping for multi-value and "All" variables: a regex inside a PromQL string.
    escaped = [re.sub(r"([$^*{}\[\]'+?.()|\\])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*?)\s*,\s*)?(\w+)\s*\)\s*$", re.S)
problems = []
values = dict(BUILTINS)
# Like Grafana on load: each variable's query runs with the variables before it resolved; the
# saved selection stays if Prometheus offers it, otherwise the first option is taken.
for var in dashboard.get("templating", {}).get("list", []):
    name, kind = var["name"], var.get("type")
    if kind == "datasource":
        continue
    current = var.get("current", {}).get("value", "")
    current = current if isinstance(current, list) else [current]
    if kind != "query":
        values[name] = regex_value(current) if var.get("multi") else current[0]
        continue
    q = var.get("query")
    q = q.get("query", "") if isinstance(q, dict) else q or ""
    unknown = set()
    q = interpolate(q, values, unknown)
    m = LABEL_VALUES.match(q)
    if unknown or not m:
        problems.append(f"variable ${name}: cannot evaluate its query {q!r}")
        values[name] = ""
        continue
    selector, label = m.group(1) or f'{{{label}!=""}}', m.group(2)
    result, error = query(f"group by ({label}) ({selector})")
    options = sorted({s["metric"].get(label, "") for s in result} - {""}) if result else []
    if error or not options:
        problems.append(f"variable ${name}: no values from {q} ({error or 'no series'})")
        values[name] = ""
        continue
    if var.get("includeAll") and current in (["$__all"], ["All"]):
        values[name] = var.get("allValue") or regex_value(options)
        continue
    chosen = [v for v in current if v in options] or options[:1]
    values[name] = regex_value(chosen) if var.get("multi") or var.get("includeAll") else chosen[0]

families = {}
for line in open(metrics_path):
    if line.startswith("# TYPE "):
        families[line.split()[2]] = line.split()[3]
    elif line.strip() and not line.startswith("#"):
        sample = re.match(r"[A-Za-z_:][\w:]*", line).group(0)
        base = re.sub(r"_(bucket|sum|count)$", "", sample)
        if sample not in families and base not in families:
            families[sample] = "untyped"


def family_of(name):
    for candidate in (name, re.sub(r"_(bucket|sum|count)$", "", name)):
        if candidate in families:
            return candidate
    return None


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}


def metric_names(expr):
    """Metric names an expression selects (label names, strings, ranges and functions aside)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()", text)
    return [n for n in names if n.lower() not in KEYWORDS]


queries = list(exprs(dashboard.get("panels", [])))
empty, errors = [], []
for title, ref, raw in queries:
    unknown = set()
    expr = interpolate(raw, values, unknown)
    if unknown:
        errors.append((title, ref, raw, "unknown variables: " + ", ".join(sorted(unknown))))
        continue
    result, error = query(expr)
    if error:
        errors.append((title, ref, raw, error))
    elif not result:
        absent = sorted({n for n in metric_names(raw) if family_of(n) is None})
        empty.append((title, ref, raw, absent))

referenced = set()
for _, _, raw in queries:
    referenced |= {family_of(n) for n in metric_names(raw)} - {None}
unused = sorted(set(families) - referenced)

for p in problems:
    print(f"check-metrics: {p}", file=sys.stderr)
if errors:
    print(f"check-metrics: {len(errors)} dashboard queries fail in Prometheus:", file=sys.stderr)
    for title, ref, raw, error in errors:
        print(f"  {title} [{ref}]: {raw}\n      {error}", file=sys.stderr)
if empty:
    print(f"check-metrics: {len(empty)} of {len(queries)} dashboard queries return no series on a "
          "fresh idle server:", file=sys.stderr)
    for title, ref, raw, absent in empty:
        print(f"  {title} [{ref}]: {raw}", file=sys.stderr)
        if absent:
            print(f"      not on /metrics: {', '.join(absent)}", file=sys.stderr)
    missing = sorted({re.sub(r"_(bucket|sum|count)$", "", n) for *_, absent in empty for n in absent})
    if missing:
        print("  The server must register these at start-up (at zero, every label value it can "
              "take), not on their first event: " + ", ".join(missing), file=sys.stderr)
if unused:
    print(f"check-metrics: {len(unused)} metrics on /metrics appear in no query of "
          f"{dashboard_path} (add panels for them):", file=sys.stderr)
    for name in unused:
        print(f"  {name} ({families[name]})", file=sys.stderr)
if problems or errors or empty or unused:
    sys.exit(1)
print(f"check-metrics: {len(queries)} dashboard queries answer on a fresh server; "
      f"{len(families)} metrics, all on the dashboard")
PY
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
echo "check-metrics: ok in $((SECONDS - started)) s"
