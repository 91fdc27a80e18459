"""Driver for benches/e2e.sh: starts the parts, runs the scenarios, prints the table, writes
bench-results/e2e.md and bench-results/latency.svg. Every target is on 127.0.0.1."""
import json, os, re, secrets, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = int(os.environ.get("DURATION", "5"))
CONNS = int(os.environ.get("CONNECTIONS", "64"))
WORKERS = os.cpu_count() or 2
BIN = os.path.join(ROOT, "target/release/portcullis")
CERT = os.path.join(ROOT, "certs/localhost.pem")
KEY = os.path.join(ROOT, "certs/localhost-key.pem")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def nginx(tmp, name, body):
    conf = os.path.join(tmp, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"pid {tmp}/{name}.pid;\nerror_log {tmp}/{name}-error.log warn;\n{body}")
    subprocess.run(["nginx", "-c", conf, "-p", tmp], check=True)
    return conf


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(f"unreadable latency {text!r}")
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[m.group(2)]


def wrk(url, header=None):
    cmd = ["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}s", "--latency", url]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))
        p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))
    except (AttributeError, ValueError) as e:
        sys.exit(f"cannot read wrk's output for {url} ({e}):\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0}


def h2load(url, header=None):
    cmd = ["h2load", "-c", str(CONNS), "-m", "10", "-D", str(DURATION), "--warm-up-time=1", url]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    # h2load reports mean and sd of request times; it has no percentiles.
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return {"rps": rps, "p50": to_ms(m.group(3)), "p99": to_ms(m.group(2)), "non2xx": 0, "h2": True}


def best(runs):
    return max(runs, key=lambda r: r["rps"])


def main():
    tmp = tempfile.mkdtemp(prefix="portcullis-e2e-")
    procs, confs = [], []
    try:
        up, px, pxs, gw, gws, adm = (free_port() for _ in range(6))
        confs.append(nginx(tmp, "upstream", f"""worker_processes 1;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:{up} reuseport; location / {{ return 200 "hello from upstream\\n"; }} }} }}
"""))
        confs.append(nginx(tmp, "proxy", f"""worker_processes {WORKERS};
events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream up {{ server 127.0.0.1:{up}; keepalive 256; }}
  server {{ listen 127.0.0.1:{px} reuseport; listen 127.0.0.1:{pxs} ssl http2 reuseport;
    ssl_certificate {CERT}; ssl_certificate_key {KEY};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
"""))
        token = secrets.token_hex(24)
        cfg = os.path.join(tmp, "portcullis.toml")
        with open(cfg, "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:{gws}"
tls_cert = "{CERT}"
tls_key = "{KEY}"
http_listen = "127.0.0.1:{gw}"
workers = {WORKERS}
[admin]
listen = "127.0.0.1:{adm}"
token = "{token}"
[store]
kind = "memory"
[log]
access = false
[[users]]
username = "bench"
user_id = 1
user_uuid = "00000000-0000-4000-8000-000000000001"
roles = ["user"]
[[routes]]
name = "public"
path_prefix = "/public"
upstreams = ["http://127.0.0.1:{up}"]
policy = "public"
[[routes]]
name = "app"
path_prefix = "/"
upstreams = ["http://127.0.0.1:{up}"]
policy = "authenticated"
""")
        procs.append(subprocess.Popen([BIN, "run", "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in (up, px, gw, adm):
            wait_port(p)
        req = urllib.request.Request(f"http://127.0.0.1:{adm}/admin/sessions", method="POST",
                                     data=b'{"username":"bench"}', headers={"Authorization": f"Bearer {token}"})
        bearer = json.load(urllib.request.urlopen(req))["tokens"][0]
        forged = bearer[:-2] + ("AA" if not bearer.endswith("AA") else "BB")
        auth = f"Authorization: Bearer {bearer}"

        scenarios = [
            # (name, A label, A runner, B label, B runner, target ratio text)
            ("plain proxy, HTTP/1.1", "nginx", lambda: wrk(f"http://127.0.0.1:{px}/"),
             "portcullis public route", lambda: wrk(f"http://127.0.0.1:{gw}/public"), ">= 1.0 (reference)"),
            ("bearer, cache hit, HTTP/1.1", "nginx (no auth)", lambda: wrk(f"http://127.0.0.1:{px}/"),
             "portcullis", lambda: wrk(f"http://127.0.0.1:{gw}/", auth), ">= 1.0x, p99 <= nginx"),
            ("bearer over TLS", "nginx TLS (no auth)", lambda: wrk(f"https://127.0.0.1:{pxs}/"),
             "portcullis TLS", lambda: wrk(f"https://127.0.0.1:{gws}/", auth), ">= 1.0x"),
            ("HTTP/2 over TLS (h2load -m10)", "nginx h2 (no auth)", lambda: h2load(f"https://127.0.0.1:{pxs}/"),
             "portcullis h2", lambda: h2load(f"https://127.0.0.1:{gws}/", auth), "(no target)"),
            ("cookie vs bearer", "portcullis bearer", lambda: wrk(f"http://127.0.0.1:{gw}/", auth),
             # On the plain listener the cookie is named without its __Host- prefix.
             "portcullis cookie", lambda: wrk(f"http://127.0.0.1:{gw}/", f"Cookie: portcullis={bearer}"), "within 5%"),
            ("forged-token flood vs authenticated", "portcullis bearer", lambda: wrk(f"http://127.0.0.1:{gw}/", auth),
             "portcullis forged (401s)", lambda: wrk(f"http://127.0.0.1:{gw}/", f"Authorization: Bearer {forged}"), ">= 1.0x"),
        ]
        direct = wrk(f"http://127.0.0.1:{up}/")
        rows = []
        for name, a_label, a, b_label, b, target in scenarios:
            ra, rb = [], []
            for _ in range(2):  # A B A B
                ra.append(a())
                rb.append(b())
            A, B = best(ra), best(rb)
            rows.append((name, a_label, A, b_label, B, target))
            print(f"{name}: {a_label} {A['rps']:.0f} req/s, {b_label} {B['rps']:.0f} req/s, ratio {B['rps']/A['rps']:.2f}", flush=True)
        report(rows, direct)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=15)
        for c in confs:
            subprocess.run(["nginx", "-c", c, "-p", tmp, "-s", "stop"], capture_output=True)
        time.sleep(0.3)
        shutil.rmtree(tmp, ignore_errors=True)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return f"{os.cpu_count()} cores, {cpu}; {nginx_v}; wrk -t1 -c{CONNS} -d{DURATION}s, best of 2 alternating runs"


def report(rows, direct):
    out = os.path.join(ROOT, "bench-results")
    os.makedirs(out, exist_ok=True)
    lines = [f"Machine: {machine()}", "",
             f"Upstream alone (nginx, direct): {direct['rps']:.0f} req/s, p99 {direct['p99']:.2f} ms", "",
             "| scenario | A | A req/s | A p50/p99 ms | B | B req/s | B p50/p99 ms | B/A | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, al, A, bl, B, target in rows:
        note = " (h2load: mean/max)" if A.get("h2") else ""
        bad = f", {B['non2xx']} non-2xx!" if B["non2xx"] and "forged" not in bl else ""
        lines.append(f"| {name}{note} | {al} | {A['rps']:.0f} | {A['p50']:.2f} / {A['p99']:.2f} | {bl} | {B['rps']:.0f}{bad} | "
                     f"{B['p50']:.2f} / {B['p99']:.2f} | {B['rps']/A['rps']:.2f} | {target} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(os.path.join(out, "e2e.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "latency.svg"), "w") as f:
        f.write(svg(rows))
    print(f"wrote {out}/e2e.md and {out}/latency.svg")


def svg(rows):
    """A grouped bar chart of p50 and p99 latency per scenario, A vs B."""
    w, h, left, top, bottom = 900, 60 + 70 * len(rows), 260, 40, 30
    top_ms = max(max(A["p99"], B["p99"]) for _, _, A, _, B, _ in rows) * 1.1
    scale = (w - left - 40) / top_ms
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14">Latency (ms): p50 solid, p99 light; grey = A, blue = B</text>']
    for i, (name, al, A, bl, B, _) in enumerate(rows):
        y = top + i * 70
        parts.append(f'<text x="10" y="{y + 20}">{name}</text>')
        parts.append(f'<text x="10" y="{y + 36}" fill="#666">A: {al}</text>')
        parts.append(f'<text x="10" y="{y + 52}" fill="#1f5fa8">B: {bl}</text>')
        for j, (r, color, light) in enumerate(((A, "#777", "#ccc"), (B, "#1f5fa8", "#a9c6ea"))):
            yy = y + 26 + j * 16
            parts.append(f'<rect x="{left}" y="{yy}" width="{r["p99"] * scale:.1f}" height="12" fill="{light}"/>')
            parts.append(f'<rect x="{left}" y="{yy}" width="{r["p50"] * scale:.1f}" height="12" fill="{color}"/>')
            parts.append(f'<text x="{left + r["p99"] * scale + 4:.1f}" y="{yy + 10}">{r["p50"]:.2f} / {r["p99"]:.2f}</text>')
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - 40}" y2="{h - bottom}" stroke="#999"/>')
    parts.append(f'<text x="{w - 40}" y="{h - 10}" text-anchor="end">{top_ms:.1f} ms</text></svg>')
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
