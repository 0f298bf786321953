"""The Go proxy and the upload sink: built offline from ``bench/goproxy`` into the temp dir."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .procs import run_tool, tool

SOURCE = Path(__file__).parent / "goproxy"
COOKIE_NAME = "session"


@dataclass(frozen=True)
class GoBinaries:
    proxy: Path
    sink: Path


async def build(temp: Path) -> GoBinaries:
    """``go build`` both programs with the standard library only: no network, no home dir."""
    go = tool("go")
    env = {
        "GOFLAGS": "-mod=mod",
        "GOCACHE": str(temp / "go-cache"),
        "GOPATH": str(temp / "go-path"),
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    binaries = GoBinaries(proxy=temp / "goproxy", sink=temp / "gosink")
    await run_tool([go, "build", "-o", str(binaries.proxy), "."], env=env, cwd=SOURCE)
    await run_tool([go, "build", "-o", str(binaries.sink), "./sink"], env=env, cwd=SOURCE)
    return binaries


def session_cookie(key: bytes, session: dict[str, object]) -> str:
    """What the Go proxy decrypts: base64url(nonce || AES-GCM(JSON session)), unpadded."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(session).encode(), None)
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
