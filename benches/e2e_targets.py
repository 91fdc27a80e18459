"""The targets of issue #5 that are not one throughput pair (used by benches/e2e.py): login
flood vs quiet p99, revocation latency to a second instance, cache misses served from redis
(1M sessions, 100k-entry cache, Zipf access) vs cache hits, and memory per cached session.
Every target is on 127.0.0.1; redis-server runs in a temp dir of its own."""
import base64, hashlib, hmac, http.client, json, os, shutil, statistics, subprocess, time

SECRET = "bench-secret-0123456789abcdef0123456789"
ZIPF_LUA = """
local tokens = {}
for line in io.lines("%s") do tokens[#tokens + 1] = line end
local logn = math.log(#tokens)
math.randomseed(os.time())
request = function()
  -- P(rank k) proportional to 1/k (Zipf, s = 1): k = floor(e^(u ln n)).
  local k = math.floor(math.exp(math.random() * logn))
  if k < 1 then k = 1 elseif k > #tokens then k = #tokens end
  return wrk.format("GET", "/", {["Authorization"] = "Bearer " .. tokens[k]})
end
"""
LOGIN_LUA = """
wrk.method = "POST"
wrk.body = '{"username":"flooded","password":"not-the-password"}'
wrk.headers["Content-Type"] = "application/json"
"""


def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def session_id(token):
    raw = base64.urlsafe_b64decode(token[4:] + "==")
    return raw[:16].hex()


