"""nginx twice: the fast upstream, and the nginx ``proxy_pass`` under test.

Each instance runs as one foreground process (``daemon off; master_process off;``)
with its own prefix, pid file, error log and temp paths inside the run's temp dir,
so its CPU time is that one process's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .procs import Child, Supervisor, tool, wait_for_port

#: What ``/v2/fast`` answers: a small Zoom-like JSON of about 100 bytes.
FAST_BODY = json.dumps(
    {"id": "fast", "status": "ok", "page_size": 30, "total_records": 0, "next_page_token": ""},
    separators=(",", ":"),
)
#: What ``/v2/users/me`` answers, so zoom-proxy's sign-in learns who signed in.
USER = {
    "id": "KDcuGIm1QgePTO8WbOqwIQ",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "account_id": "q6gBJVO5TzexKYTb_I2rpg",
    "type": 1,
    "status": "active",
}


def _nginx_string(text: str) -> str:
    """``text`` as a single-quoted nginx string."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _main_section(prefix: Path) -> str:
    temp = prefix / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    paths = "\n".join(
        f"    {kind}_temp_path {temp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 8192;
    multi_accept on;
}}
http {{
    access_log off;
{paths}
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    tcp_nodelay on;
"""


def upstream_config(
    prefix: Path, *, port: int, sink_port: int, big_file: Path, small_file: Path | None = None
) -> str:
    """The fast upstream: ``/v2/fast``, ``/v2/users/me``, ``/v2/big`` and ``/v2/upload``;
    with ``small_file``, also ``/v2/rec100m``, and Zoom's web host for recordings:
    ``/rec/download/{big,rec100m}`` redirect (302) to the file.

    Every route but the upload answers 401 without a Bearer header, so a proxy that
    forgets to add it cannot pass. ``/v2/upload`` streams the body to the Go sink,
    which reads every byte before it answers (nginx's own ``return`` would not).
    """
    bearer_only = 'if ($http_authorization !~ "^Bearer .") { return 401; }'
    recordings = ""
    if small_file is not None:
        recordings = f"""
        location = /v2/rec100m {{
            {bearer_only}
            default_type application/octet-stream;
            alias {small_file};
        }}
        location = /rec/download/big {{
            {bearer_only}
            return 302 /v2/big;
        }}
        location = /rec/download/rec100m {{
            {bearer_only}
            return 302 /v2/rec100m;
        }}"""
    return (
        _main_section(prefix)
        + f"""    sendfile on;
    upstream sink {{
        server 127.0.0.1:{sink_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v2/fast {{
            {bearer_only}
            default_type application/json;
            return 200 {_nginx_string(FAST_BODY)};
        }}
        location = /v2/users/me {{
            {bearer_only}
            default_type application/json;
            return 200 {_nginx_string(json.dumps(USER, separators=(",", ":")))};
        }}
        location = /v2/big {{
            {bearer_only}
            default_type application/octet-stream;
            alias {big_file};
        }}{recordings}
        location = /v2/upload {{
            client_max_body_size 0;
            client_body_buffer_size 256k;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sink;
        }}
    }}
}}
"""
    )


def proxy_config(prefix: Path, *, port: int, upstream_port: int, access_token: str) -> str:
    """nginx ``proxy_pass`` with a static Bearer header and upstream keep-alive.

    ``/api/<path>`` goes to ``/v2/<path>``, as with zoom-proxy. Bodies stream both
    ways: no request buffering, and response buffers in memory only (no temp files).
    The buffers are 256 KiB rather than nginx's 4-8 KiB default, which moves a 1 GiB
    download about 1.5 times as fast here and leaves small GETs as they were.
    """
    return (
        _main_section(prefix)
        + f"""    upstream api {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /api/ {{
            client_max_body_size 0;
            proxy_request_buffering off;
            client_body_buffer_size 256k;
            proxy_max_temp_file_size 0;
            proxy_buffer_size 16k;
            proxy_buffers 8 256k;
            proxy_busy_buffers_size 512k;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Cookie "";
            proxy_set_header Authorization {_nginx_string("Bearer " + access_token)};
            proxy_pass http://api/v2/;
        }}
    }}
}}
"""
    )


def _write_config(prefix: Path, config: str) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    path = prefix / "nginx.conf"
    path.write_text(config)
    return path


@dataclass
class Nginx:
    child: Child
    port: int


async def start(
    supervisor: Supervisor, name: str, prefix: Path, config: str, *, port: int, cores: str | None
) -> Nginx:
    config_path = _write_config(prefix, config)
    command = [tool("nginx", "/usr/sbin/nginx"), "-p", str(prefix), "-c", str(config_path)]
    # nginx reports a bad config on stderr before the error log exists: in the child's log.
    child = await supervisor.start(name, command, cores=cores)
    await wait_for_port(child, port)
    return Nginx(child, port)
