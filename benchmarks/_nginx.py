"""nginx with a static bearer in front of an upstream: the practical limit for the proxy rows.

One worker process (the proxy is one process too), upstream keep-alive, no access log. The
bearer lives in a 0600 config file in a temporary directory, never on a command line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

_TICKS = os.sysconf("SC_CLK_TCK")

_CONFIG = """\
{user}worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream light {{ server {upstream}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://light;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
        }}
    }}
}}
"""


def available() -> str | None:
    """The nginx executable, if installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


class Nginx:
    """``with Nginx(upstream_url, token) as nginx: nginx.url``; CPU of master and worker."""

    def __init__(self, upstream_url: str, token: str, *, ready_timeout: float = 10.0) -> None:
        executable = available()
        if executable is None:
            raise RuntimeError("nginx is not installed")
        parts = urlsplit(upstream_url)
        self._dir = tempfile.TemporaryDirectory(prefix="freshtoken-bench-nginx-")
        directory = Path(self._dir.name)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = directory / "nginx.conf"
        config.touch(mode=0o600)
        config.write_text(
            _CONFIG.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                dir=directory,
                upstream=parts.netloc,
                port=port,
                token=token,
            )
        )
        self.url = f"http://127.0.0.1:{port}{parts.path}"
        self._proc = subprocess.Popen(
            [executable, "-c", str(config), "-p", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"nginx did not start: {self.error_log()}") from None
                time.sleep(0.05)

    def error_log(self) -> str:
        path = Path(self._dir.name) / "error.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def pids(self) -> list[int]:
        """The master and its workers."""
        master = self._proc.pid
        found = [master]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rpartition(")")[2].split()[1]) == master:
                    found.append(int(entry.name))
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / _TICKS

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._dir.cleanup()

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