def login_flood(ctx):
    """Proxied p99 while 200 connections post wrong passwords (argon2 at OWASP parameters, no
    rate limit in the way) vs the same with no flood."""
    quiet = ctx["wrk"](ctx["gw_url"], ctx["auth"])
    script = os.path.join(ctx["tmp"], "login.lua")
    with open(script, "w") as f:
        f.write(LOGIN_LUA)
    flood = subprocess.Popen(["wrk", "-t1", "-c200", f"-d{ctx['duration'] + 2}s", "-s", script,
                              f"{ctx['gw_url']}auth/signin"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    loaded = ctx["wrk"](ctx["gw_url"], ctx["auth"])
    out, _ = flood.communicate()
    logins = out.split("Requests/sec:")[-1].split()[0] if "Requests/sec:" in out else "?"
    return {"quiet_p99": quiet["p99"], "flood_p99": loaded["p99"], "quiet_rps": quiet["rps"],
            "flood_rps": loaded["rps"], "logins_per_s": logins}


def start_redis(ctx):
    if not shutil.which("redis-server"):
        return None, None
    port = ctx["free_port"]()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", ctx["tmp"]], stdout=subprocess.DEVNULL)
    return proc, port


def redis_gateway(ctx, redis_port, cache_entries):
    """A portcullis on the redis store; returns (process, http port, admin port)."""
    http_port, admin_port = ctx["free_port"](), ctx["free_port"]()
    cfg = os.path.join(ctx["tmp"], f"redis-{http_port}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
http_listen = "127.0.0.1:{http_port}"
workers = {ctx['workers']}
[admin]
listen = "127.0.0.1:{admin_port}"
token = "{ctx['admin_token']}"
[store]
kind = "redis"
url = "redis://127.0.0.1:{redis_port}/0"
[tokens]
secrets = ["{SECRET}"]
[cache]
max_entries = {cache_entries}
ttl = "300s"
[log]
access = false
[[users]]
username = "bench"
user_id = 1
user_uuid = "00000000-0000-4000-8000-000000000001"
[[routes]]
name = "app"
path_prefix = "/"
upstreams = ["http://127.0.0.1:{ctx['upstream']}"]
policy = "authenticated"
""")
    proc = subprocess.Popen([ctx["bin"], "run", "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx["procs"].append(proc)
    ctx["wait_port"](http_port)
    ctx["wait_port"](admin_port)
    return http_port, admin_port


def revocation(ctx, redis_port, rounds=200):
    """Time from the revoking admin call on instance A until instance B refuses the token."""
    a_http, a_admin = redis_gateway(ctx, redis_port, 100000)
    b_http, _ = redis_gateway(ctx, redis_port, 100000)
    auth_admin = {"Authorization": f"Bearer {ctx['admin_token']}"}
    status, body = call(a_admin, "POST", "/admin/sessions", json.dumps({"username": "bench", "count": rounds}), auth_admin)
    tokens = json.loads(body)["tokens"]
    b = http.client.HTTPConnection("127.0.0.1", b_http, timeout=10)
    a = http.client.HTTPConnection("127.0.0.1", a_admin, timeout=10)
    samples = []
    for t in tokens:
        b.request("GET", "/", headers={"Authorization": f"Bearer {t}"})
        r = b.getresponse(); r.read()
        if r.status != 200:
            continue
        start = time.perf_counter()
        a.request("DELETE", f"/admin/sessions/{session_id(t)}", headers=auth_admin)
        r = a.getresponse(); r.read()
        while True:
            b.request("GET", "/", headers={"Authorization": f"Bearer {t}"})
            r = b.getresponse(); r.read()
            if r.status == 401 or time.perf_counter() - start > 5:
                break
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"n": len(samples), "p50": statistics.median(samples), "p99": samples[int(len(samples) * 0.99) - 1]}


def fill_redis(ctx, redis_port, count):
    """Writes `count` active sessions straight into redis (the store's own key layout and
    record format) through redis-cli --pipe; returns the token file."""
    now = int(time.time())
    key = SECRET.encode()
    pipe_path = os.path.join(ctx["tmp"], "fill.resp")
    tokens_path = os.path.join(ctx["tmp"], "tokens.txt")
    def bulk(b):
        return b"$%d\r\n%s\r\n" % (len(b), b)
    with open(pipe_path, "wb") as pipe, open(tokens_path, "w") as tokens:
        for _ in range(count):
            sid, secret = os.urandom(16), os.urandom(32)
            tag = hmac.new(key, b"pc1" + sid + secret, hashlib.sha256).digest()[:16]
            tokens.write("pc1_" + base64.urlsafe_b64encode(sid + secret + tag).decode().rstrip("=") + "\n")
            record = json.dumps({
                "id": sid.hex(), "secret_hash": hashlib.sha256(secret).hexdigest(), "state": "active",
                "user": {"id": 1, "username": "bench", "uuid": "00000000-0000-4000-8000-000000000001", "roles": []},
                "created": now, "last_used": now, "expires": now + 86400, "version": 0,
            }, separators=(",", ":")).encode()
            pipe.write(b"*5\r\n" + bulk(b"SET") + bulk(b"portcullis:s:{%s}" % sid.hex().encode()) + bulk(record)
                       + bulk(b"EXAT") + bulk(str(now + 86400).encode()))
    with open(pipe_path, "rb") as pipe:
        subprocess.run(["redis-cli", "-p", str(redis_port), "--pipe"], stdin=pipe, check=True, capture_output=True)
    os.remove(pipe_path)
    return tokens_path


def redis_zipf(ctx, redis_port, sessions=1_000_000, cache=100_000):
    """Zipf-distributed tokens over `sessions` sessions through a `cache`-entry cache (misses go
    to redis) vs the same script over tokens that all fit in the cache (hits)."""
    tokens_path = fill_redis(ctx, redis_port, sessions)
    hot_path = os.path.join(ctx["tmp"], "hot.txt")
    with open(tokens_path) as f, open(hot_path, "w") as hot:
        for i, line in enumerate(f):
            if i >= cache // 2:
                break
            hot.write(line)
    http_port, admin_port = redis_gateway(ctx, redis_port, cache)
    scripts = {}
    for name, path in (("zipf", tokens_path), ("hot", hot_path)):
        scripts[name] = os.path.join(ctx["tmp"], f"{name}.lua")
        with open(scripts[name], "w") as f:
            f.write(ZIPF_LUA % path)
    url = f"http://127.0.0.1:{http_port}/"
    ctx["wrk"](url, None, script=scripts["hot"])  # warm-up: every hot token cached
    runs = {"hot": [], "zipf": []}
    for _ in range(2):
        for name in ("hot", "zipf"):
            runs[name].append(ctx["wrk"](url, None, script=scripts[name]))
    status, text = call(admin_port, "GET", "/metrics", headers={"Authorization": f"Bearer {ctx['admin_token']}"})
    counts = {}
    for line in text.decode().splitlines():
        for kind in ("hit", "miss", "negative_hit"):
            if line.startswith(f'portcullis_cache_events_total{{kind="{kind}"}}'):
                counts[kind] = float(line.split()[-1])
    hot, zipf = max(runs["hot"], key=lambda r: r["rps"]), max(runs["zipf"], key=lambda r: r["rps"])
    return {"hot": hot, "zipf": zipf, "non2xx": zipf["non2xx"], "counts": counts}


def memory(ctx):
    out = subprocess.run(["cargo", "run", "-q", "--release", "--example", "cache_memory"], cwd=ctx["root"],
                         capture_output=True, text=True, env={**os.environ, "SESSIONS": "1000000"})
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()
    per = line.split(", ")[-1].split()[0] if "bytes per cached session" in line else "?"
    return {"line": line, "bytes": per}
